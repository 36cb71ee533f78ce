#include "datapool/fps.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "datapool/poller.hpp"
#include "datapool/screen_copy.hpp"
#include "datapool/thread_pool.hpp"

namespace datapool {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr std::uint32_t kPoolCenter = std::numeric_limits<std::uint32_t>::max();


struct Pick {
  std::size_t index;
  float value;  // squared min-distance
};

class Selector {
 public:
  Selector(const float* X, std::size_t n, std::size_t d, const FpsOptions& o,
           const InterruptCheck& check)
      : X_(X), n_(n), d_(d), opt_(o), K_(o.kernels ? *o.kernels : best_kernels()),
        pool_(o.threads), poll_(check), mind_(n, kInf) {}

  FpsResult run(const float* S, std::size_t m) {
    result_.kernels = K_.name;
    if (m > 0) nearest_selected(K_, pool_, poll_, X_, n_, d_, S, m, mind_.data());
    const std::size_t limit = std::min(opt_.n_samples, n_);
    result_.indices.reserve(limit);
    result_.min_distances.reserve(limit);

    const bool pruned = opt_.algorithm != Algorithm::Brute;
    if (pruned && ScreenCopy::wanted(opt_.screen, n_, d_, limit))
      screen_.build(X_, n_, d_, K_, mind_.data(), pool_, poll_);
    Pick next = pruned ? init_groups() : brute_argmax();
    while (result_.indices.size() < limit) {
      if (!(next.value > 0.0f)) break;  // all that is left duplicates the selection
      const float far = std::sqrt(next.value);
      if (far < opt_.min_distance) break;
      result_.indices.push_back(static_cast<std::int64_t>(next.index));
      result_.min_distances.push_back(far);
      if (opt_.picks_done) *opt_.picks_done = result_.indices.size();
      if (result_.indices.size() == limit) break;
      poll_();
      next = pruned ? pruned_step(next) : brute_step(next.index);
    }
    result_.algorithm = pruned ? "pruned" : "brute";
    if (screen_.built()) result_.screen = "int8";
    return std::move(result_);
  }

 private:
  // --- brute force -----------------------------------------------------------------------------
  Pick brute_argmax() const {
    std::size_t at = 0;
    for (std::size_t i = 1; i < n_; ++i)
      if (mind_[i] > mind_[at]) at = i;
    return {at, mind_[at]};
  }

  Pick brute_step(std::size_t center) {
    const float* c = X_ + center * d_;
    mind_[center] = 0.0f;
    const std::size_t chunk = std::max<std::size_t>(4096, (n_ + pool_.size() * 4 - 1) / (pool_.size() * 4));
    const std::size_t tasks = (n_ + chunk - 1) / chunk;
    std::vector<Pick> best(tasks);
    std::vector<std::uint64_t> evals(tasks, 0);
    pool_.parallel_for(tasks, [&](std::size_t t, std::size_t) {
      const std::size_t lo = t * chunk, hi = std::min(n_, lo + chunk);
      K_.brute_update(X_, d_, lo, hi, c, mind_.data(), &best[t].value, &best[t].index,
                      &evals[t]);
    });
    Pick out = best[0];
    for (std::size_t t = 0; t < tasks; ++t) {
      result_.evaluations += evals[t];
      if (best[t].value > out.value) out = best[t];  // chunks in index order: ties keep the lowest
    }
    return out;
  }

  // --- pruned ----------------------------------------------------------------------------------
  // Groups are implicit: owner_[i] is the group of candidate i. A group is the pool (the
  // candidates nearest to a pool row; its "center" is any pool row, all at least R from the new
  // center) or a picked candidate. Each keeps its radius (largest min-distance) and leader.
  struct Group {
    std::uint32_t center;  // candidate index, or kPoolCenter
    float radius;          // -1: empty
    std::uint32_t leader;  // lowest index at that radius
  };

  Pick init_groups() {
    Group g{kPoolCenter, -1.0f, 0};
    owner_.assign(n_, 0);  // everything starts in the pool's group (brute force needs no owners)
    for (std::size_t i = 0; i < n_; ++i) {
      if (mind_[i] > 0.0f && mind_[i] > g.radius) {
        g.radius = mind_[i];
        g.leader = static_cast<std::uint32_t>(i);
      }
    }
    groups_.push_back(g);
    crow_.assign(d_, 0.0f);  // the pool's group has no single center row
    return leader();
  }

