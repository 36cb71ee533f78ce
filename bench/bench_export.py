"""Exporting many small images to a local folder: datapool's batched durable writes against the
one-fsync-per-file writes it made before, in the same run on the same files.

An export writes each sample durably: never a part of a file at its name, even after a power cut.
Before, each file was written beside its place, fsynced and renamed (one journal commit per file:
~3 ms on ext4, 60 of the 80 s of exporting 21,000 images). Now a batch of files is written, the
file system is flushed once (syncfs), and then they are renamed (`_fsio.BatchedWrites`). Both
write the same bytes under the same names (checked by SHA-256 of every file, and the same
selected_filenames.txt); a plain `shutil.copyfile` loop with no durability is timed as the floor.

    python bench/bench_export.py                 # 3000 images, 3 repeats
    python bench/bench_export.py --quick         # 300 images, 1 repeat
    python bench/bench_export.py --dir /tmp/x    # where the source and exports go (same disk)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from datapool import export as export_mod
from datapool._fsio import atomic_write_bytes
from datapool.media import write_image
from datapool.sources import open_source


def make_source(root: Path, n: int) -> list[tuple[str, str, str]]:
    """`n` small JPEGs (24-96 px, 1-5 KB) in 3-deep folders; the samples that export them."""
    rng = np.random.default_rng(5)
    samples = []
    for i in range(n):
        key = f"site {i % 3}/cam{i // 7 % 2}/day {i // 3 % 2}/img,{i:05d}.jpg"  # 12 folders
        h, w = (int(v) for v in rng.integers(24, 96, 2))
        grid = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        rgb = np.repeat(np.repeat(grid, -(-h // 4), 0), -(-w // 4), 1)[:h, :w]
        write_image(root / key, np.ascontiguousarray(rgb))
        samples.append((key, key, "image"))
    return samples


def old_write(self: object, name: str, data: bytes) -> None:
    """_LocalDest.write before the batches: fsync and rename each file (its checks elided: the
    names here are all plain)."""
    dest = self  # type: ignore[assignment]
    target = Path(dest.root, name)  # type: ignore[attr-defined]
    if not target.parent.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        dest._unsynced.add(target.parent.parent)  # type: ignore[attr-defined]
    atomic_write_bytes(target, data, sync_dir=False)
    dest._unsynced.add(target.parent)  # type: ignore[attr-defined]


def export_new(src: Path, samples: list[tuple[str, str, str]], dest: Path) -> None:
    r = export_mod.export_selection(open_source(src), samples, str(dest))
    assert len(r.written) == len(samples) and not r.refused, r.refused


def export_old(src: Path, samples: list[tuple[str, str, str]], dest: Path) -> None:
    saved = export_mod._LocalDest.write
    export_mod._LocalDest.write = old_write  # type: ignore[method-assign]
    try:
        export_new(src, samples, dest)
    finally:
        export_mod._LocalDest.write = saved  # type: ignore[method-assign]


def copy_floor(src: Path, samples: list[tuple[str, str, str]], dest: Path) -> None:
    for name, key, _ in samples:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / key, dest / name)
    (dest / "selected_filenames.txt").write_text("".join(f"{n}\n" for n, _, _ in samples))


def digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".datapool-export-")
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--dir", default=None)
    a = ap.parse_args()
    n, repeats = (300, 1) if a.quick else (a.n, a.repeats)
    work = Path(tempfile.mkdtemp(prefix="bench_export.", dir=a.dir))
    try:
        src = work / "src"
        samples = make_source(src, n)
        size = sum((src / k).stat().st_size for _, k, _ in samples)
        print(
            f"# bench_export: {platform.machine()}, {os.cpu_count()} CPUs, Python "
            f"{sys.version.split()[0]}; {n} JPEGs ({size / n / 1024:.1f} KB each) to a folder"
        )
        ways = {"baseline (fsync each)": export_old, "datapool (batched)": export_new}
        ways["floor (copyfile, no fsync)"] = copy_floor
        times: dict[str, list[float]] = {w: [] for w in ways}
        answers: dict[str, dict[str, str]] = {}
        for rep in range(repeats):
            for way, fn in ways.items():  # the same order each repeat: each starts after a sync
                dest = work / f"out-{rep}-{len(times[way])}-{way.split()[0]}"
                os.sync()
                t = time.perf_counter()
                fn(src, samples, dest)
                times[way].append(time.perf_counter() - t)
                answers[way] = digest(dest)
                shutil.rmtree(dest)
        base = answers["baseline (fsync each)"]
        assert len(base) == n + 1, len(base)
        for way, got in answers.items():
            assert got == base, f"{way} wrote other files or bytes than the baseline"
        print("same files and bytes (SHA-256 of each, and selected_filenames.txt): yes")
        b = statistics.median(times["baseline (fsync each)"])
        for way, ts in times.items():
            m = statistics.median(ts)
            print(f"{way:28s} median {m:7.3f} s  {n / m:8.0f} files/s  ratio {m / b:.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
