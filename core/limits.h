/* limits.h — every hard limit of crucible in one place.
 *
 * Every input comes from anywhere (a .crb file, a safetensors header, an
 * index or config.json, a YAML recipe, a Lua method), so each count and size
 * it declares is bounded before it is allocated or trusted; spec/reliability.md
 * lists them with the error each produces. For .crb files: The values are generous for
 * real merges (a 405B-parameter model has ~1,300 tensors per 5 GB shard) and
 * small enough that a crafted file cannot make the loader allocate more than
 * a few hundred MiB. Exceeding one is CR_ERR_LIMIT, naming the limit.
 */
#ifndef CR_LIMITS_H
#define CR_LIMITS_H

#define CR_LIMIT_CRB_BYTES      (1ull << 30)   /* whole .crb file */
#define CR_LIMIT_BLOB_BYTES     (512ull << 20) /* blob pool (headers, aux files) */
#define CR_LIMIT_FILES          65536u         /* input manifest entries */
#define CR_LIMIT_INPUTS         (1u << 22)     /* input views */
#define CR_LIMIT_SHARDS         65536u
#define CR_LIMIT_OUTPUTS        (1u << 22)     /* output tensors */
#define CR_LIMIT_AUX            65536u
#define CR_LIMIT_SCALARS        (1u << 24)
#define CR_LIMIT_ROWVECS        (1u << 20)
#define CR_LIMIT_ROWVEC_LEN     (1ull << 32)   /* elements of one row vector */
#define CR_LIMIT_SCRATCH        (1u << 20)
#define CR_LIMIT_SELECTS        (1u << 20)
#define CR_LIMIT_STREAMS        (1u << 22)
#define CR_LIMIT_KERNELS        (1u << 22)
#define CR_LIMIT_MESSAGES       (1u << 22)
#define CR_LIMIT_CODE           (1u << 26)     /* kernel micro-ops, all kernels */
#define CR_LIMIT_MAIN           (1u << 26)     /* top-level instructions */
#define CR_LIMIT_REGS           256u           /* registers of one kernel */
#define CR_LIMIT_CHUNK          (1ull << 24)   /* elements per chunk */
#define CR_LIMIT_KERNEL_WORK    (1ull << 31)   /* n_regs * chunk * 4 bytes, per thread */
#define CR_LIMIT_ROWRANK_COLS   (1ull << 24)   /* row length ROWRANK sorts (f32-exact ranks) */
#define CR_LIMIT_LORA_RANK      65536u         /* r of a LOWRANK product (per-thread scratch r + 2 x block) */
#define CR_LIMIT_NAME           4096u          /* bytes of a file or tensor name */
#define CR_LIMIT_SECTIONS       64u            /* .crb section table entries */
#define CR_LIMIT_THREADS        1024u


/* ---- model inputs (safetensors, index, config.json) ---------------------- */
#define CR_LIMIT_DIMS           8              /* tensor rank (CR_MAX_DIMS) */
#define CR_MAX_DIMS CR_LIMIT_DIMS              /* the name shapes use (program.h, safetensors.h) */
#define CR_LIMIT_ST_HEADER      100000000ull   /* safetensors JSON header bytes (format rule) */
#define CR_LIMIT_ST_TENSORS     (1u << 20)     /* tensors in one safetensors file */
#define CR_LIMIT_JSON_BYTES     (1ull << 30)   /* config.json / index.json read whole */
#define CR_LIMIT_TEXT_BYTES     (1ull << 30)   /* eval's --text file, read whole */
#define CR_LIMIT_MODEL_TENSORS  (1u << 22)     /* weight_map entries of one index */
#define CR_LIMIT_MODEL_SHARDS   16384u         /* distinct shard files of one model */
/* JSON nesting is bounded by cJSON itself (CJSON_NESTING_LIMIT, 1000). */

/* ---- recipes (YAML front end) -------------------------------------------- */
#define CR_LIMIT_RECIPE_BYTES   (16u << 20)    /* recipe, MoE config or method file: exactly
                                                  this many bytes are read, one more is refused */
#define CR_LIMIT_YAML_DEPTH     64             /* nested collections */
#define CR_LIMIT_YAML_ALIASES   256            /* alias references per file */
#define CR_LIMIT_YAML_EXPANDED  1000000        /* nodes after expanding aliases */
#define CR_LIMIT_YAML_DOCS      64             /* documents (merge stages) per file */
#define CR_LIMIT_PARAM_DEPTH    8              /* nested conditional parameter lists */

/* ---- MoE gates ------------------------------------------------------------ */
#define CR_LIMIT_MOE_PROMPT_TOKENS 32768u      /* tokens of one prompt of a hidden gate (also
                                                  capped at max_position_embeddings) */

/* ---- methods (Lua) and the graph ----------------------------------------- */
#define CR_LIMIT_LUA_BYTES      ((size_t)256 << 20)  /* Lua heap of one state */
#define CR_LIMIT_LUA_INSTRUCTIONS 200000000L         /* per method load or merge call */
#define CR_LIMIT_LUA_SECONDS    60             /* CPU seconds per load or call: a backstop for
                                                  instructions that each scan a long string */
#define CR_LIMIT_GRAPH_NODES    (1u << 24)     /* nodes of one tensor dataflow graph */

#endif
