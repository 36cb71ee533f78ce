"""Crop selection (Lightly's object-level selection): each box of an object-detection task's
predictions is cut out of its image, embedded and selected by diversity. The media are real
PNGs (and a JPEG, an MP4) made with PyAV or Pillow, with coloured rectangles at known boxes, so
that a test can check that what was embedded and exported is the box's content."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import datapool
from datapool import Pool
from datapool.config import RunConfig, SelectionConfig
from datapool.errors import ConfigError, SourceError
from datapool.ingest import open_embedder
from datapool.ingest.decode import crop_rect, iter_frames
from datapool.media import write_image
from datapool.naming import (
    crop_key_of,
    crop_name,
    frame_name,
    source_keys,
    video_key_of,
)

from .test_cli import cli

TASK = "od"
BG = (40, 40, 40)


def _task(root: Path, kind: str = "object-detection") -> None:
    d = root / ".lightly" / "predictions"
    (d / TASK).mkdir(parents=True, exist_ok=True)
    (d / "tasks.json").write_text(json.dumps([TASK]))
    schema = {"task_type": kind, "categories": [{"id": 0, "name": "thing"}]}
    (d / TASK / "schema.json").write_text(json.dumps(schema))


def _boxes(root: Path, key: str, boxes: list[list[float]]) -> None:
    doc = {
        "file_name": key,
        "predictions": [{"category_id": 0, "bbox": b, "score": 0.9} for b in boxes],
    }
    path = root / ".lightly" / "predictions" / TASK / (key.rsplit(".", 1)[0] + ".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def _image(root: Path, key: str, rects: list[tuple[list[int], tuple[int, int, int]]]) -> None:
    """A 120x160 PNG of grey, with each rectangle [x, y, w, h] filled with its colour, and its
    predictions file naming those rectangles as boxes."""
    img = np.zeros((120, 160, 3), np.uint8)
    img[:] = BG
    for (x, y, w, h), colour in rects:
        img[y : y + h, x : x + w] = colour
    write_image(root / key, img)
    _boxes(root, key, [list(r) for r, _ in rects])


def _png(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        return next(c.decode(video=0)).to_ndarray(format="rgb24")


@pytest.fixture
def src(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    _task(root)
    _image(root, "a.png", [([20, 10, 50, 40], (255, 0, 0)), ([90, 60, 60, 50], (0, 255, 0))])
    _image(root, "sub/b.png", [([5, 5, 30, 30], (0, 0, 255)), ([100, 20, 40, 80], (255, 255, 0))])
    return root


# --- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["a.jpg", "cam/x-1-mp4.png", "a-jpg-crop-0.png", "d.v2/b.JPEG", "-x-.png"]
)
def test_crop_names_read_back_to_their_image_and_never_look_like_frames(key):
    for i in (0, 7, 123):
        name = crop_name(key, i)
        assert name.endswith(".png")
        assert crop_key_of(name) == key
        assert video_key_of(name) is None  # never taken for a video's frame
        assert source_keys([name], {key}) == [key]  # an image of the ledger
        # a frame's name as the key: with no such image, a crop of that frame of its video
        assert source_keys([name], set()) == [video_key_of(key) or key]
    for video in ("clip.mp4", "cam/x-crop-1.mp4", "y-png-crop.mov"):
        for i, n in ((0, 1), (7, 12), (42, 100)):
            assert crop_key_of(frame_name(video, i, n)) is None


# --- geometry ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("box", "padding", "want"),
    [
        ((20, 10, 50, 40), 0.0, (20, 10, 70, 50)),
        ((20, 10, 50, 40), 0.1, (15, 6, 75, 54)),  # 5 and 4 pixels on each side
        ((-10, -5, 30, 20), 0.0, (0, 0, 20, 15)),  # clipped to the image
        ((150, 110, 30, 30), 0.5, (135, 95, 160, 120)),
        ((10.4, 10.6, 5.2, 5.2), 0.0, (10, 10, 16, 16)),  # out to whole pixels
        ((200, 10, 5, 5), 0.0, "outside the image (160x120)"),
        ((-50, 10, 50, 5), 0.3, "outside the image (160x120)"),  # padding does not bring it in
        ((159.5, 10, 3, 3), 0.0, "under one pixel wide or high inside the image (160x120)"),
    ],
)
def test_crop_rect_pads_clips_and_says_why_a_box_is_left_out(box, padding, want):
    assert crop_rect(box, padding, 160, 120) == want


# --- configuration ---------------------------------------------------------------------------


def _crop_strategy(**strategy):
    return {"input": {"type": "EMBEDDINGS", "task": TASK}, "strategy": {"type": "DIVERSITY"}}


def test_lightly_crop_strategy_and_the_flag_build_the_same_run():
    sel = SelectionConfig.from_lightly({"n_samples": 3, "strategies": [_crop_strategy()]})
    a = RunConfig(n_samples=3, strategies=sel.strategies)
    b = RunConfig(n_samples=3, crops=TASK)
    assert a.crops == b.crops == TASK
    assert a.selection == b.selection
    assert a.to_json()["strategies"] == b.to_json()["strategies"]


@pytest.mark.parametrize(
    ("strategies", "match"),
    [
        (
            [_crop_strategy(), {"input": {"type": "RANDOM"}, "strategy": {"type": "WEIGHTS"}}],
            "cannot be mixed with other strategies",
        ),
        (
            [
                _crop_strategy(),
                {"input": {"type": "EMBEDDINGS"}, "strategy": {"type": "DIVERSITY"}},
            ],
            "cannot be mixed with other strategies",
        ),
        (
            [{"input": {"type": "EMBEDDINGS", "task": TASK}, "strategy": {"type": "TYPICALITY"}}],
            "DIVERSITY only",
        ),
        (
            [{"input": {"type": "EMBEDDINGS", "task": ""}, "strategy": {"type": "DIVERSITY"}}],
            "must name an object-detection task",
        ),
    ],
)
def test_crop_selection_mixed_with_image_strategies_is_refused(strategies, match):
    with pytest.raises(ConfigError, match=match):
        SelectionConfig.from_lightly({"n_samples": 3, "strategies": strategies})


@pytest.mark.parametrize("padding", [-0.1, 1.5, True, float("nan")])
def test_crop_padding_outside_0_to_1_is_refused(padding):
    with pytest.raises(ConfigError, match="crop_padding must be a fraction"):
        RunConfig(n_samples=1, crops=TASK, crop_padding=padding)


def test_crops_flag_and_another_selection_file_are_refused(tmp_path):
    f = tmp_path / "sel.json"
    f.write_text(
        json.dumps(
            {
                "n_samples": 2,
                "strategies": [{"input": {"type": "RANDOM"}, "strategy": {"type": "WEIGHTS"}}],
            }
        )
    )
    p = cli(
        "run",
        tmp_path,
        "--pool",
        tmp_path / "pool",
        "--n-samples",
        "2",
        "--crops",
        TASK,
        "--selection",
        f,
    )
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    assert "--crops" in p.stderr and "select different things" in p.stderr


# --- runs ------------------------------------------------------------------------------------


def test_the_crops_embedded_and_exported_are_the_boxes_content(src, tmp_path):
    out = tmp_path / "out"
    r = datapool.run(
        src, tmp_path / "pool", n_samples=4, crops=TASK, crop_padding=0.0, export=str(out)
    )
    names = ["a-png-crop-0.png", "a-png-crop-1.png", "sub/b-png-crop-0.png", "sub/b-png-crop-1.png"]
    assert sorted(r.selected) == names
    assert r.counts["images_without_objects"] == 0 and r.counts["boxes_left_out"] == 0
    colours = {
        "a-png-crop-0.png": ((40, 50), (255, 0, 0)),
        "a-png-crop-1.png": ((50, 60), (0, 255, 0)),
        "sub/b-png-crop-0.png": ((30, 30), (0, 0, 255)),
        "sub/b-png-crop-1.png": ((80, 40), (255, 255, 0)),
    }
    for name, (hw, colour) in colours.items():
        px = _png(out / name)
        assert px.shape[:2] == hw
        assert (px == colour).all(), name  # the box's pixels, nothing of the background
    # ... and the images that hold them, as they are, beside them; the list names the crops.
    assert (out / "a.png").read_bytes() == (src / "a.png").read_bytes()
    assert (out / "sub" / "b.png").read_bytes() == (src / "sub" / "b.png").read_bytes()
    assert sorted((out / "selected_filenames.txt").read_text().split()) == names
    # What the pool holds for each crop is the embedding of that crop, resized as any sample.
    pool = Pool.load(tmp_path / "pool")
    e = open_embedder(RunConfig(n_samples=1).model_spec)
    for name in names:
        frame = next(iter_frames(out / name, name, "image", e.size_wh))
        row = pool.embeddings[pool.filenames.index(name)]
        np.testing.assert_allclose(e.embed(frame.rgb[None])[0], row, atol=1e-5)
    samples = {s["filename"]: s["source_file"] for s in pool.samples()}
    assert samples["sub/b-png-crop-1.png"] == "sub/b.png"


def test_padding_widens_the_crop_and_is_clipped_to_the_image(tmp_path):
    root = tmp_path / "src"
    _task(root)
    # A box at the corner: padding reaches past the image on two sides.
    _image(root, "c.png", [([0, 0, 40, 20], (255, 0, 0)), ([60, 40, 40, 20], (0, 0, 255))])
    out = tmp_path / "out"
    datapool.run(
        root, tmp_path / "pool", n_samples=2, crops=TASK, crop_padding=0.25, export=str(out)
    )
    corner = _png(out / "c-png-crop-0.png")
    assert corner.shape[:2] == (25, 50)  # 0..20+5 high, 0..40+10 wide
    assert (corner[:20, :40] == (255, 0, 0)).all() and (corner[20:, :] == BG).all()
    middle = _png(out / "c-png-crop-1.png")
    assert middle.shape[:2] == (30, 60)  # 5 and 10 pixels on each side
    assert (middle[5:25, 10:50] == (0, 0, 255)).all() and (middle[:5] == BG).all()


def test_boxes_are_read_in_the_image_as_shown_exif_orientation_applied(tmp_path):
    from PIL import Image, ImageOps

    root = tmp_path / "src"
    _task(root)
    shown = np.zeros((160, 120, 3), np.uint8)  # portrait as shown
    shown[:] = BG
    shown[100:150, 10:40] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown turned a quarter clockwise
    stored = Image.fromarray(shown).transpose(Image.Transpose.ROTATE_90)
    stored.save(root / "phone.png", exif=exif.tobytes())
    assert (np.asarray(ImageOps.exif_transpose(Image.open(root / "phone.png"))) == shown).all()
    _boxes(root, "phone.png", [[10, 100, 30, 50]])
    out = tmp_path / "out"
    datapool.run(
        root, tmp_path / "pool", n_samples=1, crops=TASK, crop_padding=0.0, export=str(out)
    )
    px = _png(out / "phone-png-crop-0.png")
    assert px.shape[:2] == (50, 30)
    assert (px == (255, 0, 0)).all()


def test_bad_boxes_and_images_without_objects_are_counted_with_reasons(tmp_path):
    root = tmp_path / "src"
    _task(root)
    _image(root, "a.png", [([20, 10, 50, 40], (255, 0, 0))])
    _boxes(
        root,
        "a.png",
        [[20, 10, 50, 40], [10, 10, 0, 5], [10, 10, 5, -3], [300, 10, 5, 5], [159.5, 5, 3, 3]],
    )
    write_image(root / "none.png", np.full((40, 40, 3), 90, np.uint8))  # no predictions file
    _image(root, "empty.png", [])  # a file with no predictions
    _image(root, "out.png", [([10, 10, 10, 10], (0, 0, 255))])
    _boxes(root, "out.png", [[-30, 10, 20, 20]])  # its only box is outside it
    r = datapool.run(root, tmp_path / "pool", n_samples=10, crops=TASK)
    assert r.selected == ["a-png-crop-0.png"]
    assert r.counts["processed"] == 4 and r.counts["skipped"] == 0
    assert r.counts["images_without_objects"] == 3
    assert r.counts["boxes_left_out"] == 5
    report = json.loads((tmp_path / "pool" / "runs" / "0" / "report.json").read_text())
    left = {(b["crop"], b["reason"].split(" (")[0]) for b in report["crops"]["boxes_left_out"]}
    assert left == {
        ("a-png-crop-1.png", "empty box"),
        ("a-png-crop-2.png", "empty box"),
        ("a-png-crop-3.png", "outside the image"),
        ("a-png-crop-4.png", "under one pixel wide or high inside the image"),
        ("out-png-crop-0.png", "outside the image"),
    }
    without = {x["key"] for x in report["crops"]["images_without_objects"]}
    assert without == {"none.png", "empty.png", "out.png"}
    assert report["crops"]["picked_boxes"] == {"a-png-crop-0.png": [15, 6, 75, 54]}  # padded
    assert any("5 boxes of task 'od' were left out" in w for w in r.warnings)
    # The ledger holds every file as read: a later run does not read them again.
    again = datapool.run(root, tmp_path / "pool", n_samples=10, crops=TASK)
    assert again.run_index is None


def test_a_box_that_is_not_four_numbers_stops_the_run_naming_the_file(tmp_path):
    root = tmp_path / "src"
    _task(root)
    _image(root, "a.png", [([20, 10, 50, 40], (255, 0, 0))])
    _boxes(root, "a.png", [[20, 10, 50]])
    with pytest.raises(SourceError, match=r"od/a.json: prediction 0: bbox must be \[x, y"):
        datapool.run(root, tmp_path / "pool", n_samples=1, crops=TASK)
    assert not (tmp_path / "pool").exists()


def test_a_classification_task_is_refused(tmp_path):
    root = tmp_path / "src"
    _task(root, kind="classification")
    write_image(root / "a.png", np.zeros((40, 40, 3), np.uint8))
    p = cli("run", root, "--pool", tmp_path / "pool", "--n-samples", "1", "--crops", TASK)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert "is a classification task; crop selection cuts out the boxes" in p.stderr


def test_a_second_run_embeds_only_new_images_and_counts_the_pools_crops(src, tmp_path):
    pool = tmp_path / "pool"
    first = datapool.run(src, pool, n_samples=4, crops=TASK, crop_padding=0.0)
    assert len(first.selected) == 4
    # A new image: one object like one the pool holds (red, same size), one unlike any.
    _image(src, "c.png", [([30, 30, 50, 40], (255, 0, 0)), ([10, 70, 60, 30], (255, 0, 255))])
    second = datapool.run(src, pool, n_samples=1, crops=TASK, crop_padding=0.0)
    assert second.counts["processed"] == 1 and second.counts["frames_embedded"] == 2
    assert second.selected == ["c-png-crop-1.png"]  # the red one duplicates a pool crop
    p = Pool.load(pool)
    assert len(p) == 5
    ledger = p.ledger.set_index("key")
    assert ledger.loc["c.png", "n_samples"] == 2 and ledger.loc["c.png", "n_selected"] == 1


def test_crops_are_selected_by_exact_farthest_point_against_a_pool_of_many(tmp_path):
    """A pool of 24 crops, then 9 new ones all taken: their order and distances are the exact
    farthest-point selection (brute force here) with the pool's crops as already selected."""
    rng = np.random.default_rng(7)
    root = tmp_path / "src"
    _task(root)

    def many(key: str, n: int) -> None:
        rects = []
        for i in range(n):
            x, y = 4 + (i % 6) * 26, 4 + (i // 6) * 28
            rects.append(([x, y, 22, 24], tuple(int(v) for v in rng.integers(0, 256, 3))))
        _image(root, key, rects)

    many("m1.png", 24)
    pool = tmp_path / "pool"
    datapool.run(root, pool, n_samples=24, crops=TASK, crop_padding=0.0)
    many("m2.png", 9)
    r = datapool.run(root, pool, n_samples=9, crops=TASK, crop_padding=0.0)
    p = Pool.load(pool)
    old, new = p.embeddings[p.labels == 0], p.embeddings[p.labels == 1]
    assert len(old) == 24 and len(new) == 9
    # brute force: each pick is the candidate farthest from everything selected before it
    report = json.loads((pool / "runs" / "1" / "report.json").read_text())
    dist = np.linalg.norm(new[:, None] - old[None], axis=2).min(axis=1)
    left = list(range(9))
    for j, s in enumerate(report["selected"]):
        best = max(left, key=lambda i: dist[i])
        assert p.filenames[list(p.labels).index(1) + j] == r.selected[j]
        assert abs(dist[best] - s["min_distance"]) < 1e-4
        assert np.allclose(new[best], new[j])  # the pool stores picks in pick order
        left.remove(best)
        dist = np.minimum(dist, np.linalg.norm(new - new[best], axis=1))


def test_a_pool_of_one_kind_refuses_a_run_of_the_other(src, tmp_path):
    crops, whole = tmp_path / "crops", tmp_path / "whole"
    datapool.run(src, crops, n_samples=2, crops=TASK)
    datapool.run(src, whole, n_samples=2)
    for pool, args, want in (
        (crops, [], "holds object crops (--crops od --crop-padding 0.1); this run would add whole"),
        (crops, ["--crops", TASK, "--crop-padding", "0.2"], "object crops cut otherwise"),
        (
            whole,
            ["--crops", TASK],
            "holds whole images and video frames; this run would add object",
        ),
    ):
        p = cli("run", src, "--pool", pool, "--n-samples", "1", *args)
        assert p.returncode != 0 and "Traceback" not in p.stderr
        assert want in p.stderr
    # --process-all rebuilds the pool of the other kind.
    r = datapool.run(src, whole, n_samples=2, crops=TASK, process_all=True)
    assert all(crop_key_of(n) for n in r.selected)


def test_merge_refuses_a_crop_pool_and_a_whole_image_pool(src, tmp_path):
    # It merged them, and every later run on the merged pool was refused.
    crops, whole, other = tmp_path / "crops", tmp_path / "whole", tmp_path / "crops2"
    datapool.run(src, crops, n_samples=2, crops=TASK)
    datapool.run(src, whole, n_samples=2)
    datapool.run(src, other, n_samples=2, crops=TASK, crop_padding=0.2)
    for a, b, want in (
        (crops, whole, "holds object crops (--crops od --crop-padding 0.1) and pool B"),
        (whole, crops, "holds whole images and video frames and pool B"),
        (crops, other, "pool B (" + str(other) + ") object crops (--crops od --crop-padding 0.2)"),
    ):
        into = tmp_path / f"m-{a.name}-{b.name}"
        with pytest.raises(ConfigError, match="merge pools of the same kind") as e:
            datapool.merge(a, b, into)
        assert want in str(e.value)
        assert not into.exists() or not any(into.iterdir())
    # Two crop pools of one task and padding merge, and the merged pool grows as a crop pool.
    same = tmp_path / "crops-again"
    datapool.run(src, same, n_samples=3, crops=TASK)
    datapool.merge(crops, same, tmp_path / "merged")
    datapool.run(src, tmp_path / "merged", n_samples=1, crops=TASK, process_all=False)


COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255)]


