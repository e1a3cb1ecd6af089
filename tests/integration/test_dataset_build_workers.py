"""The dataset build in worker processes writes the same files and manifest as in one process, and
a build that cannot finish in its invocation's time fails first, with the reason."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from flywheel.dal.connection import transaction
from flywheel.services import dataset as dataset_service
from flywheel.services.dataset import DatasetSpec, DatasetTooLarge, build_dataset
from flywheel.settings import get_settings, reset_settings
from tests.integration.test_dataset_cli import planted  # noqa: F401 - the fixture: 40 messages with planted PII


def built(tmp_path: Path, name: str, spec: DatasetSpec) -> tuple[bytes, bytes, dict[str, object]]:
    out = build_dataset(spec, tmp_path / name, get_settings())
    return out.train_path.read_bytes(), out.validation_path.read_bytes(), out.manifest


def slow_build_of(db, outcomes: int, seconds_each: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """`outcomes` more outcomes, each built `seconds_each` slower than it is (in workers forked
    after this too): a build that falls behind its plan."""
    db.execute(
        """INSERT INTO outcome_labels (org_id, dedupe_key, campaign_id, lead_id, body, sent_at, quality_score,
                                       training_label, stage)
           SELECT 'acme', 'bulk-' || i, 'c', 'l' || i, 'Hello there, a note number ' || i, now(), 0.9,
                  'positive', 'replied' FROM generate_series(1, %s) AS i""",
        (outcomes,),
    )
    real = dataset_service._Builder.examples

    def slow(self: dataset_service._Builder, items: list[Any]) -> object:
        time.sleep(seconds_each * len(items))
        return real(self, items)

    monkeypatch.setattr(dataset_service._Builder, "examples", slow)


@pytest.mark.parametrize(
    ("method", "dataset_format"),
    [("supervised", "openai-chat"), ("dpo", "openai-chat"), ("supervised", "bedrock-conversation-2024")],
)
def test_worker_processes_build_exactly_what_one_process_builds(
    planted: list[str],  # noqa: F811
    tmp_path: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    dataset_format: str,
) -> None:
    base = "amazon.nova-micro-v1:0:128k" if dataset_format != "openai-chat" else "gpt-4.1-mini-2025-04-14"
    spec = DatasetSpec(method=method, dataset_format=dataset_format, base_model=base)
    monkeypatch.setenv(
        "DATASET_LINE_CACHE", "false"
    )  # both builds build every line (tests of the cache: test_dataset_line_cache.py)
    monkeypatch.setenv("DATASET_BUILD_WORKERS", "1")
    reset_settings()
    alone = built(tmp_path, "one", spec)
    # three workers and batches of 4 items: the 40 messages go through ten round trips
    monkeypatch.setenv("DATASET_BUILD_WORKERS", "3")
    reset_settings()
    real = dataset_service._in_workers
    monkeypatch.setattr(
        dataset_service, "_in_workers", lambda items, builder, workers: real(items, builder, workers, size=4)
    )
    together = built(tmp_path, "three", spec)
    assert together == alone
    manifest = alone[2]
    assert manifest["residual_scan"]["passed"] and manifest["counts"]["train"] > 0  # type: ignore[index]
    assert sum(manifest["redactions"].values()) > 100  # type: ignore[union-attr,attr-defined]
    assert [p for p in planted if p in (together[0] + together[1]).decode()] == []


def test_a_build_that_cannot_finish_in_time_fails_before_it_starts(
    planted: list[str],  # noqa: F811
    tmp_path: Path,
) -> None:
    settings = get_settings().model_copy(update={"dataset_build_seconds_per_row": 2.0, "dataset_build_workers": 1})
    with pytest.raises(DatasetTooLarge) as failure:
        build_dataset(DatasetSpec(), tmp_path, settings, deadline=time.monotonic() + 30)
    assert "30 outcomes need about 60 s at 0.5 outcomes/s" in failure.value.message
    assert "more memory" in failure.value.message
    assert not (tmp_path / "train.jsonl").exists()  # nothing was built


def test_the_check_counts_the_passes_after_the_workers(
    planted: list[str],  # noqa: F811
    tmp_path: Path,
) -> None:
    """Pass 1 alone would fit: de-duplicating and writing the 30 outcomes afterwards (in the
    streaming process alone) would not, so the build fails before it starts, saying why."""
    fast = {"dataset_build_seconds_per_row": 1e-6, "dataset_build_workers": 1}
    settings = get_settings().model_copy(update={**fast, "dataset_finish_seconds_per_row": 1.0})
    with pytest.raises(DatasetTooLarge) as failure:
        build_dataset(DatasetSpec(), tmp_path / "slow", settings, deadline=time.monotonic() + 20)
    assert "30 outcomes need about 30 s" in failure.value.message
    assert "and 30 s to de-duplicate and write them" in failure.value.message
    assert not (tmp_path / "slow" / "train.jsonl").exists()
    # with the passes after the workers as fast as configured by default, the same build runs
    fits = get_settings().model_copy(update=fast)
    done = build_dataset(DatasetSpec(), tmp_path / "fits", fits, deadline=time.monotonic() + 20)
    assert done.examples > 0 and set(done.seconds) == {"stage", "plan", "write"}
    assert all(0 <= s < 20 for s in done.seconds.values())


def test_a_build_slower_than_planned_stops_when_it_sees_it_will_not_finish(
    planted: list[str],  # noqa: F811
    tmp_path: Path,
    db,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # many outcomes, planned as fast: the check before passes, the progress check stops it
    slow_build_of(db, 6000, 0.006, monkeypatch)  # 36 s for the 6,040 outcomes
    settings = get_settings().model_copy(update={"dataset_build_seconds_per_row": 1e-6, "dataset_build_workers": 1})
    started = time.monotonic()
    with pytest.raises(DatasetTooLarge, match="cannot be built in time"):
        build_dataset(DatasetSpec(), tmp_path, settings, deadline=time.monotonic() + 30)
    # stopped when it saw it (after 2,000 outcomes, ~12 s of them sleeping), not at the deadline
    assert time.monotonic() - started < 30


def test_the_pipeline_step_records_why_the_run_failed(
    planted: list[str],  # noqa: F811
    tmp_path: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    db,
) -> None:
    from flywheel.services import training

    monkeypatch.setenv("DATASET_BUILD_SECONDS_PER_ROW", "5")
    monkeypatch.setenv("DATASET_BUILD_WORKERS", "1")
    monkeypatch.setenv("TRAINING_BUCKET", "bucket")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    reset_settings()
    with transaction() as conn:
        run = training.training_dal.create_run(conn, "global", "test", {"provider": "openai"})
    assert run is not None
    state = {
        "run_id": str(run["run_id"]),
        "provider": "openai",
        "min_quality_score": 0.6,
        "since_days": 365,
        "method": "supervised",
        "base_model": "gpt-4.1-mini-2025-04-14",
        "sufficient": True,
    }
    with pytest.raises(DatasetTooLarge):
        training.run_step("build", state, remaining_s=200)
    row = db.execute("SELECT status, error FROM training_runs WHERE run_id = %s", (run["run_id"],)).fetchone()
    assert row["status"] == "failed" and "cannot be built in time" in row["error"]


def test_a_build_stopped_by_the_time_check_stops_its_workers(
    planted: list[str],  # noqa: F811
    tmp_path: Path,
    db,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The progress check fails the build from the streaming process's loop: the workers stop then,
    not whenever the failure (and the traceback holding the build's frames) is let go."""
    import multiprocessing

    slow_build_of(db, 3000, 0.003, monkeypatch)  # ~2 s before 2,000 are read
    settings = get_settings().model_copy(update={"dataset_build_seconds_per_row": 1e-6, "dataset_build_workers": 2})
    with pytest.raises(DatasetTooLarge, match="cannot be built in time") as failure:
        build_dataset(DatasetSpec(), tmp_path, settings, deadline=time.monotonic() + 1)
    assert failure.traceback  # still held here, with the build's frames
    assert multiprocessing.active_children() == []
