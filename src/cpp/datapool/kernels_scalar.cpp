// Portable kernels: plain C++ that the compiler may vectorise for the baseline target (SSE2).
#include "datapool/kernels.hpp"

#define DATAPOOL_ISA_NS scalar
#define DATAPOOL_ISA_NAME "scalar"

namespace datapool {
namespace scalar {
// Eight independent accumulators: a fixed summation order (reproducible) that still keeps
// several lanes busy without -ffast-math.
static inline float sqdist(const float* a, const float* b, std::size_t d) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::size_t j = 0;
  for (; j + 8 <= d; j += 8)
    for (int k = 0; k < 8; ++k) {
      const float e = a[j + k] - b[j + k];
      s[k] += e * e;
    }
  for (; j < d; ++j) {
    const float e = a[j] - b[j];
    s[0] += e * e;
  }
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}
// Exact int8 x int16 dot product (|a| <= 127, |b| <= 127: no overflow for d <= kScreenMaxDim).
constexpr std::int32_t kDotBias = 0;  // dot_i8 gives q . c itself

static inline std::int32_t dot_i8(const std::int8_t* a, const ScreenQuery& query, std::size_t d) {
  const std::int16_t* b = query.q;
  std::int32_t s = 0;
  for (std::size_t j = 0; j < d; ++j) s += static_cast<std::int32_t>(a[j]) * b[j];
  return s;
}
// The same for 8 rows at once (the vector kernels reduce the 8 sums together).
static inline void dot_i8_x8(const std::int8_t* const* rows, const ScreenQuery& query,
                             std::size_t d, std::int32_t* out) {
  for (int r = 0; r < 8; ++r) out[r] = dot_i8(rows[r], query, d);
}
}  // namespace scalar
}  // namespace datapool

#include "datapool/kernels_impl.hpp"

namespace datapool {
const Kernels& scalar_kernels() { return scalar::kKernels; }
}  // namespace datapool
