"""The report's drawing code: scales, layout, escaping, empty data."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from flywheel.services.reports import evidence_summary, step_durations
from flywheel.views import charts
from flywheel.views.status_text import use_color

T0 = datetime(2026, 10, 5, 6, tzinfo=UTC)


@pytest.mark.parametrize(("low", "high"), [(0, 1), (0.0013, 0.087), (-0.42, 0.31), (-3e-4, 5e-3), (5, 5), (0, 203_026)])
def test_ticks_are_round_and_cover_the_range(low: float, high: float) -> None:
    ticks = charts.nice_ticks(low, high)
    assert ticks[0] <= low and ticks[-1] >= high and 2 <= len(ticks) <= 7
    steps = {round(b - a, 12) for a, b in zip(ticks, ticks[1:], strict=False)}
    assert len(steps) == 1
    mantissa = float(f"{steps.pop():e}".split("e")[0])
    assert mantissa in (1.0, 2.0, 2.5, 5.0)


def test_empty_data_draws_no_chart() -> None:
    assert charts.intervals("x", [], label="x") == ""
    assert charts.interval_series("x", [{"at": T0, "estimate": None}], label="x") == ""
    assert charts.stacked_columns("x", [{"label": "a", "values": {}}], [("a", "#000")], label="x") == ""
    assert charts.timeline("x", [], {}, label="x") == ""
    assert charts.duration_bars("x", [{"label": "r", "steps": [("pending", 0.0)]}], {}, label="x") == ""
    assert (
        charts.funnel_bars(
            "x", [{"label": "g", "funnel": {"sent": {"count": 0, "rate": None}}}], [("sent", "sent")], label="x"
        )
        == ""
    )


def test_text_is_escaped_and_every_chart_is_marked() -> None:
    svg = charts.intervals(
        "rates",
        [{"label": "<script>x</script>", "estimate": 0.1, "low": 0.05, "high": 0.2}],
        label='a "quoted" <label>',
    )
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "&quot;quoted&quot;" in svg
    assert svg.startswith('<svg class="chart" data-chart="rates"') and svg.count('class="mark"') == 2


def test_timeline_labels_do_not_overlap() -> None:
    events = [
        {"at": T0 + timedelta(hours=h), "kind": "deployment", "text": f"v1.{h}.0 deployed as challenger"}
        for h in range(6)
    ]
    svg = charts.timeline(
        "t", events, {"deployment": "#123456"}, label="t", start=T0 - timedelta(days=30), end=T0 + timedelta(days=1)
    )
    texts = re.findall(r'<text x="([\d.]+)" y="([\d.]+)" text-anchor="(\w+)" font-size="10" fill="#123456"', svg)
    boxes = []
    for x, y, anchor in texts:
        width = len("v1.0.0 deployed as challenger") * charts.CHAR_PX
        left = float(x) - width if anchor == "end" else float(x)
        boxes.append((left, left + width, float(y)))
    assert len(boxes) == 6 and len({b[2] for b in boxes}) >= 3  # they needed lanes
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert a[2] != b[2] or a[1] <= b[0] or b[1] <= a[0], (a, b)


def test_series_band_and_points() -> None:
    points = [
        {"at": T0 + timedelta(days=d), "estimate": 0.02 * d, "low": 0.02 * d - 0.3, "high": 0.02 * d + 0.3}
        for d in range(8)
    ]
    svg = charts.interval_series("lift", points, label="lift", markers=[(T0 + timedelta(days=2), "ab starts")])
    assert svg.count("<polygon") == 1 and svg.count("<circle") == 8 and "ab starts" in svg


def test_percent_formatting() -> None:
    assert charts.percent(0.1234) == "12.3%" and charts.percent(0.0037) == "0.37%"
    assert charts.percent(1e-17) == "0.0%" and charts.signed_percent(-0.05) == "-5.0%"
    assert charts.format_seconds(42) == "42 s" and charts.format_seconds(3668) == "61 min"


def test_step_durations_from_a_status_history() -> None:
    history = [
        {"status": "pending", "at": T0.isoformat()},
        {"status": "building", "at": (T0 + timedelta(seconds=2)).isoformat()},
        {"status": "training", "at": (T0 + timedelta(seconds=30)).isoformat()},
        {"status": "failed", "at": (T0 + timedelta(seconds=90)).isoformat()},
    ]
    assert step_durations(history, T0 + timedelta(seconds=90)) == [
        ("pending", 2.0),
        ("building", 28.0),
        ("training", 60.0),
    ]
    running = step_durations(history[:3], T0 + timedelta(seconds=100))
    assert running[-1] == ("training", 70.0)


def test_evidence_in_one_line() -> None:
    assert evidence_summary(
        {
            "primary": {"metric": "positive_reply", "lift": 0.21, "sequential_interval": [0.04, 0.4]},
            "guardrails": {"bounce": {"harm": False}, "unsubscribe": {"harm": True}},
            "srm": {"p_value": 0.42},
            "days_running": 12.3,
        }
    ) == ("positive_reply lift +21.0% [+4.0%, +40.0%]; clear harm: unsubscribe; SRM p = 0.42; day 12")
    # rows written before experiment decisions were reworked say "breached" and "srm_p_value"
    assert evidence_summary({"guardrails": {"bounce": {"breached": True}}, "srm_p_value": 0.5}) == (
        "clear harm: bounce; SRM p = 0.5"
    )
    assert evidence_summary({"experiment_id": "exp-1", "plan": {"mde": 0.2, "fits": False}}) == (
        "planned lift +20% does not fit in time; experiment exp-1"
    )
    assert evidence_summary(None) == "" and evidence_summary({"forced": True}) == "forced by hand"


def test_the_wait_for_the_models_deployment_is_a_step() -> None:
    history = [
        {"status": s, "at": (T0 + timedelta(seconds=t)).isoformat()}
        for s, t in (("pending", 0), ("registering", 10), ("serving", 20), ("smoke_testing", 1220), ("succeeded", 1230))
    ]
    assert step_durations(history, T0 + timedelta(seconds=1230)) == [
        ("pending", 10.0),
        ("registering", 10.0),
        ("serving", 1200.0),
        ("smoke_testing", 10.0),
    ]


class Stream:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_colour_only_on_a_terminal_that_wants_it() -> None:
    assert use_color(Stream(True), {"TERM": "xterm-256color"})
    assert not use_color(Stream(False), {"TERM": "xterm-256color"})
    assert not use_color(Stream(True), {"TERM": "xterm", "NO_COLOR": "1"})  # https://no-color.org
    assert not use_color(Stream(True), {"TERM": "dumb"})


def test_names_lose_control_characters_and_bidi_overrides() -> None:
    assert charts.esc("PAS\u202e<b>\x1b[2J") == "PAS\ufffd&lt;b&gt;\ufffd[2J"
    assert charts.fit("Ｆｉｎａｎｃｅ", 6 * charts.CHAR_PX) == "Ｆｉ…"  # wide characters count twice
    label = "x" * 300
    svg = charts.intervals("r", [{"label": label, "estimate": 0.1, "low": 0.05, "high": 0.2}], label="r")
    assert f"<title>{label}</title>" in svg and "x" * 60 not in svg.replace(label, "")


def test_times_labelled_utc_are_utc_whatever_zone_they_were_read_in() -> None:
    from zoneinfo import ZoneInfo

    from flywheel.views import report_html

    # 23:30 in New York on 4 October is 03:30 UTC on 5 October (a session not in UTC reads it so)
    evening = datetime(2026, 10, 4, 23, 30, tzinfo=ZoneInfo("America/New_York"))
    assert report_html._when(evening) == "2026-10-05 03:30 UTC"
    assert report_html._day(evening) == "2026-10-05"
    assert report_html._when(T0) == "2026-10-05 06:00 UTC" and report_html._when(None) == "—"
