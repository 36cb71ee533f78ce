// The int8 screen's copy of the candidates, and its compacted copy of the rows that are not
// dormant, as farthest-point selection (fps.cpp) and the combined strategies (strategies.cpp)
// keep them. The bound itself is derived in datapool/screen.hpp. Plain C++17, no Python.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "datapool/fps.hpp"  // Screen
#include "datapool/kernels.hpp"
#include "datapool/poller.hpp"
#include "datapool/screen.hpp"
#include "datapool/thread_pool.hpp"

namespace datapool {

class ScreenCopy {
 public:
  // Whether a selection of `picks` picks from n x d candidates screens: On wherever it can run
  // (d <= kScreenMaxDim, 2 picks or more), Auto where it also pays: candidates of 16 MiB or more
  // and 8 picks or more (smaller ones stay in cache, where reading fewer bytes saves little; the
  // copy costs about one pass to build).
  static bool wanted(Screen screen, std::size_t n, std::size_t d, std::size_t picks) {
    if (screen == Screen::Off || d > kScreenMaxDim || picks < 2) return false;
    return screen == Screen::On || (n * d * sizeof(float) >= (std::size_t{16} << 20) && picks >= 8);
  }

  // The copy of X (n x d) and each row's threshold from its squared min-distance mind[i], on the
  // caller's threads, with its interrupt checks.
  void build(const float* X, std::size_t n, std::size_t d, const Kernels& K, const float* mind,
             ThreadPool& pool, Poller& poll) {
    d_ = d;
    q_.resize(n * d);
    meta_.resize(n);
    err_.resize(n);
    for_rows_polled(pool, poll, n, 8192, 8, [&](std::size_t lo, std::size_t hi) {
      K.screen_quantize(X, d, lo, hi, q_.data(), meta_.data(), err_.data());
      for (std::size_t i = lo; i < hi; ++i) meta_[i].thr = screen_threshold(mind[i], err_[i], d);
    });
    query16_.resize(d);
    queryu8_.resize(d);
    rows_ = {q_.data(), meta_.data(), err_.data()};
    built_ = true;
  }

  bool built() const { return built_; }
  const ScreenRows& rows() const { return rows_; }

  // A pass over every row (or every row of the compacted copy) in tasks of this many rows: at
  // least 16384, about four a thread.
  static std::size_t pass_chunk(std::size_t rows, std::size_t threads) {
    return std::max<std::size_t>(16384, (rows + threads * 4 - 1) / (threads * 4));
  }

  // One task of such a pass, rows [lo, hi) (positions in the compacted copy when `compact`): the
  // rows of the groups in reach are screened where the copy is built, or measured in float32
  // (the Kernels entries say what each updates).
  void update_rows(const Kernels& K, bool compact, bool measure_all, const float* X,
                   std::size_t d, std::size_t lo, std::size_t hi, const float* c, float* mind,
                   std::int32_t* owner, const float* limit2, std::int32_t new_group,
                   float* radius, std::uint32_t* leader, const ScreenQuery& query,
                   std::uint64_t* evaluations, std::uint64_t* rechecks) const {
    if (compact)
      K.screened_update_compact(X, d, lo, hi, row_of_.data(), c, mind, owner, limit2, new_group,
                                radius, leader, rows_, crows_, query, rechecks);
    else if (built_)
      K.screened_update(X, d, lo, hi, c, mind, owner, limit2, new_group, radius, leader,
                        evaluations, measure_all, rows_, query, rechecks);
    else
      K.pruned_update(X, d, lo, hi, c, mind, owner, limit2, new_group, radius, leader,
                      evaluations, measure_all);
  }

  // Row i's min-distance changed to m outside the kernels (which keep thr in step themselves).
  void set_threshold(std::size_t i, float m) {
    meta_[i].thr = screen_threshold(m, err_[i], d_);
  }

  // Candidate p as the new center. Unusable (the first pick of an empty pool, where every row
  // is at +inf and nothing can be ruled out), or a center that is not screened (err = +inf),
  // rules nothing out: its rows are all measured, and their thresholds still follow.
  ScreenQuery query(std::size_t p, bool usable) {
    const std::int8_t* q = q_.data() + p * d_;
    for (std::size_t j = 0; j < d_; ++j) {
      query16_[j] = q[j];
      queryu8_[j] = static_cast<std::uint8_t>(q[j] + 128);
    }
    const float err = usable ? err_[p] : std::numeric_limits<float>::infinity();
    return {query16_.data(), queryu8_.data(), meta_[p].scale, meta_[p].norm2, err};
  }

