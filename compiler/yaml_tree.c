/* yaml_tree.c — libyaml events into a positioned node tree (yaml_tree.h).
 *
 * A stack of open collections receives each finished node; mappings take
 * nodes alternately as key and value. Anchors are registered when their node
 * is complete, so an alias inside its own anchored node is "unknown" rather
 * than a cycle. libyaml allocates with malloc internally (it has no
 * allocator hook); everything this file keeps lives in the tree's arena.
 */
#include "yaml_tree.h"
#include "infile.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

typedef struct anchor {
    const char *name;
    cr_ynode *node;
} anchor;

typedef struct frame {
    cr_ynode *node;
    cr_vec items;           /* cr_ynode* */
    cr_vec keys;            /* cr_ynode* (mappings) */
    cr_ynode *pending_key;  /* mapping: key waiting for its value */
    const char *anchor;
} frame;

typedef struct builder {
    cr_ytree *t;
    cr_diags *diags;
    const cr_allocator *alloc;
    frame stack[CR_YAML_MAX_DEPTH + 1];
    int depth;
    cr_vec anchors;         /* anchor */
    cr_ynode *doc_root;
    int n_aliases;
    size_t expanded;
    bool failed, oom;
} builder;

static cr_src_loc loc_of(builder *b, const yaml_mark_t *m)
{
    return (cr_src_loc){ b->t->file, (int)m->line + 1, (int)m->column + 1 };
}

static cr_ynode *new_node(builder *b, cr_ynode_kind kind, const yaml_mark_t *m)
{
    cr_ynode *n = cr_arena_alloc(b->t->ar, sizeof *n);
    if (!n) { b->oom = true; return NULL; }
    n->kind = kind;
    n->line = (int)m->line + 1;
    n->col = (int)m->column + 1;
    n->weight = 1;
    return n;
}

static bool register_anchor(builder *b, const char *name, cr_ynode *n)
{
    if (!name) return true;
    anchor a = { cr_arena_strdup(b->t->ar, name), n };
    if (!a.name || !cr_vec_push(&b->anchors, &a)) { b->oom = true; return false; }
    return true;
}

/* Hand a finished node to the enclosing collection (or make it the root). */
static bool attach(builder *b, cr_ynode *n, const yaml_mark_t *m)
{
    if (b->depth == 0) { b->doc_root = n; return true; }
    frame *f = &b->stack[b->depth - 1];
    b->expanded += n->weight;
    if (b->expanded > CR_YAML_MAX_EXPANDED) {
        cr_diag_add(b->diags, CR_DIAG_ERROR, loc_of(b, m), NULL, NULL,
                    "document expands to more than %d nodes (alias bomb?)", CR_YAML_MAX_EXPANDED);
        b->failed = true;
        return false;
    }
    if (f->node->kind == CR_YNODE_MAP && !f->pending_key) {
        if (n->kind != CR_YNODE_SCALAR) {
            cr_diag_add(b->diags, CR_DIAG_ERROR, (cr_src_loc){ b->t->file, n->line, n->col }, NULL,
                        NULL, "mapping keys must be plain strings");
            b->failed = true;
            return false;
        }
        for (size_t i = 0; i < f->keys.len; i++) {
            cr_ynode *k = CR_VEC_AT(&f->keys, cr_ynode *, i);
            if (!strcmp(k->str, n->str)) {
                char hint[64];
                snprintf(hint, sizeof hint, "first defined at line %d", k->line);
                cr_diag_add(b->diags, CR_DIAG_ERROR, (cr_src_loc){ b->t->file, n->line, n->col },
                            NULL, hint, "duplicate key '%s'", n->str);
                b->failed = true;
                break;
            }
        }
        f->pending_key = n;
        return true;
    }
    if (f->node->kind == CR_YNODE_MAP) {
        if (!cr_vec_push(&f->keys, &f->pending_key)) { b->oom = true; return false; }
        f->pending_key = NULL;
    }
    if (!cr_vec_push(&f->items, &n)) { b->oom = true; return false; }
    f->node->weight += n->weight;
    return true;
}

