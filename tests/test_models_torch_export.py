"""A user's own torch model that normalises its input, exported by torch itself
(ingest/graph_prefix.py): a small conv net wrapped in a module that normalises, exported with the
TorchScript exporter (`dynamo=False`, with and without constant folding) and the dynamo exporter
(with and without its optimiser), and embedded by datapool, whose rows must be torch's own output
on the pixels the wrapper takes. Skipped without torch; tests/test_models_graph_exports.py builds
the same first nodes with the onnx helper API, so the suite checks them without torch."""

from __future__ import annotations

import numpy as np
import pytest

from datapool.ingest.embed import IMAGENET_MEAN, IMAGENET_STD, Embedder, l2_normalize

torch = pytest.importorskip("torch", reason="exports a model with torch")
pytest.importorskip("onnx")

S = 16
EXPORTS = ("ts17", "ts13-nofold", "dynamo18", "dynamo18-nofold")


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.head = torch.nn.Linear(8, 6)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


class Wrapped(torch.nn.Module):
    """The net behind a normalisation: `kind` names it; pixels 255 or 1 it takes."""

    def __init__(self, kind):
        super().__init__()
        torch.manual_seed(0)
        self.kind, self.net = kind, Net()
        # (3,) buffers, viewed in forward (their names must not be a node's: "mean" clashes
        # with the net's ReduceMean in torch 2.13's dynamo exporter without its optimiser)
        self.register_buffer("pix_mean", torch.tensor(IMAGENET_MEAN))
        self.register_buffer("pix_std", torch.tensor(IMAGENET_STD))
        self.register_buffer("bgr_mean", torch.tensor(IMAGENET_MEAN[::-1]))
        self.register_buffer("bgr_std", torch.tensor(IMAGENET_STD[::-1]))

    def forward(self, x):
        if self.kind == "view":  # 0-1 pixels
            x = (x - self.pix_mean.view(1, 3, 1, 1)) / self.pix_std[None, :, None, None]
        elif self.kind == "tensors":  # 0-255 pixels, tensors made in forward
            mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD, dtype=x.dtype).view(1, 3, 1, 1)
            x = (x / 255 - mean) / std
        elif self.kind == "scalars":  # 0-1 pixels to -1..1
            x = x * 2 - 1
        elif self.kind == "channels_last":  # NHWC 0-1 pixels
            x = x.permute(0, 3, 1, 2)
            x = (x - self.pix_mean.view(1, 3, 1, 1)) / self.pix_std.view(1, 3, 1, 1)
        elif self.kind == "flip":  # 0-1 RGB pixels made BGR inside, normalised in B,G,R order
            x = x.flip(1)
            x = (x - self.bgr_mean.view(1, 3, 1, 1)) / self.bgr_std.view(1, 3, 1, 1)
        elif self.kind == "index":  # 0-255 RGB pixels made BGR inside, Caffe's B,G,R mean
            x = x[:, [2, 1, 0]] - self.bgr_mean.view(1, 3, 1, 1) * 255
        elif self.kind == "expand_as":  # 0-1 pixels, the constants expanded to x's shape
            mean, std = self.pix_mean.view(1, 3, 1, 1), self.pix_std.view(1, 3, 1, 1)
            x = (x - mean.expand_as(x)) / std.expand_as(x)
        elif self.kind == "addcmul":  # 0-1 pixels: -mean / std + x * (1 / std)
            mean, std = self.pix_mean.view(1, 3, 1, 1), self.pix_std.view(1, 3, 1, 1)
            x = torch.addcmul(-mean / std, x, 1 / std)
        elif self.kind == "half":  # float32 0-255 pixels cast to float16 inside
            x = x.half() / 255.0
        return self.net(x)


PIXELS = {
    "view": 1,
    "tensors": 255,
    "scalars": 1,
    "channels_last": 1,
    "flip": 1,
    "index": 255,
    "expand_as": 1,
    "addcmul": 1,
    "half": 255,
}


def export(kind, how, path):
    m = Wrapped(kind).eval()
    if kind == "half":
        m.net.half()
    shape = (2, S, S, 3) if kind == "channels_last" else (2, 3, S, S)
    x = torch.rand(shape) * PIXELS[kind]
    if how.startswith("ts"):
        torch.onnx.export(
            m,
            (x,),
            str(path),
            dynamo=False,
            opset_version=int(how[2:4]),
            do_constant_folding="nofold" not in how,
            input_names=["x"],
            dynamic_axes={"x": {0: "N"}},
        )
    else:
        torch.onnx.export(
            m,
            (x,),
            str(path),
            dynamo=True,
            opset_version=18,
            optimize="nofold" not in how,
            input_names=["x"],
            dynamic_shapes={"x": {0: torch.export.Dim("N")}},
        )
    return m


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every wrapper exported every way once for the module: {(kind, how): (path, module)}."""
    root = tmp_path_factory.mktemp("torch_exports")
    out = {}
    for kind in PIXELS:
        for how in EXPORTS:
            path = root / f"{kind}-{how}.onnx"
            out[kind, how] = path, export(kind, how, path)
    return out


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("how", EXPORTS)
@pytest.mark.parametrize("kind", list(PIXELS))
def test_a_torch_export_that_normalises_is_fed_the_pixels_it_takes(exported, kind, how):
    path, module = exported[kind, how]
    e = Embedder(path)
    frames = np.random.default_rng(0).integers(0, 256, (3, S, S, 3), dtype=np.uint8)
    pixels = frames.astype(np.float32) / (255 / PIXELS[kind])
    x = torch.from_numpy(pixels if kind == "channels_last" else pixels.transpose(0, 3, 1, 2))
    with torch.no_grad():
        ref = module(x.contiguous()).float().numpy()
    tol = 3e-3 if kind == "half" else 1e-4
    np.testing.assert_allclose(e.embed(frames), l2_normalize(ref), atol=tol)
    fed = "0-255" if PIXELS[kind] == 255 else "0-1"
    assert e.norm_source.startswith("graph: its first nodes (")
    assert e.norm_source.endswith(f"so it is fed {fed} pixels, not normalised again")
