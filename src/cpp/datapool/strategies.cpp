#include "datapool/strategies.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "datapool/poller.hpp"
#include "datapool/screen_copy.hpp"
#include "datapool/thread_pool.hpp"

namespace datapool {
namespace {

constexpr float kInfF = std::numeric_limits<float>::infinity();
constexpr double kNegInf = -std::numeric_limits<double>::infinity();
constexpr std::uint32_t kPool = std::numeric_limits<std::uint32_t>::max();

struct Group {
  std::uint32_t center;      // candidate index, or kPool
  float r2 = -1.0f;          // largest member mind^2; -1: no member left
  std::uint32_t rlead = 0;   // lowest index at r2
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

// Per group, what one task of a streaming pass saw: the largest mind^2 and its row, ub and its
// leader, and per class bucket the best u and its row (rows in index order: the first at a max is
// the lowest).
struct Tally {
  std::vector<float> r2;
  std::vector<std::uint32_t> rlead;
  std::vector<double> ub;
  std::vector<std::uint32_t> leader;
  std::vector<double> bub;  // per (group, bucket)
  std::vector<std::uint32_t> blead;

  void fit(std::size_t G, std::size_t K) {
    if (r2.size() >= G) return;
    r2.resize(G);
    rlead.resize(G);
    ub.resize(G);
    leader.resize(G);
    bub.resize(G * K);
    blead.resize(G * K);
  }
  void reset(std::size_t j, std::size_t K) {
    r2[j] = -1.0f;
    ub[j] = kNegInf;
    std::fill(bub.begin() + static_cast<std::ptrdiff_t>(j * K),
              bub.begin() + static_cast<std::ptrdiff_t>((j + 1) * K), kNegInf);
  }
  void add(std::size_t j, std::size_t K, std::uint32_t x, float m2, double u, std::uint32_t cls) {
    if (m2 > r2[j]) {
      r2[j] = m2;
      rlead[j] = x;
    }
    if (u > ub[j]) {
      ub[j] = u;
      leader[j] = x;
    }
    const std::size_t bk = j * K + cls;
    if (u > bub[bk]) {
      bub[bk] = u;
      blead[bk] = x;
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
    if (ScreenCopy::wanted(opt_.screen, n_, d_, limit)) {
      screen_.build(X_, n_, d_, K_, mind2_.data(), pool_, poll_);
      res_.screen = "int8";
    }
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
        // A class with target 0 is over it from its first sample: its share is the one it would
        // have after one more pick, so it never ties with a class at its target.
        const double t = bal_[b].target[k];
        const double share =
            t > 0.0 ? (total > 0.0 ? c[k] / total : 0.0) : (c[k] + 1.0) / (total + 1.0);
        g[k] = std::log((t + kBalanceEps) / (share + kBalanceEps));
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
    if (opt_.picks_done) *opt_.picks_done = res_.indices.size();
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
    nearest_selected(K_, pool_, poll_, X_, n_, d_, S, m, mind2_.data());
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
    crow_.assign(d_, 0.0f);  // the pool's group has no single center row
    limit_.assign(1, -1.0f);
    stream(nullptr, 0, kInfF);  // measures nothing (no center), tallies the pool's group
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
        const float dcc = K_.sqdist(c, crow_.data() + j * d_, d_);
        if (4.0f * g.r2 <= dcc) continue;  // Elkan
        limit_[j] = dcc;
      }
      active_.push_back(j);
      if (lists_) touched += members_[j].size();
    }
    groups_.push_back({p});
    // Center rows side by side, as fps.cpp keeps them: the center-to-center tests read them in
    // order instead of gathering rows scattered through X.
    crow_.insert(crow_.end(), c, c + d_);
    if (screen_.built()) query_ = screen_.query(p, !std::isinf(R2));
    if (std::isinf(R2)) {  // nothing selected before p: every candidate starts in p's group
      for (std::size_t i = 0; i < n_; ++i) owner_[i] = 0;
      groups_.erase(groups_.begin(), groups_.end() - 1);
      crow_.assign(c, c + d_);
      bub_.clear();
      blead_.clear();
      groups_[0].center = p;
      limit_.assign(1, -1.0f);
      stream(c, 0, R2);
      return;
    }
    if (lists_ && touched > n_ / 4) {  // too much to visit group by group: stream instead
      lists_ = false;
      members_.clear();
    }
    if (lists_) {
      list_step(c, fresh);
    } else if (stream(c, fresh, R2) < n_ / 64) {
      build_lists();
    }
  }

