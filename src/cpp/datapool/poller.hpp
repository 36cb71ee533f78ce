// Rate-limited polling of a caller's interrupt check, shared by the long loops of the core.
#pragma once

#include <chrono>

#include "datapool/fps.hpp"  // InterruptCheck, Interrupted

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

}  // namespace datapool
