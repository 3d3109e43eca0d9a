/* cmd_soup.c — `crucible soup (--greedy|--uniform) --eval FILE MODEL... OUT`
 * and the search-script API it runs scripts with (spec/search.md).
 *
 * The soup itself is a Lua script, examples/recipes/greedy-soup.lua (or
 * --script FILE: a user's edited copy), run in the method sandbox with a
 * `crucible` table of its own:
 *   crucible.args()               the command line: {mode, eval, out, models = {...}}
 *   crucible.eval(target, text)   {mean_nll, perplexity, tokens, in_memory} of
 *                                 a model directory, or of a YAML recipe (a
 *                                 string holding a newline) merged into
 *                                 memory and scored (cli/candidate.h); text
 *                                 is a file name or {text = "..."}
 *   crucible.write(yaml, out)     `crucible merge` of a YAML recipe into out
 *   crucible.card(out, markdown)  append a section to out/README.md
 *   crucible.print(...)           a line on standard output
 * The script decides everything else, so a user can change the ranking or
 * the acceptance rule without touching C. The script has the sandbox's
 * limits except the CPU-time backstop (evaluations run in C on the
 * script's thread and are charged to it).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "candidate.h"
#include "commands.h"
#include "infile.h"
#include "lua_api.h"
#include "lua_inc.h"
#include "options.h"

typedef struct soup {
    cr_candidate_env env;
    const char *mode, *eval_path, *out;
    const char **models;
    int n_models;
} soup;

static soup *self(lua_State *S)
{
    void **p = lua_touserdata(S, lua_upvalueindex(1));
    if (!p || !*p) luaL_error(S, "crucible.* can only be called while the script runs");
    return *p;
}

static int l_args(lua_State *S)
{
    soup *s = self(S);
    lua_newtable(S);
    lua_pushstring(S, s->mode);
    lua_setfield(S, -2, "mode");
    lua_pushstring(S, s->eval_path);
    lua_setfield(S, -2, "eval");
    lua_pushstring(S, s->out);
    lua_setfield(S, -2, "out");
    lua_createtable(S, s->n_models, 0);
    for (int i = 0; i < s->n_models; i++) {
        lua_pushstring(S, s->models[i]);
        lua_rawseti(S, -2, i + 1);
    }
    lua_setfield(S, -2, "models");
    return 1;
}

static int l_eval(lua_State *S)
{
    soup *s = self(S);
    size_t len;
    const char *target = luaL_checklstring(S, 1, &len);
    /* a file, or {text = "..."}: the text goes to a file in the search's
     * own temporary folder, scored, and removed */
    char tpath[PATH_MAX];
    const char *text;
    bool own_text = lua_istable(S, 2);
    if (own_text) {
        if (lua_getfield(S, 2, "text") != LUA_TSTRING) luaL_error(S, "crucible.eval: want a file name or {text = \"...\"}");
        size_t tl;
        const char *t = lua_tolstring(S, -1, &tl);
        snprintf(tpath, sizeof tpath, "%s/text-%u.txt", s->env.tmp_dir, s->env.n_runs++);
        FILE *f = fopen(tpath, "wb");
        bool ok = f && fwrite(t, 1, tl, f) == tl;
        if (f && fclose(f)) ok = false;
        if (!ok) { unlink(tpath); luaL_error(S, "crucible.eval: cannot write %s", tpath); }
        lua_pop(S, 1);
        text = tpath;
    } else {
        text = luaL_checkstring(S, 2);
    }
    cr_eval_score sc;
    cr_error err = { 0 };
    cr_status st = memchr(target, '\n', len)
                 ? cr_candidate_eval(&s->env, "candidate.yml", target, len, text, &sc, &err)
                 : cr_eval_dir(s->env.alloc, target, text, s->env.threads, &sc, &err);
    if (own_text) unlink(tpath);
    if (st) luaL_error(S, "crucible.eval: %s", err.msg);
    lua_newtable(S);
    lua_pushnumber(S, sc.mean_nll);
    lua_setfield(S, -2, "mean_nll");
    lua_pushnumber(S, sc.perplexity);
    lua_setfield(S, -2, "perplexity");
    lua_pushinteger(S, (lua_Integer)sc.tokens);
    lua_setfield(S, -2, "tokens");
    lua_pushboolean(S, sc.in_memory);
    lua_setfield(S, -2, "in_memory");
    return 1;
}

static int l_write(lua_State *S)
{
    soup *s = self(S);
    size_t len;
    const char *yaml = luaL_checklstring(S, 1, &len);
    const char *out = luaL_checkstring(S, 2);
    cr_error err = { 0 };
    if (cr_candidate_write(&s->env, "soup.yml", yaml, len, out, true, &err))
        luaL_error(S, "crucible.write: %s", err.msg);
    return 0;
}

static int l_card(lua_State *S)
{
    (void)self(S);
    const char *out = luaL_checkstring(S, 1);
    size_t len;
    const char *md = luaL_checklstring(S, 2, &len);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/README.md", out);
    FILE *f = fopen(path, "a");
    if (!f) luaL_error(S, "crucible.card: cannot open %s: %s", path, strerror(errno));
    bool ok = fwrite(md, 1, len, f) == len;
    if (fclose(f) || !ok) luaL_error(S, "crucible.card: cannot write %s", path);
    return 0;
}

static int l_print(lua_State *S)
{
    (void)self(S);
    int n = lua_gettop(S);
    for (int i = 1; i <= n; i++) {
        size_t len;
        const char *p = luaL_tolstring(S, i, &len);
        if (i > 1) fputc('\t', stdout);
        fwrite(p, 1, len, stdout);
        lua_pop(S, 1);
    }
    fputc('\n', stdout);
    fflush(stdout);
    return 0;
}

