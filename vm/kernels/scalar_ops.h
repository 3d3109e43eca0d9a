/* scalar_ops.h — one element of every kernel op, and the exact dtype
 * conversions. The scalar kernel table is built from these, and the SIMD
 * tables use them for their tails, so a tail can never disagree with the
 * reference. NaN rules are spelled out here because SIMD min/max/compare
 * instructions have their own; the vector code reproduces these:
 *   min/max: a NaN operand is returned (a's if both are NaN);
 *   sign: NaN -> the same NaN, +-0 -> +0;
 *   comparisons are false on NaN except ne (true), as in C;
 *   and/or/not/where test `x != 0`, so NaN counts as true;
 *   fma: the first NaN operand (a, b, c), quietened; a NaN made from
 *   numbers (inf * 0, inf - inf) is x86's default NaN 0xffc00000 (the
 *   instruction's own choice among NaN operands depends on the encoding
 *   the compiler picks, so it is not left to it).
 * f32 -> f16 keeps subnormals, overflows to inf, and writes every NaN as
 * sign | 0x7E00 (payloads are not kept; torch's scalar path does the same).
 */
#ifndef CR_SCALAR_OPS_H
#define CR_SCALAR_OPS_H

#include <math.h>
#include <stdint.h>
#include <string.h>
#include "dtype.h"

static inline float el_min(float a, float b) { return a != a ? a : b != b ? b : (a < b ? a : b); }
static inline float el_max(float a, float b) { return a != a ? a : b != b ? b : (a > b ? a : b); }
static inline float el_sign(float a) { return a != a ? a : a > 0 ? 1.0f : a < 0 ? -1.0f : 0.0f; }
static inline float el_abs(float a) { return cr_bits_f32(cr_f32_bits(a) & 0x7fffffffu); }
static inline float el_neg(float a) { return cr_bits_f32(cr_f32_bits(a) ^ 0x80000000u); }

static inline float el_fma(float a, float b, float c)
{
    float r = fmaf(a, b, c);
    if (r == r) return r;
    if (a != a) return cr_bits_f32(cr_f32_bits(a) | 0x00400000u);
    if (b != b) return cr_bits_f32(cr_f32_bits(b) | 0x00400000u);
    if (c != c) return cr_bits_f32(cr_f32_bits(c) | 0x00400000u);
    return cr_bits_f32(0xffc00000u);
}

static inline uint32_t el_bf16_round_bits(uint32_t u)
{
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u | 0x00400000u) & 0xffff0000u;
    return (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
}

static inline float el_round_bf16(float f) { return cr_bits_f32(el_bf16_round_bits(cr_f32_bits(f))); }
static inline float el_round_f16(float f) { return cr_f16_to_f32(cr_f32_to_f16(f)); }

static inline float el_f8e4m3_to_f32(uint8_t v)   /* float8_e4m3fn: no inf, 0x7f/0xff NaN */
{
    float s = (v & 0x80) ? -1.0f : 1.0f;
    unsigned e = (v >> 3) & 15u, m = v & 7u;
    if (e == 15 && m == 7) return s * NAN;
    if (e == 0) return s * ldexpf((float)m, -9);
    return s * ldexpf(1.0f + (float)m / 8.0f, (int)e - 7);
}

static inline float el_f8e5m2_to_f32(uint8_t v) { return cr_f16_to_f32((uint16_t)(v << 8)); }

#endif
