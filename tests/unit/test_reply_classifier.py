"""The offline classifier against the labelled reply set: per-category precision and recall."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from flywheel.domain.reply_rules import classify_offline, referral_contact, return_date
from flywheel.models.classification import CATEGORIES

DATA = Path(__file__).resolve().parents[1] / "data" / "replies_labelled.jsonl"
TODAY = date(2026, 11, 27)
REPLIES = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]


def test_the_labelled_set_is_broad_enough() -> None:
    counts = Counter(r["category"] for r in REPLIES)
    assert len(REPLIES) >= 150 and set(counts) == set(CATEGORIES) and min(counts.values()) >= 10


def test_fallback_accuracy_with_per_category_precision_and_recall(capsys: pytest.CaptureFixture[str]) -> None:
    predicted = [classify_offline(r["text"], TODAY).category for r in REPLIES]
    truth = [r["category"] for r in REPLIES]
    lines = []
    for category in CATEGORIES:
        tp = sum(1 for p, t in zip(predicted, truth, strict=True) if p == t == category)
        fp = sum(1 for p, t in zip(predicted, truth, strict=True) if p == category != t)
        fn = sum(1 for p, t in zip(predicted, truth, strict=True) if t == category != p)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        lines.append(f"{category:16s} precision {precision:5.2f}  recall {recall:5.2f}  (n={tp + fn})")
    accuracy = sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(truth)
    misses = [f"  {t} -> {p}: {r['text'][:70]!r}" for p, t, r in zip(predicted, truth, REPLIES, strict=True) if p != t]
    with capsys.disabled():
        print("\nfallback classifier on tests/data/replies_labelled.jsonl")
        print("\n".join(lines))
        print(f"overall accuracy {accuracy:.3f} on {len(truth)} replies")
    assert accuracy >= 0.85, "\n".join(misses)


def test_return_dates_and_referrals_are_extracted() -> None:
    checked = 0
    for r in REPLIES:
        result = classify_offline(r["text"], TODAY)
        if "return_date" in r and result.category == "out_of_office":
            assert result.return_date == date.fromisoformat(r["return_date"]), r["text"]
            checked += 1
        if "referral" in r and result.category == "referral":
            assert result.referral_contact == r["referral"], r["text"]
            checked += 1
    assert checked >= 20


def test_objection_types_and_sentiment_direction() -> None:
    for r in REPLIES:
        result = classify_offline(r["text"], TODAY)
        if r["category"] == "objection" and result.category == "objection":
            assert result.objection_type == r["objection_type"], r["text"]
        if result.category in ("unsubscribe", "not_interested"):
            assert result.sentiment_score < 0 and result.interest_level == "none"
        if result.category in ("meeting_request", "interested"):
            assert result.sentiment_score > 0
    assert classify_offline("Not now, maybe next year", TODAY).objection_type == "timing"


def test_deterministic_and_bounded() -> None:
    a = classify_offline("Sounds great, send me a calendar invite for next week.", TODAY)
    assert a == classify_offline("Sounds great, send me a calendar invite for next week.", TODAY)
    assert a.source == "fallback" and -1 <= a.sentiment_score <= 1 and 0 <= a.confidence <= 1


def test_date_and_contact_helpers() -> None:
    assert return_date("back on 3 January", TODAY) == date(2027, 1, 3)  # next occurrence
    assert return_date("nothing here", TODAY) is None
    assert referral_contact("please talk to Ana Lopez about it") == "Ana Lopez"
    assert referral_contact("no names here") is None


def test_blind_set_generalisation_floor(capsys: pytest.CaptureFixture[str]) -> None:
    """replies_blind.jsonl was written after the rules and never used to tune them: it measures
    how the fallback does on phrasings it has not seen (the LLM path is the primary classifier)."""
    blind = [json.loads(line) for line in (DATA.parent / "replies_blind.jsonl").read_text().splitlines() if line]
    accuracy = sum(classify_offline(r["text"], TODAY).category == r["category"] for r in blind) / len(blind)
    with capsys.disabled():
        print(f"\nfallback accuracy on the blind set: {accuracy:.3f} ({len(blind)} replies)")
    assert accuracy >= 0.5
