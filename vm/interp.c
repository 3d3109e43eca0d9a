/* interp.c — the VM's entry (cr_vm_run, vm.h) and its top-level stream.
 *
 * cr_vm_run sets the run up (interp_run.c), then runs `main` on the calling
 * thread: scalar maths, the selection steps (interp_select.c), KERNELs
 * (interp_kernel.c: a pool job with one task per chunk), COPYs, page hints
 * and progress; then finishes the shards and aux files and commits the
 * output directory. Everything the interpreter indexes was checked by the
 * verifier; the checks here are the dynamic ones (sequence of selection
 * ops, scratch written before read, manifest of the files on disk).
 * interp.h says which file owns what.
 */
#include "interp.h"
#include "outguard.h"
#include "outhash.h"
#include "scalar.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

double vm_now_s(const vm *m)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - m->t0.tv_sec) + (double)(t.tv_nsec - m->t0.tv_nsec) * 1e-9;
}

long vm_peak_rss_kb(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) ? 0 : ru.ru_maxrss;
}

void vm_report(vm *m, bool force)
{
    if (m->opt->quiet && !m->opt->progress) return;
    double t = vm_now_s(m);
    if (!force && t - m->last_tick < 0.05) return;
    m->last_tick = t;
    cr_vm_progress pr = {
        .phase = m->phase, .bytes_done = atomic_load(&m->bytes_done), .bytes_total = m->bytes_total,
        .tensors_done = m->tensors_done, .tensors_total = m->p->n_outputs, .elapsed_s = t,
        .peak_rss_kb = m->phase == CR_VM_PHASE_DONE ? vm_peak_rss_kb() : 0,
    };
    if (m->opt->progress) m->opt->progress(m->opt->progress_ud, &pr);
    else cr_progress_printer_update(&m->printer, &pr);
}



/* record the first error of a job; later ones are dropped */
int vm_job_fail(vm *m, cr_status s, const char *fmt, ...)
{
    pthread_mutex_lock(&m->err_mu);
    if (!m->job_status) {
        m->job_status = s;
        if (m->err) {
            m->err->status = s;
            m->err->sys_errno = 0;
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(m->err->msg, sizeof m->err->msg, fmt, ap);
            va_end(ap);
        }
    }
    pthread_mutex_unlock(&m->err_mu);
    return (int)s;
}

/* "OUT_DIR/model.safetensors": the name the user will see after the rename */
void vm_output_path(const vm *m, uint32_t shard, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s", m->outdir.final_path ? m->outdir.final_path : m->opt->out_dir,
             S(m, m->p->shards[shard].file_name));
}


/* Hand `n` elements (`bytes`, already in the output's dtype) of output
 * `out`, starting at element `first`, to wherever the run writes it: the
 * GGUF sink, the output stream (one writer per shard, outstream.h) or a
 * pwrite into the shard with the hasher told. Counts the bytes done. Safe
 * from any thread; a partitioned run's other shards are skipped. */
cr_status vm_put_output(vm *m, uint32_t out, uint64_t first, const void *bytes, uint64_t n, cr_error *err)
{
    const cr_prog_output *o = &m->p->outputs[out];
    uint64_t sz = dt_size(o->dtype), len = n * sz, off = o->offset + first * sz;
    if (m->gguf) {   /* the GGUF sink converts and places the bytes the shard would hold */
        cr_status s = cr_gguf_sink_write(m->gguf, out, first, bytes, n, err);
        if (s) return s;
    } else if (m->shard_fds[o->shard] < 0) {
        return CR_OK;   /* another part's shard (vm/part.h) */
    } else if (cr_outstream_on(m->ostream, o->shard)) {
        cr_status s = cr_outstream_write(m->ostream, o->shard, off, bytes, len, err);
        if (s) return s;
    } else {
        int e = cr_io_write_all(m->io, m->shard_fds[o->shard], bytes, len, off);
        if (e) {
            char path[4096];
            vm_output_path(m, o->shard, path, sizeof path);
            return cr_fail(err, CR_ERR_IO, "writing %s to %s: %s", S(m, o->name), path, strerror(e));
        }
        cr_hasher_wrote(m->hasher, out, len);
    }
    atomic_fetch_add(&m->bytes_done, len);
    return CR_OK;
}

void vm_warn(const vm *m, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (m->opt->warn) m->opt->warn(m->opt->warn_ud, msg);
    else fprintf(stderr, "crucible: warning: %s\n", msg);
}

/* ---- top-level ops ---------------------------------------------------------- */

