// Farthest-point selection on a CUDA GPU (see fps_cuda.hpp for the semantics and the bits).
//
// Float arithmetic: every operation on a distance goes through __fsub_rn / __fmul_rn /
// __fadd_rn, which nvcc never contracts into a fused multiply-add (and the file is compiled with
// -fmad=false besides), so each squared distance is the scalar CPU kernel's, bit for bit.
#include "datapool/fps_cuda.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace datapool {
namespace {

constexpr unsigned kNoIndex = UINT_MAX;
constexpr int kLanes = 8;         // lanes per row: one per accumulator of the scalar kernel
constexpr int kThreads = 256;     // per block of the per-pick grid: 32 rows at a time
constexpr int kRowsPerWarp = 32 / kLanes;
constexpr int kFinishThreads = 1024;
constexpr int kTile = 16;         // start: candidates x pool rows per block
constexpr int kDim = 32;          // start: dimensions staged in shared memory at a time
constexpr std::size_t kBatch = 64;  // picks between two host synchronisations
constexpr unsigned kFull = 0xffffffffu;

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    (void)cudaGetLastError();  // clear a sticky-free error so the next call starts clean
    throw CudaError(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(status));
  }
}

// Device memory owned by the host object; freed on every path out, exceptions included.
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(std::size_t count) : count_(count) {
    if (count == 0) return;
    const cudaError_t status = cudaMalloc(reinterpret_cast<void**>(&ptr_), count * sizeof(T));
    if (status != cudaSuccess) {
      (void)cudaGetLastError();
      throw CudaError("cannot allocate " + std::to_string(count * sizeof(T)) +
                      " bytes of GPU memory: " + cudaGetErrorString(status));
    }
  }
  ~DeviceArray() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  T* get() const { return ptr_; }
  std::size_t size() const { return count_; }

 private:
  T* ptr_ = nullptr;
  std::size_t count_ = 0;
};

// (value, index) order of the arg-max: the larger value, and the lower index on ties. NaN is
// never better than anything (the CPU loop's `v > best` rejects it the same way).
__device__ __forceinline__ bool better(float v, unsigned i, float bv, unsigned bi) {
  return v > bv || (v == bv && i < bi);
}

__device__ __forceinline__ void warp_argmax(float& v, unsigned& i) {
  for (int off = 16; off > 0; off >>= 1) {
    const float ov = __shfl_xor_sync(kFull, v, off);
    const unsigned oi = __shfl_xor_sync(kFull, i, off);
    if (better(ov, oi, v, i)) {
      v = ov;
      i = oi;
    }
  }
}

// Block-wide arg-max of (v, i); thread 0 gets the result. blockDim.x is a multiple of 32.
__device__ void block_argmax(float& v, unsigned& i) {
  __shared__ float sv[32];
  __shared__ unsigned si[32];
  const int lane = static_cast<int>(threadIdx.x & 31u), warp = static_cast<int>(threadIdx.x >> 5);
  warp_argmax(v, i);
  if (lane == 0) {
    sv[warp] = v;
    si[warp] = i;
  }
  __syncthreads();
  const int warps = static_cast<int>(blockDim.x >> 5);
  if (warp == 0) {
    v = lane < warps ? sv[lane] : -1.0f;
    i = lane < warps ? si[lane] : kNoIndex;
    warp_argmax(v, i);
  }
}

// One accumulator's share of the scalar kernel's sum for the row x against c: the dimensions
// j = lane (mod 8) below d8, in ascending order; lane 0 then adds the d mod 8 tail. The eight
// lanes of a row then combine as ((s0+s1)+(s2+s3))+((s4+s5)+(s6+s7)); float addition is
// commutative, so every lane of the row ends with that same value.
__device__ __forceinline__ float lane_sum(const float* __restrict__ x, const float* __restrict__ c,
                                          std::size_t d, std::size_t d8, int lane) {
  float s = 0.0f;
  for (std::size_t j = static_cast<std::size_t>(lane); j < d8; j += kLanes) {
    const float e = __fsub_rn(__ldg(x + j), __ldg(c + j));
    s = __fadd_rn(s, __fmul_rn(e, e));
  }
  if (lane == 0) {
    for (std::size_t j = d8; j < d; ++j) {
      const float e = __fsub_rn(__ldg(x + j), __ldg(c + j));
      s = __fadd_rn(s, __fmul_rn(e, e));
    }
  }
  return s;
}

__device__ __forceinline__ float combine_lanes(float s) {
  s = __fadd_rn(s, __shfl_xor_sync(kFull, s, 1));
  s = __fadd_rn(s, __shfl_xor_sync(kFull, s, 2));
  return __fadd_rn(s, __shfl_xor_sync(kFull, s, 4));
}

