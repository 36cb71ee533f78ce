// The packer's loops compiled with -mavx2 (no -mfma, so results equal the scalar build's bit for
// bit); called only after a run-time check that the CPU has AVX2. AVX2 vectorises the uint8 ->
// float conversions and the de-interleaving writes: about 4x faster packing at 128x128 without
// resize, ~20% faster with a 720p area resize (measured on this project's machine).
#define DATAPOOL_PACK_ISA_NS avx2
#include "datapool/pack_impl.hpp"

namespace datapool {
namespace pack_detail {
PackFrameFn avx2_pack_frame() { return &avx2::pack_frame; }
}  // namespace pack_detail
}  // namespace datapool
