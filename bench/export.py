"""Building a dataset from 200,000 outcomes: streamed through a server-side cursor, against a
naive build that fetches every row first. Each side runs in its own process so that its peak
memory is its own."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import ROOT, fresh_database

N = 200_000
SEED = """
INSERT INTO organizations (org_id, training_opt_in) VALUES ('bench', true);
INSERT INTO outcome_labels (org_id, dedupe_key, campaign_id, lead_id, lead_email, subject, body, framework, tone, brief,
                            sent_at, lead_first_name, lead_company, lead_industry, lead_role, training_label,
                            quality_score, stage)
SELECT 'bench', 'k' || i, 'c' || (i % 50), 'l' || i, 'l' || i || '@x' || (i % 997) || '.example',
       'Idea ' || i, 'Hi Ana' || i || ', ' || repeat(md5(i::text) || ' close automation for your team. ', 8) ||
       'Call +1 415 555 ' || lpad((i % 10000)::text, 4, '0') || ' or https://cal.example/x?utm=' || md5(i::text),
       (ARRAY['PAS', 'AIDA', 'BAB'])[1 + i % 3], 'warm', 'brief ' || i, now() - make_interval(mins => i),
       'Ana' || i, 'Co' || i, 'saas', 'cfo', 'positive', 0.8, 'replied'
  FROM generate_series(1, {n}) AS i;
"""


def naive_build(out: Path) -> int:
    """Fetch everything, build every example in memory, then write: what the seed system did."""
    import numpy as np

    from flywheel.dal.connection import get_connection
    from flywheel.dal.training import DATASET_COLUMNS
    from flywheel.domain import dataset as ds
    from flywheel.domain import near_duplicates as nd
    from flywheel.domain.redaction import Redactor

    rows = get_connection().execute(
        f"SELECT {DATASET_COLUMNS} FROM outcome_labels o JOIN organizations org USING (org_id) "
        "WHERE org.training_opt_in AND o.quality_score >= 0.6 ORDER BY o.sent_at").fetchall()
    redactor = Redactor()
    examples = [ds.supervised_example(row, redactor) for row in rows]
    sigs = nd.signatures([e.targets[0] for e in examples])
    left, right, _ = nd.similar_pairs(sigs, nd.DUPLICATE_THRESHOLD)
    keep = nd.components(len(examples), [(left, right)]) == np.arange(len(examples))
    out.write_text("".join(json.dumps(ds.to_openai(e)) + "\n" for e, k in zip(examples, keep, strict=True) if k))
    return len(rows)


def side(mode: str) -> None:
    """One side, in this process: prints rows, seconds and peak RSS as JSON."""
    from flywheel.services.dataset import DatasetSpec, build_dataset
    from flywheel.settings import get_settings

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if mode == "streaming":
            built = build_dataset(DatasetSpec(min_quality=0.6), Path(tmp), get_settings())
            rows = int(built.manifest["counts"]["candidates"])
        else:
            rows = naive_build(Path(tmp) / "train.jsonl")
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": rows, "seconds": seconds, "peak_mb": peak_mb}))


def main() -> None:
    if len(sys.argv) > 1:
        side(sys.argv[1])
        return
    url = fresh_database()
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SEED.replace("{n}", str(N)))
    results = {}
    for mode in ("streaming", "fetch-all"):
        done = subprocess.run([sys.executable, __file__, mode], capture_output=True, text=True, check=True,
                              env={**__import__("os").environ, "DATABASE_URL": url}, cwd=ROOT)
        results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{mode}: {results[mode]['rows']} rows in {results[mode]['seconds']:.1f} s, "
              f"peak RSS {results[mode]['peak_mb']:.0f} MB")
    s, f = results["streaming"], results["fetch-all"]
    print(f"streaming: {s['rows'] / s['seconds']:.0f} rows/s, peak {s['peak_mb']:.0f} MB; "
          f"fetch-all: peak {f['peak_mb']:.0f} MB")


if __name__ == "__main__":
    main()