static const luaL_Reg api[] = {
    { "args", l_args }, { "eval", l_eval }, { "write", l_write },
    { "card", l_card }, { "print", l_print }, { NULL, NULL } };

/* The script that ships with crucible: beside the binary's tree
 * (zig-out/bin/crucible -> examples/recipes/), or under share/crucible. */
static bool find_default_script(char *out, size_t n)
{
    char exe[PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k <= 0) return false;
    exe[k] = 0;
    static const char *const rel[] = { "/../../examples/recipes/greedy-soup.lua",
                                       "/../share/crucible/greedy-soup.lua",
                                       "/../examples/recipes/greedy-soup.lua" };
    char *slash = strrchr(exe, '/');
    if (!slash) return false;
    *slash = 0;
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
        snprintf(out, n, "%s%s", exe, rel[i]);
        if (!access(out, R_OK)) return true;
    }
    return false;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: crucible soup (--greedy|--uniform) --eval FILE MODEL... OUT_DIR [options]\n\n"
               "a model soup of fine-tunes of one base: --uniform averages all of them; --greedy\n"
               "ranks them by their own perplexity on FILE and adds one at a time to the average,\n"
               "keeping each only if the perplexity improves (examples/recipes/greedy-soup.lua)\n\n"
               "options:\n"
               "  --eval FILE          held-out UTF-8 text scored by perplexity (required)\n"
               "  --script FILE        run this Lua search script instead of greedy-soup.lua\n"
               "  --threads|-j N       threads of merging and evaluation (default: all cores)\n"
               "  --max-memory SIZE    VM working memory of each merge, e.g. 8G\n"
               "  --random-seed N      seed of every merge (default 0)\n"
               "  --help|-h            print this help and exit\n");
}

int cr_cmd_soup(int argc, char **argv)
{
    soup s = { .mode = NULL };
    const char *script = NULL;
    const cr_allocator *A = cr_default_allocator();
    const char **pos = cr_calloc(A, (size_t)argc, sizeof *pos);
    int n_pos = 0;
    unsigned threads = 0;
    uint64_t max_memory = 0, seed = 0;
    if (!pos) return 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); cr_free(A, pos); return 0; }
        else if (!strcmp(a, "--greedy") || !strcmp(a, "--uniform")) s.mode = a + 2;
        else if (!strcmp(a, "--eval") || !strcmp(a, "--script") || !strcmp(a, "--threads") || !strcmp(a, "-j") ||
                 !strcmp(a, "--max-memory") || !strcmp(a, "--random-seed")) {
            if (!v) { fprintf(stderr, "crucible soup: %s needs a value\n", a); cr_free(A, pos); return 2; }
            i++;
            char *end;
            if (!strcmp(a, "--eval")) s.eval_path = v;
            else if (!strcmp(a, "--script")) script = v;
            else if (!strcmp(a, "--max-memory")) {
                if (!cr_cli_parse_size(v, &max_memory)) {
                    fprintf(stderr, "crucible soup: --max-memory needs a size like 8G, got '%s'\n", v);
                    cr_free(A, pos);
                    return 2;
                }
            } else {
                errno = 0;
                unsigned long long x = strtoull(v, &end, 10);
                if (errno || *end || !*v || (a[2] == 't' || a[1] == 'j' ? x > 1024 : false)) {
                    fprintf(stderr, "crucible soup: %s needs an integer, got '%s'\n", a, v);
                    cr_free(A, pos);
                    return 2;
                }
                if (!strcmp(a, "--random-seed")) seed = x;
                else threads = (unsigned)x;
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "crucible soup: unknown option '%s'\n", a);
            usage(stderr);
            cr_free(A, pos);
            return 2;
        } else pos[n_pos++] = a;
    }
    if (!s.mode || !s.eval_path || n_pos < 2) {
        fprintf(stderr, "crucible soup: %s\n", !s.mode ? "--greedy or --uniform is required"
                                              : !s.eval_path ? "--eval FILE is required"
                                                             : "want at least one MODEL and OUT_DIR");
        usage(stderr);
        cr_free(A, pos);
        return 2;
    }
    s.models = pos;
    s.n_models = n_pos - 1;
    s.out = pos[n_pos - 1];
    if (!access(s.out, F_OK)) {
        fprintf(stderr, "crucible soup: %s exists; the soup is written to a new directory\n", s.out);
        cr_free(A, pos);
        return 2;
    }
    char found[PATH_MAX];
    if (!script) {
        if (!find_default_script(found, sizeof found)) {
            fprintf(stderr, "crucible soup: greedy-soup.lua not found beside the binary; give --script FILE\n");
            cr_free(A, pos);
            return 2;
        }
        script = found;
    }

    cr_error err = { 0 };
    cr_lua *L = NULL;
    char *text = NULL;
    size_t len = 0;
    int rc = 1;
    /* no CPU-time backstop: the evaluations run on this thread */
    cr_lua_limits lim = { .max_seconds = 1e12 };
    if (cr_candidate_env_init(&s.env, A, &err)) goto fail;
    s.env.threads = threads;
    s.env.max_memory = max_memory;
    s.env.seed = seed;
    if (cr_file_read(A, script, 1u << 20, "script", &text, &len, &err)) goto fail;
    if (cr_lua_open(A, &lim, &L, &err)) goto fail;
    if (cr_lua_run_script(L, script, text, len, api, &s, &err)) goto fail;
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "crucible soup: %s\n", err.msg);
done:
    if (L) cr_lua_close(L);
    cr_free(A, text);
    cr_candidate_env_free(&s.env);
    cr_free(A, pos);
    return rc;
}