  // One pass over every candidate in index order: the kernels of farthest-point selection
  // measure (or screen) the rows of the groups in reach (limit < inf) and move those that c is
  // closer to into `fresh` (none without a center); then settle(). The passes that screen every
  // row stream only the rows that are not dormant (ScreenCopy). Returns the pass's evaluations:
  // the rows of the groups in reach, which the float32 pass measures, screened or not.
  std::uint64_t stream(const float* c, std::uint32_t fresh, float R2) {
    const bool survivors_only = c != nullptr && screen_.built() && measure_all_;
    const bool compact = survivors_only && screen_.prepare_compact(R2, mind2_.data(), n_);
    if (!survivors_only) screen_.drop_compact();  // other passes do not keep its thresholds
    std::uint64_t step = c != nullptr ? measure(c, fresh, compact) : 0;
    const std::uint64_t in_reach = settle(c != nullptr, fresh, R2);
    if (survivors_only) step = in_reach;  // the kernels leave the count to settle()
    res_.evaluations += step;
    measure_all_ = step > n_ / 2;
    return step;
  }

  std::uint64_t measure(const float* c, std::uint32_t fresh, bool compact) {
    const std::size_t G = groups_.size();
    const std::size_t rows = compact ? screen_.row_of().size() : n_;
    const std::size_t chunk = ScreenCopy::pass_chunk(rows, pool_.size());
    const std::size_t tasks = std::max<std::size_t>(1, (rows + chunk - 1) / chunk);
    if (kr_.size() < tasks) {
      kr_.resize(tasks);
      kl_.resize(tasks);
    }
    std::vector<std::uint64_t> evals(tasks, 0), again(tasks, 0);
    pool_.parallel_for(tasks, [&](std::size_t t, std::size_t) {
      // The kernels' radius and leader per group: scratch here, settle() tallies what counts.
      std::vector<float>& r = kr_[t];
      std::vector<std::uint32_t>& l = kl_[t];
      if (r.size() < G) {
        r.resize(G, -1.0f);
        l.resize(G, 0);
      }
      const std::size_t lo = std::min(rows, t * chunk), hi = std::min(rows, lo + chunk);
      screen_.update_rows(K_, compact, measure_all_, X_, d_, lo, hi, c, mind2_.data(),
                          owner_.data(), limit_.data(), static_cast<std::int32_t>(fresh),
                          r.data(), l.data(), query_, &evals[t], &again[t]);
    });
    std::uint64_t step = 0;
    for (std::size_t t = 0; t < tasks; ++t) {
      step += evals[t];
      res_.rechecks += again[t];
    }
    return step;
  }

  // Whether group j (in reach of the last pass) lost the row of its radius, of its best score, or
  // of a class bucket's best: only rows that got closer changed, and they left for the new group.
  bool left_a_leader(std::size_t j) const {
    const Group& g = groups_[j];
    if (g.r2 < 0.0f) return false;  // empty, and stays so
    const auto stays = [&](std::uint32_t x) {
      return static_cast<std::size_t>(owner_[x]) == j && mind2_[x] > 0.0f;
    };
    if (!stays(g.rlead) || !stays(g.leader)) return true;
    for (std::size_t k = j * K_b_; k < (j + 1) * K_b_; ++k)
      if (bub_[k] > kNegInf && !stays(blead_[k])) return true;
    return false;
  }

  // settle() for a row of `fresh` or of a group tallied again.
  void settle_row(std::uint32_t x, std::size_t j, bool moved, float R2, Tally& tl, Drops& drops,
                  std::uint64_t& count, std::uint64_t& sleep) {
    const float m2 = mind2_[x];
    if (moved) {
      if (out_[x]) return;  // (the first pick's pass: every row is in `fresh`)
      ++count;
      if (drop(x, m2, drops)) {
        ++sleep;
        return;
      }
      u_[x] = w_[x] + div_term(m2);
      sleep += ScreenCopy::dormant(m2, R2);
    } else if (!(m2 > 0.0f)) {
      return;
    }
    tl.add(j, K_b_, x, m2, u_[x], K_b_ > 1 ? cls_[x] : 0);
  }

