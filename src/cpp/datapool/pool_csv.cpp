#include "datapool/pool_csv.hpp"

#include <algorithm>
#include <cerrno>
#include <cfloat>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

#include "datapool/poller.hpp"
#include "datapool/thread_pool.hpp"

#if defined(_WIN32)
#include <fstream>
#include <sstream>
#else
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

namespace datapool {

CsvError::CsvError(std::size_t line_, std::string column_, const std::string& detail)
    : std::runtime_error("line " + std::to_string(line_) +
                         (column_.empty() ? std::string() : ", column " + column_) + ": " + detail),
      line(line_),
      column(std::move(column_)) {}

namespace {

constexpr std::size_t kNoColumn = std::numeric_limits<std::size_t>::max();

inline bool is_eol(char c) { return c == '\n' || c == '\r'; }

// Skips the line end at p ("\r\n", "\r" or "\n"); p < end and is_eol(*p).
inline const char* skip_eol(const char* p, const char* end) {
  if (*p == '\r' && p + 1 < end && p[1] == '\n') return p + 2;
  return p + 1;
}

enum class End { Comma, Eol, Eof };

// One field with csv.reader(strict=True) semantics, starting at p. Appends its text to *out when
// out is non-null and leaves p past the ',' or line end that closed it. Returns nullptr, or a
// message for bad quoting with p at the offending byte (at the opening quote when it is never
// closed).
const char* read_field(const char*& p, const char* end, std::string* out, End& how) {
  if (p < end && *p == '"') {
    const char* const open = p;
    ++p;
    for (;;) {
      const auto* q = static_cast<const char*>(std::memchr(p, '"', static_cast<std::size_t>(end - p)));
      if (q == nullptr) {
        p = open;  // report the line where the quote opened
        return "bad quoting: the file ends inside a quoted field";
      }
      if (out) out->append(p, q);
      p = q + 1;
      if (p == end) {
        how = End::Eof;
        return nullptr;
      }
      if (*p == '"') {  // "" stands for one quote
        if (out) out->push_back('"');
        ++p;
        continue;
      }
      if (*p == ',') {
        ++p;
        how = End::Comma;
        return nullptr;
      }
      if (is_eol(*p)) {
        p = skip_eol(p, end);
        how = End::Eol;
        return nullptr;
      }
      return "bad quoting: ',' or a line end expected after a closing '\"'";
    }
  }
  const char* q = p;
  while (q < end && *q != ',' && !is_eol(*q)) ++q;
  if (out) out->append(p, q);
  if (q == end) {
    p = end;
    how = End::Eof;
  } else if (*q == ',') {
    p = q + 1;
    how = End::Comma;
  } else {
    p = skip_eol(q, end);
    how = End::Eol;
  }
  return nullptr;
}

// Python's repr() of a short value, for messages: quoted, control and non-ASCII bytes escaped,
// long values cut.
std::string quote_value(std::string_view v) {
  constexpr std::size_t kMax = 40;
  const bool cut = v.size() > kMax;
  if (cut) v = v.substr(0, kMax);
  const bool dq = v.find('\'') != std::string_view::npos && v.find('"') == std::string_view::npos;
  const char q = dq ? '"' : '\'';
  std::string s(1, q);
  static const char* hex = "0123456789abcdef";
  for (char ch : v) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '\n') {
      s += "\\n";
    } else if (c == '\r') {
      s += "\\r";
    } else if (c == '\t') {
      s += "\\t";
    } else if (c == '\\' || c == static_cast<unsigned char>(q)) {
      s += '\\';
      s += ch;
    } else if (c < 0x20 || c >= 0x7f) {
      s += "\\x";
      s += hex[c >> 4];
      s += hex[c & 15];
    } else {
      s += ch;
    }
  }
  s += q;
  if (cut) s += "...";
  return s;
}

// True for well-formed UTF-8 (Unicode Table 3-7: no overlongs, no surrogates, <= U+10FFFF), the
// sequences Python's strict utf-8 codec accepts.
bool valid_utf8(const unsigned char* s, std::size_t n) {
  std::size_t i = 0;
  while (i < n) {
    const unsigned c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (n - i < len) return false;
    if (s[i + 1] < lo || s[i + 1] > hi) return false;
    for (std::size_t k = 2; k < len; ++k) {
      if (s[i + k] < 0x80 || s[i + k] > 0xBF) return false;
    }
    i += len;
  }
  return true;
}

