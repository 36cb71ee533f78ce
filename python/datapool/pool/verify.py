"""`datapool verify POOL`: read every part of a pool and report every problem found, each with
its file and, where it applies, its line and column; without the pool's lock, and without
changing anything (no recovery of an interrupted commit, no sidecar written).

    verified = open_store("pool/").verify()      # pool/store.py verify_pool
    verified.ok, verified.problems               # Problem(severity, file, message, line, column)

What it reads (a folder pool; an S3 pool's files are first fetched, each blob checked against
its manifest, and then read the same way: s3/verify.py):

- runs.json, model.json, strategy_inputs.json: valid JSON, as a run reads them; each run's
  recorded model the pool's model (model.json);
- ledger.csv: as a run reads it; per run and per file, the samples it says are in the pool;
- datapool_latest.csv: parsed by the C++ reader a run uses (its messages), a block at a time
  (a 7 GB CSV is never held whole): names unique across the whole file, labels naming runs,
  each sample's source file in the ledger with the same count and run;
- the undo records of the runs' commits (report.json `undo`, pool/undo.py): the SHA-256 of the
  bytes each run appended to the CSV and the ledger (the CRC-32 of a file it wrote whole), for
  the runs since the last commit that rewrote the file; and that the CSV, the ledger and
  runs.json are as the last commit left them (their lengths and hashes);
- .sidecar/ (pool/sidecar.py), where it mirrors this CSV: its values bit for bit against the
  CSV's, and its files' CRC-32s against its manifest, to say which side changed;
- runs/<i>/: report.json (valid; the run's own: its index and times those runs.json records,
  its picks the CSV's samples of that run, less those `datapool rm` took out), embedding_view.png, report.html, the thumbnail segments
  (readable, and which samples have none);
- the lock (a stale record of a killed run, or a run holding the pool now) and the commit
  journal (an interrupted commit or `datapool undo`).

Errors are damage or disagreement a run would stop on, or worse, not notice (a flipped digit in
the CSV parses). Warnings are what costs nothing but a rebuild or a look: a stale lock (the next
run takes it over), a sidecar no run would use (the next open rebuilds it), a run folder without
its view (no command reads it) or report.html (an older datapool's) or samples without thumbnails (`--no-thumbnails`, an older
datapool; `datapool report POOL --thumbnails` makes them).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zlib
from collections.abc import Container
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datapool.errors import PoolCorruptError
from datapool.pool.journal import RESET_KEY
from datapool.pool.keepout import REMOVALS_KEY
from datapool.pool.layout import (
    CSV_NAME,
    HISTORY_DIR,
    JOURNAL_NAME,
    LEDGER_NAME,
    MODEL_NAME,
    PENDING_SUFFIX,
    REPORT_HTML_NAME,
    REPORT_NAME,
    RUNS_DIR,
    RUNS_NAME,
    SIDECAR_DIR,
    SIDECAR_EMBEDDINGS,
    SIDECAR_LABELS,
    SIDECAR_MANIFEST,
    SIDECAR_NAMES,
    STRATEGY_INPUTS_NAME,
    VIEW_NAME,
    run_dir,
)
from datapool.pool.undo import APPENDED_SHA256, UNDO_KEY, WHOLE_CRC32, digest

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

ERROR, WARNING = "error", "warning"
_CHUNK = 64 << 20  # bytes of the CSV parsed at a time
_MAX_LISTED = 10  # problems of one kind listed before "and N more"
_PNG = b"\x89PNG\r\n\x1a\n"


@dataclass
class Problem:
    severity: str  # ERROR or WARNING
    file: str  # pool-relative ("" for the pool as a whole)
    message: str
    line: int | None = None
    column: str | None = None

    def where(self) -> str:
        """'datapool_latest.csv, line 5, column embedding_0'."""
        out = self.file or "(pool)"
        if self.line is not None:
            out += f", line {self.line}"
        if self.column:
            out += f", column {self.column}"
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "message": self.message,
        }


@dataclass
class Verified:
    """What `verify` found: the problems, and what it read."""

    pool: str
    samples: int = 0
    runs: int = 0
    problems: list[Problem] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)  # what was read, for the summary
    not_checked: list[str] = field(default_factory=list)  # what could not be, and why

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        return {
            "pool": self.pool,
            "ok": self.ok,
            "size": self.samples,  # as `status --json` names the pool's samples
            "runs": self.runs,
            "errors": [p.to_json() for p in self.errors],
            "warnings": [p.to_json() for p in self.warnings],
            "checked": self.checked,
            "not_checked": self.not_checked,
        }


@dataclass
class _Range:
    """Bytes a run's commit wrote to the CSV or the ledger, with the sum its undo record keeps."""

    start: int
    end: int
    kind: str  # APPENDED_SHA256 or WHOLE_CRC32
    expected: Any
    run: int
    state: Any = None  # the hasher, or the running CRC
    removal: str | None = None  # written by the `datapool rm` of this time, not by run `run`

    def feed(self, offset: int, block: bytes | memoryview) -> None:
        lo, hi = max(self.start, offset), min(self.end, offset + len(block))
        if lo >= hi:
            return
        part = block[lo - offset : hi - offset]
        if self.kind == APPENDED_SHA256:
            if self.state is None:
                self.state = hashlib.sha256()
            self.state.update(part)
        else:
            self.state = zlib.crc32(part, self.state or 0)

    def matches(self) -> bool:
        if self.kind == APPENDED_SHA256:
            got = (self.state or hashlib.sha256()).hexdigest()
            return bool(got == self.expected)
        return (self.state or 0) == int(self.expected)


class _Lines:
    """Byte offset -> line number of a file read in order (line ends counted as the CSV reader
    counts them, LF; a CR-only file is rare and only shifts the numbers shown)."""

    def __init__(self) -> None:
        self.starts: list[tuple[int, int]] = [(0, 1)]  # (offset, line) at each block's start

    def add(self, offset: int, block: bytes) -> None:
        line = self.starts[-1][1] + block.count(b"\n")
        self.starts.append((offset + len(block), line))

    def line_at(self, path: Path, offset: int) -> int:
        """The line that holds byte `offset`."""
        base_off, base_line = 0, 1
        for off, line in self.starts:
            if off > offset:
                break
            base_off, base_line = off, line
        with open(path, "rb") as f:
            f.seek(base_off)
            return base_line + f.read(offset - base_off).count(b"\n")


