"""SVG charts, drawn here: no plotting library, no script, no font or file fetched from anywhere.

Every chart is an inline `<svg class="chart" data-chart=NAME>` whose drawn data carry the class
`mark` (a test opens the report in headless Chromium and checks that every chart's marks have a
size). Text is escaped; numbers are formatted by the caller's `fmt`. An empty data set gives no
chart: the caller shows a sentence instead.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from html import escape
from typing import Any

WIDTH = 760
FONT_PX = 11
CHAR_PX = 6.2  # average advance of an 11 px sans-serif character, to lay out labels without measuring
INK, MUTED, GRID = "#1f2937", "#6b7280", "#e5e7eb"
# Okabe-Ito: distinguishable with the common colour-vision deficiencies
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
GOOD, BAD, WARN = "#009E73", "#D55E00", "#E69F00"

Fmt = Callable[[float], str]


# control characters and bidirectional overrides / isolates in client-supplied names (framework,
# tone, industry, model id ...): shown as U+FFFD, so they can neither reorder the text around them
# ("Trojan Source") nor reach a terminal as escape sequences
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clean(value: object) -> str:
    return UNSAFE.sub("\ufffd", str(value))


def esc(value: object) -> str:
    return escape(clean(value), quote=True)


def columns(text: str) -> int:
    """How many average characters wide `text` is: wide (CJK) and full-width characters count twice."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def fit(text: object, width_px: float, size: int = FONT_PX) -> str:
    """`text` cut with an ellipsis so that it fits in `width_px` (labels are laid out without measuring)."""
    text = clean(text)
    room = int(width_px / (CHAR_PX * size / FONT_PX))
    if columns(text) <= room:
        return text
    while text and columns(text) > room - 1:
        text = text[:-1]
    return text + "…"


def percent(value: float, digits: int | None = None) -> str:
    if abs(value) < 1e-9:
        value = 0.0
    if digits is None:
        digits = 2 if abs(value) < 0.01 and value != 0 else 1
    return f"{value * 100:.{digits}f}%"


def signed_percent(value: float) -> str:
    return f"{value * 100:+.1f}%"


def _num(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".") if x != int(x) else str(int(x))


def _text(
    x: float,
    y: float,
    content: object,
    *,
    anchor: str = "start",
    size: int = FONT_PX,
    fill: str = INK,
    weight: str = "normal",
    cls: str = "",
    width: float | None = None,
) -> str:
    """A label; with `width`, cut to fit it (the whole text stays in its tooltip)."""
    klass = f' class="{cls}"' if cls else ""
    bold = ' font-weight="bold"' if weight == "bold" else ""
    shown = fit(content, width, size) if width is not None else clean(content)
    tip, squeeze = "", ""
    if shown != clean(content):
        # a cut label fills its room: its glyphs are fitted to it, as wide glyphs (m, W, CJK) would overflow
        tip = f"<title>{esc(content)}</title>"
        squeeze = f' textLength="{_num(columns(shown) * CHAR_PX * size / FONT_PX)}" lengthAdjust="spacingAndGlyphs"'
    return (
        f'<text x="{_num(x)}" y="{_num(y)}" text-anchor="{anchor}" font-size="{size}" fill="{fill}"{bold}'
        f"{klass}{squeeze}>{tip}{escape(shown, quote=True)}</text>"
    )


def _line(
    x1: float, y1: float, x2: float, y2: float, stroke: str = GRID, width: float = 1, *, dash: str = "", cls: str = ""
) -> str:
    extra = (f' stroke-dasharray="{dash}"' if dash else "") + (f' class="{cls}"' if cls else "")
    return (
        f'<line x1="{_num(x1)}" y1="{_num(y1)}" x2="{_num(x2)}" y2="{_num(y2)}" stroke="{stroke}" '
        f'stroke-width="{_num(width)}"{extra}/>'
    )


def _rect(x: float, y: float, w: float, h: float, fill: str, *, cls: str = "mark", title: str = "") -> str:
    tip = f"<title>{esc(title)}</title>" if title else ""
    return (
        f'<rect x="{_num(x)}" y="{_num(y)}" width="{_num(max(w, 0))}" height="{_num(max(h, 0))}" '
        f'fill="{fill}" class="{cls}">{tip}</rect>'
    )


def _circle(x: float, y: float, r: float, fill: str, *, title: str = "", stroke: str = "none") -> str:
    tip = f"<title>{esc(title)}</title>" if title else ""
    return (
        f'<circle cx="{_num(x)}" cy="{_num(y)}" r="{_num(r)}" fill="{fill}" stroke="{stroke}" '
        f'class="mark">{tip}</circle>'
    )


