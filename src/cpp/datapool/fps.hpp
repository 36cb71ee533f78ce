// Farthest-point (k-center greedy) selection over float32 embeddings.
//
// Plain C++17: no Python here. The bindings (src/cpp/bindings.cpp) check the arrays and release
// the GIL around these calls.
//
// This is the first, brute-force version: O(N*k*d) time for k picks over N candidates of
// dimension d, plus O(N*M*d) to start from an existing pool of M rows, and O(N) extra memory
// (one float per candidate). A later version prunes with the triangle inequality; it must give
// exactly what this one gives, so this one stays as the reference.
//
// Semantics
// - Distances are Euclidean. The running state holds squared distances; what is reported is the
//   square root.
// - Every row of `selected` counts as already picked. Each candidate's min-distance starts at
//   its distance to the nearest selected row (+inf when `selected` is empty).
// - Each step picks the candidate with the largest min-distance. Ties go to the lowest index.
//   With an empty pool every candidate is at +inf, so the first pick is index 0.
// - Selection stops after n_samples picks, or when the farthest remaining candidate is closer
//   than min_distance (strictly), or when it is at distance 0: a candidate equal to something
//   already selected adds nothing, so it is never picked.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <stdexcept>
#include <vector>

namespace datapool {

// Thrown when the caller's interrupt check reports an interrupt (Ctrl-C).
struct Interrupted : std::exception {
  const char* what() const noexcept override { return "interrupted"; }
};

struct FpsResult {
  std::vector<std::int64_t> indices;   // picks, in the order they were made
  std::vector<float> min_distances;    // each pick's min-distance when it was picked (+inf first)
};

// Returns true when the computation should stop (the caller has a pending interrupt).
using InterruptCheck = std::function<bool()>;

// Squared Euclidean distance. Four independent accumulators let the compiler keep several
// lanes busy without -ffast-math; the summation order is fixed, so results are reproducible.
inline float squared_l2(const float* a, const float* b, std::size_t d) noexcept {
  float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
  std::size_t j = 0;
  for (; j + 4 <= d; j += 4) {
    const float e0 = a[j] - b[j];
    const float e1 = a[j + 1] - b[j + 1];
    const float e2 = a[j + 2] - b[j + 2];
    const float e3 = a[j + 3] - b[j + 3];
    s0 += e0 * e0;
    s1 += e1 * e1;
    s2 += e2 * e2;
    s3 += e3 * e3;
  }
  for (; j < d; ++j) {
    const float e = a[j] - b[j];
    s0 += e * e;
  }
  return (s0 + s1) + (s2 + s3);
}

// Brute-force farthest-point selection.
//   candidates: n x d, row-major.   selected: m x d, row-major (may be null when m == 0).
//   n_samples: the most picks to make.   min_distance: stop when the farthest is closer than it.
//   interrupted: polled between chunks of work; may be empty.
inline FpsResult fps_select_brute(const float* candidates, std::size_t n, std::size_t d,
                                  const float* selected, std::size_t m, std::size_t n_samples,
                                  float min_distance, const InterruptCheck& interrupted = {}) {
  if (d == 0 && n > 0) throw std::invalid_argument("embedding dimension must be at least 1");
  if (m > 0 && selected == nullptr) throw std::invalid_argument("selected is null but m > 0");

  FpsResult result;
  if (n == 0 || n_samples == 0) return result;

  constexpr float kInf = std::numeric_limits<float>::infinity();
  std::vector<float> mind(n, kInf);

  // Work between interrupt polls, in multiply-adds: about a few milliseconds.
  constexpr std::size_t kPollWork = std::size_t{1} << 24;
  std::size_t work = 0;
  auto poll = [&](std::size_t added) {
    work += added;
    if (work >= kPollWork) {
      work = 0;
      if (interrupted && interrupted()) throw Interrupted{};
    }
  };

  // Start: each candidate's distance to the nearest row of the existing pool.
  for (std::size_t i = 0; i < n; ++i) {
    const float* x = candidates + i * d;
    float best = kInf;
    for (std::size_t r = 0; r < m; ++r) {
      const float dist = squared_l2(x, selected + r * d, d);
      if (dist < best) best = dist;
    }
    mind[i] = best;
    poll(m * d);
  }

  auto argmax = [&]() {
    std::size_t at = 0;
    for (std::size_t i = 1; i < n; ++i)
      if (mind[i] > mind[at]) at = i;
    return at;
  };

  std::size_t next = argmax();
  const std::size_t limit = n_samples < n ? n_samples : n;
  result.indices.reserve(limit);
  result.min_distances.reserve(limit);
  while (result.indices.size() < limit) {
    const float far2 = mind[next];
    if (!(far2 > 0.0f)) break;  // everything left duplicates the selection
    const float far = std::sqrt(far2);
    if (far < min_distance) break;
    result.indices.push_back(static_cast<std::int64_t>(next));
    result.min_distances.push_back(far);
    if (result.indices.size() == limit) break;

    // Fused update and arg-max: one pass over the candidates per pick.
    const float* c = candidates + next * d;
    mind[next] = 0.0f;
    std::size_t at = 0;
    float at_value = -1.0f;
    for (std::size_t i = 0; i < n; ++i) {
      float v = mind[i];
      if (v > 0.0f) {
        const float dist = squared_l2(candidates + i * d, c, d);
        if (dist < v) {
          v = dist;
          mind[i] = v;
        }
      }
      if (v > at_value) {
        at_value = v;
        at = i;
      }
    }
    next = at;
    poll(n * d);
  }
  return result;
}

}  // namespace datapool
