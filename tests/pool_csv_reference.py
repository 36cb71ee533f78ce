"""Slow, obviously-correct references for the pool CSV reader, in pure Python.

- `parse_reference(data)`: the grammar the C++ reader (src/cpp/datapool/pool_csv.hpp) promises,
  built on Python's csv module (strict) and exact rational arithmetic for float32 rounding.
- `format_reference(names, embeddings, labels)`: the writer as datapool wrote it in Python up to
  session 17 (each float `"{:.9g}".format(v)`), the reference for the C++ formatter
  (_core.format_pool_csv_rows, tests/test_csv_format.py).
- `lightly_load_embeddings(path)`: Lightly's `lightly.utils.io.load_embeddings`, as its source
  reads the file (lightly itself is not a test dependency).
"""

from __future__ import annotations

import csv
import io
import re
from fractions import Fraction

import numpy as np

_FLOAT = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_LABEL = re.compile(r"[0-9]+")
_INT64_MAX = 2**63 - 1
_F32_OVERFLOW = Fraction(2**128 - 2**103)  # the midpoint above FLT_MAX: rounds to inf


class ReferenceError_(ValueError):
    """The reference rejects the file."""


def _magnitude(text: str) -> int | None:
    """Power of ten of the first non-zero digit of a decimal (None for zero)."""
    m = re.fullmatch(r"-?([0-9]*)\.?([0-9]*)(?:[eE]([-+]?[0-9]+))?", text)
    assert m is not None
    whole, frac, exp = m.group(1), m.group(2), int(m.group(3) or 0)
    digits = whole + frac
    nz = next((i for i, ch in enumerate(digits) if ch != "0"), None)
    if nz is None:
        return None
    return len(whole) - 1 - nz + exp


def float32_exact(text: str) -> np.float32 | None:
    """`text` rounded correctly (half to even) to float32, or None when it is not a decimal in
    the grammar or does not fit (overflow, or nan/inf spelled out)."""
    if not _FLOAT.fullmatch(text):
        return None
    sign = -1.0 if text.startswith("-") else 1.0
    mag = _magnitude(text)
    if mag is None or mag < -60:  # zero, or far below half the smallest subnormal (~7e-46)
        return np.float32(sign * 0.0)
    if mag > 40:
        return None
    a = abs(Fraction(text))
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if a < Fraction(2) ** e:
        e -= 1
    q = Fraction(2) ** (max(e, -126) - 23)  # float32 spacing at this magnitude
    r = round(a / q) * q  # Fraction.__round__ rounds half to even
    if r >= _F32_OVERFLOW:
        return None
    return np.float32(sign * float(r))  # r is a float32 value: exact in double


class Parsed:
    def __init__(self, names: list[str], emb: np.ndarray, labels: np.ndarray) -> None:
        self.names, self.emb, self.labels = names, emb, labels


def parse_reference(data: bytes, dim: int | None = None) -> Parsed:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ReferenceError_(f"not UTF-8: {e}") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        rows = list(reader)
    except csv.Error as e:
        raise ReferenceError_(f"csv: {e}") from None
    if not rows:
        raise ReferenceError_("empty")
    head, body = rows[0], rows[1:]
    d = len(head) - 2
    if d < 0 or head != ["filenames", *(f"embedding_{i}" for i in range(d)), "labels"]:
        raise ReferenceError_("header")
    if dim is not None and d != dim:
        raise ReferenceError_("dim")
    names: list[str] = []
    labels: list[int] = []
    emb = np.zeros((len(body), d), np.float32)
    for r, row in enumerate(body):
        if len(row) != d + 2:
            raise ReferenceError_("columns")
        name = row[0]
        if not name or "\0" in name:
            raise ReferenceError_("filename")
        if not _LABEL.fullmatch(row[-1]) or int(row[-1]) > _INT64_MAX:
            raise ReferenceError_("label")
        for j, v in enumerate(row[1:-1]):
            f = float32_exact(v)
            if f is None:
                raise ReferenceError_("float")
            emb[r, j] = f
        names.append(name)
        labels.append(int(row[-1]))
    if len(set(names)) != len(names):
        raise ReferenceError_("duplicate")
    return Parsed(names, emb, np.array(labels, np.int64))


def format_reference(names, embeddings, labels, with_header: bool = True) -> bytes:
    """The pool CSV's bytes as the pure-Python writer made them: quote_fields for the names,
    `"{:.9g}".format` of each float32 (widened to a Python float), str of each label."""
    from datapool.pool.csvfile import header, quote_fields

    out = []
    if with_header:
        out.append(",".join(header(embeddings.shape[1])) + "\n")
    fmt = "{:.9g}".format
    for name, row, label in zip(
        quote_fields(names, formulas=True), embeddings, labels.tolist(), strict=True
    ):
        values = ",".join(map(fmt, row.tolist()))
        out.append(f"{name},{values},{label}\n" if values else f"{name},{label}\n")
    return "".join(out).encode()


def lightly_load_embeddings(path):
    """Lightly's `lightly.utils.io.load_embeddings`, as its source reads the file: csv.reader,
    header skipped, filenames first, integer labels last, floats between."""
    filenames, labels, embeddings = [], [], []
    with open(path, newline="") as f:
        for i, row in enumerate(csv.reader(f, delimiter=",")):
            if i == 0:
                continue
            filenames.append(row[0])
            labels.append(int(row[-1]))
            embeddings.append(row[1:-1])
    return np.array(embeddings).astype(np.float32), labels, filenames