def svg(name: str, height: float, body: str, label: str, width: int = WIDTH) -> str:
    h = math.ceil(height)
    return (
        f'<svg class="chart" data-chart="{esc(name)}" width="{width}" height="{h}" viewBox="0 0 {width} {h}" '
        f'role="img" aria-label="{esc(label)}"><title>{esc(label)}</title>{body}</svg>'
    )


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (1, 2, 2.5 or 5 times a power of ten apart)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0]
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if (high - low) / (m * magnitude) <= count)
    first = math.floor(low / step + 1e-9) * step
    ticks, value = [], first
    while value <= high + step * 1e-6:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < high - step * 1e-6:
        ticks.append(round(value, 12))
    return ticks


def legend(items: Sequence[tuple[str, str]], y: float, x0: float = 0, width: int = WIDTH) -> tuple[str, float]:
    """Colour swatches with labels, wrapped over lines; returns the SVG and the height used."""
    parts, x, row = [], x0, 0
    for full, color in items:
        text = fit(full, width - x0 - 30)
        needed = 16 + columns(text) * CHAR_PX + 14
        if x + needed > width and x > x0:
            x, row = x0, row + 1
        top = y + row * 18
        parts.append(f'<rect x="{_num(x)}" y="{_num(top)}" width="10" height="10" fill="{color}"/>')
        parts.append(_text(x + 14, top + 9, full, fill=MUTED, width=width - x0 - 30))
        x += needed
    return "".join(parts), (row + 1) * 18


def _label_width(labels: Sequence[str], limit: int = 260) -> float:
    return min(limit, max([columns(clean(s)) for s in labels] + [4]) * CHAR_PX + 12)


# --- rates and intervals ---------------------------------------------------------------------------


def intervals(
    name: str,
    rows: Sequence[dict[str, Any]],
    *,
    label: str,
    fmt: Fmt = percent,
    reference: float | None = None,
    margin: float | None = None,
    margin_label: str = "margin",
) -> str:
    """A forest plot: per row, the estimate as a dot and its interval as a bar.

    rows: {"label", "estimate", "low", "high", "color"?, "note"?}; a row with no estimate shows "no data"."""
    values = [
        v for r in rows for v in (r.get("low"), r.get("high"), r.get("estimate")) if v is not None and math.isfinite(v)
    ]
    values += [v for v in (reference, margin) if v is not None]
    if not values:
        return ""
    ticks = nice_ticks(min(values), max(values))
    lo, hi = ticks[0], ticks[-1]
    left = _label_width([str(r["label"]) for r in rows])
    right_w = min(260, max(columns(_value_text(r, fmt)) for r in rows) * CHAR_PX + 20)
    plot_l, plot_r, top, row_h = left, WIDTH - right_w, 22, 24

    def x(v: float) -> float:
        return plot_l + (v - lo) / (hi - lo or 1) * (plot_r - plot_l)

    bottom = top + row_h * len(rows)
    body = [
        _line(x(t), top - 6, x(t), bottom, GRID) + _text(x(t), bottom + 14, fmt(t), anchor="middle", fill=MUTED)
        for t in ticks
    ]
    if reference is not None:
        body.append(_line(x(reference), top - 8, x(reference), bottom, MUTED, 1.2, dash="4 3"))
    if margin is not None:
        body.append(_line(x(margin), top - 8, x(margin), bottom, BAD, 1.2, dash="6 3"))
        body.append(_text(x(margin), top - 10, f"{margin_label} {fmt(margin)}", anchor="middle", fill=BAD))
    for i, r in enumerate(rows):
        cy = top + row_h * i + row_h / 2
        color = r.get("color") or PALETTE[0]
        body.append(_text(plot_l - 8, cy + 4, r["label"], anchor="end", width=plot_l - 12))
        est, low, high = r.get("estimate"), r.get("low"), r.get("high")
        if est is None:
            body.append(_text(plot_l + 4, cy + 4, "no data yet", fill=MUTED))
            continue
        if low is not None and high is not None and _finite(low) and _finite(high):
            body.append(
                _rect(x(low), cy - 2.5, max(x(high) - x(low), 1.5), 5, color, title=f"{fmt(low)} to {fmt(high)}")
            )
        body.append(_circle(x(est), cy, 4.5, color, title=str(r["label"]), stroke="#ffffff"))
        body.append(_text(plot_r + 10, cy + 4, _value_text(r, fmt), fill=MUTED))
    return svg(name, bottom + 22, "".join(body), label)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _value_text(row: dict[str, Any], fmt: Fmt) -> str:
    if row.get("note"):
        return str(row["note"])
    if row.get("estimate") is None:
        return ""
    if _finite(row.get("low")) and _finite(row.get("high")):
        return f"{fmt(row['estimate'])} [{fmt(row['low'])}, {fmt(row['high'])}]"
    return f"{fmt(row['estimate'])} (no interval yet)"


