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

import csv
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import PoolCorruptError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy.typing as npt


FORMULA_CHARS = frozenset("=+-@\t\r")


def header(dim: int) -> list[str]:
    return ["filenames", *(f"embedding_{i}" for i in range(dim)), "labels"]


def format_csv(
    filenames: Sequence[str],
    embeddings: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64],
    with_header: bool = True,
) -> str:
    """The CSV text of these rows, with the header line unless `with_header` is False (for an
    append to an existing file)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if with_header:
        writer.writerow(header(embeddings.shape[1]))
    fmt = "{:.9g}".format
    for name, row, label in zip(filenames, embeddings.tolist(), labels.tolist()):
        if name[:1] in FORMULA_CHARS:
            # csv quotes only names with a comma, quote or line break; quote these too (see the
            # module docstring: it marks them as text, it does not disarm every spreadsheet).
            buf.write('"' + name.replace('"', '""') + '",')
            writer.writerow([*map(fmt, row), label])
        else:
            writer.writerow([name, *map(fmt, row), label])
    return buf.getvalue()


def ends_with_newline(path: Path) -> bool:
    """True when rows can be appended to the file as it is."""
    try:
        with open(path, "rb") as f:
            f.seek(-1, 2)
            return f.read(1) == b"\n"
    except OSError:
        return False


def read_csv(
    path: Path, dim: int | None = None
) -> tuple[list[str], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Parse and validate the pool CSV. Any defect raises PoolCorruptError with file, line, column."""
    try:
        f = open(path, encoding="utf-8", newline="")
    except FileNotFoundError:
        raise PoolCorruptError(f"{path}: the pool CSV is missing") from None
    with f:
        reader = csv.reader(f)
        try:
            head = next(reader, None)
            if head is None:
                raise PoolCorruptError(f"{path}: line 1: the file is empty (no header)")
            d = len(head) - 2
            if d < 0 or head != header(d):
                raise PoolCorruptError(
                    f"{path}: line 1: header must be filenames,embedding_0,...,embedding_<d-1>,labels"
                )
            if dim is not None and d != dim:
                raise PoolCorruptError(
                    f"{path}: line 1: {d} embedding columns, but the pool's model gives {dim}"
                )
            names: list[str] = []
            lines: list[int] = []
            values: list[list[str]] = []
            labels: list[int] = []
            seen: dict[str, int] = {}
            for row in reader:
                line = reader.line_num
                if len(row) != d + 2:
                    raise PoolCorruptError(
                        f"{path}: line {line}: expected {d + 2} columns, got {len(row)}"
                    )
                name = row[0]
                if not name:
                    raise PoolCorruptError(f"{path}: line {line}, column filenames: empty filename")
                if name in seen:
                    raise PoolCorruptError(
                        f"{path}: line {line}, column filenames: duplicate filename {name!r} "
                        f"(first on line {seen[name]})"
                    )
                seen[name] = line
                try:
                    label = int(row[-1])
                except ValueError:
                    label = -1
                if label < 0:
                    raise PoolCorruptError(
                        f"{path}: line {line}, column labels: {row[-1]!r} is not a run index"
                    )
                names.append(name)
                lines.append(line)
                values.append(row[1:-1])
                labels.append(label)
        except (csv.Error, UnicodeDecodeError) as e:
            raise PoolCorruptError(f"{path}: line {reader.line_num + 1}: {e}") from None
    try:
        emb = np.array(values, dtype=np.float32).reshape(len(values), d)
        bad = None if np.isfinite(emb).all() else np.argwhere(~np.isfinite(emb))[0]
    except ValueError:
        bad = _first_bad_float(values)
    if bad is not None:
        r, c = int(bad[0]), int(bad[1])
        raise PoolCorruptError(
            f"{path}: line {lines[r]}, column embedding_{c}: {values[r][c]!r} is not a finite number"
        )
    return names, emb, np.asarray(labels, dtype=np.int64)


def _first_bad_float(values: list[list[str]]) -> tuple[int, int]:
    for r, row in enumerate(values):
        for c, text in enumerate(row):
            try:
                ok = math.isfinite(float(text))
            except ValueError:
                ok = False
            if not ok:
                return r, c
    raise AssertionError("unreachable: numpy refused a row that float() accepts")
