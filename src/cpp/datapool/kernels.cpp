// Run-time choice of the kernel set.
#include "datapool/kernels.hpp"

#include <cstring>
#include <string>

namespace datapool {

const Kernels& scalar_kernels();
#if defined(DATAPOOL_X86_KERNELS)
const Kernels& avx2_kernels();
const Kernels& avx512_kernels();
const Kernels& avx512vnni_kernels();
#endif

namespace {
[[maybe_unused]] bool cpu_has(const char* isa) {
#if defined(DATAPOOL_X86_KERNELS)
  __builtin_cpu_init();
  if (std::strcmp(isa, "avx2") == 0)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (std::strcmp(isa, "avx512") == 0) return __builtin_cpu_supports("avx512f");
  if (std::strcmp(isa, "avx512vnni") == 0)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vnni");
#endif
  return std::strcmp(isa, "scalar") == 0;
}
}  // namespace

const Kernels* kernels_by_name(const char* name) {
  if (std::strcmp(name, "scalar") == 0) return &scalar_kernels();
#if defined(DATAPOOL_X86_KERNELS)
  if (std::strcmp(name, "avx2") == 0 && cpu_has("avx2")) return &avx2_kernels();
  if (std::strcmp(name, "avx512") == 0 && cpu_has("avx512")) return &avx512_kernels();
  if (std::strcmp(name, "avx512vnni") == 0 && cpu_has("avx512vnni")) return &avx512vnni_kernels();
#endif
  return nullptr;
}

const Kernels& best_kernels() {
  static const Kernels* best = [] {
    for (const char* name : {"avx512vnni", "avx512", "avx2"})
      if (const Kernels* k = kernels_by_name(name)) return k;
    return &scalar_kernels();
  }();
  return *best;
}

const char* supported_kernels() {
  static const std::string names = [] {
    std::string s = "scalar";
    for (const char* name : {"avx2", "avx512", "avx512vnni"})
      if (kernels_by_name(name) != nullptr) s += std::string(",") + name;
    return s;
  }();
  return names.c_str();
}

}  // namespace datapool
