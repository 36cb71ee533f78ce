"""A manual check, not part of the test suite: datapool's Label Studio tasks with
`--pre-annotate`, opened in a real Label Studio in headless chromium, one screenshot per task,
for a person to look at and for the checks below.

    python3 -m venv /tmp/ls-venv && /tmp/ls-venv/bin/pip install label-studio==1.23.2
    PYTHONPATH=python /work/venv/bin/python tools/check_label_studio.py \
        /tmp/ls-venv/bin/label-studio /tmp/lscheck [--s3] [--spoil] [--keep]

It makes a source of real media (JPEGs shown 240x160 stored with each EXIF orientation 1-8, a
PNG, an H.264 clip with a 90-degree display rotation, names with spaces, `,#%?+&'`, non-ASCII
letters and a sub-folder), each picture as shown holding a red, a green and a blue rectangle
that `.lightly/predictions` names (categories "red", "green", "blue"); exports it with `--tasks
label-studio --url-prefix /data/local-files/?d=export/ --pre-annotate od`, and a crop selection
of it (`run --crops od --export`); starts Label Studio with local files serving, and for each
export creates a project with the printed labelling config and the Local files storage the
export names, imports the tasks through the API, and opens each task's labelling page in headless
chromium. WORK/shots/PROJECT-{export,crops,s3}/NN-NAME.png is the page; NN-NAME-regions.png
the picture as drawn with the pixels Label Studio's regions change in magenta, beside the
exported file as Pillow shows it (EXIF orientation applied). A task is reported where the
picture drawn is not Pillow's, where a rectangle's edges lack a region outline or region pixels
lie off the rectangles, or where a crop's middle is not its box's colour. `--spoil` imports the EXIF-6
task's boxes transposed (as an export that ignored the orientation would): that task must be
reported. `--s3` also exports to `s3://lsb/exp ort` on a moto server (without the name with a
`?`, which an s3:// export refuses) and checks it through an S3 source storage of that
endpoint, presigned URLs and not. Exits 1 if any task is reported.

Needs label-studio (its own venv: not a datapool dependency), selenium, requests, Debian's
chromium and chromedriver.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import datapool
from datapool.media import write_video
from datapool.naming import frame_name

TASK = "od"
BG = (60, 60, 60)
COLOURS = {"red": (230, 30, 30), "green": (30, 200, 30), "blue": (40, 60, 230)}
W, H = 240, 160  # the pictures as shown
RECTS = {"red": (20, 40, 60, 40), "green": (150, 100, 50, 40), "blue": (180, 10, 40, 60)}
USER, PASSWORD = "check@example.com", "check-password-1"
# names a URL must encode, one per orientation; "sub dir/" a folder
NAMES = {
    1: "o1 plain.jpg",
    2: "o2 a,b.jpg",
    3: "o3 #hash.jpg",
    4: "o4 100%.jpg",
    5: "o5 what?.jpg",
    6: "sub dir/o6 ünï.jpg",
    7: "o7 +&'q.jpg",
    8: "o8 日本.jpg",
}
# Pillow's exif_transpose method per orientation, and its inverse (stored from shown)
UNDO = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
        6: "ROTATE_90", 7: "TRANSVERSE", 8: "ROTATE_270"}  # fmt: skip


def shown_picture(
    label: str, rects: dict[str, tuple[int, ...]] = RECTS, size: tuple[int, int] = (W, H)
) -> np.ndarray:
    """A picture `size` as shown: grey, "TOP label" at its top left, "bottom-left" at its
    bottom left, each of `rects` [x, y, w, h] filled with its colour."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", size, BG)
    d = ImageDraw.Draw(img)
    for name, (x, y, w, h) in rects.items():
        d.rectangle([x, y, x + w - 1, y + h - 1], fill=COLOURS[name])
    d.text((4, 2), "TOP " + label, fill=(255, 255, 255))
    d.text((4, size[1] - 14), "bottom-left", fill=(255, 255, 0))
    return np.asarray(img)