  // --- the compacted copy (passes that screen every row) ----------------------------------------
  // A row is dormant when 4 m (1 + 1/128) <= R^2, R the new center's min-distance: every
  // selected point is at least R from c, so by the triangle inequality the row is at least
  // about 2 sqrt(m) - sqrt(m) from c and cannot get closer (the margin covers the roundings of
  // m, R^2 and the float32 distance, each within (2d + 4) 2^-24 relative: 60 times that at
  // d = kScreenMaxDim). dormant_max_ bounds the m of the rows left out, and the copy is rebuilt
  // once R is small enough to wake one. On clustered data every row of a cluster already reached
  // is dormant: the copy holds only the rows of the clusters not reached yet, and the pass
  // streams those. Rows at distance 0 are left out for good.
  static constexpr float kDormantScale = 4.0f * (1.0f + 1.0f / 128.0f);
  static bool dormant(float m, float R2) { return !(kDormantScale * m > R2); }

  // Whether this pass streams the compacted copy; builds or shrinks it first where that pays.
  // Only passes that screen every row keep the copy's thresholds: after any other pass, call
  // drop_compact().
  bool prepare_compact(float R2, const float* mind, std::size_t n) {
    if (R2 == std::numeric_limits<float>::infinity()) return false;
    if (compact_ && !dormant(dormant_max_, R2)) compact_ = false;  // some rows wake up
    if (!compact_) {
      if (++compact_wait_ < 8) return false;  // look again in a few passes
      compact_wait_ = 0;
      rebuild_compact(R2, mind, n);
    } else if (dormant_since_ > row_of_.size() / 8) {
      shrink_compact(R2, mind);
    }
    return compact_;
  }

  void drop_compact() { compact_ = false; }

  // Frees the compacted copy (the member-list passes never use it).
  void release_compact() {
    compact_ = false;
    std::vector<std::int8_t>().swap(cq_);
    std::vector<ScreenMeta>().swap(cmeta_);
    std::vector<std::uint32_t>().swap(row_of_);
  }

  // Rows that went dormant (or to distance 0) since the copy was last built or shrunk.
  void add_dormant(std::uint64_t count) { dormant_since_ += count; }

  const std::vector<std::uint32_t>& row_of() const { return row_of_; }
  const ScreenRows& compact_rows() const { return crows_; }

 private:
  // The rows that are not dormant (nor at distance 0), and the copy of them, unless they are
  // more than 7/8 of all rows: then the copy would save too little and none is made.
  void rebuild_compact(float R2, const float* mind, std::size_t n) {
    row_of_.clear();
    dormant_max_ = -1.0f;
    for (std::size_t i = 0; i < n; ++i) {
      const float m = mind[i];
      if (!(m > 0.0f)) continue;
      if (!dormant(m, R2))
        row_of_.push_back(static_cast<std::uint32_t>(i));
      else
        dormant_max_ = std::max(dormant_max_, m);
    }
    if (row_of_.size() > n - n / 8) return;
    cq_.resize(row_of_.size() * d_);
    cmeta_.resize(row_of_.size());
    for (std::size_t k = 0; k < row_of_.size(); ++k) {
      const std::size_t i = row_of_[k];
      std::memcpy(cq_.data() + k * d_, q_.data() + i * d_, d_);
      cmeta_[k] = meta_[i];
    }
    crows_ = {cq_.data(), cmeta_.data(), err_.data()};
    dormant_since_ = 0;
    compact_ = true;
  }

  // Drops the rows that went dormant (or to distance 0) from the copy, in place, in order.
  void shrink_compact(float R2, const float* mind) {
    std::size_t kept = 0;
    for (std::size_t k = 0; k < row_of_.size(); ++k) {
      const std::uint32_t i = row_of_[k];
      const float m = mind[i];
      if (!(m > 0.0f)) continue;
      if (dormant(m, R2)) {
        dormant_max_ = std::max(dormant_max_, m);
        continue;
      }
      if (kept != k) {
        std::memcpy(cq_.data() + kept * d_, cq_.data() + k * d_, d_);
        cmeta_[kept] = cmeta_[k];
        row_of_[kept] = i;
      }
      ++kept;
    }
    row_of_.resize(kept);
    dormant_since_ = 0;
  }

  std::size_t d_ = 0;
  bool built_ = false;
  // The copy (n x d), per-row meta (scale, |copy|^2, threshold, sum) and error.
  std::vector<std::int8_t> q_;
  std::vector<ScreenMeta> meta_;
  std::vector<float> err_;
  std::vector<std::int16_t> query16_;
  std::vector<std::uint8_t> queryu8_;
  ScreenRows rows_;
  // The compacted copy: the int8 rows and metadata of rows row_of_ (ascending).
  bool compact_ = false;
  std::size_t compact_wait_ = 0, dormant_since_ = 0;
  float dormant_max_ = -1.0f;
  std::vector<std::uint32_t> row_of_;
  std::vector<std::int8_t> cq_;
  std::vector<ScreenMeta> cmeta_;
  ScreenRows crows_;
};

}  // namespace datapool
