/* build_graph.h — cr_plan -> graph IR (one merge() call per output tensor). */
#ifndef CR_BUILD_GRAPH_H
#define CR_BUILD_GRAPH_H

#include "graph.h"
#include "mkversion.h"
#include "method.h"
#include "plan.h"

typedef struct cr_build_options {
    bool precise;       /* --precise: f32 rounding everywhere, one cast at the end */
    uint64_t seed;      /* --random-seed, seen by methods as ctx.seed */
    cr_mk_version mk_version;   /* seen by methods as ctx.mergekit_version */
    bool unsafe_truncate_embeddings;    /* 0.1.5: embeddings of different vocabulary sizes keep
                                         * their common first rows (else an error) */
} cr_build_options;

/* Build every stage of plan into g (initialised by the caller). Methods come
 * from `methods`, the registry the plan's method infos belong to. Errors
 * name the tensor, and Lua errors the script's file and line. */
cr_status cr_build_graph(const cr_plan *plan, cr_method_registry *methods, const cr_build_options *o,
                         cr_graph *g, cr_error *err);

#endif