def predictions(src: Path, key: str, boxes: dict[str, tuple[int, ...]]) -> None:
    cats = list(COLOURS)
    doc = {
        "file_name": key,
        "predictions": [
            {"category_id": cats.index(c), "bbox": list(b), "score": 0.9} for c, b in boxes.items()
        ],
    }
    path = src / ".lightly" / "predictions" / TASK / (key.rsplit(".", 1)[0] + ".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def make_source(src: Path) -> None:
    from PIL import Image, ImageOps

    d = src / ".lightly" / "predictions"
    (d / TASK).mkdir(parents=True, exist_ok=True)
    (d / "tasks.json").write_text(json.dumps([TASK]))
    schema = {
        "task_type": "object-detection",
        "categories": [{"id": i, "name": c} for i, c in enumerate(COLOURS)],
    }
    (d / TASK / "schema.json").write_text(json.dumps(schema))
    for o, key in NAMES.items():
        shown = Image.fromarray(shown_picture(f"EXIF {o}"))
        stored = shown if o == 1 else shown.transpose(getattr(Image.Transpose, UNDO[o]))
        exif = Image.Exif()
        exif[0x0112] = o
        (src / key).parent.mkdir(parents=True, exist_ok=True)
        stored.save(src / key, quality=95, exif=exif.tobytes())
        with Image.open(src / key) as im:  # Pillow shows it as drawn
            back = np.asarray(ImageOps.exif_transpose(im).convert("RGB")).astype(int)
        assert np.abs(back - np.asarray(shown).astype(int)).mean() < 3, o
        predictions(src, key, RECTS)
    Image.fromarray(shown_picture("PNG")).save(src / "png ü %20.png")
    predictions(src, "png ü %20.png", RECTS)
    # A clip shown 160x240 (stored 240x160 with a 90-degree display rotation), a red box moving
    frames = []
    for t in range(3):
        box = {"red": (10, 150 + 20 * t, 40, 20)}
        shown = shown_picture(f"frame {t}", box, (H, W))
        frames.append(np.ascontiguousarray(np.rot90(shown, -1)))  # stored: turned back
        predictions(src, frame_name("clip #1.mp4", t, 3), box)
    write_video(src / "clip #1.mp4", frames, fps=10, rotation=90, crf=0)


def start_label_studio(ls: str, work: Path, root: Path, port: int) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED="true",
        LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=str(root),
        LABEL_STUDIO_BASE_DATA_DIR=str(work / "ls-data"),
        LATEST_VERSION_CHECK="false",
        COLLECT_ANALYTICS="false",
        SENTRY_DSN="",
        FRONTEND_SENTRY_DSN="",
    )
    log = open(work / "label-studio.log", "wb")
    proc = subprocess.Popen(
        [ls, "start", "--no-browser", "--port", str(port), "--username", USER,
         "--password", PASSWORD, "--data-dir", str(work / "ls-data")],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    import requests

    for _ in range(240):
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok:
                return proc
        except requests.RequestException:
            pass
        if proc.poll() is not None:
            sys.exit(f"label-studio exited; see {work / 'label-studio.log'}")
        time.sleep(1)
    proc.terminate()
    sys.exit("label-studio did not answer /health in 4 minutes")


def login(base: str) -> Any:
    import requests

    s = requests.Session()
    s.get(f"{base}/user/login/")
    r = s.post(
        f"{base}/user/login/",
        data={"email": USER, "password": PASSWORD, "csrfmiddlewaretoken": s.cookies["csrftoken"]},
        headers={"Referer": f"{base}/user/login/"},
    )
    r.raise_for_status()
    s.headers["X-CSRFToken"] = s.cookies["csrftoken"]
    s.headers["Referer"] = base
    return s


def browser_login(b: Any, base: str) -> None:
    from selenium.webdriver.common.by import By

    b.get(f"{base}/user/login/")
    b.find_element(By.NAME, "email").send_keys(USER)
    b.find_element(By.NAME, "password").send_keys(PASSWORD)
    b.find_element(By.NAME, "password").submit()
    for _ in range(40):
        time.sleep(0.5)
        if "/user/login" not in b.current_url:
            return
    sys.exit(f"could not log in to Label Studio in the browser: {b.current_url}")


def api(s: Any, method: str, url: str, **kw: Any) -> Any:
    r = s.request(method, url, **kw)
    if not r.ok:
        sys.exit(f"{method} {url}: {r.status_code} {r.text[:500]}")
    return r.json() if r.content else None


def browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--window-size=1600,1100", "--no-first-run", "--force-device-scale-factor=1"):  # fmt: skip
        opts.add_argument(flag)
    return webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))


