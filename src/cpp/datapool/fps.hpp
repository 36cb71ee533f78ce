// Farthest-point (k-center greedy) selection over float32 embeddings. Plain C++17, no Python.
//
// Semantics (both algorithms give them; the pruned one is exact, not approximate):
// - Distances are Euclidean. The state holds squared distances; results report the square root.
// - Every row of `selected` counts as already picked: a candidate's min-distance starts at its
//   distance to the nearest selected row (+inf when there is none).
// - Each step picks the candidate with the largest min-distance; ties go to the lowest index.
//   With an empty pool every candidate is at +inf, so the first pick is index 0.
// - Selection stops after n_samples picks, when the farthest remaining candidate is closer than
//   min_distance (strictly), or when it is at distance 0 (it duplicates the selection).
//
// Algorithms
// - Brute: one fused pass over all N candidates per pick (update + arg-max), multithreaded,
//   SIMD. O(N*k*d) time, bound by memory bandwidth.
// - Pruned: each candidate belongs to the group of its nearest selected point; groups keep their
//   members sorted by min-distance, descending. When a new center c arrives at min-distance R,
//     * a group whose radius r (its largest min-distance) has 2r <= R is skipped without any
//       arithmetic: c is at least R from every selected point, so it is out of reach;
//     * otherwise a candidate group j is skipped when d(c, c_j) >= 2 r_j (Elkan's test), and
//       inside a group that cannot be skipped the scan stops at the first member x with
//       2 mind(x) <= d(c, c_j), because the members are sorted;
//     * members whose distance to c drops below their min-distance move to c's new group.
//   The next center is the leader of the group with the largest radius, so finding it costs
//   O(groups), not O(N). Memory: O(N) (min-distances and the member lists) plus O(k).
//   Each pick is processed in one of two ways. While many groups are in reach (early picks, or
//   data without structure), one pass over all candidates in index order streams through memory
//   and measures only the rows of groups in reach; when most of those rows would be measured
//   anyway it measures them all, which costs what brute force costs. Once a pass measures fewer
//   than N/64 rows, the groups get member lists (by counting sort) and each pick scans only the
//   members of the groups in reach; if those grow past N/4 it goes back to streaming.
// - Auto: pruned. (Data with no structure costs about what brute force costs, plus the tests.)
//
// The int8 screen (FpsOptions::screen; pruned only, d <= kScreenMaxDim): the
// pruned algorithm keeps an int8 copy of the candidates with a per-row scale and, for every row
// that the triangle tests leave to measure, first bounds its distance to the new center from the
// copy (datapool/screen.hpp derives the bound). Only rows whose bound cannot rule out a new
// minimum are measured in float32, with the same kernel, so the picks and min-distances are bit
// for bit those without the screen, reading about d + 16 bytes per row instead of 4d. The pass
// that screens every row streams only the rows that are not dormant (4 m <= R^2 with a margin:
// they cannot get closer), from a compacted copy. Memory: n * (d + 20) bytes more, and up to as
// much again for that copy. Brute force never screens: it is the float32 reference.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "datapool/kernels.hpp"

namespace datapool {

// Thrown when the caller's interrupt check reports an interrupt (Ctrl-C).
struct Interrupted : std::exception {
  const char* what() const noexcept override { return "interrupted"; }
};

// Returns true when the computation should stop. Called from the calling thread only, between
// chunks of work, at most about every 50 ms.
using InterruptCheck = std::function<bool()>;

enum class Algorithm { Auto, Brute, Pruned };
// The int8 screen: Auto uses it where it pays (candidates of 16 MiB or more, 8 picks or more:
// smaller ones stay in cache, where reading fewer bytes saves little), On wherever it can run.
enum class Screen { Auto, On, Off };

struct FpsOptions {
  std::size_t n_samples = 0;
  float min_distance = 0.0f;
  std::size_t threads = 1;  // 0: every hardware thread
  Algorithm algorithm = Algorithm::Auto;
  const Kernels* kernels = nullptr;  // nullptr: the best this CPU supports
  Screen screen = Screen::Auto;      // pruned: screen rows on an int8 copy first
  // If set: the picks so far, kept up to date on the calling thread, where the interrupt check
  // runs (a caller's progress reads it there).
  std::size_t* picks_done = nullptr;
};

struct FpsResult {
  std::vector<std::int64_t> indices;  // picks, in order
  std::vector<float> min_distances;   // each pick's min-distance when picked (+inf first)
  std::uint64_t evaluations = 0;      // candidate-to-new-center distances computed
  std::uint64_t center_evaluations = 0;  // center-to-center distances (pruned only)
  std::uint64_t rechecks = 0;  // screened rows measured again in float32 (screen only)
  std::string algorithm;              // what ran: "brute" or "pruned"
  std::string kernels;                // the kernel set used
  std::string screen = "off";         // "int8" when the screen ran
};

// candidates: n x d row-major. selected: m x d row-major (may be null when m == 0).
FpsResult fps_select(const float* candidates, std::size_t n, std::size_t d, const float* selected,
                     std::size_t m, const FpsOptions& options, const InterruptCheck& interrupted = {});

}  // namespace datapool
