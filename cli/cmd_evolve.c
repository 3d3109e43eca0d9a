/* cmd_evolve.c — `crucible evolve CONFIG.yml OUT_DIR`: evolutionary search
 * over a merge's parameters in the spirit of mergekit-evolve (spec/search.md).
 *
 * The config's `genome:` has mergekit 0.1.5's shape (mergekit/evo/genome.py):
 * models, merge_method (linear, task_arithmetic, ties, dare_ties),
 * base_model, layer_granularity, normalize, allow_negative_weights. The
 * genes are mergekit's genotype [layer group][model][parameter] flattened,
 * mapped to a recipe as genotype_merge_config does (|density| clamped to
 * [0, 1]; |weight| unless negative weights are allowed; one slice per
 * layer group, the base model appended to each; bfloat16). `tasks:` are
 * crucible's: `{perplexity: FILE}` (lower is better) or `{command: CMD}`
 * (the last number CMD prints, higher is better; the merge's directory is
 * in $CRUCIBLE_MODEL), each with a `weight`. The search minimises
 * sum(weight * perplexity) - sum(weight * score) with CMA-ES (core/cmaes.h),
 * candidates scored one after another (each merge and forward pass uses
 * every thread). OUT_DIR keeps checkpoint.json (the whole state after each
 * generation: --resume continues from it, bit for bit as if never
 * stopped), best.yml (the best recipe so far: `crucible merge best.yml`
 * reproduces it) and best.json (its fitness and genes).
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "candidate.h"
#include "cmaes.h"
#include "commands.h"
#include "infile.h"
#include "jsonw.h"
#include "options.h"
#include "yaml_tree.h"

#define MAX_MODELS 64
#define MAX_TASKS 16

typedef struct task {
    const char *text;       /* perplexity task */
    const char *command;    /* command task */
    double weight;
} task;

typedef struct evo {
    const cr_allocator *A;
    char *models[MAX_MODELS], *base;
    int n_models, n_params, n_groups, n_layers, granularity;
    const char *method, *params[2];
    bool normalize, allow_negative;
    task tasks[MAX_TASKS];
    int n_tasks;
    long generations;
    int population;
    double sigma0;
    uint64_t seed;
    char *text_store[MAX_TASKS];
} evo;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- the config ---------------------------------------------------------- */

static bool bad(const char *file, const cr_ynode *n, const char *msg)
{
    fprintf(stderr, "%s:%d:%d: error: %s\n", file, n ? n->line : 1, n ? n->col : 1, msg);
    return false;
}

/* path relative to the config's folder, made absolute (the recipes the
 * search writes must resolve from anywhere) */
static char *abs_path(const cr_allocator *A, const char *cfg_dir, const char *p)
{
    char joined[PATH_MAX], res[PATH_MAX];
    if (p[0] == '/') snprintf(joined, sizeof joined, "%s", p);
    else snprintf(joined, sizeof joined, "%s/%s", cfg_dir, p);
    return cr_strdup(A, realpath(joined, res) ? res : joined);
}

