// Which instruction sets the kernels may compile: NEUROSIM_X86 is 1 on x86-64 unless the build
// defines NEUROSIM_SCALAR_ONLY (CMake option of that name), and 0 elsewhere (arm64, ...). Every
// <immintrin.h> use and every function with an x86 target attribute sits inside #if NEUROSIM_X86;
// the scalar code is always compiled and the run-time dispatch falls back to it (the cpu_has_*
// probes return false when NEUROSIM_X86 is 0).
#pragma once

#if !defined(NEUROSIM_SCALAR_ONLY) && (defined(__x86_64__) || defined(_M_X64))
#define NEUROSIM_X86 1
#include <immintrin.h>
#else
#define NEUROSIM_X86 0
#endif

// A function compiled for x86 features, e.g. NEUROSIM_TARGET("avx2"), for bodies without
// intrinsics that are the scalar code compiled again; a plain function without NEUROSIM_X86 (never
// chosen there: the probes say false).
#if NEUROSIM_X86
#define NEUROSIM_TARGET(features) __attribute__((target(features)))
#else
#define NEUROSIM_TARGET(features)
#endif

namespace neurosim {
// Run-time probe of an x86 feature by its GCC/Clang name ("avx2", "avx512vnni", ...); false on
// builds without x86 paths.
#if NEUROSIM_X86
#define NEUROSIM_CPU_SUPPORTS(feature) __builtin_cpu_supports(feature)
#else
#define NEUROSIM_CPU_SUPPORTS(feature) false
#endif
// A CPU spin-wait hint (pause on x86, nothing elsewhere).
inline void cpu_relax() {
#if NEUROSIM_X86
    _mm_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}
}  // namespace neurosim
