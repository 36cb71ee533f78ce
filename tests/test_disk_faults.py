"""A read-only pool fails before any work; a write that fails part-way through a commit (a full
disk) leaves the previous pool intact. Real processes, a real tmpfs where mounting is allowed,
and otherwise a fault injected into os.fsync at every durable write of the commit in turn."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

import datapool
from datapool import Pool, PoolWriteError

from ._robust import (
    assert_ledger_agrees,
    assert_same_pool,
    cli_args,
    env_with,
    leftovers,
    make_small_bucket,
    second_run_setup,
    tree_digest,
    try_mount,
    umount,
)

N = "4"


@pytest.fixture
def read_only(tmp_path):
    """make(folder): make `folder` unwritable in a way that binds for this user. Not root: chmod
    0o555. Root (chmod does not bind): a read-only bind mount of the folder onto itself."""
    undo = []

    def make(folder):
        if os.geteuid() != 0:
            folder.chmod(0o555)
            undo.append(lambda: folder.chmod(0o755))
            return "chmod"
        why = try_mount("--bind", str(folder), str(folder))
        if why is not None:
            pytest.skip(
                f"running as root and cannot bind-mount read-only ({why}); chmod does "
                "not bind for root, so this environment cannot make a read-only folder"
            )
        undo.append(lambda: umount(folder))
        why = try_mount("-o", "remount,bind,ro", str(folder))
        if why is not None:
            pytest.skip(f"cannot remount read-only ({why})")
        return "read-only bind mount"

    yield make
    for u in reversed(undo):
        u()


def test_read_only_pool_fails_before_any_work(bucket, tmp_path, make_media, read_only):
    pool = tmp_path / "pool"
    assert subprocess.run(cli_args(bucket, pool, "--n-samples", N), timeout=120).returncode == 0
    make_media(bucket / "new.jpg", seed=77)  # there is work to do
    before = tree_digest(pool, skip_lock=False)
    how = read_only(pool)
    r = subprocess.run(
        cli_args(bucket, pool, "--n-samples", N),
        capture_output=True,
        text=True,
        timeout=120,
        env=env_with(DATAPOOL_TEST_TRACE="1"),
    )
    assert r.returncode == 8, (how, r.stderr)
    err = [ln for ln in r.stderr.splitlines() if not ln.startswith("datapool-test:")]
    assert len(err) == 1 and err[0].startswith("datapool: error: "), r.stderr
    assert (
        f"pool folder {pool} is not writable" in err[0]
        or f"cannot open the lock file {pool}" in err[0]
    ), err[0]
    assert "nothing was done" in err[0]
    # Failed before any work: no point of the pipeline was reached (not even listing).
    assert "datapool-test: at" not in r.stderr, r.stderr
    assert tree_digest(pool, skip_lock=False) == before
    # Reading a read-only pool still works.
    s = subprocess.run(
        [sys.executable, "-m", "datapool", "status", str(pool)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert s.returncode == 0 and f"{N} samples" in s.stdout, s.stderr
    # A new pool under a read-only folder: the folder cannot be created. (Not under the pool:
    # a pool inside a pool's folder is refused before, as a usage error, test_messy_folder.)
    ro = tmp_path / "ro"
    ro.mkdir()
    read_only(ro)
    r = subprocess.run(
        cli_args(bucket, ro / "sub", "--n-samples", N),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 8 and r.stderr.startswith(
        f"datapool: error: cannot create pool folder {ro / 'sub'}"
    ), r.stderr


class _FullDiskAt:
    """os.fsync raising ENOSPC at its n-th call from the commit code (pool/journal.py, _fsio.py): a
    full disk reported at a durable write. fsync is where a full disk shows on filesystems with
    delayed allocation, and every write of a commit is followed by one."""

    def __init__(self, n: int) -> None:
        self.n, self.calls, self.real = n, 0, os.fsync

    def __call__(self, fd: int) -> None:
        if (
            sys._getframe(1).f_code.co_filename.endswith(("pool/journal.py", "_fsio.py"))
            and not _in_sidecar()
        ):
            self.calls += 1
            if self.calls == self.n:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.real(fd)


def _in_sidecar() -> bool:
    """Writes of the binary sidecar (a cache, rebuilt when a copied pool is opened) are not the
    commit's; their failure only costs the cache."""
    f = sys._getframe(2)
    while f is not None:
        if f.f_code.co_filename.endswith("sidecar.py"):
            return True
        f = f.f_back
    return False


