"""The GPU path (docs/gpu.md): the CUDA selection kernel and the CUDA execution provider.

The tests that compare the GPU with the CPU skip, saying why, where this build has no CUDA or
the machine no usable GPU. The others run everywhere: the build flag, the device option and its
errors, and `auto` falling back to the CPU.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from datapool import _core
from datapool import select_diverse as _select_diverse
from datapool.cli import main
from datapool.config import RunConfig
from datapool.errors import ConfigError

# These tests check the core's exact Euclidean selection on rows of any length; the public
# function's check that rows are unit length is tested in tests/test_python_api.py.
select_diverse = functools.partial(_select_diverse, check_unit_rows=False)

GPU = bool(_core.HAS_CUDA) and _core.cuda_device_count() > 0
WHY_NO_GPU = (
    "this build has no CUDA (_core.HAS_CUDA is False; build with -DDATAPOOL_CUDA=ON)"
    if not _core.HAS_CUDA
    else f"no usable CUDA device ({_core.cuda_status()})"
)
needs_gpu = pytest.mark.skipif(not GPU, reason=f"needs a GPU: {WHY_NO_GPU}")
no_gpu = pytest.mark.skipif(GPU, reason="checks the behaviour without a GPU")


def _data(rng: np.random.Generator, n: int, d: int, clusters: int = 0) -> np.ndarray:
    if clusters:
        centres = rng.normal(size=(clusters, d))
        x = centres[rng.integers(0, clusters, n)] + 0.05 * rng.normal(size=(n, d))
    else:
        x = rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


# ---- everywhere -------------------------------------------------------------------------------


def test_build_facts_are_typed():
    assert isinstance(_core.HAS_CUDA, bool)
    assert isinstance(_core.cuda_device_count(), int)
    assert _core.cuda_device_count() >= 0
    assert isinstance(_core.cuda_status(), str)
    assert issubclass(_core.CudaError, RuntimeError)
    if not _core.HAS_CUDA:
        assert _core.cuda_device_count() == 0
        assert _core.cuda_status() == "built without CUDA"


@no_gpu
def test_device_cuda_without_gpu_is_one_clear_error(rng):
    x = _data(rng, 50, 8)
    with pytest.raises(ConfigError, match=r"device 'cuda' .*cannot run: .*use --device cpu"):
        select_diverse(x, 5, device="cuda")


@no_gpu
def test_core_cuda_entry_point_refuses_without_gpu(rng):
    with pytest.raises(RuntimeError, match=r"no CUDA support|no CUDA device is usable"):
        _core.fps_select_cuda(_data(rng, 10, 4), 3)


@no_gpu
@pytest.mark.parametrize("with_pool", [False, True])
def test_device_auto_falls_back_to_the_cpu(rng, with_pool):
    x = _data(rng, 300, 16, clusters=5)
    pool = _data(rng, 7, 16) if with_pool else None
    cpu = select_diverse(x, 40, selected=pool, device="cpu")
    auto = select_diverse(x, 40, selected=pool, device="auto")
    np.testing.assert_array_equal(auto.indices, cpu.indices)
    np.testing.assert_array_equal(auto.min_distances, cpu.min_distances)
    assert auto.algorithm == cpu.algorithm != "cuda-brute"


@pytest.mark.parametrize("device", ["gpu", "CUDA", "", None])
def test_unknown_device_is_refused(rng, device):
    with pytest.raises(ConfigError, match=r"device .*must be one of cpu, cuda, auto"):
        select_diverse(_data(rng, 10, 4), 2, device=device)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"device \(--device\) must be one of cpu, cuda, auto"):
        RunConfig(n_samples=1, device=device)  # type: ignore[arg-type]


def test_device_is_how_not_what():
    """Like the engine, the device is not recorded with the run: the pool is the same."""
    assert "device" not in RunConfig(n_samples=1, device="auto").to_json()
    assert RunConfig(n_samples=1, device="auto").model_spec.device == "auto"


def test_cli_device_flag_parses():
    from datapool.cli import _parser

    a = _parser().parse_args(["run", "src", "--pool", "p", "--device", "auto"])
    assert a.device == "auto"
    a = _parser().parse_args(["run", "src", "--pool", "p"])
    assert not hasattr(a, "device")  # not given: RunConfig's default (cpu) applies


def test_cli_unknown_device_is_a_usage_error(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(src), "--pool", str(tmp_path / "p"), "--device", "gpu"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 4
    assert "argument --device: invalid choice: 'gpu'" in err
    assert "Traceback" not in err


@no_gpu
def test_cli_device_cuda_without_gpu_is_one_line(bucket, tmp_path, capsys):
    pool = tmp_path / "p"
    code = main(["run", str(bucket), "--pool", str(pool), "--n-samples", "2", "--device", "cuda"])
    err = capsys.readouterr().err
    assert code == 4
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "--device cuda" in lines[0]
    assert "Traceback" not in err
    assert not (pool / "pool.csv").exists()  # refused before any work


def test_embedder_auto_on_cpu_onnxruntime_changes_nothing(rng):
    import onnxruntime as ort

    from datapool.ingest.embed import Embedder

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed: auto embeds on the GPU here")
    cpu, auto = Embedder(device="cpu"), Embedder(device="auto")
    frames = rng.integers(0, 256, (3, *cpu.input_hw, 3), dtype=np.uint8)
    assert auto.session.get_providers() == ["CPUExecutionProvider"]
    np.testing.assert_array_equal(auto.embed(frames), cpu.embed(frames))
    assert auto.new_batch(5).shape == (5, 3, *auto.input_hw)


def test_cuda_provider_is_asked_for_float32_not_tf32(monkeypatch):
    """onnxruntime's CUDA provider rounds convolutions' inputs to TF32 unless told not to: the
    options datapool gives it say float32 (what the provider then does needs a GPU: above)."""
    import onnxruntime as ort

    from datapool.ingest import cuda_io

    monkeypatch.setattr(ort, "get_available_providers", lambda: [cuda_io.CUDA_PROVIDER])
    monkeypatch.delattr(ort, "preload_dlls", raising=False)
    (name, options), cpu = cuda_io.providers("auto")
    assert (name, cpu) == (cuda_io.CUDA_PROVIDER, "CPUExecutionProvider")
    assert options["use_tf32"] == 0


def test_embedder_cuda_without_onnxruntime_gpu_says_how_to_install():
    import onnxruntime as ort

    from datapool.ingest.embed import Embedder

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed")
    with pytest.raises(
        ConfigError, match=r"no CUDAExecutionProvider; pip install 'datapool\[gpu\]'"
    ):
        Embedder(device="cuda")


def _gpu_order_sqdist(x: np.ndarray, c: np.ndarray) -> np.float32:
    """|x - c|^2 summed as fps_cuda.cu sums it: lane k of a row takes dimensions j = k (mod 8)
    below 8*floor(d/8) in order, lane 0 the tail, then xor-1, xor-2, xor-4 butterflies."""
    f = np.float32
    d8 = len(x) & ~7
    lanes = [f(0)] * 8
    for k in range(8):
        for j in range(k, d8, 8):
            e = f(x[j] - c[j])
            lanes[k] = f(lanes[k] + f(e * e))
    for j in range(d8, len(x)):
        e = f(x[j] - c[j])
        lanes[0] = f(lanes[0] + f(e * e))
    for step in (1, 2, 4):
        lanes = [f(lanes[i] + lanes[i ^ step]) for i in range(8)]
    assert len(set(lanes)) == 1  # every lane of the row ends with the same bits
    return lanes[0]


@pytest.mark.parametrize("d", [1, 7, 8, 9, 13, 64, 129])
def test_gpu_summation_order_is_the_scalar_kernels(rng, d):
    """The contract the GPU's bit-exactness rests on (docs/gpu.md), checked without a GPU: the
    kernel's order, emulated in float32, gives the scalar CPU kernel's distances. A change to
    kernels_scalar.cpp's order must change fps_cuda.cu too."""
    for scale in (1e-3, 1.0, 1e3):
        x = (scale * rng.normal(size=d)).astype(np.float32)
        c = rng.normal(size=d).astype(np.float32)
        cpu = select_diverse(
            x[None, :], 1, selected=c[None, :], algorithm="brute", kernels="scalar"
        ).min_distances[0]
        assert cpu == np.sqrt(_gpu_order_sqdist(x, c), dtype=np.float32)


