/* verify_dir.h — checking a written model directory (`crucible verify`).
 *
 * Every shard is re-validated with the safetensors reader (all format
 * rules, data ending exactly at end of file); the index, when there is one,
 * must cover every tensor of every shard exactly once and its
 * metadata.total_size must equal the tensors' bytes; the shard hashes that
 * crucible records in the index metadata (outhash.h) are recomputed and
 * compared. A directory without recorded hashes (made by mergekit or
 * transformers) has its structure checked and the report says the hashes
 * are absent.
 */
#ifndef CR_VERIFY_DIR_H
#define CR_VERIFY_DIR_H

#include "base.h"

#define CR_VERIFY_MAX_PROBLEMS 200   /* further problems are counted, not kept */

typedef struct cr_verify_report {
    const cr_allocator *alloc;
    bool has_index;             /* checked through model.safetensors.index.json */
    uint32_t n_shards;          /* shard files named (or model.safetensors) */
    uint32_t n_tensors;         /* tensors found in the shards */
    uint64_t total_bytes;       /* their data bytes */
    bool hashes_recorded;       /* the index has a crucible_shard_xxh64 object */
    uint32_t n_hash_ok;         /* shards whose recomputed hash matched */
    /* What is wrong, one line each, naming the file (and tensor). Empty: the
     * directory passed. */
    char **problems;
    uint32_t n_problems;        /* kept in problems[] (at most CR_VERIFY_MAX_PROBLEMS) */
    uint32_t n_problems_total;  /* found, including those not kept */
} cr_verify_report;

/* Check directory `dir`. Returns CR_OK when the check ran to the end,
 * whatever it found (the findings are in *rep, which the caller frees with
 * cr_verify_report_free even on error); CR_ERR_NOMEM otherwise. */
cr_status cr_verify_dir(const cr_allocator *alloc, const char *dir, cr_verify_report *rep, cr_error *err);
void cr_verify_report_free(cr_verify_report *rep);

/* Add one problem line to rep (counted always, kept up to
 * CR_VERIFY_MAX_PROBLEMS); false when out of memory. Shared by the checks
 * of a model directory and of a partitioned run's parts (parts.h). */
bool cr_verify_report_add(cr_verify_report *rep, const cr_allocator *a, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
