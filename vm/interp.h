/* interp.h — private to the interpreter's files: the run's state and
 * what they share. Not part of the VM's interface (vm.h).
 *
 * The interpreter is four files, one concern each:
 *   interp.c         cr_vm_run, the top-level stream (run_main) and its
 *                    COPY/PREFETCH/RELEASE steps, progress and messages;
 *   interp_kernel.c  kernel execution: a KERNEL's job, the micro-ops over a
 *                    chunk, streaming, and folding reductions in chunk order;
 *   interp_select.c  top-k selections: the SEL_* steps, the histogram and
 *                    mask helpers the chunk body calls, torch's tie order;
 *   interp_run.c     a run's setup and teardown: manifest check and maps,
 *                    buffers (sized by runbuf.h), shards, aux files.
 */
#ifndef CR_INTERP_H
#define CR_INTERP_H

#include "vm.h"
#include "inputguard.h"
#include "io.h"
#include "gatherpool.h"
#include "memplan.h"
#include "gguf_hf.h"
#include "outdir.h"
#include "pool.h"
#include "reader.h"
#include "readplan.h"
#include "runbuf.h"
#include "spill.h"
#include "writeback.h"
#include "hasher.h"
#include "outstream.h"
#include "kernels/kernels.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

enum { SEL_IDLE, SEL_INITED, SEL_FOUND_HI, SEL_FOUND_LO, SEL_READY };
/* vm_select.early: which pass fills a torch tie-order gather before the
 * kernel that would gather it (vm_gather_early) */
enum { SEL_EARLY_NONE, SEL_EARLY_LO, SEL_EARLY_HI };

typedef struct vm_select {
    int phase;
    uint64_t k, n_chunks;
    uint64_t *hist;            /* n_threads x CR_RUN_HIST_BINS while counting */
    uint32_t hi, threshold;    /* chosen high bin; threshold key (|v| bits) */
    uint64_t above;            /* elements with key above the current bin */
    uint64_t ties_keep;        /* elements == threshold to keep, in index order */
    uint64_t ties_total;       /* elements == threshold */
    uint64_t *ties;            /* per chunk: count, then exclusive prefix */
    /* torch tie order (TORCH_DESC/ASC): one word per element of the whole
     * domain while gathering (its key, or a tie's index: torchsort.h), then
     * one bit per element: a kept tie */
    int torch_order;           /* 0, or the CR_OPF_TORCH_ORDER op (DESC, ASC, TOPK) */
    uint32_t *kv;              /* heap, or spill.base when memplan spills it (spill.h) */
    uint64_t kv_cap;           /* words kv holds (a pooled buffer may hold more than n) */
    uint64_t kv_excess;        /* bytes a buffer taken from the pool holds beyond the n words memplan counts */
    cr_spill spill;
    bool partitioned;          /* kv is in torch's order up to k, its kept ties marked */
    uint64_t marked;           /* ... and this many of them */
    /* the kernel whose TORCH_DESC/ASC gathers this selection, and whether
     * memplan runs it one gather at a time (serial); `early`: the gather
     * is filled by an earlier pass instead (SEL_EARLY_*: the HIST_LO pass,
     * words tagged; the HIST_HI pass, plain keys the sort tags) */
    uint32_t torch_kernel;
    bool torch_whole;          /* that kernel is neither serial nor streamed */
    uint8_t early;
    uint64_t *tiebits;
    uint32_t *lowor;           /* per thread: OR of the low 16 key bits seen by HIST_HI */
    /* every key in the chosen high bin is hi<<16 (values that are bf16, or
     * rounded to it): the threshold is known after SEL_FIND_HI, so HIST_LO
     * counts the ties per chunk instead, and TIE_COUNT has nothing to do */
    bool direct;
} vm_select;

typedef struct vm_thread {
    /* sized by runbuf.h (cr_run_thread_bufs); NULL when no kernel needs one */
    float *regs;               /* registers, one block long each */
    uint8_t *io;               /* STOREs' staged chunks, the row-sum copy; thread 0: COPY conversions */
    uint64_t *keys;            /* ROWRANK sort keys; LOWRANK scratch (floats) */
    double *lanes;             /* 8 per RSUM: lanes carried over blocks */
    uint64_t *carry;           /* per micro-op state carried over blocks */
} vm_thread;

