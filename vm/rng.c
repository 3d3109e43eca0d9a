/* rng.c — Philox4x32-10 and the element-index -> uniform mapping (rng.h). */
#include "rng.h"

#define M0 0xD2511F53u
#define M1 0xCD9E8D57u
#define W0 0x9E3779B9u
#define W1 0xBB67AE85u

void cr_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        if (r) { k0 += W0; k1 += W1; }
        uint64_t p0 = (uint64_t)M0 * c0;
        uint64_t p1 = (uint64_t)M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

void cr_rng_uniform(uint64_t seed, uint64_t stream, uint64_t first, float *u, size_t n)
{
    const uint32_t key[2] = { (uint32_t)seed, (uint32_t)(seed >> 32) };
    uint32_t block[4];
    uint64_t cur = UINT64_MAX;
    for (size_t j = 0; j < n; j++) {
        uint64_t i = first + j;
        if (i / 4 != cur) {
            cur = i / 4;
            uint32_t ctr[4] = { (uint32_t)cur, (uint32_t)(cur >> 32),
                                (uint32_t)stream, (uint32_t)(stream >> 32) };
            cr_philox4x32_10(ctr, key, block);
        }
        u[j] = (float)(block[i % 4] >> 8) * (1.0f / 16777216.0f);
    }
}
