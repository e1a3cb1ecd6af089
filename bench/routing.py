"""Routing cost, side by side in one run on local PostgreSQL: a warm in-process decision (lead
already assigned in this container), the first assignment of a lead (one INSERT), the decision for
an already-assigned lead in a cold container (nothing cached but the registry snapshot), and a
plain primary-key read of the same row through the same connection."""

from __future__ import annotations

import time
from collections.abc import Callable

from _harness import fresh_database

N = 2000
ROUNDS = 5


def per_call_us(fn: Callable[[int], object], n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    fresh_database()
    from flywheel.dal.connection import get_connection
    from flywheel.services import experiments, training

    conn = get_connection()
    for version, minor in (("v1.0.0", 0), ("v1.1.0", 1)):
        conn.execute(
            """INSERT INTO model_registry (model_id, version, major, minor, patch, status, provider,
                                                    provider_model_id, base_model)
                        VALUES (%s, %s, 1, %s, 0, 'ready', 'bedrock', 'arn', 'nova')""",
            (f"m-{version}", version, minor),
        )
    training.deploy_model("m-v1.0.0", canary_percentage=50, actor="bench", reason="bench")
    training.deploy_model("m-v1.1.0", canary_percentage=50, actor="bench", reason="bench")
    experiment_id = experiments.route("acme", "warm-up")["experiment_id"]

    first = per_call_us(lambda i: experiments.route("acme", f"lead-{i}"), N)
    warm = per_call_us(lambda i: experiments.route("acme", f"lead-{i % N}"), N * 20)

    def cold_container() -> None:
        """Forget every assignment this container has seen; keep the registry snapshot (one per
        container per 30 s, shared by every lead)."""
        experiments.forget_cache()
        experiments.route("acme", "warm-up")

    def pk_read(i: int) -> object:
        return conn.execute(
            "SELECT arm FROM assignments WHERE experiment_id = %s AND org_id = %s AND lead_id = %s",
            (experiment_id, "acme", f"lead-{i}"),
        ).fetchone()

    # interleaved rounds, so both sides see the same machine load; best round of each
    cold_rounds, pk_rounds = [], []
    for _ in range(ROUNDS):
        cold_container()
        cold_rounds.append(per_call_us(lambda i: experiments.route("acme", f"lead-{i}"), N))
        pk_rounds.append(per_call_us(pk_read, N))
    cold, pk = min(cold_rounds), min(pk_rounds)
    print(f"first assignment (INSERT ... ON CONFLICT DO NOTHING): {first:.0f} us per lead")
    print(f"assigned lead in a cold container, per round: {', '.join(f'{r:.0f}' for r in cold_rounds)} us")
    print(f"plain primary-key read, per round: {', '.join(f'{r:.0f}' for r in pk_rounds)} us")
    print(
        f"warm in-process decision: {warm:.1f} us; first DB assignment: {first:.0f} us; "
        f"plain primary-key lookup: {pk:.0f} us"
    )
    print(
        f"cold-container decision for an assigned lead: {cold:.0f} us; plain primary-key read: {pk:.0f} us; "
        f"ratio {cold / pk:.2f}x"
    )


if __name__ == "__main__":
    main()