// For a decimal that from_chars found out of float range: true when its magnitude is below 1
// (an underflow to zero), false when it is at least 1 (an overflow).
bool magnitude_below_one(const char* b, const char* e) {
  if (b < e && *b == '-') ++b;
  long long power = 0;  // power of ten of the first non-zero digit
  bool found = false;
  long long int_digits = 0;
  const char* p = b;
  for (; p < e && *p >= '0' && *p <= '9'; ++p) {
    if (!found && *p != '0') {
      found = true;
      power = -int_digits;  // fixed up below with the integer digit count
    }
    ++int_digits;
  }
  if (found) power += int_digits - 1;
  if (p < e && *p == '.') {
    ++p;
    for (long long k = 1; p < e && *p >= '0' && *p <= '9'; ++p, ++k) {
      if (!found && *p != '0') {
        found = true;
        power = -k;
      }
    }
  }
  if (!found) return true;  // zero
  long long exp = 0;
  if (p < e && (*p == 'e' || *p == 'E')) {
    ++p;
    bool neg = false;
    if (p < e && (*p == '+' || *p == '-')) neg = *p++ == '-';
    for (; p < e && *p >= '0' && *p <= '9'; ++p) {
      if (exp < 1000000000) exp = exp * 10 + (*p - '0');
    }
    if (neg) exp = -exp;
  }
  return power + exp < 0;
}

// Eight ASCII digits at s as their value, or false (the SWAR test and reduction of fast_float).
inline bool eight_digits(const char* s, std::uint64_t& value) {
  std::uint64_t x;
  std::memcpy(&x, s, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  x = __builtin_bswap64(x);
#endif
  if ((((x & 0xF0F0F0F0F0F0F0F0ULL) | (((x + 0x0606060606060606ULL) & 0xF0F0F0F0F0F0F0F0ULL) >> 4)) !=
       0x3333333333333333ULL)) {
    return false;
  }
  x -= 0x3030303030303030ULL;
  x = (x * 10) + (x >> 8);
  x = (((x & 0x000000FF000000FFULL) * (100 + (1000000ULL << 32))) +
       (((x >> 16) & 0x000000FF000000FFULL) * (1 + (10000ULL << 32)))) >>
      32;
  value = x;
  return true;
}

// 10^k and 10^-k rounded to double (the compiler rounds the literals correctly).
constexpr double kPow10[] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11, 1e12,
    1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22, 1e23, 1e24, 1e25,
    1e26, 1e27, 1e28, 1e29, 1e30, 1e31, 1e32, 1e33, 1e34, 1e35, 1e36, 1e37, 1e38};
constexpr double kPow10Neg[] = {
    1e-0,  1e-1,  1e-2,  1e-3,  1e-4,  1e-5,  1e-6,  1e-7,  1e-8,  1e-9,  1e-10, 1e-11,
    1e-12, 1e-13, 1e-14, 1e-15, 1e-16, 1e-17, 1e-18, 1e-19, 1e-20, 1e-21, 1e-22, 1e-23,
    1e-24, 1e-25, 1e-26, 1e-27, 1e-28, 1e-29, 1e-30, 1e-31, 1e-32, 1e-33, 1e-34, 1e-35,
    1e-36, 1e-37, 1e-38, 1e-39, 1e-40, 1e-41, 1e-42, 1e-43, 1e-44, 1e-45, 1e-46, 1e-47,
    1e-48, 1e-49, 1e-50, 1e-51, 1e-52, 1e-53, 1e-54, 1e-55, 1e-56, 1e-57, 1e-58, 1e-59,
    1e-60, 1e-61, 1e-62, 1e-63, 1e-64};

