// Rate-limited polling of a caller's interrupt check, shared by the long loops of the core.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>

#include "datapool/fps.hpp"  // InterruptCheck, Interrupted
#include "datapool/thread_pool.hpp"

namespace datapool {

// Polls the caller's interrupt check at most every 50 ms (the check may take the GIL) and throws
// Interrupted when it says so.
class Poller {
 public:
  explicit Poller(const InterruptCheck& check) : check_(check), last_(Clock::now()) {}
  void operator()() {
    if (!check_) return;
    const auto now = Clock::now();
    if (now - last_ < std::chrono::milliseconds(50)) return;
    last_ = now;
    if (check_()) throw Interrupted{};
  }

 private:
  using Clock = std::chrono::steady_clock;
  const InterruptCheck& check_;
  Clock::time_point last_;
};

// fn(lo, hi) over rows [0, n) in tasks of `rows` rows, run `per_thread` tasks a thread at a time,
// with the interrupt check between those batches.
template <typename Fn>
void for_rows_polled(ThreadPool& pool, Poller& poll, std::size_t n, std::size_t rows,
                     std::size_t per_thread, const Fn& fn) {
  const std::size_t tasks = (n + rows - 1) / rows;
  const std::size_t batch = pool.size() * per_thread;
  for (std::size_t t0 = 0; t0 < tasks; t0 += batch) {
    const std::size_t t1 = std::min(tasks, t0 + batch);
    pool.parallel_for(t1 - t0, [&](std::size_t t, std::size_t) {
      const std::size_t lo = (t0 + t) * rows;
      fn(lo, std::min(n, lo + rows));
    });
    poll();
  }
}

// The pool-aware start of both selections: mind[i] = the squared distance of candidate row i of
// X (n x d) to its nearest row of S (m x d, m > 0), in tasks small enough that the interrupt
// check runs about every 50 ms or better.
inline void nearest_selected(const Kernels& K, ThreadPool& pool, Poller& poll, const float* X,
                             std::size_t n, std::size_t d, const float* S, std::size_t m,
                             float* mind) {
  const std::size_t work_per_row = std::max<std::size_t>(1, m * d);
  const std::size_t rows = std::clamp<std::size_t>((std::size_t{1} << 25) / work_per_row, 8, 4096);
  for_rows_polled(pool, poll, n, rows, 4,
                  [&](std::size_t lo, std::size_t hi) { K.nearest_rows(X, d, lo, hi, S, m, mind); });
}

}  // namespace datapool
