"""How big an interactive report gets and how fast it opens in headless Chromium.

    PYTHONPATH=python python bench/bench_report_html.py --points 1000000 --dim 64

Builds a report of N pool points (10 runs, the last one's picks 1% of the pool) from clustered,
seeded embeddings, writes it, and opens it from file:// in Debian's chromium through selenium
(chromium-driver). Prints: the build time (projection included), the file size and bytes per
point, the time from navigation to `datapoolReport.ready` (decoded, indexed, first frame drawn),
and the time of a full redraw (what a pan, a zoom or a legend toggle costs), a hover and a box
selection. The page's own checks (every point drawn) are asserted before the times count.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from bench_report_page import browser
from datapool.report_html import map_data, render


def build(n: int, dim: int, runs: int = 10) -> tuple[bytes, float]:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((200, dim)).astype(np.float32)
    x = centres[rng.integers(0, 200, n)] + 0.3 * rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    per = max(n // 100, 1)  # the last run's picks: 1% of the pool
    labels = np.sort(rng.integers(0, runs - 1, n))
    labels[-per:] = runs - 1
    # Names as a bucket of cameras gives them: a random stem per video of 300 frames.
    stems = [f"site-{s:08x}/cam" for s in rng.integers(0, 2**32, n // 300 + 1).tolist()]
    names = [f"{stems[i // 300]}-{i % 300:03d}-mp4.png" for i in range(n)]
    sources = [f"{stems[i // 300]}.mp4" for i in range(n)]
    tags = [{"tag": "initial-tag" if i == 0 else f"run-{i}"} for i in range(runs)]
    report = {"tag": tags[-1]["tag"], "index": runs - 1, "counts": {"pool_size": n}}
    report["selected"] = [
        {"filename": nm, "min_distance": float(d)}
        for nm, d in zip(names[-per:], np.linspace(1, 0.2, per))
    ]
    t = time.perf_counter()
    md = {s["filename"]: s["min_distance"] for s in report["selected"]}
    data = map_data(names, x, labels, sources, runs - 1, runs, md)
    page = render(data, report, tags, runs - 1, f"bench: {n} points")
    return page, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=64)
    a = ap.parse_args()
    page, build_s = build(a.points, a.dim)
    folder = Path(tempfile.mkdtemp())
    path = folder / "report.html"
    path.write_bytes(page)
    print(f"points          {a.points}")
    print(f"build           {build_s:.2f} s (projection, quantising, gzip, page)")
    print(f"file            {len(page) / 1e6:.1f} MB, {len(page) / a.points:.1f} bytes per point")

    b = browser("1400,1000", precise_memory=False)
    try:
        b.set_page_load_timeout(300)
        t = time.perf_counter()
        b.get(path.as_uri())
        loaded = time.perf_counter() - t
        while not b.execute_script("return !!(window.datapoolReport && datapoolReport.ready)"):
            time.sleep(0.02)
        ready = time.perf_counter() - t
        api = "window.datapoolReport"
        assert b.execute_script(f"return {api}.drawn") == a.points
        in_page = b.execute_script(f"return {api}.loadMs")
        draws = [b.execute_script(f"return {api}.redraw()") for _ in range(5)]
        overlays = [b.execute_script(f"return {api}.overlay()") for _ in range(5)]
        t = time.perf_counter()
        picked = b.execute_script(
            f"const r = {api}; const [x, y] = r.screenOf(r.meta.n - 1);"
            "const c = document.getElementById('map'); const b = c.getBoundingClientRect();"
            "c.dispatchEvent(new MouseEvent('mousemove', {clientX: b.left + x, clientY: b.top + y,"
            " bubbles: true})); return document.getElementById('tip').textContent"
        )
        hover_ms = (time.perf_counter() - t) * 1e3
        assert "run: run-" in picked, picked
        n_sel, select_ms = b.execute_script(
            f"const t = performance.now(); const n = {api}.selectBox(100, 100, 400, 400);"
            "return [n, performance.now() - t]"
        )
        print(f"page loaded     {loaded:.2f} s (navigation, HTML parsed)")
        print(
            f"interactive     {ready:.2f} s from navigation ({in_page / 1e3:.2f} s in the page's script)"
        )
        print(f"redraw          {np.median(draws):.0f} ms median of 5 (all points: zoom, toggle)")
        print(f"overlay         {np.median(overlays):.1f} ms median of 5 (hover, pin, pan frame)")
        print(f"hover           {hover_ms:.0f} ms (round trip through selenium)")
        print(f"box selection   {select_ms:.0f} ms for {n_sel} points (in the page, list filled)")
    finally:
        b.quit()
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