class _Check:
    """One verification of the folder pool at `root` (its files read, never written)."""

    def __init__(
        self, root: Path, where: str, local: bool, unreadable: set[str], summed: bool
    ) -> None:
        self.root, self.local, self.unreadable = root, local, unreadable
        self.summed = summed  # every byte checked against a manifest's SHA-256s (S3)
        self.out = Verified(where)
        self.runs: list[dict[str, Any]] = []
        self.doc: dict[str, Any] = {}
        self.reports: dict[int, dict[str, Any]] = {}
        self.foreign: set[int] = set()  # runs whose report.json is another run's
        self.runs_text = ""
        self.journaled: set[str] = set()  # the files an interrupted commit's journal puts in place

    def add(
        self,
        severity: str,
        file: str,
        message: str,
        line: int | None = None,
        column: str | None = None,
    ) -> None:
        if file in self.unreadable:
            return  # (already reported, as a blob that cannot be read)
        self.out.problems.append(Problem(severity, file, message, line, column))

    def missing(self, name: str) -> bool:
        """Whether pool file `name` is absent (a blob that could not be read counts as absent,
        already reported)."""
        return name in self.unreadable or not (self.root / name).is_file()

    # --- local state -----------------------------------------------------------------------------

    def lock(self) -> None:
        from datapool.pool.layout import LOCK_NAME
        from datapool.pool.lock import lock_holder

        holder = lock_holder(self.root)
        if holder is None:
            return
        who = f"pid {holder['pid']} on {holder['host']} since {holder['since']}"
        state = holder["state"]
        if state == "stale":
            self.add(
                WARNING,
                LOCK_NAME,
                f"a stale lock: {who} ({holder.get('reason')}): that run was killed and did "
                "not finish; nothing blocks the next run, which takes the lock over (left as it "
                "is: verify changes nothing)",
            )
        elif state == "held":
            self.add(
                WARNING,
                LOCK_NAME,
                f"a run holds the pool now ({who}): verify read it without the lock, so a "
                "commit made meanwhile may show as problems; verify again when it is done",
            )
        else:
            self.add(
                WARNING,
                LOCK_NAME,
                f"a run of another host holds or held the pool ({who}): only that host tells "
                "whether it still runs; verify read the pool without the lock",
            )

    def journal(self) -> None:
        path = self.root / JOURNAL_NAME
        if path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                undo = isinstance(data, dict) and bool(data.get("removes"))
                undo = undo and not data.get(RESET_KEY)  # a --process-all run's removals
                if isinstance(data, dict):
                    self.journaled = _journaled(data)
            except (OSError, ValueError) as e:
                self.add(ERROR, JOURNAL_NAME, f"an unreadable commit journal: {e}", 1)
                return
            what = "`datapool undo`" if undo else "commit"
            self.add(
                ERROR,
                JOURNAL_NAME,
                f"an interrupted {what}: it passed its commit point but its files are not all "
                "in place yet (problems below may be its half-done state); `datapool status "
                "POOL` (or the next run) finishes it under the pool's lock",
            )
            return
        left = sorted(
            p.relative_to(self.root).as_posix()
            for p in self.root.rglob(f"*{PENDING_SUFFIX}")
            if HISTORY_DIR not in p.relative_to(self.root).parts[:1]
        )
        for rel in left[:_MAX_LISTED]:
            self.add(
                WARNING,
                rel,
                "staged by a commit that never reached its commit point (killed before it): "
                "nothing of it is in the pool; the next open of the pool removes it",
            )

    # --- runs.json, model.json -------------------------------------------------------------------

    def json_file(self, name: str) -> Any:
        """The parsed JSON file `name` (None: absent or invalid, reported)."""
        if self.missing(name):
            return None
        try:
            text = (self.root / name).read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            self.add(ERROR, name, f"not UTF-8 text: {e}")
            return None
        if name == RUNS_NAME:
            self.runs_text = text
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            self.add(ERROR, name, f"invalid JSON: {e.msg}", e.lineno, str(e.colno))
            return None

    def runs_json(self) -> bool:
        """runs.json read as a run reads it; False where nothing more can be checked."""
        from datapool.pool import format as _format
        from datapool.pool.contents import _runs_of

        if self.missing(RUNS_NAME):
            self.add(ERROR, RUNS_NAME, "missing: the pool's runs are unknown")
            return False
        doc = self.json_file(RUNS_NAME)
        if doc is None:
            return False
        try:
            _format.recorded(doc, RUNS_NAME)
            self.runs = _runs_of(doc, Path(RUNS_NAME))
        except PoolCorruptError as e:
            self.add(ERROR, RUNS_NAME, _without_file(str(e), RUNS_NAME))
            return False
        self.doc = doc
        self.out.runs = len(self.runs)
        self.out.checked.append(f"{RUNS_NAME} ({len(self.runs)} runs)")
        return True

    def run_line(self, index: int) -> int | None:
        """The line of run `index`'s entry in runs.json (as a commit writes it, indented)."""
        m = re.search(rf'^\s*"index": {index},?$', self.runs_text, re.M)
        return None if m is None else self.runs_text.count("\n", 0, m.start()) + 1

    def model_json(self) -> int | None:
        """model.json against each run's recorded model; the pool's dimension (None: unknown)."""
        from datapool.fingerprint import ModelFingerprint

        if self.missing(MODEL_NAME):
            if self.runs:
                self.add(ERROR, MODEL_NAME, "missing, but the pool has runs")
            return None
        data = self.json_file(MODEL_NAME)
        if data is None:
            return None
        try:
            model = ModelFingerprint.from_json(data)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            self.add(ERROR, MODEL_NAME, f"a malformed model fingerprint: {e!r}")
            return None
        for run in self.runs:
            got = run.get("model")
            if not isinstance(got, dict):
                continue
            sha, dim = got.get("sha256"), got.get("output_dim")
            if sha != model.sha256 or dim != model.output_dim:
                self.add(
                    ERROR,
                    RUNS_NAME,
                    f"run {run['index']} records the model {got.get('name')} (SHA-256 {sha}, "
                    f"{dim}-d), but {MODEL_NAME} says the pool's embeddings are of "
                    f"{model.name} (SHA-256 {model.sha256}, {model.output_dim}-d)",
                    self.run_line(int(run["index"])),
                )
        self.out.checked.append(f"{MODEL_NAME} ({model.name}, {model.output_dim}-d)")
        return model.output_dim

    # --- the runs' folders -----------------------------------------------------------------------

    def run_folders(self) -> None:
        """Each run's report.json (read for its undo record), view and page."""
        for run in self.runs:
            i = int(run["index"])
            named = str(run.get("report") or f"{run_dir(i)}/{REPORT_NAME}")
            if self.missing(named):
                self.add(
                    ERROR,
                    named,
                    f"missing: {RUNS_NAME} names it as run {i}'s report (`datapool ls` and "
                    "`undo` read it)",
                    None,
                )
            else:
                report = self.json_file(named)
                if isinstance(report, dict):
                    self.reports[i] = report
                    self.own_report(run, named, report)
                elif report is not None:
                    self.add(ERROR, named, "not a JSON object", 1)
            view = f"{run_dir(i)}/{VIEW_NAME}"
            lost = (
                "no command reads it, and the pool's samples do not depend on it; `datapool "
                "report POOL` draws the pool's map again"
            )
            if self.missing(view):
                self.add(WARNING, view, f"missing (run {i}'s commit wrote it): {lost}")
            else:
                with open(self.root / view, "rb") as f:
                    if f.read(len(_PNG)) != _PNG:
                        self.add(WARNING, view, f"not a PNG image (damaged): {lost}", 1)
            page = f"{run_dir(i)}/{REPORT_HTML_NAME}"
            if self.missing(page):
                self.add(
                    WARNING,
                    page,
                    f"run {i} has no interactive report (an older datapool wrote none); "
                    "`datapool report POOL` makes one of the whole pool",
                )
        self.out.checked.append(f"{RUNS_DIR}/ ({len(self.runs)} run folders)")
        folder = self.root / RUNS_DIR
        if folder.is_dir():
            for p in sorted(folder.iterdir()):
                if p.is_dir() and p.name.isdigit() and int(p.name) >= len(self.runs):
                    if not any(p.iterdir()):
                        continue  # made by a run stopped before its commit; the next run uses it
                    if any(f.startswith(f"{RUNS_DIR}/{p.name}/") for f in self.journaled):
                        # Renamed into place by a commit past its commit point: deleting it
                        # would take the run's report from the pool the journal then completes.
                        self.add(
                            WARNING,
                            f"{RUNS_DIR}/{p.name}",
                            f"a run folder {RUNS_NAME} does not name yet: the interrupted commit "
                            f"({JOURNAL_NAME}) puts it in the pool; `datapool status POOL` (or "
                            "the next run) finishes that commit (do not delete the folder)",
                        )
                        continue
                    self.add(
                        WARNING,
                        f"{RUNS_DIR}/{p.name}",
                        f"a run folder of no run ({RUNS_NAME} has {len(self.runs)}): left over "
                        "by a run that did not commit; delete it",
                    )

    def own_report(self, run: dict[str, Any], named: str, report: dict[str, Any]) -> None:
        """The report is the run's own: its index (a merged run's, the one its own pool gave it:
        `merged_from`) and its start and finish times are the run's in runs.json (another run's
        folder copied over this one's, by hand or by a merge, disagrees)."""
        came: Any = run.get("merged_from")
        want_index = run.get("index")
        while isinstance(came, dict):  # (a run merged twice: the index of the pool it ran in)
            came, want_index = came.get("merged_from"), came.get("index")
        for key, want in (
            ("index", want_index),
            ("started_at", run.get("started_at")),
            ("finished_at", run.get("finished_at")),
        ):
            got = report.get(key)
            if want is not None and key in report and got != want:
                self.add(
                    ERROR,
                    named,
                    f"not run {run['index']}'s report: its {key} is {got!r}, but {RUNS_NAME} "
                    f"records {want!r} for run {run['index']} (another run's folder copied "
                    "over this one?)",
                )
                self.foreign.add(int(run["index"]))
                return

    def thumbnails(self, have: set[str]) -> None:
        """Each thumbnail segment readable (`have`: the names the segments hold, filled here)."""
        from datapool.pool import thumbnails

        folder = self.root / RUNS_DIR
        paths = (
            [p.relative_to(self.root).as_posix() for p in folder.glob("*/*.bin")]
            if folder.is_dir()
            else []
        )
        for rel in thumbnails.segment_order(paths):
            why = _segment_problem((self.root / rel).read_bytes(), have)
            if why:
                self.add(ERROR, rel, f"a damaged thumbnail segment: {why}")
        self.out.checked.append(f"{len(paths)} thumbnail segments")

    # --- the ledger ------------------------------------------------------------------------------

    def ledger(self) -> pd.DataFrame | None:
        from datapool.pool import format as _format
        from datapool.pool.ledger import read_ledger

        if self.missing(LEDGER_NAME):
            if self.runs:
                self.add(ERROR, LEDGER_NAME, "missing: which raw files were processed is unknown")
            return None
        try:
            written = _format.recorded(self.doc, RUNS_NAME)
            ledger = read_ledger(self.root / LEDGER_NAME, written)
        except PoolCorruptError as e:
            line, text = _line_of(_without_file(str(e), str(self.root / LEDGER_NAME)))
            self.add(ERROR, LEDGER_NAME, text, line)
            return None
        runs = ledger["run"].to_numpy()
        bad = sorted({int(r) for r in runs if not 0 <= int(r) < len(self.runs)})
        for r in bad[:_MAX_LISTED]:
            key = str(ledger.loc[ledger["run"] == r, "key"].iloc[0])
            self.add(
                ERROR,
                LEDGER_NAME,
                f"{key!r} is recorded by run {r}, which {RUNS_NAME} does not have "
                f"({len(self.runs)} runs)",
                _ledger_line(self.root / LEDGER_NAME, key),
            )
        self.out.checked.append(f"{LEDGER_NAME} ({len(ledger)} files)")
        return ledger

    def strategy_inputs(self, names: Container[str] | None) -> None:
        if self.missing(STRATEGY_INPUTS_NAME):
            return
        doc = self.json_file(STRATEGY_INPUTS_NAME)
        if doc is None:
            return
        samples = doc.get("samples") if isinstance(doc, dict) else None
        if not isinstance(samples, dict):
            self.add(ERROR, STRATEGY_INPUTS_NAME, "expected an object with a 'samples' object", 1)
            return
        if names is not None:
            extra = [n for n in samples if n not in names]
            if extra:
                self.add(
                    WARNING,
                    STRATEGY_INPUTS_NAME,
                    f"{len(extra)} samples the pool does not hold, e.g. {extra[0]!r}",
                )
        self.out.checked.append(f"{STRATEGY_INPUTS_NAME} ({len(samples)} samples)")


