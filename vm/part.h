/* part.h — a partitioned run: which output shards make part I of N, and
 * the part of a program's top-level stream that computes them
 * (spec/parts.md).
 *
 * Parts are sets of whole shards, balanced by bytes: shards are taken
 * largest first (file size, then shard order) and each goes to the part
 * with the fewest bytes so far (the lowest-numbered on a tie), so the
 * assignment depends only on the program and N. A part runs the slice of
 * `main` that its shards need: every instruction that writes one of its
 * outputs, and, backwards, every instruction that writes a scalar, row
 * vector, scratch tensor or selection a kept instruction reads. A kernel
 * that feeds shards of several parts runs in each of them (a stage's
 * scratch output is recomputed by every part that reads it); its STOREs to
 * other parts' outputs are skipped by the VM. A CHECK is kept when the
 * value it tests is computed by the part anyway.
 */
#ifndef CR_PART_H
#define CR_PART_H

#include "program.h"

/* shard_part[i] (n_shards entries) receives the part (0-based, < n_parts)
 * of shard i. */
void cr_part_assign(const cr_program *p, uint32_t n_parts, uint32_t *shard_part);

/* The top-level stream of the part whose shards have shard_in[i] != 0:
 * *main (allocated with p->alloc, owned by the caller) and *n_main. A
 * program whose `main` is replaced by it (a shallow copy of p) is a valid
 * program that computes exactly those shards. Errors: NOMEM. */
cr_status cr_part_slice(const cr_program *p, const uint8_t *shard_in, cr_insn **main, uint32_t *n_main,
                        cr_error *err);

#endif
