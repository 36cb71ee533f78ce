// The packer's per-frame loops, written once and compiled per instruction set: each
// pack_<isa>.cpp defines DATAPOOL_PACK_ISA_NS and includes this file. Everything here is static
// and touches no inline library code (raw pointers only), so nothing compiled for a wider
// instruction set can leak into code that runs on a CPU without it. No FMA contraction: the AVX2
// file is compiled with -mavx2 only, so every instruction set gives the same bits.
#include <cstddef>
#include <cstdint>

#include "datapool/pack_kernels.hpp"

namespace datapool {
namespace pack_detail {
namespace DATAPOOL_PACK_ISA_NS {

// acc[0..n) = sum_k w[k] * row(first + k)[0..n), rows `stride` elements apart from `base`.
// Each loop runs over whole contiguous rows and vectorises. With 3 or more taps (area tables
// only) every middle tap has the same weight (full coverage), so the middle rows are summed
// unweighted first: for uint8 rows that sum is an exact integer in float (up to 65793 rows), and
// the result is rounded about three times whatever the number of taps, so even a 5000:1 shrink
// of a constant image stays within ~1e-5 of exact.
template <typename T>
static void blend_rows(float* __restrict acc, const T* base, std::ptrdiff_t stride,
                       std::size_t first, const float* w, std::size_t taps, std::size_t n) {
  auto row = [&](std::size_t k) { return base + static_cast<std::ptrdiff_t>(first + k) * stride; };
  if (taps == 1) {
    const T* __restrict a = row(0);
    const float wa = w[0];
    for (std::size_t i = 0; i < n; ++i) acc[i] = wa * static_cast<float>(a[i]);
    return;
  }
  const T* __restrict lo = row(0);
  const T* __restrict hi = row(taps - 1);
  const float wlo = w[0], whi = w[taps - 1];
  if (taps == 2) {
    for (std::size_t i = 0; i < n; ++i) {
      acc[i] = wlo * static_cast<float>(lo[i]) + whi * static_cast<float>(hi[i]);
    }
    return;
  }
  const float wmid = w[1];
  if (taps == 3) {
    const T* __restrict m = row(1);
    for (std::size_t i = 0; i < n; ++i) {
      acc[i] = wlo * static_cast<float>(lo[i]) + wmid * static_cast<float>(m[i]) +
               whi * static_cast<float>(hi[i]);
    }
    return;
  }
  // Middle rows 1 .. taps-2, two per sweep, unweighted.
  std::size_t k = 1;
  {
    const T* __restrict a = row(1);
    const T* __restrict b = row(2);
    for (std::size_t i = 0; i < n; ++i)
      acc[i] = static_cast<float>(a[i]) + static_cast<float>(b[i]);
    k = 3;
  }
  for (; k + 1 < taps - 1; k += 2) {
    const T* __restrict a = row(k);
    const T* __restrict b = row(k + 1);
    for (std::size_t i = 0; i < n; ++i)
      acc[i] += static_cast<float>(a[i]) + static_cast<float>(b[i]);
  }
  if (k < taps - 1) {
    const T* __restrict a = row(k);
    for (std::size_t i = 0; i < n; ++i) acc[i] += static_cast<float>(a[i]);
  }
  for (std::size_t i = 0; i < n; ++i) {
    acc[i] = wlo * static_cast<float>(lo[i]) + wmid * acc[i] + whi * static_cast<float>(hi[i]);
  }
}

// One row of C interleaved channels, resampled along x: dst[o*C + c] for o < t.out.
// Accumulates in double.
template <typename T, std::size_t C>
static void resample_row(float* __restrict dst, const T* __restrict src, const AxisTaps& t) {
  const std::size_t K = t.max_taps;
  for (std::size_t o = 0; o < t.out; ++o) {
    const T* p = src + t.start[o] * C;
    const float* w = t.weight + o * K;
    const std::size_t taps = t.count[o];
    double a[C] = {};  // scalar code either way: double costs the same and keeps long sums exact
    for (std::size_t k = 0; k < taps; ++k) {
      const double wk = w[k];
      for (std::size_t c = 0; c < C; ++c) a[c] += wk * static_cast<double>(p[k * C + c]);
    }
    for (std::size_t c = 0; c < C; ++c) dst[o * C + c] = static_cast<float>(a[c]);
  }
}

// Output row oy of the three planes from a row of `width` pixels of C interleaved channels:
// gray is replicated, alpha (C = 4) is ignored, then value * scale[c] + shift[c].
template <typename T, std::size_t C>
static void write_row(float* out, std::size_t plane, std::size_t oy, std::size_t width,
                      const T* __restrict row, const PackOptions& opt) {
  for (std::size_t c = 0; c < 3; ++c) {
    const std::size_t sc = C == 1 ? 0 : c;
    const float s = opt.scale[c], h = opt.shift[c];
    float* __restrict o = out + c * plane + oy * width;
    for (std::size_t x = 0; x < width; ++x) o[x] = static_cast<float>(row[x * C + sc]) * s + h;
  }
}

template <std::size_t C>
static void pack_one(const FrameView& f, const FramePlan& plan, float* scratch, float* out,
                     const PackOptions& opt) {
  const AxisTaps& ty = plan.y;
  const AxisTaps& tx = plan.x;
  const std::size_t oh = opt.out_height, ow = opt.out_width, plane = oh * ow;
  const std::size_t ky = ty.max_taps;
  const auto src_row = [&](std::size_t y) {
    return f.data + static_cast<std::ptrdiff_t>(y) * f.row_stride;
  };
  if (plan.vertical_first) {
    // Per output row: blend the source rows it needs (whole rows, vectorised), then resample
    // that one row along x. Scratch: one source-width row and one output-width row.
    float* row = scratch;
    float* hrow = scratch + f.width * C;
    for (std::size_t oy = 0; oy < oh; ++oy) {
      const std::uint8_t* src = nullptr;
      if (ty.identity) {
        src = src_row(oy);
      } else {
        blend_rows<std::uint8_t>(row, f.data, f.row_stride, ty.start[oy], &ty.weight[oy * ky],
                                 ty.count[oy], f.width * C);
      }
      if (tx.identity) {
        if (src) {
          write_row<std::uint8_t, C>(out, plane, oy, ow, src, opt);
        } else {
          write_row<float, C>(out, plane, oy, ow, row, opt);
        }
      } else {
        if (src) {
          resample_row<std::uint8_t, C>(hrow, src, tx);
        } else {
          resample_row<float, C>(hrow, row, tx);
        }
        write_row<float, C>(out, plane, oy, ow, hrow, opt);
      }
    }
  } else {
    // Resample every source row along x into scratch (H rows of the output width), then blend
    // those rows for each output row.
    const std::size_t n = ow * C;
    float* rows = scratch;
    float* vrow = scratch + f.height * n;
    for (std::size_t y = 0; y < f.height; ++y) {
      resample_row<std::uint8_t, C>(rows + y * n, src_row(y), tx);
    }
    for (std::size_t oy = 0; oy < oh; ++oy) {
      blend_rows<float>(vrow, rows, static_cast<std::ptrdiff_t>(n), ty.start[oy],
                        &ty.weight[oy * ky], ty.count[oy], n);
      write_row<float, C>(out, plane, oy, ow, vrow, opt);
    }
  }
}

static void pack_frame(const FrameView& f, const FramePlan& plan, float* scratch, float* out,
                       const PackOptions& opt) {
  switch (f.channels) {
    case 1:
      pack_one<1>(f, plan, scratch, out, opt);
      break;
    case 3:
      pack_one<3>(f, plan, scratch, out, opt);
      break;
    default:
      pack_one<4>(f, plan, scratch, out, opt);
      break;
  }
}

}  // namespace DATAPOOL_PACK_ISA_NS
}  // namespace pack_detail
}  // namespace datapool
