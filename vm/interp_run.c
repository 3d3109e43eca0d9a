/* interp_run.c — a run's setup and teardown: per-thread buffers (sized by
 * runbuf.h, the sizes memplan counts) and the run's tables; the manifest
 * check (size, identity, content hash) and the input maps; the output
 * directory, shard files and their hashes; the aux files; the NaN/Inf
 * report; and freeing it all.
 */
#include "interp.h"
#include "gguf_out.h"
#include "hash.h"
#include "outguard.h"
#include "outhash.h"
#include "parts.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- setup: manifest, maps, buffers, output files ------------------------------ */

typedef struct hash_job { vm *m; uint64_t *got; } hash_job;

static int hash_file(void *ud, uint64_t i, unsigned thread)
{
    hash_job *h = ud;
    vm *m = h->m;
    (void)thread;
    const cr_prog_file *f = &m->p->files[i];
    if (!f->hash) return 0;   /* not recorded: size check only */
    if (m->file_in && !m->file_in[i]) return 0;   /* another part's input: not read */
    cr_xxh64_state st;
    cr_xxh64_init(&st, 0);
    const uint64_t block = 16u << 20;
    for (uint64_t off = 0; off < f->size; off += block) {
        if (stopping(m)) return vm_job_fail(m, stop_status(m), "%s", stop_msg(m));
        uint64_t len = CR_MIN(block, f->size - off);
        /* the map has no read-around (MADV_RANDOM): read this block and
         * the next ahead */
        if (off == 0) madvise(m->maps[i], (size_t)len, MADV_WILLNEED);
        if (off + len < f->size)
            madvise(m->maps[i] + off + len, (size_t)CR_MIN(block, f->size - off - len), MADV_WILLNEED);
        cr_xxh64_update(&st, m->maps[i] + off, (size_t)len);
        /* drop hashed pages: hashing a 100 GB model must not fill RSS */
        madvise(m->maps[i] + off, (size_t)len, MADV_DONTNEED);
        atomic_fetch_add(&m->bytes_done, len);
        if (thread == 0) vm_report(m, false);
    }
    h->got[i] = cr_xxh64_final(&st);
    return 0;
}

cr_status vm_open_inputs(vm *m, cr_error *err)
{
    const cr_program *p = m->p;
    uint64_t to_hash = 0;
    bool hashing = !m->opt->skip_hash && !(p->flags & CR_PROG_SKIP_HASH);
    for (uint32_t i = 0; i < p->n_files; i++) {
        const char *path = S(m, p->files[i].path);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) return cr_fail_errno(err, errno, "input %s", path);
        /* the identity is re-checked before the commit (check_inputs) */
        cr_status is = cr_file_id_of_fd(fd, path, &m->ids[i], err);
        if (is) { close(fd); return is; }
        uint64_t size = m->ids[i].size;
        if (size != p->files[i].size) {
            close(fd);
            return cr_fail(err, CR_ERR_RUNTIME, "input %s is %llu bytes but the program was compiled for %llu bytes "
                           "(the file changed or is truncated)", path, (unsigned long long)size,
                           (unsigned long long)p->files[i].size);
        }
        if (size > 0) {
            void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
            if (map == MAP_FAILED) { int e = errno; close(fd); return cr_fail_errno(err, e, "cannot map %s", path); }
            m->maps[i] = map;
            m->regions[i].lo = (uintptr_t)map;
            m->regions[i].hi = (uintptr_t)map + (uintptr_t)size;
            /* no read-around on faults (read_ahead_kb, often MiBs): PREFETCH
             * reads exactly the views the program needs, so a pass-through
             * recipe does not read the tensors it skips (spec/plan.md) */
            madvise(map, (size_t)size, MADV_RANDOM);
        }
        if (m->fds && size > 0) m->fds[i] = fd;   /* the reader's (reader.h) */
        else close(fd);   /* the mapping keeps the file */
        m->n_opened = i + 1;
        if (hashing && p->files[i].hash && (!m->file_in || m->file_in[i])) to_hash += p->files[i].size;
    }
    /* before any read of the maps */
    if (m->opt->guard) cr_input_guard_set(m->opt->guard, m->regions, p->n_files);
    if (!to_hash) return CR_OK;
    uint64_t *got = cr_calloc(m->alloc, p->n_files, sizeof *got);
    if (!got) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    m->bytes_total = to_hash;
    m->job_status = CR_OK;
    m->err = err;
    hash_job h = { m, got };
    /* files without a recorded hash are skipped inside the task by size 0 work */
    cr_pool_run(m->pool, p->n_files, hash_file, &h);
    cr_status s = m->job_status;
    for (uint32_t i = 0; !s && i < p->n_files; i++) {
        if (!p->files[i].hash || got[i] == p->files[i].hash || (m->file_in && !m->file_in[i])) continue;
        s = cr_fail(err, CR_ERR_RUNTIME, "input %s has content hash %016llx but the program was compiled for %016llx "
                    "(the file changed; --skip-hash checks sizes only)", S(m, p->files[i].path),
                    (unsigned long long)got[i], (unsigned long long)p->files[i].hash);
    }
    cr_free(m->alloc, got);
    atomic_store(&m->bytes_done, 0);
    return s;
}

