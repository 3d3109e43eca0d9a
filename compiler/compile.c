/* compile.c — the pipeline: plan -> graph -> passes -> program.
 *
 * One visible list of passes (QBE's habit): each can be dumped, the
 * optimisations can be switched off, and the verifier runs after building
 * and after the optimisations; the emitted program is verified by the same
 * cr_program_verify that the loader uses.
 */
#include <string.h>
#include "compile.h"
#include "build_graph.h"
#include "emit.h"
#include "layout.h"
#include "passes.h"

typedef struct pass {
    const char *name;
    cr_status (*fn)(cr_graph *g, cr_error *err);
    bool optional;
} pass;

static cr_status verify_pass(cr_graph *g, cr_error *err) { return cr_graph_verify(g, err); }

static const pass passes[CR_PASS_COUNT] = {
    [CR_PASS_BUILD] = { "build", NULL, false },
    [CR_PASS_VERIFY] = { "verify", verify_pass, false },
    [CR_PASS_FOLD] = { "fold", cr_pass_fold, true },
    [CR_PASS_CSE] = { "cse", cr_pass_cse, true },
    [CR_PASS_DCE] = { "dce", cr_pass_dce, true },
    [CR_PASS_FUSE] = { "fuse", cr_pass_fuse, true },
};

int cr_pass_find(const char *name)
{
    for (int i = 0; i < CR_PASS_COUNT; i++)
        if (!strcmp(passes[i].name, name)) return i;
    return -1;
}
const char *cr_pass_name(cr_pass_id id) { return id < CR_PASS_COUNT ? passes[id].name : "?"; }
bool cr_pass_optional(cr_pass_id id) { return id < CR_PASS_COUNT && passes[id].optional; }

static void dump_if(const cr_compile_options *o, const cr_graph *g, const char *name)
{
    if (!o || !o->dump || strcmp(o->dump, name)) return;
    FILE *f = o->dump_out ? o->dump_out : stdout;
    fprintf(f, "; graph after %s\n", name);
    cr_graph_dump(g, f);
}

cr_status cr_compile_graph(cr_graph *g, const cr_compile_options *o, const char *recipe_name,
                           const cr_layout_tensor *groups, uint32_t n_groups, cr_program *out, cr_error *err)
{
    memset(out, 0, sizeof *out);
    cr_status st;
    dump_if(o, g, "build");
    static const cr_pass_id order[] = { CR_PASS_VERIFY, CR_PASS_FOLD, CR_PASS_CSE, CR_PASS_DCE,
                                        CR_PASS_FUSE, CR_PASS_VERIFY };
    for (size_t i = 0; i < CR_ARRAY_LEN(order); i++) {
        const pass *p = &passes[order[i]];
        if (p->optional && o && (o->disabled & (1u << order[i]))) continue;
        if ((st = p->fn(g, err))) return st;
        dump_if(o, g, p->name);
    }
    cr_emit_options eo = { .chunk = o ? o->chunk : 0, .seed = o ? o->seed : 0,
                           .mk_version = o ? o->mk_version : CR_MK_DEFAULT,
                           .recipe_name = recipe_name };
    if ((st = cr_emit_program(g, &eo, out, err))) return st;
    if ((st = cr_layout_tensors(out, o ? o->max_shard_bytes : 0, groups, n_groups, err)) ||
        (st = cr_program_verify(out, err))) {
        cr_program_free(out);
        return st;
    }
    return CR_OK;
}

cr_status cr_compile_plan(const cr_plan *plan, cr_method_registry *methods,
                          const cr_compile_options *o, cr_graph *g, cr_program *out,
                          cr_error *err)
{
    memset(out, 0, sizeof *out);
    cr_build_options bo = { .precise = o && o->precise, .seed = o ? o->seed : 0,
                           .mk_version = o ? o->mk_version : CR_MK_DEFAULT,
                           .unsafe_truncate_embeddings = o && o->unsafe_truncate_embeddings };
    cr_status st = cr_build_graph(plan, methods, &bo, g, err);
    if (st) return st;
    return cr_compile_graph(g, o, plan->recipe_path, NULL, 0, out, err);
}
