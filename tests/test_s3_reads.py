"""S3 reads and writes that a fault or a file system could spoil.

A GET whose body is cut short or stalls part way is read on from where it stopped.

Before, a video's GET that the connection dropped, or that went quiet for the read timeout (a
fixed 60 s), was read again from its first byte, up to --s3-max-attempts times: a large video on a
slow link could fail having downloaded many times its size, and each stall cost a minute.
Now the read waits `--s3-read-timeout` seconds for the next byte and goes on with a ranged GET
(If-Match the listed ETag) from the first byte it lacks. Against moto over real HTTP, through a
proxy that cuts one file's body in half and stalls another's; no timing is asserted.
(What came of a body before the fault is kept: here all of it, and at least its whole 1 MiB
chunks, whatever urllib3 does with a chunk cut short.)"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from datapool import Pool
from datapool.config import RunConfig
from datapool.errors import ConfigError

from ._http_proxy import ProxyHandler, serve
from ._s3 import S3_FIXTURES
from .conftest import run_cli, write_media
from .test_s3 import run, upload

# The S3 fixtures of tests/test_s3.py (a moto server of this module's own).
moto_endpoint, s3_env, s3, new_bucket = S3_FIXTURES


class CuttingProxy:
    """Forwards to moto; the first GET of each path in `faults` sends its headers (the whole
    length) and half its body, then closes the connection ("cut") or sends nothing more until
    the proxy stops ("stall"); a GET of a path in `deny` (`/bucket`: its listing) is answered
    403 AccessDenied. `gets`: (path, Range header, body bytes sent) of every GET."""

    def __init__(self, upstream: str, faults: dict[str, str], deny: tuple[str, ...] = ()) -> None:
        self.faults = dict(faults)
        self.gets: list[tuple[str, str, int]] = []
        self.stop = threading.Event()
        proxy = self

        class Handler(ProxyHandler):
            def _handle(self) -> None:
                body = self.read_body()
                if self.command == "GET" and self.path.split("?")[0] in deny:
                    payload = (
                        b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied"
                        b"</Code><Message>Access Denied</Message></Error>"
                    )
                    return self.send_reply(403, "application/xml", payload)
                resp, data = self.forward(body)
                path = self.path.split("?")[0]
                fault = proxy.faults.pop(path, None) if self.command == "GET" else None
                sent = data if fault is None else data[: len(data) // 2]
                self.send_forwarded(resp, data, sent)
                if self.command == "GET":
                    proxy.gets.append((path, self.headers.get("Range", ""), len(sent)))
                if fault == "stall":
                    proxy.stop.wait(30)
                if fault is not None:
                    self.close_connection = True

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server, self.url = serve(Handler, upstream)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> CuttingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


def noise_png(path, seed):
    """A PNG of noise, over 3 MiB: the reader keeps the whole MiBs that came before a fault."""
    from datapool.media import write_image

    pixels = np.random.default_rng(seed).integers(0, 256, (1100, 1024, 3), dtype=np.uint8)
    write_image(path, pixels)
    assert path.stat().st_size > 3 * MIB


MIB = 1 << 20


def test_a_cut_or_stalled_body_is_read_on_from_where_it_stopped(s3_env, s3, new_bucket, tmp_path):
    local = tmp_path / "local"
    noise_png(local / "cut.png", seed=1)
    noise_png(local / "stalled.png", seed=2)
    write_media(local / "clip.mp4", seed=3, frames=5)
    name = new_bucket()
    upload(s3, local, name)
    reference = run(f"s3://{name}/raw", tmp_path / "reference", n_samples=10)
    faults = {f"/{name}/raw/cut.png": "cut", f"/{name}/raw/stalled.png": "stall"}
    with CuttingProxy(s3_env, faults) as proxy:
        got = run(
            f"s3://{name}/raw",
            tmp_path / "pool",
            n_samples=10,
            s3_endpoint_url=proxy.url,
            s3_read_timeout_s=1,
        )
    assert proxy.faults == {}  # both faults were met
    assert got.skipped == [] and got.counts["frames_embedded"] == 7
    assert got.selected == reference.selected
    a, b = Pool.open(tmp_path / "pool"), Pool.open(tmp_path / "reference")
    assert a.filenames == b.filenames
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    for image in ("cut.png", "stalled.png"):
        path, size = f"/{name}/raw/{image}", (local / image).stat().st_size
        (first, sent), (rng, rest) = [(r, n) for p, r, n in proxy.gets if p == path]
        # Half the body came; the reader kept what it read of it (at least its whole MiBs) and
        # asked for the rest from there.
        assert (first, sent) == ("", size // 2)
        start = int(rng.removeprefix("bytes=").removesuffix("-"))
        assert rng == f"bytes={start}-" and sent // MIB * MIB <= start <= sent and start > 0
        assert rest == size - start


def test_the_read_timeout_is_a_setting_with_a_flag(tmp_path):
    assert RunConfig(n_samples=1).s3.read_timeout_s == 60
    assert RunConfig(n_samples=1, s3_read_timeout_s=5).s3.read_timeout_s == 5
    for bad in (0, 0.5, 3601, float("nan"), True, "5"):
        with pytest.raises(ConfigError, match="s3_read_timeout_s must be a number of seconds"):
            RunConfig(n_samples=1, s3_read_timeout_s=bad)
    for command in (["run", tmp_path, "--pool", tmp_path / "p", "--n-samples", 1], ["export"]):
        args = [*command, *(["p", tmp_path / "d"] if command == ["export"] else [])]
        p = run_cli(*args, "--s3-read-timeout", "0")
        assert p.returncode == 4, p.stderr
        assert p.stderr == (
            "datapool: error: --s3-read-timeout must be a number of seconds in 1..3600, got 0.0\n"
        )


def test_an_export_to_a_bucket_keeps_clear_of_the_keys_already_there(
    s3_env, s3, new_bucket, tmp_path
):
    """An S3 prefix holds `A.jpg` and `a.jpg` apart, but a copy of it to a Mac or a Windows
    drive (`aws s3 sync`) keeps one: a later export's name does not fold onto a key already
    under the prefix (tests/test_export_names.py has the rule)."""
    from datapool.media import write_image

    from .conftest import scene

    src, out = tmp_path / "src", new_bucket()
    write_image(src / "A.jpg", scene(1))
    first = run(src, tmp_path / "pool", n_samples=5, export=f"s3://{out}/x")
    assert first.export is not None and first.export.renamed == {}
    write_image(src / "a.jpg", scene(2))
    second = run(src, tmp_path / "pool", n_samples=5, export=f"s3://{out}/x")
    assert second.export is not None
    new = second.export.renamed["a.jpg"]
    assert new.startswith("a~") and second.export.written == [new]
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=out)["Contents"]}
    assert keys == {"x/A.jpg", f"x/{new}", "x/selected_filenames.txt"}
    assert s3.get_object(Bucket=out, Key=f"x/{new}")["Body"].read() == (src / "a.jpg").read_bytes()
    # A role that may put objects but not list them: the export goes on, and says what it could
    # not check.
    write_image(src / "b.jpg", scene(3))
    with CuttingProxy(s3_env, {}, deny=(f"/{out}",)) as proxy:
        third = run(
            src, tmp_path / "pool", n_samples=5, export=f"s3://{out}/x", s3_endpoint_url=proxy.url
        )
    assert third.export is not None and third.export.written == ["b.jpg"]
    (warning,) = third.export.warnings
    assert "AccessDenied" in warning and "not from the keys already under the prefix" in warning