def _clip(root: Path, key: str = "cam/clip.mp4", boxed: int = 4) -> None:
    """A 6-frame H.264 clip, 64x96: in frame t a 20x16 box of COLOURS[t] at x = 10 + 8t, y = 20;
    prediction files (by Lightly's frame names) for the first `boxed` frames, frame 2's with a
    second box outside the picture."""
    from datapool.media import write_video

    frames = []
    for t, colour in enumerate(COLOURS):
        f = np.zeros((64, 96, 3), np.uint8)
        f[:] = BG
        f[20:36, 10 + 8 * t : 30 + 8 * t] = colour
        frames.append(f)
    write_video(root / key, frames, fps=10)
    for t in range(boxed):
        boxes = [[10 + 8 * t, 20, 20, 16]] + ([[200, 10, 5, 5]] if t == 2 else [])
        _boxes(root, frame_name(key, t, 6), boxes)


def test_video_frames_with_prediction_files_give_their_objects(tmp_path):
    root = tmp_path / "src"
    _task(root)
    _clip(root)
    out = tmp_path / "out"
    r = datapool.run(
        root, tmp_path / "pool", n_samples=10, crops=TASK, crop_padding=0.0, export=str(out)
    )
    assert r.skipped == []
    assert r.counts["frames_embedded"] == 4  # frames 4 and 5 have no predictions file
    assert r.counts["frames_without_predictions"] == 2 and r.counts["boxes_left_out"] == 1
    assert r.counts["frames_without_objects"] == 0  # (no file is not a file that lists none)
    names = [f"cam/clip-{t}-mp4-png-crop-0.png" for t in range(4)]
    assert sorted(r.selected) == names
    for t, name in enumerate(names):
        px = _png(out / name).astype(int)
        assert px.shape[:2] == (16, 20)
        # H.264 smears colours a little at the edges: the middle is the box's colour
        assert np.abs(px[4:12, 4:16] - COLOURS[t]).mean() < 25, name
        frame = _png(out / f"cam/clip-{t}-mp4.png")  # the frame that holds it, beside it
        assert frame.shape[:2] == (64, 96)
    assert r.export is not None and len(r.export.images) == 4
    rows = {s["filename"]: s for s in Pool.load(tmp_path / "pool").samples()}
    assert rows[names[3]]["source_file"] == "cam/clip.mp4" and rows[names[3]]["frame"] == 3
    report = json.loads((tmp_path / "pool" / "runs" / "0" / "report.json").read_text())
    (left,) = report["crops"]["boxes_left_out"]
    assert left["crop"] == "cam/clip-2-mp4-png-crop-1.png"
    assert left["reason"].startswith("outside the image (96x64)")
    # `datapool export` cuts them again from the frames decoded again
    again = tmp_path / "again"
    p = cli("export", tmp_path / "pool", again, "--all")
    assert p.returncode == 0, p.stderr
    # (it said "and the 4 images that hold them": they are frames)
    assert "exported  4 samples to" in p.stdout
    assert "(and the 4 video frames that hold them)" in p.stdout
    for name in names:
        assert np.array_equal(_png(again / name), _png(out / name))


