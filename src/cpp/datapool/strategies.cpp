#include "datapool/strategies.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "datapool/poller.hpp"
#include "datapool/thread_pool.hpp"

namespace datapool {
namespace {

constexpr float kInfF = std::numeric_limits<float>::infinity();
constexpr double kNegInf = -std::numeric_limits<double>::infinity();
constexpr std::uint32_t kPool = std::numeric_limits<std::uint32_t>::max();

struct Group {
  std::uint32_t center;  // candidate index, or kPool
  float r2 = -1.0f;      // largest member mind^2; -1: empty
  double ub = kNegInf;   // max over members of s * log(mind) + w
  std::uint32_t leader = 0;  // lowest index at ub
  std::vector<std::uint32_t> members;
};

struct Best {
  double score = kNegInf;
  std::uint32_t index = 0;
  bool found = false;
  void offer(double s, std::uint32_t i) {
    if (!found || s > score || (s == score && i < index)) {
      score = s;
      index = i;
      found = true;
    }
  }
};

class Combined {
 public:
  Combined(const float* X, std::size_t n, std::size_t d, const double* w, const std::uint8_t* mask,
           const std::vector<BalanceInput>& b, const CombinedOptions& o,
           const InterruptCheck& check)
      : X_(X), n_(n), d_(d), w_(w), mask_(mask), bal_(b), opt_(o),
        K_(o.kernels ? *o.kernels : best_kernels()), pool_(o.threads), poll_(check),
        mind2_(n, kInfF), picked_(n, 0), md2_(o.min_distance * o.min_distance) {
    for (const auto& x : bal_) counts_.push_back(x.counts);
    gains_.resize(bal_.size());
  }

  CombinedResult run(const float* S, std::size_t m) {
    res_.kernels = K_.name;
    const std::size_t limit = std::min(opt_.n_samples, n_);
    std::vector<std::uint32_t> all;
    for (std::size_t i = 0; i < n_; ++i)
      if (mask_[i] && w_[i] > kNegInf) all.push_back(static_cast<std::uint32_t>(i));
    any_masked_ = all.size() < n_;
    if (m > 0) {
      start_from_pool(S, m, all);
    } else {
      first_ = std::move(all);
    }
    while (res_.indices.size() < limit) {
      update_gains();
      Best b = groups_.empty() && !first_.empty() ? argmax_first() : argmax();
      if (!b.found) {
        res_.stop_reason = why_none();
        break;
      }
      record(b);
      if (res_.indices.size() == limit) break;
      poll_();
      if (groups_.empty()) {
        add_first_center(b.index);
      } else {
        add_center(b.index);
      }
    }
    if (res_.stop_reason.empty()) res_.stop_reason = n_ == 0 ? "no candidates" : "budget";
    return std::move(res_);
  }

 private:
  double div_term(float m2) const { return opt_.diversity * 0.5 * std::log(double(m2)); }

  double balance_term(std::size_t b, std::uint32_t x) const {
    const BalanceInput& in = bal_[b];
    const float* p = in.P + std::size_t{x} * in.C;
    double s = 0.0;
    for (std::size_t k = 0; k < in.C; ++k) s += double(p[k]) * gains_[b][k];
    return in.strength * s;
  }

  double full_score(std::uint32_t x) const {
    double s = w_[x] + (std::isinf(mind2_[x]) ? 0.0 : div_term(mind2_[x]));
    for (std::size_t b = 0; b < bal_.size(); ++b) s += balance_term(b, x);
    return s;
  }

  void update_gains() {
    bound_ = 0.0;
    for (std::size_t b = 0; b < bal_.size(); ++b) {
      const auto& c = counts_[b];
      double total = 0.0;
      for (double v : c) total += v;
      auto& g = gains_[b];
      g.resize(c.size());
      double hi = 0.0, lo = 0.0;
      for (std::size_t k = 0; k < c.size(); ++k) {
        const double share = total > 0.0 ? c[k] / total : 0.0;
        g[k] = std::log((bal_[b].target[k] + kBalanceEps) / (share + kBalanceEps));
        hi = std::max(hi, g[k]);
        lo = std::min(lo, g[k]);
      }
      bound_ += bal_[b].strength > 0 ? bal_[b].strength * hi : bal_[b].strength * lo;
    }
    bound_ += 1e-6 * (std::abs(bound_) + 1.0);  // slack: rows of P sum to 1 only to rounding
  }

