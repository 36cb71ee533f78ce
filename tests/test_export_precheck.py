"""An export destination that cannot take the export stops `run --export` before any work, a dry
run too, and `datapool export` before it lists a source: a bucket that is not there (S3 and
GCS), credentials missing or refused, an endpoint that cannot be reached, a folder under a file
or on a read-only file system. It used to decode and embed every new file, commit, and only then
fail at the export. A check that cannot tell (a role that may put objects but not ask of the
bucket) warns and the run goes on. S3 against moto over HTTP (its IAM enforced where a test
says so), GCS against gcp-storage-emulator; "before any work" is read from the run's test
points (DATAPOOL_TEST_TRACE: not even the pool's lock was taken) or from a pool folder never
made."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import boto3
import pytest

import datapool

from . import test_disk_faults
from ._s3 import S3_FIXTURES
from .conftest import run_cli, write_media
from .test_s3 import _set_moto_auth

moto_endpoint, s3_env, s3, new_bucket = S3_FIXTURES
read_only = test_disk_faults.read_only  # (the fixture)


def _source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    write_media(src / "a.jpg", seed=1)
    write_media(src / "b.png", seed=2)
    return src


def _traced_run(src: Path, pool: Path, dest: str, *extra: str, env: dict[str, str] | None = None):
    """`datapool run SRC --pool POOL --export DEST` with every test point traced: (the CLI's
    result, its stderr lines less the trace, the points it passed)."""
    r = run_cli(
        "run", src, "--pool", pool, "--n-samples", "2", "--no-progress", "--export", dest, *extra,
        env_extra={**(env or {}), "DATAPOOL_TEST_TRACE": "1"},
    )  # fmt: skip
    lines = r.stderr.splitlines()
    points = [ln for ln in lines if ln.startswith("datapool-test: at ")]
    return r, [ln for ln in lines if not ln.startswith("datapool-test:")], points


def _refused_before_any_work(r, said: list[str], points: list[str], pool: Path) -> str:
    """The run stopped with one line (exit 8, as the export's own errors) before its first
    point: no lock taken, nothing listed, no file decoded; the pool folder not even made."""
    assert r.returncode == 8, r.stderr
    assert len(said) == 1 and said[0].startswith("datapool: error: --export "), r.stderr
    assert points == [], points
    assert not pool.exists()
    assert "nothing was done" in said[0]
    return said[0]


def test_a_missing_s3_bucket_stops_the_run_before_any_work(s3, new_bucket, tmp_path):
    src, pool = _source(tmp_path), tmp_path / "pool"
    missing = f"dp-missing-{uuid.uuid4().hex[:8]}"
    r, said, points = _traced_run(src, pool, f"s3://{missing}/x")
    line = _refused_before_any_work(r, said, points, pool)
    assert f"--export s3://{missing}/x/: the S3 bucket '{missing}' does not exist" in line
    assert f"aws s3 mb s3://{missing}" in line
    # A dry run says so too
    dry = run_cli("run", src, "--pool", pool, "--n-samples", "2", "--dry-run",
                  "--export", f"s3://{missing}/x")  # fmt: skip
    assert dry.returncode == 8 and dry.stderr == r.stderr.splitlines()[-1] + "\n", dry.stderr
    # The bucket there: the run goes on and exports, with no warning
    there = new_bucket()
    r, said, points = _traced_run(src, pool, f"s3://{there}/x", "--json")
    assert r.returncode == 0 and said == [], r.stderr
    assert json.loads(r.stdout)["export"]["written"] == 2
    # `datapool export` of the pool: the same check, in its own words
    e = run_cli("export", pool, f"s3://{missing}/y")
    assert e.returncode == 8 and e.stderr.count("\n") == 1, e.stderr
    assert e.stderr.startswith(
        f"datapool: error: cannot export to s3://{missing}/y/: the S3 bucket"
    )


def test_s3_credentials_refused_missing_or_an_endpoint_unreachable_stop_the_run(
    s3, s3_env, new_bucket, tmp_path, monkeypatch, request
):
    src, pool = _source(tmp_path), tmp_path / "pool"
    there = new_bucket()
    # No credentials at all (none in the environment, no files, no instance role: s3_env)
    with monkeypatch.context() as m:
        m.delenv("AWS_ACCESS_KEY_ID")
        m.delenv("AWS_SECRET_ACCESS_KEY")
        r, said, points = _traced_run(src, pool, f"s3://{there}/x")
    line = _refused_before_any_work(r, said, points, pool)
    assert f"no usable AWS credentials found for S3 bucket '{there}'" in line
    # An endpoint nothing listens on (a mistyped --s3-endpoint-url)
    closed = _closed_port_url()
    r, said, points = _traced_run(
        src, pool, f"s3://{there}/x", "--s3-endpoint-url", closed, "--s3-max-attempts", "1"
    )
    line = _refused_before_any_work(r, said, points, pool)
    assert "cannot connect to the endpoint" in line and "--s3-endpoint-url" in line
    # Credentials the store does not know (moto checks them against its IAM from here on)
    request.getfixturevalue("moto_auth")
    r, said, points = _traced_run(
        src, pool, f"s3://{there}/x",
        env={"AWS_ACCESS_KEY_ID": "AKIADATAPOOLUNKNOWN1", "AWS_SECRET_ACCESS_KEY": "not-a-key"},
    )  # fmt: skip
    line = _refused_before_any_work(r, said, points, pool)
    assert "refused the credentials (InvalidAccessKeyId, HTTP 403)" in line
    assert "AKIADATAPOOLUNKNOWN1" not in r.stderr and "not-a-key" not in r.stderr


def _closed_port_url() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def moto_auth(s3_env):
    _set_moto_auth(s3_env, "0")
    try:
        yield
    finally:
        _set_moto_auth(s3_env, "inf")


def _user_allowed(s3_env: str, statements: list[dict[str, str]]) -> dict[str, str]:
    """The access key of a new IAM user whose one policy is `statements`."""
    iam = boto3.client("iam", endpoint_url=s3_env)
    user = f"u-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    policy = {"Version": "2012-10-17", "Statement": statements}
    iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps(policy))
    return dict(iam.create_access_key(UserName=user)["AccessKey"])


def test_a_role_that_may_only_put_objects_warns_and_the_export_goes_on(
    s3, s3_env, new_bucket, tmp_path, monkeypatch, request
):
    """A narrow IAM policy (s3:PutObject on the prefix, nothing else) is refused HeadBucket and
    the listing: the check cannot tell whether the bucket takes writes, says so, and the run
    goes on; its export writes every pick."""
    src, pool = _source(tmp_path), tmp_path / "pool"
    there = new_bucket()
    put = {"Effect": "Allow", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{there}/x/*"}
    key = _user_allowed(s3_env, [put])
    request.getfixturevalue("moto_auth")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    r = datapool.run(src, pool, n_samples=2, progress=False, export=f"s3://{there}/x")
    assert r.export is not None and sorted(r.export.written) == ["a.jpg", "b.png"]
    first = r.warnings[0]
    assert first.startswith(f"--export s3://{there}/x/: could not check that the bucket is there")
    assert "AccessDenied" in first and "going on" in first
    _set_moto_auth(s3_env, "inf")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=there)["Contents"]}
    assert {"x/a.jpg", "x/b.png", "x/selected_filenames.txt"} <= keys


def test_a_local_destination_that_cannot_be_written_stops_the_run_and_the_export(
    tmp_path, read_only
):
    """Under a file, or in a folder on a read-only file system (chmod does not bind for root:
    a read-only bind mount there): the run stops before any work naming --export; `datapool
    export` before it lists the source (it failed at its first write)."""
    src, pool = _source(tmp_path), tmp_path / "pool"
    (tmp_path / "a-file").write_text("not a folder")
    ro = tmp_path / "ro"
    (ro / "there").mkdir(parents=True)
    how = read_only(ro)
    for dest, says in (
        (tmp_path / "a-file" / "out", f"{tmp_path / 'a-file'} is a file, not a folder"),
        (ro / "new" / "out", f"cannot write in {ro} ("),
        (ro / "there", f"cannot write in {ro / 'there'} ("),
    ):
        r, said, points = _traced_run(src, pool, str(dest))
        line = _refused_before_any_work(r, said, points, pool)
        assert line.startswith(f"datapool: error: --export {dest}: {says}"), (how, line)
    datapool.run(src, pool, n_samples=2, progress=False)
    e = run_cli("export", pool, ro / "there")
    assert e.returncode == 8 and e.stderr.count("\n") == 1, e.stderr
    assert e.stderr.startswith(
        f"datapool: error: cannot export to {ro / 'there'}: cannot write in {ro / 'there'} ("
    ), e.stderr


def test_a_pool_in_s3_that_cannot_be_written_stops_the_run_before_any_decoding(
    s3, s3_env, new_bucket, tmp_path, monkeypatch, request
):
    """Another output a run learns it cannot write only after its work, were it not asked first:
    a pool in S3 whose credentials may read (s3:ListBucket, s3:GetObject) but not put. Taking
    the pool's lock writes the lock object, so the run stops there, before its first file is
    listed or decoded (a guard: this held before the export's check was added)."""
    src, there = _source(tmp_path), new_bucket()
    key = _user_allowed(
        s3_env,
        [
            {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{there}"},
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{there}/*"},
        ],
    )
    request.getfixturevalue("moto_auth")
    keys = {
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
    }
    r = run_cli(
        "run", src, "--pool", f"s3://{there}/pool", "--n-samples", "2", "--no-progress",
        env_extra={**keys, "DATAPOOL_TEST_TRACE": "1"},
    )  # fmt: skip
    said = [ln for ln in r.stderr.splitlines() if not ln.startswith("datapool-test:")]
    assert r.returncode == 8, r.stderr
    assert len(said) == 1 and f"S3 bucket {there!r}" in said[0] and "403" in said[0], r.stderr
    assert "datapool-test: at" not in r.stderr, r.stderr
