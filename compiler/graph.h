/* graph.h — the compiler's tensor dataflow graph (spec/graph-ir.md).
 *
 * A graph is a flat array of nodes in topological order (every input index is
 * smaller than the node's own index). A node is a value: a whole tensor of an
 * output domain, a row vector over that domain's rows, or a scalar. Tensor
 * values are never materialised by default; the scheduler recomputes them
 * inside each kernel that needs them. Domains are the output tensors (rows x
 * cols after viewing rank > 2 as dim0 x rest); inputs are views of file
 * tensors or of scratch tensors written by an earlier stage.
 *
 * Everything lives in the graph's arena except the node array, which grows
 * with the allocator hook; cr_graph_free releases both.
 */
#ifndef CR_GRAPH_H
#define CR_GRAPH_H

#include <stdio.h>
#include "base.h"
#include "dtype.h"
#include "program.h"

/* Graph ops. Those that lower one-to-one to a VM op (same meaning and
 * rounding) come from ops.def's CR_OPG rows: name, arity and the VM op are
 * declared there once. The rest, listed here, are lowered by the emitter
 * to op sequences. */
#define CR_GOP_LOWERED(X)                                                  \
    X(SUM, "sum", 1) X(ROWSUM, "row_sum", 1) X(ROWMAX, "row_max", 1)       \
    X(COLSUM, "col_sum", 1)                                                \
    X(TOPK_MASK, "topk_mask", 2) X(KTH_ABS, "kth_abs", 2)                  \
    X(ROW_RANK, "row_rank", 1) X(SOFTMAX, "torch_softmax", 1)           \
    X(RAND, "rand", 0) X(CHECK, "check", 1) X(LORA, "lora", 2)

typedef enum cr_gop {
    CR_GOP_INPUT, CR_GOP_CONST,
#define CR_OP(name, str, ctx, kinds, flags, red, synopsis)
#define CR_OPG(name, str, ctx, kinds, flags, red, gop, gstr, synopsis) CR_GOP_##gop,
#include "ops.def"
#undef CR_OPG
#undef CR_OP
#define X(name, str, n) CR_GOP_##name,
    CR_GOP_LOWERED(X)
#undef X
    CR_GOP_COUNT
} cr_gop;

/* The summation order of a SUM node (its attr). */
typedef enum cr_sum_order {
    CR_SUM_WIDE = 0,        /* f64 accumulation, rounded once (RSUM) */
    CR_SUM_NUMPY = 1,       /* NumPy's float32 pairwise np.sum (RSUM_NP) */
    CR_SUM_BLAS_SSQ = 2,    /* sum of squares as OpenBLAS sdot(x, x) (RSSQ_BLAS) */
    CR_SUM_TORCH = 3,       /* torch's CPU float32 sum order (RSUM_TORCH) */
    CR_SUM_TORCH_SSQ = 4,   /* sum of squares in torch's norm-2 order (RSSQ_TORCH) */
    /* mergekit 0.1.5's slerp: torch's sum of the chunks' torch sums, and
     * torch's norm-2 sum of squares of the chunks' torch norms, chunks of
     * 2^20 elements (RSUM_TORCH_CHUNKS, RSSQ_TORCH_CHUNKS; SUM nodes only) */
    CR_SUM_TORCH_CHUNKS = 5,
    CR_SUM_TORCH_SSQ_CHUNKS = 6
} cr_sum_order;

/* TOPK_MASK's attr: which of the elements equal to the k-th largest
 * magnitude are kept when not all of them fit. */
typedef enum cr_tie_order {
    CR_TIES_INDEX = 0,      /* lowest element index first */
    CR_TIES_TORCH_DESC = 1, /* as torch.argsort(|x|, descending=True)[:k] (vm/torchsort.c) */
    CR_TIES_TORCH_ASC = 2,  /* as torch.sort(|x|).indices[n-k:] */
    CR_TIES_TORCH_TOPK = 3, /* as torch.topk(|x|, k) (vm/torchsort.c: cr_torchsort_topk) */
} cr_tie_order;

/* What a value holds: one number, one per row of its domain (broadcast
 * along the row), the whole tensor, or one per column (broadcast down the
 * column). */
typedef enum cr_vkind { CR_VK_SCALAR = 0, CR_VK_ROWS = 1, CR_VK_TENSOR = 2, CR_VK_COLS = 3 } cr_vkind;

/* The kind of an elementwise result of operands of kinds a and b: a scalar
 * takes the other's kind, rows and columns together span the tensor. */
static inline cr_vkind cr_vkind_join(cr_vkind a, cr_vkind b)
{
    if (a == b || b == CR_VK_SCALAR) return a;
    if (a == CR_VK_SCALAR) return b;
    return CR_VK_TENSOR;
}

#define CR_NO_DOMAIN UINT32_MAX
#define CR_NO_NODE UINT32_MAX
#define CR_NO_KERNEL UINT32_MAX

enum {
    CR_NODEF_WEAK = 1u << 0,    /* a Python-number-like scalar: never decides a dtype */
    CR_NODEF_DEAD = 1u << 1     /* removed by a pass (kept for stable indices) */
};

typedef struct cr_node {
    uint16_t op;            /* cr_gop */
    uint8_t dtype;          /* logical dtype (torch's), for promotion */
    uint8_t rdt;            /* rounding dtype of the result (F32 under --precise) */
    uint8_t kind;           /* cr_vkind */
    uint8_t n_in;
    uint16_t flags;         /* CR_NODEF_* */
    uint32_t domain;        /* CR_NO_DOMAIN for constants */
    uint32_t in[3];
    double value;           /* CONST: the value (already rounded to rdt) */
    uint64_t attr;          /* INPUT: input index; RAND: stream key; SUM, ROWSUM,
                               COLSUM: cr_sum_order (COLSUM: WIDE, TORCH or TORCH_SSQ);
                               TOPK: cr_tie_order (k is in[1]); KTH: 0; CHECK: message index;
                               LORA: 1 when transposed (in[0] = A, in[1] = B: INPUT nodes
                               viewing the adapter's r x n and m x r matrices) */
} cr_node;

