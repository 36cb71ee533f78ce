#include "datapool/pack.hpp"

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

#include "datapool/pack_kernels.hpp"
#include "datapool/thread_pool.hpp"

namespace datapool {
namespace {

using pack_detail::AxisTaps;
using pack_detail::FramePlan;
using pack_detail::PackFrameFn;

// The storage behind one axis's AxisTaps (see pack_kernels.hpp).
struct AxisTable {
  std::size_t in = 0, out = 0, max_taps = 1;
  bool identity = false;
  double mean_taps = 1.0;
  std::vector<std::size_t> start, count;
  std::vector<float> weight;

  AxisTaps taps() const {
    return {in, out, max_taps, identity, start.data(), count.data(), weight.data()};
  }
};

struct Plan {
  const AxisTable* ty = nullptr;
  const AxisTable* tx = nullptr;
  bool vertical_first = true;
  std::size_t scratch = 0;  // floats
};

bool cpu_has_avx2() {
#if defined(DATAPOOL_X86_KERNELS)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2");
#else
  return false;
#endif
}

// The widest loops this CPU runs; they all give the same bits.
PackFrameFn best_pack_frame() {
#if defined(DATAPOOL_X86_KERNELS)
  if (cpu_has_avx2()) return pack_detail::avx2_pack_frame();
#endif
  return pack_detail::scalar_pack_frame();
}

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
      if (num % den != 0 && num < 0) --x0;   // floor
      const long long rem = num - x0 * den;  // 0 <= rem < den
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

const AxisTable& table_for(std::vector<AxisTable>& tables, std::size_t in, std::size_t out) {
  for (const AxisTable& t : tables) {
    if (t.in == in) return t;
  }
  tables.push_back(make_axis_table(in, out));
  return tables.back();
}

long process_id() {
#if defined(__unix__) || defined(__APPLE__)
  return static_cast<long>(::getpid());
#else
  return 0;
#endif
}

// The packer runs once per batch; it keeps one thread pool per thread count for the life of the
// process instead of starting and joining its threads on every call. Calls that share a pool
// take turns (`use`). A forked child gets a fresh pool: the parent's workers do not exist there.
struct SharedPool {
  std::mutex use;
  std::unique_ptr<ThreadPool> pool;
  long pid = 0;

  ThreadPool& get(std::size_t threads) {
    if (!pool || pid != process_id()) {
      if (pool && pid != process_id()) (void)pool.release();  // its threads were the parent's
      pool = std::make_unique<ThreadPool>(threads);
      pid = process_id();
    }
    return *pool;
  }
};

SharedPool& shared_pool(std::size_t threads) {
  static std::mutex mu;
  // Never destroyed: idle workers simply end with the process, and no exit-time destructor
  // waits on a thread.
  static auto* pools = new std::map<std::size_t, std::unique_ptr<SharedPool>>();
  std::lock_guard<std::mutex> lock(mu);
  std::unique_ptr<SharedPool>& slot = (*pools)[threads];
  if (!slot) slot = std::make_unique<SharedPool>();
  return *slot;
}

}  // namespace

const char* pack_simd() { return cpu_has_avx2() ? "avx2" : "scalar"; }

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
  SharedPool& shared = shared_pool(threads);
  std::lock_guard<std::mutex> in_use(shared.use);
  ThreadPool& pool = shared.get(threads);
  std::vector<std::vector<float>> scratch(pool.size());
  const std::size_t frame_floats = 3 * opt.out_height * opt.out_width;
  std::vector<FramePlan> kernel_plans(n_frames);
  for (std::size_t i = 0; i < n_frames; ++i) {
    kernel_plans[i] = {plans[i].ty->taps(), plans[i].tx->taps(), plans[i].vertical_first};
  }
  static const PackFrameFn pack_frame = best_pack_frame();
  pool.parallel_for(n_frames, [&](std::size_t i, std::size_t thread) {
    std::vector<float>& s = scratch[thread];
    if (s.size() < max_scratch) s.resize(max_scratch);  // once per thread and call
    pack_frame(frames[i], kernel_plans[i], s.data(), out + i * frame_floats, opt);
  });
}

}  // namespace datapool
