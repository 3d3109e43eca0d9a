/* cmd_eval.c — `crucible eval MODEL_DIR --text FILE...`: perplexity of a
 * Llama / Mistral / Qwen2 / Qwen3 model on UTF-8 texts.
 *
 * Each file is tokenized as transformers' `tokenizer(text)` does: with
 * the special tokens of tokenizer.json's post-processor (Llama's "<s> $A";
 * nothing for Qwen2's ByteLevel). transformers 5 ignores
 * tokenizer_config.json's add_bos_token / add_eos_token when a
 * tokenizer.json exists, and so does crucible. --no-bos: no special
 * tokens, as mergekit encodes. The ids are scored in windows exactly as the Hugging
 * Face perplexity guide ("Perplexity of fixed-length models") does it:
 * windows of --max-tokens starting every --stride tokens; each window
 * scores only the targets past the previous window's end; a window's mean
 * NLL is weighted by (targets - 1), the guide's `num_valid_tokens -
 * batch_size`. With stride = max-tokens (the default) that is plain
 * consecutive windows. Perplexity = exp(weighted mean NLL). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "commands.h"
#include "forward.h"
#include "infile.h"
#include "limits.h"
#include "model.h"
#include "options.h"
#include "pool.h"
#include "termtext.h"
#include "tokenizer.h"

static bool parse_count(const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 1) return false;
    *out = v;
    return true;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* One file's figures. */
typedef struct eval_result {
    size_t tokens, windows, predictions, processed;
    double nll_weighted, weight;     /* Σ window mean · (targets − 1), Σ (targets − 1) */
    double seconds;
} eval_result;

typedef struct eval_setup {
    const cr_llm *llm;
    size_t max_tokens, stride;
    bool progress;                  /* stderr is a terminal and not --quiet */
    int file_index, n_files;
} eval_setup;

/* The guide's loop over ids[0..n). */
static cr_status score(const eval_setup *s, const int32_t *ids, size_t n, eval_result *r, cr_error *err)
{
    size_t prev_end = 0, n_windows = (n > s->max_tokens ? (n - s->max_tokens + s->stride - 1) / s->stride : 0) + 1;
    double t0 = now_s();
    for (size_t begin = 0; begin < n; begin += s->stride) {
        size_t end = begin + s->max_tokens < n ? begin + s->max_tokens : n;
        size_t trg = end - prev_end, len = end - begin;
        /* targets are ids[end - trg .. end); a target at index 0 of the
         * window has no prediction (the label shift) */
        cr_llm_run run = { .ids = ids + begin, .n_ids = len, .want_nll = true, .nll_from = len - trg };
        if (len >= 2) {
            cr_status st = cr_llm_forward(s->llm, &run, err);
            if (st) return st;
        }
        /* a window with no prediction gives the guide NaN·0: left out */
        if (run.nll_count) {
            r->nll_weighted += run.nll_sum / (double)run.nll_count * (double)(trg - 1);
            r->weight += (double)(trg - 1);
            r->predictions += run.nll_count;
            r->windows++;
            r->processed += len;
        }
        prev_end = end;
        if (s->progress) {
            double el = now_s() - t0;
            fprintf(stderr, "\r\033[Keval: file %d/%d, window %zu/%zu, %.0f tokens/s", s->file_index + 1,
                    s->n_files, r->windows, n_windows, el > 0 ? (double)r->processed / el : 0.0);
            fflush(stderr);
        }
        if (end == n) break;
    }
    r->seconds = now_s() - t0;
    if (s->progress) fprintf(stderr, "\r\033[K");
    return CR_OK;
}

static double tokens_per_s(const eval_result *r) { return r->seconds > 0 ? (double)r->processed / r->seconds : 0; }

