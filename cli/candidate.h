/* candidate.h — evaluating a model or a candidate merge without keeping a
 * model directory: the C API under the search scripts' crucible.eval
 * (cli/cmd_soup.c, spec/search.md).
 *
 * A candidate is a YAML recipe in memory. It is compiled by the one
 * pipeline (compiler/pipeline.h) exactly as `crucible merge` compiles it
 * and run by the VM into memory (core/memio.h: anonymous memory files, no
 * file system) when its output fits --max-memory beside the VM's working
 * memory, else into a directory inside a crucible-made temporary folder;
 * then scored by the forward pass exactly as `crucible eval` scores a
 * directory (default windows, special tokens as tokenizer(text)), and
 * thrown away. Either way the score equals `crucible merge` + `crucible
 * eval` of the same recipe bit for bit: the same program writes the same
 * bytes and the same scorer reads them (tests/e2e/soup.sh).
 */
#ifndef CR_CLI_CANDIDATE_H
#define CR_CLI_CANDIDATE_H

#include "base.h"

typedef struct cr_eval_score {
    double mean_nll, perplexity;
    size_t tokens, predictions;
    bool in_memory;             /* a candidate: run into memory, not the temporary folder */
} cr_eval_score;

typedef struct cr_candidate_env {
    const cr_allocator *alloc;
    char *tmp_dir;              /* crucible-made (mkdtemp), removed by cr_candidate_env_free */
    unsigned threads;           /* 0: all cores */
    uint64_t max_memory;        /* VM working memory; 0: no limit */
    uint64_t seed;              /* --random-seed of every candidate */
    const char *models_dir;     /* NULL: $CRUCIBLE_MODELS */
    unsigned n_runs;            /* candidates run so far (names the directories) */
    bool force_dir;             /* always through the temporary folder */
} cr_candidate_env;

/* Make the temporary folder ($TMPDIR or /tmp, "crucible-search-XXXXXX").
 * Errors: CR_ERR_IO. */
cr_status cr_candidate_env_init(cr_candidate_env *e, const cr_allocator *alloc, cr_error *err);
/* Remove the temporary folder and everything in it. */
void cr_candidate_env_free(cr_candidate_env *e);

/* Perplexity of the model in `dir` on the UTF-8 file text_path, as
 * `crucible eval DIR --text FILE` computes it. Errors: those of opening
 * the model, tokenizer and text, CR_ERR_ARG for a text of under 2 tokens. */
cr_status cr_eval_dir(const cr_allocator *alloc, const char *dir, const char *text_path, unsigned threads,
                      cr_eval_score *out, cr_error *err);

/* Compile the YAML recipe `yaml` (named `name` in messages; relative model
 * references resolve against the working directory) and run it into
 * out_dir (which must not exist), with copy_tokenizer and the model card
 * as `crucible merge` writes them. quiet: no progress. Errors: the
 * compiler's (CR_ERR_CONFIG with the diagnostics in err) and the VM's. */
cr_status cr_candidate_write(cr_candidate_env *e, const char *name, const char *yaml, size_t len,
                             const char *out_dir, bool quiet, cr_error *err);

/* Compile, run into memory (or, when the output and the VM's working
 * memory do not fit max_memory together, into the temporary folder),
 * score as cr_eval_dir, free. out->in_memory says which. */
cr_status cr_candidate_eval(cr_candidate_env *e, const char *name, const char *yaml, size_t len,
                            const char *text_path, cr_eval_score *out, cr_error *err);

#endif