/* An input view: a file tensor or a scratch tensor written by a stage. */
typedef struct cr_graph_input {
    bool scratch;           /* true: `src_node` of an earlier stage, via scratch */
    uint32_t model;         /* plan model index (file inputs) */
    const char *tensor;     /* tensor name in that model */
    uint32_t src_node;      /* scratch inputs: the node stored to scratch */
    cr_dtype dtype;         /* stored dtype */
    uint64_t rows, cols;    /* the view (a common submatrix when rectified) */
    uint64_t src_rows, src_cols; /* full stored 2-D extent */
    /* file inputs: where the bytes are (filled by the graph builder) */
    const char *path;       /* shard file */
    uint64_t file_size;     /* bytes of that file */
    /* the model it belongs to, as the program names it (vm/program.h,
     * cr_prog_model): the reference as written, what was looked up, the
     * Hugging Face snapshot it resolved to (NULL: none), and its directory,
     * which holds `path` */
    const char *model_ref, *model_lookup, *model_rev, *model_dir;
    uint64_t offset;        /* absolute offset of the tensor's first byte */
    uint64_t nbytes;        /* stored bytes of the whole tensor */
    /* compile-time data (e.g. MoE router gates): nbytes bytes in `dtype`,
     * copied into the graph's arena by cr_graph_add_input and into the
     * program's blob pool by the emitter (CR_INPUT_BLOB); NULL otherwise. */
    const void *blob;
} cr_graph_input;

typedef struct cr_graph_domain {
    uint64_t rows, cols;
    const char *name;       /* output tensor name, for messages */
    int stage;
} cr_graph_domain;

typedef struct cr_graph_output {
    uint32_t node;
    uint32_t domain;
    const char *name;
    cr_dtype dtype;         /* stored dtype */
    uint32_t ndim;
    uint64_t shape[CR_MAX_DIMS];
} cr_graph_output;

typedef struct cr_graph {
    const cr_allocator *alloc;
    cr_arena arena;
    cr_node *nodes;          uint32_t n_nodes, cap_nodes;
    cr_graph_input *inputs;  uint32_t n_inputs, cap_inputs;
    cr_graph_domain *domains; uint32_t n_domains, cap_domains;
    cr_graph_output *outputs; uint32_t n_outputs, cap_outputs;
    const char **messages;   uint32_t n_messages, cap_messages;
    /* The fuse pass's grouping (NULL before it, or with --no-pass=fuse:
     * then every reduction, selection pass and store is a kernel of its
     * own). Domain d's work at pass level p runs in kernel
     * kernel_start[d] + p (kernel_start: n_domains + 1 entries, kernels
     * numbered domain by domain); kernel_of[n] is the kernel in which node
     * n's value is first computed (a reduction: the one accumulating it),
     * CR_NO_KERNEL for dead nodes, constants and top-level scalar maths. */
    uint32_t *kernel_start, *kernel_of;
    uint32_t n_kernels;
    uint32_t max_nodes;      /* CR_LIMIT_GRAPH_NODES from cr_graph_init (tests lower it) */
} cr_graph;

void cr_graph_init(cr_graph *g, const cr_allocator *alloc);
void cr_graph_free(cr_graph *g);

/* Append a node (copied); returns its index, or CR_NO_NODE when memory runs
 * out or the graph already has max_nodes nodes. Inputs must already exist.
 * No deduplication: that is the cse pass. */
uint32_t cr_graph_add(cr_graph *g, const cr_node *n);
/* Why cr_graph_add failed, as an error naming `where` (a tensor): the node
 * limit (CR_ERR_LIMIT) or memory (CR_ERR_NOMEM). */
cr_status cr_graph_add_failed(const cr_graph *g, const char *where, cr_error *err);
/* Append an input view / domain / output / message; index or UINT32_MAX on
 * allocation failure. Strings are copied into the arena. */
uint32_t cr_graph_add_input(cr_graph *g, const cr_graph_input *in);
uint32_t cr_graph_add_domain(cr_graph *g, uint64_t rows, uint64_t cols, const char *name, int stage);
uint32_t cr_graph_add_output(cr_graph *g, const cr_graph_output *out);
uint32_t cr_graph_add_message(cr_graph *g, const char *msg);

const char *cr_gop_name(cr_gop op);
int cr_gop_arity(cr_gop op);
/* The ops.def op of an elementwise graph op, or CR_OP_COUNT if none. */
cr_op cr_gop_to_op(cr_gop op);

/* Check indices, order, kinds, arities and domains. err names the node. */
cr_status cr_graph_verify(const cr_graph *g, cr_error *err);
/* Pass level of every node (array of g->n_nodes, allocated with g->alloc;
 * dead nodes get 0): inputs 0, elementwise the max of its inputs, a
 * reduction one more than its input, KTH_ABS two and TOPK_MASK three more
 * (after the selection's SEL_FIND_LO / SEL_PREFIX). NULL on allocation failure. */
uint32_t *cr_graph_levels(const cr_graph *g);
/* Print live nodes, one a line (the --dump format), then the fused
 * kernels when the fuse pass has run. */
void cr_graph_dump(const cr_graph *g, FILE *out);

#endif
