// AVX-512F kernels whose int8 screen uses VNNI byte dot products (vpdpbusd). This file alone is
// compiled with -mavx512f -mavx512bw -mavx512vnni (plus AVX2/FMA); it is only called after a
// run-time check that the CPU has all three. Its float32 code is the avx512 set's.
#define DATAPOOL_ISA_NS avx512vnni
#define DATAPOOL_ISA_NAME "avx512vnni"
#define DATAPOOL_VNNI 1
#include "datapool/kernels_avx512_impl.hpp"

namespace datapool {
const Kernels& avx512vnni_kernels() { return avx512vnni::kKernels; }
}  // namespace datapool
