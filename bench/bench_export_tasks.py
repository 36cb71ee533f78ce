"""`datapool export POOL DEST --all` on a big pool, plain and with the labelling tools' tasks
files (`--tasks label-studio --tasks coco`, and `--pre-annotate TASK`), timed for a baseline
checkout (main) and this one, alternating. Each export is a fresh `python -m datapool export`
under `/usr/bin/time` (wall, CPU, peak RSS) into an empty DEST, with PYTHONPATH at one
checkout's python/ folder. The tasks files of both checkouts must hold the same JSON.

ROOT is what bench/make_big_pool.py made (ROOT/src, ROOT/pool); --pre-annotate needs a task in
ROOT/src/.lightly/predictions (--predictions-task writes an object-detection task `det`, one
box a file, when it is not there).

    PYTHONPATH=python python bench/make_big_pool.py /tmp/big --n 50000
    git worktree add /tmp/main-wt main && cp python/datapool/_core*.so /tmp/main-wt/python/datapool/
    PYTHONPATH=python python bench/bench_export_tasks.py /tmp/big --baseline /tmp/main-wt

Prints each export, then per checkout and flags the median wall time, CPU time (user + sys)
and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
TASK = "det"
TASKS = ["--tasks", "label-studio", "--tasks", "coco", "--url-prefix", "https://h/x/"]
VARIANTS = {"plain": [], "tasks": TASKS, "pre": [*TASKS, "--pre-annotate", TASK]}
FILES = ("label_studio_tasks.json", "coco.json", "selected_filenames.txt")


def predictions_task(src: Path) -> None:
    """An object-detection task TASK with one box in every bulk image (make_big_pool's)."""
    d = src / ".lightly" / "predictions"
    if (d / TASK / "schema.json").exists():
        return
    (d / TASK).mkdir(parents=True)
    (d / "tasks.json").write_text(json.dumps([TASK]))
    cats = [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}]
    schema = {"task_type": "object-detection", "categories": cats}
    (d / TASK / "schema.json").write_text(json.dumps(schema))
    for i, p in enumerate(sorted(src.glob("bulk/*/*.jpg"))):
        key = p.relative_to(src).as_posix()
        pred = {"category_id": i % 2, "bbox": [2, 3, 20, 10], "score": 0.8}
        out = d / TASK / (key.rsplit(".", 1)[0] + ".json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"file_name": key, "predictions": [pred]}))


def export_once(checkout: Path, root: Path, flags: list[str]) -> tuple[float, float, float]:
    """One export into ROOT/bench-out: (wall s, CPU s, peak RSS MiB)."""
    out = root / "bench-out"
    shutil.rmtree(out, ignore_errors=True)
    cmd = ["/usr/bin/time", "-f", "TIME %e %U %S %M", sys.executable, "-m", "datapool"]
    cmd += ["export", str(root / "pool"), str(out), "--all", *flags]
    env = {**os.environ, "PYTHONPATH": str(checkout / "python")}
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    m = re.search(r"TIME (\S+) (\S+) (\S+) (\d+)", p.stderr)
    if p.returncode not in (0, 1) or m is None:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    wall, user, system, rss = m.groups()
    return float(wall), float(user) + float(system), int(rss) / 1024


def outputs(root: Path) -> dict[str, object]:
    out = root / "bench-out"
    got: dict[str, object] = {}
    for f in FILES:
        if (out / f).exists():
            text = (out / f).read_text(encoding="utf-8")
            got[f] = json.loads(text) if f.endswith(".json") else text
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--baseline", type=Path, required=True, help="a checkout of main")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--variants", default=",".join(VARIANTS), help="plain,tasks,pre")
    a = ap.parse_args()
    predictions_task(a.root / "src")
    checkouts = {"baseline": a.baseline.resolve(), "datapool": HERE}
    times: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for variant in a.variants.split(","):
        flags = VARIANTS[variant]
        for i in range(a.repeats):
            order = list(checkouts.items())
            seen = {}
            for who, checkout in order if i % 2 == 0 else order[::-1]:
                t = export_once(checkout, a.root, flags)
                times.setdefault((variant, who), []).append(t)
                seen[who] = outputs(a.root)
                print(f"{variant:<6} {who:<9} {i}: {t[0]:6.2f} s  CPU {t[1]:6.2f} s  "
                      f"peak RSS {t[2]:6.0f} MiB", flush=True)  # fmt: skip
            if seen["baseline"] != seen["datapool"]:
                sys.exit(f"{variant}: the two checkouts wrote different tasks files")
    shutil.rmtree(a.root / "bench-out", ignore_errors=True)
    for (variant, who), ts in times.items():
        wall, cpu, rss = (statistics.median(x) for x in zip(*ts))
        print(
            f"{variant:<6} {who:<9} median {wall:6.2f} s  CPU {cpu:6.2f} s  peak RSS {rss:6.0f} MiB"
        )


if __name__ == "__main__":
    main()
