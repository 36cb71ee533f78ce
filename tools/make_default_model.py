"""Generate datapool's default image-embedding model, ``datapool-features-v2.onnx``.

The model is *not* a learned network: no pretrained weights are involved (none can
be downloaded in datapool's offline setting).  It is a classic hand-crafted,
GIST/HOG-like multi-cue image descriptor expressed as a small ONNX graph built
only from fixed, documented filters, so it is deterministic, tiny and fast on CPU.

Input  ``input``:     float32 ``[N, 3, 128, 128]``, RGB, values in ``[0, 1]``
                      (pixel / 255, *no* mean/std normalisation).
Output ``embedding``: float32 ``[N, 510]``, L2-normalised.

The embedding concatenates four blocks.  Each block is L2-normalised on its own,
multiplied by a fixed weight (the squared weights sum to 1, i.e. they are each
block's share of the squared Euclidean distance), and the whole vector is
L2-normalised again:

====================  ====  ======  ==================================================
block                 dims  share   content
====================  ====  ======  ==================================================
colour layout           48   0.15   mean of luma / red-green / yellow-blue, 4x4 grid
colour contrast         48   0.10   std. dev. of the same channels, 4x4 grid (sqrt)
texture layout         384   0.35   Gabor amplitude, 6 orientations x 4 scales, 4x4 grid
global texture          30   0.40   Gabor amplitude, 6 orientations x 5 scales, whole image
====================  ====  ======  ==================================================

Texture: the luma image is filtered by a bank of quadrature (even/odd) Gabor
filters (9x9 taps, wavelength 4 px, sigma 2 px, 6 orientations) at every level of
a binomial image pyramid (128, 64, 32, 16, 8 pixels), i.e. at wavelengths of 4 to
64 pixels of the input.  The bank is evaluated at every other pixel (stride 2) on
all levels but the 8-pixel one.  The local amplitude ``sqrt(even**2 + odd**2)`` is
compressed with a square root (``energy ** 0.25``) so that a few strong edges do
not dominate, then averaged.  In the texture-layout block every grid cell is
divisively normalised (HOG-style) by its own norm plus 0.1 x the mean cell norm,
so each cell describes the *shape* of its local spectrum.

Colour statistics are taken on the image averaged over 2x2 pixels (64 x 64): the
means are exactly those of the full image, and the standard deviations leave out
only the variation inside each 2x2 block.

Grid pooling: every channel is averaged in an 8x8 grid of cells (16x16 input
pixels each), then each of the 4x4 output cells takes a separable (1, 3, 3, 1)/8
weighted average of 4x4 of those, i.e. a smooth 64x64-pixel window around its
32x32 cell (stride 32).  The overlap makes the descriptor tolerant to small
shifts and crops.

v2 differs from v1 only in the strides and the colour pooling above: it computes
the same descriptor at 2.5x less cost (see ``docs/default-model.md``).

See ``docs/default-model.md``.  Usage::

    python tools/make_default_model.py [OUTPUT_PATH]

The output is byte-for-byte reproducible: every filter tap is computed with
Python's ``math`` module and rounded to a multiple of 2**-20 (exact in float32)
before being stored, and the graph is assembled and serialised in a fixed order.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DEFAULT_OUTPUT: Path = (
    Path(__file__).resolve().parents[1]
    / "python"
    / "datapool"
    / "models"
    / "datapool-features-v2.onnx"
)

MODEL_NAME = "datapool-features-v2"
OPSET = 17
IR_VERSION = 8  # the IR version that goes with opset 17; readable by onnxruntime >= 1.13
IMAGE_SIZE = 128

# --- descriptor hyper-parameters (changing any of them changes the model) -----------
GRID = 4  # output grid: GRID x GRID cells
FINE_GRID = 2 * GRID  # intermediate grid, combined 4x4 / stride 2 into GRID
ORIENTATIONS = 6  # Gabor orientations over 0..180 degrees
SCALES_GLOBAL = 5  # pyramid levels used by the global texture block (128 .. 8 px)
SCALES_LAYOUT = 4  # pyramid levels used by the texture-layout block (128 .. 16 px)
GABOR_SIZE = 9  # taps per side of each Gabor kernel
GABOR_WAVELENGTH = 4.0  # pixels, at each pyramid level
GABOR_SIGMA = 2.0  # Gaussian envelope, pixels (about one octave of bandwidth)
# Output stride of the Gabor bank at each pyramid level (128, 64, 32, 16, 8 px).  The energy
# of a quadrature pair varies only at the scale of the envelope, so sampling it every other
# pixel before it is averaged over cells changes little (v1 used stride 1 everywhere: v2's
# distances correlate with v1's at 0.9999) and makes the model 2.5x cheaper.
GABOR_STRIDES = (2, 2, 2, 2, 1)
COLOUR_POOL = 2  # colour statistics are taken on the 2x2-averaged image (64 x 64)
CELL_NORM_FLOOR = 0.1  # texture-layout cells are divided by (|cell| + 0.1 * mean |cell|)
EPS = 1e-6  # noise floor / division guard (all-black and constant images stay finite)

# Share of the squared distance carried by each block (sums to 1).
BLOCK_SHARES: dict[str, float] = {
    "colour_layout": 0.15,
    "colour_contrast": 0.10,
    "texture_layout": 0.35,
    "texture_global": 0.40,
}

COLOUR_DIM = 3 * GRID * GRID
TEXTURE_LAYOUT_DIM = ORIENTATIONS * SCALES_LAYOUT * GRID * GRID
TEXTURE_GLOBAL_DIM = ORIENTATIONS * SCALES_GLOBAL
EMBEDDING_DIM = 2 * COLOUR_DIM + TEXTURE_LAYOUT_DIM + TEXTURE_GLOBAL_DIM  # 510

DESCRIPTION = (
    f"datapool-features-v2: hand-crafted {EMBEDDING_DIM}-d image descriptor (opponent-colour mean and "
    "std on a 4x4 grid + multi-scale Gabor texture energy on a 4x4 grid and globally, GIST/HOG-like); "
    "input RGB in [0,1], 128x128, no mean/std; output L2-normalised; deterministic, no learned "
    "weights, not semantic."
)

QUANTUM = 2.0**-20


def _q(values: Sequence[float] | Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Round to multiples of 2**-20 (exact in float32) so the file is byte-stable."""
    arr = np.asarray(values, dtype=np.float64)
    return (np.round(arr / QUANTUM) * QUANTUM).astype(np.float32)


