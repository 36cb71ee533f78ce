"""The C++ pool CSV reader (_core.read_pool_csv behind pool_csv.read_csv): round trips against
pandas' and Lightly's readers, every malformed case, and differential fuzzing against a pure-Python
reference (tests/pool_csv_reference.py)."""

from __future__ import annotations

import csv
import io

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datapool import _core
from datapool.errors import PoolCorruptError
from datapool.pool import csvfile as pool_csv

from .pool_csv_reference import (
    ReferenceError_,
    float32_exact,
    lightly_load_embeddings,
    parse_reference,
)

# Small chunks (with two threads) make the parallel path split files of a few bytes anywhere,
# inside quoted names included.
CHUNKINGS = [0, 1, 2, 3, 5, 8, 16, 64]
ODD_NAMES = [
    "a.jpg",
    "cam/clip-007-mp4.png",
    'we"ird, name.png',
    "new\nline.jpg",
    "crlf\r\nname.jpg",
    "lone\rcr.png",
    '"',
    ",",
    '""quoted""',
    "ünïcödé/日本.png",
    " lead and trail ",
]


def _bits(a):
    return np.ascontiguousarray(a).view(np.uint32)


def _parse(data, dim=-1, **kw):
    return _core.parse_pool_csv(data, dim=dim, **kw)


def _assert_matches_reference(data: bytes, chunk_bytes: int = 0) -> None:
    try:
        ref = parse_reference(data)
    except ReferenceError_:
        ref = None
    err: _core.PoolCsvError | None = None
    try:
        got = _parse(data, threads=2, chunk_bytes=chunk_bytes)
    except _core.PoolCsvError as e:
        err = e
    if err is not None:
        assert ref is None, f"C++ rejected a file the reference reads: {err}\n{data!r}"
        assert err.line >= 1
        assert str(err).startswith(f"line {err.line}")
        return
    assert ref is not None, f"C++ read a file the reference rejects: {data!r}"
    names, emb, labels = got
    assert names == ref.names
    assert emb.dtype == np.float32 and emb.shape == ref.emb.shape and emb.flags.c_contiguous
    np.testing.assert_array_equal(_bits(emb), _bits(ref.emb))
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, ref.labels)


def _random_pool(rng, n, d, names=None):
    if names is None:
        names = [f"img_{i:06d}.jpg" for i in range(n)]
    emb = rng.normal(size=(n, d)).astype(np.float32)
    labels = rng.integers(0, 50, size=n).astype(np.int64)
    return list(names), emb, labels


# --- round trips ---------------------------------------------------------------------------


def test_round_trip_odd_names_against_pandas_lightly_and_reference(tmp_path, rng):
    names, emb, labels = _random_pool(rng, len(ODD_NAMES), 7, ODD_NAMES)
    emb[0, :3] = [0.0, -0.0, np.float32(1e-45)]  # signed zero, smallest subnormal
    emb[1, :2] = [np.finfo(np.float32).max, -np.finfo(np.float32).tiny]
    text = pool_csv.format_csv(names, emb, labels)
    p = tmp_path / "datapool_latest.csv"
    p.write_text(text, newline="")

    got_names, got_emb, got_labels = pool_csv.read_csv(p)
    assert got_names == names
    np.testing.assert_array_equal(_bits(got_emb), _bits(emb))
    np.testing.assert_array_equal(got_labels, labels)

    ref = parse_reference(p.read_bytes())
    assert ref.names == names
    np.testing.assert_array_equal(_bits(ref.emb), _bits(emb))

    df = pd.read_csv(p, keep_default_na=False)
    assert list(df.columns) == pool_csv.header(7)
    assert df["filenames"].tolist() == names
    np.testing.assert_array_equal(df.iloc[:, 1:-1].to_numpy(np.float32), emb)
    np.testing.assert_array_equal(df["labels"].to_numpy(), labels)

    # Lightly's reader takes every name here (it is csv.reader underneath).
    l_emb, l_labels, l_names = lightly_load_embeddings(p)
    assert l_names == names and l_labels == labels.tolist()
    np.testing.assert_array_equal(l_emb, emb)


