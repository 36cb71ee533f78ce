"""Names an export writes that one file system takes for one file (macOS APFS and HFS+, Windows
NTFS, exFAT drives, SMB shares ignore case and Unicode normalisation): `A.jpg` and `a.jpg`,
`café.jpg` precomposed and decomposed. A bucket or a Linux folder holds both; an export that
wrote both under those names lost one of them, silently, wherever the folder was or was copied
to. Each such name after the first is now written with a suffix made from its own spelling, and
the export says so; names Windows cannot hold are written as they are, with one warning.

This machine cannot mount a case-insensitive file system (no CONFIG_UNICODE, no FAT tools), so
the tests export to an ordinary folder and look at it as such a file system would: the exported
files by their folded names (`naming.folded`), where every sample must still be its own file."""

from __future__ import annotations

import json
import unicodedata

import pytest

import datapool
from datapool import Pool
from datapool.export import LIST_NAME, RECORD_NAME
from datapool.media import write_image
from datapool.naming import folded, portable_names, windows_name_problem

from .conftest import run_cli, scene, write_media

NFC = unicodedata.normalize("NFC", "café.jpg")
NFD = unicodedata.normalize("NFD", "café.jpg")


def _as_folding_fs_sees(folder):
    """folded name -> [exported files of it]: what one file each would be on macOS or Windows."""
    seen: dict[str, list[str]] = {}
    for f in folder.rglob("*"):
        if f.is_file() and f.name != RECORD_NAME:
            name = f.relative_to(folder).as_posix()
            seen.setdefault(folded(name), []).append(name)
    return seen


@pytest.fixture
def clashing(tmp_path):
    """A folder whose names clash but for case or normalisation: images and videos (frames)."""
    root = tmp_path / "src"
    names = ["A.jpg", "a.jpg", NFC, NFD, "Cam/x.jpg", "cam/x.jpg", "Clip.mp4", "clip.mp4"]
    for i, name in enumerate(names):
        write_media(root / name, seed=10 + i, frames=3)
    return root


def test_an_export_keeps_every_sample_where_case_and_normalisation_are_ignored(tmp_path, clashing):
    pool, out = tmp_path / "pool", tmp_path / "out"
    p = run_cli("run", clashing, "--pool", pool, "--proportion", 1, "--export", out, "--json")
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    names = Pool.open(pool).filenames
    assert len(names) == 4 * 1 + 2 * 1 + 2 * 3  # 6 images, 2 videos of 3 frames
    # Every sample is its own file even where `A.jpg` and `a.jpg` are one.
    seen = _as_folding_fs_sees(out)
    assert all(len(files) == 1 for files in seen.values()), seen
    listed = (out / LIST_NAME).read_text(encoding="utf-8").splitlines()
    assert len(listed) == len(set(map(folded, listed))) == len(names) == result["export"]["written"]
    # Each listed file is there, and an image holds its own source file's bytes.
    renamed = result["export"]["renamed"]
    assert sorted(listed) == sorted(renamed.get(n, n) for n in names)
    for name in names:
        if name.endswith(".jpg"):
            assert (out / renamed.get(name, name)).read_bytes() == (clashing / name).read_bytes()
    # The first of each clash (in code point order) keeps its name; the later ones are suffixed.
    assert {"A.jpg", "Cam/x.jpg", NFD, "Clip-0-mp4.png"} <= set(listed)
    assert set(renamed) == {"a.jpg", "cam/x.jpg", NFC, "clip-0-mp4.png", "clip-1-mp4.png"} | {
        "clip-2-mp4.png"
    }
    assert renamed["a.jpg"].startswith("a~") and renamed["a.jpg"].endswith(".jpg")
    assert renamed["cam/x.jpg"].startswith("cam/x~")
    # Said once, in the JSON's warnings (not also on stderr: --json).
    (warning,) = [w for w in result["export"]["warnings"] if "case" in w]
    assert warning.startswith("6 exported names differ from another only by case or Unicode")
    assert "a.jpg -> " + renamed["a.jpg"] in warning
    assert "Unicode" not in p.stderr, p.stderr


