// The int8 screen: a reduced-precision copy of the candidates that farthest-point selection scans
// first, so that most rows are ruled out after reading d bytes instead of 4d. Only rows whose
// bound cannot rule out a new minimum are measured again in float32 from the full rows, with the
// same kernel as before, so the picks and their min-distances are bit for bit those of the
// float32 algorithm. Plain C++17, no Python.
//
// The copy. Row x (float32, d values) is stored as q (int8, |q_j| <= 127) and a scale s (float32):
// s = max_j |x_j| / 127, q_j = round(x_j / s). x~ = s q is what the copy represents (exactly, as a
// real vector). Per row the copy also keeps
//   norm2 = |x~|^2, rounded to float (from the exact integer sum q.q and s^2, in double),
//   err   = an upper bound on |x~ - x| (Euclidean), computed in double and rounded up,
//   thr   = an upper bound on sqrt((m + eta) / (1 - gamma)) + err, where m is the row's current
//           float32 min-distance (squared); updated whenever m changes.
// A row whose largest |x_j| is outside [2^-40, 2^40] is not screened (err = thr = +inf, s = 0,
// norm2 = 0): every float below then stays in the normal range and cannot overflow.
//
// The bound. For a candidate x and a new center c (itself a candidate row, with its own copy c~):
//   (1) real arithmetic: the triangle inequality gives |x - c| >= |x~ - c~| - err_x - err_c.
//   (2) the float32 kernels (every instruction set, any summation order, with or without FMA)
//       compute D32 = fl(sum_j (x_j - c_j)^2) with D32 >= |x - c|^2 (1 - gamma) - eta, where
//       gamma = (2d + 4) u / (1 - (2d + 4) u), u = 2^-24: each term is the rounded difference
//       squared (at most 2 roundings) and added with at most d roundings, all of non-negative
//       values; eta = 2^-100 covers the absolute error of underflow (at most 2d + 4 operations
//       of 2^-150 each).
//   (3) so if |x~ - c~| >= thr_x + err_c then |x - c| >= sqrt((m + eta) / (1 - gamma)), hence
//       D32 >= m: the float32 step would not change m (it updates only when D32 < m). The row is
//       skipped.
//   (4) |x~ - c~|^2 = norm2_x + norm2_c - 2 s_x s_c (q_x . q_c): the integer dot product is exact
//       (int32; |q_x . q_c| <= 127^2 d < 2^24 for d <= kMaxDim, so its conversion to float is
//       exact too). Evaluated in float32 as lhs = (norm2_x + norm2_c) - 2 ((s_x s_c) Q) and
//       compared with rhs = (thr_x + err_c)^2, every operation has relative error <= u and no
//       operand is subnormal, so |lhs - |x~ - c~|^2| <= 12 u (norm2_x + norm2_c) (this uses
//       2 |x~ . c~| <= |x~|^2 + |c~|^2 and the roundings of the stored norms) and rhs is within
//       3 u of (thr_x + err_c)^2. The skip test
//           lhs >= rhs + 2^-16 (norm2_x + norm2_c + rhs)
//       has a margin of 2^-16 = 4096 u, far more than these 15 u, and implies (3).
// The margin costs nothing measurable: for unit vectors the quantisation terms err are ~1e-2,
// against a margin ~1e-5 of the squared distance.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>

namespace datapool {

// The largest dimension the screen supports (127^2 d must stay below 2^24); wider embeddings run
// the float32 path.
constexpr std::size_t kScreenMaxDim = 1040;
// The skip test's relative margin (see above).
constexpr float kScreenMargin = 1.0f / 65536.0f;

// What the screen reads of a row besides q, side by side (one stream, 16 bytes).
struct ScreenMeta {
  float scale = 0.0f, norm2 = 0.0f;
  float thr = 0.0f;        // kept in step with the min-distance by the kernels
  std::int32_t qsum = 0;   // sum_j q_j (the VNNI kernels' correction)
};

// The int8 copy of the candidates (q: n x d), one meta and one err per row.
struct ScreenRows {
  const std::int8_t* q = nullptr;
  ScreenMeta* meta = nullptr;
  const float* err = nullptr;  // read only when a min-distance changes
};

// The new center's copy, widened to int16 for the AVX2 kernels, and as q + 128 (uint8) for the
// VNNI ones (which multiply unsigned by signed bytes and subtract 128 * qsum of the row).
struct ScreenQuery {
  const std::int16_t* q = nullptr;
  const std::uint8_t* qu = nullptr;
  float scale = 0.0f, norm2 = 0.0f, err = 0.0f;
};

// Rounds a non-negative double up to a float (never below v).
inline float round_up_to_float(double v) {
  float f = static_cast<float>(v);
  if (static_cast<double>(f) < v) f = std::nextafter(f, std::numeric_limits<float>::infinity());
  return f;
}

// thr for a row at squared min-distance m whose copy is within err of it (see (3) above).
inline float screen_threshold(float m, float err, std::size_t d) {
  constexpr double kU = 1.0 / 16777216.0;  // 2^-24
  constexpr double kEta = 7.888609052210118e-31;  // 2^-100
  constexpr double kUp = 1.0 + 1.0 / 1099511627776.0;  // 1 + 2^-40: covers the double roundings
  if (!(err < std::numeric_limits<float>::infinity()) || std::isinf(m))
    return std::numeric_limits<float>::infinity();
  const double n = static_cast<double>(2 * d + 4) * kU;
  const double gamma = n / (1.0 - n);
  const double t = std::sqrt((static_cast<double>(m) + kEta) / (1.0 - gamma)) * kUp;
  return round_up_to_float((t + static_cast<double>(err)) * kUp);
}

// The copy is built by Kernels::screen_quantize (kernels_impl.hpp), once per instruction set.

}  // namespace datapool
