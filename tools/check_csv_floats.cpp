// Every float32 through the pool CSV's float formatter (datapool::format_csv_float, the fast path)
// against the exact reference, printf's "%.9g" through std::to_chars with NaN written "nan" (as
// Python's "{:.9g}".format writes it; tests/test_csv_format.py checks that reference against
// Python itself). A one-off check, not part of the build (it takes minutes):
//   g++ -O2 -std=c++17 -pthread -Isrc/cpp tools/check_csv_floats.cpp
//       src/cpp/datapool/csv_write.cpp -o /tmp/check_csv_floats && /tmp/check_csv_floats
// Prints the number of values that differ (and the first few), and exits 1 if any.
#include <atomic>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "datapool/csv_write.hpp"

int main() {
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  std::atomic<std::uint64_t> bad{0};
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      char a[32], b[32];
      std::uint64_t local_bad = 0;
      for (std::uint64_t i = t; i < (1ull << 32); i += threads) {
        const auto bits = static_cast<std::uint32_t>(i);
        float v;
        std::memcpy(&v, &bits, sizeof v);
        char* ea = datapool::format_csv_float(v, a);
        char* eb;
        if (std::isnan(v)) {
          std::memcpy(b, "nan", 3);
          eb = b + 3;
        } else {
          eb = std::to_chars(b, b + 32, static_cast<double>(v), std::chars_format::general, 9).ptr;
        }
        if (std::string(a, static_cast<std::size_t>(ea - a)) !=
            std::string(b, static_cast<std::size_t>(eb - b))) {
          if (++local_bad <= 5) {
            std::printf("0x%08x: %s != %s\n", bits,
                        std::string(a, static_cast<std::size_t>(ea - a)).c_str(),
                        std::string(b, static_cast<std::size_t>(eb - b)).c_str());
          }
        }
      }
      bad += local_bad;
    });
  }
  for (auto& th : pool) th.join();
  std::printf("%llu of 2^32 float32 values differ\n", static_cast<unsigned long long>(bad.load()));
  return bad.load() == 0 ? 0 : 1;
}
