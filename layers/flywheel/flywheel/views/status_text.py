"""`flywheel status`: the report's essentials as a few aligned terminal lines per section.
Colour (ANSI) only when asked, i.e. when stdout is a terminal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flywheel.views.charts import clean, format_seconds, percent, signed_percent

RESET, BOLD, DIM, GREEN, YELLOW, RED = "\033[0m", "\033[1m", "\033[2m", "\033[32m", "\033[33m", "\033[31m"
TONE = {
    "promote": GREEN,
    "promoted": GREEN,
    "advance": GREEN,
    "succeeded": GREEN,
    "ok": GREEN,
    "hold": YELLOW,
    "inconclusive": YELLOW,
    "insufficient_data": YELLOW,
    "look": YELLOW,
    "rollback": RED,
    "rolled_back": RED,
    "failed": RED,
    "cancelled": RED,
    "act": RED,
}
LABEL_WIDTH = 12
NAME_WIDTH = 40  # a model name longer than this is cut (model ids are whatever the sender wrote)


def use_color(stream: Any, environ: dict[str, str]) -> bool:
    """Colour on a terminal, unless NO_COLOR is set (no-color.org) or the terminal is dumb."""
    return bool(stream.isatty()) and not environ.get("NO_COLOR") and environ.get("TERM") != "dumb"


def _short(name: str) -> str:
    return name if len(name) <= NAME_WIDTH else name[: NAME_WIDTH - 1] + "…"


def _cleaned(value: Any) -> Any:
    """Every string of the report's data without control characters: a name sent through the API
    never reaches the operator's terminal as an escape sequence."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {k: _cleaned(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_cleaned(v) for v in value)
    return value


class Painter:
    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, text: str, *codes: str) -> str:
        return f"{''.join(codes)}{text}{RESET}" if self.color and codes else text

    def word(self, text: str) -> str:
        return self(text.replace("_", " "), TONE.get(text, ""))


