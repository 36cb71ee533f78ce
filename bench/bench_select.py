"""Farthest-point selection: datapool against brute force and public peers, on the same data.

    python bench/bench_select.py --quick                  # 20k×64, k=200, 20 clusters: seconds
    python bench/bench_select.py                          # the full table: about 2 hours on 2 vCPUs
    python bench/bench_select.py --sizes 1000000x128 --k 10000 --data clustered
    python bench/bench_select.py --sizes 1Mx512 --k 10000 --data uniform --impls auto,brute
    python bench/bench_select.py --json /tmp/select.json  # also write every row
    python bench/bench_select.py --strategies --sizes 1Mx128 --k 10000   # strategy rows only

Rows, timed in this process on the same float32 array (N×d, C-contiguous):
  datapool auto      `select_diverse(X, k, threads=1, algorithm="auto")`, and again with threads=0
                     (and, when named in --impls, `pruned`: algorithm="pruned", 1 thread)
  datapool brute     `select_diverse(X, k, threads=1, algorithm="brute")`
  fpsample           `fpsample.fps_sampling(X, k, start_idx=0)` (vanilla FPS). It converts X to
                     Fortran order itself; it gets that copy made once, outside the timing.
  kcenter_greedy     google/active-learning's `kcenter_greedy` re-implemented: per step
                     `sklearn.metrics.pairwise_distances(X, X[[idx]], metric="euclidean")`, then
                     `np.minimum` into the min-distances and `np.argmax` for the next index; first
                     index 0 (its `update_distances` / `select_batch_` loop, without the list
                     membership checks, which cost O(k) per step).
  numpy              float32 norms trick: |x|² + |c|² - 2 X·c with one sgemv per step (context).
Peers and NumPy run with BLAS/OpenMP limited to one thread (threadpoolctl).

--strategies: on clustered data only, in one run, on the same array, all with threads=0:
  diversity          `select_diverse(X, k, threads=0)` (the pure-diversity path)
  weights+threshold  the C++ greedy combined rule (`greedy_core`): a WEIGHTS term
  +diversity         (strength 1 * log u, u uniform in (0, 1]), a THRESHOLD mask keeping 80%, and
                     DIVERSITY strength 1
  balance10          10 classes, one per row (uniform at random), BALANCE target {0: 0.5} (the
  +diversity         rest shared by the other nine), strength 1, plus DIVERSITY
  Each combined row's first --verify-steps picks are checked in float64 against all candidates:
  each pick's score is the best (within 1e-5) given the picks before it. With --float32 each
  combined row also runs without the int8 screen (screen=False), which must give every pick,
  min-distance, score and evaluation count identically.

Data (seeded, float32, made in chunks of 64k rows so that 1M×512 needs no float64 temporaries):
  clustered  1000 centres ~ N(0, I_d); each row is a uniformly drawn centre + 0.1·N(0, I_d),
             then scaled to unit length, as embedding models emit. Rows of one cluster lie about
             0.14 apart and rows of different clusters about 1.41 (near-orthogonal, as unrelated
             embeddings are); clusters are interleaved in memory, as in a real bucket.
             --quick uses 20 clusters: k / clusters = 10 there too, so pruning has work to do.
  uniform    uniform in [0, 1)^d: no structure for pruning to use.

Brute-force methods cost the same at every step. When a full run would take more than
--max-run-s (120 s), such a row is timed over its first 1000 picks (200 for very slow ones) and
extrapolated linearly to k; those figures are marked with ~. datapool auto always runs all k.

Correctness comes before time: every run's picks are checked before its time counts.
  Reference: datapool brute force (threads=0, all k picks). Its first --verify-steps picks are
  verified in float64 against all N candidates (each pick is the farthest, within 1e-5, from the
  picks before it); with --quick all of them are, and it is also compared with a float64 NumPy
  implementation.
  Each row's distance profile (each pick's min-distance to the picks before it) is recomputed
  here in float64 from its indices. Up to the first step where its indices leave the
  reference's, the profiles are identical. At that step the two picks must tie: their
  min-distances to the common prefix agree to 1e-5 relative. Past a tie the two runs are both
  valid and need not re-converge, so the reference is re-run from the row's own prefix (datapool
  brute with `selected=`) and the comparison continues; each pick must thus agree with the
  reference's to 1e-5 at every step. The report gives the first divergence, whether it tied, and
  how far the profile drifted from the original reference afterwards (information, not a check).
  datapool's own min_distances must match the float64 profile to 1e-4 relative (float32).
  Any failure prints CHECK FAILED, drops that row's time and makes the exit status 1.

On uniform data it also prints the memory bandwidth that datapool brute (1 thread) reaches:
bytes per step = N·d·4 (the candidates) + N·8 (each candidate's float32 min-distance, read and
written), over the time per step, against the single-thread bandwidth of a NumPy reduction
(`x.sum()` and `x.max()` over a 2 GiB float32 array, best of 5) measured right after it.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import inspect
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import datapool

RTOL = 1e-5  # picks tie when their float64 min-distances agree to this, relative
REPORTED_RTOL = 1e-4  # datapool's float32 min_distances against the float64 profile
CHUNK = 65536  # rows per chunk when making or scanning data
# The uniform data are raw rows in [0, 1)^d, not unit length: select them by the plain Euclidean
# distance (a datapool since 0.3.0 refuses non-unit rows unless told), and time no check pass.
RAW = (
    {"check_unit_rows": False}
    if "check_unit_rows" in inspect.signature(datapool.select_diverse).parameters
    else {}
)


# ----------------------------------------------------------------------------------------------
# Data


def data_seed(seed: int, kind: str, n: int, d: int) -> list[int]:
    return [seed, {"clustered": 1, "uniform": 2}[kind], n, d]


def make_data(kind: str, n: int, d: int, seed: int, clusters: int, spread: float) -> np.ndarray:
    """Seeded float32 (n, d) data, made chunk by chunk without float64 temporaries."""
    rng = np.random.default_rng(data_seed(seed, kind, n, d))
    x = np.empty((n, d), np.float32)
    centres = rng.standard_normal((clusters, d), dtype=np.float32) if kind == "clustered" else None
    for lo in range(0, n, CHUNK):
        block = x[lo : lo + CHUNK]
        if centres is None:
            rng.random(out=block, dtype=np.float32)
            continue
        labels = rng.integers(0, clusters, len(block))
        rng.standard_normal(out=block, dtype=np.float32)
        block *= np.float32(spread)
        block += centres[labels]
        block /= np.sqrt(np.einsum("ij,ij->i", block, block))[:, None]
    return x


# ----------------------------------------------------------------------------------------------
# Implementations


@dataclass
class Picks:
    indices: np.ndarray  # int64, in pick order
    min_distances: np.ndarray | None = None  # as the implementation reported them
    evaluations: int | None = None
    algorithm: str | None = None
    center_evaluations: int | None = None
    kernels: str | None = None
    rechecks: int | None = None
    screen: str | None = None


@dataclass
class Impl:
    key: str
    label: str
    run: Callable[[np.ndarray, int], Picks]
    brute_force: bool  # same cost at every step: may be timed on a prefix and extrapolated
    one_thread_blas: bool = False  # limit BLAS/OpenMP to one thread while it runs


def datapool_runner(
    algorithm: str, threads: int, screen: bool = True
) -> Callable[[np.ndarray, int], Picks]:
    def run(x: np.ndarray, k: int) -> Picks:
        kw = {} if screen else {"screen": False}
        s = datapool.select_diverse(x, k, threads=threads, algorithm=algorithm, **kw, **RAW)
        return Picks(
            indices=np.asarray(s.indices, np.int64),
            min_distances=np.asarray(s.min_distances),
            evaluations=getattr(s, "evaluations", None),
            algorithm=getattr(s, "algorithm", None),
            center_evaluations=getattr(s, "center_evaluations", None),
            kernels=getattr(s, "kernels", None),
            rechecks=getattr(s, "rechecks", None),
            screen=getattr(s, "screen", None),
        )

    return run


class FpsampleRunner:
    """fpsample on a Fortran-order copy (its preferred layout), made once per array."""

    def __init__(self) -> None:
        self._src: np.ndarray | None = None
        self._fortran: np.ndarray | None = None

    def __call__(self, x: np.ndarray, k: int) -> Picks:
        import fpsample

        if self._src is not x:
            self._fortran = None
            self._fortran = np.asfortranarray(x)
            self._src = x
        return Picks(np.asarray(fpsample.fps_sampling(self._fortran, k, start_idx=0), np.int64))

    def release(self) -> None:
        self._src = self._fortran = None


def kcenter_greedy(x: np.ndarray, k: int) -> Picks:
    """google/active-learning `kcenter_greedy.select_batch_` with first index 0."""
    from sklearn.metrics import pairwise_distances

    picks = np.empty(k, np.int64)
    min_distances: np.ndarray | None = None
    ind = 0
    for step in range(k):
        picks[step] = ind
        dist = pairwise_distances(x, x[[ind]], metric="euclidean")
        min_distances = dist if min_distances is None else np.minimum(min_distances, dist)
        ind = int(np.argmax(min_distances))
    return Picks(picks)


def numpy_norms_fps(x: np.ndarray, k: int) -> Picks:
    """float32 FPS with the norms trick: one sgemv per step."""
    sq = np.einsum("ij,ij->i", x, x)
    mind = np.full(len(x), np.inf, np.float32)
    picks = np.empty(k, np.int64)
    ind = 0
    for step in range(k):
        picks[step] = ind
        d2 = x @ x[ind]
        d2 *= np.float32(-2)
        d2 += sq
        d2 += sq[ind]
        np.minimum(mind, d2, out=mind)
        mind[ind] = 0
        ind = int(np.argmax(mind))
    return Picks(picks)


def make_impls(fps_runner: FpsampleRunner) -> dict[str, Impl]:
    return {
        "auto": Impl("auto", "datapool auto, 1 thread", datapool_runner("auto", 1), False),
        "auto-t0": Impl("auto-t0", "datapool auto, threads=0", datapool_runner("auto", 0), False),
        "auto-f32": Impl(
            "auto-f32", "datapool auto f32, 1 thread", datapool_runner("auto", 1, False), False
        ),
        "auto-f32-t0": Impl(
            "auto-f32-t0", "datapool auto f32, threads=0", datapool_runner("auto", 0, False), False
        ),
        "pruned": Impl("pruned", "datapool pruned, 1 thread", datapool_runner("pruned", 1), False),
        "brute": Impl("brute", "datapool brute, 1 thread", datapool_runner("brute", 1), True),
        "fpsample": Impl("fpsample", "fpsample fps_sampling", fps_runner, True, True),
        "kcenter": Impl("kcenter", "kcenter_greedy (sklearn)", kcenter_greedy, True, True),
        "numpy": Impl("numpy", "NumPy float32 norms trick", numpy_norms_fps, True, True),
    }


@contextmanager
def one_thread_blas(on: bool) -> Iterator[None]:
    if not on:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


# ----------------------------------------------------------------------------------------------
# float64 checks


def profile64(x: np.ndarray, picks: np.ndarray, block: int = 512) -> np.ndarray:
    """Each pick's float64 min-distance to the picks before it (+inf for the first)."""
    s = len(picks)
    p = x[picks].astype(np.float64)
    sq = np.einsum("ij,ij->i", p, p)
    out = np.full(s, np.inf)
    for lo in range(1, s, block):
        hi = min(s, lo + block)
        d2 = sq[lo:hi, None] + sq[None, :hi] - 2.0 * (p[lo:hi] @ p[:hi].T)
        d2[np.arange(lo, hi)[:, None] <= np.arange(hi)[None, :]] = np.inf
        out[lo:hi] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    return out


