/* cpu.c — CPUID feature detection (cpu.h). */
#include "cpu.h"

#if defined(__x86_64__)
#include <cpuid.h>

/* CPUID + XGETBV by hand: __builtin_cpu_supports is missing or incomplete
 * in some toolchains (Zig's runtime reports nothing; clang 14 lacks f16c).
 * A feature counts only if the OS also saves its register state. */
static uint64_t xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (uint64_t)hi << 32 | lo;
}

cr_cpu_features cr_cpu_detect(void)
{
    cr_cpu_features f = { false, false };
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
    bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28), f16c = c & (1u << 29);
    if (!osxsave || !avx) return f;
    uint64_t xcr0 = xgetbv0();
    if ((xcr0 & 6) != 6) return f;                  /* XMM and YMM state */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
    bool has_avx2 = b & (1u << 5), has_avx512f = b & (1u << 16);
    f.avx2 = has_avx2 && fma && f16c;
    f.avx512 = f.avx2 && has_avx512f && (xcr0 & 0xe6) == 0xe6;   /* opmask, ZMM state */
    return f;
}
#else
cr_cpu_features cr_cpu_detect(void) { return (cr_cpu_features){ false, false }; }
#endif
