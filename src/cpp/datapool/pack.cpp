#include "datapool/pack.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "datapool/thread_pool.hpp"

namespace datapool {
namespace {

// The taps of one axis: output o reads source pixels start[o] .. start[o] + count[o] - 1 with
// weights weight[o * max_taps + k], which sum to 1.
struct AxisTable {
  std::size_t in = 0, out = 0, max_taps = 1;
  bool identity = false;
  double mean_taps = 1.0;
  std::vector<std::size_t> start, count;
  std::vector<float> weight;
};

AxisTable make_axis_table(std::size_t in, std::size_t out) {
  AxisTable t;
  t.in = in;
  t.out = out;
  t.identity = in == out;
  if (in > out) t.max_taps = (in + out - 1) / out + 1;  // ceil(in / out) + 1
  if (in < out) t.max_taps = 2;
  t.start.assign(out, 0);
  t.count.assign(out, 0);
  t.weight.assign(out * t.max_taps, 0.0f);
  std::size_t total = 0;
  for (std::size_t o = 0; o < out; ++o) {
    float* w = t.weight.data() + o * t.max_taps;
    if (in == out) {
      t.start[o] = o;
      t.count[o] = 1;
      w[0] = 1.0f;
    } else if (in > out) {
      // Area: in units of 1/out source pixel, output o spans [o*in, (o+1)*in) and source pixel i
      // spans [i*out, (i+1)*out). Overlaps are exact integers that sum to `in`.
      const std::size_t lo = o * in, hi = (o + 1) * in;
      const std::size_t first = lo / out;
      const std::size_t last = std::min(in, (hi + out - 1) / out);  // exclusive
      std::size_t k = 0;
      for (std::size_t i = first; i < last; ++i) {
        const std::size_t overlap = std::min((i + 1) * out, hi) - std::max(i * out, lo);
        if (overlap == 0) continue;
        if (k == 0) t.start[o] = i;
        w[k++] = static_cast<float>(static_cast<double>(overlap) / static_cast<double>(in));
      }
      t.count[o] = k;
    } else {
      // Bilinear: src = (o + 0.5) * in / out - 0.5 = num / den, exactly.
      const auto num = static_cast<long long>((2 * o + 1) * in) - static_cast<long long>(out);
      const auto den = static_cast<long long>(2 * out);
      long long x0 = num / den;
      if (num % den != 0 && num < 0) --x0;  // floor
      const long long rem = num - x0 * den;   // 0 <= rem < den
      const auto last = static_cast<long long>(in) - 1;
      if (x0 < 0 || x0 >= last || rem == 0) {
        // Clamped to an edge, or exactly on a source centre: one tap.
        t.start[o] = static_cast<std::size_t>(std::clamp(x0, 0LL, last));
        t.count[o] = 1;
        w[0] = 1.0f;
      } else {
        const double f = static_cast<double>(rem) / static_cast<double>(den);
        t.start[o] = static_cast<std::size_t>(x0);
        t.count[o] = 2;
        w[0] = static_cast<float>(1.0 - f);
        w[1] = static_cast<float>(f);
      }
    }
    total += t.count[o];
  }
  t.mean_taps = static_cast<double>(total) / static_cast<double>(out);
  return t;
}

// acc[0..n) = sum_k w[k] * row(first + k)[0..n), rows `stride` elements apart from `base`.
// Each loop runs over whole contiguous rows and vectorises. With 3 or more taps (area tables
// only) every middle tap has the same weight (full coverage), so the middle rows are summed
// unweighted first: for uint8 rows that sum is an exact integer in float (up to 65793 rows), and
// the result is rounded about three times whatever the number of taps, so even a 5000:1 shrink
// of a constant image stays within ~1e-5 of exact.
template <typename T>
void blend_rows(float* __restrict acc, const T* base, std::ptrdiff_t stride, std::size_t first,
                const float* w, std::size_t taps, std::size_t n) {
  auto row = [&](std::size_t k) {
    return base + static_cast<std::ptrdiff_t>(first + k) * stride;
  };
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
    for (std::size_t i = 0; i < n; ++i) acc[i] = static_cast<float>(a[i]) + static_cast<float>(b[i]);
    k = 3;
  }
  for (; k + 1 < taps - 1; k += 2) {
    const T* __restrict a = row(k);
    const T* __restrict b = row(k + 1);
    for (std::size_t i = 0; i < n; ++i) acc[i] += static_cast<float>(a[i]) + static_cast<float>(b[i]);
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
void resample_row(float* __restrict dst, const T* __restrict src, const AxisTable& t) {
  const std::size_t K = t.max_taps;
  for (std::size_t o = 0; o < t.out; ++o) {
    const T* p = src + t.start[o] * C;
    const float* w = t.weight.data() + o * K;
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
void write_row(float* out, std::size_t plane, std::size_t oy, std::size_t width,
               const T* __restrict row, const PackOptions& opt) {
  for (std::size_t c = 0; c < 3; ++c) {
    const std::size_t sc = C == 1 ? 0 : c;
    const float s = opt.scale[c], h = opt.shift[c];
    float* __restrict o = out + c * plane + oy * width;
    for (std::size_t x = 0; x < width; ++x) o[x] = static_cast<float>(row[x * C + sc]) * s + h;
  }
}

struct Plan {
  const AxisTable* ty = nullptr;
  const AxisTable* tx = nullptr;
  bool vertical_first = true;
  std::size_t scratch = 0;  // floats
};

template <std::size_t C>
void pack_one(const FrameView& f, const Plan& plan, float* scratch, float* out,
              const PackOptions& opt) {
  const AxisTable& ty = *plan.ty;
  const AxisTable& tx = *plan.tx;
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

const AxisTable& table_for(std::vector<AxisTable>& tables, std::size_t in, std::size_t out) {
  for (const AxisTable& t : tables) {
    if (t.in == in) return t;
  }
  tables.push_back(make_axis_table(in, out));
  return tables.back();
}

}  // namespace

void pack_frames(const FrameView* frames, std::size_t n_frames, float* out,
                 const PackOptions& opt) {
  if (opt.out_height == 0 || opt.out_width == 0) {
    throw std::invalid_argument("output height and width must be at least 1");
  }
  for (std::size_t i = 0; i < n_frames; ++i) {
    const FrameView& f = frames[i];
    if (f.height == 0 || f.width == 0) {
      throw std::invalid_argument("frame " + std::to_string(i) + " is empty");
    }
    if (f.channels != 1 && f.channels != 3 && f.channels != 4) {
      throw std::invalid_argument("frame " + std::to_string(i) + " has " +
                                  std::to_string(f.channels) + " channels; 1, 3 or 4 expected");
    }
  }
  if (n_frames == 0) return;

  // Tables per distinct input length (a batch usually holds one or two sizes). Reserve first so
  // that the references in the plans stay valid.
  std::vector<AxisTable> ytables, xtables;
  ytables.reserve(n_frames);
  xtables.reserve(n_frames);
  std::vector<Plan> plans(n_frames);
  std::size_t max_scratch = 0;
  const double oh = static_cast<double>(opt.out_height), ow = static_cast<double>(opt.out_width);
  for (std::size_t i = 0; i < n_frames; ++i) {
    const FrameView& f = frames[i];
    Plan& p = plans[i];
    p.ty = &table_for(ytables, f.height, opt.out_height);
    p.tx = &table_for(xtables, f.width, opt.out_width);
    // Cost in multiply-adds; a gathered horizontal tap costs about twice a vectorised vertical
    // one. Vertical first: OH blended source rows, then OH resampled rows. Horizontal first:
    // H resampled rows, then OH blended output-width rows.
    const double c = static_cast<double>(f.channels);
    const double h = static_cast<double>(f.height), w = static_cast<double>(f.width);
    const double gather = 2.0;
    const double v_first = oh * w * c * p.ty->mean_taps + oh * ow * c * p.tx->mean_taps * gather;
    const double h_first = h * ow * c * p.tx->mean_taps * gather + oh * ow * c * p.ty->mean_taps;
    p.vertical_first = v_first <= h_first || p.ty->identity;
    p.scratch = p.vertical_first ? (f.width + opt.out_width) * f.channels
                                 : (f.height + 1) * opt.out_width * f.channels;
    max_scratch = std::max(max_scratch, p.scratch);
  }

  std::size_t threads = opt.threads;
  if (threads == 0) threads = std::max<std::size_t>(1, std::thread::hardware_concurrency());
  threads = std::min(threads, n_frames);
  ThreadPool pool(threads);
  std::vector<std::vector<float>> scratch(pool.size());
  const std::size_t frame_floats = 3 * opt.out_height * opt.out_width;
  pool.parallel_for(n_frames, [&](std::size_t i, std::size_t thread) {
    std::vector<float>& s = scratch[thread];
    if (s.size() < max_scratch) s.resize(max_scratch);  // once per thread and call
    float* dst = out + i * frame_floats;
    switch (frames[i].channels) {
      case 1:
        pack_one<1>(frames[i], plans[i], s.data(), dst, opt);
        break;
      case 3:
        pack_one<3>(frames[i], plans[i], s.data(), dst, opt);
        break;
      default:
        pack_one<4>(frames[i], plans[i], s.data(), dst, opt);
        break;
    }
  });
}

}  // namespace datapool
