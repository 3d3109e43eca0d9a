/* program.h — a compiled merge: the contract between compiler and VM.
 *
 * A program is plain data: tables of records that refer to each other by
 * index, never by pointer, so it serialises to a .crb file, diffs and
 * verifies (spec/bytecode.md). The compiler's emitter builds one; the VM's
 * loader reads one from disk and checks every index before anything runs.
 *
 * Execution model (spec/vm.md):
 *  - The top-level instruction stream `main` runs once, in order, on the
 *    main thread. Scalar maths happen here, in f64 scalar slots.
 *  - A KERNEL instruction runs a fused elementwise program over a domain of
 *    rows x cols elements, chunk by chunk, chunks spread over the thread pool.
 *    Each chunk is `chunk` elements (a multiple of cols when the kernel has
 *    row ops); registers hold one chunk of f32 values each.
 *  - Reductions write one partial per chunk and are combined in chunk order
 *    after the kernel, so results never depend on thread count or timing.
 *  - Inputs are views of mmapped safetensors tensors; outputs are tensors at
 *    fixed offsets of pre-sized shard files; aux files (config.json, copies of
 *    tokenizer files, the model card) are written by the VM too, so `run` of a
 *    .crb reproduces the whole output directory.
 */
#ifndef CR_PROGRAM_H
#define CR_PROGRAM_H

#include "base.h"
#include "dtype.h"
#include "limits.h"   /* CR_MAX_DIMS */

/* ---- op table ----------------------------------------------------------- */

typedef enum cr_op_ctx { CR_CTX_KERNEL = 1, CR_CTX_TOP = 2, CR_CTX_BOTH = 3 } cr_op_ctx;

enum {
    CR_OPF_ELEM   = 1u << 0,  /* elementwise value op (fusable) */
    CR_OPF_REDUCE = 1u << 1,  /* accumulates across the domain */
    CR_OPF_ROWS   = 1u << 2,  /* needs whole rows in a chunk */
    CR_OPF_READS  = 1u << 3,  /* reads input tensor data */
    CR_OPF_WRITES = 1u << 4,  /* writes output tensor data */
    CR_OPF_ROUNDS = 1u << 5,  /* the dtype field rounds the result (ops.def: arithmetic semantics) */
    CR_OPF_REGS   = 1u << 6,  /* only reads inputs, slots or state and writes a register */
    CR_OPF_UNBLOCKED = 1u << 7, /* its kernel runs blocks of whole rows (cr_kernel_block) */
    CR_OPF_TORCH_ORDER = 1u << 8 /* a selection op that replays torch's tie order: gathers
                                    the tied |a| (vm/interp_select.c, torchsort.c) */
};
enum { CR_OPF_BITS = 9 };     /* flag bits above (spec/opcodes.md names each) */

/* How the VM combines a reduction's per-chunk work (ops.def's RED column).
 * NP..TORCH_SSQ follow cr_refsum_kind's order, COL_* cr_colsum_kind's and
 * CHUNK_* cr_chunksum_kind's (refsum.h; memplan.h asserts it). */
typedef enum cr_op_red {
    CR_RED_NONE,            /* not a reduction */
    CR_RED_WIDE,            /* f64 partial per chunk, folded in chunk order (RSUM) */
    CR_RED_NP, CR_RED_BLAS_SSQ, CR_RED_TORCH_SSQ,   /* scalar, fed in element order */
    CR_RED_TORCH,           /* torch's cascade sum: block partials, else a gather */
    CR_RED_ROW,             /* per row, inside a chunk of whole rows */
    CR_RED_COL_WIDE, CR_RED_COL_TORCH, CR_RED_COL_TORCH_SSQ,   /* per column, in element order */
    CR_RED_CHUNK_TORCH, CR_RED_CHUNK_TORCH_NORM,   /* over chunks of 2^20, in element order */
    CR_RED_SELECT           /* counts into a selection state */
} cr_op_red;

typedef enum cr_op {
#define CR_OP(name, str, ctx, kinds, flags, red, synopsis) CR_OP_##name,
#include "ops.def"
#undef CR_OP
    CR_OP_COUNT
} cr_op;

typedef struct cr_op_info {
    const char *name;
    cr_op_ctx ctx;
    char kinds[5];      /* operand kinds of dst, a, b, c */
    unsigned flags;     /* CR_OPF_* */
    cr_op_red red;
    const char *synopsis;
} cr_op_info;

/* table indexed by cr_op, generated from ops.def */
extern const cr_op_info cr_op_table[CR_OP_COUNT];