typedef struct vm {
    const cr_program *p;
    const cr_vm_options *opt;
    const cr_allocator *alloc;
    const cr_kernels *kern;
    cr_pool *pool;
    unsigned n_threads;
    cr_memplan mem;            /* thread count and streamed steps (memplan.h) */
    uint64_t thread_bytes;     /* bytes of the thread buffers allocated (runbuf.h) */

    uint8_t **maps;            /* per manifest file (NULL when empty) */
    /* per manifest file, for the files opened so far (n_opened): identity
     * at open, re-checked before the commit, and the mapping published to
     * opt->guard (inputguard.h) */
    cr_file_id *ids;
    cr_input_region *regions;
    uint32_t n_opened;
    /* the input reader (reader.h): the files stay open for it (-1: not
     * kept), the plan of its reads and its source over fds and maps */
    int *fds;
    const char **file_names;
    cr_read_plan rplan;
    cr_read_posix rpx;
    cr_read_source rsrc;
    cr_reader *reader;
    cr_reader_stats read_stats;
    int *shard_fds;
    uint64_t *shard_hash;      /* XXH64 of each finished shard (outhash.h) */
    cr_hasher *hasher;         /* hashes the shards' finished prefixes during the run (hasher.h); NULL: at the end */
    uint64_t hash_tail;        /* bytes hashed after the last write (cr_vm_stats) */
    /* the output stream (outstream.h) of the shards memplan streams, NULL
     * when none or it could not start; the shards' names for its messages */
    cr_outstream *ostream;
    char **stream_paths;
    uint32_t stream_shards;
    uint64_t direct_blocks;
    double *scal;
    double **rowvec;
    uint8_t **scratch;         /* NULL until written by SSTORE */
    bool *scratch_ready;
    vm_select *sel;
    cr_gather_pool gathers;    /* freed gathers kept for the next tensor (gatherpool.h; memplan.h gather_pool) */
    uint64_t gather_excess;    /* sum of the kv_excess of pooled gathers in use */
    uint64_t gather_limit;     /* this step's memplan gather_keep (UINT64_MAX: no budget) */
    uint32_t *sel_last;        /* per selection: the step after which its tie bits go (cr_memplan_sel_last) */
    vm_thread *thr;
    cr_outdir outdir;
    bool outdir_open;
    /* GGUF output (opt->gguf): the sink, its temporary file and the
     * source's tables (gguf_out.h); spill files go beside the output */
    struct cr_gguf_sink *gguf;
    int gguf_fd;
    cr_outfile gguf_file;           /* OUT.gguf's temporary name and owner record (outdir.h) */
    const char *gguf_tmp;           /* gguf_file.tmp_path */
    char *gguf_dir, *gguf_parent;
    void *gguf_owned;
    cr_gguf_src gguf_src;
    const cr_io *io;           /* opt->io or the real file system */
    /* a partitioned run (opt->n_parts): per shard, 1 when the part writes
     * it; per manifest file, 1 when the part reads it (its hash is checked);
     * NULL for a whole run */
    uint8_t *shard_in, *file_in;
    uint32_t *shard_part;      /* per shard: its part, 0-based */
    uint64_t part_program;     /* the program's body hash: its identity in the manifest */
    uint64_t *aux_hash;        /* part 1: XXH64 of each staged aux file */
    cr_insn *part_main;        /* the part's slice of main (the view's) */
    /* set when a tensor holds NaN or Inf: inputs as loaded, outputs as stored */
    atomic_uchar *nonfinite_in, *nonfinite_out;
    /* per input: a finished kernel has checked all of it for NaN/Inf, so
     * the later passes over it (a TIES merge reads each input four times)
     * need not */
    bool *in_checked;

    /* progress */
    struct timespec t0;
    atomic_uint_fast64_t bytes_done;
    uint64_t written_back;     /* bytes_done at the last start_writeback */
    cr_writeback *writeback;   /* NULL: no write-back hints */
    uint64_t bytes_total;
    uint32_t tensors_done;
    uint32_t kernels_run, kernels_idle;   /* cr_vm_stats */
    cr_vm_phase phase;
    cr_progress_printer printer;
    double last_tick;

    /* first error of a parallel job */
    pthread_mutex_t err_mu;
    cr_error *err;
    cr_status job_status;
} vm;

static inline bool interrupted(const vm *m) { return m->opt->interrupt && *m->opt->interrupt; }

/* Polled between chunks: an interrupt, or a read past the end of an input
 * that shrank (opt->guard). The latter's message is replaced by
 * vm_check_inputs' naming the file. */
static inline bool input_faulted(const vm *m) { return m->opt->guard && cr_input_guard_faulted(m->opt->guard); }
static inline bool stopping(const vm *m) { return interrupted(m) || input_faulted(m); }
static inline cr_status stop_status(const vm *m) { return input_faulted(m) ? CR_ERR_RUNTIME : CR_ERR_INTERRUPTED; }
static inline const char *stop_msg(const vm *m) { return input_faulted(m) ? "an input changed while it was being read" : "interrupted"; }

static inline unsigned dt_size(unsigned t)
{
    switch (t) {
#define X(name, str, size) case CR_DTYPE_##name: return size;
    CR_DTYPE_LIST(X)
#undef X
    }
    return 0;
}

