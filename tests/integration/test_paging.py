"""GET /suppressions and GET /quarantine page by keyset: one provider batch writes all its rows at
one time (one transaction), so a page that ends inside the batch can only be continued by the
(time, key) of its last row — the `next` cursor — never by `since` (which returned the same first
page again, and the rest of an opt-out batch was never read)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest

from flywheel.domain.paging import encode_cursor
from tests.conftest import ApiClient, count, load_event
from tests.webhook_helpers import configure, sendgrid_body, sendgrid_headers

N = 150


def sendgrid(api: ApiClient, events: list[dict[str, Any]]) -> dict[str, Any]:
    raw = sendgrid_body(events)
    status, body = api.post("/webhooks/sendgrid", body=raw, headers=sendgrid_headers(raw))
    assert status == 200, body
    return dict(body)


def one_batch_of_unsubscribes(api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch)
    template = json.loads(load_event("messages_register_single.json")["body"])
    messages = [
        {**template, "idempotency_key": f"s{i}", "provider_message_id": f"pm-s{i}", "lead_email": f"lead{i}@x.example"}
        for i in range(N)
    ]
    status, body = api.post("/messages", {"messages": messages})
    assert status == 201, body
    events = [
        {
            "email": f"lead{i}@x.example",
            "timestamp": 1795000000,
            "event": "unsubscribe",
            "sg_event_id": f"u{i}",
            "sg_message_id": f"pm-s{i}.filter1",
        }
        for i in range(N)
    ]
    sendgrid(api, events)


def one_batch_of_malformed_events(api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch)
    bad = [{"event": "open", "timestamp": "nope", "sg_event_id": f"q{i}", "org_id": "acme"} for i in range(N)]
    assert sendgrid(api, bad)["quarantined"] == N


def follow(api: ApiClient, path: str, key: str, first_query: str) -> tuple[list[dict[str, Any]], list[int]]:
    """The rows of every page from `first_query` on, following `next`, and each page's size."""
    pages: list[dict[str, Any]] = []
    query = first_query
    while True:
        status, page = api.get(f"{path}?{query}")
        assert status == 200, page
        assert page["count"] == len(page[key])
        pages.append(page)
        if page["next"] is None:
            break
        assert len(pages) <= N, "the cursor does not advance"
        query = f"{first_query}&cursor={quote(page['next'])}"
    return [row for page in pages for row in page[key]], [len(page[key]) for page in pages]


