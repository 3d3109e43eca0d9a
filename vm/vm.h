/* vm.h — running a verified program: cr_vm_run.
 *
 * The VM checks the input manifest, maps the inputs, creates the output
 * directory (atomically, outdir.h), pre-sizes the shard files, runs the
 * top-level stream `main` (kernels spread over a thread pool), writes the
 * aux files, fsyncs and renames the directory into place. Semantics are in
 * spec/vm.md; the output bytes depend only on the program and its inputs,
 * never on the thread count, the ISA or timing.
 */
#ifndef CR_VM_H
#define CR_VM_H

#include <stdio.h>

#include "base.h"
#include "program.h"

typedef enum cr_vm_phase {
    CR_VM_PHASE_CHECK = 0,   /* input manifest: sizes and hashes */
    CR_VM_PHASE_RUN = 1,     /* main stream */
    CR_VM_PHASE_FINISH = 2,  /* aux files, fsync, rename */
    CR_VM_PHASE_DONE = 3
} cr_vm_phase;

/* A progress snapshot. Byte counts are output tensor bytes (during CHECK:
 * input bytes hashed). */
typedef struct cr_vm_progress {
    cr_vm_phase phase;
    uint64_t bytes_done, bytes_total;
    uint32_t tensors_done, tensors_total;
    double elapsed_s;
    long peak_rss_kb;        /* filled for the final report */
} cr_vm_progress;

typedef void (*cr_vm_progress_fn)(void *ud, const cr_vm_progress *p);

typedef struct cr_vm_stats {
    double elapsed_s;
    uint64_t bytes_written;  /* output tensor bytes */
    uint64_t bytes_hashed;
    /* output shard bytes hashed after the last tensor was written: the
     * serial tail of the merge (hasher.h); all of them without the thread */
    uint64_t hash_tail_bytes;
    long peak_rss_kb;
    unsigned threads;
    const char *isa;         /* static string */
    uint64_t thread_bytes;   /* per-thread buffers allocated, all threads (memplan's thread_bytes) */
    uint32_t kernels_run;    /* KERNEL steps whose chunks ran */
    uint32_t kernels_idle;   /* KERNEL steps skipped: selection passes with nothing left to do */
    /* the input reader (reader.h): bytes it read from disk, bytes it found
     * in memory already, steps that waited for it */
    uint64_t read_bytes, read_cached, read_waits;
    /* the output stream (outstream.h): shards written through it, and
     * its blocks that went out with O_DIRECT */
    uint32_t stream_shards;
    uint64_t direct_blocks;
} cr_vm_stats;

