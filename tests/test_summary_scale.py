"""The run summary at scale (issue 15, point 15): a capped skipped list, where --process-all kept
the old pool, and a warning when many picks are near-duplicates."""

from __future__ import annotations

import json
from pathlib import Path

from datapool.media import write_image, write_video

from .conftest import clip_frames, run_cli, scene


def _cli(*args):
    return run_cli(*args, check=True)


def test_skipped_list_is_capped_and_the_report_has_them_all(tmp_path):
    src = tmp_path / "src"
    for i in range(3):
        write_image(src / f"ok{i}.jpg", scene(i))
    for i in range(25):
        (src / f"broken{i:02d}.jpg").write_bytes(b"not a jpeg")
    out = _cli("run", src, "--pool", tmp_path / "pool", "--n-samples", 2).stdout
    lines = out.splitlines()
    assert "skipped   25" in lines
    listed = [line for line in lines if line.strip().startswith("broken")]
    assert len(listed) == 10
    more = [line for line in lines if "... and 15 more" in line]
    assert len(more) == 1
    report = Path(more[0].rsplit(" in ", 1)[1])
    assert len(json.loads(report.read_text())["skipped"]) == 25


def test_process_all_says_where_the_old_pool_went(tmp_path):
    src = tmp_path / "src"
    for i in range(4):
        write_image(src / f"p{i}.jpg", scene(10 + i))
    pool = tmp_path / "pool"
    _cli("run", src, "--pool", pool, "--n-samples", 2)
    out = _cli("run", src, "--pool", pool, "--n-samples", 2, "--process-all").stdout
    [line] = [line for line in out.splitlines() if line.startswith("previous")]
    kept = Path(line.rsplit(" kept in ", 1)[1])
    assert kept.parent == pool / "history" and (kept / "runs.json").is_file()
    assert [r["index"] for r in json.loads((kept / "runs.json").read_text())["runs"]] == [0]
    as_json = json.loads(
        _cli("run", src, "--pool", pool, "--n-samples", 2, "--process-all", "--json").stdout
    )
    assert Path(as_json["previous_pool"]).parent == pool / "history"


def test_near_duplicate_picks_warn_and_suggest_min_distance(tmp_path):
    src = tmp_path / "src"
    frames = clip_frames(5, 30)
    write_video(src / "still.mp4", [frames[0]] * 15 + frames[:15], fps=10)
    p = _cli("run", src, "--pool", tmp_path / "pool", "--proportion", 1.0)
    warnings = [line for line in p.stderr.splitlines() if "near-duplicates" in line]
    assert len(warnings) == 1 and "--min-distance" in warnings[0], p.stderr
    # A run that already sets --min-distance is not told to.
    p = _cli("run", src, "--pool", tmp_path / "pool2", "--proportion", 1.0, "--min-distance", 0.01)
    assert "near-duplicates" not in p.stderr
