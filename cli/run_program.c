/* run_program.c — the VM run shared by merge, moe and run, and the signal
 * handling of every command that writes an output directory.
 *
 * SIGINT, SIGTERM and SIGHUP (a closed terminal or SSH session; unless
 * ignored already, as under nohup) only set a flag, which the long step polls; it then fails through its ordinary
 * error path, which removes OUT_DIR.crucible-tmp-PID. SIGPIPE is ignored
 * for the step: progress written to a closed pipe must not kill a run
 * that would complete (the write fails with EPIPE and is dropped). For the
 * VM run, SIGBUS on a page of an input mapping (the file shrank) is turned
 * into an error naming the file (vm/inputguard.h).
 *
 * These are the CLI's process-wide variables, which the library may not
 * have: the interrupt flag and the guard that the SIGBUS handler consults.
 * One run at a time per process, as the CLI does.
 */
#include <signal.h>
#include <stdio.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <string.h>

#include "gguf_out.h"
#include "gguf_pre.h"
#include "inputguard.h"
#include "outdir.h"
#include "run_program.h"

static volatile int interrupted;
static cr_input_guard *volatile active_guard;
static struct sigaction old_bus;

static void on_signal(int sig) { (void)sig; interrupted = 1; }

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    cr_input_guard *g = active_guard;
    if (g && cr_input_guard_on_sigbus(g, si->si_addr)) return;   /* the load runs again, reading zeros */
    /* not an input mapping: a real bug. The previous action (the default:
     * terminate with a core) takes the fault when it repeats. */
    sigaction(SIGBUS, &old_bus, NULL);
}

static const int stop_signals[] = { SIGINT, SIGTERM, SIGHUP };
#define N_STOP (sizeof stop_signals / sizeof stop_signals[0])

volatile int *cr_cli_signals_begin(cr_cli_signals *s)
{
    struct sigaction sa = {0}, ign = {0};
    interrupted = 0;   /* before the handlers: a signal from now on counts */
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < N_STOP; i++) {
        sigaction(stop_signals[i], NULL, &s->old[i]);
        /* under nohup SIGHUP is ignored, and stays so; SIGINT is ignored
         * in a script's background jobs, yet a SIGINT sent to the process
         * is meant for it (tests/e2e/signals.sh) */
        if (stop_signals[i] == SIGHUP && s->old[i].sa_handler == SIG_IGN) continue;
        sigaction(stop_signals[i], &sa, NULL);
    }
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGPIPE, &ign, &s->old_pipe);
    return &interrupted;
}

void cr_cli_signals_end(cr_cli_signals *s)
{
    for (size_t i = 0; i < N_STOP; i++) sigaction(stop_signals[i], &s->old[i], NULL);
    sigaction(SIGPIPE, &s->old_pipe, NULL);
}

/* The VM names an input file by the path it read; `run` says which
 * model's file that is too (" (B/m1/model.safetensors is model.safetensors
 * of input model 'm1')"), so a refused input of a .crb names the reference
 * it was found for. */
static void name_input(const cr_program *p, const char *msg, char *out, size_t n)
{
    snprintf(out, n, "%s", msg);
    const char *best = NULL;
    uint32_t file = 0;
    for (uint32_t i = 0; i < p->n_files; i++) {
        const cr_prog_file *f = &p->files[i];
        if (f->model == CR_PROG_NO_MODEL || !f->path.len) continue;
        const char *path = cr_prog_str(p, f->path), *at = strstr(msg, path);
        if (at && (!best || strlen(path) > strlen(cr_prog_str(p, p->files[file].path)))) { best = at; file = i; }
    }
    if (!best) return;
    const cr_prog_file *f = &p->files[file];
    snprintf(out, n, "%s (%s is %s of input model '%s')", msg, cr_prog_str(p, f->path), cr_prog_str(p, f->rel),
             cr_prog_str(p, p->models[f->model].ref));
}

int cr_cli_run_program(const cr_program *prog, cr_vm_options *vo, const char *cmd)
{
    cr_cli_signals sigs;
    vo->interrupt = cr_cli_signals_begin(&sigs);
    cr_input_guard guard;
    cr_input_guard_init(&guard);
    vo->guard = &guard;
    active_guard = &guard;
    struct sigaction bus = {0};
    bus.sa_sigaction = on_sigbus;
    bus.sa_flags = SA_SIGINFO;
    sigemptyset(&bus.sa_mask);
    sigaction(SIGBUS, &bus, &old_bus);

    cr_error err = {0};
    cr_status st = cr_vm_run(prog, vo, &err);

    sigaction(SIGBUS, &old_bus, NULL);
    active_guard = NULL;
    vo->guard = NULL;
    cr_cli_signals_end(&sigs);
    if (!st) return 0;
    char msg[sizeof err.msg + 2 * CR_LIMIT_NAME];
    if (!strcmp(cmd, "run")) name_input(prog, err.msg, msg, sizeof msg);
    else snprintf(msg, sizeof msg, "%s", err.msg);
    fprintf(stderr, "crucible %s: %s\n", cmd, msg);
    return st == CR_ERR_INTERRUPTED ? 130 : 1;
}

bool cr_cli_gguf_wanted(const cr_cli_options *o, const char *out)
{
    return o->val[CR_OPT_GGUF_TYPE] || (out && cr_gguf_out_is_gguf(out));
}

