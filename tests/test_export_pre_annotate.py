"""`datapool export --tasks label-studio --pre-annotate TASK`: each Label Studio task carries the
predictions of TASK (Lightly's `.lightly/predictions`) as a Label Studio prediction, its boxes in
percent of the exported picture as shown. Each box is mapped back from its percent to the pixels
of the file the export wrote (decoded as a browser shows it: EXIF orientation applied) and must
cover the rectangle drawn there."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import datapool
from datapool.errors import ConfigError, SourceError
from datapool.export_tasks import TASK_FILES
from datapool.media import write_video
from datapool.naming import frame_name
from datapool.runner.exported import export

from .conftest import run_cli
from .test_crops import BG, TASK, _boxes, _task

LS = TASK_FILES["label-studio"]
RED, GREEN = (255, 0, 0), (0, 255, 0)
PREFIX = "https://h/x/"


def _shown(path: Path) -> np.ndarray:
    """The exported file's pixels as a browser shows them (EXIF orientation applied)."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def _phone_jpeg(root: Path) -> None:
    """A JPEG stored landscape (160x120) with EXIF orientation 6: shown portrait, 120 wide and
    160 high, with a red 30x50 rectangle at (10, 100) and a green 40x20 one at (70, 10) of the
    picture as shown, which its predictions name."""
    from PIL import Image

    shown = np.zeros((160, 120, 3), np.uint8)
    shown[:] = BG
    shown[100:150, 10:40] = RED
    shown[10:30, 70:110] = GREEN
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = Image.fromarray(shown).transpose(Image.Transpose.ROTATE_90)
    stored.save(root / "phone.jpg", quality=95, exif=exif.tobytes())
    _boxes(root, "phone.jpg", [[10, 100, 30, 50], [70, 10, 40, 20]])


def _phone_clip(root: Path) -> list[list[int]]:
    """A 4-frame H.264 clip stored 96x64 with a 90-degree display rotation (shown 64 wide, 96
    high): in frame t a red 20x16 rectangle at (8 + 8t, 30) of the picture as shown; predictions
    files by Lightly's frame names for frames 0-2 (frame 1's with a second box wholly outside
    the picture), none for frame 3."""
    frames, boxes = [], []
    for t in range(4):
        shown = np.zeros((96, 64, 3), np.uint8)
        shown[:] = BG
        shown[30:46, 8 + 8 * t : 28 + 8 * t] = RED
        frames.append(np.ascontiguousarray(np.rot90(shown, -1)))  # stored: turned back
        boxes.append([8 + 8 * t, 30, 20, 16])
    write_video(root / "cam.mp4", frames, fps=10, rotation=90, crf=0)
    for t in range(3):
        extra = [[300, 300, 10, 10]] if t == 1 else []
        _boxes(root, frame_name("cam.mp4", t, 4), [boxes[t], *extra])
    return boxes


def _back_to_pixels(result: dict, shown: np.ndarray) -> tuple[int, int, int, int]:
    """A rectanglelabels result's box in pixels of `shown`: x0, y0, x1, y1."""
    v = result["value"]
    h, w = shown.shape[:2]
    assert (result["original_width"], result["original_height"]) == (w, h)
    x0, y0 = v["x"] * w / 100, v["y"] * h / 100
    x1, y1 = x0 + v["width"] * w / 100, y0 + v["height"] * h / 100
    got = tuple(round(c) for c in (x0, y0, x1, y1))
    assert np.allclose((x0, y0, x1, y1), got, atol=1e-6)
    return got  # type: ignore[return-value]


def _covers(shown: np.ndarray, box: tuple[int, int, int, int], colour) -> bool:
    x0, y0, x1, y1 = box
    inside = shown[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2].astype(int)
    ring = shown[max(y0 - 3, 0) : y0 - 1, x0:x1].astype(int)  # just above: not the colour
    return np.abs(inside - colour).mean() < 20 and ring.size > 0 and np.abs(ring - BG).mean() < 20


