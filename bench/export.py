"""Building a dataset from 200,000 outcomes, with the full redaction and the residual scan:
the streamed build, the same build fed by a fetch-all of the rows first, and the floor under both
(the same query through the same server-side cursor, every row read and discarded); the build
without the line cache (as it was before it), and the weekly rebuild, which reads back the lines of
outcomes that did not change since the last build (see SIDES and CHANGED). Each side runs
in its own process, so its peak memory is its own: the summed PSS of the process and its build
workers, sampled (shared pages counted once, as a Lambda's memory limit counts them), or the
process's own peak RSS when higher; the summed peak RSS, which counts the pages the workers share
with their parent again, is printed beside it.

The outcomes look like a real sender's: several organisations and senders (signatures with name,
title, phone, address and website), leads in four countries with colleagues named in their
context, and messages assembled from many sentences with the lead's name, company, phone numbers,
emails, booking and tracking links, street addresses; most survive de-duplication, so the
residual scan reads nearly every example again.

    nice python bench/export.py              # 200,000 outcomes, two rounds of each side
    nice python bench/export.py --rows 20000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _harness import ROOT, fresh_database, progress

N = 200_000
ORGS = 12
COUNTRIES = {
    "US": ("+1 415 555 {:04d}", "(415) 555-{:04d}"),
    "GB": ("+44 20 7946 {:04d}", "020 7946 {:04d}"),
    "DE": ("+49 30 901820{:02d}", "030 901820{:02d}"),
    "FR": ("+33 1 42 68 {:02d} {:02d}", "01 42 68 {:02d} {:02d}"),
}
FIRST = [
    "Dana",
    "Priya",
    "Jonas",
    "Amélie",
    "Kenji",
    "Lucía",
    "Omar",
    "Sofia",
    "Liam",
    "Chen",
    "Fatima",
    "Mateo",
    "Ingrid",
    "Tomás",
    "Aisha",
    "Noah",
    "Elena",
    "Ravi",
    "Hannah",
    "Yusuf",
]
LAST = [
    "Reyes",
    "Shah",
    "Müller",
    "Dubois",
    "Tanaka",
    "García",
    "Haddad",
    "Rossi",
    "O'Brien",
    "Wang",
    "Khan",
    "Fernández",
    "Larsen",
    "Novak",
    "Bello",
    "Smith",
    "Ivanova",
    "Iyer",
    "Schmidt",
    "Yilmaz",
]
COMPANIES = [
    "Northwind",
    "Contoso",
    "Fabrikam",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark Logistics",
    "Wayne Freight",
    "Acme Robotics",
    "Tyrell Foods",
    "Cyberdyne Health",
    "Soylent Retail",
    "Hooli",
    "Vandelay Imports",
    "Wonka Confections",
    "Massive Dynamic",
]
SUFFIX = ["", " Inc.", " GmbH", " Ltd", " SAS", " LLC", " AG"]
SUBJECTS = [
    "finance leaders",
    "your controllers",
    "the audit committee",
    "most CFOs we meet",
    "our customers",
    "teams like yours",
    "the treasury group",
    "regional finance heads",
    "shared-service centres",
    "FP&A analysts",
    "accounts payable clerks",
    "group accountants",
    "the board",
    "your auditors",
    "procurement leads",
    "revenue operations",
    "payroll specialists",
    "tax managers",
]
VERBS = [
    "spend too long on",
    "keep rebuilding",
    "struggle with",
    "want fewer surprises in",
    "quietly dread",
    "are asked to speed up",
    "lose evenings to",
    "rarely trust",
    "have to explain",
    "keep chasing",
    "would happily automate",
    "argue about",
    "end up rechecking",
    "budget extra time for",
    "inherit",
    "try to simplify",
]
OBJECTS = [
    "month-end reconciliations",
    "intercompany eliminations",
    "manual journal entries",
    "variance reports",
    "bank feed exceptions",
    "accrual schedules",
    "cash forecasts",
    "audit evidence requests",
    "multi-currency revaluations",
    "close checklists",
    "approval chains",
    "vendor statement matching",
    "fixed asset registers",
    "revenue recognition schedules",
    "expense report reviews",
    "board packs",
    "entity consolidations",
    "budget-versus-actual tables",
]
TAILS = [
    "every single quarter",
    "before the auditors arrive",
    "whenever a new entity joins",
    "during the last week of the month",
    "after each acquisition",
    "while headcount stays flat",
    "in three different spreadsheets",
    "right before the board meeting",
    "across twelve subsidiaries",
    "since the ERP migration",
    "without a clear owner",
    "with nobody sure which version is final",
    "as volumes double every year",
    "under tighter deadlines than last year",
]
VALUES = [
    "we match transactions automatically so exceptions surface on day one",
    "our customers cut three days from their close within one quarter",
    "audit preparation usually shrinks by half in the first year",
    "it plugs into NetSuite, Sage Intacct and Xero without a migration",
    "variance commentary gets drafted for you with the drivers highlighted",
    "approvals move into one queue instead of endless email threads",
    "dashboards show which entities are late before anyone chases them",
    "controllers get their evenings back during close week",
    "everything is logged for SOX with no extra effort",
    "implementation takes about six weeks with our specialists",
    "pricing scales with entities rather than seats",
    "bank rules are learned from the matches your team already made",
]
DETAIL = [
    "{colleague} mentioned the close takes eleven days today",
    "I spoke with {colleague} at the Boston summit",
    "our office is at {address} if you are ever nearby",
    "happy to loop in {colleague} as well",
    "the recording is at {link}",
    "you can reach me directly at {phone}",
    "feel free to write to {sender_email}",
    "the case study is on {link}",
    "I copied {colleague} who asked about pricing",
    "we host a breakfast at {address} next month",
]
ASKS = [
    "Worth a short call next Tuesday?",
    "Open to comparing notes this week?",
    "Could I send a two-minute video?",
    "Should I share a case study from logistics?",
    "Is this on your roadmap for next year?",
    "Who owns close tooling on your side?",
    "Would a benchmark of your close be useful?",
    "Shall we find fifteen minutes? Book here: {booking}",
    "Any interest in a pilot with one entity?",
    "Does Thursday morning work for a quick demo?",
    "Would your controller want to join?",
]
ADDRESSES = {
    "US": "350 Fifth Avenue, Suite 4100, New York, NY 10118",
    "GB": "221B Baker Street, London NW1 6XE",
    "DE": "Friedrichstraße 123, 10117 Berlin",
    "FR": "12 rue de la Paix, 75002 Paris",
}
TITLES = ["Account Executive", "Senior AE", "Head of Sales", "Founder", "Sales Director"]


def phone(country: str, rng: random.Random) -> str:
    fmt = rng.choice(COUNTRIES[country])
    return (
        fmt.format(*[rng.randrange(100) for _ in range(fmt.count("{"))])
        if "02d" in fmt
        else fmt.format(rng.randrange(10_000))
    )


def sentence(rng: random.Random) -> str:
    return f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(TAILS)}."


def generate(n: int, seed: int = 7) -> list[str]:
    """COPY lines of outcome_labels."""
    rng = random.Random(seed)  # noqa: S311 - synthetic data
    senders = []
    for k in range(ORGS * 3):
        country = list(COUNTRIES)[k % 4]
        name = f"{FIRST[(k * 7) % len(FIRST)]} {LAST[(k * 3) % len(LAST)]}"
        company = f"{COMPANIES[k % len(COMPANIES)]} Software"
        title = TITLES[k % len(TITLES)]
        signature = (
            f"{name}\n{title}, {company}\n{phone(country, rng)}\n{ADDRESSES[country]}\n"
            f"www.{company.split()[0].lower()}-software.com"
        )
        senders.append({"name": name, "title": title, "company": company, "signature": signature, "country": country})
    now = datetime(2026, 11, 30, tzinfo=UTC)
    lines = []
    for i in range(n):
        org = f"org-{i % ORGS}"
        sender = senders[(i % ORGS) * 3 + rng.randrange(3)]
        country = rng.choice(list(COUNTRIES))
        first, last = rng.choice(FIRST), rng.choice(LAST)
        company = rng.choice(COMPANIES) + rng.choice(SUFFIX)
        colleague = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        sender_email = f"{sender['name'].split()[0].lower()}@{sender['company'].split()[0].lower()}.example"
        fill = {
            "first": first,
            "company": company.split(",")[0],
            "colleague": colleague,
            "address": ADDRESSES[country],
            "phone": phone(country, rng),
            "sender_email": sender_email,
            "link": f"https://go.{sender['company'].split()[0].lower()}.example/r/{uuid.UUID(int=rng.getrandbits(128)).hex}",
            "booking": f"https://calendly.com/{sender['name'].split()[0].lower()}/30min",
        }
        sentences = [
            f"At {fill['company']}, " + sentence(rng),
            sentence(rng).capitalize(),
            sentence(rng).capitalize(),
            rng.choice(VALUES).capitalize() + ".",
        ]
        if rng.random() < 0.6:
            sentences.append(rng.choice(DETAIL).format(**fill).capitalize() + ".")
        sentences.append(rng.choice(ASKS).format(**fill))
        body = f"Hi {first},\n\n" + " ".join(sentences) + "\n\nBest,\n" + sender["signature"]
        subject = rng.choice(
            [
                f"{first}, closing the books at {fill['company']}",
                "Month-end in five days",
                f"Idea for {fill['company']}",
                "Quick question about close",
                f"{first} <> {sender['company']}",
            ]
        )
        lead_context = {"colleagues": [{"name": colleague, "role": "Controller"}], "source": "webinar"}
        sent = now - timedelta(minutes=i)
        row = [
            str(uuid.UUID(int=rng.getrandbits(128))),
            org,
            f"k{i}",
            f"c{i % 40}",
            f"l{i}",
            f"{first.lower()}.{last.lower()}@{company.split()[0].lower()}.example",
            subject,
            body,
            rng.choice(["PAS", "AIDA", "BAB"]),
            rng.choice(["warm", "direct"]),
            f"close automation for {fill['company']}, mention {colleague}",
            sent.isoformat(),
            first,
            last,
            company,
            rng.choice(["saas", "logistics", "fintech", "retail"]),
            rng.choice(["cfo", "controller"]),
            "201-1000",
            country,
            json.dumps(lead_context),
            json.dumps(sender),
            "positive",
            "0.8",
            "replied",
        ]
        lines.append("\t".join(v.replace("\\", "\\\\").replace("\t", " ").replace("\n", "\\n") for v in row) + "\n")
    return lines


COLUMNS = (
    "outcome_id, org_id, dedupe_key, campaign_id, lead_id, lead_email, subject, body, framework, tone, brief, "
    "sent_at, lead_first_name, lead_last_name, lead_company, lead_industry, lead_role, lead_company_size, "
    "lead_country, lead_context, sender, training_label, quality_score, stage"
)


def seed(url: str, n: int) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO organizations (org_id, training_opt_in) SELECT 'org-' || i, true "
            "FROM generate_series(0, %s) i",
            (ORGS - 1,),
        )
        lines = generate(n)
        with conn.cursor() as cur, cur.copy(f"COPY outcome_labels ({COLUMNS}) FROM STDIN") as copy:
            for start in range(0, len(lines), 20_000):
                copy.write("".join(lines[start : start + 20_000]))
        conn.execute("VACUUM (ANALYZE) outcome_labels")


# every round: the floor; the build from an empty cache (the first build, or the first after a
# release); the week after (CHANGED of the outcomes new or changed since: the rest read back from the
# cache); fetch-all (from an empty cache too); the build without the cache, as it was before it
SIDES = ("raw-read", "streaming", "weekly", "fetch-all", "uncached")
# a week's share of a 90-day window (1/13, about 8%) of newest outcomes, plus the older ones whose
# row changed since the last build (a reply, a label): 10% newest and 5% of the rest, at random
CHANGED = 0.15


def prepare_cache(url: str, mode: str) -> None:
    """The line cache a side starts with: empty for a first build; for the weekly rebuild, the one the
    streaming side just filled, less the lines of the newest 10% of outcomes (new ones), with 5% of
    the rest changed (their lines stale): those are built again."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        if mode in ("streaming", "fetch-all"):
            conn.execute("TRUNCATE dataset_line_cache")
        elif mode == "weekly":
            # new since the last build: the newest 10 % of outcomes have no line yet
            conn.execute(
                """WITH ranked AS (
                       SELECT item, percent_rank() OVER (ORDER BY sent_at DESC, item) AS newest FROM dataset_line_cache)
                   DELETE FROM dataset_line_cache c USING ranked r WHERE c.item = r.item AND r.newest < 0.10"""
            )
            # changed since: 5 % of the others have a new brief (their lines are stale and replaced)
            conn.execute(
                """UPDATE outcome_labels SET brief = coalesce(brief, '') || ' (follow-up)'
                    WHERE outcome_id IN (SELECT outcome_id FROM dataset_line_cache
                                          WHERE (hashtext(item) & 1023) < 54)"""
            )
            conn.execute("VACUUM (ANALYZE) outcome_labels")
        else:
            return
        conn.execute("VACUUM (ANALYZE) dataset_line_cache")
        kept = conn.execute("SELECT count(*) FROM dataset_line_cache").fetchone()
        progress(f"the line cache holds {kept[0] if kept else 0:,} lines")


