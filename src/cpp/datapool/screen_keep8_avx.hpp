// The int8 screen's skip test for 8 rows at once, in AVX (datapool/screen.hpp). Included inside
// a kernel namespace by kernels_avx2.cpp and kernels_avx512_impl.hpp.
#pragma once
// The skip test of datapool/screen.hpp (screened_out_dot in kernels_impl.hpp) for rows
// i0..i0+7 at once; returns a bit per row that it cannot rule out. The 8 metas (16 bytes each)
// are transposed into one vector per field. The same operations as the scalar test, so the same
// bound (FMA contraction, where the compiler makes it, only makes it tighter).
#define DATAPOOL_HAS_KEEP8 1
static inline unsigned screen_keep8(const ScreenRows& rows, const ScreenQuery& query,
                                    std::size_t i0, const std::int32_t* raw) {
  const float* m = reinterpret_cast<const float*>(rows.meta + i0);
  auto pair = [&](int a) {
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(m + 4 * a)),
                                _mm_loadu_ps(m + 4 * (a + 4)), 1);
  };
  const __m256 r0 = pair(0), r1 = pair(1), r2 = pair(2), r3 = pair(3);
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  const __m256 scale = _mm256_shuffle_ps(t0, t2, 0x44), norm2 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 thr = _mm256_shuffle_ps(t1, t3, 0x44);
  const __m256i qsum = _mm256_castps_si256(_mm256_shuffle_ps(t1, t3, 0xEE));
  __m256i dot = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(raw));
  if (kDotBias == 128) dot = _mm256_sub_epi32(dot, _mm256_slli_epi32(qsum, 7));
  const __m256 base = _mm256_add_ps(norm2, _mm256_set1_ps(query.norm2));
  const __m256 p =
      _mm256_mul_ps(_mm256_mul_ps(scale, _mm256_set1_ps(query.scale)), _mm256_cvtepi32_ps(dot));
  const __m256 lhs = _mm256_sub_ps(base, _mm256_add_ps(p, p));
  const __m256 r = _mm256_add_ps(thr, _mm256_set1_ps(query.err));
  const __m256 rhs = _mm256_mul_ps(r, r);
  const __m256 bound = _mm256_add_ps(
      rhs, _mm256_mul_ps(_mm256_set1_ps(kScreenMargin), _mm256_add_ps(base, rhs)));
  return ~static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(lhs, bound, _CMP_GE_OQ))) & 0xFFu;
}
