"""The pool at scale: parsing the pool CSV (datapool's C++ reader against pyarrow.csv, pandas and
polars), opening it through the binary sidecar, and appending 1000 rows, all in one run.

Each pool is written by the project's own writer (pool_csv.format_csv, in batches) with seeded
N(0, 1) float32 embeddings, names like `0042/img_0042137.jpg` and labels 0..19, and is kept in
--dir for the next run (it is re-used when its size matches). Every reader must give the same
matrix, bit for bit, as the one written, plus the same names and labels, before its time counts.
The file is read once before timing, so every reader sees it in the page cache.

What each timing covers:
- datapool: `pool_csv.read_csv(path)`: mmap, parallel parse, validation (header, field counts,
  finite floats, labels, unique UTF-8 names) and the Python list of names.
- pyarrow: `pyarrow.csv.read_csv(path)` to an Arrow table, (a) with type inference (float64),
  (b) with the embedding columns declared float32; "+matrix" adds stacking the columns into the
  (n, d) float32 array that datapool returns.
- pandas: `pandas.read_csv(path)` (C engine), "+matrix" as above.
- polars: `polars.read_csv(path)`, "+matrix" as above.
All readers use every core (pyarrow, polars and datapool by default; the pandas C parser is
single-threaded).

    python bench/bench_pool.py                                   # 100k x 128 and 100k x 512
    python bench/bench_pool.py --sizes 1000000x128 --repeats 1   # 1.7 GB of CSV
    python bench/bench_pool.py --quick                           # 20k x 64

Sidecar: after one open has built it, `sidecar.load` maps the embeddings; its median time is set
against the fastest pyarrow.csv.read_csv of the same file (acceptance: >= 100x). Append: 1000 new
rows committed as a run does (format, journal append + fsync, sidecar catch-up + fsync +
manifest), against rewriting the whole CSV through the journal (acceptance: < 1%).

Ledger: a 1M-key listing diffed against a 1M-row ledger by datapool (a hash lookup of the keys in
a pandas Index) and by the outer merge it used before, which must give the same split
(acceptance: < 2 s); then the ledger file's load, and a run's append of 1000 rows against a full
rewrite.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from datapool.pool import csvfile as pool_csv


def make_pool(n: int, d: int, seed: int = 7) -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed + 1000 * d + n)
    emb = rng.standard_normal((n, d), dtype=np.float32)
    names = [f"{i // 1000:04d}/img_{i:07d}.jpg" for i in range(n)]
    labels = rng.integers(0, 20, n).astype(np.int64)
    return names, emb, labels


def write_pool(path: Path, names: list[str], emb: np.ndarray, labels: np.ndarray) -> float:
    """Writes with pool_csv.format_csv in batches; returns seconds."""
    t = time.perf_counter()
    tmp = path.with_suffix(".partial")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        step = 20_000
        for s in range(0, max(len(names), 1), step):
            f.write(
                pool_csv.format_csv(
                    names[s : s + step], emb[s : s + step], labels[s : s + step], with_header=s == 0
                )
            )
    os.replace(tmp, path)
    return time.perf_counter() - t


def read_datapool(path: Path):
    return pool_csv.read_csv(path)


def read_pyarrow(path: Path, d: int, float32: bool, matrix: bool):
    import pyarrow as pa
    import pyarrow.csv as pv

    convert = None
    if float32:
        convert = pv.ConvertOptions(column_types={f"embedding_{j}": pa.float32() for j in range(d)})
    t = pv.read_csv(path, convert_options=convert)
    if not matrix:
        return t
    emb = np.empty((t.num_rows, d), np.float32)
    for j in range(d):
        emb[:, j] = t.column(j + 1).to_numpy()
    return t.column(0).to_pylist(), emb, t.column(d + 1).to_numpy()


def read_pandas(path: Path, d: int, matrix: bool):
    import pandas as pd

    df = pd.read_csv(path, keep_default_na=False)
    if not matrix:
        return df
    return (
        df["filenames"].tolist(),
        df.iloc[:, 1 : d + 1].to_numpy(np.float32),
        df["labels"].to_numpy(),
    )


def read_polars(path: Path, d: int, matrix: bool):
    import polars as pl

    df = pl.read_csv(path)
    if not matrix:
        return df
    emb = df.select(df.columns[1 : d + 1]).to_numpy().astype(np.float32)
    return df["filenames"].to_list(), emb, df["labels"].to_numpy()


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        out = None  # free the previous result first
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def check(name: str, got, names, emb, labels) -> None:
    g_names, g_emb, g_labels = got
    ok = (
        list(g_names) == names
        and g_emb.dtype == np.float32
        and g_emb.shape == emb.shape
        and np.array_equal(g_emb.view(np.uint32), emb.view(np.uint32))
        and np.array_equal(np.asarray(g_labels, np.int64), labels)
    )
    if not ok:
        sys.exit(f"FAIL: {name} does not give the matrix, names and labels that were written")


def bench_csv(n: int, d: int, folder: Path, repeats: int, impls: list[str]) -> tuple[Path, float]:
    """Returns the CSV's path and the fastest pyarrow.csv.read_csv time (inf without pyarrow)."""
    names, emb, labels = make_pool(n, d)
    pool_dir = folder / f"pool_{n}x{d}"
    pool_dir.mkdir(exist_ok=True)
    path = pool_dir / "datapool_latest.csv"
    expect = len(pool_csv.format_csv(names[:1000], emb[:1000], labels[:1000]))  # rough size check
    if not path.exists() or abs(path.stat().st_size / max(n, 1) - expect / min(n, 1000)) > 64:
        took = write_pool(path, names, emb, labels)
        print(f"wrote {path} with pool_csv.format_csv in {took:.1f} s")
    size = path.stat().st_size
    with open(path, "rb") as f:  # into the page cache
        while f.read(1 << 24):
            pass
    print(f"\n{n} rows x d={d}: {size / 1e6:.0f} MB, {repeats} repeat(s), {os.cpu_count()} cores")

    runs: list[tuple[str, Callable[[], object], bool]] = [
        ("datapool read_csv (C++)", lambda: read_datapool(path), True),
    ]
    if "pyarrow" in impls:
        runs += [
            ("pyarrow read_csv, inferred", lambda: read_pyarrow(path, d, False, False), False),
            ("pyarrow read_csv, float32", lambda: read_pyarrow(path, d, True, False), False),
            ("pyarrow float32 +matrix", lambda: read_pyarrow(path, d, True, True), True),
        ]
    if "pyarrow-float32" in impls:  # the fastest pyarrow configuration alone (big files)
        runs += [("pyarrow read_csv, float32", lambda: read_pyarrow(path, d, True, False), False)]
    if "polars" in impls:
        runs += [
            ("polars read_csv", lambda: read_polars(path, d, False), False),
            ("polars +matrix", lambda: read_polars(path, d, True), True),
        ]
    if "pandas" in impls:
        runs += [
            ("pandas read_csv (C engine)", lambda: read_pandas(path, d, False), False),
            ("pandas +matrix", lambda: read_pandas(path, d, True), True),
        ]
    results = []
    for label, fn, gives_matrix in runs:
        t, out = timed(fn, repeats)
        if gives_matrix:
            check(label, out, names, emb, labels)
        del out
        results.append((label, t))
    ours = results[0][1]
    print(f"{'reader':30s} {'median s':>9s} {'MB/s':>8s} {'time / datapool':>16s}")
    for label, t in results:
        print(f"{label:30s} {t:9.3f} {size / t / 1e6:8.0f} {t / ours:16.2f}")
    arrow = [t for label, t in results if label.startswith("pyarrow read_csv")]
    best = min(arrow) if arrow else float("inf")
    if arrow:
        verdict = "PASS" if best >= 2 * ours else "FAIL"
        print(
            f"acceptance: fastest pyarrow.csv.read_csv / datapool = {best / ours:.2f} (>= 2: {verdict})"
        )
    print(
        "check: every '+matrix' reader and datapool gave the written matrix bit for bit, "
        "and the same names and labels"
    )
    return path, best