def _pss_kb(pid: int) -> int:
    """The proportional set size of a process: its private pages plus its share of pages it
    shares (with its forked workers, the parent's imported code), so a sum counts each page once."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
    except (OSError, StopIteration):
        return 0  # gone, or no smaps_rollup (before Linux 4.14)


class TreeMemory:
    """The peak of the summed PSS of this process and its children, sampled every 200 ms: the
    memory the build holds as the kernel (and a Lambda's memory limit) counts it."""

    def __init__(self) -> None:
        import threading

        self.peak_kb, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.wait(0.2):
            try:
                with open(f"/proc/{me}/task/{me}/children") as f:
                    children = [int(pid) for pid in f.read().split()]
            except OSError:
                children = []
            self.peak_kb = max(self.peak_kb, _pss_kb(me) + sum(_pss_kb(pid) for pid in children))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_kb / 1024


def side(mode: str) -> None:
    """One side, in this process: prints rows, seconds and peak memory as JSON."""
    from flywheel.dal import training as training_dal
    from flywheel.dal.connection import get_connection
    from flywheel.services.dataset import DatasetSpec, build_dataset, build_workers
    from flywheel.settings import get_settings

    spec = DatasetSpec(min_quality=0.6)
    tree = TreeMemory()
    start = time.perf_counter()
    extra: dict[str, Any] = {}
    if mode == "uncached":  # the build as it was before the line cache: every line built, none stored
        os.environ["DATASET_LINE_CACHE"] = "false"
    if mode == "raw-read":
        rows = sum(
            1
            for _ in training_dal.stream_outcomes(
                get_connection(), min_quality=spec.min_quality, since=None, until=None, for_preferences=False
            )
        )
    else:
        if mode == "fetch-all":  # the same build, fed by a list of every row fetched first
            streamed = training_dal.stream_outcomes
            training_dal.stream_outcomes = lambda *a, **kw: iter(list(streamed(*a, **kw)))  # type: ignore[assignment]
        with tempfile.TemporaryDirectory() as tmp:
            built = build_dataset(spec, Path(tmp), get_settings())
        rows = int(built.manifest["counts"]["candidates"])
        extra = {
            "examples": built.examples,
            "scanned": built.manifest["residual_scan"]["lines_scanned"],
            "scan_hits": built.manifest["residual_scan"]["hits"],
            "redactions": sum(built.manifest["redactions_in_candidates"].values()),
            "plan_s": built.seconds["plan"],
            "write_s": built.seconds["write"],
        }
    seconds = time.perf_counter() - start
    workers = build_workers(get_settings()) if mode != "raw-read" else 0
    own_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # the headline: the sampled tree's PSS, or this process's own peak RSS when that is higher (the
    # plan pass runs after the workers ended, in this process alone, between two samples maybe)
    peak_mb = max(tree.stop(), own_peak)
    # the pessimistic sum, printed too: every worker at the largest one's peak RSS, each counting
    # the pages it shares with this process again
    rss_sum_mb = own_peak + workers * resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        json.dumps(
            {
                "rows": rows,
                "seconds": seconds,
                "peak_mb": peak_mb,
                "rss_sum_mb": rss_sum_mb,
                "workers": workers,
                "own_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                "parent_cpu_s": own.ru_utime + own.ru_stime,
                "workers_cpu_s": children.ru_utime + children.ru_stime,
                **extra,
            }
        )
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "seed":
        seed(os.environ["DATABASE_URL"], int(sys.argv[2]))
        return
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        side(sys.argv[1])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=N)
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="rounds of the three sides, interleaved; the fastest of each side is compared (default 2)",
    )
    args = parser.parse_args()
    url = fresh_database()
    # generated in a process of its own: a child starts with its parent's peak RSS (Linux keeps it
    # across fork and exec), so a parent that held the 200,000 rows would inflate every side's peak
    progress(f"seeding {args.rows:,} outcomes")
    subprocess.run(
        [sys.executable, __file__, "seed", str(args.rows)],
        check=True,
        env={**os.environ, "DATABASE_URL": url},
        cwd=ROOT,
    )
    # on a shared host a side can be slowed by whatever else runs: the sides take turns, and each
    # side's fastest round is the one compared (every round is printed)
    results: dict[str, dict[str, Any]] = {}
    for mode in [m for _ in range(args.rounds) for m in SIDES]:
        prepare_cache(url, mode)
        progress(f"{mode} (its own process)")
        done = subprocess.run(
            [sys.executable, __file__, mode],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "DATABASE_URL": url},
            cwd=ROOT,
        )
        r = json.loads(done.stdout.strip().splitlines()[-1])
        if mode not in results or r["seconds"] < results[mode]["seconds"]:
            results[mode] = r
        detail = (
            f", {r['examples']} examples written, {r['scanned']} lines rescanned, {r['scan_hits']} residual "
            f"hits, {r['redactions']} redactions; after pass 1, in the streaming process alone: plan "
            f"{r['plan_s']:.1f} s, write {r['write_s']:.1f} s ({(r['plan_s'] + r['write_s']) / r['rows'] * 1e6:.0f} us "
            "an outcome)"
            if "examples" in r
            else ""
        )
        print(
            f"{mode}: {r['rows']} rows in {r['seconds']:.1f} s ({r['rows'] / r['seconds']:.0f} rows/s), "
            f"CPU a row: {r['parent_cpu_s'] / r['rows'] * 1e6:.0f} us in the streaming process, "
            f"{r['workers_cpu_s'] / r['rows'] * 1e6:.0f} us in {r['workers']} worker(s); peak "
            f"{r['peak_mb']:.0f} MB (PSS of the process tree; RSS: streaming process {r['own_mb']:.0f} MB"
            + (
                f" + {r['workers']} x largest worker {r['worker_mb']:.0f} MB = {r['rss_sum_mb']:.0f} MB)"
                if r["workers"]
                else ")"
            )
            + detail
        )
    s, f, raw = results["streaming"], results["fetch-all"], results["raw-read"]
    u, w = results["uncached"], results["weekly"]
    print(
        f"fastest rounds: raw read {raw['seconds']:.1f} s, streaming {s['seconds']:.1f} s "
        f"({s['rows'] / s['seconds']:.0f} rows/s), fetch-all {f['seconds']:.1f} s "
        f"({f['rows'] / f['seconds']:.0f} rows/s), without the line cache {u['seconds']:.1f} s "
        f"({u['rows'] / u['seconds']:.0f} rows/s), weekly rebuild {w['seconds']:.1f} s"
    )
    print(
        f"storing every line in the cache (an empty cache) costs {s['seconds'] / u['seconds']:.2f}x the build "
        f"without it; the weekly rebuild ({CHANGED:.0%} of the outcomes new or changed): "
        f"{w['rows'] / w['seconds']:.0f} rows/s, peak {w['peak_mb']:.0f} MB, build vs raw read: "
        f"{w['seconds'] / raw['seconds']:.1f}x; {s['seconds'] / w['seconds']:.1f}x faster than the build from "
        "an empty cache"
    )
    print("the line below is the build from an empty cache: every outcome redacted, scanned and stored")
    print(
        f"streaming: {s['rows'] / s['seconds']:.0f} rows/s, peak {s['peak_mb']:.0f} MB; "
        f"fetch-all: peak {f['peak_mb']:.0f} MB; build vs raw read: {s['seconds'] / raw['seconds']:.1f}x"
    )


if __name__ == "__main__":
    main()
