"""The `datapool` command. It parses arguments into the Python API and prints results; it holds no
logic of its own. A DatapoolError prints one line, in the CLI's words (flags, not field names),
and exits with its kind's code (errors.py; a usage error exits 4, as argparse's own do here);
Ctrl-C (SIGINT) exits 130 and SIGTERM 143, after saying whether the pool was left as before the
run (see docs/robustness.md). Under `--json` that line is one JSON object on stderr,
`{"error": {"kind", "message", "exit_code"}}` (`_say_error`), with the same exit code. Words of a
message past 200 characters (a path over PATH_MAX) are shortened to their head and tail."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import json
import logging
import os
import re
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from datapool import __version__
from datapool._testhooks import point
from datapool.config import (
    CHANNEL_ORDERS,
    POOLINGS,
    PREDICT_BATCH_SIZE,
    S3_RETRY_MODES,
    RunConfig,
    SelectionConfig,
)
from datapool.errors import (
    IN_RESULT,
    ConfigError,
    DatapoolError,
    OutputWriteError,
    SelectionFileError,
)
from datapool.naming import counted
from datapool.specs import shorten, shorten_words

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Iterator, Sequence

    from datapool.export import ExportResult
    from datapool.fingerprint import ModelFingerprint
    from datapool.runner import RunResult


USAGE_EXIT = ConfigError.exit_code  # argparse's own is 2, which here means a corrupt pool


class _Parser(argparse.ArgumentParser):
    argv: Sequence[str] = ()  # the arguments being parsed (set by _main), for error's hints

    def error(self, message: str) -> Any:
        """One line, as every other user error: the flag and what is wrong with it (run's
        usage alone is 19 lines, which buried the error under it)."""
        dashed = next((a for a in self.argv if a[:1] == "-" and os.path.lexists(a)), None)
        if dashed is not None:  # a folder named `-data`, taken for an option
            message += f"; {dashed!r} was taken for an option: give that path as ./{dashed}"
        elif (m := re.match(r"argument (?:\S+/)?(--\S+): expected one argument$", message)) and (
            _dashed_value(self.argv, m.group(1))
        ):
            message += f"; give a value that starts with '-' as {m.group(1)}=VALUE"  # -n.jpg
        elif m := re.match(r"argument --n-samples: invalid int value: '([0-9.]+)(%?)'$", message):
            with contextlib.suppress(ValueError):  # `--n-samples 0.1`: Lightly's older fraction
                share = float(m.group(1)) / (100 if m.group(2) else 1)
                if 0 < share < 1:
                    message += f" (a fraction of the candidates: --proportion {share:g})"
        elif m := re.match(r"argument (--\S+): invalid float value: '([0-9.]+)%'$", message):
            with contextlib.suppress(ValueError):  # `--proportion 10%`: a percentage
                message += (
                    f" (a fraction: {m.group(1)} {float(m.group(2)) / 100:g} for {m.group(2)}%)"
                )
        message = f"{message} (see `{self.prog} --help`)"
        if "--json" in self._option_string_actions and _wants_json(self.argv):
            self.exit(USAGE_EXIT, _error_json("usage", message, USAGE_EXIT))
        self.exit(USAGE_EXIT, f"{self.prog}: error: {shorten_words(message)}\n")


def _dashed_value(argv: Sequence[str], flag: str) -> bool:
    """Whether `flag` (or an abbreviation of it) is followed in `argv` by a word starting with
    '-' (`--include -n.jpg`): the value argparse took for an option. A flag at the end of the line
    had no value at all, and the hint to write `--include=VALUE` would mislead."""
    return any(
        word.startswith("--") and len(word) > 2 and flag.startswith(word) and after[:1] == "-"
        for word, after in zip(argv, argv[1:])
    )


# Lightly Worker settings given to `datapool run` as flags, with what they are here (difflib
# finds the others: --n_samples, --process_all, --selected_sequence_length).
LIGHTLY_FLAGS = {
    "--use-datapool": "every datapool run grows its pool (--pool POOL): drop it",
    "--stopping-condition-minimum-distance": "--min-distance D is DIVERSITY's stopping condition",
    "--object-level": "--crops TASK selects objects (Lightly's object_level.task_name)",
    "--task-name": "--crops TASK selects objects (Lightly's object_level.task_name)",
}


class _NoStray(Exception):
    """_CommandParser._stray's trial parse failed: no stray word to name."""


class _CommandParser(_Parser):
    """A command's parser (`datapool export`, `datapool model get`): it refuses what it does not
    know itself, so that the error names the command's --help and the flag meant (the top
    parser's said to see `datapool --help`, which lists no command's flags)."""

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._args = list(args or ())
        ns, extra = super().parse_known_args(args, namespace)
        if extra:
            self.error(f"unrecognized arguments: {' '.join(extra)}{self._meant(extra)}")
        return ns, extra

    def error(self, message: str) -> Any:
        """`run SRC POOL --n-samples 5` (the pool given without --pool) said only that --pool
        is required: name the stray word, as the flag it was meant for."""
        if getattr(self, "_in_stray", False):
            raise _NoStray(message)  # the trial parse of _stray failed otherwise: say nothing
        m = re.match(r"the following arguments are required: (--[\w-]+)$", message)
        if m and (stray := self._stray(m.group(1))):
            message = f"{m.group(1)} is required; did you mean {m.group(1)} {stray}?"
        super().error(message)

    def _stray(self, flag: str) -> str | None:
        """The first word left over when `flag` is given a value: a positional too many."""
        args = getattr(self, "_args", None)
        if not args or getattr(self, "_in_stray", False):
            return None
        self._in_stray = True
        try:
            _, extra = argparse.ArgumentParser.parse_known_args(
                self, [*args, flag, "x"], argparse.Namespace()
            )
        except (_NoStray, SystemExit):
            return None
        finally:
            self._in_stray = False
        return next((w for w in extra if not w.startswith("-")), None)

    def _meant(self, extra: list[str]) -> str:
        """'; did you mean --n-samples?' for a misspelt flag (--n_samples, --mirrror)."""
        import difflib

        known = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
        for word in extra:
            lightly = LIGHTLY_FLAGS.get(word.split("=", 1)[0].replace("_", "-"))
            if lightly and "--n-samples" in known:  # `datapool run`'s
                return f"; {lightly}"
            if word.startswith("--"):
                close = difflib.get_close_matches(word.split("=", 1)[0], known, n=1, cutoff=0.75)
                if close:
                    return f"; did you mean {close[0]}?"
        return ""


class _NamesAnywhereParser(_CommandParser):
    """`datapool rm`'s parser: its NAMEs may come after its options too (`rm POOL --forget
    a.jpg`), where argparse leaves a positional list that has already been taken as empty."""

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        ns, extra = argparse.ArgumentParser.parse_known_args(self, args, namespace)
        names = [w for w in extra if not w.startswith("-")]
        extra = [w for w in extra if w.startswith("-")]
        if extra:
            self.error(f"unrecognized arguments: {' '.join(extra)}{self._meant(extra)}")
        ns.names = [*ns.names, *names]
        return ns, extra


def _wants_json(argv: Sequence[str]) -> bool:
    """The command line asks for JSON output, before it is parsed (for argparse's errors of a
    command that has --json): its errors are JSON too."""
    return "--json" in argv[: list(argv).index("--")] if "--" in argv else "--json" in argv


def _error_json(kind: str, message: str, code: int) -> str:
    """A failure under --json: one JSON object on one line, for stderr. stderr, as gh, kubectl
    and the aws CLI write their errors: stdout holds the result alone (`> status.json` never
    keeps an error as if it were one; `ls --json` writes its list whole or not at all), and the
    exit code is the same as without --json."""
    error = {"kind": kind, "message": shorten_words(message), "exit_code": code}
    return json.dumps({"error": error}) + "\n"


def _say_error(kind: str, message: str, code: int, as_json: bool) -> int:
    """Print a failure on stderr, as one line of text or (`--json`) of JSON; return `code`.
    The warnings held for a result (`_HeldForResult`) come before it."""
    _flush_held()
    text = (
        _error_json(kind, message, code)
        if as_json
        else f"datapool: error: {shorten_words(message)}\n"
    )
    sys.stderr.write(text)  # one write: a thread left running may still write to stderr
    return code


def _path(value: str) -> str:
    """A path argument: an empty one (an unset variable, `"$POOL"`) would mean the current
    folder to the OS, so it is refused rather than read or written there; a local path longer
    than the system allows (PATH_MAX, or a part past NAME_MAX) is refused here, in one line
    that keeps its head and tail (it came out as OSError's traceback, holding the whole path)."""
    if not value:
        raise argparse.ArgumentTypeError("the path is empty (an unset variable?)")
    if "://" in value:
        return value
    size = len(os.fsencode(value))
    if size >= PATH_MAX:
        raise argparse.ArgumentTypeError(
            f"the path is {size:,} bytes, longer than this system allows ({PATH_MAX:,}): "
            f"{shorten(value)}"
        )
    part = max(value.split(os.sep), key=lambda p: len(os.fsencode(p)))
    if len(os.fsencode(part)) > NAME_MAX:
        raise argparse.ArgumentTypeError(
            f"{shorten(part)!r} is {len(os.fsencode(part)):,} bytes, longer than a file or folder "
            f"name may be here ({NAME_MAX}): in {shorten(value)}"
        )
    return value


def _limit(name: str, default: int) -> int:
    try:
        return int(os.pathconf("/", name))
    except (OSError, ValueError, AttributeError):  # (no such limit here: Windows)
        return default


PATH_MAX, NAME_MAX = _limit("PC_PATH_MAX", 4096), _limit("PC_NAME_MAX", 255)


_JSON_ERRORS = "; an error is one JSON object on stderr, {error: {kind, message, exit_code}}"


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="datapool",
        description="Grow a diverse training dataset step by step from a bucket of raw images and videos.",
    )
    p.add_argument("--version", action="version", version=f"datapool {__version__}")
    sub = p.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_CommandParser
    )

    _add_run(sub)
    _add_predict_parser(sub)

    s = sub.add_parser(
        "status",
        help="show a pool's runs, size and ledger, and what the next run reads again",
        description="Show a pool's size, model, source, ledger and runs; whether a run holds "
        "the pool now (or a killed run's stale lock); and what the next run will read again "
        "although no file changed. It reads the pool only: it never takes the lock or waits.",
    )
    s.add_argument("pool", type=_path, metavar="POOL", help="a pool folder or s3://bucket/prefix")
    s.add_argument("--json", action="store_true", help="print it as one JSON object" + _JSON_ERRORS)
    _add_pool_endpoint(s)
    _add_verify_parser(sub)

    m = sub.add_parser("merge", help="merge two pools built with the same model into a new pool")
    m.add_argument("a", type=_path, metavar="A", help="a pool folder or s3://bucket/prefix")
    m.add_argument("b", type=_path, metavar="B", help="a pool folder or s3://bucket/prefix")
    m.add_argument(
        "--into",
        type=_path,
        required=True,
        metavar="C",
        help="the new pool: a new or empty folder or s3://bucket/prefix, not inside A or B",
    )
    m.add_argument(
        "--reselect",
        type=int,
        metavar="N",
        help="keep only the N most diverse samples of the union (default: keep them all)",
    )
    m.add_argument("--json", action="store_true", help="print the result as JSON" + _JSON_ERRORS)
    _add_pool_endpoint(m)
    _add_output_flags(m)

    _add_gc_parser(sub)
    _add_rm_parser(sub)
    _add_undo_parser(sub)
    _add_export_parser(sub)
    _add_report_parser(sub)

    md = sub.add_parser("model", help="fetch learned models by name (docs/models.md)")
    msub = md.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    mg = msub.add_parser("get", help="fetch NAME into the local model cache (needs datapool[hub])")
    mg.add_argument("name", metavar="NAME", help="dinov2-small, clip-vit-b32, resnet50, ...")
    mg.add_argument("--force", action="store_true", help="fetch again even when cached")
    pin = mg.add_mutually_exclusive_group()
    pin.add_argument(
        "--revision",
        metavar="COMMIT",
        help="fetch this commit (or branch, tag) instead of the entry's, such as the one a "
        "pool was made with (a model mismatch names it)",
    )
    pin.add_argument(
        "--pool",
        type=_path,
        metavar="POOL",
        help="fetch the commit pool POOL was made with, its .onnx checked against the pool's "
        "SHA-256 (the weights a later run on that pool must use)",
    )
    _add_pool_endpoint(mg)
    msub.add_parser("list", help="the known names and which are cached")

    ls = sub.add_parser("ls", help="list a pool's samples: run, source file, frame, min-distance")
    ls.add_argument("pool", type=_path, metavar="POOL", help="a pool folder or s3://bucket/prefix")
    ls.add_argument(
        "--run", metavar="N|TAG", help="only the samples run N (or the run tagged TAG) added"
    )
    ls.add_argument("--json", action="store_true", help="one JSON list" + _JSON_ERRORS)
    _add_pool_endpoint(ls)

    d = sub.add_parser("demo", help="make a demo bucket, run twice, and show where the results are")
    d.add_argument(
        "directory",
        nargs="?",
        default="datapool-demo",
        type=_path,
        metavar="DIR",
        help="where to make the demo bucket and pool, DIR/bucket and DIR/pool (default "
        "%(default)s; it stops if DIR/pool exists)",
    )
    return p


