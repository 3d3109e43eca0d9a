/* base.c — status names, error formatting, allocators, arena, vectors. */
#include "base.h"
#include "termtext.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *cr_status_name(cr_status s)
{
    switch (s) {
    case CR_OK: return "ok";
    case CR_ERR_NOMEM: return "out of memory";
    case CR_ERR_IO: return "I/O error";
    case CR_ERR_FORMAT: return "bad file format";
    case CR_ERR_CONFIG: return "invalid recipe";
    case CR_ERR_UNSUPPORTED: return "not supported";
    case CR_ERR_LIMIT: return "limit exceeded";
    case CR_ERR_RUNTIME: return "merge failed";
    case CR_ERR_INTERRUPTED: return "interrupted";
    case CR_ERR_ARG: return "bad argument";
    }
    return "unknown status";
}

static cr_status fail_v(cr_error *err, cr_status status, int sys_errno,
                        const char *fmt, va_list ap)
{
    if (!err) return status;
    err->status = status;
    err->sys_errno = sys_errno;
    /* Messages name tensors and files from the input: they reach a
     * terminal escaped (termtext.h), whoever prints them. */
    char raw[sizeof err->msg];
    int n = vsnprintf(raw, sizeof raw, fmt, ap);
    if (sys_errno && n >= 0 && (size_t)n < sizeof raw)
        snprintf(raw + n, sizeof raw - (size_t)n, ": %s", strerror(sys_errno));
    cr_text_safe(err->msg, sizeof err->msg, raw, strlen(raw), CR_TEXT_KEEP_LINES);
    return status;
}

cr_status cr_fail(cr_error *err, cr_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fail_v(err, status, 0, fmt, ap);
    va_end(ap);
    return status;
}

cr_status cr_fail_errno(cr_error *err, int sys_errno, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cr_status s = sys_errno == ENOMEM ? CR_ERR_NOMEM : CR_ERR_IO;
    fail_v(err, s, sys_errno, fmt, ap);
    va_end(ap);
    return s;
}

/* ---- allocators ------------------------------------------------------- */

static void *libc_realloc(void *ud, void *ptr, size_t n)
{
    (void)ud;
    if (n == 0) { free(ptr); return NULL; }
    return realloc(ptr, n);
}

static const cr_allocator default_allocator = { libc_realloc, NULL };

const cr_allocator *cr_default_allocator(void) { return &default_allocator; }

void *cr_calloc(const cr_allocator *a, size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size) return NULL;
    size_t n = count * size;
    void *p = cr_malloc(a, n ? n : 1);
    if (p) memset(p, 0, n ? n : 1);
    return p;
}

char *cr_strndup(const cr_allocator *a, const char *s, size_t n)
{
    char *p = cr_malloc(a, n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

char *cr_strdup(const cr_allocator *a, const char *s)
{ return cr_strndup(a, s, strlen(s)); }

char *cr_path_join(const cr_allocator *a, const char *dir, const char *name)
{
    size_t dl = strlen(dir), nl = strlen(name);
    while (dl > 1 && dir[dl - 1] == '/') dl--;
    bool slash = dl && dir[dl - 1] == '/';
    char *p = cr_malloc(a, dl + nl + 2);
    if (!p) return NULL;
    memcpy(p, dir, dl);
    if (!slash) p[dl++] = '/';
    memcpy(p + dl, name, nl + 1);
    return p;
}

static void *failing_realloc(void *ud, void *ptr, size_t n)
{
    cr_failing_allocator *fa = ud;
    if (n == 0) {
        if (ptr) fa->live--;
        return fa->inner->fn(fa->inner->ud, ptr, 0);
    }
    long idx = fa->count++;
    if (fa->fail_at >= 0 && (idx == fa->fail_at || (fa->sticky && idx > fa->fail_at)))
        return NULL;
    void *p = fa->inner->fn(fa->inner->ud, ptr, n);
    if (p && !ptr) fa->live++;
    return p;
}

void cr_failing_allocator_init(cr_failing_allocator *fa, const cr_allocator *inner,
                               long fail_at, bool sticky)
{
    fa->base.fn = failing_realloc;
    fa->base.ud = fa;
    fa->inner = inner;
    fa->count = 0;
    fa->fail_at = fail_at;
    fa->sticky = sticky;
    fa->live = 0;
}

/* ---- arena ------------------------------------------------------------ */

struct cr_arena_block {
    cr_arena_block *next;
    size_t cap;
    _Alignas(16) unsigned char data[];
};

void cr_arena_init(cr_arena *ar, const cr_allocator *alloc)
{
    ar->alloc = alloc;
    ar->head = NULL;
    ar->used = ar->cap = 0;
}

void *cr_arena_alloc(cr_arena *ar, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    if (!ar->head || ar->cap - ar->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        cr_arena_block *b = cr_malloc(ar->alloc, sizeof *b + cap);
        if (!b) return NULL;
        b->next = ar->head;
        b->cap = cap;
        ar->head = b;
        ar->used = 0;
        ar->cap = cap;
    }
    void *p = ar->head->data + ar->used;
    ar->used += n;
    memset(p, 0, n);
    return p;
}

char *cr_arena_strndup(cr_arena *ar, const char *s, size_t n)
{
    char *p = cr_arena_alloc(ar, n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

char *cr_arena_strdup(cr_arena *ar, const char *s)
{ return cr_arena_strndup(ar, s, strlen(s)); }

char *cr_arena_printf(cr_arena *ar, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = n >= 0 ? cr_arena_alloc(ar, (size_t)n + 1) : NULL;
    if (p) vsnprintf(p, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return p;
}

void cr_arena_free(cr_arena *ar)
{
    cr_arena_block *b = ar->head;
    while (b) {
        cr_arena_block *next = b->next;
        cr_free(ar->alloc, b);
        b = next;
    }
    ar->head = NULL;
    ar->used = ar->cap = 0;
}

/* ---- vectors ---------------------------------------------------------- */

void cr_vec_init(cr_vec *v, const cr_allocator *alloc, size_t item_size)
{
    v->data = NULL;
    v->len = v->cap = 0;
    v->item = item_size;
    v->alloc = alloc;
}

void *cr_vec_push(cr_vec *v, const void *item)
{
    if (v->len == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 8;
        void *d = cr_realloc(v->alloc, v->data, cap * v->item);
        if (!d) return NULL;
        v->data = d;
        v->cap = cap;
    }
    void *slot = (unsigned char *)v->data + v->len * v->item;
    memcpy(slot, item, v->item);
    v->len++;
    return slot;
}

void cr_vec_free(cr_vec *v)
{
    cr_free(v->alloc, v->data);
    v->data = NULL;
    v->len = v->cap = 0;
}
