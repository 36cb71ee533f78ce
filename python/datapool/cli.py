"""The `datapool` command. It parses arguments into the Python API and prints results; it holds no
logic of its own. A DatapoolError prints one line and exits non-zero (2: a corrupt pool, 3: a
locked pool, 1: anything else); Ctrl-C (SIGINT) exits 130 and SIGTERM 143, after saying whether
the pool was left as before the run (see docs/robustness.md)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import DatapoolError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .run import RunResult


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="datapool",
        description="Grow a diverse training dataset step by step from a bucket of raw images and videos.",
    )
    p.add_argument("--version", action="version", version=f"datapool {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="add the most diverse new samples of SOURCE to the pool")
    r.add_argument("source", metavar="SOURCE", help="a local folder of images and videos")
    r.add_argument("--pool", required=True, metavar="POOL", help="the pool folder (created if missing)")
    budget = r.add_mutually_exclusive_group()
    budget.add_argument("--n-samples", type=int, metavar="N", help="add at most N new samples")
    budget.add_argument("--proportion", type=float, metavar="P",
                        help="add at most this fraction (0..1) of the run's candidate samples")
    r.add_argument("--min-distance", type=float, metavar="D",
                   help="stop when the farthest candidate is closer than D to the pool "
                        "(Euclidean between unit embeddings, 0..2)")
    r.add_argument("--process-all", action="store_true",
                   help="process every file again and rebuild the pool from scratch "
                        "(the previous pool is kept under POOL/history/)")
    r.add_argument("--model", metavar="PATH", help="an ONNX image model (default: the bundled one)")
    r.add_argument("--input-size", type=int, metavar="S",
                   help="input height and width, for models that leave them dynamic")
    r.add_argument("--frame-stride", type=int, default=1, metavar="S",
                   help="use every S-th video frame (default 1: all)")
    r.add_argument("--batch-size", type=int, default=32, metavar="B")
    r.add_argument("--threads", type=int, default=0, metavar="T", help="0: all cores")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--json", action="store_true", help="print the result as JSON")

    s = sub.add_parser("status", help="show a pool's runs, size and ledger")
    s.add_argument("pool", metavar="POOL")
    s.add_argument("--json", action="store_true")

    d = sub.add_parser("demo", help="make a demo bucket, run twice, and show where the results are")
    d.add_argument("directory", nargs="?", default="datapool-demo", metavar="DIR")
    return p


def _cmd_run(a: argparse.Namespace) -> int:
    from .config import RunConfig
    from .run import run

    cfg = RunConfig(
        n_samples=a.n_samples,
        proportion_samples=a.proportion,
        min_distance=a.min_distance,
        process_all=a.process_all,
        model=a.model,
        input_size=a.input_size,
        frame_stride=a.frame_stride,
        batch_size=a.batch_size,
        threads=a.threads,
        progress=False if (a.no_progress or a.json) else None,
    )
    result = run(a.source, a.pool, cfg)
    if a.json:
        print(json.dumps(_result_json(result), indent=2))
    else:
        _print_result(result)
    return 0


def _result_json(r: RunResult) -> dict[str, Any]:
    return {
        "pool": str(r.pool),
        "run": r.run_index,
        "tag": r.tag,
        "counts": r.counts,
        "skipped": r.skipped,
        "stop_reason": r.stop_reason,
        "report": None if r.report_path is None else str(r.report_path),
        "embedding_view": None if r.view_path is None else str(r.view_path),
        "elapsed_s": round(r.elapsed_s, 3),
    }


def _print_result(r: RunResult) -> None:
    c = r.counts
    print(f"listed    {c['listed']} media files"
          + (f" ({c['ignored']} other files ignored)" if c.get("ignored") else ""))
    print(f"new       {c['new']} new, {c['changed']} changed, {c['unchanged']} unchanged"
          + (f", {c['missing']} no longer in the source" if c.get("missing") else ""))
    if r.run_index is None:
        print(f"nothing new: pool {r.pool} unchanged ({c['pool_size']} samples)")
        return
    print(f"skipped   {c['skipped']}")
    for s in r.skipped:
        print(f"          {s['key']}: {s['reason']}")
    print(f"embedded  {c['frames_embedded']} samples")
    removed = f" ({c['removed']} samples of changed files removed)" if c.get("removed") else ""
    print(f"selected  {c['selected']} as {r.tag} (stopped: {r.stop_reason}){removed}")
    print(f"pool      {c['pool_size']} samples in {r.pool}")
    print(f"report    {r.report_path}")
    print(f"view      {r.view_path}")
    print(f"took      {r.elapsed_s:.1f} s")


def _cmd_status(a: argparse.Namespace) -> int:
    from .pool import Pool

    summary = Pool.open(a.pool).summary()
    if a.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"pool    {summary['pool']}: {summary['size']} samples, dimension {summary['dim']}")
    if summary["model"]:
        m = summary["model"]
        print(f"model   {m['name']} (sha256 {m['sha256'][:12]}, input {m['input_size'][0]}x{m['input_size'][1]})")
    lg = summary["ledger"]
    print(f"ledger  {lg['files']} raw files: {lg['ok']} ok, {lg['skipped']} skipped")
    for run in summary["runs"]:
        print(f"run {run['index']:<3} {run['tag']:<12} {run['finished_at']}  selected {run['selected']}, "
              f"{run['samples_in_pool']} still in the pool")
    return 0


def _cmd_demo(a: argparse.Namespace) -> int:
    from pathlib import Path

    from .demo import run_demo

    first, second = run_demo(a.directory)
    for r in (first, second):
        print(f"== {r.tag}")
        _print_result(r)
    root = Path(a.directory)
    print()
    print(f"demo bucket     {root / 'bucket'}")
    print(f"pool            {root / 'pool'}  (datapool status {root / 'pool'})")
    print(f"embedding views {first.view_path}")
    print(f"                {second.view_path}")
    return 0


def _log_warnings_to_stderr() -> None:
    """Show the `datapool` logger's warnings (a stale lock taken over, a commit recovered) as
    `datapool: warning: ...` lines on stderr."""
    import logging

    logger = logging.getLogger("datapool")
    if not any(getattr(h, "_datapool_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("datapool: warning: %(message)s"))
        handler._datapool_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _log_warnings_to_stderr()
    handler = {"run": _cmd_run, "status": _cmd_status, "demo": _cmd_demo}[args.command]
    if args.command in ("run", "demo"):
        from ._signals import install

        install()  # SIGTERM (docker stop) ends a run the way Ctrl-C does
    try:
        return handler(args)
    except DatapoolError as e:
        print(f"datapool: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        import signal

        signum = int(getattr(e, "signum", signal.SIGINT))
        name = signal.Signals(signum).name
        if getattr(e, "pool_committed", False):
            print(f"datapool: interrupted ({name}) at the end of the commit; the run was "
                  "committed", file=sys.stderr)
        else:
            print(f"datapool: interrupted ({name}); the pool is as it was before this run",
                  file=sys.stderr)
        return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