int cr_cli_gguf_type(const char *cmd, const char *t, cr_gguf_hf_opts *g)
{
    memset(g, 0, sizeof *g);
    g->ftype = CR_GGML_F16;
    g->auto_type = true;
    if (!t || !strcmp(t, "auto")) return 0;
    g->auto_type = false;
    if (!strcmp(t, "f32")) g->ftype = CR_GGML_F32;
    else if (!strcmp(t, "f16")) g->ftype = CR_GGML_F16;
    else if (!strcmp(t, "bf16")) g->ftype = CR_GGML_BF16;
    else if (!strcmp(t, "q8_0")) g->ftype = CR_GGML_Q8_0;
    else if (!strcmp(t, "q4_0")) g->ftype = CR_GGML_Q4_0;
    else {
        fprintf(stderr, "crucible %s: --gguf-type '%s' (auto, f32, f16, bf16, q8_0, q4_0)\n", cmd, t);
        return 2;
    }
    return 0;
}

int cr_cli_gguf_prepare(const cr_cli_options *o, const cr_program *p, cr_gguf_hf_opts *g)
{
    int rc = cr_cli_gguf_type(o->cmd, o->val[CR_OPT_GGUF_TYPE], g);
    if (rc) return rc;
    const char *pre = o->val[CR_OPT_GGUF_PRE];
    if (pre && !cr_gguf_pre_known(pre)) {
        fprintf(stderr, "crucible %s: --gguf-pre '%s' is not a pre-tokenizer llama.cpp knows\n", o->cmd, pre);
        return 2;
    }
    if (!pre) {
        /* the converter's hash of the tokenizer the output will have */
        const cr_allocator *a = cr_default_allocator();
        cr_error err = {0};
        char *tj = NULL, hex[65];
        size_t len = 0;
        /* the SentencePiece and LlamaHf paths write pre "default" themselves */
        cr_gguf_src src;
        void *owned = NULL;
        cr_status st = cr_program_gguf_src(a, p, NULL, "output", &src, &owned, &err);
        bool needs = st || cr_gguf_hf_needs_pre(a, &src);
        if (!st) cr_program_gguf_src_free(a, owned);
        if (!needs) {
            g->pre = "default";
            return 0;
        }
        st = cr_program_aux_read(a, p, NULL, "tokenizer.json", &tj, &len, &err);
        if (!st && !tj)
            st = cr_fail(&err, CR_ERR_UNSUPPORTED, "GGUF output needs the output's tokenizer.json (the recipe writes none)");
        if (!st) st = cr_gguf_pre_detect_json(a, tj, len, "the output's tokenizer.json", &pre, hex, &err);
        cr_free(a, tj);
        if (st) { fprintf(stderr, "crucible %s: %s\n", o->cmd, err.msg); return 1; }
    }
    g->pre = pre;
    return 0;
}

int cr_cli_compile_and_run(const cr_cli_options *o)
{
    /* a bad OUT_DIR fails before compiling, not after the merge */
    cr_error err = {0};
    bool gguf = cr_cli_gguf_wanted(o, o->pos[1]);
    cr_gguf_hf_opts g;
    if (gguf && cr_cli_gguf_type(o->cmd, o->val[CR_OPT_GGUF_TYPE], &g)) return 2;
    if (!gguf && cr_outdir_check(o->pos[1], &err)) { fprintf(stderr, "crucible %s: %s\n", o->cmd, err.msg); return 1; }
    /* OUT.gguf is written as the directory OUT would be converted: its
     * name titles the model card and gives general.name */
    char *gdir = gguf ? cr_gguf_out_dir_name(cr_default_allocator(), o->pos[1]) : NULL;
    if (gguf && !gdir) { fprintf(stderr, "crucible %s: out of memory\n", o->cmd); return 1; }
    cr_compile_result r;   /* r.inputs: recipe, method files, model dirs: never the output */
    int rc = cr_cli_compile(o, false, gguf ? gdir : o->pos[1], true, &r);
    if (!rc && gguf) {
        rc = cr_cli_gguf_prepare(o, &r.program, &g);
        if (rc) cr_compile_result_free(&r);
    }
    if (rc) { cr_free(cr_default_allocator(), gdir); return rc; }
    /* the compiler's memory is not needed to run: give it back first, to the
     * system too (glibc keeps freed heap pages resident otherwise, and the
     * memory model of spec/plan.md counts none of the compiler's heap) */
    cr_compile_result_release_compiler(&r);
#ifdef __GLIBC__
    malloc_trim(0);
#endif
    cr_vm_options vo;
    cr_vm_options_init(&vo);
    vo.out_dir = o->pos[1];
    vo.force = o->force;
    vo.threads = o->threads;
    vo.max_memory = o->max_memory;
    vo.quiet = o->quiet;
    vo.skip_hash = true;   /* just compiled from the same files */
    vo.no_read_ahead = o->no_read_ahead;
    vo.no_output_stream = o->no_output_stream;
    vo.inputs = &r.inputs;
    if (gguf) { vo.gguf = &g; vo.gguf_dir = gdir; }
    rc = cr_cli_run_program(&r.program, &vo, o->cmd);
    cr_compile_result_free(&r);
    cr_free(cr_default_allocator(), gdir);
    return rc;
}