/* After the last read of the inputs (aux copies included), before the
 * commit: has any input changed since it was opened? Run after a failure
 * too, since a changed input may be its cause (a copy's write from a
 * truncated mapping fails with EFAULT, a kernel stops on a guarded fault):
 * the change is then reported instead, unless the run was interrupted by a
 * signal. Returns the run's status s or the change's. */
cr_status vm_check_inputs(vm *m, cr_status s, cr_error *err)
{
    if (s == CR_ERR_INTERRUPTED && interrupted(m)) return s;
    uint32_t faulted = m->opt->guard && m->n_opened ? cr_input_guard_faulted(m->opt->guard) : 0;
    if (faulted)
        return cr_fail(err, CR_ERR_RUNTIME, "input %s changed while it was being read (a read past its end "
                       "failed: the file shrank)", S(m, m->p->files[faulted - 1].path));
    for (uint32_t i = 0; i < m->n_opened; i++) {
        cr_error e;
        if (cr_file_id_check(S(m, m->p->files[i].path), &m->ids[i], &e)) {
            if (err) *err = e;
            return e.status;
        }
    }
    return s;
}

/* one thread buffer of `bytes` (none when 0), counted in m->thread_bytes */
static bool thread_buf(vm *m, void **out, uint64_t bytes)
{
    *out = NULL;
    if (!bytes) return true;
    *out = cr_malloc(m->alloc, (size_t)bytes);
    if (*out) m->thread_bytes += bytes;
    return *out != NULL;
}

