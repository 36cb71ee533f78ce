// Farthest-point selection on a CUDA GPU: the brute-force algorithm of fps.hpp over the whole
// candidate matrix, held in device memory. Plain C++17 interface (no CUDA headers), so that
// bindings.cpp includes it like any other core header; compiled only with DATAPOOL_CUDA.
//
// Semantics: those of fps.hpp (squared Euclidean distances in the state, the pool-aware start,
// lowest index on ties, the same three stops). Bits: every squared distance is summed in the
// order of the scalar CPU kernel (kernels_scalar.cpp: eight accumulators, accumulator k takes the
// dimensions j = k mod 8 in ascending order, the d mod 8 tail goes to accumulator 0, then
// ((s0+s1)+(s2+s3))+((s4+s5)+(s6+s7))), with no fused multiply-add. So the picks and the
// min-distances are bit for bit those of fps_select(..., kernels = scalar, algorithm = brute).
// The AVX2 / AVX-512 kernels sum in another order (and with FMA): against them the distances
// agree to a few float32 ulps and the picks agree except on near-ties (two candidates whose
// min-distances differ by less than that rounding), where either kernel's pick is a valid
// farthest point.
//
// Algorithm
// - Start: each candidate's squared distance to its nearest pool row, a GEMM-shaped pass (tiles
//   of candidates x pool rows staged in shared memory, each thread one pair), computed as a sum
//   of squared differences, never as |x|^2 - 2 x.s + |s|^2: that expansion cancels and is not
//   exact.
// - Per pick: one grid streams all N rows (eight lanes per row, one accumulator each), updates
//   the min-distances held on the device, and reduces a (value, index) arg-max per block; a
//   one-block kernel reduces those and appends the pick to a device array that the next grid
//   reads its center from. The host synchronises once per batch of picks, to check the stops
//   and Ctrl-C, so the GPU is never idle waiting for it.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>

#include "datapool/fps.hpp"

namespace datapool {

// Raised for a CUDA failure (no device, out of memory, a kernel error), with CUDA's message.
struct CudaError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Usable CUDA devices: 0 when there is no driver, no device, or the driver is too old for this
// build's runtime. Never throws.
int cuda_device_count();

// Why cuda_device_count() is 0 (CUDA's own message), or the first device's name when it is not.
std::string cuda_status();

// As fps_select(), on CUDA device `device`. Uses options.n_samples and options.min_distance;
// threads, algorithm and kernels do not apply (result.algorithm is "cuda-brute", result.kernels
// "cuda"). Needs (n + m) * d * 4 bytes of device memory plus O(n).
FpsResult fps_select_cuda(const float* candidates, std::size_t n, std::size_t d,
                          const float* selected, std::size_t m, const FpsOptions& options,
                          const InterruptCheck& interrupted = {}, int device = 0);

}  // namespace datapool