def bench_sidecar(path: Path, n: int, d: int, repeats: int, arrow_s: float) -> None:
    """Open through the sidecar (after it was built once) against pyarrow parsing the CSV."""
    from datapool.pool import sidecar

    names, emb, labels = make_pool(n, d)
    shutil.rmtree(path.parent / sidecar.SIDECAR_DIR, ignore_errors=True)
    t = time.perf_counter()
    sidecar.load(path, dim=d)  # first open: full parse + sidecar written
    build = time.perf_counter() - t
    opened, out = timed(lambda: sidecar.load(path, dim=d), repeats)
    check("sidecar open", out, names, emb, labels)
    if not isinstance(out[1], np.memmap):  # type: ignore[index]
        sys.exit("FAIL: the sidecar open did not map the embeddings")
    del out
    print(
        f"\nsidecar, {n} x {d}: first open (parse + write sidecar) {build:.3f} s; "
        f"open through the sidecar {opened * 1e3:.1f} ms (median of {repeats})"
    )
    if np.isfinite(arrow_s):
        ratio = arrow_s / opened
        print(
            f"acceptance: pyarrow.csv.read_csv / sidecar open = {ratio:.0f} "
            f"(>= 100: {'PASS' if ratio >= 100 else 'FAIL'})"
        )
    print("check: the sidecar open gave the written matrix bit for bit (np.memmap), names, labels")