  Pick leader() const {
    Pick best{0, 0.0f};
    bool found = false;
    for (const Group& g : groups_) {
      if (!(g.radius > 0.0f)) continue;
      if (!found || g.radius > best.value || (g.radius == best.value && g.leader < best.index)) {
        best = {g.leader, g.radius};
        found = true;
      }
    }
    return best;
  }

  Pick pruned_step(Pick pick) {
    const auto p = static_cast<std::uint32_t>(pick.index);
    const float R2 = pick.value;  // squared distance from c to everything selected before it
    const float* c = X_ + std::size_t{p} * d_;
    const auto own = static_cast<std::size_t>(owner_[p]);
    mind_[p] = 0.0f;  // p leaves its group; that group is always scanned below
    const auto fresh = static_cast<std::int32_t>(groups_.size());
    groups_.push_back({p, -1.0f, 0});
    const std::size_t G = groups_.size();
    // Center rows side by side (k x d): the center-to-center tests read them in order instead
    // of gathering rows scattered through X (measured: the late picks' main cost otherwise).
    crow_.insert(crow_.end(), c, c + d_);

    // Per-group limit: a lower bound on d(c, the group's center)^2, or +inf when the whole group
    // is out of reach. R^2 is a valid bound for every group: c is at least R from every
    // selected point.
    limit_.assign(G, kInf);
    active_.clear();
    for (std::size_t j = 0; j + 1 < G; ++j) {
      const Group& g = groups_[j];
      if (!(g.radius > 0.0f)) continue;
      if (std::isinf(R2)) {
        limit_[j] = -1.0f;  // first pick of an empty pool: nothing bounds it, measure everything
      } else if (j == own || g.center == kPoolCenter) {
        if (j != own && 4.0f * g.radius <= R2) continue;  // free test
        limit_[j] = R2;
      } else if (4.0f * g.radius <= R2) {
        continue;  // free test: 2r <= R
      } else {
        const float dcc = K_.sqdist(c, crow_.data() + j * d_, d_);
        ++result_.center_evaluations;
        if (dcc >= 4.0f * g.radius) continue;  // Elkan: d(c, c_j) >= 2 r_j
        limit_[j] = dcc;
      }
      active_.push_back(j);
    }

    if (lists_) {
      std::size_t touched = 0;
      for (const std::size_t j : active_) touched += members_[j].size();
      if (touched > n_ / 4) {  // too much to scan group by group: stream instead
        lists_ = false;
        members_.clear();
        members_.shrink_to_fit();
      }
    }
    const std::uint64_t before = result_.evaluations;
    if (screen_.built()) query_ = screen_.query(p, !std::isinf(R2));
    if (lists_) {
      list_step(c, fresh);
    } else {
      dense_step(c, fresh, R2);
      if (!std::isinf(R2) && result_.evaluations - before < n_ / 64) build_lists();
    }
    return leader();
  }

  // Every candidate in index order; only rows of active groups are looked at.
  void dense_step(const float* c, std::int32_t fresh, float R2) {
    const std::size_t G = groups_.size();
    active_.push_back(G - 1);
    // The screened pass over every row leaves the rows it rules out alone: only the new group
    // and the groups whose leader left are measured for their radius (regroup below). It
    // streams the compacted copy of the rows that are not dormant where there is one.
    const bool survivors_only = screen_.built() && measure_all_;
    const bool compact = survivors_only && screen_.prepare_compact(R2, mind_.data(), n_);
    if (!survivors_only) screen_.drop_compact();  // other passes do not keep its thresholds
    const std::size_t rows = compact ? screen_.row_of().size() : n_;
    const std::size_t chunk = ScreenCopy::pass_chunk(rows, pool_.size());
    const std::size_t tasks = std::max<std::size_t>(1, (rows + chunk - 1) / chunk);
    if (radius_.size() < tasks) {
      radius_.resize(tasks);
      lead_.resize(tasks);
    }
    std::vector<std::uint64_t> evals(tasks, 0), again(tasks, 0);
    pool_.parallel_for(tasks, [&](std::size_t t, std::size_t) {
      std::vector<float>& r = radius_[t];
      std::vector<std::uint32_t>& l = lead_[t];
      if (r.size() < G) {
        r.resize(G, -1.0f);
        l.resize(G, 0);
      }
      for (const std::size_t j : active_) r[j] = -1.0f;
      const std::size_t lo = std::min(rows, t * chunk), hi = std::min(rows, lo + chunk);
      screen_.update_rows(K_, compact, measure_all_, X_, d_, lo, hi, c, mind_.data(),
                          owner_.data(), limit_.data(), fresh, r.data(), l.data(), query_,
                          &evals[t], &again[t]);
    });
    for (const auto a : again) result_.rechecks += a;
    std::uint64_t step_evals = 0;
    for (std::size_t t = 0; t < tasks; ++t) step_evals += evals[t];
    if (survivors_only) {
      step_evals = regroup(tasks, fresh, R2);
    } else {
      for (const std::size_t j : active_) merge_radius(j, tasks);
    }
    result_.evaluations += step_evals;
    // Next step: measure every row of the active groups while the test would pass most anyway.
    measure_all_ = step_evals > n_ / 2;
  }

