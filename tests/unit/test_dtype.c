/* test_dtype.c — dtype names and parsing, and the scalar conversions checked
 * against references computed here independently (double arithmetic,
 * ldexp, nextafter), on every 16-bit pattern and on rounding boundaries. */
#include <math.h>
#include <stdint.h>

#include "dtype.h"
#include "harness.h"

/* value of an IEEE binary16 pattern, computed with ldexp in double */
static double ref_f16_value(uint16_t h)
{
    int sign = h >> 15, exp = (h >> 10) & 31, mant = h & 1023;
    double v;
    if (exp == 31) v = mant ? NAN : INFINITY;
    else if (exp == 0) v = ldexp(mant, -24);
    else v = ldexp(1024 + mant, exp - 25);
    return sign ? -v : v;
}

static double ref_bf16_value(uint16_t h)
{
    int sign = h >> 15, exp = (h >> 7) & 255, mant = h & 127;
    double v;
    if (exp == 255) v = mant ? NAN : INFINITY;
    else if (exp == 0) v = ldexp(mant, -133);
    else v = ldexp(128 + mant, exp - 134);
    return sign ? -v : v;
}

/* Reference RNE: the nearest of the finite patterns bracketing x (found
 * by binary search over the ordered non-negative patterns), ties to the
 * even pattern; beyond max + half ulp it is inf. `maxbits` is the largest
 * finite pattern, `value` the decoder above. */
static uint16_t ref_round(double x, uint16_t maxbits, double (*value)(uint16_t))
{
    uint16_t sign = signbit(x) ? 0x8000 : 0;
    double a = fabs(x);
    double maxv = value(maxbits);
    double ulp = maxv - value((uint16_t)(maxbits - 1));
    if (a >= maxv + ulp / 2) {
        /* the tie at max + ulp/2 goes to the even neighbour: inf (maxbits is odd) */
        return (uint16_t)(sign | (maxbits + 1));
    }
    uint16_t lo = 0, hi = maxbits;             /* value(lo) <= a < value(hi) or a >= max */
    if (a >= maxv) return (uint16_t)(sign | maxbits);
    while (hi - lo > 1) {
        uint16_t mid = (uint16_t)((lo + hi) / 2);
        if (value(mid) <= a) lo = mid; else hi = mid;
    }
    double dl = a - value(lo), dh = value(hi) - a;
    uint16_t r = dl < dh ? lo : dh < dl ? hi : ((lo & 1) ? hi : lo);
    return (uint16_t)(sign | r);
}

TEST(names_and_parse)
{
    cr_dtype t;
    CHECK_STR(cr_dtype_name(CR_DTYPE_BF16), "BF16");
    CHECK(cr_dtype_name((cr_dtype)99) == NULL);
    CHECK_EQ_INT(cr_dtype_size(CR_DTYPE_F64), 8);
    CHECK_EQ_INT(cr_dtype_size(CR_DTYPE_F8_E4M3), 1);
    CHECK_EQ_INT(cr_dtype_size((cr_dtype)99), 0);
    CHECK(cr_dtype_parse("F8_E5M2", &t) && t == CR_DTYPE_F8_E5M2);
    CHECK(!cr_dtype_parse("f32", &t));
    CHECK(!cr_dtype_parse("F4", &t));
    CHECK(cr_dtype_parse_torch("bfloat16", &t) && t == CR_DTYPE_BF16);
    CHECK(cr_dtype_parse_torch("torch.float16", &t) && t == CR_DTYPE_F16);
    CHECK(cr_dtype_parse_torch("float32", &t) && t == CR_DTYPE_F32);
    CHECK(cr_dtype_parse_torch("int64", &t) && t == CR_DTYPE_I64);
    CHECK(!cr_dtype_parse_torch("torch.", &t));
    CHECK(!cr_dtype_parse_torch("bf16", &t));
    CHECK_STR(cr_dtype_torch_name(CR_DTYPE_BF16), "bfloat16");
    CHECK_STR(cr_dtype_torch_name(CR_DTYPE_F16), "float16");
    CHECK_STR(cr_dtype_torch_name(CR_DTYPE_F32), "float32");
    CHECK(cr_dtype_is_float(CR_DTYPE_F8_E4M3));
    CHECK(!cr_dtype_is_float(CR_DTYPE_I64));
}

TEST(promotion)
{
    CHECK_EQ_INT(cr_dtype_promote(CR_DTYPE_BF16, CR_DTYPE_BF16), CR_DTYPE_BF16);
    CHECK_EQ_INT(cr_dtype_promote(CR_DTYPE_BF16, CR_DTYPE_F16), CR_DTYPE_F32);
    CHECK_EQ_INT(cr_dtype_promote(CR_DTYPE_F16, CR_DTYPE_BF16), CR_DTYPE_F32);
    CHECK_EQ_INT(cr_dtype_promote(CR_DTYPE_F16, CR_DTYPE_F32), CR_DTYPE_F32);
    CHECK_EQ_INT(cr_dtype_promote(CR_DTYPE_F64, CR_DTYPE_BF16), CR_DTYPE_F64);
}

