"""The C++ frame-batch packer `_core.pack_frames` against a float64 NumPy reference and PIL.

Tolerance (0..255 pixel units, before the affine step):
- against the float64 reference of the same filters (written here, independently of the C++):
  max abs difference <= REF_TOL = 1e-4. The packer computes in float32 (about 7 ulp of 255);
  measured worst cases are about 3e-5, including 5000:1 and 100000:1 shrinks of constant images.
- against PIL (`Image.resize`, BOX per shrinking axis, BILINEAR per growing axis, one axis at a
  time): PIL rounds to uint8 after each pass, so max abs difference <= PIL_TOL = 1.0 where PIL
  computes the same filter (integer shrink ratios, any enlargement). For fractional shrink ratios
  PIL's BOX gives each source pixel weight 0 or 1 (by where its centre falls) instead of its
  exact coverage; on smooth pictures (gradients, slow waves) the max abs difference stays within
  PIL_SMOOTH_TOL = 2.0 (measured up to 1.7), and on pictures with sharp edges only the mean abs
  difference is bounded, by PIL_MEAN_TOL = 0.5 (measured up to 0.43; single pixels at edges
  differ by up to ~30 there).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datapool import _core
from datapool.media import write_image

from .conftest import scene

REF_TOL = 1e-4
PIL_TOL = 1.0
PIL_SMOOTH_TOL = 2.0
PIL_MEAN_TOL = 0.5
ONE = np.ones(3, dtype=np.float32)
ZERO = np.zeros(3, dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# float64 reference: one dense (out x in) matrix per axis, applied with einsum.


def axis_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Row o holds the weights of output pixel o over the n_in source pixels."""
    m = np.zeros((n_out, n_in))
    if n_in == n_out:
        return np.eye(n_in)
    if n_in > n_out:  # area: exact fractional coverage of [o*s, (o+1)*s)
        s = n_in / n_out
        for o in range(n_out):
            a, b = o * s, (o + 1) * s
            for i in range(int(np.floor(a)), min(n_in, int(np.ceil(b)))):
                m[o, i] = max(0.0, min(i + 1.0, b) - max(float(i), a)) / s
    else:  # bilinear, half-pixel centres, clamped at the edges
        for o in range(n_out):
            x = (o + 0.5) * n_in / n_out - 0.5
            x0 = int(np.floor(x))
            f = x - x0
            m[o, min(max(x0, 0), n_in - 1)] += 1.0 - f
            m[o, min(max(x0 + 1, 0), n_in - 1)] += f
    return m


def as_rgb64(frame: np.ndarray) -> np.ndarray:
    f = frame.astype(np.float64)
    if f.ndim == 2:
        f = f[:, :, None]
    if f.shape[2] == 1:
        f = np.repeat(f, 3, axis=2)
    return f[:, :, :3]


def reference(frame: np.ndarray, oh: int, ow: int, scale=ONE, shift=ZERO) -> np.ndarray:
    """(3, oh, ow) float64: resize per axis, then resized * scale[c] + shift[c]."""
    f = as_rgb64(frame)
    my, mx = axis_matrix(f.shape[0], oh), axis_matrix(f.shape[1], ow)
    r = np.stack([my @ f[:, :, c] @ mx.T for c in range(3)])
    s = np.asarray(scale, np.float64)[:, None, None]
    t = np.asarray(shift, np.float64)[:, None, None]
    return r * s + t


def pack(frames, oh: int, ow: int, scale=ONE, shift=ZERO, threads: int = 1, n: int | None = None):
    out = np.full((len(frames) if n is None else n, 3, oh, ow), -7.0, dtype=np.float32)
    _core.pack_frames(frames, out, scale, shift, threads=threads)
    return out


def make_frame(rng: np.random.Generator, h: int, w: int, layout: str) -> np.ndarray:
    shape = {"gray2d": (h, w), "gray3d": (h, w, 1), "rgb": (h, w, 3), "rgba": (h, w, 4)}[layout]
    return rng.integers(0, 256, shape, dtype=np.uint8)


