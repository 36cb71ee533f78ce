"""The pool CSV writer's float formatting in the C++ core (_core.format_pool_csv_rows behind
csvfile.csv_bytes) against the pure-Python writer it replaced (tests/pool_csv_reference.py's
format_reference, each float `"{:.9g}".format`): byte for byte, for every kind of float32."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from datapool import _core
from datapool.pool import csvfile

from .pool_csv_reference import format_reference

F32_MAX = float(np.finfo(np.float32).max)
F32_TINY = float(np.finfo(np.float32).tiny)  # the smallest normal
F32_SUB = float(np.finfo(np.float32).smallest_subnormal)


def _fmt(values: np.ndarray) -> list[str]:
    """Each value as the C++ core writes it (one row, no name or label)."""
    row = np.ascontiguousarray(values, dtype=np.float32).reshape(1, -1)
    text = _core.format_pool_csv_rows(["n"], row, np.zeros(1, np.int64), threads=1).decode()
    return text[2:-3].split(",") if row.shape[1] else []


def _py(values: np.ndarray) -> list[str]:
    return [f"{v:.9g}" for v in np.asarray(values, np.float32).tolist()]


# Values whose text is easy to get wrong: the exponent switch (1e-05 / 0.0001, 1e+09 /
# 999999999), subnormals and the extremes, negative zero, NaN and infinities, powers of two and
# ten, and exact ties at the 9th digit (1048576.125 has 10 significant digits, the last a 5).
EDGE = np.array(
    [0.0, -0.0, 1.0, -1.0, 0.1, 1e-5, 1e-4, 9.99999e-5, 0.0001, 1e8, 1e9, 999999999.0]
    + [123456789.0, 1234567890.0, 1e10, 1e-10, 1e38, 1e-38, 1e-45, F32_MAX, -F32_MAX]
    + [F32_TINY, -F32_TINY, F32_SUB, -F32_SUB, F32_TINY - F32_SUB, 3 * F32_SUB]
    + [np.nan, -np.nan, np.inf, -np.inf, 1048576.125, 1048576.375, 1048577.125, 8388607.5]
    + [2.0**k for k in range(-149, 128, 7)]
    + [10.0**k for k in range(-45, 39)]
    + [0.5, 0.25, 0.125, 1.5, 2.5, 1e-6 / 3, 1 / 3, 2 / 3, 16777215.0, 16777217.0],
    dtype=np.float32,
)


def test_edge_values_are_python_text() -> None:
    ours, ref = _fmt(EDGE), _py(EDGE)
    assert [(v, a, b) for v, a, b in zip(EDGE.tolist(), ours, ref, strict=True) if a != b] == []
    # C's "%.9g" writes "-nan" for a negative NaN; Python (and so the pool CSV) writes "nan"
    assert "-nan" not in ours and "nan" in ours and "-inf" in ours and "-0" in ours


def test_a_binade_of_ties_exhaustively() -> None:
    """The first 2^20 float32s from 2^20 up: steps of 1/8, so about half of them end at the 10th
    significant digit in a 5, an exact tie that Python rounds to even (the fast path must
    hand those to the exact one). And their negatives."""
    bits = np.arange(0x49800000, 0x49800000 + (1 << 20), dtype=np.uint32)
    values = bits.view(np.float32)
    values = np.concatenate([values, -values[::97]])
    assert _fmt(values) == _py(values)


def test_every_exponent_with_random_mantissas(rng: np.random.Generator) -> None:
    """Each of the 256 exponents (subnormals, NaN and inf included) with 400 random mantissas,
    and both signs."""
    exps = np.repeat(np.arange(256, dtype=np.uint32), 400)
    mant = rng.integers(0, 1 << 23, size=exps.size, dtype=np.uint32)
    sign = rng.integers(0, 2, size=exps.size, dtype=np.uint32)
    values = ((sign << 31) | (exps << 23) | mant).view(np.float32)
    assert _fmt(values) == _py(values)


def _near_rounding_boundary(digits: int, exp10: int, up: int) -> float:
    """A float32 next to a 9-digit rounding boundary: the decimal with `digits` then 5 at the
    10th significant digit, times 10^exp10, nudged `up` float32 steps."""
    v = np.float32(float(f"{digits}5e{exp10}"))
    return float(v if up == 0 else np.nextafter(v, np.float32(np.inf if up > 0 else -np.inf)))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(width=32, allow_nan=True, allow_infinity=True, allow_subnormal=True),
            st.builds(
                _near_rounding_boundary,
                st.integers(100000000, 999999999),
                st.integers(-54, 28),
                st.integers(-1, 1),
            ),
        ),
        max_size=40,
    )
)
def test_any_float32_is_python_text(values: list[float]) -> None:
    arr = np.array(values, dtype=np.float32)
    assert _fmt(arr) == _py(arr)


_names = st.lists(
    st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12),
    min_size=0,
    max_size=30,
    unique=True,
)


@settings(max_examples=60, deadline=None)
@given(
    _names,
    st.integers(0, 7),
    st.data(),
)
def test_rows_are_the_python_writers_bytes(names: list[str], dim: int, data) -> None:
    """Whole CSVs (names that need quotes, formula characters, unicode; any dimension including
    0; negative and huge labels) through csv_bytes, in blocks of every size."""
    n = len(names)
    emb = data.draw(hnp.arrays(np.float32, (n, dim), elements=st.floats(width=32)))
    labels = data.draw(hnp.arrays(np.int64, (n,)))
    with_header = data.draw(st.booleans())
    ref = format_reference(names, emb, labels, with_header)
    assert csvfile.format_csv_bytes(names, emb, labels, with_header) == ref
    for threads in (1, 2, 3):
        assert _core.format_pool_csv_rows(
            csvfile.quote_fields(names, formulas=True), emb, labels, threads=threads
        ) == format_reference(names, emb, labels, with_header=False)


def test_blocks_and_threads_give_the_same_bytes(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many rows: the core shares them out over threads in chunks, csv_bytes over blocks."""
    n, dim = 3001, 33
    emb = rng.standard_normal((n, dim)).astype(np.float32) * np.float32(10.0) ** rng.integers(
        -40, 38, size=(n, dim)
    ).astype(np.float32)
    names = [f"{'=' if i % 7 == 0 else ''}dir/img,{i}.jpg" for i in range(n)]
    labels = rng.integers(-(2**63), 2**63 - 1, size=n, dtype=np.int64)
    ref = format_reference(names, emb, labels)
    assert csvfile.format_csv_bytes(names, emb, labels) == ref
    monkeypatch.setattr(csvfile, "_VALUES_PER_BLOCK", 5 * dim + 3)
    blocks = list(csvfile.csv_bytes(names, emb, labels))
    assert len(blocks) == 1 + (n + 4) // 5
    assert b"".join(blocks) == ref
    quoted = csvfile.quote_fields(names, formulas=True)
    for threads in (1, 2, 4):
        assert (
            _core.format_pool_csv_rows(quoted, emb, labels, threads=threads)
            == ref[len(ref.split(b"\n", 1)[0]) + 1 :]
        )


