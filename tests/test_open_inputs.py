"""The contract between a source's open_inputs and the run: a SourceError handed out for a file
skips that file; one raised while a file is read stops the run and leaves the pool untouched."""

from __future__ import annotations

import io

import pytest

import datapool
from datapool import runner as run_module
from datapool.errors import SourceError
from datapool.sources.local import LocalSource

# The pipeline lives in datapool.runner, so importing it never shadows the function datapool.run.
_run = datapool.run


class _DeniedMidRead(io.BytesIO):
    def read(self, size: int | None = -1) -> bytes:
        raise SourceError("S3 bucket 'b': AccessDenied (HTTP 403) while reading")


def _source_with(special: dict):
    class Source(LocalSource):
        def open_inputs(self, keys):
            for key in keys:
                if key in special:
                    yield key, special[key]()
                else:
                    yield key, str(self.root / key)

    return Source


def test_a_source_error_handed_out_skips_only_that_file(bucket, tmp_path, monkeypatch):
    src = _source_with({"img1.jpg": lambda: SourceError("the object vanished")})
    monkeypatch.setattr(run_module, "open_source", lambda spec, cfg=None: src(spec))
    r = _run(bucket, tmp_path / "pool", n_samples=4, progress=False)
    assert {"key": "img1.jpg", "reason": "the object vanished"} in r.skipped
    assert r.counts["files_ok"] == r.counts["processed"] - 4  # 3 broken files + img1.jpg


def test_a_source_error_raised_while_reading_stops_the_run(bucket, tmp_path, monkeypatch):
    handed: list[io.BytesIO] = []

    def denied() -> io.BytesIO:
        handed.append(_DeniedMidRead(b""))
        return handed[-1]

    src = _source_with({"img1.jpg": denied})
    monkeypatch.setattr(run_module, "open_source", lambda spec, cfg=None: src(spec))
    with pytest.raises(SourceError, match="AccessDenied"):
        _run(bucket, tmp_path / "pool", n_samples=4, progress=False)
    assert not (tmp_path / "pool" / "ledger.csv").exists()
    assert handed and handed[0].closed  # the run closed the file object it was given
