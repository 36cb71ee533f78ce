"""A randomized crash-and-concurrency harness: is every change to a pool atomic?

    PYTHONPATH=python python tools/chaos.py --seed 7 --rounds 40 [--backend local|s3|both]

Each round changes a small source folder of real media (PyAV-made JPEG, PNG and H.264 MP4: files
added, deleted, rewritten, renamed), then runs one step on the pool: `datapool run` (random
--n-samples / --proportion / --min-distance, sometimes --process-all, --keep-history, --tag,
--fps), `rm`, `undo`, `merge` into a new pool, `export` or `report`, in a real subprocess. The
step first runs to completion on a copy of the pool (the reference: what the complete step gives,
and, with DATAPOOL_TEST_TRACE, the named points it passes), then on the pool itself, in one of:

- plain: it must end as the reference did (exit code and state);
- kill at a point: DATAPOOL_TEST_PAUSE_AT one of the reference's points (its k-th hit), SIGKILL
  once paused there;
- kill after a delay: SIGKILL after a random fraction of the reference's time;
- two at once: paused at `locked`, a second lock-taking command on the same pool must fail fast
  (exit 3, the lock's message) and change nothing; then the first goes on to the end.

After each step: `datapool verify POOL` exits 0 (after a kill: before `status`, only the
interrupted commit's journal may be an error; `status` finishes it), `datapool status` exits 0,
its warnings are ones docs/robustness.md says a kill leaves, and the pool's state (the CSV, the
ledger and runs.json; runs.json without its times) equals the state before the step or that of
the reference. A later round's step is then the next run. On an s3:// pool (a moto server this
harness starts) the reference runs on a copy of the pool's objects in another bucket.

A failure prints the seed, the round, the step and the difference, keeps the work folder, and the
harness exits 1. `--stop-after-failure 0` goes on and counts them. Not part of the test suite
(tests/test_chaos.py runs two seeded rounds of it).
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import importlib.util
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON_DIR = ROOT / "python"
# The tests' helpers from this checkout; datapool as installed (`pip install .`: its built core),
# else this checkout's python/ (a build copied there, as in development).
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if importlib.util.find_spec("datapool") is None:
    sys.path.insert(0, str(PYTHON_DIR))

# (real PyAV media, as the tests make it; PACKAGE_PATH: where the `datapool` imported here lives)
from tests._robust import Proc as RobustProc  # noqa: E402
from tests._robust import env_with  # noqa: E402
from tests.conftest import PACKAGE_PATH, write_media  # noqa: E402

# The pool's state as the harness compares it (docs/robustness.md: a step leaves the pool as before
# it or as a complete step would).
STATE_FILES = ("datapool_latest.csv", "ledger.csv", "runs.json")
# runs.json keys that differ between two complete runs of the same step: times, and who ran.
_VOLATILE = re.compile(r"(^|_)(at|time|times|seconds|s|took|duration|elapsed|host|pid)$")
LOCK_TAKERS = ("run", "rm", "undo")
MODES = ("plain", "kill-point", "kill-delay", "concurrent")
OPS = ("run", "rm", "undo", "merge", "export", "report")


def _expected_after_kill(file: str, message: str, stage: str) -> str | None:
    """The warnings docs/robustness.md says a killed command leaves (named for the tally): its
    stale lock; before the next open (`status`), the files it staged before its commit point."""
    if message.startswith(("a stale lock:", "a stale lock object:")):
        return "a killed run's stale lock"
    if stage != "raw":
        return None
    if file.endswith(".pending") and message.startswith("staged by a commit that never reached"):
        return "files staged before the commit point"
    if re.fullmatch(r"runs/\d+", file) and message.startswith("a run folder of no run"):
        return "the run folder of a run killed before its commit (its staged files)"
    return None


class ChaosFailure(AssertionError):
    pass


@dataclass
class Step:
    op: str
    args: list[str]  # with {POOL} for the pool under test
    target: str = "pool"  # "pool", or "into": a merge's new pool
    into: str | None = None


@dataclass
class Outcome:
    mode: str
    state: str = ""  # before / after
    detail: str = ""


@dataclass
class World:
    backend: str
    work: Path
    env: dict[str, str]
    rng: random.Random
    source: Path
    pool: str
    other: str  # a second pool of the same model, for merges
    counter: int = 0
    tally: Counter = field(default_factory=Counter)
    modes: tuple[str, ...] = MODES
    ops: tuple[str, ...] = OPS
    kill_at: str = "*"
    s3: Any = None
    bucket: str = ""

    def fresh(self, what: str) -> int:
        self.counter += 1
        return self.counter


# --- processes -----------------------------------------------------------------------------------


def cli(world: World, *args: str, hooks: dict[str, str] | None = None, timeout: float = 600):
    env = env_with(world.env, **(hooks or {}))
    t0 = time.monotonic()
    p = subprocess.run(
        [sys.executable, "-m", "datapool", *args],
        capture_output=True,
        text=True,
        errors="replace",
        env=env,
        timeout=timeout,
    )
    return p.returncode, p.stdout, p.stderr, time.monotonic() - t0


class Proc(RobustProc):
    """tests/_robust.py's datapool subprocess, in the world's environment, waited on for the
    pause marker of DATAPOOL_TEST_PAUSE_AT."""

    def __init__(self, world: World, args: list[str], hooks: dict[str, str]) -> None:
        super().__init__([sys.executable, "-m", "datapool", *args], env=world.env, **hooks)

    def wait_paused(self, timeout: float) -> bool:
        """True once paused; False where the command ended first (the point was not reached)."""
        try:
            self.wait_for("datapool-test: paused at", timeout)
        except TimeoutError:
            raise ChaosFailure(f"no pause within {timeout:.0f} s: {self.stderr[-2000:]}") from None
        except AssertionError:  # the process ended before the marker
            return False
        return True

    def finish(self, timeout: float = 600) -> int:
        return super().finish(timeout)


# --- the source folder ---------------------------------------------------------------------------


_KINDS = (".jpg", ".png", ".mp4")


def _new_name(world: World) -> str:
    ext = world.rng.choice(_KINDS)
    sub = world.rng.choice(["", "", "sub/"])
    return f"{sub}f{world.fresh('file')}{ext}"


def _write(world: World, rel: str) -> None:
    seed = world.rng.randrange(1_000_000)
    write_media(world.source / rel, seed=seed, frames=world.rng.choice([4, 6]))


def source_files(world: World) -> list[str]:
    return sorted(
        p.relative_to(world.source).as_posix() for p in world.source.rglob("*") if p.is_file()
    )


def change_source(world: World) -> list[str]:
    """A few random changes; returns what was done."""
    done = []
    for _ in range(world.rng.choice([0, 1, 1, 2, 3])):
        files = source_files(world)
        what = world.rng.choice(["add", "add", "delete", "modify", "rename"]) if files else "add"
        if what == "add" or (len(files) <= 2 and what == "delete"):
            rel = _new_name(world)
            _write(world, rel)
            done.append(f"add {rel}")
        elif what == "delete":
            rel = world.rng.choice(files)
            (world.source / rel).unlink()
            done.append(f"delete {rel}")
        elif what == "modify":
            rel = world.rng.choice(files)
            _write(world, rel)
            done.append(f"modify {rel}")
        else:
            rel = world.rng.choice(files)
            new = f"{Path(rel).parent.as_posix() + '/' if '/' in rel else ''}r{world.fresh('f')}"
            new += Path(rel).suffix
            (world.source / new).parent.mkdir(parents=True, exist_ok=True)
            (world.source / rel).rename(world.source / new)
            done.append(f"rename {rel} -> {new}")
    return done


# --- steps ---------------------------------------------------------------------------------------


def _samples(world: World) -> list[dict[str, Any]]:
    rc, out, _err, _ = cli(world, "ls", world.pool, "--json")
    if rc != 0:
        return []
    return list(json.loads(out))


def _runs(world: World) -> int:
    rc, out, _, _ = cli(world, "status", world.pool, "--json")
    if rc != 0:
        return 0
    s = json.loads(out)
    runs = s.get("runs")
    return len(runs) if isinstance(runs, list) else int(runs or 0)


def choose_step(world: World, after_kill: bool) -> Step:
    rng = world.rng
    weights = {"run": 8, "rm": 2, "undo": 2, "merge": 1, "export": 1, "report": 1}
    ops = [o for o in OPS if o in world.ops] or ["run"]
    op = "run" if after_kill else rng.choices(ops, [weights[o] for o in ops])[0]
    if op == "run":
        args = ["run", str(world.source), "--pool", "{POOL}", "--no-progress"]
        args += [
            "--threads",
            "1",
            "--decode-workers",
            "1",
            "--batch-size",
            str(rng.choice([2, 4, 32])),
        ]
        budget = rng.choice(["n", "n", "p", "d"])
        if budget == "n":
            args += ["--n-samples", str(rng.randint(1, 4))]
        elif budget == "p":
            args += ["--proportion", f"{rng.uniform(0.1, 0.9):.2f}"]
        else:
            args += ["--min-distance", f"{rng.uniform(0.02, 0.6):.2f}"]
        if rng.random() < 0.1:
            args.append("--process-all")
        if rng.random() < 0.15:
            args.append("--keep-history")
        if rng.random() < 0.2:
            args += ["--tag", f"t{world.fresh('tag')}"]
        if rng.random() < 0.2:
            args += ["--fps", rng.choice(["2", "5"])]
        return Step("run", args)
    if op == "rm":
        samples = _samples(world)
        kind = rng.choice(["names", "source", "run"])
        args = ["rm", "{POOL}"]
        if kind == "names" and samples:
            names = [s["filename"] if "filename" in s else s.get("name", "") for s in samples]
            args += rng.sample(names, min(len(names), rng.randint(1, 2)))
        elif kind == "source" and samples:
            keys = sorted({str(s.get("source_file") or s.get("key") or "") for s in samples} - {""})
            for k in rng.sample(keys, min(len(keys), 1)):
                args += ["--source-file", k]
        else:
            args += ["--run", str(rng.randrange(max(_runs(world), 1)))]
        if rng.random() < 0.3:
            args += ["--reason", "chaos"]
        return Step("rm", args)
    if op == "undo":
        return Step("undo", ["undo", "{POOL}"])
    if op == "merge":
        n = world.fresh("merge")
        into = (
            str(world.work / f"merged{n}")
            if world.backend == "local"
            else f"s3://{world.bucket}/merged{n}/"
        )
        args = ["merge", "{POOL}", _other_pool(world), "--into", "{INTO}"]
        if rng.random() < 0.4:
            args += ["--reselect", str(rng.randint(1, 5))]
        return Step("merge", args, target="into", into=into)
    if op == "export":
        dest = world.work / f"export{world.fresh('export')}"
        args = ["export", "{POOL}", str(dest)]
        if rng.random() < 0.5:
            args.append("--all")
        return Step("export", args)
    out = world.work / f"report{world.fresh('report')}.html"
    args = ["report", "{POOL}", "--out", str(out)]
    if rng.random() < 0.3:
        args.append("--thumbnails")
    return Step("report", args)


def _argv(step: Step, pool: str, into: str | None) -> list[str]:
    out = []
    for a in step.args:
        a = a.replace("{POOL}", pool)
        if into is not None:
            a = a.replace("{INTO}", into)
        out.append(a)
    return out


# --- the pool's state ----------------------------------------------------------------------------


_SNAPSHOT = re.compile(r"history/\d{8}T\d{6}Z-")  # a history snapshot's name holds its time


def _normalize(obj: Any, paths: dict[str, str]) -> Any:
    if isinstance(obj, dict):
        return {
            k: _normalize(v, paths)
            for k, v in obj.items()
            if not _VOLATILE.search(k) and k != "runs.json"  # (a hash of a file with times)
        }
    if isinstance(obj, list):
        return [_normalize(v, paths) for v in obj]
    if isinstance(obj, str):
        for a, b in paths.items():
            obj = obj.replace(a, b)
        return _SNAPSHOT.sub("history/<TIME>-", obj)
    return obj


def read_state(world: World, pool: str, paths: dict[str, str]) -> dict[str, Any]:
    """The state files' bytes (runs.json normalized); {} where there is no pool."""
    raw: dict[str, bytes | None] = {}
    if pool.startswith("s3://"):
        from datapool.errors import DatapoolError
        from datapool.s3.store import S3Store

        store = S3Store(pool)
        try:
            for name in STATE_FILES:
                raw[name] = store.read(name)
        except DatapoolError:
            return {}
    else:
        root = Path(pool)
        for name in STATE_FILES:
            p = root / name
            raw[name] = p.read_bytes() if p.exists() else None
    if all(v is None for v in raw.values()):
        return {}
    out: dict[str, Any] = {}
    for name, data in raw.items():
        if data is None:
            out[name] = None
        elif name.endswith(".json"):
            out[name] = _normalize(json.loads(data), paths)
        else:
            out[name] = data
    return out


