// Distance kernels for farthest-point selection, compiled once per instruction set (scalar,
// AVX2+FMA, AVX-512F) and chosen at run time from what the CPU supports, so that one wheel runs
// on any x86-64 and uses the widest vectors it finds. No -march=native anywhere.
#pragma once

#include <cstddef>
#include <cstdint>

#include "datapool/screen.hpp"

namespace datapool {

struct Kernels {
  const char* name;

  // Squared Euclidean distance between two d-vectors.
  float (*sqdist)(const float* a, const float* b, std::size_t d);

  // Brute-force step over rows [lo, hi) of X (row-major, n x d): for each row with mind > 0,
  // mind = min(mind, |x - c|^2). Returns the arg-max of the updated mind over the range (lowest
  // index on ties) through best_value/best_index, and adds the number of distances computed to
  // *evaluations.
  void (*brute_update)(const float* X, std::size_t d, std::size_t lo, std::size_t hi,
                       const float* c, float* mind, float* best_value, std::size_t* best_index,
                       std::uint64_t* evaluations);

  // Pruned step over rows [lo, hi) in index order. Each row belongs to group owner[i], whose
  // limit2[g] is the squared lower bound on the new center's distance to that group's center, or
  // +inf when the whole group is out of reach (then its rows are not touched). A row is measured
  // only when 4 * mind > limit2[g] (the triangle inequality rules the others out); when it gets
  // closer it takes the new min-distance and joins new_group. For every group touched, radius[g]
  // and leader[g] (initialised by the caller to -1) receive the largest remaining min-distance in
  // the range and its lowest index. With measure_all, every row of an active group is measured
  // (no per-row test and no look-ahead prefetch): faster when most rows would be measured anyway,
  // and exact all the same, since a measured row only changes when it gets closer.
  void (*pruned_update)(const float* X, std::size_t d, std::size_t lo, std::size_t hi,
                        const float* c, float* mind, std::int32_t* owner, const float* limit2,
                        std::int32_t new_group, float* radius, std::uint32_t* leader,
                        std::uint64_t* evaluations, bool measure_all);

  // Pruned scan of one group whose members (count candidate indices, ascending) are at their
  // min-distance from the group's center. Members with 4 * mind <= limit2 cannot get closer to c
  // and are not measured. The others are measured in a second pass, in index order with
  // prefetch; those whose distance to c drops below their min-distance take it and are written
  // to moved[] (ascending). The members that stay are compacted in place, those at distance 0
  // dropped. Returns how many stay; *radius and *leader are the largest remaining min-distance
  // (-1 when none) and its lowest index. scratch holds count entries.
  std::size_t (*scan_group)(const float* X, std::size_t d, std::uint32_t* members,
                            std::size_t count, const float* c, float limit2, float* mind,
                            std::uint32_t* moved, std::size_t* n_moved, std::uint32_t* scratch,
                            float* radius, std::uint32_t* leader, std::uint64_t* evaluations);

  // pruned_update and scan_group with the int8 screen (datapool/screen.hpp): a row that would be
  // measured is first bounded from its int8 copy, and measured in float32 (with sqdist, so the
  // same bits) only when the bound cannot rule out a new minimum; *rechecks counts those.
  // *evaluations counts the rows screened. rows.thr is updated with every changed mind. With
  // measure_all, every row is screened and only the survivors take their part in radius and
  // leader (the rows ruled out are not read again), and *evaluations is left alone: the caller
  // recomputes the groups whose leader moved and counts the evaluations (Selector::regroup).
  void (*screened_update)(const float* X, std::size_t d, std::size_t lo, std::size_t hi,
                          const float* c, float* mind, std::int32_t* owner, const float* limit2,
                          std::int32_t new_group, float* radius, std::uint32_t* leader,
                          std::uint64_t* evaluations, bool measure_all, const ScreenRows& rows,
                          const ScreenQuery& query, std::uint64_t* rechecks);
  // The measure_all screened pass over a compacted copy of some rows (positions [lo, hi) of
  // `compact`, holding rows row_of[lo..hi), ascending): the rows left out are rows that the
  // caller proved cannot get closer. Their thresholds are kept in step in both copies.
  void (*screened_update_compact)(const float* X, std::size_t d, std::size_t lo, std::size_t hi,
                                  const std::uint32_t* row_of, const float* c, float* mind,
                                  std::int32_t* owner, const float* limit2, std::int32_t new_group,
                                  float* radius, std::uint32_t* leader, const ScreenRows& rows,
                                  const ScreenRows& compact, const ScreenQuery& query,
                                  std::uint64_t* rechecks);
  std::size_t (*screened_scan)(const float* X, std::size_t d, std::uint32_t* members,
                               std::size_t count, const float* c, float limit2, float* mind,
                               std::uint32_t* moved, std::size_t* n_moved, std::uint32_t* scratch,
                               float* radius, std::uint32_t* leader, std::uint64_t* evaluations,
                               const ScreenRows& rows, const ScreenQuery& query,
                               std::uint64_t* rechecks);

  // Builds the int8 copy of rows [lo, hi) of X for the screen: q (n x d), meta (but thr), err.
  void (*screen_quantize)(const float* X, std::size_t d, std::size_t lo, std::size_t hi,
                          std::int8_t* q, ScreenMeta* meta, float* err);

  // For candidate rows [lo, hi) of X: the squared distance to the nearest row of S (m x d),
  // blocked so that a block of candidates stays in L1 while S streams through.
  void (*nearest_rows)(const float* X, std::size_t d, std::size_t lo, std::size_t hi,
                       const float* S, std::size_t m, float* mind);
};

// The best kernels this CPU supports.
const Kernels& best_kernels();
// Kernels by name ("scalar", "avx2", "avx512", "avx512vnni": avx512 with VNNI dot products for the
// int8 screen, the same float32 code); nullptr when unknown or unsupported here.
const Kernels* kernels_by_name(const char* name);
// Names of the kernel sets compiled in and supported by this CPU, best last, comma-separated.
const char* supported_kernels();

}  // namespace datapool
