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
}  // namespace scalar
}  // namespace datapool

#include "datapool/kernels_impl.hpp"

namespace datapool {
const Kernels& scalar_kernels() { return scalar::kKernels; }
}  // namespace datapool
