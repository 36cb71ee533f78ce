"""The one error hierarchy of datapool. Every user-facing failure is a DatapoolError.

Each kind of failure has its own exit code in the CLI (README, "Exit codes"): 1 any other
error, 2 a corrupt pool, 3 a locked pool, 4 a usage error, 5 a source that cannot be used,
6 a model that cannot be used, 7 a model that does not match the pool's, 8 a pool that cannot
be written (or, in S3, reached). 130 and 143 are Ctrl-C and SIGTERM."""

from __future__ import annotations


class DatapoolError(Exception):
    """Base class: the CLI prints its message in one line and exits with `exit_code`."""

    exit_code = 1


class ConfigError(DatapoolError, ValueError):
    """An option or argument that cannot work (for example a proportion above 1)."""

    exit_code = 4


class SelectionFileError(ConfigError):
    """A selection config (a --selection file, or its dict) that cannot work. Its message names
    the config's own fields (`n_samples`), which the CLI leaves as they are."""


class SourceError(DatapoolError):
    """The source cannot be listed (missing folder, not a folder, unsupported URL), or it is
    not the source the pool was grown from."""

    exit_code = 5


class PoolStoreError(SourceError):
    """The bucket that holds an S3 pool cannot be used: missing, access denied, or its endpoint
    down. A SourceError for the code that retries or reports S3 faults, but the CLI exits as for
    a pool that cannot be written: the source may be fine."""

    exit_code = 8


class DecodeError(DatapoolError):
    """A media file could not be decoded. The run skips the file and records this reason."""


class ModelError(DatapoolError):
    """An embedding model cannot be loaded or does not fit the image-model contract."""

    exit_code = 6


class ModelMismatchError(DatapoolError):
    """The pool was built with another model than the one this run would use."""

    exit_code = 7


class PoolCorruptError(DatapoolError):
    """A pool file is malformed. The message names the file and, where known, line and column."""

    exit_code = 2


class PoolWriteError(DatapoolError):
    """The pool folder cannot be written: read-only, permission denied, or the disk is full. The
    message says whether the pool was left as before the run or will be completed on next open."""

    exit_code = 8


class PoolLockedError(DatapoolError):
    """Another process holds the pool's lock."""

    exit_code = 3


__all__ = [
    "ConfigError",
    "DatapoolError",
    "DecodeError",
    "ModelError",
    "ModelMismatchError",
    "PoolCorruptError",
    "PoolLockedError",
    "PoolStoreError",
    "PoolWriteError",
    "SelectionFileError",
    "SourceError",
]
