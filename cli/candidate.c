/* candidate.c — scoring models and candidate merges for the search
 * commands (cli/candidate.h): a crucible-made temporary folder, the
 * compile-and-run of a YAML recipe in memory, and the perplexity loop of
 * `crucible eval` with its defaults (windows of max_position_embeddings,
 * at most 1024 tokens, stride = window, special tokens as tokenizer(text)).
 * The windowing is the Hugging Face perplexity guide's, as in
 * cli/cmd_eval.c, whose figures the e2e test compares with these.
 */
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "candidate.h"
#include "forward.h"
#include "infile.h"
#include "limits.h"
#include "memio.h"
#include "model.h"
#include "pipeline.h"
#include "pool.h"
#include "tokenizer.h"
#include "vm.h"

cr_status cr_candidate_env_init(cr_candidate_env *e, const cr_allocator *alloc, cr_error *err)
{
    memset(e, 0, sizeof *e);
    e->alloc = alloc;
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    size_t n = strlen(base) + 40;
    e->tmp_dir = cr_malloc(alloc, n);
    if (!e->tmp_dir) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    snprintf(e->tmp_dir, n, "%s/crucible-search-XXXXXX", base);
    if (!mkdtemp(e->tmp_dir)) {
        cr_status st = cr_fail_errno(err, errno, "cannot make a temporary folder in %s", base);
        cr_free(alloc, e->tmp_dir);
        e->tmp_dir = NULL;
        return st;
    }
    return CR_OK;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static void remove_tree(const char *path) { nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

void cr_candidate_env_free(cr_candidate_env *e)
{
    if (e->tmp_dir) {
        remove_tree(e->tmp_dir);
        cr_free(e->alloc, e->tmp_dir);
    }
    e->tmp_dir = NULL;
}

/* ---- perplexity of a directory ------------------------------------------ */

/* The guide's loop over ids[0..n): windows of max_tokens every stride
 * tokens, each scoring the targets past the previous window's end, its
 * mean NLL weighted by (targets - 1). */
static cr_status score(const cr_llm *llm, const int32_t *ids, size_t n, size_t max_tokens, size_t stride,
                       double *nll_weighted, double *weight, size_t *predictions, cr_error *err)
{
    size_t prev_end = 0;
    for (size_t begin = 0; begin < n; begin += stride) {
        size_t end = begin + max_tokens < n ? begin + max_tokens : n;
        size_t trg = end - prev_end, len = end - begin;
        cr_llm_run run = { .ids = ids + begin, .n_ids = len, .want_nll = true, .nll_from = len - trg };
        if (len >= 2) {
            cr_status st = cr_llm_forward(llm, &run, err);
            if (st) return st;
        }
        if (run.nll_count) {
            *nll_weighted += run.nll_sum / (double)run.nll_count * (double)(trg - 1);
            *weight += (double)(trg - 1);
            *predictions += run.nll_count;
        }
        prev_end = end;
        if (end == n) break;
    }
    return CR_OK;
}

/* The model named dir, its files found through fs (NULL: the file system). */
static cr_status eval_model(const cr_allocator *A, const cr_model_fs *fs, const char *dir, const char *text_path,
                            unsigned threads, cr_eval_score *out, cr_error *err)
{
    memset(out, 0, sizeof *out);
    cr_model model;
    cr_llm llm = { 0 };
    cr_pool *pool = NULL;
    cr_tokenizer *tok = NULL;
    char *text = NULL;
    size_t tl = 0;
    cr_vec ids;
    cr_vec_init(&ids, A, sizeof(int32_t));
    char path[4096];
    char mapped[64];
    cr_status st = cr_model_open_fs(A, dir, 0, fs, &model, err);
    if (st) return st;
    if ((st = cr_llm_open(A, &model, &llm, err))) goto done;
    if ((st = cr_pool_init(A, cr_threads_resolve(threads), &pool, err))) goto done;
    llm.pool = pool;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    const char *tp = fs ? fs->map(fs->ud, path, mapped, sizeof mapped) : path;
    if (!tp) {
        st = cr_fail(err, CR_ERR_IO, "%s: cannot open tokenizer: no such file", path);
        goto done;
    }
    if ((st = cr_tokenizer_load(A, tp, &tok, err))) goto done;
    if ((st = cr_file_read(A, text_path, CR_LIMIT_TEXT_BYTES, "text", &text, &tl, err))) goto done;
    if ((st = cr_tokenizer_encode(tok, text, tl, true, &ids, err))) goto done;
    if (ids.len < 2) {
        st = cr_fail(err, CR_ERR_ARG, "%s has %zu token(s); perplexity needs at least 2", text_path, ids.len);
        goto done;
    }
    size_t max_tokens = llm.cfg.max_pos && llm.cfg.max_pos < 1024 ? llm.cfg.max_pos : 1024;
    double nll = 0, w = 0;
    if ((st = score(&llm, (const int32_t *)ids.data, ids.len, max_tokens, max_tokens, &nll, &w, &out->predictions,
                    err)))
        goto done;
    out->tokens = ids.len;
    out->mean_nll = nll / w;
    out->perplexity = exp(nll / w);
done:
    cr_vec_free(&ids);
    cr_free(A, text);
    cr_tokenizer_free(tok);
    cr_llm_free(&llm);
    cr_pool_free(pool);
    cr_model_close(&model);
    return st;
}

cr_status cr_eval_dir(const cr_allocator *A, const char *dir, const char *text_path, unsigned threads,
                      cr_eval_score *out, cr_error *err)
{
    return eval_model(A, NULL, dir, text_path, threads, out, err);
}

/* ---- candidates ---------------------------------------------------------- */

/* The first error diagnostic into err (the compiler printed none). */
static cr_status diag_error(const cr_compile_result *r, const char *name, cr_status st, cr_error *err)
{
    for (size_t i = 0; i < r->diags.items.len; i++) {
        const cr_diag *d = &CR_VEC_AT(&r->diags.items, cr_diag, i);
        if (d->level != CR_DIAG_ERROR) continue;
        cr_fail(err, st, "%s:%d:%d: %s", name, d->loc.line, d->loc.col, d->msg);
        break;
    }
    return st;
}

static cr_status compile(cr_candidate_env *e, const char *name, const char *yaml, size_t len,
                         const char *out_dir, cr_compile_result *r, cr_error *err)
{
    cr_pipeline_options po = {
        .alloc = e->alloc, .path = name, .text = yaml, .text_len = len, .models_dir = e->models_dir,
        .compile = { .seed = e->seed, .max_shard_bytes = 5000000000ull },
        .copy_tokenizer = true, .write_card = true, .out_dir = out_dir, .threads = e->threads,
        .collect_inputs = true, .recipe_text = true };
    cr_status st = cr_compile(&po, r, err);
    if (st) {
        if (r->failed == CR_STAGE_FRONTEND && r->diags.n_errors) diag_error(r, name, st, err);
        cr_compile_result_free(r);
        return st;
    }
    cr_compile_result_release_compiler(r);
    return CR_OK;
}

static cr_status run(cr_candidate_env *e, const cr_compile_result *r, const char *out_dir, const cr_io *io,
                     uint64_t max_memory, bool quiet, cr_error *err)
{
    cr_vm_options vo;
    cr_vm_options_init(&vo);
    vo.out_dir = out_dir;
    vo.threads = e->threads;
    vo.max_memory = max_memory;
    vo.quiet = quiet;
    vo.skip_hash = true;   /* just compiled from the same files */
    vo.inputs = &r->inputs;
    vo.io = io;
    return cr_vm_run(&r->program, &vo, err);
}

cr_status cr_candidate_write(cr_candidate_env *e, const char *name, const char *yaml, size_t len,
                             const char *out_dir, bool quiet, cr_error *err)
{
    cr_compile_result r;
    cr_status st = compile(e, name, yaml, len, out_dir, &r, err);
    if (st) return st;
    st = run(e, &r, out_dir, NULL, e->max_memory, quiet, err);
    cr_compile_result_free(&r);
    return st;
}

static const char *memio_map(void *ud, const char *path, char *buf, size_t cap)
{
    return cr_memio_path(ud, path, buf, cap);
}

cr_status cr_candidate_eval(cr_candidate_env *e, const char *name, const char *yaml, size_t len,
                            const char *text_path, cr_eval_score *out, cr_error *err)
{
    if (!e->tmp_dir) return cr_fail(err, CR_ERR_ARG, "no temporary folder");
    size_t n = strlen(e->tmp_dir) + 32;
    char *dir = cr_malloc(e->alloc, n);
    if (!dir) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    snprintf(dir, n, "%s/candidate-%u", e->tmp_dir, e->n_runs++);
    cr_compile_result r;
    cr_status st = compile(e, name, yaml, len, dir, &r, err);
    if (st) { cr_free(e->alloc, dir); return st; }
    /* In memory when the output and the VM's working memory fit the
     * budget together: the VM gets what the output leaves, and says so
     * (CR_ERR_LIMIT, before it writes) when that is too little. */
    uint64_t out_bytes = 0;
    for (uint32_t i = 0; i < r.program.n_shards; i++) out_bytes += r.program.shards[i].file_size;
    bool in_memory = !e->force_dir && (!e->max_memory || out_bytes < e->max_memory);
    if (in_memory) {
        cr_memio mio;
        if ((st = cr_memio_init(&mio, e->alloc, err))) goto out;
        st = run(e, &r, dir, &mio.io, e->max_memory ? e->max_memory - out_bytes : 0, true, err);
        if (!st) {
            cr_model_fs fs = { memio_map, &mio };
            st = eval_model(e->alloc, &fs, dir, text_path, e->threads, out, err);
            out->in_memory = true;
        }
        cr_memio_free(&mio);
        if (st != CR_ERR_LIMIT) goto out;
    }
    st = run(e, &r, dir, NULL, e->max_memory, true, err);
    if (!st) st = cr_eval_dir(e->alloc, dir, text_path, e->threads, out, err);
    remove_tree(dir);
out:
    cr_compile_result_free(&r);
    cr_free(e->alloc, dir);
    return st;
}
