"""Throughput of learned architectures through datapool's Embedder, exported from torch with
random weights (the same graphs as pretrained ones, so the same cost), against torch itself.

    PYTHONPATH=python python bench/bench_models.py            # needs torch (CPU); a few minutes
    PYTHONPATH=python python bench/bench_models.py --models resnet18,vit-s16 --repeats 3

Each model is written as torch's exporters write them (a ResNet with its head removed, a ResNet
trunk without its pooling, a ViT whose token output comes first), opened by datapool's Embedder
(which prints how it reads it), and timed on batches of 32 at 224x224 with datapool's session
settings, all cores. Check (the "same answer"): the Embedder's rows equal torch's pooled output,
L2-normalised, on the same packed batch (max abs difference below 1e-3).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        print("bench_models: skipped: torch is not installed (pip install torch)")
        sys.exit(0)
    return torch


def resnet(torch: Any, layers: list[int], bottleneck: bool, pool: bool) -> Any:
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, cin: int, width: int, stride: int) -> None:
            super().__init__()
            cout = width * (4 if bottleneck else 1)
            if bottleneck:
                convs = [(cin, width, 1, 1), (width, width, 3, stride), (width, cout, 1, 1)]
            else:
                convs = [(cin, width, 3, stride), (width, cout, 3, 1)]
            mods: list[Any] = []
            for i, (a, b, k, s) in enumerate(convs):
                mods += [nn.Conv2d(a, b, k, s, k // 2, bias=False), nn.BatchNorm2d(b)]
                if i < len(convs) - 1:
                    mods.append(nn.ReLU())
            self.body = nn.Sequential(*mods)
            self.skip = (
                nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                if stride != 1 or cin != cout
                else nn.Identity()
            )

        def forward(self, x: Any) -> Any:
            return torch.relu(self.body(x) + self.skip(x))

    mods: list[Any] = [
        nn.Conv2d(3, 64, 7, 2, 3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
    ]
    cin = 64
    for i, n in enumerate(layers):
        width = 64 * 2**i
        for j in range(n):
            mods.append(Block(cin, width, 2 if (j == 0 and i > 0) else 1))
            cin = width * (4 if bottleneck else 1)
    if pool:
        mods += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*mods)


def vit(torch: Any, dim: int = 384, depth: int = 12, heads: int = 6) -> Any:
    """ViT-S/16 at 224 (DINOv2-S/ViT-S size), written out so that it exports as plain ops."""
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.n1, self.n2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
            self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

        def forward(self, x: Any) -> Any:
            n, t, _ = x.shape
            q, k, v = self.qkv(self.n1(x)).reshape(n, t, 3, heads, -1).permute(2, 0, 3, 1, 4)
            a = torch.softmax(q @ k.transpose(-2, -1) / (dim // heads) ** 0.5, dim=-1)
            x = x + self.proj((a @ v).transpose(1, 2).reshape(n, t, dim))
            return x + self.mlp(self.n2(x))

    class ViT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.patch = nn.Conv2d(3, dim, 16, 16)
            self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
            self.pos = nn.Parameter(torch.randn(1, 197, dim) * 0.02)
            self.blocks = nn.Sequential(*[Block() for _ in range(depth)])
            self.norm = nn.LayerNorm(dim)

        def forward(self, x: Any) -> Any:
            t = self.patch(x).flatten(2).transpose(1, 2)
            t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], 1) + self.pos
            h = self.norm(self.blocks(t))
            return h, h[:, 0]  # (last_hidden_state, pooler_output), tokens first

    return ViT()


MODELS = {
    "resnet18": lambda t: (resnet(t, [2, 2, 2, 2], False, True), ["embedding"]),
    "resnet50": lambda t: (resnet(t, [3, 4, 6, 3], True, True), ["embedding"]),
    "resnet50-trunk": lambda t: (resnet(t, [3, 4, 6, 3], True, False), ["features"]),
    "vit-s16": lambda t: (vit(t), ["last_hidden_state", "pooler_output"]),
}


def export(torch: Any, name: str, folder: Path) -> tuple[Any, Path]:
    torch.manual_seed(0)
    model, outputs = MODELS[name](torch)
    model.eval()
    path = folder / f"{name}.onnx"
    axes = {"input": {0: "N"}, **{o: {0: "N"} for o in outputs}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, 224, 224),),
            str(path),
            input_names=["input"],
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    return model, path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32)
    a = ap.parse_args()
    torch = _torch()
    from datapool.ingest.embed import Embedder, l2_normalize

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models.split(","):
            model, path = export(torch, name, Path(tmp))
            emb = Embedder(path, 224)
            print(emb.inspection, flush=True)
            rng = np.random.default_rng(0)
            frames = [rng.integers(0, 256, (224, 224, 3), np.uint8) for _ in range(a.batch)]
            buf = np.empty((a.batch, 3, 224, 224), np.float32)
            emb.pack(frames, buf)
            got = emb.embed_packed(buf)
            with torch.no_grad():
                out = model(torch.from_numpy(buf))
                out = out[1] if isinstance(out, tuple) else out
                if out.ndim == 4:
                    out = out.mean((2, 3))
            diff = float(np.abs(got - l2_normalize(out.numpy())).max())
            assert diff < 1e-3, f"{name}: datapool and torch differ by {diff}"
            times, ttorch = [], []
            for _ in range(a.repeats):
                t = time.perf_counter()
                emb.embed_packed(buf)
                times.append(time.perf_counter() - t)
                with torch.no_grad():
                    t = time.perf_counter()
                    model(torch.from_numpy(buf))
                    ttorch.append(time.perf_counter() - t)
            rate = a.batch / statistics.median(times)
            trate = a.batch / statistics.median(ttorch)
            rows.append((name, emb.dim, rate, trate, diff))
    print(f"\n{'model':<16}{'dim':>6}{'datapool img/s':>16}{'torch img/s':>13}{'max diff':>10}")
    for name, dim, rate, trate, diff in rows:
        print(f"{name:<16}{dim:>6}{rate:>16.1f}{trate:>13.1f}{diff:>10.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