/* a selection op that gathers its tied elements in torch's order (ops.def) */
static inline bool cr_op_torch_order(unsigned op)
{ return op < CR_OP_COUNT && (cr_op_table[op].flags & CR_OPF_TORCH_ORDER); }

/* cr_insn.op is 16 bits */
_Static_assert(CR_OP_COUNT <= UINT16_MAX, "opcodes must fit cr_insn.op");

/* XXH64 over the op table: a .crb records it, and a crucible whose table
 * differs refuses the program instead of running other instructions. */
uint64_t cr_op_table_fingerprint(void);

/* ---- records ------------------------------------------------------------ */

/* A byte range in the program's blob pool. Strings are stored with a
 * trailing NUL that `len` does not count. */
typedef struct cr_blob { uint64_t off, len; } cr_blob;

/* A model the program reads files of, named the way the recipe named it,
 * so that `crucible run` finds it again on any machine (spec/bytecode.md,
 * "Inputs"): `ref` is the reference as written ("org/name@rev", a name
 * under --models-dir, a path as given), `lookup` what is looked up (`ref`
 * without its "@revision"), `revision` the Hugging Face snapshot it
 * resolved to (empty when it was not found in the cache). */
typedef struct cr_prog_model {
    cr_blob ref, lookup, revision;
} cr_prog_model;

/* An input file the program reads: the manifest checked before running.
 * A model's file is `rel` inside that model's directory; `path` is where it
 * is read, bound after compiling or loading (cr_program_bind_file) and
 * never saved. A file of no model (CR_PROG_NO_MODEL, programs built by
 * hand) has its path as given in `rel`, and is read there (`path` the same
 * blob) unless bound elsewhere. */
enum { CR_PROG_NO_MODEL = UINT32_MAX };
typedef struct cr_prog_file {
    uint32_t model;         /* models[] index, or CR_PROG_NO_MODEL */
    uint32_t pad;
    cr_blob rel;            /* path inside the model's directory (no model: as given) */
    cr_blob path;           /* where it is read; empty while unbound */
    uint64_t size;          /* bytes, always checked */
    uint64_t hash;          /* content hash (spec/bytecode.md); 0 = not recorded */
} cr_prog_file;

/* A 2-D view of an input tensor: rows x cols elements starting at byte
 * `offset` of file `file`, consecutive rows `row_stride` elements apart
 * (row_stride > cols when a larger tensor is sliced to a common submatrix).
 * `nbytes` is the full stored extent of the source tensor, for page release
 * and bounds checks. Tensors of rank > 2 are viewed as dim0 x (the rest). */
enum { CR_INPUT_FILE = 0, CR_INPUT_SCRATCH = 1, CR_INPUT_BLOB = 2 };
/* CR_INPUT_BLOB: constant tensor data computed at compile time (e.g. MoE
 * router gates); its bytes live in the program's blob pool at `offset`
 * (8-byte aligned), `file` is 0. */

typedef struct cr_prog_input {
    uint32_t file;          /* files[] index, or scratch[] index for SCRATCH */
    uint8_t dtype;          /* cr_dtype */
    uint8_t kind;           /* CR_INPUT_FILE, CR_INPUT_SCRATCH or CR_INPUT_BLOB */
    uint8_t pad[2];
    cr_blob name;           /* tensor name, for messages */
    uint64_t offset;
    uint64_t nbytes;
    uint64_t rows, cols, row_stride;
    /* a row gather (tokenizer merging, spec/tokenizer-merge.md §5.3): when
     * len > 0, `rows` u32 entries in the blob pool (4-aligned); view row r
     * is stored row rowmap[r] (rowmap[r] * row_stride elements from
     * `offset`), CR_ROWMAP_ZERO a row of zeros. Empty: row r is row r. */
    cr_blob rowmap;
} cr_prog_input;
#define CR_ROWMAP_ZERO UINT32_MAX

/* An output shard file: the complete safetensors header (8-byte length +
 * JSON + padding) is precomputed; tensors land at fixed offsets. */
typedef struct cr_prog_shard {
    cr_blob file_name;      /* relative to OUT_DIR */
    cr_blob header;         /* bytes written at offset 0 */
    uint64_t file_size;
} cr_prog_shard;

typedef struct cr_prog_output {
    cr_blob name;
    uint32_t shard;
    uint8_t dtype;
    uint8_t ndim;
    uint8_t pad[2];
    uint64_t shape[CR_MAX_DIMS];
    uint64_t offset;        /* absolute byte offset in the shard file */
    uint64_t nbytes;
} cr_prog_output;

