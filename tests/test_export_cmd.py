"""Exports that can be checked, made and redone (issue 15, points 6 and 8).

- A destination that cannot take an export stops the run before any work (nothing committed).
- `datapool export POOL DEST [--run N | --all] [--mirror]` makes or redoes an export at any time;
  `--mirror` makes the folder equal the pool.
- Exported video frames are turned by the display rotation, as the embedder turns them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import av
import numpy as np
import pytest

import datapool
from datapool import Pool
from datapool.export import LIST_NAME, RECORD_NAME
from datapool.media import write_image, write_video

from .conftest import PACKAGE_PATH, clip_frames, run_cli, scene


def _cli(*args, env_extra=None, check=False):
    return run_cli(*args, env_extra=env_extra, check=check)


def _png_rgb(path):
    with av.open(str(path)) as c:
        return next(iter(c.decode(video=0))).to_ndarray(format="rgb24")


@pytest.fixture
def photos(tmp_path):
    root = tmp_path / "photos"
    for i in range(5):
        write_image(root / f"p{i}.jpg", scene(100 + i))
    return root


def test_export_to_a_file_stops_the_run_before_any_work(tmp_path, photos):
    afile = tmp_path / "afile"
    afile.write_text("not a folder\n")
    p = _cli("run", photos, "--pool", tmp_path / "pool", "--n-samples", 2, "--export", afile)
    assert p.returncode == 8, (
        p.stderr
    )  # an output that cannot be written (tests/test_exit_codes.py)
    assert len(p.stderr.strip().splitlines()) == 1 and str(afile) in p.stderr, p.stderr
    assert not (tmp_path / "pool" / "runs.json").exists()
    # So the next run is not "nothing new": it does the work, and exports.
    out = tmp_path / "out"
    p = _cli(
        "run", photos, "--pool", tmp_path / "pool", "--n-samples", 2, "--export", out, check=True
    )
    assert len((out / LIST_NAME).read_text().splitlines()) == 2


def test_export_to_s3_without_boto3_stops_the_run_before_any_work(tmp_path, photos):
    fake = tmp_path / "no_boto3"
    (fake / "boto3").mkdir(parents=True)
    (fake / "boto3" / "__init__.py").write_text("raise ImportError('No module named boto3')\n")
    env = {"PYTHONPATH": f"{fake}{os.pathsep}{PACKAGE_PATH}"}
    p = _cli(
        "run",
        photos,
        "--pool",
        tmp_path / "pool",
        "--n-samples",
        2,
        "--export",
        "s3://b/x",
        env_extra=env,
    )
    assert p.returncode != 0
    assert "s3://b/x" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert not (tmp_path / "pool" / "runs.json").exists()


def test_export_command_makes_redoes_and_mirrors(tmp_path, photos):
    pool, out = tmp_path / "pool", tmp_path / "out"
    first = datapool.run(photos, pool, n_samples=2, progress=False)
    write_image(photos / "late.jpg", scene(120))
    second = datapool.run(photos, pool, n_samples=2, progress=False)
    # The latest run by default, then run 0, then the whole pool.
    r = json.loads(_cli("export", pool, out, "--json", check=True).stdout)
    assert r["written"] == len(second.selected) == 1 and r["refused"] == []
    assert (out / LIST_NAME).read_text().splitlines() == second.selected
    _cli("export", pool, out, "--run", 0, check=True)
    assert (out / LIST_NAME).read_text().splitlines() == first.selected
    for name in first.selected + second.selected:
        assert (out / name).read_bytes() == (photos / name).read_bytes()
    # Files no export wrote stay, even with --mirror (test_mirror_removes_only_files_an_export_
    # wrote has the files it removes).
    (out / "gone.jpg").write_bytes(b"not an export's")
    (out / "sub").mkdir()
    (out / "sub" / "old.png").write_bytes(b"not an export's")
    p = _cli("export", pool, out, "--all", "--mirror", check=True)
    assert "removed   0 files" in p.stdout and "left      2 files no export wrote" in p.stdout
    held = sorted(str(f.relative_to(out)) for f in out.rglob("*") if f.is_file())
    mine = ["gone.jpg", "sub/old.png"]
    assert held == sorted([*Pool.open(pool).filenames, LIST_NAME, RECORD_NAME, *mine])
    for name in mine:
        (out / name).unlink()
    held = sorted(set(held) - set(mine))
    # A redo after the export folder was lost.
    import shutil

    shutil.rmtree(out)
    _cli("export", pool, out, "--all", check=True)
    assert sorted(str(f.relative_to(out)) for f in out.rglob("*") if f.is_file()) == held


def test_mirror_deletes_nothing_in_a_folder_no_export_made(tmp_path, photos):
    pool, home = tmp_path / "pool", tmp_path / "home"
    datapool.run(photos, pool, n_samples=2, progress=False)
    home.mkdir()
    (home / "thesis.txt").write_text("precious\n")
    p = _cli("export", pool, home, "--mirror")
    assert p.returncode == 4 and "not an export folder" in p.stderr
    assert (home / "thesis.txt").read_text() == "precious\n"


def test_export_command_refuses_bad_runs_and_pools(tmp_path, photos):
    pool = tmp_path / "pool"
    datapool.run(photos, pool, n_samples=2, progress=False)
    p = _cli("export", pool, tmp_path / "o", "--run", 5)
    assert p.returncode == 4 and "--run 5" in p.stderr and len(p.stderr.splitlines()) == 1
    p = _cli("export", tmp_path / "nopool", tmp_path / "o")
    assert p.returncode != 0 and "no pool at" in p.stderr and "no such folder" in p.stderr


def test_exported_video_frames_are_turned_like_the_embedder_turns_them(tmp_path):
    """A phone video stored 96x64 with a 90-degree display rotation is shown 64x96; the export
    writes what the player shows and the embedder sees."""
    src = tmp_path / "src"
    frames = clip_frames(7, 6, h=64, w=96)
    write_video(src / "phone.mp4", frames, fps=10, rotation=90, crf=0)
    r = datapool.run(
        src, tmp_path / "pool", n_samples=2, progress=False, export=str(tmp_path / "out")
    )
    assert r.export is not None and r.export.written
    for name in r.export.written:
        rgb = _png_rgb(tmp_path / "out" / name)
        index = int(name.rsplit("-", 2)[1])
        assert rgb.shape == (96, 64, 3)  # turned: the stored picture is 64 high, 96 wide
        expected = np.rot90(frames[index], 1)
        assert np.abs(rgb.astype(int) - expected.astype(int)).mean() < 8


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_exported_files_are_readable_as_the_umask_allows(tmp_path, photos, umask):
    """Not 0600 (mkstemp's mode): a training job under another user reads the export."""
    pool = tmp_path / "pool"
    old = os.umask(umask)
    try:
        datapool.run(photos, pool, n_samples=2, progress=False, export=str(tmp_path / "a"))
        _cli("export", pool, tmp_path / "b", check=True)
    finally:
        os.umask(old)
    files = [f for d in ("a", "b") for f in (tmp_path / d).rglob("*") if f.is_file()]
    assert len(files) == 8  # 2 samples, the list and the record in each
    for f in files:
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask, f


def test_export_refuses_the_pools_source_folder_itself(tmp_path, photos):
    pool = tmp_path / "pool"
    datapool.run(photos, pool, n_samples=2, progress=False)
    before = sorted(photos.iterdir())
    p = _cli("export", pool, photos)
    assert p.returncode == 4 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "is the pool's source" in p.stderr and "another folder" in p.stderr, p.stderr
    assert sorted(photos.iterdir()) == before
    p = _cli("export", pool, photos / "sub" / "..")  # the same folder, spelt otherwise
    assert p.returncode == 4 and "is the pool's source" in p.stderr, p.stderr


def _digest(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_export_refuses_the_pool_folder_inside_it_and_around_it(tmp_path, photos):
    """An export into the pool mixed samples with the pool's files, and a later --mirror
    deleted the pool (trial: `export P P` then `export P P --mirror`; `export ds/pool ds`)."""
    ds = tmp_path / "ds"
    pool = ds / "pool"
    datapool.run(photos, pool, n_samples=2, progress=False)
    before = _digest(ds)
    for dest in (pool, pool / "exp", ds, pool / ".."):
        p = _cli("export", pool, dest)
        assert p.returncode == 4 and len(p.stderr.strip().splitlines()) == 1, p.stderr
        assert "export to a folder apart from the pool" in p.stderr, p.stderr
    r = _cli("run", photos, "--pool", pool, "--n-samples", 1, "--export", pool / "x")
    assert r.returncode == 4 and "the pool's folder or inside it" in r.stderr, r.stderr
    assert _digest(ds) == before
    assert _cli("export", pool, tmp_path / "apart").returncode == 0


def test_export_refuses_source_files_that_changed_or_went_since_they_were_selected(tmp_path):
    """The export copies a sample only while its source file is the one the run embedded (its
    ledger row: size and mtime, or the same bytes); a changed file, or a gone one, is refused."""
    src, pool, out = tmp_path / "src", tmp_path / "pool", tmp_path / "out"
    for i in range(3):
        write_image(src / f"p{i}.jpg", scene(100 + i))
    write_video(src / "clip.mp4", clip_frames(7, 6), fps=10)
    r = datapool.run(src, pool, n_samples=20, progress=False)
    frames = [n for n in r.selected if n.endswith("-mp4.png")]
    assert {"p0.jpg", "p1.jpg", "p2.jpg"} <= set(r.selected) and frames
    kept = (src / "p2.jpg").read_bytes()
    write_image(src / "p0.jpg", np.zeros((96, 128, 3), np.uint8))  # black: never embedded
    write_video(src / "clip.mp4", clip_frames(9, 6), fps=10)  # re-encoded, other frames
    (src / "p1.jpg").unlink()
    st = (src / "p2.jpg").stat()  # touched (same bytes, new mtime): still the selected file
    os.utime(src / "p2.jpg", ns=(st.st_atime_ns, st.st_mtime_ns + 10**10))
    p = _cli("export", pool, out)
    assert p.returncode == 1, p.stdout + p.stderr
    assert (out / LIST_NAME).read_text().splitlines() == ["p2.jpg"]
    assert sorted(f.name for f in out.iterdir()) == sorted([LIST_NAME, RECORD_NAME, "p2.jpg"])
    assert (out / "p2.jpg").read_bytes() == kept
    changed = "changed since it was selected: run `datapool run` again to re-embed it"
    for name in ["p0.jpg", *frames]:
        assert f"refused '{name}': {changed}" in p.stdout, p.stdout
    assert "refused 'p1.jpg': no longer in the source" in p.stdout, p.stdout
    assert "next run" not in p.stdout
    n = len(frames) + 2
    counts = f"({n - 1} changed since they were selected, 1 no longer in the source)"
    assert f"refused   {n} samples, not exported {counts}" in p.stdout, p.stdout
    # The fix the message names: a run embeds the changed files again; then they export.
    r2 = datapool.run(src, pool, n_samples=20, progress=False)
    assert "p0.jpg" in r2.selected
    p = _cli("export", pool, out, "--run", 1)
    assert (out / "p0.jpg").read_bytes() == (src / "p0.jpg").read_bytes(), p.stdout


def test_mirror_removes_only_files_an_export_wrote(tmp_path, photos):
    pool, out = tmp_path / "pool", tmp_path / "out"
    first = datapool.run(photos, pool, n_samples=2, progress=False, export=str(out))
    write_image(photos / "late.jpg", scene(120))
    second = datapool.run(photos, pool, n_samples=2, progress=False, export=str(out))
    (out / "my_labels.json").write_text("{}\n")
    (out / "annotations").mkdir()
    (out / "annotations" / "a.txt").write_text("mine\n")
    p = _cli("export", pool, out, "--run", 1, "--mirror", check=True)
    # run 0's samples were written by an export (the run's) and are not run 1's: they go.
    assert "removed   2 files no longer selected" in p.stdout, p.stdout
    assert "left      2 files no export wrote" in p.stdout, p.stdout
    held = sorted(str(f.relative_to(out)) for f in out.rglob("*") if f.is_file())
    mine = ["my_labels.json", "annotations/a.txt"]
    assert held == sorted([*second.selected, LIST_NAME, RECORD_NAME, *mine])
    assert not set(first.selected) & set(held)
    # A folder an older datapool exported (no record of its files but selected_filenames.txt):
    # the files that list names are the export's.
    _cli("export", pool, out, "--run", 0, check=True)
    for f in out.glob(".datapool*"):
        f.unlink()
    p = _cli("export", pool, out, "--run", 1, "--mirror", check=True)
    assert "removed   2 files no longer selected" in p.stdout, p.stdout
    assert (out / "my_labels.json").exists() and (out / "annotations" / "a.txt").exists()


def test_mirror_deletes_no_file_through_a_folder_link(tmp_path):
    """An exported name whose folder is now a symbolic link (made by the user) is not followed
    out of the export folder; the emptied folders of removed files go."""
    src, pool, out = tmp_path / "src", tmp_path / "pool", tmp_path / "out"
    for i, name in enumerate(["cam/a.jpg", "cam/deep/b.jpg", "sub/c.jpg"]):
        write_image(src / name, scene(100 + i))
    datapool.run(src, pool, n_samples=3, progress=False, export=str(out))
    write_image(src / "d.jpg", scene(110))
    datapool.run(src, pool, n_samples=1, progress=False)
    elsewhere = tmp_path / "elsewhere"
    (out / "sub").rename(elsewhere)
    (out / "sub").symlink_to(elsewhere, target_is_directory=True)
    p = _cli("export", pool, out, "--mirror", check=True)
    assert "removed   2 files no longer selected" in p.stdout, p.stdout
    assert (elsewhere / "c.jpg").read_bytes() == (src / "sub" / "c.jpg").read_bytes()
    assert not (out / "cam").exists()
    assert sorted(f.name for f in out.iterdir()) == sorted(["d.jpg", "sub", LIST_NAME, RECORD_NAME])


def test_export_to_a_file_exits_as_an_unwritable_output(tmp_path, photos):
    pool = tmp_path / "pool"
    datapool.run(photos, pool, n_samples=2, progress=False)
    (tmp_path / "afile").write_text("x\n")
    p = _cli("export", pool, tmp_path / "afile")
    assert p.returncode == 8 and "is a file, not a folder" in p.stderr, p.stderr


def test_an_animated_gif_or_apng_is_pooled_listed_and_exported_frame_by_frame(tmp_path):
    """An animated GIF or APNG is read as a short video (it gave one sample, its first frame,
    and the rest of the clip was dropped without a word): each frame is a sample named as a
    video's frames are, `ls` shows its frame number, and export writes it as a PNG, turned as
    the embedder turned it (the APNG's EXIF orientation 6: a quarter turn clockwise)."""
    from PIL import Image

    src = tmp_path / "src"
    src.mkdir()
    colours = ((255, 0, 0), (0, 255, 0), (0, 0, 255))
    frames = [Image.new("RGB", (60, 40), c) for c in colours]
    for im in frames:  # a white left edge, to see the turn
        im.paste((255, 255, 255), (0, 0, 6, 40))
    frames[0].save(src / "clip.gif", save_all=True, append_images=frames[1:], duration=100)
    exif = Image.Exif()
    exif[0x0112] = 6
    frames[0].save(
        src / "turned.png", save_all=True, append_images=frames[1:], duration=100, exif=exif
    )
    Image.new("RGB", (60, 40), (255, 255, 0)).save(src / "still.gif")  # one frame: an image
    pool = tmp_path / "pool"
    datapool.run(src, pool, n_samples=100, progress=False)
    p = Pool.open(pool)
    ledger = p.ledger.set_index("key")
    assert ledger.loc["clip.gif", "n_samples"] == 3 and ledger.loc["turned.png", "n_samples"] == 3
    animated = [f"clip-{i}-gif.png" for i in range(3)] + [f"turned-{i}-png.png" for i in range(3)]
    assert sorted(p.filenames) == sorted([*animated, "still.gif"])
    ls = _cli("ls", pool, "--json", check=True)
    rows = {r["filename"]: r for r in json.loads(ls.stdout)}
    assert (rows["clip-2-gif.png"]["source_file"], rows["clip-2-gif.png"]["frame"]) == (
        "clip.gif",
        2,
    )
    assert rows["still.gif"]["frame"] is None
    out = tmp_path / "out"
    _cli("export", pool, out, "--all", check=True)
    assert (out / "still.gif").read_bytes() == (src / "still.gif").read_bytes()
    for name in animated:
        rgb = _png_rgb(out / name)
        colour = np.array(colours[int(name.split("-")[1])])
        if name.startswith("clip"):
            assert rgb.shape == (40, 60, 3) and (rgb[:, 6:] == colour).all(), name
        else:  # turned: the white edge is at the top, 60 high and 40 wide
            assert rgb.shape == (60, 40, 3), name
            assert (rgb[:6] == 255).all() and (rgb[6:] == colour).all(), name


def test_a_new_frame_sampling_says_the_animations_already_read_keep_theirs(tmp_path):
    """--frame-stride on a pool that holds an animated GIF: the GIF is unchanged, so it keeps
    the frames it was read with, and the run says so, as it says for videos."""
    from PIL import Image

    src = tmp_path / "src"
    src.mkdir()
    frames = [Image.new("RGB", (60, 40), (40 * i, 255 - 40 * i, 0)) for i in range(4)]
    frames[0].save(src / "clip.gif", save_all=True, append_images=frames[1:], duration=100)
    pool = tmp_path / "pool"
    datapool.run(src, pool, n_samples=100, progress=False)
    r = datapool.run(src, pool, n_samples=100, frame_stride=2, progress=False)
    (warning,) = [w for w in r.warnings if "frame sampling" in w]
    assert "(--frame-stride 2)" in warning and "(every frame)" in warning


def test_an_export_to_a_url_other_than_a_bucket_is_refused_in_one_line(tmp_path) -> None:
    """Before, `--export gs://b/e` (and `datapool export POOL gs://b/e`) wrote a local folder
    `gs:/b/e` and said it had exported there; gs:// is a destination now (tests/test_export_gcs.py),
    and a URL of any other scheme is refused so."""
    src = tmp_path / "src"
    write_image(src / "a.jpg", scene(1))
    datapool.run(src, tmp_path / "pool", n_samples=1, progress=False, thumbnails=False)
    for args in (
        ("run", src, "--pool", tmp_path / "pool", "--n-samples", "1", "--export", "az://b/e"),
        ("export", tmp_path / "pool", "az://b/e"),
    ):
        r = subprocess.run(  # (in tmp_path: where a folder `gs:` was made)
            [sys.executable, "-m", "datapool", *map(str, args)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": PACKAGE_PATH},
            cwd=tmp_path,
            timeout=300,
            check=False,
        )
        assert r.returncode == 4, r.stderr
        assert r.stderr == (
            "datapool: error: cannot export to az://b/e: exports are written to a folder, "
            "s3://bucket/prefix or gs://bucket/prefix, not to az://; export to a folder and copy "
            "it from there\n"
        )
        assert not (tmp_path / "az:").exists()


def _run_whose_export_fails(monkeypatch, module, src, pool, dest: str):
    """A run with `--export dest` whose export fails after its commit: `dest` becomes a file
    once the run has committed (`module`'s commit point)."""
    from pathlib import Path

    real = module.point

    def block_dest(name: str) -> None:
        real(name)
        if name == "committed" and not Path(dest).exists():
            Path(dest).write_text("not a folder")

    monkeypatch.setattr(module, "point", block_dest)
    with pytest.raises(datapool.OutputWriteError, match="--run 0"):
        datapool.run(src, pool, n_samples=2, progress=False, export=dest)
    monkeypatch.setattr(module, "point", real)
    os.unlink(dest)


def _export_part(page: bytes) -> str:
    return page.decode().split("<section id='export'>", 1)[1].split("</section>", 1)[0]


def test_a_later_export_of_a_run_is_recorded_in_its_report(tmp_path, photos, monkeypatch):
    """A run whose --export failed leaves a page that says the export did not finish, with the
    line that redoes it. The redo (`datapool export POOL DEST --run N`) exported, but the
    report said so still, and report.json held no export: the redo is now committed into the
    run's report.json and report.html, as `run --export` commits it. The destination, typed
    relative, is recorded absolute (it was recorded as typed: `to out`). `--all` is of no one
    run and records nothing; the default, the latest run, is one run and records."""
    from datapool.cli import main
    from datapool.pool import journal

    pool = tmp_path / "pool"
    monkeypatch.chdir(tmp_path)
    _run_whose_export_fails(monkeypatch, journal, photos, pool, "out")
    report, page = pool / "runs" / "0" / "report.json", pool / "runs" / "0" / "report.html"
    part = _export_part(page.read_bytes())
    assert "did not finish" in part and f"To {tmp_path / 'out'}, after" in part, part
    assert f"datapool export {pool} {tmp_path / 'out'} --run 0" in part, part
    assert "export" not in json.loads(report.read_text())

    assert main(["export", str(pool), "out", "--run", "0", "-q"]) == 0
    recorded = json.loads(report.read_text())["export"]
    assert recorded["dest"] == str(tmp_path / "out") and recorded["written"] == 2, recorded
    part = _export_part(page.read_bytes())
    assert "did not finish" not in part and f"<td>{tmp_path / 'out'}</td>" in part, part
    assert "<th>exported</th><td>2 samples</td>" in part, part
    assert not list(pool.glob("*.journal*"))  # one commit, through the journal

    # --all: no run's report changes; the default (the latest run): its report does.
    before = (report.read_bytes(), page.read_bytes())
    assert main(["export", str(pool), "all", "--all", "-q"]) == 0
    assert (report.read_bytes(), page.read_bytes()) == before
    assert main(["export", str(pool), "again", "-q"]) == 0
    assert json.loads(report.read_text())["export"]["dest"] == str(tmp_path / "again")
    assert f"<td>{tmp_path / 'again'}</td>" in _export_part(page.read_bytes())


def test_a_later_export_while_a_run_holds_the_pool_exports_and_says_why_unrecorded(
    tmp_path, photos
):
    """An export never waits for a run: with the pool locked (a run in progress) it exports,
    and only its run's report cannot take what it did, which it says in a warning."""
    from datapool.pool.lock import PoolLock

    pool, out = tmp_path / "pool", tmp_path / "out"
    datapool.run(photos, pool, n_samples=2, progress=False)
    report = (pool / "runs" / "0" / "report.json").read_bytes()
    with PoolLock(pool):
        p = _cli("export", pool, out)
    assert p.returncode == 0, p.stderr
    assert "exported  2 samples" in p.stdout, p.stdout
    warning = "the report of run 0 does not hold what this export did: pool"
    assert warning in p.stderr and "is locked by another datapool run" in p.stderr, p.stderr
    assert (pool / "runs" / "0" / "report.json").read_bytes() == report


def test_the_default_export_of_the_latest_run_says_so(tmp_path, photos):
    # `datapool export POOL DEST` exports the latest run's samples, not the pool's: the summary
    # said `exported  1 sample to DEST` of a pool of 3, and a user took it for the whole pool.
    pool = tmp_path / "pool"
    datapool.run(photos, pool, n_samples=2, progress=False)
    p = _cli("export", pool, tmp_path / "one", check=True)
    assert "latest" not in p.stdout, p.stdout  # one run: its samples are the pool's
    write_image(photos / "late.jpg", scene(120))
    datapool.run(photos, pool, n_samples=2, progress=False, tag="late")
    p = _cli("export", pool, tmp_path / "out", check=True)
    assert p.stdout.splitlines() == [
        f"exported  1 sample to {tmp_path / 'out'}",
        "run       1 (late), the pool's latest run only: --all exports all 3 samples of the "
        "pool, --run N another run's",
    ], p.stdout
    for more in (["--all"], ["--run", "0"], ["--run", "late"]):
        p = _cli("export", pool, tmp_path / "more", *more, check=True)
        assert "latest" not in p.stdout, (more, p.stdout)


def test_an_export_whose_report_cannot_be_written_does_not_say_nothing_was_done(tmp_path, photos):
    # A pool the user may read but not write (a shared, read-only mount): the export is made,
    # and the warning that the run's report cannot record it ended with the lock's own words,
    # `...; the pool folder must be writable; nothing was done`, under `exported  2 samples`.
    # (A folder where the lock file goes fails as a read-only pool does, for root too.)
    pool, out = tmp_path / "pool", tmp_path / "out"
    datapool.run(photos, pool, n_samples=2, progress=False)
    (pool / ".datapool.lock").unlink(missing_ok=True)
    (pool / ".datapool.lock").mkdir()
    p = _cli("export", pool, out)
    assert p.returncode == 0, p.stderr
    assert "exported  2 samples" in p.stdout, p.stdout
    assert len((out / LIST_NAME).read_text().splitlines()) == 2
    (warning,) = p.stderr.splitlines()
    assert warning.startswith(
        "datapool: warning: the report of run 0 does not hold what this export did: "
        f"cannot open the lock file {pool / '.datapool.lock'} ("
    ), warning
    assert "nothing was done" not in warning, warning