def test_a_later_export_into_the_folder_keeps_the_earlier_files(tmp_path):
    src, pool, out = tmp_path / "src", tmp_path / "pool", tmp_path / "out"
    write_image(src / "A.jpg", scene(1))
    datapool.run(src, pool, proportion_samples=1, progress=False, export=str(out))
    write_image(src / "a.jpg", scene(2))
    r = datapool.run(src, pool, proportion_samples=1, progress=False, export=str(out))
    assert r.export is not None and r.selected == ["a.jpg"]
    (new,) = (out / LIST_NAME).read_text().splitlines()
    assert new == r.export.renamed["a.jpg"] != "a.jpg"
    assert (out / "A.jpg").read_bytes() == (src / "A.jpg").read_bytes()  # the first run's
    assert (out / new).read_bytes() == (src / "a.jpg").read_bytes()
    assert all(len(files) == 1 for files in _as_folding_fs_sees(out).values())
    # Redone, the export writes the same names; --mirror keeps both files and removes nothing.
    p = run_cli("export", pool, out, "--all", "--mirror", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["removed"] == 0
    assert sorted((out / LIST_NAME).read_text().splitlines()) == sorted(["A.jpg", new])
    assert (out / new).read_bytes() == (src / "a.jpg").read_bytes()
    assert (out / "A.jpg").read_bytes() == (src / "A.jpg").read_bytes()
    # Into a new folder, as text: the summary counts the renamed, the warning names them once.
    p = run_cli("export", pool, tmp_path / "again", "--all")
    assert p.returncode == 0, p.stderr
    assert "exported  2 samples to" in p.stdout
    assert p.stdout.rstrip().endswith("; 1 under a suffixed name (see the warning)"), p.stdout
    assert p.stderr.count(f"a.jpg -> {new}") == 1 and p.stderr.count("datapool: warning:") == 1
    assert (tmp_path / "again" / new).read_bytes() == (src / "a.jpg").read_bytes()


def test_names_windows_cannot_hold_are_written_with_one_warning(tmp_path):
    src, pool, out = tmp_path / "src", tmp_path / "pool", tmp_path / "out"
    for i, name in enumerate(["x:y.jpg", "what?.jpg", "con.jpg", "ok.jpg"]):
        write_image(src / name, scene(i))
    p = run_cli("run", src, "--pool", pool, "--proportion", 1, "--export", out, "--no-progress")
    assert p.returncode == 0, p.stderr
    lines = [line for line in p.stderr.splitlines() if "Windows" in line]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("datapool: warning: 3 exported names cannot be written on Windows")
    assert "'x:y.jpg'" in lines[0] and "ok.jpg" not in lines[0]
    assert (out / "x:y.jpg").read_bytes() == (src / "x:y.jpg").read_bytes()


def test_portable_names_rule():
    assert portable_names(["b.jpg", "a.jpg"]) == {}
    # Code point order: "A.JPG" < "A.jpg" < "a.jpg": the first keeps its name.
    got = portable_names(["a.jpg", "A.jpg", "A.JPG"])
    assert set(got) == {"a.jpg", "A.jpg"}
    assert got["A.jpg"].startswith("A~") and got["A.jpg"].endswith(".jpg")
    assert portable_names(["A.JPG", "A.jpg", "a.jpg"]) == got
    # The suffix depends on the name alone: the same in any company.
    assert portable_names(["A.jpg", "a.jpg"])["a.jpg"] == got["a.jpg"]
    assert portable_names(["a.jpg"], kept=["A.JPG"])["a.jpg"] == got["a.jpg"]
    # A file already in the folder keeps its name; an earlier suffixed name is used again.
    assert portable_names(["A.jpg", "a.jpg"], kept=["a.jpg"]) == {"A.jpg": got["A.jpg"]}
    assert portable_names(["a.jpg"], kept=["A.jpg", got["a.jpg"]]) == {"a.jpg": got["a.jpg"]}
    # Folders: one file per folded path; files in folders that differ by case alone do not clash.
    assert portable_names(["Cam/x.jpg", "cam/y.jpg"]) == {}
    assert set(portable_names(["Cam/x.jpg", "cam/x.jpg"])) == {"cam/x.jpg"}
    assert portable_names([NFC, NFD]) == {NFC: portable_names([NFC], kept=[NFD])[NFC]}
    assert set(portable_names(["noext", "NOEXT"])) == {"noext"}
    assert portable_names(["noext", "NOEXT"])["noext"].startswith("noext~")


def test_a_long_name_is_cut_to_make_room_for_its_suffix():
    long = "d/" + "é" * 100 + "x" * 51 + ".jpg"  # a file name of 255 bytes, the most there is
    assert len(long.split("/")[1].encode()) == 255
    new = portable_names([long, long.upper()])[long]
    assert new.startswith("d/" + "é" * 100) and new.endswith(".jpg") and "~" in new
    assert len(new.split("/")[1].encode()) <= 255
    assert new == portable_names([long], kept=[long.upper()])[long]  # the same cut each time


def test_portable_names_are_distinct_where_case_is_ignored():
    names = [a + b + c + ".jpg" for a in "aA" for b in "bB" for c in ("é", "e\u0301", "É")]
    kept = ["AB" + "é.jpg", "x.png"]
    out = portable_names(names, kept)
    written = [out.get(n, n) for n in names if n not in kept]
    assert len({folded(n) for n in [*written, *kept]}) == len(written) + len(kept)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("a:b.jpg", ":"),
        ("dir/what?.png", "?"),
        ('q"uote.jpg', '"'),
        ("a<b>.jpg", "<"),
        ("pipe|.jpg", "|"),
        ("star*.jpg", "*"),
        ("back\\slash.jpg", "\\"),
        ("tab\t.jpg", "\\t"),
        ("dir./a.jpg", "ends in a dot"),
        ("dir /a.jpg", "ends in a dot or a space"),
        ("CON", "reserved"),
        ("x/nul.jpg", "reserved"),
        ("Com1.png", "reserved"),
        ("lpt9.tar.gz", "reserved"),
    ],
)
def test_windows_name_problems(name, why):
    problem = windows_name_problem(name)
    assert problem is not None and why in problem


