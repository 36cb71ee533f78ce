"""Export of a run's selection: the selected samples as files, to a folder, an S3 prefix or a GCS
prefix.

    DEST/<image key>                  each selected image, its bytes as they are in the source
    DEST/<stem>-<index>-<ext>.png     each selected video frame, full size, PNG, Lightly's name
    DEST/<stem>-<ext>-crop-<i>.png    each selected object crop (crop selection), PNG, cut as the
                                      run cut it (box, padding, clipped, in the image as shown)
    DEST/<image key>                  ... and beside the crops, each image that holds one
    DEST/selected_filenames.txt       the names this run exported, one per line
    DEST/label_studio_tasks.json      with --tasks: what a labelling tool imports, one task per
    DEST/labelbox_data_rows.json      name the list has, each at the file's URL (export_tasks.py)
    DEST/coco.json                    with --tasks coco: the same files by name, their size as
                                      shown, and --pre-annotate's boxes (export_coco.py)
    DEST/.datapool-export-files.json  every file an export wrote here (a local folder only)

The folder accumulates across runs (each run adds its new samples); `selected_filenames.txt` lists
this run's. A video frame is decoded again from the source (only the selected videos, up to their
last selected frame); its index is the decoded frame number, as in the run, and it is turned the
way a player shows it (the display-matrix rotation phones write), as the embedder saw it.

`check_destination` runs before a run does any work (a dry run too) and before `datapool export`
lists a source, so a destination that cannot be written (a folder under a file or read-only, a
bucket not there, credentials missing or refused) stops it before anything is decoded or
committed; a bucket's check that cannot tell (it was itself denied) warns. `export_pool`
(`datapool export POOL DEST`) makes or redoes an export at any time: one run's samples, the
latest run's, or the whole pool, and with `mirror=True` the files earlier exports wrote there
that are not among those samples are removed (the record names them; any other file, a user's
own, is left where it is). It lists each source
again first and compares every file with the pool's ledger, as a run does: a sample whose file
changed or went since its run embedded it is refused (CHANGED, GONE), never exported from the
new bytes.

Names that one file system would take for one file (macOS, Windows, exFAT and SMB ignore case
and Unicode normalisation: `A.jpg` and `a.jpg`) are never both written as they are: the later
ones, and any that would land on a file an earlier export wrote here, get a suffix made from
their own spelling (naming.portable_names), the export warns, and `ExportResult.renamed` maps
each sample name to its file. Names Windows cannot hold are written, with one warning.

A bucket prefix (s3://, gs://) only grows: each file is one object, written as it comes (a
completed upload is durable); the names already under the prefix are listed first, so that no
name of this export folds onto one of them (as onto an earlier export's file in a folder), and
no object is ever deleted (no --mirror, no record).

Keys come from the source, and an S3 key may be anything: `../x.jpg`, `/etc/x.jpg`, or contain a
NUL. Such names are refused and reported, never written. For a local folder, no write ever leaves
it: every folder on the way is checked not to be a symbolic link before it is created or entered,
and files are written beside their target and renamed onto it (a rename replaces a link, it never
writes through one). Each file is fsynced before its rename and the folders after the files, so
`selected_filenames.txt` is durable only once the samples it lists are.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datapool._fsio import BatchedWrites, fsync_dir, unexpanded_home
from datapool._testhooks import point
from datapool.errors import IN_RESULT, ConfigError, DecodeError, OutputWriteError, SourceError
from datapool.export_coco import check_coco_task, coco_bytes
from datapool.export_tasks import (
    TASK_FILES,
    URL_FORMATS,
    BucketPrefix,
    Locator,
    check_bucket_names,
    check_tasks,
    label_studio_config,
    label_studio_prediction,
    local_files_serving,
    part_inside,
    s3_https_base,
    task_entries,
    tasks_bytes,
)
from datapool.naming import (
    counted,
    crop_key_of,
    frame_index,
    media_kind,
    portable_names,
    windows_name_problem,
)
from datapool.sources import for_export, read_media

if TYPE_CHECKING:
    import pandas as pd

    from datapool.config import RunConfig
    from datapool.lightly import Labelled
    from datapool.progress import Phase

log = logging.getLogger("datapool")

LIST_NAME = "selected_filenames.txt"
# The record of the files exports wrote into a local folder: all that --mirror may delete.
RECORD_NAME = ".datapool-export-files.json"
# Why `export_pool` refuses a sample whose source file is no longer the one its run embedded.
CHANGED = "changed since it was selected: run `datapool run` again to re-embed it"
GONE = "no longer in the source (deleted or moved; give --source if the source moved)"
NOT_IN_GIVEN = "not in the --source given (is it the folder the pool was grown from?)"


@dataclass
class ExportResult:
    dest: str
    written: list[str] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)  # {"name", "reason"}
    removed: list[str] = field(default_factory=list)  # by --mirror: files no longer selected
    # crop selection: the images that hold the crops written, written beside them
    images: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)  # by --mirror: files no export wrote
    # sample (or image) name -> the name it was written under: another of its spelling but for
    # case or Unicode normalisation is in the export (naming.portable_names)
    renamed: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # on stderr as they come, and here
    # --tasks: format -> the tasks file written (its path, or s3:// URL)
    tasks: dict[str, str] = field(default_factory=dict)
    # --pre-annotate: the Label Studio labelling config whose tags its predictions name
    label_config: str | None = None
    # --tasks label-studio to a folder, its URLs Label Studio's local files: how Label Studio
    # serves the folder's files there (export_tasks.local_files_serving), printed
    serving: str | None = None
    # --pre-annotate: each written picture's (width, height) as shown, by sample name
    # --pre-annotate or --tasks coco: each written picture's (width, height) as shown, by
    # sample name
    sizes: dict[str, tuple[int, int]] | None = field(default=None, repr=False)
    # `export_pool` of one run: its record in runs.json (index, tag, started_at), for the
    # caller to put what the export did into that run's report (runner/exported.py); not in
    # to_json (the report it goes into is that run's)
    run: dict[str, Any] | None = field(default=None, repr=False)
    # the number of samples in the pool, for the summary of an export of one run to say how
    # many more `--all` would export (not in to_json)
    pool_size: int = field(default=0, repr=False)

    def to_json(self) -> dict[str, Any]:
        return (
            {
                "dest": self.dest,
                "written": len(self.written),
                "images": len(self.images),
                "refused": self.refused,
                "removed": len(self.removed),
                "left": len(self.left),
                "renamed": self.renamed,
                "warnings": self.warnings,
                "tasks": self.tasks,
            }
            | ({"label_config": self.label_config} if self.label_config else {})
            | ({"label_studio_serving": self.serving} if self.serving else {})
        )

    def warn(self, message: str) -> None:
        """A warning of this export: on stderr now (as one a result holds: `--json` prints it
        there, not on stderr too), and in `warnings`."""
        self.warnings.append(message)
        log.warning("%s", message, extra={IN_RESULT: True})


def unsafe_name_reason(name: str) -> str | None:
    """Why `name` may not be written under an export folder, or None when it is safe."""
    if not name:
        return "empty name"
    if "\x00" in name:
        return "the name contains a NUL character"
    if name.startswith(("/", "\\")) or (
        len(name) > 2 and name[0].isalpha() and name[1] == ":" and name[2] in "/\\"
    ):
        return "the name is an absolute path"
    parts = name.replace("\\", "/").split("/")
    if any(p == ".." for p in parts):
        return "the name contains a '..' path part"
    if any(p in ("", ".") for p in parts):
        return "the name contains an empty or '.' path part"
    return None


class _LocalDest:
    def __init__(self, root: str) -> None:
        self.root = Path(root)
        # Folders with new entries not yet fsynced (a new export folder is one of its parent's).
        self._unsynced: set[Path] = set() if self.root.is_dir() else {self.root.parent}
        self.root.mkdir(parents=True, exist_ok=True)
        self.real_root = os.path.realpath(self.root)
        self.label = dest_label(root)
        # (device, inode) of each file written: --mirror never removes one of them under another
        # spelling of its name (where the file system ignores case, `A.jpg` opens `a.jpg`)
        self._written: set[tuple[int, int]] = set()
        # Files written beside their targets, made durable and renamed a batch at a time
        self._batch = BatchedWrites(self._renamed)
        self._folders: dict[str, Path] = {}  # the folders checked so far (_folder)

    def write(self, name: str, data: bytes) -> None:
        """Write `name` beside its place; `sync` (or a full batch) makes it durable and renames
        it into place, then fsyncs its folder."""
        where, _, base = name.rpartition("/")
        folder = self._folders.get(where) or self._folder(where)
        target = folder / base
        if target.is_dir() and not target.is_symlink():
            raise _Refused(f"{target} is a folder")
        # Written beside the target and renamed onto it: a rename replaces a link at `target`,
        # it never writes through one.
        self._batch.add(target, data)

    def _folder(self, where: str) -> Path:
        """The folder `where` (a/b/c) under the root, made where missing, once checked to be a
        folder inside the export folder reached through no symbolic link."""
        folder = self.root
        for part in where.split("/") if where else ():
            folder = folder / part
            if folder.is_symlink():
                raise _Refused(f"{folder} is a symbolic link; datapool does not write through it")
            if folder.exists() and not folder.is_dir():
                raise _Refused(f"{folder} exists and is not a folder")
            if not folder.is_dir():
                folder.mkdir(exist_ok=True)
                self._unsynced.add(folder.parent)
        real = os.path.realpath(folder)
        if real != self.real_root and not real.startswith(self.real_root + os.sep):
            raise _Refused("the write would leave the export folder")
        self._folders[where] = folder  # (the samples of a folder are checked once, not each)
        return folder

    def _renamed(self, target: Path) -> None:
        self._unsynced.add(target.parent)
        st = os.lstat(target)
        self._written.add((st.st_dev, st.st_ino))

    def discard(self) -> None:
        """Remove the files written but not yet renamed into place (an export that stopped)."""
        self._batch.discard()

    def sync(self) -> None:
        """Make every write so far durable and in place: the pending files (one syncfs for
        the batch), then the folders they were renamed into (once each)."""
        self._batch.flush()
        for folder in sorted(self._unsynced, key=lambda p: len(p.parts), reverse=True):
            fsync_dir(folder)
        self._unsynced.clear()

    def exported(self) -> set[str]:
        """The files exports wrote here: the record's names, and those of selected_filenames.txt
        (a folder an older datapool exported to has only that list). Neither is read through a
        symbolic link; one that cannot be read names nothing."""
        names: set[str] = set()
        for name in (RECORD_NAME, LIST_NAME):
            path = self.root / name
            try:
                if path.is_symlink() or not path.is_file():
                    continue
                text = path.read_text(encoding="utf-8")
                found = json.loads(text)["files"] if name == RECORD_NAME else text.splitlines()
            except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
                continue
            names.update(n for n in found if isinstance(n, str))
        return names

    def record(self, names: set[str]) -> None:
        """Write the record of the files exports wrote here (durably, as a sample)."""
        self.write(RECORD_NAME, json.dumps({"files": sorted(names)}, indent=0).encode())

    def remove(self, name: str) -> bool:
        """Delete the file `name` (written by an export) and the folders that leaves empty;
        False where it is not there, is a folder, or a folder on its way is a symbolic link
        (never followed out of the export folder)."""
        folder = self.root
        for part in name.split("/")[:-1]:
            folder = folder / part
            if folder.is_symlink() or not folder.is_dir():
                return False
        path = self.root / name
        if path.is_dir() and not path.is_symlink():
            return False
        try:
            st = os.lstat(path)
            if (st.st_dev, st.st_ino) in self._written:  # this export's file, spelt otherwise
                return False
            path.unlink()
        except FileNotFoundError:
            return False
        self._folders.clear()  # (a folder left empty goes)
        while folder != self.root and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
        return True


class _BucketDest(ABC):
    """An export into a bucket's prefix (_S3Dest, _GcsDest): each file one object. Planning
    (_plan_names, _plan_tasks) and writing are the same for both; a store gives `write`, and
    `existing` (the names under the prefix, or why they cannot be listed)."""

    scheme = ""

    def __init__(self, bucket: str, prefix: str) -> None:
        self.bucket, self.prefix = bucket, prefix
        self.label = f"{self.scheme}://{bucket}/{prefix}"
        self.keys_before: set[str] = set()  # the keys under the prefix before (_plan_names)

    @abstractmethod
    def write(self, name: str, data: bytes) -> None:
        """Put `data` as the object `name` under the prefix."""

    def sync(self) -> None:
        """Nothing to do: a completed upload is durable."""
        return None

    @abstractmethod
    def existing(self) -> set[str] | str:
        """The keys under the prefix (relative to it): what earlier exports (or anyone) put
        there, which a name of this export must not fold onto (a copy of the prefix to a Mac,
        `aws s3 sync`, `gcloud storage cp -r`, would keep one of the two). Where listing is
        denied (a role that may write objects but not list them), why, as a message: the export
        goes on."""

    def https_base(self) -> str:
        """The https URL of the bucket's objects Labelbox reads (S3), "" where not known."""
        return ""

    @abstractmethod
    def check(self, said: str) -> str | None:
        """Whether the bucket can take this export, asked before a run does any work (and
        before `datapool export` lists a source): raises OutputStoreError, its message starting
        with `said` ("--export s3://b/x/"), where it certainly cannot (no such bucket, no
        credentials or credentials the store refuses, an endpoint that cannot be reached);
        returns a warning where the check cannot tell (it was itself denied: a role that may
        put objects but not ask of the bucket), None where the bucket is there."""