  // Group j's radius and leader from the tasks' (in index order: ties keep the lowest index).
  void merge_radius(std::size_t j, std::size_t tasks) {
    Group& g = groups_[j];
    g.radius = -1.0f;
    for (std::size_t t = 0; t < tasks; ++t) {
      if (radius_[t][j] > g.radius) {
        g.radius = radius_[t][j];
        g.leader = lead_[t][j];
      }
    }
  }

  // After a pass that measured only the screen's survivors: the new group (all its rows were
  // measured) takes its radius from the tasks'. An active group whose leader is still a member
  // at the same min-distance keeps its radius and leader: its other rows only left or got
  // closer, so none can reach the leader's, nor tie it from a lower index without having tied
  // it before. The groups whose leader left (always the new center's own group) are measured
  // again in one pass over owner_, which also counts the rows that were in active groups (the
  // rows the float32 pass measures, counted as its evaluations), for the choice of the next
  // step's pass. Returns that count.
  std::uint64_t regroup(std::size_t tasks, std::int32_t fresh, float R2) {
    const auto G = static_cast<std::size_t>(fresh) + 1;
    const std::size_t chunk = (n_ + tasks - 1) / tasks;
    merge_radius(static_cast<std::size_t>(fresh), tasks);
    dirty_.assign(G, 0);
    std::vector<std::size_t> redo;
    for (const std::size_t j : active_) {
      if (j == static_cast<std::size_t>(fresh)) continue;
      const Group& g = groups_[j];
      const std::uint32_t l = g.leader;
      if (g.radius > 0.0f && static_cast<std::size_t>(owner_[l]) == j && mind_[l] == g.radius)
        continue;
      dirty_[j] = 1;
      redo.push_back(j);
    }
    std::vector<std::uint64_t> active_rows(tasks, 0), dormant_rows(tasks, 0);
    pool_.parallel_for(tasks, [&](std::size_t t, std::size_t) {
      float* r = radius_[t].data();
      std::uint32_t* l = lead_[t].data();
      for (const std::size_t j : redo) r[j] = -1.0f;
      const std::size_t lo = t * chunk, hi = std::min(n_, lo + chunk);
      const std::int32_t* owner = owner_.data();
      const float* mind = mind_.data();
      const float* limit = limit_.data();
      const std::uint8_t* dirty = dirty_.data();
      std::uint64_t count = 0, asleep = 0;
      for (std::size_t i = lo; i < hi; ++i) {
        const std::int32_t g = owner[i];
        const float m = mind[i];
        asleep += static_cast<unsigned>(g == fresh) & static_cast<unsigned>(ScreenCopy::dormant(m, R2));
        // (The new group's rows all moved this step, from active groups, at min-distance > 0.)
        count += static_cast<unsigned>((limit[g] != kInf) & (m > 0.0f)) |
                 static_cast<unsigned>(g == fresh);
        if (dirty[g] && m > 0.0f && m > r[g]) {
          r[g] = m;
          l[g] = static_cast<std::uint32_t>(i);
        }
      }
      active_rows[t] = count;
      dormant_rows[t] = asleep;
    });
    for (const auto a : dormant_rows) screen_.add_dormant(a);
    for (const std::size_t j : redo) merge_radius(j, tasks);
    std::uint64_t total = 0;
    for (const auto a : active_rows) total += a;
    return total;
  }