@pytest.mark.parametrize("lineterminator", ["\r\n", "\n"])
def test_reads_what_python_csv_writer_writes(tmp_path, rng, lineterminator):
    # Python's own writer: its default dialect ends lines with CRLF; it writes floats with repr.
    names, emb, labels = _random_pool(rng, 40, 6, [f"{i}{ODD_NAMES[i % 9]}" for i in range(40)])
    if lineterminator == "\n":  # csv.writer then leaves a lone CR bare: a broken file
        names = [n.replace("\r", "_") for n in names]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator=lineterminator)
    w.writerow(pool_csv.header(6))
    for name, row, label in zip(names, emb.tolist(), labels.tolist()):
        w.writerow([name, *row, label])  # repr of the float64 of each float32
    p = tmp_path / "python.csv"
    p.write_text(buf.getvalue(), newline="")
    got_names, got_emb, got_labels = pool_csv.read_csv(p)
    assert got_names == names
    np.testing.assert_array_equal(_bits(got_emb), _bits(emb))
    np.testing.assert_array_equal(got_labels, labels)
    l_emb, l_labels, l_names = lightly_load_embeddings(p)
    assert l_names == got_names and l_labels == got_labels.tolist()
    np.testing.assert_array_equal(l_emb, got_emb)


@pytest.mark.parametrize("n", [0, 1, 3, 257])
@pytest.mark.parametrize("d", [0, 1, 5])
def test_sizes_and_final_line_without_newline(tmp_path, rng, n, d):
    names, emb, labels = _random_pool(rng, n, d)
    text = pool_csv.format_csv(names, emb, labels)
    for variant in (text, text.rstrip("\n"), text.replace("\n", "\r\n")):
        data = variant.encode()
        for chunk in CHUNKINGS:
            got_names, got_emb, got_labels = _parse(data, threads=2, chunk_bytes=chunk)
            assert got_names == names
            assert got_emb.shape == (n, d)
            np.testing.assert_array_equal(_bits(got_emb), _bits(emb))
            np.testing.assert_array_equal(got_labels, labels)


def test_large_dimension_and_rows_split_across_threads(tmp_path, rng):
    names, emb, labels = _random_pool(rng, 3, 4096)
    p = tmp_path / "wide.csv"
    p.write_text(pool_csv.format_csv(names, emb, labels), newline="")
    got_names, got_emb, _ = pool_csv.read_csv(p)
    assert got_names == names
    np.testing.assert_array_equal(_bits(got_emb), _bits(emb))

    names, emb, labels = _random_pool(rng, 20_000, 16)
    names[7] = "a\nname\nwith\r\nline ends, and a comma"
    data = pool_csv.format_csv(names, emb, labels).encode()
    for chunk in (0, 997, 4096):
        got_names, got_emb, got_labels = _parse(data, threads=2, chunk_bytes=chunk)
        assert got_names == names
        np.testing.assert_array_equal(_bits(got_emb), _bits(emb))
        np.testing.assert_array_equal(got_labels, labels)


def test_quoted_line_ends_that_fool_every_chunk_guess():
    # Each name holds records' worth of line ends, so chunks guessed at line ends start inside
    # quotes; the parser must notice and still return the right rows.
    fake = "\n".join(f"x{i},1,2,0" for i in range(5))
    names = [f"{i}:{fake}" for i in range(30)]
    emb = np.arange(60, dtype=np.float32).reshape(30, 2)
    labels = np.zeros(30, np.int64)
    data = pool_csv.format_csv(names, emb, labels).encode()
    for chunk in CHUNKINGS:
        got_names, got_emb, _ = _parse(data, threads=2, chunk_bytes=chunk)
        assert got_names == names
        np.testing.assert_array_equal(got_emb, emb)


