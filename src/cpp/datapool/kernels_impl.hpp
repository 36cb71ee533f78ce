// The loops behind Kernels, written once and compiled per instruction set: each kernels_<isa>.cpp
// defines DATAPOOL_ISA_NS and DATAPOOL_SQDIST_BODY's helpers, then includes this file.
// Only the squared distance differs between instruction sets; the loops are shared.
#include <algorithm>
#include <cstddef>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "datapool/screen.hpp"

namespace datapool {
namespace DATAPOOL_ISA_NS {

// Prefetches `bytes` from p, a cache line at a time.
static inline void prefetch_rows(const void* p, std::size_t bytes) {
  const char* row = static_cast<const char*>(p);
  for (std::size_t off = 0; off < bytes; off += 64) __builtin_prefetch(row + off);
}

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
      if (4.0f * mind[a] > limit2[owner[a]]) prefetch_rows(X + a * d, row_bytes);
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

// The last pass of scan_group and screened_scan: split a group's members into those that moved
// (positions scratch[0..nm), ascending) and those it keeps, dropping members at distance 0; the
// kept members' largest min-distance and its row. Returns how many it keeps.
static inline std::size_t split_group(std::uint32_t* members, std::size_t count,
                                      const std::uint32_t* scratch, std::size_t nm,
                                      const float* mind, std::uint32_t* moved,
                                      std::size_t* n_moved, float* radius,
                                      std::uint32_t* leader) {
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

// The first passes of scan_group and screened_scan. The positions of the members that the
// triangle test leaves (4 mind > limit2), in order, into scratch; returns how many.
static inline std::size_t members_in_reach(const std::uint32_t* members, std::size_t count,
                                           const float* mind, float limit2,
                                           std::uint32_t* scratch) {
  std::size_t nc = 0;
  for (std::size_t pos = 0; pos < count; ++pos)
    if (4.0f * mind[members[pos]] > limit2) scratch[nc++] = static_cast<std::uint32_t>(pos);
  return nc;
}

// Measures the members at positions scratch[0..count) in float32, in that order (ascending
// addresses), their rows prefetched a few ahead. A member that gets closer takes the new
// min-distance (and, given the screen's rows, its threshold), and its position is written back
// to scratch[0..nm) (nm <= i: only entries already read are overwritten). Returns nm.
static std::size_t measure_members(const float* X, std::size_t d, const std::uint32_t* members,
                                   std::uint32_t* scratch, std::size_t count, const float* c,
                                   float* mind, const ScreenRows* rows) {
  constexpr std::size_t kAhead = 8;
  const std::size_t row_bytes = d * sizeof(float);
  auto ahead = [&](std::size_t i) {
    prefetch_rows(X + std::size_t{members[scratch[i]]} * d, row_bytes);
  };
  for (std::size_t i = 0; i < std::min(count, kAhead); ++i) ahead(i);
  std::size_t nm = 0;
  for (std::size_t i = 0; i < count; ++i) {
    if (i + kAhead < count) ahead(i + kAhead);
    const std::uint32_t pos = scratch[i];
    const std::uint32_t x = members[pos];
    const float dist = sqdist(X + std::size_t{x} * d, c, d);
    if (dist < mind[x]) {
      mind[x] = dist;
      if (rows) rows->meta[x].thr = screen_threshold(dist, rows->err[x], d);
      scratch[nm++] = pos;
    }
  }
  return nm;
}

static std::size_t scan_group(const float* X, std::size_t d, std::uint32_t* members,
                              std::size_t count, const float* c, float limit2, float* mind,
                              std::uint32_t* moved, std::size_t* n_moved, std::uint32_t* scratch,
                              float* radius, std::uint32_t* leader, std::uint64_t* evaluations) {
  // Pass 1: which members might get closer (cheap: an index and a float each).
  const std::size_t nc = members_in_reach(members, count, mind, limit2, scratch);
  // Pass 2: measure them in ascending address order, prefetching rows ahead.
  const std::size_t nm = measure_members(X, d, members, scratch, nc, c, mind, nullptr);
  *evaluations += nc;
  // Pass 3: split into moved and kept, drop members at distance 0, find the new leader.
  return split_group(members, count, scratch, nm, mind, moved, n_moved, radius, leader);
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

// --- the int8 screen (datapool/screen.hpp) -------------------------------------------------------
// True when the bound proves that the float32 distance from row i to the query is >= its
// min-distance, so that measuring it could not change anything.
static inline bool screened_out_dot(const ScreenRows& rows, const ScreenQuery& query,
                                    std::size_t i, std::int32_t raw) {
  const ScreenMeta& row = rows.meta[i];
  const std::int32_t dot = raw - kDotBias * row.qsum;  // exact: |dot| < 2^24
  const float base = row.norm2 + query.norm2;
  const float lhs = base - 2.0f * ((row.scale * query.scale) * static_cast<float>(dot));
  const float r = row.thr + query.err;
  const float rhs = r * r;
  return lhs >= rhs + kScreenMargin * (base + rhs);
}

#if !defined(DATAPOOL_HAS_KEEP8)
static inline unsigned screen_keep8(const ScreenRows& rows, const ScreenQuery& query,
                                    std::size_t i0, const std::int32_t* raw) {
  unsigned keep = 0;
  for (unsigned r = 0; r < 8; ++r)
    if (!screened_out_dot(rows, query, i0 + r, raw[r])) keep |= 1u << r;
  return keep;
}
#endif

static inline bool screened_out(const ScreenRows& rows, const ScreenQuery& query, std::size_t i,
                                std::size_t d) {
  return screened_out_dot(rows, query, i, dot_i8(rows.q + i * d, query, d));
}

// The rows the screen could not rule out, measured in float32 in index order (their rows
// prefetched ahead): the min-distance, owner and screen threshold of a row that gets closer, and
// the radius and leader (lowest index on ties) of each row's group.
static void measure_survivors(const float* X, std::size_t d, const float* c,
                              const std::uint32_t* survivors, std::size_t count, float* mind,
                              std::int32_t* owner, std::int32_t new_group, float* radius,
                              std::uint32_t* leader, const ScreenRows& rows) {
  constexpr std::size_t kAhead = 8;
  const std::size_t row_bytes = d * sizeof(float);
  for (std::size_t k = 0; k < std::min(count, kAhead); ++k)
    prefetch_rows(X + std::size_t{survivors[k]} * d, row_bytes);
  for (std::size_t k = 0; k < count; ++k) {
    if (k + kAhead < count) prefetch_rows(X + std::size_t{survivors[k + kAhead]} * d, row_bytes);
    const std::size_t i = survivors[k];
    float m = mind[i];
    std::int32_t g = owner[i];
    const float dist = sqdist(X + i * d, c, d);
    if (dist < m) {
      m = dist;
      mind[i] = m;
      rows.meta[i].thr = screen_threshold(m, rows.err[i], d);
      owner[i] = g = new_group;
    }
    if (m > 0.0f && (m > radius[g] || (m == radius[g] && i < leader[g]))) {
      radius[g] = m;
      leader[g] = static_cast<std::uint32_t>(i);
    }
  }
}

// Every row is screened, 8 rows at a time, in one stream over the int8 copy and its metadata;
// nothing else is read per row. The survivors of active groups are measured in float32
// afterwards, in index order, with their full rows prefetched a few ahead (measured as they
// come, scattered through the stream, each would cost a memory latency), and take their part in
// the radius and leader of their group (ties to the lowest index explicitly). The rows ruled out
// keep their min-distance and group and are not visited again: a group's radius changes only if
// its leader moved, and the caller recomputes those groups (Selector::regroup), and counts the
// evaluations (the rows of active groups, which the float32 pass measures) there.
// With row_of (screened_update_compact), the stream is a compacted copy: its position k holds
// row row_of[k] (ascending), and the thresholds of the rows measured are copied back into it.
static void screen_stream(const float* X, std::size_t d, std::size_t lo, std::size_t hi,
                          const std::uint32_t* row_of, const float* c, float* mind,
                          std::int32_t* owner, const float* limit2, std::int32_t new_group,
                          float* radius, std::uint32_t* leader, const ScreenRows& rows,
                          const ScreenRows& stream, const ScreenQuery& query,
                          std::uint64_t* rechecks) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  constexpr std::size_t kAhead = 4;  // blocks of 8 rows prefetched ahead (measured: 7% faster)
  const bool usable = query.err < kInf;  // a center that is not screened rules nothing out
  thread_local std::vector<std::uint32_t> survivors;  // positions in the stream
  survivors.clear();
  const std::int8_t* ptr[8];
  std::int32_t dots[8];
  std::size_t k0 = lo;
  for (; usable && k0 + 8 <= hi; k0 += 8) {
    if (k0 + 8 * (kAhead + 1) <= hi) prefetch_rows(stream.q + (k0 + 8 * kAhead) * d, 8 * d);
    for (std::size_t r = 0; r < 8; ++r) ptr[r] = stream.q + (k0 + r) * d;
    dot_i8_x8(ptr, query, d, dots);
    for (unsigned keep = screen_keep8(stream, query, k0, dots); keep != 0; keep &= keep - 1)
      survivors.push_back(static_cast<std::uint32_t>(k0 + static_cast<unsigned>(__builtin_ctz(keep))));
  }
  for (; k0 < hi; ++k0)
    if (!usable || !screened_out(stream, query, k0, d))
      survivors.push_back(static_cast<std::uint32_t>(k0));
  // The survivors of active groups are measured (as rows).
  thread_local std::vector<std::uint32_t> measured;
  measured.clear();
  std::size_t kept = 0;
  for (const std::uint32_t k : survivors) {
    const std::uint32_t i = row_of ? row_of[k] : k;
    if (limit2[owner[i]] != kInf && mind[i] > 0.0f) {
      survivors[kept++] = k;
      measured.push_back(i);
    }
  }
  measure_survivors(X, d, c, measured.data(), kept, mind, owner, new_group, radius, leader, rows);
  if (row_of)
    for (std::size_t s = 0; s < kept; ++s) stream.meta[survivors[s]].thr = rows.meta[measured[s]].thr;
  *rechecks += kept;
}

static void screened_update_all(const float* X, std::size_t d, std::size_t lo, std::size_t hi,
                                const float* c, float* mind, std::int32_t* owner,
                                const float* limit2, std::int32_t new_group, float* radius,
                                std::uint32_t* leader, std::uint64_t* /*evaluations*/,
                                const ScreenRows& rows, const ScreenQuery& query,
                                std::uint64_t* rechecks) {
  screen_stream(X, d, lo, hi, nullptr, c, mind, owner, limit2, new_group, radius, leader, rows,
                rows, query, rechecks);
}

static void screened_update_compact(const float* X, std::size_t d, std::size_t lo,
                                    std::size_t hi, const std::uint32_t* row_of, const float* c,
                                    float* mind, std::int32_t* owner, const float* limit2,
                                    std::int32_t new_group, float* radius, std::uint32_t* leader,
                                    const ScreenRows& rows, const ScreenRows& compact,
                                    const ScreenQuery& query, std::uint64_t* rechecks) {
  screen_stream(X, d, lo, hi, row_of, c, mind, owner, limit2, new_group, radius, leader, rows,
                compact, query, rechecks);
}

// Only the rows that the triangle test leaves are screened (their int8 rows prefetched ahead);
// the survivors are measured afterwards, as in screened_update_all.
static void screened_update_sparse(const float* X, std::size_t d, std::size_t lo, std::size_t hi,
                                   const float* c, float* mind, std::int32_t* owner,
                                   const float* limit2, std::int32_t new_group, float* radius,
                                   std::uint32_t* leader, std::uint64_t* evaluations,
                                   const ScreenRows& rows, const ScreenQuery& query,
                                   std::uint64_t* rechecks) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  constexpr std::size_t kAhead = 16;  // int8 rows are short: look further ahead
  const bool usable = query.err < kInf;  // a center that is not screened rules nothing out
  std::uint64_t evals = 0;
  thread_local std::vector<std::uint32_t> survivors;
  survivors.clear();
  for (std::size_t i = lo; i < hi; ++i) {
    if (i + kAhead < hi) {
      const std::size_t a = i + kAhead;
      if (4.0f * mind[a] > limit2[owner[a]]) prefetch_rows(rows.q + a * d, d);
    }
    const std::int32_t g = owner[i];
    const float limit = limit2[g];
    if (limit == kInf) continue;
    const float m = mind[i];
    if (!(m > 0.0f)) continue;
    if (4.0f * m > limit) {
      ++evals;
      if (!usable || !screened_out(rows, query, i, d)) {
        survivors.push_back(static_cast<std::uint32_t>(i));
        continue;  // takes its part in the radius below
      }
    }
    if (m > radius[g]) {
      radius[g] = m;
      leader[g] = static_cast<std::uint32_t>(i);
    }
  }
  const std::size_t ns = survivors.size();
  measure_survivors(X, d, c, survivors.data(), ns, mind, owner, new_group, radius, leader, rows);
  *evaluations += evals;
  *rechecks += ns;
}

static void screened_update(const float* X, std::size_t d, std::size_t lo, std::size_t hi,
                            const float* c, float* mind, std::int32_t* owner, const float* limit2,
                            std::int32_t new_group, float* radius, std::uint32_t* leader,
                            std::uint64_t* evaluations, bool measure_all, const ScreenRows& rows,
                            const ScreenQuery& query, std::uint64_t* rechecks) {
  if (measure_all)
    screened_update_all(X, d, lo, hi, c, mind, owner, limit2, new_group, radius, leader,
                        evaluations, rows, query, rechecks);
  else
    screened_update_sparse(X, d, lo, hi, c, mind, owner, limit2, new_group, radius, leader,
                           evaluations, rows, query, rechecks);
}

static std::size_t screened_scan(const float* X, std::size_t d, std::uint32_t* members,
                                 std::size_t count, const float* c, float limit2, float* mind,
                                 std::uint32_t* moved, std::size_t* n_moved,
                                 std::uint32_t* scratch, float* radius, std::uint32_t* leader,
                                 std::uint64_t* evaluations, const ScreenRows& rows,
                                 const ScreenQuery& query, std::uint64_t* rechecks) {
  // Pass 1: which members might get closer by the triangle inequality.
  const std::size_t nc = members_in_reach(members, count, mind, limit2, scratch);
  // Pass 2: screen them on the int8 copy (in place: the survivors stay in index order).
  constexpr std::size_t kAhead = 16;
  auto ahead_q = [&](std::size_t i) {
    prefetch_rows(rows.q + std::size_t{members[scratch[i]]} * d, d);
  };
  for (std::size_t i = 0; query.err < std::numeric_limits<float>::infinity() && i < std::min(nc, kAhead); ++i)
    ahead_q(i);
  std::size_t ns = 0;
  const bool usable = query.err < std::numeric_limits<float>::infinity();
  if (!usable) ns = nc;  // a center that is not screened rules nothing out
  const std::int8_t* ptr[8];
  std::int32_t dots[8];
  std::size_t i = 0;
  for (; usable && i + 8 <= nc; i += 8) {
    for (std::size_t a = i + kAhead; a < std::min(nc, i + kAhead + 8); ++a) ahead_q(a);
    for (std::size_t r = 0; r < 8; ++r) ptr[r] = rows.q + std::size_t{members[scratch[i + r]]} * d;
    dot_i8_x8(ptr, query, d, dots);
    for (std::size_t r = 0; r < 8; ++r) {
      const std::uint32_t pos = scratch[i + r];  // ns <= i + r: overwrites only entries read
      if (!screened_out_dot(rows, query, members[pos], dots[r])) scratch[ns++] = pos;
    }
  }
  for (; usable && i < nc; ++i) {
    const std::uint32_t pos = scratch[i];
    if (!screened_out(rows, query, members[pos], d)) scratch[ns++] = pos;
  }
  // Pass 3: measure the survivors in float32, prefetching their full rows.
  const std::size_t nm = measure_members(X, d, members, scratch, ns, c, mind, &rows);
  *evaluations += nc;
  *rechecks += ns;
  // Pass 4: split into moved and kept, as scan_group does.
  return split_group(members, count, scratch, nm, mind, moved, n_moved, radius, leader);
}

// Builds the int8 copy of rows [lo, hi) (datapool/screen.hpp): q, scale, norm2 and err. Written
// so that the compiler vectorises it for each instruction set; the copy need not be the same on
// every one (only err must bound it, and it is measured), so the picks do not depend on it.
static void screen_quantize(const float* X, std::size_t d, std::size_t lo, std::size_t hi,
                            std::int8_t* q, ScreenMeta* meta, float* err) {
  constexpr std::uint32_t kLow = 0x2B800000u;   // 2^-40 as float bits
  constexpr std::uint32_t kHigh = 0x53800000u;  // 2^40
  constexpr double kUp = 1.0 + 1.0 / 1099511627776.0;  // 1 + 2^-40: covers the double roundings
  for (std::size_t i = lo; i < hi; ++i) {
    const float* x = X + i * d;
    std::int8_t* qi = q + i * d;
    // The largest |x_j|, on the bits (non-negative floats order like their bit patterns).
    std::uint32_t top_bits = 0;
    for (std::size_t j = 0; j < d; ++j) {
      std::uint32_t b;
      std::memcpy(&b, x + j, sizeof b);
      b &= 0x7FFFFFFFu;
      top_bits = b > top_bits ? b : top_bits;
    }
    if (top_bits < kLow || top_bits > kHigh) {  // not screened: always measured
      for (std::size_t j = 0; j < d; ++j) qi[j] = 0;
      meta[i].qsum = 0;
      meta[i].scale = 0.0f;
      meta[i].norm2 = 0.0f;
      err[i] = std::numeric_limits<float>::infinity();
      continue;
    }
    float top;
    std::memcpy(&top, &top_bits, sizeof top);
    const float s = top / 127.0f, inv = 127.0f / top;
    const double sd = s;
    std::int32_t qq = 0, qs = 0;
    for (std::size_t j = 0; j < d; ++j) {  // simple loops, so that they vectorise
      float r = x[j] * inv;
      r = std::min(std::max(r, -127.0f), 127.0f);
      const auto v = static_cast<std::int32_t>(r + std::copysign(0.5f, r));  // nearest
      qi[j] = static_cast<std::int8_t>(v);
      qq += v * v;
      qs += v;
    }
    // sd * q is exact in double (24 + 7 bits), and so is its difference with x: both lie within a
    // few binades of each other (or q == 0 and the difference is -x).
    double e2[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    std::size_t j = 0;
    for (; j + 8 <= d; j += 8)
      for (std::size_t k = 0; k < 8; ++k) {
        const double diff = sd * static_cast<double>(qi[j + k]) - static_cast<double>(x[j + k]);
        e2[k] += diff * diff;
      }
    for (; j < d; ++j) {
      const double diff = sd * static_cast<double>(qi[j]) - static_cast<double>(x[j]);
      e2[0] += diff * diff;
    }
    const double e = ((e2[0] + e2[1]) + (e2[2] + e2[3])) + ((e2[4] + e2[5]) + (e2[6] + e2[7]));
    meta[i].scale = s;
    meta[i].qsum = qs;
    meta[i].norm2 = static_cast<float>(sd * sd * static_cast<double>(qq));
    err[i] = round_up_to_float(std::sqrt(e) * kUp * kUp);
  }
}

static const Kernels kKernels = {DATAPOOL_ISA_NAME, &sqdist,         &brute_update,
                                 &pruned_update,    &scan_group,     &screened_update,
                                 &screened_update_compact,
                                 &screened_scan,    &screen_quantize, &nearest_rows};

}  // namespace DATAPOOL_ISA_NS
}  // namespace datapool
