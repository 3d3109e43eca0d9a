/* parts.h — the output directory of a partitioned run (spec/parts.md):
 * part manifests, publishing a part's shards into OUT, and assembling the
 * finished parts into the directory a single run writes.
 *
 * Layout while parts run, in OUT (one directory, shared by every part):
 *
 *     OUT/model-0000K-of-0000M.safetensors     each shard, under its final name
 *     OUT/crucible-parts/part-I-of-N/manifest.json
 *     OUT/crucible-parts/part-1-of-N/aux/...   the index (without hashes),
 *                                             config, tokenizer, card
 *
 * A part writes into OUT/crucible-parts/part-I-of-N.crucible-tmp-PID (an
 * ordinary cr_outdir, owner record and all, so a part killed by SIGKILL
 * leaves nothing a re-run cannot recognise and remove), moves each
 * finished, fsynced shard into OUT (rename: atomic), and then commits its
 * directory, manifest inside, in one rename. A shard name already in OUT is
 * kept when its bytes are the ones computed, replaced when the part's
 * previous manifest lists it (crucible wrote it), and otherwise refused
 * unless force: a file crucible did not write is never clobbered.
 * Assemble checks every manifest and shard, writes the aux files (the index
 * with every shard's hash) and removes OUT/crucible-parts.
 */
#ifndef CR_PARTS_H
#define CR_PARTS_H

#include "base.h"
#include "verify_dir.h"

struct cr_io;
struct cr_input_paths;
struct cr_outdir;

#define CR_PARTS_DIR "crucible-parts"
#define CR_PARTS_MANIFEST "manifest.json"
#define CR_PARTS_AUX "aux"

typedef struct cr_part_file {
    const char *file;          /* name in OUT */
    uint64_t size;
    uint32_t part;             /* shards: the part (1-based) that writes it */
    bool hashed;               /* hash recorded (this part's shards, aux files) */
    uint64_t hash;             /* XXH64 of the whole file */
} cr_part_file;

typedef struct cr_part_manifest {
    uint32_t part, n_parts;    /* 1-based part, of n_parts */
    uint64_t program;          /* the program's body hash (vm/program.h) */
    const char *recipe, *tool_version;
    cr_part_file *shards;      /* every shard of the program, in program order */
    uint32_t n_shards;
    cr_part_file *aux;         /* part 1: the aux files staged in aux/, in program order */
    uint32_t n_aux;
} cr_part_manifest;

/* "OUT/crucible-parts/part-I-of-N" (allocated) */
char *cr_parts_dir_of(const cr_allocator *alloc, const char *out, uint32_t part, uint32_t n_parts);

/* Create OUT (and its parents) and OUT/crucible-parts when missing, refuse
 * an OUT that is an input (outguard.h), and begin the part's cr_outdir at
 * cr_parts_dir_of (replacing a previous run's directory of the same part
 * at commit). Errors: ARG, IO, NOMEM. */
cr_status cr_parts_begin(const cr_allocator *alloc, const char *out, uint32_t part, uint32_t n_parts,
                         const struct cr_input_paths *inputs, const struct cr_io *io, struct cr_outdir *od,
                         cr_error *err);

/* Move the part's finished shards (m's shards with part == m->part, files
 * in od's temporary directory) into OUT, write the manifest into the
 * temporary directory and commit it. Errors: ARG (a file in OUT that
 * crucible did not write differs; naming it), IO, NOMEM. */
cr_status cr_parts_publish(const cr_allocator *alloc, const char *out, struct cr_outdir *od,
                           const cr_part_manifest *m, bool force, cr_error *err);

/* Check the parts in OUT as assemble does, without writing: every
 * manifest present and of one program and part count, every shard in
 * place with its recorded size and hash, the staged aux files. Problems
 * go to rep (the caller frees it with cr_verify_report_free). Returns
 * NOMEM only. */
cr_status cr_parts_check(const cr_allocator *alloc, const char *out, cr_verify_report *rep, cr_error *err);

/* cr_parts_check, then (no problem found) write the aux files into OUT
 * (the index with every shard's hash; each file through a temporary name
 * and a rename, the index last) and remove OUT/crucible-parts. A file of
 * the same name in OUT with other bytes is refused unless force. On a
 * problem: CR_ERR_RUNTIME, rep holding each. Errors also ARG, IO, NOMEM. */
cr_status cr_parts_assemble(const cr_allocator *alloc, const char *out, bool force, cr_verify_report *rep,
                            cr_error *err);

/* Is OUT/crucible-parts a directory? */
bool cr_parts_present(const char *out);

#endif