def _without_file(message: str, path: str) -> str:
    """A PoolCorruptError's message without its leading 'PATH: ' (the problem names the file)."""
    return message[len(path) + 2 :] if message.startswith(path + ": ") else message


def _line_of(message: str) -> tuple[int | None, str]:
    """('line 5: X' -> 5, 'X'): the line a message starts with, taken out."""
    m = re.match(r"line (\d+)[:,] ?(.*)", message, re.S)
    return (int(m.group(1)), m.group(2)) if m else (None, message)


def _ledger_line(path: Path, key: str) -> int | None:
    """The line of the last ledger row of `key` (the one a run reads), by a scan of the file."""
    import csv

    from datapool.pool.ledger import _escape_key

    want, found = _escape_key(key), None
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        for row in reader:
            if row and row[0] == want:
                found = reader.line_num
    return found


def _segment_problem(data: bytes, have: set[str]) -> str:
    """Why a thumbnail segment (pool/thumbnails.py) cannot be read, '' where it can; its names
    go into `have`."""
    from datapool.pool.thumbnails import read_segment

    try:
        thumbs, end = read_segment(data)
    except ValueError as e:
        return str(e)
    have.update(thumbs)
    return f"{len(data) - end} bytes past its last thumbnail" if end != len(data) else ""


def _journaled(journal: dict[str, Any]) -> set[str]:
    """The pool files a commit journal (pool/journal.py) renames or appends into place."""
    names = [*journal.get("files", []), *journal.get("dirs", [])]
    names += [a.get("file") for a in journal.get("appends", []) if isinstance(a, dict)]
    return {n for n in names if isinstance(n, str)}


def verify_folder(
    root: Path,
    where: str | None = None,
    local: bool = True,
    unreadable: set[str] | None = None,
    snapshot: bool = False,
    summed: bool = False,
) -> Verified:
    """Verify the folder pool at `root`. `where` names it in the result (an S3 pool's URL for
    its fetched copy); `local`: the folder is the pool itself, with its lock, journal and
    sidecar (not a fetched copy, nor a history snapshot); `unreadable`: pool files already
    reported as unreadable; `snapshot`: a history snapshot (which holds none of its own);
    `summed`: each file's bytes were checked against the SHA-256s of an S3 manifest as they
    were fetched."""
    check = _Check(Path(root), where or str(root), local, set(unreadable or ()), summed)
    if local:
        check.lock()
        check.journal()
    if not check.runs_json():
        return check.out
    dim = check.model_json()
    ledger = check.ledger()
    check.run_folders()
    thumbs: set[str] = set()
    check.thumbnails(thumbs)
    csv = _CsvCheck(check, dim, ledger, thumbs)
    csv.run()
    csv.thumbnail_coverage()
    check.strategy_inputs(csv.names_set)
    csv.last_commit()
    if not summed and check.runs:
        csv.say_unsummed()
    if not snapshot:
        _snapshots(check)
    return check.out


def _snapshots(check: _Check) -> None:
    """Each history snapshot (a pool of its own: pool/history.py) verified as one, its
    problems named by their path in the pool."""
    folder = check.root / HISTORY_DIR
    if not folder.is_dir():
        return
    for snap in sorted(p for p in folder.iterdir() if p.is_dir()):
        rel = f"{HISTORY_DIR}/{snap.name}"
        if snap.name.endswith(PENDING_SUFFIX):
            continue  # staged by a commit (reported with the journal, or removed on open)
        inner = {u[len(rel) + 1 :] for u in check.unreadable if u.startswith(rel + "/")}
        sub = verify_folder(
            snap, rel, local=False, unreadable=inner, snapshot=True, summed=check.summed
        )
        for p in sub.problems:
            p.file = f"{rel}/{p.file}" if p.file else rel
            check.out.problems.append(p)
        if _as_kept(check, snap, rel, inner):  # (its JSON files: against the run's hashes)
            sub.not_checked = [w for w in sub.not_checked if not w.startswith(RUNS_NAME)]
        check.out.not_checked += [f"{rel}: {what}" for what in sub.not_checked]
        check.out.checked.append(f"{rel} ({sub.samples} samples, {sub.runs} runs)")


