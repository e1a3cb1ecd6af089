"""Sticky bucketing of leads into experiment arms (pure, and light: GET /route imports only this)."""

from __future__ import annotations

BUCKETS = 10_000


def fnv1a_32(text: str) -> int:
    """FNV-1a, 32 bits (GrowthBook's hash for bucketing)."""
    value = 0x811C9DC5
    for byte in text.encode("utf-8"):
        value ^= byte
        value = (value * 0x01000193) & 0xFFFFFFFF
    return value


def bucket(salt: str, lead_id: str) -> int:
    return fnv1a_32(f"{salt}:{lead_id}") % BUCKETS


def arm_for(bucket_value: int, challenger_share: float) -> str:
    """Buckets below the challenger's share go to the challenger: growing the share from the
    canary's 10 % to 50 % keeps every earlier challenger lead in the challenger arm."""
    return "challenger" if bucket_value < round(challenger_share * BUCKETS) else "champion"
