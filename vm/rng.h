/* rng.h — Philox4x32-10, the counter-based generator behind RAND.
 *
 * Salmon et al., "Parallel Random Numbers: As Easy as 1, 2, 3" (SC11).
 * A pure function of (counter, key): any element's random number is computed
 * without the ones before it, so results never depend on threads or chunks.
 * The mapping from (program seed, stream key, element index) to a uniform
 * float is fixed here and in spec/vm.md:
 *   key     = { lo32(seed), hi32(seed) }
 *   counter = { lo32(i / 4), hi32(i / 4), lo32(stream), hi32(stream) }
 *   word    = philox(counter, key)[i % 4]
 *   u       = (word >> 8) * 2^-24          (exactly representable in f32)
 */
#ifndef CR_RNG_H
#define CR_RNG_H

#include <stddef.h>
#include <stdint.h>

void cr_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* u[j] for global element indices first .. first+n-1 */
void cr_rng_uniform(uint64_t seed, uint64_t stream, uint64_t first, float *u, size_t n);

#endif
