"""The dataset line cache (sql/0017_dataset_line_cache.sql): a build reads back what an earlier build
made of an unchanged outcome and writes exactly the files and manifest a build without the cache
writes; an outcome that changed, or a build with other code, builds again; the cache goes with its
outcome, with its organisation's opt-out and after DATASET_CACHE_DAYS; builds side by side in
several processes store and read it without a difference."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flywheel.domain import dataset as ds
from flywheel.services import dataset as dataset_service
from flywheel.services import retention
from flywheel.services.dataset import DatasetSpec, DatasetTooLarge, build_dataset
from flywheel.settings import get_settings, reset_settings
from tests.conftest import in_processes
from tests.integration.test_dataset_cli import planted  # noqa: F401 - the fixture: 40 messages with planted PII

SPECS = [
    DatasetSpec(),
    DatasetSpec(method="dpo"),
    DatasetSpec(dataset_format="bedrock-conversation-2024", base_model="amazon.nova-micro-v1:0:128k"),
]
Built = tuple[bytes, bytes, dict[str, Any]]


def build(tmp_path: Path, name: str, spec: DatasetSpec, **settings: Any) -> Built:
    out = build_dataset(spec, tmp_path / name, get_settings().model_copy(update=settings))
    return out.train_path.read_bytes(), out.validation_path.read_bytes(), out.manifest


def entries(db, kind: str = "supervised:openai-chat") -> dict[str, dict[str, Any]]:
    rows = db.execute(
        "SELECT item, digest, built_at, outcome_id, partner_id FROM dataset_line_cache WHERE kind = %s",
        (kind,),
    ).fetchall()
    return {row["item"]: row for row in rows}


class BuildCounter:
    """How many items this process builds (not read back): `examples_of` is where each is redacted."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, refuse: bool = False) -> None:
        self.items = 0
        real = ds.examples_of

        def counted(items: Any, *args: Any) -> Any:
            if refuse:
                raise AssertionError("an item was built, not read back")
            self.items += len(items)
            return real(items, *args)

        monkeypatch.setattr(ds, "examples_of", counted)


@pytest.mark.parametrize("spec", SPECS, ids=["openai-sft", "openai-dpo", "nova-sft"])
def test_a_second_build_reads_every_line_back_and_writes_the_same_files(
    planted: list[str],  # noqa: F811
    tmp_path: Path,
    db,
    monkeypatch: pytest.MonkeyPatch,
    spec: DatasetSpec,
) -> None:
    kind = f"{spec.method}:{spec.dataset_format}"
    # the planted messages were all sent at one time: spread them, so a pair's two times differ
    db.execute(
        "UPDATE outcome_labels SET sent_at = sent_at - make_interval(hours => substring(lead_id from '[0-9]+$')::int)"
    )
    uncached = build(tmp_path, "uncached", spec, dataset_line_cache=False)
    assert entries(db, kind) == {}  # the cache off: nothing kept
    first = build(tmp_path, "first", spec, dataset_build_workers=2)  # workers store what they build
    assert first == uncached
    kept = entries(db, kind)
    assert len(kept) == uncached[2]["counts"]["candidates"] > 0
    if spec.method == "dpo":  # a pair is kept under both its outcomes, and retained by the earlier one
        assert all(e["partner_id"] is not None and k == f"{e['outcome_id']}/{e['partner_id']}" for k, e in kept.items())
        earliest = db.execute(
            """SELECT count(*) FILTER (WHERE c.sent_at = least(a.sent_at, b.sent_at)) AS ok, count(*) AS n
                 FROM dataset_line_cache c JOIN outcome_labels a ON a.outcome_id = c.outcome_id
                 JOIN outcome_labels b ON b.outcome_id = c.partner_id"""
        ).fetchone()
        assert earliest["ok"] == earliest["n"] > 0
        assert (
            db.execute(
                "SELECT count(*) AS n FROM dataset_line_cache c JOIN outcome_labels a ON a.outcome_id = c.outcome_id "
                "JOIN outcome_labels b ON b.outcome_id = c.partner_id WHERE a.sent_at <> b.sent_at"
            ).fetchone()["n"]
            > 0
        )  # the two times differ somewhere: the earliest is a choice
    # a build that would have to build anything fails: in workers, and in this process
    BuildCounter(monkeypatch, refuse=True)
    workers = build(tmp_path, "workers", spec, dataset_build_workers=2)
    alone = build(tmp_path, "alone", spec, dataset_build_workers=1)
    assert workers == alone == uncached
    # the manifest as written, key order included (jsonb keeps the read-back counts in its own order)
    assert {json.dumps(b[2]) for b in (first, workers, alone)} == {json.dumps(uncached[2])}
    assert entries(db, kind) == kept  # read, not written again
    # what is kept is redacted: no planted item in any cached record (a line's meta, before its first
    # tab, holds ids and counts, whose digits may spell a planted number)
    records = [row["line"].split("\t", 1)[1] for row in db.execute("SELECT line FROM dataset_line_cache")]
    assert [p for p in planted if any(p in record for record in records)] == []