# the labelling page's picture (Label Studio shows the task's image through a blob: URL) and
# the regions the annotation made from the prediction holds, in percent
PAGE_JS = """
const im = [...document.querySelectorAll('img')].filter(i => i.src.startsWith('blob:')
  && i.complete && i.naturalWidth > 0);
const a = window.Htx && window.Htx.annotationStore && window.Htx.annotationStore.selected;
return {img: im.map(i => { const r = i.getBoundingClientRect();
          return {nw: i.naturalWidth, nh: i.naturalHeight, left: r.left, top: r.top,
                  width: r.width, height: r.height}; }),
        regions: a ? a.regions.map(r => ({label: r.labelName || (r.labeling &&
          r.labeling.selectedLabels.map(l => l.value)[0]), x: r.x, y: r.y, width: r.width,
          height: r.height})) : null};
"""
HIDE_JS = "window.Htx.annotationStore.selected.regionStore.toggleVisibility()"


def shoot(b: Any, url: str, n: int, shot: Path) -> tuple[dict[str, Any], Any, Any]:
    """Open `url`, wait for its picture and `n` regions; screenshot it (`shot`), hide the regions,
    screenshot again. (The page's facts, the two screenshots as RGB arrays.)"""
    from PIL import Image

    b.get(url)
    page: dict[str, Any] = {}
    for _ in range(60):
        time.sleep(0.5)
        page = b.execute_script(PAGE_JS)
        if page["img"] and page["regions"] is not None and len(page["regions"]) == n:
            break
    time.sleep(1.5)  # the regions drawn on the canvas over the picture
    page = b.execute_script(PAGE_JS)
    b.save_screenshot(str(shot))
    with Image.open(shot) as im:
        shown = np.asarray(im.convert("RGB"))
    b.execute_script(HIDE_JS)
    time.sleep(1.0)
    b.save_screenshot(str(shot.with_name("hidden.png")))
    with Image.open(shot.with_name("hidden.png")) as im:
        hidden = np.asarray(im.convert("RGB"))
    return page, shown, hidden