// The decimals writers emit (at most 19 significant digits), as float32 rounded correctly,
// faster than std::from_chars. w (the digits) is an exact double and 10^e is rounded once, so
// d = w * 10^e lies within 2 double ulps of the decimal's exact value x (relative error at most
// 2^-52). Rounding d to float32 gives x rounded to float32 unless a float32 midpoint (a double,
// 2^29 double ulps apart from the next one) lies within those 2 ulps of d: when the 29 bits below
// float precision are within 8 of the midpoint pattern, or d is outside float's normal range,
// the text is left to from_chars (returns false). Returns false, too, for text it does not
// handle; on true, *next is the first byte after the number.
bool fast_float32(const char* p, const char* end, float& out, const char*& next) {
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD != 0
  return false;  // double arithmetic carried in wider registers: the bound above fails
#endif
  const char* s = p;
  const bool neg = s < end && *s == '-';
  if (neg) ++s;
  std::uint64_t w = 0;
  const char* d0 = s;
  while (s < end && static_cast<unsigned>(*s - '0') < 10) w = w * 10 + static_cast<unsigned>(*s++ - '0');
  std::ptrdiff_t digits = s - d0;
  std::ptrdiff_t exp10 = 0;
  if (s < end && *s == '.') {
    const char* f0 = ++s;
    std::uint64_t eight;
    if (end - s >= 8 && digits <= 11 && eight_digits(s, eight)) {
      w = w * 100000000 + eight;
      s += 8;
    }
    while (s < end && static_cast<unsigned>(*s - '0') < 10) w = w * 10 + static_cast<unsigned>(*s++ - '0');
    digits += s - f0;
    exp10 = -(s - f0);
  }
  if (digits == 0 || digits > 19) return false;
  if (s < end && (*s == 'e' || *s == 'E')) {
    ++s;
    const bool eneg = s < end && *s == '-';
    if (s < end && (*s == '-' || *s == '+')) ++s;
    const char* e0 = s;
    std::ptrdiff_t ev = 0;
    while (s < end && static_cast<unsigned>(*s - '0') < 10 && s - e0 < 4) ev = ev * 10 + (*s++ - '0');
    if (s == e0 || (s < end && static_cast<unsigned>(*s - '0') < 10)) return false;
    exp10 += eneg ? -ev : ev;
  }
  if (exp10 < -64 || exp10 > 38) return false;
  double d = static_cast<double>(w);  // exact: w < 10^19 < 2^64, but only 2^53 are exact...
  if (w > (std::uint64_t{1} << 53)) return false;  // ...so keep to those
  d *= exp10 < 0 ? kPow10Neg[-exp10] : kPow10[exp10];
  if (d == 0.0) {
    out = neg ? -0.0f : 0.0f;
  } else {
    if (!(d >= static_cast<double>(std::numeric_limits<float>::min()) &&
          d <= static_cast<double>(std::numeric_limits<float>::max()))) {
      return false;
    }
    std::uint64_t bits;
    std::memcpy(&bits, &d, sizeof bits);
    const std::uint64_t low = bits & ((std::uint64_t{1} << 29) - 1);
    constexpr std::uint64_t kMid = std::uint64_t{1} << 28;
    if (low + 8 >= kMid && low <= kMid + 8) return false;
    const auto f = static_cast<float>(d);
    out = neg ? -f : f;
  }
  next = s;
  return true;
}

// A whole field as a finite float32, rounded correctly.
bool parse_float(std::string_view s, float& v) {
  const char* b = s.data();
  const char* e = b + s.size();
  if (b == e) return false;
  const char* next;
  if (fast_float32(b, e, v, next) && next == e) return true;
  const auto r = std::from_chars(b, e, v);
  if (r.ptr != e) return false;
  if (r.ec == std::errc::result_out_of_range) {
    if (!magnitude_below_one(b, e)) return false;
    v = *b == '-' ? -0.0f : 0.0f;
    return true;
  }
  return r.ec == std::errc() && std::isfinite(v);
}

// A whole field as a label: ASCII digits, at most INT64_MAX.
bool parse_label(std::string_view s, std::int64_t& v) {
  if (s.empty()) return false;
  std::uint64_t acc = 0;
  constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    const auto digit = static_cast<std::uint64_t>(c - '0');
    if (acc > (kMax - digit) / 10) return false;  // checked before acc * 10 can wrap around
    acc = acc * 10 + digit;
  }
  v = static_cast<std::int64_t>(acc);
  return true;
}

// A defect found while parsing a chunk; the line is worked out from the byte offset at the end.
struct RowError {
  bool set = false;
  std::size_t offset = 0;
  std::size_t column = kNoColumn;  // 0 filenames, 1 + j embedding_j, dim + 1 labels
  std::string detail;
};

struct Chunk {
  const char* begin = nullptr;  // where parsing starts (a guessed record boundary)
  const char* stop = nullptr;   // records that start before this belong to the chunk
  std::size_t cap = 0;          // room for this many rows (the line ends in [begin, stop))
  std::size_t first_row = 0;    // where its rows go in the output arrays
  std::size_t rows = 0;
  const char* end_pos = nullptr;  // where its last record ended
  bool overflow = false;          // more records than line ends: the guess was wrong
  std::string names;
  std::vector<std::size_t> name_ends;
  RowError error;
};

