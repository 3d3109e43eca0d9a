/* plan_report.h — what a compiled merge will read, write and need. */
#ifndef CR_PLAN_REPORT_H
#define CR_PLAN_REPORT_H

#include <stdio.h>
#include "plan.h"
#include "program.h"

typedef struct cr_plan_numbers {
    uint64_t bytes_read;        /* distinct input-file bytes the run reads (each tensor view once) */
    uint64_t bytes_read_passes; /* bytes the kernels and copies load, every pass, files and scratch */
    uint64_t bytes_written;     /* all shard files, headers included */
    uint64_t aux_bytes;
    uint32_t n_outputs, n_shards, n_kernels, n_micro_ops, n_top_ops, n_copies;
    uint32_t n_lowrank;         /* LOWRANK / LOWRANK_T ops (model+lora, spec/lora.md) */
    uint64_t lowrank_bytes;     /* their A and B views */
    uint64_t lowrank_madds;     /* their multiply-adds (domain x r) */
    uint64_t peak_memory;       /* predicted peak RSS, bytes (vm/memplan.h, spec/plan.md) */
    uint64_t mem_fixed;         /* baseline + program + thread buffers */
    uint64_t mem_heap;          /* scratch, selections, partials at the peak */
    uint64_t mem_mapped;        /* mapped input pages at the peak */
    const char *peak_at;        /* tensor of the peak step (points into the program) */
    unsigned threads;           /* threads the run will use */
    uint32_t n_streamed;        /* steps that read their inputs in a window (--max-memory) */
    uint32_t n_spill;           /* selections whose torch tie-order gather goes to a file (memplan.h) */
    uint64_t spill_bytes;       /* the bytes of those gathers */
    uint64_t gather_kept;       /* bytes of tie-order gathers kept between tensors (memplan.h gather_pool) */
    uint64_t read_window;       /* how far the input reader reads ahead (memplan.h read_window); 0: nothing to read */
    /* the output stream (vm/outstream.h): shards through it, its block
     * size, window per shard, windows at once and their bytes (in the peak) */
    uint32_t out_shards, out_slots, out_rings;
    uint64_t out_block, out_bytes;
    bool budget;                /* planned under --max-memory */
    double est_seconds;         /* estimate at 2 GB/s read, 1 GB/s write (spill bytes counted both ways) */
    /* a tokenizer merge's embedding permutation (spec/tokenizer-merge.md
     * §5.4): the rows of the permuted tensors (the output vocabulary, 0:
     * none), the row gathers of input tensors, their tables and constant
     * masks in the program, and the input tensors they read (mapped whole) */
    uint64_t vocab_rows;
    /* a multi-stage recipe: the vocabulary sizes of earlier stages that
     * merge tokenizers, in stage order (a stage whose size equals the one
     * before it is not told apart) */
    uint64_t vocab_earlier[8];
    const char *vocab_earlier_name[8];  /* each one's stage name (NULL: not known, e.g. from a .crb) */
    uint32_t n_vocab_earlier;
    uint32_t n_gathers;
    uint64_t gather_table_bytes, gather_mapped;
} cr_plan_numbers;

/* Compute the numbers for p run with `threads` threads (0: all cores)
 * under max_memory bytes of RSS (0: no limit), with the VM's own memory
 * model (vm/memplan.h), so the thread count and streamed steps are the ones
 * the run will use. Errors: CR_ERR_LIMIT when the program cannot fit
 * max_memory (err names the tensor), CR_ERR_NOMEM. */
cr_status cr_plan_measure(const cr_program *p, unsigned threads, uint64_t max_memory, cr_plan_numbers *out,
                          cr_error *err);
/* A multi-stage recipe compiled from its text: names the earlier stages
 * of the vocabulary line from `plan` (each stage before the last whose
 * tokenizer merge changes the vocabulary, so two stages of the same size
 * are told apart); a program alone (a .crb) does not record its stages. */
void cr_plan_name_stages(const cr_plan *plan, cr_plan_numbers *n);
/* Print them as the `crucible plan` report. */
void cr_plan_print(const cr_program *p, const cr_plan_numbers *n, FILE *out);

/* The numbers of part `part` (1-based) of n_parts of a partitioned run
 * (vm/part.h: its shards and the slice of the program that computes
 * them): what that `run --part` will read, write and need. */
cr_status cr_plan_measure_part(const cr_program *p, uint32_t part, uint32_t n_parts, unsigned threads,
                               uint64_t max_memory, cr_plan_numbers *out, cr_error *err);
/* `plan --part I/N`: part I's report, then one line per part (shards,
 * bytes written and read, peak memory, time), so an array can be sized.
 * Errors: as cr_plan_measure, for any part. */
cr_status cr_plan_print_parts(const cr_program *p, uint32_t part, uint32_t n_parts, unsigned threads,
                              uint64_t max_memory, FILE *out, cr_error *err);

#endif
