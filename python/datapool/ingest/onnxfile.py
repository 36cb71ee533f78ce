"""An ONNX model file as bytes on disk: where the bundled one is, its SHA-256, and its metadata
read without onnx or onnxruntime."""

from __future__ import annotations

import hashlib
import os
from importlib import resources
from pathlib import Path
from typing import Any

DEFAULT_MODEL_NAME = "datapool-features-v2.onnx"


def default_model_path() -> Path:
    return Path(str(resources.files("datapool") / "models" / DEFAULT_MODEL_NAME))


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def onnx_metadata(path: Path) -> dict[str, str] | None:
    """The metadata_props of an ONNX model file, read without onnx or onnxruntime; None where the
    file is not a protobuf this reader follows (onnxruntime then says what is wrong with it).

    A ModelProto's metadata_props is its field 14, each entry a message of key (1) and value
    (2). The top-level fields are walked and the others, the graph among them, skipped by their
    lengths, so a large model costs a few reads, not a parse.
    """
    props: dict[str, str] = {}
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            while f.tell() < size:
                field, wire = _split_tag(_varint(f))
                if wire == 2:
                    n = _varint(f)
                    if field == 14:
                        entry = _entry(f.read(n))
                        props[entry.get(1, "")] = entry.get(2, "")
                    else:
                        f.seek(n, os.SEEK_CUR)
                elif not _skip_scalar(f, wire):
                    return None
            if f.tell() != size:
                return None
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return props


def _varint(f: Any) -> int:
    value = shift = 0
    while True:
        b = f.read(1)
        if not b or shift > 63:
            raise ValueError("truncated or overlong varint")
        value |= (b[0] & 0x7F) << shift
        if b[0] < 0x80:
            return value
        shift += 7


def _split_tag(tag: int) -> tuple[int, int]:
    return tag >> 3, tag & 7


def _skip_scalar(f: Any, wire: int) -> bool:
    """Skip a varint (wire type 0), fixed64 (1) or fixed32 (5); False for any other type."""
    if wire == 0:
        _varint(f)
    elif wire in (1, 5):
        f.seek(8 if wire == 1 else 4, os.SEEK_CUR)
    else:
        return False
    return True


def _entry(data: bytes) -> dict[int, str]:
    """The string fields of a small message (a StringStringEntryProto)."""
    import io

    f, out = io.BytesIO(data), {}
    while f.tell() < len(data):
        field, wire = _split_tag(_varint(f))
        if wire == 2:
            n = _varint(f)
            value = f.read(n)
            if len(value) != n:
                raise ValueError("truncated field")
            out[field] = value.decode("utf-8")
        elif not _skip_scalar(f, wire):
            raise ValueError(f"wire type {wire}")
    return out


def external_data_files(path: Path) -> list[str]:
    """The external-data file names (relative to the model's folder) that the model's
    initializers point to, in sorted order, read without onnx: ModelProto.graph (7) ->
    GraphProto.initializer (5) -> TensorProto.external_data (13) entries with key "location".
    Fields are skipped by their lengths, so inline weights cost a seek, not a read. An empty
    list where the file is not a protobuf this reader follows (onnxruntime then says why)."""
    found: set[str] = set()
    try:
        with open(path, "rb") as f:
            for field2, start2, n2 in _graph_fields(f):
                if field2 != 5:
                    continue
                for field3, start3, n3 in _fields(f, start2, start2 + n2):
                    if field3 == 13:
                        f.seek(start3)
                        entry = _entry(f.read(n3))
                        if entry.get(1) == "location" and entry.get(2):
                            found.add(entry[2])
    except (OSError, ValueError, UnicodeDecodeError):
        return []
    return sorted(found)


def _graph_fields(f: Any) -> Any:
    """(field, offset, length) of each length-delimited field of the model file's main graph
    (ModelProto.graph, field 7): its nodes (1), initializers (5), inputs (11), ..."""
    size = os.fstat(f.fileno()).st_size
    for field, start, n in _fields(f, 0, size):
        if field == 7:
            yield from _fields(f, start, start + n)


def _fields(f: Any, start: int, end: int) -> Any:
    """(field, offset, length) of each length-delimited field of the message at f[start:end];
    scalar fields are skipped. The caller may move the file position between items."""
    pos = start
    while pos < end:
        f.seek(pos)
        field, wire = _split_tag(_varint(f))
        if wire == 2:
            n = _varint(f)
            offset = f.tell()
            if offset + n > end:
                raise ValueError("field runs past its message")
            pos = offset + n
            yield field, offset, n
        elif _skip_scalar(f, wire):
            pos = f.tell()
        else:
            raise ValueError(f"wire type {wire}")


