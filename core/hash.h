/* hash.h — XXH64, the 64-bit content hash of the input manifest; and SHA-256.
 *
 * Written from the public XXH64 specification (Yann Collet, xxHash): 32-byte
 * stripes through four accumulators, then an avalanche. Streaming, so a
 * 10 GB shard is hashed without holding it. `crucible` always uses seed 0;
 * the value stored in a .crb is XXH64(file bytes, 0) (spec/bytecode.md).
 */
#ifndef CR_HASH_H
#define CR_HASH_H

#include <stddef.h>
#include <stdint.h>

typedef struct cr_xxh64 {
    uint64_t v[4];
    uint64_t total;
    uint8_t buf[32];
    unsigned buf_len;
    uint64_t seed;
} cr_xxh64_state;

void cr_xxh64_init(cr_xxh64_state *h, uint64_t seed);
void cr_xxh64_update(cr_xxh64_state *h, const void *data, size_t len);
uint64_t cr_xxh64_final(const cr_xxh64_state *h);
/* one-shot */
uint64_t cr_xxh64(const void *data, size_t len, uint64_t seed);

/* SHA-256 (FIPS 180-4), one-shot: the 32-byte digest of data[0..len). Used
 * where a file format names its content by sha256 (GGUF's pre-tokenizer
 * hash, spec/gguf.md §5), not for the manifest. */
void cr_sha256(const void *data, size_t len, uint8_t out[32]);

/* splitmix64's finaliser (Steele, Lea and Flood): a full-avalanche mix of
 * 64 bits, for deterministic generators keyed by a seed (crucible synth's
 * weights; the SVD's test matrix and CMA-ES through cr_splitmix64). */
static inline uint64_t cr_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* splitmix64: the next value of the sequence whose state is *state */
static inline uint64_t cr_splitmix64(uint64_t *state)
{
    return cr_mix64(*state += 0x9e3779b97f4a7c15ull);
}

#endif
