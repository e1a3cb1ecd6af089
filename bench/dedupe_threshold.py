"""Choosing the near-duplicate threshold from measurements: precision and recall of the
production filter (MinHash + LSH + verification) on planted re-sends of hand-written emails,
at each candidate threshold, on the tuning families; then the chosen one on the blind families.

The planted set holds each hand-written email, two personalised versions of it (the same template
with a different opening line: different emails) and three edits of each.
Pair precision: of the pairs the filter calls duplicates, how many are an email and its edit.
Pair recall: of the email/edit pairs, how many it finds. "dropped" is the share of edits removed
when one text per cluster is kept; "distinct kept" the share of different emails that survive."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "layers" / "flywheel"))

from flywheel.domain import near_duplicates as nd  # noqa: E402
from tests.dedupe_planted import pair_scores, planted  # noqa: E402


def main() -> None:
    texts, groups = planted(blind=False, personal=2)
    print(f"tuning set: {len(texts)} texts from {len(set(groups))} emails in 6 campaign families")
    print("threshold  precision  recall  dropped  distinct_kept")
    for threshold in (0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95):
        s = pair_scores(texts, groups, threshold)
        print(
            f"{threshold:9.2f}  {s['precision']:9.3f}  {s['recall']:6.3f}  {s['duplicates_dropped']:7.3f}  "
            f"{s['distinct_kept']:13.3f}"
        )
    texts, groups = planted(blind=True, personal=2)
    s = pair_scores(texts, groups, nd.DUPLICATE_THRESHOLD)
    print(
        f"blind set: {len(texts)} texts from {len(set(groups))} emails in 4 families; "
        f"dropped {s['duplicates_dropped']:.3f} of edits, kept {s['distinct_kept']:.3f} of distinct emails"
    )
    print(
        f"near-duplicate threshold {nd.DUPLICATE_THRESHOLD}: precision {s['precision']:.3f}, "
        f"recall {s['recall']:.3f} (blind set)"
    )


if __name__ == "__main__":
    main()