  // Member lists (ascending indices) by counting sort of owner_: O(N + groups).
  void build_lists() {
    screen_.release_compact();  // the list passes keep only the screen's own thresholds
    const std::size_t G = groups_.size();
    std::vector<std::size_t> count(G, 0);
    for (std::size_t i = 0; i < n_; ++i)
      if (mind_[i] > 0.0f) ++count[static_cast<std::size_t>(owner_[i])];
    members_.assign(G, {});
    for (std::size_t j = 0; j < G; ++j) members_[j].reserve(count[j]);
    for (std::size_t i = 0; i < n_; ++i)
      if (mind_[i] > 0.0f)
        members_[static_cast<std::size_t>(owner_[i])].push_back(static_cast<std::uint32_t>(i));
    moved_.resize(pool_.size());
    scratch_.resize(pool_.size());
    lists_ = true;
  }

  // Only the members of active groups are looked at.
  void list_step(const float* c, std::int32_t fresh) {
    members_.emplace_back();
    for (auto& buf : moved_) buf.clear();
    std::vector<std::uint64_t> evals(pool_.size(), 0), again(pool_.size(), 0);
    pool_.parallel_for(active_.size(), [&](std::size_t t, std::size_t thread) {
      const std::size_t j = active_[t];
      std::vector<std::uint32_t>& members = members_[j];
      std::vector<std::uint32_t>& out = moved_[thread];
      std::vector<std::uint32_t>& scratch = scratch_[thread];
      const std::size_t had = out.size(), count = members.size();
      out.resize(had + count);
      if (scratch.size() < count) scratch.resize(count);
      std::size_t n_moved = 0;
      Group& g = groups_[j];
      const std::size_t kept =
          screen_.built()
              ? K_.screened_scan(X_, d_, members.data(), count, c, limit_[j], mind_.data(),
                                 out.data() + had, &n_moved, scratch.data(), &g.radius, &g.leader,
                                 &evals[thread], screen_.rows(), query_, &again[thread])
                  : K_.scan_group(X_, d_, members.data(), count, c, limit_[j], mind_.data(),
                                  out.data() + had, &n_moved, scratch.data(), &g.radius,
                                  &g.leader, &evals[thread]);
      out.resize(had + n_moved);
      members.resize(kept);
    });
    for (const auto e : evals) result_.evaluations += e;
    for (const auto a : again) result_.rechecks += a;
    std::vector<std::uint32_t>& mine = members_.back();
    for (const auto& buf : moved_) mine.insert(mine.end(), buf.begin(), buf.end());
    std::sort(mine.begin(), mine.end());
    Group& g = groups_.back();
    std::size_t kept = 0;
    for (const std::uint32_t x : mine) {
      owner_[x] = fresh;
      const float m = mind_[x];
      if (!(m > 0.0f)) continue;  // a duplicate of c: never picked, never updated again
      mine[kept++] = x;
      if (m > g.radius) {
        g.radius = m;
        g.leader = x;
      }
    }
    mine.resize(kept);
  }

  const float* X_;
  std::size_t n_, d_;
  FpsOptions opt_;
  const Kernels& K_;
  ThreadPool pool_;
  Poller poll_;
  std::vector<float> mind_;
  std::vector<std::int32_t> owner_;
  std::vector<Group> groups_;
  std::vector<float> limit_, crow_;
  std::vector<std::size_t> active_;
  std::vector<std::vector<float>> radius_;
  std::vector<std::vector<std::uint32_t>> lead_;
  std::vector<std::uint8_t> dirty_;  // regroup: groups whose radius is measured again
  bool lists_ = false;
  bool measure_all_ = true;
  std::vector<std::vector<std::uint32_t>> members_, moved_, scratch_;
  ScreenCopy screen_;  // the int8 screen, when it runs
  ScreenQuery query_;
  FpsResult result_;
};

}  // namespace

FpsResult fps_select(const float* candidates, std::size_t n, std::size_t d, const float* selected,
                     std::size_t m, const FpsOptions& options, const InterruptCheck& interrupted) {
  if (d == 0 && n > 0) throw std::invalid_argument("embedding dimension must be at least 1");
  if (m > 0 && selected == nullptr) throw std::invalid_argument("selected is null but m > 0");
  if (n > std::numeric_limits<std::uint32_t>::max() - 1)
    throw std::invalid_argument("at most 2^32 - 2 candidates are supported");
  FpsResult empty;
  if (n == 0 || options.n_samples == 0) {
    empty.algorithm = options.algorithm == Algorithm::Brute ? "brute" : "pruned";
    empty.kernels = (options.kernels ? *options.kernels : best_kernels()).name;
    return empty;
  }
  Selector s(candidates, n, d, options, interrupted);
  return s.run(selected, m);
}

}  // namespace datapool
