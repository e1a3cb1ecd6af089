"""Routing cost, side by side in one run on local PostgreSQL: a warm in-process decision (lead
already assigned in this container), the first assignment of a lead (one INSERT), and a plain
primary-key lookup for scale."""

from __future__ import annotations

import time

from _harness import fresh_database

N = 2000


def per_call_us(fn, n: int) -> float:  # type: ignore[no-untyped-def]
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
        conn.execute("""INSERT INTO model_registry (model_id, version, major, minor, patch, status, provider,
                                                    provider_model_id, base_model)
                        VALUES (%s, %s, 1, %s, 0, 'ready', 'bedrock', 'arn', 'nova')""",
                     (f"m-{version}", version, minor))
    training.deploy_model("m-v1.0.0", canary_percentage=50, actor="bench", reason="bench")
    training.deploy_model("m-v1.1.0", canary_percentage=50, actor="bench", reason="bench")
    experiments.forget_cache()
    experiments.route("acme", "warm-up")

    first = per_call_us(lambda i: experiments.route("acme", f"lead-{i}"), N)
    warm = per_call_us(lambda i: experiments.route("acme", f"lead-{i % N}"), N * 20)
    pk = per_call_us(lambda i: conn.execute("SELECT arm FROM assignments WHERE experiment_id = "
                                            "(SELECT experiment_id FROM experiments LIMIT 1) AND org_id = 'acme' "
                                            "AND lead_id = %s", (f"lead-{i}",)).fetchone(), N)
    print(f"first assignment (INSERT ... ON CONFLICT): {first:.0f} us per lead")
    print(f"primary-key lookup on the same table: {pk:.0f} us")
    print(f"warm in-process decision: {warm:.1f} us; first DB assignment: {first:.0f} us; "
          f"plain primary-key lookup: {pk:.0f} us")


if __name__ == "__main__":
    main()
