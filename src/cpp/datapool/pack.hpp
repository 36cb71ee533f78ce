// Frame-batch packer: decoded uint8 frames (HWC, any size) -> one float32 NCHW batch, resized to
// the model's input and normalised with a per-channel affine map. Plain C++17, no Python.
//
// Resize, decided per axis (the two axes are independent, so one may shrink while the other
// grows):
// - identity when the sizes are equal;
// - area averaging when the axis shrinks: output pixel o covers the source interval
//   [o*in/out, (o+1)*in/out) and averages the source pixels weighted by their exact fractional
//   coverage (OpenCV INTER_AREA; PIL BOX for integer ratios). Weights are exact rationals,
//   computed in integers and rounded once to float;
// - bilinear when it grows: half-pixel centres, src = (o + 0.5) * in/out - 0.5, taps clamped to
//   the edge (OpenCV INTER_LINEAR, PIL BILINEAR when enlarging).
// Values stay in float from the uint8 input to the output (no rounding to uint8 in between).
// Then value = resized * scale[c] + shift[c]. Grayscale (1 channel) is replicated to the three
// output channels before the affine map; the alpha channel of RGBA is dropped.
//
// Work: per call, one weight table per axis and distinct input length; per frame, either
// vertical pass then horizontal pass (row by row, a one-row scratch) or horizontal then
// vertical (scratch of H rows of the resized width), whichever the table sizes make cheaper.
// The vertical pass is a weighted sum of whole contiguous rows (vectorised); the horizontal pass
// gathers a few taps per output pixel. Frames are spread over a thread pool; each thread has one
// scratch buffer for the call, sized for the largest frame, so nothing is allocated per frame.
// The loops live in pack_impl.hpp, compiled for the baseline and for AVX2 (pack_scalar.cpp,
// pack_avx2.cpp) and picked at run time; both give the same bits.
#pragma once

#include <cstddef>
#include <cstdint>

namespace datapool {

// One decoded frame: height x width pixels of `channels` (1, 3 or 4) interleaved uint8 values.
// Each row is contiguous (pixel stride = channels bytes); rows are `row_stride` bytes apart
// (any value, negative for a flipped view, 0 for a broadcast row: the packer only reads).
struct FrameView {
  const std::uint8_t* data = nullptr;
  std::size_t height = 0;
  std::size_t width = 0;
  std::size_t channels = 0;
  std::ptrdiff_t row_stride = 0;
};

struct PackOptions {
  std::size_t out_height = 0;
  std::size_t out_width = 0;
  float scale[3] = {1.0f, 1.0f, 1.0f};
  float shift[3] = {0.0f, 0.0f, 0.0f};
  std::size_t threads = 0;  // 0: every hardware thread
};

// Writes frame i into out + i * 3 * out_height * out_width (C-contiguous (3, OH, OW) each).
// Throws std::invalid_argument on an empty frame, a channel count other than 1, 3 or 4, or an
// empty output size. Nothing else of `out` is touched.
void pack_frames(const FrameView* frames, std::size_t n_frames, float* out,
                 const PackOptions& options);

// The instruction set of the loops pack_frames runs on this CPU: "avx2" or "scalar" (what the
// compiler vectorises for the baseline, SSE2 on x86-64). Both give the same bits.
const char* pack_simd();

}  // namespace datapool