def test_float_parsing_is_exact_for_every_writer(rng):
    # Random float32 bit patterns (all finite ones: normals, subnormals, signed zeros), written
    # as %.9g (our writer), Python's float repr and numpy's shortest float32 repr.
    bits = rng.integers(0, 2**32, size=20_000, dtype=np.uint64).astype(np.uint32)
    vals = bits.view(np.float32)
    vals = vals[np.isfinite(vals)]
    extra = np.array(
        [0.0, -0.0, 1e-45, -1e-45, 1.1754942e-38, 3.4028235e38, -3.4028235e38], np.float32
    )
    vals = np.concatenate([vals, extra])
    for fmt in ("{:.9g}".format, lambda v: repr(float(v)), lambda v: str(v)):
        texts = [fmt(v) for v in vals]
        data = (
            "filenames,embedding_0,labels\n" + "".join(f"n{i},{t},0\n" for i, t in enumerate(texts))
        ).encode()
        _, got, _ = _parse(data)
        np.testing.assert_array_equal(_bits(got[:, 0]), _bits(vals))


def test_float_parsing_is_exact_next_to_float32_midpoints(rng):
    # Decimals within a few double ulps of a point halfway between two float32 values: where a
    # parser that goes through double can round the wrong way.
    x = rng.normal(size=3000).astype(np.float32) * np.float32(10.0) ** rng.integers(-40, 38, 3000)
    x = x[np.isfinite(x) & (x != 0)]
    y = np.nextafter(x, np.float32(np.inf))
    mid = (x.astype(np.float64) + y.astype(np.float64)) / 2  # exact in double
    texts = []
    for m in mid.tolist():
        for v in (m, np.nextafter(m, np.inf), np.nextafter(m, -np.inf)):
            texts += [repr(float(v)), f"{v:.17g}", f"{v:.16g}", f"{v:.12e}"]
    data = (
        "filenames,embedding_0,labels\n" + "".join(f"n{i},{t},0\n" for i, t in enumerate(texts))
    ).encode()
    _, got, _ = _parse(data)
    want = np.array([float32_exact(t) for t in texts], np.float32)
    np.testing.assert_array_equal(_bits(got[:, 0]), _bits(want))


@pytest.mark.parametrize(
    "text",
    [
        "1e-50",
        "-1e-50",
        "7e-46",
        "7.1e-46",
        "1.4e-45",
        "3.4028235e38",
        "3.40282356e38",
        "3.40282357e38",
        "1e39",
        "0e999999",
        "1e-99999999999999999999",
        "00001.5",
        "1.",
        ".5",
        "1.e5",
        "-.5e-3",
        "1e",
        "1e+",
        "+1",
        " 1",
        "1 ",
        "nan",
        "inf",
        "-inf",
        "infinity",
        "0x1p3",
        "1_0",
        "1,5",
        "",
        "-",
        ".",
        "e5",
        "1.5.2",
        "١",
        "1.00000005960464477539062499999999999999999999999",  # just below a float32 midpoint
        "1.000000059604644775390625",  # exactly a midpoint: ties to even -> 1.0
        "1.00000017881393432617187500000000000000000000001",
        # float32 midpoints the double fast path sees exactly: ties to even via from_chars
        "16777217",
        "16777219",
        "-16777217.0",
        "1.6777217e7",
        "167772170e-1",
        "33554434",
        "33554438",
        "0.5000000298023223876953125",
        "1.5e-39",
        "1.17549435e-38",
        "9.8e-46",
    ],
)
def test_float_grammar_and_rounding_match_the_reference(text):
    data = f'filenames,embedding_0,labels\na,"{text}",0\n'.encode()
    expected = float32_exact(text)
    if expected is None:
        with pytest.raises(_core.PoolCsvError, match=r"column embedding_0: .* is not a finite"):
            _parse(data)
    else:
        _, got, _ = _parse(data)
        assert _bits(got)[0, 0] == np.float32(expected).view(np.uint32)


