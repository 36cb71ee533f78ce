"""`datapool model get NAME --pool s3://...`: the weights a pool in S3 was made with, fetched by
the pool (tests/test_models_hub.py's hub on 127.0.0.1, the pool on the moto server of
tests/_s3.py)."""

from __future__ import annotations

import pytest

from datapool.cli import main
from datapool.ingest import model_hub

pytest.importorskip("huggingface_hub", reason="datapool model get needs the hub extra")
pytest.importorskip("onnx")

from . import test_models_hub
from ._s3 import S3_FIXTURES
from .test_models_hub import COMMIT, tiny_pool_then_main_moves

moto_endpoint, s3_env, s3, new_bucket = S3_FIXTURES
hub = test_models_hub.hub


def test_model_get_by_an_s3_pool_fetches_the_weights_it_was_made_with(
    hub, s3_env, new_bucket, tmp_path, make_media, monkeypatch, capsys
):
    """On another machine (an empty model cache) a run on a pool in S3 made with `tiny` names
    `datapool model get tiny --pool s3://...`, which reads the pool's model.json through the
    S3 store and fetches that commit, checked against the pool's SHA-256; the run then goes."""
    pool = f"s3://{new_bucket()}/pool"
    args, _ = tiny_pool_then_main_moves(tmp_path, make_media, pool)
    monkeypatch.setenv(model_hub.CACHE_ENV, str(tmp_path / "other-machine"))
    capsys.readouterr()
    assert main(args) == 6
    err = capsys.readouterr().err
    assert f"datapool model get tiny --pool {pool}" in err, err
    assert main(["model", "get", "tiny", "--pool", pool]) == 0
    out = capsys.readouterr().out
    assert f"from commit {COMMIT}, the .onnx checked against the SHA-256 pool {pool}" in out
    assert model_hub.cached_models()["tiny"]["commit"] == COMMIT
    assert main(args) == 0


def test_model_get_by_an_s3_pool_on_an_endpoint_given_by_flag(
    hub, s3_env, new_bucket, tmp_path, make_media, monkeypatch, capsys
):
    """A pool on an S3-compatible endpoint the runs name with --s3-endpoint-url (no
    AWS_ENDPOINT_URL): the line a run prints names that endpoint, and `model get --pool` takes
    it. An S3 pool that is not there is one line, as for a folder."""
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    flag = ["--s3-endpoint-url", s3_env]
    pool = f"s3://{new_bucket()}/pool"
    args, _ = tiny_pool_then_main_moves(tmp_path, make_media, pool, *flag)
    monkeypatch.setenv(model_hub.CACHE_ENV, str(tmp_path / "other-machine"))
    capsys.readouterr()
    assert main(args) == 6
    err = capsys.readouterr().err
    line = f"datapool model get tiny --pool {pool}/ --s3-endpoint-url {s3_env}"
    assert line in err, err
    assert main(line.split()[1:]) == 0
    assert model_hub.cached_models()["tiny"]["commit"] == COMMIT
    assert main(args) == 0
    # Fetched at the hub's newest instead: the mismatch names the same command.
    assert main(["model", "get", "tiny", "--force"]) == 0
    capsys.readouterr()
    assert main(args) == 7
    err = capsys.readouterr().err
    assert f"fetch pool's with `{line}`" in err, err
    empty = f"s3://{new_bucket()}/nothing"
    capsys.readouterr()
    assert main(["model", "get", "tiny", "--pool", empty, *flag]) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and empty in err, err
