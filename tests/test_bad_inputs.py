"""A corpus of bad inputs next to good files, through one run: the run finishes, every bad file is
in the ledger and the report with a precise reason, and the good files (odd names included) give
exactly the samples and embeddings of a clean run over the good files alone."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

import datapool
from datapool import Pool
from datapool.media import write_image, write_video

from .conftest import PACKAGE_PATH, clip_frames, scene

# Good files with names that need care in CSV, JSON and spreadsheets.
ODD_NAMES = [
    "a, comma.jpg",
    'say "cheese".jpg',
    "two  spaces .png",
    "=HYPERLINK(1).jpg",
    "+plus.jpg",
    "-minus.jpg",
    "@at.png",
    "'quote.jpg",
    "ünï.jpg",
]

_CUT_SHORT = (
    r"^truncated MP4 \(the file ends inside its '{box}' box, at byte \d+ of the \d+ it "
    r"declares\): the file is incomplete$"
)
# Bad files: key -> a regular expression its ledger status and report reason must match.
BAD = {
    # An MP4 cut short (a copy, download or upload that stopped) was `no video or image stream`
    # or FFmpeg's `Invalid data found when processing input`: neither says the file is incomplete.
    "cut_in_moov.mp4": _CUT_SHORT.format(box="moov"),
    "cut_in_frames.mp4": _CUT_SHORT.format(box="mdat"),
    "cut_tail.mp4": _CUT_SHORT.format(box="mdat"),
    "no_moov.mp4": r"^MP4 without its 'moov' box \(the index of its frames, which most recorders write last\): the file is incomplete or damaged$",
    "zero_bytes.jpg": r"^empty file \(0 bytes\)$",
    "text.png": r"^cannot read the frame size from the header \(not valid media, damaged, or over 178956970 pixels\)$",
    "bomb.png": r"^declares 100000x100000 pixels, over the limit of 178956970 \(datapool\.decode\.MAX_PIXELS\); not decoded$",
    "audio_only.mp4": r"^no video or image stream \(audio only\)$",
    "empty_track.mp4": r"^no video or image stream$",
    "undecodable_frame.mp4": r"^cannot read the frame size from the header \(not valid media, damaged, or over 178956970 pixels\)$",
    "bad\\xff\\xfename.jpg": r"^name is not valid UTF-8 \(shown with \\x escapes\); rename the file$",
    "loop_a.jpg": r"^symbolic link loop; not followed$",
    "loop_b.jpg": r"^symbolic link loop; not followed$",
    "to_outside.jpg": r"^symbolic link to '.*outside\.jpg', outside the source; not followed$",
    "dangling.jpg": r"^broken symbolic link to 'missing\.jpg' \(No such file or directory\); not followed$",
    "fifo.jpg": r"^not a regular file \(a FIFO, socket or device\); not read$",
    # One name a line in selected_filenames.txt and Lightly's lists: the key shows the escape.
    "new\\nline.jpg": r"^its name contains a line break \(shown as an escape\), which selected_filenames\.txt and Lightly's filename lists cannot hold; rename the file$",
}


def _png_bomb(path: Path, w: int, h: int) -> None:
    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * (1 + 3 * 4096) * 4, 9)  # a few zero rows: a ~100-byte file
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def _faststart_mp4(path: Path, n: int) -> bytes:
    """H.264 MP4 with the moov atom (the index) before the frames, so it can be cut in either."""
    with av.open(str(path), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=10)
        s.height, s.width, s.pix_fmt = 64, 96, "yuv420p"
        for f in clip_frames(40, n):
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path.read_bytes()


def _write_good(root: Path) -> None:
    for i in range(3):
        write_image(root / f"img{i}.jpg", scene(i))
    write_image(root / "sub" / "pic.png", scene(7))
    write_video(root / "cam" / "clip.mp4", clip_frames(30, 8), fps=10)
    for i, name in enumerate(ODD_NAMES):
        write_image(root / name, scene(100 + i))
    # An animated GIF (5 frames: read as a video, all of them) and a 2-page TIFF (its first
    # page only).
    with av.open(str(root / "anim.gif"), "w") as c:
        s = c.add_stream("gif", rate=10)
        s.height, s.width, s.pix_fmt = 64, 96, "rgb8"
        for f in clip_frames(50, 5):
            for p in s.encode(
                av.VideoFrame.from_ndarray(f, format="rgb24").reformat(format="rgb8")
            ):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    import tifffile

    tifffile.imwrite(root / "pages.tiff", np.stack([scene(60), scene(61)]), photometric="rgb")
    os.symlink("img0.jpg", root / "inside_link.jpg")  # a link inside the source is followed


def _write_bad(root: Path, outside: Path) -> None:
    data = _faststart_mp4(root / "cut_in_moov.mp4", 12)
    moov, mdat = data.find(b"moov"), data.find(b"mdat")
    assert 0 < moov < mdat
    (root / "cut_in_moov.mp4").write_bytes(data[: moov + 60])
    (root / "cut_in_frames.mp4").write_bytes(data[: (mdat + len(data)) // 2])
    write_video(root / "cut_tail.mp4", clip_frames(31, 12), fps=10)  # moov at the end
    tail = (root / "cut_tail.mp4").read_bytes()
    (root / "cut_tail.mp4").write_bytes(tail[: len(tail) // 3])
    # An `ftyp` box and then nothing but zeros (the demo's broken video): no index of frames.
    (root / "no_moov.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(200))
    (root / "zero_bytes.jpg").write_bytes(b"")
    (root / "text.png").write_text("this is text, not a PNG\n")
    _png_bomb(root / "bomb.png", 100000, 100000)
    with av.open(str(root / "audio_only.mp4"), "w") as c:
        s = c.add_stream("aac", rate=44100)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
        )
        frame.sample_rate = 44100
        for i in range(8):
            frame.pts = i * 1024
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    with av.open(str(root / "empty_track.mp4"), "w") as c:  # a video track with zero frames
        s = c.add_stream("libx264", rate=10)
        s.height, s.width, s.pix_fmt = 64, 96, "yuv420p"
        c.start_encoding()
    with av.open(str(root / "undecodable_frame.mp4"), "w") as c:  # one frame, not decodable
        s = c.add_stream("mpeg4", rate=10)
        s.height, s.width, s.pix_fmt = 64, 96, "yuv420p"
        c.start_encoding()
        p = av.Packet(b"\x00\x00\x01")
        p.stream, p.pts, p.dts, p.time_base = s, 0, 0, s.time_base
        c.mux(p)
    write_image(Path(os.fsdecode(os.fsencode(str(root)) + b"/bad\xff\xfename.jpg")), scene(3))
    os.symlink("loop_b.jpg", root / "loop_a.jpg")
    os.symlink("loop_a.jpg", root / "loop_b.jpg")
    write_image(outside / "outside.jpg", scene(4))
    os.symlink(outside / "outside.jpg", root / "to_outside.jpg")
    os.symlink("missing.jpg", root / "dangling.jpg")
    os.mkfifo(root / "fifo.jpg")
    write_image(root / "new\nline.jpg", scene(5))
    (root / "notes.txt").write_text("not media\n")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("corpus")
    clean, mixed, outside = tmp / "clean", tmp / "mixed", tmp / "outside"
    for d in (clean, mixed, outside):
        d.mkdir()
    _write_good(clean)
    shutil.copytree(clean, mixed, symlinks=True, dirs_exist_ok=True)
    _write_bad(mixed, outside)
    clean_result = datapool.run(clean, tmp / "clean_pool", proportion_samples=1.0, progress=False)
    mixed_result = datapool.run(mixed, tmp / "pool", proportion_samples=1.0, progress=False)
    return tmp, clean_result, mixed_result


def test_every_bad_file_is_recorded_with_its_reason(corpus):
    tmp, _, result = corpus
    pool = Pool.open(tmp / "pool")
    ledger = pool.ledger.set_index("key")
    report = json.loads(result.report_path.read_text())
    reasons = {s["key"]: s["reason"] for s in report["skipped"]}
    assert set(reasons) == set(BAD), sorted(set(reasons) ^ set(BAD))
    for key, pattern in BAD.items():
        assert key in ledger.index, key
        status = ledger.loc[key, "status"]
        assert status == reasons[key], (key, status, reasons[key])
        assert pd.Series([status]).str.match(pattern).all(), (key, status)
        assert ledger.loc[key, "n_samples"] == 0 and ledger.loc[key, "n_selected"] == 0
    assert report["ignored"] == ["notes.txt"] and result.counts["ignored"] == 1
    assert result.counts["skipped"] == len(BAD)
    # Nothing is retried or lost on the next run: every file, good or bad, is unchanged.
    again = datapool.run(tmp / "mixed", tmp / "pool", proportion_samples=1.0, progress=False)
    assert again.run_index is None and again.counts["unchanged"] == len(ledger)


def test_good_files_are_processed_exactly_as_in_a_clean_run(corpus):
    tmp, clean_result, result = corpus
    clean, mixed = Pool.open(tmp / "clean_pool"), Pool.open(tmp / "pool")
    # Same candidates, so the same selection in the same order (inside_link.jpg, a duplicate of
    # img0.jpg, is a candidate in both and selected in neither).
    assert mixed.filenames == clean.filenames
    for c in ("frames_embedded", "selected", "files_ok"):
        assert result.counts[c] == clean_result.counts[c], c
    a = dict(zip(clean.filenames, clean.embeddings))
    b = dict(zip(mixed.filenames, mixed.embeddings))
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=0, atol=1e-6, err_msg=name)
    ok = mixed.ledger[mixed.ledger["status"] == "ok"]
    assert sorted(ok["key"]) == sorted(clean.ledger["key"])
    assert set(ODD_NAMES) <= set(mixed.filenames)


def test_an_animated_gif_gives_every_frame_and_a_multi_page_tiff_its_first_page(corpus):
    tmp, _, _ = corpus
    from datapool.ingest.decode import iter_frames
    from datapool.ingest.embed import Embedder

    pool = Pool.open(tmp / "pool")
    emb = dict(zip(pool.filenames, pool.embeddings))
    ledger = pool.ledger.set_index("key")
    assert ledger.loc["anim.gif", "n_samples"] == 5 and ledger.loc["pages.tiff", "n_samples"] == 1
    # The TIFF's sample is its first page: the same pixels as a lossless PNG of page 0.
    embedder = Embedder(None, None, 1)
    pages = {}
    for i in (0, 1):
        png = write_image(tmp / f"page{i}.png", scene(60 + i))
        (frame,) = iter_frames(png, png.name, "image", embedder.size_wh)
        pages[i] = embedder.embed(frame.rgb[None])[0]
    (tiff,) = iter_frames(tmp / "mixed" / "pages.tiff", "pages.tiff", "image", embedder.size_wh)
    first = embedder.embed(tiff.rgb[None])[0]
    np.testing.assert_allclose(first, pages[0], atol=1e-5)
    assert np.linalg.norm(first - pages[1]) > 1e-2
    if "pages.tiff" in emb:  # (selected only when it differs enough from the pool)
        np.testing.assert_allclose(emb["pages.tiff"], first, atol=1e-6)
    # A link inside the source is followed: the same content as its target.
    assert (
        ledger.loc["inside_link.jpg", "n_samples"] == 1
        and ledger.loc["inside_link.jpg", "status"] == "ok"
    )


def test_odd_names_round_trip_and_formulas_are_quoted(corpus):
    tmp, _, result = corpus
    pool_dir = tmp / "pool"
    pool = Pool.open(pool_dir)
    df = pd.read_csv(pool_dir / "datapool_latest.csv", keep_default_na=False)
    assert df["filenames"].tolist() == pool.filenames  # pandas reads the exact names back
    raw = (pool_dir / "datapool_latest.csv").read_bytes()
    for name in ("=HYPERLINK(1).jpg", "+plus.jpg", "-minus.jpg", "@at.png"):
        assert b'\n"' + name.encode() + b'",' in raw, name
    assert b'\n"say ""cheese"".jpg",' in raw
    ledger_raw = (pool_dir / "ledger.csv").read_text(encoding="utf-8")
    for name in ("=HYPERLINK(1).jpg", "+plus.jpg", "-minus.jpg", "@at.png", "'quote.jpg"):
        assert f"\n'{name}," in ledger_raw, name  # escaped with a leading apostrophe ...
    assert set(ODD_NAMES) <= set(pool.ledger["key"])  # ... and read back exactly
    assert any("spreadsheet may still run them as formulas" in w for w in result.warnings)
    report = json.loads(result.report_path.read_text())
    assert report["warnings"] == result.warnings
    json.dumps(report, ensure_ascii=False).encode("utf-8")  # the report is valid UTF-8 JSON


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file: nothing to refuse")
def test_unreadable_file_is_skipped_with_its_reason(tmp_path):
    src = tmp_path / "src"
    write_image(src / "ok.jpg", scene(1))
    write_image(src / "locked.jpg", scene(2))
    (src / "locked.jpg").chmod(0)
    try:
        r = datapool.run(src, tmp_path / "pool", n_samples=5, progress=False)
    finally:
        (src / "locked.jpg").chmod(0o644)
    assert r.skipped == [
        {"key": "locked.jpg", "reason": "read failed: Permission denied; tried again next run"}
    ]
    assert Pool.open(tmp_path / "pool").filenames == ["ok.jpg"]


def _unreadable_runs(tmp: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`datapool ARGS` run by a user for whom a chmod 000 file cannot be read: this one, or, as
    root (who reads it all the same), uid 65534 by setpriv, in folders it may write."""
    env = {**os.environ, "PYTHONPATH": PACKAGE_PATH, "HOME": str(tmp)}
    as_user: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root reads a chmod 000 file, and there is no setpriv to run as another")
        as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        probe = subprocess.run([*as_user, sys.executable, "-c", "import datapool"], env=env)
        if probe.returncode != 0:
            pytest.skip("uid 65534 cannot import this datapool (its folders are not readable)")
        for p in (tmp, *tmp.rglob("*")):
            os.chown(p, 65534, 65534, follow_symlinks=False)

    def cli(*args: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*as_user, sys.executable, "-m", "datapool", *map(str, args)],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp,
            timeout=300,
        )

    return cli


