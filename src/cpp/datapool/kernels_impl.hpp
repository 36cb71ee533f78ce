// The loops behind Kernels, written once and compiled per instruction set: each kernels_<isa>.cpp
// defines DATAPOOL_ISA_NS and DATAPOOL_SQDIST_BODY's helpers, then includes this file.
// Only the squared distance differs between instruction sets; the loops are shared.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>

namespace datapool {
namespace DATAPOOL_ISA_NS {

static void brute_update(const float* X, std::size_t d, std::size_t lo, std::size_t hi,
                         const float* c, float* mind, float* best_value, std::size_t* best_index,
                         std::uint64_t* evaluations) {
  float best = -1.0f;
  std::size_t at = lo;
  std::uint64_t evals = 0;
  for (std::size_t i = lo; i < hi; ++i) {
    float v = mind[i];
    if (v > 0.0f) {
      const float dist = sqdist(X + i * d, c, d);
      ++evals;
      if (dist < v) {
        v = dist;
        mind[i] = v;
      }
    }
    if (v > best) {
      best = v;
      at = i;
    }
  }
  *best_value = best;
  *best_index = at;
  *evaluations += evals;
}

template <bool kMeasureAll>
static void pruned_update_impl(const float* X, std::size_t d, std::size_t lo, std::size_t hi,
                               const float* c, float* mind, std::int32_t* owner,
                               const float* limit2, std::int32_t new_group, float* radius,
                               std::uint32_t* leader, std::uint64_t* evaluations) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  constexpr std::size_t kAhead = 12;  // rows: enough misses in flight to hide memory latency
  const std::size_t row_bytes = d * sizeof(float);
  std::uint64_t evals = 0;
  for (std::size_t i = lo; i < hi; ++i) {
    if (!kMeasureAll && i + kAhead < hi) {
      // Sparse measuring defeats the hardware prefetcher: apply the same test a few rows ahead
      // and prefetch the rows that will be measured.
      const std::size_t a = i + kAhead;
      if (4.0f * mind[a] > limit2[owner[a]]) {
        const char* row = reinterpret_cast<const char*>(X + a * d);
        for (std::size_t off = 0; off < row_bytes; off += 64) __builtin_prefetch(row + off);
      }
    }
    std::int32_t g = owner[i];
    const float limit = limit2[g];
    if (limit == kInf) continue;  // the whole group is out of reach
    float m = mind[i];
    if (!(m > 0.0f)) continue;  // a duplicate of a selected point: never picked again
    if (kMeasureAll || 4.0f * m > limit) {
      const float dist = sqdist(X + i * d, c, d);
      ++evals;
      if (dist < m) {
        m = dist;
        mind[i] = m;
        owner[i] = new_group;
        g = new_group;
      }
    }
    if (m > 0.0f && m > radius[g]) {
      radius[g] = m;
      leader[g] = static_cast<std::uint32_t>(i);
    }
  }
  *evaluations += evals;
}

static void pruned_update(const float* X, std::size_t d, std::size_t lo, std::size_t hi,
                          const float* c, float* mind, std::int32_t* owner, const float* limit2,
                          std::int32_t new_group, float* radius, std::uint32_t* leader,
                          std::uint64_t* evaluations, bool measure_all) {
  if (measure_all)
    pruned_update_impl<true>(X, d, lo, hi, c, mind, owner, limit2, new_group, radius, leader,
                             evaluations);
  else
    pruned_update_impl<false>(X, d, lo, hi, c, mind, owner, limit2, new_group, radius, leader,
                              evaluations);
}

static std::size_t scan_group(const float* X, std::size_t d, std::uint32_t* members,
                              std::size_t count, const float* c, float limit2, float* mind,
                              std::uint32_t* moved, std::size_t* n_moved, std::uint32_t* scratch,
                              float* radius, std::uint32_t* leader, std::uint64_t* evaluations) {
  // Pass 1: which members might get closer (cheap: an index and a float each).
  std::size_t nc = 0;
  for (std::size_t pos = 0; pos < count; ++pos)
    if (4.0f * mind[members[pos]] > limit2) scratch[nc++] = static_cast<std::uint32_t>(pos);
  // Pass 2: measure them in ascending address order, prefetching rows ahead.
  constexpr std::size_t kAhead = 8;
  const std::size_t row_bytes = d * sizeof(float);
  auto prefetch = [&](std::size_t i) {
    const char* row = reinterpret_cast<const char*>(X + std::size_t{members[scratch[i]]} * d);
    for (std::size_t off = 0; off < row_bytes; off += 64) __builtin_prefetch(row + off);
  };
  for (std::size_t i = 0; i < std::min(nc, kAhead); ++i) prefetch(i);
  std::size_t nm = 0;
  for (std::size_t i = 0; i < nc; ++i) {
    if (i + kAhead < nc) prefetch(i + kAhead);
    const std::uint32_t pos = scratch[i];
    const std::uint32_t x = members[pos];
    const float dist = sqdist(X + std::size_t{x} * d, c, d);
    if (dist < mind[x]) {
      mind[x] = dist;
      scratch[nm++] = pos;  // nm <= i: overwrites only entries already consumed
    }
  }
  *evaluations += nc;
  // Pass 3: split into moved and kept, drop members at distance 0, find the new leader.
  std::size_t kept = 0, j = 0, out = 0;
  float r = -1.0f;
  std::uint32_t lead = 0;
  for (std::size_t pos = 0; pos < count; ++pos) {
    const std::uint32_t x = members[pos];
    if (j < nm && scratch[j] == pos) {
      moved[out++] = x;
      ++j;
      continue;
    }
    const float m = mind[x];
    if (!(m > 0.0f)) continue;
    members[kept++] = x;
    if (m > r) {
      r = m;
      lead = x;
    }
  }
  *n_moved = out;
  *radius = r;
  *leader = lead;
  return kept;
}

static void nearest_rows(const float* X, std::size_t d, std::size_t lo, std::size_t hi,
                         const float* S, std::size_t m, float* mind) {
  constexpr std::size_t kRows = 8;     // candidate rows kept hot in L1
  constexpr std::size_t kPool = 512;   // pool rows per block, reused by the kRows candidates
  for (std::size_t i0 = lo; i0 < hi; i0 += kRows) {
    const std::size_t i1 = std::min(hi, i0 + kRows);
    for (std::size_t i = i0; i < i1; ++i) mind[i] = std::numeric_limits<float>::infinity();
    for (std::size_t r0 = 0; r0 < m; r0 += kPool) {
      const std::size_t r1 = std::min(m, r0 + kPool);
      for (std::size_t i = i0; i < i1; ++i) {
        const float* x = X + i * d;
        float best = mind[i];
        for (std::size_t r = r0; r < r1; ++r) best = std::min(best, sqdist(x, S + r * d, d));
        mind[i] = best;
      }
    }
  }
}

static const Kernels kKernels = {DATAPOOL_ISA_NAME, &sqdist,     &brute_update,
                                 &pruned_update,    &scan_group, &nearest_rows};

}  // namespace DATAPOOL_ISA_NS
}  // namespace datapool