  // After a pass, in one pass over every row in index order: the rows that moved into `fresh`
  // (moved: the pass had a center) are dropped when no longer eligible, else take their new score
  // part u; `fresh` and the groups that lost a leader (left_a_leader) are tallied again. Every
  // other group keeps its radius, best score and class bests, with their rows: its rows only
  // left or got closer, and those that stay kept their values, so none can pass a best, nor tie
  // it from a lower index without having tied it before (fps.cpp's regroup, with scores).
  // Returns the rows of the groups in reach.
  std::uint64_t settle(bool moved, std::uint32_t fresh, float R2) {
    const std::size_t G = groups_.size(), K = K_b_;
    bub_.resize(G * K, kNegInf);
    blead_.resize(G * K, 0);
    dirty_.assign(G, 0);
    std::vector<std::size_t> redo;
    for (std::size_t j = 0; j < G; ++j) {
      if (std::isinf(limit_[j]) && j != fresh) continue;  // out of reach: unchanged
      if (j == fresh || !moved || left_a_leader(j)) {
        dirty_[j] = 1;
        redo.push_back(j);
      }
    }
    const std::size_t chunk = ScreenCopy::pass_chunk(n_, pool_.size());
    const std::size_t tasks = (n_ + chunk - 1) / chunk;
    if (tally_.size() < tasks) tally_.resize(tasks);
    std::vector<std::uint64_t> in_reach(tasks, 0), asleep(tasks, 0);
    std::vector<Drops> drops(tasks);
    const auto to = static_cast<std::int32_t>(fresh);
    pool_.parallel_for(tasks, [&](std::size_t t, std::size_t) {
      Tally& tl = tally_[t];
      tl.fit(G, K);
      for (const std::size_t j : redo) tl.reset(j, K);
      const std::size_t lo = t * chunk, hi = std::min(n_, lo + chunk);
      // Local pointers: the stores to u_ and the tallies could alias the members' arrays, and
      // the compiler would load each again for every row.
      const std::int32_t* owner = owner_.data();
      const float* mind = mind2_.data();
      const float* limit = limit_.data();
      const std::uint8_t* dirty = dirty_.data();
      std::uint64_t count = 0, sleep = 0;
      for (std::size_t i = lo; i < hi; ++i) {
        const std::int32_t g = owner[i];
        const float m2 = mind[i];
        const auto j = static_cast<std::size_t>(g);
        const unsigned mine = static_cast<unsigned>(g == to);
        // Rows of groups in reach (`fresh`'s are counted by settle_row).
        count += static_cast<unsigned>(limit[j] != kInfF) & static_cast<unsigned>(m2 > 0.0f) &
                 (mine ^ 1u);
        if (__builtin_expect((mine | dirty[j]) != 0, 0))
          settle_row(static_cast<std::uint32_t>(i), j, moved && mine, R2, tl, drops[t], count,
                     sleep);
      }
      in_reach[t] = count;
      asleep[t] = sleep;
    });
    std::uint64_t total = 0;
    for (std::size_t t = 0; t < tasks; ++t) {
      total += in_reach[t];
      screen_.add_dormant(asleep[t]);
      dropped_close_ += drops[t].close;
      dropped_dup_ += drops[t].dup;
    }
    for (const std::size_t j : redo) merge_tallies(j, tasks);
    return total;
  }

  // Group j's radius, best score and class bests from the tasks' (in index order: ties keep the
  // lowest index).
  void merge_tallies(std::size_t j, std::size_t tasks) {
    const std::size_t K = K_b_;
    Group& g = groups_[j];
    g.r2 = -1.0f;
    g.ub = kNegInf;
    for (std::size_t k = j * K; k < (j + 1) * K; ++k) bub_[k] = kNegInf;
    for (std::size_t t = 0; t < tasks; ++t) {
      const Tally& tl = tally_[t];
      if (tl.r2[j] < 0.0f) continue;
      if (tl.r2[j] > g.r2) {
        g.r2 = tl.r2[j];
        g.rlead = tl.rlead[j];
      }
      if (tl.ub[j] > g.ub) {
        g.ub = tl.ub[j];
        g.leader = tl.leader[j];
      }
      for (std::size_t k = j * K; k < (j + 1) * K; ++k) {
        if (tl.bub[k] > bub_[k]) {
          bub_[k] = tl.bub[k];
          blead_[k] = tl.blead[k];
        }
      }
    }
  }

  // Member lists (ascending indices) by counting sort of owner_.
  void build_lists() {
    screen_.release_compact();  // the list passes do not screen
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
            if (screen_.built()) screen_.set_threshold(x, dd);
            u_[x] = w_[x] + div_term(dd);
            moved_[thread].push_back(x);
            continue;
          }
        }
        mem[kept++] = x;
        if (m2 > g.r2) {
          g.r2 = m2;
          g.rlead = x;
        }
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
      if (mind2_[x] > g.r2) {
        g.r2 = mind2_[x];
        g.rlead = x;
      }
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
  std::vector<float> limit_, crow_;
  std::vector<Tally> tally_;
  std::vector<std::vector<float>> kr_;  // the kernels' radius and leader per task (scratch)
  std::vector<std::vector<std::uint32_t>> kl_;
  std::vector<std::uint8_t> dirty_;     // settle(): the groups tallied again
  ScreenCopy screen_;                    // the int8 screen, when it runs
  ScreenQuery query_;
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