@pytest.mark.parametrize("name", ["a.jpg", "dir/b.png", "console.jpg", "com10.jpg", "a.b.c.jpg"])
def test_names_windows_holds(name):
    assert windows_name_problem(name) is None


def test_a_runs_export_warnings_are_in_its_report_json(tmp_path):
    # `run --export` warned of renamed names and names Windows cannot hold on stderr only: the
    # run's report.json (committed before the export) did not say what the export did. (The
    # Python API takes the export folder as a Path, as the pool's: it was a TypeError.)
    src = tmp_path / "src"
    for i, name in enumerate(["A.jpg", "a.jpg", "c:d.jpg"]):
        write_image(src / name, scene(700 + i))
    res = datapool.run(src, tmp_path / "pool", n_samples=5, export=tmp_path / "out", progress=False)
    report = json.loads((tmp_path / "pool" / "runs" / "0" / "report.json").read_text())
    export = report["export"]
    assert export == res.export.to_json()
    assert export["written"] == 3 and set(export["renamed"]) <= {"A.jpg", "a.jpg"}
    assert len(export["renamed"]) == 1
    (case, windows) = export["warnings"]
    assert "differs from another only by case" in case and "'c:d.jpg'" in windows
    assert Pool.open(tmp_path / "pool").runs[0]["tag"] == "initial-tag"  # the pool opens