static bool read_config(evo *e, const char *file, const cr_ytree *t)
{
    const cr_ynode *root = t->n_docs ? t->docs[0].root : NULL;
    if (!root || root->kind != CR_YNODE_MAP) return bad(file, root, "want a mapping with genome: and tasks:");
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", file);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0; else snprintf(dir, sizeof dir, ".");
    const cr_ynode *g = cr_ynode_get(root, "genome");
    if (!g || g->kind != CR_YNODE_MAP) return bad(file, root, "genome: (a mapping) is required");
    for (uint32_t i = 0; i < g->n_items; i++) {
        static const char *const known[] = { "models", "merge_method", "base_model", "layer_granularity",
                                             "normalize", "allow_negative_weights" };
        bool ok = false;
        for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) ok |= !strcmp(g->keys[i]->str, known[k]);
        if (!ok) {
            char m[256];
            snprintf(m, sizeof m, "genome.%s: not supported (models, merge_method, base_model, layer_granularity, "
                     "normalize, allow_negative_weights)", g->keys[i]->str);
            return bad(file, g->keys[i], m);
        }
    }
    const cr_ynode *ms = cr_ynode_get(g, "models");
    if (!ms || ms->kind != CR_YNODE_SEQ || !ms->n_items || ms->n_items > MAX_MODELS)
        return bad(file, ms ? ms : g, "genome.models: want a list of 1 to 64 models");
    for (uint32_t i = 0; i < ms->n_items; i++) {
        if (ms->items[i]->kind != CR_YNODE_SCALAR) return bad(file, ms->items[i], "genome.models: want model paths");
        e->models[e->n_models++] = abs_path(e->A, dir, ms->items[i]->str);
    }
    const cr_ynode *mm = cr_ynode_get(g, "merge_method");
    if (!mm || mm->kind != CR_YNODE_SCALAR) return bad(file, g, "genome.merge_method is required");
    e->method = mm->str;
    if (!strcmp(e->method, "linear") || !strcmp(e->method, "task_arithmetic")) e->n_params = 1;
    else if (!strcmp(e->method, "ties") || !strcmp(e->method, "dare_ties")) e->n_params = 2;
    else return bad(file, mm, "genome.merge_method: linear, task_arithmetic, ties or dare_ties");
    e->params[0] = "weight";
    e->params[1] = "density";
    const cr_ynode *b = cr_ynode_get(g, "base_model");
    if (b && !cr_ynode_is_null(b)) e->base = abs_path(e->A, dir, b->str);
    if (!e->base && strcmp(e->method, "linear")) return bad(file, mm, "base_model is required for this method");
    e->normalize = !strcmp(e->method, "linear") || !strcmp(e->method, "ties") || !strcmp(e->method, "dare_ties");
    const cr_ynode *n = cr_ynode_get(g, "normalize");
    if (n && !cr_ynode_is_null(n) && !cr_ynode_bool(n, &e->normalize)) return bad(file, n, "normalize: want true/false");
    n = cr_ynode_get(g, "allow_negative_weights");
    if (n && !cr_ynode_bool(n, &e->allow_negative)) return bad(file, n, "allow_negative_weights: want true/false");
    double v;
    n = cr_ynode_get(g, "layer_granularity");
    if (n && (!cr_ynode_number(n, false, &v) || v < 0 || v != floor(v) || v > 1e6))
        return bad(file, n, "layer_granularity: want a non-negative integer");
    e->granularity = n ? (int)v : 0;

    const cr_ynode *ts = cr_ynode_get(root, "tasks");
    if (!ts || ts->kind != CR_YNODE_SEQ || !ts->n_items || ts->n_items > MAX_TASKS)
        return bad(file, ts ? ts : root, "tasks: want a list of 1 to 16 {perplexity: FILE} or {command: CMD}");
    for (uint32_t i = 0; i < ts->n_items; i++) {
        const cr_ynode *t1 = ts->items[i];
        task *k = &e->tasks[e->n_tasks++];
        k->weight = 1;
        const cr_ynode *p = t1->kind == CR_YNODE_MAP ? cr_ynode_get(t1, "perplexity") : NULL;
        const cr_ynode *c = t1->kind == CR_YNODE_MAP ? cr_ynode_get(t1, "command") : NULL;
        const cr_ynode *w = t1->kind == CR_YNODE_MAP ? cr_ynode_get(t1, "weight") : NULL;
        if (!!p == !!c || (p && p->kind != CR_YNODE_SCALAR) || (c && c->kind != CR_YNODE_SCALAR))
            return bad(file, t1, "a task is {perplexity: FILE} or {command: CMD} (mergekit's lm-eval task names are "
                                 "not run: give a command that runs lm-eval and prints the score last)");
        if (w && !cr_ynode_number(w, false, &k->weight)) return bad(file, w, "weight: want a number");
        if (p) k->text = e->text_store[i] = abs_path(e->A, dir, p->str);
        else k->command = c->str;
    }
    const cr_ynode *s = cr_ynode_get(root, "search");
    if (s && s->kind == CR_YNODE_MAP) {
        if ((n = cr_ynode_get(s, "generations")) && (!cr_ynode_number(n, false, &v) || v < 1 || v != floor(v)))
            return bad(file, n, "search.generations: want a positive integer");
        if (n) e->generations = (long)v;
        if ((n = cr_ynode_get(s, "population")) && (!cr_ynode_number(n, false, &v) || v < 2 || v > 10000 || v != floor(v)))
            return bad(file, n, "search.population: want an integer >= 2");
        if (n) e->population = (int)v;
        if ((n = cr_ynode_get(s, "sigma")) && (!cr_ynode_number(n, false, &v) || !(v > 0)))
            return bad(file, n, "search.sigma: want a number > 0");
        if (n) e->sigma0 = v;
        if ((n = cr_ynode_get(s, "seed")) && (!cr_ynode_number(n, false, &v) || v < 0 || v != floor(v)))
            return bad(file, n, "search.seed: want a non-negative integer");
        if (n) e->seed = (uint64_t)v;
    }
    return true;
}