typedef struct cr_vm_options {
    const char *out_dir;        /* required */
    bool force;                 /* replace a non-empty out_dir */
    unsigned threads;           /* 0 = all online cores */
    uint64_t max_memory;        /* bytes of VM working memory; 0 = no limit */
    bool quiet;                 /* no progress output at all */
    cr_vm_progress_fn progress; /* called from the main thread, throttled */
    void *progress_ud;
    FILE *progress_file;        /* default printer's stream (NULL: stderr) */
    volatile int *interrupt;    /* polled between chunks; non-zero stops the run */
    /* The input mappings are published here for the caller's SIGBUS
     * handler (inputguard.h), which turns a read past the end of an input
     * that shrank into an error naming the file. NULL: such a read kills
     * the process with SIGBUS (the change is still caught when it does not
     * fault: every input is stat-checked before the commit). */
    struct cr_input_guard *guard;
    bool skip_hash;             /* check input sizes only */
    /* tests: a write that completes a tensor waits until the shard hasher
     * has caught up with it (hasher.h), so hash_tail_bytes is the bytes
     * after the frontier at the last write, whatever the scheduling */
    bool hash_sync;
    /* no input reader thread (reader.h): steps fault their inputs in,
     * with a page-cache hint one tensor ahead (PREFETCH); same bytes */
    bool no_read_ahead;
    /* no output stream (outstream.h): every shard is written with a pwrite
     * per chunk and hashed by the hasher thread (hasher.h); same bytes */
    bool no_output_stream;
    const char *isa;            /* "scalar" | "avx2" | "avx512"; NULL: $CRUCIBLE_ISA or CPUID */
    const cr_allocator *alloc;  /* NULL: the program's allocator */
    cr_vm_stats *stats;         /* filled on success if not NULL */
    const struct cr_io *io;     /* output file system calls (io.h); NULL: POSIX */
    /* Paths read before the run besides the program's own input manifest
     * (the recipe, Lua method files, the .crb): out_dir must be none of
     * them, no ancestor of one and not inside an input directory
     * (outguard.h). NULL: only the manifest's files and their directories. */
    const struct cr_input_paths *inputs;
    /* A partitioned run (spec/parts.md, vm/part.h): only the shards of
     * part `part` (1-based) of `n_parts` are computed, into out_dir shared
     * with the other parts, with a part manifest (formats/parts.h); part 1
     * also stages the aux files. n_parts 0: the whole program. */
    uint32_t part, n_parts;
    /* Warnings that do not stop the run (NaN/Inf in an input or an output
     * tensor, naming it). NULL: printed to stderr as "crucible: warning: ...",
     * even when quiet. */
    void (*warn)(void *ud, const char *msg);
    void *warn_ud;
    /* GGUF output (spec/gguf.md §8): out_dir is then the GGUF file,
     * written as OUT.crucible-tmp-PID beside it, fsynced and renamed; an
     * existing OUT is replaced only with force. The output tensors and aux
     * files are not written as such: they are the GGUF sink's source
     * (gguf_out.h), as the output directory `gguf_dir` would be to
     * llama.cpp's converter, and every STORE/COPY feeds the sink. NULL: a
     * model directory. Not with n_parts. */
    const struct cr_gguf_hf_opts *gguf;
    const char *gguf_dir;       /* NULL: out_dir without ".gguf" */
} cr_vm_options;

void cr_vm_options_init(cr_vm_options *opt);

/* Run p (which must have passed cr_program_verify: cr_program_load does
 * that) into opt->out_dir. Returns CR_OK when the complete directory is in
 * place; on any failure no part of the output exists (the temporary
 * directory is removed) and err names the file, tensor or instruction.
 * Errors: CR_ERR_IO, CR_ERR_NOMEM, CR_ERR_RUNTIME (manifest mismatch, a
 * CHECK failed, ops out of sequence), CR_ERR_LIMIT (max_memory too small),
 * CR_ERR_INTERRUPTED, CR_ERR_ARG (out_dir exists, or overlaps an input:
 * checked, like every refusal of outdir.h, before any input is read),
 * CR_ERR_UNSUPPORTED. */
cr_status cr_vm_run(const cr_program *p, const cr_vm_options *opt, cr_error *err);

/* The default progress printer (progress.c): a bar on a TTY, plain lines
 * otherwise, and a one-line summary for phase DONE. */
typedef struct cr_progress_printer {
    FILE *out;
    bool tty;
    double last_print;
    int last_len;
} cr_progress_printer;

void cr_progress_printer_init(cr_progress_printer *pp, FILE *out);
/* print if enough time passed since the last line (always for DONE) */
void cr_progress_printer_update(cr_progress_printer *pp, const cr_vm_progress *p);

/* Print p as an EXPLAIN-style table (disasm.c), after its inputs and
 * provenance (cr_program_explain_inputs). */
void cr_program_explain(const cr_program *p, FILE *out);
/* p's input models and files (reference, path inside the model, size,
 * content hash, where bound) and its provenance: crucible version, op
 * table, mergekit release, seed, --precise, the recipe text. */
void cr_program_explain_inputs(const cr_program *p, FILE *out);
/* spec/opcodes.md, generated from ops.def (disasm.c). */
void cr_ops_markdown(FILE *out);

#endif