def min_dist64(x: np.ndarray, i: int, prefix: np.ndarray) -> float:
    if len(prefix) == 0:
        return math.inf
    diff = x[prefix].astype(np.float64) - x[i].astype(np.float64)
    return float(np.sqrt(np.einsum("ij,ij->i", diff, diff).min()))


def rel_diff(a: float, b: float) -> float:
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b))


def fps_float64(x: np.ndarray, k: int, pool: np.ndarray | None = None) -> np.ndarray:
    """Plain float64 NumPy FPS (small data only): ties to the lowest index; `pool` rows of x
    count as selected."""
    x64 = x.astype(np.float64)
    mind = np.full(len(x), np.inf)
    for i in pool if pool is not None else ():
        mind = np.minimum(mind, np.sqrt(((x64 - x64[i]) ** 2).sum(1)))
    picks = np.empty(k, np.int64)
    for step in range(k):
        picks[step] = i = int(np.argmax(mind))
        mind = np.minimum(mind, np.sqrt(((x64 - x64[i]) ** 2).sum(1)))
    return picks


def verify_greedy(x: np.ndarray, picks: np.ndarray, rtol: float) -> str | None:
    """Check in float64, against all candidates, that every pick is the farthest (within rtol)
    from the picks before it. Returns an error message, or None. Costs N·len(picks)·d."""
    if picks[0] != 0:
        return f"first pick is {picks[0]}, not index 0"
    t = len(picks)
    p = x[picks].astype(np.float64)
    psq = np.einsum("ij,ij->i", p, p)
    best = np.full(t, -1.0)  # best[s]: the largest min-distance² after picks[:s + 1]
    for lo in range(0, len(x), CHUNK // 8):
        c = x[lo : lo + CHUNK // 8].astype(np.float64)
        d2 = np.einsum("ij,ij->i", c, c)[:, None] + psq[None, :] - 2.0 * (c @ p.T)
        np.maximum(d2, 0.0, out=d2)
        np.minimum.accumulate(d2, axis=1, out=d2)
        best = np.maximum(best, d2.max(axis=0))
    prof = profile64(x, picks)
    far = np.sqrt(best[:-1])
    bad = np.flatnonzero(prof[1:] < far * (1 - rtol))
    if len(bad):
        s = int(bad[0]) + 1
        return (
            f"pick {s} (index {picks[s]}) is at {prof[s]:.9g}, but a candidate is at "
            f"{far[s - 1]:.9g} (float64)"
        )
    return None


@dataclass
class Check:
    ok: bool
    steps: int
    message: str = ""
    divergences: list[dict[str, Any]] = field(default_factory=list)
    drift: float | None = None  # max relative profile difference after the first divergence
    reported_error: float | None = None  # max relative error of reported min_distances

    def summary(self) -> str:
        if not self.ok:
            return "FAILED: " + self.message
        parts = [
            "same picks"
            if not self.divergences
            else f"{len(self.divergences)} tie(s), first at step {self.divergences[0]['step']} "
            f"(rel {self.divergences[0]['rel']:.1e}), profile drift after it "
            f"{self.drift:.1e}"
        ]
        if self.reported_error is not None:
            parts.append(f"reported distances to {self.reported_error:.1e}")
        return "ok: " + ", ".join(parts)


class Checker:
    """Compares runs on one array against a reference run; float64 profiles are cached."""

    def __init__(
        self,
        x: np.ndarray,
        ref: np.ndarray,
        reseed: Callable[[np.ndarray, int], np.ndarray],
        rtol: float,
        max_reseeds: int,
    ) -> None:
        self.x, self.ref, self.reseed = x, ref, reseed
        self.rtol, self.max_reseeds = rtol, max_reseeds
        self._profiles: dict[bytes, np.ndarray] = {}
        self._checks: dict[bytes, Check] = {}

    def profile(self, picks: np.ndarray) -> np.ndarray:
        key = hashlib.blake2b(picks.tobytes(), digest_size=16).digest()
        if key not in self._profiles:
            self._profiles[key] = profile64(self.x, picks)
        return self._profiles[key]

    def check(self, run: Picks) -> Check:
        picks = run.indices
        key = hashlib.blake2b(picks.tobytes(), digest_size=16).digest()
        if key not in self._checks:
            self._checks[key] = self._check_picks(picks)
        c = self._checks[key]
        c = Check(c.ok, c.steps, c.message, c.divergences, c.drift)
        if c.ok and run.min_distances is not None:
            prof = self.profile(picks)
            got = np.asarray(run.min_distances, np.float64)
            if len(got) != len(picks):
                c.ok, c.message = False, f"{len(got)} min_distances for {len(picks)} picks"
            elif not (np.isinf(got[0]) and got[0] > 0):
                c.ok, c.message = False, f"first pick's min-distance is {got[0]}, not +inf"
            else:
                err = np.abs(got[1:] - prof[1:]) / prof[1:] if len(got) > 1 else np.zeros(1)
                c.reported_error = float(err.max())
                if c.reported_error > REPORTED_RTOL:
                    s = int(err.argmax()) + 1
                    c.ok = False
                    c.message = (
                        f"reported min-distance of pick {s} is {got[s]:.9g}, float64 "
                        f"says {prof[s]:.9g} (rel {c.reported_error:.1e})"
                    )
        return c

    def _check_picks(self, picks: np.ndarray) -> Check:
        x, s = self.x, len(picks)
        if s == 0 or s > len(self.ref):
            return Check(False, s, f"{s} picks; the reference has {len(self.ref)}")
        if picks.min() < 0 or picks.max() >= len(x) or len(np.unique(picks)) != s:
            return Check(False, s, "picks out of range or repeated")
        if picks[0] != self.ref[0]:
            return Check(False, s, f"first pick {picks[0]}, reference {self.ref[0]}")
        ref = self.ref[:s].copy()
        divergences: list[dict[str, Any]] = []
        start = 0
        while True:
            differ = np.flatnonzero(picks[start:] != ref[start:])
            if len(differ) == 0:
                break
            t = start + int(differ[0])
            a = min_dist64(x, int(picks[t]), picks[:t])
            b = min_dist64(x, int(ref[t]), picks[:t])
            r = rel_diff(a, b)
            divergences.append(
                {
                    "step": t,
                    "picked": int(picks[t]),
                    "reference": int(ref[t]),
                    "distance": a,
                    "reference_distance": b,
                    "rel": r,
                    "tie": r <= self.rtol,
                }
            )
            if r > self.rtol:
                return Check(
                    False,
                    s,
                    f"step {t}: picked {picks[t]} at {a:.9g}, the reference "
                    f"picks {ref[t]} at {b:.9g} (rel {r:.1e}, no tie)",
                    divergences,
                )
            if len(divergences) > self.max_reseeds:
                return Check(
                    False,
                    s,
                    f"more than {self.max_reseeds} ties (last at step {t}); "
                    "raise --max-reseeds to check further",
                    divergences,
                )
            if t + 1 < s:
                print(
                    f"      tie at step {t} (rel {r:.1e}): re-running the reference from this "
                    f"run's first {t + 1} picks for the remaining {s - t - 1}",
                    flush=True,
                )
                ref[t + 1 :] = self.reseed(picks[: t + 1], s - t - 1)
            ref[t] = picks[t]
            start = t + 1
        prof = self.profile(picks)
        drift = None
        if divergences:
            t0 = divergences[0]["step"]
            ref_prof = self.profile(self.ref)[t0:s]
            drift = float((np.abs(prof[t0:] - ref_prof) / ref_prof).max())
        # An exact greedy run's profile does not increase (beyond ties).
        up = np.flatnonzero(prof[2:] > prof[1:-1] * (1 + 2 * self.rtol))
        if len(up):
            t = int(up[0]) + 2
            return Check(
                False,
                s,
                f"profile rises at step {t}: {prof[t - 1]:.9g} -> {prof[t]:.9g}",
                divergences,
                drift,
            )
        return Check(True, s, "", divergences, drift)


def datapool_reseed(x: np.ndarray) -> Callable[[np.ndarray, int], np.ndarray]:
    def reseed(prefix: np.ndarray, m: int) -> np.ndarray:
        s = datapool.select_diverse(
            x, m, selected=np.ascontiguousarray(x[prefix]), algorithm="brute", threads=0, **RAW
        )
        out = np.asarray(s.indices, np.int64)
        if len(out) != m:
            raise RuntimeError(f"reference continuation stopped after {len(out)} of {m} picks")
        return out

    return reseed


# ----------------------------------------------------------------------------------------------
# Timing


@dataclass
class Measurement:
    steps: int
    seconds: list[float]
    cpu_seconds: list[float]
    run: Picks
    check: Check


@dataclass
class Row:
    impl: str
    label: str
    data: str
    n: int
    d: int
    k: int
    steps_timed: int
    extrapolated: bool
    seconds: float | None  # median, extrapolated to k; None when the check failed
    runs: int
    seconds_all: list[float]  # each run's time for steps_timed picks (not extrapolated)
    cpu_per_wall: float
    ratio_vs_auto: float | None = None
    algorithm: str | None = None
    evaluations: int | None = None
    center_evaluations: int | None = None
    kernels: str | None = None
    skipped: float | None = None
    check: str = ""
    check_ok: bool = True
    divergences: list[dict[str, Any]] = field(default_factory=list)


def timed(impl: Impl, x: np.ndarray, steps: int) -> tuple[float, float, Picks]:
    gc.collect()
    with one_thread_blas(impl.one_thread_blas):
        c0, t0 = time.process_time(), time.perf_counter()
        out = impl.run(x, steps)
        t1, c1 = time.perf_counter(), time.process_time()
    return t1 - t0, c1 - c0, out


def plan_steps(per_step: float, k: int, a: argparse.Namespace) -> int:
    if per_step * k <= a.max_run_s:
        return k
    if per_step * a.partial_steps <= a.max_run_s:
        return min(k, a.partial_steps)
    return min(k, a.slow_partial_steps)


def measure(
    impl: Impl, x: np.ndarray, steps: int, checker: Checker, a: argparse.Namespace
) -> Measurement:
    t, c, out = timed(impl, x, steps)
    check = checker.check(out)
    m = Measurement(steps, [t], [c], out, check)
    load = os.getloadavg()[0]
    print(
        f"    {impl.label:28s} {steps:6d} picks  {t:9.3f} s  load {load:.1f}  {check.summary()}",
        flush=True,
    )
    if not check.ok:
        print(f"    CHECK FAILED: {impl.label}: {check.message}", flush=True)
        return m
    while len(m.seconds) < a.repeats and t <= a.long_s:
        t, c, again = timed(impl, x, steps)
        if not np.array_equal(again.indices, out.indices):
            print(f"    note: {impl.label} picked differently on a repeat", flush=True)
            check = checker.check(again)
            if not check.ok:
                m.check = check
                print(f"    CHECK FAILED: {impl.label} (repeat): {check.message}", flush=True)
                return m
        m.seconds.append(t)
        m.cpu_seconds.append(c)
    if len(m.seconds) > 1:
        print(f"    {'':28s} repeats: " + ", ".join(f"{s:.3f}" for s in m.seconds), flush=True)
    return m


# ----------------------------------------------------------------------------------------------
# Machine


def measure_bandwidth(gib: float) -> dict[str, float]:
    """Single-thread read bandwidth (bytes/s) of NumPy reductions over a float32 array."""
    x = np.ones(int(gib * 2**30) // 4, np.float32)
    out = {}
    for name, f in (("sum", x.sum), ("max", x.max)):
        best = math.inf
        for _ in range(5):
            t = time.perf_counter()
            f()
            best = min(best, time.perf_counter() - t)
        out[name] = x.nbytes / best
    del x
    return out


def llc_bytes() -> int:
    """The last-level cache size (32 MiB when it cannot be read)."""
    try:
        levels = Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")
        best = max(levels, key=lambda p: int((p / "level").read_text()))
        text = (best / "size").read_text().strip().upper()
        return int(text.rstrip("KMG")) * {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1], 1)
    except (OSError, ValueError):
        return 32 * 2**20


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "llc_bytes": llc_bytes(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "datapool": getattr(datapool, "__version__", "?"),
    }
    try:
        from datapool import _core

        info["datapool_simd"] = getattr(_core, "SIMD", "?")
    except ImportError:
        pass
    for mod in ("fpsample", "sklearn"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            info[mod] = None
    return info


# ----------------------------------------------------------------------------------------------
# Main


def parse_size(text: str) -> tuple[int, int]:
    n, d = text.lower().replace("×", "x").split("x")
    mult = {"k": 1000, "m": 1000000}.get(n[-1:], 1)
    return int(float(n[:-1] if mult > 1 else n) * mult), int(d)


def csv_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def fmt_seconds(r: Row) -> str:
    if r.seconds is None:
        return "FAIL"
    return ("~" if r.extrapolated else "") + (
        f"{r.seconds:.3f}" if r.seconds < 10 else f"{r.seconds:.1f}"
    )


def print_table(rows: list[Row]) -> None:
    head = (
        f"{'implementation':28s} {'data':9s} {'N×d':>12s} {'k':>6s} {'median s':>10s} "
        f"{'runs':>4s} {'picks timed':>11s} {'÷ auto':>7s} {'skipped':>7s}  ran / check"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        ratio = "" if r.ratio_vs_auto is None else f"{r.ratio_vs_auto:.2f}"
        skipped = "" if r.skipped is None else f"{r.skipped:.3f}"
        note = (r.algorithm + "; " if r.algorithm else "") + (
            "ok" if r.check_ok else "CHECK FAILED"
        )
        print(
            f"{r.label:28s} {r.data:9s} {f'{r.n}×{r.d}':>12s} {r.k:6d} {fmt_seconds(r):>10s} "
            f"{r.runs:4d} {r.steps_timed:11d} {ratio:>7s} {skipped:>7s}  {note}"
        )


def check_reference(x: np.ndarray, ref_run: Picks, kmax: int, a: argparse.Namespace) -> list[str]:
    """Problems with the reference run (empty when it is sound)."""
    ref = ref_run.indices
    if len(ref) != kmax:
        return [f"reference made {len(ref)} of {kmax} picks"]
    problems = []
    steps = kmax if a.quick else min(kmax, a.verify_steps)
    t0 = time.perf_counter()
    err = verify_greedy(x, ref[:steps], RTOL)
    if err:
        problems.append(f"reference, float64 verification: {err}")
    else:
        print(
            f"  reference: first {steps} picks verified in float64 against all {len(x)} "
            f"candidates ({time.perf_counter() - t0:.1f} s)",
            flush=True,
        )
    if a.quick:

        def reseed64(prefix: np.ndarray, m: int) -> np.ndarray:
            return fps_float64(x, m, pool=prefix)

        c64 = Checker(x, fps_float64(x, kmax), reseed64, RTOL, a.max_reseeds).check(ref_run)
        print(f"  reference against float64 NumPy FPS: {c64.summary()}", flush=True)
        if not c64.ok:
            problems.append(f"reference against float64 NumPy FPS: {c64.message}")
    return problems


def run_config(
    kind: str, n: int, d: int, ks: list[int], impls: list[Impl], a: argparse.Namespace
) -> tuple[list[Row], list[str], list[dict[str, Any]]]:
    """All rows for one array: (rows, failures, bandwidth rows)."""
    rows: list[Row] = []
    failures: list[str] = []
    bw_rows: list[dict[str, Any]] = []
    kmax = max(ks)
    t0 = time.perf_counter()
    x = make_data(kind, n, d, a.seed, a.clusters, a.spread)
    print(
        f"\n{kind} {n}×{d}: made in {time.perf_counter() - t0:.1f} s ({x.nbytes / 2**30:.2f} GiB)",
        flush=True,
    )

    # The reference: datapool brute force, all cores, all picks; verified in float64.
    t0 = time.perf_counter()
    ref_run = datapool_runner("brute", 0)(x, kmax)
    print(
        f"  reference: datapool brute, threads=0, {len(ref_run.indices)} picks in "
        f"{time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    problems = check_reference(x, ref_run, kmax, a)
    if problems:
        for p in problems:
            print(f"  CHECK FAILED: {p}", flush=True)
        return rows, [f"{kind} {n}×{d}: {p}" for p in problems], bw_rows
    checker = Checker(x, ref_run.indices, datapool_reseed(x), RTOL, a.max_reseeds)

    for impl in impls:
        cache: dict[int, Measurement] = {}
        per_step = None
        if impl.brute_force and math.isfinite(a.max_run_s):
            probe = min(kmax, a.probe_steps)
            t, _, _ = timed(impl, x, probe)
            per_step = t / probe
        for k in ks:
            steps = k if per_step is None else plan_steps(per_step, k, a)
            if steps not in cache:
                cache[steps] = measure(impl, x, steps, checker, a)
            m = cache[steps]
            ok = m.check.ok
            med = statistics.median(m.seconds)
            row = Row(
                impl=impl.key,
                label=impl.label,
                data=kind,
                n=n,
                d=d,
                k=k,
                steps_timed=steps,
                extrapolated=steps < k,
                seconds=med * k / steps if ok else None,
                runs=len(m.seconds),
                seconds_all=m.seconds,
                cpu_per_wall=sum(m.cpu_seconds) / max(sum(m.seconds), 1e-12),
                algorithm=m.run.algorithm,
                evaluations=m.run.evaluations,
                center_evaluations=m.run.center_evaluations,
                kernels=m.run.kernels,
                check=m.check.summary(),
                check_ok=ok,
                divergences=m.check.divergences,
            )
            if m.run.evaluations is not None:
                row.skipped = 1.0 - m.run.evaluations / (n * len(m.run.indices))
            if m.run.screen == "int8" and m.run.evaluations and m.run.rechecks is not None:
                # Bytes read per pick: the int8 row and its 16-byte meta for every row screened,
                # the float32 row for every second look, against N·d·4 for a float32 pass.
                picks = max(1, len(m.run.indices))
                per_pick = (m.run.evaluations * (d + 16) + m.run.rechecks * 4 * d) / picks
                row.algorithm = (
                    f"{row.algorithm}+int8, {m.run.rechecks / m.run.evaluations:.2%} rechecked, "
                    f"{per_pick / (n * d * 4):.3f}×N·d·4 read/pick"
                )
            if not ok:
                failures.append(f"{impl.label}, {kind} {n}×{d}, k={k}: {m.check.message}")
            rows.append(row)
            if impl.key == "brute" and kind == "uniform" and ok:
                bw_rows.append(
                    {
                        "n": n,
                        "d": d,
                        "k": k,
                        "steps_timed": steps,
                        "seconds_per_step": med / steps,
                        "bytes_per_step": n * (4 * d + 8),
                    }
                )
        for m in cache.values():
            cpu = sum(m.cpu_seconds) / max(sum(m.seconds), 1e-12)
            if not impl.key.endswith("-t0") and cpu > 1.3:
                print(
                    f"    note: {impl.label} used {cpu:.2f} CPU-seconds per second over "
                    f"{m.steps} picks; it is meant to run on one thread",
                    flush=True,
                )
        if isinstance(impl.run, FpsampleRunner):
            impl.run.release()
        if bw_rows and impl.key == "brute":
            # The machine's bandwidth, measured now: the same conditions as the brute rows.
            bandwidth = measure_bandwidth(a.bw_gib)
            print(
                f"  single-thread bandwidth, NumPy over {a.bw_gib:g} GiB float32, best of 5: "
                + ", ".join(f"x.{k}() {v / 1e9:.1f} GB/s" for k, v in bandwidth.items()),
                flush=True,
            )
            for b in bw_rows:
                b["bytes_per_s"] = b["bytes_per_step"] / b["seconds_per_step"]
                b["numpy_bytes_per_s"] = bandwidth
                b["fraction_of_numpy"] = b["bytes_per_s"] / max(bandwidth.values())
                b["fits_in_cache"] = b["bytes_per_step"] < 2 * llc_bytes()
    return rows, failures, bw_rows


def print_report(rows: list[Row], bw_rows: list[dict[str, Any]]) -> None:
    for r in rows:
        auto = next(
            (
                q
                for q in rows
                if q.impl == "auto" and (q.data, q.n, q.d, q.k) == (r.data, r.n, r.d, r.k)
            ),
            None,
        )
        if auto and auto.seconds and r.seconds:
            r.ratio_vs_auto = r.seconds / auto.seconds
    print()
    print_table(rows)
    print(
        "~ : timed over the first 'picks timed' picks and extrapolated linearly to k; brute "
        "force costs the same at every pick, so this is fair."
    )
    print(
        "÷ auto: median seconds over datapool auto's (1 thread). skipped: 1 - evaluations / "
        "(N × picks)."
    )
    print("\nChecks (float64 profiles against datapool brute force; ties within 1e-5 followed):")
    seen = set()
    for r in rows:
        key = (r.label, r.data, r.n, r.d, r.steps_timed)
        if key not in seen:
            seen.add(key)
            print(f"  {r.label:28s} {r.data:9s} {r.n}×{r.d}, {r.steps_timed} picks: {r.check}")
    if bw_rows:
        print(
            "\nMemory bandwidth of datapool brute, 1 thread, uniform data (bytes per step = "
            "N·d·4 + N·8), against a single-thread NumPy reduction measured after it:"
        )
        for b in bw_rows:
            numpy_bw = max(b["numpy_bytes_per_s"].values())
            cache = (
                " (< 2× the last-level cache: may be partly cached)" if b["fits_in_cache"] else ""
            )
            print(
                f"  {b['n']}×{b['d']}, k={b['k']}: {b['seconds_per_step'] * 1e3:.2f} ms per "
                f"step, {b['bytes_per_s'] / 1e9:.1f} GB/s of NumPy's {numpy_bw / 1e9:.1f} GB/s"
                f" = {100 * b['fraction_of_numpy']:.0f}%{cache}"
            )


def verify_combined(
    x: np.ndarray,
    picks: np.ndarray,
    fixed: np.ndarray,
    mask: np.ndarray,
    P: np.ndarray | None,
    target: np.ndarray | None,
    steps: int,
) -> str | None:
    """Each of the first `steps` picks has the best float64 score (within 1e-5) given the
    picks before it (docs/selection.md, the combined rule)."""
    from datapool.select.greedy import balance_gain

    mind = np.full(len(x), np.inf)
    counts = np.zeros(P.shape[1]) if P is not None else None
    alive = mask.copy()
    for j, p in enumerate(picks[:steps].tolist()):
        with np.errstate(divide="ignore"):
            score = fixed + (np.log(mind) if np.isfinite(mind).all() else 0.0)
        if P is not None and target is not None and counts is not None:
            score = score + P @ balance_gain(counts, target)
        score[~alive | (mind == 0)] = -np.inf
        best = float(score.max())
        if not abs(score[p] - best) <= 1e-5 * max(1.0, abs(best)):
            return f"pick {j} (index {p}) scores {score[p]:.9g}, the best is {best:.9g}"
        alive[p] = False
        c = x[p].astype(np.float64)
        for lo in range(0, len(x), CHUNK):
            diff = x[lo : lo + CHUNK].astype(np.float64) - c
            d = np.sqrt(np.einsum("ij,ij->i", diff, diff))
            np.minimum(mind[lo : lo + CHUNK], d, out=mind[lo : lo + CHUNK])
        if counts is not None and P is not None:
            counts += P[p]
    return None


def strategy_rows(a: argparse.Namespace) -> int:
    from datapool.select.greedy import BalanceTerm, greedy_core

    clusters = a.clusters or 1000
    print("command: " + " ".join(["python bench/bench_select.py", *sys.argv[1:]]))
    failed = False
    for n, d in (parse_size(s) for s in a.sizes):
        x = make_data("clustered", n, d, a.seed, clusters, a.spread)
        rng = np.random.default_rng(a.seed + 7)
        fixed = np.log(1.0 - rng.random(n))
        mask = rng.random(n) < 0.8
        P = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]
        target = np.array([0.5] + [0.5 / 9] * 9)
        for k in sorted(set(a.k)):
            t = time.perf_counter()
            base = datapool.select_diverse(x, k, threads=0, **RAW)
            t_div = time.perf_counter() - t
            print(f"clustered {n}x{d} k={k}: diversity {t_div:.2f} s ({len(base)} picks)")
            for label, kw, chk in (
                ("weights+threshold+diversity", dict(fixed=fixed, mask=mask), (None, None)),
                (
                    "balance10+diversity",
                    dict(
                        fixed=np.zeros(n),
                        mask=np.ones(n, bool),
                        balances=(BalanceTerm(P, np.zeros(10), target, 1.0),),
                    ),
                    (P.astype(np.float64), target),
                ),
            ):
                none = np.zeros((0, d), np.float32)
                t = time.perf_counter()
                g = greedy_core(x, k, none, diversity=1.0, **kw)
                dt = time.perf_counter() - t
                err = verify_combined(
                    x, g.indices, kw["fixed"], kw["mask"], chk[0], chk[1], a.verify_steps
                )
                failed |= err is not None
                print(
                    f"  {label}: {dt:.2f} s ({len(g.indices)} picks), {dt / t_div:.2f}x "
                    f"diversity; first {a.verify_steps} picks "
                    + ("verified" if err is None else f"CHECK FAILED: {err}")
                    + f"; screen {g.info['screen']}, {g.info['rechecks']} of "
                    f"{g.info['evaluations']} evaluations measured again"
                )
                if a.float32:
                    t = time.perf_counter()
                    f = greedy_core(x, k, none, diversity=1.0, screen=False, **kw)
                    df = time.perf_counter() - t
                    same = (
                        np.array_equal(f.indices, g.indices)
                        and np.array_equal(f.min_distances, g.min_distances)
                        and f.scores == g.scores
                        and f.info["evaluations"] == g.info["evaluations"]
                    )
                    failed |= not same
                    print(
                        f"    without the screen (float32): {df:.2f} s, {df / dt:.2f}x the "
                        f"screened; every pick, min-distance and score "
                        + ("identical" if same else "DIFFERENT: CHECK FAILED")
                    )
    return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:2]),
    )
    ap.add_argument("--quick", action="store_true", help="20000x64, k=200, both datasets")
    ap.add_argument(
        "--sizes",
        type=csv_list,
        default=["100000x128", "1000000x128", "1000000x512"],
        help="comma-separated NxD (1Mx512 and 100kx128 work too)",
    )
    ap.add_argument(
        "--k",
        type=lambda s: [int(v) for v in csv_list(s)],
        default=[1000, 10000],
        help="comma-separated numbers of picks (default 1000,10000)",
    )
    ap.add_argument("--data", type=csv_list, default=["clustered", "uniform"])
    ap.add_argument(
        "--impls",
        type=csv_list,
        default=["auto", "auto-t0", "brute", "fpsample", "kcenter", "numpy"],
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--long-s",
        type=float,
        default=60.0,
        help="a run longer than this is not repeated (default 60)",
    )
    ap.add_argument(
        "--max-run-s",
        type=float,
        default=120.0,
        help="brute-force rows whose full run would take longer are timed on a "
        "prefix and extrapolated (default 120; inf: never)",
    )
    ap.add_argument("--partial-steps", type=int, default=1000)
    ap.add_argument(
        "--slow-partial-steps",
        type=int,
        default=200,
        help="prefix when even --partial-steps would exceed --max-run-s",
    )
    ap.add_argument(
        "--probe-steps",
        type=int,
        default=20,
        help="picks timed to estimate a brute-force row's cost per step",
    )
    ap.add_argument(
        "--verify-steps",
        type=int,
        default=100,
        help="reference picks verified in float64 against all candidates",
    )
    ap.add_argument(
        "--max-reseeds",
        type=int,
        default=10,
        help="ties followed per run before the check gives up (and fails)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--clusters", type=int, help="clusters in the clustered data (1000; 20 with --quick)"
    )
    ap.add_argument("--spread", type=float, default=0.1)
    ap.add_argument(
        "--bw-gib",
        type=float,
        default=2.0,
        help="size of the array for the bandwidth reference (default 2)",
    )
    ap.add_argument("--json", type=Path, help="also write every row here")
    ap.add_argument("--strategies", action="store_true", help="only the strategy rows (see above)")
    ap.add_argument(
        "--float32",
        action="store_true",
        help="--strategies: also run each combined row without the int8 screen and check that "
        "every pick, min-distance and score is identical",
    )
    ap.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="cuda: GPU rows instead (bench_select_gpu.py; needs a GPU and a CUDA build)",
    )
    a = ap.parse_args()
    if a.strategies:
        return strategy_rows(a)
    if a.quick:
        a.sizes, a.k = ["20000x64"], [200]
        # k / clusters = 10, as with k=10000 on 1000 clusters, so that pruning has work to do.
        a.clusters = a.clusters or 20
        a.bw_gib = min(a.bw_gib, 0.5)
        # Small enough that the slowest peers take the prefix-and-extrapolate path too.
        a.max_run_s, a.partial_steps, a.slow_partial_steps = min(a.max_run_s, 0.1), 100, 50
    a.clusters = a.clusters or 1000
    sizes = [parse_size(s) for s in a.sizes]
    ks = sorted(set(a.k))
    for kind in a.data:
        if kind not in ("clustered", "uniform"):
            ap.error(f"unknown --data {kind!r}: use clustered and/or uniform")
    if a.device == "cuda":
        from bench_select_gpu import main_gpu

        return main_gpu(a, sizes, ks, make_data)
    if "algorithm" not in inspect.signature(datapool.select_diverse).parameters:
        print(
            "datapool.select_diverse has no `algorithm` parameter: this benchmark needs the "
            "selection core with algorithm='auto'/'pruned'/'brute' installed",
            file=sys.stderr,
        )
        return 2
    all_impls = make_impls(FpsampleRunner())
    for key in a.impls:
        if key not in all_impls:
            ap.error(f"unknown --impls {key!r}: choose from {', '.join(all_impls)}")
    for key, mod in (("fpsample", "fpsample"), ("kcenter", "sklearn")):
        if key in a.impls:
            try:
                __import__(mod)
            except ImportError:
                print(f"{mod} is not installed: skipping {key}")
                a.impls.remove(key)
    impls = [all_impls[key] for key in a.impls]

    info = machine_info()
    print(
        f"machine: {info['cpu']}, {info['cores']} cores; python {info['python']}, numpy "
        f"{info['numpy']}, datapool {info['datapool']} ({info.get('datapool_simd', '?')}), "
        f"fpsample {info['fpsample']}, scikit-learn {info['sklearn']}"
    )
    print("command: " + " ".join(["python bench/bench_select.py", *sys.argv[1:]]))

    rows: list[Row] = []
    failures: list[str] = []
    bw_rows: list[dict[str, Any]] = []
    for kind in a.data:
        for n, d in sizes:
            if max(ks) > n:
                print(f"skipping {kind} {n}×{d}: k={max(ks)} > N")
                continue
            r, f, b = run_config(kind, n, d, ks, impls, a)
            rows += r
            failures += f
            bw_rows += b
            gc.collect()

    print_report(rows, bw_rows)
    if a.json:
        a.json.write_text(
            json.dumps(
                {
                    "command": sys.argv,
                    "machine": info,
                    "brute_bandwidth": bw_rows,
                    "settings": {k: v for k, v in vars(a).items() if k != "json"},
                    "rows": [asdict(r) for r in rows],
                    "failures": failures,
                },
                indent=1,
                default=str,
            )
        )
        print(f"\nwrote {a.json}")
    if failures:
        print("\nCHECK FAILED:", file=sys.stderr)
        for f in failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