def test_what_changed_is_built_again_and_only_that(
    planted: list[str],  # noqa: F811
    tmp_path: Path,
    db,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = DatasetSpec()
    build(tmp_path, "first", spec)
    before = entries(db)
    changed = next(iter(sorted(before)))
    db.execute("UPDATE outcome_labels SET brief = 'A new brief, for the follow-up' WHERE outcome_id = %s", (changed,))
    # a score that the lines do not read changes nothing
    db.execute("UPDATE outcome_labels SET quality_score = 0.95 WHERE outcome_id <> %s", (changed,))
    counter = BuildCounter(monkeypatch)
    again = build(tmp_path, "again", spec, dataset_build_workers=1)
    assert counter.items == 1
    after = entries(db)
    assert after[changed]["digest"] != before[changed]["digest"]
    assert after[changed]["built_at"] > before[changed]["built_at"]
    assert {k: v for k, v in after.items() if k != changed} == {k: v for k, v in before.items() if k != changed}
    assert again == build(tmp_path, "uncached", spec, dataset_line_cache=False)
    assert "A new brief, for the follow-up" in again[0].decode() + again[1].decode()


def test_other_code_builds_every_line_again(
    planted: list[str],  # noqa: F811
    tmp_path: Path,
    db,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = DatasetSpec()
    first = build(tmp_path, "first", spec)
    before = entries(db)
    # a release that changes the code that makes a line (or Python, Unicode or a library the lines
    # depend on) makes another code digest
    monkeypatch.setattr(dataset_service, "_code_digest", lambda: b"another release".ljust(16, b"\0"))
    counter = BuildCounter(monkeypatch)
    assert build(tmp_path, "again", spec, dataset_build_workers=1) == first
    assert counter.items == len(before)
    after = entries(db)
    assert after.keys() == before.keys()  # replaced, one entry an item
    assert all(after[k]["digest"] != before[k]["digest"] for k in before)


def test_a_line_the_residual_scan_flagged_is_never_kept(
    planted: list[str],  # noqa: F811
    tmp_path: Path,
    db,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = dataset_service._Builder.finish

    def one_flagged(self: Any, examples: Any) -> Any:
        batch = real(self, examples)
        batch.clean[0] = False
        return batch

    monkeypatch.setattr(dataset_service._Builder, "finish", one_flagged)
    first = build(tmp_path, "first", DatasetSpec(), dataset_build_workers=1)
    assert len(entries(db)) == first[2]["counts"]["candidates"] - 1
    monkeypatch.setattr(dataset_service._Builder, "finish", real)
    counter = BuildCounter(monkeypatch)
    build(tmp_path, "again", DatasetSpec(), dataset_build_workers=1)
    assert counter.items == 1
    assert len(entries(db)) == first[2]["counts"]["candidates"]


def test_the_cache_goes_with_its_outcome_its_opt_out_and_its_age(
    planted: list[str],  # noqa: F811
    tmp_path: Path,
    db,
) -> None:
    build(tmp_path, "sft", DatasetSpec())
    build(tmp_path, "dpo", DatasetSpec(method="dpo"))
    sft, pairs = entries(db), entries(db, "dpo:openai-chat")
    assert sft and pairs
    # an outcome deleted takes its line, and every pair it is in, either side
    pair = next(iter(pairs.values()))
    db.execute("DELETE FROM outcome_labels WHERE outcome_id = %s", (pair["partner_id"],))
    assert str(pair["partner_id"]) not in entries(db) and pair["item"] not in entries(db, "dpo:openai-chat")
    # retention: lines of outcomes sent before DATASET_CACHE_DAYS go, in batches
    old = sorted(entries(db))[:7]
    db.execute("UPDATE dataset_line_cache SET sent_at = now() - interval '200 days' WHERE item = ANY(%s)", (old,))
    first = retention.remove_cached_lines(time_budget_s=0, batch_size=3)
    assert first["removed"] == 3 and not first["done"]
    rest = retention.remove_cached_lines(time_budget_s=5, batch_size=3)
    assert rest["removed"] == 4 and rest["done"]
    gone_with_partner = 1 if str(pair["partner_id"]) in sft else 0  # a rejected message may be in no SFT set
    assert not set(old) & set(entries(db)) and len(entries(db)) == len(sft) - gone_with_partner - 7
    assert retention.remove_cached_lines(time_budget_s=5)["removed"] == 0  # the rest is recent
    # an organisation that stops opting in takes its lines with it
    db.execute("UPDATE organizations SET training_opt_in = false WHERE org_id = 'acme'")
    assert db.execute("SELECT count(*) AS n FROM dataset_line_cache").fetchone()["n"] == 0


def _build_in_a_process(out: str, spec: DatasetSpec, errors: Any) -> None:
    import traceback

    try:
        reset_settings()
        build_dataset(spec, Path(out), get_settings().model_copy(update={"dataset_build_workers": 2}))
    except BaseException:
        errors.put(traceback.format_exc())
        raise


def test_builds_side_by_side_store_and_read_the_cache_without_a_difference(
    planted: list[str],  # noqa: F811
    tmp_path: Path,
    db,
    db_url: str,
) -> None:
    spec = DatasetSpec()
    uncached = build(tmp_path, "uncached", spec, dataset_line_cache=False)
    for round_ in range(2):  # from an empty cache, then from a full one
        outs = [tmp_path / f"{round_}-{i}" for i in range(3)]
        errors, codes = in_processes([(_build_in_a_process, (str(out), spec)) for out in outs], timeout=120)
        assert errors == [] and codes == [0, 0, 0]
        for out in outs:
            assert ((out / "train.jsonl").read_bytes(), (out / "validation.jsonl").read_bytes()) == uncached[:2]
        assert len(entries(db)) == uncached[2]["counts"]["candidates"]


def test_the_time_check_counts_cached_outcomes_at_their_own_rate(
    planted: list[str],  # noqa: F811
    tmp_path: Path,
) -> None:
    slow = {"dataset_build_seconds_per_row": 2.0, "dataset_build_workers": 1}
    settings = get_settings().model_copy(update=slow)
    with pytest.raises(DatasetTooLarge, match="30 outcomes need about 60 s"):
        build_dataset(DatasetSpec(), tmp_path / "cold", settings, deadline=time.monotonic() + 30)
    build(tmp_path, "fill", DatasetSpec())
    # every outcome cached: 30 at the cached rate fit
    done = build_dataset(DatasetSpec(), tmp_path / "warm", settings, deadline=time.monotonic() + 30)
    assert done.examples > 0
    # a cached rate too slow for the time left is said so
    slower = settings.model_copy(update={"dataset_cached_seconds_per_row": 2.0})
    with pytest.raises(DatasetTooLarge, match=r"30 outcomes \(30 of them with a cached line\) need about 60 s"):
        build_dataset(DatasetSpec(), tmp_path / "slower", slower, deadline=time.monotonic() + 30)


def test_the_check_during_a_weekly_build_sees_its_new_outcomes_coming(
    planted: list[str],  # noqa: F811
    tmp_path: Path,
    db,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A weekly build reads its oldest (cached) outcomes first and its new ones last. The pace of
    the cached ones must not promise the new ones: the check weighs the rows left by their kind, and
    stops the build as soon as the new ones show they will not fit, well before the deadline (the
    pace of the rows seen so far alone would have let it run on past it)."""
    from tests.integration.test_dataset_build_workers import slow_build_of

    db.execute(
        """INSERT INTO outcome_labels (org_id, dedupe_key, campaign_id, lead_id, body, sent_at, quality_score,
                                       training_label, stage)
           SELECT 'acme', 'old-' || i, 'c', 'o' || i, 'Hello there, an older note number ' || i,
                  now() - interval '3 days', 0.9, 'positive', 'replied' FROM generate_series(1, 3000) AS i"""
    )
    build(tmp_path, "fill", DatasetSpec(), dataset_build_workers=1)  # last week's build
    slow_build_of(db, 1000, 0.03, monkeypatch)  # this week's 1,000 new outcomes: 30 s to build them
    settings = get_settings().model_copy(
        update={
            "dataset_build_workers": 1,
            "dataset_build_seconds_per_row": 1e-3,
            "dataset_cached_seconds_per_row": 1e-4,
        }
    )
    seen: list[tuple[int, float]] = []
    check = dataset_service.TimeBudget.check

    def recorded(self: dataset_service.TimeBudget, rows: int, done: int = 0, *args: Any, **kwargs: Any) -> None:
        seen.append((done, time.monotonic()))
        check(self, rows, done, *args, **kwargs)

    monkeypatch.setattr(dataset_service.TimeBudget, "check", recorded)
    started = time.monotonic()
    with pytest.raises(DatasetTooLarge, match=r"\(3030 of them with a cached line\)"):
        # planned, 1.3 s (3,030 cached, 1,000 new): the check before the build lets it start
        build_dataset(DatasetSpec(), tmp_path / "weekly", settings, deadline=started + 12)
    stopped_at, stopped = seen[-1]
    # stopped by the check during the build (from 2,000 rows on) after about 100 of the new ones (the
    # pace of all the rows seen would have gone on to about 300, 10 s in)
    assert 2000 <= stopped_at < 3030 + 200, seen
    assert stopped - started < 8


def test_the_cache_is_read_written_and_trimmed_through_indexes(
    planted: list[str],  # noqa: F811
    tmp_path: Path,
    db,
) -> None:
    """EXPLAIN evidence (as tests/integration/test_hot_query_plans.py, with the cache as a growing
    table): a build's lookups and the delete of a stale entry, retention, the opt-out trigger's deletes and the
    cascade from a deleted outcome each find their rows through an index."""
    from tests.integration import test_hot_query_plans as plans

    build(tmp_path, "fill", DatasetSpec(), dataset_build_workers=1)
    db.execute("ANALYZE dataset_line_cache")
    db.execute(
        "UPDATE outcome_labels SET brief = 'changed' "
        "WHERE outcome_id = (SELECT outcome_id FROM dataset_line_cache ORDER BY item LIMIT 1)"
    )
    growing = {*plans.GROWING, "dataset_line_cache"}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plans, "GROWING", growing)
        with plans.recorded() as statements:
            build(tmp_path, "again", DatasetSpec(), dataset_build_workers=1)  # lookups, and one upsert
            retention.remove_cached_lines(datetime.now(UTC) + timedelta(days=400), time_budget_s=5, batch_size=5)
        # lookups, the stale entry's delete, retention's batches
        assert plans.check_plans(db, statements) >= 4
        assert any(str(q).startswith("DELETE FROM dataset_line_cache WHERE kind") for q, _ in statements)
        others = [
            # what the trigger and the foreign keys' cascades run
            (
                "DELETE FROM dataset_line_cache c USING outcome_labels o "
                "WHERE o.org_id = %s AND c.outcome_id = o.outcome_id",
                ("acme",),
            ),
            (
                "DELETE FROM dataset_line_cache c USING outcome_labels o "
                "WHERE o.org_id = %s AND c.partner_id = o.outcome_id",
                ("acme",),
            ),
            # a pair's store: the entries of earlier pairs of its messages
            (
                "DELETE FROM dataset_line_cache WHERE kind = %(kind)s AND item <> ALL(%(items)s) "
                "AND (outcome_id = ANY(%(ids)s) OR partner_id = ANY(%(ids)s))",
                {"kind": "dpo:openai-chat", "items": ["a/b"], "ids": [uuid.uuid4(), uuid.uuid4()]},
            ),
            ("DELETE FROM ONLY dataset_line_cache WHERE outcome_id = %s", (str(uuid.uuid4()),)),
            ("DELETE FROM ONLY dataset_line_cache WHERE partner_id = %s", (str(uuid.uuid4()),)),
        ]
        assert plans.check_plans(db, others) == len(others)


def _on_first_build(monkeypatch: pytest.MonkeyPatch, db_url: str, statement: str, params: tuple[Any, ...]) -> None:
    """Run `statement` on a connection of its own when the build first builds anything (in this
    process or a worker forked after this), after the rows were read and before any line is stored."""
    import psycopg

    real, done = dataset_service._Builder.examples, list[bool]()

    def examples(self: Any, rows: Any) -> Any:
        if not done:
            done.append(True)
            with psycopg.connect(db_url, autocommit=True) as other:
                other.execute(statement, params)
        return real(self, rows)

    monkeypatch.setattr(dataset_service._Builder, "examples", examples)


@pytest.mark.parametrize("workers", [1, 2])
def test_an_opt_out_while_a_build_runs_leaves_no_line_of_the_organisation(
    planted: list[str],  # noqa: F811
    tmp_path: Path,
    db,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    workers: int,
) -> None:
    _on_first_build(
        monkeypatch, db_url, "UPDATE organizations SET training_opt_in = false WHERE org_id = %s", ("acme",)
    )
    build(tmp_path, "during", DatasetSpec(), dataset_build_workers=workers)
    assert db.execute("SELECT count(*) AS n FROM dataset_line_cache").fetchone()["n"] == 0


def test_an_outcome_deleted_while_a_build_runs_leaves_no_entry_and_the_rest_are_kept(
    planted: list[str],  # noqa: F811
    tmp_path: Path,
    db,
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gone = db.execute(
        "SELECT outcome_id FROM outcome_labels WHERE training_label = 'positive' ORDER BY sent_at DESC LIMIT 1"
    ).fetchone()["outcome_id"]
    _on_first_build(monkeypatch, db_url, "DELETE FROM outcome_labels WHERE outcome_id = %s", (gone,))
    built = build(tmp_path, "during", DatasetSpec(), dataset_build_workers=2)
    kept = entries(db)
    assert str(gone) not in kept and len(kept) == built[2]["counts"]["candidates"] - 1


def test_a_changed_rejected_message_builds_its_pair_again(
    planted: list[str],  # noqa: F811
    tmp_path: Path,
    db,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = DatasetSpec(method="dpo")
    build(tmp_path, "first", spec)
    pair = next(iter(entries(db, "dpo:openai-chat").values()))
    db.execute("UPDATE outcome_labels SET subject = 'Changed subject' WHERE outcome_id = %s", (pair["partner_id"],))
    counter = BuildCounter(monkeypatch)
    again = build(tmp_path, "again", spec, dataset_build_workers=1)
    assert counter.items == 1
    assert again == build(tmp_path, "uncached", spec, dataset_line_cache=False)


def test_entries_of_other_code_are_not_counted_as_cached_by_the_time_check(
    planted: list[str],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    build(tmp_path, "fill", DatasetSpec())
    monkeypatch.setattr(dataset_service, "_code_digest", lambda: b"another release".ljust(16, b"\0"))
    slow = get_settings().model_copy(update={"dataset_build_seconds_per_row": 2.0, "dataset_build_workers": 1})
    with pytest.raises(DatasetTooLarge, match="30 outcomes need about 60 s"):  # none counted as cached
        build_dataset(DatasetSpec(), tmp_path / "stale", slow, deadline=time.monotonic() + 30)


def test_code_changed_on_disk_after_the_process_started_builds_without_the_cache(
    planted: list[str],  # noqa: F811
    tmp_path: Path,
    db,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import flywheel

    uncached = build(tmp_path, "uncached", DatasetSpec(), dataset_line_cache=False)
    # as if domain/redaction.py had read otherwise when this process loaded flywheel (a pull, or a
    # copy that kept the files' times, while it ran): its lines may not be the files' code
    loaded = {**flywheel.LOADED_SOURCES, "domain/redaction.py": b"\0" * 16}
    monkeypatch.setattr(flywheel, "LOADED_SOURCES", loaded)
    assert not dataset_service.code_is_loaded()
    assert build(tmp_path, "stale-process", DatasetSpec()) == uncached
    assert entries(db) == {}


@pytest.mark.parametrize("writer", ["opt-out", "delete"])
def test_a_writer_meeting_a_store_under_way_waits_for_it_and_then_removes_what_it_stored(
    planted: list[str],  # noqa: F811
    tmp_path: Path,
    db,
    db_url: str,
    writer: str,
) -> None:
    """The store holds the organisations FOR SHARE and the outcomes FOR KEY SHARE from before its
    COPY: an opt-out or a delete that comes while it writes waits for its commit, then its trigger
    or cascade sees the entries and removes them (without those locks the opt-out's trigger would
    find nothing yet, and the delete would leave the COPY a foreign key to a deleted row)."""
    import threading

    import psycopg

    # every store pauses three seconds before its rows go in, its locks held
    db.execute(
        "CREATE FUNCTION pause_store() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(3); "
        "RETURN NULL; END $$"
    )
    db.execute(
        "CREATE TRIGGER pause_store BEFORE INSERT ON dataset_line_cache FOR EACH STATEMENT "
        "EXECUTE FUNCTION pause_store()"
    )
    target = db.execute(
        "SELECT outcome_id FROM outcome_labels WHERE training_label = 'positive' ORDER BY outcome_id LIMIT 1"
    ).fetchone()["outcome_id"]
    waited: list[float] = []

    def write() -> None:
        with psycopg.connect(db_url, autocommit=True) as other:
            deadline = time.monotonic() + 30
            paused = "SELECT 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND query LIKE 'COPY%%'"
            while time.monotonic() < deadline and not other.execute(paused).fetchone():
                time.sleep(0.02)
            if time.monotonic() >= deadline:
                return  # never saw the store pause: `waited` stays empty and the test fails
            started = time.monotonic()
            if writer == "opt-out":
                other.execute("UPDATE organizations SET training_opt_in = false WHERE org_id = 'acme'")
            else:
                other.execute("DELETE FROM outcome_labels WHERE outcome_id = %s", (target,))
            waited.append(time.monotonic() - started)

    thread = threading.Thread(target=write)
    thread.start()
    build(tmp_path, "meanwhile", DatasetSpec(), dataset_build_workers=1)
    thread.join()
    assert waited and waited[0] > 0.5  # it waited for the store
    if writer == "opt-out":
        assert db.execute("SELECT count(*) AS n FROM dataset_line_cache").fetchone()["n"] == 0
    else:
        kept = entries(db)
        assert str(target) not in kept and len(kept) > 0


def test_pairs_a_new_message_re_pairs_leave_no_unreadable_entries(
    planted: list[str],  # noqa: F811
    tmp_path: Path,
    db,
) -> None:
    """One new preferred message in a group re-pairs the messages after it (pairs are made in hash
    order): their old pairs' entries can never be read again, and go when the new pairs are stored."""
    spec = DatasetSpec(method="dpo")
    first = build(tmp_path, "first", spec)
    assert len(entries(db, "dpo:openai-chat")) == first[2]["counts"]["candidates"]
    db.execute(
        """INSERT INTO outcome_labels (org_id, dedupe_key, campaign_id, lead_id, body, sent_at, quality_score,
                                       training_label, stage, lead_industry, lead_role, framework)
           SELECT org_id, 'again-' || dedupe_key, campaign_id, lead_id, body || ' Again.', sent_at, quality_score,
                  training_label, stage, lead_industry, lead_role, framework
             FROM outcome_labels WHERE campaign_id = 'q4-close' AND training_label = 'positive' LIMIT 3"""
    )
    again = build(tmp_path, "again", spec)
    assert again == build(tmp_path, "uncached", spec, dataset_line_cache=False)
    from flywheel.dal import training as training_dal
    from flywheel.dal.connection import get_connection

    rows = training_dal.stream_outcomes(get_connection(), min_quality=0.6, since=None, until=None, for_preferences=True)
    pairs = {f"{a['outcome_id']}/{b['outcome_id']}" for group in ds.grouped(rows) for a, b in ds.pair_group(group)}
    kept = entries(db, "dpo:openai-chat")
    stored = set(kept) & pairs
    assert len(stored) >= len(pairs) - again[2]["residual_scan"]["hits"]  # every pair not flagged is stored
    in_stored = {i for item in stored for i in item.split("/")}
    # what is left of the old pairs shares no message with a pair stored now
    assert [item for item in set(kept) - pairs if set(item.split("/")) & in_stored] == []