def _as_kept(check: _Check, snap: Path, rel: str, unreadable: set[str]) -> bool:
    """The snapshot `rel` against what the run that made it (--keep-history, --process-all:
    runs.json's `previous_pool`) recorded of the pool before it: the SHA-256 of runs.json,
    model.json and strategy_inputs.json and the lengths of the CSV and the ledger, as `datapool
    undo` checks it. False where no run's record describes it."""
    made = [int(r["index"]) for r in check.runs if str(r.get("previous_pool")).rstrip("/") == rel]
    report = check.reports.get(made[0]) if made else None
    record = report.get(UNDO_KEY) if report else None
    if not isinstance(record, dict) or not isinstance(record.get("files"), dict):
        return False
    run = made[0]
    was = f"not the pool's as run {run} kept it (run {run}'s report.json `undo` records"
    for name in (RUNS_NAME, MODEL_NAME, STRATEGY_INPUTS_NAME):
        want = (record["files"].get(name) or {}).get("before", "absent")
        path = snap / name
        if want == "absent" or name in unreadable:
            continue
        if (digest(path.read_bytes()) if path.is_file() else None) != want:
            check.add(ERROR, f"{rel}/{name}", f"{was} another SHA-256): changed since")
    for name, key in ((CSV_NAME, "csv"), (LEDGER_NAME, "ledger")):
        want = (record.get(key) or {}).get("before")
        path = snap / name
        got = path.stat().st_size if path.is_file() else None
        if want is not None and name not in unreadable and got != want:
            check.add(ERROR, f"{rel}/{name}", f"{was} {want} bytes, it has {got}): changed since")
    return True


