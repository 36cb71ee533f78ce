"""The one typed configuration object, built alike by the CLI and the Python API.

Names follow Lightly's where they exist (n_samples, proportion_samples, min_distance,
process_all), so users of that tool feel at home.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from datapool.errors import ConfigError


@dataclass(frozen=True)
class RunConfig:
    """How one `datapool run` behaves.

    Budget: at most `n_samples` new samples, or `proportion_samples` of this run's candidates
    (rounded to the nearest integer, at least 1 when there is any candidate). Either may be combined
    with `min_distance`: selection stops early when the farthest remaining candidate is closer than
    that to everything selected. Distances are Euclidean between unit vectors, so 0..2.
    """

    n_samples: int | None = None
    proportion_samples: float | None = None
    min_distance: float | None = None
    process_all: bool = False
    keep_history: bool = False  # snapshot the pool under history/ before this run changes it
    model: str | None = None  # path to an .onnx file; None for the default model
    input_size: int | None = None  # for models whose input height/width are dynamic
    frame_stride: int = 1
    fps: float | None = None  # keep at most this many video frames per second of video
    batch_size: int = 32
    threads: int = 0  # 0: all cores
    decode_workers: int = 0  # decoding threads; 0: min(4, cores)
    progress: bool | None = None  # None: show a progress bar only on a terminal
    # S3 sources (s3://bucket/prefix). Credentials are never part of the configuration: they come
    # from boto3's standard chain (env, profile, instance role) and are never recorded.
    s3_endpoint_url: str | None = None  # None: AWS_ENDPOINT_URL, else AWS itself
    s3_max_attempts: int = 10  # total attempts per request, the first included (botocore retries)
    s3_retry_mode: str = "standard"  # botocore retry mode: "standard" or "adaptive"
    s3_concurrency: int = 8  # objects read at once
    # A pool in S3 on a server without conditional writes is guarded by a lock object whose lease
    # lasts this long and is renewed every third of it while the run works (s3lease.py).
    s3_lock_lease_s: float = 300.0
    export: str | None = None  # a folder or s3://bucket/prefix for each run's selected samples

    def __post_init__(self) -> None:
        if self.n_samples is not None and self.proportion_samples is not None:
            raise ConfigError("give either n_samples or proportion_samples, not both")
        if self.n_samples is None and self.proportion_samples is None and self.min_distance is None:
            raise ConfigError(
                "no selection budget: give n_samples (--n-samples), proportion_samples "
                "(--proportion) or min_distance (--min-distance)"
            )
        if self.n_samples is not None and (
            isinstance(self.n_samples, bool)
            or not isinstance(self.n_samples, int)
            or self.n_samples < 0
        ):
            raise ConfigError(f"n_samples must be an integer >= 0, got {self.n_samples!r}")
        if self.proportion_samples is not None and not 0.0 <= self.proportion_samples <= 1.0:
            raise ConfigError(
                f"proportion_samples must be between 0 and 1, got {self.proportion_samples!r}"
            )
        if self.min_distance is not None and not (
            math.isfinite(self.min_distance) and 0.0 <= self.min_distance <= 2.0
        ):
            raise ConfigError(
                f"min_distance must be between 0 and 2 (Euclidean distance between unit "
                f"vectors), got {self.min_distance!r}"
            )
        if not isinstance(self.frame_stride, int) or self.frame_stride < 1:
            raise ConfigError(f"frame_stride must be an integer >= 1, got {self.frame_stride!r}")
        if self.fps is not None:
            if (
                isinstance(self.fps, bool)
                or not isinstance(self.fps, (int, float))
                or not (math.isfinite(self.fps) and self.fps > 0)
            ):
                raise ConfigError(f"fps must be a number > 0, got {self.fps!r}")
            if self.frame_stride != 1:
                raise ConfigError(
                    "give either frame_stride (--frame-stride) or fps (--fps), not both"
                )
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        if self.input_size is not None and (
            not isinstance(self.input_size, int) or not 8 <= self.input_size <= 4096
        ):
            raise ConfigError(f"input_size must be an integer in 8..4096, got {self.input_size!r}")
        if not isinstance(self.decode_workers, int) or self.decode_workers < 0:
            raise ConfigError(
                f"decode_workers must be an integer >= 0, got {self.decode_workers!r}"
            )
        if self.threads < 0:
            raise ConfigError(f"threads must be >= 0 (0 means all cores), got {self.threads!r}")
        if not isinstance(self.s3_max_attempts, int) or not 1 <= self.s3_max_attempts <= 100:
            raise ConfigError(
                f"s3_max_attempts must be an integer in 1..100, got {self.s3_max_attempts!r}"
            )
        if self.s3_retry_mode not in ("standard", "adaptive"):
            raise ConfigError(
                f"s3_retry_mode must be 'standard' or 'adaptive', got {self.s3_retry_mode!r}"
            )
        if not isinstance(self.s3_concurrency, int) or not 1 <= self.s3_concurrency <= 256:
            raise ConfigError(
                f"s3_concurrency must be an integer in 1..256, got {self.s3_concurrency!r}"
            )
        if (
            isinstance(self.s3_lock_lease_s, bool)
            or not isinstance(self.s3_lock_lease_s, (int, float))
            or not (math.isfinite(self.s3_lock_lease_s) and 1.0 <= self.s3_lock_lease_s <= 86400.0)
        ):
            raise ConfigError(
                f"s3_lock_lease_s must be a number of seconds in 1..86400, got "
                f"{self.s3_lock_lease_s!r}"
            )
        if self.s3_endpoint_url is not None and not self.s3_endpoint_url.startswith(
            ("http://", "https://")
        ):
            raise ConfigError(
                f"s3_endpoint_url must start with http:// or https://, got "
                f"{strip_userinfo(self.s3_endpoint_url)!r}"
            )

    def budget(self, n_candidates: int) -> int:
        """How many new samples this run may add, given its number of candidates."""
        if self.n_samples is not None:
            return min(self.n_samples, n_candidates)
        if self.proportion_samples is not None:
            if n_candidates == 0 or self.proportion_samples == 0.0:
                return 0
            return max(
                1, min(n_candidates, math.floor(self.proportion_samples * n_candidates + 0.5))
            )
        return n_candidates

    def to_json(self) -> dict[str, Any]:
        """The settings that shape a run's result, as recorded in runs.json."""
        d = asdict(self)
        d.pop("progress")
        d.pop("s3_lock_lease_s")  # how a bucket pool is guarded, not what the run selects
        # An endpoint may carry user:password@ (some S3-compatible stores); never record it.
        for k in ("s3_endpoint_url", "export"):
            if d[k] is not None:
                d[k] = strip_userinfo(d[k])
        return d


def strip_userinfo(url: str) -> str:
    """`scheme://user:secret@host/path` -> `scheme://host/path`; anything else unchanged."""
    from urllib.parse import urlsplit, urlunsplit

    if "://" not in url or "@" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