cr_status vm_setup(vm *m, cr_error *err)
{
    const cr_program *p = m->p;
    const cr_allocator *A = m->alloc;
    /* the thread count, and under --max-memory the steps that stream their
     * inputs, come from the memory model `crucible plan` reports */
    cr_status ms = cr_memplan_init(&m->mem, p, m->opt->threads, m->opt->max_memory, A, err);
    if (ms) return ms;
    unsigned threads = m->mem.threads;
    m->gather_limit = UINT64_MAX;   /* under a budget, set per step (vm_gather_limit) */
    m->n_threads = threads;
    cr_status s = cr_pool_init(A, threads, &m->pool, err);
    if (s) return s;
    m->thr = cr_calloc(A, threads, sizeof *m->thr);
    if (!m->thr) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    /* per-thread buffers, exactly the sizes memplan counts (runbuf.h);
     * thread 0 also converts COPYs */
    cr_run_thread_bufs b;
    cr_run_thread_bufs_of(p, &b);
    for (unsigned t = 0; t < threads; t++) {
        vm_thread *th = &m->thr[t];
        if (!thread_buf(m, (void **)&th->regs, t ? b.regs : b.regs0) || !thread_buf(m, (void **)&th->io, t ? b.io : b.io0) ||
            !thread_buf(m, (void **)&th->keys, b.keys) || !thread_buf(m, (void **)&th->lanes, b.lanes) ||
            !thread_buf(m, (void **)&th->carry, b.carry))
            return cr_fail(err, CR_ERR_NOMEM, "out of memory for thread buffers (%llu bytes each)",
                           (unsigned long long)(b.regs + b.io + b.keys + b.lanes + b.carry));
    }
    m->maps = cr_calloc(A, p->n_files ? p->n_files : 1, sizeof *m->maps);
    m->ids = cr_calloc(A, p->n_files ? p->n_files : 1, sizeof *m->ids);
    m->regions = cr_calloc(A, p->n_files ? p->n_files : 1, sizeof *m->regions);
    if (!m->opt->no_read_ahead) {
        m->fds = cr_malloc(A, (p->n_files ? p->n_files : 1) * sizeof *m->fds);
        if (!m->fds) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
        for (uint32_t i = 0; i < p->n_files; i++) m->fds[i] = -1;
    }
    m->scal = cr_calloc(A, p->n_scalars ? p->n_scalars : 1, sizeof *m->scal);
    m->rowvec = cr_calloc(A, p->n_rowvecs ? p->n_rowvecs : 1, sizeof *m->rowvec);
    m->scratch = cr_calloc(A, p->n_scratch ? p->n_scratch : 1, sizeof *m->scratch);
    m->scratch_ready = cr_calloc(A, p->n_scratch ? p->n_scratch : 1, sizeof *m->scratch_ready);
    m->sel = cr_calloc(A, p->n_selects ? p->n_selects : 1, sizeof *m->sel);
    m->sel_last = cr_calloc(A, p->n_selects ? p->n_selects : 1, sizeof *m->sel_last);
    m->nonfinite_in = cr_calloc(A, p->n_inputs ? p->n_inputs : 1, sizeof *m->nonfinite_in);
    m->nonfinite_out = cr_calloc(A, p->n_outputs ? p->n_outputs : 1, sizeof *m->nonfinite_out);
    m->in_checked = cr_calloc(A, p->n_inputs ? p->n_inputs : 1, sizeof *m->in_checked);
    if (!m->nonfinite_in || !m->nonfinite_out || !m->in_checked) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    m->shard_fds = cr_malloc(A, (p->n_shards ? p->n_shards : 1) * sizeof *m->shard_fds);
    if (!m->maps || !m->ids || !m->regions || !m->scal || !m->rowvec || !m->scratch || !m->scratch_ready || !m->sel || !m->sel_last ||
        !m->shard_fds)
        return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; i < p->n_shards; i++) m->shard_fds[i] = -1;
    cr_memplan_sel_last(p, m->sel_last);
    /* which kernel gathers each selection in torch's order, and whether
     * memplan runs it whole (vm_gather_early) */
    for (uint32_t pc = 0; pc < p->n_main; pc++) {
        if (p->main[pc].op != CR_OP_KERNEL) continue;
        const cr_prog_kernel *k = &p->kernels[p->main[pc].a];
        for (uint32_t i = 0; i < k->code_len; i++) {
            const cr_insn *in = &p->code[k->code_begin + i];
            if (!cr_op_torch_order(in->op)) continue;
            m->sel[in->dst].torch_order = in->op;
            m->sel[in->dst].torch_kernel = p->main[pc].a;
            m->sel[in->dst].torch_whole = !(m->mem.stream[pc] & (CR_MEM_SERIAL_GATHERS | CR_MEM_STREAMED));
        }
    }
    if (p->n_scalars) memcpy(m->scal, p->scalar_init, (size_t)p->n_scalars * sizeof *m->scal);
    for (uint32_t i = 0; i < p->n_rowvecs; i++) {
        m->rowvec[i] = cr_calloc(A, p->rowvecs[i].len ? (size_t)p->rowvecs[i].len : 1, sizeof(double));
        if (!m->rowvec[i]) return cr_fail(err, CR_ERR_NOMEM, "out of memory for row vector %u", i);
    }
    return CR_OK;
}

/* Does shard i go through the output stream? memplan's plan decides
 * (outstream.h); a partitioned run, GGUF output and --no-output-stream
 * write every shard with a pwrite per chunk (spec/vm.md, "Writing the
 * outputs"). */
static bool stream_wanted(const vm *m, uint32_t i)
{
    return !m->opt->no_output_stream && !m->opt->gguf && !m->shard_in && m->mem.out.on && m->mem.out.on[i];
}

static cr_status write_header(vm *m, uint32_t i, cr_error *err)
{
    const cr_prog_shard *sh = &m->p->shards[i];
    int e = cr_io_write_all(m->io, m->shard_fds[i], m->p->blobs + sh->header.off, sh->header.len, 0);
    if (!e) return CR_OK;
    char path[4096];
    vm_output_path(m, i, path, sizeof path);
    return cr_fail_errno(err, e, "cannot write %s", path);
}

/* The stream for the shards memplan streams, each also opened with
 * O_DIRECT (-1 where refused: its blocks go through the ordinary
 * descriptor). No stream (no thread or memory): their headers are written
 * here and they take the per-chunk path, same bytes. */