def test_frame_stride_and_moves_apply_to_the_frames_crops(tmp_path):
    root = tmp_path / "src"
    _task(root)
    _clip(root, boxed=6)
    pool = tmp_path / "pool"
    r = datapool.run(root, pool, n_samples=10, crops=TASK, frame_stride=2)
    assert sorted(r.selected) == [f"cam/clip-{t}-mp4-png-crop-0.png" for t in (0, 2, 4)]
    (root / "cam" / "clip.mp4").rename(root / "cam" / "moved.mp4")
    preds = root / ".lightly" / "predictions" / TASK / "cam"
    for f in preds.glob("clip-*-mp4.json"):  # its frames' boxes move with it
        f.rename(preds / f.name.replace("clip-", "moved-"))
    r = datapool.run(root, pool, n_samples=10, crops=TASK, frame_stride=2)
    assert r.counts["moved"] == 1 and "recut" not in r.counts
    names = sorted(Pool.load(pool).filenames)
    assert names == [f"cam/moved-{t}-mp4-png-crop-0.png" for t in (0, 2, 4)]


def test_an_image_named_as_a_frame_never_takes_its_crops(tmp_path):
    """`cam/clip-1-mp4.png` is the name of frame 1 of cam/clip.mp4, whose crops the pool holds:
    an image of that name coming later is skipped, rather than taken for their source."""
    root = tmp_path / "src"
    _task(root)
    _clip(root)
    pool = tmp_path / "pool"
    datapool.run(root, pool, n_samples=10, crops=TASK)
    # (its predictions file is the frame's, cam/clip-1-mp4.json, as it is)
    write_image(root / "cam" / "clip-1-mp4.png", np.full((64, 96, 3), 90, np.uint8))
    r = datapool.run(root, pool, n_samples=10, crops=TASK)
    assert [s["key"] for s in r.skipped] == ["cam/clip-1-mp4.png"]
    assert "frame 1 of cam/clip.mp4, whose object crops the pool holds" in r.skipped[0]["reason"]
    rows = {s["filename"]: s["source_file"] for s in Pool.load(pool).samples()}
    assert rows["cam/clip-1-mp4-png-crop-0.png"] == "cam/clip.mp4"


def test_cli_summary_says_how_many_images_had_no_objects(src, tmp_path):
    write_image(src / "plain.png", np.full((40, 40, 3), 90, np.uint8))
    p = cli("run", src, "--pool", tmp_path / "pool", "--n-samples", "2", "--crops", TASK)
    assert p.returncode == 0, p.stderr
    assert "embedded  4 samples (object crops; 1 image had no objects)" in p.stdout


def test_datapool_export_cuts_the_crops_again_from_the_stored_boxes(src, tmp_path):
    pool = tmp_path / "pool"
    datapool.run(src, pool, n_samples=3, crops=TASK, crop_padding=0.0)
    out = tmp_path / "out"
    p = cli("export", pool, out, "--all")
    assert p.returncode == 0, p.stderr
    assert "exported  3 samples" in p.stdout and "images that hold them" in p.stdout
    for name in Pool.load(pool).filenames:
        px = _png(out / name)
        assert len(np.unique(px.reshape(-1, 3), axis=0)) == 1  # one rectangle's colour
    # --mirror keeps the images that hold the crops.
    p = cli("export", pool, out, "--all", "--mirror")
    assert p.returncode == 0, p.stderr
    assert (out / "a.png").exists() or (out / "sub" / "b.png").exists()