  // Nothing selected yet: every candidate's diversity term is 0.
  Best argmax_first() const {
    Best b;
    for (const std::uint32_t x : first_) b.offer(full_score(x), x);
    return b;
  }

  Best argmax() const {
    Best top;  // the group with the largest ub (lowest leader on ties)
    std::size_t at = 0;
    for (std::size_t j = 0; j < groups_.size(); ++j) {
      const Group& g = groups_[j];
      if (g.members.empty()) continue;
      if (!top.found || g.ub > top.score || (g.ub == top.score && g.leader < top.index)) {
        top = {g.ub, g.leader, true};
        at = j;
      }
    }
    if (!top.found || bal_.empty()) return top;
    Best b;
    evaluate(groups_[at], b);
    for (std::size_t j = 0; j < groups_.size(); ++j) {
      const Group& g = groups_[j];
      if (j == at || g.members.empty() || g.ub + bound_ < b.score) continue;
      evaluate(g, b);
    }
    return b;
  }

  void evaluate(const Group& g, Best& b) const {
    for (const std::uint32_t x : g.members) {
      const double base = w_[x] + div_term(mind2_[x]);
      if (base + bound_ < b.score) continue;
      double s = base;
      for (std::size_t k = 0; k < bal_.size(); ++k) s += balance_term(k, x);
      b.offer(s, x);
    }
  }

  void record(const Best& b) {
    const std::uint32_t x = b.index;
    res_.indices.push_back(x);
    picked_[x] = 1;
    res_.min_distances.push_back(std::sqrt(mind2_[x]));
    res_.scores.push_back(b.score);
    for (std::size_t k = 0; k < bal_.size(); ++k) {
      res_.balance_terms.push_back(balance_term(k, x));
      const float* p = bal_[k].P + std::size_t{x} * bal_[k].C;
      for (std::size_t c = 0; c < bal_[k].C; ++c) counts_[k][c] += double(p[c]);
    }
    picked_r2_ = mind2_[x];
    mind2_[x] = 0.0f;  // leaves its group: dropped at the group's next refresh (always scanned)
    picked_owner_ = owner_.empty() ? 0 : owner_[x];
  }

  bool keeps(std::uint32_t x) {
    const float m2 = mind2_[x];
    if (m2 > 0.0f && m2 >= md2_) return true;
    if (picked_[x]) return false;
    if (m2 > 0.0f) {
      ++dropped_close_;
    } else {
      ++dropped_dup_;
    }
    return false;
  }

  void refresh(Group& g) {
    std::size_t kept = 0;
    g.r2 = -1.0f;
    g.ub = kNegInf;
    g.leader = 0;
    for (const std::uint32_t x : g.members) {
      if (!keeps(x)) continue;
      g.members[kept++] = x;
      g.r2 = std::max(g.r2, mind2_[x]);
      const double u = w_[x] + div_term(mind2_[x]);
      if (u > g.ub || (u == g.ub && x < g.leader)) {
        g.ub = u;
        g.leader = x;
      }
    }
    g.members.resize(kept);
  }

  void start_from_pool(const float* S, std::size_t m, std::vector<std::uint32_t>& all) {
    const std::size_t rows = std::clamp<std::size_t>((std::size_t{1} << 25) / std::max<std::size_t>(1, m * d_), 8, 4096);
    const std::size_t tasks = (n_ + rows - 1) / rows;
    pool_.parallel_for(tasks, [&](std::size_t t, std::size_t) {
      const std::size_t lo = t * rows, hi = std::min(n_, lo + rows);
      K_.nearest_rows(X_, d_, lo, hi, S, m, mind2_.data());
    });
    owner_.assign(n_, 0);
    Group g;
    g.center = kPool;
    g.members = std::move(all);
    refresh(g);
    groups_.push_back(std::move(g));
  }

  void add_first_center(std::uint32_t p) {
    const float* c = X_ + std::size_t{p} * d_;
    owner_.assign(n_, 0);
    const std::size_t chunk = 4096, tasks = (first_.size() + chunk - 1) / chunk;
    pool_.parallel_for(tasks, [&](std::size_t t, std::size_t) {
      const std::size_t hi = std::min(first_.size(), (t + 1) * chunk);
      for (std::size_t i = t * chunk; i < hi; ++i) {
        const std::uint32_t x = first_[i];
        if (x != p) mind2_[x] = K_.sqdist(X_ + std::size_t{x} * d_, c, d_);
      }
    });
    res_.evaluations += first_.size();
    Group g;
    g.center = p;
    g.members = std::move(first_);
    first_.clear();
    refresh(g);
    groups_.push_back(std::move(g));
  }