static inline const char *S(const vm *m, cr_blob b) { return cr_prog_str(m->p, b); }

/* base address of an input view's tensor (offset already applied) */
static inline const uint8_t *view_base(const vm *m, const cr_prog_input *in)
{
    if (in->kind == CR_INPUT_SCRATCH) return m->scratch[in->file] + in->offset;
    if (in->kind == CR_INPUT_BLOB) return m->p->blobs + in->offset;
    return m->maps[in->file] + in->offset;
}

/* |v| as an unsigned key that orders like the magnitude (selections) */
static inline uint32_t mag_key(float v) { return cr_f32_bits(v) & 0x7fffffffu; }

/* interp.c */
double vm_now_s(const vm *m);
long vm_peak_rss_kb(void);
void vm_report(vm *m, bool force);
/* record the first error of a parallel job; later ones are dropped */
int vm_job_fail(vm *m, cr_status s, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void vm_warn(const vm *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void vm_output_path(const vm *m, uint32_t shard, char *buf, size_t n);
cr_status vm_put_output(vm *m, uint32_t out, uint64_t first, const void *bytes, uint64_t n, cr_error *err);

/* interp_kernel.c */
cr_status vm_run_kernel(vm *m, uint32_t ki, bool stream, bool serial, bool small, cr_error *err);
bool vm_any_nonfinite_raw(cr_dtype t, const uint8_t *b, uint64_t n);
void vm_drop_pages(const vm *m, uint32_t file, uintptr_t lo, uintptr_t hi, bool out);
uintptr_t vm_view_addr(const vm *m, const cr_prog_input *in, uint64_t e);

/* interp_select.c: the steps of main */
void vm_gather_free(vm *m, uint32_t x);
void vm_gather_limit(vm *m, uint32_t pc);
void vm_sel_release(vm *m, uint32_t pc);
void vm_gather_drop(const vm *m, const cr_prog_kernel *k, uint64_t from, uint64_t to);
cr_status vm_sel_init(vm *m, uint32_t x, double kv, cr_error *err);
void vm_sel_find(vm *m, vm_select *s, bool hi);
cr_status vm_partition_run(vm *m, const cr_insn *prefix, uint32_t n_left, cr_error *err);
cr_status vm_torch_ties(vm *m, uint32_t x, cr_error *err);
const char *vm_sel_output_name(const vm *m, uint32_t x);
/* ... before and around a kernel */
cr_status vm_torch_gather_begin(vm *m, const cr_insn *in, uint64_t n, cr_error *err);
bool vm_kernel_is_idle(const vm *m, const cr_prog_kernel *k);
cr_status vm_gather_early(vm *m, uint32_t ki, bool stream, cr_error *err);
void vm_sel_found(vm *m, uint32_t x);
/* ... and inside a chunk */
void vm_gather_words(uint32_t *kv, uint32_t T, const float *a, uint64_t base, size_t n);
void vm_gather_keys(uint32_t *restrict kv, const float *restrict a, size_t n);
uint64_t vm_count_key(const float *a, size_t n, uint32_t T);
void vm_topk_mask_tiebits(const vm_select *s, const float *a, float *d, size_t n, uint64_t base);
void vm_topk_mask(const vm_select *s, const float *a, float *d, size_t n, uint64_t *before);

/* interp_run.c */
cr_status vm_setup(vm *m, cr_error *err);
cr_status vm_begin_outdir(vm *m, cr_error *err);
/* GGUF output: check and create the temporary file (before any input is
 * read); plan the file and write its header (after the inputs are mapped:
 * the aux copies are read from them); fsync and rename it into place. */
cr_status vm_begin_gguf(vm *m, cr_error *err);
cr_status vm_open_gguf(vm *m, cr_error *err);
cr_status vm_commit_gguf(vm *m, cr_error *err);
cr_status vm_open_inputs(vm *m, cr_error *err);
cr_status vm_create_shards(vm *m, cr_error *err);
cr_status vm_hash_shards(vm *m, cr_error *err);
cr_status vm_write_aux(vm *m, cr_error *err);
cr_status vm_finish_shards(vm *m, cr_error *err);
/* start the input reader (unless opt->no_read_ahead or nothing is read);
 * stop it, keeping its counts (idempotent; before the maps go) */
cr_status vm_start_reader(vm *m, cr_error *err);
void vm_stop_reader(vm *m);
cr_status vm_check_inputs(vm *m, cr_status s, cr_error *err);
void vm_warn_nonfinite(const vm *m);
void vm_teardown(vm *m);

/* interp_part.c: a partitioned run (vm/part.h, formats/parts.h) */
cr_status vm_part_setup(vm *m, cr_program *view, cr_error *err);
cr_status vm_part_publish(vm *m, cr_error *err);
void vm_part_free(vm *m, cr_program *view);

#endif