def opponent_matrix() -> np.ndarray:
    """1x1 conv weights ``[3, 3, 1, 1]``: RGB -> (luma, red-green, yellow-blue)."""
    s2, s6 = math.sqrt(2.0), math.sqrt(6.0)
    rows = [
        [1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0],  # luma: mean of R, G, B
        [1.0 / s2, -1.0 / s2, 0.0],  # red-green: (R - G) / sqrt(2)
        [1.0 / s6, 1.0 / s6, -2.0 / s6],  # yellow-blue: (R + G - 2B) / sqrt(6)
    ]
    return _q(rows).reshape(3, 3, 1, 1)


def gabor_bank() -> np.ndarray:
    """Quadrature Gabor bank ``[2 * ORIENTATIONS, 1, k, k]`` ordered (even_0, odd_0, even_1, ...).

    Orientation ``o`` has its carrier along ``theta = pi * o / ORIENTATIONS``.  The even
    (cosine) kernel has its DC response removed, so flat regions give zero; every kernel
    is scaled to unit L2 norm.
    """
    k = GABOR_SIZE
    half = (k - 1) / 2.0
    kernels: list[list[float]] = []
    for o in range(ORIENTATIONS):
        theta = math.pi * o / ORIENTATIONS
        c, s = math.cos(theta), math.sin(theta)
        env: list[float] = []
        even: list[float] = []
        odd: list[float] = []
        for i in range(k):
            y = i - half
            for j in range(k):
                x = j - half
                u = x * c + y * s  # coordinate across the stripes
                e = math.exp(-(x * x + y * y) / (2.0 * GABOR_SIGMA**2))
                phase = 2.0 * math.pi * u / GABOR_WAVELENGTH
                env.append(e)
                even.append(e * math.cos(phase))
                odd.append(e * math.sin(phase))
        dc = sum(even) / sum(env)  # remove DC: subtract a multiple of the envelope
        even = [v - dc * w for v, w in zip(even, env)]
        for kern in (even, odd):
            norm = math.sqrt(sum(v * v for v in kern))
            kernels.append([v / norm for v in kern])
    return _q(kernels).reshape(2 * ORIENTATIONS, 1, k, k)


