"""Export of a run's selection to a local folder: bytes, frame PNGs, names, and no escape."""

from __future__ import annotations

import os

import av
import numpy as np
import pytest

import datapool
from datapool.export import LIST_NAME, RECORD_NAME, export_selection, unsafe_name_reason
from datapool.sources.local import LocalSource


def _decode_all(path):
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def _png_rgb(path):
    with av.open(str(path)) as c:
        return next(iter(c.decode(video=0))).to_ndarray(format="rgb24")


def test_export_writes_images_as_they_are_and_frames_as_png(bucket, tmp_path):
    out = tmp_path / "out"
    r = datapool.run(bucket, tmp_path / "pool", n_samples=12, progress=False, export=str(out))
    assert r.export is not None and r.export.refused == []
    assert r.export.written == r.selected
    assert (out / LIST_NAME).read_text().splitlines() == r.selected
    frames = [n for n in r.selected if n.endswith("-mp4.png")]
    images = [n for n in r.selected if n not in frames]
    assert frames and images, "the test needs both kinds among the selected samples"
    for name in images:
        assert (out / name).read_bytes() == (bucket / name).read_bytes()
    decoded = {k: _decode_all(bucket / "cam" / k) for k in ("clip.mp4", "other.mp4")}
    for name in frames:
        stem, index, _ = name.rsplit("-", 2)
        expected = decoded[stem.split("/")[-1] + ".mp4"][int(index)]
        np.testing.assert_array_equal(_png_rgb(out / name), expected)  # PNG: lossless, full size
    assert [p.name for p in out.rglob(".*")] == [RECORD_NAME]  # no temporary file left behind
    # A second run with nothing new exports nothing and leaves the folder as it is.
    again = datapool.run(bucket, tmp_path / "pool", n_samples=12, progress=False, export=str(out))
    assert again.export is None


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../x.jpg", r"'\.\.'"),
        ("a/../../x.jpg", r"'\.\.'"),
        ("/etc/x.jpg", "absolute"),
        ("\\\\server\\x.jpg", "absolute"),
        ("C:/x.jpg", "absolute"),
        ("a\x00b.jpg", "NUL"),
        ("a//b.jpg", "empty"),
        ("./a.jpg", "'\\.'"),
        ("", "empty"),
    ],
)
def test_unsafe_names_are_refused(name, reason):
    import re

    got = unsafe_name_reason(name)
    assert got is not None and re.search(reason, got)


@pytest.mark.parametrize("name", ["a.jpg", "cam/clip-07-mp4.png", "x:y.jpg", "dir..x/a..b.jpg"])
def test_safe_names_pass(name):
    assert unsafe_name_reason(name) is None


def test_no_key_lets_a_write_escape_the_export_folder(tmp_path, make_media):
    src_dir = tmp_path / "src"
    make_media(src_dir / "x.jpg", seed=1)
    make_media(src_dir / "ok.jpg", seed=2)
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "victim.jpg").write_bytes(b"do not touch")
    out = tmp_path / "out"
    out.mkdir()
    (out / "link").symlink_to(outside, target_is_directory=True)
    (out / "filelink.jpg").symlink_to(tmp_path / "victim.jpg")
    samples = [
        ("../victim.jpg", "x.jpg", "image"),
        ("../../victim.jpg", "x.jpg", "image"),
        (str(tmp_path / "victim.jpg"), "x.jpg", "image"),
        ("x\x00.jpg", "x.jpg", "image"),
        ("link/x.jpg", "x.jpg", "image"),  # a folder link inside the export folder
        ("link/deeper/x.jpg", "x.jpg", "image"),
        ("filelink.jpg", "x.jpg", "image"),  # a file link: replaced, never written through
        ("ok.jpg", "ok.jpg", "image"),
    ]
    before = sorted(p for p in tmp_path.rglob("*") if not p.is_relative_to(out))
    res = export_selection(LocalSource(src_dir), samples, str(out))
    refused = {r["name"] for r in res.refused}
    assert refused == {n for n, _, _ in samples[:6]}
    assert res.written == ["filelink.jpg", "ok.jpg"]
    assert list(outside.iterdir()) == []
    assert (tmp_path / "victim.jpg").read_bytes() == b"do not touch"
    assert not (out / "filelink.jpg").is_symlink()
    assert (out / "filelink.jpg").read_bytes() == (src_dir / "x.jpg").read_bytes()
    after = sorted(p for p in tmp_path.rglob("*") if not p.is_relative_to(out))
    assert after == before
    assert (out / LIST_NAME).read_text() == "filelink.jpg\nok.jpg\n"


