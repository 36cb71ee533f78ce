// The AVX2 int8 dot products of the int8 screen (datapool/screen.hpp). Included inside a kernel
// namespace by kernels_avx2.cpp and, for its AVX-512F set without VNNI, kernels_avx512_impl.hpp:
// both are compiled with -mavx2, and both then give the same integer sums.
#pragma once
// Exact int8 x int16 dot product (|a| <= 127, |b| <= 127: no overflow for d <= kScreenMaxDim):
// widen 16 bytes to int16, multiply-add pairs into int32.
constexpr std::int32_t kDotBias = 0;  // dot_i8 gives q . c itself

static inline std::int32_t dot_i8(const std::int8_t* a, const ScreenQuery& query, std::size_t d) {
  const std::int16_t* b = query.q;
  __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
  std::size_t j = 0;
  for (; j + 32 <= d; j += 32) {
    const __m256i a0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + j)));
    const __m256i a1 =
        _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + j + 16)));
    acc0 = _mm256_add_epi32(
        acc0, _mm256_madd_epi16(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + j))));
    acc1 = _mm256_add_epi32(
        acc1,
        _mm256_madd_epi16(a1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + j + 16))));
  }
  for (; j + 16 <= d; j += 16) {
    const __m256i a0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + j)));
    acc0 = _mm256_add_epi32(
        acc0, _mm256_madd_epi16(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + j))));
  }
  const __m256i acc = _mm256_add_epi32(acc0, acc1);
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  std::int32_t out = _mm_cvtsi128_si32(s);
  for (; j < d; ++j) out += static_cast<std::int32_t>(a[j]) * b[j];
  return out;
}
// The same for 8 rows at once: 8 accumulators, reduced together by a transposing horizontal add.
static inline void dot_i8_x8(const std::int8_t* const* rows, const ScreenQuery& query,
                             std::size_t d, std::int32_t* out) {
  const std::int16_t* b = query.q;
  __m256i acc[8];
  for (auto& a : acc) a = _mm256_setzero_si256();
  std::size_t j = 0;
  for (; j + 16 <= d; j += 16) {
    const __m256i bq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + j));
    for (int r = 0; r < 8; ++r) {
      const __m256i a =
          _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[r] + j)));
      acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(a, bq));
    }
  }
  const __m256i s01 = _mm256_hadd_epi32(acc[0], acc[1]), s23 = _mm256_hadd_epi32(acc[2], acc[3]);
  const __m256i s45 = _mm256_hadd_epi32(acc[4], acc[5]), s67 = _mm256_hadd_epi32(acc[6], acc[7]);
  const __m256i t0 = _mm256_hadd_epi32(s01, s23), t1 = _mm256_hadd_epi32(s45, s67);
  const __m256i sum = _mm256_add_epi32(_mm256_permute2x128_si256(t0, t1, 0x20),
                                       _mm256_permute2x128_si256(t0, t1, 0x31));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), sum);
  for (; j < d; ++j)
    for (int r = 0; r < 8; ++r) out[r] += static_cast<std::int32_t>(rows[r][j]) * b[j];
}
