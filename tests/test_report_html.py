"""The interactive report (report_html.py), opened in a real headless Chromium through selenium.

The browser tests need Debian's `chromium` and `chromium-driver` and `pip install selenium`
(.ci/run installs them); they skip, saying why, only where the browser cannot start. The
screenshot of the map is saved under tests/artifacts/ (gitignored).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from datapool.naming import source_keys
from datapool.report_html import map_data, render, report_html

ARTIFACTS = Path(__file__).parent / "artifacts"

try:  # the S3 fixtures of tests/test_s3.py (a moto server), where boto3 and moto are installed
    from . import test_s3

    moto_endpoint, s3_env, s3, new_bucket = (
        test_s3.moto_endpoint,
        test_s3.s3_env,
        test_s3.s3,
        test_s3.new_bucket,
    )
except (ImportError, pytest.skip.Exception):
    new_bucket = None


def _browser() -> Any:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install selenium; .ci/run installs it)")
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver:
        pytest.skip(
            "Debian's chromium and chromium-driver are not installed "
            "(apt-get install chromium chromium-driver; .ci/run installs them)"
        )
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--disable-background-networking",
        "--no-first-run",
    ):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    try:
        return webdriver.Chrome(options=opts, service=Service(driver))
    except Exception as e:  # the browser is there but cannot start (no display libs, a sandbox)
        pytest.skip(f"headless chromium did not start: {str(e).splitlines()[0]}")


@pytest.fixture(scope="module")
def browser() -> Any:
    b = _browser()
    yield b
    b.quit()


def _wait_ready(b: Any, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if b.execute_script("return !!(window.datapoolReport && window.datapoolReport.ready)"):
            return
        time.sleep(0.05)
    logs = b.get_log("browser")
    raise AssertionError(f"the report did not become ready; console: {logs}")


def _open_page(b: Any, path: Path, page: bytes) -> None:
    """Write the report `page` to `path` and open it in browser `b`, ready."""
    path.write_bytes(page)
    b.get(path.as_uri())
    _wait_ready(b)


def _thumb_natural_size(b: Any, timeout: float = 10) -> list[int] | None:
    """The natural size of the hover tip's thumbnail once it has loaded; None if it has none."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = b.execute_script(
            "const img = document.querySelector('#tip img.thumb');"
            "if (!img) return null;"
            "return img.complete ? [img.naturalWidth, img.naturalHeight] : 'loading';"
        )
        if got != "loading":
            return got
        time.sleep(0.05)
    raise AssertionError("the thumbnail did not load")


def _small_pool(rng: np.random.Generator) -> dict[str, Any]:
    """Three runs of a pool (run 2 the current one) and run 2's unselected candidates."""
    dim = 16
    centres = rng.standard_normal((3, dim)) * 3

    def cluster(k: int, n: int) -> np.ndarray:
        x = centres[k] + rng.standard_normal((n, dim)) * 0.3
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    names = [f"img_{i:03d}.jpg" for i in range(30)] + [f"clip-{i:02d}-mp4.png" for i in range(20)]
    names += [f"new_{i:02d}.jpg" for i in range(10)]
    emb = np.concatenate([cluster(0, 30), cluster(1, 20), cluster(2, 10)])
    labels = np.array([0] * 30 + [1] * 20 + [2] * 10, np.int64)
    cand_names = [f"cand_{i:02d}.jpg" for i in range(25)]
    cand = cluster(2, 25)
    runs = [{"tag": "initial-tag"}, {"tag": "run-1"}, {"tag": "run-2", "stop_reason": "n_samples"}]
    selected = [{"filename": n, "min_distance": 1.0 - 0.05 * i} for i, n in enumerate(names[50:])]
    report = {
        "index": 2,
        "tag": "run-2",
        "source": "bucket/",
        "counts": {"listed": 35, "new": 35, "selected": 10, "pool_size": 60},
        "stop_reason": "n_samples",
        "model": {"name": "test-model", "sha256": "0123456789abcdef" * 4, "output_dim": dim},
        "selected": selected,
        "skipped": [{"key": "broken.mp4", "reason": "cannot decode"}],
    }
    image_keys = {n for n in names if n.endswith(".jpg")}
    return dict(
        report=report,
        runs=runs,
        names=names,
        emb=emb,
        labels=labels,
        image_keys=image_keys,
        cand_names=cand_names,
        cand=cand,
    )


def _thumbnails(names: list[str]) -> dict[str, bytes]:
    """Real JPEG thumbnails (ingest/thumbnail.py) of distinct pictures, one per name."""
    from datapool.ingest.thumbnail import encode_thumbnail

    from .conftest import scene

    return {n: encode_thumbnail(scene(i, 96, 128), (128, 96)) for i, n in enumerate(names)}


@pytest.fixture(scope="module")
def small_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, dict[str, Any]]:
    p = _small_pool(np.random.default_rng(7))
    # every point has its thumbnail but two pool samples, which must show none
    thumbs = _thumbnails(p["names"][:-2] + p["cand_names"])
    data = map_data(
        p["names"],
        p["emb"],
        p["labels"],
        source_keys(p["names"], p["image_keys"]),
        2,
        3,
        {s["filename"]: s["min_distance"] for s in p["report"]["selected"]},
        p["cand_names"],
        p["cand"],
        thumbnails=thumbs,
    )
    page = render(data, p["report"], p["runs"], 2, "test pool: run-2")
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_bytes(page)
    return path, data, p


def test_sample_sources_maps_frames_to_their_video() -> None:
    assert source_keys(["a.jpg", "clip-07-mp4.png", "x-1-2-jpg.png"], {"a.jpg"}) == [
        "a.jpg",
        "clip.mp4",
        "x-1.jpg",
    ]


def test_map_data_orders_candidates_first_and_picks_last() -> None:
    p = _small_pool(np.random.default_rng(1))
    d = map_data(
        p["names"],
        p["emb"],
        p["labels"],
        source_keys(p["names"], p["image_keys"]),
        2,
        3,
        None,
        p["cand_names"],
        p["cand"],
        max_candidates=10,
    )
    assert len(d.names) == 60 + 10 and d.candidates_total == 25
    assert (d.groups[:10] == 3).all() and d.names[-10:] == p["names"][50:]
    assert d.first_pick == 60 and d.xy.dtype == np.uint16
    assert d.frames[d.names.index("clip-07-mp4.png")] == 7


def test_map_data_frames_of_images_frames_and_crops(rng) -> None:
    """map_data skips the frame lookup for an image's sample (its name is its key and no crop
    name): each point's frame is still that of the video frame it is or was cut from, -1 for
    an image, also for an image whose own name reads as a crop of a frame."""
    names = [
        "a.jpg",  # an image's sample
        "clip-07-mp4.png",  # a video's frame 7
        "b-jpg-crop-2.png",  # a crop of an image
        "clip-12-mp4-png-crop-0.png",  # a crop of frame 12
        "x-03-mp4-png-crop-1.png",  # an image so named, read whole
        "c-crop-.png",  # an image whose name holds "-crop-" but is no crop name
    ]
    sources = ["a.jpg", "clip.mp4", "b.jpg", "clip.mp4", "x-03-mp4-png-crop-1.png", "c-crop-.png"]
    emb = rng.standard_normal((6, 8)).astype(np.float32)
    d = map_data(names, emb, np.zeros(6, np.int64), sources, 1, 1)
    assert dict(zip(d.names, d.frames.tolist())) == {
        "a.jpg": -1,
        "clip-07-mp4.png": 7,
        "b-jpg-crop-2.png": -1,
        "clip-12-mp4-png-crop-0.png": 12,
        "x-03-mp4-png-crop-1.png": 3,  # as main read it: its crop parent is a frame name
        "c-crop-.png": -1,
    }


def test_report_is_self_contained(small_report: tuple[Path, Any, dict[str, Any]]) -> None:
    text = small_report[0].read_text()
    assert "http://" not in text and "https://" not in text
    assert "default-src 'none'" in text  # the page may not request anything


