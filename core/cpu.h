/* cpu.h — which SIMD instruction sets this CPU (and its OS) can run, read
 * once by CPUID; the VM's kernel tables (vm/kernels/) and the forward
 * pass's GEMM kernels (infer/gemm.h) choose from it. */
#ifndef CR_CPU_H
#define CR_CPU_H

#include "base.h"

typedef struct cr_cpu_features {
    bool avx2;      /* AVX2 + FMA + F16C, YMM state saved by the OS (x86-64-v3) */
    bool avx512;    /* avx2 and AVX-512F, opmask and ZMM state saved */
} cr_cpu_features;

/* The features of the running CPU; all false off x86-64. */
cr_cpu_features cr_cpu_detect(void);

#endif
