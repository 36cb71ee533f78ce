"""Export a Hugging Face vision model (transformers + torch, `pip install 'datapool[export]'`)
to the ONNX datapool reads: a dynamic batch, the model's own outputs in their order
(`last_hidden_state`, `pooler_output`; `image_embeds` for CLIP with projection), its
normalisation in the `datapool.mean`/`datapool.std` metadata and its preprocessor_config.json
beside it.

`datapool model get NAME` calls it for registry entries that name a transformers class in
`"export"` (the weights are fetched and checked like any other file first); `export_model` takes
a model already in memory, such as one made from a config with random weights.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from datapool.errors import ModelError
from datapool.ingest.preprocessor import normalisation_metadata

OUTPUTS = ("image_embeds", "last_hidden_state", "pooler_output")


def _libraries() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError:
        raise ModelError(
            "exporting a model needs torch and transformers: pip install 'datapool[export]' "
            "(or fetch a ready ONNX export with datapool model get)"
        ) from None
    return torch, transformers


def export_pretrained(folder: Path, cls_name: str, out: Path, onnx_name: str) -> Path:
    """Load the transformers class `cls_name` from the fetched files in `folder` and export it
    into `out` (with its preprocessor_config.json)."""
    _, transformers = _libraries()
    cls = getattr(transformers, cls_name, None)
    if cls is None:
        raise ModelError(f"transformers has no class {cls_name!r}; fix the registry entry")
    # No hub kernels: an export wants the plain torch modules (transformers 5 swaps in kernels
    # from the hub by default and fails without the `kernels` package).
    model = cls.from_pretrained(str(folder), use_kernels=False)
    pre = folder / "preprocessor_config.json"
    processor = json.loads(pre.read_text()) if pre.is_file() else None
    return export_model(model, out / onnx_name, processor)


def export_model(model: Any, path: Path, processor: dict[str, Any] | None = None) -> Path:
    """Write `model` (a transformers vision model) as ONNX at `path`, with `processor` (the
    preprocessor_config.json contents) beside it and its normalisation in the metadata."""
    torch, _ = _libraries()
    import onnx

    cfg = model.config
    cfg = getattr(cfg, "vision_config", cfg)
    size = int(getattr(cfg, "image_size", 224))
    model.eval()
    with torch.no_grad():
        probe = model(pixel_values=torch.zeros(1, 3, size, size))
    names = [n for n in probe.keys() if n in OUTPUTS and probe[n] is not None]
    if not names:
        raise ModelError(f"{type(model).__name__} gives none of {', '.join(OUTPUTS)}")

    class Wrapped(torch.nn.Module):  # type: ignore[name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, pixel_values: Any) -> Any:
            out = self.inner(pixel_values=pixel_values)
            return tuple(out[n] for n in names)

    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        # torch warns that the TorchScript exporter is the old one; the new one needs onnxscript
        # and gives the same graph for these models.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Wrapped(),
            (torch.zeros(1, 3, size, size),),
            str(path),
            input_names=["pixel_values"],
            output_names=names,
            dynamic_axes={"pixel_values": {0: "N"}, **{n: {0: "N"} for n in names}},
            opset_version=17,
            dynamo=False,
        )
    proto = onnx.load(str(path))
    meta = {"datapool.description": f"{type(model).__name__} exported by datapool"}
    if processor:
        # The processor's rescale and normalisation as datapool applies them (do_normalize false,
        # another rescale_factor ...), not image_mean/image_std as they stand.
        meta.update(normalisation_metadata(processor))
        (path.parent / "preprocessor_config.json").write_text(json.dumps(processor, indent=2))
    onnx.helper.set_model_props(proto, meta)
    onnx.save(proto, str(path))
    return path
