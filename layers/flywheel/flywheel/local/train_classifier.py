"""Train the offline reply model and export its weights (`make classifier-model`).

Development only: needs scikit-learn and scipy (dev dependencies); the exported files are scored at
run time by `flywheel.domain.reply_model` with numpy alone. Deterministic: the same corpus gives the
same weights. The regularisation strength is chosen by 5-fold cross-validation on the training
corpus, and the rules are measured the same way; the blind set (tests/data/replies_blind.jsonl) is
never read here.

    python -m flywheel.local.train_classifier [--corpus FILE ...] [--out FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from flywheel.domain.labels import CATEGORIES
from flywheel.domain.reply_model import MODEL_FILE, OBJECTION_MODEL_FILE, ReplyModel, features, tfidf_row

ROOT = Path(__file__).resolve().parents[4]
DEFAULT_CORPUS = ROOT / "tests" / "data" / "replies_labelled.jsonl"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "data" / MODEL_FILE
C_GRID = (5.0, 10.0, 30.0)
MIN_DF = 2
SEED = 0
OBJECTION_TYPES = ("price", "competitor", "authority", "no_need")


def load_corpus(paths: list[Path]) -> list[dict[str, Any]]:
    rows = []
    for path in paths:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            if row.get("category") not in CATEGORIES or not str(row.get("text", "")).strip():
                raise SystemExit(f"{path}:{number}: needs a text and one of the 12 categories")
            rows.append(row)
    return rows


def vocabulary_and_idf(docs: list[Counter[str]]) -> tuple[dict[str, int], np.ndarray]:
    df: Counter[str] = Counter()
    for doc in docs:
        df.update(doc.keys())
    kept = sorted(f for f, n in df.items() if n >= MIN_DF)
    idf = np.array([math.log((1 + len(docs)) / (1 + df[f])) + 1.0 for f in kept])
    return {f: i for i, f in enumerate(kept)}, idf


def matrix(docs: list[Counter[str]], vocabulary: dict[str, int], idf: np.ndarray) -> Any:
    from scipy.sparse import csr_matrix

    indptr, indices, values = [0], [], []
    for doc in docs:
        index, vals = tfidf_row(doc, vocabulary, idf)
        indices.extend(index.tolist())
        values.extend(vals.tolist())
        indptr.append(len(indices))
    return csr_matrix((values, indices, indptr), shape=(len(docs), len(vocabulary)))


def _fit(x: Any, y: list[str], c: float) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=2000, class_weight="balanced").fit(x, y)


def _export(
    fitted: Any, classes: tuple[str, ...], vocabulary: dict[str, int], idf: np.ndarray, version: str
) -> ReplyModel:
    order = [list(fitted.classes_).index(c) for c in classes]
    return ReplyModel(
        classes=classes,
        vocabulary=vocabulary,
        idf=idf,
        coef=np.asarray(fitted.coef_)[order].astype(np.float32),
        intercept=np.asarray(fitted.intercept_)[order],
        version=version,
    )


def _fit_all(texts: list[str], labels: list[str], classes: tuple[str, ...], c: float, version: str) -> ReplyModel:
    docs = [features(t) for t in texts]
    vocabulary, idf = vocabulary_and_idf(docs)
    return _export(_fit(matrix(docs, vocabulary, idf), labels, c), classes, vocabulary, idf, version)


def out_of_fold(texts: list[str], labels: list[str], c: float) -> list[dict[str, float]]:
    """Each reply's probabilities from a model that never saw it (5 stratified folds; the
    vocabulary is rebuilt inside each fold, so nothing leaks)."""
    from sklearn.model_selection import StratifiedKFold

    result: list[dict[str, float]] = [{} for _ in texts]
    for train, test in StratifiedKFold(5, shuffle=True, random_state=SEED).split(texts, labels):
        model = _fit_all([texts[i] for i in train], [labels[i] for i in train], CATEGORIES, c, "fold")
        for i in test:
            result[i] = model.probabilities(texts[i])
    return result


def evaluate(truth: list[str], predicted: list[str]) -> dict[str, Any]:
    """Accuracy, per-category precision/recall/support and the confusion matrix (rows: truth)."""
    pairs = list(zip(predicted, truth, strict=True))
    per: dict[str, dict[str, float]] = {}
    for category in CATEGORIES:
        tp = sum(p == t == category for p, t in pairs)
        fp = sum(p == category != t for p, t in pairs)
        fn = sum(t == category != p for p, t in pairs)
        per[category] = {
            "precision": round(tp / (tp + fp), 4) if tp + fp else 0.0,
            "recall": round(tp / (tp + fn), 4) if tp + fn else 0.0,
            "support": tp + fn,
        }
    confusion = [[sum(t == row and p == col for p, t in pairs) for col in CATEGORIES] for row in CATEGORIES]
    accuracy = sum(p == t for p, t in pairs) / len(pairs) if pairs else 0.0
    return {
        "count": len(pairs),
        "accuracy": round(accuracy, 4),
        "per_category": per,
        "labels": list(CATEGORIES),
        "confusion_matrix": confusion,
    }


def train(rows: list[dict[str, Any]], log: Any = sys.stderr) -> tuple[ReplyModel, ReplyModel]:
    """(category model, objection-type model)."""
    from threadpoolctl import threadpool_limits

    # one BLAS thread: on a shared 2-core machine more threads make these small fits 6x slower
    with threadpool_limits(1):
        return _train(rows, log)


def _train(rows: list[dict[str, Any]], log: Any) -> tuple[ReplyModel, ReplyModel]:
    from flywheel.domain import reply_rules
    from flywheel.domain.reply_rules import decide, without_disclaimers

    texts, labels = [without_disclaimers(r["text"]) for r in rows], [r["category"] for r in rows]
    folds = {c: out_of_fold(texts, labels, c) for c in C_GRID}
    accuracy = {c: evaluate(labels, [max(p, key=p.__getitem__) for p in folds[c]])["accuracy"] for c in C_GRID}
    best = max(C_GRID, key=lambda c: (round(accuracy[c], 3), -c))
    for c in C_GRID:
        print(f"C={c:<5} model alone, 5-fold accuracy {accuracy[c]:.3f}{'  <- chosen' if c == best else ''}", file=log)
    report = evaluate(labels, [decide(t, p)[0] for t, p in zip(texts, folds[best], strict=True)])
    unsubscribe = report["per_category"]["unsubscribe"]
    print(
        f"model + rules, 5-fold accuracy {report['accuracy']:.3f}, unsubscribe recall "
        f"{unsubscribe['recall']:.3f}, precision {unsubscribe['precision']:.3f}",
        file=log,
    )
    # how sure the model alone must be to suppress a reply that asks for no contact
    # (reply_rules.MODEL_UNSUBSCRIBE_THRESHOLD): false suppressions and missed opt-outs at each
    # threshold in cross-validation, to weigh one against the other
    chosen = reply_rules.MODEL_UNSUBSCRIBE_THRESHOLD
    try:
        for threshold in (0.3, 0.35, 0.4, 0.5, 0.6, 0.7):
            reply_rules.MODEL_UNSUBSCRIBE_THRESHOLD = threshold
            predicted = [decide(t, p)[0] for t, p in zip(texts, folds[best], strict=True)]
            pairs = list(zip(predicted, labels, strict=True))
            wrong = sum(p == "unsubscribe" != t for p, t in pairs)
            missed = sum(t == "unsubscribe" != p for p, t in pairs)
            marker = "  <- in use" if threshold == chosen else ""
            print(
                f"model-only opt-out from P={threshold}: {wrong} false suppressions, {missed} missed{marker}", file=log
            )
    finally:
        reply_rules.MODEL_UNSUBSCRIBE_THRESHOLD = chosen
    digest = hashlib.sha256("\n".join(f"{r['category']}\t{r['text']}" for r in rows).encode()).hexdigest()[:12]
    model = _fit_all(texts, labels, CATEGORIES, best, f"linear-ngrams-{digest}")
    objections = [r for r in rows if r["category"] == "objection" and r.get("objection_type") in OBJECTION_TYPES]
    objection_model = _fit_all(
        [r["text"] for r in objections],
        [r["objection_type"] for r in objections],
        OBJECTION_TYPES,
        best,
        f"objections-{digest}",
    )
    print(f"{len(rows)} replies, {len(model.vocabulary)} features; {len(objections)} objections", file=log)
    return model, objection_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--corpus",
        type=Path,
        action="append",
        help="labelled JSONL (text, category); repeatable, e.g. exported corrections",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    model, objection_model = train(load_corpus(args.corpus or [DEFAULT_CORPUS]))
    for path, trained in ((args.out, model), (args.out.with_name(OBJECTION_MODEL_FILE), objection_model)):
        path.write_bytes(trained.to_bytes())
        print(f"wrote {path} ({path.stat().st_size // 1024} KiB, {trained.version})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