static cr_status start_stream(vm *m, const int *dfds, cr_error *err)
{
    const cr_program *p = m->p;
    m->stream_paths = cr_calloc(m->alloc, p->n_shards, sizeof *m->stream_paths);
    bool started = false;   /* then the stream owns the dfds */
    for (uint32_t i = 0; m->stream_paths && i < p->n_shards; i++) {
        char path[4096];
        vm_output_path(m, i, path, sizeof path);
        size_t n = strlen(path) + 1;
        if (!(m->stream_paths[i] = cr_malloc(m->alloc, n))) break;
        memcpy(m->stream_paths[i], path, n);
        if (i + 1 == p->n_shards && (started = true))
            m->ostream = cr_outstream_start(m->alloc, m->io, p, &m->mem.out, m->shard_fds, dfds,
                                            (const char *const *)m->stream_paths, m->opt->interrupt);
    }
    if (!m->ostream) {
        if (!started) for (uint32_t i = 0; i < p->n_shards; i++) if (dfds[i] >= 0) close(dfds[i]);
        for (uint32_t i = 0; i < p->n_shards; i++) {
            if (!stream_wanted(m, i)) continue;
            cr_status s = write_header(m, i, err);
            if (s) return s;
        }
        return CR_OK;
    }
    for (uint32_t i = 0; i < p->n_shards; i++) m->stream_shards += cr_outstream_on(m->ostream, i);
    return CR_OK;
}

cr_status vm_create_shards(vm *m, cr_error *err)
{
    const cr_program *p = m->p;
    int *dfds = cr_malloc(m->alloc, (p->n_shards ? p->n_shards : 1) * sizeof *dfds);
    if (!dfds) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    bool any = false;
    for (uint32_t i = 0; i < p->n_shards; i++) dfds[i] = -1;
    cr_status s = CR_OK;
    for (uint32_t i = 0; i < p->n_shards && !s; i++) {
        const cr_prog_shard *sh = &p->shards[i];
        if (m->shard_in && !m->shard_in[i]) continue;   /* another part's */
        char *path = cr_outdir_path(&m->outdir, S(m, sh->file_name));
        if (!path) { s = cr_fail(err, CR_ERR_NOMEM, "out of memory"); break; }
        int fd = m->io->open(m->io->ud, path, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0644);
        if (fd < 0) s = cr_fail_errno(err, errno, "cannot create %s", path);
        else {
            m->shard_fds[i] = fd;
            if (m->io->ftruncate(m->io->ud, fd, sh->file_size)) s = cr_fail_errno(err, errno, "cannot write %s", path);
            else if (stream_wanted(m, i)) {
                /* refused (EINVAL: tmpfs on older kernels, some FUSE and
                 * NFS mounts): its blocks go through fd; any other error
                 * is the disk's */
                dfds[i] = m->io->open(m->io->ud, path, O_WRONLY | O_DIRECT | O_CLOEXEC, 0);
                if (dfds[i] < 0 && errno != EINVAL && errno != EOPNOTSUPP)
                    s = cr_fail_errno(err, errno, "cannot create %s", path);
                any = true;
            } else s = write_header(m, i, err);
        }
        cr_free(m->alloc, path);
    }
    if (!s && any) s = start_stream(m, dfds, err);
    else for (uint32_t i = 0; i < p->n_shards; i++) if (dfds[i] >= 0) close(dfds[i]);
    cr_free(m->alloc, dfds);
    return s;
}

/* Hash each finished shard (one task per shard), reading it back through
 * its descriptor: tensors were written in no particular order, so only the
 * finished file has a well-defined hash. */
static int hash_shard(void *ud, uint64_t i, unsigned thread)
{
    vm *m = ud;
    (void)thread;
    const cr_prog_shard *sh = &m->p->shards[i];
    if (m->shard_fds[i] < 0) return 0;   /* another part's */
    if (m->stream_shards && m->mem.out.on[i]) return 0;   /* hashed from its blocks */
    cr_error e = {0};
    cr_status s = cr_hash_fd(m->alloc, m->shard_fds[i], sh->file_size, m->opt->interrupt, S(m, sh->file_name),
                             &m->shard_hash[i], &e);
    return s ? vm_job_fail(m, s, "%s", e.msg) : 0;
}

/* The hasher thread's digests, or (no thread, or writes that did not add
 * up) every shard hashed now, one pool task per shard */
cr_status vm_hash_shards(vm *m, cr_error *err)
{
    m->shard_hash = cr_calloc(m->alloc, m->p->n_shards ? m->p->n_shards : 1, sizeof *m->shard_hash);
    if (!m->shard_hash) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    if (m->ostream) {
        cr_status s = cr_outstream_finish(m->ostream, m->shard_hash, &m->direct_blocks, err);
        m->ostream = NULL;
        if (s) return s;
    }
    if (m->hasher) {
        bool complete = false;
        cr_status s = cr_hasher_finish(m->hasher, m->shard_hash, &m->hash_tail, &complete, err);
        m->hasher = NULL;
        if (s || complete) return s;
    }
    m->hash_tail = 0;
    for (uint32_t i = 0; i < m->p->n_shards; i++)
        if (m->shard_fds[i] >= 0 && !(m->stream_shards && m->mem.out.on[i])) m->hash_tail += m->p->shards[i].file_size;
    m->job_status = CR_OK;
    m->err = err;
    cr_pool_run(m->pool, m->p->n_shards, hash_shard, m);
    return m->job_status;
}