def test_suppressions_of_one_batch_are_all_reached_by_following_next(
    api: ApiClient, db, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_batch_of_unsubscribes(api, monkeypatch)
    times = db.execute("SELECT DISTINCT created_at FROM suppressions").fetchall()
    assert count(db, "suppressions") == N and len(times) == 1  # one batch, one transaction, one time

    rows, sizes = follow(api, "/suppressions", "suppressions", "org_id=acme&limit=100")
    assert sizes == [100, 50]  # the last page says so: next is null
    emails = [r["email"] for r in rows]
    assert sorted(emails) == sorted(f"lead{i}@x.example" for i in range(N)) and len(set(emails)) == N
    assert emails == sorted(emails)  # (created_at, email) order: one time, so by email

    # `since` still works as the starting point, and its pages continue with `next`
    since = quote(rows[0]["created_at"])
    from_since, sizes = follow(api, "/suppressions", "suppressions", f"org_id=acme&limit=100&since={since}")
    assert [r["email"] for r in from_since] == emails and sizes == [100, 50]
    # another organisation's listing is empty, with no next page
    assert api.get("/suppressions?org_id=beta&limit=100")[1] == {
        "org_id": "beta",
        "suppressions": [],
        "count": 0,
        "next": None,
    }


def test_quarantined_events_of_one_batch_are_all_reached_by_following_next(
    api: ApiClient, db, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_batch_of_malformed_events(api, monkeypatch)
    times = db.execute("SELECT DISTINCT received_at FROM quarantined_events").fetchall()
    assert count(db, "quarantined_events") == N and len(times) == 1

    rows, sizes = follow(api, "/quarantine", "events", "org_id=acme&limit=100")
    assert sizes == [100, 50]
    ids = [r["quarantine_id"] for r in rows]
    stored = [r["quarantine_id"] for r in db.execute("SELECT quarantine_id FROM quarantined_events")]
    assert sorted(ids) == sorted(stored) and len(set(ids)) == N and ids == sorted(ids)

    since = quote(rows[0]["received_at"])
    from_since, sizes = follow(api, "/quarantine", "events", f"org_id=acme&limit=100&since={since}")
    assert [r["quarantine_id"] for r in from_since] == ids and sizes == [100, 50]
    # a page that ends exactly at the last row: next is null, no empty page to ask for
    status, page = api.get("/quarantine?org_id=acme&limit=150")
    assert status == 200 and page["count"] == N and page["next"] is None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def bad_cursors(good: str, listing: str, other_listing: str, key: str | int) -> dict[str, str]:
    raw = base64.urlsafe_b64decode(good + "=" * (-len(good) % 4))
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0x01
    at = datetime(2030, 1, 1, tzinfo=UTC)
    return {
        "tampered": _b64(bytes(flipped)),
        "truncated": good[:-3],
        "extended": good + "AAAA",
        "other listing's": encode_cursor(other_listing, at, key),
        "not base64 json": _b64(b"hello world, this is no cursor"),
        "one character": "A",
        "naive time": encode_cursor(listing, datetime(2030, 1, 1), key),  # noqa: DTZ001 - the point
        # a checksum is no credential: a crafted cursor with a valid one is still checked field by field
        "NUL in the key": encode_cursor(listing, at, "a\x00b"),
        "lone surrogate": encode_cursor(listing, at, "\ud800"),
        "wrong key type": encode_cursor(listing, at, "7" if isinstance(key, int) else 7),
        "negative id": encode_cursor(listing, at, -1),
        "huge id": encode_cursor(listing, at, 2**70),
        "not url-safe": good.replace("-", "+") + "+/",
        "too long": "A" * 5000,
        "empty": "",
    }


@pytest.mark.parametrize(
    ("path", "listing", "other", "key", "seed"),
    [
        ("/suppressions", "suppressions", "quarantine", "lead1@x.example", one_batch_of_unsubscribes),
        ("/quarantine", "quarantine", "suppressions", 1, one_batch_of_malformed_events),
    ],
)
def test_a_cursor_the_listing_did_not_issue_is_a_422(
    api: ApiClient, db, monkeypatch: pytest.MonkeyPatch, path: str, listing: str, other: str, key: Any, seed: Any
) -> None:
    seed(api, monkeypatch)
    status, page = api.get(f"{path}?org_id=acme&limit=100")
    assert status == 200 and page["next"]
    for name, cursor in bad_cursors(page["next"], listing, other, key).items():
        if name in ("negative id", "huge id") and isinstance(key, str):
            continue  # an email key: those are the "wrong key type" case
        status, body = api.get(f"{path}?org_id=acme&limit=100&cursor={quote(cursor)}")
        assert status == 422, (name, status, body)
        assert body["error"] == "validation_error" and "cursor" in body["message"], (name, body)
    # the good one still works
    status, rest = api.get(f"{path}?org_id=acme&limit=100&cursor={quote(page['next'])}")
    assert status == 200 and rest["count"] == 50 and rest["next"] is None


PLAN_SEED = """
INSERT INTO organizations (org_id) SELECT 'org' || g FROM generate_series(0, 9) g ON CONFLICT DO NOTHING;
INSERT INTO suppressions (org_id, email, reason, created_at)
SELECT 'org' || (g % 10), 'l' || g || '@x.example', 'unsubscribe',
       timestamptz '2026-01-01' + make_interval(mins => g / 500)
  FROM generate_series(1, 50000) g;
INSERT INTO quarantined_events (provider, org_id, reason, raw, digest, received_at)
SELECT 'sendgrid', 'org' || (g % 10), 'bad timestamp', '{}', 'd' || g,
       timestamptz '2026-01-01' + make_interval(mins => g / 500)
  FROM generate_series(1, 50000) g;
ANALYZE suppressions, quarantined_events;
"""


def plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", []) for node in plan_nodes(child))]


def test_a_page_is_one_ordered_index_range(db) -> None:
    """With 50,000 rows, 500 per time: the page after a cursor (and the first page from `since`) is
    an index range of the listing's own index, read in order: no sort, no rows of other
    organisations or before the cursor read and dropped."""
    from flywheel.dal import quarantine as quarantine_dal
    from flywheel.dal import suppressions as suppressions_dal

    db.execute(PLAN_SEED)
    at = datetime(2026, 1, 1, 0, 30, tzinfo=UTC)
    calls = {
        "suppressions_org_created_email": [
            lambda c: suppressions_dal.list_suppressions(c, "org3", None, 101, after=(at, "l15003@x.example")),
            lambda c: suppressions_dal.list_suppressions(c, "org3", at, 101),
            lambda c: suppressions_dal.list_suppressions(c, "org3", None, 101),
        ],
        "quarantined_events_org_received_id": [
            lambda c: quarantine_dal.list_for_org(c, "org3", None, 101, after=(at, 15003)),
            lambda c: quarantine_dal.list_for_org(c, "org3", at, 101),
            lambda c: quarantine_dal.list_for_org(c, "org3", None, 101),
        ],
    }
    for index, listing_calls in calls.items():
        for call in listing_calls:
            statements: list[tuple[Any, Any]] = []

            class Recording:
                def execute(self, query: Any, params: Any = None) -> Any:
                    statements.append((query, params))
                    return db.execute(query, params)

            call(Recording())
            [(query, params)] = statements
            with db.transaction():
                db.execute("SET LOCAL enable_seqscan = off")
                [row] = db.execute(f"EXPLAIN (FORMAT JSON) {query}", params).fetchall()
            nodes = plan_nodes(row["QUERY PLAN"][0]["Plan"])
            kinds = [n["Node Type"] for n in nodes]
            assert "Sort" not in kinds and "Incremental Sort" not in kinds, (index, kinds)
            [scan] = [n for n in nodes if n["Node Type"] in ("Index Scan", "Index Only Scan")]
            assert scan["Index Name"] == index and "Filter" not in scan, (index, scan)
            assert "org_id" in scan["Index Cond"], scan
            if len(params) > 2:  # since or cursor: the start of the range is in the index condition
                assert ("created_at" in scan["Index Cond"]) or ("received_at" in scan["Index Cond"]), scan


def test_a_suppression_committed_late_with_an_earlier_date_is_still_listed(
    api: ApiClient, db, db_url, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(An outside review's case.) A row is dated when its transaction begins and seen when it
    commits: a long transaction's suppression can commit after younger ones were listed. Rows are
    listed once LISTING_SETTLE_S old (above the longest transaction that writes them), so a sender
    following `next` from the start, or polling on, reads it (before, it was never returned)."""
    import time

    import psycopg

    from flywheel.settings import reset_settings

    monkeypatch.setenv("LISTING_SETTLE_S", "2")
    reset_settings()
    db.execute("INSERT INTO organizations (org_id) VALUES ('acme') ON CONFLICT DO NOTHING")
    with psycopg.connect(db_url) as slow:  # a longer transaction (a big provider batch) began first
        slow.execute("INSERT INTO suppressions (org_id, email, reason) VALUES ('acme', 'slow@x.example', 'r')")
        for name in ("a", "b", "c"):
            db.execute(
                "INSERT INTO suppressions (org_id, email, reason) VALUES ('acme', %s, 'r')", (f"{name}@x.example",)
            )
        status, page = api.get("/suppressions?org_id=acme&limit=2")
        assert status == 200 and page["suppressions"] == [], page  # nothing has settled yet
        slow.commit()
    time.sleep(2.2)
    seen, cursor = [], None
    while True:
        status, page = api.get("/suppressions?org_id=acme&limit=2" + (f"&cursor={quote(cursor)}" if cursor else ""))
        seen += [row["email"] for row in page["suppressions"]]
        if not (cursor := page["next"]):
            break
    assert seen == ["slow@x.example", "a@x.example", "b@x.example", "c@x.example"]
    reset_settings()
