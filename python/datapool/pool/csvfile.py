"""datapool_latest.csv in Lightly's embeddings format.

Header `filenames,embedding_0,...,embedding_{d-1},labels`, one row per sample, written by Python's
csv module (fields quoted only where needed). Floats are written with 9 significant digits, which
round-trips float32 exactly. Lightly's `load_embeddings` and `pandas.read_csv` both read it; note
that Lightly's reader refuses filenames that contain a comma, which this file can hold (quoted).

CSV injection: a filename that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is
written in quotes. pandas, Lightly and this module read the exact name back; spreadsheets that
honour quoting (LibreOffice's "quoted field as text") keep it as text. Quoting does not stop every
spreadsheet (Excel evaluates `"=..."` from a CSV), and escaping the name (a leading `'`) would
change the filename that pandas and Lightly read, so datapool does neither more nor less: a run
warns when its new samples have such names, and docs/robustness.md says to import the CSV as text.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from datapool.errors import PoolCorruptError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    import numpy.typing as npt


FORMULA_CHARS = frozenset("=+-@\t\r")
_NEEDS_QUOTES = re.compile(r'[,"\r\n]').search


def quote_fields(texts: Iterable[str], formulas: bool = False) -> list[str]:
    """CSV fields: quoted (quotes doubled) where they hold a comma, a quote or a line break,
    and with `formulas` also where they start with one of FORMULA_CHARS.

    A lone carriage return is quoted too: Python's csv.writer (and pandas' to_csv) leave it
    bare when the line terminator has no CR, and every CSV reader then ends the row there."""
    if formulas:
        return [
            ('"' + t.replace('"', '""') + '"') if t[:1] in FORMULA_CHARS or _NEEDS_QUOTES(t) else t
            for t in texts
        ]
    return [('"' + t.replace('"', '""') + '"') if _NEEDS_QUOTES(t) else t for t in texts]


def header(dim: int) -> list[str]:
    return ["filenames", *(f"embedding_{i}" for i in range(dim)), "labels"]


def format_csv(
    filenames: Sequence[str],
    embeddings: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64],
    with_header: bool = True,
) -> str:
    """The CSV text of these rows, with the header line unless `with_header` is False (for an
    append to an existing file): csv_bytes, whole and decoded."""
    return format_csv_bytes(filenames, embeddings, labels, with_header).decode()


def format_csv_bytes(
    filenames: Sequence[str],
    embeddings: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64],
    with_header: bool = True,
) -> bytes:
    """csv_bytes, whole: for a store that writes the file in one piece."""
    return b"".join(csv_bytes(filenames, embeddings, labels, with_header))


def csv_bytes(
    filenames: Sequence[str],
    embeddings: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64],
    with_header: bool = True,
) -> Iterator[bytes]:
    """The CSV's UTF-8 bytes a block of rows at a time (the header alone first): what a commit
    stages, so that a writer never holds the whole text (a 1,000,000 x 510 pool is about 7 GB).

    The text is what Python's csv.writer with an LF line terminator writes with each float as
    `"{:.9g}".format(float(v))` (9 significant digits round-trip every float32), except that a
    filename holding a lone carriage return is quoted too (see quote_fields), and so is one that
    starts with a formula character (see the module docstring: quoting marks them as text for
    careful readers; it does not disarm every spreadsheet). The C++ core formats the rows
    (`_core.format_pool_csv_rows`, on every core with the GIL released): byte for byte the text
    Python's format gives (tests/test_csv_format.py), about 10 times faster on one core.

    `embeddings` must be float32 and `labels` int64 (a TypeError otherwise: no silent cast)."""
    from datapool import _core

    n, dim = embeddings.shape
    if len(filenames) != n or len(labels) != n:
        raise ValueError(
            f"one filename, embedding row and label per row: got {len(filenames)} filenames, "
            f"{n} rows and {len(labels)} labels"
        )
    if with_header:
        yield (",".join(header(dim)) + "\n").encode()
    names = quote_fields(filenames, formulas=True)
    step = max(1, _VALUES_PER_BLOCK // max(1, dim))
    for start in range(0, n, step):
        stop = start + step
        yield _core.format_pool_csv_rows(
            names[start:stop],
            np.ascontiguousarray(embeddings[start:stop]),
            np.ascontiguousarray(labels[start:stop]),
        )


# About 256k values (some 3 MB of text) per block: the threads share out a block's rows.
_VALUES_PER_BLOCK = 1 << 18


def ends_with_newline(path: Path) -> bool:
    """True when rows can be appended to the file as it is."""
    try:
        with open(path, "rb") as f:
            f.seek(-1, 2)
            return f.read(1) == b"\n"
    except OSError:
        return False


def read_csv(
    path: Path, dim: int | None = None, threads: int = 0
) -> tuple[list[str], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Parse and validate the pool CSV. Any defect raises PoolCorruptError with file, line, column.

    The C++ reader (`_core.read_pool_csv`) memory-maps the file and parses it in parallel with the
    GIL released. It reads records as `csv.reader(strict=True)` does (quoted names with commas,
    quotes or line ends; CRLF or LF), rounds floats correctly to float32 and rejects non-finite
    ones (a pool never holds NaN or inf), labels must be non-negative integers and filenames
    unique. See src/cpp/datapool/pool_csv.hpp for the exact grammar.
    """
    from datapool import _core

    try:
        return _core.read_pool_csv(path, dim=-1 if dim is None else dim, threads=threads)
    except FileNotFoundError:
        raise PoolCorruptError(f"{path}: the pool CSV is missing") from None
    except _core.PoolCsvError as e:
        raise PoolCorruptError(f"{path}: {e}") from None
