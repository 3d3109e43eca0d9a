/* yaml_tree.h — a YAML file as a small tree of nodes with positions.
 *
 * libyaml's event stream is turned into scalars, sequences and mappings,
 * each with its 1-based line and column, so every later check can point at
 * the exact spot in the recipe. A file may hold several documents (`---`);
 * each keeps its verbatim text, which is what mergekit writes to
 * mergekit_config.yml. Aliases are resolved by sharing the anchored node;
 * their number, the size they expand to and the nesting depth are bounded so
 * a hostile file ("billion laughs") cannot blow up the compiler.
 */
#ifndef CR_YAML_TREE_H
#define CR_YAML_TREE_H

#include "base.h"
#include "diag.h"

#include "limits.h"
/* the bounds live in core/limits.h with every other hard limit */
#define CR_YAML_MAX_DEPTH CR_LIMIT_YAML_DEPTH
#define CR_YAML_MAX_ALIASES CR_LIMIT_YAML_ALIASES
#define CR_YAML_MAX_EXPANDED CR_LIMIT_YAML_EXPANDED
#define CR_YAML_MAX_DOCS CR_LIMIT_YAML_DOCS

typedef enum cr_ynode_kind { CR_YNODE_SCALAR, CR_YNODE_SEQ, CR_YNODE_MAP } cr_ynode_kind;

typedef struct cr_ynode cr_ynode;
struct cr_ynode {
    cr_ynode_kind kind;
    int line, col;              /* 1-based start of the node */
    /* scalar */
    const char *str;            /* NUL-terminated value */
    size_t len;
    bool plain;                 /* unquoted (type resolution applies) */
    /* sequence: items; mapping: keys[i] -> items[i] (keys are scalars) */
    cr_ynode **items;
    cr_ynode **keys;
    uint32_t n_items;
    size_t weight;              /* nodes in this subtree, aliases expanded */
};

typedef struct cr_ydoc {
    cr_ynode *root;             /* NULL for an empty document */
    const char *text;           /* verbatim text of this document */
    int line;                   /* first line of the document */
} cr_ydoc;

typedef struct cr_ytree {
    cr_arena own;               /* used unless the caller supplied an arena */
    cr_arena *ar;               /* owns every node and string */
    const char *file;           /* as given */
    const char *text;           /* whole file, NUL-terminated */
    size_t text_len;
    cr_ydoc *docs;
    uint32_t n_docs;
} cr_ytree;

/* Parse `text` (len bytes; need not be NUL-terminated) named `file` in
 * diagnostics. Syntax errors and limit violations become error diagnostics
 * with line/col and the call returns CR_ERR_CONFIG; CR_ERR_NOMEM on
 * allocation failure. On any return `out` must be released with
 * cr_ytree_free. */
cr_status cr_ytree_parse(const cr_allocator *alloc, const char *file, const char *text,
                         size_t len, cr_ytree *out, cr_diags *diags, cr_error *err);
/* The same, allocating in the caller's arena `ar` (the tree's strings then
 * live as long as that arena; cr_ytree_free releases nothing). */
cr_status cr_ytree_parse_in(cr_arena *ar, const char *file, const char *text, size_t len,
                            cr_ytree *out, cr_diags *diags, cr_error *err);
/* Read and parse a file (CR_ERR_IO when it cannot be read). */
cr_status cr_ytree_load(const cr_allocator *alloc, const char *path, cr_ytree *out,
                        cr_diags *diags, cr_error *err);
void cr_ytree_free(cr_ytree *t);

/* Value for `key` in a mapping node, or NULL. */
cr_ynode *cr_ynode_get(const cr_ynode *map, const char *key);
/* Plain scalars that YAML 1.1 (PyYAML's safe loader) reads as null / bool. */
bool cr_ynode_is_null(const cr_ynode *n);
bool cr_ynode_bool(const cr_ynode *n, bool *out);
/* A number: plain scalar ints/floats (also `.inf`, `.nan`), or a quoted
 * numeric string when `allow_string` (mergekit turns those into floats). */
bool cr_ynode_number(const cr_ynode *n, bool allow_string, double *out);
/* An integer (plain scalar, decimal, optional sign). */
bool cr_ynode_int(const cr_ynode *n, long long *out);
const char *cr_ynode_kind_name(const cr_ynode *n);

#endif