def _add_run(sub: Any) -> None:
    """The `run` command. Each option's dest is its RunConfig field and nothing is set unless
    given (argparse.SUPPRESS): RunConfig holds every default, and the help reads them from it."""
    default = {f.name: f.default for f in dataclasses.fields(RunConfig)}
    r = sub.add_parser(
        "run",
        help="add the most diverse new samples of SOURCE to the pool",
        argument_default=argparse.SUPPRESS,
    )
    r.add_argument(
        "source",
        type=_path,
        metavar="SOURCE",
        help="a local folder of images and videos, s3://bucket/prefix or gs://bucket/prefix",
    )
    r.add_argument(
        "--pool",
        required=True,
        type=_path,
        metavar="POOL",
        help="the pool folder (created if missing), or s3://bucket/prefix "
        "(committed with conditional writes)",
    )
    budget = r.add_mutually_exclusive_group()
    budget.add_argument(
        "--n-samples",
        type=int,
        metavar="N",
        help="add at most N new samples (give this, --proportion or --min-distance)",
    )
    budget.add_argument(
        "--proportion",
        dest="proportion_samples",
        type=float,
        metavar="P",
        help="add at most this fraction (0..1) of the run's candidate samples",
    )
    r.add_argument(
        "--min-distance",
        type=float,
        metavar="D",
        help="stop when the farthest candidate is closer than D to the pool "
        "(Euclidean between unit embeddings, 0..2; default: no such stop)",
    )
    strat = r.add_argument_group("selection strategies")
    strat.add_argument(
        "--selection",
        type=_path,
        metavar="FILE",
        help="a selection config in Lightly's shape (JSON, or YAML): n_samples or "
        "proportion_samples and strategies (DIVERSITY, WEIGHTS, THRESHOLD, BALANCE, SIMILARITY, "
        "TYPICALITY; docs/selection.md); --n-samples/--proportion/--min-distance override its "
        "budget",
    )
    strat.add_argument(
        "--crops",
        metavar="TASK",
        help="crop selection: the candidates are the objects of the object-detection task "
        "TASK (.lightly/predictions/TASK/), each box cut out of its image, embedded and "
        "selected by diversity; the same as a --selection strategy with input EMBEDDINGS and "
        '"task": TASK (docs/selection.md, "Crop selection")',
    )
    strat.add_argument(
        "--crop-padding",
        type=float,
        metavar="P",
        help="with --crops: add P times a box's width and height on each side before it is cut "
        "out (0..1; default 0.1)",
    )
    strat.add_argument(
        "--selected-sequence-length",
        type=int,
        metavar="L",
        help="select runs of L consecutive frames of a video instead of single frames "
        "(Lightly's sequence selection; images are left out); --n-samples counts frames and "
        "must be a multiple of L",
    )
    strat.add_argument(
        "--predictions",
        dest="predictions_dir",
        type=_path,
        metavar="DIR",
        help="read the strategies' (and --pre-annotate's) predictions from DIR (a folder, "
        "s3://... or gs://...) "
        "shaped like .lightly/predictions (tasks.json, <task>/schema.json, one JSON per file), "
        "instead of SOURCE/.lightly/predictions",
    )
    strat.add_argument(
        "--metadata",
        dest="metadata_dir",
        type=_path,
        metavar="DIR",
        help="read the strategies' metadata from DIR (a folder, s3://... or gs://...) shaped "
        "like .lightly/metadata (schema.json, one JSON per file), instead of "
        "SOURCE/.lightly/metadata",
    )
    r.add_argument(
        "--process-all",
        action="store_true",
        help="process every file again and rebuild the pool from scratch "
        "(the previous pool is kept under POOL/history/)",
    )
    r.add_argument(
        "--keep-history",
        action="store_true",
        help="keep the pool as it was before this run under POOL/history/ "
        "(hard links and file clones where the file system allows)",
    )
    r.add_argument(
        "--tag",
        metavar="NAME",
        help="name this run's selection, once per pool, not all digits (default: initial-tag, "
        "then run-N); `ls`/`export --run NAME` and a SIMILARITY strategy's input.tag_name find "
        "its samples by it",
    )
    _model_flags(r)
    r.add_argument(
        "--frame-stride",
        type=int,
        metavar="S",
        help=f"use every S-th video frame (1: all; default {default['frame_stride']}); like "
        "--fps, it applies to the videos a run reads: --process-all to read the pool's again",
    )
    r.add_argument(
        "--fps",
        type=float,
        metavar="F",
        help="use at most F video frames per second of video, by timestamp "
        "(handles variable frame rate; not with --frame-stride)",
    )
    r.add_argument(
        "--batch-size",
        type=int,
        metavar="B",
        help=f"frames per inference batch (default {default['batch_size']})",
    )
    r.add_argument(
        "--threads",
        type=int,
        metavar="T",
        help=f"inference and selection threads (0: all cores; default {default['threads']})",
    )
    r.add_argument(
        "--device",
        choices=("cpu", "cuda", "auto"),
        help="where selection and embedding run: cuda needs a CUDA build of datapool and "
        "onnxruntime-gpu (docs/gpu.md); auto uses the GPU where there is one "
        f"(default {default['device']})",
    )
    r.add_argument(
        "--decode-workers",
        type=int,
        metavar="W",
        help=f"decoding threads (0: min(4, cores); default {default['decode_workers']})",
    )
    r.add_argument(
        "--no-thumbnails",
        dest="thumbnails",
        action="store_const",
        const=False,
        help="make no thumbnails for the report page (they cost a few %% of a run)",
    )
    r.add_argument(
        "--no-progress",
        dest="progress",
        action="store_const",
        const=False,
        help="no progress bar",
    )
    r.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="GLOB",
        help="use only files whose path in SOURCE matches (repeatable; `*` crosses folders; "
        "a glob without / matches the file name)",
    )
    r.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="leave out files whose path in SOURCE matches, and every file of a folder that "
        "matches (`cam`, `cam/`, `*/tmp`: that folder is not read at all) (repeatable)",
    )
    r.add_argument(
        "--relevant-filenames-file",
        metavar="FILE",
        help="use only the files this file names: one path inside SOURCE or prefix* per line, "
        "!path to leave one out, the last matching line wins; spaces around a line are stripped, "
        "blank lines and lines starting with # skipped, absolute paths under SOURCE made "
        "relative (Lightly's relevant_filenames_file)",
    )
    r.add_argument(
        "--source-moved",
        action="store_true",
        help="SOURCE is the pool's source at a new place: accept it (otherwise a run from "
        "another source than the pool's stops)",
    )
    r.add_argument(
        "--retry-skipped",
        action="store_true",
        help="process every skipped file again (files that could not be read are retried "
        "anyway; files that could not be decoded only when they change)",
    )
    r.add_argument(
        "--dry-run",
        action="store_true",
        help="list and compare with the pool, print what would be processed, change nothing",
    )
    r.add_argument(
        "--export",
        type=_path,
        metavar="DEST",
        help="write this run's selected samples (images as they are, video frames as "
        "PNG) and selected_filenames.txt to this folder, s3://bucket/prefix or "
        "gs://bucket/prefix",
    )
    _add_tasks_flags(r, "export_tasks", "export_url_prefix")
    r.add_argument(
        "--pre-annotate",
        dest="export_pre_annotate",
        metavar="TASK",
        help="with --export and --tasks label-studio: each task carries the predictions of TASK "
        "(an object-detection or classification task of SOURCE/.lightly/predictions, or of "
        "--predictions DIR) as Label Studio predictions, and the labelling config they fit is "
        "printed; with --tasks coco, coco.json holds an object-detection task's boxes as its "
        "annotations (docs/s3.md)",
    )
    s3 = r.add_argument_group(
        "S3 (credentials come from boto3's chain: AWS_ACCESS_KEY_ID/"
        "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or a role; never printed)"
    )
    s3.add_argument(
        "--s3-endpoint-url",
        metavar="URL",
        help="an S3-compatible endpoint (MinIO, Ceph, ...); default AWS_ENDPOINT_URL, else AWS",
    )
    s3.add_argument(
        "--s3-max-attempts",
        type=int,
        metavar="N",
        help="attempts per request, retries of throttling and 5xx errors included "
        f"(default {default['s3_max_attempts']})",
    )
    s3.add_argument(
        "--s3-retry-mode",
        choices=S3_RETRY_MODES,
        help=f"botocore retry mode (default {default['s3_retry_mode']}; adaptive also "
        "rate-limits the client)",
    )
    s3.add_argument(
        "--s3-read-timeout",
        dest="s3_read_timeout_s",
        type=float,
        metavar="SECONDS",
        help="how long a read waits for the server's next byte before it tries again; a body "
        "cut short or stalled is read on from where it stopped "
        f"(default {default['s3_read_timeout_s']:g})",
    )
    s3.add_argument(
        "--s3-concurrency",
        type=int,
        metavar="N",
        help=f"objects read at once (default {default['s3_concurrency']})",
    )
    s3.add_argument(
        "--s3-lock-lease",
        dest="s3_lock_lease_s",
        type=float,
        metavar="SECONDS",
        help="for --pool s3://... on a server without conditional writes: the lease "
        "of the pool's lock object, renewed while the run works "
        f"(default {default['s3_lock_lease_s']:g})",
    )
    ray = r.add_argument_group(
        "engine (where decoding and embedding run; --engine ray needs pip install "
        '"datapool[ray]"; see docs/scale-out.md)'
    )
    ray.add_argument(
        "--engine",
        choices=("threaded", "ray"),
        help="threaded: in this process; ray: as Ray Data work on a Ray cluster "
        f"(default {default['engine']})",
    )
    ray.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="the Ray cluster to join (default RAY_ADDRESS if set, else a local Ray)",
    )
    ray.add_argument(
        "--ray-num-gpus",
        type=float,
        metavar="G",
        help="GPUs per embedding actor (default: CPU actors)",
    )
    r.add_argument(
        "--json", action="store_true", default=False, help="print the result as JSON" + _JSON_ERRORS
    )
    _add_output_flags(r)


_RUN_FIELDS = frozenset(f.name for f in dataclasses.fields(RunConfig))


def _add_predict_parser(sub: Any) -> None:
    p = sub.add_parser(
        "predict",
        help="run your ONNX detector or classifier over SOURCE and write Lightly's predictions "
        "files for run --predictions (docs/selection.md)",
        description="Run an ONNX model (an Ultralytics YOLO detection export, or a classifier "
        "with one (1, classes) output) over SOURCE's images and video frames, and write its "
        "predictions in Lightly's format into DIR: tasks.json, TASK/schema.json and one JSON "
        "per picture, which `datapool run SOURCE --predictions DIR` reads.",
    )
    p.add_argument("source", type=_path, metavar="SOURCE", help="a folder, s3:// or gs:// prefix")
    p.add_argument("--model", required=True, type=_path, metavar="MODEL.onnx", help="the model")
    p.add_argument(
        "--out",
        required=True,
        type=_path,
        metavar="DIR",
        help="the local predictions folder (other tasks in it are kept); SOURCE/.lightly/"
        "predictions is where run finds it without --predictions",
    )
    p.add_argument("--task", metavar="NAME", help="the task name (default: the model's stem)")
    p.add_argument(
        "--classes",
        type=_path,
        metavar="FILE",
        help="class names, one a line (default: the model's metadata 'names')",
    )
    p.add_argument(
        "--conf", type=float, metavar="C", help="detection: keep boxes scored above C (0.25)"
    )
    p.add_argument(
        "--iou", type=float, metavar="T", help="detection: per-class NMS IoU threshold (0.7)"
    )
    p.add_argument(
        "--frame-stride",
        type=int,
        default=1,
        metavar="S",
        help="predict every S-th video frame (default 1: all; give what run is given)",
    )
    p.add_argument(
        "--fps", type=float, metavar="F", help="predict at most F video frames a second, as run"
    )
    p.add_argument(
        "--input-size",
        type=_size,
        metavar="H[xW]",
        help="input height and width, for models that leave them dynamic (default: the "
        "model's, its preprocessor_config.json's, or Ultralytics' imgsz)",
    )
    p.add_argument(
        "--channels",
        type=str.upper,
        choices=CHANNEL_ORDERS,
        help="the channel order the model takes, as run's --channels (default: the model's "
        "datapool.channels metadata, else its preprocessor_config.json, else RGB)",
    )
    for flag, what in (("--mean", "mean"), ("--std", "standard deviation")):
        p.add_argument(
            flag,
            type=_triple,
            metavar="R,G,B",
            help=f"a classifier's per-channel {what}, 0-1 units, as run's {flag} (default: the "
            "model's metadata, preprocessor_config.json or first nodes, else ImageNet's)",
        )
    p.add_argument(
        "--batch-size",
        type=int,
        default=PREDICT_BATCH_SIZE,
        metavar="B",
        help="pictures the model runs at once where its batch is dynamic (Ultralytics' "
        f"dynamic=True; a fixed batch of 1 runs one at a time; default {PREDICT_BATCH_SIZE})",
    )
    p.add_argument(
        "--decode-workers",
        type=int,
        default=0,
        metavar="W",
        help="threads decoding ahead while the model runs (0: min(4, cores); default 0)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON" + _JSON_ERRORS)
    _add_pool_endpoint(p, "source")
    _add_output_flags(p)