def test_rejected_inputs() -> None:
    emb = np.zeros((2, 3), np.float32)
    labels = np.zeros(2, np.int64)
    with pytest.raises(TypeError, match="embeddings must be float32"):
        _core.format_pool_csv_rows(["a", "b"], emb.astype(np.float64), labels)
    with pytest.raises(TypeError, match="labels must be int64"):
        _core.format_pool_csv_rows(["a", "b"], emb, labels.astype(np.int32))
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.format_pool_csv_rows(["a", "b"], np.zeros((3, 2), np.float32).T, labels)
    with pytest.raises(ValueError, match="one entry per row"):
        _core.format_pool_csv_rows(["a"], emb, labels)
    with pytest.raises(TypeError, match="list of str"):
        _core.format_pool_csv_rows(["a", b"b"], emb, labels)  # type: ignore[list-item]
    with pytest.raises(UnicodeEncodeError):
        _core.format_pool_csv_rows(["a", "\udcff"], emb, labels)
    with pytest.raises(ValueError, match="2 filenames, 2 rows and 1 labels"):
        csvfile.format_csv_bytes(["a", "b"], emb, labels[:1])


def test_the_commit_path_writes_the_reference_file(tmp_path, rng: np.random.Generator) -> None:
    """A pool's datapool_latest.csv as a commit stages it (the local store's journal) is the
    reference writer's file, cmp-equal, and reads back to the same float32 values."""
    from datapool.pool import journal
    from datapool.pool.layout import CSV_NAME

    n, dim = 700, 17
    emb = rng.standard_normal((n, dim)).astype(np.float32)
    names = [f"img-{i}.png" for i in range(n)]
    labels = np.arange(n, dtype=np.int64)
    with journal.Transaction(tmp_path) as txn:
        txn.stage(CSV_NAME, csvfile.csv_bytes(names, emb, labels))
        txn.commit()
    data = (tmp_path / CSV_NAME).read_bytes()
    assert data == format_reference(names, emb, labels)
    back_names, back_emb, back_labels = csvfile.read_csv(tmp_path / CSV_NAME)
    assert back_names == names and np.array_equal(back_emb, emb)
    assert np.array_equal(back_labels, labels)