def bench_append(path: Path, n: int, d: int, repeats: int, rows: int = 1000) -> None:
    """A run's commit of `rows` new rows: the journal's append to the CSV and the sidecar's
    catch-up, against rewriting the whole CSV through the journal (what --process-all does)."""
    from datapool.pool import journal as _journal
    from datapool.pool import sidecar

    names, emb, labels = make_pool(n, d)
    work = path.parent.parent / f"append_{n}x{d}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    csv = work / "datapool_latest.csv"
    shutil.copyfile(path, csv)
    with open(csv, "rb+") as f:  # flush the copy now, not in the first timed fsync
        os.fsync(f.fileno())
    sidecar.load(csv, dim=d)  # sidecar current, as after a run
    rng = np.random.default_rng(1)
    all_names, parts_e, parts_l = list(names), [emb], [labels]
    times = []
    for r in range(repeats):
        new_names = [f"new/{r:02d}/img_{i:05d}.jpg" for i in range(rows)]
        new_emb = rng.standard_normal((rows, d), dtype=np.float32)
        new_labels = np.full(rows, 20 + r, np.int64)
        t = time.perf_counter()
        txn = _journal.Transaction(work)
        txn.stage_append(
            "datapool_latest.csv",
            pool_csv.format_csv(new_names, new_emb, new_labels, with_header=False).encode(),
        )
        txn.commit()
        got = sidecar.load(csv, dim=d)
        times.append(time.perf_counter() - t)
        all_names += new_names
        parts_e.append(new_emb)
        parts_l.append(new_labels)
    check("append", got, all_names, np.concatenate(parts_e), np.concatenate(parts_l))
    del got
    t = time.perf_counter()
    txn = _journal.Transaction(work)
    txn.stage(
        "datapool_latest.csv",
        pool_csv.format_csv(all_names, np.concatenate(parts_e), np.concatenate(parts_l)).encode(),
    )
    txn.commit()
    rewrite = time.perf_counter() - t
    ap = statistics.median(times)
    print(
        f"\nappend {rows} rows to {n} x {d}: {ap * 1e3:.0f} ms (median of {repeats}: format, "
        f"journal append + fsync, sidecar catch-up + fsync + manifest); full CSV rewrite "
        f"through the journal {rewrite:.2f} s (once)"
    )
    print(
        f"acceptance: append / rewrite = {100 * ap / rewrite:.2f}% "
        f"(< 1%: {'PASS' if ap < 0.01 * rewrite else 'FAIL'})"
    )
    shutil.rmtree(work)


def merge_diff(listing, ledger):
    """The baseline: the ledger diff as datapool did it before, one pandas outer merge on key with
    an indicator column, then the same size/ETag/mtime rule."""
    merged = listing.merge(
        ledger[["key", "size", "mtime_ns", "etag"]],
        on="key",
        how="outer",
        suffixes=("", "_ledger"),
        indicator=True,
    )
    listed = merged["_merge"] != "right_only"
    both = merged["_merge"] == "both"
    has = (merged["etag"].fillna("") != "") & (merged["etag_ledger"].fillna("") != "")
    same = (merged["size"] == merged["size_ledger"]) & (
        (has & (merged["etag"] == merged["etag_ledger"]))
        | (~has & (merged["mtime_ns"] == merged["mtime_ns_ledger"]))
    )
    cols = list(listing.columns)
    return (
        merged.loc[listed & ~both, cols],
        merged.loc[both & ~same, cols],
        merged.loc[both & same, cols],
        merged.loc[merged["_merge"] == "right_only", "key"],
    )


