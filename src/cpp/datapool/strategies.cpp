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
  std::uint32_t center;      // candidate index, or kPool
  float r2 = -1.0f;          // largest member mind^2; -1: no member left
  double ub = kNegInf;       // max over members of s * log(mind) + w (exact)
  std::uint32_t leader = 0;  // lowest index at ub
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

// Per group, what one task of a streaming pass saw: the largest mind^2, ub and its leader.
struct Tally {
  std::vector<float> r2;
  std::vector<double> ub;
  std::vector<std::uint32_t> leader;
  std::vector<double> bub;  // per (group, bucket)
  std::vector<std::uint32_t> blead;
};

class Combined {
 public:
  Combined(const float* X, std::size_t n, std::size_t d, const double* w, const std::uint8_t* mask,
           const std::vector<BalanceInput>& b, const CombinedOptions& o,
           const InterruptCheck& check)
      : X_(X), n_(n), d_(d), w_(w), mask_(mask), bal_(b), opt_(o),
        K_(o.kernels ? *o.kernels : best_kernels()), pool_(o.threads), poll_(check),
        mind2_(n, kInfF), u_(n, 0.0), out_(n, 0), owner_(n, 0),
        md2_(o.min_distance * o.min_distance) {
    for (const auto& x : bal_) counts_.push_back(x.counts);
    gains_.resize(bal_.size());
    cls_.assign(n, 0);
    if (bal_.size() == 1) {  // buckets: one per class (one-hot rows), zero rows, soft rows
      const std::size_t C = bal_[0].C;
      K_b_ = C + 2;
      for (std::size_t i = 0; i < n; ++i) {
        const float* p = bal_[0].P + i * C;
        std::size_t nz = 0, at = 0;
        for (std::size_t k = 0; k < C; ++k)
          if (p[k] != 0.0f) {
            ++nz;
            at = k;
          }
        cls_[i] = static_cast<std::uint32_t>(nz == 0 ? C : (nz == 1 && p[at] == 1.0f) ? at : C + 1);
        n_soft_ += cls_[i] == C + 1;
      }
    }
  }