class _CsvCheck:
    """The pool CSV, a block at a time, against the ledger, the runs' undo records and the
    sidecar."""

    def __init__(
        self, check: _Check, dim: int | None, ledger: pd.DataFrame | None, thumbs: set[str]
    ) -> None:
        import numpy as np

        self.c, self.dim, self.ledger = check, dim, ledger
        self.thumbs = thumbs
        self.no_thumb = np.zeros(len(check.runs), np.int64)
        self.path = check.root / CSV_NAME
        self.n_runs = len(check.runs)
        self.per_run = np.zeros(self.n_runs, np.int64)
        self.seen: dict[str, int] = {}  # name -> line
        self.per_key: dict[str, int] = {}
        self.key_runs: dict[str, int] = {}  # the run of a file's samples; -1: more than one
        self.key_line: dict[str, int] = {}
        self.parse_errors = 0
        self.complete = False  # every row parsed
        self.rows = 0
        self.names_set: Container[str] | None = None
        self.lines = _Lines()
        self.ranges: list[_Range] = []
        self.side: _Sidecar | None = None
        self.bad_labels = 0
        self.dups = 0
        self.ledger_summed = False  # every byte of the ledger under a commit's sum
        self.no_sums = False  # the last run records none: said as such
        self.unhashed: list[str] = []  # JSON files no commit's hash covers as they are now
        # Per run, the names its report.json says it selected (a merged run's are under its
        # own pool's names: left out), and the first CSV row of that run it does not name.
        self.picked: dict[int, set[str]] = {}
        self.moved_from: dict[str, str] = {}  # a later run's move of a file: new name -> old
        self.moved_files: dict[str, str] = {}  # and its key: old -> new
        self.not_picked: dict[int, tuple[str, int]] = {}
        for run in check.runs:
            i = int(run["index"])
            report = check.reports.get(i) or {}
            moved = report.get("moved")
            if isinstance(moved, dict):
                self.moved_from.update({str(v): str(k) for k, v in moved.items()})
            files = report.get("moved_files")  # (a report of datapool 0.7.0 and later)
            if isinstance(files, dict):
                self.moved_files.update({str(k): str(v) for k, v in files.items()})
            picks = report.get("selected")
            if run.get("merged_from") or i in check.foreign or not isinstance(picks, list):
                continue
            self.picked[i] = {str(p.get("filename")) for p in picks if isinstance(p, dict)}

    def run(self) -> None:
        if self.c.missing(CSV_NAME):
            self.c.add(ERROR, CSV_NAME, "missing: the pool's samples are gone")
            return
        self.ranges = self._undo_ranges(CSV_NAME, "csv")
        if self.c.local:
            self.side = _Sidecar.open(self.c, self.path, self.dim)
        self._stream()
        for n, what in ((self.bad_labels, "labels name no run"), (self.dups, "names repeat")):
            if n > _MAX_LISTED:
                self.c.add(ERROR, CSV_NAME, f"{n} {what} in all ({_MAX_LISTED} listed)")
        self._compare_ledger()
        self._compare_reports()
        self._report_ranges(CSV_NAME, self.ranges, self.lines)
        if self.side is not None:
            self.side.report(self.c, self.rows, self.complete)
        self.names_set = self.seen
        self.c.out.samples = self.rows
        self.c.out.checked.append(f"{CSV_NAME} ({self.rows} rows)")

    # --- reading -----------------------------------------------------------------------------

    def _header(self) -> int | None:
        """The header checked as a run checks it; the offset of the first record."""
        from datapool import _core

        with open(self.path, "rb") as f:
            head = f.readline()
        try:
            _core.read_pool_csv(
                self.path, dim=-1 if self.dim is None else self.dim, body_end=len(head)
            )
        except _core.PoolCsvError as e:
            self.c.add(ERROR, CSV_NAME, _csv_message(e), int(e.line), e.column or None)
            self.parse_errors += 1
            return None
        return len(head)

    def _stream(self) -> None:
        start = self._header()
        if start is None:
            return
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            head = f.read(start)
        self._feed(0, head)
        pos, want = start, _CHUNK
        with open(self.path, "rb") as f:
            while pos < size and self.parse_errors < _MAX_LISTED:
                f.seek(pos)
                block = f.read(want)
                if pos + len(block) < size:
                    cut = block.rfind(b"\n")
                    if cut < 0:  # one record longer than a block
                        want *= 2
                        continue
                    block = block[: cut + 1]
                end = pos + len(block)
                if not self._parse(pos, end, size, block):
                    want *= 2  # a block cut inside a quoted name: parse more at once
                    continue
                self._feed(pos, block)
                pos, want = end, _CHUNK
        self.complete = pos >= size and self.parse_errors == 0
        if self.parse_errors >= _MAX_LISTED and pos < size:
            self.c.add(
                ERROR, CSV_NAME, f"more defects: the CSV was read no further than byte {pos}"
            )

    def _feed(self, offset: int, block: bytes) -> None:
        self.lines.add(offset, block)
        for r in self.ranges:
            r.feed(offset, block)
        if self.side is not None:
            self.side.feed_csv(offset, block)

    def _parse(self, pos: int, end: int, size: int, block: bytes) -> bool:
        """Parse the records of [pos, end) and check them; False where the block must grow (a
        defect on its last line may be a cut inside a quoted name)."""
        from datapool import _core

        first_line = self.lines.starts[-1][1]
        sub = pos
        while sub < end:
            try:
                names, emb, labels = _core.read_pool_csv(
                    self.path,
                    dim=_dim_arg(self.dim),
                    body_start=sub,
                    body_end=0 if end >= size else end,
                )
            except _core.PoolCsvError as e:
                line = int(e.line)
                last_line = first_line + block.count(b"\n", 0, end - pos) - 1
                if end < size and line >= last_line and sub == pos:
                    return False
                k = _offset_of_line(block, line - first_line)
                at = pos + k if k >= 0 else sub
                if at > sub:  # the records before the defect
                    names, emb, labels = _core.read_pool_csv(
                        self.path, dim=_dim_arg(self.dim), body_start=sub, body_end=at
                    )
                    self._rows(names, emb, labels, first_line + block.count(b"\n", 0, sub - pos))
                self.c.add(ERROR, CSV_NAME, _csv_message(e), line, e.column or None)
                self.parse_errors += 1
                if self.parse_errors >= _MAX_LISTED:
                    return True
                nxt = _offset_of_line(block, line + 1 - first_line)
                sub = end if nxt < 0 else pos + nxt
                continue
            self._rows(names, emb, labels, first_line + block.count(b"\n", 0, sub - pos))
            break
        return True

    def _rows(
        self,
        names: list[str],
        emb: npt.NDArray[np.float32],
        labels: npt.NDArray[np.int64],
        line0: int,
    ) -> None:
        """Check rows parsed from line `line0` on (row i on line line0 + i, exact where no
        name holds a line end)."""
        import numpy as np

        from datapool.naming import source_keys

        base = self.rows
        bad = np.flatnonzero((labels < 0) | (labels >= self.n_runs))
        for i in bad.tolist():
            self.bad_labels += 1
            if self.bad_labels <= _MAX_LISTED:
                self.c.add(
                    ERROR,
                    CSV_NAME,
                    f"label {int(labels[i])} names a run that {RUNS_NAME} does not have "
                    f"({self.n_runs} runs)",
                    line0 + i,
                    "labels",
                )
        ok = labels[(labels >= 0) & (labels < self.n_runs)]
        self.per_run += np.bincount(ok, minlength=self.n_runs)[: self.n_runs]
        no_thumb = [
            label
            for n, label in zip(names, labels.tolist())
            if 0 <= label < self.n_runs and n not in self.thumbs
        ]
        if no_thumb:
            self.no_thumb += np.bincount(no_thumb, minlength=self.n_runs)[: self.n_runs]
        for i, name in enumerate(names):
            if name in self.seen:
                self.dups += 1
                if self.dups <= _MAX_LISTED:
                    self.c.add(
                        ERROR,
                        CSV_NAME,
                        f"duplicate filename {name!r} (first on line {self.seen[name]})",
                        line0 + i,
                        "filenames",
                    )
            else:
                self.seen[name] = line0 + i
        if self.picked:
            for i, (name, label) in enumerate(zip(names, labels.tolist())):
                picked = self.picked.get(label)
                if picked is None or label in self.not_picked or self._picked(name, picked):
                    continue
                self.not_picked[label] = (name, line0 + i)
        if self.ledger is not None:
            keys = source_keys(names, self._image_keys)
            for i, (key, label) in enumerate(zip(keys, labels.tolist())):
                self.per_key[key] = self.per_key.get(key, 0) + 1
                if self.key_runs.setdefault(key, label) != label:
                    self.key_runs[key] = -1
                self.key_line.setdefault(key, line0 + i)
        if self.side is not None and not self.parse_errors:  # (rows skipped: out of line)
            self.side.compare(base, names, emb, labels, line0)
        self.rows += len(names)

    def _picked(self, name: str, picked: set[str]) -> bool:
        """Whether `name`, or a name a later run's move renamed to it, is in `picked`."""
        for _ in range(len(self.moved_from) + 1):
            if name in picked:
                return True
            if name not in self.moved_from:
                return False
            name = self.moved_from[name]
        return False

    def _compare_reports(self) -> None:
        """The CSV's samples of each run against the picks its report.json lists: none it does
        not name, and none it names gone but by `datapool rm` (runs.json's removals), a later
        run's move of its file, or a later run that read its file again (changed: the ledger's
        run) (`undo` takes back whole runs only)."""
        from datapool.naming import source_keys

        for r, (name, line) in sorted(self.not_picked.items()):
            self.c.add(
                ERROR,
                self._report_of(r),
                f"does not list {name!r} among run {r}'s picks, but {CSV_NAME} line {line} "
                f"labels it run {r}: not that run's report (another run's folder copied over "
                "this one?), or the CSV edited",
            )
        if not self.complete:
            return
        removed_names: set[str] = set()
        removed_files: set[str] = set()
        for entry in self.c.doc.get("removals") or []:
            if isinstance(entry, dict):
                removed_names.update(str(n) for n in entry.get("names") or ())
                removed_files.update(str(k) for k in entry.get("files") or ())
        moved_to = {old: new for new, old in self.moved_from.items()}
        for r, picked in sorted(self.picked.items()):
            if r in self.not_picked or int(self.per_run[r]) >= len(picked):
                continue
            gone = []
            for name in picked:
                for _ in range(len(moved_to) + 1):  # (a name a later run's move gave it)
                    if name in self.seen or name not in moved_to:
                        break
                    name = moved_to[name]
                if name not in self.seen and name not in removed_names:
                    # A move of its file that `datapool rm` took out of the report's `moved`
                    # (it scrubs the names it removes) is still in `moved_files`.
                    now = self._renamed_now(name)
                    if now != name and (now in self.seen or now in removed_names):
                        continue
                    gone.append(name)
            keys = source_keys(gone, self._image_keys) if gone else []
            gone = sorted(
                n
                for n, k in zip(gone, keys)
                if k not in removed_files and self._read_by.get(self._key_now(k), r) <= r
            )
            if gone:
                self.c.add(
                    ERROR,
                    self._report_of(r),
                    f"lists {gone[0]!r} among run {r}'s picks, but {CSV_NAME} does not hold it "
                    f"({len(gone)} such picks; no `datapool rm` in {RUNS_NAME} took them "
                    "out): not that run's report (another run's folder copied over this "
                    "one?), or rows of the CSV lost",
                )
        if self.picked:
            self.c.out.checked.append(
                f"the samples of {len(self.picked)} run{'s' * (len(self.picked) > 1)} against "
                "the picks their report.json lists"
            )

    def _key_now(self, key: str) -> str:
        """The ledger's key of the file `key` named once: a later run's move renamed it
        (report.json `moved_files`, and its samples' moves, `moved`, of a report before it). A
        file read again because it changed and then moved was taken for lost rows: its
        samples' picks in the run before were gone, and its key was no longer in the ledger."""
        for _ in range(len(self._file_moves) + 1):
            if key in self._read_by or key not in self._file_moves:
                break
            key = self._file_moves[key]
        return key

    def _renamed_now(self, name: str) -> str:
        """The name sample `name` has after the later moves of its file (`moved_files`)."""
        from datapool.naming import source_keys
        from datapool.pool.moves import renamed_sample

        moves = self._file_moves
        if not moves:
            return name
        key = source_keys([name], self._image_keys)[0]
        for _ in range(len(moves) + 1):
            if key not in moves:
                break
            try:
                name = renamed_sample(name, key, moves[key])
            except ValueError:
                break
            key = moves[key]
        return name

    @property
    def _file_moves(self) -> dict[str, str]:
        """The later runs' moves of files, old key -> new."""
        if not hasattr(self, "_moved_keys"):
            from datapool.naming import source_keys

            new_names = list(self.moved_from)
            old_names = [self.moved_from[n] for n in new_names]
            self._moved_keys: dict[str, str] = {
                old: new
                for old, new in zip(
                    source_keys(old_names, self._image_keys),
                    source_keys(new_names, self._image_keys),
                )
                if old != new
            }
            self._moved_keys.update(self.moved_files)
        return self._moved_keys

    @property
    def _read_by(self) -> dict[str, int]:
        """The run that last read each file of the ledger: a later run than the one a pick
        was of read its file again (changed: its samples left the pool in that run)."""
        if not hasattr(self, "_runs_by_key"):
            ledger = self.ledger
            self._runs_by_key: dict[str, int] = (
                {}
                if ledger is None
                else dict(zip(ledger["key"].tolist(), ledger["run"].astype(int).tolist()))
            )
        return self._runs_by_key

    def _report_of(self, r: int) -> str:
        return str(self.c.runs[r].get("report") or f"{run_dir(r)}/{REPORT_NAME}")

    @property
    def _image_keys(self) -> set[str]:
        if not hasattr(self, "_images"):
            from datapool.pool.ledger import image_sample_keys

            ledger = self.ledger
            self._images = set() if ledger is None else image_sample_keys(ledger)
        return self._images

    # --- against the ledger and the undo records ---------------------------------------------

    def _compare_ledger(self) -> None:
        import numpy as np

        ledger = self.ledger
        if ledger is None:
            return
        if not self.complete:
            self.c.out.not_checked.append(
                f"the samples per run and per file against {LEDGER_NAME}: {CSV_NAME} did not "
                "parse whole"
            )
            return
        runs = ledger["run"].to_numpy(np.int64)
        inside = (runs >= 0) & (runs < self.n_runs)
        in_ledger = np.bincount(
            runs[inside],
            weights=ledger["n_selected"].to_numpy(np.float64)[inside],
            minlength=self.n_runs,
        ).astype(np.int64)
        for r in np.flatnonzero(in_ledger != self.per_run).tolist():
            self.c.add(
                ERROR,
                CSV_NAME,
                f"holds {int(self.per_run[r])} samples of run {r}, but {LEDGER_NAME} records "
                f"{int(in_ledger[r])} selected in that run (rows lost, or edited by hand)",
            )
        self._compare_files(ledger)

    def _compare_files(self, ledger: pd.DataFrame) -> None:
        """Per source file: the ledger's count of its samples in the pool and its run."""
        selected = dict(zip(ledger["key"].tolist(), ledger["n_selected"].tolist()))
        run_of = dict(zip(ledger["key"].tolist(), ledger["run"].tolist()))
        listed = 0
        path = self.c.root / LEDGER_NAME
        where: tuple[str, int | None, str]
        for key, n in self.per_key.items():
            if key not in selected:
                msg = f"sample of {key!r}, a file {LEDGER_NAME} does not hold"
                where = (CSV_NAME, self.key_line[key], "filenames")
            elif int(selected[key]) != n:
                msg = (
                    f"{key!r} has {n} samples in {CSV_NAME} (the first on line "
                    f"{self.key_line[key]}), but its row records {int(selected[key])}"
                )
                where = (LEDGER_NAME, _ledger_line(path, key), "n_selected")
            elif self.key_runs[key] != int(run_of[key]):
                got = self.key_runs[key]
                msg = (
                    f"the samples of {key!r} are labelled "
                    f"{'with more than one run' if got < 0 else f'run {got}'}, but its ledger "
                    f"row says run {int(run_of[key])} added them"
                )
                where = (CSV_NAME, self.key_line[key], "labels")
            else:
                continue
            listed += 1
            if listed <= _MAX_LISTED:
                self.c.add(ERROR, where[0], msg, where[1], where[2])
        gone = [k for k, n in selected.items() if int(n) > 0 and k not in self.per_key]
        for key in gone[:_MAX_LISTED]:
            self.c.add(
                ERROR,
                LEDGER_NAME,
                f"{key!r} has {int(selected[key])} samples in the pool by its row, but "
                f"{CSV_NAME} holds none of them",
                _ledger_line(path, key),
                "n_selected",
            )
        if listed + len(gone) > _MAX_LISTED:
            self.c.add(ERROR, LEDGER_NAME, f"{listed + len(gone)} files disagree in all")

    def say_unsummed(self) -> None:
        """What no commit's sum or hash covers, said (not_checked): a merge, a run that found
        nothing new, and a `datapool rm` or a pool's first run by datapool 0.5.0 or earlier
        record none (an rm and a first run record their files' sums since)."""
        out = self.c.out.not_checked
        if self.side is None and not any(r.start == 0 for r in self.ranges):
            out.append(
                f"the bytes of the {CSV_NAME} rows that no commit's sum covers (a merge, and an "
                "older datapool's `rm` and first run, record none): no "
                f"{SIDECAR_DIR}/ of this CSV to compare them with, parsed only"
            )
        if self.ledger is not None and not self.ledger_summed and not self.no_sums:
            out.append(
                f"the sizes, times and hashes in the {LEDGER_NAME} rows that no commit's sum "
                "covers (a merge, a run that found nothing new, and an older datapool's `rm` "
                f"and first run, record none): parsed, their runs and counts checked against "
                f"{CSV_NAME}"
            )
        if self.unhashed:
            out.append(
                f"{' and '.join(self.unhashed)} as now: no commit's hash covers "
                f"{'them' if len(self.unhashed) > 1 else 'it'} (a run that found nothing new, "
                "`rm --forget`, and an older datapool's `rm` and first run, record none): "
                "parsed only"
            )

    def _record(self, index: int) -> dict[str, Any] | None:
        report = self.c.reports.get(index)
        record = report.get(UNDO_KEY) if report else None
        return record if isinstance(record, dict) else None

    def _removal_sums(self, index: int, key: str) -> tuple[int, int, str] | None:
        """(length, CRC-32, when) of `key`'s file as removal `index` (of runs.json's list)
        wrote it, where it recorded them (`datapool rm` since 0.6.0: removal.seal)."""
        from datapool.pool.removal import SUMS_KEY

        removals = self.c.doc.get(REMOVALS_KEY) or []
        entry = removals[index] if 0 <= index < len(removals) else None
        sums = entry.get(SUMS_KEY) if isinstance(entry, dict) else None
        got = sums.get(key) if isinstance(sums, dict) else None
        if not isinstance(got, dict):
            return None
        n, crc = got.get("bytes"), got.get("crc32")
        if not (isinstance(n, int) and isinstance(crc, int)):
            return None
        return n, crc, str(entry.get("at", "")) if isinstance(entry, dict) else ""

    def _last_removal(self) -> int | None:
        """The index of the removal (runs.json's) after the last run, where one came after."""
        runs = self.c.runs
        record = self._record(len(runs) - 1) if runs else None
        if record is None or not _later_commits(self.c.doc, record, runs[-1])[0]:
            return None
        return len(self.c.doc.get(REMOVALS_KEY) or []) - 1

    def _undo_ranges(self, name: str, key: str) -> list[_Range]:
        """The bytes of `name` each run since the last rewrite of it (by a run or by `datapool
        rm`) wrote, with their sums."""
        runs = self.c.runs
        out: list[_Range] = []
        if not runs or not self._as_last_commit_left(name):
            return out
        removal = self._last_removal()
        if removal is not None:  # (_as_last_commit_left: it recorded its sums)
            sums = self._removal_sums(removal, key)
            if sums is not None:
                out.append(_Range(0, sums[0], WHOLE_CRC32, sums[1], -1, removal=sums[2]))
            return out
        last = self._record(len(runs) - 1) or {}
        after = (last.get(key) or {}).get("after")
        if after is None:
            return out  # (a file datapool 0.4.0 wrote whole: no length recorded)
        end, removals = int(after), last.get("removals")
        for run in reversed(runs):
            i = int(run["index"])
            record = self._record(i) or {}
            ends = record.get(key)
            if (
                run.get("merged_from")
                or not isinstance(ends, dict)
                or ends.get("after") != end
                or record.get("removals") != removals
            ):
                # (a removal since: `datapool rm` rewrote the file, maybe as long; the last of
                # them is checked where it recorded what it wrote and this run recorded how
                # many came before it)
                was = record.get("removals")
                if (
                    isinstance(removals, int)
                    and isinstance(was, int)
                    and was < removals
                    and not run.get("merged_from")  # (a merge brings the other's removals)
                ):
                    sums = self._removal_sums(removals - 1, key)
                    if sums is not None and sums[0] == end:
                        out.append(_Range(0, end, WHOLE_CRC32, sums[1], -1, removal=sums[2]))
                break
            removals = record.get("removals")
            before = int(ends.get("before") or 0)
            if ends.get("appended"):
                if APPENDED_SHA256 in ends:
                    out.append(_Range(before, end, APPENDED_SHA256, ends[APPENDED_SHA256], i))
                end = before
                continue
            if WHOLE_CRC32 in ends:
                out.append(_Range(0, end, WHOLE_CRC32, ends[WHOLE_CRC32], i))
            break
        return out

    def _as_last_commit_left(self, name: str) -> bool:
        """Whether no commit after the last run may have rewritten `name` (a `datapool rm`
        rewrites the CSV and the ledger, a run that found nothing new the ledger); a file that
        is not as long as that run's commit left it, where none came after, is reported."""
        runs = self.c.runs
        record = self._record(len(runs) - 1)
        if record is None or runs[-1].get("merged_from"):
            return False
        key = "csv" if name == CSV_NAME else "ledger"
        after = (record.get(key) or {}).get("after")
        by = f"the last commit (run {len(runs) - 1})"
        removal = self._last_removal()
        if removal is not None:
            sums = self._removal_sums(removal, key)
            if sums is None:  # (one that recorded no sums: an older datapool, or a --forget)
                return False
            after, by = sums[0], f"the last commit (`datapool rm` at {sums[2]})"
        size = (self.c.root / name).stat().st_size
        if name == LEDGER_NAME and after is not None and size != int(after):
            # A run that found nothing new appends the new mtimes or hashes it learnt to the
            # ledger (or, where it is due, rewrites it compactly), without a sum of its own:
            # the runs' bytes are checked where they are still the ledger's first bytes.
            return size > int(after)
        if after is not None and size != int(after):
            self.c.add(
                ERROR,
                name,
                f"is {size} bytes, but {by} left it {int(after)} bytes and no commit came after it: "
                f"{'truncated' if size < int(after) else 'bytes added'} since",
                self.lines.line_at(self.c.root / name, min(size, int(after)))
                if name == CSV_NAME
                else None,
            )
            return False
        return True

    def _report_ranges(self, name: str, ranges: list[_Range], lines: _Lines) -> None:
        for r in ranges:
            if r.matches():
                continue
            path = self.c.root / name
            first, last = lines.line_at(path, r.start), lines.line_at(path, max(r.start, r.end - 1))
            if r.removal is not None:
                self.c.add(
                    ERROR,
                    name,
                    f"lines {first}-{last}, the file `datapool rm` wrote at {r.removal}, are "
                    f"not the bytes its commit wrote (CRC-32 differs from the one its entry in "
                    f"{RUNS_NAME}'s removals records): changed on disk since",
                    first,
                )
                continue
            what = "the rows it appended" if r.kind == APPENDED_SHA256 else "the file it wrote"
            self.c.add(
                ERROR,
                name,
                f"lines {first}-{last}, {what} (run {r.run}), are not the bytes its commit "
                f"wrote ({'SHA-256' if r.kind == APPENDED_SHA256 else 'CRC-32'} differs from "
                f"run {r.run}'s report.json `undo`): changed on disk since",
                first,
            )
        if ranges:
            nums = [str(r.run) for r in reversed(ranges) if r.removal is None]
            by = [f"the `datapool rm` at {r.removal}" for r in ranges if r.removal is not None]
            if nums:
                by.append(f"run{'s' * (len(nums) > 1)} {', '.join(nums)}")
            self.c.out.checked.append(
                f"{name}: the bytes of {', '.join(by)}{', each' * (len(ranges) > 1)} against "
                "its commit's sum"
            )

    def ledger_ranges(self) -> None:
        """The ledger's bytes against the undo records (read whole: the ledger is small)."""
        path = self.c.root / LEDGER_NAME
        if self.ledger is None or self.c.missing(LEDGER_NAME):
            return
        ranges = self._undo_ranges(LEDGER_NAME, "ledger")
        lines = _Lines()
        with open(path, "rb") as f:
            offset = 0
            for block in iter(lambda: f.read(_CHUNK), b""):
                lines.add(offset, block)
                for r in ranges:
                    r.feed(offset, block)
                offset += len(block)
        # Every byte: the rows a run that found nothing new appended after them have no sum.
        self.ledger_summed = (
            any(r.start == 0 for r in ranges) and max((r.end for r in ranges), default=0) >= offset
        )
        self._report_ranges(LEDGER_NAME, ranges, lines)

    def last_commit(self) -> None:
        """runs.json, model.json and strategy_inputs.json as the last run's commit left them,
        where no later commit explains a change; the ledger's sums."""
        self.ledger_ranges()
        runs = self.c.runs
        record = self._record(len(runs) - 1) if runs else None
        if record is None or runs[-1].get("merged_from"):
            if len(runs) > 1:
                self.c.out.not_checked.append(
                    "the sums of the commits' bytes: the last run records none (a merge, or "
                    "an older datapool)"
                )
                self.no_sums = True
            elif runs:
                self.unhashed = [RUNS_NAME, MODEL_NAME]
            return
        files = record.get("files") or {}
        removed, checked = _later_commits(self.c.doc, record, runs[-1])
        later = removed or checked
        if removed and not checked and self._removal_hashes():
            return
        for name in (RUNS_NAME, MODEL_NAME, STRATEGY_INPUTS_NAME):
            want = (files.get(name) or {}).get("after", "absent")
            if want == "absent" or (name != MODEL_NAME and later):
                if want not in ("absent", None) and name != MODEL_NAME and later:
                    self.unhashed.append(name)
                continue
            path = self.c.root / name
            got = digest(path.read_bytes()) if path.is_file() else None
            if got != want:
                self.c.add(
                    ERROR,
                    name,
                    f"not as the last commit (run {len(runs) - 1}) left it (its SHA-256 "
                    "differs from the one that run's report.json `undo` records) and no "
                    "commit came after it: edited or damaged since",
                )

    def _removal_hashes(self) -> bool:
        """runs.json and strategy_inputs.json against the SHA-256s the removal after the last
        run recorded (model.json: `datapool rm` leaves it, the run's record covers it); False
        where it recorded none."""
        from datapool.pool.removal import SUMS_KEY, runs_json_sha256

        index = self._last_removal()
        if index is None or self._removal_sums(index, "csv") is None:
            return False
        sums = self.c.doc[REMOVALS_KEY][index][SUMS_KEY]
        record = self._record(len(self.c.runs) - 1) or {}
        model = ((record.get("files") or {}).get(MODEL_NAME) or {}).get("after", "absent")
        wants = {
            RUNS_NAME: (sums.get(RUNS_NAME), runs_json_sha256(self.c.doc, index)),
            MODEL_NAME: (model, None),
            STRATEGY_INPUTS_NAME: (sums.get(STRATEGY_INPUTS_NAME, "absent"), None),
        }
        at = f"`datapool rm` at {self.c.doc[REMOVALS_KEY][index].get('at', '')}"
        whose = f"run {len(self.c.runs) - 1}'s report.json `undo` records"
        for name, (want, got) in wants.items():
            if want == "absent":
                continue
            path = self.c.root / name
            if got is None and name != RUNS_NAME:
                got = digest(path.read_bytes()) if path.is_file() else None
            if got != want:
                self.c.add(
                    ERROR,
                    name,
                    f"not as the last commit ({at}) left it (its SHA-256 differs from the one "
                    f"{whose if name == MODEL_NAME else f'its entry in {RUNS_NAME} records'}) "
                    "and no commit came after it: edited or damaged since",
                )
        return True

    def thumbnail_coverage(self) -> None:
        """The runs whose samples have no thumbnail (a warning: thumbnails only decorate the
        report)."""
        import numpy as np

        if not self.complete:
            return
        missing = self.no_thumb
        for r in np.flatnonzero(missing).tolist():
            seg = f"{run_dir(r)}/thumbnails.bin"
            why = "missing" if not (self.c.root / seg).exists() else "holds none of them"
            self.c.add(
                WARNING,
                seg,
                f"{int(missing[r])} samples of run {r} have no thumbnail ({why}; a run with "
                "--no-thumbnails or an older datapool makes none): the report shows them "
                "without; `datapool report POOL --thumbnails` makes them",
            )


