"""The one error hierarchy of datapool. Every user-facing failure is a DatapoolError.

Each kind of failure has its own exit code in the CLI (README, "Exit codes"): 1 any other
error, 2 a corrupt pool, 3 a locked pool, 4 a usage error, 5 a source that cannot be used,
6 a model that cannot be used, 7 a model that does not match the pool's, 8 a pool or an output
(an export's destination, `report --out`, `--log-file`) that cannot be written (or, in S3,
reached: PoolStoreError, OutputStoreError). 130 and 143 are Ctrl-C and SIGTERM. A path or value the command refuses by its own
rules (among a pool's files, s3:// where only a local file will do) is a usage error (4); one
that the system refuses to write (read-only, permission denied, disk full, not a folder) is 8,
whichever command writes it (tests/test_exit_codes.py walks them)."""

from __future__ import annotations

# The attribute a warning's log record carries (`log.warning(..., extra={IN_RESULT: True})`)
# when the command's result holds that warning too (RunResult.warnings, ExportResult.warnings):
# under --json the CLI leaves it to the JSON document, where it is not also a line on stderr.
IN_RESULT = "datapool_in_result"


class DatapoolError(Exception):
    """Base class: the CLI prints its message in one line and exits with `exit_code`; under
    `--json`, as one JSON object that names its `kind` (cli.py, README "Exit codes")."""

    exit_code = 1
    kind = "error"


class ConfigError(DatapoolError, ValueError):
    """An option or argument that cannot work (for example a proportion above 1)."""

    exit_code = 4
    kind = "usage"


class UnknownOptionError(ConfigError, TypeError):
    """A keyword option the Python API does not know (a misspelled `n_sample=`): a ConfigError,
    and a TypeError as Python's own for an unexpected keyword argument."""


class SelectionFileError(ConfigError):
    """A selection config (a --selection file, or its dict) that cannot work. Its message names
    the config's own fields (`n_samples`), which the CLI leaves as they are."""


class SourceError(DatapoolError):
    """The source cannot be listed (missing folder, not a folder, unsupported URL), or it is
    not the source the pool was grown from."""

    exit_code = 5
    kind = "source"
    code = ""  # the service's error code where one answered (NoSuchBucket, AccessDenied, ...)


class PoolStoreError(SourceError):
    """The bucket that holds an S3 pool cannot be used: missing, access denied, or its endpoint
    down. A SourceError for the code that retries or reports S3 faults, but the CLI exits as for
    a pool that cannot be written: the source may be fine."""

    exit_code = 8
    kind = "pool_store"


class OutputStoreError(PoolStoreError):
    """The bucket an export writes to (`--export s3://...`, `datapool export POOL s3://...`)
    cannot be used: missing, access denied, or its endpoint down. Exits as any output that
    cannot be written does (OutputWriteError), not as a source that cannot be read."""

    kind = "output_write"


class DecodeError(DatapoolError):
    """A media file could not be decoded. The run skips the file and records this reason."""

    kind = "decode"


class ModelError(DatapoolError):
    """An embedding model cannot be loaded or does not fit the image-model contract."""

    exit_code = 6
    kind = "model"


class ModelMismatchError(DatapoolError):
    """The pool was built with another model than the one this run would use."""

    exit_code = 7
    kind = "model_mismatch"


class PoolCorruptError(DatapoolError):
    """A pool file is malformed. The message names the file and, where known, line and column."""

    exit_code = 2
    kind = "pool_corrupt"


class PoolTooNewError(PoolCorruptError):
    """The pool was written by a newer datapool, in a pool format this one cannot read
    (pool/format.py). Exits as a pool that cannot be read does; the message says which datapool
    wrote it and to upgrade."""

    kind = "pool_too_new"


class PoolWriteError(DatapoolError):
    """The pool folder cannot be written: read-only, permission denied, or the disk is full. The
    message says whether the pool was left as before the run or will be completed on next open."""

    exit_code = 8
    kind = "pool_write"


class OutputWriteError(DatapoolError):
    """A file or folder the command writes for the user cannot be written: an export's
    destination, `report --out`, `--log-file` (read-only, permission denied, disk full, a file
    where a folder is needed). Exits as a pool that cannot be written does: what to fix is the
    same (the path, its permissions or its disk), and the message names the path."""

    exit_code = 8
    kind = "output_write"


class PoolLockedError(DatapoolError):
    """Another process holds the pool's lock."""

    exit_code = 3
    kind = "pool_locked"


__all__ = [
    "ConfigError",
    "DatapoolError",
    "DecodeError",
    "ModelError",
    "ModelMismatchError",
    "OutputStoreError",
    "OutputWriteError",
    "PoolCorruptError",
    "PoolLockedError",
    "PoolStoreError",
    "PoolTooNewError",
    "PoolWriteError",
    "SelectionFileError",
    "SourceError",
    "UnknownOptionError",
]