def check(
    page: dict[str, Any], shown: Any, hidden: Any, exported: Path, task: dict[str, Any], out: Path
) -> list[str]:
    """What is wrong with one task's page (empty: nothing): the picture as shown against the
    exported file as Pillow shows it; each region's strokes (the pixels the regions change)
    against the rectangle of its colour found in the screenshot without them. Saves `out`: the
    picture part of the screenshot, the region pixels in magenta, beside Pillow's picture."""
    from PIL import Image, ImageOps

    if not page["img"]:
        return ["no picture on the page"]
    i = max(page["img"], key=lambda x: x["width"] * x["height"])
    with Image.open(exported) as e:
        pil = ImageOps.exif_transpose(e).convert("RGB")

    # Where the picture is drawn: about the <img> element's box, which can be some pixels off
    # and larger than the picture drawn (beside the zoom toolbar): the size within 12% under it
    # and the place within 40 px of it that fit Pillow's picture best (coarse, then fine)
    def fit(scales: Any, shifts: Any, at: tuple[int, int]) -> tuple[float, float, int, int]:
        best = (1e9, 1.0, 0, 0)
        for sc in scales:
            w, h = round(i["width"] * sc), round(i["height"] * sc)
            grid = np.asarray(pil.resize((w, h)))[::6, ::6].astype(int)
            for dy in shifts:
                for dx in shifts:
                    y, x = at[1] + dy, at[0] + dx
                    if y < 0 or x < 0 or y + h > hidden.shape[0] or x + w > hidden.shape[1]:
                        continue
                    d = np.abs(hidden[y : y + h : 6, x : x + w : 6].astype(int) - grid).mean()
                    best = min(best, (d, sc, x, y))
        return best

    _, sc, x0, y0 = fit(np.arange(0.88, 1.001, 0.02), range(-40, 41, 4),
                        (round(i["left"]), round(i["top"])))  # fmt: skip
    _, sc, x0, y0 = fit(np.arange(sc - 0.02, sc + 0.021, 0.004), range(-4, 5), (x0, y0))
    w, h = round(i["width"] * sc), round(i["height"] * sc)
    want = np.asarray(pil.resize((w, h))).astype(int)
    x1, y1 = x0 + w, y0 + h
    bare = hidden[y0:y1, x0:x1].astype(int)
    strokes = np.abs(shown[y0:y1, x0:x1].astype(int) - bare).sum(axis=2) > 40
    wrong = []
    if (i["nw"], i["nh"]) != pil.size:
        wrong.append(f"the browser's picture is {i['nw']}x{i['nh']}, Pillow's {pil.size}")
    diff = np.abs(bare - want).mean()
    if diff > 12:
        wrong.append(f"the picture shown differs from Pillow's by {diff:.1f} a pixel")
    sx, sy = (x1 - x0) / pil.size[0], (y1 - y0) / pil.size[1]
    preds = task["predictions"][0]["result"] if task.get("predictions") else []
    if len(page["regions"] or []) != len(preds):
        wrong.append(f"{len(page['regions'] or [])} regions on the page, {len(preds)} predicted")
    covered = np.zeros_like(strokes)
    for res in preds:
        label = res["value"]["rectanglelabels"][0]
        near = np.abs(bare - np.array(COLOURS[label])).sum(axis=2) < 90
        ys, xs = np.nonzero(near)
        if not len(xs):
            wrong.append(f"no {label} rectangle in the picture shown")
            continue
        bx0, by0, bx1, by1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        # (the region's fill, the label's colour a little opaque, changes the inside too)
        covered[max(by0 - 3, 0) : by1 + 3, max(bx0 - 3, 0) : bx1 + 3] = True
        # each side of the rectangle: most of its length has region pixels within 3 px of it
        sides = {
            "left": strokes[by0:by1, max(bx0 - 3, 0) : bx0 + 3].any(axis=1),
            "right": strokes[by0:by1, bx1 - 3 : bx1 + 3].any(axis=1),
            "top": strokes[max(by0 - 3, 0) : by0 + 3, bx0:bx1].any(axis=0),
            "bottom": strokes[by1 - 3 : by1 + 3, bx0:bx1].any(axis=0),
        }
        for side, hit in sides.items():
            if hit.mean() < 0.8:
                wrong.append(f"{label}: the {side} edge has a region stroke on {hit.mean():.0%}")
        got = [r for r in page["regions"] or [] if r["label"] == label]
        v = res["value"]
        if got:
            r = got[0]
            cx = (r["x"] + r["width"] / 2) / 100 * pil.size[0] * sx
            cy = (r["y"] + r["height"] / 2) / 100 * pil.size[1] * sy
            if not near[int(cy), int(cx)]:
                wrong.append(f"{label}: the region's centre is not on the {label} rectangle")
        wrong += [] if got else [f"no {label} region on the page ({v})"]
    stray = strokes & ~covered
    if stray.sum() > 20:
        ys, xs = np.nonzero(stray)
        wrong.append(f"{stray.sum()} region pixels off the rectangles, e.g. at ({xs[0]}, {ys[0]})")
    pic = bare.copy()
    pic[strokes] = (255, 0, 255)
    side = Image.new("RGB", ((x1 - x0) * 2 + 10, y1 - y0), (255, 255, 255))
    side.paste(Image.fromarray(pic.astype(np.uint8)), (0, 0))
    side.paste(Image.fromarray(want.astype(np.uint8)), (x1 - x0 + 10, 0))
    side.save(out)
    return wrong


S3_ENDPOINT = "http://127.0.0.1:5055"