def diff_state(a: dict[str, Any], b: dict[str, Any]) -> str:
    if a == b:
        return ""
    lines = []
    for name in sorted(set(a) | set(b)):
        x, y = a.get(name), b.get(name)
        if x == y:
            continue
        if isinstance(x, bytes) and isinstance(y, bytes):
            xl, yl = (
                x.decode(errors="replace").splitlines(),
                y.decode(errors="replace").splitlines(),
            )
            extra = [f"  - {ln[:160]}" for ln in xl if ln not in yl][:5]
            extra += [f"  + {ln[:160]}" for ln in yl if ln not in xl][:5]
            lines.append(f"{name}: {len(xl)} vs {len(yl)} lines\n" + "\n".join(extra))
        else:
            lines.append(f"{name}:")
            lines += [f"  {d}" for d in _json_diff(x, y, "")[:10]]
    return "\n".join(lines)


def _json_diff(x: Any, y: Any, path: str) -> list[str]:
    if isinstance(x, dict) and isinstance(y, dict):
        return [
            d
            for k in sorted(set(x) | set(y))
            for d in _json_diff(x.get(k), y.get(k), f"{path}.{k}")
        ]
    if isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
        return [d for i, (a, b) in enumerate(zip(x, y)) for d in _json_diff(a, b, f"{path}[{i}]")]
    return [] if x == y else [f"{path}: {json.dumps(x)[:300]} vs {json.dumps(y)[:300]}"]


