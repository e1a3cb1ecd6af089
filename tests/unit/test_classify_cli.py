"""`flywheel classify`: stdin -> one JSON, --jsonl -> one JSON per line in order, --eval -> report."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest

from flywheel import cli
from flywheel.domain.labels import CATEGORIES
from flywheel.domain.reply_model import packaged_model
from flywheel.settings import reset_settings

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "CLASSIFIER_BACKEND", "WEBHOOK_SECRETS_ARN", "WEBHOOK_SECRETS_JSON"):
        monkeypatch.delenv(name, raising=False)
    reset_settings()


def run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str, stdin: str = ""
) -> tuple[int, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = cli.main(["classify", "--today", "2026-11-27", *args])
    return code, capsys.readouterr().out


def test_stdin_gives_one_classification(capsys, monkeypatch) -> None:
    code, out = run(capsys, monkeypatch, stdin="Thanks for your note.\nI'm out of the office until 7 December.\n")
    result = json.loads(out)
    assert code == 0 and (result["category"], result["return_date"], result["source"]) == (
        "out_of_office",
        "2026-12-07",
        "fallback",
    )
    code, _ = run(capsys, monkeypatch, stdin="   \n")
    assert code == 2


def test_jsonl_keeps_the_order_and_reports_bad_lines_in_place(capsys, monkeypatch, tmp_path: Path) -> None:
    source = tmp_path / "replies.jsonl"
    source.write_text(
        '{"text": "Unsubscribe me"}\nnot json\n\n{"text": "Tuesday 2pm works, send an invite"}\n{"x": 1}\n'
    )
    code, out = run(capsys, monkeypatch, "--jsonl", str(source))
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 1 and len(lines) == 4
    assert lines[0]["category"] == "unsubscribe" and lines[1]["line"] == 2 and "error" in lines[1]
    assert lines[2]["category"] == "meeting_request" and lines[3]["line"] == 5


def test_eval_prints_accuracy_precision_recall_and_the_confusion_matrix(capsys, monkeypatch, tmp_path: Path) -> None:
    source = tmp_path / "labelled.jsonl"
    source.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"text": "Please remove me from your mailing list", "category": "unsubscribe"},
                {"text": "Can we talk Thursday at 10?", "category": "meeting_request"},
                {"text": "Who is this?", "category": "unsubscribe"},  # a deliberate miss
                {"text": "no label here"},
            ]
        )
    )
    code, out = run(capsys, monkeypatch, "--eval", str(source), "--json")
    report = json.loads(out)
    assert code == 0 and report["count"] == 3 and report["accuracy"] == pytest.approx(2 / 3, abs=1e-3)
    assert report["per_category"]["unsubscribe"] == {"precision": 1.0, "recall": 0.5, "support": 2}
    assert report["skipped_lines"] == [4] and report["source"] == "offline"
    unsub = CATEGORIES.index("unsubscribe")
    assert sum(report["confusion_matrix"][unsub]) == 2
    code, out = run(capsys, monkeypatch, "--eval", str(source))
    assert "accuracy 0.667 on 3 replies" in out and "confusion matrix" in out and "unsubscribe" in out


def test_the_shipped_weights_were_trained_on_this_corpus() -> None:
    """`make classifier-model` was run after the corpus last changed (the version names its digest)."""
    rows = [json.loads(line) for line in (DATA / "replies_labelled.jsonl").read_text().splitlines() if line.strip()]
    digest = hashlib.sha256("\n".join(f"{r['category']}\t{r['text']}" for r in rows).encode()).hexdigest()[:12]
    assert packaged_model().version == f"linear-ngrams-{digest}"


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ('{"text": "hi", "category": "intrested"}\n', "bad_labels"),  # a misspelt label is not a silent miss
        ('{"text": "hi"}\n', "bad_labels"),  # nothing to measure: not "accuracy 0.000"
        (None, "unreadable_input"),  # no such file: a message, not a traceback
    ],
)
def test_eval_refuses_what_it_cannot_measure(
    capsys, monkeypatch, tmp_path: Path, content: str | None, error: str
) -> None:
    source = tmp_path / "labelled.jsonl"
    if content is not None:
        source.write_text(content)
    code = cli.main(["classify", "--eval", str(source)])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "" and json.loads(captured.err)["error"] == error