def _cmd_predict(a: argparse.Namespace) -> int:
    from datapool.predict import predict

    cfg = RunConfig(n_samples=1, s3_endpoint_url=a.s3_endpoint_url)  # for its S3 settings only
    with _progress(a).phase("predict", unit="files") as ph:
        r = predict(
            a.source,
            a.model,
            a.out,
            task=a.task,
            classes_file=a.classes,
            conf=a.conf,
            iou=a.iou,
            frame_stride=a.frame_stride,
            fps=a.fps,
            config=cfg,
            phase=ph,
            input_size=a.input_size,
            channels=a.channels,
            mean=a.mean,
            std=a.std,
            batch_size=a.batch_size,
            decode_workers=a.decode_workers,
        )
    if a.json:
        print(json.dumps(r.to_json(), indent=2))
        return 0
    for line in r.lines(a.source):
        print(line)
    return 0


def _add_pool_endpoint(parser: argparse.ArgumentParser, what: str = "pool") -> None:
    """`--s3-endpoint-url` of the commands that read or write a pool (status, ls, gc, report,
    merge), or read a source (predict: `what`)."""
    parser.add_argument(
        "--s3-endpoint-url",
        metavar="URL",
        help=f"for an s3:// {what}: an S3-compatible endpoint; default AWS_ENDPOINT_URL",
    )


def _add_verify_parser(sub: Any) -> None:
    v = sub.add_parser(
        "verify",
        help="read every part of a pool and report every problem (exit 2 on any error)",
        description="Read every part of a pool (the CSV with the reader a run uses, the ledger, "
        "runs.json, model.json, the runs' reports, views and thumbnails, the sums each run's "
        "commit recorded of its bytes, the sidecar bit for bit; in S3 every blob the manifest "
        "names) and report every problem, each with its file, line and column where it "
        "applies. It never takes the lock and changes nothing (docs/robustness.md).",
    )
    v.add_argument("pool", type=_path, metavar="POOL", help="a pool folder or s3://bucket/prefix")
    v.add_argument("--json", action="store_true", help="print it as one JSON object" + _JSON_ERRORS)
    _add_pool_endpoint(v)


def _add_gc_parser(sub: Any) -> None:
    g = sub.add_parser(
        "gc", help="remove the blobs of a pool in S3 that no manifest references any more"
    )
    g.add_argument(
        "pool",
        type=_path,
        metavar="POOL",
        help="s3://bucket/prefix (a folder has nothing to collect)",
    )
    g.add_argument(
        "--older-than",
        type=_age,
        metavar="AGE",
        help="only blobs older than AGE: seconds, or a number with s, m, h or d "
        "(default 1h, so that a run in flight keeps the blobs it is about to commit)",
    )
    g.add_argument(
        "--dry-run", action="store_true", help="list what would be removed; remove nothing"
    )
    g.add_argument("--json", action="store_true", help="print the result as JSON" + _JSON_ERRORS)
    _add_pool_endpoint(g)


def _add_rm_parser(sub: Any) -> None:
    rm = sub.add_parser(
        "rm",
        help="remove samples from a pool and keep them out of later runs (one commit)",
        description="Remove samples from a pool in one commit, and keep them out: later runs "
        "(with --process-all, --retry-skipped or a changed file too) do not add them again.",
    )
    rm.__class__ = _NamesAnywhereParser
    rm.add_argument("pool", type=_path, metavar="POOL", help="a pool folder or s3://bucket/prefix")
    rm.add_argument(
        "names", nargs="*", metavar="NAME", help="sample names, as `datapool ls` shows them"
    )
    rm.add_argument(
        "--from-file",
        type=_path,
        metavar="FILE",
        help="more sample names, one a line (- for stdin; a selected_filenames.txt reads as "
        "one); spaces around a line are stripped, blank lines and comments (a line that is '#' "
        "or starts with '# ', a space after the #) are skipped: '#1.jpg' is a name",
    )
    rm.add_argument(
        "--source-file",
        action="append",
        default=[],
        metavar="KEY",
        help="every sample of this raw file (a video's frames, an image's crops) and the file "
        "itself: later runs do not read it; may be repeated",
    )
    rm.add_argument(
        "--run", metavar="N|TAG", help="every sample run N (or the run tagged TAG) added"
    )
    rm.add_argument(
        "--reason", metavar="TEXT", help="why, recorded with the removal (status shows it)"
    )
    rm.add_argument(
        "--forget",
        action="store_true",
        help="undo the keep-out of the NAMEs and --source-file KEYs given: later runs may add "
        "them again (nothing is put back now)",
    )
    rm.add_argument(
        "--purge-history",
        action="store_true",
        help="also delete the history/ snapshots that still hold removed samples (alone: those "
        "of every earlier removal)",
    )
    rm.add_argument(
        "--dry-run", action="store_true", help="list what would be removed; change nothing"
    )
    rm.add_argument("--json", action="store_true", help="print the result as JSON" + _JSON_ERRORS)
    _add_pool_endpoint(rm)


def _add_undo_parser(sub: Any) -> None:
    u = sub.add_parser(
        "undo",
        help="put a pool back as it was before its last run (one commit)",
        description="Put the pool back as it was before its last run, byte for byte: its "
        "samples, ledger rows, runs.json entry, thumbnails and runs/N folder go (and the history "
        "snapshot it made with --keep-history), so the next run reads that run's files again as "
        "new. Only the last run can be undone; undoing again undoes the one before. A pool whose "
        "last commit is not a run (`datapool rm`, a merge, a run that found nothing new and "
        "recorded its checks) is refused, as is a run that rewrote the pool (changed files) "
        "and kept no history/ snapshot of it: the refusal says what to do instead; one that "
        "kept one (--keep-history, --process-all) is undone from it. Files the "
        "run exported (--export) stay where it wrote them. `datapool rm --run N` differs: it "
        "keeps the run's samples out of later runs.",
    )
    u.add_argument("pool", type=_path, metavar="POOL", help="a pool folder or s3://bucket/prefix")
    u.add_argument("--dry-run", action="store_true", help="say what would go; change nothing")
    u.add_argument("--json", action="store_true", help="print the result as JSON" + _JSON_ERRORS)
    _add_pool_endpoint(u)


def _cmd_undo(a: argparse.Namespace) -> int:
    from datapool.config import S3Settings
    from datapool.pool.store import undo_last_run

    r = undo_last_run(a.pool, dry_run=a.dry_run, config=S3Settings(endpoint_url=a.s3_endpoint_url))
    if a.json:
        print(json.dumps(_undo_json(r), indent=2))
        return 0
    for line in _undo_lines(r):
        print(line)
    return 0


def _undo_json(r: Any) -> dict[str, Any]:
    return {
        "pool": r.location,
        "dry_run": r.dry_run,
        "run": {"index": r.index, "tag": r.tag},
        "samples": r.samples,
        "files_read_again": r.files,
        "pool_size": r.pool_size,
        "runs": r.n_runs,
        "removed": r.remove,
        "history_snapshot": r.snapshot,
        "from_snapshot": bool(r.restore),
        "runs_json_written_by": r.written_by,
        "model_json_put_back": r.model_json is not None,
        "thumbnails_added": r.added_thumbnails,
        "export": None
        if r.export is None
        else {"dest": r.export, "written": r.exported, "stays": True, "run_export": r.run_export},
        "kept": r.kept,
    }


def _undo_lines(r: Any) -> list[str]:
    out = list(r.samples) if r.dry_run else []
    verb = "would undo" if r.dry_run else "undid"
    out.append(
        f"{r.location}: {verb} run {r.index} ({r.tag}): {counted(len(r.samples), 'sample')} "
        f"{'would go' if r.dry_run else 'gone'}; the pool "
        f"{'would hold' if r.dry_run else 'holds'} {counted(r.pool_size, 'sample')} in "
        f"{counted(r.n_runs, 'run')}, as before that run"
    )
    if r.restore:
        extra = [p for p in r.remove if p != r.snapshot]
        also = (
            f"; {'would remove' if r.dry_run else 'removed'}: {', '.join(extra)}" if extra else ""
        )
        out.append(
            f"{'would put' if r.dry_run else 'put'} back the pool files and runs/ from "
            f"{r.snapshot}, the snapshot run {r.index} made of the pool before it, which "
            f"{'would go' if r.dry_run else 'went'} with it{also}"
        )
    else:
        one = len(r.files) == 1
        are = "would be" if r.dry_run else "is" if one else "are"
        out.append(
            f"ledger: {counted(len(r.files), 'file')} run {r.index} processed {are} new again: "
            f"the next run reads {'it' if one else 'them'}"
        )
        gone = [p for p in r.remove if p != r.snapshot]
        if r.snapshot:
            gone.append(
                f"{r.snapshot} (its --keep-history snapshot: the pool it holds is the pool now)"
            )
        out.append(f"{'would remove' if r.dry_run else 'removed'}: {', '.join(gone)}")
        put = "would put" if r.dry_run else "put"
        if r.written_by:
            out.append(f"runs.json: {put} back as {r.written_by} wrote it before run {r.index}")
        if r.model_json is not None:
            out.append(f"model.json: {put} back as it was before run {r.index}, which rewrote it")
    if r.added_thumbnails:
        out.append(
            f"thumbnails: {counted(len(r.added_thumbnails), 'segment')} that `datapool report "
            f"--thumbnails` added to run {r.index}'s folder {'would go' if r.dry_run else 'went'} "
            f"with it; `datapool report {r.location} --thumbnails` makes them again"
        )
    if r.export:
        n = "" if r.exported is None else f"the {counted(r.exported, 'file')} "
        out.append(
            f"export: {n}run {r.index} exported to {r.export} "
            f"{'would stay' if r.dry_run else 'stay'} there (undo does not touch an export; "
            f"`datapool export {r.location} {r.export} --all --mirror` brings it in line with "
            "the pool)"
        )
    if r.run_export:
        out.append(
            f"export: the files run {r.index}'s own --export wrote to {r.run_export} (its report "
            f"holds the later export to {r.export} instead) {'would stay' if r.dry_run else 'stay'}"
            " there too"
        )
    if r.kept:
        out.append(
            f"kept as {'they are' if len(r.kept) > 1 else 'it is'}: {', '.join(r.kept)} (what a "
            f"`datapool export --run` after run {r.index} recorded; the snapshot's "
            f"{'copies predate' if len(r.kept) > 1 else 'copy predates'} it)"
        )
    return out


def _add_report_parser(sub: Any) -> None:
    rp = sub.add_parser(
        "report", help="write the interactive HTML report of a whole pool (one file, no network)"
    )
    rp.add_argument("pool", type=_path, metavar="POOL", help="a pool folder or s3://bucket/prefix")
    rp.add_argument(
        "--out",
        type=_path,
        metavar="FILE",
        help="where to write it: a file, - for stdout, or a folder to write <pool "
        "name>-report.html in "
        "(default: ./<pool name>-report.html; missing folders are made; never among the "
        "pool's own files)",
    )
    rp.add_argument("--open", action="store_true", help="open it in the default web browser")
    rp.add_argument(
        "--thumbnails",
        action="store_true",
        help="first make the thumbnails the pool lacks (a pool from before they existed), "
        "decoding the source files its ledger names, and commit them to the pool",
    )
    rp.add_argument(
        "--projection",
        choices=("pca", "umap"),
        default="pca",
        help="the 2-D map: PCA (default), or UMAP when umap-learn is installed",
    )
    _add_pool_endpoint(rp)


def _model_flags(r: argparse.ArgumentParser) -> None:
    g = r.add_argument_group("model (see docs/models.md)")
    g.add_argument(
        "--model",
        type=_path,
        metavar="PATH_OR_NAME",
        help="an ONNX image model, or a name fetched with `datapool model get` "
        "(default: the bundled model, which is not semantic)",
    )
    g.add_argument(
        "--input-size",
        type=_size,
        metavar="H[xW]",
        help="input height and width, for models that leave them dynamic (default: the "
        "model's, else its preprocessor_config.json's)",
    )
    g.add_argument(
        "--output-name", metavar="NAME", help="the model output to embed with (default: inspected)"
    )
    g.add_argument(
        "--pooling",
        choices=POOLINGS,
        help="(N,T,D) tokens: cls or mean (auto: cls, or mean where the tokens are a grid of "
        "patches with no class token); 4-D maps: avg (avg-nchw, avg-nhwc where the shape "
        "leaves the layout open); none: flatten (default auto)",
    )
    g.add_argument(
        "--mean",
        type=_triple,
        metavar="R,G,B",
        help="per-channel mean, 0-1 units; one value serves every channel (a grayscale "
        "model's) (default: the model's metadata, else its preprocessor_config.json, else "
        "what its first nodes normalise, else ImageNet's 0.485,0.456,0.406)",
    )
    g.add_argument(
        "--std",
        type=_triple,
        metavar="R,G,B",
        help="per-channel std, 0-1 units (default: as --mean; ImageNet's 0.229,0.224,0.225)",
    )
    g.add_argument(
        "--input",
        dest="model_inputs",
        action="append",
        type=_named_value,
        metavar="NAME=VALUE",
        help="a constant for a model input other than the image (repeatable)",
    )
    g.add_argument(
        "--channels",
        type=str.upper,
        choices=CHANNEL_ORDERS,
        help="the channel order the model takes: BGR for models trained on OpenCV (cv2.imread) "
        "frames or caffe-style weights (default: the model's datapool.channels metadata, else "
        "its preprocessor_config.json, else RGB)",
    )


