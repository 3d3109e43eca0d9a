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

#include "commands.h"
#include "forward.h"
#include "tokenizer.h"
#include "infile.h"
#include "limits.h"
#include "model.h"
#include "options.h"
#include "pool.h"
#include "termtext.h"

static bool parse_count(const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < 1) return false;
    *out = v;
    return true;
}

int cr_cmd_eval(int argc, char **argv)
{
    cr_cli_options o;
    if (!cr_cli_parse(CR_CMD_EVAL, argc, argv, &o)) return 2;
    const char *dir = o.pos[0], *text_path = o.val[CR_OPT_TEXT];
    long max_tokens = 0;
    if (!text_path) {
        fprintf(stderr, "crucible eval: --text FILE is required\n");
        return 2;
    }
    if (o.val[CR_OPT_MAX_TOKENS] && (!parse_count(o.val[CR_OPT_MAX_TOKENS], &max_tokens) || max_tokens < 2)) {
        fprintf(stderr, "crucible eval: --max-tokens needs an integer >= 2, got '%s'\n", o.val[CR_OPT_MAX_TOKENS]);
        return 2;
    }
    unsigned threads = cr_threads_resolve(o.threads);

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
    llm.n_threads = threads;
    snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", dir);
    if (cr_tokenizer_load(A, tok_path, &tok, &err)) goto fail;
    if (cr_file_read(A, text_path, CR_LIMIT_TEXT_BYTES, "text", &text, &tl, &err)) goto fail;
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
    cr_free(A, text);
    cr_tokenizer_free(tok);
    cr_llm_free(&llm);
    if (model_open) cr_model_close(&model);
    return rc;
}