def _dim_arg(dim: int | None) -> int:
    return -1 if dim is None else dim


def _later_commits(
    doc: dict[str, Any], record: dict[str, Any], last: dict[str, Any]
) -> tuple[bool, bool]:
    """Whether, after the last run, runs.json records a removal (`datapool rm`: it rewrites
    runs.json, the CSV and the ledger; or one the run itself recorded, of a kept-out file that
    moved: taken alike, the safe way) and whether it records a check (a run that found nothing
    new: it rewrites runs.json and appends to or rewrites the ledger)."""
    from datapool.pool.keepout import REMOVALS_KEY
    from datapool.pool.next_run import CHECKED_KEY

    removals = doc.get(REMOVALS_KEY) or []
    checked = doc.get(CHECKED_KEY)
    at = str(last.get("finished_at", ""))
    removed = len(removals) > int(record.get("removals", 0))
    return removed, isinstance(checked, dict) and str(checked.get("at", "")) >= at


def _csv_message(e: Exception) -> str:
    """The reader's message without its 'line L, column C: ' (the problem gives them)."""
    text = str(e)
    m = re.match(r"line \d+(, column [^:]+)?: (.*)", text, re.S)
    return m.group(2) if m else text


def _offset_of_line(block: bytes, k: int) -> int:
    """The offset in `block` of the start of its k-th line (0: the first); -1 past its end."""
    at = 0
    for _ in range(k):
        nl = block.find(b"\n", at)
        if nl < 0:
            return -1
        at = nl + 1
    return at if at < len(block) else -1


