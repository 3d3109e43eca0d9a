/* compile.h — the middle end as one flat list of passes:
 *   build -> verify -> fold -> cse -> dce -> fuse -> verify -> emit -> layout
 *   -> verify program
 * (the front end runs before, giving the cr_plan; compiler/pipeline.h runs
 * the whole way from a source, aux files included).
 * Every optimisation can be switched off (--no-pass=NAME) and must not
 * change a single output byte; --dump=PASS prints the IR after a pass. */
#ifndef CR_COMPILE_H
#define CR_COMPILE_H

#include <stdio.h>
#include "graph.h"
#include "layout.h"
#include "mkversion.h"
#include "method.h"
#include "plan.h"
#include "program.h"

typedef enum cr_pass_id {
    CR_PASS_BUILD, CR_PASS_VERIFY, CR_PASS_FOLD, CR_PASS_CSE, CR_PASS_DCE, CR_PASS_FUSE,
    CR_PASS_COUNT
} cr_pass_id;

typedef struct cr_compile_options {
    bool precise;
    uint64_t seed;
    cr_mk_version mk_version;   /* --mergekit-version (CR_MK_DEFAULT: the current release) */
    bool unsafe_truncate_embeddings;    /* --unsafe-truncate-embeddings (cr_build_options) */
    uint64_t chunk;             /* 0: 16384 elements */
    uint64_t max_shard_bytes;   /* 0: one shard */
    uint32_t disabled;          /* bit (1u << cr_pass_id) per switched-off pass */
    const char *dump;           /* pass name to dump after, or NULL */
    FILE *dump_out;             /* NULL: stdout */
} cr_compile_options;

/* Pass id by name ("fold"); -1 if unknown. Only fold, cse, dce and fuse can
 * be switched off. */
int cr_pass_find(const char *name);
const char *cr_pass_name(cr_pass_id id);
bool cr_pass_optional(cr_pass_id id);

/* Compile a plan whose method infos come from `methods`. On success *out is
 * a verified program the caller frees with cr_program_free. The graph is
 * built into g (initialised by the caller, freed by the caller) so that
 * reports can look at it. */
cr_status cr_compile_plan(const cr_plan *plan, cr_method_registry *methods,
                          const cr_compile_options *o, cr_graph *g, cr_program *out,
                          cr_error *err);

/* The pipeline after `build`, for graphs built by other front ends (MoE,
 * compiler/moe.h): verify, the optional passes, emit, layout, verify the
 * program. recipe_name is for messages (may be NULL). groups (NULL: one
 * tensor per graph output, in order) lets several outputs fill one stored
 * tensor (cr_layout_tensors). */
cr_status cr_compile_graph(cr_graph *g, const cr_compile_options *o, const char *recipe_name,
                           const cr_layout_tensor *groups, uint32_t n_groups, cr_program *out,
                           cr_error *err);

#endif