// The line ends ("\r\n", a lone "\r", "\n") in [b, e).
std::size_t count_line_ends(const char* b, const char* e) {
  std::size_t n = 0;
  for (const char* p = b; p < e; ++p, ++n) {  // memchr: vectorized, lines are long
    p = static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(e - p)));
    if (p == nullptr) break;
  }
  for (const char* p = b; p < e; ++p) {
    p = static_cast<const char*>(std::memchr(p, '\r', static_cast<std::size_t>(e - p)));
    if (p == nullptr) break;
    if (!(p + 1 < e && p[1] == '\n')) ++n;
  }
  return n;
}

class Parser {
 public:
  Parser(const char* data, std::size_t size, std::size_t dim, PoolCsv& out)
      : data_(data), end_(data + size), dim_(dim), out_(out) {}

  // Parses the records that start in [c.begin, c.stop) into the output arrays at c.first_row.
  void parse_chunk(Chunk& c) const {
    const char* p = c.begin;
    const char* const end = end_;
    const std::size_t d = dim_;
    std::string field;
    c.names.clear();
    c.name_ends.clear();
    c.rows = 0;
    c.overflow = false;
    c.error = RowError{};
    while (p < c.stop) {
      if (c.rows == c.cap) {
        c.overflow = true;
        break;
      }
      const char* const record = p;
      const std::size_t row = c.first_row + c.rows;
      float* const emb = out_.embeddings.get() + row * d;
      const std::size_t name_begin = c.names.size();
      std::size_t fields = 0;
      End how = End::Comma;
      RowError pending;
      const char* err = nullptr;
      const char* err_at = nullptr;
      RowError fatal;  // a defect of the whole record: bad quoting or a wrong field count

      if (is_eol(*p)) {  // a blank line: a record with no fields
        p = skip_eol(p, end);
        how = End::Eol;
        fatal = count_error(0, record);
      } else {
        // filenames
        if (*p != '"') {
          const char* q = p;
          while (q < end && *q != ',' && !is_eol(*q)) ++q;
          c.names.append(p, q);
          if (q == end) {
            p = end;
            how = End::Eof;
          } else if (*q == ',') {
            p = q + 1;
          } else {
            p = skip_eol(q, end);
            how = End::Eol;
          }
        } else {
          err = read_field(p, end, &c.names, how);
          err_at = p;
        }
        fields = 1;
        if (!err) check_name(c.names, name_begin, record, pending);
        // embedding_j
        for (std::size_t j = 0; j < d && !err && how == End::Comma; ++j) {
          float v;
          const char* next;
          if (fast_float32(p, end, v, next) && next < end && *next == ',') {
            emb[j] = v;
            p = next + 1;
            ++fields;
            continue;
          }
          const auto r = std::from_chars(p, end, v);
          if (r.ec == std::errc() && r.ptr < end && *r.ptr == ',' && std::isfinite(v)) {
            emb[j] = v;
            p = r.ptr + 1;
            ++fields;
            continue;
          }
          const char* start = p;
          field.clear();
          err = read_field(p, end, &field, how);
          err_at = p;
          if (err) break;
          ++fields;
          if (!parse_float(field, v)) {
            set_error(pending, start, 1 + j, quote_value(field) + " is not a finite number");
            v = 0.0f;
          }
          emb[j] = v;
        }
        // labels
        if (!err && how == End::Comma) {
          const char* q = p;
          std::uint64_t acc = 0;
          while (q < end && q - p < 18 && *q >= '0' && *q <= '9') {
            acc = acc * 10 + static_cast<std::uint64_t>(*q - '0');
            ++q;
          }
          std::int64_t label = 0;
          if (q > p && (q == end || is_eol(*q))) {
            label = static_cast<std::int64_t>(acc);
            if (q == end) {
              p = end;
              how = End::Eof;
            } else {
              p = skip_eol(q, end);
              how = End::Eol;
            }
          } else {
            const char* start = p;
            field.clear();
            err = read_field(p, end, &field, how);
            err_at = p;
            if (!err && !parse_label(field, label)) {
              set_error(pending, start, d + 1, quote_value(field) + " is not a run index");
            }
          }
          ++fields;
          out_.labels[row] = label;
        }
        // Whatever is left of the record: only counted, for the error message.
        while (!err && how == End::Comma) {
          err = read_field(p, end, nullptr, how);
          err_at = p;
          ++fields;
        }
        if (err) {
          fatal.set = true;
          fatal.offset = offset(err_at);
          fatal.detail = err;
        } else if (fields != d + 2) {
          fatal = count_error(fields, how == End::Eof ? end : p - 1);
        }
      }
      if (fatal.set || pending.set) {
        c.error = fatal.set ? std::move(fatal) : std::move(pending);
        c.names.resize(name_begin);
        break;
      }
      c.name_ends.push_back(c.names.size());
      row_offsets_[row] = offset(record);
      ++c.rows;
    }
    c.end_pos = p;
  }

