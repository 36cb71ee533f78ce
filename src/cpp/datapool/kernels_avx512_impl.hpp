// The AVX-512 kernels, included by kernels_avx512.cpp (AVX-512F) and kernels_avx512vnni.cpp
// (AVX-512F + BW + VNNI, for the int8 screen's dot products), which define DATAPOOL_ISA_NS,
// DATAPOOL_ISA_NAME and DATAPOOL_VNNI first. The float32 code is the same in both, so both give
// the same picks and distances.
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12's AVX-512 extract/reduce intrinsics start from _mm*_undefined_*(), which its own
// -Wmaybe-uninitialized flags (GCC bug 105593). Nothing here is uninitialised.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <immintrin.h>

#include "datapool/kernels.hpp"

namespace datapool {
namespace DATAPOOL_ISA_NS {
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
#if !DATAPOOL_VNNI
// AVX-512F has no byte widening, and Zen 4 splits 512-bit operations anyway: the AVX2 code.
#include "datapool/screen_dot_avx2.hpp"
#else
// VNNI: vpdpbusd multiplies 64 unsigned bytes (the query, c + 128) by 64 signed bytes (the row)
// and adds each 4 products into an int32: sum_j (c_j + 128) q_j, exact (|.| < 2^31 for
// d <= kScreenMaxDim); screened_out_dot subtracts kDotBias * sum_j q_j. Masked loads cover tails.
constexpr std::int32_t kDotBias = 128;

static inline __mmask64 tail_mask(std::size_t left) {
  return left >= 64 ? ~__mmask64{0} : ((__mmask64{1} << left) - 1);
}

static inline std::int32_t dot_i8(const std::int8_t* a, const ScreenQuery& query, std::size_t d) {
  __m512i acc = _mm512_setzero_si512();
  for (std::size_t j = 0; j < d; j += 64) {
    const __mmask64 m = tail_mask(d - j);
    acc = _mm512_dpbusd_epi32(acc, _mm512_maskz_loadu_epi8(m, query.qu + j),
                              _mm512_maskz_loadu_epi8(m, a + j));
  }
  return _mm512_reduce_add_epi32(acc);
}

// The same for 8 rows at once; the 8 sums are reduced together by a transposing horizontal add.
static inline void dot_i8_x8(const std::int8_t* const* rows, const ScreenQuery& query,
                             std::size_t d, std::int32_t* out) {
  __m512i acc[8];
  for (auto& a : acc) a = _mm512_setzero_si512();
  for (std::size_t j = 0; j < d; j += 64) {
    const __mmask64 m = tail_mask(d - j);
    const __m512i c = _mm512_maskz_loadu_epi8(m, query.qu + j);
    for (int r = 0; r < 8; ++r)
      acc[r] = _mm512_dpbusd_epi32(acc[r], c, _mm512_maskz_loadu_epi8(m, rows[r] + j));
  }
  __m256i h[8];
  for (int r = 0; r < 8; ++r)
    h[r] = _mm256_add_epi32(_mm512_castsi512_si256(acc[r]), _mm512_extracti64x4_epi64(acc[r], 1));
  const __m256i s01 = _mm256_hadd_epi32(h[0], h[1]), s23 = _mm256_hadd_epi32(h[2], h[3]);
  const __m256i s45 = _mm256_hadd_epi32(h[4], h[5]), s67 = _mm256_hadd_epi32(h[6], h[7]);
  const __m256i t0 = _mm256_hadd_epi32(s01, s23), t1 = _mm256_hadd_epi32(s45, s67);
  const __m256i sum = _mm256_add_epi32(_mm256_permute2x128_si256(t0, t1, 0x20),
                                       _mm256_permute2x128_si256(t0, t1, 0x31));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), sum);
}
#endif
#include "datapool/screen_keep8_avx.hpp"
}  // namespace DATAPOOL_ISA_NS
}  // namespace datapool

#include "datapool/kernels_impl.hpp"