# What a file that onnxruntime cannot parse is, by its first bytes, and what to do about it.
_NOT_ONNX = (
    (
        b"version https://git-lfs",
        "is a Git LFS pointer, not the model: fetch the file itself (`git lfs pull` in the "
        "clone, or download it)",
    ),
    (
        b"PK\x03\x04",
        "is a zip archive (a PyTorch .pt/.pth checkpoint?), not ONNX: export the model with "
        "torch.onnx.export",
    ),
    (b"\x80", "is a pickle (a PyTorch checkpoint?), not ONNX: export it with torch.onnx.export"),
    (b"\x89HDF", "is an HDF5 file (a Keras .h5?), not ONNX: convert it with tf2onnx"),
    (b"<", "is a web page or XML, not ONNX (a download that got an error or sign-in page?)"),
    (b"{", "is JSON, not ONNX (a config file?)"),
)


def not_onnx(path: Path) -> str:
    """Why the file at `path` cannot be an ONNX model, judged by its first bytes ("is empty",
    "is a Git LFS pointer ..."), with what to do; "" where it may be one."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return ""
    if not head:
        return "is empty (an interrupted download?)"
    for magic, why in _NOT_ONNX:
        if head.lstrip(b" \t\r\n\xef\xbb\xbf").startswith(magic):
            return why
    if head[4:8] == b"TFL3":
        return "is a TensorFlow Lite model, not ONNX: convert it with tf2onnx (--tflite)"
    n = int.from_bytes(head[:8], "little")
    if 0 < n < 1 << 27 and head[8:10] == b'{"':
        return "is a safetensors file (weights without a graph), not ONNX: export the model"
    return ""


# Graph nodes and constants, read without onnx: enough of a model's first nodes to see what they
# do to its image input (ingest/graph_prefix.py). Initializers above this size are skipped
# unread: a per-channel mean or std is a few numbers, never kilobytes.
_SMALL_TENSOR = 4096


def graph_nodes(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]] | None:
    """The nodes of a model's main graph in order, each {"op", "inputs", "outputs", "attrs"}
    (attrs: name -> int, float, list of ints or floats, or a numpy array for a tensor), and its
    small constants by name (initializers and Constant nodes' values, as numpy arrays); None
    where the file is not a protobuf this reader follows. ModelProto.graph (7) ->
    GraphProto.node (1) / initializer (5)."""
    nodes: list[dict[str, Any]] = []
    consts: dict[str, Any] = {}
    try:
        with open(path, "rb") as f:
            for field2, start2, n2 in _graph_fields(f):
                if field2 == 1:
                    f.seek(start2)
                    nodes.append(_node(f.read(n2)))
                elif field2 == 5 and n2 <= _SMALL_TENSOR:
                    f.seek(start2)
                    name, value = _tensor(f.read(n2), path.parent)
                    if name and value is not None:
                        consts[name] = value
    except (OSError, ValueError, UnicodeDecodeError, IndexError):
        return None
    import numpy as np

    for node in nodes:
        if node["op"] != "Constant" or not node["outputs"]:
            continue
        # A tensor, or one number or a list (torch's dynamo exporter writes value_ints)
        for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
            value = node["attrs"].get(key)
            if value is not None:
                consts[node["outputs"][0]] = np.asarray(value, np.float64)
                break
    return nodes, consts


def _message(data: bytes) -> list[tuple[int, int, Any]]:
    """(field, wire type, value) of each field of a small message: an int for a varint, bytes
    for a length-delimited field or a fixed32/fixed64."""
    import io

    f = io.BytesIO(data)
    out: list[tuple[int, int, Any]] = []
    while f.tell() < len(data):
        field, wire = _split_tag(_varint(f))
        if wire == 0:
            out.append((field, wire, _varint(f)))
        elif wire in (1, 2, 5):
            n = _varint(f) if wire == 2 else 8 if wire == 1 else 4
            value = f.read(n)
            if len(value) != n:
                raise ValueError("truncated field")
            out.append((field, wire, value))
        else:
            raise ValueError(f"wire type {wire}")
    return out


def _node(data: bytes) -> dict[str, Any]:
    """A NodeProto: input (1), output (2), op_type (4), attribute (5), domain (7)."""
    node: dict[str, Any] = {"op": "", "inputs": [], "outputs": [], "attrs": {}, "domain": ""}
    for field, _, value in _message(data):
        if field == 1:
            node["inputs"].append(value.decode("utf-8"))
        elif field == 2:
            node["outputs"].append(value.decode("utf-8"))
        elif field == 4:
            node["op"] = value.decode("utf-8")
        elif field == 7:
            node["domain"] = value.decode("utf-8")
        elif field == 5:
            name, attr = _attribute(value)
            node["attrs"][name] = attr
    return node


def _attribute(data: bytes) -> tuple[str, Any]:
    """An AttributeProto's name (1) and value: f (2), i (3), s (4, as bytes), t (5), floats (7),
    ints (8)."""
    import numpy as np

    name = ""
    value: Any = None
    floats: list[float] = []
    ints: list[int] = []
    for field, wire, v in _message(data):
        if field == 1:
            name = v.decode("utf-8")
        elif field == 2 and wire == 5:
            value = float(np.frombuffer(v, "<f4")[0])
        elif field == 3 and wire == 0:
            value = _signed(v)
        elif field == 4 and wire == 2:
            value = bytes(v)
        elif field == 5 and wire == 2:
            value = _tensor(v)[1]
        elif field == 7:
            floats += np.frombuffer(v, "<f4").tolist() if wire in (2, 5) else []
        elif field == 8:
            ints += [_signed(x) for x in _varints(v)] if wire == 2 else [_signed(v)]
    return name, value if value is not None else (floats or ints or None)


def _external_bytes(
    folder: Path, external: dict[str, str], dims: list[int], dtype: str
) -> bytes | None:
    """A small tensor's bytes from its external-data file in the model's folder (a mean saved
    with size_threshold=0); None where it is large, outside the folder, or cannot be read."""
    import numpy as np

    count = int(np.prod(dims)) if dims else 1
    n = count * np.dtype(dtype).itemsize
    location = external.get("location", "")
    try:
        offset = int(external.get("offset") or 0)
        if int(external.get("length") or n) != n or n > _SMALL_TENSOR or not location:
            return None
        file = (folder / location).resolve()
        if not file.is_relative_to(folder.resolve()):
            return None
        with open(file, "rb") as f:
            f.seek(offset)
            raw = f.read(n)
    except (OSError, ValueError):
        return None
    return raw if len(raw) == n else None


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _varints(data: bytes) -> list[int]:
    import io

    f, out = io.BytesIO(data), []
    while f.tell() < len(data):
        out.append(_varint(f))
    return out


# TensorProto data types datapool reads: FLOAT, INT32, INT64, FLOAT16, DOUBLE.
_TENSOR_DTYPES = {1: "<f4", 6: "<i4", 7: "<i8", 10: "<f2", 11: "<f8"}


def _tensor(data: bytes, folder: Path | None = None) -> tuple[str, Any]:
    """A TensorProto's name (8) and value as a numpy array (None where it is of another type,
    or its data lives in an external file and `folder`, the model's, is not given): dims (1),
    data_type (2), float_data (4), int32_data (5), int64_data (7), raw_data (9),
    double_data (10), external_data (13), data_location (14)."""
    import numpy as np

    name, dtype, raw = "", 0, None
    dims: list[int] = []
    values: list[Any] = []
    external: dict[str, str] = {}
    is_external = False
    for field, wire, v in _message(data):
        if field == 13 and wire == 2:
            entry = _entry(v)
            external[entry.get(1, "")] = entry.get(2, "")
            continue
        if field == 14 and v == 1:  # data_location EXTERNAL
            is_external = True
            continue
        if field == 1:
            dims += _varints(v) if wire == 2 else [v]
        elif field == 2:
            dtype = v
        elif field == 8:
            name = v.decode("utf-8")
        elif field == 9:
            raw = v
        elif field == 4:
            values += np.frombuffer(v, "<f4").tolist() if wire in (2, 5) else []
        elif field == 10:
            values += np.frombuffer(v, "<f8").tolist() if wire in (1, 2) else []
        elif field in (5, 7):
            values += [_signed(x) for x in _varints(v)] if wire == 2 else [_signed(v)]
    if dtype not in _TENSOR_DTYPES:
        return name, None
    if is_external:
        if folder is None:
            return name, None
        raw = _external_bytes(folder, external, dims, _TENSOR_DTYPES[dtype])
        if raw is None:
            return name, None
    count = int(np.prod(dims)) if dims else 1
    if raw is not None:
        array = np.frombuffer(raw, _TENSOR_DTYPES[dtype])
    elif dtype == 10:  # float16 values are kept as their bits in int32_data
        array = np.asarray(values, np.uint16).view(np.float16)
    else:
        array = np.asarray(values, _TENSOR_DTYPES[dtype])
    if array.size != count:
        return name, None
    return name, array.reshape(dims).astype(np.float64)
