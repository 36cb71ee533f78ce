"""The lock object of an S3 pool, held with a lease: `<prefix>/.datapool-lock.json`.

Where the server honours `If-None-Match` / `If-Match`, the manifest's conditional write decides
which of two runs commits (see s3/store.py), and the lock object only makes a second run fail
fast instead of doing all its work to lose the commit (`conditional=True`): it is created with
`If-None-Match: *`, an expired one is taken over with `If-Match` on the ETag read, and renewed with
`If-Match` on the ETag written, so exactly one run holds it; a run that lost it still commits only
if the manifest is the one it read. Where the server ignores them, the lock object is what guards
the pool, best-effort, as below. A run holds it while it works:

    {"owner": a random token, "host", "pid", "acquired_at", "expires_at": unix time, "lease_s"}

Acquire: read the lock object. If it is there, not expired and not ours, stop at once with
PoolLockedError (exit 3), naming the holder and when its lease expires. If it is absent, or its
lease has expired (a run that crashed or was killed; this is taken over with a warning), write
ours, wait a short settle delay, and read it back: if another run's token is there, that run won,
and this one stops with PoolLockedError.

While the run works, a background thread renews the lease every third of its length (read, check
that the token is still ours, write a new `expires_at`). Before the manifest is written, the run
checks that the lock object still holds its token with some lease left (s3/store.py then also checks
that the manifest is the one it read). At the end, on errors too, the thread stops and the lock
object is deleted if it still holds this run's token.

This is best-effort mutual exclusion, which is what such servers allow: without a conditional
write, "read, then write" is never atomic, and the last writer wins. Two runs that both find the
lock free and both write it within the settle delay are told apart by the read-back; a run stalled
between its read and its write for longer than the settle delay (or a run paused past its lease)
can still overwrite a rival's lock object, and the pre-commit check of the lease and of the
manifest's ETag narrows that window to the moment between the check and the manifest write, but
cannot close it. `expires_at` is the writer's clock: hosts sharing a pool need clocks that agree to
well within the lease (NTP does).

A lock object whose holder ran on this host under a process id that no longer exists (a run
killed with SIGKILL) is taken over at once, with the warning, in either mode.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from datapool.errors import IN_RESULT, PoolLockedError, SourceError
from datapool.pool.layout import S3_LOCK_NAME
from datapool.pool.lock import pid_alive
from datapool.s3.client import CONFLICT, NOT_FOUND, error_code

# How long a run waits between writing the lock object and reading it back. Tests shorten it.
SETTLE_S = 1.0
log = logging.getLogger("datapool")


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def _holder(info: dict[str, Any]) -> str:
    if info.get("unreadable"):
        return "a run that left an unreadable lock object"
    return f"pid {info.get('pid')} on {info.get('host')} (token {str(info.get('owner'))[:8]})"


class S3Lease:
    """The lock object `<prefix>.datapool-lock.json` of one S3 pool, held with a renewed lease.

    `fail(error, what)` turns a boto3 error into the SourceError the run stops with.
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str,
        url: str,
        lease_s: float,
        fail: Callable[[BaseException, str], SourceError],
        settle_s: float | None = None,
        conditional: bool = False,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.key = prefix + S3_LOCK_NAME
        self.url = url
        self.lock_url = url + S3_LOCK_NAME
        self.lease_s = float(lease_s)
        self.settle_s = SETTLE_S if settle_s is None else float(settle_s)
        self._fail = fail
        self.conditional = conditional
        self._etag: str | None = None  # the ETag of our lock object, when conditional
        self.token = secrets.token_hex(16)
        self.held = False
        self.renewals = 0
        self.lost: str | None = None  # why the lease is no longer ours, once the renewer found out
        self._renew_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- reading and writing the lock object ----------------------------------------------------

    def _read(self) -> dict[str, Any] | None:
        """The lock object's record, None when there is none. An unreadable record expires one
        lease after it was written (its LastModified)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=self.key)
            data = resp["Body"].read()
        except ClientError as e:
            if error_code(e) in NOT_FOUND:
                return None
            raise self._fail(e, f"reading the lock object {self.lock_url}") from None
        except BotoCoreError as e:
            raise self._fail(e, f"reading the lock object {self.lock_url}") from None
        try:
            info = json.loads(data)
            if not isinstance(info, dict) or not isinstance(info.get("owner"), str):
                raise ValueError("no owner")
            info["expires_at"] = float(info["expires_at"])
        except (ValueError, KeyError, TypeError):
            written = resp["LastModified"].timestamp()
            info = {"owner": None, "unreadable": True, "expires_at": written + self.lease_s}
        info["etag"] = resp.get("ETag")
        return info

    def _write(self, **condition: str) -> bool:
        """Write our record; False when `condition` (IfNoneMatch / IfMatch) failed: another run
        wrote or holds the object."""
        from botocore.exceptions import BotoCoreError, ClientError

        now = time.time()
        body = {
            "owner": self.token,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "acquired_at": now,
            "expires_at": now + self.lease_s,
            "lease_s": self.lease_s,
        }
        try:
            resp = self.client.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=(json.dumps(body) + "\n").encode(),
                ContentType="application/json",
                **condition,
            )
        except ClientError as e:
            if condition and error_code(e) in CONFLICT:
                return False
            raise self._fail(e, f"writing the lock object {self.lock_url}") from None
        except BotoCoreError as e:
            raise self._fail(e, f"writing the lock object {self.lock_url}") from None
        self._etag = resp.get("ETag")
        return True

    def holder(self) -> dict[str, Any] | None:
        """Who holds the lock object, for `datapool status`: read, never written. None where
        there is none; else `pid`, `host`, `since` and `until` (ISO 8601, UTC; None where the
        object is unreadable) and `state`: 'held', or 'stale' (with `reason`) where its lease
        expired or its process is gone from this host (the next run takes it over, as
        `acquire` does)."""
        info = self._read()
        if info is None:
            return None
        gone = (
            info.get("host") == socket.gethostname()
            and isinstance(info.get("pid"), int)
            and not pid_alive(info["pid"])
        )
        since = info.get("acquired_at")
        expired = info["expires_at"] <= time.time()
        return {
            "state": "stale" if gone or expired else "held",
            **({"reason": "that process is gone from this host"} if gone else {}),
            **({"reason": "its lease expired"} if expired else {}),
            "pid": info.get("pid"),
            "host": info.get("host"),
            "since": _utc(float(since)) if isinstance(since, (int, float)) else None,
            "until": _utc(info["expires_at"]),
        }

    # --- the lease's life -----------------------------------------------------------------------

    def acquire(self) -> str | None:
        """Take the lock or raise PoolLockedError; the warning when an expired lease was taken over."""
        if self.conditional and self._write(IfNoneMatch="*"):
            self.held = True
            return self._started(None)
        info = self._read()
        took_over = self._stale(info)
        if self.conditional:
            won = (
                self._write(IfMatch=info["etag"])
                if info is not None
                else self._write(IfNoneMatch="*")
            )
            if not won:  # another run wrote it between our read and our write
                raise self._locked_at_once(self._read())
            self.held = True
            return self._started(took_over)
        self.held = True  # from here on, release() deletes the object if it holds our token
        self._write()
        time.sleep(self.settle_s)
        back = self._read()
        if back is None or back.get("owner") != self.token:
            self.held = False
            raise self._locked_at_once(back)
        return self._started(took_over)

    def _stale(self, info: dict[str, Any] | None) -> str | None:
        """None for no lock object; the warning for one to take over (expired, or its holder's
        process is gone from this host); PoolLockedError for one held."""
        if info is None:
            return None
        now = time.time()
        gone = (
            info.get("host") == socket.gethostname()
            and isinstance(info.get("pid"), int)
            and info["pid"] != os.getpid()
            and not pid_alive(info["pid"])
        )
        if gone:
            return (
                f"took over the lock of the pool {self.url}: {_holder(info)} held it, and that "
                "process is gone from this host (killed?); the pool is as its last commit left "
                "it (the manifest is written last)"
            )
        if info["expires_at"] > now:
            raise PoolLockedError(
                f"the pool {self.url} is locked by another datapool run: {_holder(info)} holds "
                f"{self.lock_url} until {_utc(info['expires_at'])} "
                f"({info['expires_at'] - now:.0f} s from now); wait for it to finish, or, if "
                "that run is dead, for its lease to expire"
            )
        return (
            f"took over the expired lock of the pool {self.url}: {_holder(info)} held it until "
            f"{_utc(info['expires_at'])} ({now - info['expires_at']:.0f} s ago) and did not "
            "release it, so that run probably crashed or was killed; the pool is as its last "
            "commit left it (the manifest is written last)"
        )

    def _locked_at_once(self, back: dict[str, Any] | None) -> PoolLockedError:
        who = _holder(back) if back is not None else "a run that deleted it"
        return PoolLockedError(
            f"the pool {self.url} was locked by another datapool run at the same time "
            f"({who} holds {self.lock_url}); wait for it to finish"
        )

    def _started(self, took_over: str | None) -> str | None:
        if took_over:
            log.warning("%s", took_over, extra={IN_RESULT: True})
        self._thread = threading.Thread(target=self._renew_loop, name="datapool-lease", daemon=True)
        self._thread.start()
        return took_over

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                if self.conditional:
                    if not self._write(IfMatch=self._etag or ""):
                        self.lost = f"the lock object {self.lock_url} was taken by another run"
                        return
                    self.renewals += 1
                    continue
                info = self._read()
                if info is None or info.get("owner") != self.token:
                    who = _holder(info) if info is not None else "nobody (it was deleted)"
                    self.lost = (
                        f"the lock object {self.lock_url} no longer holds this run's "
                        f"token: {who} holds it"
                    )
                    return
                self._write()
                self.renewals += 1
                self._renew_error = None
            except SourceError as e:  # a passing fault: the next tick tries again
                self._renew_error = str(e)

    def check(self) -> str | None:
        """None while the lock object holds this run's token with at least a tenth of the lease
        left; otherwise why not (the run must then not commit)."""
        if self.lost:
            return self.lost
        info = self._read()
        if info is None or info.get("owner") != self.token:
            who = _holder(info) if info is not None else "nobody (it was deleted)"
            return (
                f"the lock object {self.lock_url} no longer holds this run's token: {who} holds it"
            )
        left = info["expires_at"] - time.time()
        if left < self.lease_s / 10:
            why = f" (renewing it failed: {self._renew_error})" if self._renew_error else ""
            return (
                f"this run's lease on {self.lock_url} has {'expired' if left <= 0 else 'nearly expired'}"
                f" ({left:.1f} s left of {self.lease_s:g} s){why}"
            )
        return None

    def release(self) -> str | None:
        """Stop renewing and delete the lock object if it still holds this run's token. Never
        raises for S3 errors: the warning when the object could not be deleted (it then expires)."""
        from botocore.exceptions import BotoCoreError, ClientError

        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if not self.held:
            return None
        self.held = False
        try:
            if self.conditional:  # only if it is still the object we wrote: no read first
                self.client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self._etag)
                return None
            info = self._read()
            if info is None or info.get("owner") != self.token:
                return None  # another run holds it now: not ours to delete
            self.client.delete_object(Bucket=self.bucket, Key=self.key)
            return None
        except ClientError as e:
            if self.conditional and error_code(e) in CONFLICT:
                return None  # another run took it over: not ours to delete
            return self._not_released(e)
        except (SourceError, BotoCoreError) as e:
            return self._not_released(e)

    def _not_released(self, e: BaseException) -> str:
        msg = (
            f"could not release the lock object {self.lock_url} ({e}); other runs wait "
            f"until its lease expires (at most {self.lease_s:g} s)"
        )
        log.warning("%s", msg, extra={IN_RESULT: True})
        return msg