// One pick: with kUpdate, every row with mind > 0 takes min(mind, |x - c|^2) for the center
// picks[step]; then each block writes the arg-max of mind over its rows. Without kUpdate only
// the arg-max (the first pick). Rows are visited by warps, four rows (of eight lanes) at a time,
// a grid-stride loop over all N.
template <bool kUpdate>
__global__ void __launch_bounds__(kThreads)
    pick_step(const float* __restrict__ X, std::size_t n, std::size_t d,
              const unsigned* __restrict__ picks, std::size_t step, float* __restrict__ mind,
              float* __restrict__ block_val, unsigned* __restrict__ block_idx,
              unsigned long long* __restrict__ evaluations) {
  const int lane = static_cast<int>(threadIdx.x & (kLanes - 1));
  const auto sub = static_cast<std::size_t>((threadIdx.x & 31u) / kLanes);
  const std::size_t warp = (std::size_t{blockIdx.x} * blockDim.x + threadIdx.x) >> 5;
  const std::size_t warps = (std::size_t{gridDim.x} * blockDim.x) >> 5;
  const std::size_t d8 = d & ~std::size_t{7};
  const unsigned center = kUpdate ? picks[step] : kNoIndex;
  const float* c = kUpdate ? X + std::size_t{center} * d : nullptr;
  float best = -1.0f;
  unsigned at = kNoIndex;
  unsigned long long evals = 0;
  for (std::size_t base = warp * kRowsPerWarp; base < n; base += warps * kRowsPerWarp) {
    const std::size_t i = base + sub;  // base is the same for the whole warp: shuffles are safe
    float v = i < n ? mind[i] : -1.0f;
    if (kUpdate) {
      if (i == center) {  // as the CPU loop: the center is set to 0, not measured or counted
        v = 0.0f;
        if (lane == 0) mind[i] = 0.0f;
      }
      const bool measure = i < n && v > 0.0f;
      const float s = combine_lanes(measure ? lane_sum(X + i * d, c, d, d8, lane) : 0.0f);
      if (measure && lane == 0) {
        ++evals;
        if (s < v) {
          v = s;
          mind[i] = v;
        }
      }
    }
    if (lane == 0 && i < n && better(v, static_cast<unsigned>(i), best, at)) {
      best = v;
      at = static_cast<unsigned>(i);
    }
  }
  block_argmax(best, at);
  if (threadIdx.x == 0) {
    block_val[blockIdx.x] = best;
    block_idx[blockIdx.x] = at;
  }
  if (kUpdate) {
    for (int off = 16; off > 0; off >>= 1) evals += __shfl_xor_sync(kFull, evals, off);
    if ((threadIdx.x & 31u) == 0 && evals > 0) atomicAdd(evaluations + step, evals);
  }
}

// One block: the arg-max over the blocks' results becomes pick `step` and its squared value.
__global__ void __launch_bounds__(kFinishThreads)
    finish_pick(const float* __restrict__ block_val, const unsigned* __restrict__ block_idx,
                unsigned blocks, std::size_t step, unsigned* __restrict__ picks,
                float* __restrict__ values) {
  float v = -1.0f;
  unsigned i = kNoIndex;
  for (unsigned b = threadIdx.x; b < blocks; b += blockDim.x) {
    if (better(block_val[b], block_idx[b], v, i)) {
      v = block_val[b];
      i = block_idx[b];
    }
  }
  block_argmax(v, i);
  if (threadIdx.x == 0) {
    picks[step] = i;
    values[step] = v;
  }
}

__global__ void fill(float* __restrict__ out, std::size_t n, float value) {
  for (std::size_t i = std::size_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n;
       i += std::size_t{gridDim.x} * blockDim.x)
    out[i] = value;
}

