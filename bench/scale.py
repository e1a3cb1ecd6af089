"""Costs as the tables grow: the hot paths measured on a small store (100,000 outcome events) and
again after the same store has grown to a sender's size (default 5,000,000 outcome events and
1,000,000 outcome labels, loaded with COPY), in one run on one server.

The data follows a real sender: a few hundred organisations of very different sizes (Zipf),
twenty campaigns each, leads written to about 2.5 times, messages sent over six months (weekdays,
office hours), and SendGrid's event mix per message (processed, deferred, delivered, bounces and
blocks, human and Apple-privacy machine opens, clicks with link scanners, unsubscribes, spam
reports), plus replies and their classifications, Calendly meetings, HubSpot deals, and 3 %
orphans (events for mail the store does not know). Raw payloads are SendGrid-shaped JSON.

    nice python bench/scale.py                      # 5M events / 1M labels (~15 min, ~8 GB disk)
    nice python bench/scale.py --events 20000000    # a larger run: one flag
    nice python bench/scale.py --events 500000      # a quick look

Last line: `apply 1k events: <ms> ms at 100k rows, <ms> ms at <N> rows; growth <ratio>x`.
Uses its own embedded PostgreSQL (deleted at exit) unless BENCH_DATABASE_URL is set.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import json
import os
import statistics
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from _harness import ROOT, fresh_database, timed

from flywheel.domain.labels import CATEGORIES as REPLY_CATEGORIES  # the weights below follow its order

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DAYS = 180
ORGS = 300
CAMPAIGNS_PER_ORG = 20
MODELS = 26  # one weekly model over the six months
RUNNING_EXPERIMENT_DAYS = 28
SMALL_EVENTS = 100_000
CHANGED_PER_REFRESH = 1_000  # outcomes whose counts change between two rollup refreshes
REGISTERED_PER_REFRESH = 50_000  # change rows of messages registered between two refreshes
CHUNK = 2_000  # messages per generated COPY chunk (about 10,000 events)
FIRST = ["dana", "sam", "alex", "maria", "li", "omar", "eva", "john", "priya", "kenji", "sara", "luca"]
LAST = ["reyes", "smith", "garcia", "chen", "novak", "okafor", "rossi", "kim", "muller", "silva"]
INDUSTRIES = [
    "fintech",
    "saas",
    "healthcare",
    "retail",
    "logistics",
    "manufacturing",
    "insurance",
    "media",
    "education",
    "energy",
    "legal",
    "real_estate",
]
ROLES = ["cfo", "ceo", "cto", "vp_sales", "head_of_ops", "controller", "it_director", "founder", "cmo", "coo"]
FRAMEWORKS = ["PAS", "AIDA", "BAB", "QVC", "4Ps"]
TONES = ["professional", "casual", "direct", "friendly"]
SIZES = ["1-10", "11-50", "51-200", "201-1000", "1000+"]
AGENTS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
MACHINE_AGENT = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
REPLY_WEIGHTS = [0.12, 0.05, 0.08, 0.1, 0.08, 0.17, 0.06, 0.2, 0.05, 0.02, 0.05, 0.02]

LABEL_COLUMNS = (
    "outcome_id, org_id, dedupe_key, campaign_id, lead_id, lead_email, subject, body, framework, tone, brief, "
    "agent_decisions, provider_message_id, email_message_id, sent_at, model_id, model_registry_id, experiment_id, "
    "experiment_arm, lead_first_name, lead_last_name, lead_company, lead_industry, lead_role, lead_company_size, "
    "lead_icp_score, processed_at, delivered_at, bounced_at, bounce_type, first_opened_at, open_count, "
    "first_machine_open_at, machine_open_count, first_clicked_at, click_count, unsubscribed_at, spam_reported_at, "
    "replied_at, reply_category, meeting_booked_at, meeting_scheduled_start, meeting_scheduled_end, "
    "meeting_completed_at, deal_status, deal_value, deal_currency, deal_closed_at, stage, last_event_at, "
    "event_count, training_label, training_weight, quality_score"
)
EVENT_COLUMNS = (
    "provider, event_key, event_type, occurred_at, received_at, org_id, outcome_id, status, "
    "match_outcome_id, match_provider_message_id, match_email, data, payload"
)


def ts(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat()


def key(rng: np.random.Generator) -> str:
    return base64.urlsafe_b64encode(rng.bytes(16)).decode().rstrip("=")


def org_weights() -> np.ndarray:
    weights = 1.0 / np.arange(1, ORGS + 1) ** 1.1
    return weights / weights.sum()


@dataclass
class Loaded:
    chunks: int = 0
    messages: int = 0
    events: int = 0


class Store:
    """Generates messages in deterministic chunks (chunk k is the same in every run) and COPYs them."""

    def __init__(self, conn: Any, running_cutoff: int) -> None:
        self.conn = conn
        self.loaded = Loaded()
        # messages with an index below this are the running experiment's leads (a fixed-size
        # experiment, so its snapshot measures table growth and not a bigger experiment)
        self.running_cutoff = running_cutoff
        self.weights = org_weights()

    def grow(self, target_events: int, min_messages: int = 0) -> None:
        while self.loaded.events < target_events or self.loaded.messages < min_messages:
            labels, events = self.chunk(self.loaded.chunks)
            with self.conn.cursor() as cur:
                with cur.copy(f"COPY outcome_labels ({LABEL_COLUMNS}) FROM STDIN") as copy:
                    copy.write("".join(labels))
                with cur.copy(f"COPY outcome_events ({EVENT_COLUMNS}) FROM STDIN") as copy:
                    for start in range(0, len(events), 50_000):
                        copy.write("".join(events[start : start + 50_000]))
            self.loaded.chunks += 1
            self.loaded.messages += len(labels)
            self.loaded.events += len(events)

    def chunk(self, index: int) -> tuple[list[str], list[str]]:
        rng = np.random.default_rng(1000 + index)
        n, base = CHUNK, index * CHUNK
        orgs = rng.choice(ORGS, size=n, p=self.weights)
        age_days = rng.uniform(0, DAYS, size=n)
        sent = NOW.timestamp() - age_days * 86400
        # weekends are quiet: move most weekend sends to the Monday after
        weekday = ((sent // 86400) + 3) % 7  # 1970-01-01 was a Thursday
        sent = np.where((weekday >= 5) & (rng.random(n) < 0.85), sent + (7 - weekday) * 86400, sent)
        sent = np.minimum(sent, NOW.timestamp() - 600)
        labels: list[str] = []
        events: list[str] = []
        for j in range(n):
            line = self.message(rng, base + j, int(orgs[j]), float(sent[j]), events)
            if line is not None:
                labels.append(line)
        return labels, events

    def message(self, rng: np.random.Generator, i: int, org: int, sent: float, events: list[str]) -> str | None:
        """One message's COPY line (None for mail the store never registered: its events are orphans)."""
        org_id = f"org-{org:03d}"
        outcome_id = str(uuid.UUID(bytes=rng.bytes(16), version=4))
        lead_no = int(rng.integers(0, 400_000))
        first, last = FIRST[lead_no % len(FIRST)], LAST[lead_no % len(LAST)]
        company = f"company{lead_no % 50_000}"
        email = f"{first}.{last}{lead_no}@{company}.example"
        campaign = f"{org_id}-c{int(rng.integers(CAMPAIGNS_PER_ORG)):02d}"
        industry, role = INDUSTRIES[lead_no % len(INDUSTRIES)], ROLES[lead_no % len(ROLES)]
        framework, tone = FRAMEWORKS[int(rng.integers(len(FRAMEWORKS)))], TONES[int(rng.integers(len(TONES)))]
        pmid = key(rng)
        week = min(MODELS - 1, int((sent - (NOW.timestamp() - DAYS * 86400)) // (7 * 86400)))
        recent = sent > NOW.timestamp() - RUNNING_EXPERIMENT_DAYS * 86400
        experiment = ("exp-running" if i < self.running_cutoff else "exp-previous") if recent else None
        arm = ("challenger" if lead_no % 2 else "champion") if experiment else None
        model = f"flywheel-v1.{week}.0"
        subject = f"{first.title()}, {industry} teams closing the books 3 days faster"
        body = (
            f"Hi {first.title()},\\n\\nFinance teams at companies like {company.title()} cut month-end close by "
            f"three days with automated reconciliation, and the {role} usually sees it first in the variance "
            f"report. We moved a {SIZES[lead_no % 5]} {industry} team from spreadsheets to a daily close in six "
            f"weeks; I can show you how their controller set it up and what it cost them.\\n\\nWorth 15 minutes "
            f"on Tuesday or Thursday?\\n\\nSam\\nAcme Finance Automation\\nhttps://acme.example/case-studies"
        )
        agent = (
            '{"PersonalizerAgent": {"hook": "month-end close"}, "CopywriterAgent": {"framework": "'
            f'{framework}", "tone": "{tone}"}}}}'
        )
        state = self.outcome_events(rng, org_id, outcome_id, pmid, email, campaign, sent, events)
        if state is None:
            return None
        cols = [
            outcome_id,
            org_id,
            f"key:{org_id}-{i}",
            campaign,
            f"lead-{lead_no}",
            email,
            subject,
            body,
            framework,
            tone,
            f"{industry} {role} month-end close",
            agent,
            pmid,
            f"{pmid.lower()}@mail.{org_id}.example",
            ts(sent),
            "amazon.nova-micro-custom",
            model,
            experiment,
            arm,
            first.title(),
            last.title(),
            company.title(),
            industry,
            role,
            SIZES[lead_no % 5],
            f"{(lead_no % 100) / 100:.2f}",
            *state,
        ]
        return "\t".join("\\N" if c is None else str(c) for c in cols) + "\n"

    def outcome_events(
        self,
        rng: np.random.Generator,
        org_id: str,
        outcome_id: str,
        pmid: str,
        email: str,
        campaign: str,
        sent: float,
        out: list[str],
    ) -> list[Any] | None:
        """Emit the message's events as COPY lines; return its derived columns (as the lifecycle would)."""
        count = 0
        last = sent

        def emit(
            provider: str,
            kind: str,
            at: float,
            data: str,
            payload: str,
            event_key: str | None = None,
            orphan: bool = False,
        ) -> None:
            nonlocal count, last
            at = min(at, NOW.timestamp() - 1)
            received = at + float(rng.uniform(1, 40))
            out.append(
                "\t".join(
                    [
                        provider,
                        event_key or key(rng),
                        kind,
                        ts(at),
                        ts(received),
                        "\\N" if orphan else org_id,
                        "\\N" if orphan else outcome_id,
                        "orphan" if orphan else "applied",
                        "\\N" if provider != "sendgrid" or rng.random() < 0.1 else outcome_id,
                        pmid if provider == "sendgrid" else "\\N",
                        email,
                        data,
                        payload,
                    ]
                )
                + "\n"
            )
            count += 1
            last = max(last, at)

        def sendgrid(kind: str, at: float, data: str = "{}", extra: str = "", orphan: bool = False) -> None:
            sg_id = key(rng)
            payload = (
                f'{{"email": "{email}", "timestamp": {int(at)}, "event": "{kind}", "sg_event_id": "{sg_id}", '
                f'"sg_message_id": "{pmid}.filterdrecv-5bd4b7c5c-7pbvh-1-{int(sent)}-7.0", '
                f'"smtp-id": "<{pmid}@ismtpd0001p1iad2.sendgrid.net>", "category": ["{campaign}"], '
                f'"outcome_id": "{outcome_id}", "org_id": "{org_id}"{extra}}}'
            )
            emit("sendgrid", kind, at, data, payload, sg_id, orphan)

        orphan = rng.random() < 0.03  # mail this store does not know (another system on the account)
        r = rng.random()
        state: dict[str, Any] = {}
        t = sent + float(rng.uniform(0.5, 5))
        if r < 0.005:
            sendgrid("dropped", t, '{"reason": "Bounced Address"}', ', "reason": "Bounced Address"', orphan)
            state["stage"] = "dropped"
        else:
            sendgrid("processed", t, orphan=orphan)
            state["processed_at"] = ts(t)
            for _ in range(int(rng.poisson(0.08))):
                t += float(rng.uniform(60, 1800))
                sendgrid(
                    "deferred", t, extra=', "response": "421 4.7.0 try again later", "attempt": "1"', orphan=orphan
                )
            if r < 0.025:
                blocked = rng.random() < 0.4
                kind_text = "blocked" if blocked else "bounce"
                sendgrid(
                    "bounce",
                    t + 3,
                    f'{{"bounce_type": "{kind_text}", "reason": "550 5.1.1 user unknown"}}',
                    f', "type": "{kind_text}", "reason": "550 5.1.1 user unknown", "status": "5.1.1"',
                    orphan,
                )
                state.update(bounced_at=ts(t + 3), bounce_type=kind_text, stage="bounced")
            else:
                delivered = t + float(rng.uniform(1, 30))
                sendgrid("delivered", delivered, extra=', "response": "250 2.0.0 OK", "tls": 1', orphan=orphan)
                state.update(delivered_at=ts(delivered), stage="delivered")
                machine = int(rng.geometric(0.35)) if rng.random() < 0.5 else 0
                for k in range(machine):
                    at = delivered + float(rng.uniform(5, 3600 * (k + 1)))
                    sendgrid(
                        "open",
                        at,
                        '{"machine_open": true}',
                        f', "sg_machine_open": true, "useragent": "{MACHINE_AGENT}", "ip": "17.58.1.{k}"',
                        orphan,
                    )
                    state.setdefault("first_machine_open_at", ts(at))
                state["machine_open_count"] = machine
                human = int(rng.geometric(0.4)) if rng.random() < 0.35 else 0
                first_open = None
                for k in range(human):
                    at = delivered + float(rng.exponential(86400)) * (k + 1)
                    sendgrid(
                        "open",
                        at,
                        '{"machine_open": false}',
                        f', "sg_machine_open": false, "useragent": "{AGENTS}", "ip": "203.0.113.{k}"',
                        orphan,
                    )
                    first_open = at if first_open is None else min(first_open, at)
                if first_open is not None:
                    state.update(first_opened_at=ts(first_open), open_count=human, stage="opened")
                clicks = int(rng.geometric(0.55)) if rng.random() < 0.12 else 0
                for _ in range(clicks):
                    at = delivered + float(rng.exponential(7200))
                    sendgrid(
                        "click",
                        at,
                        '{"url": "https://acme.example/case-studies"}',
                        ', "url": "https://acme.example/case-studies", "url_offset": {"index": 0, "type": '
                        f'"html"}}, "useragent": "{AGENTS}", "ip": "198.51.100.7"',
                        orphan,
                    )
                    state.setdefault("first_clicked_at", ts(at))
                if clicks:
                    state.update(click_count=clicks, stage="clicked")
                u = rng.random()
                if u < 0.004:
                    at = delivered + float(rng.exponential(86400))
                    sendgrid("unsubscribe", at, orphan=orphan)
                    state.update(unsubscribed_at=ts(at), stage="unsubscribed")
                elif u < 0.0045:
                    at = delivered + float(rng.exponential(86400))
                    sendgrid("spamreport", at, orphan=orphan)
                    state.update(spam_reported_at=ts(at), stage="spam_reported")
                if not orphan and rng.random() < 0.03:
                    self.reply(rng, emit, delivered, state)
        label, weight, quality = "neutral", 1.0, 0.0
        if state.get("delivered_at"):
            quality += 0.1
        if state.get("first_opened_at") or state.get("first_clicked_at"):
            quality += 0.1
        if state.get("first_clicked_at"):
            quality += 0.15
        if state.get("replied_at"):
            quality += 0.2 + (0.2 if state["reply_category"] in ("interested", "meeting_request") else 0)
            label, weight = (
                ("positive", 3.0)
                if state["reply_category"] in ("interested", "meeting_request")
                else (
                    ("negative", 2.0)
                    if state["reply_category"] in ("objection", "not_interested")
                    else ("neutral", 1.0)
                )
            )
        if state.get("meeting_booked_at"):
            quality += 0.7 if state.get("meeting_completed_at") else 0.3
            label, weight = "positive", 7.0 if state.get("meeting_completed_at") else 5.0
        if state.get("deal_status") == "won":
            quality += 0.5
            label, weight = "positive", 10.0
        if label == "neutral" and (
            state.get("bounced_at")
            or state.get("unsubscribed_at")
            or state.get("spam_reported_at")
            or state.get("stage") == "dropped"
        ):
            label, weight = "negative", 0.5
        names = (
            "processed_at",
            "delivered_at",
            "bounced_at",
            "bounce_type",
            "first_opened_at",
            "open_count",
            "first_machine_open_at",
            "machine_open_count",
            "first_clicked_at",
            "click_count",
            "unsubscribed_at",
            "spam_reported_at",
            "replied_at",
            "reply_category",
            "meeting_booked_at",
            "meeting_scheduled_start",
            "meeting_scheduled_end",
            "meeting_completed_at",
            "deal_status",
            "deal_value",
            "deal_currency",
            "deal_closed_at",
        )
        defaults = {"open_count": 0, "machine_open_count": 0, "click_count": 0}
        if orphan:
            return None
        return [state.get(n, defaults.get(n)) for n in names] + [
            state.get("stage", "sent"),
            ts(last) if count else None,
            count,
            label,
            weight,
            round(min(quality, 1), 4),
        ]

    def reply(
        self, rng: np.random.Generator, emit: Callable[..., None], delivered: float, state: dict[str, Any]
    ) -> None:
        at = delivered + float(rng.exponential(2 * 86400))
        category = str(rng.choice(REPLY_CATEGORIES, p=REPLY_WEIGHTS))
        reply_key = f"<{key(rng)}@mail.gmail.com>"
        text = "Thanks for reaching out. We are reviewing close tooling next quarter, can you send pricing?"
        emit(
            "sendgrid_inbound",
            "reply",
            at,
            json.dumps({"text": text, "subject": "Re: closing the books"}),
            json.dumps({"from": "lead", "subject": "Re: closing the books", "text": text, "headers": "..."}),
            reply_key,
        )
        emit(
            "classifier",
            "reply_classified",
            at + 30,
            json.dumps(
                {
                    "reply_key": f"sendgrid_inbound:{reply_key}",
                    "category": category,
                    "sentiment_score": 0.4,
                    "source": "llm",
                }
            ),
            json.dumps({"category": category, "confidence": 0.9}),
            f"sendgrid_inbound:{reply_key}",
        )
        state.update(replied_at=ts(at), reply_category=category, stage="replied")
        if category in ("interested", "meeting_request") and rng.random() < 0.35:
            meeting_id = f"https://api.calendly.com/scheduled_events/{key(rng)}"
            start = at + 3 * 86400
            data = json.dumps({"meeting_id": meeting_id, "start_time": ts(start), "end_time": ts(start + 1800)})
            emit(
                "calendly",
                "meeting_booked",
                at + 3600,
                data,
                data,
                f"invitee.created:{meeting_id}/invitees/{key(rng)}:{ts(at)}",
            )
            state.update(
                meeting_booked_at=ts(at + 3600),
                meeting_scheduled_start=ts(start),
                meeting_scheduled_end=ts(start + 1800),
                stage="meeting_booked",
            )
            if start + 1800 < NOW.timestamp():
                state.update(meeting_completed_at=ts(start + 1800), stage="meeting_completed")
            if rng.random() < 0.3:
                won = rng.random() < 0.55
                closed = start + float(rng.uniform(7, 60)) * 86400
                value = int(rng.integers(5, 80)) * 1000
                emit(
                    "hubspot",
                    "deal_won" if won else "deal_lost",
                    closed,
                    json.dumps({"deal_id": key(rng), "value": value, "currency": "USD", "close_date": ts(closed)}),
                    json.dumps(
                        {
                            "subscriptionType": "deal.propertyChange",
                            "propertyName": "dealstage",
                            "propertyValue": "closedwon" if won else "closedlost",
                        }
                    ),
                )
                state.update(
                    deal_status="won" if won else "lost",
                    deal_value=value,
                    deal_currency="USD",
                    deal_closed_at=ts(closed),
                    stage="deal_won" if won else "deal_lost",
                )


# --- set-up --------------------------------------------------------------------------------------

BULK_INDEXED = ("outcome_labels", "outcome_events", "assignments")


def secondary_indexes(conn: Any) -> list[tuple[str, str]]:
    """Indexes that back no constraint: dropped for a bulk load and rebuilt after (as a DBA would)."""
    return [
        (r["indexname"], r["indexdef"])
        for r in conn.execute(
            """SELECT i.indexname, i.indexdef FROM pg_indexes i
            WHERE i.tablename = ANY(%s) AND NOT EXISTS (
                  SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)""",
            (list(BULK_INDEXED),),
        ).fetchall()
    ]


def prepare(conn: Any) -> None:
    """Organisations, the weekly models, the running experiment and a concluded one."""
    weights = org_weights()
    conn.execute(
        "INSERT INTO organizations (org_id, training_opt_in) SELECT 'org-' || lpad(i::text, 3, '0'), "
        "i %% 5 <> 0 FROM generate_series(0, %s) i",
        (ORGS - 1,),
    )
    assert abs(weights.sum() - 1) < 1e-9
    for week in range(MODELS):
        role = {MODELS - 2: "champion", MODELS - 1: "challenger"}.get(week)
        status = "deployed" if role else "archived"
        conn.execute(
            """INSERT INTO model_registry (model_id, version, major, minor, patch, status, role, provider,
                                           provider_model_id, base_model, traffic_percentage)
               VALUES (%s, %s, 1, %s, 0, %s, %s, 'bedrock', %s, 'amazon.nova-micro-v1:0:128k', %s)""",
            (
                f"flywheel-v1.{week}.0",
                f"v1.{week}.0",
                week,
                status,
                role,
                f"arn:model/{week}",
                {"champion": 50, "challenger": 50}.get(role or "", 0),
            ),
        )
    for exp_id, status, champion, challenger in (
        ("exp-previous", "rolled_back", MODELS - 3, MODELS - 2),
        ("exp-running", "running", MODELS - 2, MODELS - 1),
    ):
        conn.execute(
            """INSERT INTO experiments (experiment_id, champion_model_id, challenger_model_id, salt, stage, status,
                                        allocation, planned_sample, started_at, stage_started_at)
               VALUES (%s, %s, %s, %s, 'ab', %s, 0.5, 40000, %s, %s)""",
            (
                exp_id,
                f"flywheel-v1.{champion}.0",
                f"flywheel-v1.{challenger}.0",
                exp_id,
                status,
                NOW - timedelta(days=RUNNING_EXPERIMENT_DAYS),
                NOW - timedelta(days=RUNNING_EXPERIMENT_DAYS),
            ),
        )


def load(conn: Any, store: Store, target_events: int, min_messages: int = 0) -> float:
    """Grow the store with COPY (secondary indexes rebuilt after), record assignments, ANALYZE."""
    start = time.perf_counter()
    indexes = secondary_indexes(conn)
    conn.execute("SET synchronous_commit = off")
    conn.execute("SET session_replication_role = replica")  # rows are consistent by construction: no FK triggers
    conn.execute("SET maintenance_work_mem = '512MB'")
    for name, _ in indexes:
        conn.execute(f'DROP INDEX "{name}"')
    with conn.transaction():
        store.grow(target_events, min_messages)
    for _, definition in indexes:
        conn.execute(definition)
    conn.execute("""INSERT INTO assignments (experiment_id, org_id, lead_id, arm, bucket, stage, assigned_at)
                    SELECT DISTINCT ON (experiment_id, org_id, lead_id) experiment_id, org_id, lead_id,
                           experiment_arm, 0, 'ab', sent_at
                      FROM outcome_labels WHERE experiment_id IS NOT NULL
                     ORDER BY experiment_id, org_id, lead_id, sent_at
                    ON CONFLICT DO NOTHING""")
    conn.execute("RESET synchronous_commit")
    conn.execute("RESET session_replication_role")
    conn.execute("VACUUM (ANALYZE) outcome_labels")
    conn.execute("VACUUM (ANALYZE) outcome_events")
    conn.execute("VACUUM (ANALYZE) assignments")
    return time.perf_counter() - start


# --- measurements --------------------------------------------------------------------------------


def recent_messages(conn: Any, limit: int, offset: int) -> list[dict[str, Any]]:
    """Messages sent in the last three days: the ones SendGrid is still reporting on."""
    return conn.execute(
        """SELECT outcome_id, org_id, provider_message_id, lead_email FROM outcome_labels
            WHERE sent_at > %s ORDER BY outcome_id LIMIT %s OFFSET %s""",
        (NOW - timedelta(days=3), limit, offset),
    ).fetchall()


def sendgrid_batch(pool: list[dict[str, Any]], seed: int) -> bytes:
    """1,000 events as SendGrid posts them, for 250 recently sent messages: mostly opens and deliveries,
    10 % without our custom arg (matched by sg_message_id), 2 % for mail we do not know."""
    rng = np.random.default_rng(seed)
    messages = [pool[int(i)] for i in rng.choice(len(pool), size=min(250, len(pool)), replace=False)]
    kinds = [
        "delivered",
        "open",
        "open",
        "open",
        "open",
        "click",
        "processed",
        "deferred",
        "bounce",
        "unsubscribe",
        "spamreport",
        "group_unsubscribe",
    ]
    weights = np.array([14, 22, 18, 14, 10, 8, 6, 3, 2, 1, 0.3, 0.7])
    out = []
    for k in range(1000):
        m = messages[int(rng.integers(len(messages)))]
        kind = str(rng.choice(kinds, p=weights / weights.sum()))
        event: dict[str, Any] = {
            "email": m["lead_email"],
            "timestamp": int(NOW.timestamp()) - int(rng.integers(60, 86400)),
            "event": kind,
            "sg_event_id": f"bench-{seed}-{k}-{key(rng)}",
            "sg_message_id": f"{m['provider_message_id']}.filterdrecv-5bd4b7c5c-7pbvh-1-1-7.0",
            "category": ["campaign"],
            "useragent": AGENTS,
            "ip": "203.0.113.9",
        }
        if rng.random() < 0.02:
            event["sg_message_id"] = f"unknown{key(rng)}.filterdrecv-1"
            event["email"] = f"nobody{k}@elsewhere.example"
        elif rng.random() < 0.9:
            event["outcome_id"], event["org_id"] = str(m["outcome_id"]), m["org_id"]
        if kind == "open":
            event["sg_machine_open"] = bool(rng.random() < 0.5)
        if kind == "bounce":
            event.update(type="blocked", reason="550 blocked", status="5.7.1")
        if kind == "click":
            event["url"] = "https://acme.example/case-studies"
        if kind == "group_unsubscribe":
            event["asm_group_id"] = 42
        out.append(event)
    return json.dumps(out).encode()


def summary(plan: dict[str, Any]) -> str:
    """A plan's nodes on one line, with the index each scan uses."""
    name = (
        plan["Node Type"]
        + (f" using {plan['Index Name']}" if "Index Name" in plan else "")
        + (f" on {plan['Relation Name']}" if "Relation Name" in plan and "Index Name" not in plan else "")
    )
    children = [summary(child) for child in plan.get("Plans", [])]
    return name + (f" > ({'; '.join(children)})" if len(children) > 1 else f" > {children[0]}" if children else "")


@contextmanager
def recorded() -> Iterator[list[tuple[str, Any, Any]]]:
    """(dal function, query, params) of every statement executed meanwhile."""
    import psycopg

    statements: list[tuple[str, Any, Any]] = []
    original = psycopg.Cursor.execute

    def execute(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        frame = sys._getframe(1)
        while frame and not frame.f_globals.get("__name__", "").startswith("flywheel.dal."):
            frame = frame.f_back  # type: ignore[assignment]
        where = f"{frame.f_globals['__name__'].rsplit('.', 1)[1]}.{frame.f_code.co_name}" if frame else "?"
        statements.append((where, query, params))
        return original(self, query, params, **kwargs)

    psycopg.Cursor.execute = execute  # type: ignore[method-assign]
    try:
        yield statements
    finally:
        psycopg.Cursor.execute = original  # type: ignore[method-assign]


def calendly_pair(outcome_id: str, seed: int) -> list[Any]:
    """A booking and its cancellation, as the Calendly adapter normalises them."""
    from flywheel.domain.ingest import IncomingEvent

    meeting = f"https://api.calendly.com/scheduled_events/bench-{seed}"
    start = NOW + timedelta(days=2)
    data = {
        "meeting_id": meeting,
        "start_time": start.isoformat(),
        "end_time": (start + timedelta(minutes=30)).isoformat(),
    }
    return [
        IncomingEvent(
            provider="calendly",
            event_key=f"invitee.created:{meeting}:{seed}",
            event_type="meeting_booked",
            occurred_at=NOW - timedelta(hours=2),
            payload=data,
            data=data,
            outcome_id=outcome_id,
        ),
        IncomingEvent(
            provider="calendly",
            event_key=f"invitee.canceled:{meeting}:{seed}",
            event_type="meeting_canceled",
            occurred_at=NOW - timedelta(hours=1),
            payload={"meeting_id": meeting},
            data={"meeting_id": meeting},
        ),
    ]


@dataclass
class Case:
    name: str
    run: Callable[[], object]
    repeats: int
    prepare: Callable[[], object] | None = None  # before each measured call, not measured
    units: tuple[int, str] | None = None  # what one call processes, for the per-unit cost printed


def use(url: str) -> None:
    """Point the code under test at this database, as a cold container would start."""
    from flywheel.dal.connection import close_connection
    from flywheel.services import experiments
    from flywheel.settings import reset_settings

    os.environ["DATABASE_URL"] = url
    reset_settings()
    close_connection()
    experiments.forget_cache()
    experiments.route("org-000", "warm-up")  # the registry snapshot every lead shares


def hot_paths(conn: Any, api: Any) -> list[Case]:
    """Every measured operation against the database `conn` is on (call `use` first)."""
    from flywheel.dal import experiments as experiments_dal
    from flywheel.dal.connection import transaction
    from flywheel.services import experiments, report_counts, retention, training
    from flywheel.services.ingest import ingest_events
    from flywheel.webhooks import sendgrid

    pool = recent_messages(conn, 2000, 0)
    headers = {"Content-Type": ["application/json"]}
    base = json.loads(json.loads((ROOT / "events" / "messages_register_single.json").read_text())["body"])
    ids = [
        (r["outcome_id"], r["org_id"])
        for r in conn.execute("SELECT outcome_id, org_id FROM outcome_labels ORDER BY random() LIMIT 500").fetchall()
    ]
    assigned = conn.execute("SELECT count(*) AS n FROM assignments WHERE experiment_id = 'exp-running'").fetchone()["n"]
    leads = [
        r["lead_id"]
        for r in conn.execute(
            "SELECT lead_id FROM assignments WHERE experiment_id = 'exp-running' AND org_id = 'org-000' LIMIT 300"
        )
    ]
    unique = itertools.count()  # every call writes new keys, in every round and on both sides
    # outcomes of the last 90 days before today whose replies come and go before each refresh
    replied = [
        r["outcome_id"]
        for r in conn.execute(
            "SELECT outcome_id FROM outcome_labels WHERE sent_at >= %s AND sent_at < %s ORDER BY random() LIMIT %s",
            (NOW - timedelta(days=90), NOW.replace(hour=0) - timedelta(days=1), CHANGED_PER_REFRESH * 12),
        )
    ]
    # a weekday a month back: what the safety net re-counts per step
    recount_day = next(d for d in ((NOW - timedelta(days=30 + k)).date() for k in range(7)) if d.weekday() < 5)
    day_messages = conn.execute(
        "SELECT count(*) AS n FROM outcome_labels WHERE sent_at >= %s AND sent_at < %s",
        (
            datetime.combine(recount_day, datetime.min.time(), UTC),
            datetime.combine(recount_day, datetime.min.time(), UTC) + timedelta(days=1),
        ),
    ).fetchone()["n"]

    def registration_rows() -> None:
        """The change rows a peak hour's registrations leave (one a message: diverse leads), for today."""
        conn.execute(
            """INSERT INTO report_count_changes (org_id, day, model_registry_id, lead_industry, lead_role, framework,
                                                 tone, reply_category, messages, replies, meetings, deals_won, revenue)
               SELECT 'org-' || lpad((i %% 300)::text, 3, '0'), %s, 'flywheel-v1.25.0', 'saas', 'cfo', 'PAS', 'direct',
                      NULL, 1, 0, 0, 0, 0
                 FROM generate_series(1, %s) AS i""",
            (NOW.date(), REGISTERED_PER_REFRESH),
        )

    def change_outcomes() -> None:
        """An hour's worth of outcome changes on past days (replies arriving or corrected away)."""
        k = next(unique) % 12
        conn.execute(
            """UPDATE outcome_labels
                  SET replied_at = CASE WHEN replied_at IS NULL THEN sent_at + interval '1 day' END,
                      reply_category = CASE WHEN replied_at IS NULL THEN 'interested' END
                WHERE outcome_id = ANY(%s)""",
            (replied[k * CHANGED_PER_REFRESH : (k + 1) * CHANGED_PER_REFRESH],),
        )

    def apply() -> None:
        raw = sendgrid_batch(pool, seed=next(unique))
        events, quarantined = sendgrid.normalise(sendgrid.parse_body(raw))
        assert not quarantined, quarantined
        result = ingest_events(events, window_days=90)
        assert result.stored == 1000, result

    def meetings() -> None:
        k = next(unique)
        booking, cancellation = calendly_pair(str(pool[k % len(pool)]["outcome_id"]), k)
        assert ingest_events([booking], window_days=90).applied == 1
        assert ingest_events([cancellation], window_days=90).applied == 1  # found through its booking

    def register() -> None:
        k = next(unique)
        batch = [
            {
                **base,
                "org_id": f"org-{i % 40:03d}",
                "lead_id": f"new-{k}-{i}",
                "idempotency_key": f"b-{k}-{i}",
                "provider_message_id": f"new{k}x{i}",
                "email_message_id": f"<new-{k}-{i}@mail.example>",
                "sent_at": (NOW - timedelta(minutes=5)).isoformat(),
            }
            for i in range(500)
        ]
        status, _, payload = api.handle("POST", "/messages", headers, json.dumps({"messages": batch}).encode())
        assert status == 201, payload

    def get_message() -> None:
        outcome_id, org_id = ids[next(unique) % len(ids)]
        status, _, payload = api.handle("GET", f"/messages/{outcome_id}?org_id={org_id}", headers, b"")
        assert status == 200, payload

    def snapshot() -> None:
        with transaction() as c:
            experiments_dal.segment_counts(c, "exp-running", experiments.metric_windows(), NOW)

    return [
        Case("apply 1k SendGrid events", apply, 9),
        Case("apply a Calendly booking, then its cancellation", meetings, 15),
        Case("register a 500-message batch", register, 9),
        Case("GET /messages/{id}", get_message, 300),
        Case(
            "route an assigned lead (cold container)",
            lambda: experiments.route("org-000", leads[next(unique) % len(leads)]),
            240,
        ),
        Case("route a new lead (first assignment)", lambda: experiments.route("org-001", f"fresh-{next(unique)}"), 240),
        Case(f"experiment snapshot ({assigned:,} assigned leads)", snapshot, 6),
        Case("retention: one batch of 5,000 payloads", lambda: retention.remove_raw_payloads(NOW, time_budget_s=0), 3),
        Case(
            f"report rollup refresh ({CHANGED_PER_REFRESH:,} outcomes changed)",
            lambda: report_counts.refresh_daily_counts(NOW),
            6,
            prepare=change_outcomes,
            units=(CHANGED_PER_REFRESH, "changed outcome"),
        ),
        Case(
            f"report rollup refresh ({REGISTERED_PER_REFRESH // 1000}k registration rows)",
            lambda: report_counts.refresh_daily_counts(NOW),
            3,
            prepare=registration_rows,
            units=(REGISTERED_PER_REFRESH, "change row of a registration (a live day: discarded)"),
        ),
        Case(
            "report rollup: re-count one day (safety net)",
            lambda: report_counts.recount_day(recount_day, NOW),
            3,
            units=(day_messages, "message re-counted"),
        ),
        Case(
            "strategies (industry, largest organisation)", lambda: experiments.strategies("org-000", "industry", 30), 3
        ),
        Case(
            "leaderboard (largest organisation)",
            lambda: experiments.leaderboard_with_intervals(training.leaderboard("org-000")),
            3,
        ),
    ]


def explain_hot_paths(conn: Any, cases: list[Case]) -> None:
    """One more call of each hot path, recording its statements; each is explained (the plans the
    planner really picks at this size)."""
    with recorded() as statements, open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        for case in cases:
            case.run()
    seen: set[str] = set()
    for where, query, params in statements:
        text = str(query)
        if text in seen or text.lstrip().split(None, 1)[0].upper() not in (
            "SELECT",
            "WITH",
            "INSERT",
            "UPDATE",
            "DELETE",
        ):
            continue
        seen.add(text)
        plan = conn.execute(f"EXPLAIN (FORMAT JSON) {text}", params).fetchone()["QUERY PLAN"][0]["Plan"]
        print(f"   {where}: {summary(plan)}")


def footprint(conn: Any) -> None:
    """Bytes per row of the growing tables, indexes included, and what retention removes."""
    for table in ("outcome_events", "outcome_labels", "assignments"):
        row = conn.execute(
            f"SELECT pg_total_relation_size('{table}') AS total, pg_relation_size('{table}') AS heap, "
            f"(SELECT count(*) FROM {table}) AS n"
        ).fetchone()
        print(
            f"   {table}: {row['total'] / row['n']:.0f} bytes a row with its indexes ({row['heap'] / row['n']:.0f} "
            f"in the table)"
        )
    payload = conn.execute(
        "SELECT avg(pg_column_size(payload)) AS b FROM outcome_events TABLESAMPLE SYSTEM (2) WHERE payload IS NOT NULL"
    ).fetchone()["b"]
    print(f"   raw payload (what retention removes): {float(payload or 0):.0f} bytes an event")


ROLLUP_TRIGGERS = ("outcome_labels_report_rows_added", "outcome_labels_report_row_changed")


def trigger_overhead(conn: Any, cases: list[Case], rounds: int = 9) -> None:
    """What the report rollup's change tracking (sql/0016) costs the write paths: the same calls with
    its triggers on and off, in alternating rounds on the same store (medians)."""
    timings: dict[tuple[str, bool], list[float]] = defaultdict(list)
    written: dict[str, list[int]] = defaultdict(list)
    measured = [c for c in cases if c.name in ("apply 1k SendGrid events", "register a 500-message batch")]

    def pending() -> int:
        return int(conn.execute("SELECT count(*) AS n FROM report_count_changes").fetchone()["n"])

    try:
        for round_no in range(2 * rounds):
            enabled = round_no % 2 == 0
            for trigger in ROLLUP_TRIGGERS:
                conn.execute(f"ALTER TABLE outcome_labels {'ENABLE' if enabled else 'DISABLE'} TRIGGER {trigger}")
            for case in measured:
                before = pending()
                timings[(case.name, enabled)].append(timed(case.run))
                if enabled:
                    written[case.name].append(pending() - before)
    finally:
        for trigger in ROLLUP_TRIGGERS:
            conn.execute(f"ALTER TABLE outcome_labels ENABLE TRIGGER {trigger}")
    for case in measured:
        on, off = (statistics.median(timings[(case.name, flag)]) * 1000 for flag in (True, False))
        print(
            f"   {case.name}: {on:.0f} ms with the rollup's triggers, {off:.0f} ms without ({on / off:.2f}x); "
            f"change rows written a call: {statistics.median(written[case.name]):.0f}"
        )


def database_cpu(apply: Case) -> None:
    """CPU the database server process spends on a 1k-event batch (the ACU side of ingest), read
    from /proc for the backend serving the code's connection (same host)."""
    from flywheel.dal.connection import get_connection

    backend = get_connection().execute("SELECT pg_backend_pid() AS pid").fetchone()
    assert backend is not None
    pid = backend["pid"]

    def cpu_s() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    before, wall = cpu_s(), timed(apply.run)
    print(f"   database CPU per 1k-event batch: {(cpu_s() - before) * 1000:.0f} ms (of {wall * 1000:.0f} ms)")


def build(url: str, target_events: int, min_messages: int) -> Any:
    import psycopg

    conn = psycopg.connect(url, autocommit=True, row_factory=psycopg.rows.dict_row)
    prepare(conn)
    store = Store(conn, running_cutoff=SMALL_EVENTS // 5)
    seconds = load(conn, store, target_events, min_messages)
    sizes = conn.execute(
        "SELECT (SELECT count(*) FROM outcome_events) AS events, "
        "(SELECT count(*) FROM outcome_labels) AS labels, "
        "(SELECT count(*) FROM assignments) AS assignments, "
        "pg_size_pretty(pg_database_size(current_database())) AS size"
    ).fetchone()
    assert sizes is not None
    print(
        f"loaded {sizes['events']:,} outcome_events, {sizes['labels']:,} outcome_labels, "
        f"{sizes['assignments']:,} assignments ({sizes['size']}) in {seconds:.0f} s"
    )
    from flywheel.services import report_counts

    use(url)
    seconds = timed(lambda: report_counts.refresh_daily_counts(NOW))
    print(f"   first report rollup (the whole history): {seconds:.1f} s")
    return conn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5_000_000, help="outcome_events at full size")
    parser.add_argument("--labels", type=int, default=None, help="outcome_labels at full size (default events/5)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds over the two stores")
    args = parser.parse_args()

    from flywheel.local.server import LocalApi

    api = LocalApi(ROOT / "template.yaml")
    # two stores on one server, built from the same generator (the small one is the large one's
    # first 100k events), measured in alternating rounds so both see the same machine load
    urls = {"small": fresh_database(), "large": fresh_database()}
    conns = {
        "small": build(urls["small"], SMALL_EVENTS, 0),
        "large": build(urls["large"], args.events, args.labels or args.events // 5),
    }
    rows = {
        side: conn.execute("SELECT count(*) AS n FROM outcome_events").fetchone()["n"] for side, conn in conns.items()
    }
    cases = {}
    for side in ("small", "large"):
        use(urls[side])
        cases[side] = hot_paths(conns[side], api)
    samples: dict[tuple[str, str], list[float]] = defaultdict(list)
    for round_no in range(args.rounds):
        for side in ("small", "large") if round_no % 2 == 0 else ("large", "small"):
            use(urls[side])
            cases[side][0].run()  # first plans and caches of this connection: not measured
            for case in cases[side]:
                for _ in range(max(1, -(-case.repeats // args.rounds))):
                    if case.prepare:
                        case.prepare()
                    samples[(side, case.name)].append(timed(case.run))
    print(f"{'':52}{rows['small']:>14,} rows{rows['large']:>14,} rows   growth")
    for case in cases["large"]:
        small, large = (statistics.median(samples[(side, case.name)]) * 1000 for side in ("small", "large"))
        print(f"   {case.name:49}{small:>14.1f} ms{large:>14.1f} ms{large / small:>8.2f}x")
    print(f"-- the capacity model's inputs, at {rows['large']:,} outcome_events")
    for side in ("small", "large"):
        for case in cases[side]:
            if case.units:
                n, unit = case.units
                seconds = statistics.median(samples[(side, case.name)])
                print(f"   {case.name} at {rows[side]:,}: {seconds * 1e6 / n:.1f} us per {unit} ({n:,})")
    use(urls["large"])
    footprint(conns["large"])
    database_cpu(cases["large"][0])
    trigger_overhead(conns["large"], cases["large"])
    print(f"-- EXPLAIN of every statement the hot paths send, at {rows['large']:,} outcome_events")
    explain_hot_paths(conns["large"], cases["large"])
    for conn in conns.values():
        conn.close()
    a, b = (statistics.median(samples[(side, "apply 1k SendGrid events")]) * 1000 for side in ("small", "large"))
    print(f"apply 1k events: {a:.0f} ms at 100k rows, {b:.0f} ms at {rows['large']} rows; growth {b / a:.2f}x")


if __name__ == "__main__":
    main()