def bench_ledger(n: int, folder: Path, repeats: int, new: int = 1000) -> None:
    """A listing of n keys against a ledger of n rows (1% changed, 1% new, 1% gone), diffed by
    datapool.ledger.diff_listing and by the outer-merge baseline; then loading the ledger file and
    a run's commit of `new` rows (append) against rewriting the whole ledger."""
    import pandas as pd

    from datapool.pool import journal as _journal
    from datapool.pool.ledger import (
        LEDGER_COLUMNS,
        can_append,
        diff_listing,
        read_ledger,
        write_ledger_text,
    )

    rng = np.random.default_rng(3)
    keys = np.array([f"cam{i % 1000:04d}/clip{i:08d}.mp4" for i in range(n)], dtype=object)
    size = rng.integers(1_000, 10**9, n)
    mtime = rng.integers(1_600_000_000 * 10**9, 1_700_000_000 * 10**9, n)
    ledger = pd.DataFrame(
        {
            "key": keys,
            "size": size,
            "mtime_ns": mtime,
            "run": 0,
            "status": "ok",
            "n_samples": 1,
            "n_selected": 0,
            "etag": "",
            "content_hash": "",
            "predictions": "",
        }
    )[LEDGER_COLUMNS]
    k = n // 100
    l_keys = np.concatenate([keys[k:], np.array([f"new/{i:08d}.jpg" for i in range(k)], object)])
    l_size = np.concatenate([size[k:], rng.integers(1_000, 10**9, k)])
    l_size[:k] += 1  # changed
    l_mtime = np.concatenate(
        [mtime[k:], rng.integers(1_600_000_000 * 10**9, 1_700_000_000 * 10**9, k)]
    )
    listing = pd.DataFrame(
        {"key": l_keys, "size": l_size, "mtime_ns": l_mtime, "etag": "", "kind": "video"}
    )
    ours, base = [], []
    for _ in range(repeats):
        t, d = timed(lambda: diff_listing(listing, ledger), 1)
        ours.append(t)
        t, b = timed(lambda: merge_diff(listing, ledger), 1)
        base.append(t)
    for got, want in zip((d.new, d.changed, d.unchanged), b[:3]):  # the merge sorts its output
        assert sorted(got["key"]) == sorted(want["key"]), "diffs disagree"
    assert sorted(d.missing["key"]) == sorted(b[3]), "missing keys disagree"
    assert (len(d.new), len(d.changed), len(d.missing)) == (k, k, k)
    o, m = statistics.median(ours), statistics.median(base)
    print(
        f"\nledger diff, {n} listed keys against {n} ledger rows ({k} new, {k} changed, {k} gone): "
        f"datapool {o:.2f} s, outer-merge baseline {m:.2f} s ({m / o:.1f}x); "
        f"acceptance < 2 s: {'PASS' if o < 2 else 'FAIL'}"
    )

    work = folder / f"ledger_{n}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "ledger.csv").write_text(write_ledger_text(ledger))
    t_load, loaded = timed(lambda: read_ledger(work / "ledger.csv"), repeats)
    assert len(loaded) == n
    rows = ledger.iloc[:new].assign(run=1, n_selected=1)
    appends = []
    for _ in range(repeats):
        t = time.perf_counter()
        assert can_append(work / "ledger.csv", loaded, new)
        txn = _journal.Transaction(work)
        txn.stage_append("ledger.csv", write_ledger_text(rows, header=False).encode())
        txn.commit()
        appends.append(time.perf_counter() - t)
    t = time.perf_counter()
    txn = _journal.Transaction(work)
    txn.stage("ledger.csv", write_ledger_text(loaded).encode())
    txn.commit()
    rewrite = time.perf_counter() - t
    print(
        f"ledger file, {n} rows: load {t_load:.2f} s; a run's commit of {new} rows appends in "
        f"{statistics.median(appends) * 1e3:.0f} ms, a full rewrite takes {rewrite:.2f} s"
    )
    shutil.rmtree(work)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100000x128,100000x512", help="comma-separated NxD")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", default=os.environ.get("TMPDIR", "/tmp") + "/datapool-bench-pool")
    ap.add_argument(
        "--impls",
        default="pyarrow,polars,pandas",
        help="baselines: pyarrow, pyarrow-float32 (that configuration only), polars, pandas",
    )
    ap.add_argument(
        "--sections",
        default="sidecar,append,ledger",
        help="besides the CSV parse: sidecar (open through it), append (1000 rows), "
        "ledger (a 1M-key diff, the ledger's load and append)",
    )
    ap.add_argument("--ledger-keys", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.quick:
        a.sizes, a.repeats, a.ledger_keys = "20000x64", 1, 20_000
    folder = Path(a.dir)
    folder.mkdir(parents=True, exist_ok=True)
    for mod in filter(None, a.impls.split(",")):  # import outside the timings
        __import__({"pyarrow": "pyarrow.csv", "pyarrow-float32": "pyarrow.csv"}.get(mod, mod))
    print(
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"numpy {np.__version__}"
    )
    for spec in filter(None, a.sizes.split(",")):
        n, d = (int(x) for x in spec.lower().split("x"))
        path, arrow_s = bench_csv(n, d, folder, a.repeats, [i for i in a.impls.split(",") if i])
        if "sidecar" in a.sections:
            bench_sidecar(path, n, d, max(a.repeats, 5), arrow_s)
        if "append" in a.sections:
            bench_append(path, n, d, max(a.repeats, 3))
    if "ledger" in a.sections:
        bench_ledger(a.ledger_keys, folder, a.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
