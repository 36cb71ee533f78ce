#include "datapool/csv_write.hpp"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <system_error>

#include "datapool/thread_pool.hpp"

namespace datapool {

namespace {

constexpr std::uint32_t kPow10Int[10] = {1,      10,      100,      1000,      10000,
                                         100000, 1000000, 10000000, 100000000, 1000000000};

// 10^-60 .. 10^60 as doubles, each correctly rounded (strtod; exact for 10^0 .. 10^22).
struct Pow10 {
  double v[121];
  Pow10() {
    for (int i = -60; i <= 60; ++i) {
      v[i + 60] = std::strtod(("1e" + std::to_string(i)).c_str(), nullptr);
    }
  }
};
const Pow10 kPow10;

// x * 10^p for p in [-60, 60]: a correctly rounded power of ten times x, the product rounded
// once more: within 2 * 2^-53 of the true product, relatively.
double scale10(double x, int p) { return x * kPow10.v[p + 60]; }

char* write_digits(std::uint32_t n, int count, char* out) {
  for (int i = count - 1; i >= 0; --i) {
    out[i] = static_cast<char>('0' + n % 10);
    n /= 10;
  }
  return out + count;
}

// The exact reference: printf's "%.9g" through std::to_chars (exact, and not through the locale).
char* format_exact(double value, char* out) {
  return std::to_chars(out, out + 24, value, std::chars_format::general, 9).ptr;
}

}  // namespace

char* format_csv_float(float value, char* out) {
  if (std::isnan(value)) {
    std::memcpy(out, "nan", 3);  // Python drops a NaN's sign; to_chars would write "-nan"
    return out + 3;
  }
  const double x = static_cast<double>(value);
  if (std::isinf(value) || value == 0.0f) return format_exact(x, out);  // inf, -inf, 0, -0
  // The fast path: y = |x| * 10^(8-k) in [1e8, 1e9) in double arithmetic, within 2.3e-7 of the
  // exact product (|x| is exact as a double; see scale10). Rounding y to an integer then gives the
  // 9 correctly rounded digits unless y's fraction lies within 1e-6 of one half: those values
  // (exact ties among them) go to the exact path. A product within the error of 1e8 or 1e9 may
  // pick the neighbouring k, which rounds to the same text.
  const double a = std::fabs(x);
  std::uint64_t bits = 0;
  std::memcpy(&bits, &a, sizeof bits);
  const int e2 = static_cast<int>(bits >> 52) - 1023;  // a in [2^e2, 2^(e2+1)): a double's normal
  // floor(e2 * log10(2)): floor(log10 a) or one less.
  int k = static_cast<int>(std::floor(e2 * 0.30102999566398120));
  double y = scale10(a, 8 - k);
  if (y >= 1e9) {
    ++k;
    y = scale10(a, 8 - k);
  } else if (y < 1e8) {
    --k;
    y = scale10(a, 8 - k);
  }
  if (!(y >= 1e8 && y < 1e9)) return format_exact(x, out);
  const double whole = std::floor(y);
  const double frac = y - whole;  // exact: y < 2^30
  if (std::fabs(frac - 0.5) < 1e-6) return format_exact(x, out);
  auto n = static_cast<std::uint32_t>(whole) + (frac > 0.5 ? 1u : 0u);
  if (n == 1000000000u) {
    n = 100000000u;
    ++k;
  }
  int digits = 9;  // significant digits left once trailing zeros go
  while (n % 10 == 0) {
    n /= 10;
    --digits;
  }
  char* p = out;
  if (value < 0) *p++ = '-';
  if (k < -4 || k >= 9) {
    const std::uint32_t lead = n / kPow10Int[digits - 1];
    *p++ = static_cast<char>('0' + lead);
    if (digits > 1) {
      *p++ = '.';
      p = write_digits(n - lead * kPow10Int[digits - 1], digits - 1, p);
    }
    *p++ = 'e';
    *p++ = k < 0 ? '-' : '+';
    return write_digits(static_cast<std::uint32_t>(k < 0 ? -k : k), 2, p);  // |k| <= 45
  }
  if (k < 0) {
    *p++ = '0';
    *p++ = '.';
    for (int i = -1; i > k; --i) *p++ = '0';
    return write_digits(n, digits, p);
  }
  if (digits <= k + 1) {  // an integer: the digits, then zeros up to the units
    p = write_digits(n, digits, p);
    for (int i = digits; i <= k; ++i) *p++ = '0';
    return p;
  }
  const std::uint32_t frac_digits = static_cast<std::uint32_t>(digits - (k + 1));
  const std::uint32_t div = kPow10Int[frac_digits];
  p = write_digits(n / div, k + 1, p);
  *p++ = '.';
  return write_digits(n % div, static_cast<int>(frac_digits), p);
}

namespace {

// The most text one value can take, with its comma.
constexpr std::size_t kMaxValue = 16;
constexpr std::size_t kMaxLabel = 21;  // "-9223372036854775808" and a comma

void format_rows(const std::vector<std::string_view>& names, const float* embeddings,
                 std::size_t dim, const std::int64_t* labels, std::size_t begin, std::size_t end,
                 std::string& out) {
  std::size_t bound = 0;
  for (std::size_t i = begin; i < end; ++i) bound += names[i].size();
  bound += (end - begin) * (dim * kMaxValue + kMaxLabel + 2);
  out.resize(bound);
  char* p = out.data();
  for (std::size_t i = begin; i < end; ++i) {
    std::memcpy(p, names[i].data(), names[i].size());
    p += names[i].size();
    const float* row = embeddings + i * dim;
    for (std::size_t j = 0; j < dim; ++j) {
      *p++ = ',';
      p = format_csv_float(row[j], p);
    }
    *p++ = ',';
    p = std::to_chars(p, p + kMaxLabel, labels[i]).ptr;
    *p++ = '\n';
  }
  out.resize(static_cast<std::size_t>(p - out.data()));
}

}  // namespace

std::vector<std::string> format_pool_csv_rows(const std::vector<std::string_view>& names,
                                              const float* embeddings, std::size_t dim,
                                              const std::int64_t* labels, std::size_t threads) {
  const std::size_t rows = names.size();
  // Chunks of about 64k values: small enough to share out, large enough that handing them out
  // costs nothing.
  const std::size_t per_chunk = std::max<std::size_t>(1, 65536 / std::max<std::size_t>(1, dim));
  const std::size_t chunks = (rows + per_chunk - 1) / per_chunk;
  std::vector<std::string> parts(chunks);
  if (chunks <= 1 || threads == 1) {
    for (std::size_t c = 0; c < chunks; ++c) {
      const std::size_t begin = c * per_chunk;
      format_rows(names, embeddings, dim, labels, begin, std::min(rows, begin + per_chunk),
                  parts[c]);
    }
    return parts;
  }
  ThreadPool pool(std::min(
      threads == 0 ? std::max<std::size_t>(1, std::thread::hardware_concurrency()) : threads,
      chunks));
  pool.parallel_for(chunks, [&](std::size_t c, std::size_t) {
    const std::size_t begin = c * per_chunk;
    format_rows(names, embeddings, dim, labels, begin, std::min(rows, begin + per_chunk), parts[c]);
  });
  return parts;
}

}  // namespace datapool
