"""Sticky bucketing of leads into experiment arms (pure, and light: GET /route imports only this)."""

from __future__ import annotations

import hashlib

BUCKETS = 10_000


def bucket(salt: str, lead_id: str) -> int:
    """The lead's bucket in the experiment with this salt: the first 8 bytes of SHA-256 of
    "salt:lead", big-endian, modulo BUCKETS (the bias of 2⁶⁴ mod 10,000 is below 10⁻¹⁵).

    It was FNV-1a 32 of the same text: FNV's low bits depend only on the low bits of every byte and
    of the state the salt leaves, so for sequential lead ids the buckets were not uniform (χ² over
    100 bins up to 280 on 99 degrees of freedom) and two experiments' arms were not independent.
    Only leads with no recorded assignment are bucketed: every lead already routed keeps the arm
    recorded for it (`assignments`), whichever hash chose it."""
    digest = hashlib.sha256(f"{salt}:{lead_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def arm_for(bucket_value: int, challenger_share: float) -> str:
    """Buckets below the challenger's share go to the challenger: growing the share from the
    canary's 10 % to 50 % keeps every earlier challenger lead in the challenger arm."""
    return "challenger" if bucket_value < round(challenger_share * BUCKETS) else "champion"
