"""Ray engine: what does running decode + embed on Ray cost, and where does it start to pay?

On one bucket of demo-style media (datapool.demo's street-like scenes, longer videos), in one run:

  1. the local engine (ingest/threaded.py) in this process;
  2. the ray engine on a one-node Ray cluster (`ray start --head --num-cpus N`);
  3. the ray engine on a two-node cluster on this machine (`ray start --head --num-cpus 1` and a
     second `ray start --address ... --num-cpus 1`).

For each Ray setup it reports the driver's connect time (`ray.init(address=...)`), Ray's per-run
overhead (a run over a single image: planning, scheduling, the actors' start and model load), and
the frames/s of a run over the whole bucket; every run's results are checked equal, bit for bit,
to the local engine's. The clusters are started with their own temp dir and port and only their
own processes are stopped (never `ray stop`, which stops every Ray on the machine).

    python bench/bench_ray.py                 # 8 videos of 240 frames + 16 images
    python bench/bench_ray.py --videos 4 --frames 60
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import datapool
from datapool.config import IngestOptions, ModelSpec, RunConfig
from datapool.demo import _frames
from datapool.ingest import FileResults, IngestSpec, open_embedder
from datapool.ingest.ray_engine import RayEngine
from datapool.ingest.threaded import ThreadedEngine
from datapool.media import write_image, write_video
from datapool.sources import open_source


def make_bucket(root: Path, videos: int, frames: int, images: int) -> None:
    rng = np.random.default_rng(7)
    for i in range(videos):
        write_video(root / "videos" / f"street-{i:02d}.mp4", _frames(rng, "city", frames), fps=10)
    for i in range(images):
        write_image(root / "images" / f"street-{i:02d}.jpg", next(_frames(rng, "city", 1)))


def same(a: FileResults, b: FileResults) -> bool:
    if a.status != b.status or a.rows.keys() != b.rows.keys():
        return False
    for key, rows in a.rows.items():
        other = b.rows[key]
        if [n for n, _ in rows] != [n for n, _ in other]:
            return False
        if not all(np.array_equal(x, y) for (_, x), (_, y) in zip(rows, other)):
            return False
    return True


class Cluster:
    """`ray start` processes of one benchmark cluster, stopped by their own temp dir."""

    def __init__(self, nodes: list[int]) -> None:
        self.tmp = tempfile.mkdtemp(prefix="dp-raybench-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.address = f"127.0.0.1:{port}"
        # A benchmark cluster on 127.0.0.1 only, without Ray 2.5x token auth (docs/scale-out.md).
        env = dict(os.environ, PYTHONPATH=str(Path(datapool.__file__).resolve().parents[1]))
        env["RAY_AUTH_MODE"] = "disabled"
        ray = str(Path(sys.executable).with_name("ray"))
        head = [ray, "start", "--head", f"--port={port}", f"--temp-dir={self.tmp}"]
        head += [f"--num-cpus={nodes[0]}", "--include-dashboard=false", "--disable-usage-stats"]
        head += ["--node-ip-address=127.0.0.1"]
        subprocess.run(head, env=env, check=True, capture_output=True)
        for cpus in nodes[1:]:
            worker = [ray, "start", f"--address={self.address}", f"--num-cpus={cpus}"]
            worker += ["--node-ip-address=127.0.0.1", "--disable-usage-stats"]
            subprocess.run(worker, env=env, check=True, capture_output=True)

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = [p for p in _pids_naming(self.tmp) if p != os.getpid()]
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            if pids:
                time.sleep(2)
        shutil.rmtree(self.tmp, ignore_errors=True)


def _pids_naming(text: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    out.append(int(entry.name))
            except OSError:
                pass
    return out


def timed_ingest(engine: object, spec: IngestSpec, embedder: object) -> tuple[float, FileResults]:
    t = time.perf_counter()
    res = engine.ingest(spec, embedder=embedder)  # type: ignore[attr-defined]
    return time.perf_counter() - t, res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--frames", type=int, default=240)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--one-node-cpus", type=int, default=os.cpu_count() or 2)
    a = ap.parse_args()
    import ray

    root = Path(tempfile.mkdtemp(prefix="dp-raybench-data-"))
    try:
        make_bucket(root, a.videos, a.frames, a.images)
        listing = open_source(str(root)).list()
        files = tuple(zip(listing["key"].tolist(), listing["kind"].tolist()))
        cfg = RunConfig(n_samples=1, engine="ray")
        spec = IngestSpec(str(root), files, ModelSpec(), IngestOptions(), cfg)
        image = [f for f in files if f[1] == "image"][:1]
        one = IngestSpec(str(root), tuple(image), ModelSpec(), IngestOptions(), cfg)
        embedder = open_embedder(ModelSpec())
        dt, local = timed_ingest(ThreadedEngine(), spec, embedder)
        frames = sum(n for _, n in local.status.values())
        print(f"media: {len(files)} files, {frames} frames ({a.videos} videos of {a.frames})")
        print(f"{'setup':34} {'connect s':>9} {'1-image run s':>13} {'run s':>7} {'frames/s':>9}")
        print(f"{'local engine (threaded)':34} {'-':>9} {'-':>13} {dt:7.2f} {frames / dt:9.1f}")
        setups = [
            (f"ray, 1 node ({a.one_node_cpus} CPUs)", [a.one_node_cpus]),
            ("ray, 2 nodes (1 CPU each)", [1, 1]),
        ]
        for name, nodes in setups:
            cluster = Cluster(nodes)
            try:
                t = time.perf_counter()
                ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
                connect = time.perf_counter() - t
                overhead, _ = timed_ingest(RayEngine(), one, embedder)
                dt, res = timed_ingest(RayEngine(), spec, embedder)
                assert same(local, res), f"{name}: results differ from the local engine's"
                print(f"{name:34} {connect:9.2f} {overhead:13.2f} {dt:7.2f} {frames / dt:9.1f}")
            finally:
                ray.shutdown()
                cluster.stop()
        print("every Ray run gave the local engine's results, bit for bit")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
