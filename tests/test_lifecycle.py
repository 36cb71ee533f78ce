"""A pool's long life, as a stateful property test: hypothesis drives the real CLI
(`datapool.cli.main`, in this process; a real `python -m datapool` subprocess for the run it
kills) through random sequences of what months of nightly runs see: files added, overwritten
with new content, touched (same bytes, new mtime), deleted; `run` with a budget (`--n-samples`,
`--proportion`, `--min-distance`), `--process-all`; `export` (`--mirror`); a second pool grown
from the same source and `merge`d with the first (the merged pool then lives on); and a run
killed with SIGKILL at a random moment.

After every step the pool is checked against a model kept here, which knows each source file's
bytes and mtime and every sample's file version, and against embeddings computed once per file
content by a separate run (an oracle, independent of the pool under test):

- the pool opens (`status`, `ls`); its CSV loads with Lightly's loader and has no duplicate names;
- its samples are exactly the model's: a sample whose file is unchanged is never lost, and a
  changed file's old samples are replaced; every sample's embedding is that of its file's version
  in the ledger (so no stale sample sits beside the new version's);
- the ledger agrees with the source: each listed file is ok or skipped with a reason, the rest are
  counted missing, and each row's n_selected is its number of samples in the pool;
- each run's new picks are farthest-point picks over its candidates with the pool counted as
  selected (recomputed with numpy in float64; where two candidates tie to within float32
  rounding either may be picked, docs/selection.md);
- an export holds exactly the exported samples, images byte-identical to the source;
- a killed run leaves the pool as before the run or as a complete run leaves it, and the next run
  works.

Runtime: 10 examples of up to 30 steps, ~300 steps in all (~15-30 s on 2 shared cores); the
examples are derandomized (the same ones every time). `pytest -s` prints how many steps of each
kind ran. A longer hunt, with fresh random examples each time (200 x 40: ~15 min):

    export DATAPOOL_LIFECYCLE_RANDOM=1 DATAPOOL_LIFECYCLE_EXAMPLES=200 DATAPOOL_LIFECYCLE_STEPS=40
    pytest -s tests/test_lifecycle.py
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from datapool import Pool
from datapool.cli import main as cli_main
from datapool.media import write_image, write_video

from ._robust import assert_ledger_agrees, assert_same_pool, leftovers, tree_digest
from .conftest import PACKAGE_PATH, clip_frames, save_image_model, scene
from .pool_csv_reference import lightly_load_embeddings

EXAMPLES = int(os.environ.get("DATAPOOL_LIFECYCLE_EXAMPLES", "10"))
STEPS = int(os.environ.get("DATAPOOL_LIFECYCLE_STEPS", "30"))
DIM = 3 + 3 * 4 * 4  # the tiny model: mean colour and a 4x4 grid of mean colours
TIE = 1e-5  # distances this close are a tie under float32 rounding (docs/selection.md)

# The source's file names and kinds. Contents come from a small library, so a file can be
# overwritten with what another file holds, or with what it held before.
KEYS = ("a.jpg", "b.jpg", "c.png", "d/e.jpg", "d/f.png", "g.jpg", "v1.mp4", "d/v2.mp4")


def _kind(key: str) -> str:
    return key.rsplit(".", 1)[1]


@dataclass
class Library:
    contents: dict[str, list[bytes]]  # "jpg"/"png"/"mp4" -> contents, the broken JPEG last
    frames: dict[
        str, list[np.ndarray] | None
    ]  # blake2b of content -> frame embeddings, None: broken
    model: Path


def _blake(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _tiny_model(path: Path) -> Path:
    from onnx import helper

    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["g"]),
        helper.make_node("AveragePool", ["input"], ["p"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("Flatten", ["g"], ["gf"], axis=1),
        helper.make_node("Concat", ["gf", "f"], ["out"], axis=1),
    ]
    return save_image_model(path, "tiny", nodes, ["N", 3, 32, 32], ["N", None])


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Library:
    """Real encoded media and each content's frame embeddings, from one run over all of them
    (each under its own name: no two are alike, so that run keeps every frame)."""
    pytest.importorskip("onnx")
    tmp = tmp_path_factory.mktemp("lifecycle-lib")
    model = _tiny_model(tmp / "tiny.onnx")
    lib = tmp / "lib"
    paths: dict[str, list[Path]] = {"jpg": [], "png": [], "mp4": []}
    for i in range(7):
        paths["jpg"].append(write_image(lib / f"j{i}.jpg", scene(100 + i, 48, 64)))
    for i in range(4):
        paths["png"].append(write_image(lib / f"p{i}.png", scene(200 + i, 48, 64)))
    for i, n in enumerate((3, 4, 5)):
        paths["mp4"].append(write_video(lib / f"v{i}.mp4", clip_frames(300 + i, n, 32, 48), fps=10))
    contents = {k: [p.read_bytes() for p in v] for k, v in paths.items()}
    good = contents["jpg"][0]
    contents["jpg"].append(good[: len(good) // 2])  # a JPEG cut short: skipped with its reason
    (lib / "broken.jpg").write_bytes(contents["jpg"][-1])
    pool = tmp / "oracle"
    rc, out = _cli("run", lib, "--pool", pool, "--model", model, "--n-samples", 10**6, "--json")
    assert rc == 0, out
    p = Pool.open(pool)
    emb = dict(zip(p.filenames, np.asarray(p.embeddings, np.float64)))
    frames: dict[str, list[np.ndarray] | None] = {}
    for path in sorted(lib.iterdir()):
        data = path.read_bytes()
        if path.suffix == ".mp4":
            n = len([m for m in emb if m.startswith(f"{path.stem}-")])
            frames[_blake(data)] = [emb[f"{path.stem}-{i}-mp4.png"] for i in range(n)]
        else:
            frames[_blake(data)] = [emb[path.name]] if path.name in emb else None
    assert frames[_blake(contents["jpg"][-1])] is None
    assert sum(len(v) for v in frames.values() if v) == len(p) == 7 + 4 + 3 + 4 + 5
    return Library(contents, frames, model)


def _cli(*args: object) -> tuple[int, str]:
    """`datapool ARGS` in this process: (exit status, stdout then stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli_main([str(a) for a in args])
    return rc, out.getvalue() + err.getvalue()


def _json(text: str) -> Any:
    """The JSON document that `--json` printed (stdout; stderr follows it)."""
    return json.JSONDecoder().raw_decode(text.lstrip())[0]


@dataclass
class Sample:
    name: str
    key: str
    version: str  # blake2b of the file's bytes it was made from
    frame: int


@dataclass
class Row:
    size: int
    mtime_ns: int
    version: str
    ok: bool


@dataclass
class PoolModel:
    """What a pool should hold: its samples in order and its ledger."""

    path: Path
    samples: list[Sample] = field(default_factory=list)
    ledger: dict[str, Row] = field(default_factory=dict)
    runs: int = 0


def _rows(vectors: list[np.ndarray]) -> np.ndarray:
    return np.array(vectors, np.float64).reshape(len(vectors), DIM)


def _frame_name(key: str, i: int, n: int) -> str:
    stem, ext = key.rsplit(".", 1)
    return f"{stem}-{i:0{len(str(n))}d}-{ext}.png"


def fps_check(
    pool: np.ndarray,
    cands: np.ndarray,
    picked: list[int],
    budget: int,
    min_distance: float | None,
) -> None:
    """`picked` are the farthest-point picks over `cands` with `pool` counted as selected, in
    float64: each pick is a largest min-distance (to within TIE), and selection stopped at the
    budget, below min_distance, or at a duplicate (distance 0)."""
    d = np.full(len(cands), np.inf)
    if len(pool) and len(cands):
        d = np.sqrt(((cands[:, None, :] - pool[None, :, :]) ** 2).sum(-1)).min(1)
    taken = np.zeros(len(cands), bool)
    for step, i in enumerate(picked):
        assert not taken[i], f"pick {step}: candidate {i} picked twice"
        free = np.where(~taken)[0]
        best = free[np.argmax(d[free])]  # the lowest index among the largest
        assert d[i] >= d[best] - TIE, (
            f"pick {step}: candidate {i} at {d[i]:.7f}, but {best} is farther at {d[best]:.7f}"
        )
        if i != best:
            assert d[i] == np.inf or d[best] - d[i] <= TIE
            assert not (d[i] == d[best] and i > best), f"pick {step}: tie went to {i}, not {best}"
        assert d[i] > 0, f"pick {step}: candidate {i} duplicates a selected sample"
        if min_distance is not None:
            assert d[i] >= min_distance - TIE, f"pick {step}: {d[i]} below --min-distance"
        taken[i] = True
        d = np.minimum(d, np.sqrt(((cands - cands[i]) ** 2).sum(-1)))
    free = np.where(~taken)[0]
    if len(picked) < budget and len(free):
        top = d[free].max()
        assert top <= TIE or (min_distance is not None and top < min_distance + TIE), (
            f"stopped after {len(picked)} of {budget} picks with a candidate at {top:.7f}"
        )


def fps_from_empty(x: np.ndarray, n: int) -> tuple[list[int], bool]:
    """Farthest-point picks over `x` from an empty start (first pick row 0, ties to the lowest
    index, stop at a duplicate), in float64; and whether no pick was a near-tie (within TIE)."""
    d = np.full(len(x), np.inf)
    picks: list[int] = []
    clear = True
    while len(picks) < min(n, len(x)):
        order = np.argsort(-d, kind="stable")
        i = int(order[0])
        if d[i] == 0:
            break
        if len(order) > 1 and d[i] != np.inf and d[i] - d[order[1]] <= TIE:
            clear = False
        picks.append(i)
        d = np.minimum(d, np.sqrt(((x - x[i]) ** 2).sum(-1)))
        d[picks] = -1.0
    return picks, clear


@dataclass(frozen=True)
class Budget:
    flags: tuple[object, ...]
    n: int | None = None
    proportion: float | None = None
    min_distance: float | None = None

    def of(self, n_candidates: int) -> int:
        if self.n is not None:
            return min(self.n, n_candidates)
        if self.proportion is not None:
            if n_candidates == 0:
                return 0
            return max(1, min(n_candidates, int(np.floor(self.proportion * n_candidates + 0.5))))
        return n_candidates


budgets = st.one_of(
    st.integers(1, 6).map(lambda n: Budget(("--n-samples", n), n=n)),
    st.sampled_from([0.2, 0.5, 1.0]).map(lambda p: Budget(("--proportion", p), proportion=p)),
    st.sampled_from([0.02, 0.1, 0.3]).map(lambda m: Budget(("--min-distance", m), min_distance=m)),
    st.tuples(st.integers(1, 6), st.sampled_from([0.05, 0.2])).map(
        lambda t: Budget(("--n-samples", t[0], "--min-distance", t[1]), n=t[0], min_distance=t[1])
    ),
)


STATS: Counter[str] = Counter()  # steps of each kind, over all examples (printed with -s)


class PoolLife(RuleBasedStateMachine):
    lib: Library  # set by the test

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="datapool-life-"))
        self.src = self.tmp / "bucket"
        self.src.mkdir()
        self.files: dict[str, tuple[bytes, int]] = {}  # key -> (bytes, mtime_ns)
        self.clock = 1_700_000_000 * 10**9
        self.main = PoolModel(self.tmp / "pool")
        self.side = PoolModel(self.tmp / "side")
        self.dest = self.tmp / "export"
        self.n_pools = 0
        self.n_moved = 0
        STATS["examples"] += 1

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    @initialize(
        keys=st.lists(st.sampled_from(KEYS), min_size=3, max_size=len(KEYS), unique=True),
        pick=st.integers(0, 100),
    )
    def first_files(self, keys: list[str], pick: int) -> None:
        """The source a pool starts from: a few files."""
        for i, key in enumerate(keys):
            options = self.lib.contents[_kind(key)]
            self._write(key, options[(pick + i) % len(options)])

    # -- the source ------------------------------------------------------------------------
    def _tick(self) -> int:
        self.clock += 10**9
        return self.clock

    def _write(self, key: str, data: bytes, backdate: bool = False) -> None:
        path = self.src / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        t = self._tick()
        if backdate:  # a restore from a backup (`cp -p`): an mtime older than any before
            t = 2 * 1_700_000_000 * 10**9 - t
        os.utime(path, ns=(t, t))
        self.files[key] = (data, t)

    @rule(key=st.sampled_from(KEYS), pick=st.integers(0, 100), backdate=st.booleans())
    def write_file(self, key: str, pick: int, backdate: bool) -> None:
        """Add a file, or overwrite one with new content (or the same bytes: a rewrite), with a
        new mtime or (a restore) an old one."""
        STATS["write_file"] += 1
        options = self.lib.contents[_kind(key)]
        self._write(key, options[pick % len(options)], backdate)

    @precondition(lambda self: self.files)
    @rule(pick=st.integers(0, 100))
    def touch_file(self, pick: int) -> None:
        STATS["touch_file"] += 1
        key = sorted(self.files)[pick % len(self.files)]
        data, _ = self.files[key]
        t = self._tick()
        os.utime(self.src / key, ns=(t, t))
        self.files[key] = (data, t)

    @precondition(lambda self: self.files)
    @rule(pick=st.integers(0, 100), to=st.one_of(st.sampled_from(KEYS), st.none()))
    def move_file(self, pick: int, to: str | None) -> None:
        """`mv` a file to another name of its kind (over the file there, if any), or (`to` None)
        into a new folder, as a reorganised bucket does: same bytes and mtime, so a run takes it
        as moved (pool/moves.py) where the name is new to it."""
        STATS["move_file"] += 1
        key = sorted(self.files)[pick % len(self.files)]
        if to is None:
            self.n_moved += 1
            to = f"moved{self.n_moved}/{key.rsplit('/', 1)[-1]}"
        if _kind(to) != _kind(key) or to == key:
            return
        (self.src / to).parent.mkdir(parents=True, exist_ok=True)
        os.rename(self.src / key, self.src / to)
        self.files[to] = self.files.pop(key)

    @precondition(lambda self: self.files)
    @rule(pick=st.integers(0, 100))
    def delete_file(self, pick: int) -> None:
        STATS["delete_file"] += 1
        key = sorted(self.files)[pick % len(self.files)]
        (self.src / key).unlink()
        del self.files[key]

    # -- runs ------------------------------------------------------------------------------
    def _moves(self, base: PoolModel) -> int:
        """Apply to `base` the moves a run finds (pool/moves.py): a gone file read whole whose
        kind, size and bytes a new file has, paired in key order, is that file renamed, unless
        one of its new sample names is taken. Returns how many."""
        waiting: dict[tuple[bool, int, str], list[str]] = {}
        for key in sorted(base.ledger):
            row = base.ledger[key]
            if key not in self.files and row.ok:
                waiting.setdefault((_kind(key) == "mp4", row.size, row.version), []).append(key)
        taken = {s.name for s in base.samples} | set(self.files)
        moved = 0
        for key in sorted(k for k in self.files if k not in base.ledger):
            data, mtime = self.files[key]
            olds = waiting.get((_kind(key) == "mp4", len(data), _blake(data)))
            if not olds:
                continue
            old = olds.pop(0)
            n = len(self.lib.frames[_blake(data)] or [])
            renamed = {
                s.name: key if s.name == old else _frame_name(key, s.frame, n)
                for s in base.samples
                if s.key == old
            }
            if any(name in taken and name != key for name in renamed.values()):
                continue
            taken.update(renamed.values())
            base.samples = [
                replace(s, name=renamed[s.name], key=key) if s.key == old else s
                for s in base.samples
            ]
            base.ledger[key] = replace(base.ledger.pop(old), mtime_ns=mtime)
            moved += 1
        return moved

    def _expect(
        self, m: PoolModel, process_all: bool
    ) -> tuple[PoolModel, list[str], list[Any], int]:
        """The pool before selection (base), the files to process, the candidates: (name, key,
        version, frame, embedding), in key then frame order, and the number of files moved."""
        base = PoolModel(m.path) if process_all else replace(m, samples=list(m.samples))
        base.ledger = {} if process_all else dict(m.ledger)
        base.runs = 0 if process_all else m.runs
        moved = 0 if process_all else self._moves(base)
        todo, touched = [], []
        for key in sorted(self.files):
            data, mtime = self.files[key]
            row = base.ledger.get(key)
            if row is not None and row.size == len(data) and row.mtime_ns == mtime:
                continue
            if row is not None and row.size == len(data) and row.version == _blake(data):
                touched.append(key)
                continue
            todo.append(key)
        base.samples = [s for s in base.samples if s.key not in todo]
        cands = []
        for key in todo:
            data, _ = self.files[key]
            frames = self.lib.frames[_blake(data)]
            for i, e in enumerate(frames or []):
                name = key if _kind(key) != "mp4" else _frame_name(key, i, len(frames or []))
                cands.append((name, key, _blake(data), i, e))
        for key in touched:  # recorded by the run, one that adds nothing too
            base.ledger[key] = replace(base.ledger[key], mtime_ns=self.files[key][1])
        return base, todo, cands, moved

    def _run(self, m: PoolModel, budget: Budget, process_all: bool) -> PoolModel:
        """`datapool run` on the pool of `m`, checked; returns the model of the pool after it."""
        base, todo, cands, moved = self._expect(m, process_all)
        args = ["run", self.src, "--pool", m.path, "--model", self.lib.model, *budget.flags]
        rc, out = _cli(*args, *(["--process-all"] if process_all else []), "--json", "-q")
        assert rc == 0, out
        res = _json(out)
        self._check_ledger_vs_source(res["counts"], base)
        assert res["counts"].get("moved", 0) == moved, (res["counts"], moved)
        if res["run"] is None:  # nothing new: the pool's samples stay, touched files' mtimes
            assert not todo and not process_all and not moved, (todo, out)
            return replace(m, samples=list(m.samples), ledger=base.ledger)
        assert todo or process_all or moved
        STATS["moved: runs that moved files"] += bool(moved)
        return self._check_picks(m.path, base, todo, cands, budget, res["run"])

    def _check_picks(
        self,
        path: Path,
        base: PoolModel,
        todo: list[str],
        cands: list[Any],
        budget: Budget,
        index: int,
    ) -> PoolModel:
        assert index == base.runs, (index, base.runs)
        pool = Pool.open(path)
        new = [n for n, lab in zip(pool.filenames, pool.labels.tolist()) if lab == index]
        position = {c[0]: i for i, c in enumerate(cands)}
        assert all(n in position for n in new), (new, [c[0] for c in cands])
        picked = [position[n] for n in new]
        kept = _rows([self._embedding(s) for s in base.samples])
        emb = _rows([c[4] for c in cands])
        fps_check(kept, emb, picked, budget.of(len(cands)), budget.min_distance)
        after = replace(base, samples=list(base.samples), ledger=dict(base.ledger), runs=index + 1)
        after.samples += [Sample(*cands[i][:4]) for i in picked]
        for key in todo:
            data, mtime = self.files[key]
            ok = self.lib.frames[_blake(data)] is not None
            after.ledger[key] = Row(len(data), mtime, _blake(data), ok)
        return after

    def _embedding(self, s: Sample) -> np.ndarray:
        frames = self.lib.frames[s.version]
        assert frames is not None
        return frames[s.frame]

    def _check_ledger_vs_source(self, counts: dict[str, int], m: PoolModel) -> None:
        """Every listed file is in the ledger (ok, or skipped with a reason); the ledger's other
        files are the run's `missing`."""
        gone = set(m.ledger) - set(self.files)
        assert counts["listed"] == len(self.files), counts
        assert counts["missing"] == len(gone), (counts, sorted(gone))

    @rule(budget=budgets)
    def run(self, budget: Budget) -> None:
        STATS["run"] += 1
        self.main = self._run(self.main, budget, process_all=False)

    @precondition(lambda self: self.main.runs > 0)
    @rule(budget=budgets)
    def run_process_all(self, budget: Budget) -> None:
        STATS["run_process_all"] += 1
        self.main = self._run(self.main, budget, process_all=True)

    @rule(budget=budgets)
    def run_side(self, budget: Budget) -> None:
        """Grow a second pool from the same source (for merge)."""
        STATS["run_side"] += 1
        self.side = self._run(self.side, budget, process_all=False)

    @precondition(lambda self: self.main.runs > 0)
    @rule(budget=budgets, delay=st.floats(0.2, 2.0), process_all=st.booleans())
    def run_killed(self, budget: Budget, delay: float, process_all: bool) -> None:
        """A run killed with SIGKILL at a random moment: the pool is as before it or as after a
        complete run (made here on a copy), never a mix."""
        STATS["run_killed"] += 1
        m = self.main
        before = tree_digest(m.path)
        ref = self.tmp / "ref"
        shutil.rmtree(ref, ignore_errors=True)
        shutil.copytree(m.path, ref, symlinks=True)
        complete = self._run(replace(m, path=ref), budget, process_all=process_all)
        args = ["run", self.src, "--pool", m.path, "--model", self.lib.model, *budget.flags]
        args += ["--process-all"] if process_all else []
        env = {**os.environ, "PYTHONPATH": PACKAGE_PATH}
        p = subprocess.Popen(
            [sys.executable, "-m", "datapool", *map(str, args), "--no-progress", "-q"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        if p.wait(timeout=120) == 0:
            STATS["killed: had finished"] += 1
        pool = Pool.open(m.path)  # finishes or undoes an interrupted commit
        assert not leftovers(m.path), leftovers(m.path)
        if tree_digest(m.path) == before:
            STATS["killed: pool as before"] += 1
            return
        assert_same_pool(pool, Pool.open(ref))
        STATS["killed: pool as after a complete run"] += 1
        self.main = replace(complete, path=m.path)

    # -- merge and export ------------------------------------------------------------------
    @precondition(lambda self: self.main.runs > 0 and self.side.runs > 0)
    @rule(
        side_first=st.booleans(),
        adopt=st.booleans(),
        reselect=st.one_of(st.none(), st.integers(1, 8)),
    )
    def merge(self, side_first: bool, adopt: bool, reselect: int | None) -> None:
        STATS["merge"] += 1
        a, b = (self.side, self.main) if side_first else (self.main, self.side)
        self.n_pools += 1
        into = self.tmp / f"merged{self.n_pools}"
        flags = [] if reselect is None else ["--reselect", reselect]
        rc, out = _cli("merge", a.path, b.path, "--into", into, *flags, "--json")
        assert rc == 0, out
        names = {s.name for s in a.samples}
        merged = PoolModel(into, runs=a.runs + b.runs)
        merged.ledger = {**b.ledger, **a.ledger}
        merged.samples = list(a.samples) + [
            s
            for s in b.samples
            if s.name not in names and merged.ledger[s.key].version == s.version
        ]
        if reselect is not None:
            union = _rows([self._embedding(s) for s in merged.samples])
            picks, clear = fps_from_empty(union, reselect)
            got = {x.name for x in merged.samples} & set(Pool.open(into).filenames)
            if clear:  # no near-tie decided a pick: the same N samples
                assert got == {merged.samples[i].name for i in picks}, (got, picks)
            merged.samples = [s for s in merged.samples if s.name in got]
            assert len(merged.samples) == len(picks)
        self._check_pool(merged)
        if adopt:
            self.main = merged

    @precondition(lambda self: self.main.runs > 0)
    @rule(which=st.sampled_from(["latest", "all", "first"]), mirror=st.booleans())
    def export(self, which: str, mirror: bool) -> None:
        STATS["export"] += 1
        m = self.main
        flags = {"latest": [], "all": ["--all"], "first": ["--run", "0"]}[which]
        if mirror and self.dest.exists() and not (self.dest / "selected_filenames.txt").exists():
            shutil.rmtree(self.dest)
        rc, out = _cli(
            "export", m.path, self.dest, *flags, *(["--mirror"] if mirror else []), "--json"
        )
        pool = Pool.open(m.path)
        run = {"latest": m.runs - 1, "first": 0, "all": None}[which]
        exported = [
            s for s, lab in zip(m.samples, pool.labels.tolist()) if run is None or lab == run
        ]
        res = _json(out)
        refused = {x["name"] for x in res["refused"]}
        assert rc == (1 if refused else 0), out
        for s in exported:
            row = m.ledger[s.key]
            now = self.files.get(s.key)
            # unchanged: the same size and mtime, or the same size and bytes (a touched file)
            unchanged = now is not None and len(now[0]) == row.size
            unchanged = unchanged and (now[1] == row.mtime_ns or _blake(now[0]) == row.version)
            assert (s.name not in refused) == unchanged, (s, row, now, res["refused"])
        written = [s for s in exported if s.name not in refused]
        assert res["written"] == len(written), out
        for s in written:
            path = self.dest / s.name
            assert path.is_file(), s
            if s.name == s.key:  # an image is exported as it is
                assert path.read_bytes() == self.files[s.key][0], s
        if mirror:  # exactly these samples (a refused one an earlier export wrote may stay)
            held = {
                str(p.relative_to(self.dest))
                for p in self.dest.rglob("*")
                if p.is_file() and not p.name.startswith(".")
            }
            held.discard("selected_filenames.txt")
            assert {s.name for s in written} <= held <= {s.name for s in exported}, held

    # -- invariants ------------------------------------------------------------------------
    @invariant()
    def pools_hold_what_the_model_says(self) -> None:
        for m in (self.main, self.side):
            if m.runs:
                self._check_pool(m)

    def _check_pool(self, m: PoolModel) -> None:
        rc, out = _cli("status", m.path, "--json")
        assert rc == 0, out
        summary = _json(out)
        assert summary["size"] == len(m.samples)
        ok = sum(r.ok for r in m.ledger.values())
        assert summary["ledger"] == {
            "files": len(m.ledger),
            "ok": ok,
            "skipped": len(m.ledger) - ok,
        }
        assert sum(r["samples_in_pool"] for r in summary["runs"]) == len(m.samples)
        rc, out = _cli("ls", m.path, "--json")
        assert rc == 0, out
        assert [x["filename"] for x in _json(out)] == [s.name for s in m.samples]
        emb, labels, names = lightly_load_embeddings(str(m.path / "datapool_latest.csv"))
        assert len(set(names)) == len(names), "duplicate sample names in the CSV"
        pool = Pool.open(m.path)
        assert pool.filenames == [s.name for s in m.samples] == list(names)
        want = _rows([self._embedding(s) for s in m.samples])
        np.testing.assert_allclose(pool.embeddings, want, rtol=0, atol=1e-5)
        np.testing.assert_allclose(emb.reshape(len(names), DIM), want, rtol=0, atol=1e-5)
        assert labels == pool.labels.tolist()
        assert len(pool.runs) == m.runs
        ledger = pool.ledger.set_index("key")
        assert sorted(ledger.index) == sorted(m.ledger), (sorted(ledger.index), sorted(m.ledger))
        for key, row in m.ledger.items():
            got = ledger.loc[key]
            assert (int(got["size"]), int(got["mtime_ns"])) == (row.size, row.mtime_ns), key
            assert got["content_hash"] == row.version, key
            assert (got["status"] == "ok") == row.ok and str(got["status"]).strip(), key
        # Each sample is of its file's version in the ledger: no stale frames beside new ones.
        for s in m.samples:
            assert m.ledger[s.key].version == s.version, (
                f"{s.name} is of an older version of {s.key} than the ledger's"
            )
        assert_ledger_agrees(pool)


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_a_pool_lives_through_random_nights(library: Library) -> None:
    PoolLife.lib = library
    run_state_machine_as_test(
        PoolLife,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=os.environ.get("DATAPOOL_LIFECYCLE_RANDOM") is None,
            database=None,
        ),
    )
    print(
        f"\nlifecycle: {sum(v for k, v in STATS.items() if k != 'examples' and ':' not in k)} steps",
        dict(STATS),
    )


# Regressions the state machine found, as plain tests.


def test_merge_leaves_out_samples_of_another_version_of_a_file(tmp_path: Path) -> None:
    """Same-source merge: B selected frames of a video that has changed since, A grew from the
    new version. C kept A's ledger row (the new version) and B's frames of the old one beside
    A's, for good: the next run saw the file unchanged. Now B's samples of a file A holds in
    another version are left out (`stale`), and C holds only the version its ledger records."""
    src = tmp_path / "bucket"
    write_image(src / "img.jpg", scene(1, 48, 64))
    write_video(src / "v.mp4", clip_frames(2, 5, 32, 48), fps=10)
    rc, out = _cli("run", src, "--pool", tmp_path / "B", "--n-samples", 4, "-q")
    assert rc == 0, out
    old_frames = {n for n in Pool.open(tmp_path / "B").filenames if n.startswith("v-")}
    assert len(old_frames) >= 2
    write_video(src / "v.mp4", clip_frames(3, 5, 32, 48), fps=10)  # the video changes
    os.utime(src / "v.mp4", ns=(2 * 10**18, 2 * 10**18))
    rc, out = _cli("run", src, "--pool", tmp_path / "A", "--n-samples", 2, "-q")
    assert rc == 0, out
    a = Pool.open(tmp_path / "A")
    rc, out = _cli("merge", tmp_path / "A", tmp_path / "B", "--into", tmp_path / "C", "--json")
    assert rc == 0, out
    res = _json(out)
    c = Pool.open(tmp_path / "C")
    in_both = [n for n in Pool.open(tmp_path / "B").filenames if n in set(a.filenames)]
    assert c.filenames == a.filenames  # B's old frames left out, its image kept once (A's)
    assert res["stale"] == len(old_frames - set(a.filenames)) > 0
    assert res["size_a"] + res["size_b"] == res["size"] + res["duplicates"] + res["stale"]
    assert res["duplicates"] == len(in_both)
    assert_ledger_agrees(c)
    rc, out = _cli("merge", tmp_path / "A", tmp_path / "B", "--into", tmp_path / "C2")
    assert rc == 0 and "another version" in out, out
    # A the old version, B the new: C keeps A's row and samples; the next run replaces them.
    rc, out = _cli("merge", tmp_path / "B", tmp_path / "A", "--into", tmp_path / "D", "--json")
    assert rc == 0, out
    d = Pool.open(tmp_path / "D")
    assert {n for n in d.filenames if n.startswith("v-")} == old_frames
    rc, out = _cli("run", src, "--pool", tmp_path / "D", "--n-samples", 2, "--json", "-q")
    assert rc == 0 and _json(out)["counts"]["changed"] == 1, out
    assert_ledger_agrees(Pool.open(tmp_path / "D"))
