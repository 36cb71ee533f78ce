"""A report page as a user opens it, before and after a change to the page's code, in one run.

    PYTHONPATH=python python bench/bench_report_page.py PAGE.html [PAGE.html ...] --baseline main

Each PAGE (a run's runs/<i>/report.html, or what `datapool report` wrote) is opened from file://
in Debian's headless chromium (selenium, chromium-driver) at 1280x800, twice: as this checkout's
report_html.py writes the page (its style and script put into the page: the same data, the same
points) and as the `--baseline` git ref's does; the two alternate, `--repeats` times each.
Printed per page and version, medians: the time from navigation to `datapoolReport.ready`
(decoded, indexed, first frame drawn), first contentful paint, the JS heap when ready, the
first thumbnail's decode and the heap after it, a full redraw, the share of this run's picks at
which a pointer 1 px off their centre names a pick (500 of them at most) (the tip over a green circle),
the share of this run's unselected candidates whose centre pixel shows their colour (not hidden
under an older run's dot or a pick's circle), and a find. Screenshots go to
`--shots` when given.
"""

from __future__ import annotations

import argparse
import ast
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from datapool import report_html

MEASURE = """
const r = window.datapoolReport, c = document.getElementById('map'), bb = c.getBoundingClientRect();
const paint = performance.getEntriesByType('paint').find(e => e.name === 'first-contentful-paint');
const out = {fcp_ms: paint ? paint.startTime : NaN, script_ms: r.loadMs,
             heap_mb: performance.memory.usedJSHeapSize / 1e6, redraw_ms: r.redraw()};
// this run's unselected candidates (the first points of a page map_data wrote) whose centre
// pixel shows their colour: not hidden under another dot (or a pick's circle)
const cg = r.meta.groups.find(g => g.kind === 'cand');
if (cg && cg.count) {
  const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data, d = window.devicePixelRatio || 1;
  const want = parseInt(cg.colour.slice(1), 16);
  let seen = 0;
  for (let i = 0; i < cg.count; i++) {
    const [x, y] = r.screenOf(i), k = 4 * (Math.round(y * d) * c.width + Math.round(x * d));
    if ((px[k] << 16 | px[k + 1] << 8 | px[k + 2]) === want) seen++;
  }
  out.cands_seen_pct = 100 * seen / cg.count;
}
let t = performance.now(); r.thumbURL(r.meta.n - 1); out.thumb_ms = performance.now() - t;
out.heap_thumb_mb = performance.memory.usedJSHeapSize / 1e6;
let right = 0, tried = 0;
const picks = new Set(), step = Math.max(1, Math.floor((r.meta.n - r.meta.first_pick) / 500));
for (let i = r.meta.first_pick; i < r.meta.n; i++) picks.add(r.nameOf(i));
for (let i = r.meta.first_pick; i < r.meta.n; i += step, tried++) {
  const [x, y] = r.screenOf(i);
  c.dispatchEvent(new MouseEvent('mousemove', {clientX: bb.left + x + 1, clientY: bb.top + y + 1, bubbles: true}));
  const b = document.querySelector('#tip b.name');  // this pick, or one whose circle overlaps it
  if (b && picks.has(b.textContent)) right++;
}
out.picks_named_pct = 100 * right / Math.max(1, tried);
if (r.selectMatching) { t = performance.now(); out.find_hits = r.selectMatching('a,b comma'); out.find_ms = performance.now() - t; }
return out;
"""


def parts_of(page: str) -> dict[str, str]:
    """The data parts of a written page: its title, the details under the map, its data."""
    import html

    def between(a: str, b: str) -> str:
        return page.split(a, 1)[1].split(b, 1)[0]

    meta_at = page.index('<script type="application/json" id="dp-meta">')
    side_end = page.rindex("</button></div></div>\n", 0, meta_at) + len("</button></div></div>\n")
    return {
        "TITLE": html.escape(html.unescape(between("<title>", "</title>"))),
        "DETAILS": page[side_end:meta_at].rstrip("\n"),
        "META": between('id="dp-meta">', "</script>"),
        "DATA": between('id="dp-data">', "</script>"),
        "THUMBS": between('id="dp-thumbs">', "</script>"),
    }