@pytest.fixture
def pool(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    _task(src)
    _phone_jpeg(src)
    _phone_clip(src)
    datapool.run(src, tmp_path / "pool", n_samples=10, progress=False)
    return tmp_path / "pool"


def test_boxes_map_back_to_the_pixels_of_the_exported_pictures(pool, tmp_path):
    out = tmp_path / "out"
    p = run_cli(
        "export", pool, out, "--tasks", "label-studio", "--url-prefix", PREFIX,
        "--pre-annotate", TASK, check=True,
    )  # fmt: skip
    # The labelling config whose tags the results name, printed to paste
    assert '<RectangleLabels name="label" toName="image">' in p.stdout
    assert '<Image name="image" value="$image"/>' in p.stdout
    assert '<Label value="thing"/>' in p.stdout
    check_phone_tasks(out, p.stderr)


def check_phone_tasks(out: Path, stderr: str) -> dict[str, dict]:
    """The tasks of an export of `_phone_jpeg` and `_phone_clip` to `out`: each box mapped back
    to the pixels of the file written; the warnings (`stderr`) for the frame without predictions
    and the box outside. The tasks, by sample name."""
    tasks = {t["data"]["sample"]: t for t in json.loads((out / LS).read_text())}
    assert sorted(tasks) == ["cam-0-mp4.png", "cam-1-mp4.png", "cam-2-mp4.png", "cam-3-mp4.png",
                             "phone.jpg"]  # fmt: skip

    # The phone JPEG, shown 120x160 (its bytes as they are, EXIF tag and all)
    shown = _shown(out / "phone.jpg")
    assert shown.shape[:2] == (160, 120)
    (pred,) = tasks["phone.jpg"]["predictions"]
    assert pred["model_version"] == TASK and pred["score"] == pytest.approx(0.9)
    red, green = pred["result"]
    for r in (red, green):
        assert (r["from_name"], r["to_name"], r["type"]) == ("label", "image", "rectanglelabels")
        assert r["value"]["rectanglelabels"] == ["thing"] and r["value"]["rotation"] == 0
        assert r["score"] == 0.9
    assert _back_to_pixels(red, shown) == (10, 100, 40, 150)
    assert _back_to_pixels(green, shown) == (70, 10, 110, 30)
    assert _covers(shown, (10, 100, 40, 150), RED) and _covers(shown, (70, 10, 110, 30), GREEN)

    # The frames' PNGs, turned as a player shows them (64x96); frame 3 has no predictions file
    for t in range(3):
        name = f"cam-{t}-mp4.png"
        shown = _shown(out / name)
        assert shown.shape[:2] == (96, 64)
        (pred,) = tasks[name]["predictions"]
        (box,) = pred["result"]  # frame 1's box outside the picture is left out
        want = (8 + 8 * t, 30, 28 + 8 * t, 46)
        assert _back_to_pixels(box, shown) == want
        assert _covers(shown, want, RED), name
    assert "predictions" not in tasks["cam-3-mp4.png"]
    assert "1 of 5 tasks without predictions (first: cam-3-mp4.png, no predictions file" in stderr
    assert "1 box wholly outside the picture as shown (first in cam-1-mp4.png)" in stderr
    return tasks


def test_a_classification_task_gives_choices(pool, tmp_path):
    src = tmp_path / "src"
    d = src / ".lightly" / "predictions"
    (d / "tasks.json").write_text(json.dumps([TASK, "weather"]))
    (d / "weather").mkdir()
    cats = [{"id": 3, "name": "sunny"}, {"id": 7, "name": "rain & <fog>"}]
    schema = {"task_type": "classification", "categories": cats}
    (d / "weather" / "schema.json").write_text(json.dumps(schema))
    doc = {
        "file_name": "phone.jpg",
        "predictions": [{"category_id": 7, "probabilities": [0.2, 0.8]}],
    }
    (d / "weather" / "phone.json").write_text(json.dumps(doc))
    r = export(pool, str(tmp_path / "out"), tasks=["label-studio"], url_prefix=PREFIX,
               pre_annotate="weather")  # fmt: skip
    tasks = {t["data"]["sample"]: t for t in json.loads((tmp_path / "out" / LS).read_text())}
    (pred,) = tasks["phone.jpg"]["predictions"]
    assert pred["result"] == [
        {"from_name": "choice", "to_name": "image", "type": "choices",
         "value": {"choices": ["rain & <fog>"]}, "score": 0.8}
    ]  # fmt: skip
    assert pred["score"] == 0.8
    assert r.label_config is not None
    assert '<Choices name="choice" toName="image">' in r.label_config
    assert '<Choice value="rain &amp; &lt;fog&gt;"/>' in r.label_config
    assert sum("predictions" in t for t in tasks.values()) == 1


def test_predictions_from_another_folder_and_the_users_mistakes(pool, tmp_path):
    src, out = tmp_path / "src", str(tmp_path / "out")
    moved = tmp_path / "preds"
    (src / ".lightly" / "predictions").rename(moved)
    kw = {"tasks": ["label-studio"], "url_prefix": PREFIX}
    with pytest.raises(SourceError, match=r"tasks.json is missing .*--predictions DIR"):
        export(pool, out, pre_annotate=TASK, **kw)
    r = export(pool, out, pre_annotate=TASK, predictions_dir=str(moved), **kw)
    tasks = json.loads((tmp_path / "out" / LS).read_text())
    assert sum("predictions" in t for t in tasks) == 4
    with pytest.raises(ConfigError, match=r"no tasks\.json there"):
        export(pool, out, pre_annotate=TASK, predictions_dir=str(tmp_path), **kw)
    with pytest.raises(ConfigError, match="add --tasks label-studio"):
        export(pool, out, tasks=["labelbox"], url_prefix=PREFIX, pre_annotate=TASK)
    with pytest.raises(ConfigError, match="only with --pre-annotate"):
        export(pool, out, predictions_dir=str(moved), **kw)
    with pytest.raises(SourceError, match="does not list the task 'nope'"):
        export(pool, out, pre_annotate="nope", predictions_dir=str(moved), **kw)
    # A malformed file stops the export, naming it, before anything is written
    (moved / TASK / "phone.json").write_text('{"predictions": [{"category_id": 0, "bbox": [1]}]}')
    before = (tmp_path / "out" / LS).read_bytes()
    p = run_cli("export", pool, tmp_path / "out", "--tasks", "label-studio", "--url-prefix",
                PREFIX, "--pre-annotate", TASK, "--predictions", moved)  # fmt: skip
    assert p.returncode != 0 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "phone.json: prediction 0: bbox must be [x, y, width, height]" in p.stderr
    assert (tmp_path / "out" / LS).read_bytes() == before
    assert r.label_config is not None


def test_crops_are_refused_before_anything_is_written(tmp_path):
    from .test_crops import _image

    src = tmp_path / "src"
    _task(src)
    _image(src, "a.png", [([10, 10, 40, 30], RED)])
    datapool.run(src, tmp_path / "pool", n_samples=1, crops=TASK, progress=False)
    with pytest.raises(ConfigError, match=r"object crops .* without --pre-annotate"):
        export(tmp_path / "pool", str(tmp_path / "out"), tasks=["label-studio"],
               url_prefix=PREFIX, pre_annotate=TASK)  # fmt: skip
    assert not (tmp_path / "out").exists()  # (not even made empty)


def _phone_source(src: Path) -> Path:
    _task(src)
    _phone_jpeg(src)
    _phone_clip(src)
    return src


def test_run_export_pre_annotates_as_export_does(tmp_path):
    """`run --export --tasks label-studio --pre-annotate TASK` writes the tasks `datapool export`
    writes of the same run, predictions and all, and prints the labelling config."""
    src = _phone_source(tmp_path / "src")
    pool, out = tmp_path / "pool", tmp_path / "out"
    p = run_cli(
        "run", src, "--pool", pool, "--n-samples", 10, "--export", out, "--tasks", "label-studio",
        "--url-prefix", PREFIX, "--pre-annotate", TASK, check=True,
    )  # fmt: skip
    assert '<RectangleLabels name="label" toName="image">' in p.stdout
    assert '<Label value="thing"/>' in p.stdout
    tasks = check_phone_tasks(out, p.stderr)
    r = export(pool, str(tmp_path / "again"), tasks=["label-studio"], url_prefix=PREFIX,
               pre_annotate=TASK)  # fmt: skip
    again = {t["data"]["sample"]: t for t in json.loads((tmp_path / "again" / LS).read_text())}
    assert {s: t.get("predictions") for s, t in tasks.items()} == {
        s: t.get("predictions") for s, t in again.items()
    }
    report = json.loads((pool / "runs" / "0" / "report.json").read_text())
    assert report["export"]["label_config"] == r.label_config


def test_run_export_pre_annotates_from_the_runs_predictions_folder(tmp_path):
    src = _phone_source(tmp_path / "src")
    moved = tmp_path / "preds"
    (src / ".lightly" / "predictions").rename(moved)
    r = datapool.run(src, tmp_path / "pool", n_samples=10, progress=False, predictions_dir=moved,
                     export=str(tmp_path / "out"), export_tasks=("label-studio",),
                     export_url_prefix=PREFIX, export_pre_annotate=TASK)  # fmt: skip
    assert r.export is not None and r.export.label_config is not None
    check_phone_tasks(tmp_path / "out", "\n".join(r.export.warnings))


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--pre-annotate", "nope"], "does not list the task 'nope'"),
        (["--pre-annotate", TASK, "--predictions", "PREDS"], r"PREDS.*no tasks\.json there"),
        (["--pre-annotate", TASK, "--tasks", "labelbox"], "add --tasks label-studio"),
        (["--pre-annotate", TASK, "--crops", TASK], r"object crops \(--crops od\)"),
        (["--dry-run", "--pre-annotate", "nope"], "does not list the task 'nope'"),
    ],
)
def test_run_pre_annotate_mistakes_cost_nothing(tmp_path, args, says):
    """A --pre-annotate mistake on `run` is one line, refused before the pool is made or a file
    decoded (a dry run refuses it too)."""
    src = _phone_source(tmp_path / "src")
    (tmp_path / "PREDS").mkdir()
    args = [str(tmp_path / "PREDS") if a == "PREDS" else a for a in args]
    tasks = [] if "--tasks" in args else ["--tasks", "label-studio"]
    p = run_cli("run", src, "--pool", tmp_path / "pool", "--n-samples", 10, "--export",
                tmp_path / "out", "--url-prefix", PREFIX, *tasks, *args)  # fmt: skip
    assert p.returncode != 0 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert re.search(says, p.stderr), p.stderr
    assert not (tmp_path / "pool").exists() and not (tmp_path / "out").exists()