def test_report_in_headless_chromium(
    browser: Any, small_report: tuple[Path, Any, dict[str, Any]]
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    path, data, _p = small_report
    b = browser
    b.get(path.as_uri())
    _wait_ready(b)
    api = "window.datapoolReport"

    # Loaded from file:// with no console error and no request leaving the file system.
    errors = [m for m in b.get_log("browser") if m["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    urls = []
    for entry in b.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    assert urls and all(u.startswith(("file://", "data:", "blob:")) for u in urls), urls
    assert (
        b.execute_script(
            "return performance.getEntriesByType('resource').filter(e => !/^(file|data|blob):/"
            ".test(e.name)).length"
        )
        == 0
    )

    # Every pool sample and every shown candidate is drawn.
    assert b.execute_script(f"return {api}.drawn") == 60 + 25

    canvas = b.find_element(By.ID, "map")
    origin = b.execute_script(
        "const r = arguments[0].getBoundingClientRect(); return [r.width, r.height]", canvas
    )

    def move_to(x: float, y: float) -> ActionChains:
        # selenium offsets are from the element's centre
        return ActionChains(b).move_to_element_with_offset(
            canvas, round(x - origin[0] / 2), round(y - origin[1] / 2)
        )

    # Hovering a known point shows its name, source, frame and run.
    name = "clip-07-mp4.png"
    i = b.execute_script(f"return {api}.indexOf(arguments[0])", name)
    assert i == data.names.index(name)
    x, y = b.execute_script(f"return {api}.screenOf(arguments[0])", i)
    move_to(x, y).perform()
    tip = b.find_element(By.ID, "tip")
    assert tip.is_displayed()
    assert name in tip.text and "clip.mp4" in tip.text and "frame: 7" in tip.text
    assert "run-1" in tip.text
    # ... and its thumbnail: an <img> that decoded to a picture (non-zero natural size)
    natural = _thumb_natural_size(b)
    assert natural == [96, 72], natural
    ARTIFACTS.mkdir(exist_ok=True)
    b.save_screenshot(str(ARTIFACTS / "report_small_hover.png"))

    # A pick shows its min-distance; a click pins it.
    pick = data.first_pick + 3
    x, y = b.execute_script(f"return {api}.screenOf(arguments[0])", pick)
    move_to(x, y).click().perform()
    assert "min-distance 0.85000" in tip.text and "pick #4" in tip.text
    assert b.execute_script(f"return {api}.pinned") == pick
    assert data.names[pick] in b.find_element(By.ID, "pinned").text

    ARTIFACTS.mkdir(exist_ok=True)
    b.save_screenshot(str(ARTIFACTS / "report_small.png"))

    # Toggling a run hides its points (and showing it again brings them back).
    box = b.find_element(By.CSS_SELECTOR, "#legend input[data-group='1']")
    box.click()
    assert b.execute_script(f"return {api}.drawn") == 60 + 25 - 20
    box.click()
    assert b.execute_script(f"return {api}.drawn") == 60 + 25

    # A box selection returns the names inside it, computed here from the quantised coordinates
    # and the page's view transform.
    v = b.execute_script(f"return {api}.view")
    sx = v["ox"] + data.xy[:, 0].astype(float) * v["kx"]
    sy = v["oy"] - data.xy[:, 1].astype(float) * v["ky"]
    x0, x1 = float(np.percentile(sx, 20)), float(np.percentile(sx, 70))
    y0, y1 = float(np.percentile(sy, 10)), float(np.percentile(sy, 90))
    x0, x1, y0, y1 = round(x0), round(x1), round(y0), round(y1)
    inside = (sx >= x0) & (sx <= x1) & (sy >= y0) & (sy <= y1)
    expected = sorted(n for n, k in zip(data.names, inside) if k)
    assert expected
    b.find_element(By.ID, "mode-box").click()
    move_to(x0, y0).click_and_hold().move_by_offset(x1 - x0, y1 - y0).release().perform()
    got = b.find_element(By.ID, "selection").get_attribute("value").split("\n")
    # a point on the box's edge may fall either side of a pixel's rounding
    assert set(got) ^ set(expected) <= {
        n
        for n, xx, yy in zip(data.names, sx, sy)
        if min(abs(xx - x0), abs(xx - x1), abs(yy - y0), abs(yy - y1)) < 1.5
    }
    assert b.execute_script(f"return {api}.selectionText()").split("\n")[:-1] == got
    b.save_screenshot(str(ARTIFACTS / "report_small_selection.png"))
    b.find_element(By.ID, "download").click()  # a blob: download, no request; no CSP error
    b.find_element(By.ID, "copy").click()

    errors = [m for m in b.get_log("browser") if m["level"] in ("SEVERE", "ERROR")]
    assert errors == []


def _inside(px: np.ndarray, py: np.ndarray, poly: list[tuple[float, float]]) -> np.ndarray:
    """Even-odd point-in-polygon, as the page tests it."""
    inside = np.zeros(len(px), bool)
    for (xa, ya), (xb, yb) in zip(poly, poly[-1:] + poly[:-1]):
        crosses = (ya > py) != (yb > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = (xb - xa) * (py - ya) / (yb - ya) + xa
        inside ^= crosses & (px < x_at)
    return inside


def _near_edges(px: np.ndarray, py: np.ndarray, poly: list[tuple[float, float]]) -> np.ndarray:
    near = np.zeros(len(px), bool)
    for (xa, ya), (xb, yb) in zip(poly, poly[-1:] + poly[:-1]):
        dx, dy = xb - xa, yb - ya
        t = np.clip(((px - xa) * dx + (py - ya) * dy) / max(dx * dx + dy * dy, 1e-9), 0, 1)
        near |= np.hypot(px - (xa + t * dx), py - (ya + t * dy)) < 2.0
    return near


def test_lasso_selects_the_points_inside_the_drawn_loop_and_hover_shows_thumbnails(
    browser: Any, small_report: tuple[Path, Any, dict[str, Any]]
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    path, data, p = small_report
    b = browser
    b.get(path.as_uri())
    _wait_ready(b)
    api = "window.datapoolReport"
    canvas = b.find_element(By.ID, "map")
    w, h = b.execute_script(
        "const r = arguments[0].getBoundingClientRect(); return [r.width, r.height]", canvas
    )

    def at(x: float, y: float) -> ActionChains:
        return ActionChains(b).move_to_element_with_offset(
            canvas, round(x - w / 2), round(y - h / 2)
        )

    # Hover: a point with a thumbnail shows it with its name; one without shows none.
    for name, size in (("img_004.jpg", [96, 72]), (p["names"][-1], None)):
        i = b.execute_script(f"return {api}.indexOf(arguments[0])", name)
        assert i == data.names.index(name), (name, i)
        x, y = b.execute_script(f"return {api}.screenOf(arguments[0])", i)
        at(x, y).perform()
        tip = b.find_element(By.ID, "tip")
        assert tip.is_displayed() and name in tip.text
        assert _thumb_natural_size(b) == size, name
    ARTIFACTS.mkdir(exist_ok=True)

    # Lasso: a five-sided loop over the middle of the map, drawn with the mouse.
    v = b.execute_script(f"return {api}.view")
    sx = v["ox"] + data.xy[:, 0].astype(float) * v["kx"]
    sy = v["oy"] - data.xy[:, 1].astype(float) * v["ky"]
    # around the middle of the lowest cluster on the map, so that some of it is outside
    low = sy > np.percentile(sy, 60)
    cx, cy = float(np.median(sx[low])), float(np.median(sy[low]))
    rx = ry = max(8.0, float(np.median(np.hypot(sx[low] - cx, sy[low] - cy))))
    angles = np.linspace(0, 2 * np.pi, 6)[:-1] + 0.3
    poly = [(round(cx + rx * np.cos(t)), round(cy + ry * np.sin(t))) for t in angles]
    b.find_element(By.ID, "mode-lasso").click()
    chain = at(*poly[0]).click_and_hold()
    for (xa, ya), (xb, yb) in zip(poly, poly[1:] + poly[:1]):
        chain = chain.move_by_offset(xb - xa, yb - ya)
    chain.release().perform()
    inside = _inside(sx, sy, poly)
    near = _near_edges(sx, sy, poly)
    expected = {n for n, k in zip(data.names, inside) if k}
    ambiguous = {n for n, k in zip(data.names, near) if k}
    got = set(b.find_element(By.ID, "selection").get_attribute("value").split("\n")) - {""}
    assert expected and len(expected) < len(data.names)
    assert got ^ expected <= ambiguous, (got ^ expected, ambiguous)
    assert b.find_element(By.ID, "selcount").text == f"({len(got)})"
    text = b.execute_script(f"return {api}.selectionText()")
    assert set(text.split("\n")[:-1]) == got  # what copy and download hand over
    b.find_element(By.ID, "download").click()

    # The screenshot to look at: the lasso's selection outlined, a pick hovered with its picture.
    pick = data.first_pick + 1
    x, y = b.execute_script(f"return {api}.screenOf(arguments[0])", pick)
    b.find_element(By.ID, "mode-pan").click()
    at(x, y).perform()
    assert _thumb_natural_size(b) == [96, 72]
    b.save_screenshot(str(ARTIFACTS / "report_lasso_thumbnail.png"))
    errors = [m for m in b.get_log("browser") if m["level"] in ("SEVERE", "ERROR")]
    assert errors == []


def test_report_html_whole_pool_without_candidates(browser: Any, tmp_path: Path) -> None:
    p = _small_pool(np.random.default_rng(3))
    page = report_html(p["report"], p["runs"], p["names"], p["emb"], p["labels"], p["image_keys"])
    _open_page(browser, tmp_path / "pool.html", page)
    assert browser.execute_script("return window.datapoolReport.drawn") == 60


def test_exact_duplicates_are_named_at_their_point_and_counted_in_the_header(
    browser: Any, tmp_path: Path
) -> None:
    """A symlink and its target, or byte copies, have the same embedding and are drawn exactly
    on each other: the tip and the pin named only the one on top, and the legend counted points
    no one could see. Now each names the others at its point, and the header counts them."""
    p = _small_pool(np.random.default_rng(3))
    names, emb = list(p["names"]), p["emb"].copy()
    emb[5] = emb[4]  # img_005.jpg: a byte copy of img_004.jpg
    emb[12] = emb[4]  # and img_012.jpg
    emb[40] = emb[31]  # clip-10-mp4.png: a copy of clip-01-mp4.png
    page = report_html(p["report"], p["runs"], names, emb, p["labels"], p["image_keys"])
    _open_page(browser, tmp_path / "twins.html", page)
    api = "window.datapoolReport"
    assert browser.execute_script(f"return {api}.onAnother") == 3
    status = browser.find_element("id", "status").text
    assert "3 points sit exactly on another (duplicates" in status, status
    i = browser.execute_script(f"return {api}.indexOf('img_012.jpg')")
    assert sorted(browser.execute_script(f"return {api}.twinsOf(arguments[0])", i)) == [4, 5, 12]
    hover = """
        const r = window.datapoolReport, [x, y] = r.screenOf(arguments[0]);
        const c = document.getElementById('map'), b = c.getBoundingClientRect();
        for (const type of ['mousemove', 'mousedown', 'mouseup'])
          c.dispatchEvent(new MouseEvent(type, {clientX: b.left + x, clientY: b.top + y, bubbles: true}));
        return [document.getElementById('tip').textContent,
                document.getElementById('pinned').textContent];
    """
    tip, pinned = browser.execute_script(hover, i)
    for text in (tip, pinned):
        assert "+2 more at this point: " in text, text
        shown = {"img_004.jpg", "img_005.jpg", "img_012.jpg"}
        assert all(n in text for n in shown), text
    j = browser.execute_script(f"return {api}.indexOf('clip-10-mp4.png')")
    tip, _ = browser.execute_script(hover, j)
    assert "+1 more at this point: " in tip and "clip-01-mp4.png" in tip, tip
    # a point alone at its place says nothing of the kind
    tip, _ = browser.execute_script(hover, 0)
    assert "more at this point" not in tip, tip


def test_different_samples_at_one_map_position_are_no_duplicates(
    browser: Any, tmp_path: Path
) -> None:
    """The page called every point drawn on another a duplicate ("the same embedding"): in a
    big pool two different samples land on one position of the 65536 x 65536 grid, and were
    listed as duplicates of each other. Only points whose embeddings are equal bit for bit are
    now; the others at a point are named as other samples, and counted apart in the header."""
    p = _small_pool(np.random.default_rng(3))
    names, emb = list(p["names"]), p["emb"].copy()
    emb[5] = emb[4]  # img_005.jpg: a byte copy of img_004.jpg
    emb[7] = emb[3]
    emb[7, 0] = np.nextafter(emb[3, 0], np.float32(1))  # img_007.jpg: another sample, one ulp off
    assert not np.array_equal(emb[7], emb[3])
    page = report_html(p["report"], p["runs"], names, emb, p["labels"], p["image_keys"])
    _open_page(browser, tmp_path / "one-spot.html", page)
    api = "window.datapoolReport"

    def index(name: str) -> int:
        return int(browser.execute_script(f"return {api}.indexOf(arguments[0])", name))

    i3, i4, i5, i7 = (index(f"img_00{k}.jpg") for k in (3, 4, 5, 7))
    # (the setup: img_007.jpg is drawn on img_003.jpg's very position)
    assert sorted(browser.execute_script(f"return {api}.twinsOf(arguments[0])", i7)) == sorted(
        [i3, i7]
    )
    status = browser.find_element("id", "status").text  # (main said "2 points ... duplicates")
    assert "1 point sits exactly on another (duplicates: the same embedding)" in status, status
    assert "1 point shares the map position of a different sample" in status, status
    assert browser.execute_script(f"return {api}.duplicatesOf(arguments[0])", i7) == []
    assert browser.execute_script(f"return {api}.duplicatesOf(arguments[0])", i5) == sorted(
        [i4, i5]
    )
    assert browser.execute_script(f"return [{api}.onAnother, {api}.duplicates]") == [2, 1]
    tip = browser.execute_script(
        """
        const r = window.datapoolReport, [x, y] = r.screenOf(arguments[0]);
        const c = document.getElementById('map'), b = c.getBoundingClientRect();
        c.dispatchEvent(new MouseEvent('mousemove', {clientX: b.left + x, clientY: b.top + y,
                                                     bubbles: true}));
        return document.getElementById('tip').textContent;
        """,
        i7,
    )
    other = "img_003.jpg" if "img_007.jpg" in tip.split("+1 more")[0] else "img_007.jpg"
    assert f"+1 more at this point: {other} (initial-tag, another sample)" in tip, tip
    assert "duplicate" not in tip, tip


def test_duplicate_groups_compare_embeddings_not_positions(rng: np.random.Generator) -> None:
    from datapool.report_html import duplicate_groups

    emb = rng.standard_normal((6, 8)).astype(np.float32)
    emb[4] = emb[1]
    xy = np.array([[0, 0], [5, 5], [5, 5], [9, 9], [5, 5], [0, 0]], np.uint16)
    xy_far = xy.copy()
    xy_far[4] = [7, 7]  # the copy drawn elsewhere: not hidden, so not listed at a point
    assert duplicate_groups(xy, emb).tolist() == [-1, 0, -1, -1, 0, -1]
    assert duplicate_groups(xy_far, emb).tolist() == [-1] * 6
    assert duplicate_groups(xy[:1], emb[:1]).tolist() == [-1]


# --- written by runs, and by `datapool report` ------------------------------------------------------


def test_every_run_writes_its_report_and_datapool_report_writes_the_pools(
    browser: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datapool.cli import main
    from datapool.demo import run_demo

    first, second = run_demo(tmp_path / "demo", progress=False)
    for r in (first, second):
        assert r.html_path is not None and Path(r.html_path).name == "report.html"
        assert Path(r.html_path).parent == Path(r.report_path).parent
    report = json.loads(Path(second.report_path).read_text())
    unselected = second.counts["frames_embedded"] - second.counts["selected"]
    browser.get(Path(second.html_path).as_uri())
    _wait_ready(browser)
    assert browser.execute_script("return window.datapoolReport.drawn") == (
        second.counts["pool_size"] + unselected
    )
    first_pick = report["selected"][0]["filename"]
    assert (
        browser.execute_script("return window.datapoolReport.indexOf(arguments[0])", first_pick)
        >= 0
    )
    assert [m for m in browser.get_log("browser") if m["level"] == "SEVERE"] == []
    # Hovering the first pick shows the thumbnail the run made of it while decoding.
    from selenium.webdriver.common.action_chains import ActionChains

    canvas = browser.find_element("id", "map")
    w, h = browser.execute_script(
        "const r = arguments[0].getBoundingClientRect(); return [r.width, r.height]", canvas
    )
    i = browser.execute_script("return window.datapoolReport.indexOf(arguments[0])", first_pick)
    x, y = browser.execute_script("return window.datapoolReport.screenOf(arguments[0])", i)
    ActionChains(browser).move_to_element_with_offset(
        canvas, round(x - w / 2), round(y - h / 2)
    ).perform()
    assert first_pick in browser.find_element("id", "tip").text
    size = _thumb_natural_size(browser)
    assert size is not None and max(size) == 96, size
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "report_demo_run.png"))

    monkeypatch.chdir(tmp_path)
    assert main(["report", str(tmp_path / "demo" / "pool")]) == 0
    page = tmp_path / "pool-report.html"
    browser.get(page.as_uri())
    _wait_ready(browser)
    assert (
        browser.execute_script("return window.datapoolReport.drawn") == second.counts["pool_size"]
    )
    assert "run-1" in browser.find_element("id", "legend").text


def test_datapool_report_of_a_folder_that_is_no_pool_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from datapool.cli import main

    assert main(["report", str(tmp_path), "--out", str(tmp_path / "x.html")]) != 0
    err = capsys.readouterr().err
    assert err.startswith("datapool: error:") and len(err.strip().splitlines()) == 1


def test_datapool_report_of_a_pool_in_s3(
    browser: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    if new_bucket is None:
        pytest.skip("boto3 and moto are needed for a pool in S3")
    from datapool.cli import main

    from .conftest import write_media

    request.getfixturevalue("s3_env")
    name = request.getfixturevalue("new_bucket")()
    images = tmp_path / "few"
    for i in range(6):
        write_media(images / f"f{i}.jpg", seed=60 + i)
    url = f"s3://{name}/pool"
    r = datapool_run(images, url)
    assert str(r.html_path) == f"{url}/runs/0/report.html"
    out = tmp_path / "s3.html"
    assert main(["report", url, "--out", str(out)]) == 0
    browser.get(out.as_uri())
    _wait_ready(browser)
    assert browser.execute_script("return window.datapoolReport.drawn") == r.counts["pool_size"]
    # the run's report.json was read from the bucket: its picks are listed under the map
    assert "Picks in order" in out.read_text()


def test_umap_without_umap_learn_is_a_clear_error(tmp_path: Path) -> None:
    from datapool.errors import ConfigError
    from datapool.report_html import project

    try:
        import umap  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="umap-learn"):
            project(np.ones((20, 4), np.float32), "umap")
    else:
        assert project(np.random.default_rng(0).random((40, 4), np.float32), "umap").shape == (
            40,
            2,
        )


def datapool_run(source: Path, pool: str) -> Any:
    import datapool

    return datapool.run(source, pool, n_samples=3, progress=False)


def test_the_page_names_its_projection_and_says_when_umap_had_too_few_points() -> None:
    """`--projection umap` on a pool of under 16 points draws PCA: the page says so."""
    p = _small_pool(np.random.default_rng(3))
    n = len(p["names"])
    for projection, n_points, said in (
        ("pca", n, "On the map (PCA)"),
        ("umap", 10, "On the map (PCA (UMAP needs 16 points or more))"),
    ):
        names, emb = p["names"][:n_points], p["emb"][:n_points]
        labels = p["labels"][:n_points]
        page = report_html(
            {"counts": {}}, p["runs"], names, emb, labels, set(), projection=projection
        ).decode()
        assert said in page


# --- names that are markup ----------------------------------------------------------------------

HOSTILE_NAMES = [
    "<script>window.__pwned='name'</script>.jpg",
    "q'uote\"s & amp;.jpg",
    "<img src=x onerror=window.__pwned='img'>.jpg",
    "ünïcødé-日本語-🙂.jpg",
    "comma,name.jpg",
    "x" * 200 + ".jpg",  # wider than the window
    "{{META}}.jpg",  # the page's template placeholders, as file names
    "{{DATA}}.jpg",
    "{{SCRIPT}}.jpg",
    "vid</script><!--<script>eo.mp4",
]


def test_a_run_over_files_and_a_pool_named_as_markup_makes_a_page_that_shows_them_as_text(
    browser: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """File names, and the pool's folder name (the page's title), reach the page as text: no
    name runs as script, breaks the page, or is taken for one of the page's template parts."""
    import datapool
    from datapool.cli import main

    from .conftest import write_media

    src = tmp_path / "src"
    for i, name in enumerate(HOSTILE_NAMES):
        write_media(src / name, seed=80 + i, frames=3)
    pool = tmp_path / "<img src=x onerror=window.__pwned='title'><!--<script>"
    r = datapool.run(src, pool, n_samples=100, progress=False)
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(pool), "--out", "pool.html"]) == 0
    for page in (Path(r.html_path), tmp_path / "pool.html"):
        text = page.read_text()
        # the template was filled once: its parts appear once each
        assert text.count('id="dp-meta"') == 1 and text.count("H4sI") == 1
        browser.get(page.as_uri())
        _wait_ready(browser, timeout=20)
        assert browser.execute_script("return window.__pwned === undefined")
        api = "window.datapoolReport"
        n = browser.execute_script(f"return {api}.meta.n")
        names = browser.execute_script(f"return [...Array({n}).keys()].map({api}.nameOf)")
        sources = set(browser.execute_script(f"return [...Array({n}).keys()].map({api}.sourceOf)"))
        assert sources == set(HOSTILE_NAMES)
        assert set(names) == set(r.selected)
        assert browser.title.startswith(pool.name)
        assert [m for m in browser.get_log("browser") if m["level"] == "SEVERE"] == []
        # the table of picks lists the names as they are
        picks = browser.find_element("css selector", "table.picks").text
        assert "{{META}}.jpg" in picks and "<script>window.__pwned='name'</script>.jpg" in picks
        # a long name wraps in its table: the page does not scroll sideways
        assert browser.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth"
        )


def test_the_page_of_a_merged_pool_names_its_last_run_and_picks_as_the_merged_pool_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last run of C = merge(A, night) is night's first run, whose report.json night
    wrote: the page calls it by C's tag and index, and lists its picks under the names C gave
    them (`night/img00.jpg`; `img00.jpg` in C is A's picture), as `datapool ls` does."""
    import datapool
    from datapool.cli import main

    from .conftest import write_media

    for pool, seed in (("A", 0), ("night", 100)):
        for i in range(4):  # the same names in both sources, other pictures
            write_media(tmp_path / f"{pool}-src" / f"img{i:02d}.jpg", seed=seed + i)
        datapool.run(tmp_path / f"{pool}-src", tmp_path / pool, n_samples=3, progress=False)
    merged = datapool.merge(tmp_path / "A", tmp_path / "night", tmp_path / "C")
    monkeypatch.chdir(tmp_path)
    assert main(["report", "C", "--out", "c.html"]) == 0
    page = (tmp_path / "c.html").read_text()
    picks = page.split("Picks in order", 1)[1].split("</table>", 1)[0]
    listed = [n for n in merged.filenames if n.startswith("night/")]
    assert len(listed) == 3 and all(f">{n}</td>" in picks for n in listed)
    assert "<td>run-1 (index 1)</td>" in page and "where it was initial-tag" in page


def test_report_out_makes_missing_folders_takes_a_folder_and_open_says_when_no_browser_starts(
    tmp_path: Path,
) -> None:
    """`--out a/b/page.html` makes a/b; `--out FOLDER` writes <pool>-report.html in it; `--open`
    where no browser starts (BROWSER=false, no display) says so on stderr, the page written."""
    import datapool

    from .conftest import run_cli, write_media

    for i in range(3):
        write_media(tmp_path / "src" / f"f{i}.jpg", seed=90 + i)
    datapool.run(tmp_path / "src", tmp_path / "pool", n_samples=2, progress=False)
    deep = tmp_path / "new" / "deeper" / "page.html"
    r = run_cli("report", tmp_path / "pool", "--out", deep)
    assert r.returncode == 0 and deep.read_bytes().startswith(b"<!DOCTYPE html>"), r.stderr
    (tmp_path / "pages").mkdir()
    r = run_cli("report", tmp_path / "pool", "--out", tmp_path / "pages")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "pages" / "pool-report.html").stat().st_size > 0
    env = {"BROWSER": "false", "DISPLAY": "", "WAYLAND_DISPLAY": ""}
    r = run_cli("report", tmp_path / "pool", "--out", deep, "--open", env_extra=env)
    assert r.returncode == 0 and f"open {deep} in one" in r.stderr, r.stderr
    r = run_cli("report", tmp_path / "pool", "--out", deep, "--open", env_extra={"BROWSER": "true"})
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_colour_by_run_gives_every_older_run_its_own_colour_and_none_this_runs_green(
    browser: Any, tmp_path: Path
) -> None:
    """With 14 runs, "colour by run": 13 older runs, 13 colours, all far from the green of this
    run's picks (the palette had a green, and repeated itself from the 11th run) and from the
    blue of its unselected candidates (the palette's first colour was a blue like theirs)."""
    rng = np.random.default_rng(5)
    n_runs, per = 14, 5
    names = [f"r{r:02d}_{i}.jpg" for r in range(n_runs) for i in range(per)]
    emb = rng.standard_normal((len(names), 8)).astype(np.float32)
    labels = np.repeat(np.arange(n_runs), per)
    runs = [{"tag": f"run-{r}"} for r in range(n_runs)]
    page = report_html({"tag": "run-13"}, runs, names, emb, labels, set(names))
    _open_page(browser, tmp_path / "runs.html", page)
    browser.execute_script(
        "const s = document.getElementById('colour'); s.value = 'run';"
        "s.dispatchEvent(new Event('change'));"
    )
    swatches = browser.execute_script(
        "return [...document.querySelectorAll('#legend .sw')].map(e => getComputedStyle(e)"
        ".backgroundColor.match(/\\d+/g).slice(0, 3).map(Number))"
    )
    assert len(swatches) == n_runs
    *older, new = swatches
    assert len({tuple(c) for c in older}) == n_runs - 1
    # nor the blue of this run's unselected candidates (the palette began with a blue)
    from datapool.report_html import CANDIDATE_COLOUR

    blue = [int(CANDIDATE_COLOUR[k : k + 2], 16) for k in (1, 3, 5)]
    for c in older:
        assert np.linalg.norm(np.subtract(c, new)) > 80, (c, new)
        assert np.linalg.norm(np.subtract(c, blue)) > 60, (c, blue)


def test_a_pool_of_one_sample_is_drawn_in_the_middle_of_the_map(
    browser: Any, tmp_path: Path
) -> None:
    """One point (or points all alike) has no extent to scale: it goes in the middle of the map,
    as the PNG view draws it, not into the corner at the map's edge."""
    emb = np.ones((1, 8), np.float32) / np.sqrt(8)
    page = report_html(
        {"tag": "initial-tag"},
        [{"tag": "initial-tag"}],
        ["a.jpg"],
        emb,
        np.zeros(1, np.int64),
        {"a.jpg"},
    )
    _open_page(browser, tmp_path / "one.html", page)
    x, y = browser.execute_script("return window.datapoolReport.screenOf(0)")
    w, h = browser.execute_script(
        "const r = document.getElementById('map').getBoundingClientRect(); return [r.width, r.height]"
    )
    assert abs(x - w / 2) < 2 and abs(y - h / 2) < 2, (x, y, w, h)


def test_the_pages_runs_table_counts_each_runs_samples_still_in_the_pool_as_status_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """img00.jpg changes and is picked again by run-1: initial-tag selected 3, 2 of them are
    still in the pool. The page's table of runs says so, as `datapool status --json` does."""
    import re

    import datapool
    from datapool.cli import main

    from .conftest import write_media

    src, pool = tmp_path / "src", tmp_path / "pool"
    for i in range(3):
        write_media(src / f"img{i:02d}.jpg", seed=200 + i)
    datapool.run(src, pool, n_samples=3, progress=False)
    write_media(src / "img00.jpg", seed=300)
    datapool.run(src, pool, n_samples=3, progress=False)
    out = tmp_path / "p.html"
    assert main(["report", str(pool), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["status", str(pool), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    table = out.read_text().split("<h2>Runs</h2>", 1)[1]
    assert "still in the pool" in table
    for run in status["runs"]:
        row = re.search(
            rf"<tr><td>{run['tag']}</td><td>[^<]*</td><td>(\d+)</td><td>(\d+)</td>", table
        )
        assert row is not None, run["tag"]
        assert (int(row[1]), int(row[2])) == (run["selected"], run["samples_in_pool"])
    assert [r["samples_in_pool"] for r in status["runs"]] == [2, 1]


def test_a_pool_with_no_samples_left_says_so_on_the_map(browser: Any, tmp_path: Path) -> None:
    """Every sample's file changed into a broken one: the pool has runs but no samples. The map
    says there is nothing to draw, rather than stay blank."""
    runs = [{"tag": "initial-tag"}, {"tag": "run-1"}]
    page = report_html(
        {"tag": "run-1"}, runs, [], np.zeros((0, 8), np.float32), np.zeros(0, np.int64), set()
    )
    _open_page(browser, tmp_path / "empty.html", page)
    note = browser.find_element("id", "empty")
    assert note.is_displayed() and "no samples" in note.text


def test_the_skipped_files_table_says_which_column_is_which(small_report) -> None:
    path, _, _ = small_report
    page = path.read_text()
    assert (
        "<h2>Skipped files (1)</h2><div class='scroll'><table><tr><th>file</th><th>reason</th></tr>"
        "<tr><td class='name'>broken.mp4</td><td class='name'>cannot decode</td></tr></table>"
    ) in page


def test_map_data_of_a_big_pool_holds_no_copy_of_its_embeddings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tracemalloc

    monkeypatch.setattr("datapool.view.MAX_PCA_FIT_ROWS", 2_000)  # the pool the only big one
    rng = np.random.default_rng(3)
    n = 60_000
    emb = rng.standard_normal((n, 128), dtype=np.float32)
    names = [f"{i}.jpg" for i in range(n)]
    labels = np.zeros(n, np.int64)
    labels[-10:] = 1  # this run's picks, drawn last
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        data = map_data(names, emb, labels, names, 1, 2)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert data.names[-10:] == names[-10:]
    # Ordering the pool (its picks last) and projecting it took two copies of the matrix.
    assert peak < emb.nbytes / 2, (peak, emb.nbytes)


def _dense_spot_page(tmp_path: Path) -> Path:
    """This run's pick (a green circle) with an older sample's dot under its edge, an unselected
    candidate's a little further off, and two dots in the corners that fix the map's scale."""
    from datapool.report_html import MapData

    names = ["cand.jpg", "corner-a.jpg", "corner-b.jpg", "old.jpg", "pick.jpg"]
    c = 32768
    xy = np.array([[c - 400, c], [0, 0], [65535, 65535], [c + 150, c], [c, c]], np.uint16)
    data = MapData(
        names,
        names,
        np.array([2, 0, 0, 0, 1], np.int64),
        xy,
        np.full(5, -1, np.int32),
        np.array([0.5], np.float32),
        first_pick=4,
    )
    runs = [{"tag": "initial-tag"}, {"tag": "run-1"}]
    path = tmp_path / "dense.html"
    path.write_bytes(render(data, {"tag": "run-1"}, runs, 1, "dense"))
    return path


def test_hovering_or_clicking_a_pick_names_the_circle_drawn_on_top_not_a_dot_under_it(
    browser: Any, tmp_path: Path
) -> None:
    """In a dense map older samples' dots lie under this run's green circles. The pointer on a
    circle, nearer an older dot's centre than the circle's, named the older sample (8 of 10 picks
    of a 21,000-point report): the tip and the pin now name what is drawn on top, and a dot that
    no circle covers is still found by its nearness."""
    browser.get(_dense_spot_page(tmp_path).as_uri())
    _wait_ready(browser)
    hover = """
        const [i, fx, fy] = arguments, r = window.datapoolReport;
        const c = document.getElementById('map'), b = c.getBoundingClientRect();
        const [x0, y0] = r.screenOf(i), [x1, y1] = r.screenOf(4);
        const x = x0 + fx * (x1 - x0), y = y0 + fy * (y1 - y0);
        for (const type of ['mousemove', 'mousedown', 'mouseup'])
          c.dispatchEvent(new MouseEvent(type, {clientX: b.left + x, clientY: b.top + y, bubbles: true}));
        return [document.querySelector('#tip b.name').textContent,
                document.querySelector('#pinned b.name').textContent,
                Math.hypot(x - x0, y - y0), Math.hypot(x - x1, y - y1)];
    """
    # a quarter of the way from the old dot to the pick's centre: nearer the old dot, on the circle
    tip, pinned, to_old, to_pick = browser.execute_script(hover, 3, 0.25, 0.25)
    assert to_old < to_pick < 3.5, (to_old, to_pick)  # the case: the old dot is the nearer
    assert (tip, pinned) == ("pick.jpg", "pick.jpg")
    # the candidate's dot is clear of the circle: the pointer on it names it
    tip, pinned, _, to_pick = browser.execute_script(hover, 0, 0, 0)
    assert to_pick > 4 and (tip, pinned) == ("cand.jpg", "cand.jpg")


def test_on_a_narrow_window_the_map_takes_the_width_and_nothing_overlaps_or_scrolls_sideways(
    browser: Any, small_report: tuple[Path, Any, dict[str, Any]]
) -> None:
    """At 480 px wide (a phone, a split screen) the side panel kept its 300 px: the map was 160
    px wide, its toolbar lay over the panel, and the model's sha256 made the page scroll
    sideways. Now the panel goes under the map and long values wrap."""
    browser.set_window_size(480, 800)
    try:
        browser.get(small_report[0].as_uri())
        _wait_ready(browser)
        got = browser.execute_script(
            "const box = id => document.getElementById(id).getBoundingClientRect();"
            "const de = document.documentElement, t = box('toolbar'), l = box('side');"
            "const apart = t.bottom <= l.top || l.bottom <= t.top || t.right <= l.left || l.right <= t.left;"
            "return [de.scrollWidth - de.clientWidth, box('map').width / de.clientWidth, apart];"
        )
        overflow, map_share, apart = got
        assert overflow <= 0 and map_share > 0.9 and apart, got
    finally:
        browser.set_window_size(1400, 1000)


def test_each_points_thumbnail_is_its_own_jpeg_byte_for_byte(
    browser: Any, small_report: tuple[Path, Any, dict[str, Any]]
) -> None:
    """A hover decodes only the base64 of its own thumbnail (not the whole blob): at every
    alignment in the blob the bytes are the point's JPEG, and a point without one has none."""
    import base64

    path, data, _ = small_report
    browser.get(path.as_uri())
    _wait_ready(browser)
    got = browser.execute_script(
        "const r = window.datapoolReport, out = [];"
        "for (let i = 0; i < r.meta.n; i++) { const b = r.thumbBytes(i);"
        "  out.push(b && btoa(String.fromCharCode(...b))); }"
        "return out;"
    )
    want = [data.thumbnails.get(n) for n in data.names]
    assert sum(w is None for w in want) == 2
    assert got == [w and base64.b64encode(w).decode() for w in want]


def test_find_selects_the_points_whose_name_or_source_holds_the_text_in_any_case(
    browser: Any, small_report: tuple[Path, Any, dict[str, Any]]
) -> None:
    """In a map of 21,000 points a user looks for a file by name: the find box selects (lists,
    outlines) the shown points whose name or source file holds the text, in any case."""
    from selenium.webdriver.common.by import By

    path, data, _ = small_report
    browser.get(path.as_uri())
    _wait_ready(browser)
    find = browser.find_element(By.ID, "find")

    def found(text: str) -> list[str]:
        """What the box lists once its (debounced) search has run, as the page's own text."""
        find.clear()
        find.send_keys(text)
        q = text.lower()
        want = sorted(
            n
            for n, src, g in zip(data.names, data.sources, data.groups.tolist())
            if g != hidden and (q in n.lower() or q in src.lower())
        )
        end = time.monotonic() + 10
        while True:
            box = browser.find_element(By.ID, "selection").get_attribute("value")
            got = sorted(x for x in box.splitlines() if x)
            if got == want or time.monotonic() > end:
                return got
            time.sleep(0.05)

    hidden = -1
    assert found("CLIP-1") == sorted(f"clip-{i}-mp4.png" for i in range(10, 20))
    # a source file: every frame of clip.mp4, named by frame
    assert found("Clip.MP4") == sorted(n for n in data.names if n.startswith("clip-"))
    assert found("img_00") == [f"img_00{i}.jpg" for i in range(10)]
    assert found("no such file") == []
    assert "no shown point" in browser.find_element(By.ID, "selection").get_attribute("placeholder")
    # a run hidden in the legend is not searched
    browser.find_element(By.CSS_SELECTOR, "#legend input[data-group='1']").click()
    hidden = 1
    assert found("clip") == [] and found("new_0") == [f"new_0{i}.jpg" for i in range(10)]


def test_a_page_without_thumbnails_says_how_to_get_them(browser: Any, tmp_path: Path) -> None:
    """A pool grown with --no-thumbnails (or from before them): the hover showed no picture and
    the page said nothing of why. Its status line now names the flag that adds them."""
    emb = np.eye(3, 8, dtype=np.float32)
    args = ({"tag": "t"}, [{"tag": "t"}], ["a.jpg", "b.jpg", "c.jpg"], emb, np.zeros(3, np.int64))
    for thumbs, says in ((None, True), (_thumbnails(["a.jpg"]), False)):
        path = tmp_path / "page.html"
        path.write_bytes(report_html(*args, {"a.jpg", "b.jpg", "c.jpg"}, thumbnails=thumbs))
        browser.get(path.as_uri())
        _wait_ready(browser)
        status = browser.find_element("id", "status").text
        assert ("--thumbnails" in status) == says, status


def _over_older_page(tmp_path: Path, n_old: int) -> tuple[Path, Any]:
    """A run (20 picks, 300 unselected candidates) over `n_old` older samples, all drawn from one
    distribution, so that they overlap as a real bucket's do."""
    from datapool.report_html import MapData

    rng = np.random.default_rng(11)
    n_cand, n_new = 300, 20
    xy = np.clip(rng.normal(32768, 9000, (n_old + n_cand + n_new, 2)), 0, 65535).astype(np.uint16)
    names = [f"c{i}.jpg" for i in range(n_cand)] + [f"o{i}.jpg" for i in range(n_old)]
    names += [f"p{i}.jpg" for i in range(n_new)]
    groups = np.array([2] * n_cand + [0] * n_old + [1] * n_new, np.int64)
    data = MapData(
        names,
        names,
        groups,
        xy,
        np.full(len(names), -1, np.int32),
        np.full(n_new, 0.5, np.float32),
        first_pick=n_cand + n_old,
        candidates_total=n_cand,
        shown_candidates=n_cand,
    )
    runs = [{"tag": "initial-tag"}, {"tag": "run-1"}]
    path = tmp_path / f"over-{n_old}.html"
    path.write_bytes(render(data, {"tag": "run-1"}, runs, 1, f"run-1 over {n_old}"))
    return path, data


# The colour of the map's pixel at each point's centre, as 0xRRGGBB (the canvas read back).
_CENTRE_COLOURS = """
const r = window.datapoolReport, c = document.getElementById('map');
const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data, d = window.devicePixelRatio || 1;
return arguments[0].map(i => { const [x, y] = r.screenOf(i), k = 4 * (Math.round(y * d) * c.width + Math.round(x * d));
  return px[k] << 16 | px[k + 1] << 8 | px[k + 2]; });
"""


def _hex(colour: str) -> int:
    return int(colour.lstrip("#"), 16)


def test_this_runs_candidates_and_picks_are_drawn_over_the_older_runs(
    browser: Any, tmp_path: Path
) -> None:
    """Under 21,000 older samples a run's unselected candidates were hidden (drawn first, the
    older runs over them) until one zoomed in or hid the older run. Now the older runs are drawn
    first and this run over them: each candidate's centre shows its colour unless a pick lies
    over it, and each pick's its green."""
    path, data = _over_older_page(tmp_path, 21_000)
    browser.get(path.as_uri())
    _wait_ready(browser)
    groups = browser.execute_script("return window.datapoolReport.meta.groups")
    cand, new = _hex(groups[2]["colour"]), _hex(groups[1]["colour"])
    cands = list(range(300))
    picks = list(range(data.first_pick, len(data.names)))
    got = browser.execute_script(_CENTRE_COLOURS, cands + picks)
    v = browser.execute_script("return window.datapoolReport.view")
    sx = v["ox"] + data.xy[:, 0].astype(float) * v["kx"]
    sy = v["oy"] - data.xy[:, 1].astype(float) * v["ky"]
    under_a_pick = [bool((np.hypot(sx[picks] - sx[i], sy[picks] - sy[i]) < 5).any()) for i in cands]
    shown = [c == cand for c, covered in zip(got[:300], under_a_pick) if not covered]
    assert len(shown) > 250 and all(shown), f"{sum(shown)} of {len(shown)} candidates shown"
    assert got[300:] == [new] * len(picks)
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "report_over_21000_older.png"))


def test_the_legend_draws_each_class_with_the_marker_it_has_on_the_map(
    browser: Any, tmp_path: Path
) -> None:
    """The legend's swatches were all round, while the map draws older runs' samples and the
    unselected candidates as square dots (and this run's picks as outlined circles). Each
    swatch now has its class's shape and colour, as the canvas shows them, in both colourings."""
    path, data = _over_older_page(tmp_path, 100)
    browser.get(path.as_uri())
    _wait_ready(browser)
    swatches = """
        return [...document.querySelectorAll('#legend label')].map(l => {
          const s = getComputedStyle(l.querySelector('.sw'));
          return [+l.querySelector('input').dataset.group, s.borderRadius, s.backgroundColor,
                  s.borderTopWidth !== '0px' && s.borderTopStyle !== 'none'];
        });
    """

    def rgb(css: str) -> int:
        r, g, b = (int(v) for v in css[css.index("(") + 1 : css.index(")")].split(",")[:3])
        return r << 16 | g << 8 | b

    def square(i: int) -> bool:
        """The pixels of point i's colour around its centre fill their bounding box."""
        win = browser.execute_script(
            "const r = window.datapoolReport, c = document.getElementById('map');"
            "const d = window.devicePixelRatio || 1, [x, y] = r.screenOf(arguments[0]);"
            "const p = c.getContext('2d').getImageData(Math.round(x * d) - 7, Math.round(y * d) - 7, 15, 15).data;"
            "const out = []; for (let k = 0; k < p.length; k += 4) out.push(p[k] << 16 | p[k + 1] << 8 | p[k + 2]);"
            "return out;",
            i,
        )
        same = np.array(win).reshape(15, 15) == win[7 * 15 + 7]
        rows, cols = np.flatnonzero(same.any(axis=1)), np.flatnonzero(same.any(axis=0))
        box = same[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        return bool(box.all() and box.size >= 4)

    for mode in ("age", "run"):
        browser.execute_script(
            "const s = document.getElementById('colour'); s.value = arguments[0];"
            "s.dispatchEvent(new Event('change'));",
            mode,
        )
        by_group = {
            g: (radius, colour, edge)
            for g, radius, colour, edge in browser.execute_script(swatches)
        }
        assert set(by_group) == {0, 1, 2}
        # an older sample and a candidate far from every other point: their dots, read back
        v = browser.execute_script("return window.datapoolReport.view")
        sx = v["ox"] + data.xy[:, 0].astype(float) * v["kx"]
        sy = v["oy"] - data.xy[:, 1].astype(float) * v["ky"]
        for g in (0, 2):
            idx = np.flatnonzero(data.groups == g)
            gap = [np.delete(np.hypot(sx - sx[i], sy - sy[i]), i).min() for i in idx]
            i = int(idx[int(np.argmax(gap))])
            assert square(i), (mode, g)
            assert by_group[g][0] == "0px" and not by_group[g][2], (mode, g, by_group[g])
            assert rgb(by_group[g][1]) == browser.execute_script(_CENTRE_COLOURS, [i])[0]
        # this run's picks: outlined circles
        radius, colour, edge = by_group[1]
        assert radius == "50%" and edge, by_group[1]
        assert rgb(colour) == browser.execute_script(_CENTRE_COLOURS, [data.first_pick])[0]


def test_the_runs_page_says_what_its_export_did(
    browser: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """report.json has held what `run --export` did since the export was recorded there, but
    report.html (committed before the export ran) said nothing of it: where it went, how many
    were exported, how many refused and why. The page now says so, as `datapool report` does;
    and where the export does not finish, the page says how to redo it."""
    import os

    import datapool
    from datapool.cli import main
    from datapool.pool import journal

    from .conftest import write_media

    src, pool, out = tmp_path / "src", tmp_path / "pool", tmp_path / "out"
    for i in range(4):
        write_media(src / f"img{i}.jpg", seed=400 + i)
    real_point, done = journal.point, []

    def change_after_commit(name: str) -> None:
        real_point(name)
        if name == "committed" and not done:  # the run's commit; its export follows
            done.append(name)
            os.unlink(src / "img0.jpg")
            write_media(src / "img1.jpg", seed=500)

    monkeypatch.setattr(journal, "point", change_after_commit)
    r = datapool.run(src, pool, n_samples=4, progress=False, export=str(out))
    assert r.export is not None and len(r.export.written) == 2 and len(r.export.refused) == 2
    monkeypatch.setattr(journal, "point", real_point)
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(pool), "--out", "pool.html"]) == 0
    for page in (Path(r.html_path), tmp_path / "pool.html"):
        browser.get(page.as_uri())
        _wait_ready(browser)
        text = browser.find_element("id", "export").text
        assert f"to {out}" in text and "exported 2 samples" in text, text
        assert "refused 2, not exported" in text and "Refused (2)" in text, text
        assert "img0.jpg no longer in the source" in text, text
        assert "img1.jpg changed since it was selected" in text, text
    ARTIFACTS.mkdir(exist_ok=True)
    browser.execute_script("document.getElementById('export').scrollIntoView()")
    browser.save_screenshot(str(ARTIFACTS / "report_export.png"))

    # An export that fails after the commit (its folder became a file): the page says where the
    # export was to go and how to make it.
    def break_after_commit(name: str) -> None:
        real_point(name)
        if name == "committed":
            (tmp_path / "out2").write_text("not a folder")

    monkeypatch.setattr(journal, "point", break_after_commit)
    write_media(src / "img9.jpg", seed=600)
    with pytest.raises(datapool.DatapoolError):
        datapool.run(src, pool, n_samples=1, progress=False, export=str(tmp_path / "out2"))
    text = (pool / "runs" / "1" / "report.html").read_text()
    part = text.split("<section id='export'>", 1)[1].split("</section>", 1)[0]
    assert (
        "did not finish" in part and f"datapool export {pool} {tmp_path / 'out2'} --run 1" in part
    )


def test_no_point_lies_under_the_toolbar_and_the_map_fills_a_resized_window(
    browser: Any, tmp_path: Path
) -> None:
    """The map was fitted 12 px from the canvas's edges, under the toolbar (30 px high): the
    topmost samples of the demo's run lay under its buttons, which took the pointer (no hover,
    no click). A window made bigger kept the map in its old corner, and a narrow window's map
    was 320 px high, not 70 % of the window. Now the fit clears the toolbar, a window resized
    before any pan or zoom is fitted anew, and the narrow map is as high as the style says.
    (And the list of selected names no longer sticks out past the find box and the panel.) (The tip of a long name
    near the right edge stays in the window: it was so already, checked at both widths.)"""
    rng = np.random.default_rng(2)
    n = 400
    names = [f"{'long-folder-name/' * 6}{i:04d}.jpg" for i in range(n)]  # long names: wide tips
    emb = rng.standard_normal((n, 8)).astype(np.float32)
    labels = (np.arange(n) >= n - 20).astype(np.int64)
    runs = [{"tag": "initial-tag"}, {"tag": "run-1"}]
    path = tmp_path / "fit.html"
    path.write_bytes(report_html({"tag": "run-1"}, runs, names, emb, labels, set(names)))
    hits = """
        const r = window.datapoolReport, c = document.getElementById('map'), b = c.getBoundingClientRect();
        const out = {under: 0, maxX: 0, maxY: 0, over: 0, w: b.width, h: b.height, vh: innerHeight};
        const edge = id => document.getElementById(id).getBoundingClientRect().right;
        out.listPastFind = edge('selection') - edge('find');  // the list under the find box
        for (let i = 0; i < r.meta.n; i++) {
          const [x, y] = r.screenOf(i);
          out.maxX = Math.max(out.maxX, x); out.maxY = Math.max(out.maxY, y);
          if (document.elementFromPoint(b.left + x, b.top + y) !== c) out.under++;
          c.dispatchEvent(new MouseEvent('mousemove', {clientX: b.left + x, clientY: b.top + y, bubbles: true}));
          const t = document.getElementById('tip').getBoundingClientRect();
          if (t.right > document.documentElement.clientWidth) out.over++;
        }
        return out;
    """
    try:
        for w, h in ((1280, 800), (480, 800)):
            browser.set_window_size(w, h)
            browser.get(path.as_uri())
            _wait_ready(browser)
            got = browser.execute_script(hits)
            assert got["under"] == 0 and got["over"] == 0, (w, got)
            assert abs(got["listPastFind"]) < 1, got  # it stuck out 6 px past the panel's edge
            # under 760 px the map is 70 % of the window's height as the style says (it was
            # squeezed to its 320 px minimum: flex-basis 0 in a column of no set height)
            assert w > 760 or got["h"] > 0.65 * got["vh"], got
        browser.set_window_size(1280, 800)
        browser.get(path.as_uri())
        _wait_ready(browser)
        browser.set_window_size(1400, 1000)
        end = time.monotonic() + 5
        while True:  # the ResizeObserver's redraw comes a frame later
            got = browser.execute_script(hits)
            if got["maxY"] > got["h"] - 60 or time.monotonic() > end:
                break
            time.sleep(0.05)
        assert got["maxX"] > got["w"] - 30 and got["maxY"] > got["h"] - 60, got
    finally:
        browser.set_window_size(1400, 1000)


@pytest.mark.parametrize("n", [0, 1, 9])
def test_payload_names_each_points_source_in_order_of_first_appearance(n) -> None:
    """The page's `source` array (an index per point) and `sources` text (one source a line):
    the sources in the order they first appear, each point's index that of its own. (Now one
    pandas.factorize, where a dict and a lookup per point built them.)"""
    import base64
    import gzip

    from datapool.report_html import MapData, _payload

    pool = ["clip.mp4", "a.jpg", "clip.mp4", "b,c.jpg", 'q"x.jpg', "a.jpg", "é.png"]
    sources = (pool * 2)[:n]
    names = [f"s{i}.png" for i in range(n)]
    data = MapData(
        names,
        sources,
        np.zeros(n, np.int64),
        np.zeros((n, 2), np.uint16),
        np.full(n, -1, np.int32),
        np.zeros(0, np.float32),
        n,
    )
    blob, layout = _payload(data)
    raw = gzip.decompress(base64.b64decode(blob))
    offset, dtype, length = layout["arrays"]["source"]
    assert (dtype, length) == ("u32", n)
    codes = np.frombuffer(raw, np.uint32, n, offset)
    start = layout["arrays"]["sources"][0]
    keys = raw[start:].decode().split("\n") if n else []
    assert keys == list(dict.fromkeys(sources))
    assert [keys[c] for c in codes.tolist()] == sources


def test_a_tall_pictures_thumbnail_keeps_its_shape_in_the_tip(browser: Any, tmp_path: Path) -> None:
    # A thumbnail is 96 px on its long side; the tip drew it at least 96 px wide and at most
    # 192 px high, so one narrower than 1:2 (a phone screenshot, a 3x7000 strip: 8x96) was
    # stretched to 96x192, a wide block of colour that no longer looks like the picture.
    import io

    from PIL import Image
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    import datapool
    from datapool.media import write_image

    from .conftest import scene

    src = tmp_path / "src"
    tall = np.zeros((600, 100, 3), np.uint8)
    tall[..., 0] = 255  # red, 1:6
    write_image(src / "tall.png", tall)
    write_image(src / "scene.jpg", scene(5))
    r = datapool.run(src, tmp_path / "pool", n_samples=2, progress=False)
    assert r.html_path is not None
    b = browser
    b.get(Path(r.html_path).as_uri())
    _wait_ready(b)
    api = "window.datapoolReport"
    canvas = b.find_element(By.ID, "map")
    w, h = b.execute_script(
        "const r = arguments[0].getBoundingClientRect(); return [r.width, r.height]", canvas
    )
    i = b.execute_script(f"return {api}.indexOf('tall.png')")
    x, y = b.execute_script(f"return {api}.screenOf(arguments[0])", i)
    ActionChains(b).move_to_element_with_offset(
        canvas, round(x - w / 2), round(y - h / 2)
    ).perform()
    natural = _thumb_natural_size(b)
    assert natural is not None and natural[1] == 96 and natural[0] < 20, natural
    shot = Image.open(
        io.BytesIO(b.find_element(By.CSS_SELECTOR, "#tip img.thumb").screenshot_as_png)
    )
    px = np.asarray(shot.convert("RGB")).astype(int)
    red = (px[..., 0] > 200) & (px[..., 1] < 80) & (px[..., 2] < 80)
    cols, rows = np.flatnonzero(red.any(axis=0)), np.flatnonzero(red.any(axis=1))
    drawn = (cols[-1] - cols[0] + 1) / (rows[-1] - rows[0] + 1)
    assert abs(drawn - natural[0] / natural[1]) < 0.05, (drawn, natural, shot.size)