# --- malformed files --------------------------------------------------------------------------

H2 = "filenames,embedding_0,embedding_1,labels\n"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "line 1: the file is empty"),
        ("\n", "line 1: header must be"),
        ("filenames,labels,embedding_0\n", "line 1: header must be"),
        ("filenames,embedding_1,labels\n", "line 1: header must be"),
        ('"filenames,embedding_0,labels\n', "line 1: bad quoting: the file ends inside"),
        (H2 + "a,1,2,0\nb,1,0\n", "line 3: expected 4 columns, got 3"),
        (H2 + "a,1,2,0\nb,1,2,0,\n", "line 3: expected 4 columns, got 5"),
        (H2 + "a,1,2,0\n\nb,1,2,0\n", "line 3: expected 4 columns, got 0"),
        (H2 + "a,1,2,0\r\n\r\n", "line 3: expected 4 columns, got 0"),
        (H2 + "a\n", "line 2: expected 4 columns, got 1"),
        (H2 + "a,1,2,0\nb,1,x2,0\n", "line 3, column embedding_1: 'x2' is not a finite number"),
        (H2 + "a,1,nan,0\n", "line 2, column embedding_1: 'nan'"),
        (H2 + "a,inf,1,0\n", "line 2, column embedding_0: 'inf'"),
        (H2 + "a,1e39,1,0\n", "line 2, column embedding_0: '1e39'"),
        (H2 + "a,,1,0\n", "line 2, column embedding_0: ''"),
        (H2 + "a, 1,1,0\n", "line 2, column embedding_0: ' 1'"),
        (
            H2 + "a,1,2,0\na,3,4,0\n",
            r"line 3, column filenames: duplicate filename 'a' \(first on line 2\)",
        ),
        (
            H2 + '"x\ny",1,2,0\nb,1,2,0\n"x\ny",3,4,0\n',
            r"line 5, column filenames: duplicate .* \(first on line 2\)",
        ),
        (H2 + ",1,2,0\n", "line 2, column filenames: empty filename"),
        (H2 + "a\x00b,1,2,0\n", "line 2, column filenames: .* NUL"),
        (
            "filenames,embedding_0,embedding_1,labels\n\xff,1,2,0\n",
            "line 2, column filenames: .* UTF-8",
        ),
        (H2 + "a,1,2,zero\n", "line 2, column labels: 'zero' is not a run index"),
        (H2 + "a,1,2,-1\n", "line 2, column labels: '-1'"),
        (H2 + "a,1,2,1.0\n", "line 2, column labels: '1.0'"),
        (H2 + "a,1,2,9223372036854775808\n", "line 2, column labels"),
        # Past UINT64_MAX: acc * 10 wrapped around and this read as 26290448384 (found by
        # test_fuzz_mutated_valid_pools).
        (H2 + "a,1,2,18446744100000000000\n", "line 2, column labels"),
        (H2 + "a,1,2,\n", "line 2, column labels: ''"),
        (H2 + 'a,1,2,0\n"b"c,1,2,0\n', "line 3: bad quoting: ',' or a line end expected"),
        (H2 + 'a,1,2,0\n"b,1,2,0\n', "line 3: bad quoting: the file ends inside a quoted field"),
        (H2 + 'a,1,"2"x,0\n', "line 2: bad quoting"),
        (H2 + '"a\nb",1,2,0\nc,1,2,0,9\n', "line 4: expected 4 columns"),
    ],
)
def test_malformed_file_names_file_line_and_column(tmp_path, text, match):
    data = text.encode("latin-1") if "\xff" in text else text.encode()
    p = tmp_path / "datapool_latest.csv"
    p.write_bytes(data)
    with pytest.raises(PoolCorruptError, match=match) as info:
        pool_csv.read_csv(p)
    assert str(info.value).startswith(f"{p}: line ")
    with pytest.raises(ReferenceError_):
        parse_reference(data)
    for chunk in CHUNKINGS:  # the same first defect however the file is split
        with pytest.raises(_core.PoolCsvError, match=match):
            _parse(data, threads=2, chunk_bytes=chunk)


