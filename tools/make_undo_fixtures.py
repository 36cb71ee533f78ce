"""Make tests/artifacts/compat/undo/: pools whose last run a released datapool made, for
tests/test_undo_compat.py and tests/test_undo_s3.py to undo with today's.

Each fixture is two runs over tests/artifacts/compat/source/ (the first without cam/b.mp4 and
img/i3.jpg, the second with them), with tiny.onnx, `--n-samples 3 --frame-stride 4`, each run by
the release its name says (`A-B`: run 0 by A, run 1 by B), and holds

    pool/         the pool after run 1 (run 1 is what the test undoes)
    before.json   the SHA-256 of each of the pool's files before run 1, by pool-relative name

`0.5.0-s3` is the same in a bucket on a moto server of its own (`objects/`: the bucket's
objects after run 1). Left out of both, to keep them small: each run's embedding_view.png and
report.html (undo removes the run's folder whole; nothing reads them; in the bucket, from the
manifest too), and the local .datapool.lock and .sidecar/.

The releases are read from this repository's history (`git archive` of the commit that made
each), each with its own C++ core: the checkout's built one where src/cpp is the same (0.4.0 on),
else one built here with CMake and the running Python's pybind11. Run it from the repository
root, with the core built (python/datapool/_core*.so):

    PYTHONPATH=python python tools/make_undo_fixtures.py [--work /tmp/dpundo]

It replaces tests/artifacts/compat/undo/ whole. The pools record the times and paths of the
day they were made, so each run of this script writes other bytes; the tests only need the pools
to be a real release's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ART = ROOT / "tests" / "artifacts" / "compat"
OUT = ART / "undo"

# The commit of each release (CHANGELOG.md's versions; `git log -G'^version = ' pyproject.toml`).
RELEASES = {
    "0.2.0": "1a5a117",
    "0.3.0": "2995944",
    "0.4.0": "50be2c4",
    "0.5.0": "100ee41",
    "0.6.0": "70e4c8a",
}
RUN = ["--n-samples", "3", "--model", str(ART / "tiny.onnx"), "--frame-stride", "4"]
LATER = ("cam/b.mp4", "img/i3.jpg")  # what run 1 finds new


# name: (run 0's release, what came between the runs, run 1's release, extra run arguments)
FIXTURES: dict[str, tuple[str, list[str], str, list[str]]] = {
    # a `datapool rm` between the runs: runs.json before run 1 holds a removal (minimum reader 2)
    "0.4.0": ("0.4.0", ["rm", "{pool}", "--source-file", "img/i1.jpg"], "0.4.0", []),
    # strategies: strategy_inputs.json rebuilt without run 1's samples
    "0.5.0": ("0.5.0", [], "0.5.0", ["--selection", str(ART / "selection.json")]),
    # the user upgraded between the runs: runs.json before run 1 is another release's
    "0.5.0-0.6.0": ("0.5.0", [], "0.6.0", []),
    "0.3.0-0.5.0": ("0.3.0", [], "0.5.0", []),
    "0.2.0-0.4.0": ("0.2.0", [], "0.4.0", []),
}
# Pools in a bucket (s3://dpundo/pool on a moto server): the folder holds the bucket's objects
# after run 1 (`objects/`), and before.json the SHA-256 of each committed file before it, by the
# name the manifest gives it.
S3_FIXTURES: dict[str, tuple[str, str]] = {"0.5.0-s3": ("0.5.0", "0.5.0")}
MANIFEST = "pool/manifest.json"


def release(version: str, work: Path) -> Path:
    """The release's python/ folder, with its C++ core."""
    folder = work / f"v{version}"
    python = folder / "python"
    if (python / "datapool").is_dir():
        return python
    commit = RELEASES[version]
    folder.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", commit, "python", "src", "CMakeLists.txt", "pyproject.toml"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    same = subprocess.run(
        ["git", "diff", "--quiet", commit, "--", "src/cpp", "CMakeLists.txt"], cwd=ROOT
    )
    if same.returncode == 0:
        (core,) = (ROOT / "python" / "datapool").glob("_core*.so")
    else:
        import pybind11

        build = folder / "build"
        build.mkdir()
        subprocess.run(
            [
                "cmake",
                "..",
                "-DCMAKE_BUILD_TYPE=Release",
                f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
                f"-DPython_EXECUTABLE={sys.executable}",
            ],
            cwd=build,
            check=True,
            capture_output=True,
        )
        subprocess.run(["make", "-j2"], cwd=build, check=True, capture_output=True)
        (core,) = build.glob("_core*.so")
    shutil.copy2(core, python / "datapool" / core.name)
    return python


def datapool(version: str, work: Path, *args: str, env: dict[str, str] | None = None) -> None:
    env = {**os.environ, **(env or {}), "PYTHONPATH": str(release(version, work))}
    cmd = [sys.executable, "-m", "datapool", *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"datapool {version} {' '.join(args)}: {done.stderr.strip()}")