# ---------------------------------------------------------------------------------------------
# Agreement with the reference


CASES = [
    # (h, w, layout, oh, ow)
    (720, 1280, "rgb", 128, 128),  # 720p -> model input: area, fractional ratio
    (128, 128, "rgb", 128, 128),  # identity
    (1, 1, "rgb", 1, 1),
    (1, 1, "rgb", 128, 128),  # 1x1 in, grown
    (97, 61, "rgb", 1, 1),  # 1x1 out
    (1, 5000, "rgb", 128, 128),  # very wide
    (5000, 1, "gray2d", 64, 64),  # very tall
    (3, 1000, "rgb", 128, 7),
    (33, 17, "rgb", 9, 40),  # shrink y, grow x
    (17, 301, "rgba", 40, 9),  # grow y, shrink x
    (31, 17, "gray2d", 9, 40),
    (31, 17, "gray3d", 31, 40),  # identity y, grow x
    (7, 13, "rgba", 20, 5),
    (255, 257, "rgb", 128, 128),  # just under / over 2:1
    (256, 384, "rgb", 128, 128),  # integer ratios 2 and 3
]


@pytest.mark.parametrize(("h", "w", "layout", "oh", "ow"), CASES)
def test_matches_float64_reference(rng, h, w, layout, oh, ow):
    frames = [make_frame(rng, h, w, layout) for _ in range(3)]
    out = pack(frames, oh, ow)
    for i, f in enumerate(frames):
        np.testing.assert_allclose(out[i], reference(f, oh, ow), rtol=0, atol=REF_TOL)


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 160),
    w=st.integers(1, 160),
    oh=st.integers(1, 96),
    ow=st.integers(1, 96),
    layout=st.sampled_from(["gray2d", "gray3d", "rgb", "rgba"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_sizes_match_reference(h, w, oh, ow, layout, seed):
    frame = make_frame(np.random.default_rng(seed), h, w, layout)
    out = pack([frame], oh, ow)
    np.testing.assert_allclose(out[0], reference(frame, oh, ow), rtol=0, atol=REF_TOL)


@pytest.mark.parametrize(
    ("h", "w", "oh", "ow"), [(1, 5000, 1, 1), (5000, 1, 1, 1), (1, 100000, 1, 3)]
)
@pytest.mark.parametrize("value", [0, 1, 254, 255])
def test_long_shrinks_of_constant_frames_stay_exact(h, w, oh, ow, value):
    frame = np.full((h, w, 3), value, dtype=np.uint8)
    out = pack([frame], oh, ow)
    np.testing.assert_allclose(out, value, rtol=0, atol=REF_TOL)


def test_affine_step_per_channel(rng):
    frames = [make_frame(rng, 45, 77, "rgb"), make_frame(rng, 20, 20, "gray2d")]
    # The Embedder's fold of ImageNet mean/std: x / 255 normalised.
    std = np.array([0.229, 0.224, 0.225])
    mean = np.array([0.485, 0.456, 0.406])
    scale = (1.0 / (255.0 * std)).astype(np.float32)
    shift = (-mean / std).astype(np.float32)
    out = pack(frames, 32, 24, scale, shift)
    for i, f in enumerate(frames):
        atol = REF_TOL * float(scale.max()) + 1e-6
        np.testing.assert_allclose(out[i], reference(f, 32, 24, scale, shift), rtol=0, atol=atol)


def test_gray_is_replicated_and_alpha_dropped(rng):
    gray = make_frame(rng, 19, 23, "gray2d")
    out = pack([gray, gray[:, :, None], np.repeat(gray[:, :, None], 3, axis=2)], 10, 30)
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_array_equal(out[0, 0], out[0, 1])
    np.testing.assert_array_equal(out[0, 0], out[0, 2])
    np.testing.assert_allclose(out[0], out[2], rtol=0, atol=REF_TOL)

    rgba = make_frame(rng, 19, 23, "rgba")
    other_alpha = rgba.copy()
    other_alpha[:, :, 3] = 255 - other_alpha[:, :, 3]
    a, b, c = pack([rgba, other_alpha, np.ascontiguousarray(rgba[:, :, :3])], 10, 30)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_identity_size_is_exact(rng):
    frame = make_frame(rng, 37, 53, "rgb")
    out = pack([frame], 37, 53)
    np.testing.assert_array_equal(out[0], frame.transpose(2, 0, 1).astype(np.float32))


# ---------------------------------------------------------------------------------------------
# Buffer and threading contract


def test_pack_simd_is_reported():
    assert _core.PACK_SIMD in {"avx2", "scalar"}


def test_rows_past_the_frames_are_untouched(rng):
    frames = [make_frame(rng, 30, 40, "rgb") for _ in range(3)]
    out = np.full((7, 3, 16, 16), np.nan, dtype=np.float32)
    out[3:] = np.arange(4 * 3 * 16 * 16, dtype=np.float32).reshape(4, 3, 16, 16)
    tail = out[3:].copy()
    _core.pack_frames(frames, out, ONE, ZERO)
    assert np.isfinite(out[:3]).all()
    np.testing.assert_array_equal(out[3:], tail)


def test_a_4d_array_is_a_sequence_of_frames(rng):
    frames = [make_frame(rng, 30, 50, "rgb") for _ in range(3)]
    np.testing.assert_array_equal(pack(np.stack(frames), 20, 20), pack(frames, 20, 20))


def test_empty_batch_is_a_no_op():
    out = np.full((2, 3, 4, 4), 5.0, dtype=np.float32)
    _core.pack_frames([], out, ONE, ZERO)
    assert (out == 5.0).all()


def test_buffer_reused_across_batches(rng):
    out = np.empty((4, 3, 24, 24), dtype=np.float32)
    first = [make_frame(rng, 50, 60, "rgb") for _ in range(4)]
    second = [make_frame(rng, 10, 90, "rgba") for _ in range(4)]
    _core.pack_frames(first, out, ONE, ZERO)
    _core.pack_frames(second, out, ONE, ZERO)
    for i, f in enumerate(second):
        np.testing.assert_allclose(out[i], reference(f, 24, 24), rtol=0, atol=REF_TOL)


def test_many_threads_equal_one_thread(rng):
    sizes = [(720, 1280), (1, 1), (33, 17), (128, 128), (5, 900), (300, 2)] * 4
    layouts = ["rgb", "gray2d", "rgba", "gray3d"]
    frames = [make_frame(rng, h, w, layouts[i % 4]) for i, (h, w) in enumerate(sizes)]
    one = pack(frames, 64, 48, threads=1)
    for threads in (0, 2, 7, 64):
        np.testing.assert_array_equal(pack(frames, 64, 48, threads=threads), one)


def test_concurrent_calls_from_python_threads(rng):
    frames = [make_frame(rng, 200, 300, "rgb") for _ in range(8)]
    expected = pack(frames, 32, 32)
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                results.append(pack(frames, 32, 32, threads=2))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 15
    for r in results:
        np.testing.assert_array_equal(r, expected)


# ---------------------------------------------------------------------------------------------
# Strided input: rows read in place


def test_strided_rows_read_in_place(rng):
    big = make_frame(rng, 60, 90, "rgb")
    views = [big[5:40, 7:70], big[::-1], big[::2], big[10:11, :]]
    for v in views:
        assert not v.flags.c_contiguous or v.shape[0] == 1
        np.testing.assert_array_equal(pack([v], 21, 34), pack([np.ascontiguousarray(v)], 21, 34))
    row = np.broadcast_to(big[0], (25, 90, 3))  # row stride 0
    np.testing.assert_array_equal(pack([row], 5, 9), pack([np.ascontiguousarray(row)], 5, 9))


def test_padded_pyav_plane_view(tmp_path: Path, rng):
    """A JPEG decoded with PyAV, read through a view of its padded rgb24 plane (no copy)."""
    import av

    pic = rng.integers(0, 256, (50, 98, 3), dtype=np.uint8)
    path = write_image(tmp_path / "odd.jpg", pic)
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0)).reformat(format="rgb24")
    plane = frame.planes[0]
    h, w = frame.height, frame.width
    view = np.frombuffer(plane, np.uint8).reshape(h, plane.line_size)[:, : w * 3].reshape(h, w, 3)
    assert plane.line_size > w * 3  # really padded: this is the strided path
    rgb = frame.to_ndarray()
    np.testing.assert_array_equal(view, rgb)
    out = pack([view, rgb], 32, 32)
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_allclose(out[0], reference(rgb, 32, 32), rtol=0, atol=REF_TOL)