class _S3Dest(_BucketDest):
    scheme = "s3"

    def __init__(self, url: str, config: RunConfig | None) -> None:
        from datapool.s3.client import S3Client, S3Settings, parse_s3_url

        super().__init__(*parse_s3_url(url))
        self.client = S3Client(S3Settings.from_config(config))

    def write(self, name: str, data: bytes) -> None:
        from datapool.s3.client import put_object

        put_object(self.client, self.bucket, self.prefix + name, data)

    def existing(self) -> set[str] | str:
        from botocore.exceptions import BotoCoreError, ClientError

        from datapool.errors import OutputStoreError
        from datapool.s3.client import DENIED, error_code

        what = f"listing the export prefix {self.label}"
        keys: set[str] = set()
        try:
            pages = self.client.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            )
            for page in pages:
                keys.update(str(o["Key"])[len(self.prefix) :] for o in page.get("Contents", ()))
        except ClientError as e:
            if error_code(e) in DENIED:
                return self.client.error(e, self.bucket, what)[1]
            raise self.client.stop(e, self.bucket, what, OutputStoreError) from None
        except BotoCoreError as e:
            raise self.client.stop(e, self.bucket, what, OutputStoreError) from None
        return keys

    def https_base(self) -> str:
        return s3_https_base(self.client.client, self.bucket)

    def check(self, said: str) -> str | None:
        """HeadBucket (s3:ListBucket). Where it is refused (a bare 403, no code), a listing of
        one key tells credentials the store does not know from a policy that denies the
        question: only the first certainly stops the export."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        from datapool.errors import OutputStoreError
        from datapool.s3.client import DENIED, error_code

        try:
            self.client.client.head_bucket(Bucket=self.bucket)
            return None
        except ClientError as e:
            code = error_code(e)
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise OutputStoreError(self._no_bucket(said)) from None
            if code not in DENIED:  # (a 5xx still failing after the retries)
                return self._cannot_tell(said, e, "HeadBucket")
        except (NoCredentialsError, PartialCredentialsError):
            raise OutputStoreError(
                f"{said}: no usable AWS credentials found for S3 bucket {self.bucket!r}; set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with a "
                "role; nothing was done"
            ) from None
        except BotoCoreError as e:  # (an endpoint that cannot be reached, after the retries)
            raise OutputStoreError(self._unreachable(said, e)) from None
        return self._denied(said)

    def _denied(self, said: str) -> str | None:
        """HeadBucket was refused: what a listing of one key says of the credentials."""
        from botocore.exceptions import BotoCoreError, ClientError

        from datapool.errors import OutputStoreError
        from datapool.s3.client import error_code

        try:
            self.client.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)
            return None
        except ClientError as e:
            code = error_code(e)
            if code == "NoSuchBucket":
                raise OutputStoreError(self._no_bucket(said)) from None
            if code in _S3_BAD_CREDENTIALS:
                raise OutputStoreError(
                    f"{said}: the S3 endpoint {self.client.endpoint} refused the credentials "
                    f"({code}, HTTP 403) for bucket {self.bucket!r}; check AWS_ACCESS_KEY_ID, "
                    "AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN and AWS_PROFILE; nothing was done"
                ) from None
            return self._cannot_tell(said, e, "HeadBucket and ListObjectsV2")
        except BotoCoreError as e:
            raise OutputStoreError(self._unreachable(said, e)) from None

    def _no_bucket(self, said: str) -> str:
        return (
            f"{said}: the S3 bucket {self.bucket!r} does not exist (endpoint "
            f"{self.client.endpoint}); check its name, or create it first (aws s3 mb "
            f"s3://{self.bucket}); nothing was done"
        )

    def _unreachable(self, said: str, exc: BaseException) -> str:
        _, why = self.client.error(exc, self.bucket, "checking the bucket")
        return (
            f"{said}: {why}; check --s3-endpoint-url, AWS_ENDPOINT_URL and the network; "
            "nothing was done"
        )

    def _cannot_tell(self, said: str, exc: BaseException, asked: str) -> str:
        _, why = self.client.error(exc, self.bucket, asked)
        return (
            f"{said}: could not check that the bucket is there and takes writes ({why}); "
            f"going on: {_FAILS_LATER}"
        )


class _GcsDest(_BucketDest):
    """gs://bucket/prefix, through google-cloud-storage (datapool.gcs.client: Application
    Default Credentials, the emulator of STORAGE_EMULATOR_HOST, its retries and timeouts)."""

    scheme = "gs"

    def __init__(self, url: str, config: RunConfig | None) -> None:
        from datapool.errors import OutputStoreError
        from datapool.gcs.client import INSTALL_HINT, GcsClient, parse_gs_url
        from datapool.specs import strip_userinfo

        try:
            super().__init__(*parse_gs_url(url))
        except SourceError as e:
            raise ConfigError(f"cannot export to {strip_userinfo(url)}: {e}") from None
        try:
            self.gcs = GcsClient(bucket=self.bucket)
        except SourceError as e:  # (no library, no credentials: nothing to do with a source)
            if str(e) == INSTALL_HINT:
                raise ConfigError(f"cannot export to {self.label}: {e}") from None
            raise OutputStoreError(str(e)) from None

    def write(self, name: str, data: bytes) -> None:
        import mimetypes

        key = self.prefix + name
        try:
            with self.gcs.lease() as client:
                client.bucket(self.bucket).blob(key).upload_from_string(
                    data,
                    content_type=mimetypes.guess_type(name)[0] or "application/octet-stream",
                    timeout=self.gcs.timeout,
                    retry=self.gcs.retry,  # (the same bytes again: safe to repeat)
                )
        except Exception as e:  # google.api_core, google.auth and requests errors alike
            raise self._stop(e, f"writing {key!r}", _GCS_WRITE) from None

    def existing(self) -> set[str] | str:
        from datapool.gcs.client import status_code

        what = f"listing the export prefix {self.label}"
        n = len(self.prefix)
        try:
            with self.gcs.lease() as client:
                return {
                    str(blob.name)[n:]
                    for blob in client.list_blobs(
                        self.bucket,
                        prefix=self.prefix,
                        fields="items(name),nextPageToken",
                        timeout=self.gcs.timeout,
                        retry=self.gcs.retry,
                    )
                }
        except Exception as e:
            if status_code(e) in (401, 403):
                return self.gcs.message(e, self.bucket, what, _GCS_LIST)
            raise self._stop(e, what, _GCS_LIST) from None

    def _stop(self, exc: BaseException, what: str, need: str) -> Exception:
        from datapool.errors import OutputStoreError

        return OutputStoreError(self.gcs.message(exc, self.bucket, what, need))

    def check(self, said: str) -> str | None:
        """testIamPermissions of the bucket, which any caller may ask (an object writer may not
        get the bucket's metadata): a missing bucket is a 404, credentials the service refuses a
        401; the reply lists the permissions the caller holds on the bucket. One granted on a
        managed folder only is not among them: a write permission missing is a warning."""
        from google.api_core import exceptions as api

        from datapool.errors import OutputStoreError
        from datapool.gcs.client import status_code

        try:
            with self.gcs.lease() as client:
                held = client.bucket(self.bucket).test_iam_permissions(
                    [_GCS_CREATE], timeout=self.gcs.timeout, retry=self.gcs.retry
                )
        except Exception as e:  # google.api_core, google.auth and requests errors alike
            cause = e.cause if isinstance(e, api.RetryError) and e.cause is not None else e
            code = status_code(cause)
            if code == 404 and self._bucket_there():
                return None  # (an emulator without testIamPermissions: fake-gcs-server)
            if code == 404:
                raise OutputStoreError(
                    f"{said}: the GCS bucket {self.bucket!r} does not exist (endpoint "
                    f"{self.gcs.endpoint}); check its name, or create it first (gcloud storage "
                    f"buckets create gs://{self.bucket}); nothing was done"
                ) from None
            if code is None or code == 401:  # (credentials refused, endpoint unreachable)
                words = self.gcs.message(cause, self.bucket, "checking the bucket", _GCS_WRITE)
                raise OutputStoreError(f"{said}: {words}; nothing was done") from None
            words = self.gcs.message(cause, self.bucket, "testIamPermissions", _GCS_WRITE)
            return (
                f"{said}: could not check that the bucket takes writes ({words}); going on: "
                f"{_FAILS_LATER}"
            )
        if _GCS_CREATE in held:
            return None
        return (
            f"{said}: the credentials do not hold {_GCS_CREATE} on GCS bucket {self.bucket!r} "
            "(testIamPermissions), which roles/storage.objectCreator grants; unless a managed "
            f"folder grants it on the prefix, {_FAILS_LATER}"
        )

    def _bucket_there(self) -> bool:
        """Whether the bucket answers a request for itself, asked where testIamPermissions
        was answered 404: GCS says so of a bucket that is not there, but an emulator without
        that route (fake-gcs-server) says it of every bucket. False where it cannot tell."""
        try:
            with self.gcs.lease() as client:
                return bool(
                    client.bucket(self.bucket).exists(
                        timeout=self.gcs.timeout, retry=self.gcs.retry
                    )
                )
        except Exception:  # (refused or unreachable: the 404 stands)
            return False


# The IAM permissions an export to gs:// needs, which a denied request names.
_GCS_WRITE = (
    "storage.objects.create, and storage.objects.delete to replace an object an earlier export "
    "wrote"
)
_GCS_LIST = "storage.objects.list"
_GCS_CREATE = "storage.objects.create"
# What a check that cannot tell warns of.
_FAILS_LATER = (
    "a write refused stops the export there (`run --export`: after the run is committed, saying "
    "how to redo the export)"
)
# The codes of S3 credentials the store does not take (a listing's reply names them; a refused
# HeadBucket is a bare 403): every request fails, so an export certainly cannot write.
_S3_BAD_CREDENTIALS = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
    }
)


class _Refused(Exception):
    pass


def _png(frame: Any, sar: Fraction | None = None, orientation: int | None = None) -> bytes:
    """The frame as a PNG, turned the way a player shows it (as decode.py turns it to embed):
    by `orientation` (an animated image's EXIF tag), else by the frame's display matrix.
    Its pixels are the stream's; an anamorphic stream's sample aspect ratio `sar` is written in
    the PNG's pHYs chunk (as `ffmpeg -i clip.mp4 frame.png` writes it), not resampled."""
    import av

    from datapool.ingest._exif import orient
    from datapool.ingest.decode import _video_orientation, full_rgb

    if orientation is None:
        orientation = _video_orientation(frame)
    rgb = av.VideoFrame.from_ndarray(orient(full_rgb(frame), orientation), format="rgb24")
    ctx = av.CodecContext.create("png", "w")
    ctx.width, ctx.height, ctx.pix_fmt = rgb.width, rgb.height, "rgb24"
    ctx.time_base = Fraction(1, 25)
    if sar and sar != 1:
        ctx.sample_aspect_ratio = 1 / sar if orientation in (5, 6, 7, 8) else sar
    return b"".join(bytes(p) for p in ctx.encode(rgb)) + b"".join(
        bytes(p) for p in ctx.encode(None)
    )


def _is_crop_of(name: str, key: str) -> bool:
    """Whether `name` is an object crop of the image `key` or of a frame of the video `key`."""
    parent = crop_key_of(name)
    return parent is not None and (parent == key or frame_index(parent, key) is not None)


def _video_frames(
    media: Any,
    wanted: set[int],
    keep: Callable[[Any, Any], Any] | None = None,
    kind: str | None = "video",
) -> dict[int, Any]:
    """PNG bytes of the decoded frames numbered in `wanted` (decoding stops after the last), of
    the stream decode.py reads (`video_stream`: not a cover picture); with `keep`, what it makes
    of each such frame and the stream's sample aspect ratio. The PNGs of an animated image's
    frames (`kind` "image": a GIF, an APNG) are turned by its EXIF orientation, as decoding
    turns them."""
    import av

    from datapool.ingest.decode import image_orientation, stream_sar, video_stream

    out: dict[int, Any] = {}
    turn = image_orientation(media) if kind == "image" else None
    make = keep or (lambda frame, sar: _png(frame, sar, turn))
    src = os.fspath(media) if isinstance(media, (str, os.PathLike)) else media
    if not isinstance(src, str):
        src.seek(0)
    last = max(wanted)
    try:
        with av.open(src, "r") as container:
            stream = video_stream(container)
            stream.thread_type = "AUTO"
            sar = stream_sar(stream)
            for index, frame in enumerate(container.decode(stream)):
                if index in wanted:
                    out[index] = make(frame, sar)
                if index >= last:
                    break
    except (av.error.FFmpegError, ValueError, IndexError, OSError) as e:
        raise DecodeError(f"cannot decode again for export: {e}") from None
    return out


def dest_label(dest: str) -> str:
    """An export's destination as the result and the run's report record it: a folder's
    absolute path (as a run's source is recorded, specs.normal_local_path: `demo3/export` was
    recorded as typed, which says nothing once read from another folder), an s3:// URL as
    given."""
    from datapool.specs import normal_local_path, scheme_of

    return dest if scheme_of(dest) else str(normal_local_path(dest))


# What DEST may be, as messages and --help name it.
DEST_KINDS = "a folder, s3://bucket/prefix or gs://bucket/prefix"
# The bucket stores an export writes into, by scheme.
_BUCKET_DESTS: dict[str, Callable[[str, RunConfig | None], _BucketDest]] = {
    "s3": _S3Dest,
    "gs": _GcsDest,
}


def _check_dest_scheme(dest: str) -> None:
    """Refuse a URL no export can write (http://, az://): read as a local path, it made a
    folder `http:` in the current one and said it had exported there."""
    from datapool.specs import scheme_of, strip_userinfo

    scheme = scheme_of(dest)
    if scheme not in ("", *_BUCKET_DESTS):
        raise ConfigError(
            f"cannot export to {strip_userinfo(dest)}: exports are written to {DEST_KINDS}, not "
            f"to {scheme}://; export to a folder and copy it from there"
        )


def _check_home(dest: str) -> None:
    """A DEST that starts with a `~` the shell did not expand is refused (_fsio.unexpanded_home)."""
    meant = None if "://" in dest else unexpanded_home(dest)
    if meant is not None:
        raise ConfigError(
            f"cannot export to {dest}: `~` is not expanded there: give the full path, {meant}"
        )


def _open_dest(dest: str, config: RunConfig | None) -> _LocalDest | _BucketDest:
    from datapool.specs import scheme_of

    if not dest:
        raise ConfigError(f"the export destination is empty; give {DEST_KINDS}")
    _check_dest_scheme(dest)
    _check_home(dest)
    scheme = scheme_of(dest)
    try:
        return _BUCKET_DESTS[scheme](dest, config) if scheme else _LocalDest(dest)
    except FileExistsError:
        raise OutputWriteError(
            f"cannot export to {dest}: it is a file, not a folder; give {DEST_KINDS}"
        ) from None
    except OSError as e:
        raise OutputWriteError(f"cannot create the export folder {dest}: {e.strerror}") from None
    except ImportError as e:
        raise ConfigError(f"cannot export to {dest}: {e} (pip install 'datapool[s3]')") from None


def check_destination(
    dest: str,
    config: RunConfig | None = None,
    pool: str | os.PathLike[str] | None = None,
    flag: str = "--export",
) -> str | None:
    """Raise a DatapoolError now when `dest` cannot take an export: a file, a folder that cannot
    be created or written, s3:// without boto3, gs:// without google-cloud-storage or
    credentials, a bucket that is not there or an endpoint that cannot be reached or refuses
    the credentials (_BucketDest.check), or the folder of `pool` (or one inside it, or around
    it). A run calls it before any work (a dry run too), `datapool export` (`flag` "") before it
    lists a source. It creates nothing: a test file is written and removed in the folder, or in
    the nearest folder above it that exists; a bucket is asked, never written. Returns a warning
    where a bucket's check could not tell (it was denied), None otherwise. Messages start with
    `flag` and the destination ("--export s3://b/x/: ..."), or "cannot export to" without one."""
    from datapool.specs import scheme_of

    if not dest:
        raise ConfigError(f"the export destination is empty; give {DEST_KINDS}")
    _check_dest_scheme(dest)
    _check_home(dest)
    if pool is not None:
        _check_apart_from_pool(dest, os.fspath(pool))
    if scheme_of(dest):
        target = _open_dest(dest, config)
        assert isinstance(target, _BucketDest)
        return target.check(
            f"{flag} {target.label}" if flag else f"cannot export to {target.label}"
        )
    said = f"{flag} {dest}" if flag else f"cannot export to {dest}"
    path = Path(dest).absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():  # a dangling link on the way
            break
        existing = existing.parent
    if not existing.is_dir():
        what = "it is" if existing == path else f"{existing} is"
        raise OutputWriteError(
            f"{said}: {what} a file, not a folder (an export is written to {DEST_KINDS}); "
            "nothing was done"
        )
    try:
        fd, tmp = tempfile.mkstemp(dir=existing, prefix=".datapool-export-check-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise OutputWriteError(
            f"{said}: cannot write in {existing} ({e.strerror}); give a folder this user can "
            "write; nothing was done"
        ) from None
    return None


def export_selection(
    source: Any,
    samples: Sequence[tuple[str, str, str]],
    dest: str,
    config: RunConfig | None = None,
    ledger: pd.DataFrame | None = None,
    crops: Mapping[str, Sequence[int]] | None = None,
    phase: Phase | None = None,
    tasks: Sequence[str] = (),
    url_prefix: str | None = None,
    info: Mapping[str, Mapping[str, Any]] | None = None,
    pre: PreAnnotations | None = None,
) -> ExportResult:
    """Write `samples` = [(sample name, source key, kind)] and selected_filenames.txt to `dest`,
    a folder, s3://bucket/prefix or gs://bucket/prefix. Unsafe names and unreadable sources
    are refused and reported; a destination that cannot be written raises DatapoolError. With `ledger` (a run's export: the
    ledger it committed), a file that changed since the run listed it is refused (CHANGED, GONE),
    as `export_pool` refuses it: a source that reads each file as listed (S3, If-Match) needs no
    second listing for that. `crops` (crop selection): each crop sample's pixels [x0, y0, x1,
    y1] in its image as shown. `phase` counts the samples done (progress.py). `tasks`: the
    labelling tools' tasks files to write beside the list (export_tasks.py), their URLs under
    `url_prefix`, with what `info` says of each sample (by sample name); `pre` (`run
    --pre-annotate`, read_pre_annotations of `samples`): the predictions Label Studio's tasks
    carry."""
    check_tasks(tasks, dest, url_prefix, None if pre is None else pre.task)
    if pre is not None and "coco" in tasks:
        check_coco_task(pre.task, pre.kind, pre.ids, pre.categories)
    target = _open_dest(dest, config)
    result = ExportResult(dest=target.label)
    _plan_names(target, samples, result)
    plan = _plan_tasks(target, tasks, url_prefix, info or {}, samples, result)
    if plan is not None and pre is not None:
        _plan_pre_annotations(plan, pre, result)
    if ledger is not None and not getattr(source, "reads_listed_version", False):
        samples = _still_selected(source, ledger, list(samples), result)
    if phase is not None:
        phase.set_total(len(samples))
    _write_samples(target, source, samples, result, crops, phase)
    _say_names(result)
    _write_list(target, result, plan)
    return result


@dataclass
class PreAnnotations:
    """--pre-annotate TASK: its type and category names, and its predictions of each sample
    (lightly.pre_annotations), with the samples that have none and why."""

    task: str
    kind: str
    categories: list[str]
    labelled: dict[str, list[Labelled]]
    without: list[dict[str, str]]
    ids: list[int] = field(default_factory=list)  # each category's id in schema.json


@dataclass
class _TasksPlan:
    formats: tuple[str, ...]
    locator: Locator
    info: Mapping[str, Mapping[str, Any]]  # by sample name: what a task says of it
    pre: PreAnnotations | None = None


def _read_pre_annotations(
    p: Any,
    groups: Mapping[str, Sequence[tuple[str, str, str]]],
    task: str,
    predictions_dir: str | None,
    config: RunConfig | None,
) -> PreAnnotations:
    """The predictions of `task` for the samples of `groups` (by source spec), read from each
    source's `.lightly/predictions`, or from `predictions_dir`. Refused (ConfigError): object
    crops, whose boxes are in their image's pixels (a crop is one box, cut out and padded), and
    a merged pool whose names carry a prefix its source's predictions files do not. A file that
    is not Lightly's format stops the export before anything is written (SourceError naming it)."""
    from datapool.pool.merge import in_merged_pool

    crops = [
        n for samples in groups.values() for n, k, _ in samples if n != k and _is_crop_of(n, k)
    ]
    if crops:
        raise ConfigError(
            f"--pre-annotate {task}: the samples are object crops (crop selection: "
            f"{crops[0]!r}), and a crop is one of the task's boxes, cut out and padded: its "
            "predictions are the crop itself; export them without --pre-annotate"
        )
    folder = None if predictions_dir is None else _predictions_reader(predictions_dir, config)
    out = PreAnnotations(task, "", [], {}, [])
    # (the pool's files, of every source: a file of another source of an image's name only
    # makes a predictions file without a file_name refused as shared, as a run refuses it)
    listed = p.ledger["key"].tolist()
    for spec, samples in groups.items():
        src = _open_source(spec, config)
        if in_merged_pool(src, p) is not src:
            raise ConfigError(
                f"--pre-annotate {task}: this pool was merged with prefixed names (datapool "
                "merge), which its source's predictions files are not named by; export the "
                "pools before merging them with --pre-annotate"
            )
        # (a file the pool never listed, left out by the run's filters, is asked of the source)
        got = read_pre_annotations(folder or src.read_bytes, task, samples, listed, _holds(src))
        if out.kind and (got.kind, got.categories, got.ids) != (out.kind, out.categories, out.ids):
            raise SourceError(
                f"--pre-annotate {task}: the pool's sources name different categories (or "
                f"types) for the task in their schema.json ({spec}: {got.kind}, "
                f"{got.categories}); export each source's runs apart (--run N)"
            )
        out.kind, out.categories, out.ids = got.kind, got.categories, got.ids
        out.labelled.update(got.labelled)
        out.without += got.without
    return out


def read_pre_annotations(
    read: Callable[[str], bytes | None],
    task: str,
    samples: Sequence[tuple[str, str, str]],
    listed: Iterable[str] = (),
    exists: Callable[[str], bool] | None = None,
) -> PreAnnotations:
    """The predictions of `task` for `samples` (name, key, kind) of one source, read with `read`
    (a `.lightly/...` path -> its bytes, None where missing): the task is checked to be one
    whose predictions Label Studio takes (lightly.pre_annotation_task), and a file that is not
    Lightly's format raises SourceError naming it. `listed`: the source's other files (a run's
    listing, the pool's ledger), which a predictions file an image shares with another of its
    name (`a.jpg`, `a.png`: `a.json`) may be for, as a run reads it. `run --export
    --pre-annotate` reads its picks' so, before its export writes anything."""
    from datapool.lightly import pre_annotation_task, pre_annotations

    kind, index, cats = pre_annotation_task(read, task)
    names = [n for n, _, _ in samples]
    images = {n for n, k, _ in samples if n == k} | set(listed)
    got, without = pre_annotations(read, task, (kind, index, cats), names, images, exists)
    return PreAnnotations(task, kind, cats, got, without, sorted(index, key=index.__getitem__))


def _holds(src: Any) -> Callable[[str], bool]:
    """Whether source `src` holds a file of key `key` (a path inside it), asked of the rare file
    a predictions file names in place of its own image: the source's `exists` (a bucket: one
    HEAD or metadata request, no byte of the file read); one that cannot be asked holds none."""

    def holds(key: str) -> bool:
        if key.startswith("/") or ".." in key.split("/") or "\0" in key:
            return False
        try:
            return bool(src.exists(key))
        except SourceError:
            return False

    return holds


def _plan_pre_annotations(plan: _TasksPlan, pre: PreAnnotations, result: ExportResult) -> None:
    """Label Studio's tasks (a COCO file) of `plan` carry `pre`'s predictions: the labelling
    config they fit, and the size of each picture as it is written (the boxes are put in percent
    of it, cut to it)."""
    plan.pre = pre
    if "label-studio" in plan.formats:
        result.label_config = label_studio_config(pre.kind, pre.categories)
    result.sizes = {}


def _predictions_reader(spec: str, config: RunConfig | None) -> Callable[[str], bytes | None]:
    """Reads `.lightly/predictions/...` paths from the --predictions folder `spec`, checked to
    hold tasks.json as `run --predictions` checks it."""
    from datapool.lightly import PREDICTIONS
    from datapool.sources import open_source

    try:
        folder = open_source(spec, config)
    except SourceError as e:  # a local folder that is not there
        raise ConfigError(f"--predictions {spec}: {e}") from None
    if folder.read_bytes("tasks.json") is None:
        fix = f"give a folder shaped like {PREDICTIONS}/ (docs/selection.md)"
        if folder.read_bytes(f"{PREDICTIONS}/tasks.json") is not None:
            fix = f"its {PREDICTIONS}/ has one: give --predictions {spec.rstrip('/')}/{PREDICTIONS}"
        raise ConfigError(f"--predictions {spec}: no tasks.json there; {fix}")
    head = PREDICTIONS + "/"

    def read(path: str) -> bytes | None:
        return folder.read_bytes(path[len(head) :]) if path.startswith(head) else None

    return read


def _shown_size(name: str, blob: bytes) -> tuple[int, int] | None:
    """The (width, height) of a written picture as a browser shows it: a still image's turned by
    its EXIF orientation (the pixels Lightly's boxes are in); a frame's PNG, turned already, as
    it is. None where it cannot be decoded."""
    import io

    from datapool.ingest._exif import exif_orientation, swaps_sides
    from datapool.ingest._imagesize import declared_size
    from datapool.ingest.decode import decode_shown

    size = declared_size(io.BytesIO(blob))
    if size is None:  # a format whose header datapool does not read: decoded
        try:
            shape = decode_shown(io.BytesIO(blob), name).shape
        except DecodeError:
            return None
        return int(shape[1]), int(shape[0])
    w, h = size
    return (h, w) if swaps_sides(exif_orientation(blob)) else (w, h)


def _plan_tasks(
    target: _LocalDest | _BucketDest,
    formats: Sequence[str],
    url_prefix: str | None,
    info: Mapping[str, Mapping[str, Any]],
    samples: Iterable[tuple[str, str, str]],
    result: ExportResult,
) -> _TasksPlan | None:
    """Where the tasks of `formats` will point (export_tasks.Locator), refused now, before
    anything is written, where a name cannot be pointed at."""
    if not formats:
        return None
    bucket = None
    if isinstance(target, _BucketDest):
        https = target.https_base() if "labelbox" in formats and url_prefix is None else ""
        bucket = BucketPrefix(target.scheme, target.bucket, target.prefix, https)
    else:
        result.serving, mismatch = local_files_serving(str(target.root), url_prefix)
        if mismatch:
            result.warn(mismatch)
    locator = Locator(url_prefix, bucket)
    urls = [f for f in formats if f in URL_FORMATS]
    check_bucket_names(urls, locator, [result.renamed.get(n, n) for n, _, _ in samples])
    if "coco" in formats:  # a COCO image's width and height are its picture's as shown
        result.sizes = {}
    return _TasksPlan(tuple(dict.fromkeys(formats)), locator, info)


def _plan_names(
    target: _LocalDest | _BucketDest,
    samples: Iterable[tuple[str, str, str]],
    result: ExportResult,
    mirror: bool = False,
) -> None:
    """The names this export writes (the samples', and the images or frames that hold crops),
    with those that would be one file on a file system that ignores case or Unicode
    normalisation given a suffix (naming.portable_names), in `result.renamed`. A file an earlier
    export wrote in the folder keeps its name (with `mirror`, one that stays: this export's), as
    does every key under a bucket prefix."""
    names = {name for name, _, _ in samples}
    names |= {
        crop_key_of(name) or name
        for name, key, _ in samples
        if name != key and _is_crop_of(name, key)
    }
    kept = {LIST_NAME, RECORD_NAME}
    if isinstance(target, _LocalDest):
        earlier = target.exported()
        kept |= earlier & names if mirror else earlier
    else:  # (a prefix only grows: every key there stays)
        existing = target.existing()
        if isinstance(existing, str):
            result.warn(
                f"{existing}: this export's names are kept apart from each other's by case and "
                "Unicode normalisation, but not from the keys already under the prefix"
            )
        else:
            kept |= existing
            target.keys_before = existing
    result.renamed = portable_names(names, kept | set(TASK_FILES.values()))


# Examples a warning about names gives (the JSON's `renamed` has every rename).
_NAMES_SHOWN = 3


def _say_names(result: ExportResult) -> None:
    """Warn of the names written under a suffix (`_plan_names`), and of names Windows cannot
    hold: such a folder copied to Windows, an exFAT drive or an SMB share loses those files or
    stops (they are written as they are: Linux, macOS and S3 hold them)."""
    written = set(result.written) | set(result.images)
    result.renamed = {k: v for k, v in result.renamed.items() if v in written}
    if result.renamed:
        n = len(result.renamed)
        shown = ", ".join(f"{k} -> {v}" for k, v in list(result.renamed.items())[:_NAMES_SHOWN])
        more = f", and {n - _NAMES_SHOWN} more (--json lists them)" if n > _NAMES_SHOWN else ""
        result.warn(
            f"{n} exported name{'s differ' if n != 1 else ' differs'} from another only by case "
            "or Unicode normalisation (A.jpg and a.jpg), which macOS, Windows, exFAT drives and "
            "SMB shares take for one file: written under a suffixed name so that neither "
            f"replaces the other ({shown}{more}); {LIST_NAME} lists the names as written"
        )
    bad = [(n, why) for n in sorted(written) if (why := windows_name_problem(n)) is not None]
    if bad:
        shown = "; ".join(f"{n!r}: {why}" for n, why in bad[:_NAMES_SHOWN])
        more = f"; and {len(bad) - _NAMES_SHOWN} more" if len(bad) > _NAMES_SHOWN else ""
        result.warn(
            f"{len(bad)} exported name{'s' * (len(bad) != 1)} cannot be written on Windows, an "
            f"exFAT drive or an SMB share ({shown}{more}): a copy of the export there fails or "
            "renames them; they are written as they are (Linux, macOS and S3 hold them)"
        )


def _write_list(
    target: _LocalDest | _BucketDest, result: ExportResult, plan: _TasksPlan | None = None
) -> None:
    """selected_filenames.txt, and the tasks files of `plan` (which list the same files), once
    the samples are durable. A tasks file an earlier export wrote in a folder, of a format this
    export does not write, is removed: it listed other samples than the new list."""
    listing = "".join(f"{n}\n" for n in result.written).encode()
    files = {} if plan is None else _tasks_files(plan, result)
    try:
        target.sync()  # the samples are durable before the list that names them
        if isinstance(target, _LocalDest):  # before the list: the old list's names go into it
            earlier = target.exported()
            stale = {f for f in set(TASK_FILES.values()) - set(files) if f in earlier}
            stale = {f for f in stale if target.remove(f)}
            target.record((earlier - stale) | set(result.written) | set(result.images) | set(files))
        else:
            _warn_stale_tasks(target, files, result)
        for name, data in files.items():
            target.write(name, data)
        target.write(LIST_NAME, listing)
        target.sync()
    except (OSError, _Refused) as e:
        raise OutputWriteError(f"exporting to {target.label} failed: {e}") from None
    sep = "" if target.label.endswith("/") else "/"
    fmt_of = {f: fmt for fmt, f in TASK_FILES.items()}
    result.tasks = {fmt_of[name]: f"{target.label}{sep}{name}" for name in files}


def _tasks_files(plan: _TasksPlan, result: ExportResult) -> dict[str, bytes]:
    """The tasks files of `plan`: one task per name `result` wrote (its list's names)."""
    entries = task_entries(result.written, result.renamed, plan.info)
    sizes = _written_sizes(plan, result)
    pre = plan.pre
    shown = None if pre is None else _predictions_as_shown(plan, result, sizes)
    files = {}
    for f in plan.formats:
        if f == "coco":
            files[TASK_FILES[f]] = _coco_file(pre, sizes, shown)
            continue
        predictions = None
        if pre is not None and shown is not None and f == "label-studio":
            predictions = {
                name: [label_studio_prediction(pre.kind, kept, sizes[name], pre.task)]
                for name, kept in shown.items()
            }
        files[TASK_FILES[f]] = tasks_bytes(f, entries, plan.locator, predictions)
    return files


def _written_sizes(plan: _TasksPlan, result: ExportResult) -> dict[str, tuple[int, int]]:
    """Each written picture's (width, height) as shown, by its name in the export (in the
    list's order), where `plan` needs them (--pre-annotate, --tasks coco); with a warning for
    the pictures whose size cannot be read (no predictions in their tasks, not in coco.json)."""
    if result.sizes is None:
        return {}
    back = {v: k for k, v in result.renamed.items()}
    sizes = {name: result.sizes.get(back.get(name, name), (0, 0)) for name in result.written}
    unsized = [name for name, (w, h) in sizes.items() if w <= 0 or h <= 0]
    if unsized:
        what = []
        if plan.pre is not None and "label-studio" in plan.formats:
            what.append("no predictions in their tasks")
        if "coco" in plan.formats:
            what.append(f"left out of {TASK_FILES['coco']}")
        label = plan.pre.task if plan.pre is not None else "coco"
        flag = f"--pre-annotate {label}" if plan.pre is not None else "--tasks coco"
        result.warn(
            f"{flag}: the size of {counted(len(unsized), 'picture')} written cannot be read "
            f"(first: {unsized[0]}): {', and '.join(what)}"
        )
    return {name: size for name, size in sizes.items() if name not in unsized}


def _predictions_as_shown(
    plan: _TasksPlan, result: ExportResult, sizes: Mapping[str, tuple[int, int]]
) -> dict[str, list[Labelled]]:
    """`plan.pre`'s predictions of each file written whose size is known (by its name in the
    export), each box cut to its part inside the picture as shown, with a warning for the
    samples that have none and for boxes wholly outside their picture (left out)."""
    pre = plan.pre
    assert pre is not None
    back = {v: k for k, v in result.renamed.items()}
    out: dict[str, list[Labelled]] = {}
    outside: list[str] = []
    for name, size in sizes.items():
        sample = back.get(name, name)
        if sample not in pre.labelled:
            continue
        kept: list[Labelled] = []
        for category, box, score in pre.labelled[sample]:
            if box is not None:
                part = part_inside(box, size)
                if part is None:
                    outside.append(sample)
                    continue
                box = (part[0], part[1], part[2] - part[0], part[3] - part[1])
            kept.append((category, box, score))
        out[name] = kept
    written = {back.get(n, n) for n in result.written}
    without = [w for w in pre.without if w["name"] in written]
    if without:
        n = len(without)
        noun = "task" if "label-studio" in plan.formats else "picture"
        result.warn(
            f"--pre-annotate {pre.task}: {n} of {counted(len(written), noun)} "
            "without predictions "
            f"(first: {without[0]['name']}, {without[0]['reason']}); a video frame's file is "
            "named by its frame name, as Lightly names it"
        )
    if outside:
        result.warn(
            f"--pre-annotate {pre.task}: {counted(len(outside), 'box')} wholly outside the "
            f"picture as shown (first in {outside[0]}) left out: are the boxes in its pixels, "
            "after EXIF orientation?"
        )
    return out


def _coco_file(
    pre: PreAnnotations | None,
    sizes: Mapping[str, tuple[int, int]],
    shown: Mapping[str, Sequence[Labelled]] | None,
) -> bytes:
    """coco.json of the files written (export_coco.py): each at its size as shown, with
    `pre`'s boxes (`shown`) and categories (their schema ids)."""
    categories = [] if pre is None else list(zip(pre.ids, pre.categories))
    return coco_bytes(list(sizes.items()), categories, shown)


def _warn_stale_tasks(
    target: _BucketDest, files: Mapping[str, bytes], result: ExportResult
) -> None:
    """A bucket prefix only grows: a tasks file an earlier export put there, of a format this one
    does not write, stays, and lists other samples than the new list; say so."""
    for name in sorted(set(TASK_FILES.values()) & target.keys_before - set(files)):
        result.warn(
            f"{target.label}{name} is from an earlier export and does not list this export's "
            f"samples ({LIST_NAME} does): delete it, or export again with --tasks"
        )


def _write_samples(
    target: _LocalDest | _BucketDest,
    source: Any,
    samples: Sequence[tuple[str, str, str]],
    result: ExportResult,
    crops: Mapping[str, Sequence[int]] | None = None,
    phase: Phase | None = None,
) -> None:
    # key -> [(name, frame index, or a crop's pixels, or None for the image itself)]
    todo: dict[str, list[tuple[str, int | tuple[int, ...] | None]]] = {}
    for name, key, kind in samples:
        reason = unsafe_name_reason(name)
        index: int | tuple[int, ...] | None = None
        if reason is None and name != key and _is_crop_of(name, key):
            box = (crops or {}).get(name)
            if box is None:
                reason = "no crop box recorded for it (the pool's strategy_inputs.json)"
            else:
                index = tuple(int(v) for v in box)
        elif reason is None:  # a video's frame, or an animated image's (named as a video's)
            index = frame_index(name, key)
            if index is None and kind == "video":
                reason = f"{name!r} is not a frame name of {key!r}"
        if reason is not None:
            result.refused.append({"name": name, "reason": reason})
            continue
        todo.setdefault(key, []).append((name, index))
    if phase is not None:
        phase.advance(len(samples) - sum(len(v) for v in todo.values()))  # refused by name

    written: set[str] = set()
    try:
        for key, media in source.open_inputs(sorted(todo)):
            try:
                written |= _write_file(target, key, media, todo[key], result)
                point(f"exported:{key}")
            except (_Refused, DecodeError) as e:
                for name, _ in todo[key]:
                    result.refused.append({"name": name, "reason": str(e)})
            except OSError as e:
                raise OutputWriteError(f"exporting to {target.label} failed: {e}") from None
            finally:
                if hasattr(media, "close"):
                    media.close()
                if phase is not None:
                    phase.advance(len(todo[key]))
        try:
            target.sync()  # every file written in place before anything else may stop the export
        except OSError as e:
            raise OutputWriteError(f"exporting to {target.label} failed: {e}") from None
    except BaseException:
        _record_partial(target, {result.renamed.get(n, n) for n in written})
        raise
    out = result.renamed
    result.written += [out.get(name, name) for name, _, _ in samples if name in written]
    # crop selection: the images (video frames) that hold the crops, written beside them
    result.images += sorted(out.get(n, n) for n in written - {name for name, _, _ in samples})


def _record_partial(target: _LocalDest | _BucketDest, written: set[str]) -> None:
    """An export stopped part way (Ctrl-C, a full disk): the record still names the files it
    wrote, so that a later --mirror may remove them (they were left as files no export wrote, and
    a new folder holding them was refused as not an export folder). Best effort: the error that
    stopped the export is the one reported."""
    if not isinstance(target, _LocalDest):
        return
    try:
        if written:
            target.sync()
            target.record(target.exported() | written)
            target.sync()
    except (OSError, _Refused):
        pass
    finally:
        target.discard()  # (files of a sample cut short: written, not renamed, not recorded)


def _write_file(
    target: _LocalDest | _BucketDest,
    key: str,
    media: Any,
    entries: list[tuple[str, int | tuple[int, ...] | None]],
    result: ExportResult,
) -> set[str]:
    """Write one source file's samples; the names written (with crop selection, the image's key
    too: the image that holds the crops is written beside them)."""
    if isinstance(media, SourceError):
        raise _Refused(f"cannot read {key!r} from the source: {for_export(str(media))}")
    if isinstance(entries[0][1], tuple):  # object crops, and their image (frames) as it is
        data = _crops(key, media, entries, result)
    elif entries[0][1] is None:  # an image: its bytes as they are
        try:
            blob = read_media(media)
        except OSError as e:
            raise _Refused(f"cannot read {key!r} from the source: {e.strerror}") from None
        data = {name: blob for name, _ in entries}
    else:
        wanted = {i for _, i in entries if isinstance(i, int)}
        frames = _video_frames(media, wanted, kind=media_kind(key))
        data = {}
        for name, i in entries:
            if isinstance(i, int) and i in frames:
                data[name] = frames[i]
            else:
                result.refused.append({"name": name, "reason": "frame not found again"})
    written = set()
    for name, blob in data.items():
        try:
            target.write(result.renamed.get(name, name), blob)
        except _Refused as e:
            result.refused.append({"name": name, "reason": str(e)})
        else:
            written.add(name)
            if result.sizes is not None:  # the size its boxes are a part of (and COCO's)
                result.sizes[name] = _shown_size(name, blob) or (0, 0)
    return written


def _crops(
    key: str,
    media: Any,
    entries: list[tuple[str, int | tuple[int, ...] | None]],
    result: ExportResult,
) -> dict[str, bytes]:
    """The PNGs of the crops of an image or of a video's frames (each entry's pixels x0, y0, x1,
    y1, cut from the picture as shown, as the run cut them), and what holds them: the image's
    own bytes under its key, or each frame as a PNG under its frame name."""
    from datapool.ingest.decode import decode_shown

    parents = {name: crop_key_of(name) or "" for name, _ in entries}
    if all(p == key for p in parents.values()):  # an image
        try:
            blob = read_media(media)
        except OSError as e:
            raise _Refused(f"cannot read {key!r} from the source: {e.strerror}") from None
        pictures = {key: (blob, decode_shown(media, key))}
    else:
        at = {p: frame_index(p, key) for p in parents.values()}
        frames = _video_frames(media, {i for i in at.values() if i is not None}, _shown)
        pictures = {p: frames[i] for p, i in at.items() if i in frames}
    out = {}
    for name, box in entries:
        assert isinstance(box, tuple)
        picture = pictures.get(parents[name])
        if picture is None:
            result.refused.append({"name": name, "reason": "frame not found again"})
            continue
        out[name] = _cut_png(name, parents[name], picture[1], box)
    for parent, (blob, _) in pictures.items():
        out[parent] = blob
    return out


def _shown(frame: Any, sar: Fraction | None) -> tuple[bytes, Any]:
    """A video frame's PNG (as `_png` writes it) and its pixels as shown (turned as a player
    shows it, at full size): what a crop of it is cut from."""
    from datapool.ingest._exif import orient
    from datapool.ingest.decode import _video_orientation, full_rgb

    rgb = full_rgb(frame)
    turn = _video_orientation(frame)
    return _png(frame, sar), orient(rgb, turn) if turn != 1 else rgb


def _cut_png(name: str, parent: str, full: Any, box: tuple[int, ...]) -> bytes:
    import av
    import numpy as np

    x0, y0, x1, y1 = box
    if not (0 <= x0 < x1 <= full.shape[1] and 0 <= y0 < y1 <= full.shape[0]):
        raise _Refused(f"crop {name!r} [{x0}, {y0}, {x1}, {y1}] is not inside {parent!r} now")
    part = np.ascontiguousarray(full[y0:y1, x0:x1])
    return _png(av.VideoFrame.from_ndarray(part, format="rgb24"))


def export_pool(
    pool: str | os.PathLike[str],
    dest: str,
    run: int | str | None = None,
    all_runs: bool = False,
    mirror: bool = False,
    source: str | None = None,
    config: RunConfig | None = None,
    phase: Phase | None = None,
    tasks: Sequence[str] = (),
    url_prefix: str | None = None,
    pre_annotate: str | None = None,
    predictions_dir: str | None = None,
) -> ExportResult:
    """Export the samples of a pool (a folder or s3://) to `dest` (`datapool export`): run
    `run`'s (an index or a tag) samples that are still in the pool, the whole pool
    (`all_runs`), or by default the latest run's. Each sample is read again from the source its run recorded, or from `source`
    (a bucket that moved). `mirror`: afterwards the folder holds exactly these samples and
    selected_filenames.txt. `phase` counts the samples done (progress.py). `tasks`: the
    labelling tools' tasks files to write beside the list (export_tasks.py: "label-studio",
    "labelbox"), their URLs under `url_prefix` (required for a folder). `pre_annotate`: a task of
    the source's `.lightly/predictions` (or of `predictions_dir`, a folder shaped like it) whose
    predictions Label Studio's tasks carry (`_read_pre_annotations`)."""
    from datapool.pool.merge import in_merged_pool
    from datapool.pool.store import open_store
    from datapool.specs import scheme_of

    if run is not None and all_runs:
        raise ConfigError("give either --run N or --all, not both")
    if mirror and scheme_of(dest):
        raise ConfigError(
            f"--mirror works on a local export folder; {scheme_of(dest)}:// prefixes only grow"
        )
    check_tasks(tasks, dest, url_prefix, pre_annotate, predictions_dir)
    store = open_store(pool, config)
    p = store.pool()
    if not p.runs:
        raise ConfigError(f"pool {pool} has no runs yet; there is nothing to export")
    index = None if all_runs else len(p.runs) - 1 if run is None else p.run_index(run)
    groups = _by_source(p, _samples_of_runs(p, index), source)
    _check_apart_from_pool(dest, os.fspath(pool))
    # Every source the pool records, not only the exported runs': a merged pool has two.
    # (Relative paths, recorded by early versions, name no folder that can be compared.)
    recorded = [str(r.get("source") or "") for r in p.runs]
    _check_not_a_source(dest, [*groups, *(s for s in recorded if "://" in s or os.path.isabs(s))])
    # (before a source is listed or a file read: a bucket not there stops the export here)
    checked = check_destination(dest, config, flag="")
    pre = None  # read and checked before DEST is made or anything written
    if tasks and pre_annotate is not None:
        pre = _read_pre_annotations(p, groups, pre_annotate, predictions_dir, config)
        if "coco" in tasks:
            check_coco_task(pre.task, pre.kind, pre.ids, pre.categories)
    target = _open_dest(dest, config)
    if mirror and isinstance(target, _LocalDest):
        _check_mirror_target(target)
    result = ExportResult(dest=target.label)
    if checked is not None:
        result.warn(checked)
    if index is not None:
        result.run = {k: p.runs[index].get(k) for k in ("tag", "started_at")} | {"index": index}
    result.pool_size = len(p.filenames)
    everyone = [s for samples in groups.values() for s in samples]
    _plan_names(target, everyone, result, mirror)
    planned = dict(result.renamed)
    boxes = {spec: _crop_boxes(store, samples) for spec, samples in groups.items()}
    info = _sample_info(p, index, store.read, boxes) if tasks else {}
    plan = _plan_tasks(target, tasks, url_prefix, info, everyone, result)
    if plan is not None and pre is not None:
        _plan_pre_annotations(plan, pre, result)
    if phase is not None:
        phase.set_total(sum(len(samples) for samples in groups.values()))
    for spec, samples in groups.items():
        src = in_merged_pool(_open_source(spec, config), p)
        gone = GONE if source is None else NOT_IN_GIVEN  # (it said to give --source)
        todo = _still_selected(src, p.ledger, samples, result, gone)
        if phase is not None:
            phase.advance(len(samples) - len(todo))  # (changed or gone since)
        _write_samples(target, src, todo, result, boxes[spec], phase)
    _say_names(result)
    _write_list(target, result, plan)
    if mirror and isinstance(target, _LocalDest):
        # (refused samples too: their file, if an earlier export wrote it, holds what was selected)
        selected = {planned.get(n, n) for samples in groups.values() for n, _, _ in samples}
        own = {LIST_NAME, *(TASK_FILES[f] for f in tasks)}
        _remove_unselected(target, selected | set(result.images) | own, result)
    return result


def run_sample_info(
    samples: Sequence[tuple[str, str, str]],
    run: Mapping[str, Any],
    distances: Sequence[float],
    crops: Mapping[str, Sequence[int]],
) -> dict[str, dict[str, Any]]:
    """`_sample_info` of a run's picks (`run --export`): `samples` (name, key, kind) and their
    min-distances in pick order (inf, the first pick of an empty pool's: None), `run` its
    index and tag."""
    import math

    out = {}
    for (name, key, _), d in zip(samples, distances):
        parent = crop_key_of(name) if name != key and _is_crop_of(name, key) else None
        frame = None if key == name else frame_index(parent or name, key)
        out[name] = {
            "source_file": key,
            "frame": frame,
            **run,
            "min_distance": float(d) if math.isfinite(d) else None,
        } | ({"crop_of": parent, "crop_box": list(crops[name])} if parent and name in crops else {})
    return out


def _sample_info(
    p: Any,
    index: int | None,
    read: Callable[[str], bytes | None],
    boxes: Mapping[str, Mapping[str, Sequence[int]]],
) -> dict[str, dict[str, Any]]:
    """What a task says of each sample of run `index` (all where None), by sample name: as
    `datapool ls` shows it (source file, frame, run, tag, min-distance), and a crop's image
    (or frame) and pixels."""
    crops = {name: box for by_name in boxes.values() for name, box in by_name.items()}
    out = {}
    for s in p.iter_samples(index, read):
        name = s["filename"]
        out[name] = {k: s[k] for k in ("source_file", "frame", "run", "tag", "min_distance")} | (
            {"crop_of": crop_key_of(name), "crop_box": list(crops[name])} if name in crops else {}
        )
    return out


def _crop_boxes(store: Any, samples: list[tuple[str, str, str]]) -> dict[str, Sequence[int]]:
    """The pixels each crop sample among `samples` was cut from (crop selection stores them
    with the pool's strategy inputs, pool/inputs.py)."""
    from datapool.ingest import CROP_BOX
    from datapool.pool.inputs import columns_of
    from datapool.pool.layout import STRATEGY_INPUTS_NAME

    names = [name for name, key, _ in samples if name != key and _is_crop_of(name, key)]
    if not names:
        return {}
    columns, _ = columns_of(store.read(STRATEGY_INPUTS_NAME), names)
    boxes = columns.get(CROP_BOX)
    if boxes is None:
        return {}
    return {n: b for n, b in zip(names, boxes.tolist()) if isinstance(b, list)}


def _samples_of_runs(p: Any, index: int | None) -> list[int]:
    """Run `index`'s samples still in pool `p`; all of them where `index` is None."""
    import numpy as np

    if index is None:
        return list(range(len(p)))
    return np.flatnonzero(p.labels == index).tolist()


def _by_source(
    p: Any, wanted: list[int], source: str | None
) -> dict[str, list[tuple[str, str, str]]]:
    """The wanted samples as (name, key, kind), grouped by the source each was read from."""
    from datapool.naming import source_keys
    from datapool.pool.contents import sources_now
    from datapool.pool.ledger import image_sample_keys

    names = [p.filenames[i] for i in wanted]
    now = sources_now(p.runs)
    out: dict[str, list[tuple[str, str, str]]] = {}
    for i, name, key in zip(wanted, names, source_keys(names, image_sample_keys(p.ledger))):
        spec = source or now[int(p.labels[i])]
        if not spec:
            raise ConfigError(f"run {int(p.labels[i])} records no source; give --source")
        out.setdefault(spec, []).append((name, key, media_kind(key) or "image"))
    return out


def _still_selected(
    source: Any,
    ledger: Any,
    samples: list[tuple[str, str, str]],
    result: ExportResult,
    gone: str = GONE,
) -> list[tuple[str, str, str]]:
    """The samples whose source file is still the one their run embedded; the others are refused
    (CHANGED, or `gone`: GONE, NOT_IN_GIVEN where --source was given). The source is listed again and compared with the pool's ledger as a run
    compares them (pool/ledger.py: the same size, and the same ETag, else mtime, else bytes); a
    folder is listed only where it holds or leads to a sample's file. Listing also makes an S3 source read each object If-Match its listed ETag."""
    from datapool.pool.ledger import diff_of_keys
    from datapool.sources.local import LocalSource, folder_prune

    keys = {key for _, key, _ in samples}
    if isinstance(source, LocalSource):  # only the folders that hold them (a bucket: listed whole)
        listing = source.list(prune=folder_prune(keys))
    else:  # (a merged pool's PrefixedSource: the pool's keys are not all the source's)
        listing = source.list()
    diff = diff_of_keys(keys, listing, ledger, source)
    same = set(diff.unchanged["key"]) | set(diff.retry["key"])
    listed = set(listing["key"])
    kept = []
    for name, key, kind in samples:
        if key in same:
            kept.append((name, key, kind))
        else:
            result.refused.append({"name": name, "reason": CHANGED if key in listed else gone})
    return kept


def _check_apart_from_pool(dest: str, pool: str) -> None:
    """Refuse an export into the pool's folder (or prefix), inside it, or around it: exported
    files would mix with the pool's own, and a pool file could be overwritten by a sample of its
    name (runs/0/embedding_view.png)."""
    from datapool.sources.filters import prefix_inside

    def inside(outer: str, inner: str) -> bool:
        try:
            return prefix_inside(outer, inner) is not None
        except ConfigError:  # the same folder
            return True

    where = (
        "is the pool's folder or inside it"
        if inside(pool, dest)
        else "holds the pool"
        if inside(dest, pool)
        else None
    )
    if where is None and "://" not in dest:
        other = _pool_around(Path(dest))
        if other is not None:
            where, pool = "is another pool's folder or inside it", str(other)
    if where:
        raise ConfigError(
            f"cannot export to {dest}: it {where} ({pool}), and exported files would mix with the "
            "pool's own; export to a folder apart from the pool"
        )


def _pool_around(dest: Path) -> Path | None:
    """The pool folder `dest` is, or is inside (`datapool export POOL OTHER_POOL` wrote samples
    and selected_filenames.txt among OTHER_POOL's files), or None."""
    from datapool.pool.layout import pools_around

    return next(iter(pools_around(dest.absolute())), None)


def _check_not_a_source(dest: str, specs: Iterable[str]) -> None:
    """Refuse `dest` when it is the folder (or prefix) a run read: the next run would list the
    exported files as new media (`run --export` refuses it the same way)."""
    from datapool.sources.filters import prefix_inside

    for spec in specs:
        try:
            prefix_inside(spec, dest)
        except ConfigError:
            raise ConfigError(
                f"cannot export to {dest}: it is the pool's source {spec} itself, and the next run "
                "would take the exported files for new media; export to another folder"
            ) from None


def _open_source(spec: str, config: RunConfig | None) -> Any:
    from datapool.sources import open_source

    try:
        return open_source(spec, config)
    except SourceError as e:
        raise SourceError(f"{e} (the pool's recorded source; give --source if it moved)") from None


def _check_mirror_target(target: _LocalDest) -> None:
    """--mirror deletes files: only in an empty folder or one an export made."""
    entries = [e for e in target.root.iterdir() if not e.name.startswith(".datapool-export-")]
    made = (target.root / LIST_NAME).is_file() or (target.root / RECORD_NAME).is_file()
    if entries and not made:  # (an export stopped part way leaves the record alone)
        raise ConfigError(
            f"--mirror: {target.root} holds files but no {LIST_NAME}, so it is not an export "
            "folder; datapool deletes nothing there (export into a new or empty folder)"
        )


def _remove_unselected(target: _LocalDest, keep: set[str], result: ExportResult) -> None:
    """--mirror: delete the files exports wrote that are not in `keep` (the selected samples,
    refused ones too: their file holds what was selected), and count the files no export wrote,
    which stay where they are."""
    exported = {n for n in target.exported() if unsafe_name_reason(n) is None}
    try:
        result.removed = [name for name in sorted(exported - keep) if target.remove(name)]
        exported -= set(result.removed)
        target.record({n for n in exported if os.path.lexists(target.root / n)})
        target.sync()
    except (OSError, _Refused) as e:
        raise OutputWriteError(f"--mirror in {target.label} failed: {e}") from None
    own = keep | exported | {RECORD_NAME}
    for folder, dirs, files in os.walk(target.root):  # links to folders are listed, not entered
        rel = os.path.relpath(folder, target.root)
        for f in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            name = f if rel == "." else f"{rel}/{f}".replace(os.sep, "/")
            if name not in own and not f.startswith(".datapool-export-"):
                result.left.append(name)
    result.left.sort()