/* The index aux with the shard hashes added to its metadata (*out owned by
 * the caller), or *out = NULL when x is not the index. An index in a layout
 * crucible does not write (a hand-made .crb) is written as it is, with a
 * warning: the output is still valid, `crucible verify` reports no hashes. */

static cr_status index_with_hashes(vm *m, const cr_prog_aux *x, char **out, size_t *len, cr_error *err)
{
    const cr_program *p = m->p;
    *out = NULL;
    if (x->kind != CR_AUX_WRITE || strcmp(S(m, x->dest), CR_INDEX_FILE)) return CR_OK;
    const char **names = cr_calloc(m->alloc, p->n_shards ? p->n_shards : 1, sizeof *names);
    if (!names) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; i < p->n_shards; i++) names[i] = S(m, p->shards[i].file_name);
    cr_error e = {0};
    cr_status s = cr_index_add_hashes(m->alloc, (const char *)p->blobs + x->content.off, (size_t)x->content.len,
                                      names, m->shard_hash, p->n_shards, out, len, &e);
    cr_free(m->alloc, names);
    if (s == CR_ERR_FORMAT) { vm_warn(m, "%s; shard hashes not recorded", e.msg); return CR_OK; }
    if (s) return cr_fail(err, s, "%s", e.msg);
    return CR_OK;
}