/* ---- genes to a recipe --------------------------------------------------- */

static void yaml_num(cr_sbuf *b, double v) { cr_sbuf_printf(b, "%.17g", v == 0 ? 0.0 : v); }

/* mergekit's genotype_merge_config (one parameter set, discrete slices) */
static char *recipe(const evo *e, const double *x, size_t *len)
{
    cr_sbuf b;
    cr_sbuf_init(&b, e->A);
    cr_sbuf_printf(&b, "merge_method: %s\nslices:\n", e->method);
    int step = e->granularity > 0 ? e->granularity : e->n_layers;
    for (int gi = 0; gi < e->n_groups; gi++) {
        cr_sbuf_adds(&b, "  - sources:\n");
        for (int m = 0; m < e->n_models; m++) {
            cr_sbuf_adds(&b, "      - model: ");
            cr_json_add_string(&b, e->models[m], strlen(e->models[m]), true);
            cr_sbuf_printf(&b, "\n        layer_range: [%d, %d]\n        parameters:\n", gi * step, (gi + 1) * step);
            for (int p = 0; p < e->n_params; p++) {
                double v = x[((size_t)gi * e->n_models + m) * e->n_params + p];
                if (p == 1) v = fabs(v) > 1 ? 1 : fabs(v);
                else if (!e->allow_negative) v = fabs(v);
                cr_sbuf_printf(&b, "          %s: ", e->params[p]);
                yaml_num(&b, v);
                cr_sbuf_adds(&b, "\n");
            }
        }
        bool base_in = false;
        for (int m = 0; e->base && m < e->n_models; m++) base_in |= !strcmp(e->models[m], e->base);
        if (e->base && !base_in) {
            cr_sbuf_adds(&b, "      - model: ");
            cr_json_add_string(&b, e->base, strlen(e->base), true);
            cr_sbuf_printf(&b, "\n        layer_range: [%d, %d]\n", gi * step, (gi + 1) * step);
        }
    }
    cr_sbuf_printf(&b, "parameters:\n  normalize: %s\n", e->normalize ? "true" : "false");
    if (e->n_params == 2) cr_sbuf_adds(&b, "  int8_mask: true\n");
    cr_sbuf_adds(&b, "dtype: bfloat16\n");
    if (e->base) {
        cr_sbuf_adds(&b, "base_model: ");
        cr_json_add_string(&b, e->base, strlen(e->base), true);
        cr_sbuf_adds(&b, "\n");
    }
    return cr_sbuf_take(&b, len);
}

/* ---- fitness ------------------------------------------------------------- */

