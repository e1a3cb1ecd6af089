"""The report: its numbers against the database and the API, nothing fetched from outside, every
chart drawn in a real browser; `GET /campaigns/{id}/performance`, `flywheel report` and `status`."""

from __future__ import annotations

import copy
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flywheel.local.invoke import invoke
from flywheel.services import reports
from flywheel.views import charts
from flywheel.views.charts import percent
from flywheel.views.status_text import render as render_status
from tests.conftest import ROOT, load_event, run_command
from tests.report_helpers import seeded_db_url, seeded_template  # noqa: F401 - fixtures
from tests.report_helpers_html import chromium, parse, render_in_chromium, rows

STEPS = ("sent", "delivered", "opened", "replied", "positive_reply", "meeting", "won")
FUNNEL_SQL = """SELECT {keys} count(*) AS sent, count(o.delivered_at) AS delivered, count(o.first_opened_at) AS opened,
       count(o.replied_at) AS replied,
       count(*) FILTER (WHERE o.reply_category IN ('interested', 'meeting_request')) AS positive_reply,
       count(o.meeting_booked_at) AS meeting, count(*) FILTER (WHERE o.deal_status = 'won') AS won
  FROM outcome_labels o LEFT JOIN model_registry m ON m.model_id = o.model_registry_id
 WHERE {where} {group}"""


@pytest.fixture
def db_url(seeded_db_url: str) -> str:  # noqa: F811 - the fixture, by name
    """Every test here starts from the seeded story (tests/report_helpers.py)."""
    return seeded_db_url


@pytest.fixture
def acme(db, db_url) -> dict[str, Any]:
    now = datetime.now(UTC)
    data = reports.collect("acme", now=now)
    return {"now": now, "data": data, "html": reports.render_html(data)}