def test_a_file_still_unreadable_adds_no_empty_run():
    # A file a run cannot read is tried again by every run: each of those runs committed a run
    # of no samples (`selected  0 as run-1 (stopped: no candidates)`, its report and view), so
    # an hourly job on a folder with one such file added 24 empty runs a day, and `datapool
    # undo` undid one of those, not the last real run. Now such a run commits nothing and says
    # which file it still cannot read; once the file is readable, a run reads it.
    tmp = Path(tempfile.mkdtemp(prefix="datapool-unreadable-"))  # not under pytest's 0700 one
    try:
        tmp.chmod(0o755)
        src = tmp / "src"
        write_image(src / "ok.jpg", scene(1))
        write_image(src / "locked.jpg", scene(2))
        cli = _unreadable_runs(tmp)
        (src / "locked.jpg").chmod(0)
        args = ("run", "src", "--pool", "pool", "--n-samples", 5, "--no-progress")
        first = cli(*args)
        assert first.returncode == 0, first.stderr
        assert "locked.jpg: read failed: Permission denied; tried again next run" in first.stdout
        runs = (tmp / "pool" / "runs.json").read_bytes()
        again = cli(*args)
        assert again.returncode == 0, again.stderr
        assert again.stdout.splitlines()[-3:] == [
            "skipped   1",
            "          locked.jpg: read failed: Permission denied; tried again next run",
            "nothing new: pool pool unchanged (1 sample)",
        ], again.stdout
        assert (tmp / "pool" / "runs.json").read_bytes() == runs
        assert not (tmp / "pool" / "runs" / "1").exists()
        (src / "locked.jpg").chmod(0o644)
        read = cli(*args)
        assert read.returncode == 0, read.stderr
        assert "selected  1 as run-1" in read.stdout, read.stdout
    finally:
        for p in (tmp, *tmp.rglob("*")):
            if not p.is_symlink():
                p.chmod(0o755 if p.is_dir() else 0o644)
        shutil.rmtree(tmp)
