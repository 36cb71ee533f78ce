"""Learned models by name: `datapool model get NAME` fetches a model's ONNX export (and its
preprocessor_config.json) from the Hugging Face Hub into a local cache, so that
`--model NAME` opens it.

    datapool model get dinov2-small      # huggingface_hub (pip install 'datapool[hub]')
    datapool run bucket/ --pool pool/ --model dinov2-small --n-samples 100

Downloads go through huggingface_hub (it honours HF_ENDPOINT and HF_TOKEN) at the entry's
revision into a staging folder beside the cache; each file's SHA-256 is checked against the
entry's where the entry pins one; only then is the staging folder renamed into place, as one
step. A failed or refused download leaves the cache as it was. Each model folder holds the
files by their base names and `datapool-model.json` (repo, revision, commit, SHA-256s).

The cache is $DATAPOOL_MODEL_CACHE, else $XDG_CACHE_HOME/datapool/models, else
~/.cache/datapool/models. More entries (a team's own models, pins) come from the JSON file named
by $DATAPOOL_MODEL_REGISTRY: {"name": {"repo": "org/name", "revision": "<commit>", "model":
"onnx/model.onnx", "files": {"onnx/model.onnx": "<sha256>", "preprocessor_config.json":
"<sha256>"}}}. An entry with `"export": "<transformers class>"` lists the model's weights
(config.json, model.safetensors, preprocessor_config.json) instead of an ONNX file: they are
fetched and checked the same way and exported to ONNX (model_export.py; needs datapool[export]).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from datapool.errors import ConfigError, ModelError
from datapool.fingerprint import ModelFingerprint
from datapool.ingest.onnxfile import file_sha256
from datapool.specs import scheme_of, strip_userinfo

MANIFEST = "datapool-model.json"
CACHE_ENV = "DATAPOOL_MODEL_CACHE"
REGISTRY_ENV = "DATAPOOL_MODEL_REGISTRY"
PREPROCESSOR = "preprocessor_config.json"


@dataclass(frozen=True)
class HubModel:
    """A model on the hub: its repo, the revision to fetch, the ONNX file and every file to
    fetch with its SHA-256 (None: not pinned; the SHA-256 fetched is recorded and printed)."""

    name: str
    repo: str
    revision: str
    model: str
    files: dict[str, str | None] = field(default_factory=dict)
    note: str = ""
    export: str | None = None  # a transformers class: the files are weights to export to ONNX

    @property
    def pinned(self) -> bool:
        return len(self.revision) == 40 and all(self.files.values())


def _onnx_community(repo: str, model: str, note: str = "") -> dict[str, Any]:
    # The ONNX exports that transformers.js publishes (onnx/ folder + preprocessor_config.json).
    # Not pinned here: this package was built where the hub cannot be reached. The revision and
    # SHA-256s a `get` fetched are recorded in datapool-model.json and printed; pin them in a
    # registry file ($DATAPOOL_MODEL_REGISTRY) to make every later fetch check them.
    return {
        "repo": repo,
        "revision": "main",
        "model": model,
        "files": {model: None, PREPROCESSOR: None},
        "note": note,
    }


KNOWN: dict[str, dict[str, Any]] = {
    "dinov2-small": _onnx_community(
        "Xenova/dinov2-small", "onnx/model.onnx", "DINOv2 ViT-S/14, 384-d CLS token"
    ),
    "dinov2-base": _onnx_community(
        "Xenova/dinov2-base", "onnx/model.onnx", "DINOv2 ViT-B/14, 768-d CLS token"
    ),
    "clip-vit-b32": _onnx_community(
        "Xenova/clip-vit-base-patch32",
        "onnx/vision_model.onnx",
        "CLIP ViT-B/32 image tower, 512-d image_embeds",
    ),
    "vit-b16-in21k": {
        # Exported here from the PyTorch weights (needs datapool[export]): 768-d pooler_output.
        "repo": "google/vit-base-patch16-224-in21k",
        "revision": "main",
        "export": "ViTModel",
        "files": {"config.json": None, "model.safetensors": None, PREPROCESSOR: None},
        "note": "ViT-B/16 ImageNet-21k, exported with transformers",
    },
    "resnet50": _onnx_community(
        "Xenova/resnet-50", "onnx/model.onnx", "ResNet-50 ImageNet classifier (1000 logits)"
    ),
}


def registry() -> dict[str, HubModel]:
    """The known names, with the entries of $DATAPOOL_MODEL_REGISTRY over them."""
    entries = dict(KNOWN)
    extra = os.environ.get(REGISTRY_ENV)
    if extra:
        try:
            data = json.loads(Path(extra).read_text())
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as e:
            raise ConfigError(f"{REGISTRY_ENV}={extra}: not a readable JSON object ({e})") from None
        entries.update(data)
    out = {}
    for name, item in entries.items():
        try:
            files = {str(k): (str(v) if v else None) for k, v in item.get("files", {}).items()}
            model = str(
                item.get("model") or ("config.json" if item.get("export") else item["model"])
            )
            files.setdefault(model, None)
            out[name] = HubModel(
                name,
                str(item["repo"]),
                str(item.get("revision", "main")),
                model,
                files,
                str(item.get("note", "")),
                str(item["export"]) if item.get("export") else None,
            )
        except (KeyError, TypeError, AttributeError) as err:
            raise ConfigError(f"model registry entry {name!r} is malformed ({err!r})") from None
    return out


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "datapool" / "models"


def resolve_model(spec: str | None) -> str | None:
    """The .onnx path for a `--model` value: a file as it is, a cached model's name as its file;
    a known name that is not cached yet is refused with the command that fetches it, and a URL
    (s3://...) with what to do instead: it was read as a local path that does not exist."""
    if spec is not None and scheme_of(spec):
        raise ConfigError(
            f"model {strip_userinfo(spec)}: {scheme_of(spec)}:// is not supported for the model, "
            "which is read from a local .onnx file or the model cache; copy it here first "
            "(aws s3 cp) and give that file"
        )
    if spec is None or os.path.exists(spec) or os.sep in spec or spec.endswith(".onnx"):
        return spec
    folder = cache_root() / spec
    manifest = folder / MANIFEST
    if manifest.is_file():
        try:
            return str(folder / json.loads(manifest.read_text())["model"])
        except (OSError, ValueError, KeyError, TypeError):
            raise ModelError(
                f"{manifest} is unreadable; fetch the model again: datapool model get {spec}"
            ) from None
    if spec in registry():
        raise ModelError(
            f"model {spec} is not in the cache {cache_root()}; fetch it first: "
            f"datapool model get {spec}"
        )
    return spec


def get_model(
    name: str,
    *,
    force: bool = False,
    revision: str | None = None,
    like: ModelFingerprint | None = None,
    pool: str = "",
) -> Path:
    """Fetch `name` into the cache (see the module doc) and return the .onnx path; `revision`
    (a commit, branch or tag) instead of the entry's, such as the commit a pool was made with
    (the entry's SHA-256 pins hold only for the entry's own revision). `like`, the model of the
    pool `pool`: fetch the commit it records for `name`, its .onnx checked against the pool's
    SHA-256 (the pool is the pin)."""
    known = registry()
    if name not in known:
        raise ConfigError(
            f"unknown model {name!r}; known: {', '.join(sorted(known))} "
            f"(add your own in a {REGISTRY_ENV} file)"
        )
    entry = known[name]
    if like is not None:
        revision = _pool_commit(name, like, pool)
        if entry.export is None and revision != entry.revision:
            entry = replace(entry, revision=revision, files=dict.fromkeys(entry.files))
            entry.files[entry.model] = like.sha256
    if revision is not None and revision != entry.revision:
        if not revision.strip() or revision != revision.strip() or ".." in revision:
            raise ConfigError(f"--revision {revision!r} is no commit, branch or tag")
        entry = replace(entry, revision=revision, files=dict.fromkeys(entry.files))
    root = cache_root()
    target = root / name
    if (target / MANIFEST).is_file() and not force:
        have = cached_models().get(name, {})
        if revision is None or revision in (have.get("revision"), have.get("commit")):
            return Path(str(resolve_model(name)))
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise ModelError(
            "datapool model get needs huggingface_hub: pip install 'datapool[hub]'"
        ) from None
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        out = staging / "model"
        out.mkdir()
        fetched = out if entry.export is None else staging / "weights"
        fetched.mkdir(exist_ok=True)
        manifest = _fetch_all(entry, staging, fetched, hf_hub_download)
        if entry.export is not None:
            from datapool.ingest.model_export import export_pretrained

            onnx_file = export_pretrained(fetched, entry.export, out, f"{name}.onnx")
            manifest.update(model=onnx_file.name, exported_with=entry.export)
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _swap_in(out, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Path(str(resolve_model(name)))


def _pool_commit(name: str, like: ModelFingerprint, pool: str) -> str:
    """The commit the pool `pool` (its model `like`) records for the model `name`; refused in
    one line where its model was not fetched by that name or has no commit recorded."""
    origin = like.origin or {}
    if origin.get("hub") != name:
        made = f"model {origin['hub']}" if origin.get("hub") else f"{like.name}, a file"
        raise ConfigError(
            f"pool {pool} was made with {made}, not one fetched as {name}: give the name the "
            f"pool was made with, or drop --pool (datapool status {pool} names its model)"
        )
    commit = origin.get("commit")
    if not isinstance(commit, str) or len(commit) != 40:
        raise ConfigError(
            f"pool {pool} records no commit for model {name} (it was fetched before datapool "
            f"recorded them): fetch a revision yourself with --revision"
        )
    return commit


def pool_missing(
    spec: str | None, like: ModelFingerprint | None, pool: str, endpoint: str = ""
) -> str | None:
    """Where a run gives `--model NAME`, NAME is not in the cache, and the pool `pool` was made
    with the model fetched as NAME: the one line that fetches the pool's own weights (the
    entry's revision may have moved on since; with `endpoint`, the --s3-endpoint-url that
    reaches the pool), else None."""
    origin = (like.origin if like is not None else None) or {}
    if not spec or origin.get("hub") != spec or os.path.exists(spec):
        return None
    if (cache_root() / spec / MANIFEST).is_file():
        return None
    commit = origin.get("commit") or "not recorded"
    return (
        f"model {spec} is not in the cache {cache_root()}; fetch the weights pool {pool} was "
        f"made with ({origin.get('repo')} commit {commit}): datapool model get {spec} "
        f"--pool {pool}" + (f" --s3-endpoint-url {endpoint}" if endpoint else "")
    )


def _fetch_all(entry: HubModel, staging: Path, out: Path, download: Any) -> dict[str, Any]:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    endpoint = os.environ.get("HF_ENDPOINT") or None
    where = endpoint or "the Hugging Face Hub"
    files: dict[str, str] = {}
    commit = None
    for path, want in entry.files.items():
        try:
            with _quiet_hub():
                # One HEAD first, without huggingface_hub's retries (about 25 s of backoff when
                # the hub cannot be reached): an unreachable hub fails at once.
                meta = get_hf_file_metadata(
                    hf_hub_url(entry.repo, path, revision=entry.revision, endpoint=endpoint)
                )
                got = Path(
                    download(
                        entry.repo,
                        path,
                        revision=entry.revision,
                        cache_dir=staging / "hub",
                        endpoint=endpoint,
                    )
                )
        except Exception as e:  # huggingface_hub's and httpx's errors: one line says what
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ModelError(
                f"cannot fetch {entry.repo}/{path}@{entry.revision} from {where} "
                f"({type(e).__name__}: {first[:200]}); check the network, HF_ENDPOINT and "
                "HF_TOKEN; the cache is unchanged"
            ) from None
        # The commit the revision resolved to: the hub says it (X-Repo-Commit), and the file
        # lies under snapshots/<commit>/ in huggingface_hub's cache (for onnx/model.onnx that is
        # not the file's parent folder, so reading the parent recorded no commit).
        commit = commit or _commit_of(meta, got, path)
        digest = file_sha256(got)
        if want is not None and digest != want:
            raise ModelError(
                f"{entry.repo}/{path}@{entry.revision} has SHA-256 {digest[:16]}..., not the "
                f"pinned {want[:16]}...: refused, the cache is unchanged (the file changed on "
                "the hub, or the pin is wrong)"
            )
        files[Path(path).name] = digest
        shutil.copyfile(got, out / Path(path).name)
    return {
        "name": entry.name,
        "repo": entry.repo,
        "revision": entry.revision,
        "commit": commit,
        "model": Path(entry.model).name,
        "sha256": files,
        "pinned": entry.pinned,
    }


def _commit_of(meta: Any, got: Path, path: str) -> str | None:
    """The commit a fetched file came from: the hub's answer, else the snapshot folder its
    path `path` in the repo lies under in huggingface_hub's cache."""
    commit = getattr(meta, "commit_hash", None)
    if isinstance(commit, str) and len(commit) == 40:
        return commit
    snapshot = got.parents[len(Path(path).parts) - 1]
    return snapshot.name if len(snapshot.name) == 40 else None


@contextlib.contextmanager
def _quiet_hub() -> Iterator[None]:
    """huggingface_hub's own warnings (retries, tracebacks) off: the error says it in one line."""
    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _swap_in(new: Path, target: Path) -> None:
    """Put the folder `new` at `target` in one rename; an older copy is moved aside first and
    removed after."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old.{os.getpid()}")
        os.replace(target, old)
    try:
        os.replace(new, target)
    except OSError:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def origin(path: Path) -> dict[str, Any] | None:
    """Where the model at `path` came from, where it is a model fetched by name into the cache
    ({"hub": name, "repo", "revision", "commit"}, from its datapool-model.json); None for any
    other file."""
    try:
        manifest = json.loads((path.parent / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("model") != path.name:
        return None
    return {k: manifest.get(k) for k in ("repo", "revision", "commit")} | {
        "hub": manifest.get("name") or path.parent.name
    }


def cached_models() -> dict[str, dict[str, Any]]:
    """The manifests of the models in the cache, by name."""
    out = {}
    root = cache_root()
    if root.is_dir():
        for m in sorted(root.glob(f"*/{MANIFEST}")):
            try:
                out[m.parent.name] = json.loads(m.read_text())
            except (OSError, ValueError):
                continue
    return out
