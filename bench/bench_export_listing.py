"""`datapool export --run N` of a few samples from a big local source: datapool (the source
listed only in the folders that hold the samples' files, sources.local.folder_prune) against
the way up to Session 18 (the whole source listed to check a run's few files), in one run,
alternating, each into a new folder. Both must export the same files (bytes) and refuse the
same samples.

    PYTHONPATH=python python bench/make_big_pool.py /tmp/big --n 1000000
    PYTHONPATH=python python bench/bench_export_listing.py /tmp/big/pool --run 0
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from datapool import export
from datapool.sources import local


def files_of(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != export.RECORD_NAME
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("pool")
    ap.add_argument("--run", default="0")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    prune = local.folder_prune
    work = Path(tempfile.mkdtemp(prefix="bench_export_listing."))
    print(
        f"# bench_export_listing: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{sys.version.split()[0]}, load {os.getloadavg()[0]:.1f}; {a.pool} --run {a.run}"
    )
    times: dict[str, list[float]] = {"baseline": [], "datapool": []}
    answers = {}
    try:
        for k in range(a.repeats):
            for way in ("baseline", "datapool"):
                local.folder_prune = prune if way == "datapool" else lambda keys: lambda f: False
                out = work / f"{way}{k}"
                t = time.perf_counter()
                result = export.export_pool(a.pool, str(out), run=a.run)
                times[way].append(time.perf_counter() - t)
                answers[way] = (files_of(out), result.refused, sorted(result.written))
                shutil.rmtree(out)
    finally:
        local.folder_prune = prune
        shutil.rmtree(work, ignore_errors=True)
    print(f"# load after: {os.getloadavg()[0]:.1f}")
    assert answers["baseline"] == answers["datapool"], "the exports differ"
    n = len(answers["datapool"][2])
    print(f"same files exported ({n}) and samples refused: yes")
    base = statistics.median(times["baseline"])
    for way, ts in times.items():
        med = statistics.median(ts)
        shown = ", ".join(f"{t:.2f}" for t in ts)
        print(f"{way:9s} median {med:7.2f} s  ({shown})  ratio {med / base:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
