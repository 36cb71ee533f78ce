"""The fingerprint of the model that made a pool's embeddings: the pool records it, each run
checks its own against it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelFingerprint:
    """What identifies the embedding space of a pool: same fingerprint, comparable embeddings."""

    name: str
    sha256: str
    input_size: tuple[int, int]  # (height, width)
    output_dim: int

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sha256": self.sha256,
            "input_size": list(self.input_size),
            "output_dim": self.output_dim,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ModelFingerprint:
        return cls(
            name=str(d["name"]),
            sha256=str(d["sha256"]),
            input_size=(int(d["input_size"][0]), int(d["input_size"][1])),
            output_dim=int(d["output_dim"]),
        )

    def same_space(self, other: ModelFingerprint) -> bool:
        return (self.sha256, self.input_size, self.output_dim) == (
            other.sha256,
            other.input_size,
            other.output_dim,
        )

    def describe(self) -> str:
        h, w = self.input_size
        return f"{self.name} (sha256 {self.sha256[:12]}, input {h}x{w}, {self.output_dim}-d)"