@pytest.mark.parametrize("keep_history", [False, True])
def test_enospc_at_every_durable_write_of_a_commit(tmp_path, make_media, monkeypatch, keep_history):
    """The second run appends rows to the pool CSV. Fail each durable write of its commit in
    turn: before the journal is durable, and during the append that follows it, the pool must
    be byte for byte as before; after the appends (renames need no space) the journal finishes
    the commit on the next open. Either way the next run completes with the uninterrupted result.
    With --keep-history the snapshot of the pool is staged in the commit too (its copies and
    folders are durable writes): a failure there is the same clear error, and leaves no
    snapshot."""
    bucket, base, reference = second_run_setup(tmp_path, make_media, int(N))
    before = tree_digest(base, skip_lock=False)
    outcomes = []
    for n in range(1, 61):
        pool = tmp_path / f"trial{n}"
        shutil.copytree(base, pool)
        with monkeypatch.context() as m:
            m.setattr(os, "fsync", _FullDiskAt(n))
            try:
                datapool.run(
                    bucket, pool, n_samples=int(N), progress=False, keep_history=keep_history
                )
            except PoolWriteError as e:
                message = str(e)
            else:
                outcomes.append("completed")
                assert_same_pool(Pool.open(pool), reference)
                break
        assert message.startswith(f"cannot write pool {pool} (No space left on device); "), message
        if message.endswith("the commit was rolled back: the pool is as it was before this run"):
            outcomes.append("rolled back")
            assert leftovers(pool) == []
            assert tree_digest(pool, skip_lock=False) == before
            assert not (pool / "runs" / "1").exists()
        else:
            assert message.endswith("will be completed when the pool is next opened"), message
            outcomes.append("rolled forward")
            opened = Pool.open(pool)
            # (None when only the last folder fsync, after the journal was removed, failed)
            assert opened.recovered in {"rolled forward", None} and leftovers(pool) == []
            assert_same_pool(opened, reference)
        assert_ledger_agrees(Pool.open(pool))
        datapool.run(bucket, pool, n_samples=int(N), progress=False)
        assert_same_pool(Pool.open(pool), reference)
        shutil.rmtree(pool)
    print("fsync sweep:", outcomes)
    assert outcomes[-1] == "completed", outcomes
    assert outcomes.count("rolled forward") >= 1, outcomes
    # 6 staged files, the journal and its folder, the append: all of them leave the previous pool.
    assert outcomes.count("rolled back") >= 8, outcomes
    first_forward = (
        outcomes.index("rolled forward") if "rolled forward" in outcomes else len(outcomes)
    )
    assert set(outcomes[:first_forward]) == {"rolled back"}
    assert set(outcomes[first_forward:-1]) <= {"rolled forward"}