static void print_text(const char *path, const eval_result *r, size_t max_tokens, size_t stride)
{
    printf("file: ");
    cr_text_fput(stdout, path, 0);
    printf("\ntokens: %zu\n", r->tokens);
    printf("windows: %zu of up to %zu tokens, stride %zu\n", r->windows, max_tokens, stride);
    printf("predictions: %zu\n", r->predictions);
    printf("mean_nll: %.6f\n", r->nll_weighted / r->weight);
    printf("perplexity: %.4f\n", exp(r->nll_weighted / r->weight));
    printf("time: %.2f s, %.1f tokens/s\n", r->seconds, tokens_per_s(r));
}

static cJSON *json_result(const char *path, const eval_result *r)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    if (path) cJSON_AddStringToObject(o, "file", path);
    cJSON_AddNumberToObject(o, "tokens", (double)r->tokens);
    cJSON_AddNumberToObject(o, "windows", (double)r->windows);
    cJSON_AddNumberToObject(o, "predictions", (double)r->predictions);
    cJSON_AddNumberToObject(o, "mean_nll", r->nll_weighted / r->weight);
    cJSON_AddNumberToObject(o, "perplexity", exp(r->nll_weighted / r->weight));
    cJSON_AddNumberToObject(o, "seconds", r->seconds);
    cJSON_AddNumberToObject(o, "tokens_per_second", tokens_per_s(r));
    return o;
}