static cr_status run_copy(vm *m, const cr_insn *ins, bool stream, cr_error *err)
{
    const cr_program *p = m->p;
    const cr_prog_output *o = &p->outputs[ins->dst];
    const cr_prog_input *in = &p->inputs[ins->a];
    if (in->kind == CR_INPUT_SCRATCH && !m->scratch_ready[in->file])
        return cr_fail(err, CR_ERR_RUNTIME, "copy to %s reads scratch %u before it is written", S(m, o->name), in->file);
    unsigned isz = dt_size(in->dtype);
    const uint8_t *src = view_base(m, in);
    /* streamed (memplan.h): blocks of CR_MEM_COPY_BLOCK bytes, each
     * dropped once written */
    stream = stream && in->kind == CR_INPUT_FILE;
    uintptr_t dropped = stream ? vm_view_addr(m, in, 0) : 0;
    uint64_t max_same = stream ? CR_MAX(CR_MEM_COPY_BLOCK / isz, 1) : (uint64_t)1 << 26;
    for (uint64_t r = 0; r < in->rows; r++) {
        const uint8_t *row = src + r * in->row_stride * isz;
        for (uint64_t c = 0; c < in->cols;) {
            if (stopping(m)) return cr_fail(err, stop_status(m), "%s", stop_msg(m));
            uint64_t len = CR_MIN(in->cols - c, in->dtype == o->dtype ? max_same : (uint64_t)CR_RUN_COPY_BLOCK);
            if (vm_any_nonfinite_raw((cr_dtype)in->dtype, row + c * isz, len)) {
                atomic_store_explicit(&m->nonfinite_in[ins->a], 1, memory_order_relaxed);
                atomic_store_explicit(&m->nonfinite_out[ins->dst], 1, memory_order_relaxed);
            }
            const void *bytes = row + c * isz;
            if (in->dtype != o->dtype) {
                float *tmp = m->thr[0].regs;
                m->kern->load((cr_dtype)in->dtype, row + c * isz, tmp, (size_t)len);
                m->kern->store((cr_dtype)o->dtype, tmp, m->thr[0].io, (size_t)len);
                bytes = m->thr[0].io;
            }
            cr_status ws = vm_put_output(m, ins->dst, r * in->cols + c, bytes, len, err);
            if (ws) return ws;
            c += len;
            if (stream) {
                uintptr_t at = (uintptr_t)(row + c * isz);
                vm_drop_pages(m, in->file, dropped, at, false);
                dropped = CR_MAX(dropped, at & ~((uintptr_t)CR_MEM_FAULT_AROUND - 1));
            }
            vm_report(m, false);
        }
    }
    if (stream) vm_drop_pages(m, in->file, dropped, vm_view_addr(m, in, in->rows * in->cols), true);
    return CR_OK;
}

/* PREFETCH: read the view's pages into the page cache (not into RSS);
 * RELEASE: drop them from RSS, widened to fault-around blocks so that pages
 * a neighbour's fault mapped in go too (drop_pages) */
static void advise(vm *m, const cr_prog_input *in, int advice)
{
    if (in->kind != CR_INPUT_FILE || !in->nbytes || !m->maps[in->file]) return;
    if (advice == MADV_DONTNEED) {
        vm_drop_pages(m, in->file, (uintptr_t)(m->maps[in->file] + in->offset),
                   (uintptr_t)(m->maps[in->file] + in->offset + in->nbytes), true);
        return;
    }
    long pg = sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)(m->maps[in->file] + in->offset), e = a + in->nbytes;
    a &= ~(uintptr_t)(pg - 1);
    madvise((void *)a, e - a, advice);
}

/* After every WRITEBACK_STEP bytes of output, have the shards' dirty pages
 * written out while the merge goes on (writeback.h) */
#define WRITEBACK_STEP (64u << 20)

static void start_writeback(vm *m)
{
    uint64_t done = atomic_load(&m->bytes_done);
    if (!m->writeback || done < m->written_back + WRITEBACK_STEP) return;
    cr_writeback_kick(m->writeback);
    m->written_back = done;
}

/* waits until the reader has read what step pc reads (reader.h); no
 * reader, or a step that reads no file: nothing to wait for */
static cr_status await_reader(vm *m, uint32_t pc, cr_error *err)
{
    return m->reader && m->rplan.need[pc] ? cr_reader_need(m->reader, m->rplan.need[pc], err) : CR_OK;
}