  void add_center(std::uint32_t p) {
    const float* c = X_ + std::size_t{p} * d_;
    const float R2 = picked_r2_;
    const auto fresh = static_cast<std::uint32_t>(groups_.size());
    active_.clear();
    limit_.assign(groups_.size(), kInfF);
    for (std::size_t j = 0; j < groups_.size(); ++j) {
      const Group& g = groups_[j];
      const bool own = j == picked_owner_;
      if (!own && (g.members.empty() || 4.0f * g.r2 <= R2)) continue;  // free test
      float lim = R2;
      if (!own && g.center != kPool) {
        lim = K_.sqdist(c, X_ + std::size_t{g.center} * d_, d_);
        if (4.0f * g.r2 <= lim) continue;  // Elkan
      }
      limit_[j] = lim;
      active_.push_back(j);
    }
    moved_.resize(pool_.size());
    for (auto& v : moved_) v.clear();
    std::vector<std::uint64_t> evals(pool_.size(), 0);
    pool_.parallel_for(active_.size(), [&](std::size_t t, std::size_t thread) {
      Group& g = groups_[active_[t]];
      const float lim = limit_[active_[t]];
      std::size_t kept = 0;
      for (const std::uint32_t x : g.members) {
        const float m2 = mind2_[x];
        if (m2 > 0.0f && 4.0f * m2 > lim) {
          const float dd = K_.sqdist(X_ + std::size_t{x} * d_, c, d_);
          ++evals[thread];
          if (dd < m2) {
            mind2_[x] = dd;
            moved_[thread].push_back(x);
            continue;
          }
        }
        g.members[kept++] = x;
      }
      g.members.resize(kept);
    });
    for (const auto e : evals) res_.evaluations += e;
    // Refreshing counts drops; do it on this thread (a few passes over the touched members).
    for (const std::size_t j : active_) refresh(groups_[j]);
    Group g;
    g.center = p;
    for (const auto& v : moved_) g.members.insert(g.members.end(), v.begin(), v.end());
    for (const std::uint32_t x : g.members) owner_[x] = fresh;
    refresh(g);
    groups_.push_back(std::move(g));
  }

  std::string why_none() const {
    if (dropped_close_ > 0) return "min_distance";
    if (dropped_dup_ > 0) return "no candidate differs from the pool";
    return any_masked_ ? "no more candidates pass the thresholds" : "no candidates";
  }

  const float* X_;
  std::size_t n_, d_;
  const double* w_;
  const std::uint8_t* mask_;
  const std::vector<BalanceInput>& bal_;
  CombinedOptions opt_;
  const Kernels& K_;
  ThreadPool pool_;
  Poller poll_;
  std::vector<float> mind2_;
  std::vector<std::uint8_t> picked_;
  float md2_;
  std::vector<std::vector<double>> counts_, gains_;
  double bound_ = 0.0;
  std::vector<Group> groups_;
  std::vector<std::uint32_t> owner_, first_;
  std::vector<std::size_t> active_;
  std::vector<float> limit_;
  std::vector<std::vector<std::uint32_t>> moved_;
  float picked_r2_ = kInfF;
  std::uint32_t picked_owner_ = 0;
  std::size_t dropped_close_ = 0, dropped_dup_ = 0;
  bool any_masked_ = false;
  CombinedResult res_;
};

}  // namespace

CombinedResult combined_select(const float* X, std::size_t n, std::size_t d, const float* S,
                               std::size_t m, const double* weight, const std::uint8_t* mask,
                               const std::vector<BalanceInput>& balances,
                               const CombinedOptions& options, const InterruptCheck& interrupted) {
  if (d == 0 && n > 0) throw std::invalid_argument("embedding dimension must be at least 1");
  if (m > 0 && S == nullptr) throw std::invalid_argument("selected is null but m > 0");
  if (n > std::numeric_limits<std::uint32_t>::max() - 1)
    throw std::invalid_argument("at most 2^32 - 2 candidates are supported");
  if (!(options.diversity > 0.0)) throw std::invalid_argument("diversity strength must be > 0");
  for (const auto& b : balances)
    if (b.counts.size() != b.C || b.target.size() != b.C)
      throw std::invalid_argument("balance counts and target must have one entry per class");
  Combined c(X, n, d, weight, mask, balances, options, interrupted);
  return c.run(S, m);
}

}  // namespace datapool