def test_error_carries_line_and_column():
    with pytest.raises(_core.PoolCsvError) as info:
        _parse((H2 + "a,1,2,0\nb,1,2,0\nc,1,?,0\n").encode())
    assert info.value.line == 4 and info.value.column == "embedding_1"
    with pytest.raises(_core.PoolCsvError) as info:
        _parse((H2 + "a,1\n").encode())
    assert info.value.line == 2 and info.value.column is None


def test_first_defect_in_file_order_wins(rng):
    names, emb, labels = _random_pool(rng, 3000, 4)
    lines = pool_csv.format_csv(names, emb, labels).splitlines(keepends=True)
    lines[2500] = lines[2500].replace(",", ",x", 1)  # a bad number late
    lines[1200] = lines[100]  # a duplicate earlier
    data = "".join(lines).encode()
    for chunk in (0, 100, 5000):
        with pytest.raises(
            _core.PoolCsvError, match=r"line 1201, column filenames: duplicate .*first on line 101"
        ):
            _parse(data, threads=2, chunk_bytes=chunk)


def test_dimension_must_match_model(tmp_path):
    p = tmp_path / "datapool_latest.csv"
    p.write_text(H2 + "a,1,2,0\n")
    with pytest.raises(PoolCorruptError, match="2 embedding columns, but the pool's model gives 3"):
        pool_csv.read_csv(p, dim=3)
    assert pool_csv.read_csv(p, dim=2)[0] == ["a"]


def test_missing_file_and_bad_arguments(tmp_path):
    with pytest.raises(PoolCorruptError, match="the pool CSV is missing"):
        pool_csv.read_csv(tmp_path / "nope.csv")
    with pytest.raises(IsADirectoryError):
        _core.read_pool_csv(tmp_path)
    with pytest.raises(ValueError, match="threads must be >= 0"):
        _core.parse_pool_csv(b"", threads=-1)
    with pytest.raises(ValueError, match="dim must be >= 0"):
        _core.parse_pool_csv(b"", dim=-2)
    with pytest.raises(TypeError, match="path must be a str"):
        _core.read_pool_csv(b"/tmp/x.csv")


# --- differential fuzzing ---------------------------------------------------------------------

_BYTES = b'0123456789.,-+eE"\r\n ab\x00\xff\xc3\xa9nif_x'
_FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_names = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), min_size=1, max_size=8
) | st.sampled_from(ODD_NAMES)


@st.composite
def _valid_pools(draw):
    d = draw(st.integers(0, 3))
    names = draw(st.lists(_names, max_size=6, unique=True))
    vals = draw(
        st.lists(
            st.floats(width=32, allow_nan=False, allow_infinity=False),
            min_size=len(names) * d,
            max_size=len(names) * d,
        )
    )
    emb = np.array(vals, np.float32).reshape(len(names), d)
    labels = np.array(
        draw(st.lists(st.integers(0, 2**63 - 1), min_size=len(names), max_size=len(names))),
        np.int64,
    )
    if draw(st.booleans()):
        text = pool_csv.format_csv(names, emb, labels)
    else:  # Python's csv.writer with its default CRLF line ends
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(pool_csv.header(d))
        for name, row, label in zip(names, emb.tolist(), labels.tolist()):
            w.writerow([name, *(f"{v:.9g}" for v in row), label])
        text = buf.getvalue()
    if not draw(st.booleans()):
        text = text.rstrip("\n").rstrip("\r")
    return names, emb, labels, text.encode()