static cr_status run_main(vm *m, cr_error *err)
{
    const cr_program *p = m->p;
    double *S_ = m->scal;
    for (uint32_t pc = 0; pc < p->n_main; pc++) {
        const cr_insn *in = &p->main[pc];
        if (stopping(m)) return cr_fail(err, stop_status(m), "%s", stop_msg(m));
        vm_gather_limit(m, pc);
        double a = 0, b = 0, c = 0, r;
        const char *kinds = cr_op_table[in->op].kinds;
        if (kinds[1] == 'v' || kinds[1] == 's') a = S_[in->a];
        if (kinds[2] == 'v' || kinds[2] == 's') b = S_[in->b];
        if (kinds[3] == 'v' || kinds[3] == 's') c = S_[in->c];
        if (cr_scalar_apply((cr_op)in->op, a, b, c, &r)) {
            S_[in->dst] = cr_scalar_round(in->dtype, r);
            continue;
        }
        cr_status st = CR_OK;
        switch ((cr_op)in->op) {
        case CR_OP_CHECK:
            if (a == 0) return cr_fail(err, CR_ERR_RUNTIME, "%s", S(m, p->messages[in->c]));
            continue;
        case CR_OP_SEL_INIT: st = vm_sel_init(m, in->dst, a, err); break;
        case CR_OP_SEL_FIND_HI: case CR_OP_SEL_FIND_LO: case CR_OP_SEL_PREFIX: {
            vm_select *s = &m->sel[in->dst];
            int need = in->op == CR_OP_SEL_FIND_HI ? SEL_INITED : in->op == CR_OP_SEL_FIND_LO ? SEL_FOUND_HI : SEL_FOUND_LO;
            if (s->phase != need)
                return cr_fail(err, CR_ERR_RUNTIME, "main %u: %s on selection %u out of sequence", pc,
                               cr_op_table[in->op].name, in->dst);
            if (in->op == CR_OP_SEL_PREFIX) {
                uint64_t acc = 0;
                for (uint64_t c = 0; c < s->n_chunks; c++) { uint64_t t = s->ties[c]; s->ties[c] = acc; acc += t; }
                if (s->kv) {
                    if ((st = vm_partition_run(m, in, p->n_main - pc, err))) return st;
                    if ((st = vm_torch_ties(m, in->dst, err))) return st;
                }
                vm_sel_release(m, pc);
            } else if (s->k && !(in->op == CR_OP_SEL_FIND_LO && s->direct)) {
                vm_sel_find(m, s, in->op == CR_OP_SEL_FIND_HI);
            }
            if (in->op == CR_OP_SEL_FIND_LO) {
                /* counting is over: a program may hold many selections,
                 * but only the one being counted keeps its histograms */
                cr_free(m->alloc, s->hist);
                s->hist = NULL;
                vm_sel_found(m, in->dst);
            }
            s->phase = need + 1;
            continue;
        }
        case CR_OP_SEL_VALUE: {
            const vm_select *s = &m->sel[in->a];
            if (s->phase < SEL_FOUND_LO)
                return cr_fail(err, CR_ERR_RUNTIME, "main %u: sel_value before sel_find_lo on selection %u", pc, in->a);
            S_[in->dst] = s->k ? cr_bits_f32(s->threshold) : 0.0;
            continue;
        }
        case CR_OP_KERNEL:
            if ((st = await_reader(m, pc, err))) return st;
            st = vm_run_kernel(m, in->a, m->mem.stream[pc] & CR_MEM_STREAMED, m->mem.stream[pc] & CR_MEM_SERIAL_GATHERS,
                               m->mem.stream[pc] & CR_MEM_SMALL_CHUNKS, err); break;
        case CR_OP_COPY:
            if ((st = await_reader(m, pc, err))) return st;
            st = run_copy(m, in, m->mem.stream[pc] & CR_MEM_STREAMED, err); break;
        case CR_OP_PREFETCH:   /* the reader reads ahead instead, in its planned order */
            if (!m->reader) advise(m, &p->inputs[in->a], MADV_WILLNEED);
            continue;
        case CR_OP_RELEASE: advise(m, &p->inputs[in->a], MADV_DONTNEED); continue;
        case CR_OP_DONE: m->tensors_done++; vm_report(m, false); start_writeback(m); continue;
        case CR_OP_SFREE:
            cr_free(m->alloc, m->scratch[in->dst]);
            m->scratch[in->dst] = NULL;
            m->scratch_ready[in->dst] = false;
            continue;
        default:
            return cr_fail(err, CR_ERR_RUNTIME, "main %u: op %s not valid at top level", pc, cr_op_table[in->op].name);
        }
        if (st) return st;
        if (in->op == CR_OP_KERNEL) vm_sel_release(m, pc);
    }
    return CR_OK;
}

void cr_vm_options_init(cr_vm_options *opt) { memset(opt, 0, sizeof *opt); }

