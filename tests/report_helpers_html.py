"""Reading a report back: its tables (by `data-table`), the counts its funnel cells carry, every
URL-bearing attribute, and a headless Chromium check that every chart drew."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from flywheel.local.screenshot import FLAGS, find_chromium

chromium = find_chromium

URL_ATTRIBUTES = {
    "href",
    "src",
    "xlink:href",
    "action",
    "formaction",
    "srcset",
    "poster",
    "data",
    "background",
    "ping",
    "cite",
    "longdesc",
    "manifest",
    "codebase",
}


class ReportParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[dict[str, Any]]]] = {}
        self.tags: list[str] = []
        self.url_values: list[tuple[str, str, str]] = []
        self.charts: list[str] = []
        self.campaigns: dict[str, str] = {}  # campaign id -> section id
        self._table: str | None = None
        self._depth = 0
        self._cell: dict[str, Any] | None = None
        self._in_body = False
        self._in_head = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        for name, value in a.items():
            if name in URL_ATTRIBUTES or "url(" in value.lower():
                self.url_values.append((tag, name, value))
        if tag == "svg" and "chart" in a.get("class", "").split():
            self.charts.append(a["data-chart"])
        if "data-campaign" in a:
            self.campaigns[a["data-campaign"]] = a["id"]
        if tag == "table":
            self._depth += 1
            if "data-table" in a:
                self._table = a["data-table"]
                self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = {"text": "", "steps": {}, "header": tag == "th"}
            self.tables[self._table][-1].append(self._cell)
        elif self._cell is not None and "data-step" in a:
            self._cell["steps"][a["data-step"]] = int(a["data-count"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._depth -= 1
            if not self._depth:
                self._table = None
        elif tag in ("td", "th"):
            if self._cell is not None:
                self._cell["text"] = " ".join(self._cell["text"].split())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell["text"] += " " + data


def parse(html: str) -> ReportParser:
    parser = ReportParser()
    parser.feed(html)
    return parser


def rows(parser: ReportParser, table: str) -> list[list[dict[str, Any]]]:
    """The body rows of a table (its header row left out)."""
    return [r for r in parser.tables[table] if r and not r[0]["header"]]


# Run before the page's Content-Security-Policy <meta> (a policy delivered by <meta> only governs what
# comes after it), so the page itself keeps its policy and still has no script of its own.
CHECKER = """<script>
addEventListener('load', () => {
  const result = [...document.querySelectorAll('svg.chart')].map(svg => {
    const marks = [...svg.querySelectorAll('.mark')];
    const drawn = marks.filter(m => { const b = m.getBBox(); return b.width > 0 || b.height > 0; });
    const box = svg.getBoundingClientRect();
    // what lies (even partly) outside the chart's own area is clipped: a cut label, a lost mark
    const view = svg.viewBox.baseVal;
    const outside = [...marks, ...svg.querySelectorAll('text')].filter(e => {
      const b = e.getBBox();
      return b.x < view.x - 1 || b.y < view.y - 1 || b.x + b.width > view.x + view.width + 1
          || b.y + b.height > view.y + view.height + 1;
    }).map(e => (e.textContent || e.tagName).slice(0, 60));
    return {name: svg.dataset.chart, marks: marks.length, drawn: drawn.length, width: box.width, height: box.height,
            texts: svg.querySelectorAll('text').length, outside: outside};
  });
  const blocked = performance.getEntriesByType('resource').map(r => r.name);
  const out = document.createElement('pre');
  out.id = 'chart-check';
  out.textContent = JSON.stringify({charts: result, resources: blocked, width: document.body.scrollWidth});
  document.body.appendChild(out);
});
</script>"""


def render_in_chromium(html: str, browser: str) -> dict[str, Any]:
    """Open the page in headless Chromium (Debian's, run offline) and read back what the checker
    measured after load."""
    with tempfile.TemporaryDirectory(prefix="flywheel-chromium-") as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(html.replace("<head>", "<head>" + CHECKER, 1), encoding="utf-8")
        done = subprocess.run(
            [
                browser,
                *FLAGS,
                f"--user-data-dir={tmp}/profile",
                "--window-size=1200,900",
                "--virtual-time-budget=5000",
                "--dump-dom",
                page.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    match = re.search(r'<pre id="chart-check">(.*?)</pre>', done.stdout, re.S)
    assert match, f"the checker did not run: rc={done.returncode} {done.stderr[-2000:]}"
    text = match.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return dict(json.loads(text))
