"""The report as one self-contained HTML page: inline CSS, inline SVG charts, no script, and a
Content-Security-Policy that forbids fetching anything, so it opens offline, from a file or from
an S3 presigned link, and shows the same thing everywhere."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from flywheel.domain.funnel import LABELS, STEPS
from flywheel.views import charts
from flywheel.views.charts import BAD, GOOD, MUTED, PALETTE, esc, percent

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f4f5f7; color: #1f2937;
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
main { max-width: 980px; margin: 0 auto; padding: 20px 20px 40px; }
header h1 { font-size: 22px; margin: 0 0 2px; }
header p { margin: 0; color: #6b7280; }
nav { margin: 10px 0 0; font-size: 13px; }
nav a { color: #0072B2; margin-right: 12px; text-decoration: none; }
section { background: #fff; border: 1px solid #e5e7eb; border-radius: 8px; padding: 14px 20px 16px; margin: 14px 0; }
h2 { font-size: 17px; margin: 0 0 6px; }
h3 { font-size: 14px; margin: 14px 0 4px; }
p { margin: 6px 0; }
.note { color: #6b7280; font-size: 12px; }
.tiles { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: 10px; }
.tile { border: 1px solid #e5e7eb; border-radius: 6px; padding: 8px 10px; }
.tile .k { color: #6b7280; font-size: 12px; }
.tile .v { font-size: 19px; font-weight: 600; }
.tile .s { color: #6b7280; font-size: 11.5px; }
table { border-collapse: collapse; width: 100%; font-size: 12.5px; font-variant-numeric: tabular-nums; margin: 6px 0; }
th, td { padding: 4px 6px; border-bottom: 1px solid #eef0f3; text-align: right; vertical-align: top; }
th { color: #6b7280; font-weight: 600; }
td.l, th.l { text-align: left; }
td.l { overflow-wrap: anywhere; min-width: 5.5em; }
.nw { white-space: nowrap; }
h1, h3, p, dd, nav a, .tile .v { overflow-wrap: anywhere; }
.ci { color: #6b7280; font-size: 11px; white-space: nowrap; }
.badge { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 12px; font-weight: 600; }
.ok { background: #e3f4ec; color: #046c4e; }
.warn { background: #fff1dc; color: #8a4b00; }
.bad { background: #fde4dc; color: #9f2a00; }
.idle { background: #eef0f3; color: #4b5563; }
dl.facts { display: grid; grid-template-columns: 190px 1fr; gap: 2px 12px; margin: 6px 0; }
dl.facts dt { color: #6b7280; }
dl.facts dd { margin: 0; }
code { overflow-wrap: anywhere; font-size: 12px; background: #f3f4f6; padding: 1px 4px; border-radius: 4px; }
.scroll { overflow-x: auto; }
summary { cursor: pointer; color: #0072B2; margin: 6px 0; font-size: 13px; }
svg.chart { display: block; max-width: 100%; height: auto; margin: 8px 0 4px; }
svg.chart text { font-family: inherit; }
@media print { body { background: #fff; } section { break-inside: avoid; border-color: #fff; } nav { display: none; } }
"""

ACTION_BADGE = {
    "promote": "ok",
    "promoted": "ok",
    "advance": "ok",
    "continue": "idle",
    "running": "idle",
    "hold": "warn",
    "inconclusive": "warn",
    "restart": "warn",
    "rollback": "bad",
    "rolled_back": "bad",
    "succeeded": "ok",
    "insufficient_data": "warn",
    "failed": "bad",
    "cancelled": "bad",
}
REPLY_COLORS = {
    "interested": "#009E73",
    "meeting_request": "#00664a",
    "question": "#56B4E9",
    "referral": "#CC79A7",
    "not_now": "#F0E442",
    "out_of_office": "#c7cdd4",
    "auto_reply": "#9aa3ad",
    "wrong_person": "#7b8794",
    "objection": "#E69F00",
    "not_interested": "#D55E00",
    "unsubscribe": "#8c2d04",
    "other": "#0072B2",
    "unclassified": "#111827",
}
TIMELINE_KINDS = {
    "training": PALETTE[0],
    "deployment": PALETTE[4],
    "promotion": GOOD,
    "rollback": BAD,
    "restart": PALETTE[1],
    "failure": "#8c2d04",
    "training run": MUTED,
}
STEP_COLORS = {
    "pending": "#c7cdd4",
    "building": PALETTE[4],
    "uploading": PALETTE[0],
    "training": PALETTE[1],
    "registering": PALETTE[3],
    "serving": PALETTE[6],
    "smoke_testing": PALETTE[2],
}
# rows a chart or a table of the report draws at most (the API answers every row)
MAX_ROWS = 24


