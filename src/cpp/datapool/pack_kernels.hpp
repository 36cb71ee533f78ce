// Plain data shared by the packer's driver (pack.cpp) and its per-instruction-set loops
// (pack_impl.hpp, compiled by pack_scalar.cpp and pack_avx2.cpp). No member functions, no
// library templates: the loops must not instantiate code that the linker could share across
// files compiled for different instruction sets.
#pragma once

#include <cstddef>

#include "datapool/pack.hpp"

namespace datapool {
namespace pack_detail {

// The taps of one axis: output o reads source pixels start[o] .. start[o] + count[o] - 1 with
// weights weight[o * max_taps + k], which sum to 1. With 3 or more taps (area only) all the
// middle weights are equal (full coverage).
struct AxisTaps {
  std::size_t in, out, max_taps;
  bool identity;
  const std::size_t* start;
  const std::size_t* count;
  const float* weight;
};

struct FramePlan {
  AxisTaps y, x;
  bool vertical_first;
};

using PackFrameFn = void (*)(const FrameView& frame, const FramePlan& plan, float* scratch,
                             float* out, const PackOptions& options);

PackFrameFn scalar_pack_frame();
PackFrameFn avx2_pack_frame();  // only defined on x86-64 builds (DATAPOOL_X86_KERNELS)

}  // namespace pack_detail
}  // namespace datapool