class _Sidecar:
    """.sidecar/ where it mirrors the CSV (same file, at least as long): its rows are compared
    with the CSV's bit for bit, and its files' and the CSV's CRC-32s with its manifest."""

    def __init__(self, folder: Path, m: dict[str, Any], trusted: bool) -> None:
        from datapool.pool import sidecar

        self.folder, self.m, self.trusted = folder, m, trusted
        self.rows = int(m["rows"])
        self.csv_bytes = int(m["csv"]["bytes"])
        self.csv_crc = 0
        # As a run maps it (one it cannot map, it rebuilds: open() passes it over).
        self.names, self.emb, self.labels = sidecar._map(folder, m)
        self.differ: list[tuple[int, str, str]] = []  # (line, column, what)
        self.n_differ = 0

    @classmethod
    def open(cls, c: _Check, csv: Path, dim: int | None) -> _Sidecar | None:
        from datapool.pool import sidecar

        folder = c.root / SIDECAR_DIR
        m = sidecar._read_manifest(folder)
        if m is None:
            return None
        st = os.stat(csv)
        try:
            same = st.st_ino == m["csv"]["ino"] and st.st_size >= int(m["csv"]["bytes"])
            if not same or (dim is not None and int(m["dim"]) != dim):
                return None  # a sidecar of another CSV: the next open rebuilds it
            trusted = sidecar._trusted(csv, folder, m, dim, st, verify=False)
        except (OSError, KeyError, TypeError, ValueError):
            return None
        try:
            return cls(folder, m, trusted)
        except (OSError, KeyError, TypeError, ValueError) as e:
            c.add(
                WARNING,
                f"{SIDECAR_DIR}/",
                f"cannot be read ({e}): damaged on disk; no run maps it (the next open "
                "rebuilds it from the CSV)",
            )
            return None

    def feed_csv(self, offset: int, block: bytes) -> None:
        hi = min(len(block), self.csv_bytes - offset)
        if hi > 0:
            self.csv_crc = zlib.crc32(block[:hi], self.csv_crc)

    def compare(
        self,
        base: int,
        names: list[str],
        emb: npt.NDArray[np.float32],
        labels: npt.NDArray[np.int64],
        line0: int,
    ) -> None:
        import numpy as np

        n = max(0, min(len(names), self.rows - base))
        if n == 0:
            return
        mine = np.asarray(self.emb[base : base + n]).view(np.uint32)
        theirs = emb[:n].view(np.uint32)
        if mine.shape != theirs.shape:
            return
        rows_bad = np.flatnonzero(
            (mine != theirs).any(axis=1) | (self.labels[base : base + n] != labels[:n])
        )
        named = [i for i in range(n) if names[i] != self.names[base + i]]
        for i in sorted(set(rows_bad.tolist()) | set(named)):
            self.n_differ += 1
            if len(self.differ) >= _MAX_LISTED:
                continue
            cols = np.flatnonzero(mine[i] != theirs[i])
            if names[i] != self.names[base + i]:
                col, what = "filenames", f"{self.names[base + i]!r} in the sidecar"
            elif cols.size:
                j = int(cols[0])
                got = float(np.asarray(self.emb[base + i, j]))
                col, what = f"embedding_{j}", f"{got!r} in the sidecar, {float(emb[i, j])!r} here"
            else:
                col, what = "labels", f"{int(self.labels[base + i])} in the sidecar"
            self.differ.append((line0 + i, col, what))

    def _files_ok(self) -> list[str]:
        """The sidecar files whose bytes no longer have their manifest's CRC-32."""
        bad = []
        for name, info in self.m["files"].items():
            crc, left = 0, int(info["bytes"])
            with open(self.folder / name, "rb") as f:
                while left > 0:
                    block = f.read(min(left, _CHUNK))
                    if not block:
                        break
                    crc = zlib.crc32(block, crc)
                    left -= len(block)
            if left or crc != int(info["crc32"]):
                bad.append(f"{SIDECAR_DIR}/{name}")
        return bad

    def report(self, c: _Check, csv_rows: int, complete: bool) -> None:
        damaged = self._files_ok()
        csv_changed = self.csv_crc != int(self.m["csv"]["crc32"])
        if complete and csv_rows < self.rows:
            c.add(
                ERROR if self.trusted else WARNING,
                f"{SIDECAR_DIR}/{SIDECAR_MANIFEST}",
                f"mirrors {self.rows} rows, but {CSV_NAME} holds {csv_rows}",
            )
        if not self.differ:
            if damaged:
                c.add(
                    ERROR if self.trusted else WARNING,
                    damaged[0],
                    "its bytes no longer have the CRC-32 its manifest records (damaged on "
                    "disk)" + _sidecar_use(self.trusted),
                )
            if complete:
                c.out.checked.append(f"{SIDECAR_DIR} ({min(self.rows, csv_rows)} rows bit for bit)")
            else:
                c.out.not_checked.append(
                    f"{SIDECAR_DIR} against the CSV's rows past its first defect"
                )
            return
        if csv_changed:
            for line, col, what in self.differ:
                c.add(
                    ERROR,
                    CSV_NAME,
                    f"differs from the sidecar written from it ({what}): the CSV changed on "
                    "disk since it was committed",
                    line,
                    col,
                )
        if damaged or not csv_changed:  # (named by the file of the column that differs)
            for line, col, what in self.differ:
                c.add(
                    ERROR if self.trusted else WARNING,
                    f"{SIDECAR_DIR}/{_SIDECAR_FILE_OF.get(col, SIDECAR_EMBEDDINGS)}",
                    f"the row of {CSV_NAME} line {line} differs in {col} ({what})"
                    + _sidecar_use(self.trusted),
                    line,
                    col,
                )
        if self.n_differ > len(self.differ):
            c.add(ERROR, CSV_NAME, f"{self.n_differ} rows differ from the sidecar in all")


_SIDECAR_FILE_OF = {"filenames": SIDECAR_NAMES, "labels": SIDECAR_LABELS}


def _sidecar_use(trusted: bool) -> str:
    if trusted:
        return (
            "; a run maps these values instead of the CSV's: delete .sidecar/ so that the "
            "next open rebuilds it from the CSV"
        )
    return "; no run uses it (its manifest no longer matches): the next open rebuilds it"