# ---- on a GPU ---------------------------------------------------------------------------------

SHAPES = [(1, 1), (2, 3), (7, 8), (257, 13), (1000, 64), (3001, 129), (20000, 512)]


@needs_gpu
@pytest.mark.parametrize(("n", "d"), SHAPES)
@pytest.mark.parametrize("pool_rows", [0, 1, 37])
def test_gpu_matches_the_scalar_cpu_kernel_bit_for_bit(rng, n, d, pool_rows):
    x = _data(rng, n, d, clusters=min(n, 10))
    pool = _data(rng, pool_rows, d) if pool_rows else None
    k = min(n, 200)
    cpu = select_diverse(x, k, selected=pool, algorithm="brute", kernels="scalar", threads=1)
    gpu = select_diverse(x, k, selected=pool, device="cuda")
    assert gpu.algorithm == "cuda-brute"
    np.testing.assert_array_equal(gpu.indices, cpu.indices)
    np.testing.assert_array_equal(gpu.min_distances, cpu.min_distances)
    assert gpu.evaluations == cpu.evaluations


@needs_gpu
@pytest.mark.parametrize(("n", "d"), SHAPES[3:])
def test_gpu_matches_the_default_cpu_selection(rng, n, d):
    """Against the SIMD kernels (another summation order): same picks on data without near-ties,
    distances to 1e-6."""
    x = _data(rng, n, d)
    k = min(n, 300)
    cpu = select_diverse(x, k)
    gpu = select_diverse(x, k, device="cuda")
    np.testing.assert_array_equal(gpu.indices, cpu.indices)
    np.testing.assert_allclose(gpu.min_distances[1:], cpu.min_distances[1:], rtol=1e-6, atol=0)


