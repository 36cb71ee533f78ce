// AVX-512F kernels. This file alone is compiled with -mavx512f (plus AVX2/FMA); it is only called
// after a run-time check that the CPU has AVX-512F.
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12's AVX-512 extract/reduce intrinsics start from _mm*_undefined_*(), which its own
// -Wmaybe-uninitialized flags (GCC bug 105593). Nothing here is uninitialised.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <immintrin.h>

#include "datapool/kernels.hpp"

#define DATAPOOL_ISA_NS avx512
#define DATAPOOL_ISA_NAME "avx512"

namespace datapool {
namespace avx512 {
static inline float sqdist(const float* a, const float* b, std::size_t d) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  std::size_t j = 0;
  for (; j + 32 <= d; j += 32) {
    const __m512 e0 = _mm512_sub_ps(_mm512_loadu_ps(a + j), _mm512_loadu_ps(b + j));
    const __m512 e1 = _mm512_sub_ps(_mm512_loadu_ps(a + j + 16), _mm512_loadu_ps(b + j + 16));
    acc0 = _mm512_fmadd_ps(e0, e0, acc0);
    acc1 = _mm512_fmadd_ps(e1, e1, acc1);
  }
  if (j < d) {
    // One masked step per 16-lane chunk covers every tail: no scalar remainder.
    for (; j < d; j += 16) {
      const std::size_t left = d - j;
      const __mmask16 mask =
          left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1u);
      const __m512 e =
          _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, a + j), _mm512_maskz_loadu_ps(mask, b + j));
      acc0 = _mm512_fmadd_ps(e, e, acc0);
    }
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}
}  // namespace avx512
}  // namespace datapool

#include "datapool/kernels_impl.hpp"

namespace datapool {
const Kernels& avx512_kernels() { return avx512::kKernels; }
}  // namespace datapool