def test_run_pre_annotate_needs_an_export(tmp_path):
    p = run_cli("run", tmp_path, "--pool", tmp_path / "pool", "--n-samples", 1,
                "--pre-annotate", TASK)  # fmt: skip
    assert p.returncode == 4, p.stderr
    assert p.stderr.strip() == (
        "datapool: error: --tasks, --url-prefix and --pre-annotate write beside an export: add "
        "--export DEST"
    )
    with pytest.raises(ConfigError, match=r"add --export DEST"):
        datapool.RunConfig(n_samples=1, export_pre_annotate=TASK)
    with pytest.raises(ConfigError, match=r"add --tasks label-studio"):
        datapool.RunConfig(n_samples=1, export="out", export_pre_annotate=TASK)
    with pytest.raises(ConfigError, match=r"must name a task"):
        datapool.RunConfig(n_samples=1, export="out", export_pre_annotate="")


def test_run_export_stops_at_a_malformed_predictions_file_and_says_how_to_redo(tmp_path):
    """A selected sample's predictions file that is not Lightly's format (no strategy read it)
    stops the export before it writes anything; the run is committed, and the message gives
    the `datapool export` line that redoes the export with the same tasks."""
    src = _phone_source(tmp_path / "src")
    bad = src / ".lightly" / "predictions" / TASK / "phone.json"
    bad.write_text('{"predictions": [{"category_id": 0, "bbox": [1]}]}')
    pool, out = tmp_path / "pool", tmp_path / "out"
    with pytest.raises(SourceError) as e:
        datapool.run(src, pool, n_samples=10, progress=False, export=str(out),
                     export_tasks=("label-studio",), export_url_prefix=PREFIX,
                     export_pre_annotate=TASK)  # fmt: skip
    assert "phone.json: prediction 0: bbox must be [x, y, width, height]" in str(e.value)
    assert str(e.value).endswith(
        f"redo its export with `datapool export {pool} {out} --run 0 --tasks label-studio "
        f"--url-prefix {PREFIX} --pre-annotate {TASK}`"
    )
    assert not out.exists() or not any(out.iterdir())