/* the last number in text, or NAN */
static double last_number(const char *s)
{
    double v = NAN;
    for (const char *p = s; *p; p++) {
        if (!(*p == '-' || *p == '+' || *p == '.' || (*p >= '0' && *p <= '9'))) continue;
        if (p > s && (p[-1] == '.' || (p[-1] >= '0' && p[-1] <= '9') || p[-1] == 'e' || p[-1] == 'E')) continue;
        char *end;
        double x = strtod(p, &end);
        if (end != p) { v = x; p = end - 1; }
    }
    return v;
}

static cr_status run_command(cr_candidate_env *env, const char *yaml, size_t len, const char *cmd, double *score,
                             cr_error *err)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/command-%u", env->tmp_dir, env->n_runs++);
    cr_status st = cr_candidate_write(env, "candidate.yml", yaml, len, dir, true, err);
    if (st) return st;
    setenv("CRUCIBLE_MODEL", dir, 1);
    FILE *p = popen(cmd, "r");
    cr_sbuf out;
    cr_sbuf_init(&out, env->alloc);
    char buf[4096];
    size_t n;
    while (p && (n = fread(buf, 1, sizeof buf, p)) > 0) cr_sbuf_add(&out, buf, n);
    int rc = p ? pclose(p) : -1;
    char *text = cr_sbuf_take(&out, NULL);
    *score = text ? last_number(text) : NAN;
    cr_free(env->alloc, text);
    char rm[PATH_MAX + 16];
    snprintf(rm, sizeof rm, "rm -rf '%s'", dir);   /* our own mkdtemp folder: no quotes in it */
    if (system(rm)) { /* best effort; the folder goes at the end anyway */ }
    if (rc) return cr_fail(err, CR_ERR_RUNTIME, "task command '%s' exited with status %d", cmd, rc);
    if (isnan(*score)) return cr_fail(err, CR_ERR_RUNTIME, "task command '%s' printed no number", cmd);
    return CR_OK;
}

static cr_status fitness(const evo *e, cr_candidate_env *env, const double *x, double *f, cr_error *err)
{
    size_t len;
    char *yaml = recipe(e, x, &len);
    if (!yaml) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    cr_status st = CR_OK;
    *f = 0;
    for (int t = 0; t < e->n_tasks && !st; t++) {
        const task *k = &e->tasks[t];
        if (k->text) {
            cr_eval_score sc;
            st = cr_candidate_eval(env, "candidate.yml", yaml, len, k->text, &sc, err);
            if (!st) *f += k->weight * sc.perplexity;
        } else {
            double score;
            st = run_command(env, yaml, len, k->command, &score, err);
            if (!st) *f -= k->weight * score;
        }
    }
    cr_free(e->A, yaml);
    return st;
}

/* ---- checkpoint ---------------------------------------------------------- */

static bool write_atomic(const char *dir, const char *name, const char *text, size_t len)
{
    char path[PATH_MAX], tmp[PATH_MAX + 8];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return false;
    bool ok = fwrite(text, 1, len, f) == len;
    ok &= fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok &= fclose(f) == 0;
    return ok && !rename(tmp, path);
}

/* Numbers as %.17g raw text: cJSON prints 15 digits when they read back
 * within an epsilon, not exactly, and a resumed search must continue from
 * the very same doubles. */
static cJSON *exact_number(double v)
{
    char buf[40];
    snprintf(buf, sizeof buf, "%.17g", v);
    return cJSON_CreateRaw(buf);
}

static cJSON *num_array(const double *v, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++) cJSON_AddItemToArray(a, exact_number(v[i]));
    return a;
}