# --- copies of a pool (the reference) ------------------------------------------------------------


def copy_pool(world: World, pool: str, n: int) -> str:
    if not pool.startswith("s3://"):
        dst = world.work / f"ref{n}"
        if Path(pool).exists():
            shutil.copytree(pool, dst, copy_function=shutil.copy2, symlinks=True)
        return str(dst)
    # the same prefix in another bucket: a manifest names its blobs under its own prefix
    bucket, _, prefix = pool[len("s3://") :].partition("/")
    ref_bucket = f"ref{n}-{world.bucket}"[:63]
    world.s3.create_bucket(Bucket=ref_bucket)
    for page in world.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            world.s3.copy_object(
                Bucket=ref_bucket, Key=obj["Key"], CopySource={"Bucket": bucket, "Key": obj["Key"]}
            )
    return f"s3://{ref_bucket}/{prefix}"


def drop_copy(world: World, pool: str) -> None:
    if not pool.startswith("s3://"):
        shutil.rmtree(pool, ignore_errors=True)
        return
    bucket, _, _ = pool[len("s3://") :].partition("/")
    for page in world.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            world.s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
    world.s3.delete_bucket(Bucket=bucket)


def _ref_into(world: World, step: Step, ref_pool: str, n: int) -> str | None:
    """Where the reference merge writes: beside the reference pool (in its bucket, which goes
    with it), never in the pool's own bucket."""
    if step.into is None:
        return None
    if ref_pool.startswith("s3://"):
        return f"s3://{ref_pool[len('s3://') :].partition('/')[0]}/merged-ref{n}/"
    return step.into + f"-ref{n}"


