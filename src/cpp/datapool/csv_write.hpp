// The rows of the pool CSV (datapool_latest.csv) as text: the writer's half of pool_csv.hpp.
// Plain C++17, no Python.
//
// A row is `name,v_0,...,v_{d-1},label\n` (or `name,label\n` when d is 0). The name arrives as
// it goes into the file (already quoted where the caller's rules say so). Each value is the
// float32 widened to double and written as Python's `"{:.9g}".format(float(v))` writes it:
// 9 significant digits, correctly rounded (ties to even, on the exact binary value), trailing
// zeros and a trailing '.' dropped, the exponent form `1.5e-05` / `3.40282347e+38` (sign and at
// least two digits) where the decimal exponent is below -4 or at least 9, `-0` for negative
// zero, and `nan`, `inf`, `-inf` (never `-nan`). 9 digits round-trip every float32.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace datapool {

// Writes one value as above into out (at least 24 bytes); returns the end of what it wrote.
char* format_csv_float(float value, char* out);

// The text of rows [0, names.size()): names[i] (as is), the row's dim values of `embeddings`
// (rows x dim, row-major), labels[i]; in pieces, whose concatenation in order is the text (so
// that the caller copies it once, into its own buffer). threads: total threads, 0 for every
// hardware thread; the text is the same for any thread count.
std::vector<std::string> format_pool_csv_rows(const std::vector<std::string_view>& names,
                                              const float* embeddings, std::size_t dim,
                                              const std::int64_t* labels, std::size_t threads);

}  // namespace datapool
