/* pipeline.c — cr_compile: pick the front end by kind, then the middle end
 * (compile.h), the aux files, the final verify and the input paths.
 *
 * The stages keep their own entry points for tests that exercise one alone;
 * everything that wants a program from a source comes through here, so the
 * CLI, the tests and the fuzzers compile the same way.
 */
#include <string.h>
#include "pipeline.h"
#include "aux_files.h"
#include "layout.h"
#include "frontend.h"
#include "lua_recipe.h"
#include "moe_config.h"

static cr_source_kind source_kind(const cr_pipeline_options *o, const cr_allocator *al)
{
    if (o->kind != CR_SOURCE_AUTO) return o->kind;
    if (o->text) return CR_SOURCE_YAML;
    if (cr_moe_file_is_moe(al, o->path)) return CR_SOURCE_MOE;
    return cr_recipe_is_lua(o->path) ? CR_SOURCE_LUA : CR_SOURCE_YAML;
}

/* provenance a .crb carries (spec/bytecode.md): the recipe text and the
 * options that change numbers besides the seed and mergekit release, which
 * the emitter records */
static cr_status record_provenance(cr_program *p, const char *text, const cr_pipeline_options *o, cr_error *err)
{
    if (o->compile.precise) p->flags |= CR_PROG_PRECISE;
    return text && o->recipe_text ? cr_program_add_blob(p, text, strlen(text), &p->recipe_text, err) : CR_OK;
}

static cr_status compile_moe(const cr_pipeline_options *o, cr_compile_result *r, cr_error *err)
{
    const cr_allocator *al = r->graph.alloc;
    cr_moe_config cfg;
    r->failed = CR_STAGE_FRONTEND;
    cr_status st = cr_moe_config_load(al, o->path, &cfg, &r->diags, err);
    cr_moe_options mo = { .models_dir = o->models_dir, .seed = o->compile.seed, .layout = o->moe_layout,
                          .allow_same_source = o->moe_same_source, .copy_tokenizer = o->copy_tokenizer,
                          .write_card = o->write_card, .out_path = o->out_dir, .threads = o->threads,
                          .gate_f32 = o->gate_f32, .compile = o->compile };
    /* config checks, models, gates and the middle end are one call: its
     * failures are the front end's (diagnostics, else err) */
    if (!st) st = cr_moe_compile(al, &cfg, &mo, &r->graph, &r->program, &r->diags, err);
    if (!st) {
        r->failed = CR_STAGE_FINISH;
        st = record_provenance(&r->program, cfg.text, o, err);
    }
    if (o->diags_out) cr_diags_print(&r->diags, o->diags_out);
    cr_moe_config_free(&cfg);
    return st;
}

typedef struct collect { cr_input_paths *ip; cr_status st; cr_error *err; } collect;

static void collect_method(void *ud, const char *path)
{
    collect *c = ud;
    if (!c->st) c->st = cr_input_paths_add(c->ip, path, CR_INPUT_PATH_FILE, c->err);
}

/* every path compiling read: the recipe, Lua method files, model directories */
static cr_status collect_inputs(const cr_pipeline_options *o, const cr_method_registry *methods,
                                const cr_plan *plan, cr_input_paths *ip, cr_error *err)
{
    collect c = { ip, cr_input_paths_add(ip, o->path, CR_INPUT_PATH_FILE, err), err };
    if (methods) cr_methods_each_file(methods, collect_method, &c);
    for (uint32_t i = 0; i < plan->n_models && !c.st; i++)
        if (plan->models[i].stage < 0 && plan->models[i].path)
            c.st = cr_input_paths_add(ip, plan->models[i].path, CR_INPUT_PATH_DIR, err);
    return c.st;
}

static cr_status compile_recipe(const cr_pipeline_options *o, cr_source_kind kind, cr_compile_result *r,
                                cr_error *err)
{
    const cr_allocator *al = r->graph.alloc;
    cr_method_registry *methods = o->methods;
    cr_status st;
    r->failed = CR_STAGE_SETUP;
    if (!methods) {
        if ((st = cr_methods_open(al, o->methods_dir, &r->own_methods, err))) return st;
        methods = r->own_methods;
    }
    r->failed = CR_STAGE_FRONTEND;
    cr_frontend_options fo = { .models_dir = o->models_dir, .methods = methods, .header_only = o->header_only,
                               .allow_crimes = o->allow_crimes, .no_env = o->no_env,
                               .has_lora_merge_dtype = o->has_lora_merge_dtype,
                               .lora_merge_dtype = o->lora_merge_dtype, .copy_tokenizer = o->copy_tokenizer };
    if (o->text) st = cr_frontend_yaml_text(al, o->path, o->text, o->text_len, &fo, &r->plan, &r->diags, err);
    else if (kind == CR_SOURCE_LUA) st = cr_frontend_lua(al, o->path, &fo, &r->plan, &r->diags, err);
    else st = cr_frontend_yaml(al, o->path, &fo, &r->plan, &r->diags, err);
    if (o->diags_out) cr_diags_print(&r->diags, o->diags_out);
    if (st) return st;
    r->failed = CR_STAGE_MIDDLE;
    if ((st = cr_compile_plan(&r->plan, methods, &o->compile, &r->graph, &r->program, err))) return st;
    r->failed = CR_STAGE_FINISH;
    cr_aux_options ao = { .copy_tokenizer = o->copy_tokenizer, .write_card = o->write_card, .out_path = o->out_dir };
    /* provenance first: the model card tells it */
    if ((st = record_provenance(&r->program, r->plan.recipe_text, o, err)) ||
        (st = cr_program_add_aux(&r->program, &r->plan, &ao, err)) ||
        (st = cr_program_verify(&r->program, err)))
        return st;
    return o->collect_inputs ? collect_inputs(o, methods, &r->plan, &r->inputs, err) : CR_OK;
}

cr_status cr_compile(const cr_pipeline_options *o, cr_compile_result *r, cr_error *err)
{
    const cr_allocator *al = o->alloc ? o->alloc : cr_default_allocator();
    memset(r, 0, sizeof *r);
    cr_graph_init(&r->graph, al);
    cr_input_paths_init(&r->inputs, al);
    cr_diags_init(&r->diags, al);
    r->kind = source_kind(o, al);
    cr_status st;
    if (r->kind == CR_SOURCE_MOE) {
        st = compile_moe(o, r, err);
        /* the experts' directories come with the program's manifest */
        if (!st && o->collect_inputs) {
            r->failed = CR_STAGE_FINISH;
            st = cr_input_paths_add(&r->inputs, o->path, CR_INPUT_PATH_FILE, err);
        }
    } else {
        st = compile_recipe(o, r->kind, r, err);
    }
    if (st) cr_program_free(&r->program);
    return st;
}

void cr_compile_result_release_compiler(cr_compile_result *r)
{
    cr_graph_free(&r->graph);
    cr_graph_init(&r->graph, r->program.alloc ? r->program.alloc : cr_default_allocator());
    cr_plan_free(&r->plan);
    cr_methods_close(r->own_methods);   /* after the plan, which points into it */
    r->own_methods = NULL;
}

void cr_compile_result_free(cr_compile_result *r)
{
    cr_program_free(&r->program);
    cr_graph_free(&r->graph);
    cr_plan_free(&r->plan);
    cr_input_paths_free(&r->inputs);
    cr_diags_free(&r->diags);
    cr_methods_close(r->own_methods);
    memset(r, 0, sizeof *r);
}