# --- checks --------------------------------------------------------------------------------------


def verify(world: World, pool: str, killed: bool, stage: str) -> list[str]:
    """`datapool verify --json`: the problems that are not expected here."""
    rc, out, err, _ = cli(world, "verify", pool, "--json")
    try:
        v = json.loads(out)
    except json.JSONDecodeError:
        if "no pool yet" in err or "not a datapool pool" in err or "there is no" in err:
            return []
        raise ChaosFailure(f"verify {pool} ({stage}) rc={rc}: {err.strip()[-1500:]}") from None
    bad = []
    errors = v.get("errors", [])
    journal = [p for p in errors if str(p.get("file", "")).endswith(".journal.json")]
    if killed and stage == "raw" and journal:
        # verify: "problems below may be its half-done state"; status finishes it, and the
        # verify after status must find nothing
        world.tally["verify (raw): an interrupted commit's journal"] += 1
        world.tally["verify (raw): its half-done files"] += len(errors) - len(journal)
        return []
    for p in errors:
        bad.append(f"error {p.get('file')}:{p.get('line')}: {p.get('message')}")
    for p in v.get("warnings", []):
        f, msg = str(p.get("file", "")), str(p.get("message", ""))
        said = _expected_after_kill(f, msg, stage) if killed else None
        if said is not None:
            world.tally[f"verify ({stage}): {said}"] += 1
            continue
        bad.append(f"warning {f}:{p.get('line')}: {msg}")
    if bad:
        world.tally["verify problems"] += 1
    return [f"verify ({stage}): {b}" for b in bad]