def test_enospc_through_the_cli_is_one_line_and_exit_1(tmp_path, make_media):
    """The same fault in a real `datapool run` process, at the append after the commit point."""
    bucket, base, _ = second_run_setup(tmp_path, make_media, int(N))
    before = tree_digest(base, skip_lock=False)
    code = textwrap.dedent("""
        import errno, os, sys
        real = os.fsync
        def fsync(fd):
            caller = sys._getframe(1)
            if caller.f_code.co_name == "cut_and_append" and caller.f_back.f_code.co_name == "_replay":
                # the append to the pool CSV
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real(fd)
        os.fsync = fsync
        from datapool.cli import main
        sys.exit(main(sys.argv[1:]))
    """)
    r = subprocess.run(
        [sys.executable, "-c", code, *cli_args(bucket, base, "--n-samples", N)[3:]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 8
    assert r.stderr == (
        f"datapool: error: cannot write pool {base} (No space left on device); the "
        "commit was rolled back: the pool is as it was before this run\n"
    )
    assert tree_digest(base, skip_lock=False) == before and leftovers(base) == []


def test_enospc_on_a_real_full_tmpfs(tmp_path, make_media):
    """Where mounting is allowed: the pool on a small tmpfs, filled until only `room` bytes are
    free, for several values of room between none and what the commit needs."""
    bucket, base, reference = second_run_setup(tmp_path, make_media, int(N))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    why = try_mount("-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt))
    if why is not None:
        pytest.skip(
            f"cannot mount a tmpfs here ({why}); "
            "test_enospc_at_every_durable_write_of_a_commit covers ENOSPC by injection"
        )
    try:
        commit_bytes = sum(
            p.stat().st_size for p in (tmp_path / "reference").rglob("*") if p.is_file()
        ) - sum(p.stat().st_size for p in base.rglob("*") if p.is_file())
        page = os.statvfs(mnt).f_frsize
        outcomes = []
        for room in [k * page for k in (0, 2, 6, 10, 14, 18, 32, 64)]:
            pool = mnt / "pool"
            shutil.copytree(base, pool)
            before = tree_digest(pool, skip_lock=False)
            st = os.statvfs(mnt)
            fill = st.f_bavail * st.f_frsize - room
            with open(mnt / "filler", "wb") as f:
                f.write(b"\0" * max(fill, 0))
            r = subprocess.run(
                cli_args(bucket, pool, "--n-samples", N),
                capture_output=True,
                text=True,
                timeout=120,
            )
            if r.returncode == 0:
                outcomes.append((room, "completed"))
            else:
                assert r.returncode == 8 and r.stderr.count("\n") == 1, r.stderr
                assert "No space left on device" in r.stderr, r.stderr
                if "nothing was done" in r.stderr:  # no room even for the lock record
                    outcomes.append((room, "refused"))
                else:
                    assert "the pool is as it was before this run" in r.stderr, r.stderr
                    outcomes.append((room, "rolled back"))
                assert leftovers(pool) == [] and tree_digest(pool, skip_lock=False) == before
            (mnt / "filler").unlink()
            datapool.run(bucket, pool, n_samples=int(N), progress=False)
            assert_same_pool(Pool.open(pool), reference)
            shutil.rmtree(pool)
        print("tmpfs:", commit_bytes, outcomes)
        kinds = [k for _, k in outcomes]
        assert kinds[-1] == "completed" and kinds.count("rolled back") >= 3, (
            commit_bytes,
            outcomes,
        )
    finally:
        umount(mnt)


def test_enospc_during_a_first_run_leaves_no_pool(tmp_path, make_media, monkeypatch):
    """A first run writes the whole CSV (no append). Failing each durable write in turn leaves
    either no pool at all (every staged file and folder is removed, and so is the pool folder the
    run made) or, past the commit point, the complete pool."""
    bucket = make_small_bucket(tmp_path / "bucket", make_media)
    reference = tmp_path / "reference"
    datapool.run(bucket, reference, n_samples=int(N), progress=False)
    ref = Pool.open(reference)
    outcomes = []
    for n in range(1, 41):
        pool = tmp_path / f"trial{n}"
        with monkeypatch.context() as m:
            m.setattr(os, "fsync", _FullDiskAt(n))
            try:
                datapool.run(bucket, pool, n_samples=int(N), progress=False)
            except PoolWriteError as e:
                message = str(e)
            else:
                outcomes.append("completed")
                break
        if message.endswith("the pool is as it was before this run"):
            outcomes.append("rolled back")
            assert not pool.exists()
        else:
            assert message.endswith("will be completed when the pool is next opened"), message
            outcomes.append("rolled forward")
            assert_same_pool(Pool.open(pool), ref)
        datapool.run(bucket, pool, n_samples=int(N), progress=False)
        assert_same_pool(Pool.open(pool), ref)
        shutil.rmtree(pool)
    assert outcomes[-1] == "completed" and outcomes.count("rolled back") >= 8, outcomes