typedef enum cr_aux_kind {
    CR_AUX_WRITE = 1,       /* write blob `content` to `dest` */
    CR_AUX_COPY = 2         /* copy input file `src_file` (manifest index) to `dest` */
} cr_aux_kind;

typedef struct cr_prog_aux {
    cr_blob dest;           /* relative to OUT_DIR */
    uint32_t kind;
    uint32_t src_file;
    cr_blob content;
} cr_prog_aux;

/* A vector slot of doubles: one per row of a kernel's domain (ROWB and the
 * *_ROW ops, len = rows) or one per column (COLB and the *_COL ops, len =
 * cols). */
typedef struct cr_prog_rowvec {
    uint64_t len;
    /* a column sum (RSUM_COL*) over the kernel's first `rows` rows only,
     * in the order of a matrix of that many rows (0: all its rows); the
     * mean that pads a merged vocabulary (spec/tokenizer-merge.md §3.2) */
    uint64_t rows;
} cr_prog_rowvec;

/* An in-memory tensor (e.g. a stage output of a multi-stage recipe that a
 * later stage reads): written by SSTORE, read through an input view of kind
 * SCRATCH, released by SFREE. */
typedef struct cr_prog_scratch { uint8_t dtype; uint8_t pad[7]; uint64_t numel; } cr_prog_scratch;

/* selection state over a domain of n elements split in chunks of `chunk` */
typedef struct cr_prog_select { uint64_t n; uint64_t chunk; } cr_prog_select;

/* a counter-based random stream: Philox4x32-10 keyed by (seed, key) with the
 * element's global index as counter (spec/vm.md gives the exact mapping) */
typedef struct cr_prog_stream { uint64_t key; } cr_prog_stream;

/* cr_prog_kernel.flags. ROWS: chunks hold whole rows. The others are
 * facts the compiler states so that the VM need not pattern-match kernels
 * at run time (cr_program_mark_kernels sets them, the verifier checks them,
 * a program without them runs the same bytes, only slower):
 *  TIES_ONLY     the kernel's only effects are tie counts (TIE_COUNT, and
 *                HIST_LO, which counts the ties in direct mode) and torch
 *                tie-order gathers (every other micro-op writes only a
 *                register): the VM skips it when they have nothing left to
 *                do, and memplan may run it once per gather;
 *  EARLY_GATHER  it counts (HIST_LO) a selection that a later kernel
 *                gathers in torch's tie order: when the threshold is known
 *                early (bf16 values) this pass may fill the gather;
 *  HI_GATHER     it counts (HIST_HI) bf16 values of a selection that a later
 *                kernel gathers in torch's tie order: this first pass may
 *                fill the gather with the plain keys (the sort tags the ties,
 *                torchsort.h), and with the threshold known after it (direct
 *                mode) the HIST_LO and gathering passes have nothing to do. */
enum {
    CR_KERNEL_ROWS = 1u << 0, CR_KERNEL_TIES_ONLY = 1u << 1, CR_KERNEL_EARLY_GATHER = 1u << 2,
    CR_KERNEL_HI_GATHER = 1u << 3
};
#define CR_KERNEL_FLAGS_ALL (CR_KERNEL_ROWS | CR_KERNEL_TIES_ONLY | CR_KERNEL_EARLY_GATHER | CR_KERNEL_HI_GATHER)

typedef struct cr_prog_kernel {
    uint64_t rows, cols;    /* domain */
    uint64_t chunk;         /* elements per chunk; multiple of cols if ROWS */
    uint32_t code_begin;    /* micro-ops are code[code_begin .. +code_len) */
    uint32_t code_len;
    uint32_t n_regs;
    uint32_t flags;
} cr_prog_kernel;

/* One instruction: top-level or kernel micro-op; operand meaning from
 * cr_op_table[op].kinds. `dtype` is the rounding of value ops. */
typedef struct cr_insn {
    uint16_t op;
    uint8_t dtype;
    uint8_t pad;
    uint32_t dst, a, b, c;
} cr_insn;