def check_status(world: World, pool: str) -> list[str]:
    rc, _out, err, _ = cli(world, "status", pool)
    if rc == 0:
        return []
    if rc == 4 and ("no pool" in err or "not a datapool pool" in err or "no such" in err):
        return []
    return [f"status rc={rc}: {err.strip()[-1500:]}"]


# --- one round -----------------------------------------------------------------------------------


def _points(trace: str) -> list[tuple[str, int]]:
    seen: Counter = Counter()
    out = []
    for line in trace.splitlines():
        if line.startswith("datapool-test: at "):
            name = line[len("datapool-test: at ") :].strip()
            seen[name] += 1
            out.append((name, seen[name]))
    return out


def _glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def run_round(world: World, r: int, log: list[str]) -> Outcome:
    rng = world.rng
    after_kill = world.tally.get("_last_killed", 0) == 1
    world.tally["_last_killed"] = 0
    changes = change_source(world)
    step = choose_step(world, after_kill)
    n = world.fresh("round")
    target = world.pool if step.target == "pool" else str(step.into)
    paths_real = {world.pool: "<POOL>", str(step.into): "<INTO>"}
    before = read_state(world, target, paths_real)
    # the reference: the complete step on a copy, traced
    ref_pool = copy_pool(world, world.pool, n)
    ref_into = _ref_into(world, step, ref_pool, n)
    paths_ref = {ref_pool: "<POOL>", str(ref_into): "<INTO>"}
    rc_ref, _out_ref, err_ref, t_ref = cli(
        world, *_argv(step, ref_pool, ref_into), hooks={"DATAPOOL_TEST_TRACE": "1"}
    )
    ref_target = ref_pool if step.target == "pool" else str(ref_into)
    after = read_state(world, ref_target, paths_ref)
    points = _points(err_ref)
    if rc_ref not in (0, 1, 2, 4, 5, 6) or "Traceback" in err_ref:
        raise ChaosFailure(f"the reference step failed: rc={rc_ref}\n{err_ref[-3000:]}")
    if after_kill and rc_ref != 0:
        raise ChaosFailure(
            f"the run after a kill failed (on a copy): rc={rc_ref}\n{err_ref[-3000:]}"
        )
    drop_copy(world, ref_pool)  # (an S3 reference merge's bucket too)
    if ref_into is not None and not ref_into.startswith("s3://"):
        shutil.rmtree(ref_into, ignore_errors=True)
    modes = ["plain", "kill-point", "kill-point", "kill-delay"]
    if step.op in LOCK_TAKERS and any(p == "locked" for p, _ in points) and rng.random() < 0.4:
        modes.append("concurrent")
    mode = rng.choice([m for m in modes if m in world.modes] or ["plain"])
    argv = _argv(step, world.pool, step.into)
    shown = " ".join(argv).replace(str(world.work) + "/", "")
    desc = f"round {r} [{world.backend}] {mode}: datapool {shown} (ref rc={rc_ref})"
    log.append(f"{desc}\n  source changes: {changes}")
    outcome = Outcome(mode)
    problems: list[str] = []
    killed = False
    if mode == "plain":
        rc, _out, err, _ = cli(world, *argv)
        if rc != rc_ref:
            problems.append(f"rc {rc} where the reference gave {rc_ref}: {err.strip()[-1500:]}")
        if "Traceback" in err:
            problems.append(f"a traceback: {err[-3000:]}")
    elif mode in ("kill-point", "kill-delay"):
        chosen = [(p, k) for p, k in points if fnmatch.fnmatchcase(p, world.kill_at)]
        if mode == "kill-point" and chosen:
            name, k = rng.choice(chosen)
            outcome.detail = f"{name}#{k}"
            proc = Proc(world, argv, {"DATAPOOL_TEST_PAUSE_AT": f"{_glob_escape(name)}#{k}"})
            if proc.wait_paused(60 + 5 * t_ref):
                proc.kill()
                killed = True
            else:
                rc = proc.finish()
                outcome.detail += " (not reached)"
                if rc != rc_ref:
                    problems.append(f"rc {rc} where the reference gave {rc_ref}: {proc.stderr}")
        else:
            delay = rng.uniform(0, 1.2 * t_ref)
            outcome.detail = f"after {delay:.2f} s of ~{t_ref:.2f}"
            proc = Proc(world, argv, {})
            try:
                proc.p.wait(delay)
                proc.finish()
                outcome.detail += " (finished first)"
            except subprocess.TimeoutExpired:
                proc.kill()
                killed = True
    else:  # concurrent
        hold = 10.0
        proc = Proc(
            world, argv, {"DATAPOOL_TEST_PAUSE_AT": "locked", "DATAPOOL_TEST_PAUSE_S": str(hold)}
        )
        t0 = time.monotonic()
        if not proc.wait_paused(60 + 5 * t_ref):
            raise ChaosFailure(f"the first command never paused at `locked`: {proc.stderr}")
        second = rng.choice(
            [
                [
                    "run",
                    str(world.source),
                    "--pool",
                    world.pool,
                    "--no-progress",
                    "--n-samples",
                    "1",
                ],
                ["rm", world.pool, "--run", "0"],
                ["undo", world.pool],
            ]
        )
        rc2, _, err2, t2 = cli(world, *second)
        outcome.detail = f"second: datapool {' '.join(second)} -> rc {rc2} in {t2:.1f} s"
        in_time = time.monotonic() - t0 < hold - 1
        if in_time:
            if rc2 != 3 or ("lock" not in err2.lower() and "held" not in err2.lower()):
                problems.append(f"the second command did not fail on the lock: rc={rc2}: {err2}")
            now = read_state(world, target, paths_real)
            if now != before:
                problems.append("the second command changed the pool:\n" + diff_state(before, now))
            world.tally["concurrent: second refused"] += 1
        else:
            world.tally["concurrent: inconclusive (second too slow)"] += 1
        rc = proc.finish()
        if rc != rc_ref:
            problems.append(f"the first: rc {rc} where the reference gave {rc_ref}: {proc.stderr}")
    # the checks
    if killed:
        world.tally["_last_killed"] = 1
        problems += verify(world, target, True, "raw")
        problems += check_status(world, target)
    problems += verify(world, target, killed, "after status" if killed else "final")
    now = read_state(world, target, paths_real)
    if now == after:
        outcome.state = "after"
    elif now == before:
        outcome.state = "before"
        if not killed and before != after:
            problems.append(
                "a complete step left the pool as before it; the reference changed it:\n"
                + diff_state(now, after)
            )
    else:
        outcome.state = "MIXED"
        problems.append(
            "the pool is neither as before the step nor as after it.\nvs before:\n"
            + diff_state(before, now)
            + "\nvs after:\n"
            + diff_state(after, now)
        )
    if problems:
        raise ChaosFailure(desc + f" ({outcome.detail})\n" + "\n".join(problems))
    return outcome