// The pool-aware start for candidate rows [lo, hi): mind[i] = min over pool rows r of
// |x_i - s_r|^2, as a tiled GEMM-shaped pass. A block is kTile candidates (threadIdx.y) x kTile
// pool rows (threadIdx.x); both tiles' next kDim dimensions are staged in shared memory, and
// each thread keeps the scalar kernel's eight accumulators for its pair. kDim is a multiple of
// 8, so accumulator k always takes the dimensions j = k (mod 8), in ascending order. Dimensions
// at or past d8 load as 0 on both sides (adding +0 to a sum of squares changes no bit); the
// tail is added from global memory afterwards, as the scalar kernel adds it.
__global__ void __launch_bounds__(kTile* kTile)
    nearest_pool(const float* __restrict__ X, std::size_t lo, std::size_t hi, std::size_t d,
                 const float* __restrict__ S, std::size_t m, float* __restrict__ mind) {
  __shared__ float xs[kTile][kDim + 1];
  __shared__ float ss[kTile][kDim + 1];
  __shared__ float red[kTile][kTile + 1];
  const int tx = static_cast<int>(threadIdx.x), ty = static_cast<int>(threadIdx.y);
  const int flat = ty * kTile + tx;
  const std::size_t row0 = lo + std::size_t{blockIdx.x} * kTile;
  const std::size_t i = row0 + static_cast<std::size_t>(ty);
  const std::size_t d8 = d & ~std::size_t{7};
  float best = __int_as_float(0x7f800000);  // +inf
  for (std::size_t r0 = 0; r0 < m; r0 += kTile) {
    const std::size_t r = r0 + static_cast<std::size_t>(tx);
    float acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    for (std::size_t j0 = 0; j0 < d8; j0 += kDim) {
      for (int t = flat; t < kTile * kDim; t += kTile * kTile) {
        const int row = t / kDim, col = t % kDim;
        const std::size_t gj = j0 + static_cast<std::size_t>(col);
        const std::size_t gi = row0 + static_cast<std::size_t>(row);
        const std::size_t gr = r0 + static_cast<std::size_t>(row);
        xs[row][col] = (gi < hi && gj < d8) ? X[gi * d + gj] : 0.0f;
        ss[row][col] = (gr < m && gj < d8) ? S[gr * d + gj] : 0.0f;
      }
      __syncthreads();
#pragma unroll
      for (int jj = 0; jj < kDim; jj += 8) {
#pragma unroll
        for (int k = 0; k < 8; ++k) {
          const float e = __fsub_rn(xs[ty][jj + k], ss[tx][jj + k]);
          acc[k] = __fadd_rn(acc[k], __fmul_rn(e, e));
        }
      }
      __syncthreads();
    }
    if (i < hi && r < m) {
      for (std::size_t j = d8; j < d; ++j) {
        const float e = __fsub_rn(X[i * d + j], S[r * d + j]);
        acc[0] = __fadd_rn(acc[0], __fmul_rn(e, e));
      }
      const float dist = __fadd_rn(__fadd_rn(__fadd_rn(acc[0], acc[1]), __fadd_rn(acc[2], acc[3])),
                                   __fadd_rn(__fadd_rn(acc[4], acc[5]), __fadd_rn(acc[6], acc[7])));
      best = dist < best ? dist : best;  // std::min(best, dist), as the CPU kernel
    }
  }
  red[ty][tx] = best;
  __syncthreads();
  if (tx == 0 && i < hi) {
    float v = red[ty][0];
    for (int t = 1; t < kTile; ++t) v = red[ty][t] < v ? red[ty][t] : v;
    mind[i] = v;  // min is exact in any order: no rounding, no NaN (the inputs are finite)
  }
}

