"""The architecture as tests: the import contract, no import cycle, short functions in the run path.

The contract itself is in pyproject.toml (`[tool.importlinter]`); .ci/run also runs it as
`lint-imports`. The graphs are built by grimp (import-linter's library) from the `datapool` the
tests import, without importing any of its modules. Type-checking-only imports count.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import datapool

grimp = pytest.importorskip(
    "grimp",
    reason="the architecture tests need import-linter (>= 2.17, Python >= 3.11): "
    'pip install "import-linter>=2.17" (CI runs them)',
)

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(datapool.__file__).resolve().parent

_LINT_IMPORTS = "from importlinter.cli import lint_imports_command; lint_imports_command()"
# `from datapool import _core` is, to grimp, an import of the package itself: the extension module
# is no .py file. The cycle check sends such an import to a `datapool._core` node instead.
_CORE_IMPORT = re.compile(r"from datapool import _core(\s+as\s+\w+)?")


def test_import_contracts_are_kept() -> None:
    # In a child process: lint-imports reconfigures logging, which would silence `datapool`'s
    # logger for the tests that follow. PYTHONPATH: it checks the `datapool` these tests import.
    path = [str(PACKAGE.parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    run = subprocess.run(
        [sys.executable, "-c", _LINT_IMPORTS, "--no-cache", "--no-logo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, f"lint-imports: a broken contract (pyproject.toml):\n{run.stdout}"
    assert "0 broken" in run.stdout, run.stdout


def _module_graph() -> grimp.ImportGraph:
    graph = grimp.build_graph("datapool", cache_dir=None)
    graph.add_module("datapool._core")
    for importer in sorted(graph.find_modules_that_directly_import("datapool")):
        details = graph.get_import_details(importer=importer, imported="datapool")
        core = [d for d in details if _CORE_IMPORT.fullmatch(d["line_contents"].strip())]
        if core and len(core) == len(details):
            graph.remove_import(importer=importer, imported="datapool")
        for d in core:
            graph.add_import(
                importer=importer,
                imported="datapool._core",
                line_number=d["line_number"],
                line_contents=d["line_contents"],
            )
    return graph


def _cycles(graph: grimp.ImportGraph) -> list[tuple[str, ...]]:
    """One shortest cycle through each import that closes one, each cycle once."""
    found: dict[frozenset[str], tuple[str, ...]] = {}
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:
                cycle = (importer, *back)
                found.setdefault(frozenset(cycle), cycle)
    return sorted(found.values(), key=len)


def _describe(graph: grimp.ImportGraph, cycle: tuple[str, ...]) -> str:
    hops = []
    for importer, imported in zip(cycle, cycle[1:]):
        lines = sorted(
            d["line_number"] for d in graph.get_import_details(importer=importer, imported=imported)
        )
        where = f" (l.{', '.join(map(str, lines))})" if lines else ""
        hops.append(f"{importer}{where}")
    return " -> ".join([*hops, cycle[-1]])


def test_no_import_cycle_between_modules() -> None:
    graph = _module_graph()
    cycles = _cycles(graph)
    assert not cycles, "import cycles (break each by moving the shared code down a layer):\n" + (
        "\n".join(_describe(graph, c) for c in cycles)
    )


def test_the_cycle_check_sees_a_cycle() -> None:
    graph = _module_graph()
    graph.add_import(importer="datapool.errors", imported="datapool.cli")
    cycles = _cycles(graph)
    assert any({"datapool.errors", "datapool.cli"} <= set(c) for c in cycles)


# The run path: every function in these modules (the runner, the stores' commits, the engine) fits
# on a screen. A function past the limit is split where its phases are.
RUN_PATH = [
    *(f"runner/{m}.py" for m in ("__init__", "state", "crops", "predictions", "upgrade")),
    *("pool/local.py", "s3/store.py", "ingest/threaded.py"),
]
MAX_LINES = 60
# Too long today, being split (issue 14). Shrink-only: the second test below fails once one of
# them is short or gone, so that it leaves this list.
KNOWN_LONG: set[str] = set()


def _function_lengths() -> dict[str, tuple[str, int]]:
    """Qualified name -> (file:line, lines from `def` to its end, less the docstring)."""
    lengths: dict[str, tuple[str, int]] = {}
    for rel in RUN_PATH:
        path = PACKAGE / rel
        assert path.is_file(), f"run-path module {rel} is gone: update RUN_PATH in {__file__}"
        module = rel.removesuffix(".py").replace("/", ".")

        def visit(node: ast.AST, prefix: str, rel: str = rel) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    name = f"{prefix}.{child.name}"
                    n = (child.end_lineno or child.lineno) - child.lineno + 1
                    first = child.body[0]
                    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                        if isinstance(first.value.value, str):
                            n -= (first.end_lineno or first.lineno) - first.lineno + 1
                    lengths[name] = (f"{rel}:{child.lineno}", n)
                    visit(child, name)
                elif isinstance(child, ast.ClassDef):
                    visit(child, f"{prefix}.{child.name}")

        visit(ast.parse(path.read_text(encoding="utf-8")), module)
    return lengths


def test_run_path_functions_are_short() -> None:
    long = {
        name: where
        for name, where in _function_lengths().items()
        if where[1] > MAX_LINES and name not in KNOWN_LONG
    }
    assert not long, f"functions in the run path longer than {MAX_LINES} lines:\n" + "\n".join(
        f"{name} ({at}): {n} lines" for name, (at, n) in sorted(long.items())
    )


def test_known_long_functions_are_still_long() -> None:
    lengths = _function_lengths()
    done = sorted(n for n in KNOWN_LONG if n not in lengths or lengths[n][1] <= MAX_LINES)
    assert not done, f"short now or gone, remove from KNOWN_LONG in {__file__}: {done}"