# --- setup ---------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def moto() -> Iterator[str]:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def make_world(backend: str, work: Path, seed: int, endpoint: str | None) -> World:
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATAPOOL_TEST_", "AWS_"))}
    env["PYTHONPATH"] = PACKAGE_PATH  # the children run the datapool this process imports
    env["DATAPOOL_CACHE_DIR"] = str(work / "cache")
    s3 = None
    bucket = ""
    if backend == "s3":
        assert endpoint is not None
        env.update(
            AWS_ACCESS_KEY_ID="chaos-key-id",
            AWS_SECRET_ACCESS_KEY="chaos-secret",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_CONFIG_FILE=str(work / "no-aws-config"),
            AWS_SHARED_CREDENTIALS_FILE=str(work / "no-aws-credentials"),
            AWS_EC2_METADATA_DISABLED="true",
            AWS_ENDPOINT_URL=endpoint,
        )
        os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
        os.environ["DATAPOOL_CACHE_DIR"] = str(work / "harness-cache")
        import boto3

        s3 = boto3.client("s3", endpoint_url=endpoint)
        bucket = f"chaos-{seed}-{os.getpid()}"[:63]
        s3.create_bucket(Bucket=bucket)
    rng = random.Random(f"{seed}-{backend}")
    source = work / "source"
    pool = str(work / "pool") if backend == "local" else f"s3://{bucket}/pool/"
    other = str(work / "other") if backend == "local" else f"s3://{bucket}/other/"
    world = World(backend, work, env, rng, source, pool, other, s3=s3, bucket=bucket)
    for _ in range(4):
        _write(world, _new_name(world))
    return world