int cr_cmd_eval(int argc, char **argv)
{
    cr_cli_options o;
    if (!cr_cli_parse(CR_CMD_EVAL, argc, argv, &o)) return 2;
    const char *dir = o.pos[0];
    long max_tokens = 0, stride = 0;
    if (!o.n_text_args) {
        fprintf(stderr, "crucible eval: --text FILE is required\n");
        return 2;
    }
    if (o.val[CR_OPT_MAX_TOKENS] && (!parse_count(o.val[CR_OPT_MAX_TOKENS], &max_tokens) || max_tokens < 2)) {
        fprintf(stderr, "crucible eval: --max-tokens needs an integer >= 2, got '%s'\n", o.val[CR_OPT_MAX_TOKENS]);
        return 2;
    }
    if (o.val[CR_OPT_STRIDE] && !parse_count(o.val[CR_OPT_STRIDE], &stride)) {
        fprintf(stderr, "crucible eval: --stride needs an integer >= 1, got '%s'\n", o.val[CR_OPT_STRIDE]);
        return 2;
    }
    bool json = o.val[CR_OPT_JSON] != NULL;
    unsigned threads = cr_threads_resolve(o.threads);

    const cr_allocator *A = cr_default_allocator();
    cr_error err = { 0 };
    int rc = 1;
    cr_model model;
    cr_llm llm = { 0 };
    cr_pool *pool = NULL;
    cr_tokenizer *tok = NULL;
    cJSON *out = NULL, *files = NULL;
    char *text = NULL;
    cr_vec ids;
    cr_vec_init(&ids, A, sizeof(int32_t));
    bool model_open = false;
    char path[4096];
    const char *text_path = NULL;

    if (cr_model_open(A, dir, 0, &model, &err)) goto fail;
    model_open = true;
    if (cr_llm_open(A, &model, &llm, &err)) goto fail;
    if (cr_pool_init(A, threads, &pool, &err)) goto fail;
    llm.pool = pool;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (cr_tokenizer_load(A, path, &tok, &err)) goto fail;
    if (!max_tokens) max_tokens = llm.cfg.max_pos && llm.cfg.max_pos < 1024 ? llm.cfg.max_pos : 1024;
    if (!stride) stride = max_tokens;
    if (stride > max_tokens) {
        fprintf(stderr, "crucible eval: --stride %ld is larger than --max-tokens %ld (tokens would be skipped)\n",
                stride, max_tokens);
        rc = 2;
        goto done;
    }
    if (llm.cfg.max_pos && (uint32_t)max_tokens > llm.cfg.max_pos)
        fprintf(stderr, "crucible eval: warning: --max-tokens %ld exceeds max_position_embeddings %u\n", max_tokens,
                llm.cfg.max_pos);

    eval_setup setup = { &llm, (size_t)max_tokens, (size_t)stride, isatty(2) && !o.quiet, 0, o.n_text_args };
    eval_result total = { 0 };
    if (json) {
        out = cJSON_CreateObject();
        files = cJSON_CreateArray();
        if (!out || !files) { cr_fail(&err, CR_ERR_NOMEM, "out of memory"); goto fail; }
        cJSON_AddStringToObject(out, "model", dir);
        cJSON_AddStringToObject(out, "model_type", llm.cfg.model_type);
        cJSON_AddNumberToObject(out, "layers", llm.cfg.n_layers);
        cJSON_AddBoolToObject(out, "special_tokens", !o.no_bos);
        cJSON_AddNumberToObject(out, "max_tokens", (double)max_tokens);
        cJSON_AddNumberToObject(out, "stride", (double)stride);
        cJSON_AddNumberToObject(out, "threads", threads);
        cJSON_AddStringToObject(out, "isa", llm.gemm->name);
    } else {
        printf("model: %s (", dir);
        cr_text_fput(stdout, llm.cfg.model_type, 0);   /* from config.json */
        printf(", %u layers), %u thread%s, %s kernels, special tokens %s\n", llm.cfg.n_layers, threads,
               threads == 1 ? "" : "s", llm.gemm->name, o.no_bos ? "off" : "on");
    }
    for (int f = 0; f < o.n_text_args; f++) {
        text_path = o.text_args[f];
        size_t tl = 0;
        eval_result r = { 0 };
        ids.len = 0;
        cr_free(A, text);
        text = NULL;
        if (cr_file_read(A, text_path, CR_LIMIT_TEXT_BYTES, "text", &text, &tl, &err)) goto fail;
        if (cr_tokenizer_encode(tok, text, tl, !o.no_bos, &ids, &err)) {
            fprintf(stderr, "crucible eval: %s: %s\n", text_path, err.msg);
            goto done;
        }
        if (ids.len < 2) {
            fprintf(stderr, "crucible eval: %s has %zu token%s; perplexity needs at least 2\n", text_path, ids.len,
                    ids.len == 1 ? "" : "s");
            goto done;
        }
        r.tokens = ids.len;
        setup.file_index = f;
        if (score(&setup, (const int32_t *)ids.data, ids.len, &r, &err)) goto fail;
        total.tokens += r.tokens;
        total.windows += r.windows;
        total.predictions += r.predictions;
        total.processed += r.processed;
        total.nll_weighted += r.nll_weighted;
        total.weight += r.weight;
        total.seconds += r.seconds;
        if (json) {
            cJSON *jr = json_result(text_path, &r);
            if (!jr) { cr_fail(&err, CR_ERR_NOMEM, "out of memory"); goto fail; }
            cJSON_AddItemToArray(files, jr);
        } else {
            print_text(text_path, &r, (size_t)max_tokens, (size_t)stride);
        }
    }
    if (json) {
        cJSON_AddItemToObject(out, "files", files);
        files = NULL;
        cJSON *jt = json_result(NULL, &total);
        if (!jt) { cr_fail(&err, CR_ERR_NOMEM, "out of memory"); goto fail; }
        cJSON_AddItemToObject(out, "total", jt);
        char *s = cJSON_Print(out);
        if (!s) { cr_fail(&err, CR_ERR_NOMEM, "out of memory"); goto fail; }
        printf("%s\n", s);
        cJSON_free(s);
    } else if (o.n_text_args > 1) {
        printf("total: %zu tokens in %d files, mean_nll %.6f, perplexity %.4f, %.1f tokens/s\n", total.tokens,
               o.n_text_args, total.nll_weighted / total.weight, exp(total.nll_weighted / total.weight),
               tokens_per_s(&total));
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "crucible eval: %s\n", err.msg);
done:
    cJSON_Delete(out);
    cJSON_Delete(files);
    cr_vec_free(&ids);
    cr_free(A, text);
    cr_tokenizer_free(tok);
    cr_llm_free(&llm);
    cr_pool_free(pool);
    if (model_open) cr_model_close(&model);
    return rc;
}