  RowError count_error(std::size_t fields, const char* at) const {
    RowError e;
    e.set = true;
    e.offset = offset(at);
    e.detail = "expected " + std::to_string(dim_ + 2) + " columns, got " + std::to_string(fields);
    return e;
  }

  void set_error(RowError& e, const char* at, std::size_t column, std::string detail) const {
    if (e.set) return;
    e.set = true;
    e.offset = offset(at);
    e.column = column;
    e.detail = std::move(detail);
  }

  void check_name(const std::string& names, std::size_t begin, const char* at, RowError& e) const {
    const std::string_view name(names.data() + begin, names.size() - begin);
    if (name.empty()) {
      set_error(e, at, 0, "empty filename");
    } else if (name.find('\0') != std::string_view::npos) {
      set_error(e, at, 0, quote_value(name) + " holds a NUL byte");
    } else if (!valid_utf8(reinterpret_cast<const unsigned char*>(name.data()), name.size())) {
      set_error(e, at, 0, quote_value(name) + " is not valid UTF-8");
    }
  }

  std::size_t offset(const char* p) const { return static_cast<std::size_t>(p - data_); }

  // The 1-based line holding byte `offset`, as csv.reader counts lines.
  std::size_t line_at(std::size_t offset) const {
    return 1 + count_line_ends(data_, data_ + std::min(offset, static_cast<std::size_t>(end_ - data_)));
  }

  std::string column_name(std::size_t column) const {
    if (column == kNoColumn) return {};
    if (column == 0) return "filenames";
    if (column == dim_ + 1) return "labels";
    return "embedding_" + std::to_string(column - 1);
  }

  [[noreturn]] void raise(const RowError& e) const {
    throw CsvError(line_at(e.offset), column_name(e.column), e.detail);
  }

  std::unique_ptr<std::size_t[]> row_offsets_;

 private:
  const char* data_;
  const char* end_;
  std::size_t dim_;
  PoolCsv& out_;
};

// The header record. Returns the embedding dimension and leaves p at the first data record.
std::size_t parse_header(const char* data, const char*& p, const char* end, const Parser& parser) {
  if (p == end) throw CsvError(1, "", "the file is empty (no header)");
  std::vector<std::string> fields;
  if (is_eol(*p)) {
    p = skip_eol(p, end);
  } else {
    End how = End::Comma;
    while (how == End::Comma) {
      fields.emplace_back();
      if (const char* err = read_field(p, end, &fields.back(), how)) {
        throw CsvError(parser.line_at(static_cast<std::size_t>(p - data)), "", err);
      }
    }
  }
  const std::string_view shape =
      "header must be filenames,embedding_0,...,embedding_<d-1>,labels";
  if (fields.size() < 2 || fields.front() != "filenames" || fields.back() != "labels") {
    throw CsvError(1, "", std::string(shape));
  }
  const std::size_t d = fields.size() - 2;
  for (std::size_t j = 0; j < d; ++j) {
    if (fields[j + 1] != "embedding_" + std::to_string(j)) throw CsvError(1, "", std::string(shape));
  }
  return d;
}


