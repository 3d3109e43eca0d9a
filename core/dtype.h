/* dtype.h — tensor element types as safetensors names them, their sizes, and
 * the exact scalar conversions (round-to-nearest-even, as torch does).
 *
 * The scalar conversions here are the reference every SIMD kernel is tested
 * against. f32 -> bf16: NaN -> 0x7FC0 (sign kept), else add 0x7FFF + lsb and
 * shift (torch's rule). f32 -> f16: full IEEE binary16 with subnormals and
 * overflow to inf.
 */
#ifndef CR_DTYPE_H
#define CR_DTYPE_H

#include <stdint.h>
#include <string.h>
#include <stdbool.h>

/* Order is the safetensors writer's dtype rank (ascending); the writer sorts
 * tensors by rank descending then name, as the Python library does. */
#define CR_DTYPE_LIST(X) \
    X(BOOL, "BOOL", 1)   \
    X(U8, "U8", 1)       \
    X(I8, "I8", 1)       \
    X(F8_E5M2, "F8_E5M2", 1) \
    X(F8_E4M3, "F8_E4M3", 1) \
    X(I16, "I16", 2)     \
    X(U16, "U16", 2)     \
    X(F16, "F16", 2)     \
    X(BF16, "BF16", 2)   \
    X(I32, "I32", 4)     \
    X(U32, "U32", 4)     \
    X(F32, "F32", 4)     \
    X(F64, "F64", 8)     \
    X(I64, "I64", 8)     \
    X(U64, "U64", 8)

typedef enum cr_dtype {
#define X(name, str, size) CR_DTYPE_##name,
    CR_DTYPE_LIST(X)
#undef X
    CR_DTYPE_COUNT,
    CR_DTYPE_NONE = 255
} cr_dtype;

/* "F32" etc.; NULL for an invalid value */
const char *cr_dtype_name(cr_dtype t);
/* bytes per element (0 for invalid) */
unsigned cr_dtype_size(cr_dtype t);
/* parse a safetensors dtype code ("BF16"); false if unknown */
bool cr_dtype_parse(const char *s, cr_dtype *out);
/* parse a mergekit/torch dtype name ("bfloat16", "torch.float16", "float32",
 * "int64"); false if unknown */
bool cr_dtype_parse_torch(const char *s, cr_dtype *out);
/* "bfloat16" etc., for config.json's torch_dtype */
const char *cr_dtype_torch_name(cr_dtype t);
bool cr_dtype_is_float(cr_dtype t);   /* F16, BF16, F32, F64, F8_* */
/* torch's promotion for two float dtypes: equal -> same; bf16+f16 -> f32;
 * otherwise the wider. */
cr_dtype cr_dtype_promote(cr_dtype a, cr_dtype b);

/* ---- scalar conversions (reference implementations) ------------------ */

static inline uint32_t cr_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float cr_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static inline float cr_bf16_to_f32(uint16_t h) { return cr_bits_f32((uint32_t)h << 16); }

static inline uint16_t cr_f32_to_bf16(float f)
{
    uint32_t u = cr_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* f16 as torch converts it (c10's fp16_ieee_from/to_fp32_value): NaN
 * becomes the quiet NaN sign|0x7E00, subnormals are kept, values from 65520
 * up round to inf. Inline: the VM's kernels call these per element. */
static inline uint16_t cr_f32_to_f16(float f)
{
    uint32_t u = cr_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00u;                 /* NaN */
    if (a >= 0x477ff000u) return sign | 0x7c00u;                /* rounds to inf */
    if (a < 0x38800000u) {                                       /* f16 subnormal or zero */
        /* adding 0.5 aligns the f16 subnormal grid with f32's last bit, so
         * the FPU's own round-to-nearest-even does the rounding */
        float t = cr_bits_f32(a) + 0.5f;
        return sign | (uint16_t)(cr_f32_bits(t) - 0x3f000000u);
    }
    uint32_t odd = (a >> 13) & 1u;
    a += 0xc8000fffu + odd;                                      /* rebias 127 -> 15, round */
    return sign | (uint16_t)(a >> 13);
}

static inline float cr_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) {
        float v = (float)m * (1.0f / 16777216.0f);               /* m * 2^-24, exact */
        return cr_bits_f32(cr_f32_bits(v) | sign);
    }
    if (e == 31) return cr_bits_f32(sign | 0x7f800000u | (m << 13) | (m ? 0x00400000u : 0));
    return cr_bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

float cr_f8e4m3_to_f32(uint8_t v);
float cr_f8e5m2_to_f32(uint8_t v);

/* round an f32 to the nearest value representable in `t` and back
 * (identity for F32/F64): the "per-operation rounding" of torch's CPU
 * arithmetic on bf16/f16 tensors. */
static inline float cr_round_bf16(float f) { return cr_bf16_to_f32(cr_f32_to_bf16(f)); }
static inline float cr_round_f16(float f) { return cr_f16_to_f32(cr_f32_to_f16(f)); }

/* Convert n elements between any float dtype and f32 (F64, F16, BF16, F32,
 * F8_* on load; F64, F16, BF16, F32 on store). Scalar reference; the VM's
 * kernels have SIMD variants. */
void cr_convert_to_f32(cr_dtype src_type, const void *src, float *dst, size_t n);
void cr_convert_from_f32(cr_dtype dst_type, const float *src, void *dst, size_t n);

#endif
