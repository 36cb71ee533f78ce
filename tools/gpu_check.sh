#!/usr/bin/env bash
# Issue 20's GPU checks, prepared so that a session lent a GPU machine spends its device time
# on them and not on setting up (docs/gpu.md, "On a lent GPU machine"). The machine has CUDA's
# compiler, PyTorch, CuPy, CMake, pybind11 and onnxruntime (CPU) on Python 3.12, reaches no
# network, and takes at most 64 MiB of files a call. It lacks PyAV, which datapool needs, and
# onnxruntime-gpu, which GPU embedding needs (~255 MB: too big for one call). So:
#
#   bash tools/gpu_check.sh wheels    # HERE, once: the two packages' wheels for Python 3.12, in
#                                     # one archive cut into parts .whl/part-1 ... (ignored by git)
#   bash tools/gpu_check.sh stage     # THERE, one call per part but the last, each carrying its
#                                     # part (carry [".whl/part-N"]): kept in /tmp while warm
#   bash tools/gpu_check.sh           # THERE, carrying the last part: installs the wheels, builds
#                                     # the core for this card, runs the checks, logs into $OUT
#
# The machine goes back after 30 s idle, taking /tmp with it: make the calls back to back. The
# checks alone (without onnxruntime-gpu: the embedding rows then say why not) need only PyAV:
# `bash tools/gpu_check.sh wheels av` makes one part.
set -uo pipefail
cd "$(dirname "$0")/.."
stage=/tmp/datapool-wheels
out=${OUT:-/tmp/datapool-gpu-out}
mkdir -p "$out"

case "${1:-check}" in
wheels)
  set -e
  want=("av==$(python3 -c 'import av; print(av.__version__)' 2>/dev/null || echo 18.1.0)")
  [ "${2:-}" = av ] || want+=("onnxruntime-gpu")
  rm -rf .whl && mkdir -p .whl/all
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl/all "${want[@]}"
  tar -C .whl/all -cf .whl/wheels.tar .
  (cd .whl && split -b 56M -d -a 2 wheels.tar wheels.tar.part-)
  n=0
  for p in .whl/wheels.tar.part-*; do
    n=$((n + 1))
    mkdir -p ".whl/part-$n" && mv "$p" ".whl/part-$n/"
  done
  rm -rf .whl/all .whl/wheels.tar
  echo "gpu_check: $n parts of 56 MiB at most: stage parts 1..$((n - 1)), then check with part $n"
  ;;
stage)
  mkdir -p "$stage"
  cp .whl/part-*/wheels.tar.part-* "$stage"/ && ls -l "$stage"
  ;;
check)
  mkdir -p "$stage"
  cp .whl/part-*/wheels.tar.part-* "$stage"/ 2>/dev/null
  t0=$SECONDS
  {
    echo "== $(date -u +%FT%TZ) $(git rev-parse --short HEAD 2>/dev/null)"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 --version && nvcc --version | tail -n 1
    site=/tmp/datapool-site
    if ls "$stage"/wheels.tar.part-* >/dev/null 2>&1; then
      rm -rf "$site" "$stage/w" && mkdir -p "$stage/w"
      cat "$stage"/wheels.tar.part-* | tar -C "$stage/w" -xf - \
        && python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" \
          "$stage"/w/*.whl \
        || echo "gpu_check: the staged wheels are incomplete (stage every part first)"
    fi
    export PYTHONPATH="$PWD/python:$site"
    python3 -c "import av, onnxruntime as o; print('av', av.__version__, '| onnxruntime', o.__version__, o.get_available_providers())"
    build=/tmp/datapool-build
    cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DDATAPOOL_CUDA=ON \
      -DCMAKE_CUDA_ARCHITECTURES="${DATAPOOL_CUDA_ARCH:-native}" -DPython_EXECUTABLE="$(command -v python3)" \
      -Dpybind11_DIR="$(python3 -m pybind11 --cmakedir)" >"$out/configure.log" 2>&1 \
      && cmake --build "$build" -j "$(nproc)" >"$out/build.log" 2>&1 \
      && cp "$build"/_core*.so python/datapool/ \
      || { echo "gpu_check: the CUDA build failed (configure.log, build.log)"; exit 1; }
    python3 -c "import datapool._core as c; print('HAS_CUDA', c.HAS_CUDA, '| devices', c.cuda_device_count(), '|', c.cuda_status())"
    echo "== built in $((SECONDS - t0)) s"
  } 2>&1 | tee "$out/setup.log"
  [ "${PIPESTATUS[0]}" = 0 ] || exit 1
  export PYTHONPATH="$PWD/python:/tmp/datapool-site" PYTHONUNBUFFERED=1
  # -W default: a warning of the machine's own packages must not fail a test (pyproject makes
  # warnings errors); the log still lists them.
  # Timeouts: the call may run 600 s; setup takes about 60-90 s. Logs land in $OUT as they go.
  timeout 100 python3 -m pytest -p no:cacheprovider -q -rs -W default tests/test_gpu.py \
    2>&1 | tee "$out/test_gpu.log"
  echo "== tests done at $((SECONDS - t0)) s"
  timeout 240 python3 bench/bench_select.py --device cuda --sizes 1000000x512 --k 1000,10000 \
    2>&1 | tee "$out/bench_select_gpu.log"
  echo "== selection bench done at $((SECONDS - t0)) s"
  timeout 150 python3 bench/bench_embed_gpu.py --repeats 3 2>&1 | tee "$out/bench_embed_gpu.log"
  echo "== all done at $((SECONDS - t0)) s"
  ;;
*)
  echo "usage: bash tools/gpu_check.sh [wheels [av] | stage | check]" >&2
  exit 4
  ;;
esac