static bool open_collection(builder *b, cr_ynode_kind kind, const yaml_mark_t *m,
                            const char *anchor_name)
{
    if (b->depth >= CR_YAML_MAX_DEPTH) {
        cr_diag_add(b->diags, CR_DIAG_ERROR, loc_of(b, m), NULL, NULL,
                    "nesting deeper than %d levels", CR_YAML_MAX_DEPTH);
        b->failed = true;
        return false;
    }
    cr_ynode *n = new_node(b, kind, m);
    if (!n) return false;
    frame *f = &b->stack[b->depth++];
    f->node = n;
    cr_vec_init(&f->items, b->alloc, sizeof(cr_ynode *));
    cr_vec_init(&f->keys, b->alloc, sizeof(cr_ynode *));
    f->pending_key = NULL;
    f->anchor = anchor_name ? cr_arena_strdup(b->t->ar, anchor_name) : NULL;
    if (anchor_name && !f->anchor) { b->oom = true; return false; }
    return true;
}

static cr_ynode **copy_ptrs(builder *b, cr_vec *v)
{
    if (!v->len) return NULL;
    cr_ynode **p = cr_arena_alloc(b->t->ar, v->len * sizeof *p);
    if (!p) { b->oom = true; return NULL; }
    memcpy(p, v->data, v->len * sizeof *p);
    return p;
}

static bool close_collection(builder *b, const yaml_mark_t *m)
{
    frame *f = &b->stack[--b->depth];
    cr_ynode *n = f->node;
    n->n_items = (uint32_t)f->items.len;
    n->items = copy_ptrs(b, &f->items);
    n->keys = copy_ptrs(b, &f->keys);
    cr_vec_free(&f->items);
    cr_vec_free(&f->keys);
    if (b->oom) return false;
    if (!register_anchor(b, f->anchor, n)) return false;
    return attach(b, n, m);
}

static void unwind(builder *b)
{
    while (b->depth > 0) {
        frame *f = &b->stack[--b->depth];
        cr_vec_free(&f->items);
        cr_vec_free(&f->keys);
    }
}

static bool on_alias(builder *b, const yaml_event_t *ev)
{
    const char *name = (const char *)ev->data.alias.anchor;
    if (++b->n_aliases > CR_YAML_MAX_ALIASES) {
        cr_diag_add(b->diags, CR_DIAG_ERROR, loc_of(b, &ev->start_mark), NULL, NULL,
                    "more than %d aliases in one file", CR_YAML_MAX_ALIASES);
        b->failed = true;
        return false;
    }
    for (size_t i = b->anchors.len; i-- > 0;) {
        anchor *a = &CR_VEC_AT(&b->anchors, anchor, i);
        if (!strcmp(a->name, name)) return attach(b, a->node, &ev->start_mark);
    }
    cr_diag_add(b->diags, CR_DIAG_ERROR, loc_of(b, &ev->start_mark), NULL, NULL,
                "alias '*%s' refers to no complete anchor before it", name);
    b->failed = true;
    return false;
}

static bool on_scalar(builder *b, const yaml_event_t *ev)
{
    cr_ynode *n = new_node(b, CR_YNODE_SCALAR, &ev->start_mark);
    if (!n) return false;
    n->len = ev->data.scalar.length;
    n->str = cr_arena_strndup(b->t->ar, (const char *)ev->data.scalar.value, n->len);
    if (!n->str) { b->oom = true; return false; }
    n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !ev->data.scalar.tag;
    if (strlen(n->str) != n->len) {
        cr_diag_add(b->diags, CR_DIAG_ERROR, loc_of(b, &ev->start_mark), NULL, NULL,
                    "string contains a NUL character");
        b->failed = true;
    }
    if (!register_anchor(b, (const char *)ev->data.scalar.anchor, n)) return false;
    return attach(b, n, &ev->start_mark);
}

cr_status cr_ytree_parse(const cr_allocator *alloc, const char *file, const char *text,
                         size_t len, cr_ytree *out, cr_diags *diags, cr_error *err)
{
    cr_arena own;
    cr_arena_init(&own, alloc);
    cr_status st = cr_ytree_parse_in(&own, file, text, len, out, diags, err);
    out->own = own;
    out->ar = &out->own;
    return st;
}