def render(data: dict[str, Any]) -> str:
    sections = [
        _overview(data),
        _funnel(data),
        _experiment(data),
        _registry(data),
        _training(data),
        _replies(data),
        _strategies(data),
        _campaigns(data),
        _health(data),
        _method(data),
    ]
    toc = "".join(
        f'<a href="#{anchor}">{esc(title)}</a>'
        for anchor, title in (
            ("funnel", "Funnel"),
            ("experiment", "Experiment"),
            ("registry", "Registry"),
            ("training", "Training"),
            ("replies", "Replies"),
            ("strategies", "Strategies"),
            ("campaigns", "Campaigns"),
            ("health", "Data health"),
        )
    )
    window = data["window"]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>Flywheel report · {esc(data['org_id'])} · {_day(data['generated_at'])}</title>"
        f"<style>{CSS}</style></head><body><main>"
        f"<header><h1>Flywheel report · {esc(data['org_id'])}</h1>"
        f"<p>Generated {_when(data['generated_at'])} · messages sent in the last {window['days']} days "
        f"({_day(window['since'])} to {_day(window['until'])}) unless a section says otherwise</p>"
        f"<nav>{toc}</nav></header>{''.join(sections)}</main></body></html>\n"
    )


# --- formatting -------------------------------------------------------------------------------------


def _utc(value: datetime) -> datetime:
    """The instant in UTC: what a datetime read from the database holds is in the session's zone
    (UTC by dal.connection's pin, but a report must say UTC and mean it whatever it was given);
    a naive one is taken as UTC already."""
    return value.astimezone(UTC) if isinstance(value, datetime) and value.tzinfo is not None else value


def _when(value: datetime | None) -> str:
    return "—" if value is None else f"{_utc(value):%Y-%m-%d %H:%M} UTC"


def _day(value: datetime | None) -> str:
    return "—" if value is None else f"{_utc(value):%Y-%m-%d}"


def _interval(low: float | None, high: float | None, fmt: charts.Fmt = percent) -> str:
    if low is None or high is None:
        return ""
    return f'<span class="ci">[{esc(fmt(low))} – {esc(fmt(high))}]</span>'


def _rate(cell: dict[str, Any]) -> str:
    if cell["rate"] is None:
        return '<span class="ci">—</span>'
    return f"{esc(percent(cell['rate']))} {_interval(*cell['interval'])}"


