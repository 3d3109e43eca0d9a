/* cmd_eval.c — `crucible eval MODEL_DIR --text FILE`: perplexity of a
 * Llama / Mistral / Qwen2 / Qwen3 model on a UTF-8 text, tokenized with
 * MODEL_DIR/tokenizer.json (no special tokens added, as mergekit encodes).
 *
 * The token stream is cut into consecutive windows of --max-tokens
 * (default: max_position_embeddings, at most 1024); each window is one
 * forward pass from position 0 and contributes its len-1 next-token
 * predictions. Perplexity = exp(mean NLL over all predictions). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "infer/forward.h"
#include "infer/tokenizer.h"
#include "model.h"
#include "options.h"
#include "termtext.h"

static int usage(FILE *f, int rc)
{
    fprintf(f, "usage: crucible eval MODEL_DIR --text FILE [--max-tokens N] [--threads N]\n"
               "Perplexity (mean next-token NLL) of the model on FILE, tokenized with\n"
               "MODEL_DIR/tokenizer.json. The text is evaluated in consecutive windows of\n"
               "--max-tokens (default max_position_embeddings, at most 1024).\n");
    return rc;
}

static bool parse_count(const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 1) return false;
    *out = v;
    return true;
}

static char *read_file(const char *path, size_t *len, cr_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) { cr_fail_errno(err, errno, "%s: cannot open", path); return NULL; }
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (cap - n < 65536) {
            size_t nc = cap ? cap * 2 : 1 << 16;
            char *nb = realloc(buf, nc + 1);
            if (!nb) { free(buf); fclose(f); cr_fail(err, CR_ERR_NOMEM, "%s: out of memory", path); return NULL; }
            buf = nb;
            cap = nc;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (!r) break;
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) { free(buf); cr_fail(err, CR_ERR_IO, "%s: read error", path); return NULL; }
    buf[n] = 0;
    *len = n;
    return buf;
}

int cr_cmd_eval(int argc, char **argv)
{
    const char *dir = NULL, *text_path = NULL;
    long max_tokens = 0, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout, 0);
        if (!cr_cli_has_value("eval", argc, argv, i)) return 2;
        if (!strcmp(a, "--text")) { text_path = argv[++i]; continue; }
        if (!strcmp(a, "--max-tokens")) {
            if (!parse_count(argv[++i], &max_tokens) || max_tokens < 2) {
                fprintf(stderr, "crucible eval: --max-tokens needs an integer >= 2, got '%s'\n", argv[i]);
                return 2;
            }
            continue;
        }
        if (!strcmp(a, "--threads")) {
            unsigned t;
            if (!cr_cli_parse_threads("eval", a, argv[++i], 256, &t)) return 2;
            threads = t;
            continue;
        }
        if (a[0] == '-') { fprintf(stderr, "crucible eval: unknown option '%s'\n", a); return usage(stderr, 2); }
        if (dir) { fprintf(stderr, "crucible eval: more than one MODEL_DIR ('%s', '%s')\n", dir, a); return 2; }
        dir = a;
    }
    if (!dir || !text_path) return usage(stderr, 2);
    if (!threads) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (n > 64 ? 64 : n) : 1;
    }

    const cr_allocator *A = cr_default_allocator();
    cr_error err = { 0 };
    int rc = 1;
    cr_model model;
    cr_llm llm = { 0 };
    cr_tokenizer *tok = NULL;
    char *text = NULL;
    cr_vec ids;
    cr_vec_init(&ids, A, sizeof(int32_t));
    bool model_open = false;
    char tok_path[4096];
    size_t tl = 0;

    if (cr_model_open(A, dir, 0, &model, &err)) goto fail;
    model_open = true;
    if (cr_llm_open(A, &model, &llm, &err)) goto fail;
    llm.n_threads = (unsigned)threads;
    snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", dir);
    if (cr_tokenizer_load(A, tok_path, &tok, &err)) goto fail;
    if (!(text = read_file(text_path, &tl, &err))) goto fail;
    if (cr_tokenizer_encode(tok, text, tl, false, &ids, &err)) {
        fprintf(stderr, "crucible eval: %s: ", text_path);
        fprintf(stderr, "%s\n", err.msg);
        goto done;
    }
    if (ids.len < 2) {
        fprintf(stderr, "crucible eval: %s has %zu token%s; perplexity needs at least 2\n", text_path, ids.len,
                ids.len == 1 ? "" : "s");
        goto done;
    }
    if (!max_tokens) max_tokens = llm.cfg.max_pos && llm.cfg.max_pos < 1024 ? llm.cfg.max_pos : 1024;
    if (llm.cfg.max_pos && (uint32_t)max_tokens > llm.cfg.max_pos)
        fprintf(stderr, "crucible eval: warning: --max-tokens %ld exceeds max_position_embeddings %u\n", max_tokens,
                llm.cfg.max_pos);

    double nll = 0;
    size_t count = 0, windows = 0;
    for (size_t s = 0; s < ids.len; s += (size_t)max_tokens) {
        size_t n = ids.len - s < (size_t)max_tokens ? ids.len - s : (size_t)max_tokens;
        if (n < 2) break;   /* a 1-token tail predicts nothing */
        cr_llm_run run = { .ids = (const int32_t *)ids.data + s, .n_ids = n, .want_nll = true };
        if (cr_llm_forward(&llm, &run, &err)) goto fail;
        nll += run.nll_sum;
        count += run.nll_count;
        windows++;
    }
    printf("model: %s (", dir);
    cr_text_fput(stdout, llm.cfg.model_type, 0);   /* from config.json */
    printf(", %u layers)\n", llm.cfg.n_layers);
    printf("tokens: %zu\n", ids.len);
    printf("windows: %zu of up to %ld tokens\n", windows, max_tokens);
    printf("predictions: %zu\n", count);
    printf("mean_nll: %.6f\n", nll / (double)count);
    printf("perplexity: %.4f\n", exp(nll / (double)count));
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "crucible eval: %s\n", err.msg);
done:
    cr_vec_free(&ids);
    free(text);
    cr_tokenizer_free(tok);
    cr_llm_free(&llm);
    if (model_open) cr_model_close(&model);
    return rc;
}