def s3_export(work: Path, mirror: Path) -> Any:
    """Export a pool of the source less its name with a '?' into s3://lsb/exp ort on a moto
    server (returned, running), and copy the export to `mirror` for the checks. Label Studio
    is told to reach 127.0.0.1 (SSRF_PROTECTION_ENABLED=false), which it refuses by default."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=5055, verbose=False)
    server.start()
    os.environ.update(
        SSRF_PROTECTION_ENABLED="false",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    s3 = boto3.client("s3", endpoint_url=S3_ENDPOINT)
    s3.create_bucket(Bucket="lsb")
    shutil.copytree(work / "src", work / "src-s3")
    (work / "src-s3" / NAMES[5]).unlink()
    (work / "src-s3" / ".lightly" / "predictions" / TASK / "o5 what?.json").unlink()
    datapool.run(work / "src-s3", work / "pool-s3", n_samples=100, progress=False)
    subprocess.run(
        [sys.executable, "-m", "datapool", "export", str(work / "pool-s3"), "s3://lsb/exp ort",
         "--tasks", "label-studio", "--pre-annotate", TASK, "--s3-endpoint-url", S3_ENDPOINT],
        check=True,
    )  # fmt: skip
    for o in s3.list_objects_v2(Bucket="lsb", Prefix="exp ort/")["Contents"]:
        dest = mirror / o["Key"][len("exp ort/") :]
        dest.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file("lsb", o["Key"], str(dest))
    return server


def check_project(
    s: Any,
    b: Any,
    base: str,
    title: str,
    config: str,
    folder: Path,
    spoil: bool = False,
    storage: tuple[str, dict[str, Any]] | None = None,
) -> tuple[int, int]:
    """Import the tasks of the export in `folder` into a new project, through a Local files
    storage of `folder` as the export says (or `storage`: its kind and settings), and check
    each task's page. (tasks, failed)"""
    project = api(s, "POST", f"{base}/api/projects/", json={
        "title": title, "label_config": config,
        "show_collab_predictions": True, "model_version": TASK,
    })  # fmt: skip
    pid = project["id"]
    if storage is None:
        storage = ("localfiles", {"path": str(folder), "title": folder.name})
    api(s, "POST", f"{base}/api/storages/{storage[0]}/",
        json={"project": pid, "use_blob_urls": False, **storage[1]})  # fmt: skip
    tasks = json.loads((folder / "label_studio_tasks.json").read_text())
    for t in tasks if spoil else []:
        if "o6" in t["data"]["sample"]:
            for r in t["predictions"][0]["result"]:
                v = r["value"]
                v["x"], v["y"], v["width"], v["height"] = v["y"], v["x"], v["height"], v["width"]
    print(api(s, "POST", f"{base}/api/projects/{pid}/import", json=tasks))
    got = api(s, "GET", f"{base}/api/tasks/", params={"project": pid, "page_size": 100})
    listed = got["tasks"] if isinstance(got, dict) else got
    shots = folder.parent.parent / "shots" / f"{pid}-{folder.name}"
    shots.mkdir(parents=True)
    failed = 0
    by_name = {t["data"]["sample"]: t for t in tasks}  # (the API lists no predictions)
    for n, t in enumerate(sorted(listed, key=lambda t: t["id"])):
        name = t["data"]["sample"]
        t = {**by_name[name], "id": t["id"]}
        safe = "".join(ch if ch.isalnum() else "_" for ch in name)
        shot = shots / f"{n:02d}-{safe}.png"
        url = f"{base}/projects/{pid}/data?tab=&task={t['id']}"
        n_pred = len(t["predictions"][0]["result"]) if t.get("predictions") else 0
        page, shown, hidden = shoot(b, url, n_pred, shot)
        print(f"{folder.name}/{shot.name}: {name!r} at {t['data']['image']} "
              f"({requests_status(s, base + t['data']['image'])})")  # fmt: skip
        for i in page["img"]:
            print(
                f"    picture {i['nw']}x{i['nh']}, shown {i['width']:.0f}x{i['height']:.0f} "
                f"at ({i['left']:.0f}, {i['top']:.0f})"
            )
        for r in page["regions"] or []:
            print(f"    region {r['label']}: x {r['x']:.2f}% y {r['y']:.2f}% "
                  f"w {r['width']:.2f}% h {r['height']:.2f}%")  # fmt: skip
        wrong = check(page, shown, hidden, folder / name, t,
                      shot.with_name(shot.stem + "-regions.png"))  # fmt: skip
        if "crop_of" in t["data"]:
            # a crop of box K of its image's predictions: the colour of that box at its middle
            k = int(name.rsplit("-crop-", 1)[1].split(".")[0])
            want = "red" if name.startswith("clip") else list(RECTS)[k]
            i = max(page["img"], key=lambda x: x["width"] * x["height"])
            mid = hidden[round(i["top"] + i["height"] / 2), round(i["left"] + i["width"] / 2)]
            if np.abs(mid.astype(int) - np.array(COLOURS[want])).sum() > 90:
                wrong.append(f"the crop's middle is {tuple(mid)}, not {want}")
        failed += bool(wrong)
        print("    " + ("; ".join(wrong) if wrong else "OK: upright, each box on its rectangle"))
    print(f"{title}: {len(listed) - failed} of {len(listed)} tasks OK; screenshots in {shots}")
    return len(listed), failed


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("label_studio", help="the label-studio command (a throwaway venv's)")
    ap.add_argument("work", type=Path, help="a folder for it all (emptied first)")
    ap.add_argument("--port", type=int, default=8089)
    ap.add_argument(
        "--spoil",
        action="store_true",
        help="a control: import EXIF 6's boxes "
        "transposed (as if the export ignored its orientation); it must be reported",
    )
    ap.add_argument(
        "--s3",
        action="store_true",
        help="also export to a moto S3 server (s3://lsb/exp ort, without the name with a '?', "
        "which such an export refuses) and check it through an S3 storage, presigned and not",
    )
    ap.add_argument("--keep", action="store_true", help="keep Label Studio up until Enter")
    args = ap.parse_args()
    ls, work, port = args.label_studio, args.work.resolve(), args.port
    if work.exists():
        shutil.rmtree(work)
    src, root = work / "src", work / "root"
    make_source(src)
    dp = [sys.executable, "-m", "datapool"]
    datapool.run(src, work / "pool", n_samples=100, progress=False)
    p = subprocess.run(
        [*dp, "export", str(work / "pool"), str(root / "export"), "--tasks", "label-studio",
         "--url-prefix", "/data/local-files/?d=export/", "--pre-annotate", TASK, "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    print(p.stderr)
    report = json.loads(p.stdout)
    config = report["label_config"]
    print(config)
    print(report.get("label_studio_serving"))
    # Crop selection: the crops' PNGs (no predictions: --pre-annotate refuses crops)
    p = subprocess.run(
        [*dp, "run", str(src), "--pool", str(work / "pool-crops"), "--crops", TASK,
         "--n-samples", "100", "--export", str(root / "crops"), "--tasks", "label-studio",
         "--url-prefix", "/data/local-files/?d=crops/", "-q"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    print(p.stderr)

    server = s3_export(work, root / "s3") if args.s3 else None
    proc = start_label_studio(ls, work, root, port)
    b = None
    results = []
    try:
        base = f"http://127.0.0.1:{port}"
        s = login(base)
        b = browser()
        browser_login(b, base)
        results.append(check_project(s, b, base, "datapool export", config, root / "export",
                                     args.spoil))  # fmt: skip
        results.append(check_project(s, b, base, "datapool crops", config, root / "crops"))
        for presign in (True, False) if server else ():
            results.append(check_project(
                s, b, base, f"datapool s3 presign {presign}", config, root / "s3",
                storage=("s3", {"bucket": "lsb", "prefix": "exp ort", "s3_endpoint": S3_ENDPOINT,
                                "aws_access_key_id": "testing", "aws_secret_access_key": "testing",
                                "region_name": "us-east-1", "presign": presign}),
            ))  # fmt: skip
        if args.keep:
            input("Label Studio is up; press Enter to stop it")
    finally:
        if b is not None:
            b.quit()
        proc.terminate()
        proc.wait(30)
        if server is not None:
            server.stop()
    n, failed = sum(r[0] for r in results), sum(r[1] for r in results)
    print(f"{n - failed} of {n} tasks OK")
    sys.exit(1 if failed else 0)


def requests_status(s: Any, url: str) -> str:
    if "://" in url:
        return "resolved by the project's storage"
    r = s.get(url)
    return f"HTTP {r.status_code}, {len(r.content)} bytes"


if __name__ == "__main__":
    main()