cr_status cr_ytree_parse_in(cr_arena *ar, const char *file, const char *text, size_t len,
                            cr_ytree *out, cr_diags *diags, cr_error *err)
{
    const cr_allocator *alloc = ar->alloc;
    memset(out, 0, sizeof *out);
    cr_arena_init(&out->own, alloc);
    out->ar = ar;
    out->file = cr_arena_strdup(out->ar, file ? file : "<recipe>");
    char *copy = cr_arena_strndup(out->ar, text, len);
    if (!out->file || !copy) return cr_fail(err, CR_ERR_NOMEM, "out of memory reading %s", file);
    out->text = copy;
    out->text_len = len;

    builder b = { .t = out, .diags = diags, .alloc = alloc };
    cr_vec_init(&b.anchors, alloc, sizeof(anchor));
    cr_vec docs;
    cr_vec_init(&docs, alloc, sizeof(cr_ydoc));

    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) return cr_fail(err, CR_ERR_NOMEM, "out of memory (libyaml)");
    yaml_parser_set_input_string(&parser, (const unsigned char *)copy, len);
    size_t doc_start = 0;
    int doc_line = 1;
    bool done = false;
    while (!done && !b.failed && !b.oom) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            const yaml_mark_t *m = &parser.problem_mark;
            cr_diag_add(diags, CR_DIAG_ERROR, loc_of(&b, m), NULL,
                        parser.context ? parser.context : NULL, "YAML syntax error: %s",
                        parser.problem ? parser.problem : "malformed input");
            b.failed = true;
            break;
        }
        switch (ev.type) {
        case YAML_STREAM_END_EVENT: done = true; break;
        case YAML_DOCUMENT_START_EVENT:
            doc_start = ev.start_mark.index;
            doc_line = (int)ev.start_mark.line + 1;
            b.doc_root = NULL;
            b.anchors.len = 0;   /* anchors do not cross documents */
            break;
        case YAML_DOCUMENT_END_EVENT: {
            if (docs.len >= CR_YAML_MAX_DOCS) {
                cr_diag_add(diags, CR_DIAG_ERROR, loc_of(&b, &ev.start_mark), NULL, NULL,
                            "more than %d documents in one file", CR_YAML_MAX_DOCS);
                b.failed = true;
                break;
            }
            size_t end = ev.end_mark.index;
            if (end < doc_start || end > len) end = len;
            cr_ydoc d = { b.doc_root, cr_arena_strndup(out->ar, copy + doc_start, end - doc_start),
                          doc_line };
            if (!d.text || !cr_vec_push(&docs, &d)) b.oom = true;
            b.expanded = 0;
            break;
        }
        case YAML_ALIAS_EVENT: on_alias(&b, &ev); break;
        case YAML_SCALAR_EVENT: on_scalar(&b, &ev); break;
        case YAML_SEQUENCE_START_EVENT:
            open_collection(&b, CR_YNODE_SEQ, &ev.start_mark,
                            (const char *)ev.data.sequence_start.anchor);
            break;
        case YAML_MAPPING_START_EVENT:
            open_collection(&b, CR_YNODE_MAP, &ev.start_mark,
                            (const char *)ev.data.mapping_start.anchor);
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            close_collection(&b, &ev.end_mark);
            break;
        default: break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    unwind(&b);
    cr_vec_free(&b.anchors);
    if (!b.oom && docs.len) {
        out->docs = cr_arena_alloc(out->ar, docs.len * sizeof(cr_ydoc));
        if (out->docs) {
            memcpy(out->docs, docs.data, docs.len * sizeof(cr_ydoc));
            out->n_docs = (uint32_t)docs.len;
        } else {
            b.oom = true;
        }
    }
    cr_vec_free(&docs);
    if (b.oom) return cr_fail(err, CR_ERR_NOMEM, "out of memory parsing %s", out->file);
    if (b.failed) return cr_fail(err, CR_ERR_CONFIG, "%s: invalid YAML", out->file);
    return CR_OK;
}