@_FUZZ
@given(_valid_pools(), st.sampled_from(CHUNKINGS))
def test_fuzz_valid_pools_round_trip(pool, chunk):
    names, emb, labels, data = pool
    got_names, got_emb, got_labels = _parse(data, threads=2, chunk_bytes=chunk)
    assert got_names == names
    np.testing.assert_array_equal(_bits(got_emb), _bits(emb))
    np.testing.assert_array_equal(got_labels, labels)
    _assert_matches_reference(data, chunk)


@_FUZZ
@given(st.binary(max_size=200), st.sampled_from(CHUNKINGS))
def test_fuzz_arbitrary_bytes(data, chunk):
    _assert_matches_reference(data, chunk)


@_FUZZ
@given(
    st.sampled_from(["filenames,labels\n", "filenames,embedding_0,labels\n", H2]),
    st.lists(st.sampled_from([bytes([b]) for b in _BYTES]), max_size=60),
    st.sampled_from(CHUNKINGS),
)
def test_fuzz_header_then_csv_alphabet(head, body, chunk):
    _assert_matches_reference(head.encode() + b"".join(body), chunk)


@_FUZZ
@given(
    _valid_pools(),
    st.lists(
        st.tuples(
            st.sampled_from(["insert", "delete", "replace"]),
            st.integers(0, 10**6),
            st.sampled_from([bytes([b]) for b in _BYTES]),
        ),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from(CHUNKINGS),
)
def test_fuzz_mutated_valid_pools(pool, edits, chunk):
    data = bytearray(pool[3])
    for op, pos, byte in edits:
        i = pos % (len(data) + 1)
        if op == "insert":
            data[i:i] = byte
        elif i < len(data):
            data[i : i + 1] = b"" if op == "delete" else byte
    _assert_matches_reference(bytes(data), chunk)


def test_a_range_of_records_parses_as_those_rows(tmp_path, rng):
    """read_pool_csv(body_start, body_end): the records in those bytes of the file, as the
    sidecar catches up with appended rows; the header is checked and errors name the file's
    lines; a start that is not a record's start is refused."""
    names = [f"img {i}.jpg" for i in range(40)]
    names[3] = 'line\nend, "quoted"'
    emb = rng.standard_normal((40, 5)).astype(np.float32)
    labels = np.arange(40, dtype=np.int64)
    data = pool_csv.format_csv(names, emb, labels).encode()
    path = tmp_path / "pool.csv"
    path.write_bytes(data)
    ends = [i + 1 for i, c in enumerate(data) if c == 10]  # line ends; row 3 spans two lines
    starts = [ends[0], *ends[1:4], *ends[5:]]  # each record's first byte (and the end)
    for a, b in [(1, 40), (0, 40), (4, 5), (10, 10), (39, 40), (5, 33)]:
        for chunk in (0, 7):
            got = _core.read_pool_csv(
                path, dim=5, body_start=starts[a], body_end=starts[b], chunk_bytes=chunk
            )
            assert got[0] == names[a:b]
            assert np.array_equal(got[1], emb[a:b]) and np.array_equal(got[2], labels[a:b])
    assert _core.read_pool_csv(path, body_start=starts[10])[0] == names[10:]  # to the end
    with pytest.raises(_core.PoolCsvError, match=r"line 1: 5 embedding columns, but .* gives 6"):
        _core.read_pool_csv(path, dim=6, body_start=starts[10])
    bad = data[: starts[20]] + b"x,1,2,3,4,5,6,0\n" + data[starts[21] :]
    path.write_bytes(bad)
    with pytest.raises(_core.PoolCsvError, match="line 23"):  # row 20 (row 3 spans 2 lines)
        _core.read_pool_csv(path, body_start=starts[10])
    for start in (starts[10] + 1, 5, len(bad) + 1):
        with pytest.raises(ValueError, match="body_start"):
            _core.read_pool_csv(path, body_start=start)
    with pytest.raises(ValueError, match="body_end"):
        _core.read_pool_csv(path, body_end=len(bad) + 1)