cr_status vm_write_aux(vm *m, cr_error *err)
{
    const cr_program *p = m->p;
    /* a partitioned run: part 1 stages them in aux/ of its directory, the
     * index without hashes (assemble adds every part's, formats/parts.h) */
    bool part = m->shard_in != NULL;
    if (part && (m->opt->part != 1 || !p->n_aux)) return CR_OK;
    if (part) {
        char *dir = cr_outdir_path(&m->outdir, CR_PARTS_AUX);
        int e = !dir ? ENOMEM : m->io->mkdir(m->io->ud, dir, 0755) ? errno : 0;
        cr_status s = e ? cr_fail_errno(err, e, "cannot create %s", dir ? dir : CR_PARTS_AUX) : CR_OK;
        cr_free(m->alloc, dir);
        if (s) return s;
    }
    for (uint32_t i = 0; i < p->n_aux; i++) {
        const cr_prog_aux *x = &p->aux[i];
        char *indexed = NULL;
        size_t indexed_len = 0;
        cr_status s = part ? CR_OK : index_with_hashes(m, x, &indexed, &indexed_len, err);
        if (s) return s;
        char name[CR_LIMIT_NAME + 8];
        snprintf(name, sizeof name, "%s%s", part ? CR_PARTS_AUX "/" : "", S(m, x->dest));
        char *path = cr_outdir_path(&m->outdir, name);
        if (!path) { cr_free(m->alloc, indexed); return cr_fail(err, CR_ERR_NOMEM, "out of memory"); }
        const uint8_t *data;
        uint64_t len;
        if (indexed) { data = (const uint8_t *)indexed; len = indexed_len; }
        else if (x->kind == CR_AUX_WRITE) { data = p->blobs + x->content.off; len = x->content.len; }
        else { data = m->maps[x->src_file]; len = p->files[x->src_file].size; }
        if (!indexed && x->kind != CR_AUX_WRITE && data && len)
            madvise((void *)data, (size_t)len, MADV_WILLNEED);   /* no read-around */
        if (part) m->aux_hash[i] = len ? cr_xxh64(data, (size_t)len, 0) : cr_xxh64("", 0, 0);
        int fd = m->io->open(m->io->ud, path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
        if (fd < 0) s = cr_fail_errno(err, errno, "cannot create %s", path);
        else {
            int e = len ? cr_io_write_all(m->io, fd, data, len, 0) : 0;
            if (!e && m->io->fsync(m->io->ud, fd)) e = errno;
            if (m->io->close(m->io->ud, fd) && !e) e = errno;
            if (e) s = cr_fail_errno(err, e, "cannot write %s", path);
        }
        cr_free(m->alloc, path);
        cr_free(m->alloc, indexed);
        if (s) return s;
    }
    return CR_OK;
}

cr_status vm_finish_shards(vm *m, cr_error *err)
{
    for (uint32_t i = 0; i < m->p->n_shards; i++) {
        int fd = m->shard_fds[i];
        if (fd < 0) continue;   /* another part's */
        m->shard_fds[i] = -1;
        int e = m->io->fsync(m->io->ud, fd) ? errno : 0;
        if (m->io->close(m->io->ud, fd) && !e) e = errno;
        if (e) return cr_fail_errno(err, e, "cannot write shard %s", S(m, m->p->shards[i].file_name));
    }
    return CR_OK;
}

/* ---- the input reader ------------------------------------------------------------ */

cr_status vm_start_reader(vm *m, cr_error *err)
{
    const cr_program *p = m->p;
    if (!m->fds) return CR_OK;
    cr_status s = cr_read_plan_init(&m->rplan, p, m->alloc, err);
    if (s || !m->rplan.total) return s;
    m->file_names = cr_calloc(m->alloc, p->n_files, sizeof *m->file_names);
    uint64_t *sizes = cr_calloc(m->alloc, p->n_files, sizeof *sizes);
    if (!m->file_names || !sizes) { cr_free(m->alloc, sizes); return cr_fail(err, CR_ERR_NOMEM, "out of memory"); }
    for (uint32_t i = 0; i < p->n_files; i++) { m->file_names[i] = S(m, p->files[i].path); sizes[i] = p->files[i].size; }
    m->rpx = (cr_read_posix){ .fds = m->fds, .maps = m->maps, .sizes = sizes, .names = m->file_names, .n = p->n_files };
    cr_read_source_posix(&m->rpx, &m->rsrc);
    s = cr_reader_start(m->alloc, &m->rplan, &m->rsrc, m->mem.read_window, m->opt->interrupt, &m->reader, err);
    if (s) { cr_free(m->alloc, sizes); m->rpx.sizes = NULL; }
    return s;
}

void vm_stop_reader(vm *m)
{
    if (!m->reader) return;
    cr_reader_stop(m->reader, &m->read_stats);
    m->reader = NULL;
}

void vm_teardown(vm *m)
{
    const cr_program *p = m->p;
    const cr_allocator *A = m->alloc;
    vm_stop_reader(m);   /* before the maps and files go */
    cr_read_plan_free(&m->rplan);
    cr_free(A, (void *)m->rpx.sizes);
    cr_free(A, m->file_names);
    if (m->fds) for (uint32_t i = 0; i < p->n_files; i++) if (m->fds[i] >= 0) close(m->fds[i]);
    cr_free(A, m->fds);
    cr_pool_free(m->pool);
    cr_memplan_free(&m->mem);
    if (m->thr) for (unsigned t = 0; t < m->n_threads; t++) {
        cr_free(A, m->thr[t].regs); cr_free(A, m->thr[t].io); cr_free(A, m->thr[t].keys);
        cr_free(A, m->thr[t].lanes); cr_free(A, m->thr[t].carry);
    }
    cr_free(A, m->thr);
    if (m->opt->guard) cr_input_guard_clear(m->opt->guard);   /* before the unmapping */
    if (m->maps) for (uint32_t i = 0; i < p->n_files; i++)
        if (m->maps[i]) munmap(m->maps[i], (size_t)p->files[i].size);
    cr_free(A, m->maps);
    cr_free(A, m->ids);
    cr_free(A, m->regions);
    cr_hasher_abort(m->hasher);   /* a failed run: before its files close */
    cr_outstream_abort(m->ostream);
    if (m->stream_paths) for (uint32_t i = 0; i < p->n_shards; i++) cr_free(A, m->stream_paths[i]);
    cr_free(A, m->stream_paths);
    if (m->shard_fds) for (uint32_t i = 0; i < p->n_shards; i++) if (m->shard_fds[i] >= 0) close(m->shard_fds[i]);
    cr_free(A, m->shard_fds);
    cr_free(A, m->shard_hash);
    cr_free(A, m->scal);
    if (m->rowvec) for (uint32_t i = 0; i < p->n_rowvecs; i++) cr_free(A, m->rowvec[i]);
    cr_free(A, m->rowvec);
    if (m->scratch) for (uint32_t i = 0; i < p->n_scratch; i++) cr_free(A, m->scratch[i]);
    cr_free(A, m->scratch);
    cr_free(A, m->scratch_ready);
    if (m->sel) for (uint32_t i = 0; i < p->n_selects; i++) {
        cr_free(A, m->sel[i].hist); cr_free(A, m->sel[i].ties); cr_free(A, m->sel[i].lowor);
        vm_gather_free(m, i); cr_free(A, m->sel[i].tiebits);
    }
    for (unsigned i = 0; i < m->gathers.n; i++) cr_free(A, m->gathers.buf[i]);
    m->gathers.n = 0;
    cr_free(A, m->sel);
    cr_free(A, m->sel_last);
    cr_free(A, (void *)m->nonfinite_in);
    cr_free(A, m->in_checked);
    cr_free(A, (void *)m->nonfinite_out);
    if (m->outdir_open) cr_outdir_free(&m->outdir);   /* removes the temp dir unless committed */
    cr_gguf_sink_free(m->gguf);
    if (m->gguf_fd >= 0) { m->io->close(m->io->ud, m->gguf_fd); unlink(m->gguf_tmp); }   /* not committed */
    cr_program_gguf_src_free(A, m->gguf_owned);
    cr_outfile_end(&m->gguf_file);
    cr_free(A, m->gguf_dir);
    cr_free(A, m->gguf_parent);
    pthread_mutex_destroy(&m->err_mu);
}

/* NaN/Inf: one line for the inputs that hold some and one for the outputs,
 * each naming the first few tensors and counting the rest. A whole model
 * that comes out NaN (linear with weights summing to zero, as in mergekit)
 * is one warning, not one per tensor. */
enum { NONFINITE_NAMED = 3 };

static void name_append(char *buf, size_t cap, size_t *len, const char *s)
{
    int k = snprintf(buf + *len, cap - *len, "%s", s);
    if (k > 0) *len += (size_t)k < cap - *len ? (size_t)k : cap - *len - 1;
}

static int cmp_key2(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b;
    return x[0] != y[0] ? (x[0] < y[0] ? -1 : 1) : x[1] != y[1] ? (x[1] < y[1] ? -1 : 1) : 0;
}

void vm_warn_nonfinite(const vm *m)
{
    const cr_program *p = m->p;
    char names[768];
    size_t len = 0;
    uint32_t n_in = 0;
    const char *one_in = NULL, *one_file = NULL;
    names[0] = 0;
    /* Several views of one tensor count once: the flagged tensors' (file,
     * offset) keys are sorted and counted (n log n: a model of NaN has as
     * many as it has tensors); the first few are named in input order. */
    uint64_t (*keys)[2] = cr_malloc(m->alloc, (p->n_inputs ? p->n_inputs : 1) * sizeof *keys);
    uint32_t n_keys = 0, named[NONFINITE_NAMED], n_named = 0;
    for (uint32_t i = 0; i < p->n_inputs; i++) {
        if (!atomic_load(&m->nonfinite_in[i])) continue;
        const cr_prog_input *v = &p->inputs[i];
        if (v->kind != CR_INPUT_FILE) continue;
        if (keys) { keys[n_keys][0] = v->file; keys[n_keys][1] = v->offset; n_keys++; }
        bool seen = false;
        for (uint32_t j = 0; j < n_named && !seen; j++)
            seen = p->inputs[named[j]].file == v->file && p->inputs[named[j]].offset == v->offset;
        if (seen || n_named == NONFINITE_NAMED) continue;
        if (n_named) name_append(names, sizeof names, &len, ", ");
        name_append(names, sizeof names, &len, S(m, v->name));
        name_append(names, sizeof names, &len, " in ");
        name_append(names, sizeof names, &len, S(m, p->files[v->file].path));
        if (!n_named) { one_in = S(m, v->name); one_file = S(m, p->files[v->file].path); }
        named[n_named++] = i;
    }
    if (keys) {
        qsort(keys, n_keys, sizeof *keys, cmp_key2);
        for (uint32_t i = 0; i < n_keys; i++)
            n_in += !i || keys[i][0] != keys[i - 1][0] || keys[i][1] != keys[i - 1][1];
        cr_free(m->alloc, keys);
    } else {
        n_in = n_named;   /* out of memory for the count: the named ones at least */
    }
    if (n_in == 1) vm_warn(m, "input tensor %s in %s contains NaN or Inf", one_in, one_file);
    else if (n_in > 1)
        vm_warn(m, "%u input tensors contain NaN or Inf: %s%s", n_in, names, n_in > NONFINITE_NAMED ? ", ..." : "");

    uint32_t n_out = 0;
    const char *one_out = NULL;
    len = 0;
    names[0] = 0;
    for (uint32_t i = 0; i < p->n_outputs; i++) {
        if (!atomic_load(&m->nonfinite_out[i])) continue;
        if (n_out < NONFINITE_NAMED) {
            if (n_out) name_append(names, sizeof names, &len, ", ");
            name_append(names, sizeof names, &len, S(m, p->outputs[i].name));
        }
        if (!n_out) one_out = S(m, p->outputs[i].name);
        n_out++;
    }
    const char *why = n_in ? "" : " (the inputs have none: the merge produced them)";
    if (n_out == 1) vm_warn(m, "output tensor %s contains NaN or Inf%s", one_out, why);
    else if (n_out > 1)
        vm_warn(m, "%u of %u output tensors contain NaN or Inf%s: %s%s", n_out, p->n_outputs, why, names,
             n_out > NONFINITE_NAMED ? ", ..." : "");
}

/* Open the output directory, declaring every path the run reads: the
 * manifest's files, their model directories, and opt->inputs. */
cr_status vm_begin_outdir(vm *m, cr_error *err)
{
    cr_input_paths inputs;
    cr_input_paths_init(&inputs, m->alloc);
    /* the caller's paths first: they are named as the user wrote them */
    cr_status s = cr_input_paths_add_all(&inputs, m->opt->inputs, err);
    if (!s) s = cr_input_paths_add_program(&inputs, m->p, err);
    if (!s && m->shard_in) {
        s = cr_parts_begin(m->alloc, m->opt->out_dir, m->opt->part, m->opt->n_parts, &inputs, m->io, &m->outdir, err);
        m->outdir_open = !s;
    } else if (!s) {
        cr_outdir_options oo = { .force = m->opt->force, .io = m->io, .inputs = &inputs };
        s = cr_outdir_begin(m->alloc, m->opt->out_dir, &oo, &m->outdir, err);
        m->outdir_open = !s;
    }
    cr_input_paths_free(&inputs);
    return s;
}


/* ---- GGUF output ------------------------------------------------------------------ */

cr_status vm_begin_gguf(vm *m, cr_error *err)
{
    const char *out = m->opt->out_dir;
    if (m->opt->n_parts) return cr_fail(err, CR_ERR_UNSUPPORTED, "a GGUF output cannot be written in parts");
    if (!out[0]) return cr_fail(err, CR_ERR_ARG, "the output file name is empty");
    cr_input_paths inputs;
    cr_input_paths_init(&inputs, m->alloc);
    cr_status s = cr_input_paths_add_all(&inputs, m->opt->inputs, err);
    if (!s) s = cr_input_paths_add_program(&inputs, m->p, err);
    if (!s) s = cr_outguard_check(&inputs, out, "output file", err);
    cr_input_paths_free(&inputs);
    if (s) return s;
    struct stat sb;
    if (!m->opt->force && !lstat(out, &sb)) return cr_fail(err, CR_ERR_ARG, "%s exists (use --force to replace it)", out);
    if (!lstat(out, &sb) && S_ISDIR(sb.st_mode)) return cr_fail(err, CR_ERR_ARG, "%s is a directory, not a GGUF file", out);
    m->gguf_dir = m->opt->gguf_dir ? cr_strdup(m->alloc, m->opt->gguf_dir) : cr_gguf_out_dir_name(m->alloc, out);
    m->gguf_parent = cr_strdup(m->alloc, out);
    if (!m->gguf_dir || !m->gguf_parent) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    char *slash = strrchr(m->gguf_parent, '/');
    if (slash == m->gguf_parent) slash[1] = 0;
    else if (slash) *slash = 0;
    else strcpy(m->gguf_parent, ".");
    /* a killed run's OUT.crucible-tmp-PID goes first */
    if ((s = cr_outfile_begin(m->alloc, out, NULL, NULL, &m->gguf_file, err))) return s;
    m->gguf_tmp = m->gguf_file.tmp_path;
    int fd = m->io->open(m->io->ud, m->gguf_tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) return cr_fail_errno(err, errno, "cannot create %s", m->gguf_tmp);
    m->gguf_fd = fd;
    return CR_OK;
}

cr_status vm_open_gguf(vm *m, cr_error *err)
{
    cr_status s = cr_program_gguf_src(m->alloc, m->p, m->maps, m->gguf_dir, &m->gguf_src, &m->gguf_owned, err);
    if (!s) s = cr_gguf_sink_open(m->alloc, &m->gguf_src, m->opt->gguf, m->io, m->gguf_fd, m->gguf_tmp, &m->gguf, err);
    return s;
}

cr_status vm_commit_gguf(vm *m, cr_error *err)
{
    int fd = m->gguf_fd;
    m->gguf_fd = -1;
    int e = m->io->fsync(m->io->ud, fd) ? errno : 0;
    if (m->io->close(m->io->ud, fd) && !e) e = errno;
    if (!e && m->io->rename(m->io->ud, m->gguf_tmp, m->opt->out_dir)) e = errno;
    if (e) {
        unlink(m->gguf_tmp);
        return cr_fail_errno(err, e, "cannot write %s", m->opt->out_dir);
    }
    /* the rename is durable once the directory is */
    int dfd = open(m->gguf_parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) { m->io->fsync(m->io->ud, dfd); close(dfd); }
    return CR_OK;
}