class CudaSelector {
 public:
  CudaSelector(std::size_t n, std::size_t d, const FpsOptions& o, const InterruptCheck& interrupted,
               int device)
      : n_(n), d_(d), opt_(o), check_(interrupted), X_(n * d), mind_(n) {
    int sms = 0;
    check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device),
          "querying the device");
    // Enough resident warps to keep the memory system busy; never more blocks than rows.
    const std::size_t rows_per_block = kThreads / kLanes;
    const std::size_t want = std::max<std::size_t>(1, static_cast<std::size_t>(sms) * 8);
    blocks_ = static_cast<unsigned>(std::min(want, (n + rows_per_block - 1) / rows_per_block));
    blocks_ = std::min<unsigned>(blocks_, kFinishThreads * 8u);
  }

  FpsResult run(const float* candidates, const float* selected, std::size_t m) {
    check(cudaMemcpy(X_.get(), candidates, n_ * d_ * sizeof(float), cudaMemcpyHostToDevice),
          "copying the candidates to the GPU");
    if (m > 0) {
      start_from_pool(selected, m);
    } else {
      fill<<<std::min<std::size_t>(1024, (n_ + 255) / 256), 256>>>(
          mind_.get(), n_, std::numeric_limits<float>::infinity());
      check(cudaGetLastError(), "filling the min-distances");
    }
    const std::size_t limit = std::min(opt_.n_samples, n_);
    DeviceArray<unsigned> picks(limit);
    DeviceArray<float> values(limit);
    DeviceArray<unsigned long long> evals(limit);
    DeviceArray<float> block_val(blocks_);
    DeviceArray<unsigned> block_idx(blocks_);
    check(cudaMemset(evals.get(), 0, limit * sizeof(unsigned long long)), "clearing counters");

    FpsResult result;
    result.algorithm = "cuda-brute";
    result.kernels = "cuda";
    std::vector<unsigned> host_picks;
    std::vector<float> host_values;
    std::vector<unsigned long long> host_evals;
    std::size_t done = 0;  // picks computed on the device (a prefix of the pick sequence)
    bool stopped = false;
    while (!stopped && done < limit) {
      const std::size_t upto = std::min(limit, done + kBatch);
      for (std::size_t s = done; s < upto; ++s) {
        if (s == 0) {
          pick_step<false><<<blocks_, kThreads>>>(X_.get(), n_, d_, picks.get(), 0, mind_.get(),
                                                  block_val.get(), block_idx.get(), evals.get());
        } else {
          pick_step<true><<<blocks_, kThreads>>>(X_.get(), n_, d_, picks.get(), s - 1, mind_.get(),
                                                 block_val.get(), block_idx.get(), evals.get());
        }
        finish_pick<<<1, kFinishThreads>>>(block_val.get(), block_idx.get(), blocks_, s,
                                           picks.get(), values.get());
      }
      check(cudaGetLastError(), "launching the selection kernels");
      const std::size_t got = upto - done;
      host_picks.resize(upto);
      host_values.resize(upto);
      host_evals.resize(upto);
      check(cudaMemcpy(host_picks.data() + done, picks.get() + done, got * sizeof(unsigned),
                       cudaMemcpyDeviceToHost),
            "reading the picks");
      check(cudaMemcpy(host_values.data() + done, values.get() + done, got * sizeof(float),
                       cudaMemcpyDeviceToHost),
            "reading the picks");
      check(cudaMemcpy(host_evals.data() + done, evals.get() + done,
                       got * sizeof(unsigned long long), cudaMemcpyDeviceToHost),
            "reading the counters");
      // The CPU loop's stops, in its order, applied to the new picks.
      for (std::size_t s = done; s < upto && !stopped; ++s) {
        // The CPU counts the step that computed pick s whether or not pick s is taken.
        if (s > 0) result.evaluations += host_evals[s - 1];
        const float value = host_values[s];
        const float far = std::sqrt(value);
        if (!(value > 0.0f) || far < opt_.min_distance) {
          stopped = true;
          break;
        }
        result.indices.push_back(static_cast<std::int64_t>(host_picks[s]));
        result.min_distances.push_back(far);
      }
      done = upto;
      if (!stopped && done < limit) poll();
    }
    return result;
  }

 private:
  void poll() {
    if (check_ && check_()) throw Interrupted();
  }

  void start_from_pool(const float* selected, std::size_t m) {
    DeviceArray<float> S(m * d_);
    check(cudaMemcpy(S.get(), selected, m * d_ * sizeof(float), cudaMemcpyHostToDevice),
          "copying the pool to the GPU");
    // Chunks of candidates of about 2^34 multiply-adds each, so that Ctrl-C is seen between them.
    const std::size_t per_row = std::max<std::size_t>(1, m * d_);
    std::size_t rows = std::max<std::size_t>(kTile, (std::size_t{1} << 34) / per_row);
    rows = (rows + kTile - 1) / kTile * kTile;
    for (std::size_t lo = 0; lo < n_; lo += rows) {
      const std::size_t hi = std::min(n_, lo + rows);
      const auto grid = static_cast<unsigned>((hi - lo + kTile - 1) / kTile);
      nearest_pool<<<grid, dim3(kTile, kTile)>>>(X_.get(), lo, hi, d_, S.get(), m, mind_.get());
      check(cudaGetLastError(), "launching the pool pass");
      check(cudaDeviceSynchronize(), "the pool pass");
      if (hi < n_) poll();
    }
  }

  std::size_t n_, d_;
  FpsOptions opt_;
  const InterruptCheck& check_;
  DeviceArray<float> X_, mind_;
  unsigned blocks_ = 1;
};

}  // namespace

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return count;
}

std::string cuda_status() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    (void)cudaGetLastError();
    return cudaGetErrorString(status);
  }
  if (count == 0) return "no CUDA device";
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
    (void)cudaGetLastError();
    return "CUDA device 0";
  }
  return prop.name;
}

FpsResult fps_select_cuda(const float* candidates, std::size_t n, std::size_t d,
                          const float* selected, std::size_t m, const FpsOptions& options,
                          const InterruptCheck& interrupted, int device) {
  if (d == 0 && n > 0) throw std::invalid_argument("embedding dimension must be at least 1");
  if (m > 0 && selected == nullptr) throw std::invalid_argument("selected is null but m > 0");
  if (n > std::numeric_limits<std::uint32_t>::max() - 1)
    throw std::invalid_argument("at most 2^32 - 2 candidates are supported");
  if (n == 0 || options.n_samples == 0) {
    FpsResult empty;
    empty.algorithm = "cuda-brute";
    empty.kernels = "cuda";
    return empty;
  }
  const int count = cuda_device_count();
  if (device < 0 || device >= count) {
    throw CudaError(count == 0 ? "no CUDA device is usable (" + cuda_status() + ")"
                               : "CUDA device " + std::to_string(device) + " does not exist (" +
                                     std::to_string(count) + " found)");
  }
  check(cudaSetDevice(device), "selecting the device");
  CudaSelector s(n, d, options, interrupted, device);
  return s.run(candidates, selected, m);
}

}  // namespace datapool
