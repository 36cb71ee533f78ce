// Greedy selection by combined strategies (docs/selection.md, "Combined strategies"). Plain
// C++17, no Python.
//
// Each step picks, among the eligible candidates, the one with the largest
//   score(x) = s * log(mind(x)) + w(x) + sum_b s_b * P_b[x] . g_b(counts_b)
// with mind the distance to the nearest selected sample (the pool included), w a fixed term per
// candidate (the sum of the fixed strategies' strength * log(objective)), and for each balance
// term g_b,k = log((t_k + eps) / (share_k + eps)), share = counts / sum(counts), updated after
// every pick. Ties go to the lowest index. With nothing selected yet the diversity term is 0.
// Eligible: mask[x], w(x) > -inf, mind(x) >= min_distance and mind(x) > 0.
//
// Exact pruning, as fps.cpp: each candidate belongs to the group of its nearest selected point;
// a new center c at min-distance R measures only members x of groups in reach with
// 2 mind(x) > d(c, c_j) (free test 2 r_j <= R, Elkan's test d(c, c_j) >= 2 r_j). For the
// arg-max each group keeps ub_j = max over members of s * log(mind) + w (exact, refreshed when a
// scan touches the group); without balance terms the pick is the best group's leader, O(groups);
// with them, a group is evaluated member by member only while ub_j + B can still win, where B
// bounds every balance term (a row of P sums to 1 or 0, so P . g <= max(0, max_k g_k)).
// Requires s > 0 (the caller handles other strengths without distances to prune).
//
// The int8 screen (CombinedOptions::screen, as FpsOptions::screen): the rows a pass would measure
// are first bounded on the int8 copy, and the passes that screen every row stream only the rows
// that are not dormant. Only a pick's min-distance decides which rows can get closer, whatever
// rule chose it, so the screen is exact here too: the same picks, scores and min-distances.
// After a pass only the groups that lost a leader (of the radius, the score, or a class bucket)
// are tallied again: the rows that stay keep their values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "datapool/fps.hpp"

namespace datapool {

constexpr double kBalanceEps = 1e-3;

struct BalanceInput {
  const float* P = nullptr;    // n x C row-major; each row sums to 1, or is all 0
  std::size_t C = 0;
  std::vector<double> counts;  // the pool's class counts
  std::vector<double> target;  // target share per class
  double strength = 1.0;
};

struct CombinedOptions {
  std::size_t n_samples = 0;
  double diversity = 1.0;  // s > 0
  float min_distance = 0.0f;
  std::size_t threads = 1;  // 0: every hardware thread
  const Kernels* kernels = nullptr;
  Screen screen = Screen::Auto;  // the int8 screen, as in fps_select
  std::size_t* picks_done = nullptr;  // the picks so far, as FpsOptions::picks_done
};

struct CombinedResult {
  std::vector<std::int64_t> indices;
  std::vector<float> min_distances;  // +inf when nothing was selected before the pick
  std::vector<double> scores;        // each pick's score (log of the product)
  std::vector<double> balance_terms; // picks x balances, row-major: s_b * P_b[x] . g_b
  std::string stop_reason;
  std::uint64_t evaluations = 0;
  std::uint64_t rechecks = 0;  // screened rows measured again in float32
  std::string kernels;
  std::string screen = "off";  // "int8" when the screen ran
};

// X: n x d. S: m x d (may be null when m == 0). weight, mask: n each (mask: nonzero = kept).
CombinedResult combined_select(const float* X, std::size_t n, std::size_t d, const float* S,
                               std::size_t m, const double* weight, const std::uint8_t* mask,
                               const std::vector<BalanceInput>& balances,
                               const CombinedOptions& options,
                               const InterruptCheck& interrupted = {});

}  // namespace datapool
