"""Differential fuzzing of the C++ pool CSV reader against the pure-Python reference.

Every input must either parse to exactly what tests/pool_csv_reference.py reads (names, float32
bits, labels) or be rejected by both with _core.PoolCsvError; anything else (a crash, a mismatch,
another exception) is a failure. The first input byte picks a prefix (none / a valid header), the
second the chunk size, so the parallel path is split at every kind of place.

    # with atheris (libFuzzer); Python-level coverage only: GCC cannot emit the coverage
    # libFuzzer needs for the C++ code, so this is mutation fuzzing guided by the reference.
    python tools/fuzz_pool_csv.py -max_total_time=300 -rss_limit_mb=4096 CORPUS_DIR

    # the same against a C++ build with AddressSanitizer + UBSan (see --core):
    LD_PRELOAD=$(gcc -print-file-name=libasan.so) PYTHONMALLOC=malloc \
      ASAN_OPTIONS=detect_leaks=0 python tools/fuzz_pool_csv.py --core /tmp/asan-build ...

    # without atheris: random bytes and mutations of valid pools (and of --corpus), N seconds
    python tools/fuzz_pool_csv.py --no-atheris --seconds 300 [--corpus CORPUS_DIR]
"""

from __future__ import annotations

import argparse
import importlib
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HEADERS = [
    b"",
    b"filenames,embedding_0,embedding_1,labels\n",
    b"filenames,labels\r\n",
    b"filenames,embedding_0,labels\n",
]
CHUNKINGS = [0, 1, 2, 3, 5, 8, 16, 64]
ALPHABET = b'0123456789.,-+eE"\r\n ab\x00\xff\xc3\xa9nif_x'

_core: Any = None
reference: Any = None
stats = {"inputs": 0, "accepted": 0}


def check(data: bytes) -> None:
    if len(data) < 2:
        data = data + b"\0\0"
    head = HEADERS[data[0] % len(HEADERS)]
    chunk = CHUNKINGS[data[1] % len(CHUNKINGS)]
    body = head + data[2:]
    stats["inputs"] += 1
    try:
        ref = reference.parse_reference(body)
    except reference.ReferenceError_:
        ref = None
    try:
        names, emb, labels = _core.parse_pool_csv(body, threads=2, chunk_bytes=chunk)
    except _core.PoolCsvError as e:
        if ref is not None:
            raise AssertionError(f"C++ rejected a file the reference reads: {e}: {body!r}") from e
        if e.line < 1:
            raise AssertionError(f"bad line {e.line}: {body!r}") from e
        return
    if ref is None:
        raise AssertionError(f"C++ read a file the reference rejects: {body!r}")
    stats["accepted"] += 1
    same = (
        names == ref.names
        and emb.shape == ref.emb.shape
        and (emb.view("uint32") == ref.emb.view("uint32")).all()
        and (labels == ref.labels).all()
    )
    if not same:
        raise AssertionError(f"C++ and the reference differ on {body!r}")


def seeds() -> list[bytes]:
    """Valid pools in both line-end styles, prefixed with the two control bytes."""
    out = []
    names = ["a.jpg", 'we"ird, name.png', "new\nline", "cr\r\nlf", "ü"]
    rows = [f"{1.5 * i:.9g},{-3e-40 * i:.9g}" for i in range(len(names))]
    for k in range(1, len(names) + 1):
        text = "".join(
            (f'"{n.replace(chr(34), chr(34) * 2)}"' if any(c in n for c in ',"\r\n') else n)
            + f",{r},{i}\n"
            for i, (n, r) in enumerate(zip(names[:k], rows))
        )
        for crlf in (False, True):
            t = text.replace("\n", "\r\n") if crlf else text
            out.append(bytes([1, k]) + t.encode())
    return out


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(4)
        i = rng.randint(0, len(b))
        if op == 0:
            b[i:i] = bytes([rng.choice(ALPHABET)])
        elif op == 1 and i < len(b):
            del b[i]
        elif op == 2 and i < len(b):
            b[i] = rng.choice(ALPHABET)
        elif op == 3 and len(b) > 2:
            j = rng.randint(0, len(b) - 1)
            k = rng.randint(j, min(len(b), j + 16))
            b[i:i] = b[j:k]  # duplicate a slice: repeated names, split fields
    return bytes(b)


def run_random(seconds: float, seed: int, corpus: list[bytes]) -> None:
    rng = random.Random(seed)
    pool = seeds() + corpus
    for data in corpus:  # replay first (e.g. an atheris corpus, under a sanitizer build)
        check(data)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        r = rng.random()
        if r < 0.15:
            data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
        elif r < 0.35:
            data = bytes([rng.randrange(4), rng.randrange(8)]) + bytes(
                rng.choice(ALPHABET) for _ in range(rng.randint(0, 80))
            )
        else:
            data = mutate(rng, rng.choice(pool))
            if rng.random() < 0.1:
                pool.append(data)  # grow the pool of starting points
        check(data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--core", help="import _core from this build folder instead of the package")
    ap.add_argument("--no-atheris", action="store_true", help="random/mutation loop instead")
    ap.add_argument("--seconds", type=float, default=60.0, help="with --no-atheris")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--corpus", help="with --no-atheris: replay and mutate these files too")
    ap.add_argument("--write-seeds", help="write the seed corpus into this folder and exit")
    args, rest = ap.parse_known_args()

    global _core, reference
    if args.write_seeds:
        folder = Path(args.write_seeds)
        folder.mkdir(parents=True, exist_ok=True)
        for i, s in enumerate(seeds()):
            (folder / f"seed{i:03d}").write_bytes(s)
        return
    if args.core:
        sys.path.insert(0, args.core)
        _core = importlib.import_module("_core")
    else:
        from datapool import _core as core

        _core = core
    start = time.monotonic()
    if args.no_atheris:
        reference = importlib.import_module("tests.pool_csv_reference")
        try:
            corpus = (
                [p.read_bytes() for p in sorted(Path(args.corpus).iterdir())] if args.corpus else []
            )
            run_random(args.seconds, args.seed, corpus)
        finally:
            took = time.monotonic() - start
            print(f"inputs {stats['inputs']}, accepted {stats['accepted']}, {took:.0f} s")
        return

    import atheris

    with atheris.instrument_imports():
        reference = importlib.import_module("tests.pool_csv_reference")
    import atexit

    atexit.register(
        lambda: print(
            f"inputs {stats['inputs']}, accepted {stats['accepted']}, "
            f"{time.monotonic() - start:.0f} s",
            flush=True,
        )
    )
    atheris.Setup([sys.argv[0], *rest], check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
