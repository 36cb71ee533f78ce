"""The daily run on a big pool: `datapool run SRC --pool POOL --n-samples 100` finding a few new
files among a million, timed for a baseline checkout (main) and this one, alternating.

ROOT is what bench/make_big_pool.py made (ROOT/src, ROOT/pool). Each run is a fresh
`python -m datapool run` under `/usr/bin/time` (wall, peak RSS) with PYTHONPATH at one
checkout's python/ folder, so imports and start-up count as a user waits for them.

Two ways:

- copy (the default): before each run the pool is copied (`cp -a` to ROOT/bench-pool; the
  sidecar then catches up with the copy, untimed) and each run adds the same NEW images
  (ROOT/src/daily/). Both checkouts must leave the same pool: the CSV, ledger.csv and
  runs.json byte for byte (runs.json's times and timings aside), report.json likewise, the
  report page's data (its timings aside); the view's PNG is compared and said.
- --in-place: no copies (a 1,000,000-sample pool is 9 GB); the runs go into ROOT/pool itself,
  each with a folder of NEW images of its own, so each sees a pool a few samples bigger than
  the one before. Nothing is compared.

    PYTHONPATH=python python bench/make_big_pool.py /tmp/big --n 200000
    git worktree add /tmp/main-wt main && cp python/datapool/_core*.so /tmp/main-wt/python/datapool/
    PYTHONPATH=python python bench/bench_daily_run.py /tmp/big --baseline /tmp/main-wt
    PYTHONPATH=python python bench/bench_daily_run.py /tmp/big --baseline /tmp/main-wt --in-place

Prints each run, then per checkout the median wall time, CPU time (user + sys: steadier than
the wall time on a shared machine), peak RSS and the report's phase
timings, and the ratios to the baseline's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent.parent
PHASES = ("list_and_diff_s", "select_s", "view_s", "report_html_s")


def make_new_images(folder: Path, n: int, seed: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        pixels = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"new{i}.jpg", quality=80)


def python_of(checkout: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(checkout / "python")}


def catch_up(checkout: Path, pool: Path) -> None:
    """Open the pool once (untimed): a copied pool's sidecar is rebuilt (new inodes)."""
    code = (
        "import sys\nfrom datapool.pool.store import open_store\n"
        "with open_store(sys.argv[1]).session() as s:\n    len(s.pool)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(pool)], env=python_of(checkout), check=True)


def timed_run(checkout: Path, src: Path, pool: Path, n_samples: int) -> dict[str, float]:
    cmd = ["/usr/bin/time", "-f", "%e %M %U %S", sys.executable, "-m", "datapool", "run"]
    cmd += [str(src), "--pool", str(pool), "--n-samples", str(n_samples), "--no-progress"]
    p = subprocess.run(
        cmd, env=python_of(checkout), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    if p.returncode:
        raise SystemExit(f"run failed ({checkout}):\n{p.stderr}")
    wall, rss_kb, user, system = p.stderr.strip().splitlines()[-1].split()
    runs = json.loads((pool / "runs.json").read_text())["runs"]
    report = json.loads((pool / "runs" / str(len(runs) - 1) / "report.json").read_text())
    out = {
        "wall_s": float(wall),
        "cpu_s": float(user) + float(system),
        "rss_mib": int(rss_kb) / 1024,
    }
    out.update({k: float(report["timings"].get(k, 0.0)) for k in PHASES})
    return out


_VOLATILE = ("started_at", "finished_at", "timings", "elapsed_s")


def _scrub(value: object, found: list[str]) -> object:
    """`value` less the keys that hold times (and the undo record's digests of runs.json, which
    holds them); what was left out, as text, into `found`."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in _VOLATILE or (k == "files" and "csv" in value and "ledger" in value):
                found.extend(re.findall(r"[0-9a-f]{16,}|[\d.:T+-]{8,}", json.dumps(v)))
            else:
                out[k] = _scrub(v, found)
        return out
    if isinstance(value, list):
        return [_scrub(v, found) for v in value]
    return value


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            h.update(block)
    return h.hexdigest()


def outputs(pool: Path) -> dict[str, str]:
    """What a run left, as digests: the files byte for byte, runs.json and report.json less
    their times, the page with those times' text blanked."""
    found: list[str] = []
    runs = _scrub(json.loads((pool / "runs.json").read_text()), found)
    last = pool / "runs" / str(len(runs["runs"]) - 1)  # type: ignore[index]
    report = _scrub(json.loads((last / "report.json").read_text()), found)
    page = (last / "report.html").read_text()
    for text in sorted(set(found), key=len, reverse=True):
        page = page.replace(text, "")

    def digest(value: object) -> str:
        return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()

    return {
        "datapool_latest.csv": _sha(pool / "datapool_latest.csv"),
        "ledger.csv": _sha(pool / "ledger.csv"),
        "runs.json (times aside)": digest(runs),
        "report.json (times aside)": digest(report),
        "report.html (times aside)": digest(page),
        "embedding_view.png": _sha(last / "embedding_view.png"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", type=Path, help="what bench/make_big_pool.py made")
    ap.add_argument("--baseline", type=Path, required=True, help="a checkout of main")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--new", type=int, default=5, help="new images each run finds")
    ap.add_argument("--n-samples", type=int, default=100)
    ap.add_argument("--in-place", action="store_true", help="run into ROOT/pool itself")
    a = ap.parse_args()
    src, sides = a.root / "src", {"baseline": a.baseline.resolve(), "datapool": HERE}
    if not a.in_place:
        make_new_images(src / "daily", a.new, seed=12345)
    times: dict[str, list[dict[str, float]]] = {s: [] for s in sides}
    digests: dict[str, dict[str, str]] = {}
    k = 0
    for rep in range(a.repeats):
        for side in sides if rep % 2 == 0 else list(sides)[::-1]:
            if a.in_place:
                pool = a.root / "pool"
                make_new_images(src / f"daily-{side}-{time.time_ns()}", a.new, seed=100 + k)
            else:
                pool = a.root / "bench-pool"
                shutil.rmtree(pool, ignore_errors=True)
                subprocess.run(["cp", "-a", str(a.root / "pool"), str(pool)], check=True)
                catch_up(sides[side], pool)
            load = os.getloadavg()[0]
            t = timed_run(sides[side], src, pool, a.n_samples)
            times[side].append(t)
            k += 1
            print(
                f"{side:9s} run {rep}: {t['wall_s']:6.1f} s  CPU {t['cpu_s']:5.1f} s  peak RSS {t['rss_mib']:6.0f} MiB  "
                + "  ".join(f"{p[:-2]} {t[p]:.2f}" for p in PHASES)
                + f"  (load {load:.1f} before)",
                flush=True,
            )
            if not a.in_place:
                got = outputs(pool)
                if side in digests and digests[side] != got:
                    differ = [n for n in got if got[n] != digests[side][n]]
                    raise SystemExit(f"{side}: two runs on the same pool differ in {differ}")
                digests[side] = got
                shutil.rmtree(pool)
    if not a.in_place:
        for name in digests["baseline"]:
            same = digests["baseline"][name] == digests["datapool"][name]
            print(f"same {name}: {'yes' if same else 'NO'}")
        if any(
            digests["baseline"][n] != digests["datapool"][n]
            for n in digests["baseline"]
            if n != "embedding_view.png"
        ):
            print("the two checkouts left different pools")
            return 1
    base = {m: statistics.median(t[m] for t in times["baseline"]) for m in times["baseline"][0]}
    for side in sides:
        med = {m: statistics.median(t[m] for t in times[side]) for m in times[side][0]}
        print(
            f"{side:9s} median {med['wall_s']:6.1f} s  CPU {med['cpu_s']:5.1f} s  peak RSS {med['rss_mib']:6.0f} MiB  "
            + "  ".join(f"{p[:-2]} {med[p]:.2f}" for p in PHASES)
            + f"  ratio time {med['wall_s'] / base['wall_s']:.2f}, "
            f"CPU {med['cpu_s'] / base['cpu_s']:.2f}, "
            f"RSS {med['rss_mib'] / base['rss_mib']:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