def _other_pool(world: World) -> str:
    """The second pool merges take, made on the first merge: one run over three pictures."""
    other_src = world.work / "other-source"
    if not other_src.exists():
        for i in range(3):
            write_media(other_src / f"o{i}.jpg", seed=900 + i)
        rc, _, err, _ = cli(
            world, "run", str(other_src), "--pool", world.other, "--n-samples", "2", "--no-progress"
        )
        if rc != 0:
            raise ChaosFailure(f"the second pool (for merges) failed: {err}")
    return world.other


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=20, help="per backend")
    ap.add_argument("--backend", choices=["local", "s3", "both"], default="both")
    ap.add_argument("--work", type=Path, help="the work folder (default: a temporary one)")
    ap.add_argument("--stop-after-failure", type=int, default=1, help="0: never stop")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument(
        "--modes",
        default=",".join(MODES),
        help=f"how steps run, a comma-separated subset of {','.join(MODES)} (default: all)",
    )
    ap.add_argument(
        "--kill-at",
        default="*",
        help="kill-point mode: only at points matching this glob (e.g. 'renamed:*')",
    )
    ap.add_argument(
        "--ops",
        default=",".join(OPS),
        help=f"the steps, a comma-separated subset of {','.join(OPS)} (default: all)",
    )
    a = ap.parse_args(argv)
    backends = ["local", "s3"] if a.backend == "both" else [a.backend]
    work = a.work or Path(tempfile.mkdtemp(prefix=f"datapool-chaos-{a.seed}-"))
    failures = 0
    t0 = time.monotonic()
    with contextlib.ExitStack() as stack:
        endpoint = stack.enter_context(moto()) if "s3" in backends else None
        for backend in backends:
            world = make_world(backend, work / backend, a.seed, endpoint)
            world.modes = tuple(m for m in a.modes.split(",") if m in MODES)
            world.ops = tuple(o for o in a.ops.split(",") if o in OPS)
            world.kill_at = a.kill_at
            log: list[str] = []
            states: Counter = Counter()
            for r in range(a.rounds):
                try:
                    o = run_round(world, r, log)
                except ChaosFailure as e:
                    failures += 1
                    print(f"FAIL seed={a.seed} {e}", flush=True)
                    print("  the rounds before it:\n  " + "\n  ".join(log[-4:-1]), flush=True)
                    if a.stop_after_failure and failures >= a.stop_after_failure:
                        print(f"work folder kept: {work}")
                        return 1
                    world.tally["_last_killed"] = 1  # the next step is a run
                    continue
                states[f"{o.mode}: {o.state}"] += 1
                print(f"{log[-1].splitlines()[0]} -> {o.state} {o.detail}", flush=True)
            print(f"[{backend}] seed {a.seed}: {a.rounds} rounds: {dict(sorted(states.items()))}")
            print(
                f"[{backend}] {dict(sorted((k, v) for k, v in world.tally.items() if k[0] != '_'))}"
            )
    print(f"{failures} failure(s) in {time.monotonic() - t0:.0f} s")
    if not a.keep and not failures:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"work folder kept: {work}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