def _size(text: str) -> int | tuple[int, int]:
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not H or HxW (for example 224 or 224x320)"
        ) from None
    if len(values) == 1:
        return values[0]
    if len(values) == 2:
        return (values[0], values[1])
    raise argparse.ArgumentTypeError(f"{text!r} is not H or HxW (for example 224 or 224x320)")


def _triple(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not R,G,B numbers (for example 0.5,0.5,0.5)"
        ) from None


def _named_value(text: str) -> tuple[str, float]:
    name, eq, value = text.partition("=")
    try:
        if not (name and eq):
            raise ValueError
        return (name, float(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=NUMBER") from None


def _cmd_model(a: argparse.Namespace) -> int:
    from datapool.ingest import model_hub

    if a.model_command == "get":
        before = model_hub.cached_models().get(a.name, {}).get("commit")
        like = _pool_model(a.pool, a.s3_endpoint_url) if a.pool else None
        path = model_hub.get_model(
            a.name, force=a.force, revision=a.revision, like=like, pool=a.pool or ""
        )
        manifest = model_hub.cached_models().get(a.name, {})
        print(f"model   {a.name} -> {path}")
        if before and manifest.get("commit") != before:
            print(
                f"        was commit {before}, now {manifest.get('commit')}: pools made with "
                f"the earlier weights refuse this one (datapool model get {a.name} --force "
                f"--revision {before} fetches them back)"
            )
        for f, digest in manifest.get("sha256", {}).items():
            print(f"        {f} sha256 {digest}")
        if a.pool and manifest.get("exported_with"):
            print(
                f"        from commit {manifest.get('commit')}, the commit pool {a.pool} records "
                "(exported here: a run checks the .onnx against the pool's SHA-256)"
            )
        elif a.pool:
            print(
                f"        from commit {manifest.get('commit')}, the .onnx checked against the "
                f"SHA-256 pool {a.pool} records"
            )
        elif manifest and not manifest.get("pinned"):
            print(
                f"        not pinned: revision {manifest.get('revision')} was commit "
                f"{manifest.get('commit')}; pin it in ${model_hub.REGISTRY_ENV} (docs/models.md)"
            )
        print(f"use     datapool run SOURCE --pool POOL --model {a.name}")
        return 0
    cached = model_hub.cached_models()
    for name, entry in sorted(model_hub.registry().items()):
        mark = "cached" if name in cached else "      "
        print(f"{name:<16} {mark}  {entry.repo}  {entry.note}")
    return 0


def _pool_model(pool: str, endpoint: str | None = None) -> ModelFingerprint:
    """The model pool `pool` was made with (`datapool model get --pool`; `endpoint`: its
    --s3-endpoint-url)."""
    from datapool.config import S3Settings
    from datapool.pool.store import open_store

    model = open_store(pool, S3Settings(endpoint_url=endpoint)).pool().model
    if model is None:
        raise ConfigError(f"pool {pool} has no model yet (no run committed): drop --pool")
    return model


_TASKS_HELP = (
    "also write a tasks file that this labelling tool imports as it is (label_studio_tasks.json, "
    "labelbox_data_rows.json), one task per exported file at its URL; or coco: coco.json, the "
    "exported files by their path in DEST with their size as shown (and --pre-annotate's "
    "boxes), for FiftyOne, CVAT, Roboflow and training code (repeatable)"
)
_URL_PREFIX_HELP = (
    "the URL DEST's files are served under, for --tasks label-studio or labelbox (required for a folder): e.g. "
    "'/data/local-files/?d=export/' (Label Studio's local files) or 'https://host/export/'; "
    "default for s3:// DEST: s3://bucket/key (Label Studio), https://bucket.s3.REGION."
    "amazonaws.com/key (Labelbox); for gs:// DEST: gs://bucket/key (both)"
)


def _add_tasks_flags(p: Any, tasks: str, url_prefix: str) -> None:
    from datapool.export_tasks import TASK_FILES

    def task_format(text: str) -> str:
        parts = [t.strip() for t in text.split(",")]
        if len(parts) > 1 and all(t in TASK_FILES for t in parts):
            raise argparse.ArgumentTypeError(
                f"give one tool each time: {' '.join(f'--tasks {t}' for t in parts)}"
            )
        return text

    p.add_argument(
        "--tasks",
        dest=tasks,
        action="append",
        type=task_format,
        choices=list(TASK_FILES),
        help=_TASKS_HELP,
    )
    p.add_argument("--url-prefix", dest=url_prefix, metavar="URL", help=_URL_PREFIX_HELP)


def _add_export_parser(sub: Any) -> None:
    e = sub.add_parser(
        "export",
        help="write a pool's selected samples to a folder, s3://bucket/prefix or "
        "gs://bucket/prefix (make or redo an export at any time)",
    )
    e.add_argument("pool", type=_path, metavar="POOL", help="a pool folder or s3://bucket/prefix")
    e.add_argument(
        "dest",
        type=_path,
        metavar="DEST",
        help="a folder, s3://bucket/prefix or gs://bucket/prefix",
    )
    which = e.add_mutually_exclusive_group()
    which.add_argument(
        "--run",
        metavar="N|TAG",
        help="run N's (or the run tagged TAG's) samples still in the pool (default: the latest "
        "run)",
    )
    which.add_argument("--all", action="store_true", help="every sample in the pool")
    e.add_argument(
        "--mirror",
        action="store_true",
        help="remove the files earlier exports wrote to DEST that are not among these samples "
        "(a local folder made by an export, or an empty one); other files stay",
    )
    e.add_argument(
        "--source",
        type=_path,
        metavar="SOURCE",
        help="read the samples from here instead of the source the pool recorded (a bucket that moved)",
    )
    _add_tasks_flags(e, "tasks", "url_prefix")
    e.add_argument(
        "--pre-annotate",
        metavar="TASK",
        help="with --tasks label-studio: each task carries the predictions of TASK (an "
        "object-detection or classification task of the source's .lightly/predictions) as "
        "Label Studio predictions (pre-annotations to correct), and the labelling config they "
        "fit is printed; with --tasks coco, coco.json holds an object-detection task's boxes "
        "as its annotations (docs/s3.md)",
    )
    e.add_argument(
        "--predictions",
        dest="predictions_dir",
        type=_path,
        metavar="DIR",
        help="with --pre-annotate: read the predictions from DIR (a folder or s3://...) shaped "
        "like .lightly/predictions, instead of the pool's source's",
    )
    e.add_argument(
        "--s3-endpoint-url",
        metavar="URL",
        help="an S3-compatible endpoint (MinIO, Ceph, ...); default AWS_ENDPOINT_URL, else AWS",
    )
    e.add_argument(
        "--s3-read-timeout",
        type=float,
        default=RunConfig.s3_read_timeout_s,
        metavar="SECONDS",
        help="how long a read waits for the server's next byte before it tries again; a body "
        f"cut short or stalled is read on from where it stopped (default "
        f"{RunConfig.s3_read_timeout_s:g})",
    )
    e.add_argument("--json", action="store_true", help="print the result as JSON" + _JSON_ERRORS)
    _add_output_flags(e)


def _cmd_export(a: argparse.Namespace) -> int:
    from datapool.config import RunConfig
    from datapool.runner.exported import export

    cfg = RunConfig(  # for its S3 settings only
        n_samples=1, s3_endpoint_url=a.s3_endpoint_url, s3_read_timeout_s=a.s3_read_timeout
    )
    with (
        _no_pool_yet(a.pool, a.s3_endpoint_url),
        _progress(a).phase("export", unit="samples") as ph,
        _timed("export"),
    ):
        r = export(
            a.pool,
            a.dest,
            run=a.run,
            all_runs=a.all,
            mirror=a.mirror,
            source=a.source,
            config=cfg,
            phase=ph,
            tasks=getattr(a, "tasks", None) or (),
            url_prefix=getattr(a, "url_prefix", None),
            pre_annotate=a.pre_annotate,
            predictions_dir=a.predictions_dir,
        )
    if a.json:
        print(json.dumps(r.to_json(), indent=2))
        _printed(r.warnings)
        return 1 if r.refused else 0
    print(
        f"exported  {counted(len(r.written), 'sample')} to {r.dest}{_holders(r.images)}{_renamed(r)}"
    )
    if r.refused:
        print(
            f"refused   {counted(len(r.refused), 'sample')}, not exported{_refused_counts(r.refused)}"
        )
    _print_refused(r.refused)
    _print_tasks(r)
    _print_label_config(r)
    if a.mirror:
        print(f"removed   {counted(len(r.removed), 'file')} no longer selected")
        if r.left:
            print(
                f"left      {counted(len(r.left), 'file')} no export wrote (--mirror removes only those)"
            )
    if a.run is None and r.run is not None and r.pool_size > len(r.written) + len(r.refused):
        print(  # the default, which a user may take for the whole pool
            f"run       {r.run['index']} ({r.run['tag']}), the pool's latest run only: --all "
            f"exports all {counted(r.pool_size, 'sample')} of the pool, --run N another run's"
        )
    return 1 if r.refused else 0


def _print_tasks(r: ExportResult) -> None:
    """The tasks files an export wrote (--tasks), each with its number of tasks."""
    for fmt, where in r.tasks.items():
        what = "image" if fmt == "coco" else "task"
        print(f"tasks     {fmt}: {where} ({counted(len(r.written), what)})")
    if r.serving:
        print(f"          {r.serving}")


def _print_label_config(r: ExportResult) -> None:
    """--pre-annotate: the Label Studio labelling config whose tags the predictions name."""
    if r.label_config:
        print(
            "labelling config for the Label Studio project (Settings > Labeling Interface > Code):"
        )
        print(r.label_config, end="")


def _print_refused(refused: list[dict[str, str]], shown: int = 20) -> None:
    """The first `shown` samples an export refused, each with why, and how many more."""
    for x in refused[:shown]:
        print(f"          refused {x['name']!r}: {x['reason']}")
    if len(refused) > shown:
        print(f"          ... and {len(refused) - shown} more refused (--json lists them)")


@contextlib.contextmanager
def _timed(what: str) -> Iterator[None]:
    """-v: the time `export` or `merge` took, on stderr, as a run's phase times are (-v did
    nothing for them, though its help says it gives each phase's time)."""
    import time

    t0 = time.perf_counter()
    yield
    logging.getLogger("datapool").info("times: %s %.2f s", what, time.perf_counter() - t0)


def _refused_counts(refused: list[dict[str, str]]) -> str:
    """' (N changed since they were selected, M no longer in the source)', the parts not 0."""
    from datapool.export import CHANGED, GONE, NOT_IN_GIVEN

    reasons = [x["reason"] for x in refused]
    counts = [
        (reasons.count(CHANGED), "changed since they were selected"),
        (reasons.count(GONE), "no longer in the source"),
        (reasons.count(NOT_IN_GIVEN), "not in --source"),
    ]
    parts = [f"{n} {what}" for n, what in counts if n]
    return f" ({', '.join(parts)})" if parts else ""


def _progress(a: argparse.Namespace) -> Any:
    from datapool.progress import Progress

    return Progress.auto(False if (a.quiet or a.json) else None)


def _cmd_run(a: argparse.Namespace) -> int:
    from datapool.runner import run

    given = {k: v for k, v in vars(a).items() if k in _RUN_FIELDS}  # only what the user gave
    if a.json or a.quiet:
        given["progress"] = False  # the JSON alone on stdout; -q: errors only
    if "model_inputs" in given:
        given["model_inputs"] = tuple(given["model_inputs"])
    result = run(a.source, a.pool, RunConfig(**_with_selection_file(a, given)))
    _run_is_over()
    if a.json:
        print(json.dumps(_result_json(result), indent=2))
        _printed([*result.warnings, *(result.export.warnings if result.export else ())])
    else:
        _print_result(result)
        if result.run_index is None and not result.dry_run and getattr(a, "export", None):
            # --export writes a run's picks: with no run, nothing was written, and a user who
            # added --export to the line of an earlier run would otherwise not hear of it
            print(
                f"export    none: no run, no new samples; `datapool export {a.pool} "
                f"{a.export} --all` (or --run N) exports what the pool holds"
            )
    return 0


def _with_selection_file(a: argparse.Namespace, given: dict[str, Any]) -> dict[str, Any]:
    """The RunConfig fields given, over a --selection file's budget and strategies."""
    path = getattr(a, "selection", None)
    if path is None:
        return given
    keys = ("n_samples", "proportion_samples", "min_distance")
    sel = SelectionConfig.from_file(path, {k: given[k] for k in keys if k in given})
    if "n_samples" not in given and "proportion_samples" not in given:
        given.update(n_samples=sel.n_samples, proportion_samples=sel.proportion_samples)
    if "min_distance" not in given:
        given["min_distance"] = sel.min_distance
    given["strategies"] = sel.strategies
    return given


def _result_json(r: RunResult) -> dict[str, Any]:
    return {
        "pool": str(r.pool),
        "run": r.run_index,
        "tag": r.tag,
        "counts": r.counts,
        "skipped": r.skipped,
        "stop_reason": r.stop_reason,
        "model": r.model,
        "report": None if r.report_path is None else str(r.report_path),
        "embedding_view": None if r.view_path is None else str(r.view_path),
        "report_html": None if r.html_path is None else str(r.html_path),
        "export": None if r.export is None else r.export.to_json(),
        "previous_pool": None if r.previous_pool is None else str(r.previous_pool),
        "balance": r.balance,
        "thresholds": r.thresholds,
        "zero_objective": r.zero_objective,
        "frames_decoded": r.frames_decoded,
        "warnings": r.warnings,
        "elapsed_s": round(r.elapsed_s, 3),
        **({"dry_run": True, "would_process": r.would_process} if r.dry_run else {}),
    }


def _print_result(r: RunResult) -> None:
    c = r.counts
    if r.model:  # the whole inspection line: report.json's model_inspection, --json's model
        print(f"model     {r.model_brief or r.model}")
    print(
        f"listed    {counted(c['listed'], 'media file')}"
        + (f" ({counted(c['ignored'], 'other file')} ignored)" if c.get("ignored") else "")
    )
    if c.get("excluded") or c.get("excluded_folders"):
        folders = c.get("excluded_folders", 0)
        excl = c["excluded"]
        print(  # (the listed count is of the files the run uses: these are not among them)
            f"excluded  {excl}"
            + (f" media file{'s' * (excl != 1)} besides those listed" if excl else "")
            + (f", and {folders} folder{'s' * (folders != 1)} not read" if folders else "")
            + " (--include/--exclude, relevant filenames, pools and exports in SOURCE)"
        )
    print(
        f"new       {c['new']} new, {c['changed']} changed, {c['unchanged']} unchanged"
        + (f" ({c['touched']} with new mtimes, same bytes)" if c.get("touched") else "")
        + (f", {c['retried']} skipped before, tried again" if c.get("retried") else "")
        + (f", {c['reread']} read again (see the warning)" if c.get("reread") else "")
        + (f", {c['recut']} re-cut (their predictions changed)" if c.get("recut") else "")
        + (f", {c['moved']} moved or renamed (same bytes)" if c.get("moved") else "")
        + (f", {c['missing']} no longer in the source" if c.get("missing") else "")
    )
    if c.get("hashed"):
        print(
            f"hashed    {counted(c['hashed'], 'unchanged file')} that an older datapool recorded "
            "without a content hash (once: later runs tell touched and moved files by it)"
        )
    if c.get("kept_out_files") or c.get("kept_out_samples"):
        parts = [
            f"{c[k]} {what}{'' if c[k] == 1 else 's'}"
            for k, what in (("kept_out_files", "file"), ("kept_out_samples", "sample"))
            if c.get(k)
        ]
        one = c.get("kept_out_files", 0) + c.get("kept_out_samples", 0) == 1
        print(
            f"kept out  {' and '.join(parts)} removed with `datapool rm` (not read or added "
            f"again; `datapool rm --forget` lets {'it' if one else 'them'} in)"
        )
    if r.dry_run:
        print(
            f"dry run   would process {counted(len(r.would_process), 'file')}; nothing was changed"
        )
        for key in r.would_process:
            print(f"          {key}")
        return
    if r.run_index is None:
        if r.skipped:  # files tried again that still cannot be read: no run was recorded
            _print_skipped(r)
        recorded = _print_recorded(c)
        # No samples, and no file the ledger knows listed or missing: nothing was committed.
        if c["pool_size"] == 0 and not c.get("unchanged") and not c.get("missing"):
            print(f"nothing new: no pool was made at {r.pool} (nothing to add)")
        elif recorded:
            print(
                f"nothing new: the samples of pool {r.pool} are unchanged "
                f"({counted(c['pool_size'], 'sample')}); it records only what the lines above say"
            )
        else:
            print(f"nothing new: pool {r.pool} unchanged ({counted(c['pool_size'], 'sample')})")
        return
    _print_skipped(r)
    if c.get("moved"):
        one = c["moved"] == 1
        print(
            f"moved     {counted(c['moved'], 'file')}, same bytes under new names: "
            + (
                f"their {counted(c['renamed'], 'pool sample')} renamed, not embedded again"
                if c.get("renamed")
                else f"not embedded again (none of {'its' if one else 'their'} samples is in "
                "the pool)"
            )
        )
    decoded = r.frames_decoded
    more = f" (of {counted(decoded, 'frame')} decoded)" if decoded > c["frames_embedded"] else ""
    if "images_without_objects" in c:  # crop selection

        def n(count: int, one: str, many: str) -> str:
            return f"{count} {one if count == 1 else many}"

        more = (
            f" (object crops; {n(c['images_without_objects'], 'image', 'images')} had no objects"
            + (
                f", {n(c['frames_without_objects'], 'video frame', 'video frames')} had none"
                if c.get("frames_without_objects")
                else ""
            )
            + (
                f", {n(c['frames_without_predictions'], 'video frame', 'video frames')} had no "
                "predictions file"
                if c.get("frames_without_predictions")
                else ""
            )
            + (
                f", {n(c['boxes_left_out'], 'box', 'boxes')} left out"
                if c.get("boxes_left_out")
                else ""
            )
            + (f", {c['boxes_clipped']} cut to fit" if c.get("boxes_clipped") else "")
            + ")"
        )
    print(f"embedded  {counted(c['frames_embedded'], 'sample')}{more}")
    removed = ""
    if c.get("removed"):  # files read again count here: the 'new' line says '0 changed' then
        which = "changed files"
        if c.get("reread") or c.get("recut"):
            which = f"files changed or {'read again' if c.get('reread') else 're-cut'}"
        removed = f" ({c['removed']} sample{'s' * (c['removed'] != 1)} of {which} removed)"
    print(f"selected  {c['selected']} as {r.tag} (stopped: {r.stop_reason}){removed}")
    for t in r.thresholds:
        _print_threshold(t)
    if r.zero_objective:
        _print_zero_objective(r.zero_objective, r.stop_reason or "")
    for b in r.balance:
        _print_balance(b)
    print(f"pool      {counted(c['pool_size'], 'sample')} in {r.pool}")
    print(f"report    {r.report_path}")
    print(f"view      {r.view_path}")
    if r.html_path is not None:
        where = (
            f"interactive, in the bucket; `datapool report {r.pool}` writes the pool's page here"
            if str(r.html_path).lower().startswith("s3://")
            else "interactive; opens from disk"
        )
        print(f"page      {r.html_path}  ({where})")
    if r.export is not None:
        holders = _holders(r.export.images)
        renamed = _renamed(r.export)
        print(
            f"exported  {counted(len(r.export.written), 'sample')} to {r.export.dest}{holders}{renamed}"
        )
        _print_refused(r.export.refused)  # (a line each flooded the summary: 20 at most)
        _print_tasks(r.export)
        _print_label_config(r.export)
    if r.previous_pool is not None:
        print(f"previous  the pool as it was before this run is kept in {r.previous_pool}")
    print(f"took      {r.elapsed_s:.1f} s")


BALANCE_SHOWN = 12  # classes of a BALANCE strategy in the summary; the report has them all


def _print_threshold(t: dict[str, Any]) -> None:
    """What a THRESHOLD strategy left to pick from: "kept 120 of 198 candidates"."""
    unit = t.get("unit", "candidates")
    none = f" ({t['without_value']} without a value)" if t["without_value"] else ""
    print(
        f"threshold {t['strategy']} {t['operation']} {t['threshold']:g} kept {t['kept']} of "
        f"{t['of']} {unit}{none}"
    )


def _print_zero_objective(z: dict[str, Any], stop_reason: str) -> None:
    """The candidates whose product of objectives is 0 (a WEIGHTS value of 0), and those with
    no value under a strategy: a run that picked fewer than asked says why here."""
    unit = z.get("unit", "candidates")
    if z["candidates"]:
        which = ", ".join(z["strategies"]) or "a strategy"
        if z["filled"]:
            are = "is" if z["filled"] == 1 else "are"
            how = f"{z['filled']} of the picks {are} theirs, the most diverse, to fill the budget"
        elif stop_reason == "budget":
            how = ""  # the budget was filled before them: they changed nothing
        else:
            how = f"none picked (stopped: {stop_reason})"
        if how:
            print(
                f"zero      {counted(z['candidates'], unit[:-1])} of objective 0 ({which}): {how}"
            )
    if z["without_value"]:
        which = ", ".join(z["without_value_strategies"]) or "a strategy"
        print(
            f"no value  {counted(z['without_value'], unit[:-1])} without a value for {which}: never picked"
        )


def _print_balance(b: dict[str, Any]) -> None:
    """A BALANCE strategy's class shares against its target: before, this run's, after."""

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    rows = b["classes"]
    width = max([len("class"), *(len(str(c["class"])) for c in rows[:BALANCE_SHOWN])])
    print(f"balance   {b['strategy']}: class shares against the target")
    print(
        f"          {'class':<{width}}  {'target':>7}  {'pool before':>11}  "
        f"{'this run':>8}  {'pool after':>10}"
    )
    for c in rows[:BALANCE_SHOWN]:
        print(
            f"          {c['class']:<{width}}  {pct(c['target']):>7}  {pct(c['pool_before']):>11}"
            f"  {pct(c['picked']):>8}  {pct(c['pool_after']):>10}"
        )
    if len(rows) > BALANCE_SHOWN:
        print(f"          ... and {len(rows) - BALANCE_SHOWN} more classes in the report")


SKIPPED_SHOWN = 10  # the summary lists this many skipped files; the report lists them all


def _print_recorded(c: dict[str, int]) -> bool:
    """The checks a run that added nothing recorded in the pool (runner/upgrade.py
    _record_checks), one line each; whether there were any (content hashes recorded: their
    `hashed` line is printed before)."""
    from datapool.fingerprint import DECODER_VERSION

    kinds = [k for k in ("image", "video") if f"decoder_checked_{k}s" in c]
    checked = [counted(c[f"decoder_checked_{k}s"], k) for k in kinds if c[f"decoder_checked_{k}s"]]
    if kinds:  # (none of the files in the source any more: '0 files')
        print(
            f"checked   {' and '.join(checked) or '0 files'} against decoder {DECODER_VERSION}; "
            "recorded, later runs skip this check"
        )
    if c.get("predictions_recorded"):
        n = c["predictions_recorded"]
        print(
            f"recorded  the predictions files of {counted(n, 'file')} by the version the source "
            "lists; later runs do not read them again to compare"
        )
    if c.get("touched_recorded"):
        n = c["touched_recorded"]
        print(
            f"recorded  the new mtimes of {counted(n, 'file')} with the same bytes; later runs "
            f"do not hash {'it' if n == 1 else 'them'} again"
        )
    return bool(
        kinds or c.get("predictions_recorded") or c.get("touched_recorded") or c.get("hashed")
    )


def _print_skipped(r: RunResult) -> None:
    print(f"skipped   {r.counts['skipped']}")
    for s in r.skipped[:SKIPPED_SHOWN]:
        print(f"          {s['key']}: {s['reason']}")
    if len(r.skipped) > SKIPPED_SHOWN:
        where = f", all in {r.report_path}" if r.report_path else " (`datapool status` counts them)"
        print(f"          ... and {len(r.skipped) - SKIPPED_SHOWN} more{where}")


def _cmd_status(a: argparse.Namespace) -> int:
    from datapool.config import S3Settings
    from datapool.pool.store import open_store

    summary = open_store(a.pool, S3Settings(endpoint_url=a.s3_endpoint_url)).summary()
    if a.json:
        print(json.dumps(summary, indent=2))
        return 0
    for line in _status_lines(summary):
        print(line)
    return 0


def _cmd_verify(a: argparse.Namespace) -> int:
    from datapool.config import S3Settings
    from datapool.errors import PoolCorruptError
    from datapool.pool.store import verify_pool

    verified = verify_pool(a.pool, S3Settings(endpoint_url=a.s3_endpoint_url))
    rc = 0 if verified.ok else PoolCorruptError.exit_code
    if a.json:
        print(json.dumps(verified.to_json(), indent=2))
        return rc
    print(f"pool    {verified.pool}")
    for p in [*verified.errors, *verified.warnings]:
        print(f"{p.severity:<8}{p.where()}: {p.message}")
    for what in verified.not_checked:
        print(f"unchecked {what}")
    samples = f"{verified.samples:,} sample{'s' * (verified.samples != 1)}"
    n = f"{samples}, {counted(verified.runs, 'run')}"
    warned = len(verified.warnings)
    also = f" ({counted(warned, 'warning')} above)" if warned else ""
    if verified.ok:
        every = "every part checked" if not verified.not_checked else "checked as said above"
        print(f"pool OK: {n}, {every}{also}")
    else:
        print(f"pool DAMAGED: {counted(len(verified.errors), 'error')}{also} ({n})")
    return rc


def _renamed(r: Any) -> str:
    """'; 2 under a suffixed name (see the warning)' for an export that renamed files whose
    names clash but for case or Unicode normalisation, else ''."""
    n = len(r.renamed)
    return f"; {n} under a suffixed name (see the warning)" if n else ""


def _holders(names: list[str]) -> str:
    """What an export of crops wrote beside them: ' (and the 3 images and 2 video frames that
    hold them)' (a frame by its frame name, as a PNG), or '' when it wrote none."""
    from datapool.naming import video_key_of

    frames = sum(video_key_of(n) is not None for n in names)
    parts = [
        f"{n} {word}{'' if n == 1 else 's'}"
        for n, word in ((len(names) - frames, "image"), (frames, "video frame"))
        if n
    ]
    one = len(names) == 1
    return f" (and the {' and '.join(parts)} that hold{'s' if one else ''} them)" if parts else ""


def _merge_note(run: dict[str, Any]) -> str:
    """Why a merged run holds more or fewer samples than it selected (pool/merge.py), for each
    merge it went through."""
    came = run.get("merged_from")
    notes = []
    while isinstance(came, dict):
        if came.get("joined"):
            notes.append(
                f"the merge added {came['joined']} picks of its files from {came['joined_from']}"
            )
        if came.get("moved"):
            notes.append(
                f"the merge put {came['moved']} under the runs of {came['moved_to']} that "
                "processed the same files"
            )
        came = came.get("merged_from")
    return f" ({'; '.join(notes)})" if notes else ""


def _status_lines(summary: dict[str, Any]) -> list[str]:
    if summary.get("empty") or not summary["runs"]:
        if summary.get("lock"):
            return [f"pool    {summary['pool']}: {_first_run_line(summary)}"]
        return [f"pool    {summary['pool']}: empty (no run committed yet)"]
    lock = _lock_lines(summary.get("lock"))
    generation = (
        f" (manifest generation {summary['generation']})" if "generation" in summary else ""
    )
    crops = summary.get("crops")
    kind = f" (object crops: {crops})" if crops else ""
    lines = [
        f"pool    {summary['pool']}: {counted(summary['size'], 'sample')}{kind}, dimension {summary['dim']}"
        f"{generation}",
        *lock,
    ]
    if summary["model"]:
        m = summary["model"]
        h, w = m["input_size"]
        origin = m.get("origin") if isinstance(m.get("origin"), dict) else {}
        if origin.get("hub"):  # a model fetched by name: the name a run's --model gives
            commit = f" commit {str(origin['commit'])[:12]}" if origin.get("commit") else ""
            name = f"{origin['hub']} ({m['name']} from {origin.get('repo')}{commit}; "
        else:
            name = f"{m['name']} ("
        lines.append(f"model   {name}sha256 {m['sha256'][:12]}, input {h}x{w})")
    for source in summary.get("sources", []):
        lines.append(f"source  {source}")
    lg = summary["ledger"]
    lines.append(
        f"ledger  {counted(lg['files'], 'raw file')}: {lg['ok']} ok, {lg['skipped']} skipped"
    )
    if "local_copy" in summary:
        lines.append(
            f"copy    {summary['local_copy']}  (the committed files, the whole CSV among them)"
        )
    for run in summary["runs"]:
        stop = f", stopped: {run['stop_reason']}" if run.get("stop_reason") else ""
        if run.get("moved"):
            stop += f"; {counted(run['moved'], 'file')} moved or renamed"
        lines.append(
            f"run {run['index']:<3} {run['tag']:<12} {run['finished_at']}  selected {run['selected']}, "
            f"{run['samples_in_pool']} still in the pool{_merge_note(run)}{stop}"
        )
        if run.get("previous_pool"):
            lines.append(f"        the pool before it: {run['previous_pool']}")
    for snapshot in summary.get("history", []):
        lines.append(f"history {snapshot}")
    lines += _removal_lines(summary)
    lines += _next_run_lines(summary.get("next_run", []))
    if summary.get("written_by"):
        lines.append(
            f"format  pool format {summary['pool_format']}, written by {summary['written_by']}"
        )
    return lines


def _first_run_line(summary: dict[str, Any]) -> str:
    """What a pool without a commit whose lock a run holds or left is: no pool yet, made by
    that run's first commit (or the next run's, where it did not finish)."""
    from datapool.specs import scheme_of

    lock = summary["lock"]
    where = "prefix" if scheme_of(summary["pool"]) else "folder"
    who = f"pid {lock['pid']} on {lock['host']}" if lock.get("pid") is not None else "a run"
    since = f" since {lock['since']}" if lock.get("since") else ""
    until = f", its lease until {lock['until']}" if lock.get("until") else ""
    if lock["state"] == "held":
        return (
            f"no pool yet: a run holds the {where} ({who}{since}{until}); its first commit "
            "makes the pool"
        )
    if lock["state"] == "elsewhere":
        return (
            f"no pool yet: a run on another host may hold the {where} ({who}{since}, as its "
            "lock records); its first commit makes the pool"
        )
    return (
        f"no pool yet: a run took the {where} ({who}{since}) and did not finish "
        f"({lock['reason']}); nothing to do: the next run takes the lock over and makes the pool"
    )


@contextlib.contextmanager
def _no_pool_yet(pool: str, s3_endpoint_url: str | None) -> Iterator[None]:
    """ls, report and export of a pool whose first run has not committed: the line `datapool
    status` shows (no pool yet, and which run holds or left the folder or prefix) instead of
    'not a datapool pool' (a prefix without a manifest), which a mistyped path also gets, or an
    empty pool's listing, page or export (a folder with a lock record and no runs.json). Other
    errors pass through."""
    from pathlib import Path

    from datapool.pool.contents import is_uncommitted_pool
    from datapool.specs import scheme_of

    if not scheme_of(pool) and is_uncommitted_pool(Path(pool)):
        line = _first_run_error(pool, s3_endpoint_url)
        if line is not None:
            raise ConfigError(line)
    try:
        yield
    except ConfigError:
        line = _first_run_error(pool, s3_endpoint_url)
        if line is None:
            raise
        raise ConfigError(line) from None


def _first_run_error(pool: str, s3_endpoint_url: str | None) -> str | None:
    """'POOL: no pool yet: ...' where a run holds or left the lock of a pool without a commit,
    else None (a pool, or not one)."""
    from datapool.config import S3Settings
    from datapool.pool.store import open_store

    try:
        summary = open_store(pool, S3Settings(endpoint_url=s3_endpoint_url)).summary()
    except DatapoolError:
        return None
    if not summary.get("lock") or not (summary.get("empty") or not summary["runs"]):
        return None
    return f"{summary['pool']}: {_first_run_line(summary)}"


def _lock_lines(lock: dict[str, Any] | None) -> list[str]:
    """Who holds the pool's lock (pool/lock.py lock_holder, s3/lease.py S3Lease.holder): a run
    in progress, or the record of one that did not finish; [] where none does."""
    if lock is None:
        return []
    who = f"pid {lock['pid']} on {lock['host']}" if lock.get("pid") is not None else "a run"
    since = f" since {lock['since']}" if lock.get("since") else ""
    until = f", its lease until {lock['until']}" if lock.get("until") else ""
    if lock["state"] == "held":
        return [
            f"running a run holds the pool: {who}{since}{until}; what follows is the pool as "
            "last committed"
        ]
    if lock["state"] == "elsewhere":
        return [
            f"running a run on another host may hold the pool: {who}{since}, as its lock "
            "records (whether it still runs, only that host tells); what follows is the pool as "
            "last committed"
        ]
    return [
        f"lock    stale: {who}{since} took the lock and did not finish ({lock['reason']}); "
        "nothing to do: the next run takes the lock over, and the pool is as its last commit "
        "left it"
    ]


def _removal_lines(summary: dict[str, Any]) -> list[str]:
    """`datapool rm`'s removals, one line each, and what runs keep out since."""
    out = []
    for e in summary.get("removals", []):
        why = f" ({e['reason']})" if e.get("reason") else ""
        files = f" and {counted(e['files'], 'source file')}" if e.get("files") else ""
        if e.get("forget"):
            out.append(
                f"removed {e['at']}  forgot {counted(e['names'], 'sample name')}{files}{why}"
            )
        else:
            out.append(f"removed {e['at']}  {counted(e['samples'], 'sample')}{files}{why}")
    kept = summary.get("kept_out") or {}
    if kept.get("samples") or kept.get("files"):
        files = f" and {counted(kept['files'], 'source file')}" if kept.get("files") else ""
        one = kept.get("samples", 0) + kept.get("files", 0) == 1
        out.append(
            f"kept    out of later runs: {counted(kept['samples'], 'sample name')}{files} "
            f"(`datapool rm --forget` lets {'it' if one else 'them'} in again)"
        )
    return out


def _next_run_lines(entries: list[dict[str, Any]]) -> list[str]:
    """What the next run reads again although unchanged (pool/next_run.py), one line each."""
    if not entries:
        return ["next    the next run reads only new and changed files"]
    out = []
    for e in entries:
        n = e["files"]
        files = "files" if n != 1 else "file"
        what = {"older_video_decoder": "video", "tiff_before": "TIFF"}.get(e["kind"], "image")
        images = what + "s" * (n != 1)
        does = {
            "read again": f"read {n} {files} again",
            "checked": f"check {n} {images}",
            "not checked": f"not check {n} {images}",
            "hashed": f"hash {n} {files}",
            "cut again": "cut images again",
        }[e["action"]]
        out.append(f"next    the next run will {does}: {e['why']}")
    return out


def _cmd_ls(a: argparse.Namespace) -> int:
    from datapool.config import S3Settings
    from datapool.pool.contents import sources_now
    from datapool.pool.store import open_store
    from datapool.specs import strip_userinfo

    with _no_pool_yet(a.pool, a.s3_endpoint_url):
        store = open_store(a.pool, S3Settings(endpoint_url=a.s3_endpoint_url))
        pool = store.pool()
    rows = pool.iter_samples(None if a.run is None else pool.run_index(a.run), read=store.read)
    if a.json:
        _write_whole(_json_list(rows))
        return 0
    # A pool of several sources (merged from two) names each file with its source: the key
    # alone (`img.jpg`, in both) does not say which file it is.
    several = len({s for s in sources_now(pool.runs) if s}) > 1
    print("run  tag           min-dist  frame  source file -> sample")
    n = 0
    lines: list[str] = []  # written LS_LINES at a time: a print a line was 1.4 s of 200,000
    for x in rows:
        d = "" if x["min_distance"] is None else f"{x['min_distance']:.4f}"
        frame = "" if x["frame"] is None else str(x["frame"])
        sample = "" if x["filename"] == x["source_file"] else f" -> {x['filename']}"
        file = x["source_file"]
        if several and x["source"]:
            file = f"{strip_userinfo(x['source']).rstrip('/')}/{file}"
        lines.append(f"{x['run']:<4} {x['tag']:<13} {d:>8}  {frame:>5}  {file}{sample}\n")
        n += 1
        if len(lines) == LS_LINES:
            sys.stdout.write("".join(lines))
            lines.clear()
    sys.stdout.write("".join(lines))
    print(f"{n} sample" + ("" if n == 1 else "s"))
    return 0


LS_LINES = 4096  # the lines `datapool ls` writes at once


def _json_list(items: Iterable[Any]) -> Iterator[str]:
    """The text of json.dumps(list(items), indent=2), a piece at a time (a pool of 200,000
    samples is never held as 200,000 dicts)."""
    n = 0
    for x in items:
        yield (",\n  " if n else "[\n  ") + json.dumps(x, indent=2).replace("\n", "\n  ")
        n += 1
    yield "\n]\n" if n else "[]\n"


# What `_write_whole` holds in memory before it goes on in a temporary file.
_WHOLE_IN_MEMORY = 32 << 20


def _write_whole(pieces: Iterable[str]) -> None:
    """Write a document on stdout whole or not at all: the pieces are gathered (in memory, then
    in a temporary file past _WHOLE_IN_MEMORY) and written once the last is made. A command
    that fails part way (a report that cannot be read from the bucket, Ctrl-C) leaves nothing on
    stdout, never a truncated document or a list that parses but lacks samples."""
    import shutil
    import tempfile

    with tempfile.SpooledTemporaryFile(_WHOLE_IN_MEMORY, "w+", encoding="utf-8") as held:
        for piece in pieces:
            held.write(piece)
        held.seek(0)
        shutil.copyfileobj(held, sys.stdout)


def _age(text: str) -> float:
    """`--older-than`: 90, 90s, 30m, 1h, 2d (seconds by default)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text[-1:].lower() in units else (text, "s")
    try:
        seconds = float(number) * units[unit.lower()]
    except ValueError:
        seconds = -1.0
    if not seconds >= 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an age: write seconds, or a number with s, m, h or d (30m, 1h)"
        )
    return seconds


def _cmd_gc(a: argparse.Namespace) -> int:
    from datapool.config import S3Settings
    from datapool.pool.store import collect_garbage

    options = {} if a.older_than is None else {"older_than_s": a.older_than}
    config = S3Settings(endpoint_url=a.s3_endpoint_url)
    r = collect_garbage(a.pool, dry_run=a.dry_run, config=config, **options)
    if a.json:
        print(json.dumps(asdict(r), indent=2))
        return 0
    if r.note:
        print(f"{r.pool}: {r.note}")
        return 0
    verb = "would remove" if a.dry_run else "removed"
    print(
        f"{r.pool}: {verb} {len(r.deleted)} unreferenced blobs ({r.freed_bytes / 1e6:.1f} MB); "
        f"{r.referenced} referenced, {r.kept_recent} unreferenced but too recent"
    )
    if r.aborted_uploads:
        print(f"{'would abort' if a.dry_run else 'aborted'} {r.aborted_uploads} unfinished uploads")
    return 0


def _cmd_rm(a: argparse.Namespace) -> int:
    from datapool.config import S3Settings
    from datapool.pool.store import remove_samples

    names = list(a.names)
    if a.from_file is not None:
        names += _names_from_file(a.from_file)
    r = remove_samples(
        a.pool,
        names,
        a.source_file,
        run=a.run,
        reason=a.reason,
        forget=a.forget,
        purge_history=a.purge_history,
        dry_run=a.dry_run,
        config=S3Settings(endpoint_url=a.s3_endpoint_url),
    )
    if a.json:
        print(json.dumps(_rm_json(r), indent=2))
        return 0
    for line in _rm_lines(r, a.pool):
        print(line)
    return 0


def _names_from_file(path: str) -> list[str]:
    """The names in `--from-file`, one a line (- reads stdin): spaces, tabs and a CR around a
    line are stripped, blank lines are skipped, and so is a comment, a line that is `#` or
    starts with `# ` (a space after the `#`). `#1.jpg` is a name: sample names may start with
    `#`, and a name taken for a comment would be silently kept, where a comment taken for a
    name stops the removal naming it."""
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"--from-file {path}: cannot read it ({e})") from None
    lines = (line.strip() for line in text.splitlines())
    return [n for n in lines if n and n != "#" and not n.startswith(("# ", "#\t"))]


def _forget_hint(pool: str, files: bool, names: bool) -> str:
    """The `rm --forget` that lets in again what a removal keeps out: `--forget NAME` lets a
    sample name in, not a source file (nor its samples): that is `--forget --source-file`."""
    if not files:
        return f"`datapool rm {pool} --forget NAME...`"
    return f"`datapool rm {pool} --forget --source-file KEY...`" + (
        " (a sample: `--forget NAME...`)" if names else ""
    )


def _rm_json(r: Any) -> dict[str, Any]:
    from datapool.pool.keepout import kept_out

    names, files = kept_out(r.removals)
    return {
        "pool": r.location,
        "dry_run": r.dry_run,
        "forget": r.forget,
        "removed": r.names,
        "source_files": r.entry.get("files", []),
        "runs": r.entry.get("runs", {}),
        "reason": r.entry.get("reason", ""),
        "pool_size": r.pool_size,
        "kept_out": {"samples": len(names), "files": len(files)},
        "history": r.history,
        "history_holding": r.holding,
        "history_purged": bool(r.purge_history and r.history and not r.dry_run),
        "reports_withdrawn": r.withdrawn_reports if r.names else [],
    }


def _rm_lines(r: Any, pool: str) -> list[str]:
    if r.forget:
        what = counted(len(r.entry["names"]), "sample name") if r.entry["names"] else ""
        files = counted(len(r.entry["files"]), "source file") if r.entry["files"] else ""
        both = " and ".join(x for x in (what, files) if x)
        verb = "would no longer keep out" if r.dry_run else "no longer kept out"
        one = len(r.entry["names"]) + len(r.entry["files"]) == 1
        return [
            f"{r.location}: {verb}: {both}; a later run may add {'it' if one else 'them'} again"
        ]
    out = []
    n, files = len(r.names), r.entry.get("files", [])
    them = "it" if n == 1 else "them"  # the removed samples
    if r.dry_run:
        out += r.names
        out.append(
            f"{r.location}: would remove {counted(n, 'sample')}; the pool would hold {r.pool_size}"
        )
    elif n or files:
        runs = ", ".join(f"{v} of run {k}" for k, v in r.entry["runs"].items())
        out.append(
            f"{r.location}: removed {counted(n, 'sample')}{f' ({runs})' if runs else ''}; "
            f"the pool holds {r.pool_size}"
        )
    if n or files:
        file_note = f", nor read the {counted(len(files), 'source file')} given" if files else ""
        will = "would keep" if r.dry_run else "kept"
        out.append(
            f"{will} out: later runs (with --process-all, --retry-skipped or a changed file too) "
            f"will not add {them if n else 'samples of them'} again{file_note}; "
            f"{_forget_hint(pool, bool(files), n > 0)} lets one in again"
        )
    if r.names and r.withdrawn_reports and not r.dry_run:
        runs = _run_span(r.withdrawn_reports)
        out.append(
            f"reports: the report.html of {runs} could show {them} and was replaced by a "
            f"notice, and report.json names {them} no more; "
            f"`datapool report {pool}` writes a new report of the pool"
        )
    if r.history:
        out.append(_rm_history_line(r, pool, them))
    elif r.purge_history:
        out.append("history: no snapshot holds a removed sample")
    return out


def _rm_history_line(r: Any, pool: str, them: str) -> str:
    """The history/ snapshots `rm --purge-history` drops: those that hold the samples removed
    now (r.holding), and those that hold only samples removed before, told apart (a removal of
    a later run's samples counted the snapshots made before that run as holding them)."""

    def shown(folders: list[str]) -> str:
        return ", ".join(folders[:3]) + (", ..." if len(folders) > 3 else "")

    now, n = len(r.holding), len(r.history)
    earlier = n - now
    if r.purge_history:
        verb = "would delete" if r.dry_run else "deleted"
        held = f"held {them}" if not earlier else "held samples removed earlier"
        if earlier and now:
            held = f"held {them} or samples removed earlier"
        return f"history: {verb} {counted(n, 'snapshot')} that {held} ({shown(r.history)})"
    how = f"`datapool rm {pool} --purge-history` deletes"
    if not earlier:
        return (
            f"history: {counted(n, 'snapshot')} still hold{'s' if n == 1 else ''} {them} "
            f"({shown(r.history)}); {how} {'it' if n == 1 else 'them'}"
        )
    if not now:
        return (
            f"history: no snapshot holds {them}; {counted(n, 'snapshot')} "
            f"({shown(r.history)}) {'holds' if n == 1 else 'hold'} samples removed earlier; "
            f"{how} {'it' if n == 1 else 'them'}"
        )
    return (
        f"history: {counted(now, 'snapshot')} still hold{'s' if now == 1 else ''} {them} "
        f"({shown(r.holding)}), {earlier} more only samples removed earlier; {how} all {n}"
    )


def _run_span(indices: list[int]) -> str:
    if len(indices) == 1:
        return f"run {indices[0]}"
    return f"runs {indices[0]}..{indices[-1]}"


def _cmd_merge(a: argparse.Namespace) -> int:
    from dataclasses import asdict

    from datapool._signals import run_starts
    from datapool.config import S3Settings
    from datapool.pool.merge import merge_pools

    run_starts()  # (an interrupt then says whether a new pool in S3 was committed)
    with _progress(a).phase("merge"), _timed("merge"):
        r = merge_pools(
            a.a, a.b, a.into, reselect=a.reselect, config=S3Settings(endpoint_url=a.s3_endpoint_url)
        )
    if a.json:
        print(json.dumps({k: str(v) if k == "pool" else v for k, v in asdict(r).items()}, indent=2))
        return 0
    _print_merge(a, r)
    return 0


def _print_merge(a: argparse.Namespace, r: Any) -> None:
    """The merge summary; its numbers add up (A's + B's kept = the merged pool)."""
    print(
        f"merged  {a.a} ({counted(r.size_a, 'sample')}) + {a.b} ({counted(r.size_b, 'sample')}) "
        f"-> {r.pool}"
    )
    print(f"        {counted(r.size, 'sample')} = {r.from_a} from {a.a} + {r.from_b} from {a.b}")
    if r.duplicates:
        was, are = ("was", "is") if r.duplicates == 1 else ("were", "are")
        print(
            f"        {counted(r.duplicates, 'sample')} of {a.b} {was} already in {a.a} (same "
            f"source, same name) and {are} kept once"
        )
    if r.stale:
        are = "is of a file" if r.stale == 1 else "are of files"
        print(
            f"        {counted(r.stale, 'sample')} of {a.b} {are} {a.a} holds in another version "
            "(changed since), left out"
        )
    if r.reselect_dropped:
        print(f"        --reselect left out {counted(r.reselect_dropped, 'sample')} of the union")
    if r.let_in:
        from datapool.pool.keepout import SAME_OBJECT_IOU

        shown = ", ".join(r.let_in[:3]) + (f" (and {len(r.let_in) - 3} more)" * (len(r.let_in) > 3))
        print(
            f"        let in {counted(len(r.let_in), 'object crop')} named as one `datapool rm` "
            f"removed, whose box holds another object now (less than {SAME_OBJECT_IOU:.0%} "
            f"overlap with the removed one's): {shown}"
        )
    if r.prefix:
        print(
            f"        {a.b}: {r.renamed_files} raw file(s) named as files of {a.a}; they and "
            f"their {r.renamed} sample(s) got the prefix {r.prefix!r}"
        )


def _add_thumbnails(pool: str, settings: Any, out: Any = None) -> None:
    """`report --thumbnails`; its lines go to `out` (stderr where the page goes to stdout)."""
    from datapool.thumbnail_backfill import add_missing_thumbnails

    done = add_missing_thumbnails(pool, settings)
    where = f" ({done.segment})" if done.segment else ""
    print(f"thumbnails  {done.added} added{where}, {done.had} there already", file=out)
    if done.unavailable:
        print(
            f"thumbnails  {counted(len(done.unavailable), 'raw file')} unavailable; "
            f"{'its' if len(done.unavailable) == 1 else 'their'} samples have none:",
            file=out,
        )
        for key, why in sorted(done.unavailable.items()):
            print(f"  {key}: {why}", file=out)


def _check_not_among_pool_files(path: Any, flag: str, pools: Sequence[str] = ()) -> None:
    """`report --out` and `--log-file` may not write among a pool's files: `--out POOL/runs.json`
    replaced it with the page, `--log-file POOL/runs.json` appended the log to it, and the pool
    could no longer be opened. The pools are those the command names (a new one too) and any
    around `path`; a file of one's own in a pool's folder (`--out POOL`) is fine. A path that
    starts with a `~` the shell did not expand is refused too (_fsio.unexpanded_home), and a path
    in a history snapshot with the line every write to one gets (`cp -r SNAP NEWPOOL`)."""
    from pathlib import Path

    from datapool._fsio import unexpanded_home
    from datapool.pool.history import check_not_a_snapshot
    from datapool.pool.layout import HISTORY_DIR, POOL_FILES, RUNS_DIR, pools_around

    meant = unexpanded_home(os.fspath(path))
    if meant is not None:
        raise ConfigError(f"{flag} {path}: `~` is not expanded there: give the full path, {meant}")

    target = Path(path).resolve()
    try:  # into a history snapshot: refused as every write to one is, with how to grow a copy
        check_not_a_snapshot(target.parent)
    except ConfigError as e:
        raise ConfigError(f"{flag} {path}: {e}") from None
    folders = [Path(p).resolve() for p in pools if "://" not in p] + pools_around(target)
    for folder in folders:
        try:
            rel = target.relative_to(folder)
        except ValueError:
            continue
        first = rel.parts[0] if rel.parts else ""
        if first in (*POOL_FILES, RUNS_DIR, HISTORY_DIR) or first.startswith("."):
            raise ConfigError(
                f"{flag} {path}: {rel.as_posix()} is among the pool's own files ({folder}), "
                "which it could damage; give a path outside them"
            )


def _cmd_report(a: argparse.Namespace) -> int:
    from pathlib import Path

    from datapool.config import S3Settings
    from datapool.report_html import pool_report_html
    from datapool.specs import scheme_of, strip_userinfo

    if a.out is not None and scheme_of(a.out):  # it made a folder `s3:` here
        raise ConfigError(
            f"--out {strip_userinfo(a.out)}: the page is written to a local file or folder; "
            "write it here and copy it where it should go (aws s3 cp)"
        )

    def where(default: str) -> Path:  # --out FOLDER: the page goes in it, under its default name
        out = Path(a.out or default)
        return out / default if out.is_dir() else out

    settings = S3Settings(endpoint_url=a.s3_endpoint_url)
    if a.out == "-" and a.open:
        raise ConfigError("--open needs a file: give --out FILE, not --out - (stdout)")
    _check_not_among_pool_files(where("report.html"), "--out", [a.pool])  # before --thumbnails
    with _no_pool_yet(a.pool, a.s3_endpoint_url):
        if a.thumbnails:
            _add_thumbnails(a.pool, settings, sys.stderr if a.out == "-" else sys.stdout)
        page, default = pool_report_html(a.pool, settings, a.projection)
    if a.out == "-":  # (it wrote a file named "-")
        sys.stdout.buffer.write(page)
        return 0
    out = where(default)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(page)
    except OSError as e:
        raise OutputWriteError(
            f"--out: cannot write {out} ({_why_not_written(out, e)}); pass --out FILE, a file in "
            "a folder you can write"
        ) from None
    size = f"{len(page) / 1e6:.1f} MB" if len(page) >= 100_000 else f"{len(page) / 1e3:.0f} KB"
    print(f"report    {out}  ({size}, opens from disk)")
    if a.open:
        import webbrowser

        if not webbrowser.open(out.resolve().as_uri()):  # (no browser: a server, a container)
            logging.getLogger("datapool").warning(
                "--open: no web browser could be started here; open %s in one", out
            )
    return 0


def _why_not_written(out: Any, e: OSError) -> str:
    """The reason a write to `out` failed, in words: mkdir's 'File exists' where a part of the
    path is a file said nothing of which."""
    for folder in [*reversed(out.parents)]:
        if folder.exists() and not folder.is_dir():
            return f"{folder} is a file, not a folder"
    return str(e.strerror or e)


def _cmd_demo(a: argparse.Namespace) -> int:
    from pathlib import Path

    from datapool.demo import RUN_OPTIONS, run_demo

    first, second = run_demo(a.directory, progress=None)
    _run_is_over()
    root = Path(a.directory)
    said = (
        '"day" scenes (4 videos, 12 images) and one broken video, on purpose: it is skipped',
        '8 "night" files added to the bucket: a run processes only new and changed files',
    )
    for r, options, what in zip((first, second), RUN_OPTIONS, said):
        flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in options.items())
        print(f"== run {r.run_index}: {what}")
        print(f"   datapool run {root / 'bucket'} --pool {root / 'pool'} {flags}")
        _print_result(r)
    print()
    print(f"demo bucket     {root / 'bucket'}")
    print(f"pool            {root / 'pool'}  (datapool status {root / 'pool'})")
    print(f"embedding views {first.view_path}")
    print(f"                {second.view_path}")
    if second.html_path is not None:
        print(f"report pages    {first.html_path}")
        print(f"                {second.html_path}  (interactive; open in a browser)")
    print(f"next            datapool ls {root / 'pool'}    (each sample, its file and frame)")
    print("                datapool run YOUR_FOLDER --pool YOUR_POOL --n-samples 100  (README.md)")
    return 0


def _run_is_over() -> None:
    """The run has returned (committed): from here a Ctrl-C or SIGTERM is ignored, so the
    process ends with the run's own status and summary (see _signals.ignore)."""
    from datapool._signals import ignore

    ignore()
    point("exiting")


class _StderrFormat(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        return f"datapool: {level}{record.getMessage()}"


class _LogFile(logging.FileHandler):
    """--log-file. A write that fails later (the disk fills: /dev/full) says so once on stderr
    and ends the log; logging's own handling printed '--- Logging error ---' and a traceback
    for every line after. The command goes on: its work does not depend on its log."""

    failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failed:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        if self.failed:
            return
        self.failed = True
        e = sys.exc_info()[1]
        why = getattr(e, "strerror", None) or e
        sys.stderr.write(
            f"datapool: warning: --log-file {self.baseFilename}: cannot write it ({why}); "
            "the log stops here\n"
        )


class _HeldForResult(logging.Filter):
    """--json: a warning that the command's result holds too (IN_RESULT: RunResult.warnings,
    an export's `warnings`) is written in the JSON document, not also as a line on stderr. Such
    warnings are held here until the command ends: `printed` drops those the document held, and
    `flush` writes the others on stderr (a command that failed prints no document: its warnings
    come before its error line, as README says)."""

    def __init__(self, handler: logging.Handler) -> None:
        super().__init__()
        self.handler = handler
        self.held: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, IN_RESULT, False):
            self.held.append(record)
            return False
        return True

    def printed(self, messages: Collection[str]) -> None:
        self.held = [r for r in self.held if r.getMessage() not in messages]

    def flush(self) -> None:
        held, self.held = self.held, []
        for record in held:
            if record.levelno >= self.handler.level:
                self.handler.emit(record)


_held: _HeldForResult | None = None


def _printed(messages: Collection[str]) -> None:
    """The JSON document just printed holds these warnings: they are not written on stderr."""
    if _held is not None:
        _held.printed(messages)


def _flush_held() -> None:
    if _held is not None:
        _held.flush()


def _setup_logging(a: argparse.Namespace) -> None:
    """stderr shows the `datapool` logger's warnings (a stale lock taken over, a commit recovered)
    as `datapool: warning: ...`; -v adds what the run did (each skipped file, phase times), -q
    leaves errors only. --log-file keeps everything with times, progress lines included."""
    logger = logging.getLogger("datapool")
    for old in [h for h in logger.handlers if getattr(h, "_datapool_cli", False)]:
        logger.removeHandler(old)
        old.close()
    verbose, quiet = getattr(a, "verbose", False), getattr(a, "quiet", False)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    handlers[0].setLevel(logging.ERROR if quiet else logging.INFO if verbose else logging.WARNING)
    handlers[0].setFormatter(_StderrFormat())
    global _held
    _held = _HeldForResult(handlers[0]) if getattr(a, "json", False) else None
    if _held is not None:
        handlers[0].addFilter(_held)
    log_file = getattr(a, "log_file", None)
    if log_file is not None:
        from datapool.specs import scheme_of, strip_userinfo

        if scheme_of(log_file):  # it said 'cannot write it (No such file or directory)'
            raise ConfigError(
                f"--log-file {strip_userinfo(log_file)}: {scheme_of(log_file)}:// is not "
                "supported here, the log is written to a local file; write it here and copy it "
                "where it should go (aws s3 cp)"
            )
        pools = [getattr(a, k, None) for k in ("pool", "a", "b", "into")]
        _check_not_among_pool_files(log_file, "--log-file", [p for p in pools if p])
        try:
            handlers.append(_LogFile(log_file, encoding="utf-8"))
        except OSError as e:
            raise OutputWriteError(
                f"--log-file {log_file}: cannot write it ({e.strerror})"
            ) from None
        handlers[1].setLevel(logging.DEBUG)
        handlers[1].setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    for h in handlers:
        h._datapool_cli = True  # type: ignore[attr-defined]
        logger.addHandler(h)
    logger.setLevel(min(h.level for h in handlers))
    logger.propagate = False


def _add_output_flags(p: argparse.ArgumentParser) -> None:
    """-v, -q and --log-file, for the commands that do work."""
    loud = p.add_mutually_exclusive_group()
    loud.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=False,
        help="also say what the run did on stderr: each skipped file, each phase's time",
    )
    loud.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=False,
        help="no progress and no warnings on stderr; errors only",
    )
    p.add_argument(
        "--log-file",
        default=None,
        type=_path,
        metavar="PATH",
        help="append a detailed log with times to PATH (progress lines included)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """The `datapool` command, for callers in this process (tests, scripts): returns the exit
    status, and gives back the SIGINT and SIGTERM handlers it found, which a run replaces (it
    installs its own, then ignores both once it has returned: see _run_is_over)."""
    import signal
    import threading

    from datapool._signals import HANDLED

    main_thread = threading.current_thread() is threading.main_thread()
    saved = {sig: signal.getsignal(sig) for sig in HANDLED} if main_thread else {}
    try:
        return _main(argv)
    finally:
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)


def _main(argv: Sequence[str] | None = None) -> int:
    _Parser.argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    as_json = bool(getattr(args, "json", False))  # (a command without --json refused it)
    if extra:  # before the command (its own parser refuses what follows it): `datapool -q ls`
        return _say_error(
            "usage",
            f"unrecognized arguments: {' '.join(extra)}; a command's options go "
            f"after its name (see `datapool {args.command} --help`)",
            USAGE_EXIT,
            as_json,
        )
    handler = {
        "run": _cmd_run,
        "predict": _cmd_predict,
        "status": _cmd_status,
        "verify": _cmd_verify,
        "ls": _cmd_ls,
        "gc": _cmd_gc,
        "rm": _cmd_rm,
        "undo": _cmd_undo,
        "merge": _cmd_merge,
        "demo": _cmd_demo,
        "model": _cmd_model,
        "report": _cmd_report,
        "export": _cmd_export,
    }[args.command]
    from datapool._signals import install, run_starts

    run_starts()  # (main() may be called again in one process: no earlier commit counts)
    if args.command in ("run", "demo"):
        install()  # SIGTERM (docker stop) ends a run the way Ctrl-C does
    try:
        _setup_logging(args)
        rc = handler(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
        _flush_held()
        return rc
    except BrokenPipeError:
        return _stdout_closed()
    except DatapoolError as e:
        words = isinstance(e, ConfigError) and not isinstance(e, SelectionFileError)
        text = _in_cli_words(str(e)) if words else str(e)
        return _say_error(e.kind, text, e.exit_code, as_json)
    except KeyboardInterrupt as e:
        return _report_interrupt(e, args.command, as_json)
    except Exception as e:
        # A signal that lands while a C extension module initialises (onnxruntime's, PyAV's)
        # comes out as that module's ImportError, with the Interrupted as its cause.
        interrupt = _interrupt_behind(e)
        if interrupt is not None:
            return _report_interrupt(interrupt, args.command, as_json)
        if isinstance(e, OSError) and e.errno == errno.ENAMETOOLONG:  # a path no check caught
            name = f": {e.filename}" if e.filename else ""
            return _say_error(
                "usage", f"a path is longer than this system allows{name}", USAGE_EXIT, as_json
            )
        if not as_json:
            raise
        import traceback  # a bug: its traceback, then the one JSON object a script reads

        traceback.print_exc()
        message = f"{type(e).__name__}: {e} (a bug in datapool: the traceback is above)"
        return _say_error("internal", message, 1, as_json)


def _stdout_closed() -> int:
    """The reader of stdout went away (`datapool ls POOL | head -1`): stop quietly, as tools
    killed by SIGPIPE do (exit 128 + 13). stdout is pointed at /dev/null so that the interpreter's
    last flush of what is still buffered does not fail again."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141


# RunConfig's field names as the CLI spells them (the rest: --name-with-dashes).
_FLAGS = {
    "proportion_samples": "--proportion",
    "s3_lock_lease_s": "--s3-lock-lease",
    "s3_read_timeout_s": "--s3-read-timeout",
    "process_all": "--process-all",
    "predictions_dir": "--predictions",
    "metadata_dir": "--metadata",
    "export_tasks": "--tasks",
    "export_url_prefix": "--url-prefix",
    "export_pre_annotate": "--pre-annotate",
}
_SINGLE_WORDS = (
    "model",
    "fps",
    "threads",
    "export",
    "include",
    "exclude",
    "reselect",
    "tag",
    "crops",
)


def _in_cli_words(message: str) -> str:
    """A ConfigError from the Python API, with its field names as CLI flags: `proportion_samples
    must be ...` -> `--proportion must be ...`."""
    from dataclasses import fields

    from datapool.config import RunConfig

    names = [f.name for f in fields(RunConfig) if "_" in f.name]

    def flag(name: str) -> str:
        return _FLAGS.get(name, "--" + name.replace("_", "-"))

    text = re.sub(r"\b(" + "|".join(names) + r")\b", lambda m: flag(m[1]), message)
    text = re.sub(
        r"^(" + "|".join(_SINGLE_WORDS) + r")\b", lambda m: flag(m[1]), text
    )  # "fps must be ..."
    text = re.sub(r"(--[\w-]+)=(\S+) \(\1\)", r"\1 \2", text)  # "--threads=9 (--threads)"
    text = re.sub(r"(--[\w-]+) \(\1\)", r"\1", text)  # "--n-samples (--n-samples)"

    def said(m: re.Match[str]) -> str:  # "--tasks and --url-prefix (--tasks, --url-prefix)"
        return "" if all(f in text[: m.start()] for f in m[1].split(", ")) else m[0]

    return re.sub(r" \((--[\w-]+(?:, --[\w-]+)+)\)", said, text)


def _interrupt_behind(e: BaseException) -> KeyboardInterrupt | None:
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, KeyboardInterrupt):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def _report_interrupt(e: KeyboardInterrupt, command: str = "run", as_json: bool = False) -> int:
    import signal

    from datapool._signals import commit_point_passed

    signum = int(getattr(e, "signum", signal.SIGINT))
    name = signal.Signals(signum).name
    # (The record, too: an interrupt that lands after the run returned carries no stamp.)
    if command == "export":
        line = (
            f"datapool: interrupted ({name}); the export is incomplete (no new "
            "selected_filenames.txt): run it again to finish it"
        )
    elif command == "merge" and commit_point_passed():  # (--into s3://: its manifest written)
        line = f"datapool: interrupted ({name}) at the end of the commit; the merged pool was made"
    elif command not in ("run", "demo"):  # what the others leave is theirs to say (or nothing)
        line = f"datapool: interrupted ({name})"
    elif getattr(e, "pool_committed", False) or commit_point_passed():
        line = f"datapool: interrupted ({name}) at the end of the commit; the run was committed"
    else:
        line = f"datapool: interrupted ({name}); the pool is as it was before this run"
    if as_json:
        return _say_error("interrupted", line.removeprefix("datapool: "), 128 + signum, True)
    # One write, not print's two: a thread left running (see entry) may still write to stderr.
    sys.stderr.write(line + "\n")
    return 128 + signum