  CombinedResult run(const float* S, std::size_t m) {
    res_.kernels = K_.name;
    const std::size_t limit = std::min(opt_.n_samples, n_);
    for (std::size_t i = 0; i < n_; ++i) {
      if (!(mask_[i] && w_[i] > kNegInf)) {
        out_[i] = 1;  // thresholds, or an objective of 0: never picked, never measured
        mind2_[i] = 0.0f;
        any_masked_ = true;
      }
    }
    if (m > 0) start_from_pool(S, m);
    while (res_.indices.size() < limit) {
      update_gains();
      const Best b = groups_.empty() ? argmax_first() : argmax();
      if (!b.found) {
        res_.stop_reason = why_none();
        break;
      }
      record(b);
      if (res_.indices.size() == limit) break;
      poll_();
      add_center(b.index);
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

  double balance_sum(std::uint32_t x) const {
    double s = 0.0;
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
    for (std::size_t i = 0; i < n_; ++i) {
      if (out_[i]) continue;
      const auto x = static_cast<std::uint32_t>(i);
      b.offer(w_[x] + balance_sum(x), x);
    }
    return b;
  }

  Best argmax() const {
    std::ptrdiff_t at = -1;  // the group first by (ub desc, leader asc)
    for (std::size_t j = 0; j < groups_.size(); ++j) {
      const Group& g = groups_[j];
      if (g.r2 < 0.0f) continue;
      const Group* t = at < 0 ? nullptr : &groups_[static_cast<std::size_t>(at)];
      if (!t || g.ub > t->ub || (g.ub == t->ub && g.leader < t->leader))
        at = static_cast<std::ptrdiff_t>(j);
    }
    if (at < 0) return {};
    const Group& top = groups_[static_cast<std::size_t>(at)];
    if (bal_.empty()) return {top.ub, top.leader, true};
    if (bal_.size() == 1) return argmax_buckets();
    // A good first best: every group's leader with its balance term (O(groups * classes)), so
    // that the bound ub + B rules out most groups and members.
    Best b;
    for (const Group& g : groups_)
      if (g.r2 >= 0.0f) b.offer(g.ub + balance_sum(g.leader), g.leader);
    if (lists_) {
      for (std::size_t j = 0; j < groups_.size(); ++j) {
        const Group& g = groups_[j];
        if (g.r2 < 0.0f || g.ub + bound_ < b.score) continue;
        for (const std::uint32_t x : members_[j]) offer_balanced(x, b);
      }
    } else {
      for (std::size_t i = 0; i < n_; ++i) {
        if (out_[i] || groups_[static_cast<std::size_t>(owner_[i])].ub + bound_ < b.score) continue;
        offer_balanced(static_cast<std::uint32_t>(i), b);
      }
    }
    return b;
  }

  // One balance term: a one-hot row's balance term is its class's gain, so each group's best
  // per class bucket (exact, kept by every pass) plus that gain is an exact candidate, O(groups *
  // classes); only soft rows are evaluated one by one, where their group's soft bound can win.
  Best argmax_buckets() const {
    const std::size_t C = bal_[0].C, K = K_b_;
    std::vector<double> gain(C + 1, 0.0);
    for (std::size_t k = 0; k < C; ++k) gain[k] = bal_[0].strength * gains_[0][k];
    Best b;
    for (std::size_t j = 0; j < groups_.size(); ++j) {
      if (groups_[j].r2 < 0.0f) continue;
      for (std::size_t k = 0; k <= C; ++k) {
        const double u = bub_[j * K + k];
        if (u > kNegInf) b.offer(u + gain[k], blead_[j * K + k]);
      }
    }
    if (n_soft_ == 0) return b;
    const std::size_t soft = C + 1;
    if (lists_) {
      for (std::size_t j = 0; j < groups_.size(); ++j) {
        if (groups_[j].r2 < 0.0f || bub_[j * K + soft] + bound_ < b.score) continue;
        for (const std::uint32_t x : members_[j])
          if (cls_[x] == soft) offer_balanced(x, b);
      }
    } else {
      for (std::size_t i = 0; i < n_; ++i) {
        if (out_[i] || cls_[i] != soft) continue;
        if (bub_[static_cast<std::size_t>(owner_[i]) * K + soft] + bound_ < b.score) continue;
        offer_balanced(static_cast<std::uint32_t>(i), b);
      }
    }
    return b;
  }

  void offer_balanced(std::uint32_t x, Best& b) const {
    if (out_[x] || u_[x] + bound_ < b.score) return;
    b.offer(u_[x] + balance_sum(x), x);
  }

  void record(const Best& b) {
    const std::uint32_t x = b.index;
    res_.indices.push_back(x);
    res_.min_distances.push_back(std::sqrt(mind2_[x]));
    res_.scores.push_back(b.score);
    for (std::size_t k = 0; k < bal_.size(); ++k) {
      res_.balance_terms.push_back(balance_term(k, x));
      const float* p = bal_[k].P + std::size_t{x} * bal_[k].C;
      for (std::size_t c = 0; c < bal_[k].C; ++c) counts_[k][c] += double(p[c]);
    }
    out_[x] = 1;
  }

  struct Drops {
    std::size_t close = 0, dup = 0;
  };

  // A candidate whose min-distance just dropped to dd: out for good when at 0 (a duplicate of
  // the selection) or closer than min_distance.
  bool drop(std::uint32_t x, float dd, Drops& drops) {
    if (dd > 0.0f && dd >= md2_) return false;
    out_[x] = 1;
    mind2_[x] = 0.0f;  // the kernels never measure or move a row at 0
    if (dd > 0.0f) {
      ++drops.close;
    } else {
      ++drops.dup;
    }
    return true;
  }

  void start_from_pool(const float* S, std::size_t m) {
    const std::size_t rows = std::clamp<std::size_t>(
        (std::size_t{1} << 25) / std::max<std::size_t>(1, m * d_), 8, 4096);
    const std::size_t tasks = (n_ + rows - 1) / rows;
    pool_.parallel_for(tasks, [&](std::size_t t, std::size_t) {
      const std::size_t lo = t * rows, hi = std::min(n_, lo + rows);
      K_.nearest_rows(X_, d_, lo, hi, S, m, mind2_.data());
    });
    Drops drops;
    for (std::size_t i = 0; i < n_; ++i) {
      const auto x = static_cast<std::uint32_t>(i);
      if (out_[i]) {
        mind2_[i] = 0.0f;
      } else if (!drop(x, mind2_[i], drops)) {
        u_[i] = w_[i] + div_term(mind2_[i]);
      }
    }
    dropped_close_ += drops.close;
    dropped_dup_ += drops.dup;
    groups_.push_back({kPool});
    limit_.assign(1, -1.0f);
    stream(nullptr, 0);  // measures nothing (no center), tallies the pool's group
  }

  // One new center: which groups it can reach (free test, Elkan), then their members updated.
  void add_center(std::uint32_t p) {
    const float* c = X_ + std::size_t{p} * d_;
    const float R2 = mind2_[p];
    const auto own = static_cast<std::size_t>(owner_[p]);
    mind2_[p] = 0.0f;  // picked: the kernels never measure or move a row at 0
    const auto fresh = static_cast<std::uint32_t>(groups_.size());
    limit_.assign(groups_.size() + 1, kInfF);
    active_.clear();
    std::size_t touched = 0;
    for (std::size_t j = 0; j < groups_.size(); ++j) {
      const Group& g = groups_[j];
      if (std::isinf(R2)) {
        limit_[j] = -1.0f;  // the first pick of an empty pool: measure everything
      } else if (j == own) {
        limit_[j] = R2;  // always: p leaves it
      } else if (g.r2 < 0.0f || 4.0f * g.r2 <= R2) {
        continue;  // free test: 2r <= R
      } else if (g.center == kPool) {
        limit_[j] = R2;
      } else {
        const float dcc = K_.sqdist(c, X_ + std::size_t{g.center} * d_, d_);
        if (4.0f * g.r2 <= dcc) continue;  // Elkan
        limit_[j] = dcc;
      }
      active_.push_back(j);
      if (lists_) touched += members_[j].size();
    }
    groups_.push_back({p});
    if (std::isinf(R2)) {  // nothing selected before p: every candidate starts in p's group
      for (std::size_t i = 0; i < n_; ++i) owner_[i] = 0;
      groups_.erase(groups_.begin(), groups_.end() - 1);
      bub_.clear();
      blead_.clear();
      groups_[0].center = p;
      limit_.assign(1, -1.0f);
      stream(c, 0);
      return;
    }
    if (lists_ && touched > n_ / 4) {  // too much to visit group by group: stream instead
      lists_ = false;
      members_.clear();
    }
    const std::uint64_t before = res_.evaluations;
    if (lists_) {
      list_step(c, fresh);
    } else {
      stream(c, fresh);
      if (res_.evaluations - before < n_ / 64) build_lists();
    }
  }

  // Every candidate in index order: the SIMD kernel of farthest-point selection measures rows of
  // groups in reach (limit < inf) when 4 mind > limit and moves those c is closer to into
  // `fresh`; a second pass over the same rows drops the moved ones no longer eligible,
  // refreshes their score part u and re-tallies the groups in reach.
  void stream(const float* c, std::uint32_t fresh) {
    const std::size_t G = groups_.size();
    const std::size_t chunk = std::max<std::size_t>(16384, (n_ + pool_.size() * 4 - 1) / (pool_.size() * 4));
    const std::size_t tasks = (n_ + chunk - 1) / chunk;
    if (tally_.size() < tasks) tally_.resize(tasks);
    std::vector<std::uint64_t> evals(tasks, 0);
    std::vector<Drops> drops(tasks);
    const auto fresh_i = static_cast<std::int32_t>(fresh);
    pool_.parallel_for(tasks, [&](std::size_t t, std::size_t) {
      Tally& tl = tally_[t];
      tl.r2.assign(G, -1.0f);
      tl.ub.assign(G, kNegInf);
      tl.leader.assign(G, 0);
      tl.bub.assign(G * K_b_, kNegInf);
      tl.blead.assign(G * K_b_, 0);
      const std::size_t lo = t * chunk, hi = std::min(n_, lo + chunk);
      if (c != nullptr) {
        K_.pruned_update(X_, d_, lo, hi, c, mind2_.data(), owner_.data(), limit_.data(), fresh_i,
                         tl.r2.data(), tl.leader.data(), &evals[t], measure_all_);
        std::fill(tl.r2.begin(), tl.r2.end(), -1.0f);
      }
      for (std::size_t i = lo; i < hi; ++i) {
        if (out_[i]) continue;
        const auto g = static_cast<std::size_t>(owner_[i]);
        if (std::isinf(limit_[g]) && g != fresh) continue;
        const auto x = static_cast<std::uint32_t>(i);
        const float m2 = mind2_[i];
        if (g == fresh && c != nullptr) {  // moved in this pass
          if (drop(x, m2, drops[t])) continue;
          u_[i] = w_[i] + div_term(m2);
        }
        tl.r2[g] = std::max(tl.r2[g], m2);
        if (u_[i] > tl.ub[g]) {  // index order: the first at the max is the lowest
          tl.ub[g] = u_[i];
          tl.leader[g] = x;
        }
        const std::size_t bk = g * K_b_ + cls_[i];
        if (u_[i] > tl.bub[bk]) {
          tl.bub[bk] = u_[i];
          tl.blead[bk] = x;
        }
      }
    });
    std::uint64_t step = 0;
    for (std::size_t t = 0; t < tasks; ++t) {
      step += evals[t];
      dropped_close_ += drops[t].close;
      dropped_dup_ += drops[t].dup;
    }
    res_.evaluations += step;
    measure_all_ = step > n_ / 2;
    bub_.resize(G * K_b_, kNegInf);
    blead_.resize(G * K_b_, 0);
    for (std::size_t j = 0; j < G; ++j) {
      if (std::isinf(limit_[j]) && j != fresh) continue;
      for (std::size_t k = j * K_b_; k < (j + 1) * K_b_; ++k) {
        bub_[k] = kNegInf;
        for (std::size_t t = 0; t < tasks; ++t) {  // tasks in index order: ties keep the lowest
          if (tally_[t].bub[k] > bub_[k]) {
            bub_[k] = tally_[t].bub[k];
            blead_[k] = tally_[t].blead[k];
          }
        }
      }
      Group& g = groups_[j];
      g.r2 = -1.0f;
      g.ub = kNegInf;
      for (std::size_t t = 0; t < tasks; ++t) {  // tasks in index order: ties keep the lowest
        const Tally& tl = tally_[t];
        if (tl.r2[j] < 0.0f) continue;
        if (g.r2 < 0.0f || tl.ub[j] > g.ub) {
          g.ub = tl.ub[j];
          g.leader = tl.leader[j];
        }
        g.r2 = std::max(g.r2, tl.r2[j]);
      }
    }
  }

  // Member lists (ascending indices) by counting sort of owner_.
  void build_lists() {
    const std::size_t G = groups_.size();
    std::vector<std::size_t> count(G, 0);
    for (std::size_t i = 0; i < n_; ++i)
      if (!out_[i]) ++count[static_cast<std::size_t>(owner_[i])];
    members_.assign(G, {});
    for (std::size_t j = 0; j < G; ++j) members_[j].reserve(count[j]);
    for (std::size_t i = 0; i < n_; ++i)
      if (!out_[i]) members_[static_cast<std::size_t>(owner_[i])].push_back(static_cast<std::uint32_t>(i));
    lists_ = true;
  }

  // Only the members of the groups in reach are visited.
  void list_step(const float* c, std::uint32_t fresh) {
    members_.emplace_back();
    moved_.resize(pool_.size());
    for (auto& v : moved_) v.clear();
    std::vector<std::uint64_t> evals(pool_.size(), 0);
    std::vector<Drops> drops(pool_.size());
    const std::size_t K = K_b_;
    bub_.resize(groups_.size() * K, kNegInf);
    blead_.resize(groups_.size() * K, 0);
    pool_.parallel_for(active_.size(), [&](std::size_t t, std::size_t thread) {
      const std::size_t j = active_[t];
      std::fill(bub_.begin() + static_cast<std::ptrdiff_t>(j * K),
                bub_.begin() + static_cast<std::ptrdiff_t>((j + 1) * K), kNegInf);
      Group& g = groups_[j];
      const float lim = limit_[j];
      std::vector<std::uint32_t>& mem = members_[j];
      const std::size_t count = mem.size();
      std::size_t kept = 0;
      g.r2 = -1.0f;
      g.ub = kNegInf;
      for (std::size_t i = 0; i < count; ++i) {
        if (i + 8 < count) {
          const std::uint32_t ahead = mem[i + 8];
          if (4.0f * mind2_[ahead] > lim) __builtin_prefetch(X_ + std::size_t{ahead} * d_);
        }
        const std::uint32_t x = mem[i];
        if (out_[x]) continue;
        const float m2 = mind2_[x];
        if (4.0f * m2 > lim) {
          const float dd = K_.sqdist(X_ + std::size_t{x} * d_, c, d_);
          ++evals[thread];
          if (dd < m2) {
            if (drop(x, dd, drops[thread])) continue;
            mind2_[x] = dd;
            u_[x] = w_[x] + div_term(dd);
            moved_[thread].push_back(x);
            continue;
          }
        }
        mem[kept++] = x;
        g.r2 = std::max(g.r2, m2);
        if (u_[x] > g.ub || (u_[x] == g.ub && x < g.leader)) {
          g.ub = u_[x];
          g.leader = x;
        }
        tally_bucket(j, x);
      }
      mem.resize(kept);
    });
    for (std::size_t t = 0; t < pool_.size(); ++t) {
      res_.evaluations += evals[t];
      dropped_close_ += drops[t].close;
      dropped_dup_ += drops[t].dup;
    }
    std::vector<std::uint32_t>& mine = members_.back();
    for (const auto& v : moved_) mine.insert(mine.end(), v.begin(), v.end());
    std::sort(mine.begin(), mine.end());
    Group& g = groups_.back();
    for (const std::uint32_t x : mine) {
      owner_[x] = static_cast<std::int32_t>(fresh);
      g.r2 = std::max(g.r2, mind2_[x]);
      if (u_[x] > g.ub || (u_[x] == g.ub && x < g.leader)) {
        g.ub = u_[x];
        g.leader = x;
      }
      tally_bucket(fresh, x);
    }
  }

  void tally_bucket(std::size_t j, std::uint32_t x) {
    const std::size_t bk = j * K_b_ + cls_[x];
    if (u_[x] > bub_[bk] || (u_[x] == bub_[bk] && x < blead_[bk])) {
      bub_[bk] = u_[x];
      blead_[bk] = x;
    }
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
  std::vector<double> u_;         // w + s * log(mind): the fixed and diversity part of a score
  std::vector<std::uint8_t> out_;  // picked, excluded, or dropped: never looked at again
  std::vector<std::int32_t> owner_;
  std::vector<std::uint32_t> cls_;  // each row's bucket (one balance term), else 0
  std::size_t K_b_ = 1, n_soft_ = 0;
  std::vector<double> bub_;  // per (group, bucket): the max u and its lowest index
  std::vector<std::uint32_t> blead_;
  bool measure_all_ = true;
  float md2_;
  std::vector<std::vector<double>> counts_, gains_;
  double bound_ = 0.0;
  std::vector<Group> groups_;
  std::vector<std::size_t> active_;
  std::vector<float> limit_;
  std::vector<Tally> tally_;
  bool lists_ = false;
  std::vector<std::vector<std::uint32_t>> members_, moved_;
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