// Open-addressing set of row indices keyed by name; returns the first row whose name repeats an
// earlier one (and that earlier row), or rows when all are unique.
std::pair<std::size_t, std::size_t> first_duplicate(const PoolCsv& out, std::size_t rows) {
  std::size_t cap = 16;
  while (cap < rows * 2) cap <<= 1;
  std::vector<std::uint32_t> slots(cap, 0);  // row + 1; 0 is empty
  std::vector<std::size_t> spill;            // past 2^32 - 1 rows (never in practice)
  const std::size_t mask = cap - 1;
  const std::hash<std::string_view> hasher;
  auto name = [&out](std::size_t r) {
    return std::string_view(out.names.data() + out.name_offsets[r],
                            out.name_offsets[r + 1] - out.name_offsets[r]);
  };
  for (std::size_t r = 0; r < rows; ++r) {
    const std::string_view n = name(r);
    std::size_t h = hasher(n) & mask;
    for (;;) {
      const std::uint32_t s = slots[h];
      if (s == 0) {
        slots[h] = static_cast<std::uint32_t>(r + 1);
        break;
      }
      if (name(s - 1) == n) return {r, s - 1};
      h = (h + 1) & mask;
    }
  }
  return {rows, rows};
}

}  // namespace

PoolCsv parse_pool_csv(const char* data, std::size_t size, const CsvOptions& options,
                       const InterruptCheck& interrupted) {
  static const char kEmpty = '\0';
  if (data == nullptr) data = &kEmpty;
  if (options.body_end > size) throw std::invalid_argument("body_end is past the end of the text");
  if (options.body_end > 0) size = options.body_end;
  const char* const end = data + size;
  PoolCsv out;
  Parser parser(data, size, 0, out);
  const char* body = data;
  const std::size_t d = parse_header(data, body, end, parser);
  if (options.body_start > 0) {
    if (data + options.body_start < body || options.body_start > size ||
        !is_eol(data[options.body_start - 1])) {
      throw std::invalid_argument(
          "body_start must be a record's start (after a line end), between the header's end and "
          "body_end");
    }
    body = data + options.body_start;
  }
  if (options.expected_dim >= 0 && d != static_cast<std::size_t>(options.expected_dim)) {
    throw CsvError(1, "", std::to_string(d) + " embedding columns, but the pool's model gives " +
                              std::to_string(options.expected_dim));
  }
  if (d > (std::numeric_limits<std::uint32_t>::max() >> 2)) {
    throw CsvError(1, "", "too many embedding columns");
  }
  out.dim = d;
  Parser p(data, size, d, out);

  const std::size_t threads =
      options.threads ? options.threads
                      : std::max<std::size_t>(1, std::thread::hardware_concurrency());
  const std::size_t body_size = static_cast<std::size_t>(end - body);
  std::size_t chunk_bytes = options.chunk_bytes;
  if (chunk_bytes == 0) {
    chunk_bytes = std::clamp<std::size_t>(body_size / (threads * 4), std::size_t{4} << 20,
                                          std::size_t{64} << 20);
  }

  // Guessed record boundaries: the first line end at or after each nominal cut.
  std::vector<Chunk> chunks;
  chunks.emplace_back();
  chunks.back().begin = body;
  const char* scan = body;
  for (std::size_t cut = chunk_bytes; cut < body_size; cut += chunk_bytes) {
    const char* b = std::max(scan, body + cut);
    while (b < end && !(b[-1] == '\n' || (b[-1] == '\r' && *b != '\n'))) ++b;
    scan = b;
    if (b >= end) break;
    if (b > chunks.back().begin) {
      chunks.emplace_back();
      chunks.back().begin = b;
    }
  }
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    chunks[i].stop = i + 1 < chunks.size() ? chunks[i + 1].begin : end;
  }
  ThreadPool pool(std::min(threads, chunks.size()));
  pool.parallel_for(chunks.size(), [&](std::size_t i, std::size_t) {
    chunks[i].cap = count_line_ends(chunks[i].begin, chunks[i].stop);
  });
  chunks.back().cap += 1;  // the last record may lack a line end
  std::size_t total_cap = 0;
  for (auto& c : chunks) {
    c.first_row = total_cap;
    total_cap += c.cap;
  }
  out.embeddings.reset(new float[std::max<std::size_t>(1, total_cap * d)]);
  out.labels.reset(new std::int64_t[std::max<std::size_t>(1, total_cap)]);
  p.row_offsets_.reset(new std::size_t[std::max<std::size_t>(1, total_cap)]);

  Poller poll(interrupted);
  pool.parallel_for(chunks.size(), [&](std::size_t i, std::size_t thread) {
    if (thread == 0) poll();
    p.parse_chunk(chunks[i]);
  });

  // Check that the chunks tile the body; on a wrong guess parse it again in one piece.
  bool tiled = true;
  std::size_t used = chunks.size();  // chunks whose rows (and error) are real
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    const Chunk& c = chunks[i];
    if (c.overflow) {
      tiled = false;
      break;
    }
    if (c.error.set) {
      used = i + 1;
      break;
    }
    if (i + 1 < chunks.size() && c.end_pos != chunks[i + 1].begin) {
      tiled = false;
      break;
    }
  }
  if (!tiled) {
    chunks.resize(1);
    Chunk& c = chunks[0];
    c.begin = body;
    c.stop = end;
    c.cap = total_cap;
    c.first_row = 0;
    p.parse_chunk(c);
    // total_cap counts every line end in the body, plus one: room for every record.
    if (c.overflow) throw std::logic_error("pool CSV parser: row capacity miscounted");
    used = 1;
  }

  // Move rows together where a chunk had fewer rows than line ends (quoted line ends).
  std::size_t rows = 0;
  std::size_t name_bytes = 0;
  for (std::size_t i = 0; i < used; ++i) {
    Chunk& c = chunks[i];
    if (c.first_row != rows && c.rows > 0) {
      std::memmove(out.embeddings.get() + rows * d, out.embeddings.get() + c.first_row * d,
                   c.rows * d * sizeof(float));
      std::memmove(out.labels.get() + rows, out.labels.get() + c.first_row,
                   c.rows * sizeof(std::int64_t));
      std::memmove(p.row_offsets_.get() + rows, p.row_offsets_.get() + c.first_row,
                   c.rows * sizeof(std::size_t));
    }
    c.first_row = rows;
    rows += c.rows;
    name_bytes += c.names.size();
  }
  out.rows = rows;
  out.names.reserve(name_bytes);
  out.name_offsets.reserve(rows + 1);
  out.name_offsets.push_back(0);
  for (std::size_t i = 0; i < used; ++i) {
    const std::size_t base = out.names.size();
    for (std::size_t e : chunks[i].name_ends) out.name_offsets.push_back(base + e);
    out.names += chunks[i].names;
    std::string().swap(chunks[i].names);
  }

  // Duplicates among the rows read; one before a row error comes first in the file.
  const auto [dup, first] = first_duplicate(out, rows);
  if (dup < rows) {
    const std::string_view name(out.names.data() + out.name_offsets[dup],
                                out.name_offsets[dup + 1] - out.name_offsets[dup]);
    throw CsvError(p.line_at(p.row_offsets_[dup]), "filenames",
                   "duplicate filename " + quote_value(name) + " (first on line " +
                       std::to_string(p.line_at(p.row_offsets_[first])) + ")");
  }
  if (chunks[used - 1].error.set) p.raise(chunks[used - 1].error);
  return out;
}