cr_status cr_vm_run(const cr_program *p_in, const cr_vm_options *opt, cr_error *err)
{
    if (!opt->out_dir) return cr_fail(err, CR_ERR_ARG, "no output directory given");
    vm m_, *m = &m_;
    memset(m, 0, sizeof *m);
    const cr_program *p = p_in;
    m->p = p;
    m->opt = opt;
    m->alloc = opt->alloc ? opt->alloc : p->alloc;
    m->io = opt->io ? opt->io : cr_posix_io();
    pthread_mutex_init(&m->err_mu, NULL);
    clock_gettime(CLOCK_MONOTONIC, &m->t0);
    atomic_init(&m->bytes_done, 0);
    m->last_tick = -1;
    m->gguf_fd = -1;
    cr_progress_printer_init(&m->printer, opt->progress_file);

    cr_status s = cr_kernels_pick(opt->isa, &m->kern, err);
    cr_program view;   /* a partitioned run's program: its slice of main */
    if (!s && opt->n_parts) s = vm_part_setup(m, &view, err);
    p = m->p;
    if (!s) s = vm_setup(m, err);
    m->phase = CR_VM_PHASE_CHECK;
    /* the output is checked against every input, and created, before a
     * byte of input is read (spec/reliability.md §8.1) */
    if (!s) s = opt->gguf ? vm_begin_gguf(m, err) : vm_begin_outdir(m, err);
    if (!s) s = vm_open_inputs(m, err);
    uint64_t hashed = atomic_load(&m->bytes_done);
    if (!s) s = opt->gguf ? vm_open_gguf(m, err) : vm_create_shards(m, err);
    if (!s) {
        m->phase = CR_VM_PHASE_RUN;
        atomic_store(&m->bytes_done, 0);
        m->bytes_total = 0;
        for (uint32_t i = 0; i < p->n_outputs; i++)
            if (!m->shard_in || m->shard_in[p->outputs[i].shard]) m->bytes_total += p->outputs[i].nbytes;
        vm_report(m, true);
        /* the streamed shards are written and hashed by the stream; the
         * others get the write-back hints and the hasher thread */
        int *fds = cr_malloc(m->alloc, (p->n_shards ? p->n_shards : 1) * sizeof *fds);
        bool others = false;
        for (uint32_t i = 0; fds && i < p->n_shards; i++) {
            fds[i] = cr_outstream_on(m->ostream, i) ? -1 : m->shard_fds[i];
            others |= fds[i] >= 0;
        }
        if (opt->gguf) m->writeback = cr_writeback_start(m->alloc, m->io, &m->gguf_fd, 1);
        else if (fds && others) m->writeback = cr_writeback_start(m->alloc, m->io, fds, p->n_shards);
        if (!opt->gguf && fds && others) m->hasher = cr_hasher_start(m->alloc, p, fds, opt->interrupt, opt->hash_sync);
        cr_free(m->alloc, fds);
        s = vm_start_reader(m, err);
        if (!s) s = run_main(m, err);
        vm_stop_reader(m);
        cr_writeback_stop(m->writeback);
        m->writeback = NULL;
    }
    if (!s) m->phase = CR_VM_PHASE_FINISH;
    if (!s && !opt->gguf) s = vm_hash_shards(m, err);
    if (!s && !opt->gguf) s = vm_write_aux(m, err);
    if (!s && !opt->gguf) s = vm_finish_shards(m, err);
    if (!s && interrupted(m)) s = cr_fail(err, CR_ERR_INTERRUPTED, "interrupted");
    s = vm_check_inputs(m, s, err);
    if (!s) s = opt->gguf ? vm_commit_gguf(m, err) : m->shard_in ? vm_part_publish(m, err) : cr_outdir_commit(&m->outdir, err);
    if (!s) {
        m->phase = CR_VM_PHASE_DONE;
        vm_warn_nonfinite(m);
        vm_report(m, true);
        if (opt->stats) {
            opt->stats->elapsed_s = vm_now_s(m);
            opt->stats->bytes_written = atomic_load(&m->bytes_done);
            opt->stats->bytes_hashed = hashed;
            opt->stats->hash_tail_bytes = m->hash_tail;
            opt->stats->peak_rss_kb = vm_peak_rss_kb();
            opt->stats->threads = m->n_threads;
            opt->stats->isa = m->kern->name;
            opt->stats->thread_bytes = m->thread_bytes;
            opt->stats->kernels_run = m->kernels_run;
            opt->stats->kernels_idle = m->kernels_idle;
            opt->stats->read_bytes = m->read_stats.bytes_read;
            opt->stats->read_cached = m->read_stats.bytes_cached;
            opt->stats->read_waits = m->read_stats.waits;
            opt->stats->stream_shards = m->stream_shards;
            opt->stats->direct_blocks = m->direct_blocks;
        }
    }
    vm_teardown(m);
    if (opt->n_parts) vm_part_free(m, &view);
    return s;
}