TEST(all_f16_patterns)
{
    int bad = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = cr_f16_to_f32(h);
        double r = ref_f16_value(h);
        if (isnan(r)) {
            if (!isnan(f) || !isnan(cr_bits_f32(cr_f32_bits(f)))) bad++;
            uint16_t back = cr_f32_to_f16(f);
            if ((back & 0x7c00) != 0x7c00 || !(back & 0x3ff) || (back >> 15) != (h >> 15)) bad++;
            continue;
        }
        if ((double)f != r || !signbit(f) != !signbit(r)) { if (bad++ < 5) fprintf(stderr, "f16 %04x -> %g want %g\n", h, f, r); }
        if (cr_f32_to_f16(f) != h) { if (bad++ < 5) fprintf(stderr, "f16 %04x round trip -> %04x\n", h, cr_f32_to_f16(f)); }
    }
    CHECK_EQ_INT(bad, 0);
}

TEST(all_bf16_patterns)
{
    int bad = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = cr_bf16_to_f32(h);
        double r = ref_bf16_value(h);
        if (isnan(r)) {
            uint16_t back = cr_f32_to_bf16(f);
            if (!isnan(f) || (back & 0x7f80) != 0x7f80 || !(back & 0x7f) || !(back & 0x40)) bad++;
            continue;
        }
        if ((double)f != r || !signbit(f) != !signbit(r)) bad++;
        if (cr_f32_to_bf16(f) != h) bad++;
        /* bf16 -> f32 -> f16 -> f32 agrees with RNE of the exact value */
        uint16_t via = cr_f32_to_f16(f);
        if (via != ref_round(r, 0x7bff, ref_f16_value)) { if (bad++ < 5) fprintf(stderr, "bf16 %04x -> f16 %04x\n", h, via); }
    }
    CHECK_EQ_INT(bad, 0);
}

/* For every pair of adjacent finite positive patterns the midpoint is a
 * tie (goes to the even pattern) and its f32 neighbours go to the nearer
 * side. Midpoints of f16 and bf16 values are exact in f32. */
static int check_midpoints(uint16_t maxbits, double (*value)(uint16_t), uint16_t (*conv)(float))
{
    int bad = 0;
    for (uint16_t h = 0; h < maxbits; h++) {
        double lo = value(h), hi = value((uint16_t)(h + 1));
        float mid = (float)((lo + hi) / 2);
        if ((double)mid != (lo + hi) / 2) { bad++; continue; }
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : h;
        if (conv(mid) != even) { if (bad++ < 5) fprintf(stderr, "tie %04x: got %04x\n", h, conv(mid)); }
        if (conv(-mid) != (even | 0x8000)) bad++;
        if (conv(nextafterf(mid, INFINITY)) != h + 1) bad++;
        if (conv(nextafterf(mid, 0)) != h) bad++;
    }
    return bad;
}

TEST(rounding_boundaries)
{
    CHECK_EQ_INT(check_midpoints(0x7bff, ref_f16_value, cr_f32_to_f16), 0);
    CHECK_EQ_INT(check_midpoints(0x7f7f, ref_bf16_value, cr_f32_to_bf16), 0);
    /* f16 overflow: 65504 is the max; 65519.99 rounds down; 65520 is inf */
    CHECK_EQ_INT(cr_f32_to_f16(65504.0f), 0x7bff);
    CHECK_EQ_INT(cr_f32_to_f16(nextafterf(65520.0f, 0)), 0x7bff);
    CHECK_EQ_INT(cr_f32_to_f16(65520.0f), 0x7c00);
    CHECK_EQ_INT(cr_f32_to_f16(-1e10f), 0xfc00);
    CHECK_EQ_INT(cr_f32_to_f16(INFINITY), 0x7c00);
    CHECK_EQ_INT(cr_f32_to_bf16(INFINITY), 0x7f80);
    CHECK_EQ_INT(cr_f32_to_bf16(3.4028235e38f), 0x7f80);  /* f32 max rounds up to inf in bf16 */
    /* f16 subnormals: 2^-24 is the smallest; 2^-25 ties to 0; just above rounds up */
    CHECK_EQ_INT(cr_f32_to_f16(0x1p-24f), 0x0001);
    CHECK_EQ_INT(cr_f32_to_f16(0x1p-25f), 0x0000);
    CHECK_EQ_INT(cr_f32_to_f16(nextafterf(0x1p-25f, 1)), 0x0001);
    CHECK_EQ_INT(cr_f32_to_f16(0x1.8p-24f), 0x0002);        /* 1.5 ulp ties to even 2 */
    CHECK_EQ_INT(cr_f32_to_f16(-0.0f), 0x8000);
    CHECK_EQ_INT(cr_f32_to_f16(1e-30f), 0x0000);
    CHECK_EQ_INT(cr_f32_to_f16(nextafterf(0x1p-14f, 0)), 0x0400); /* rounds up into the normals */
    CHECK_EQ_INT(cr_f32_to_bf16(0x1p-131f), 0x0004);         /* bf16 subnormal, exact */
    CHECK_EQ_INT(cr_f32_to_bf16(NAN) & 0x7fc0, 0x7fc0);
}

