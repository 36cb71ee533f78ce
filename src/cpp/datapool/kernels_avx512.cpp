// AVX-512F kernels. This file alone is compiled with -mavx512f (plus AVX2/FMA); it is only called
// after a run-time check that the CPU has AVX-512F.
#define DATAPOOL_ISA_NS avx512
#define DATAPOOL_ISA_NAME "avx512"
#define DATAPOOL_VNNI 0
#include "datapool/kernels_avx512_impl.hpp"

namespace datapool {
const Kernels& avx512_kernels() { return avx512::kKernels; }
}  // namespace datapool