def pair_sum_matrix(channels: int) -> np.ndarray:
    """1x1 conv weights ``[channels // 2, channels, 1, 1]`` adding channels 2i and 2i+1."""
    w = np.zeros((channels // 2, channels, 1, 1), dtype=np.float32)
    for i in range(channels // 2):
        w[i, 2 * i, 0, 0] = 1.0
        w[i, 2 * i + 1, 0, 0] = 1.0
    return w


def binomial_4x4() -> np.ndarray:
    """Separable (1, 3, 3, 1)/8 x (1, 3, 3, 1)/8 kernel ``[1, 1, 4, 4]``."""
    b = [1.0, 3.0, 3.0, 1.0]
    return _q([[bi * bj / 64.0 for bj in b] for bi in b]).reshape(1, 1, 4, 4)


class _Graph:
    """Appends nodes and initialisers with unique, deterministic names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._names: set[str] = set()
        self._n = 0

    def const(self, name: str, arr: np.ndarray) -> str:
        if name in self._names:
            return name
        self._names.add(name)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def scalar(self, name: str, value: float) -> str:
        return self.const(name, _q([value]))

    def op(
        self, op_type: str, inputs: Sequence[str], out: str | None = None, **attrs: object
    ) -> str:
        self._n += 1
        out = out or f"t{self._n}_{op_type.lower()}"
        self.nodes.append(
            helper.make_node(op_type, list(inputs), [out], name=f"n{self._n}_{op_type}", **attrs)
        )
        return out

    def l2_normalise(self, x: str) -> str:
        """Row-wise ``x / (||x|| + eps)`` for ``[N, D]``."""
        norm = self.op("ReduceL2", [x], axes=[1], keepdims=1)  # opset 17: axes is an attribute
        return self.op("Div", [x, self.op("Add", [norm, "eps"])])

    def grid_pool(self, x: str, channels: int, size: int) -> str:
        """``[N, C, size, size]`` -> ``[N, C, GRID, GRID]`` with smooth overlapping cells."""
        cell = size // FINE_GRID
        fine = (
            x
            if cell == 1
            else self.op("AveragePool", [x], kernel_shape=[cell, cell], strides=[cell, cell])
        )
        w = self.const(f"w_grid_{channels}", np.tile(binomial_4x4(), (channels, 1, 1, 1)))
        return self.op("Conv", [fine, w], strides=[2, 2], pads=[1, 1, 1, 1], group=channels)


def build_model() -> onnx.ModelProto:
    """Build the ONNX model in memory (deterministically)."""
    g = _Graph()
    g.scalar("eps", EPS)

    # ---- colour: opponent channels, mean and standard deviation per grid cell ----------
    colour_size = IMAGE_SIZE // COLOUR_POOL
    small = g.op(
        "AveragePool", ["input"], kernel_shape=[COLOUR_POOL] * 2, strides=[COLOUR_POOL] * 2
    )
    opp = g.op("Conv", [small, g.const("w_opponent", opponent_matrix())])  # [N, 3, 64, 64]
    mean = g.grid_pool(opp, 3, colour_size)
    mean_sq = g.grid_pool(g.op("Mul", [opp, opp]), 3, colour_size)
    var = g.op("Relu", [g.op("Sub", [mean_sq, g.op("Mul", [mean, mean])])])
    colour_layout = g.l2_normalise(g.op("Flatten", [mean], axis=1))
    std = g.op("Sqrt", [g.op("Add", [g.op("Flatten", [var], axis=1), "eps"])])
    colour_contrast = g.l2_normalise(g.op("Sqrt", [std]))  # power-normalised std

    # ---- texture: Gabor amplitude on a luma pyramid --------------------------------------
    # Luma at full resolution, for the texture blocks: the first row of the opponent matrix.
    luma = g.op("Conv", ["input", g.const("w_luma", opponent_matrix()[:1])])  # [N, 1, 128, 128]
    w_gabor = g.const("w_gabor", gabor_bank())
    w_pairs = g.const("w_pairs", pair_sum_matrix(2 * ORIENTATIONS))
    w_down = g.const("w_down", binomial_4x4())
    gp = GABOR_SIZE // 2
    gabor_pads = g.const("pads_gabor", np.array([0, 0, gp, gp, 0, 0, gp, gp], dtype=np.int64))
    down_pads = g.const("pads_down", np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64))

    size = IMAGE_SIZE
    level = luma
    layout_parts: list[str] = []
    global_parts: list[str] = []
    for scale in range(SCALES_GLOBAL):
        if scale > 0:  # binomial anti-aliasing, then subsample by 2
            level = g.op(
                "Conv", [g.op("Pad", [level, down_pads], mode="reflect"), w_down], strides=[2, 2]
            )
            size //= 2
        stride = GABOR_STRIDES[scale]
        resp = g.op(
            "Conv",
            [g.op("Pad", [level, gabor_pads], mode="reflect"), w_gabor],
            strides=[stride, stride],
        )  # [N, 12, size / stride, size / stride]
        energy = g.op("Conv", [g.op("Mul", [resp, resp]), w_pairs])  # even^2 + odd^2: [N, 6, s, s]
        amp = g.op("Sqrt", [g.op("Sqrt", [g.op("Add", [energy, "eps"])])])  # sqrt(amplitude)
        global_parts.append(g.op("ReduceMean", [amp], axes=[2, 3], keepdims=1))
        if scale < SCALES_LAYOUT:
            layout_parts.append(g.grid_pool(amp, ORIENTATIONS, size // stride))

    tex = g.op("Sqrt", [g.op("Concat", layout_parts, axis=1)])  # [N, 24, 4, 4]
    cell_norm = g.op("ReduceL2", [tex], axes=[1], keepdims=1)  # [N, 1, 4, 4]
    mean_norm = g.op("ReduceMean", [cell_norm], axes=[2, 3], keepdims=1)  # [N, 1, 1, 1]
    denom = g.op(
        "Add",
        [
            g.op(
                "Add",
                [cell_norm, g.op("Mul", [mean_norm, g.scalar("cell_norm_floor", CELL_NORM_FLOOR)])],
            ),
            "eps",
        ],
    )
    texture_layout = g.l2_normalise(g.op("Flatten", [g.op("Div", [tex, denom])], axis=1))
    texture_global = g.l2_normalise(g.op("Flatten", [g.op("Concat", global_parts, axis=1)], axis=1))

    # ---- weighting and final normalisation ------------------------------------------------
    blocks = {
        "colour_layout": colour_layout,
        "colour_contrast": colour_contrast,
        "texture_layout": texture_layout,
        "texture_global": texture_global,
    }
    weighted = [
        g.op("Mul", [block, g.scalar(f"weight_{name}", math.sqrt(BLOCK_SHARES[name]))])
        for name, block in blocks.items()
    ]
    feat = g.op("Concat", weighted, axis=1)
    norm = g.op("ReduceL2", [feat], axes=[1], keepdims=1)
    g.op("Div", [feat, g.op("Add", [norm, "eps"])], out="embedding")

    graph = helper.make_graph(
        g.nodes,
        MODEL_NAME,
        [
            helper.make_tensor_value_info(
                "input", TensorProto.FLOAT, ["batch", 3, IMAGE_SIZE, IMAGE_SIZE]
            )
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", EMBEDDING_DIM])],
        initializer=g.inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="datapool",
        producer_version="2",
        doc_string=DESCRIPTION,
    )
    model.ir_version = IR_VERSION
    model.model_version = 2
    helper.set_model_props(
        model,
        {
            "datapool.mean": "0,0,0",
            "datapool.std": "1,1,1",
            "datapool.description": DESCRIPTION,
            "datapool.embedding_dim": str(EMBEDDING_DIM),
            # Measured with onnxruntime 1.32 on 2 vCPUs: ORT_ENABLE_ALL's layout transforms make
            # this small graph slower (12 vs 10 ms per batch of 32) and double its warm-up
            # (about 40 vs 20-30 ms); "extended" measured the same as "basic".
            "datapool.graph_optimization": "basic",
        },
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def model_bytes() -> bytes:
    """The serialised model, exactly as written to disk."""
    return build_model().SerializeToString(deterministic=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in {"-h", "--help"}:
        print(__doc__)
        return 0
    if len(args) > 1:
        print("usage: make_default_model.py [OUTPUT_PATH]", file=sys.stderr)
        return 2
    out = Path(args[0]) if args else DEFAULT_OUTPUT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(model_bytes())
    print(f"wrote {out} ({out.stat().st_size} bytes, embedding dim {EMBEDDING_DIM})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