def test_an_unreadable_source_file_is_reported_not_fatal(tmp_path, make_media):
    src_dir = tmp_path / "src"
    make_media(src_dir / "ok.jpg", seed=2)
    make_media(src_dir / "v.mp4", seed=3, frames=6)
    res = export_selection(
        LocalSource(src_dir),
        [
            ("gone.jpg", "gone.jpg", "image"),
            ("v-9-mp4.png", "v.mp4", "video"),
            ("v-2-mp4.png", "v.mp4", "video"),
            ("ok.jpg", "ok.jpg", "image"),
        ],
        str(tmp_path / "out"),
    )
    assert res.written == ["v-2-mp4.png", "ok.jpg"]
    assert {r["name"] for r in res.refused} == {"gone.jpg", "v-9-mp4.png"}
    # In the words of an export: no run will try the file again for it.
    assert not [r for r in res.refused if "next run" in r["reason"]], res.refused
    assert os.path.getsize(tmp_path / "out" / "v-2-mp4.png") > 0


def test_a_file_changed_after_its_run_read_it_is_not_exported_by_the_run(
    tmp_path, make_media, monkeypatch
):
    """A file rewritten between the run's decoding and its export: the run embedded the old bytes,
    so exporting the new ones under the selected name would be a silent wrong result."""
    from datapool.pool import journal

    src = tmp_path / "src"
    for i in range(4):
        make_media(src / f"img{i}.jpg", seed=i)
    real_point = journal.point

    done = []

    def rewrite_after_commit(name):
        real_point(name)
        if name == "committed" and not done:  # the run's commit (the export's report follows)
            done.append(name)
            os.unlink(src / "img0.jpg")
            for i in (1, 2):  # new content: the ledger's row is not this file
                make_media(src / f"img{i}.jpg", seed=50 + i)

    monkeypatch.setattr(journal, "point", rewrite_after_commit)
    out = tmp_path / "out"
    r = datapool.run(src, tmp_path / "pool", n_samples=4, progress=False, export=str(out))
    assert sorted(r.selected) == [f"img{i}.jpg" for i in range(4)]
    assert r.export is not None and r.export.written == ["img3.jpg"]
    refused = {x["name"]: x["reason"] for x in r.export.refused}
    assert set(refused) == {"img0.jpg", "img1.jpg", "img2.jpg"}
    assert refused["img0.jpg"].startswith("no longer in the source")
    assert refused["img1.jpg"].startswith("changed since it was selected")
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "img3.jpg",
        LIST_NAME,
    ]


def test_exported_frames_are_of_the_video_not_its_cover_and_keep_the_pixel_aspect(tmp_path):
    # The frame export decodes again is of the stream the run embedded (decode.video_stream: a
    # picture stream before the video is passed over), and an anamorphic stream's pixel aspect
    # is written in the PNG (pHYs), as `ffmpeg -i clip.mp4 frame.png` writes it.
    import io
    from fractions import Fraction

    from PIL import Image

    from datapool.media import write_video

    from .test_decode import _with_cover

    src = tmp_path / "src"
    src.mkdir()
    _with_cover(src / "clip.mkv", video_frames=4, mark_cover=False)
    frames = [np.zeros((48, 64, 3), np.uint8)] * 3
    write_video(src / "wide.mp4", frames, sample_aspect=Fraction(2))
    out = tmp_path / "out"
    r = datapool.run(src, tmp_path / "pool", n_samples=2, progress=False, export=str(out))
    assert r.export is not None and r.export.refused == []
    by_source = {name.rsplit("-", 2)[0]: name for name in r.selected}
    assert set(by_source) == {"clip", "wide"}
    blue = _png_rgb(out / by_source["clip"])
    assert blue[..., 2].mean() > 200 and blue[..., 0].mean() < 50
    wide = Image.open(io.BytesIO((out / by_source["wide"]).read_bytes()))
    assert wide.size == (64, 48) and wide.info.get("aspect") == (2, 1)