static bool save(const evo *e, const char *out, const cr_cmaes *c, const double *best, double best_f, long evals)
{
    size_t sl = cr_cmaes_state_len(c);
    double *state = cr_calloc(e->A, sl, sizeof *state);
    if (!state) return false;
    cr_cmaes_state_get(c, state);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "genes", c->n);
    cJSON_AddNumberToObject(j, "population", c->lambda);
    cJSON_AddNumberToObject(j, "seed", (double)e->seed);
    cJSON_AddNumberToObject(j, "generation", (double)c->generation);
    cJSON_AddNumberToObject(j, "evaluations", (double)evals);
    cJSON_AddItemToObject(j, "state", num_array(state, sl));
    cJSON_AddItemToObject(j, "best_fitness", exact_number(best_f));
    cJSON_AddItemToObject(j, "best_genes", num_array(best, (size_t)c->n));
    char *s = cJSON_Print(j);
    bool ok = s && write_atomic(out, "checkpoint.json", s, strlen(s));
    cJSON_free(s);
    cJSON_Delete(j);
    cr_free(e->A, state);
    size_t len;
    char *yaml = recipe(e, best, &len);
    ok = ok && yaml && write_atomic(out, "best.yml", yaml, len);
    cr_free(e->A, yaml);
    return ok;
}

static bool restore(const evo *e, const char *out, cr_cmaes *c, double *best, double *best_f, long *evals)
{
    char path[PATH_MAX], *text = NULL;
    size_t len;
    cr_error err = { 0 };
    snprintf(path, sizeof path, "%s/checkpoint.json", out);
    if (cr_file_read(e->A, path, 1u << 26, "checkpoint", &text, &len, &err)) {
        fprintf(stderr, "crucible evolve: %s\n", err.msg);
        return false;
    }
    cJSON *j = cJSON_ParseWithLength(text, len);
    cr_free(e->A, text);
    size_t sl = cr_cmaes_state_len(c);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "state");
    const cJSON *bg = cJSON_GetObjectItemCaseSensitive(j, "best_genes");
    const cJSON *bf = cJSON_GetObjectItemCaseSensitive(j, "best_fitness");
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(j, "evaluations");
    const cJSON *pop = cJSON_GetObjectItemCaseSensitive(j, "population");
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(j, "seed");
    bool ok = j && cJSON_GetArraySize(st) == (int)sl && cJSON_GetArraySize(bg) == c->n && cJSON_IsNumber(bf) &&
              cJSON_IsNumber(ev) && cJSON_IsNumber(pop) && (int)pop->valuedouble == c->lambda && cJSON_IsNumber(seed) &&
              (uint64_t)seed->valuedouble == e->seed;
    if (!ok) {
        fprintf(stderr, "crucible evolve: %s does not belong to this search (genes, population or seed differ)\n", path);
        cJSON_Delete(j);
        return false;
    }
    double *state = cr_calloc(e->A, sl, sizeof *state);
    if (!state) { cJSON_Delete(j); return false; }
    for (size_t i = 0; i < sl; i++) state[i] = cJSON_GetArrayItem(st, (int)i)->valuedouble;
    for (int i = 0; i < c->n; i++) best[i] = cJSON_GetArrayItem(bg, i)->valuedouble;
    cr_cmaes_state_set(c, state);
    *best_f = bf->valuedouble;
    *evals = (long)ev->valuedouble;
    cr_free(e->A, state);
    cJSON_Delete(j);
    return true;
}