def test_a_moved_image_keeps_its_crops_under_the_new_name(src, tmp_path):
    pool = tmp_path / "pool"
    datapool.run(src, pool, n_samples=4, crops=TASK)
    (src / "a.png").rename(src / "renamed.png")
    preds = src / ".lightly" / "predictions" / TASK
    (preds / "a.json").rename(preds / "renamed.json")  # its boxes move with it
    r = datapool.run(src, pool, n_samples=4, crops=TASK)
    assert r.counts["moved"] == 1 and "recut" not in r.counts
    names = set(Pool.load(pool).filenames)
    assert {"renamed-png-crop-0.png", "renamed-png-crop-1.png"} <= names
    assert not any(n.startswith("a-png") for n in names)
    assert datapool.run(src, pool, n_samples=4, crops=TASK).run_index is None


def test_a_moved_image_is_cut_from_the_predictions_under_its_new_name(src, tmp_path):
    """A moved image whose new name has other predictions (or none) is cut again in the run that
    finds the move. Before, it kept the crops of its old name's boxes under its new name."""
    pool = tmp_path / "pool"
    datapool.run(src, pool, n_samples=4, crops=TASK, crop_padding=0.0)
    (src / "a.png").rename(src / "renamed.png")
    (src / "sub" / "b.png").rename(src / "b2.png")  # no predictions file under its new name
    _boxes(src, "renamed.png", [[0, 0, 10, 10]])  # the grey corner
    r = datapool.run(src, pool, n_samples=4, crops=TASK, crop_padding=0.0)
    # each file counts once: cut again, not carried over as moved (it counted as both)
    assert r.counts["recut"] == 2 and r.counts["moved"] == 0 and r.counts["renamed"] == 0
    assert r.counts["unchanged"] == 0 and r.counts["new"] == 0 and r.counts["listed"] == 2
    assert r.counts["removed"] == 4 and r.counts["processed"] == 2
    assert any("no predictions file" in w and "b2.json" in w for w in r.warnings), r.warnings
    p = Pool.load(pool)
    assert sorted(p.filenames) == ["renamed-png-crop-0.png"]
    assert p.ledger.set_index("key").loc["renamed.png", "n_samples"] == 1
    p = cli("export", pool, tmp_path / "out", "--all")
    assert p.returncode == 0, p.stderr
    assert tuple(_png(tmp_path / "out" / "renamed-png-crop-0.png")[0, 0]) == BG
    assert datapool.run(src, pool, n_samples=4, crops=TASK, crop_padding=0.0).run_index is None


def test_an_image_named_as_a_crop_never_takes_the_crops_place(src, tmp_path):
    """`a-png-crop-0.png` is the name of a.png's first crop: an image of that name (same source)
    must not be taken for it, in the run that meets both or in a later one."""
    pool = tmp_path / "pool"
    _image(src, "a-png-crop-0.png", [([10, 10, 30, 30], (255, 0, 255))])
    r = datapool.run(src, pool, n_samples=10, crops=TASK)
    assert "a-png-crop-0.png" not in r.selected  # a.png's crop 0 is left out, with a note
    assert any("object 0 of a.png is left out" in w for w in r.warnings)
    assert "a-png-crop-0-png-crop-0.png" in r.selected  # the image's own object
    p = Pool.load(pool)
    keys = dict(zip(p.filenames, source_keys(p.filenames, set())))
    assert keys["a-png-crop-0-png-crop-0.png"] == "a-png-crop-0.png"
    assert {s["source_file"] for s in p.samples()} == {"a.png", "sub/b.png", "a-png-crop-0.png"}


def test_an_image_that_comes_after_a_crop_of_its_name_is_skipped(src, tmp_path):
    pool = tmp_path / "pool"
    datapool.run(src, pool, n_samples=10, crops=TASK)
    _image(src, "a-png-crop-1.png", [([10, 10, 30, 30], (255, 0, 255))])
    r = datapool.run(src, pool, n_samples=10, crops=TASK)
    assert [s["key"] for s in r.skipped] == ["a-png-crop-1.png"]
    assert "object 1 of a.png" in r.skipped[0]["reason"]
    samples = {s["filename"]: s["source_file"] for s in Pool.load(pool).samples()}
    assert samples["a-png-crop-1.png"] == "a.png"