typedef struct cr_program {
    const cr_allocator *alloc;
    /* all arrays below are owned and allocated with `alloc` */
    uint8_t *blobs;            uint64_t n_blob_bytes;
    /* Bound input paths (cr_program_bind_file): a pool of their own, so
     * that binding never moves the program's blobs and a .crb never holds
     * a path of the machine that wrote it. A blob whose offset has
     * CR_BLOB_BOUND set lies here. */
    uint8_t *bound;            uint64_t n_bound_bytes;
    cr_blob tool_version;
    cr_blob mergekit_version;  /* the release whose numbers it reproduces (core/mkversion.h) */
    cr_blob recipe_name;       /* the config file's name (no folder), for messages */
    cr_blob recipe_text;       /* provenance: the recipe as compiled (empty: not recorded) */
    uint64_t seed;
    uint32_t flags;            /* CR_PROG_* */

    cr_prog_model *models;     uint32_t n_models;
    cr_prog_file *files;       uint32_t n_files;
    cr_prog_input *inputs;     uint32_t n_inputs;
    cr_prog_shard *shards;     uint32_t n_shards;
    cr_prog_output *outputs;   uint32_t n_outputs;
    cr_prog_aux *aux;          uint32_t n_aux;
    double *scalar_init;       uint32_t n_scalars;   /* slots start with these */
    cr_prog_rowvec *rowvecs;   uint32_t n_rowvecs;
    cr_prog_scratch *scratch;  uint32_t n_scratch;
    cr_prog_select *selects;   uint32_t n_selects;
    cr_prog_stream *streams;   uint32_t n_streams;
    cr_prog_kernel *kernels;   uint32_t n_kernels;
    cr_blob *messages;         uint32_t n_messages;  /* 'b' operands */
    cr_insn *code;             uint32_t n_code;      /* kernel bodies */
    cr_insn *main;             uint32_t n_main;      /* top-level stream */
} cr_program;

enum {
    CR_PROG_SKIP_HASH = 1u << 0,   /* manifest hashes not recorded */
    CR_PROG_PRECISE = 1u << 1      /* provenance: compiled with --precise */
};
#define CR_PROG_FLAGS_ALL (CR_PROG_SKIP_HASH | CR_PROG_PRECISE)

/* Free every array of p (not p itself). */
void cr_program_free(cr_program *p);

#define CR_BLOB_BOUND (1ull << 63)   /* the blob lies in the bound pool */

/* Pointer to a blob's bytes (valid while p lives). */
static inline const char *cr_prog_str(const cr_program *p, cr_blob b)
{
    return b.off & CR_BLOB_BOUND ? (const char *)p->bound + (b.off & ~CR_BLOB_BOUND)
                                 : (const char *)p->blobs + b.off;
}

/* Set every kernel's TIES_ONLY and EARLY_GATHER flags from its code and
 * the program's (the emitter calls it once, after the last kernel). */
void cr_program_mark_kernels(cr_program *p);

/* Check every index, size and operand kind; on failure name the record.
 * Run by the loader and, in debug builds, after the emitter. */
cr_status cr_program_verify(const cr_program *p, cr_error *err);

/* Serialise to / load from a .crb file (format: spec/bytecode.md). load
 * verifies. */
cr_status cr_program_save(const cr_program *p, const char *path, cr_error *err);
cr_status cr_program_load(const cr_allocator *alloc, const char *path,
                          cr_program *out, cr_error *err);

/* XXH64 of p serialised as a .crb's body (the bytes after the header):
 * the body hash cr_program_save records, so a program's identity whether
 * loaded or just compiled (a part manifest records it, spec/parts.md).
 * Errors: NOMEM, LIMIT. */
cr_status cr_program_body_hash(const cr_program *p, uint64_t *out, cr_error *err);

/* Bind file i to `path` (copied into the bound pool; a later bind
 * replaces it). Errors: NOMEM, LIMIT. */
cr_status cr_program_bind_file(cr_program *p, uint32_t i, const char *path, cr_error *err);

/* The first file that is not bound, or UINT32_MAX when all are: a loaded
 * .crb must be bound (compiler/bind.h) before it runs. */
uint32_t cr_program_first_unbound(const cr_program *p);

/* "REF: REL" for a model's file, the path for another (into buf). */
const char *cr_program_file_label(const cr_program *p, uint32_t i, char *buf, size_t n);

/* XXH64 (seed 0) of every input file's whole content, read at its bound
 * path, recorded in the manifest; clears CR_PROG_SKIP_HASH. What `run`
 * checks (the VM hashes the same way). Errors: IO naming the file, NOMEM. */
cr_status cr_program_hash_inputs(cr_program *p, cr_error *err);

/* Add every file of p's input manifest (shards, copied tokenizer files) and
 * the directory holding each when it is a model directory (has a
 * config.json) to an output guard's input list (outguard.h). Errors: NOMEM. */
struct cr_input_paths;
cr_status cr_input_paths_add_program(struct cr_input_paths *ip, const cr_program *p, cr_error *err);

#endif