/* A sweep over f32 bit patterns (every 997th) compared with the reference. */
TEST(f32_sweep)
{
    int bad = 0;
    for (uint64_t u = 0; u < 0x100000000ull; u += 997) {
        float f = cr_bits_f32((uint32_t)u);
        if (isnan(f)) continue;
        uint16_t h = cr_f32_to_f16(f), rh = ref_round(f, 0x7bff, ref_f16_value);
        uint16_t b = cr_f32_to_bf16(f), rb = ref_round(f, 0x7f7f, ref_bf16_value);
        if (h != rh) { if (bad++ < 5) fprintf(stderr, "f16(%a) = %04x want %04x\n", f, h, rh); }
        if (b != rb) { if (bad++ < 5) fprintf(stderr, "bf16(%a) = %04x want %04x\n", f, b, rb); }
    }
    CHECK_EQ_INT(bad, 0);
}

TEST(f8)
{
    CHECK(cr_f8e4m3_to_f32(0x7e) == 448.0f);
    CHECK(isnan(cr_f8e4m3_to_f32(0x7f)));
    CHECK(isnan(cr_f8e4m3_to_f32(0xff)));
    CHECK(cr_f8e4m3_to_f32(0x38) == 1.0f);
    CHECK(cr_f8e4m3_to_f32(0x01) == 0x1p-9f);
    CHECK(cr_f8e4m3_to_f32(0xb8) == -1.0f);
    CHECK(cr_f8e4m3_to_f32(0x78) == 256.0f);       /* exponent 15 is finite in e4m3fn */
    CHECK(cr_f8e5m2_to_f32(0x3c) == 1.0f);
    CHECK(cr_f8e5m2_to_f32(0x7b) == 57344.0f);
    CHECK(isinf(cr_f8e5m2_to_f32(0x7c)));
    CHECK(isnan(cr_f8e5m2_to_f32(0x7d)));
    CHECK(cr_f8e5m2_to_f32(0x01) == 0x1p-16f);
    /* every e4m3 value against ldexp */
    int bad = 0;
    for (int v = 0; v < 256; v++) {
        int e = (v >> 3) & 15, m = v & 7;
        if (e == 15 && m == 7) continue;
        double r = e ? ldexp(8 + m, e - 10) : ldexp(m, -9);
        if (v & 0x80) r = -r;
        if ((double)cr_f8e4m3_to_f32((uint8_t)v) != r) bad++;
    }
    CHECK_EQ_INT(bad, 0);
}

TEST(bulk)
{
    float src[5] = {1.0f, -2.5f, 0.1f, 65536.0f, 0x1p-20f}, back[5];
    uint16_t h[5];
    cr_convert_from_f32(CR_DTYPE_BF16, src, h, 5);
    for (int i = 0; i < 5; i++) CHECK_EQ_INT(h[i], cr_f32_to_bf16(src[i]));
    cr_convert_to_f32(CR_DTYPE_BF16, h, back, 5);
    for (int i = 0; i < 5; i++) CHECK(back[i] == cr_round_bf16(src[i]));
    cr_convert_from_f32(CR_DTYPE_F16, src, h, 5);
    CHECK_EQ_INT(h[3], 0x7c00);
    cr_convert_to_f32(CR_DTYPE_F16, h, back, 5);
    CHECK(back[1] == -2.5f);
    double d[5];
    cr_convert_from_f32(CR_DTYPE_F64, src, d, 5);
    CHECK(d[2] == (double)0.1f);
    cr_convert_to_f32(CR_DTYPE_F64, d, back, 5);
    CHECK(back[2] == 0.1f);
    uint8_t e4[2] = {0x38, 0xc0};
    cr_convert_to_f32(CR_DTYPE_F8_E4M3, e4, back, 2);
    CHECK(back[0] == 1.0f && back[1] == -2.0f);
}

int main(void)
{
    RUN(names_and_parse);
    RUN(promotion);
    RUN(all_f16_patterns);
    RUN(all_bf16_patterns);
    RUN(rounding_boundaries);
    RUN(f32_sweep);
    RUN(f8);
    RUN(bulk);
    return cr_test_summary();
}