def test_boxes_from_a_predictions_folder_outside_the_source(src, tmp_path):
    preds = tmp_path / "preds"
    (src / ".lightly").rename(tmp_path / "lightly")
    (tmp_path / "lightly" / "predictions").rename(preds)
    p = cli(
        "run", src, "--pool", tmp_path / "pool", "--n-samples", "4", "--crops", TASK,
        "--predictions", preds, "--json",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["counts"]["frames_embedded"] == 4 and out["counts"]["images_without_objects"] == 0


def test_the_report_page_shows_the_frame_a_crop_was_cut_from():
    from datapool.report_html import map_data

    names = ["cam/clip-07-mp4-png-crop-1.png", "a-png-crop-0.png", "clip-07-mp4-png-crop-0.png"]
    image_keys = {"a.png", "clip-07-mp4.png"}  # an image named as a frame: its crops are its own
    d = map_data(
        names,
        np.eye(3, 8, dtype=np.float32),
        np.zeros(3, np.int64),
        source_keys(names, image_keys),
        0,
        1,
    )
    frames = dict(zip(d.names, d.frames.tolist()))
    assert frames == {names[0]: 7, names[1]: -1, names[2]: -1}
    assert dict(zip(d.names, d.sources))[names[0]] == "cam/clip.mp4"


def test_thumbnails_added_later_are_the_crops_a_run_makes(tmp_path):
    """`datapool report --thumbnails` on a crop pool grown with --no-thumbnails cuts each crop
    again from its stored pixels: the thumbnails are those a run with thumbnails makes."""
    from datapool.pool.local import read_thumbnails
    from datapool.thumbnail_backfill import add_missing_thumbnails

    root = tmp_path / "src"
    _task(root)
    _image(root, "a.png", [([20, 10, 50, 40], (255, 0, 0)), ([90, 60, 60, 50], (0, 255, 0))])
    _clip(root)
    made, later = tmp_path / "made", tmp_path / "later"
    datapool.run(root, made, n_samples=5, crops=TASK)
    datapool.run(root, later, n_samples=5, crops=TASK, thumbnails=False)
    names = set(Pool.open(made).filenames)
    assert read_thumbnails(later, names) == {}
    done = add_missing_thumbnails(str(later))
    assert done.added == 5 and not done.unavailable
    assert read_thumbnails(later, names) == read_thumbnails(made, names)


def test_an_image_of_the_same_name_never_takes_another_images_boxes(tmp_path):
    """`a.png` and `a.jpg` share one predictions file, `a.json`, whose file_name says whose it
    is: a.jpg was cut with a.png's boxes, silently (crops of a.jpg's pixels at a.png's objects).
    A file_name that names no other image of the source (a bare name, a converted image) still
    gives its boxes."""
    root = tmp_path / "src"
    _task(root)
    _image(root, "a.png", [([20, 10, 50, 40], (255, 0, 0))])
    write_image(root / "a.jpg", np.full((120, 160, 3), 200, np.uint8))
    _image(root, "sub/b.png", [([5, 5, 30, 30], (0, 0, 255))])
    doc = root / ".lightly" / "predictions" / TASK / "sub" / "b.json"
    doc.write_text(doc.read_text().replace('"sub/b.png"', '"b.png"'))  # a bare name: its own
    _image(root, "c.png", [([5, 5, 30, 30], (0, 255, 0))])
    doc = root / ".lightly" / "predictions" / TASK / "c.json"
    doc.write_text(doc.read_text().replace('"c.png"', '"c.jpg"'))  # no such image: its own
    # an absolute path that ends with the image's name names it, beside another of its name
    _image(root, "d.png", [([5, 5, 30, 30], (255, 0, 255))])
    write_image(root / "d.jpg", np.full((120, 160, 3), 200, np.uint8))
    doc = root / ".lightly" / "predictions" / TASK / "d.json"
    doc.write_text(doc.read_text().replace('"d.png"', '"/data/raw/d.png"'))
    r = datapool.run(root, tmp_path / "pool", n_samples=10, crops=TASK)
    assert sorted(r.selected) == [
        "a-png-crop-0.png", "c-png-crop-0.png", "d-png-crop-0.png", "sub/b-png-crop-0.png"
    ]  # fmt: skip
    report = json.loads((tmp_path / "pool" / "runs" / "0" / "report.json").read_text())
    without = {x["key"]: x["reason"] for x in report["crops"]["images_without_objects"]}
    assert sorted(without) == ["a.jpg", "d.jpg"]
    assert "od/a.json is for a.png, its file_name" in without["a.jpg"]
    assert "od/d.json is for d.png, its file_name" in without["d.jpg"]
    assert any(
        w.startswith("2 images share their predictions file with an image of the same name")
        and "(first: a.jpg: .lightly/predictions/od/a.json is for a.png" in w
        for w in r.warnings
    )
    # The same when the other image came in an earlier run: it is still listed.
    write_image(root / "sub" / "b.jpg", np.full((120, 160, 3), 200, np.uint8))
    again = datapool.run(root, tmp_path / "pool", n_samples=10, crops=TASK)
    assert again.selected == [] and again.counts["images_without_objects"] == 1


def test_files_without_predictions_are_warned_naming_the_file_looked_for(tmp_path):
    """A misplaced predictions folder or misnamed files gave `0 samples ... N images had no
    objects` with no word of where datapool looked; now a warning names the first file looked
    for, for images and for videos (by Lightly's frame name)."""
    root = tmp_path / "src"
    _task(root)
    _image(root, "a.png", [([20, 10, 50, 40], (255, 0, 0))])
    write_image(root / "cam" / "b.png", np.full((40, 40, 3), 90, np.uint8))
    write_image(root / "c.png", np.full((40, 40, 3), 90, np.uint8))
    _boxes(root, "c.png", [])  # no objects: its file says so, no warning
    _clip(root, boxed=0)
    _clip(root, "cam/empty.mp4", boxed=0)
    for t in range(6):
        _boxes(root, frame_name("cam/empty.mp4", t, 6), [])  # files that list no box
    r = datapool.run(root, tmp_path / "pool", n_samples=10, crops=TASK)
    assert r.selected == ["a-png-crop-0.png"]
    assert r.counts["frames_without_objects"] == 6  # cam/empty.mp4's, apart from those below
    assert (
        "1 video gave no crop: none of its frames kept has a box (first: cam/empty.mp4, whose "
        "first frame kept was looked for in .lightly/predictions/od/cam/empty-0-mp4.json, by "
        "Lightly's frame name)" in "\n".join(r.warnings)
    )
    assert (
        "1 of 3 images has no predictions file for task 'od' (first: cam/b.png, looked for "
        ".lightly/predictions/od/cam/b.json): they give no crops" in "\n".join(r.warnings)
    )
    # a video none of whose frames kept has a file: one warning, of its frames without a file
    assert (
        "6 video frames this run keeps have no predictions file for task 'od', which is not a "
        "frame without objects (first: cam/clip-0-mp4.png, looked for "
        ".lightly/predictions/od/cam/clip-0-mp4.json); they give no crops, and the first run "
        "after their predictions files are written (by Lightly's frame names) cuts them"
    ) in "\n".join(r.warnings)
    assert sum("gave no crop" in w for w in r.warnings) == 1, r.warnings  # cam/empty.mp4's
    assert r.counts["frames_without_predictions"] == 6
    p = cli(
        "run", root, "--pool", tmp_path / "pool2", "--n-samples", "1", "--crops", TASK,
        "--predictions", tmp_path / "elsewhere",
    )  # fmt: skip
    assert p.returncode != 0  # (no tasks.json there)
    (root / ".lightly").rename(tmp_path / "lightly")
    (tmp_path / "lightly" / "predictions" / TASK / "a.json").unlink()
    p = cli(
        "run", root, "--pool", tmp_path / "pool2", "--n-samples", "1", "--crops", TASK,
        "--predictions", tmp_path / "lightly" / "predictions",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    want = f"looked for {tmp_path / 'lightly' / 'predictions'}/od/a.json"
    assert "2 of 3 images have no predictions file" in p.stderr and want in p.stderr


def test_a_dry_run_refuses_what_the_run_would_refuse(src, tmp_path):
    """A dry run said `would process 0 files` (exit 0) for a run the pool's kind refuses, and
    for a task that is not there: the run itself then stopped."""
    pool = tmp_path / "pool"
    datapool.run(src, pool, n_samples=2, crops=TASK, tag="first")
    for into, args, want in (
        (pool, [], "holds object crops (--crops od --crop-padding 0.1); this run would add whole"),
        (pool, ["--crops", "od", "--tag", "first"], "--tag first: run 0 of the pool"),
        (tmp_path / "new", ["--crops", "nosuch"], "does not list the task 'nosuch' (--crops,"),
    ):
        p = cli("run", src, "--pool", into, "--n-samples", "1", "--dry-run", *args)
        assert p.returncode != 0 and "Traceback" not in p.stderr, p.stderr
        assert want in p.stderr
    _task(tmp_path / "other", kind="classification")
    p = cli(
        "run", src, "--pool", tmp_path / "new", "--n-samples", "1", "--dry-run", "--crops", TASK,
        "--predictions", tmp_path / "other" / ".lightly" / "predictions",
    )  # fmt: skip
    assert p.returncode != 0 and "is a classification task" in p.stderr
    p = cli("run", src, "--pool", pool, "--n-samples", "1", "--dry-run", "--crops", TASK)
    assert p.returncode == 0 and "would process 0 files" in p.stdout


def test_the_report_page_lists_the_files_without_objects_and_the_boxes_left_out(tmp_path):
    """The summary's warnings said 'the report lists them': report.json did, the page (what a
    user opens) had neither the lists nor the warnings."""
    import html

    root = tmp_path / "src"
    _task(root)
    _image(root, "a.png", [([20, 10, 50, 40], (255, 0, 0))])
    _boxes(root, "a.png", [[20, 10, 50, 40], [300, 10, 5, 5]])
    write_image(root / "cam" / "b <i>.png", np.full((40, 40, 3), 90, np.uint8))
    r = datapool.run(root, tmp_path / "pool", n_samples=10, crops=TASK)
    raw = (tmp_path / "pool" / "runs" / "0" / "report.html").read_text()
    assert "<td class='name'>cam/b &lt;i&gt;.png</td>" in raw  # a name shown as text
    page = html.unescape(raw)
    assert "Object crops" in page and "Files without objects (1)" in page
    assert "Boxes left out (1)" in page and "a-png-crop-1.png" in page
    assert "outside the image (160x120)" in page
    assert "Warnings (2)" in page and all(w in page for w in r.warnings)


def test_status_says_the_pool_holds_object_crops(src, tmp_path):
    """`datapool status` said `N samples` of a crop pool as of any other: which task and
    padding its samples were cut with (the flags its next run must give) was nowhere."""
    crops, whole = tmp_path / "crops", tmp_path / "whole"
    datapool.run(src, crops, n_samples=2, crops=TASK, crop_padding=0.25)
    datapool.run(src, whole, n_samples=2)
    p = cli("status", crops)
    assert p.returncode == 0, p.stderr
    want = "2 samples (object crops: --crops od --crop-padding 0.25), dimension"
    assert want in p.stdout.splitlines()[0]
    assert json.loads(cli("status", crops, "--json").stdout)["crops"] == (
        "--crops od --crop-padding 0.25"
    )
    p = cli("status", whole)
    assert "2 samples, dimension" in p.stdout and "crops" not in p.stdout
    # a pool rebuilt with --process-all is of its last run's kind
    datapool.run(src, crops, n_samples=2, process_all=True)
    assert "2 samples, dimension" in cli("status", crops).stdout


def test_images_sharing_a_predictions_file_that_names_neither_give_no_crops(tmp_path):
    """Without a file_name that says whose they are, the boxes of `a.json` fitted both a.png
    and a.jpg: one of the two was cut at the other's objects."""
    root = tmp_path / "src"
    _task(root)
    _image(root, "a.png", [([20, 10, 50, 40], (255, 0, 0))])
    write_image(root / "a.jpg", np.full((120, 160, 3), 200, np.uint8))
    doc = root / ".lightly" / "predictions" / TASK / "a.json"
    doc.write_text(json.dumps({"predictions": json.loads(doc.read_text())["predictions"]}))
    _image(root, "b.png", [([5, 5, 30, 30], (0, 0, 255))])  # alone: no file_name needed
    doc = root / ".lightly" / "predictions" / TASK / "b.json"
    doc.write_text(json.dumps({"predictions": json.loads(doc.read_text())["predictions"]}))
    _clip(root, "b.mp4", boxed=0)  # a video of its name reads its frames' files, not b.json
    r = datapool.run(root, tmp_path / "pool", n_samples=10, crops=TASK)
    assert r.selected == ["b-png-crop-0.png"]
    report = json.loads((tmp_path / "pool" / "runs" / "0" / "report.json").read_text())
    without = {x["key"]: x["reason"] for x in report["crops"]["images_without_objects"]}
    assert set(without) == {"a.jpg", "a.png"}
    want = "od/a.json is also another image's of its name, and its file_name, None"
    assert want in without["a.png"]
    assert any(w.startswith("2 images share their predictions file") for w in r.warnings)


def test_a_task_named_with_spaces_is_quoted_in_the_flags_datapool_asks_for(tmp_path):
    """The refusal of a run of the other kind said `give --crops my task --crop-padding 0.1`:
    pasted into a shell, that gives the task `my`."""
    root = tmp_path / "src"
    task = "my task é"
    d = root / ".lightly" / "predictions" / task
    d.mkdir(parents=True)
    (root / ".lightly" / "predictions" / "tasks.json").write_text(json.dumps([task]))
    schema = {"task_type": "object-detection", "categories": [{"id": 0, "name": "thing"}]}
    (d / "schema.json").write_text(json.dumps(schema))
    write_image(root / "a.png", np.full((40, 40, 3), 90, np.uint8))
    (d / "a.json").write_text(
        json.dumps(
            {"file_name": "a.png", "predictions": [{"category_id": 0, "bbox": [1, 1, 9, 9]}]}
        )
    )
    pool = tmp_path / "pool"
    datapool.run(root, pool, n_samples=1, crops=task)
    p = cli("run", root, "--pool", pool, "--n-samples", "1")
    assert p.returncode != 0
    assert "give --crops 'my task é' --crop-padding 0.1, grow another pool" in p.stderr
    assert "(object crops: --crops 'my task é' --crop-padding 0.1)" in cli("status", pool).stdout


def test_crop_padding_without_crops_is_refused_naming_the_flags(src, tmp_path):
    """`--crop-padding 0.2` without `--crops` ran a whole-image selection, the padding silently
    unused; `--crops ''` was refused naming Lightly's input.task, not the flag."""
    with pytest.raises(ConfigError, match=r"crop_padding=0.2 \(--crop-padding\) applies to crop"):
        RunConfig(n_samples=1, crop_padding=0.2)
    RunConfig(n_samples=1, crop_padding=0.1)  # the default, given: nothing unused
    sel = SelectionConfig.from_lightly({"n_samples": 3, "strategies": [_crop_strategy()]})
    RunConfig(n_samples=1, strategies=sel.strategies, crop_padding=0.2)  # crops by the config
    pool = tmp_path / "pool"
    for args, want in (
        (["--crop-padding", "0.2"], "--crop-padding 0.2 applies to crop selection only: give "),
        (["--crops", ""], "--crops must name an object-detection task, got ''"),
    ):
        p = cli("run", src, "--pool", pool, "--n-samples", "1", *args)
        assert p.returncode != 0 and "Traceback" not in p.stderr
        assert want in p.stderr, p.stderr
    assert not pool.exists()


def test_reading_the_boxes_is_a_phase_of_the_progress_lines(src, tmp_path):
    """Each image's predictions file is read before decoding starts (a GET each from S3): the
    run showed no progress line while it read them (minutes of silence for a big bucket)."""
    from .test_progress import _final_lines, _on_pty

    rc, drawn = _on_pty("run", src, "--pool", tmp_path / "pool", "--n-samples", 2, "--crops", TASK)
    assert rc == 0, drawn
    [line] = [line for line in _final_lines(drawn) if line.startswith("predictions")]
    assert "2/2 files" in line and "100%" in line, line


def test_an_animations_boxes_are_cut_from_its_first_frame_only(tmp_path):
    """An animated GIF is read as a video is, frame by frame; its predictions file's boxes (for
    the picture as Lightly and viewers show it: its first frame) were cut from every frame, where
    the objects had moved: crops of background named as objects."""
    from PIL import Image

    root = tmp_path / "src"
    _task(root)
    frames = []
    for t, colour in enumerate(COLOURS[:4]):
        f = np.zeros((80, 100, 3), np.uint8)
        f[:] = BG
        f[20:50, 10 + 20 * t : 40 + 20 * t] = colour  # the object moves 20 pixels a frame
        frames.append(Image.fromarray(f))
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    _boxes(root, "anim.gif", [[10, 20, 30, 30]])  # where it is in the first frame
    out = tmp_path / "out"
    r = datapool.run(
        root, tmp_path / "pool", n_samples=10, crops=TASK, crop_padding=0.0, export=str(out)
    )
    assert r.selected == ["anim-0-gif-png-crop-0.png"]
    assert r.counts["frames_without_objects"] == 3
    assert (_png(out / "anim-0-gif-png-crop-0.png") == COLOURS[0]).all()


def test_boxes_that_reach_past_the_picture_are_noted_with_a_hint(tmp_path):
    """A box half outside its picture is cut to its part inside, which was right for a
    detector's rounding but silent for boxes written otherwise: [x0, y0, x1, y1], or in the
    picture as stored before its EXIF orientation turns it. Those crops were embedded without a
    word; now they are counted, listed with the hint, and warned about."""
    from PIL import Image

    root = tmp_path / "src"
    _task(root)
    # x0, y0, x1, y1 written as x, y, w, h: it reaches past the right and bottom edges
    _image(root, "a.png", [([20, 10, 50, 40], (255, 0, 0))])
    _boxes(root, "a.png", [[100, 60, 150, 110], [0, 0, 160, 120], [0.5, -0.8, 160.4, 120.9]])
    # a phone picture stored 160x120, shown 120x160: a box in the stored picture's pixels
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (160, 120), BG).save(root / "phone.png", exif=exif.tobytes())
    _boxes(root, "phone.png", [[100, 10, 50, 30], [125, 10, 30, 30]])  # the second: outside
    r = datapool.run(root, tmp_path / "pool", n_samples=10, crops=TASK)
    assert r.counts["boxes_clipped"] == 2  # within a pixel (rounding, the whole picture): none
    report = json.loads((tmp_path / "pool" / "runs" / "0" / "report.json").read_text())
    clipped = {b["crop"]: b["reason"] for b in report["crops"]["boxes_clipped"]}
    want = "reaches outside the image (160x120): [100, 60, 150, 110]"
    assert clipped["a-png-crop-0.png"] == want
    phone = clipped["phone-png-crop-0.png"]
    assert phone.startswith("reaches outside the image (120x160): [100, 10, 50, 30]; it fits ")
    assert "the picture as stored (160x120), before its orientation" in phone
    (left,) = report["crops"]["boxes_left_out"]
    assert left["reason"].startswith("outside the image (120x160); it fits the picture as stored")
    (said,) = [w for w in r.warnings if "left out (first: " in w]
    assert said.startswith("1 box of task 'od' was left out (first: ")
    assert said.endswith("the report lists it (crops.boxes_left_out)")
    assert any(
        w.startswith("2 boxes of task 'od' reach more than a pixel past their picture")
        and "Lightly's bbox is [x, y, width, height] in pixels of the picture as shown" in w
        for w in r.warnings
    )
    assert r.counts["frames_embedded"] == 4  # they are still cut and embedded, as before
    p = cli("run", root, "--pool", tmp_path / "pool2", "--n-samples", "1", "--crops", TASK)
    assert "(object crops; 0 images had no objects, 1 box left out, 2 cut to fit)" in p.stdout


def test_a_task_of_another_type_is_named_in_the_refusal(tmp_path):
    """A task of a type crop selection cuts no box from is refused saying what it was (a
    keypoint-detection task was refused so, before its bbox was read)."""
    root = tmp_path / "src"
    _task(root, kind="semantic-segmentation")
    write_image(root / "a.png", np.zeros((40, 40, 3), np.uint8))
    p = cli("run", root, "--pool", tmp_path / "pool", "--n-samples", "1", "--crops", TASK)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert (
        "crop selection: object-detection or keypoint-detection), got 'semantic-segmentation'"
        in p.stderr
    )


def _keypoints(root: Path, key: str, people: list[dict]) -> None:
    """A keypoint-detection predictions file in Lightly's format: each prediction's keypoints
    [x1, y1, s1, ...], with its (optional) bbox where given."""
    doc = {"file_name": key, "predictions": [{"category_id": 0, "score": 0.8, **p} for p in people]}
    path = root / ".lightly" / "predictions" / TASK / (key.rsplit(".", 1)[0] + ".json")
    path.write_text(json.dumps(doc))


def test_a_keypoint_detection_task_gives_the_crops_of_its_bboxes(tmp_path):
    """Lightly's keypoint-detection predictions carry an optional bbox: crop selection cuts it
    out as a detection's. Before, such a task was refused. One without a bbox stops the run
    naming the file: a box from the keypoints' extent would not be the object's."""
    root = tmp_path / "src"
    _task(root, kind="keypoint-detection")
    _image(root, "a.png", [([20, 10, 50, 40], (255, 0, 0)), ([90, 60, 60, 50], (0, 255, 0))])
    keypoints = [30.0, 20.0, 0.9, 60.0, 40.0, 0.8]
    _keypoints(
        root,
        "a.png",
        [
            {"keypoints": keypoints, "bbox": [20, 10, 50, 40]},
            {"keypoints": keypoints, "bbox": [90, 60, 60, 50]},
        ],
    )
    out = tmp_path / "out"
    r = datapool.run(
        root, tmp_path / "pool", n_samples=2, crops=TASK, crop_padding=0.0, export=str(out)
    )
    assert sorted(r.selected) == ["a-png-crop-0.png", "a-png-crop-1.png"]
    assert (_png(out / "a-png-crop-1.png") == (0, 255, 0)).all()
    _keypoints(root, "a.png", [{"keypoints": keypoints}])
    p = cli("run", root, "--pool", tmp_path / "pool2", "--n-samples", "1", "--crops", TASK)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert "a.json: prediction 0: bbox must be [x, y, width, height]" in p.stderr
    assert "datapool does not make one from the keypoints" in p.stderr
    # The selection strategies' SCORES are a classifier's or a detector's: refused, naming what
    # a keypoint task gives (its PREDICTIONS, below).
    with pytest.raises(SourceError, match=r"\(keypoint-detection\) has no score 'uncertainty_m"):
        datapool.run(
            root,
            tmp_path / "pool3",
            n_samples=1,
            strategies=SelectionConfig.from_lightly(
                {
                    "n_samples": 1,
                    "strategies": [
                        {
                            "input": {
                                "type": "SCORES",
                                "task": TASK,
                                "score": "uncertainty_margin",
                            },
                            "strategy": {"type": "WEIGHTS"},
                        }
                    ],
                }
            ).strategies,
        )
    # BALANCE on its PREDICTIONS selects by the people each image holds (before: refused, as
    # SCORES are). Two images with people, one without: a target of all "thing" picks them.
    _image(root, "b.png", [([10, 10, 20, 20], (0, 0, 255))])
    _image(root, "c.png", [])
    _keypoints(root, "b.png", [{"keypoints": keypoints}])
    _keypoints(root, "c.png", [])
    balance = {
        "input": {"type": "PREDICTIONS", "task": TASK, "name": "CLASS_DISTRIBUTION"},
        "strategy": {"type": "BALANCE", "target": {"thing": 1.0}},
    }
    r = datapool.run(
        root,
        tmp_path / "pool4",
        n_samples=2,
        strategies=SelectionConfig.from_lightly(
            {"n_samples": 2, "strategies": [balance]}
        ).strategies,
    )
    assert sorted(r.selected) == ["a.png", "b.png"]


# --- predictions that change after a run cut them ------------------------------------------


def test_a_rewritten_predictions_file_re_cuts_its_image(src, tmp_path):
    """The detector is run again and rewrites a.png's file (a box gone, a new one): the next
    run cuts a.png again, its old crops leave the pool and the new box's crop is a candidate.
    Before, the ledger followed only the image's bytes: 'nothing new', and the pool kept a crop
    of a box that no longer exists."""
    pool = tmp_path / "pool"
    datapool.run(src, pool, n_samples=4, crops=TASK, crop_padding=0.0)
    assert datapool.run(src, pool, n_samples=4, crops=TASK, crop_padding=0.0).run_index is None
    _boxes(src, "a.png", [[20, 10, 50, 40], [0, 0, 10, 10]])  # the green box is gone
    r = datapool.run(src, pool, n_samples=4, crops=TASK, crop_padding=0.0)
    assert r.run_index == 1
    assert r.counts["recut"] == 1 and r.counts["processed"] == 1 and r.counts["unchanged"] == 1
    assert r.counts["removed"] == 2  # a.png's two crops, cut again from the new file
    assert {"a-png-crop-0.png", "a-png-crop-1.png"} <= set(Pool.load(pool).filenames)
    # crop 1 is now the grey corner, not the green box it was
    p = cli("export", pool, tmp_path / "out", "--all")
    assert p.returncode == 0, p.stderr
    assert tuple(_png(tmp_path / "out" / "a-png-crop-1.png")[0, 0]) == BG
    # and the run after it has nothing new again
    assert datapool.run(src, pool, n_samples=4, crops=TASK, crop_padding=0.0).run_index is None


def test_a_predictions_file_written_later_gives_its_images_crops(src, tmp_path):
    """An image first read without a predictions file (no crops, recorded as processed) gets
    its crops when the file appears; one whose file is removed loses its crops."""
    write_image(src / "late.png", np.full((120, 160, 3), 90, np.uint8))
    pool = tmp_path / "pool"
    first = datapool.run(src, pool, n_samples=10, crops=TASK, crop_padding=0.0)
    assert first.counts["images_without_objects"] == 1
    _boxes(src, "late.png", [[10, 10, 40, 40]])
    (src / ".lightly" / "predictions" / TASK / "sub" / "b.json").unlink()
    r = datapool.run(src, pool, n_samples=10, crops=TASK, crop_padding=0.0)
    assert r.counts["recut"] == 2
    report = json.loads((pool / "runs" / "1" / "report.json").read_text())
    assert report["crops"]["images_recut"] == ["late.png", "sub/b.png"]
    names = set(Pool.load(pool).filenames)
    assert "late-png-crop-0.png" in names
    assert not any(n.startswith("sub/b-png") for n in names)
    assert datapool.run(src, pool, n_samples=10, crops=TASK, crop_padding=0.0).run_index is None


def test_the_summary_says_how_many_images_were_re_cut(src, tmp_path):
    pool = tmp_path / "pool"
    assert cli("run", src, "--pool", pool, "--n-samples", "4", "--crops", TASK).returncode == 0
    _boxes(src, "sub/b.png", [[5, 5, 30, 30]])
    p = cli("run", src, "--pool", pool, "--n-samples", "4", "--crops", TASK, "--dry-run")
    assert p.returncode == 0, p.stderr
    assert "would process 1 file;" in p.stdout and "sub/b.png" in p.stdout, p.stdout
    p = cli("run", src, "--pool", pool, "--n-samples", "4", "--crops", TASK)
    assert p.returncode == 0, p.stderr
    assert "0 new, 0 changed, 1 unchanged, 1 re-cut (their predictions changed)" in p.stdout
    assert "(2 samples of files changed or re-cut removed)" in p.stdout, p.stdout


def test_a_crop_pool_made_before_the_predictions_column_opens_and_follows_changes(src, tmp_path):
    """A crop pool whose ledger has no `predictions` column (made before it): an image that gave
    no crop and has a file now is cut; the others' files are recorded by the next run that
    commits, and a change after that is seen."""
    write_image(src / "late.png", np.full((120, 160, 3), 90, np.uint8))
    pool = tmp_path / "pool"
    datapool.run(src, pool, n_samples=10, crops=TASK, crop_padding=0.0)
    path = pool / "ledger.csv"
    lines = path.read_text().splitlines()
    assert lines[0].endswith(",content_hash,predictions")
    path.write_text("\n".join(x.rsplit(",", 1)[0] for x in lines) + "\n")
    assert (Pool.load(pool).ledger["predictions"] == "").all()
    _boxes(src, "late.png", [[10, 10, 40, 40]])
    r = datapool.run(src, pool, n_samples=10, crops=TASK, crop_padding=0.0)
    assert r.counts["recut"] == 1 and r.counts["processed"] == 1
    ledger = Pool.load(pool).ledger.set_index("key")
    assert (ledger["predictions"].str.len() == 32).all()  # each image's file, recorded
    _boxes(src, "a.png", [[20, 10, 50, 40]])
    r = datapool.run(src, pool, n_samples=10, crops=TASK, crop_padding=0.0)
    assert r.counts["recut"] == 1
    assert "a-png-crop-1.png" not in Pool.load(pool).filenames


def test_whole_image_runs_record_no_predictions(src, tmp_path):
    pool = tmp_path / "pool"
    datapool.run(src, pool, n_samples=2)
    _boxes(src, "a.png", [[0, 0, 10, 10]])
    assert datapool.run(src, pool, n_samples=2).run_index is None
    assert (Pool.load(pool).ledger["predictions"] == "").all()


def test_probabilities_that_are_not_a_distribution_do_not_stop_a_crop_run(tmp_path):
    # A detector's per-class sigmoid scores need not sum to 1; crops use only the boxes, their
    # category and score, yet such a file stopped the run ("probabilities must ... sum to 1").
    root = tmp_path / "src"
    _task(root)
    schema = {
        "task_type": "object-detection",
        "categories": [{"id": 0, "name": "car"}, {"id": 1, "name": "bus"}],
    }
    (root / ".lightly" / "predictions" / TASK / "schema.json").write_text(json.dumps(schema))
    _image(root, "a.png", [([4, 4, 20, 20], (255, 0, 0))])
    probs = [0.9, 0.8]  # sigmoids: a car, and a bus too
    doc = {
        "file_name": "a.png",
        "predictions": [
            {"category_id": 0, "bbox": [4, 4, 20, 20], "score": 0.9, "probabilities": probs}
        ],
    }
    (root / ".lightly" / "predictions" / TASK / "a.json").write_text(json.dumps(doc))
    r = datapool.run(root, tmp_path / "pool", n_samples=1, crops=TASK)
    assert r.selected == ["a-png-crop-0.png"]
    # Its category is still checked.
    doc["predictions"][0]["category_id"] = 7
    (root / ".lightly" / "predictions" / TASK / "a.json").write_text(json.dumps(doc))
    with pytest.raises(SourceError, match="category_id must be"):
        datapool.run(root, tmp_path / "pool2", n_samples=1, crops=TASK)


def test_a_changed_frame_predictions_file_re_cuts_its_video(tmp_path):
    """The labels of frame 2 of cam/clip.mp4 are fixed (its box moved), then frame 5 gets a
    file: each time the next run cuts the video again, its old crops leave the pool, and the
    crop of frame 2 is the new box's content. Before, a video's frames' files were not
    followed: 'nothing new', and the pool kept the crops of the old boxes."""
    root = tmp_path / "src"
    _task(root)
    _clip(root)
    pool = tmp_path / "pool"
    datapool.run(root, pool, n_samples=10, crops=TASK, crop_padding=0.0)
    assert datapool.run(root, pool, n_samples=10, crops=TASK, crop_padding=0.0).run_index is None
    _boxes(root, frame_name("cam/clip.mp4", 2, 6), [[0, 0, 8, 8]])  # the grey corner
    r = datapool.run(root, pool, n_samples=10, crops=TASK, crop_padding=0.0)
    assert r.counts["recut"] == 1 and r.counts["processed"] == 1 and r.counts["removed"] == 4
    report = json.loads((pool / "runs" / "1" / "report.json").read_text())
    assert report["crops"]["images_recut"] == ["cam/clip.mp4"]
    p = cli("export", pool, tmp_path / "out", "--all")
    assert p.returncode == 0, p.stderr
    crop = _png(tmp_path / "out" / "cam" / "clip-2-mp4-png-crop-0.png").astype(int)
    assert crop.shape[:2] == (8, 8) and np.abs(crop - BG).mean() < 10
    assert datapool.run(root, pool, n_samples=10, crops=TASK, crop_padding=0.0).run_index is None
    _boxes(root, frame_name("cam/clip.mp4", 5, 6), [[50, 20, 20, 16]])  # a frame had none
    dry = ("--n-samples", "10", "--crops", TASK, "--crop-padding", "0", "--dry-run")
    p = cli("run", root, "--pool", pool, *dry)
    assert p.returncode == 0, p.stderr
    assert "would process 1 file;" in p.stdout and "cam/clip.mp4" in p.stdout, p.stdout
    r = datapool.run(root, pool, n_samples=10, crops=TASK, crop_padding=0.0)
    assert r.counts["recut"] == 1 and "cam/clip-5-mp4-png-crop-0.png" in Pool.load(pool).filenames
    ledger = Pool.load(pool).ledger.set_index("key")
    assert ledger.loc["cam/clip.mp4", "predictions"].startswith("frames:")


def test_a_moved_video_without_its_frames_files_is_cut_again(tmp_path):
    """A video renamed without its frames' predictions files has none under its new name: its
    crops (renamed) leave the pool in that run, counted once, as re-cut, not as moved."""
    root = tmp_path / "src"
    _task(root)
    _clip(root)
    pool = tmp_path / "pool"
    datapool.run(root, pool, n_samples=10, crops=TASK)
    (root / "cam" / "clip.mp4").rename(root / "cam" / "moved.mp4")
    p = cli("run", root, "--pool", pool, "--n-samples", "10", "--crops", TASK)
    assert p.returncode == 0, p.stderr
    assert "0 new, 0 changed, 0 unchanged, 1 re-cut (their predictions changed)" in p.stdout
    assert "moved or renamed" not in p.stdout and "moved  " not in p.stdout, p.stdout
    assert Pool.load(pool).filenames == []


def test_a_damaged_image_without_objects_is_skipped_not_recorded_as_read(src, tmp_path):
    """An image without a predictions file gives no crop, but it is decoded all the same: a
    damaged one is skipped with its reason (and not counted among the images without objects).
    Before, it was recorded 'ok' unread, and never showed as skipped."""
    good = src / "plain.jpg"
    write_image(good, np.full((60, 80, 3), 90, np.uint8))
    (src / "cut.jpg").write_bytes(good.read_bytes()[:300])  # a JPEG cut short
    pool = tmp_path / "pool"
    r = datapool.run(src, pool, n_samples=10, crops=TASK)
    assert [s["key"] for s in r.skipped] == ["cut.jpg"], r.skipped
    assert r.counts["images_without_objects"] == 1 and r.counts["frames_without_objects"] == 0
    report = json.loads((pool / "runs" / "0" / "report.json").read_text())
    assert [x["key"] for x in report["crops"]["images_without_objects"]] == ["plain.jpg"]
    status = Pool.load(pool).ledger.set_index("key")["status"]
    assert status["plain.jpg"] == "ok" and status["cut.jpg"] != "ok"


def test_a_video_none_of_whose_frames_kept_has_a_file_while_others_do_stops_the_run(
    tmp_path, capsys
):
    """Predictions written for frames 1, 3 and 5 (another --frame-stride or --fps) and a run
    that keeps frames 0, 2 and 4: no frame kept had a file, and the video passed for one
    without objects (recorded in the ledger as cut, so that later runs did not cut it again).
    The run now stops before it commits, in one line naming the flags."""
    from datapool.cli import main

    root = tmp_path / "src"
    _task(root)
    _clip(root, boxed=0)
    for t in (1, 3, 5):
        _boxes(root, frame_name("cam/clip.mp4", t, 6), [[10 + 8 * t, 20, 20, 16]])
    with pytest.raises(ConfigError) as e:
        datapool.run(root, tmp_path / "pool", n_samples=10, crops=TASK, frame_stride=2)
    said = str(e.value)
    assert said.startswith(
        "crops: none of the 3 frames of cam/clip.mp4 this run keeps has a predictions file for "
        "task 'od' (first looked for: .lightly/predictions/od/cam/clip-0-mp4.json), but 3 "
        "other frames of it have one: predictions were written for other frames: give the "
        "--fps/--frame-stride they were made with"
    ), said
    assert not (tmp_path / "pool" / "runs.json").exists()
    args = ["run", root, "--pool", tmp_path / "pool", "--n-samples", 10, "--crops", TASK]
    assert main([*map(str, args), "--frame-stride", "2", "-q"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "none of the 3 frames of cam/clip.mp4" in err, err
    # every frame kept (no --frame-stride): the three with a file are cut, the others warned of
    r = datapool.run(root, tmp_path / "pool", n_samples=10, crops=TASK, crop_padding=0.0)
    assert sorted(r.selected) == [f"cam/clip-{t}-mp4-png-crop-0.png" for t in (1, 3, 5)]
    assert r.counts["frames_without_predictions"] == 3
    assert r.counts["frames_without_objects"] == 0
    assert (
        sum("3 video frames this run keeps have no predictions file" in w for w in r.warnings) == 1
    )
