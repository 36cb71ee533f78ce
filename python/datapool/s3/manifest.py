"""manifest.json of a pool in S3: the commit point, naming the blobs that hold each pool file.

    {"format_version": 2, "pool_format": 1, "min_reader_pool_format": 1,
     "written_by": "datapool 0.1.0", "generation": 7, "files": {
        "runs.json":           {"size": 4096, "parts": [
                                   {"blob": "p/blobs/<sha256>", "size": 4096,
                                    "pieces": [["<sha256>", 4096]]}]},
        "datapool_latest.csv": {"size": 9437184, "parts": [
                                   {"blob": "p/blobs/<id>", "size": 9437184,
                                    "pieces": [["<sha256>", 9388032], ["<sha256>", 49152]]}]},
        "history/20261124T101500Z-3-runs/ledger.csv": {...}, ...}}

A file is the concatenation of its parts, each an immutable object under `<prefix>blobs/`. A
part's `pieces` are the SHA-256 and length of consecutive byte ranges of it: one piece for a blob
written whole, one more for each run that appended to it on the server (s3/blobs.py). Every byte
read from the bucket is checked against its piece, and a copy that holds the first pieces of a
file needs only the bytes of the pieces after them (s3/cache.py).

A blob's name is its content's SHA-256 when it has one piece (as in format 1), and otherwise the
SHA-256 of its pieces list: either way the same bytes get the same name. Format 1 manifests
(`{"blob", "sha256", "size"}` per file) are read as files of one part of one piece.

`pool_format`, `min_reader_pool_format` and `written_by` are pool/format.py's record, as in
runs.json, checked before anything else in the manifest: a datapool refuses a pool in S3 that a
newer one wrote in a format it cannot read before it downloads a file of it (or, in `gc`, deletes
a blob the newer manifest may reference in a way it cannot read).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from datapool.errors import PoolCorruptError
from datapool.pool import format as pool_format

FORMAT_VERSION = 2
_READABLE = (1, 2)

Piece = tuple[str, int]  # (SHA-256 hex, length in bytes) of a byte range


def piece_of(data: bytes) -> Piece:
    return hashlib.sha256(data).hexdigest(), len(data)


def blob_name(pieces: tuple[Piece, ...]) -> str:
    """The name (under blobs/) of the blob made of these pieces: see the module docstring."""
    if len(pieces) == 1:
        return pieces[0][0]
    listing = json.dumps([list(p) for p in pieces], separators=(",", ":"))
    return hashlib.sha256(b"pieces:" + listing.encode()).hexdigest()


@dataclass(frozen=True)
class Part:
    blob: str  # the object's key in the bucket
    size: int
    pieces: tuple[Piece, ...]

    def to_json(self) -> dict[str, Any]:
        return {"blob": self.blob, "size": self.size, "pieces": [list(p) for p in self.pieces]}


@dataclass(frozen=True)
class FileEntry:
    """One pool file: its parts, in order."""

    parts: tuple[Part, ...]

    @property
    def size(self) -> int:
        return sum(p.size for p in self.parts)

    @property
    def pieces(self) -> tuple[Piece, ...]:
        return tuple(piece for part in self.parts for piece in part.pieces)

    def extends(self, other: FileEntry) -> bool:
        """Whether this file is `other` with bytes appended (its pieces begin with other's)."""
        mine, theirs = self.pieces, other.pieces
        return len(mine) > len(theirs) and mine[: len(theirs)] == theirs

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "parts": [p.to_json() for p in self.parts]}

    @classmethod
    def from_json(cls, obj: Any) -> FileEntry:
        """Raises KeyError, TypeError or ValueError on a malformed entry."""
        if "parts" not in obj:  # format 1: one blob named by its SHA-256
            return cls(
                (
                    Part(
                        str(obj["blob"]),
                        int(obj["size"]),
                        ((str(obj["sha256"]), int(obj["size"])),),
                    ),
                )
            )
        parts = []
        for p in obj["parts"]:
            pieces = tuple((str(h), int(n)) for h, n in p["pieces"])
            if sum(n for _, n in pieces) != int(p["size"]) or any(n < 0 for _, n in pieces):
                raise ValueError(f"the pieces of {p['blob']} do not add up to its size")
            parts.append(Part(str(p["blob"]), int(p["size"]), pieces))
        if not parts or sum(p.size for p in parts) != int(obj["size"]):
            raise ValueError("the parts do not add up to the file's size")
        return cls(tuple(parts))


@dataclass
class Manifest:
    generation: int = 0
    files: dict[str, FileEntry] = field(default_factory=dict)
    # The minimum reader the manifest recorded (pool/format.py; 0: none): a commit never lowers it.
    min_reader: int = 0

    def blobs(self) -> set[str]:
        """The keys of every blob this manifest references (history snapshots included)."""
        return {part.blob for entry in self.files.values() for part in entry.parts}

    def to_bytes(self) -> bytes:
        doc = {
            "format_version": FORMAT_VERSION,
            **pool_format.record(self.min_reader),
            "generation": self.generation,
            "files": {name: e.to_json() for name, e in sorted(self.files.items())},
        }
        return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def parse(cls, data: bytes, where: str) -> Manifest:
        """`where` names the manifest in the PoolCorruptError a malformed one raises."""
        try:
            doc = json.loads(data)
            written = pool_format.recorded(doc, where)  # before any other check
            version = doc.get("format_version")
            if version not in _READABLE:
                raise PoolCorruptError(
                    f"{where}: format_version {version!r} is not one this datapool reads "
                    f"({', '.join(map(str, _READABLE))}); upgrade datapool"
                )
            files = doc["files"]
            if not isinstance(files, dict):
                raise TypeError("files is not an object")
            entries = {str(k): FileEntry.from_json(v) for k, v in files.items()}
            return cls(int(doc["generation"]), entries, pool_format.min_reader_of(written))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise PoolCorruptError(f"{where}: not a datapool manifest: {e}") from None