def entry() -> None:
    """The console script (and `python -m datapool`): `main()`, then exit with its status.

    A run stopped by Ctrl-C or SIGTERM ends with `os._exit`, once its one line and its output
    are flushed: the pool is already as it was (or committed), its files closed and its lock
    released, and nothing is left to do. Python's interpreter shutdown after an interrupt is where
    native code is at its most fragile: a pipeline daemon thread left inside a long FFmpeg call
    or model node (ingest/threaded.py waits two seconds for them) is ended, when its native call
    returns, by unwinding it through C++ frames that may not be unwound ("terminate called
    without an active exception", exit -6); and an interrupt that lands inside a native module
    has been followed by a crash in the interpreter's last collection ("Fatal Python error:
    PyThreadState_Get ... finalizing": 2 runs in about 100 of tests/test_signals.py's random
    moments, with the run's line already printed and its pool as it was). Either would turn the run's clean exit status into an abort after its line was printed. A
    daemon thread of the pipeline left running ends the process the same way.
    """
    import os
    import threading

    from datapool._signals import HANDLED

    rc = _main()  # not main(): the process keeps ignoring signals until it has exited
    interrupted = rc in {128 + sig for sig in HANDLED}  # _report_interrupt's statuses
    if interrupted or any(
        t.daemon and t.name.startswith("datapool-") for t in threading.enumerate()
    ):
        logging.shutdown()  # --log-file's last lines
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    sys.exit(rc)


if __name__ == "__main__":
    entry()