def test_a_predictions_file_of_another_image_of_the_name_is_not_taken(tmp_path):
    """`a.png` (run 0) and `a.jpg` (run 1) share `a.json`, whose file_name says it is a.png's:
    an export of run 1 alone (and run 1's own --export) gives a.jpg no prediction, as a run
    reads it. It gave a.jpg a.png's boxes: the check looked only at the exported images for
    the one the file names."""
    from tests.test_crops import _image

    src = tmp_path / "src"
    _task(src)
    _image(src, "a.png", [([10, 10, 30, 20], RED)])
    pool = tmp_path / "pool"
    datapool.run(src, pool, n_samples=1, progress=False)
    _image(src, "a.jpg", [([60, 50, 30, 20], GREEN)])
    _boxes(src, "a.png", [[10, 10, 30, 20]])  # (a.json, the file_name a.png's again)
    out = tmp_path / "out"
    r = datapool.run(
        src, pool, n_samples=1, progress=False, export=str(out),
        export_tasks=("label-studio",), export_url_prefix=PREFIX, export_pre_annotate=TASK,
    )  # fmt: skip
    assert r.export is not None and r.export.written == ["a.jpg"]
    r2 = export(pool, str(tmp_path / "o2"), run=1, tasks=["label-studio"], url_prefix=PREFIX,
                pre_annotate=TASK)  # fmt: skip
    for folder, warnings in ((out, r.export.warnings), (tmp_path / "o2", r2.warnings)):
        (task,) = json.loads((folder / LS).read_text(encoding="utf-8"))
        assert "predictions" not in task, task
        assert any("1 of 1 task without predictions" in w and "a.png" in w for w in warnings)