def _columns(rows: Sequence[Sequence[str]], right: set[int], indent: str = "  ") -> list[str]:
    """Rows as aligned columns (widths from the longest cell; `right` columns right-aligned)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        indent
        + "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def render(data: dict[str, Any], *, color: bool = False) -> str:
    data = _cleaned(data)
    p = Painter(color)
    lines = [
        p(
            f"Flywheel · {data['org_id']} · {data['generated_at']:%Y-%m-%d %H:%M} UTC · messages sent in the last "
            f"{data['window']['days']} days",
            BOLD,
        ),
        "",
    ]

    def section(title: str, first: str, rest: Sequence[str] = ()) -> None:
        lines.append(p(title.ljust(LABEL_WIDTH), BOLD) + first)
        lines.extend(rest)

    groups = data["funnel"]["by_model_arm"]
    if groups:
        table = [["", "sent", "delivered", "opens", "replied", "positive reply", "meeting", "won"]]
        for g in groups:
            f = g["funnel"]
            name = _short(str(g.get("version") or g.get("model"))) + (f" · {g['arm']}" if g.get("arm") else "")
            low, high = f["positive_reply"]["interval"]
            table.append(
                [
                    name,
                    f"{f['sent']['count']:,}",
                    *(percent(f[s]["rate"] or 0) for s in ("delivered", "opened", "replied")),
                    f"{percent(f['positive_reply']['rate'] or 0)} [{percent(low)}–{percent(high)}]",
                    percent(f["meeting"]["rate"] or 0),
                    percent(f["won"]["rate"] or 0),
                ]
            )
        header, *body = _columns(table, set(range(1, 8)))
        lines.append(p("Funnel", BOLD))
        lines.extend([p(header, DIM), *body])
    else:
        section("Funnel", "no message sent in the window")

    e = data["experiment"]
    if e is None:
        section("Experiment", "none has run yet")
    else:
        primary, srm = e["primary"], e["srm"]
        running = e["status"] == "running"
        head = (
            f"{e['experiment_id']} {p.word(e['status'])} · {e['stage']} · challenger "
            f"{e['allocation'] * 100:.0f}%{'' if running else ' at the end'} · day {e['days_running']:.1f}"
            + (f", ≤{e['days_left']:.1f} left" if running else "")
        )
        rest = []
        interval = primary.get("interval") or [None, None]
        if primary.get("lift") is not None and None not in interval:
            rest.append(
                f"  lift {primary['metric']} {signed_percent(primary['lift'])} "
                f"[{signed_percent(interval[0])}, {signed_percent(interval[1])}] (always-valid 95%)"
            )
        else:  # until a lead of each arm has seen its outcome window close, there is no interval
            rest.append(f"  lift {primary.get('metric') or 'primary'}: no measurement yet")
        action = e["decision"]["action"]
        rest.append(
            f"  decision {p.word(action) if action else 'not evaluated yet'}"
            + (f": {e['decision']['reason']}" if e["decision"]["reason"] else "")
        )
        if e["guardrails"]:
            harm = [g["name"] for g in e["guardrails"] if g["harm"]]
            ok = [g["name"] for g in e["guardrails"] if g["non_inferior"] and not g["harm"]]
            waiting = [g["name"] for g in e["guardrails"] if g["name"] not in harm + ok]
            rest.append(
                f"  guardrails {p(f'{len(ok)} non-inferior', GREEN if ok else '')}"
                + (f", {p('clear harm: ' + ', '.join(harm), RED)}" if harm else "")
                + (f", not yet shown: {', '.join(waiting)}" if waiting else "")
            )
        if srm["p_value"] is not None:
            verdict = p("MISMATCH", RED) if srm["flagged"] else p("ok", GREEN)
            rest.append(f"  sample ratio p = {srm['p_value']:.3g} {verdict}")
        plan = e["plan"]
        if plan:
            mdl = plan.get("mde_in_time")
            fit = {True: p("fits", GREEN), False: p("does not fit", YELLOW)}.get(plan.get("fits"), "unknown fit")
            rest.append(
                f"  plan {plan.get('mde', 0):+.0%} lift {fit} in {plan.get('max_runtime_days', 56):.0f} days; "
                f"minimum detectable lift {f'{mdl:+.1%}' if mdl is not None else 'unknown'}"
            )
        last = e["history"][-1] if e["history"] else None
        rest.append(
            f"  {len(e['history'])} evaluations"
            + (f", last {last['at']:%Y-%m-%d} (day {last['day'] or 0:.0f})" if last else "")
        )
        section("Experiment", head, rest)

    roles = data["registry"]["roles"]
    now_line = " · ".join(f"{role} {m['version']} {m['traffic']:.0f}%" for role, m in sorted(roles.items()))
    events = data["registry"]["events"]
    last = events[-1] if events else None
    section(
        "Registry",
        now_line or "no model",
        [f"  last change {last['at']:%Y-%m-%d} {last['version']} {last['action'].replace('_', ' ')} ({last['actor']})"]
        if last
        else [],
    )

    runs = data["training"]
    if runs:
        rows = []
        for r in runs[:3]:
            examples = (r["examples"]["train"] or 0) + (r["examples"]["validation"] or 0)
            # the coloured word goes last: escape codes would upset the alignment of what follows
            rows.append(
                [
                    r["run_id"][:8],
                    f"{r['started_at']:%Y-%m-%d}",
                    f"{examples:,} examples",
                    f"${r['cost_usd']:,.2f}" if r["cost_usd"] is not None else "no cost",
                    format_seconds(sum(s for _, s in r["steps"])),
                    p.word(r["status"]),
                ]
            )
        first, *rest = _columns(rows, {2, 3, 4}, indent="")
        section("Training", first, ["".ljust(LABEL_WIDTH) + line for line in rest])
    else:
        section("Training", "no run yet")

    replies = data["replies"]
    weeks = [w for w in replies["weeks"] if w["replies"]]
    top = ", ".join(f"{c.replace('_', ' ')} {n}" for c, n in list(replies["by_category"].items())[:3])
    share = replies["fallback_share"]
    section(
        "Replies",
        f"{replies['total']:,} in the window"
        + (f" · latest week {weeks[-1]['replies']}" if weeks else "")
        + (f" · {percent(share)} by the fallback" if share is not None else ""),
        [f"  {top}"] if top else [],
    )

    h = data["health"]
    queues = h.get("queues", {})

    def queue(name: str) -> str:
        q = queues.get(name, {})
        return f"{q['messages']:,}" if q.get("known") else "unknown"

    def flag(n: int) -> str:
        return p(f"{n:,}", YELLOW) if n else p("0", GREEN)

    section(
        "Data health",
        f"orphans {flag(h['orphan_events'])} · unmatched replies {flag(h['unmatched_replies'])} · "
        f"unclassified {flag(h['unclassified_replies'])} · quarantined {flag(h['quarantined'])}",
        [f"  replies queue {queue('replies_queue')} · dead-letter queue {queue('dead_letter_queue')}"],
    )
    return "\n".join(lines) + "\n"