cr_status cr_ytree_load(const cr_allocator *alloc, const char *path, cr_ytree *out,
                        cr_diags *diags, cr_error *err)
{
    memset(out, 0, sizeof *out);
    cr_arena_init(&out->own, alloc);
    out->ar = &out->own;
    char *text;
    size_t len;
    cr_status st = cr_file_read(alloc, path, CR_LIMIT_RECIPE_BYTES, "recipe", &text, &len, err);
    if (st) return st;
    st = cr_ytree_parse(alloc, path, text, len, out, diags, err);
    cr_free(alloc, text);
    return st;
}

void cr_ytree_free(cr_ytree *t)
{
    cr_arena_free(&t->own);
    t->docs = NULL;
    t->n_docs = 0;
}

cr_ynode *cr_ynode_get(const cr_ynode *map, const char *key)
{
    if (!map || map->kind != CR_YNODE_MAP) return NULL;
    for (uint32_t i = 0; i < map->n_items; i++)
        if (!strcmp(map->keys[i]->str, key)) return map->items[i];
    return NULL;
}

bool cr_ynode_is_null(const cr_ynode *n)
{
    if (!n) return true;
    if (n->kind != CR_YNODE_SCALAR || !n->plain) return false;
    return !n->str[0] || !strcmp(n->str, "~") || !strcmp(n->str, "null") ||
           !strcmp(n->str, "Null") || !strcmp(n->str, "NULL");
}

bool cr_ynode_bool(const cr_ynode *n, bool *out)
{
    static const char *const yes[] = { "true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", "y", "Y" };
    static const char *const no[] = { "false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF", "n", "N" };
    if (!n || n->kind != CR_YNODE_SCALAR || !n->plain) return false;
    /* PyYAML's resolver does not treat y/n as booleans; skip the last two. */
    for (size_t i = 0; i + 2 < CR_ARRAY_LEN(yes); i++)
        if (!strcmp(n->str, yes[i])) { *out = true; return true; }
    for (size_t i = 0; i + 2 < CR_ARRAY_LEN(no); i++)
        if (!strcmp(n->str, no[i])) { *out = false; return true; }
    return false;
}

static bool parse_double(const char *s, double *out)
{
    while (*s == ' ' || *s == '\t') s++;
    if (!*s) return false;
    const char *p = s;
    if (*p == '+' || *p == '-') p++;
    if (!strcasecmp(p, ".inf") || !strcasecmp(p, "inf") || !strcasecmp(p, "infinity")) {
        *out = s[0] == '-' ? -INFINITY : INFINITY;
        return true;
    }
    if (!strcasecmp(p, ".nan") || !strcasecmp(p, "nan")) { *out = NAN; return true; }
    /* Only decimal forms: strtod would also take hex floats. */
    for (const char *q = p; *q; q++)
        if (!strchr("0123456789.eE+-_ ", *q)) return false;
    char buf[128];
    size_t k = 0;
    for (const char *q = s; *q && k + 1 < sizeof buf; q++)
        if (*q != '_') buf[k++] = *q;   /* YAML 1.1 digit separators */
    buf[k] = 0;
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    while (*end == ' ' || *end == '\t') end++;
    if (end == buf || *end) return false;
    *out = v;
    return true;
}

bool cr_ynode_number(const cr_ynode *n, bool allow_string, double *out)
{
    if (!n || n->kind != CR_YNODE_SCALAR) return false;
    if (!n->plain && !allow_string) return false;
    return parse_double(n->str, out);
}

bool cr_ynode_int(const cr_ynode *n, long long *out)
{
    if (!n || n->kind != CR_YNODE_SCALAR || !n->plain) return false;
    const char *s = n->str;
    if (!*s) return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end || errno) return false;
    *out = v;
    return true;
}

const char *cr_ynode_kind_name(const cr_ynode *n)
{
    if (!n) return "nothing";
    switch (n->kind) {
    case CR_YNODE_SCALAR: return cr_ynode_is_null(n) ? "null" : "a scalar";
    case CR_YNODE_SEQ: return "a list";
    case CR_YNODE_MAP: return "a mapping";
    }
    return "?";
}
