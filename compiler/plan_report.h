/* plan_report.h — what a compiled merge will read, write and need. */
#ifndef CR_PLAN_REPORT_H
#define CR_PLAN_REPORT_H

#include <stdio.h>
#include "program.h"

typedef struct cr_plan_numbers {
    uint64_t bytes_read;        /* input tensor bytes the kernels and copies read (views) */
    uint64_t bytes_read_passes; /* the same counting every kernel's re-read */
    uint64_t bytes_written;     /* all shard files, headers included */
    uint64_t aux_bytes;
    uint32_t n_outputs, n_shards, n_kernels, n_micro_ops, n_top_ops, n_copies;
    uint64_t peak_memory;       /* estimate, bytes (model in spec/graph-ir.md) */
    double est_seconds;         /* estimate at 2 GB/s read, 1 GB/s write */
} cr_plan_numbers;

/* Compute the numbers for p run with `threads` threads (0: all cores). */
void cr_plan_measure(const cr_program *p, unsigned threads, cr_plan_numbers *out);
/* Print them as the `crucible plan` report. */
void cr_plan_print(const cr_program *p, const cr_plan_numbers *n, FILE *out);

#endif
