"""S3 sources against a moto server on 127.0.0.1 (a separate process, so that the server does not
share this process's GIL): listing, reads at several concurrency levels, spool vs ranged reads of a
720p H.264 video, and a full run compared with the same data in a local folder.

    python bench/bench_s3.py            # ~1-2 minutes on 2 vCPUs
    python bench/bench_s3.py --quick    # smaller data, for a smoke test
    python bench/bench_s3.py --section pool [--pool-rows 20000]   # the pool in S3 only

Every datapool figure is checked against a baseline in the same run:
- listing: S3Source.list() against a bare boto3 ListObjectsV2 paginator loop (same keys);
- reads: S3Source.open_inputs() at concurrency 1..16 against a sequential boto3 get_object loop
  (same bytes, by SHA-256);
- video reads: decoding a 720p H.264 MP4 (datapool.decode.iter_frames: frame count, then frames)
  from a spooled temporary file and from a ranged-read file object, against decoding the same
  file from a local path (same frames);
- full run: datapool.run over s3:// against datapool.run over the local folder (same filenames,
  embeddings to 1e-6);
- the pool in S3 (`--section pool`): the bytes a run that adds 100 samples to a 20,000-row pool
  (the default model's 510 dimensions) uploads and downloads, counted by a proxy on 127.0.0.1,
  with the server-side append (s3/blobs.py) against the same run writing each changed pool file
  whole (what the S3 pool did before; same pool CSV afterwards, by SHA-256); and what a session
  downloads with a cold local copy, a warm one, and one that catches up with another machine's run.
Moto is not S3: it is one Python process on this machine, so absolute MB/s say little about AWS.
The ratios (concurrency levels, spool vs ranged, S3 vs local) are what the figures are for.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

import datapool
from datapool.config import S3Settings
from datapool.ingest.decode import iter_frames
from datapool.media import write_image, write_video
from datapool.s3.source import S3Source


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from moto.server import main; main()",
            "-H",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
            return proc, url
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("moto server did not start")


def serve_latency_proxy(port: int, upstream: str, delay_s: float) -> None:
    """Forward every request to `upstream` after sleeping `delay_s`: a cloud round trip's latency
    on loopback. Runs in its own process (`bench_s3.py --proxy PORT UPSTREAM DELAY`)."""
    import http.client
    import http.server

    host, up_port = upstream.rsplit("//", 1)[1].split(":")

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a: object) -> None:
            pass

        def _handle(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            time.sleep(delay_s)
            conn = http.client.HTTPConnection(host, int(up_port), timeout=60)
            conn.request(
                self.command,
                self.path,
                body=body,
                headers={k: v for k, v in self.headers.items() if k.lower() != "connection"},
            )
            resp = conn.getresponse()
            data = resp.read()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in (
                    "transfer-encoding",
                    "connection",
                    "content-length",
                    "date",
                    "server",
                ):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            conn.close()

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


def start_latency_proxy(upstream: str, delay_s: float) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--proxy", str(port), upstream, str(delay_s)]
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, url
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("latency proxy did not start")


def images(n: int, rng: np.random.Generator, w: int = 640, h: int = 480) -> list[np.ndarray]:
    y = np.linspace(0, 1, h)[:, None, None]
    x = np.linspace(0, 1, w)[None, :, None]
    out = []
    for _ in range(n):
        img = rng.uniform(0, 1, 3) * (1 - y) + rng.uniform(0, 1, 3) * y * x
        img = img + rng.normal(0, 0.05, (h, w, 3))
        out.append((np.clip(img, 0, 1) * 255).astype(np.uint8))
    return out


def video_frames(n: int, seed: int, w: int = 1280, h: int = 720) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = (rng.uniform(0, 1, (h // 8, w // 8, 3)) * 255).astype(np.uint8).repeat(8, 0).repeat(8, 1)
    frames = []
    for t in range(n):
        f = np.roll(base, 9 * t, axis=1).copy()
        f[100:300, (40 * t) % (w - 200) : (40 * t) % (w - 200) + 200] = (255, 40, 40)
        noise = rng.integers(0, 24, (h, w, 1), dtype=np.uint8)
        frames.append(np.clip(f.astype(np.int16) + noise, 0, 255).astype(np.uint8))
    return frames


def median_time(fn, repeats: int):
    """Median seconds of `repeats` calls after one untimed warm-up call, and the last result."""
    out = fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class CountingProxy:
    """An HTTP proxy on 127.0.0.1 (a thread of this process) that forwards to `upstream` and counts
    the body bytes of every request (uploads) and of every GET's reply (downloads)."""

    def __init__(self, upstream: str) -> None:
        import http.client
        import http.server
        import threading

        host, port = upstream.rsplit("//", 1)[1].split(":")
        self.up = self.down = self.requests = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def _handle(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                conn = http.client.HTTPConnection(host, int(port), timeout=300)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()
                with proxy.lock:
                    proxy.requests += 1
                    proxy.up += len(body)
                    proxy.down += len(data) if self.command == "GET" else 0

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        with self.lock:
            self.up = self.down = self.requests = 0

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def seed_s3_pool(url: str, endpoint: str, rows: int, fingerprint) -> int:
    """A pool of `rows` synthetic unit embeddings (one run), committed through S3Store; the size
    of its CSV in bytes."""
    import pandas as pd

    from datapool.pool.ledger import empty_ledger
    from datapool.pool.store import PoolUpdate
    from datapool.s3.store import S3Store

    rng = np.random.default_rng(11)
    emb = rng.normal(size=(rows, fingerprint.output_dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    names = [f"seed/img_{i:06d}.jpg" for i in range(rows)]
    dtypes = empty_ledger().dtypes
    ledger = {"key": names, "size": 1000, "mtime_ns": 0, "run": 0, "status": "ok"}
    ledger.update(n_samples=1, n_selected=1, etag="")
    ledger_rows = pd.DataFrame(
        {c: pd.Series(v, index=range(rows), dtype=dtypes[c]) for c, v in ledger.items()}
    )
    with S3Store(url, S3Settings(endpoint_url=endpoint)).session() as session:
        update = PoolUpdate(
            run={"index": 0, "tag": "initial-tag", "source": "synthetic", "counts": {}},
            model=fingerprint,
            new_names=names,
            new_embeddings=emb,
            new_labels=np.zeros(rows, np.int64),
            keep=np.zeros(0, bool),
            ledger_rows=ledger_rows,
            report={"index": 0},
            view=b"",
        )
        session.commit(update)
    with S3Store(url, S3Settings(endpoint_url=endpoint)).session() as session:
        return int(session.manifest.files["datapool_latest.csv"].size)


def bench_pool(s3, endpoint: str, tmp: Path, rows: int, n_new: int) -> None:
    """The pool in S3: upload and download bytes per run (see the module docstring)."""
    import hashlib

    from datapool.config import RunConfig
    from datapool.ingest import open_embedder
    from datapool.s3 import blobs
    from datapool.s3.store import S3Store

    fingerprint = open_embedder(RunConfig(n_samples=1).model_spec).fingerprint
    proxy = CountingProxy(endpoint)
    caches = {k: tmp / f"cache-{k}" for k in ("a", "b")}
    os.environ["DATAPOOL_CACHE_DIR"] = str(caches["a"])
    s3.create_bucket(Bucket="bench-pool")
    urls = {"append": "s3://bench-pool/append", "whole": "s3://bench-pool/whole"}
    t = time.perf_counter()
    csv_bytes = {k: seed_s3_pool(u, proxy.url, rows, fingerprint) for k, u in urls.items()}
    t_seed = time.perf_counter() - t
    assert csv_bytes["append"] == csv_bytes["whole"]
    csv = csv_bytes["append"]
    rng = np.random.default_rng(3)
    new, more = tmp / "new-images", tmp / "more-images"
    for i, img in enumerate(images(2 * n_new, rng, 320, 240)):
        write_image((new if i < n_new else more) / f"img{i:04d}.jpg", img)
    datapool.run(str(new), tmp / "warm-up", n_samples=n_new, progress=False)  # model load, untimed

    def measured(url: str, source: Path) -> tuple[int, int, float, datapool.RunResult]:
        proxy.reset()
        t = time.perf_counter()
        r = datapool.run(
            str(source), url, n_samples=n_new, s3_endpoint_url=proxy.url, progress=False
        )
        assert r.run_index is not None and len(r.selected) == n_new
        return proxy.up, proxy.down, time.perf_counter() - t, r

    up_a, down_a, t_a, _ = measured(urls["append"], new)
    saved = blobs.MIN_PART, blobs.MAX_PARTS
    blobs.MIN_PART, blobs.MAX_PARTS = 1 << 62, 1  # every changed file written whole
    try:
        up_w, down_w, t_w, _ = measured(urls["whole"], new)
    finally:
        blobs.MIN_PART, blobs.MAX_PARTS = saved

    def csv_sha(prefix: str) -> str:
        m = json.loads(
            s3.get_object(Bucket="bench-pool", Key=f"{prefix}/manifest.json")["Body"].read()
        )
        parts = m["files"]["datapool_latest.csv"]["parts"]
        h = hashlib.sha256()
        for p in parts:
            h.update(s3.get_object(Bucket="bench-pool", Key=p["blob"])["Body"].read())
        return h.hexdigest()

    assert csv_sha("append") == csv_sha("whole"), "the two pools' CSVs differ"

    def session_download(cache: Path) -> tuple[int, float]:
        os.environ["DATAPOOL_CACHE_DIR"] = str(cache)
        proxy.reset()
        t = time.perf_counter()
        S3Store(urls["append"], S3Settings(endpoint_url=proxy.url)).summary()
        return proxy.down, time.perf_counter() - t

    cold, t_cold = session_download(caches["b"])
    warm, t_warm = session_download(caches["b"])
    os.environ["DATAPOOL_CACHE_DIR"] = str(caches["a"])
    measured(urls["append"], more)  # machine A adds n_new more rows
    catch_up, t_catch = session_download(caches["b"])
    proxy.close()

    mb = 1e6
    print(
        f"\n## The pool in S3: a run that adds {n_new} samples to a {rows:,}-row pool "
        f"(dimension {fingerprint.output_dim}; CSV {csv / mb:.1f} MB; seeded in {t_seed:.0f} s)\n"
    )
    print("| run | uploaded MB | % of the CSV | downloaded MB | s | ratio (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    print(
        f"| changed files written whole (baseline: the S3 pool before) | {up_w / mb:.2f} | "
        f"{100 * up_w / csv:.1f} % | {down_w / mb:.2f} | {t_w:.1f} | 1 |"
    )
    print(
        f"| datapool: rows appended on the server (UploadPartCopy) | {up_a / mb:.3f} | "
        f"{100 * up_a / csv:.2f} % | {down_a / mb:.3f} | {t_a:.1f} | {t_a / t_w:.2f} |"
    )
    print("\nsame pool CSV afterwards: yes (SHA-256)\n")
    print("| a session's download (`datapool status`), local copy | downloaded MB | s |")
    print("|---|---:|---:|")
    print(f"| cold (no copy on this machine) | {cold / mb:.1f} | {t_cold:.1f} |")
    print(f"| warm (pool unchanged) | {warm / mb:.4f} | {t_warm:.2f} |")
    print(
        f"| after another machine's run added {n_new} rows | {catch_up / mb:.3f} | {t_catch:.2f} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--latency-ms",
        type=float,
        default=20.0,
        help="round-trip latency the proxy adds per request in the latency tables",
    )
    ap.add_argument("--section", choices=("all", "sources", "pool"), default="all")
    ap.add_argument(
        "--pool-rows", type=int, default=20000, help="rows of the S3 pool (pool section)"
    )
    ap.add_argument(
        "--proxy", nargs=3, metavar=("PORT", "UPSTREAM", "DELAY_S"), help=argparse.SUPPRESS
    )
    args = ap.parse_args()
    if args.proxy:
        serve_latency_proxy(int(args.proxy[0]), args.proxy[1], float(args.proxy[2]))
        return
    n_list = 300 if args.quick else 1000
    n_img = 20 if args.quick else 60
    n_vid, vid_frames = (1, 30) if args.quick else (3, 45)
    repeats = 1 if args.quick else args.repeats

    os.environ.update(
        AWS_ACCESS_KEY_ID="bench-key-id",
        AWS_SECRET_ACCESS_KEY="bench-secret",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    os.environ.pop("AWS_PROFILE", None)
    proc, endpoint = start_moto()
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    import boto3

    s3 = boto3.client("s3")
    tmp = Path(tempfile.mkdtemp(prefix="datapool-bench-s3-"))
    try:
        print(
            f"# bench_s3: {platform.machine()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}, boto3 {boto3.__version__}, moto server at {endpoint}"
        )

        if args.section in ("all", "pool"):
            bench_pool(
                s3, endpoint, tmp, 2000 if args.quick else args.pool_rows, 20 if args.quick else 100
            )
        if args.section == "pool":
            return

        # ---- listing ------------------------------------------------------------------------
        s3.create_bucket(Bucket="bench-list")
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(8) as ex:
            list(
                ex.map(
                    lambda i: s3.put_object(
                        Bucket="bench-list", Key=f"raw/d{i // 100:03d}/img{i:06d}.jpg", Body=b"x"
                    ),
                    range(n_list),
                )
            )

        def bare_list() -> list[str]:
            keys = []
            for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket="bench-list", Prefix="raw/"
            ):
                keys += [o["Key"][4:] for o in page.get("Contents", ())]
            return keys

        src = S3Source("s3://bench-list/raw")
        t_dp, df = median_time(src.list, repeats)
        t_bare, keys = median_time(bare_list, repeats)
        assert df["key"].tolist() == sorted(keys) and len(keys) == n_list, "listings differ"
        print("\n## Listing (ListObjectsV2, 1000 keys per page)\n")
        print("| lister | objects | median s | objects/s | ratio |")
        print("|---|---:|---:|---:|---:|")
        print(
            f"| boto3 paginator loop (baseline) | {n_list} | {t_bare:.3f} | {n_list / t_bare:,.0f} | 1 |"
        )
        print(
            f"| datapool S3Source.list() | {n_list} | {t_dp:.3f} | {n_list / t_dp:,.0f} | "
            f"{t_dp / t_bare:.2f} |"
        )

        # ---- media ----------------------------------------------------------------------------
        local = tmp / "local"
        rng = np.random.default_rng(7)
        for i, img in enumerate(images(n_img, rng)):
            write_image(local / f"img/{i:04d}.jpg", img, quality=2)
        for v in range(n_vid):
            write_video(local / f"vid/clip{v}.mp4", video_frames(vid_frames, v), fps=30, crf=20)
        s3.create_bucket(Bucket="bench-media")
        for p in sorted(local.rglob("*")):
            if p.is_file():
                s3.put_object(
                    Bucket="bench-media",
                    Key=f"raw/{p.relative_to(local).as_posix()}",
                    Body=p.read_bytes(),
                )
        media = S3Source("s3://bench-media/raw").list()
        img_keys = media.loc[media["kind"] == "image", "key"].tolist()
        vid_keys = media.loc[media["kind"] == "video", "key"].tolist()
        img_mb = media.loc[media["kind"] == "image", "size"].sum() / 1e6
        vid_mb = media.loc[media["kind"] == "video", "size"].sum() / 1e6

        def bare_read(keys: list[str]) -> dict[str, str]:
            return {
                k: sha(s3.get_object(Bucket="bench-media", Key=f"raw/{k}")["Body"].read())
                for k in keys
            }

        sources = {}
        for conc in (1, 4, 8, 16):
            sources[conc] = S3Source("s3://bench-media/raw", S3Settings(concurrency=conc))
            sources[conc].list()

        def dp_read(keys: list[str], conc: int) -> dict[str, str]:
            source = sources[conc]
            out = {}
            for k, m in source.open_inputs(keys):
                out[k] = sha(m.read())
                m.close()
            return out

        print(
            f"\n## Reads: {len(img_keys)} JPEGs 640x480 ({img_mb:.1f} MB), {len(vid_keys)} "
            f"720p H.264 MP4s ({vid_mb:.1f} MB); bytes only, no decoding\n"
        )
        print("| reader | images MB/s | ratio | videos MB/s | ratio |")
        print("|---|---:|---:|---:|---:|")
        tb_i, ref_i = median_time(lambda: bare_read(img_keys), repeats)
        tb_v, ref_v = median_time(lambda: bare_read(vid_keys), repeats)
        print(
            f"| boto3 get_object loop, sequential (baseline) | {img_mb / tb_i:.1f} | 1 | "
            f"{vid_mb / tb_v:.1f} | 1 |"
        )
        for conc in (1, 4, 8, 16):
            ti, got_i = median_time(lambda c=conc: dp_read(img_keys, c), repeats)
            tv, got_v = median_time(lambda c=conc: dp_read(vid_keys, c), repeats)
            assert got_i == ref_i and got_v == ref_v, "bytes differ"
            print(
                f"| datapool open_inputs, concurrency {conc} | {img_mb / ti:.1f} | "
                f"{tb_i / ti:.2f}x | {vid_mb / tv:.1f} | {tb_v / tv:.2f}x |"
            )

        # The same through a proxy that adds a cloud-like round trip to every request.
        lat = args.latency_ms / 1000
        proxy, proxy_url = start_latency_proxy(endpoint, lat)
        try:
            s3_lat = boto3.client("s3", endpoint_url=proxy_url)
            for conc in (1, 4, 8, 16):
                sources[conc] = S3Source(
                    "s3://bench-media/raw", S3Settings(endpoint_url=proxy_url, concurrency=conc)
                )
                sources[conc].list()

            def bare_read_lat(keys: list[str]) -> dict[str, str]:
                return {
                    k: sha(s3_lat.get_object(Bucket="bench-media", Key=f"raw/{k}")["Body"].read())
                    for k in keys
                }

            print(
                f"\n## Reads with {args.latency_ms:g} ms added to every request (a latency "
                "proxy in front of moto)\n"
            )
            print("| reader | images MB/s | ratio | videos MB/s | ratio |")
            print("|---|---:|---:|---:|---:|")
            tb_i, got_i = median_time(lambda: bare_read_lat(img_keys), 1)
            tb_v, got_v = median_time(lambda: bare_read_lat(vid_keys), 1)
            assert got_i == ref_i and got_v == ref_v, "bytes differ"
            print(
                f"| boto3 get_object loop, sequential (baseline) | {img_mb / tb_i:.1f} | 1 | "
                f"{vid_mb / tb_v:.1f} | 1 |"
            )
            for conc in (1, 4, 8, 16):
                ti, got_i = median_time(lambda c=conc: dp_read(img_keys, c), 1)
                tv, got_v = median_time(lambda c=conc: dp_read(vid_keys, c), 1)
                assert got_i == ref_i and got_v == ref_v, "bytes differ"
                print(
                    f"| datapool open_inputs, concurrency {conc} | {img_mb / ti:.1f} | "
                    f"{tb_i / ti:.2f}x | {vid_mb / tv:.1f} | {tb_v / tv:.2f}x |"
                )
        finally:
            proxy.terminate()
            proxy.wait(10)

        # ---- spool vs ranged for a 720p video ---------------------------------------------------
        key = vid_keys[0]
        size = (64, 64)
        ref = [f.rgb for f in iter_frames(local / key, key, "video", size)]

        proxy, proxy_url = start_latency_proxy(endpoint, lat)
        by_mode = {}
        for mode in ("spool", "ranged"):
            for url, tag in ((None, mode), (proxy_url, f"{mode}+lat")):
                by_mode[tag] = S3Source(
                    "s3://bench-media/raw",
                    S3Settings(endpoint_url=url, concurrency=1),
                    video_reads=mode,
                )
                by_mode[tag].list()

        def decode_from(mode: str | None) -> list[np.ndarray]:
            if mode is None:
                return [f.rgb for f in iter_frames(local / key, key, "video", size)]
            ((_, m),) = list(by_mode[mode].open_inputs([key]))
            try:
                return [f.rgb for f in iter_frames(m, key, "video", size)]
            finally:
                m.close()

        print(
            f"\n## A 720p H.264 video ({key}, {vid_frames} frames, "
            f"{media.set_index('key').loc[key, 'size'] / 1e6:.2f} MB): read + decode "
            "(frame count, then frames)\n"
        )
        print("| input | median s | ratio to local |")
        print("|---|---:|---:|")
        tl, _ = median_time(lambda: decode_from(None), repeats)
        print(f"| local path (baseline) | {tl:.3f} | 1 |")
        try:
            for mode in ("spool", "ranged", "spool+lat", "ranged+lat"):
                tm, frames = median_time(lambda m=mode: decode_from(m), repeats)
                assert len(frames) == len(ref) and all((a == b).all() for a, b in zip(frames, ref))
                label = mode.replace("+lat", f", {args.latency_ms:g} ms per request")
                print(f"| S3, {label} | {tm:.3f} | {tm / tl:.2f} |")
        finally:
            proxy.terminate()
            proxy.wait(10)

        # ---- full run: S3 vs local --------------------------------------------------------------
        def full(source: str, pool: Path) -> datapool.RunResult:
            return datapool.run(source, pool, n_samples=20, progress=False)

        pl, ps = tmp / "pool-local", tmp / "pool-s3"
        full(str(local), tmp / "warm-up")  # model load and first-call costs, untimed
        t = time.perf_counter()
        full(str(local), pl)
        tl_run = time.perf_counter() - t
        t = time.perf_counter()
        full("s3://bench-media/raw", ps)
        ts_run = time.perf_counter() - t
        a, b = datapool.Pool.open(pl), datapool.Pool.open(ps)
        assert a.filenames == b.filenames
        assert np.abs(a.embeddings - b.embeddings).max() <= 1e-6
        print(
            f"\n## Full run ({len(img_keys)} images + {len(vid_keys)} videos x {vid_frames} "
            "frames, n_samples=20)\n"
        )
        print("| source | s | ratio |")
        print("|---|---:|---:|")
        print(f"| local folder (baseline) | {tl_run:.2f} | 1 |")
        print(f"| s3:// (moto) | {ts_run:.2f} | {ts_run / tl_run:.2f} |")
        print("\nsame pool: yes (filenames equal, embeddings within 1e-6)")
    finally:
        proc.terminate()
        proc.wait(10)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
