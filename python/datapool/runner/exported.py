"""`datapool export POOL DEST` (export.export_pool), and what an export of one run did put into
that run's report.json and report.html, as `run --export` puts it there (with_export): a run
whose --export failed has a page that says the export did not finish and how to redo it, and
the redo now replaces that with what it did. An export of the whole pool (`--all`) is of no one
run: no report records it."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from datapool.errors import DatapoolError
from datapool.export import ExportResult, export_pool
from datapool.pool.history import snapshot_of
from datapool.pool.layout import REPORT_HTML_NAME, REPORT_NAME, run_dir
from datapool.pool.store import open_store
from datapool.report_html import takes_export, with_export
from datapool.specs import scheme_of

if TYPE_CHECKING:
    from datapool.config import RunConfig


def export(
    pool: str | os.PathLike[str],
    dest: str,
    config: RunConfig | None = None,
    **options: Any,
) -> ExportResult:
    """export_pool(pool, dest, config=config, **options) (its options: run, all_runs, mirror,
    source, phase, the labelling tools' tasks, url_prefix, pre_annotate, predictions_dir), then
    what it did committed into the exported run's report (not for `all_runs`). The pool is
    locked only for that commit, after the export: an export reads the pool and never waits for
    a run. Where the report cannot take it (a run holds the pool, it cannot be written, the run
    was replaced meanwhile), the result warns and says so."""
    result = export_pool(pool, dest, config=config, **options)
    if result.run is not None:
        why = _record(pool, result, config)
        if why:
            index = result.run["index"]
            result.warn(f"the report of run {index} does not hold what this export did: {why}")
    return result


def _record(pool: str | os.PathLike[str], result: ExportResult, config: RunConfig | None) -> str:
    """Commit what `result` did into its run's report; why not, or "" once it is committed."""
    assert result.run is not None
    index = int(result.run["index"])
    folder = run_dir(index)
    if not scheme_of(os.fspath(pool)) and snapshot_of(pool):
        return f"{pool} is a history snapshot, a record kept as it was"
    store = open_store(pool, config)
    try:
        with store.session() as session:
            runs = session.pool.runs
            if index >= len(runs):
                return (
                    f"the pool no longer has run {index} (it was undone, or the pool rebuilt, "
                    "meanwhile)"
                )
            now = runs[index]
            if any(now.get(k) != result.run[k] for k in ("tag", "started_at")):
                return f"the pool's run {index} is another run now (the pool was rebuilt meanwhile)"
            if store.read(f"{folder}/{REPORT_NAME}") is None:
                return "the pool holds no report of it"
            export = result.to_json()
            page = store.read(f"{folder}/{REPORT_HTML_NAME}")
            new_page = with_export(page, export) if page and takes_export(page) else None
            if not session.add_to_report(index, {"export": export}, new_page):
                return "another run committed to the pool meanwhile"
    except (DatapoolError, OSError, ValueError) as e:  # locked by a run, read-only, ...
        # (not the lock's "nothing was done": the export is made, only its record is not)
        return str(e).removesuffix("; nothing was done")
    return ""