namespace {

#if !defined(_WIN32)
class Mapping {
 public:
  explicit Mapping(const std::string& path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw std::system_error(errno, std::generic_category(), path);
    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
      const int e = errno;
      ::close(fd_);
      throw std::system_error(e, std::generic_category(), path);
    }
    if (S_ISDIR(st.st_mode)) {
      ::close(fd_);
      throw std::system_error(EISDIR, std::generic_category(), path);
    }
    size_ = static_cast<std::size_t>(st.st_size);
    if (size_ == 0) return;  // mmap refuses an empty range; nothing to map
    void* m = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
    if (m == MAP_FAILED) {
      const int e = errno;
      ::close(fd_);
      throw std::system_error(e, std::generic_category(), path);
    }
    data_ = static_cast<const char*>(m);
    ::madvise(m, size_, MADV_SEQUENTIAL);
    ::madvise(m, size_, MADV_WILLNEED);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() {
    if (data_) ::munmap(const_cast<char*>(data_), size_);
    ::close(fd_);
  }
  const char* data() const { return data_; }
  std::size_t size() const { return size_; }

 private:
  int fd_ = -1;
  const char* data_ = nullptr;
  std::size_t size_ = 0;
};
#else
// No mmap on this platform: read the file into memory.
class Mapping {
 public:
  explicit Mapping(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::system_error(ENOENT, std::generic_category(), path);
    std::ostringstream ss;
    ss << f.rdbuf();
    text_ = ss.str();
  }
  const char* data() const { return text_.data(); }
  std::size_t size() const { return text_.size(); }

 private:
  std::string text_;
};
#endif

}  // namespace

PoolCsv read_pool_csv(const std::string& path, const CsvOptions& options,
                      const InterruptCheck& interrupted) {
  const Mapping m(path);
  return parse_pool_csv(m.data(), m.size(), options, interrupted);
}

}  // namespace datapool