def test_a_predictions_file_of_an_image_the_pool_never_listed_is_not_taken(tmp_path):
    """`a.png` is left out by the run's --include, so the pool never lists it; `a.json`'s
    file_name says it is a.png's: an export of the run gives a.jpg no prediction, as the run's
    own --export does (it asks the source). It gave a.jpg a.png's boxes: the export looked only
    at the pool's files for the one the file names."""
    from tests.test_crops import _image

    src = tmp_path / "src"
    _task(src)
    _image(src, "a.png", [([10, 10, 30, 20], RED)])
    _image(src, "a.jpg", [([60, 50, 30, 20], GREEN)])
    _boxes(src, "a.png", [[10, 10, 30, 20]])  # (a.json, its file_name a.png)
    pool = tmp_path / "pool"
    datapool.run(src, pool, n_samples=1, include=("*.jpg",), progress=False)
    r = export(pool, str(tmp_path / "out"), tasks=["label-studio"], url_prefix=PREFIX,
               pre_annotate=TASK)  # fmt: skip
    assert r.written == ["a.jpg"]
    (task,) = json.loads((tmp_path / "out" / LS).read_text(encoding="utf-8"))
    assert "predictions" not in task, task
    assert any("1 of 1 task without predictions" in w and "a.png" in w for w in r.warnings)