# ---------------------------------------------------------------------------------------------
# Against PIL


def pil_resize(rgb: np.ndarray, oh: int, ow: int) -> np.ndarray:
    """PIL one axis at a time: BOX where the axis shrinks, BILINEAR where it grows."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(rgb))
    w, h = img.size
    if ow != w:
        img = img.resize((ow, h), Image.Resampling.BOX if ow < w else Image.Resampling.BILINEAR)
    if oh != h:
        img = img.resize((ow, oh), Image.Resampling.BOX if oh < h else Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float64).transpose(2, 0, 1)


@pytest.mark.parametrize(
    ("h", "w", "oh", "ow"),
    [(256, 384, 128, 128), (90, 60, 30, 120), (7, 9, 63, 10), (1, 1, 5, 7), (40, 2, 8, 100)],
)
def test_matches_pil_where_pil_uses_the_same_filter(rng, h, w, oh, ow):
    # Integer shrink ratios (PIL BOX = exact area) and enlargements: noise, worst case.
    frame = make_frame(rng, h, w, "rgb")
    diff = np.abs(pack([frame], oh, ow)[0] - pil_resize(frame, oh, ow))
    assert diff.max() <= PIL_TOL


@pytest.mark.parametrize(
    ("h", "w", "oh", "ow"), [(720, 1280, 128, 128), (480, 640, 224, 224), (101, 57, 40, 90)]
)
def test_close_to_pil_on_smooth_pictures(h, w, oh, ow):
    # Fractional ratios: PIL's BOX is not exact area there; the two agree on smooth content.
    yy, xx = np.mgrid[0:h, 0:w]
    waves = 127.5 + 60 * np.sin(xx / 23.0)[..., None] * np.cos(yy / 31.0)[..., None] * [1, -1, 0.5]
    grad = np.stack([xx / w, yy / h, (xx + yy) / (w + h)], -1) * 255
    for smooth in (waves, grad):
        f = np.clip(smooth, 0, 255).astype(np.uint8)
        assert np.abs(pack([f], oh, ow)[0] - pil_resize(f, oh, ow)).max() <= PIL_SMOOTH_TOL
    edges = scene(1, h, w)  # solid boxes on a gradient
    assert np.abs(pack([edges], oh, ow)[0] - pil_resize(edges, oh, ow)).mean() <= PIL_MEAN_TOL


# ---------------------------------------------------------------------------------------------
# Rejected input


def good_out(n: int = 2) -> np.ndarray:
    return np.zeros((n, 3, 8, 8), dtype=np.float32)


FRAME = np.zeros((10, 12, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("frames", "error", "match"),
    [
        ([FRAME.astype(np.float32)], TypeError, r"frames\[0\] must be uint8.*np\.clip"),
        (
            [FRAME, FRAME.astype(np.int16)],
            TypeError,
            r"frames\[1\] must be uint8 \(0\.\.255\), got int16",
        ),
        ([[[1, 2, 3]]], TypeError, r"frames\[0\] must be a numpy uint8 array, got list"),
        (
            [np.zeros((10, 12, 2), np.uint8)],
            ValueError,
            r"frames\[0\] must be \(H, W\).*got shape \(10, 12, 2\)",
        ),
        ([np.zeros((2, 10, 12, 3), np.uint8)], ValueError, r"got shape \(2, 10, 12, 3\)"),
        ([np.zeros(12, np.uint8)], ValueError, r"got shape \(12,\)"),
        ([np.zeros((0, 12, 3), np.uint8)], ValueError, r"frames\[0\] is empty.*drop it"),
        ([np.zeros((10, 0), np.uint8)], ValueError, r"frames\[0\] is empty"),
        (
            [np.zeros((10, 24, 3), np.uint8)[:, ::2]],
            ValueError,
            r"rows must be contiguous.*np\.ascontiguousarray",
        ),
        (
            [np.zeros((10, 12, 6), np.uint8)[:, :, ::2]],
            ValueError,
            r"np\.ascontiguousarray\(frames\[0\]\)",
        ),
        (FRAME, ValueError, r"wrap a single frame in a list"),
    ],
)
def test_rejects_bad_frames(frames, error, match):
    out = good_out()
    with pytest.raises(error, match=match):
        _core.pack_frames(frames, out, ONE, ZERO)
    assert (out == 0).all()


@pytest.mark.parametrize(
    ("out", "error", "match"),
    [
        (np.zeros((2, 3, 8, 8), np.float64), TypeError, r"out must be float32, got float64"),
        (
            np.zeros((2, 8, 8, 3), np.float32),
            ValueError,
            r"out must be \(N, 3, H, W\).*\(2, 8, 8, 3\)",
        ),
        (np.zeros((3, 8, 8), np.float32), ValueError, r"out must be \(N, 3, H, W\)"),
        (np.zeros((2, 3, 0, 8), np.float32), ValueError, r"H, W >= 1"),
        (np.zeros((2, 3, 8, 16), np.float32)[..., ::2], ValueError, r"out must be C-contiguous"),
        (np.zeros((1, 3, 8, 8), np.float32), ValueError, r"out holds 1 frames but 2 were given"),
    ],
)
def test_rejects_bad_out(out, error, match):
    with pytest.raises(error, match=match):
        _core.pack_frames([FRAME, FRAME], out, ONE, ZERO)


def test_rejects_read_only_out():
    out = good_out()
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        _core.pack_frames([FRAME], out, ONE, ZERO)


@pytest.mark.parametrize(
    ("scale", "shift", "error", "match"),
    [
        (np.ones(3), ZERO, TypeError, r"scale must be float32, got float64"),
        (ONE, np.zeros(3, np.int32), TypeError, r"shift must be float32, got int32"),
        (np.ones(4, np.float32), ZERO, ValueError, r"scale must have shape \(3,\).*got \(4,\)"),
        (ONE, np.zeros((1, 3), np.float32), ValueError, r"shift must have shape \(3,\)"),
    ],
)
def test_rejects_bad_scale_and_shift(scale, shift, error, match):
    with pytest.raises(error, match=match):
        _core.pack_frames([FRAME], good_out(), scale, shift)


def test_rejects_negative_threads():
    with pytest.raises(ValueError, match="threads must be >= 0"):
        _core.pack_frames([FRAME], good_out(), ONE, ZERO, threads=-1)


def test_strided_scale_is_read_correctly(rng):
    frame = make_frame(rng, 9, 9, "rgb")
    scale = np.array([2, 0, 3, 0, 4, 0], np.float32)[::2]
    shift = np.array([1, 9, 2, 9, 3, 9], np.float32)[::2]
    out = pack([frame], 9, 9, scale, shift)
    np.testing.assert_allclose(
        out[0], reference(frame, 9, 9, [2, 3, 4], [1, 2, 3]), rtol=0, atol=1e-3
    )
