"""`datapool model get` end to end: huggingface_hub against a real HTTP server on 127.0.0.1 that
serves a small model this test builds, as the hub's resolve endpoint does (HF_ENDPOINT)."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from datapool.cli import main
from datapool.config import ModelSpec
from datapool.errors import ModelError
from datapool.ingest import model_hub, open_embedder

pytest.importorskip("huggingface_hub", reason="datapool model get needs the hub extra")
pytest.importorskip("onnx")

from .test_models import S, frames, normalised, tokens_model, tokens_ref, unit

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "tests/tiny-vit"


class _Hub(BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {}
    # other commits' files, by commit; "main" is the `commit` attribute's (COMMIT's: `files`)
    commits: ClassVar[dict[str, dict[str, bytes]]] = {}
    commit: ClassVar[str] = COMMIT

    def _file(self) -> bytes | None:
        prefix = f"/{REPO}/resolve/"
        if not self.path.startswith(prefix):
            return None
        revision, _, name = self.path[len(prefix) :].partition("/")
        self.resolved = self.commit if revision == "main" else revision
        files = {COMMIT: self.files, **self.commits}.get(self.resolved)
        return None if files is None else files.get(name)

    def _head(self, body: bytes | None) -> None:
        if body is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("X-Repo-Commit", self.resolved)
        self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()

    def do_HEAD(self) -> None:
        self._head(self._file())

    def do_GET(self) -> None:
        body = self._file()
        self._head(body)
        if body is not None:
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def serve(files: dict[str, bytes]) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """A hub on 127.0.0.1 serving `files` (path in the repo -> bytes) of REPO."""
    handler = type("Hub", (_Hub,), {"files": files})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A hub on 127.0.0.1 serving tests/tiny-vit (a tokens-first model and its
    preprocessor_config.json), a registry file pinning it, and an empty model cache."""
    src = tmp_path / "src"
    src.mkdir()
    model = tokens_model(src / "model.onnx")
    pre = json.dumps({"image_mean": [0.5] * 3, "image_std": [0.5] * 3, "crop_size": S}).encode()
    files = {"onnx/model.onnx": model.read_bytes(), "preprocessor_config.json": pre}
    server, thread = serve(files)
    pins = {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}
    registry = tmp_path / "registry.json"

    def pin(**overrides: str) -> None:
        entry = {"repo": REPO, "revision": COMMIT, "model": "onnx/model.onnx"}
        registry.write_text(json.dumps({"tiny": {**entry, "files": {**pins, **overrides}}}))

    pin()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv(model_hub.REGISTRY_ENV, str(registry))
    monkeypatch.setenv(model_hub.CACHE_ENV, str(tmp_path / "cache"))
    yield pin
    server.shutdown()
    server.server_close()
    thread.join()