/* ---- the command --------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: crucible evolve CONFIG.yml OUT_DIR [options]\n\n"
               "CMA-ES over a merge's parameters (genome: in mergekit-evolve's shape; tasks:\n"
               "{perplexity: FILE} or {command: CMD}); OUT_DIR keeps checkpoint.json, best.yml\n"
               "(`crucible merge best.yml` reproduces the best merge) and best.json\n\n"
               "options:\n"
               "  --generations N      generations to reach (default: search.generations, else 10)\n"
               "  --population N       candidates per generation (default: 4 + 3 ln genes)\n"
               "  --sigma X            initial step size (default: search.sigma, else 0.2)\n"
               "  --random-seed N      seed of the search (default: search.seed, else 0)\n"
               "  --resume             continue from OUT_DIR/checkpoint.json\n"
               "  --threads|-j N       threads of merging and evaluation (default: all cores)\n"
               "  --max-memory SIZE    VM working memory of each merge, e.g. 8G\n"
               "  --help|-h            print this help and exit\n");
}

static bool parse_num(const char *s, double lo, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !*s || !(v >= lo)) return false;
    *out = v;
    return true;
}

int cr_cmd_evolve(int argc, char **argv)
{
    const cr_allocator *A = cr_default_allocator();
    evo e = { .A = A, .generations = 10, .sigma0 = 0.2 };
    const char *pos[2] = { 0 };
    int n_pos = 0;
    bool resume = false;
    double gens = 0, pop = 0, sigma = 0, seed = -1, thr = 0;
    uint64_t max_memory = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--resume")) { resume = true; continue; }
        bool ok = true;
        if (!strcmp(a, "--generations")) ok = v && parse_num(v, 1, &gens) && gens == floor(gens);
        else if (!strcmp(a, "--population")) ok = v && parse_num(v, 2, &pop) && pop == floor(pop) && pop <= 10000;
        else if (!strcmp(a, "--sigma")) ok = v && parse_num(v, 1e-300, &sigma);
        else if (!strcmp(a, "--random-seed")) ok = v && parse_num(v, 0, &seed) && seed == floor(seed);
        else if (!strcmp(a, "--threads") || !strcmp(a, "-j")) ok = v && parse_num(v, 0, &thr) && thr <= 1024;
        else if (!strcmp(a, "--max-memory")) ok = v && cr_cli_parse_size(v, &max_memory);
        else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "crucible evolve: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else {
            if (n_pos == 2) { fprintf(stderr, "crucible evolve: unexpected argument '%s'\n", a); return 2; }
            pos[n_pos++] = a;
            continue;
        }
        if (!ok) { fprintf(stderr, "crucible evolve: %s needs a valid value, got '%s'\n", a, v ? v : ""); return 2; }
        i++;
    }
    if (n_pos != 2) { usage(stderr); return 2; }
    const char *out = pos[1];

    cr_error err = { 0 };
    cr_diags diags;
    cr_diags_init(&diags, A);
    cr_ytree tree;
    int rc = 2;
    cr_candidate_env env = { 0 };
    cr_cmaes c = { 0 };
    double *x0 = NULL, *best = NULL, *fit = NULL;
    if (cr_ytree_load(A, pos[0], &tree, &diags, &err)) {
        cr_diags_print(&diags, stderr);
        if (!diags.n_errors) fprintf(stderr, "crucible evolve: %s\n", err.msg);
        cr_ytree_free(&tree);
        cr_diags_free(&diags);
        return 2;
    }
    if (!read_config(&e, pos[0], &tree)) goto done;
    if (gens) e.generations = (long)gens;
    if (pop) e.population = (int)pop;
    if (sigma) e.sigma0 = sigma;
    if (seed >= 0) e.seed = (uint64_t)seed;
    /* the layer count from the first model's config.json (header only) */
    {
        cr_model m;
        if (cr_model_open(A, e.models[0], CR_ST_HEADER_ONLY, &m, &err)) {
            fprintf(stderr, "crucible evolve: %s\n", err.msg);
            goto done;
        }
        long long nl = 0;
        bool have = cr_model_config_int(&m, "num_hidden_layers", &nl);
        cr_model_close(&m);
        if (!have || nl < 1) { fprintf(stderr, "crucible evolve: %s: no num_hidden_layers\n", e.models[0]); goto done; }
        e.n_layers = (int)nl;
        if (e.granularity > 0 && e.n_layers % e.granularity) {
            fprintf(stderr, "crucible evolve: %d layers are not a multiple of layer_granularity %d\n", e.n_layers,
                    e.granularity);
            goto done;
        }
        e.n_groups = e.granularity > 0 ? e.n_layers / e.granularity : 1;
    }
    int n = e.n_groups * e.n_models * e.n_params;
    x0 = cr_calloc(A, (size_t)n, sizeof *x0);
    best = cr_calloc(A, (size_t)n, sizeof *best);
    if (!x0 || !best) goto done;
    /* mergekit's initial_genotype: weight 1/n_models, density 1 */
    for (int i = 0; i < n; i++) x0[i] = i % e.n_params ? 1.0 : 1.0 / e.n_models;
    if (cr_cmaes_init(&c, A, n, x0, e.sigma0, e.population, e.seed, &err)) {
        fprintf(stderr, "crucible evolve: %s\n", err.msg);
        goto done;
    }
    fit = cr_calloc(A, (size_t)c.lambda, sizeof *fit);
    if (!fit) goto done;
    double best_f = INFINITY;
    long evals = 0;
    if (resume) {
        if (!restore(&e, out, &c, best, &best_f, &evals)) goto done;
    } else if (mkdir(out, 0777)) {
        fprintf(stderr, "crucible evolve: cannot create %s: %s%s\n", out, strerror(errno),
                errno == EEXIST ? " (--resume continues a search)" : "");
        goto done;
    }
    rc = 1;
    if (cr_candidate_env_init(&env, A, &err)) { fprintf(stderr, "crucible evolve: %s\n", err.msg); goto done; }
    env.threads = (unsigned)thr;
    env.max_memory = max_memory;
    printf("evolve: %d genes (%d layer group%s x %d models x %d), population %d, seed %llu\n", n, e.n_groups,
           e.n_groups == 1 ? "" : "s", e.n_models, e.n_params, c.lambda, (unsigned long long)e.seed);
    fflush(stdout);
    double t0 = now_s();
    long start_gen = c.generation;
    while (c.generation < e.generations) {
        cr_cmaes_ask(&c);
        double sum = 0, gbest = INFINITY;
        for (int k = 0; k < c.lambda; k++) {
            if (fitness(&e, &env, c.x + (size_t)k * n, &fit[k], &err)) {
                fprintf(stderr, "crucible evolve: generation %ld, candidate %d: %s\n", c.generation + 1, k + 1, err.msg);
                goto done;
            }
            evals++;
            sum += fit[k];
            if (fit[k] < gbest) gbest = fit[k];
            if (fit[k] < best_f) {
                best_f = fit[k];
                memcpy(best, c.x + (size_t)k * n, sizeof *best * (size_t)n);
            }
        }
        cr_cmaes_tell(&c, fit);
        if (!save(&e, out, &c, best, best_f, evals)) {
            fprintf(stderr, "crucible evolve: cannot write the checkpoint in %s\n", out);
            goto done;
        }
        double el = now_s() - t0, per = el / (double)(c.generation - start_gen);
        printf("generation %ld/%ld: best %.6f, mean %.6f, best so far %.6f, sigma %.4g, elapsed %.1f s, ETA %.1f s\n",
               c.generation, e.generations, gbest, sum / c.lambda, best_f, c.sigma, el,
               per * (double)(e.generations - c.generation));
        fflush(stdout);
    }
    {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddItemToObject(j, "fitness", exact_number(best_f));
        cJSON_AddNumberToObject(j, "evaluations", (double)evals);
        cJSON_AddNumberToObject(j, "generations", (double)c.generation);
        cJSON_AddItemToObject(j, "genes", num_array(best, (size_t)n));
        char *s = cJSON_Print(j);
        bool ok = s && write_atomic(out, "best.json", s, strlen(s));
        cJSON_free(s);
        cJSON_Delete(j);
        if (!ok) { fprintf(stderr, "crucible evolve: cannot write %s/best.json\n", out); goto done; }
    }
    printf("best fitness %.6f after %ld evaluations: %s/best.yml\n", best_f, evals, out);
    rc = 0;
done:
    cr_candidate_env_free(&env);
    cr_cmaes_free(&c);
    cr_free(A, x0);
    cr_free(A, best);
    cr_free(A, fit);
    for (int i = 0; i < e.n_models; i++) cr_free(A, e.models[i]);
    for (int i = 0; i < MAX_TASKS; i++) cr_free(A, e.text_store[i]);
    cr_free(A, e.base);
    cr_ytree_free(&tree);
    cr_diags_free(&diags);
    return rc;
}
