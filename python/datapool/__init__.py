"""datapool: grow a diverse training dataset step by step from a bucket of raw images and videos.

`import datapool` is light: numpy, onnxruntime, PyAV, pandas and matplotlib load only when the
function that needs them is first used, so the CLI starts fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from datapool.errors import (
    ConfigError,
    DatapoolError,
    DecodeError,
    ModelError,
    ModelMismatchError,
    OutputWriteError,
    PoolCorruptError,
    PoolLockedError,
    PoolWriteError,
    SourceError,
)

__version__ = "0.7.0"

if TYPE_CHECKING:
    from datapool.config import RunConfig
    from datapool.pool.contents import Pool
    from datapool.pool.merge import merge
    from datapool.pool.store import collect_garbage
    from datapool.runner import RunResult, run
    from datapool.select.fps import select_diverse

# Public name -> module that defines it, imported on first access (PEP 562).
_LAZY = {
    "RunConfig": "config",
    "Pool": "pool",
    "merge": "pool.merge",
    "collect_garbage": "pool.store",
    "RunResult": "runner",
    "run": "runner",
    "select_diverse": "select",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'datapool' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)  # the public API, not the imports and submodules behind it


__all__ = [
    "ConfigError",
    "DatapoolError",
    "DecodeError",
    "ModelError",
    "ModelMismatchError",
    "OutputWriteError",
    "Pool",
    "PoolCorruptError",
    "PoolLockedError",
    "PoolWriteError",
    "RunConfig",
    "RunResult",
    "SourceError",
    "__version__",
    "collect_garbage",
    "merge",
    "run",
    "select_diverse",
]