def test_get_fetches_checks_and_the_name_then_works_as_a_model(hub, capsys):
    assert main(["model", "get", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "tiny -> " in out and "not pinned" not in out
    folder = model_hub.cache_root() / "tiny"
    assert sorted(p.name for p in folder.iterdir()) == [
        "datapool-model.json",
        "model.onnx",
        "preprocessor_config.json",
    ]
    manifest = json.loads((folder / "datapool-model.json").read_text())
    assert manifest["commit"] == COMMIT and manifest["pinned"] is True
    e = open_embedder(ModelSpec(path="tiny"))
    assert e.output_name == "pooler_output"
    f = frames()
    ref = unit(np.tanh(tokens_ref(normalised(f, 0.5, 0.5)).mean(axis=1)))
    np.testing.assert_allclose(e.embed(f), ref, atol=1e-4)
    assert [p.name for p in model_hub.cache_root().iterdir()] == ["tiny"]  # no staging left
    assert main(["model", "list"]) == 0
    assert "tiny             cached" in capsys.readouterr().out


def test_a_checksum_mismatch_leaves_the_cache_as_it_was(hub, capsys):
    hub(**{"onnx/model.onnx": "f" * 64})
    assert main(["model", "get", "tiny"]) == 6  # a model error (README: exit codes)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "not the pinned ffffffffffffffff" in err and "cache is unchanged" in err
    assert list(model_hub.cache_root().iterdir()) == []
    with pytest.raises(ModelError, match=r"not in the cache .* datapool model get tiny"):
        open_embedder(ModelSpec(path="tiny"))


def test_an_unreachable_hub_is_one_clear_line(hub, monkeypatch, capsys):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    assert main(["model", "get", "tiny"]) == 6
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"cannot fetch {REPO}/onnx/model.onnx" in err and "cache is unchanged" in err
    assert list(model_hub.cache_root().iterdir()) == []


def test_unknown_names_and_paths(hub, tmp_path, capsys):
    assert main(["model", "get", "nope"]) == 4  # a usage error
    assert "unknown model 'nope'; known: " in capsys.readouterr().err
    assert model_hub.resolve_model(str(tmp_path / "x.onnx")) == str(tmp_path / "x.onnx")
    assert model_hub.resolve_model("not-a-name") == "not-a-name"
    assert Path(model_hub.cache_root()).name == "cache"


def test_a_name_that_resolves_to_other_weights_is_refused_naming_both_commits(
    hub, tmp_path, make_media, capsys
):
    # The built-in entries fetch revision main. A `model get --force` after the hub moved on
    # put other weights under the same name: the pool refused them by SHA-256 alone, without a
    # word of which commit it was made with or how to fetch it back.

    from .test_models import _bucket

    registry = Path(model_hub.os.environ[model_hub.REGISTRY_ENV])
    entry = {"repo": REPO, "revision": "main", "model": "onnx/model.onnx"}
    registry.write_text(json.dumps({"tiny": entry}))  # unpinned, as the built-in entries
    assert main(["model", "get", "tiny"]) == 0
    assert f"not pinned: revision main was commit {COMMIT}" in capsys.readouterr().out
    bucket = _bucket(tmp_path / "bucket", make_media, n=2)
    args = ["run", str(bucket), "--pool", str(tmp_path / "p"), "--n-samples", "1"]
    args += ["--model", "tiny", "--no-progress"]
    assert main(args) == 0
    capsys.readouterr()
    recorded = json.loads((tmp_path / "p" / "model.json").read_text())
    origin = {"hub": "tiny", "repo": REPO, "revision": "main", "commit": COMMIT}
    assert recorded["origin"] == origin
    # The hub's main moves to a new commit with other weights (here: other metadata).
    newer = _main_moves_to_other_weights()[1]
    assert main(["model", "get", "tiny", "--force"]) == 0
    assert f"was commit {COMMIT}, now {newer}: pools made with" in capsys.readouterr().out
    assert main(args) == 7  # a model mismatch (README: exit codes)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"model tiny was {REPO} commit {COMMIT} for pool, commit {newer} for this run" in err
    # The pool is known: the line names `model get --pool`, which fetches the commit the pool
    # records and checks it against the pool's SHA-256 (it named `--force --revision COMMIT`).
    assert f"fetch pool's with `datapool model get tiny --pool {tmp_path / 'p'}`" in err, err
    # That command fetches the pool's weights back, and the pool takes them again.
    assert main(["model", "get", "tiny", "--pool", str(tmp_path / "p")]) == 0
    capsys.readouterr()
    assert model_hub.cached_models()["tiny"]["commit"] == COMMIT
    assert main(args) == 0


def _pool_of_tiny_at_main(tmp_path, make_media, capsys):
    """A pool made with `tiny` fetched at revision main (COMMIT), as the built-in entries
    fetch; then the hub's main moves to a newer commit with other weights. The run's args."""
    args, handler = tiny_pool_then_main_moves(tmp_path, make_media, str(tmp_path / "p"))
    capsys.readouterr()
    return args, handler


def tiny_pool_then_main_moves(
    tmp_path: Path, make_media: Any, pool: str, *flags: str
) -> tuple[list[str], Any]:
    """A pool at `pool` (a folder or s3://, the run given `flags` too) made with `tiny` fetched
    at revision main (COMMIT); then the hub's main moves to other weights: (the run's args, the
    hub's handler)."""
    from .test_models import _bucket

    registry = Path(model_hub.os.environ[model_hub.REGISTRY_ENV])
    entry = {"repo": REPO, "revision": "main", "model": "onnx/model.onnx"}
    entry["files"] = {"onnx/model.onnx": None, "preprocessor_config.json": None}
    registry.write_text(json.dumps({"tiny": entry}))
    assert main(["model", "get", "tiny"]) == 0
    bucket = _bucket(tmp_path / "bucket", make_media, n=2)
    args = ["run", str(bucket), "--pool", pool, "--n-samples", "1"]
    args += ["--model", "tiny", "--no-progress", *flags]
    assert main(args) == 0
    handler, _ = _main_moves_to_other_weights()
    return args, handler


def _main_moves_to_other_weights() -> tuple[Any, str]:
    """The test hub's main moves to a newer commit whose .onnx holds other weights (here: other
    metadata): (the hub's handler, the new commit)."""
    import onnx

    newer = "fedcba9876543210fedcba9876543210fedcba98"
    handler = _Hub.__subclasses__()[-1]
    m = onnx.load_from_string(handler.files["onnx/model.onnx"])
    onnx.helper.set_model_props(m, {"retrained": "yes"})
    handler.commits = {newer: {**handler.files, "onnx/model.onnx": m.SerializeToString()}}
    handler.commit = newer
    return handler, newer


def test_a_run_on_a_pool_fetches_the_pools_weights_by_pool_not_the_hubs_newest(
    hub, tmp_path, make_media, monkeypatch, capsys
):
    # On another machine (an empty cache) the next run on a pool made with `tiny` said "fetch
    # it first: datapool model get tiny", which fetched main, by then other weights: the run
    # after it was refused as a model mismatch. Now the line names the command that fetches the
    # pool's own commit, and `model get --pool` fetches it, checked against the pool's SHA-256.
    args, _ = _pool_of_tiny_at_main(tmp_path, make_media, capsys)
    monkeypatch.setenv(model_hub.CACHE_ENV, str(tmp_path / "other-machine"))
    pool = str(tmp_path / "p")
    assert main(args) == 6
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"datapool: error: model tiny is not in the cache {tmp_path / 'other-machine'}; fetch "
        f"the weights pool {pool} was made with ({REPO} commit {COMMIT}): datapool model get "
        f"tiny --pool {pool}"
    ]
    assert main(["model", "get", "tiny", "--pool", pool]) == 0
    out = capsys.readouterr().out
    assert f"from commit {COMMIT}, the .onnx checked against the SHA-256 pool {pool}" in out
    assert "not pinned" not in out
    manifest = model_hub.cached_models()["tiny"]
    assert manifest["commit"] == COMMIT and manifest["revision"] == COMMIT
    assert main(args) == 0
    # Fetched at the hub's newest instead, the run is refused naming both commits (as before).
    assert main(["model", "get", "tiny", "--force"]) == 0
    assert main(args) == 7


def test_model_get_by_pool_refuses_other_weights_and_other_models(
    hub, tmp_path, make_media, monkeypatch, capsys
):
    args, handler = _pool_of_tiny_at_main(tmp_path, make_media, capsys)
    pool = str(tmp_path / "p")
    monkeypatch.setenv(model_hub.CACHE_ENV, str(tmp_path / "other-machine"))
    # A mirror (HF_ENDPOINT) that serves other bytes under the pool's commit: refused by the
    # pool's SHA-256, the cache unchanged.
    handler.commits = {COMMIT: {**handler.files, "onnx/model.onnx": b"not the same"}}
    assert main(["model", "get", "tiny", "--pool", pool]) == 6
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not the pinned" in err and "cache is unchanged" in err
    assert not (tmp_path / "other-machine" / "tiny").exists()
    # A pool made with a file, not a name; a folder with no pool; --pool with --revision.
    other = tmp_path / "q"
    model = tmp_path / "mine.onnx"
    model.write_bytes((tmp_path / "cache" / "tiny" / "model.onnx").read_bytes())
    file_args = ["run", args[1], "--pool", str(other), "--n-samples", "1", "--no-progress"]
    assert main([*file_args, "--model", str(model)]) == 0
    capsys.readouterr()
    assert main(["model", "get", "tiny", "--pool", str(other)]) == 4
    err = capsys.readouterr().err.strip()
    assert f"pool {other} was made with mine.onnx, a file, not one fetched as tiny" in err
    with pytest.raises(SystemExit):
        main(["model", "get", "tiny", "--pool", pool, "--revision", COMMIT])
    assert "--revision: not allowed with argument --pool" in capsys.readouterr().err


def test_status_names_a_fetched_model_by_the_name_a_run_gives(hub, tmp_path, make_media, capsys):
    """`model get NAME --pool POOL` refusing another name says `datapool status POOL names its
    model`, but status named the cached file, `model   model.onnx (sha256 ...)`, not the name
    `--model` takes. It names both, and where the weights came from."""
    _pool_of_tiny_at_main(tmp_path, make_media, capsys)
    pool = str(tmp_path / "p")
    assert main(["model", "get", "dinov2-small", "--pool", pool]) == 4
    assert "(datapool status " in capsys.readouterr().err
    assert main(["status", pool]) == 0
    [line] = [x for x in capsys.readouterr().out.splitlines() if x.startswith("model ")]
    assert line.startswith(f"model   tiny (model.onnx from {REPO} commit {COMMIT[:12]}; sha256 ")
