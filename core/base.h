/* base.h — what every crucible file needs: the allocator hook, status codes
 * and the error record.
 *
 * There is no global state. Every object that allocates holds a pointer to a
 * cr_allocator; tests swap in one that fails the N-th allocation (fault
 * injection, issue 8). Functions that can fail return a cr_status and, on
 * failure, fill a caller-provided cr_error with a message that names the file,
 * tensor or line involved. Only bugs abort.
 */
#ifndef CR_BASE_H
#define CR_BASE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdarg.h>

#define CR_VERSION_STRING "0.1.0"

/* ---- status codes ---------------------------------------------------- */

typedef enum cr_status {
    CR_OK = 0,
    CR_ERR_NOMEM,      /* an allocation failed */
    CR_ERR_IO,         /* a system call on a file failed (errno in cr_error) */
    CR_ERR_FORMAT,     /* a file is malformed (safetensors, json, bytecode) */
    CR_ERR_CONFIG,     /* the recipe is invalid (diagnostics carry details) */
    CR_ERR_UNSUPPORTED,/* valid input that crucible does not handle yet */
    CR_ERR_LIMIT,      /* a hard limit from limits.h was exceeded */
    CR_ERR_RUNTIME,    /* a merge could not complete (bad numbers, mismatch) */
    CR_ERR_INTERRUPTED,/* SIGINT/SIGTERM arrived */
    CR_ERR_ARG         /* bad command-line argument */
} cr_status;

const char *cr_status_name(cr_status s);

/* ---- error record ---------------------------------------------------- */

typedef struct cr_error {
    cr_status status;
    int sys_errno;      /* errno for CR_ERR_IO, else 0 */
    char msg[1024];     /* human message, already naming file/tensor */
} cr_error;

/* Fill err (which may be NULL) and return status. The message is printf
 * formatted; for CR_ERR_IO the caller passes errno in sys_errno and the text
 * of strerror is appended. Returns `status` so callers can write
 * `return cr_fail(err, CR_ERR_FORMAT, "%s: bad header", path);`. */
cr_status cr_fail(cr_error *err, cr_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
cr_status cr_fail_errno(cr_error *err, int sys_errno, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- allocator hook -------------------------------------------------- */

/* realloc-style hook: (ud, ptr, new_size). new_size == 0 frees and returns
 * NULL; ptr == NULL allocates. Returns NULL on failure (for new_size > 0). */
typedef void *(*cr_realloc_fn)(void *ud, void *ptr, size_t new_size);

typedef struct cr_allocator {
    cr_realloc_fn fn;
    void *ud;
} cr_allocator;

/* The process allocator (malloc/realloc/free). Immutable; safe to share. */
const cr_allocator *cr_default_allocator(void);

static inline void *cr_malloc(const cr_allocator *a, size_t n)
{ return n ? a->fn(a->ud, NULL, n) : NULL; }
static inline void *cr_realloc(const cr_allocator *a, void *p, size_t n)
{ return a->fn(a->ud, p, n); }
static inline void cr_free(const cr_allocator *a, void *p)
{ if (p) a->fn(a->ud, p, 0); }
/* zeroed allocation; NULL on overflow or failure */
void *cr_calloc(const cr_allocator *a, size_t count, size_t size);
/* copy of a NUL-terminated string (or of n bytes + NUL) */
char *cr_strdup(const cr_allocator *a, const char *s);
char *cr_strndup(const cr_allocator *a, const char *s, size_t n);
/* "dir/name" with one slash between (trailing slashes of dir dropped, "/"
 * kept); NULL when out of memory */
char *cr_path_join(const cr_allocator *a, const char *dir, const char *name);

/* Fault-injecting allocator for tests: fails allocation number `fail_at`
 * (0-based, counting from creation) and every later one if `sticky`. */
typedef struct cr_failing_allocator {
    cr_allocator base;          /* pass &fa.base wherever an allocator goes */
    const cr_allocator *inner;
    long count;                 /* allocations attempted so far */
    long fail_at;               /* -1: never fail */
    bool sticky;
    long live;                  /* outstanding blocks (leak check) */
} cr_failing_allocator;
void cr_failing_allocator_init(cr_failing_allocator *fa, const cr_allocator *inner,
                               long fail_at, bool sticky);

/* ---- arena: compiler data freed in one call --------------------------- */

typedef struct cr_arena_block cr_arena_block;
typedef struct cr_arena {
    const cr_allocator *alloc;
    cr_arena_block *head;
    size_t used, cap;
} cr_arena;

void cr_arena_init(cr_arena *ar, const cr_allocator *alloc);
void *cr_arena_alloc(cr_arena *ar, size_t n);          /* 16-aligned, zeroed */
char *cr_arena_strdup(cr_arena *ar, const char *s);
char *cr_arena_strndup(cr_arena *ar, const char *s, size_t n);
char *cr_arena_printf(cr_arena *ar, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void cr_arena_free(cr_arena *ar);

/* ---- growable array of fixed-size items (allocator-aware) ------------ */

typedef struct cr_vec {
    void *data;
    size_t len, cap, item;
    const cr_allocator *alloc;
} cr_vec;

void cr_vec_init(cr_vec *v, const cr_allocator *alloc, size_t item_size);
/* append one item (copied from `item`); returns pointer to the stored copy or
 * NULL on allocation failure */
void *cr_vec_push(cr_vec *v, const void *item);
void cr_vec_free(cr_vec *v);
#define CR_VEC_AT(v, T, i) (((T *)(v)->data)[i])

#define CR_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define CR_MIN(a, b) ((a) < (b) ? (a) : (b))
#define CR_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