def counts(row: list[dict[str, Any]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for cell in row:
        merged.update(cell["steps"])
    return merged


def test_funnel_numbers_equal_the_database(db, acme) -> None:
    page = parse(acme["html"])
    expected = {
        (r["model"], r["arm"] or "—"): {s: r[s] for s in STEPS}
        for r in db.execute(
            FUNNEL_SQL.format(
                keys="coalesce(m.version, o.model_id) AS model, o.experiment_arm AS arm,",
                where="o.org_id = 'acme' AND o.sent_at >= %s",
                group="GROUP BY 1, 2",
            ),
            (acme["now"] - timedelta(days=84),),
        )
    }
    shown = {(r[0]["text"], r[1]["text"]): counts(r) for r in rows(page, "funnel")}
    assert shown == expected
    assert len(expected) == 3  # champion, challenger, and the default model before Flywheel
    # the visible rate and interval are the stats code's, for every cell
    for row in rows(page, "funnel"):
        sent = counts(row)["sent"]
        for cell in row[3:]:
            [(step, n)] = cell["steps"].items()
            assert percent(n / sent) in cell["text"], (step, cell)


def test_campaign_sections_equal_the_api(api, acme) -> None:
    page = parse(acme["html"])
    assert set(page.campaigns) == {"q4-outbound", "spring-push"}
    for campaign, section in page.campaigns.items():
        status, body = api.get(f"/campaigns/{campaign}/performance?org_id=acme")
        assert status == 200, body
        [total] = rows(page, f"{section}-total")
        assert counts(total) == {s: body["funnel"][s]["count"] for s in STEPS}
        for cell in total[2:]:
            [(step, _)] = cell["steps"].items()
            low, high = body["funnel"][step]["interval"]
            assert f"{percent(body['funnel'][step]['rate'])} [{percent(low)} – {percent(high)}]" in cell["text"]
        by_model = {r[0]["text"]: counts(r) for r in rows(page, f"{section}-models")}
        assert by_model == {
            (g["version"] or g["model"]): {s: g["funnel"][s]["count"] for s in STEPS} for g in body["by_model"]
        }
        by_strategy = {(r[0]["text"], r[1]["text"]): counts(r) for r in rows(page, f"{section}-strategies")}
        assert by_strategy == {
            (g["framework"], g["tone"]): {s: g["funnel"][s]["count"] for s in STEPS}
            for g in body["by_strategy"]
            if g["messages"] >= 30
        }  # small cells hidden
        assert f"GET /campaigns/{campaign}/performance?org_id=acme" in acme["html"]


def test_strategies_equal_the_insights_api(api, db, acme) -> None:
    page = parse(acme["html"])
    for segment, column in (("industry", "lead_industry"), ("role", "lead_role")):
        status, body = api.get(f"/insights/strategies?segment={segment}&org_id=acme&min_sample=30")
        assert status == 200 and body["cells"], body
        mine = {
            (r["s"], r["framework"], r["tone"]): r["n"]
            for r in db.execute(
                f"""SELECT {column} AS s, framework, tone, count(*) AS n FROM outcome_labels WHERE org_id = 'acme'
                  AND {column} IS NOT NULL GROUP BY 1, 2, 3 HAVING count(*) >= 30"""
            )
        }
        assert {(c["segment"], c["framework"], c["tone"]): c["reply_rate"]["n"] for c in body["cells"]} == mine
        shown = {
            (r[0]["text"], r[1]["text"], r[2]["text"]): (r[3]["text"], r[4]["text"], r[5]["text"])
            for r in rows(page, f"strategies-{segment}")
        }

        def rate(cell: dict[str, Any]) -> str:
            return f"{percent(cell['rate'])} [{percent(cell['interval'][0])} – {percent(cell['interval'][1])}]"

        assert shown == {
            (c["segment"], c["framework"], c["tone"]): (
                f"{c['reply_rate']['n']:,}",
                rate(c["positive_reply_rate"]),
                rate(c["reply_rate"]),
            )
            for c in body["cells"]
        }
        positive = {
            (r["s"], r["framework"], r["tone"]): r["n"]
            for r in db.execute(
                f"""SELECT {column} AS s, framework, tone, count(*) AS n FROM outcome_labels WHERE org_id = 'acme'
                  AND reply_category IN ('interested', 'meeting_request') AND {column} IS NOT NULL
                GROUP BY 1, 2, 3"""
            )
        }
        assert {
            (c["segment"], c["framework"], c["tone"]): round(c["positive_reply_rate"]["rate"] * c["reply_rate"]["n"])
            for c in body["cells"]
        } == {k: positive.get(k, 0) for k in mine}


def test_replies_training_registry_and_health_equal_the_database(db, acme) -> None:
    page = parse(acme["html"])
    since = acme["now"] - timedelta(days=84)
    weekly = {
        str(r["week"]): (r["n"], r["fallback"])
        for r in db.execute(
            """SELECT date_trunc('week', replied_at AT TIME ZONE 'UTC')::date AS week, count(*) AS n,
                  count(*) FILTER (WHERE reply_classification_source = 'fallback') AS fallback
             FROM outcome_labels WHERE org_id = 'acme' AND replied_at >= %s GROUP BY 1""",
            (since,),
        )
    }
    assert {r[0]["text"]: (int(r[1]["text"]), int(r[2]["text"])) for r in rows(page, "replies-weekly")} == weekly
    categories = {
        r["c"]: r["n"]
        for r in db.execute(
            """SELECT coalesce(reply_category, 'unclassified') AS c, count(*) AS n FROM outcome_labels
            WHERE org_id = 'acme' AND replied_at >= %s GROUP BY 1""",
            (since,),
        )
    }
    assert {r[0]["text"].replace(" ", "_"): int(r[1]["text"]) for r in rows(page, "reply-categories")} == categories
    history = db.execute("SELECT count(*) AS n FROM model_history WHERE at >= %s", (since,)).fetchone()["n"]
    assert len(rows(page, "registry")) == history >= 5
    health = {r[0]["text"]: (r[1]["text"], r[2]["text"]) for r in rows(page, "health")}
    assert health["Orphan events waiting for their message"] == (
        "1",
        "oldest 2.0 d old · + 1 events of no known organisation yet",
    )
    assert health["Replies that matched no message"] == ("0", "+ 1 replies of no known organisation yet")
    assert health["Malformed provider events quarantined in the window"][0] == "1"
    assert health["Malformed provider events quarantined in the window"][1].endswith(
        "+ 1 events of no known organisation yet"
    )
    unclassified = db.execute(
        "SELECT count(*) AS n FROM outcome_labels WHERE org_id = 'acme' "
        "AND replied_at IS NOT NULL AND reply_category IS NULL"
    ).fetchone()["n"]
    assert health["Replies not classified yet"][0] == str(unclassified)
    # the dataset pooled three organisations: acme's report names none of the others
    assert "this organisation 120, 2 other organisations 70" in acme["html"]
    assert "email 190, phone 38; residual scan passed" in acme["html"]
    assert "globex" not in acme["html"] and "initech" not in acme["html"]


def test_experiment_section_draws_the_evaluation_history(db, acme) -> None:
    experiment = db.execute("SELECT * FROM experiments").fetchone()
    e = acme["data"]["experiment"]
    assert (e["experiment_id"], e["stage"], e["status"]) == (
        experiment["experiment_id"],
        experiment["stage"],
        experiment["status"],
    )
    assert e["decision"]["action"] == experiment["last_decision"]["action"]
    page = parse(acme["html"])
    evaluations = db.execute("SELECT * FROM experiment_evaluations ORDER BY evaluated_at DESC").fetchall()
    shown = rows(page, "evaluations")
    assert [r[3]["text"] for r in shown] == [ev["action"] for ev in evaluations] and len(shown) >= 10
    # one point per daily evaluation that measured the primary lift, with its always-valid interval
    measured = [ev for ev in evaluations if ev["primary_units"]]
    lift_chart = acme["html"].split('data-chart="experiment-lift"', 1)[1].split("</svg>", 1)[0]
    assert lift_chart.count("<circle") == len(measured) >= 8
    latest = measured[0]
    assert charts.signed_percent(latest["primary_lift"]) in shown[0][5]["text"]
    assert (
        f"[{charts.signed_percent(latest['primary_low'])} – {charts.signed_percent(latest['primary_high'])}]"
        in (shown[0][5]["text"])
    )
    margins = {name: g["margin"] for name, g in experiment["last_decision"]["guardrails"].items()}
    table = {r[0]["text"].replace(" ", "_"): r[3]["text"] for r in rows(page, "guardrails")}
    assert table == {name: f"{m * 100:+.2f} pp" for name, m in margins.items()}
    plan = experiment["plan"]
    assert f"{plan['mde_in_time']:+.1%} within 56 days" in acme["html"]
    assert f"canary {plan['canary_sample']:,} leads" in acme["html"] and "Pearson χ² p =" in acme["html"]


def test_status_of_an_experiment_with_no_measurement_yet(acme) -> None:
    """(An outside review.) In an experiment's first 14 days the evaluator stores no interval
    ([null, null]) and `flywheel status` crashed on it with a TypeError."""
    data = copy.deepcopy(acme["data"])
    data["experiment"]["primary"].update(lift=0.0, interval=[None, None])
    status = render_status(data)
    assert f"lift {data['experiment']['primary']['metric']}: no measurement yet" in status
    data["experiment"]["primary"].update(lift=0.021, interval=[-0.01, 0.05])
    assert "+2.1% [-1.0%, +5.0%] (always-valid 95%)" in render_status(data)


def test_the_page_references_nothing_outside_itself(acme) -> None:
    html = acme["html"]
    page = parse(html)
    assert not {"script", "link", "iframe", "img", "object", "embed", "base", "form", "audio", "video"} & set(page.tags)
    assert all(value.startswith("#") for _, name, value in page.url_values if name == "href"), page.url_values
    assert [u for u in page.url_values if u[1] != "href"] == []
    assert "@import" not in html and "url(" not in html.lower()
    assert "http://" not in html and "https://" not in html and "//" not in html.replace("<!--", "")
    assert """<meta http-equiv="Content-Security-Policy" content="default-src 'none';""" in html


def test_hostile_names_are_escaped(db, db_url) -> None:
    db.execute("INSERT INTO organizations (org_id) VALUES ('<img src=x onerror=alert(1)>')")
    db.execute("""INSERT INTO outcome_labels (org_id, dedupe_key, campaign_id, lead_id, body, framework, tone,
                                              lead_industry, sent_at, model_id)
                  SELECT '<img src=x onerror=alert(1)>', 'd' || i, '"><script>alert(2)</script>', 'l' || i, 'hi',
                         '<b>PAS</b>', 'x', '<svg onload=alert(3)>', now(), 'm&m'
                    FROM generate_series(1, 40) AS i""")
    html = reports.render_html(reports.collect("<img src=x onerror=alert(1)>"))
    page = parse(html)
    assert not {"script", "img"} & set(page.tags)
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html and "<svg onload" not in html
    assert "&lt;b&gt;PAS&lt;/b&gt;" in html and "<b>PAS" not in html
    assert page.url_values == [(t, n, v) for t, n, v in page.url_values if n == "href" and v.startswith("#")]


@pytest.mark.skipif(chromium() is None, reason="no Chromium on this machine (apt-get install chromium)")
def test_every_chart_draws_in_headless_chromium(acme) -> None:
    result = render_in_chromium(acme["html"], str(chromium()))
    drawn = {c["name"]: c for c in result["charts"]}
    assert set(drawn) == set(parse(acme["html"]).charts)
    assert {
        "funnel",
        "funnel-positive-reply",
        "experiment-lift",
        "guardrails",
        "registry-timeline",
        "training-durations",
        "replies-per-week",
        "strategies-industry",
        "strategies-role",
        "campaign-0-positive",
    } <= set(drawn)
    for name, chart in drawn.items():
        assert chart["marks"] > 0 and chart["drawn"] == chart["marks"], (name, chart)
        assert chart["width"] > 100 and chart["height"] > 20 and chart["texts"] > 0, (name, chart)
        assert chart["outside"] == [], (name, chart["outside"])  # nothing cut off at the chart's edge
    assert result["resources"] == []  # nothing was fetched
    assert result["width"] <= 1200  # no horizontal overflow at a laptop's width


def test_strategies_win_on_positive_replies_not_on_any_reply(db, db_url) -> None:
    """A strategy whose many replies are all unsubscribes does not win over one whose fewer replies
    are all interested; and a leader whose interval overlaps the others' is not called a winner."""
    db.execute("INSERT INTO organizations (org_id) VALUES ('shouty')")
    db.execute("""INSERT INTO outcome_labels (org_id, dedupe_key, campaign_id, lead_id, body, framework, tone,
                                              lead_industry, sent_at, replied_at, reply_category)
                  SELECT 'shouty', 'd' || i, 'c', 'l' || i, 'hi', CASE WHEN i <= 400 THEN 'SHOUT' ELSE 'ASK' END,
                         'casual', 'saas', now() - interval '3 days', CASE WHEN hit THEN now() END,
                         CASE WHEN hit THEN (CASE WHEN i <= 400 THEN 'unsubscribe' ELSE 'interested' END) END
                    FROM generate_series(1, 800) AS i
                   CROSS JOIN LATERAL (SELECT CASE WHEN i <= 400 THEN i % 5 = 0 ELSE i % 12 = 0 END AS hit) h""")
    page = parse(reports.render_html(reports.collect("shouty")))
    table = {r[1]["text"]: r for r in rows(page, "strategies-industry")}
    assert table["SHOUT"][5]["text"].startswith("20.0%") and table["SHOUT"][4]["text"].startswith("0.0%")
    assert table["ASK"][7]["text"] == "wins" and table["SHOUT"][7]["text"] == ""
    db.execute(
        "UPDATE outcome_labels SET reply_category = 'interested' WHERE org_id = 'shouty' AND "
        "framework = 'SHOUT' AND replied_at IS NOT NULL AND lead_id IN ('l5', 'l10', 'l15')"
    )
    db.execute(
        "UPDATE outcome_labels SET framework = 'ASK2' WHERE org_id = 'shouty' AND lead_id IN "
        "(SELECT 'l' || i FROM generate_series(401, 450) AS i)"
    )
    page = parse(reports.render_html(reports.collect("shouty")))
    assert [r[7]["text"] for r in rows(page, "strategies-industry")].count("highest so far") == 1


def test_nothing_sent_shows_no_rate(db, db_url) -> None:
    db.execute("INSERT INTO organizations (org_id) VALUES ('quiet')")
    html = reports.render_html(reports.collect("quiet"))
    tile = html.split("Positive reply rate</div>", 1)[1].split("</div></div>", 1)[0]
    assert "—" in tile and "no message sent" in tile and "%" not in tile


def test_campaign_combinations_too_small_to_say_anything_are_hidden(api, db, db_url) -> None:
    db.execute("""INSERT INTO outcome_labels (org_id, dedupe_key, campaign_id, lead_id, body, framework, tone, sent_at)
                  SELECT 'acme', 'tiny-' || i, 'q4-outbound', 'tiny-' || i, 'hi', 'TINY', 'odd', now()
                    FROM generate_series(1, 3) AS i""")
    status, body = api.get("/campaigns/q4-outbound/performance?org_id=acme")
    assert status == 200 and ("TINY", "odd") in {(g["framework"], g["tone"]) for g in body["by_strategy"]}
    html = reports.render_html(reports.collect("acme"))
    page = parse(html)
    section = page.campaigns["q4-outbound"]
    assert ("TINY", "odd") not in {(r[0]["text"], r[1]["text"]) for r in rows(page, f"{section}-strategies")}
    assert "TINY × odd" not in html and "1 combinations with fewer than 30 messages" in html


def _long_names(db) -> None:
    """Names as long as the API accepts, written the way senders write them: a 128-character campaign
    id, a 256-character model id, and framework, tone and industry of 200 characters that carry
    bidirectional overrides and terminal escape sequences."""
    db.execute("INSERT INTO organizations (org_id) VALUES ('longnames')")
    db.execute(
        """INSERT INTO outcome_labels (org_id, dedupe_key, campaign_id, lead_id, body, framework, tone,
                                              lead_industry, lead_role, sent_at, model_id, replied_at, reply_category)
                  SELECT 'longnames', 'd' || i, %s, 'l' || i, 'hi', %s, %s, %s, '営業担当副社長', now() - interval '1 day',
                         %s, CASE WHEN i %% 4 = 0 THEN now() END, CASE WHEN i %% 4 = 0 THEN 'interested' END
                    FROM generate_series(1, 60) AS i""",
        (
            "q" * 128,
            "PAS\u202e" + "reversed framework " * 10,
            "\x1b]0;owned\x07\x1b[2J" + "tone " * 39,
            "Ｆｉｎａｎｃｉａｌ " + "services-and-insurance-" * 8,
            "ft:gpt-4o-mini-2024-07-18:" + "m" * 230,
        ),
    )


def test_long_and_hostile_names_stay_readable(db, db_url) -> None:
    _long_names(db)
    data = reports.collect("longnames")
    html = reports.render_html(data)
    assert "\u202e" not in html and "\x1b" not in html and "\ufffd" in html  # shown, but inert
    status = render_status(data)
    assert "\x1b" not in status and "\x07" not in status
    funnel = [line for line in status.splitlines() if line.startswith("  ft:")]
    assert funnel and max(len(line) for line in funnel) < 140  # the model name is cut, the table stays readable
    if chromium() is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    result = render_in_chromium(html, str(chromium()))
    assert result["width"] <= 1200, result["width"]  # the page does not grow sideways
    for chart in result["charts"]:
        assert chart["outside"] == [], chart  # every label inside its chart, cut with an ellipsis


def test_campaign_performance_is_scoped_to_the_organisation(api, db, acme) -> None:
    status, mine = api.get("/campaigns/q4-outbound/performance?org_id=acme")
    status_other, theirs = api.get("/campaigns/q4-outbound/performance?org_id=globex")
    assert status == status_other == 200 and mine["messages"] != theirs["messages"]
    assert (
        mine["messages"]
        == db.execute(
            "SELECT count(*) AS n FROM outcome_labels WHERE org_id = 'acme' AND campaign_id = 'q4-outbound'"
        ).fetchone()["n"]
    )
    assert api.get("/campaigns/q4-outbound/performance?org_id=nobody")[0] == 404
    status, body = api.get("/campaigns/q4-outbound/performance")
    assert status == 422 and body["error"] == "validation_error" and "org_id" in body["message"]
    status, body = api.get("/campaigns/no-such-campaign/performance?org_id=acme")
    assert status == 404 and body["error"] == "not_found"
    # the sample's request (it names the seeded sample campaign: test_samples runs it as shipped),
    # for this data set's campaign
    event = load_event("campaign_performance_get.json")
    sample_campaign = event["pathParameters"]["campaign_id"]
    event = json.loads(json.dumps(event).replace(sample_campaign, "q4-outbound"))
    result = invoke("ReportsApiFunction", event, ROOT / "template.yaml")
    assert result["statusCode"] == 200 and json.loads(result["body"]) == json.loads(json.dumps(mine))


def test_cli_writes_the_report_and_prints_the_status(db_url, acme, tmp_path) -> None:
    env = {**os.environ, "DATABASE_URL": db_url, "PYTHONPATH": str(ROOT / "layers" / "flywheel")}
    out = tmp_path / "r" / "report.html"
    done = run_command([sys.executable, "-m", "flywheel.cli", "report", "--org", "acme", "--out", str(out)], env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out) and "Flywheel report · acme" in out.read_text()
    done = run_command([sys.executable, "-m", "flywheel.cli", "status", "--org", "acme"], env)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "\033[" not in text  # not a terminal: no colour
    for title in ("Funnel", "Experiment", "Registry", "Training", "Replies", "Data health"):
        assert any(line.startswith(title) for line in text.splitlines()), title
    funnel = [line for line in text.splitlines() if line.startswith("  v1.")]
    assert len(funnel) == 2 and len({len(line) for line in funnel}) == 1  # aligned columns
    done = run_command([sys.executable, "-m", "flywheel.cli", "status"], env)
    assert done.returncode == 2 and "choose one with --org: acme, globex" in done.stderr
    done = run_command([sys.executable, "-m", "flywheel.cli", "report", "--org", "nobody"], env)
    assert done.returncode == 1 and done.stderr.strip() == "flywheel report: no organisation 'nobody'"
    coloured = render_status(acme["data"], color=True)
    assert "\033[1m" in coloured and coloured.replace("\033[", "") != coloured