def interval_series(
    name: str,
    points: Sequence[dict[str, Any]],
    *,
    label: str,
    fmt: Fmt = signed_percent,
    reference: float | None = 0.0,
    markers: Sequence[tuple[datetime, str]] = (),
) -> str:
    """An estimate over time with its interval as a band (e.g. the primary lift, one point per daily
    evaluation). points: {"at": datetime, "estimate", "low", "high"} in time order."""
    points = [p for p in points if p.get("estimate") is not None]
    if not points:
        return ""
    # the scale follows the later half of the intervals (the first looks are very wide); earlier bands
    # are cut at the edge, and the chart says so
    later = points[len(points) // 2 :]
    finite = [float(v) for p in later for v in (p.get("low"), p.get("high")) if v is not None and _finite(v)]
    values = finite + [p["estimate"] for p in points] + ([reference] if reference is not None else [])
    ticks = nice_ticks(min(values), max(values))
    lo, hi = ticks[0], ticks[-1]
    cut = any(_finite(p.get("low")) and p["low"] < lo or _finite(p.get("high")) and p["high"] > hi for p in points)
    points = [
        {
            **p,
            **(
                {"low": max(p["low"], lo), "high": min(p["high"], hi)}
                if _finite(p.get("low")) and _finite(p.get("high"))
                else {}
            ),
        }
        for p in points
    ]
    times = [p["at"] for p in points]
    t0, t1 = min(times), max(times)
    if t1 == t0:
        t0, t1 = t0 - timedelta(days=1), t1 + timedelta(days=1)
    plot_l, plot_r, top, bottom = 64, WIDTH - 16, 20, 220

    def x(t: datetime) -> float:
        return plot_l + (t - t0).total_seconds() / (t1 - t0).total_seconds() * (plot_r - plot_l)

    def y(v: float) -> float:
        return bottom - (v - lo) / (hi - lo or 1) * (bottom - top)

    body = [
        _line(plot_l, y(t), plot_r, y(t), GRID) + _text(plot_l - 6, y(t) + 4, fmt(t), anchor="end", fill=MUTED)
        for t in ticks
    ]
    for tick in _time_ticks(t0, t1):
        body.append(_text(x(tick), bottom + 16, f"{tick:%b %d}", anchor="middle", fill=MUTED))
    banded = [
        p
        for p in points
        if p.get("low") is not None
        and p.get("high") is not None
        and math.isfinite(p["low"])
        and math.isfinite(p["high"])
    ]
    if len(banded) >= 2:
        outline = [(x(p["at"]), y(p["high"])) for p in banded] + [(x(p["at"]), y(p["low"])) for p in reversed(banded)]
        path = " ".join(f"{_num(a)},{_num(b)}" for a, b in outline)
        body.append(
            f'<polygon points="{path}" fill="{PALETTE[0]}" fill-opacity="0.18" stroke="none" class="mark">'
            f"<title>95% always-valid interval</title></polygon>"
        )
    for p in banded:
        body.append(_line(x(p["at"]), y(p["low"]), x(p["at"]), y(p["high"]), PALETTE[0], 1.5, cls="mark"))
    if reference is not None:
        body.append(_line(plot_l, y(reference), plot_r, y(reference), MUTED, 1.2, dash="4 3"))
    for when, text in markers:
        if t0 <= when <= t1:
            body.append(_line(x(when), top, x(when), bottom, WARN, 1, dash="2 3"))
            body.append(_text(x(when) + 3, top + 10, text, fill=WARN))
    if len(points) >= 2:
        path = " ".join(f"{_num(x(p['at']))},{_num(y(p['estimate']))}" for p in points)
        body.append(f'<polyline points="{path}" fill="none" stroke="{PALETTE[0]}" stroke-width="2" class="mark"/>')
    for p in points:
        interval = f" [{fmt(p['low'])}, {fmt(p['high'])}]" if p in banded else ""
        body.append(
            _circle(
                x(p["at"]),
                y(p["estimate"]),
                3.5,
                p.get("color") or PALETTE[0],
                title=f"{p['at']:%Y-%m-%d}: {fmt(p['estimate'])}{interval}",
            )
        )
    if cut:
        body.append(
            _text(
                plot_r,
                top - 4,
                "earlier, wider intervals are cut at the chart's edge",
                anchor="end",
                size=10,
                fill=MUTED,
            )
        )
    return svg(name, bottom + 26, "".join(body), label)


def _time_ticks(t0: datetime, t1: datetime, count: int = 6) -> list[datetime]:
    span_days = max((t1 - t0).total_seconds() / 86400, 1e-9)
    step = next((s for s in (1, 2, 7, 14, 30, 61, 91, 182, 365) if span_days / s <= count), 365)
    first = datetime.combine((t0 + timedelta(days=1)).date(), datetime.min.time(), tzinfo=t0.tzinfo)
    if step >= 7:  # start on a Monday
        first += timedelta(days=(7 - first.weekday()) % 7)
    ticks = []
    while first <= t1:
        ticks.append(first)
        first += timedelta(days=step)
    return ticks or [t0]


# --- funnels and counts ------------------------------------------------------------------------------


def funnel_bars(name: str, groups: Sequence[dict[str, Any]], steps: Sequence[tuple[str, str]], *, label: str) -> str:
    """Per funnel step after "sent", one bar per group: the share of that group's messages that reached it.

    groups: {"label", "funnel": {step: {"count", "rate"}}}; steps: (key, label), "sent" first."""
    groups = [g for g in groups if g["funnel"]["sent"]["count"]]
    if not groups:
        return ""
    colors = [PALETTE[i % len(PALETTE)] for i in range(len(groups))]
    head, head_h = legend(
        [(f"{g['label']} ({g['funnel']['sent']['count']:,} sent)", c) for g, c in zip(groups, colors, strict=True)], 4
    )
    left, bar_h, gap = 110, 11, 3
    plot_r = WIDTH - 130
    body, y = [head], head_h + 10
    for key, step_label in steps[1:]:
        block = len(groups) * (bar_h + gap)
        body.append(_text(left - 8, y + block / 2 + 4, step_label, anchor="end"))
        for g, color in zip(groups, colors, strict=True):
            cell = g["funnel"][key]
            rate = cell["rate"] or 0.0
            w = max(rate * (plot_r - left), 1.5 if cell["count"] else 0)
            if w:
                body.append(_rect(left, y, w, bar_h, color, title=f"{g['label']}: {cell['count']:,} ({percent(rate)})"))
            body.append(_text(left + w + 6, y + bar_h - 2, f"{percent(rate)} · {cell['count']:,}", size=10, fill=MUTED))
            y += bar_h + gap
        y += 8
    body.append(_line(left, head_h + 6, left, y - 6, INK))
    return svg(name, y + 4, "".join(body), label)


def stacked_columns(
    name: str, columns: Sequence[dict[str, Any]], categories: Sequence[tuple[str, str]], *, label: str
) -> str:
    """Columns stacked by category (e.g. replies per week), with an optional note above each column.

    columns: {"label", "values": {category: count}, "note"?}; categories: (key, colour), bottom first."""
    totals = [sum(c["values"].values()) for c in columns]
    if not columns or not any(totals):
        return ""
    ticks = nice_ticks(0, max(totals), 4)
    plot_l, plot_r, top, bottom = 44, WIDTH - 10, 18, 190

    def y(v: float) -> float:
        return bottom - v / ticks[-1] * (bottom - top)

    body = [
        _line(plot_l, y(t), plot_r, y(t), GRID) + _text(plot_l - 6, y(t) + 4, f"{t:g}", anchor="end", fill=MUTED)
        for t in ticks
    ]
    slot = (plot_r - plot_l) / len(columns)
    width = min(slot * 0.7, 48)
    for i, column in enumerate(columns):
        cx = plot_l + slot * i + slot / 2
        level = 0.0
        for key, color in categories:
            n = column["values"].get(key, 0)
            if n:
                body.append(
                    _rect(
                        cx - width / 2,
                        y(level + n),
                        width,
                        y(level) - y(level + n),
                        color,
                        title=f"{column['label']}: {n} {key}",
                    )
                )
                level += n
        body.append(_text(cx, bottom + 14, column["label"], anchor="middle", size=10, fill=MUTED))
        if column.get("note") and level:
            body.append(_text(cx, y(level) - 4, column["note"], anchor="middle", size=9, fill=MUTED))
    used = [(k, c) for k, c in categories if any(col["values"].get(k) for col in columns)]
    foot, foot_h = legend([(k.replace("_", " "), c) for k, c in used], bottom + 26, plot_l)
    body.append(foot)
    return svg(name, bottom + 26 + foot_h, "".join(body), label)


# --- time --------------------------------------------------------------------------------------------


def timeline(
    name: str,
    events: Sequence[dict[str, Any]],
    kinds: dict[str, str],
    *,
    label: str,
    start: datetime | None = None,
    end: datetime | None = None,
) -> str:
    """Events on a time axis, a marker per event coloured by kind, labels set in lanes so they do not
    overlap. events: {"at": datetime, "kind", "text"}; kinds: kind -> colour."""
    if not events:
        return ""
    events = sorted(events, key=lambda e: e["at"])
    t0, t1 = start or events[0]["at"], end or events[-1]["at"]
    if t1 <= t0:
        t0, t1 = t0 - timedelta(days=1), t1 + timedelta(days=1)
    plot_l, plot_r = 12, WIDTH - 12

    def x(t: datetime) -> float:
        return plot_l + (t - t0).total_seconds() / (t1 - t0).total_seconds() * (plot_r - plot_l)

    lanes: list[float] = []  # right edge of the last label in each lane
    placed = []
    for e in events:
        ex = x(e["at"])
        width = columns(e["text"]) * CHAR_PX * 0.95
        anchor_left = ex + width + 8 > plot_r
        left_edge = ex - width - 6 if anchor_left else ex - 4
        lane = next((i for i, edge in enumerate(lanes) if left_edge > edge + 6), None)
        if lane is None:
            lanes.append(0.0)
            lane = len(lanes) - 1
        lanes[lane] = ex + 4 if anchor_left else ex + width + 6
        placed.append((e, ex, lane, anchor_left))
    lane_h = 17
    axis_y = 18 + lane_h * len(lanes) + 6
    body = [_line(plot_l, axis_y, plot_r, axis_y, INK)]
    for tick in _time_ticks(t0, t1, 8):
        body.append(_line(x(tick), axis_y, x(tick), axis_y + 4, INK))
        body.append(_text(x(tick), axis_y + 16, f"{tick:%b %d}", anchor="middle", fill=MUTED, size=10))
    for e, ex, lane, anchor_left in placed:
        color = kinds.get(e["kind"], MUTED)
        ly = 18 + lane_h * lane
        body.append(_line(ex, ly + 3, ex, axis_y, color, 1, dash="2 2"))
        body.append(_circle(ex, axis_y, 5, color, title=f"{e['at']:%Y-%m-%d %H:%M} {e['text']}", stroke="#ffffff"))
        body.append(
            _text(
                ex - 6 if anchor_left else ex + 4,
                ly,
                e["text"],
                anchor="end" if anchor_left else "start",
                size=10,
                fill=color,
                width=(ex - plot_l - 6) if anchor_left else (plot_r - ex - 4),
            )
        )
    foot, foot_h = legend([(k, c) for k, c in kinds.items() if any(e["kind"] == k for e in events)], axis_y + 28, 12)
    body.append(foot)
    return svg(name, axis_y + 28 + foot_h, "".join(body), label)


def duration_bars(name: str, rows: Sequence[dict[str, Any]], steps: dict[str, str], *, label: str) -> str:
    """Per row (a training run), its steps as consecutive segments sized by duration.

    rows: {"label", "steps": [(step, seconds)]}; steps: step -> colour."""
    rows = [r for r in rows if sum(s for _, s in r["steps"]) > 0]
    if not rows:
        return ""
    longest = max(sum(s for _, s in r["steps"]) for r in rows)
    left = _label_width([r["label"] for r in rows], 220)
    plot_r, row_h = WIDTH - 90, 22
    body, y = [], 6.0
    for r in rows:
        x = left
        for step, seconds in r["steps"]:
            w = seconds / longest * (plot_r - left)
            if seconds > 0:
                w = max(w, 2)
                body.append(
                    _rect(x, y, w, row_h - 8, steps.get(step, MUTED), title=f"{step}: {format_seconds(seconds)}")
                )
                x += w
        body.append(_text(left - 8, y + row_h / 2, r["label"], anchor="end", size=10, width=left - 12))
        body.append(_text(x + 6, y + row_h / 2, format_seconds(sum(s for _, s in r["steps"])), size=10, fill=MUTED))
        y += row_h
    used = [(k, c) for k, c in steps.items() if any(k == s and sec > 0 for r in rows for s, sec in r["steps"])]
    foot, foot_h = legend([(k.replace("_", " "), c) for k, c in used], y + 8, left)
    body.append(foot)
    return svg(name, y + 8 + foot_h, "".join(body), label)


def format_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def week_label(day: date) -> str:
    return f"{day:%b %d}"