def left_out(rel: Path) -> bool:
    if rel.parts[0] in (".sidecar", ".datapool.lock"):
        return True
    return rel.parts[0] == "runs" and rel.name in ("embedding_view.png", "report.html")


def digests(pool: Path) -> dict[str, str]:
    return {
        p.relative_to(pool).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(pool.rglob("*"))
        if p.is_file() and not left_out(p.relative_to(pool))
    }


def make(name: str, work: Path) -> None:
    first, between, second, extra = FIXTURES[name]
    src, pool = work / name / "source", work / name / "pool"
    shutil.rmtree(work / name, ignore_errors=True)
    shutil.copytree(ART / "source", src, copy_function=shutil.copy2)
    for rel in LATER:
        (src / rel).unlink()
    datapool(first, work, "run", str(src), "--pool", str(pool), *RUN, *extra, "--no-progress")
    if between:
        datapool(first, work, *[a.format(pool=pool) for a in between])
    before = digests(pool)
    for rel in LATER:
        shutil.copy2(ART / "source" / rel, src / rel)
    datapool(second, work, "run", str(src), "--pool", str(pool), *RUN, *extra, "--no-progress")
    dest = OUT / name
    shutil.copytree(pool, dest / "pool", ignore=lambda d, names: _ignored(pool, d, names))
    (dest / "before.json").write_text(json.dumps(before, indent=2) + "\n")
    print(f"{name}: {len(before)} files before run 1, {len(digests(dest / 'pool'))} after")


def make_s3(name: str, work: Path) -> None:
    """As make(), in a bucket on a moto server of its own."""
    import socket

    import boto3
    from moto.server import ThreadedMotoServer

    first, second = S3_FIXTURES[name]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        env = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing-key-id",
            "AWS_SECRET_ACCESS_KEY": "testing-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": str(work / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(work / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "DATAPOOL_CACHE_DIR": str(work / name / "cache"),
        }
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing-key-id",
            aws_secret_access_key="testing-secret",
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket="dpundo")
        src, url = work / name / "source", "s3://dpundo/pool"
        shutil.rmtree(work / name, ignore_errors=True)
        shutil.copytree(ART / "source", src, copy_function=shutil.copy2)
        for rel in LATER:
            (src / rel).unlink()
        datapool(first, work, "run", str(src), "--pool", url, *RUN, "--no-progress", env=env)
        before = _committed(s3)
        for rel in LATER:
            shutil.copy2(ART / "source" / rel, src / rel)
        datapool(second, work, "run", str(src), "--pool", url, *RUN, "--no-progress", env=env)
        # Left out as in the folders: each run's view and page, from the manifest too (the one
        # edit, written as datapool writes a manifest: s3/manifest.py to_bytes).
        manifest = json.loads(s3.get_object(Bucket="dpundo", Key=MANIFEST)["Body"].read())
        dropped = [f for f in manifest["files"] if left_out(Path(f))]
        blobs = {part["blob"] for f in dropped for part in manifest["files"].pop(f)["parts"]}
        blobs -= {part["blob"] for e in manifest["files"].values() for part in e["parts"]}
        text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
        s3.put_object(Bucket="dpundo", Key=MANIFEST, Body=text.encode())
        dest = OUT / name
        for obj in s3.list_objects_v2(Bucket="dpundo")["Contents"]:
            if obj["Key"] not in blobs and obj["Key"] != "pool/.datapool-lock.json":
                path = dest / "objects" / obj["Key"]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(s3.get_object(Bucket="dpundo", Key=obj["Key"])["Body"].read())
        (dest / "before.json").write_text(json.dumps(before, indent=2) + "\n")
        print(f"{name}: {len(before)} files before run 1")
    finally:
        server.stop()


def _committed(s3: Any) -> dict[str, str]:
    """The SHA-256 of each file the pool's manifest names (the concatenation of its parts)."""
    body = s3.get_object(Bucket="dpundo", Key=MANIFEST)["Body"].read()
    out = {}
    for file, entry in sorted(json.loads(body)["files"].items()):
        if left_out(Path(file)):
            continue
        sha = hashlib.sha256()
        for part in entry["parts"]:
            sha.update(s3.get_object(Bucket="dpundo", Key=part["blob"])["Body"].read())
        out[file] = sha.hexdigest()
    return out


def _ignored(pool: Path, folder: str, names: list[str]) -> list[str]:
    return [n for n in names if left_out((Path(folder) / n).relative_to(pool))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/dpundo"))
    args = parser.parse_args()
    shutil.rmtree(OUT, ignore_errors=True)
    for name in FIXTURES:
        make(name, args.work)
    for name in S3_FIXTURES:
        make_s3(name, args.work)


if __name__ == "__main__":
    main()