@needs_gpu
def test_gpu_stops_as_the_cpu_does(rng):
    x = _data(rng, 500, 32, clusters=4)
    dup = np.concatenate([x[:10], x[:10]])  # only 10 distinct rows: stops at distance 0
    for kwargs in ({"min_distance": 0.3}, {}):
        cpu = select_diverse(x, 500, algorithm="brute", kernels="scalar", **kwargs)
        gpu = select_diverse(x, 500, device="cuda", **kwargs)
        np.testing.assert_array_equal(gpu.indices, cpu.indices)
        np.testing.assert_array_equal(gpu.min_distances, cpu.min_distances)
    gpu = select_diverse(dup, 20, device="cuda")
    assert len(gpu) == 10
    # Ties go to the lowest index: identical rows and an all-equal first pick.
    same = np.ones((100, 4), np.float32)
    assert select_diverse(same, 5, device="cuda").indices.tolist() == [0]
    assert len(select_diverse(x, 0, device="cuda")) == 0
    assert len(select_diverse(x[:0], None, device="cuda")) == 0


@needs_gpu
def test_gpu_embedding_matches_the_cpu():
    import onnxruntime as ort

    from datapool.ingest.embed import Embedder

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("needs onnxruntime-gpu (pip install 'datapool[gpu]', docs/gpu.md)")
    rng = np.random.default_rng(0)
    cpu, gpu = Embedder(device="cpu"), Embedder(device="cuda")
    assert gpu.session.get_provider_options()["CUDAExecutionProvider"]["use_tf32"] == "0"
    frames = rng.integers(0, 256, (9, *cpu.input_hw, 3), dtype=np.uint8)
    np.testing.assert_allclose(gpu.embed(frames), cpu.embed(frames), atol=1e-4)