def with_code(parts: dict[str, str], code: dict[str, str]) -> str:
    """The page of `parts` as the template, style and script of `code` write it."""
    import re

    fill = {**parts, "STYLE": code["_STYLE"], "SCRIPT": code["_SCRIPT"]}
    return re.sub(r"\{\{([A-Z]+)\}\}", lambda m: fill[m.group(1)], code["_PAGE"])


def baseline_code(ref: str) -> dict[str, str]:
    """_PAGE, _STYLE and _SCRIPT of report_html.py at git `ref`."""
    text = subprocess.run(
        ["git", "show", f"{ref}:python/datapool/report_html.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in ast.parse(text).body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id in ("_PAGE", "_STYLE", "_SCRIPT")
    }
    return found


def browser(size: str = "1280,800", precise_memory: bool = True) -> Any:
    """Debian's headless chromium through selenium (chromium-driver), its window `size` (w,h);
    `precise_memory`: performance.memory unrounded (the heap figures). bench_report_html.py
    opens its page in this one too."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        opts.add_argument(flag)
    opts.add_argument(f"--window-size={size}")
    if precise_memory:
        opts.add_argument("--enable-precise-memory-info")
    return webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))


def open_once(path: Path, shot: Path | None) -> dict[str, float]:
    b = browser()  # a fresh browser each time: nothing cached, the heap as a user's tab
    try:
        b.set_page_load_timeout(300)
        t = time.perf_counter()
        b.get(path.as_uri())
        end = time.monotonic() + 120
        while not b.execute_script("return !!(window.datapoolReport && datapoolReport.ready)"):
            if time.monotonic() > end:
                raise SystemExit(f"{path}: not ready in 120 s; console: {b.get_log('browser')}")
            time.sleep(0.01)
        ready = time.perf_counter() - t
        if shot is not None:
            b.save_screenshot(str(shot))
        out: dict[str, float] = b.execute_script(MEASURE)
        out["ready_s"] = ready
        return out
    finally:
        b.quit()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("pages", nargs="+", type=Path)
    ap.add_argument("--baseline", default="main", help="git ref of the page code to compare")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--shots", type=Path, default=None)
    a = ap.parse_args()
    versions = {
        "baseline": baseline_code(a.baseline),
        "this": {
            "_PAGE": report_html._PAGE,
            "_STYLE": report_html._STYLE,
            "_SCRIPT": report_html._SCRIPT,
        },
    }
    keys = ["ready_s", "fcp_ms", "script_ms", "heap_mb", "thumb_ms", "heap_thumb_mb"]
    keys += ["redraw_ms", "picks_named_pct", "cands_seen_pct", "find_ms", "find_hits"]
    with tempfile.TemporaryDirectory() as d:
        for page in a.pages:
            parts = parts_of(page.read_text(encoding="utf-8"))
            paths = {}
            for name, code in versions.items():
                paths[name] = Path(d) / f"{name}.html"
                paths[name].write_text(with_code(parts, code), encoding="utf-8")
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in versions}
            for k in range(a.repeats):
                for name, path in paths.items():
                    shot = None
                    if a.shots is not None and k == 0:
                        a.shots.mkdir(parents=True, exist_ok=True)
                        shot = a.shots / f"{page.parent.parent.parent.name}-{name}.png"
                    runs[name].append(open_once(path, shot))
            print(f"{page} ({page.stat().st_size / 1e6:.1f} MB)")
            for name, got in runs.items():
                cells = []
                for key in keys:
                    vals = [g[key] for g in got if g.get(key) is not None]
                    cells.append(f"{key} {statistics.median(vals):.3g}" if vals else f"{key} -")
                print(f"  {name:9s} " + ", ".join(cells))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
