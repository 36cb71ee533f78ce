// The packer's loops for any CPU (SSE2 on x86-64, whatever the compiler vectorises elsewhere).
#define DATAPOOL_PACK_ISA_NS scalar
#include "datapool/pack_impl.hpp"

namespace datapool {
namespace pack_detail {
PackFrameFn scalar_pack_frame() { return &scalar::pack_frame; }
}  // namespace pack_detail
}  // namespace datapool
