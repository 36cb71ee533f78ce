#!/usr/bin/env bash
# The GPU path must at least compile where CI has no GPU (docs/gpu.md): NVIDIA's CUDA 13 compiler
# from PyPI (the nvidia-cuda-nvcc wheel ships nvcc, cicc, ptxas and fatbinary; the -runtime,
# -crt, -cccl and nvvm wheels the headers, libcudart_static and libdevice) goes into a throwaway
# virtual environment, and the core is configured and built with -DDATAPOOL_CUDA=ON and -Werror,
# for every architecture a default build targets. Any compile error fails CI. Nothing is run.
# Usage: bash .ci/cuda_build.sh   (from the repository root; about 1.5 min, mostly the download)
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --progress-bar off \
  "nvidia-cuda-nvcc>=13,<14" "nvidia-cuda-runtime>=13,<14" "nvidia-cuda-crt>=13,<14" \
  "nvidia-nvvm>=13,<14" "nvidia-cuda-cccl>=13,<14" "cmake>=3.24" "pybind11>=2.12,<3"
nvcc=$(find "$tmp/venv" -path "*/nvidia/cu13/bin/nvcc" -type f | head -n 1)
if [ -z "$nvcc" ]; then
  echo "cuda_build: the nvidia-cuda-nvcc wheel has no bin/nvcc" >&2
  exit 1
fi
cuda_root=$(dirname "$(dirname "$nvcc")")
# The wheels ship only libcudart.so.13; CMake's FindCUDAToolkit looks for libcudart.so, as a
# toolkit installs it. The build links the static runtime; the link only satisfies the search.
ln -sf libcudart.so.13 "$cuda_root/lib/libcudart.so"
"$nvcc" --version | tail -n 1
echo "cuda_build: CUDA compiler installed in $((SECONDS - t0)) s"
"$tmp/venv/bin/cmake" -S . -B "$tmp/build" -DCMAKE_BUILD_TYPE=Release \
  -DDATAPOOL_CUDA=ON -DDATAPOOL_WERROR=ON \
  -DCMAKE_CUDA_COMPILER="$nvcc" -DCUDAToolkit_ROOT="$cuda_root" \
  -DPython_EXECUTABLE="$(command -v python3)" \
  -Dpybind11_DIR="$("$tmp/venv/bin/python" -m pybind11 --cmakedir)" >"$tmp/configure.log" \
  || { cat "$tmp/configure.log"; exit 1; }
grep "datapool: CUDA" "$tmp/configure.log"
"$tmp/venv/bin/cmake" --build "$tmp/build" -j "$(nproc)"
# The module must not need libcudart.so (static runtime): it imports where there is no CUDA.
if ldd "$tmp/build"/_core*.so | grep -q "libcudart"; then
  echo "cuda_build: _core links libcudart dynamically" >&2
  exit 1
fi
echo "cuda_build: the CUDA core compiled in $((SECONDS - t0)) s"