def _badge(text: str, kind: str | None = None) -> str:
    return f'<span class="badge {kind or ACTION_BADGE.get(text, "idle")}">{esc(text.replace("_", " "))}</span>'


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], attrs: str = "", align: str = "l") -> str:
    """Cells are HTML already; `align` gives each column's alignment (l or r; the last letter repeats)."""

    def cls(i: int) -> str:
        return ' class="l"' if (align[i] if i < len(align) else align[-1] if len(align) > 1 else "r") == "l" else ""

    head = "".join(f"<th{cls(i)}>{esc(h)}</th>" for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f"<td{cls(i)}>{c}</td>" for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f'<div class="scroll"><table{attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{esc(title)}</h2>{body}</section>'


def _nowrap(text: str) -> str:
    return f'<span class="nw">{esc(text)}</span>'


def _empty(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def _pp(value: float) -> str:
    return f"{value * 100:+.2f} pp"


def group_label(group: dict[str, Any]) -> str:
    """A funnel group's name: the model's version (or external model id) and the experiment arm."""
    model = group.get("version") or group.get("model") or "unknown model"
    return f"{model} · {group['arm']}" if group.get("arm") else str(model)


def funnel_table(
    groups: Sequence[dict[str, Any]], key_headers: Sequence[str], keys: Sequence[str], table_id: str
) -> str:
    """Counts and rates of sent at every step, with 95 % Wilson intervals (one row per group)."""
    headers = [*key_headers, *(LABELS[s] for s in STEPS)]
    rows = []
    for g in groups:
        cells = [esc(g.get(k) if g.get(k) is not None else "—") for k in keys]
        for step in STEPS:
            cell = g["funnel"][step]
            text = f"<b>{cell['count']:,}</b>" + ("" if step == "sent" else f"<br>{_rate(cell)}")
            cells.append(f'<span data-step="{step}" data-count="{cell["count"]}">{text}</span>')
        rows.append(cells)
    return _table(headers, rows, f' data-table="{esc(table_id)}"', "l" * len(keys) + "r")


# --- sections ---------------------------------------------------------------------------------------


def _overview(data: dict[str, Any]) -> str:
    total = data["funnel"]["total"]["funnel"]
    experiment = data["experiment"]
    roles = data["registry"]["roles"]
    runs = data["training"]
    issues = _health_issues(data["health"])
    sent = total["sent"]["count"]

    def share(step: str) -> str:
        return f"{percent(total[step]['rate'])} of sent" if sent else "no message sent"

    tiles = [
        ("Messages sent", f"{sent:,}", f"last {data['window']['days']} days"),
        (
            "Positive reply rate",
            percent(total["positive_reply"]["rate"]) if sent else "—",
            _plain_interval(total["positive_reply"]["interval"]) if sent else "no message sent",
        ),
        ("Meetings booked", f"{total['meeting']['count']:,}", share("meeting")),
        ("Deals won", f"{total['won']['count']:,}", share("won")),
        (
            "Experiment",
            (
                experiment["stage"]
                if experiment and experiment["status"] == "running"
                else (experiment["status"].replace("_", " ") if experiment else "none")
            ),
            (
                f"{experiment['decision']['action'] or 'not evaluated yet'} · day {experiment['days_running']:.0f}"
                if experiment
                else "no challenger deployed"
            ),
        ),
        (
            "Champion",
            roles["champion"]["version"] if "champion" in roles else "none",
            f"{roles['champion']['traffic']:.0f}% of traffic" if "champion" in roles else "use your default model",
        ),
        (
            "Last training run",
            runs[0]["status"].replace("_", " ") if runs else "none",
            _day(runs[0]["started_at"]) if runs else "no run yet",
        ),
        (
            "Data health",
            "ok" if not issues else f"{len(issues)} to look at",
            "; ".join(issues)[:80] or "nothing waiting",
        ),
    ]
    body = "".join(
        f'<div class="tile"><div class="k">{esc(k)}</div><div class="v">{esc(v)}</div>'
        f'<div class="s">{esc(s)}</div></div>'
        for k, v, s in tiles
    )
    return _section("overview", "At a glance", f'<div class="tiles">{body}</div>')


def _plain_interval(interval: Sequence[float]) -> str:
    return f"95% interval {percent(interval[0])} – {percent(interval[1])}"


def _funnel(data: dict[str, Any]) -> str:
    groups = data["funnel"]["by_model_arm"]
    if not groups:
        return _section("funnel", "Funnel by model and arm", _empty("No messages were sent in the window."))
    # the largest groups, one colour each (groups come largest first)
    labelled = [{**g, "label": group_label(g)} for g in groups[: len(PALETTE)]]
    bars = charts.funnel_bars(
        "funnel",
        labelled,
        [(s, LABELS[s]) for s in STEPS],
        label="Share of messages sent that reached each step, per model and arm",
    )
    positive = charts.intervals(
        "funnel-positive-reply",
        [
            {
                "label": g["label"],
                "estimate": g["funnel"]["positive_reply"]["rate"],
                "low": g["funnel"]["positive_reply"]["interval"][0],
                "high": g["funnel"]["positive_reply"]["interval"][1],
                "color": PALETTE[i % len(PALETTE)],
            }
            for i, g in enumerate(labelled)
        ],
        label="Positive reply rate per model and arm, with 95% Wilson intervals",
    )
    rows = [{**g, "version": g.get("version") or g.get("model")} for g in groups[:MAX_ROWS]]
    table = funnel_table(rows, ["model", "arm"], ["version", "arm"], "funnel")
    more = (
        _empty(
            f"The charts show the {len(labelled)} largest of {len(groups)} groups"
            + (f", the table the {len(rows)} largest." if len(groups) > len(rows) else ".")
        )
        if len(groups) > len(labelled)
        else ""
    )
    return _section(
        "funnel",
        "Funnel by model and arm",
        (
            '<p class="note">Each step as a share of the messages sent, with its 95% Wilson interval. Human opens '
            "exclude privacy-proxy (machine) opens; a positive reply is one classified interested or meeting request. "
            "Recent messages have not had their full time to reply, meet or close.</p>"
            f"{bars}<h3>Positive reply rate</h3>{positive}{table}{more}"
        ),
    )


def _plan_text(plan: dict[str, Any]) -> str:
    if not plan:
        return "—"
    baseline = (plan.get("baselines") or {}).get("positive_reply")
    parts = [
        f"planned lift {plan['mde']:+.0%}" if plan.get("mde") is not None else "",
        f"on a {percent(baseline)} positive-reply rate" if baseline is not None else "",
        f"split {plan['split']}" if plan.get("split") else "",
        f"canary {plan['canary_sample']:,} leads" if plan.get("canary_sample") else "",
        f"A/B {plan['sequential_sample']:,} leads" if plan.get("sequential_sample") else "",
        f"at {plan['weekly_volume']:,.0f} leads a week" if plan.get("weekly_volume") else "",
        f"about {plan['total_days']:.0f} days" if plan.get("total_days") else "",
        f"({plan['source']} figures)" if plan.get("source") else "",
    ]
    return ", ".join(p for p in parts if p)


def _guardrail_status(g: dict[str, Any]) -> str:
    if g["harm"]:
        return _badge("clear harm", "bad")
    if not g["units"] or g["difference"] is None:
        return _badge("no data yet", "idle")
    return _badge("non-inferior", "ok") if g["non_inferior"] else _badge("not yet shown non-inferior", "warn")


def _experiment(data: dict[str, Any]) -> str:
    e = data["experiment"]
    if e is None:
        return _section(
            "experiment", "Experiment", _empty("No experiment has run yet: deploying a challenger starts one.")
        )
    running = e["status"] == "running"
    share, plan = e["allocation"], e["plan"]
    mdl = plan.get("mde_in_time")
    if mdl is not None:
        detectable = f"{mdl:+.1%} within {plan.get('max_runtime_days', e['max_runtime_days']):.0f} days"
    else:
        detectable = "none within the maximum runtime" if plan.get("weekly_volume") else "unknown (volume unknown)"
    facts = [
        ("Experiment", f"<code>{esc(e['experiment_id'])}</code> {_badge(e['status'])}"),
        ("Champion vs challenger", f"{esc(e['champion'])} vs {esc(e['challenger'])}"),
        (
            "Stage and allocation",
            f"{esc(e['stage'])} (segment {e['segment']}) · challenger {share * 100:.0f}%, champion "
            f"{(1 - share) * 100:.0f}%" + ("" if running else " when it ended"),
        ),
        (
            "Days run",
            f"{e['days_running']:.1f} (started {_day(e['started_at'])}"
            + (f", ended {_day(e['ended_at'])})" if e["ended_at"] else ")"),
        ),
        (
            "Days left",
            f"at most {e['days_left']:.1f} (maximum runtime {e['max_runtime_days']:.0f} days, minimum "
            f"{e['min_runtime_days']:.0f})"
            if running
            else "ended",
        ),
        (
            "Canary",
            esc(
                f"{e['canary']['units'] or 0:,} of {e['canary']['planned'] or 0:,} planned leads"
                + (" (complete)" if e["canary"]["complete"] else "")
            ),
        ),
        ("A/B units / planned", esc(f"{e['units']:,} / {e['planned_sample']:,}")),
        (
            "Latest decision",
            f"{_badge(e['decision']['action'] or 'not evaluated yet')} {esc(e['decision']['reason'] or '')}",
        ),
        ("Plan", esc(_plan_text(plan))),
        ("Minimum detectable lift", esc(detectable)),
    ]
    if e["warnings"]:
        facts.append(("Planner warnings", "<br>".join(_badge("warning", "warn") + " " + esc(w) for w in e["warnings"])))
    body = ['<dl class="facts">' + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>"]
    primary = e["primary"]
    body.append("<h3>Primary lift over time</h3>")
    markers, previous = [], None
    for point in e["history"]:
        if previous is not None and (point["stage"], point["segment"]) != previous:
            markers.append((point["at"], f"{point['stage']} (segment {point['segment']})"))
        previous = (point["stage"], point["segment"])
    chart = charts.interval_series(
        "experiment-lift",
        e["history"],
        markers=markers,
        label=f"Relative lift of {primary.get('metric') or 'the primary metric'} with its "
        "95% always-valid interval, one point per daily evaluation",
    )
    body.append(
        chart
        or _empty(
            "No evaluation has measured the primary metric yet (a lead counts once its "
            "14-day reply window from its first message has closed)."
        )
    )
    if primary.get("lift") is not None:
        rates = primary.get("rates") or [None, None]
        low, high = primary.get("interval") or [None, None]
        champion, challenger = (esc(percent(r)) if r is not None else "—" for r in rates)
        body.append(
            f"<p>{esc(primary.get('metric'))}: champion {champion} vs challenger {challenger}, lift "
            f"<b>{esc(charts.signed_percent(primary['lift']))}</b> "
            f"{_interval(low, high, charts.signed_percent)}"
            '<span class="note"> (always-valid: safe to read every day)</span></p>'
        )
    rows = [
        [
            _nowrap(_when(h["at"])),
            f"{h['day']:.1f}" if h["day"] is not None else "—",
            esc(f"{h['stage']} / {h['segment']}"),
            _badge(h["action"]),
            esc(f"{h['units']:,}") if h["units"] else "—",
            (esc(charts.signed_percent(h["estimate"])) + " " + _interval(h["low"], h["high"], charts.signed_percent))
            if h["estimate"] is not None
            else "—",
            esc(f"{h['srm_p_value']:.3g}") if h["srm_p_value"] is not None else "—",
            esc(h["reason"]),
        ]
        for h in reversed(e["history"])
    ]
    body.append(
        f"<details><summary>Every evaluation ({len(rows)}), newest first</summary>"
        + _table(
            ["evaluated", "day", "stage / segment", "decision", "A/B units", "lift", "SRM p", "reason"],
            rows,
            ' data-table="evaluations"',
            "lrlrrrrl",
        )
        + "</details>"
        if rows
        else _empty("Not evaluated yet.")
    )
    body.append(
        '<h3>Guardrails (challenger − champion)</h3><p class="note">On one scale: each difference '
        "divided by its guardrail's margin, so the dashed red line is every margin; green is shown "
        "non-inferior (the interval ends left of it), red is clear harm (the interval starts right of 0)."
        "</p>"
    )
    # one scale for every guardrail: its difference as a multiple of its own margin (1 = the margin)
    measured = [g for g in e["guardrails"] if g["units"] and g["difference"] is not None and g["margin"]]
    body.append(
        charts.intervals(
            "guardrails",
            [
                {
                    "label": g["name"].replace("_", " "),
                    "estimate": g["difference"] / g["margin"],
                    "low": g["low"] / g["margin"] if g["low"] is not None else None,
                    "high": g["high"] / g["margin"] if g["high"] is not None else None,
                    "color": BAD if g["harm"] else (GOOD if g["non_inferior"] else PALETTE[0]),
                    "note": f"{_pp(g['difference'])} (margin {_pp(g['margin'])})",
                }
                for g in measured
            ],
            fmt=lambda v: f"{v:+.1f}×",
            reference=0.0,
            margin=1.0,
            margin_label="margin",
            label="Each guardrail's difference (challenger − champion) and always-valid interval, as a multiple of its "
            "non-inferiority margin",
        )
        if measured
        else ""
    )
    rows = []
    for g in e["guardrails"]:
        rows.append(
            [
                esc(g["name"].replace("_", " ")),
                esc(_pp(g["difference"])) if g["difference"] is not None else "—",
                _interval(g["low"], g["high"], _pp),
                esc(_pp(g["margin"]) if g["margin"] is not None else "—"),
                f"{g['units']:,}",
                _guardrail_status(g),
            ]
        )
    body.append(
        _table(
            ["guardrail", "difference", "interval", "margin", "units", "status"],
            rows,
            ' data-table="guardrails"',
            "lrrrrl",
        )
        if rows
        else _empty("No guardrail has been evaluated yet.")
    )
    srm = e["srm"]
    body.append("<h3>Sample ratio</h3>")
    body.append(
        _empty("Not evaluated yet.")
        if srm["p_value"] is None
        else (
            f"<p>Pearson χ² p = {srm['p_value']:.3g} (alarm below {srm['threshold']:g})"
            + (
                f"; assigned {srm['assigned'][0]:,} champion / {srm['assigned'][1]:,} challenger for an expected "
                f"{srm['expected_share'] * 100:.0f}% challenger share"
                if srm.get("assigned") and srm.get("expected_share") is not None
                else ""
            )
            + " "
            + (
                _badge("mismatch: promotion held until the stage is restarted", "bad")
                if srm["flagged"]
                else _badge("assignment looks right", "ok")
            )
            + "</p>"
        )
    )
    return _section(
        "experiment",
        "Experiment",
        "".join(body) + '<p class="note">The experiment runs on every organisation\'s traffic; its numbers are totals, '
        "not this organisation's alone. Guardrails are non-inferiority tests: a challenger is promoted "
        "only when every guardrail's upper bound is below its margin; a lower bound above zero is clear "
        "harm and rolls it back.</p>",
    )


def _registry(data: dict[str, Any]) -> str:
    reg = data["registry"]
    roles = ", ".join(f"{role} {esc(m['version'])} at {m['traffic']:.0f}%" for role, m in sorted(reg["roles"].items()))
    events = [
        {"at": e["at"], "kind": e["kind"], "text": f"{e['version']} {e['action'].replace('_', ' ')}"}
        for e in reg["events"]
        if e["kind"] != "change"
    ]
    events += [
        {
            "at": r["started_at"],
            "kind": "training run",
            "text": f"run {r['run_id'][:8]} {r['status'].replace('_', ' ')}",
        }
        for r in data["training"]
        if r["started_at"] >= data["window"]["since"]
    ]
    chart = charts.timeline(
        "registry-timeline",
        events,
        TIMELINE_KINDS,
        start=data["window"]["since"],
        end=data["window"]["until"],
        label="Model registry: trainings, deployments, promotions and rollbacks",
    )
    rows = [
        [
            _nowrap(_when(e["at"])),
            esc(e["version"]),
            _badge(e["action"], {"promotion": "ok", "rollback": "bad", "failure": "bad"}.get(e["kind"], "idle")),
            esc(_traffic(e["traffic"])),
            esc(e["reason"] or ""),
            esc(e["evidence"]),
            esc(e["actor"]),
        ]
        for e in reversed(reg["events"])
    ]
    body = f"<p>Now: {roles or 'no model deployed'}.</p>{chart}" + (
        _table(
            ["when", "model", "change", "traffic", "reason", "evidence", "by"],
            rows,
            ' data-table="registry"',
            "lllrlll",
        )
        if rows
        else _empty("No registry change in the window.")
    )
    return _section("registry", "Model registry", body)


def _traffic(traffic: Sequence[float | None]) -> str:
    before, after = traffic
    if before is None or after is None or before == after:
        return ""
    return f"{before:.0f}% → {after:.0f}%"


def _training(data: dict[str, Any]) -> str:
    runs = data["training"]
    if not runs:
        return _section("training", "Training runs", _empty("No training run yet."))
    chart = charts.duration_bars(
        "training-durations",
        [{"label": f"{r['run_id'][:8]} · {_day(r['started_at'])}", "steps": r["steps"]} for r in runs],
        STEP_COLORS,
        label="Time spent in each step of the last training runs",
    )
    blocks = []
    for r in runs:
        ex = r["examples"]
        facts = [
            ("Status", f"{_badge(r['status'])} {esc(r['error'] or '')}"),
            (
                "Trigger, provider, method",
                esc(f"{r['trigger']} · {r['provider'] or '—'} · {r['base_model'] or '—'} · {r['method'] or '—'}"),
            ),
            ("Started, finished", esc(f"{_when(r['started_at'])} → {_when(r['finished_at'])}")),
            (
                "Dataset",
                esc(f"{ex['train'] or 0:,} train + {ex['validation'] or 0:,} validation examples")
                if ex["train"] is not None
                else "not built",
            ),
            ("By label", esc(", ".join(f"{k} {v:,}" for k, v in sorted(r["by_label"].items())) or "—")),
            (
                "By organisation",
                esc(
                    f"this organisation {r['by_org']['this organisation']:,}, "
                    f"{r['by_org']['other organisations count']} other organisations "
                    f"{r['by_org']['other organisations']:,}"
                ),
            ),
            (
                "Redactions",
                esc(
                    (", ".join(f"{k} {v:,}" for k, v in sorted(r["redactions"].items())) or "none")
                    + {True: "; residual scan passed", False: "; residual scan FAILED", None: ""}[
                        r["residual_scan_passed"]
                    ]
                ),
            ),
            (
                "Tokens, cost",
                esc(
                    f"{r['tokens']:,} tokens ({r['token_method'] or 'not counted'}); "
                    + (
                        f"estimated ${r['cost_usd']:,.2f} for {r['billed_tokens']:,} billed tokens"
                        if r["cost_usd"] is not None
                        else "no price known"
                    )
                ),
            ),
            ("Steps", esc(", ".join(f"{s.replace('_', ' ')} {charts.format_seconds(sec)}" for s, sec in r["steps"]))),
            ("Model", esc(r["model_id"] or "none registered")),
        ]
        blocks.append(
            f"<h3>Run <code>{esc(r['run_id'])}</code></h3>"
            + '<dl class="facts">'
            + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in facts)
            + "</dl>"
        )
    return _section(
        "training",
        "Training runs",
        chart + "".join(blocks) + '<p class="note">Datasets pool every organisation that opted in to training; other '
        "organisations appear only as a total.</p>",
    )


def _replies(data: dict[str, Any]) -> str:
    replies = data["replies"]
    if not replies["total"]:
        return _section("replies", "Replies", _empty("No reply was received in the window."))
    order = [c for c in REPLY_COLORS if c in replies["by_category"]] + [
        c for c in replies["by_category"] if c not in REPLY_COLORS
    ]
    columns = [
        {
            "label": charts.week_label(w["week"]),
            "values": w["categories"],
            "note": f"{percent(w['fallback_share'], 0)} fb" if w["fallback_share"] is not None else "",
        }
        for w in replies["weeks"]
    ]
    chart = charts.stacked_columns(
        "replies-per-week",
        columns,
        [(c, REPLY_COLORS.get(c, MUTED)) for c in order],
        label="Replies received per week, by category (fb: share classified by the offline fallback)",
    )
    share = replies["fallback_share"]
    summary = (
        f"<p>{replies['total']:,} replies in the window; {replies['classified']:,} classified, "
        + (
            f"<b>{esc(percent(share))}</b> of them by the offline fallback"
            + (" — set up the LLM classifier for better categories." if share and share > 0.5 else ".")
            if share is not None
            else "none yet."
        )
        + "</p>"
    )
    rows = [
        [esc(c.replace("_", " ")), f"{n:,}", esc(percent(n / replies["total"]))]
        for c, n in replies["by_category"].items()
    ]
    weekly = [
        [
            esc(f"{w['week']:%Y-%m-%d}"),
            f"{w['replies']:,}",
            f"{w['fallback']:,}",
            esc(percent(w["fallback_share"])) if w["fallback_share"] is not None else "—",
        ]
        for w in replies["weeks"]
        if w["replies"]
    ]
    return _section(
        "replies",
        "Replies",
        summary
        + chart
        + _table(["category", "replies", "share"], rows, ' data-table="reply-categories"', "lr")
        + _table(["week of", "replies", "by fallback", "fallback share"], weekly, ' data-table="replies-weekly"'),
    )


def _leader_badge(cells: Sequence[dict[str, Any]], best: dict[str, Any]) -> str:
    """The segment's best positive-reply rate: a winner only when its interval clears every other's."""
    others = [c["positive_reply_rate"]["interval"][1] for c in cells if c is not best]
    if not best["positive_reply_rate"]["rate"]:
        return ""
    if others and best["positive_reply_rate"]["interval"][0] > max(others):
        return _badge("wins", "ok")
    return _badge("highest so far" if others else "only cell", "idle")


def _strategies(data: dict[str, Any]) -> str:
    body = [
        '<p class="note">Positive-reply, reply and meeting rates of each framework × tone within each segment, '
        "over all of this organisation's messages, with 95% Wilson intervals; cells with fewer messages than the "
        "minimum sample are hidden. A reply can be an unsubscribe: strategies are ranked by positive replies "
        "(interested or meeting request). Where intervals overlap, the data does not yet say which is better. Same "
        "numbers as <code>GET /insights/strategies?org_id=…</code>.</p>"
    ]
    for segment, result in data["strategies"].items():
        body.append(f"<h3>By {esc(segment)}</h3>")
        if not result["cells"]:
            body.append(
                _empty(
                    f"No cell has {result['min_sample']} messages yet"
                    + (f" ({result['hidden_cells']} hidden)." if result["hidden_cells"] else ".")
                )
            )
            continue
        # the segments with the most messages, each with its cells best first
        volume: dict[str, int] = {}
        for c in result["cells"]:
            volume[c["segment"]] = volume.get(c["segment"], 0) + c["reply_rate"]["n"]
        segments = sorted(volume, key=lambda k: (-volume[k], k))
        ranked = sorted(
            result["cells"],
            key=lambda c: (segments.index(c["segment"]), -(c["positive_reply_rate"]["rate"] or 0), c["framework"]),
        )
        cells, left_out = ranked[:MAX_ROWS], len(ranked) - MAX_ROWS
        body.append(
            charts.intervals(
                f"strategies-{segment}",
                [
                    {
                        "label": f"{c['segment']} · {c['framework']} × {c['tone']}",
                        "estimate": c["positive_reply_rate"]["rate"],
                        "low": c["positive_reply_rate"]["interval"][0],
                        "high": c["positive_reply_rate"]["interval"][1],
                        "color": PALETTE[segments.index(c["segment"]) % len(PALETTE)],
                    }
                    for c in cells
                ],
                label=f"Positive reply rate by framework and tone, per {segment}",
            )
        )
        best = {s: next(c for c in ranked if c["segment"] == s) for s in segments}
        rows = [
            [
                esc(c["segment"]),
                esc(c["framework"]),
                esc(c["tone"]),
                f"{c['reply_rate']['n']:,}",
                _rate(c["positive_reply_rate"]),
                _rate(c["reply_rate"]),
                _rate(c["meeting_rate"]),
                _leader_badge([x for x in ranked if x["segment"] == c["segment"]], c)
                if best[c["segment"]] is c
                else "",
            ]
            for c in cells
        ]
        body.append(
            _table(
                [segment, "framework", "tone", "messages", "positive reply rate", "reply rate", "meeting rate", ""],
                rows,
                f' data-table="strategies-{esc(segment)}"',
                "lllrrrrl",
            )
        )
        notes = (
            [f"{left_out} more cells (smaller segments) are left out here; the API answers them all."]
            if left_out > 0
            else []
        )
        if result["hidden_cells"]:
            notes.append(f"{result['hidden_cells']} cells with fewer than {result['min_sample']} messages are hidden.")
        body.extend(_empty(n) for n in notes)
    return _section("strategies", "Strategies that win", "".join(body))


def _campaigns(data: dict[str, Any]) -> str:
    campaigns = data["campaigns"]
    if not campaigns["shown"]:
        return _section("campaigns", "Campaigns", _empty("No campaign sent in the window."))
    links = "".join(f'<a href="#campaign-{i}">{esc(c["campaign_id"])}</a>' for i, c in enumerate(campaigns["shown"]))
    body = [
        f'<p class="note">Every message of each campaign that sent in the window (the busiest '
        f"{campaigns['limit']}{', more not shown' if campaigns['more'] else ''}), all time. Each section shows "
        "the numbers <code>GET /campaigns/{campaign_id}/performance</code> answers.</p>"
        f"<nav>{links}</nav>"
    ]
    for i, c in enumerate(campaigns["shown"]):
        path = f"GET /campaigns/{c['campaign_id']}/performance?org_id={data['org_id']}"
        overall = funnel_table(
            [{"scope": "all messages", "funnel": c["funnel"]}], ["campaign"], ["scope"], f"campaign-{i}-total"
        )
        models = funnel_table(
            [{**g, "version": g.get("version") or g.get("model")} for g in c["by_model"][:MAX_ROWS]],
            ["model"],
            ["version"],
            f"campaign-{i}-models",
        )
        # like the strategies: combinations with too few messages to say anything are hidden
        shown = [g for g in c["by_strategy"] if g["messages"] >= campaigns["min_sample"]][:MAX_ROWS]
        strategies = funnel_table(shown, ["framework", "tone"], ["framework", "tone"], f"campaign-{i}-strategies")
        chart = charts.intervals(
            f"campaign-{i}-positive",
            [
                {
                    "label": f"{g.get('framework') or '—'} × {g.get('tone') or '—'}",
                    "estimate": g["funnel"]["positive_reply"]["rate"],
                    "low": g["funnel"]["positive_reply"]["interval"][0],
                    "high": g["funnel"]["positive_reply"]["interval"][1],
                }
                for g in shown
            ],
            label=f"Positive reply rate by framework and tone in campaign {c['campaign_id']}",
        )
        hidden = len(c["by_strategy"]) - len(shown)
        left_out = len(c["by_model"]) - MAX_ROWS
        body.append(
            f'<div id="campaign-{i}" data-campaign="{esc(c["campaign_id"])}"><h3>{esc(c["campaign_id"])}</h3>'
            f'<p class="note">{c["messages"]:,} messages, {_day(c["first_sent_at"])} to {_day(c["last_sent_at"])} · '
            f"same numbers as <code>{esc(path)}</code></p>{overall}<h3>By model</h3>{models}"
            + (_empty(f"{left_out} smaller models are left out here.") if left_out > 0 else "")
            + f"<h3>By framework × tone</h3>{chart}{strategies}"
            + (
                _empty(
                    f"{hidden} combinations with fewer than {campaigns['min_sample']} messages (or beyond the "
                    f"{MAX_ROWS} largest) are hidden; their messages count in the campaign's total."
                )
                if hidden
                else ""
            )
            + "</div>"
        )
    return _section("campaigns", "Campaigns", "".join(body))


def _health_issues(health: dict[str, Any]) -> list[str]:
    issues = []
    if health["unclassified_replies"]:
        issues.append(f"{health['unclassified_replies']} replies unclassified")
    if health["orphan_events"]:
        issues.append(f"{health['orphan_events']} orphan events")
    if health["quarantined"]:
        issues.append(f"{health['quarantined']} events quarantined")
    dlq = health.get("queues", {}).get("dead_letter_queue", {})
    if dlq.get("known") and dlq.get("messages"):
        issues.append(f"{dlq['messages']} replies in the dead-letter queue (all organisations)")
    return issues


def _health(data: dict[str, Any]) -> str:
    h = data["health"]
    now = data["generated_at"]

    def age(value: datetime | None) -> str:
        return "" if value is None else f"oldest {charts.format_seconds((now - value).total_seconds())} old"

    def queue(name: str) -> tuple[str, str, str]:
        q = h.get("queues", {}).get(name, {"known": False, "reason": "not read"})
        if not q["known"]:
            return "unknown", q.get("reason", ""), "idle"
        kind = "ok" if not q["messages"] else ("bad" if name == "dead_letter_queue" else "warn")
        return f"{q['messages']:,}", "", kind

    def unknown(n: int, what: str) -> str:
        return f"+ {n:,} {what} of no known organisation yet" if n else ""

    rows = [
        (
            "Orphan events waiting for their message",
            f"{h['orphan_events']:,}",
            " · ".join(t for t in (age(h["oldest_orphan"]), unknown(h["orphans_unknown_org"], "events")) if t),
            "ok" if not h["orphan_events"] else "warn",
        ),
        (
            "Replies that matched no message",
            f"{h['unmatched_replies']:,}",
            unknown(h["unmatched_replies_unknown_org"], "replies"),
            "ok" if not h["unmatched_replies"] else "warn",
        ),
        (
            "Replies not classified yet",
            f"{h['unclassified_replies']:,}",
            age(h["oldest_unclassified"]),
            "ok" if not h["unclassified_replies"] else "warn",
        ),
        (
            "Malformed provider events quarantined in the window",
            f"{h['quarantined']:,}",
            " · ".join(
                t
                for t in (
                    f"latest {_when(h['latest_quarantined'])}" if h["latest_quarantined"] else "",
                    unknown(h["quarantined_unknown_org"], "events"),
                )
                if t
            ),
            "ok" if not h["quarantined"] else "warn",
        ),
        ("Replies waiting on the classifier queue (all organisations)", *queue("replies_queue")),
        ("Replies in the dead-letter queue (all organisations)", *queue("dead_letter_queue")),
    ]
    table = _table(
        ["", "count", "", "status"],
        (
            [
                esc(name),
                esc(value),
                f'<span class="note">{esc(note)}</span>',
                _badge({"ok": "ok", "warn": "look", "bad": "act", "idle": "n/a"}[kind], kind),
            ]
            for name, value, note, kind in rows
        ),
        ' data-table="health"',
        "lrll",
    )
    return _section("health", "Data health", table)


def _method(data: dict[str, Any]) -> str:
    return _section(
        "method",
        "How to read this report",
        (
            '<p class="note">Rates are shares of the messages sent with 95% Wilson score intervals (the same code as '
            "the API's leaderboard). The experiment's lift is the relative difference of positive-reply rates with an "
            "always-valid (sequential) 95% interval, so reading it every day does not inflate false wins; a lead counts "  # noqa: E501
            "once its outcome window has closed. Guardrails are absolute differences (challenger − champion) against "
            "their non-inferiority margins. This page fetches nothing: no script, no font, no image from anywhere; it "
            f"can be kept, mailed or printed as it is. Generated {_when(data['generated_at'])}.</p>"
        ),
    )
