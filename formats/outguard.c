/* outguard.c — refusing an output that overlaps an input (outguard.h).
 *
 * Both sides are reduced to chains of (device, inode) pairs: the input's
 * resolved path and every directory above it, and the output's deepest
 * existing path and every directory above that. Inode identity, not string
 * comparison, is what makes a symlink, a bind mount or "a/../a" name the
 * same directory. realpath(3) is given a stack buffer so nothing is
 * allocated outside the allocator hook.
 */
#include "outguard.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void cr_input_paths_init(cr_input_paths *ip, const cr_allocator *alloc)
{
    memset(ip, 0, sizeof *ip);
    ip->alloc = alloc;
}

cr_status cr_input_paths_add(cr_input_paths *ip, const char *path, cr_input_kind kind, cr_error *err)
{
    if (ip->n == ip->cap) {
        uint32_t cap = ip->cap ? ip->cap * 2 : 16;
        cr_input_path *n = cr_realloc(ip->alloc, ip->items, cap * sizeof *n);
        if (!n) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
        ip->items = n;
        ip->cap = cap;
    }
    char *copy = cr_strdup(ip->alloc, path);
    if (!copy) return cr_fail(err, CR_ERR_NOMEM, "out of memory");
    ip->items[ip->n++] = (cr_input_path){ copy, kind };
    return CR_OK;
}

cr_status cr_input_paths_add_all(cr_input_paths *ip, const cr_input_paths *from, cr_error *err)
{
    for (uint32_t i = 0; from && i < from->n; i++) {
        cr_status s = cr_input_paths_add(ip, from->items[i].path, from->items[i].kind, err);
        if (s) return s;
    }
    return CR_OK;
}

void cr_input_paths_free(cr_input_paths *ip)
{
    for (uint32_t i = 0; i < ip->n; i++) cr_free(ip->alloc, ip->items[i].path);
    cr_free(ip->alloc, ip->items);
    memset(ip, 0, sizeof *ip);
}

/* ---- resolving ------------------------------------------------------- */

typedef struct node { dev_t dev; ino_t ino; } node;

/* Lexically normalise an absolute path in place: "." and ".." components
 * and repeated slashes. Used only for the part of the output path that
 * does not exist yet, where no symlink can intervene. */
static void normalise(char *p)
{
    char *out = p;   /* p[0] == '/' */
    const char *s = p;
    while (*s) {
        while (*s == '/') s++;
        if (!*s) break;
        const char *e = s;
        while (*e && *e != '/') e++;
        size_t len = (size_t)(e - s);
        if (len == 1 && s[0] == '.') { s = e; continue; }
        if (len == 2 && s[0] == '.' && s[1] == '.') {
            while (out > p && *--out != '/') {}
            s = e;
            continue;
        }
        *out++ = '/';
        memmove(out, s, len);
        out += len;
        s = e;
    }
    if (out == p) *out++ = '/';
    *out = 0;
}

/* The deepest existing path of `path`, resolved (absolute, no symlinks),
 * into res (PATH_MAX bytes); *exists tells whether that is `path` itself.
 * False when not even "/" or "." resolves, or the path is too long. */
static bool resolve_deepest(const char *path, char *res, bool *exists)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return false;
    if (realpath(buf, res)) { *exists = true; return true; }
    /* strip components until a prefix exists */
    size_t n = strlen(buf);
    for (;;) {
        while (n > 0 && buf[n - 1] == '/') n--;
        while (n > 0 && buf[n - 1] != '/') n--;
        const char *prefix = n == 0 ? "." : NULL;
        char tmp[PATH_MAX];
        if (!prefix) {
            memcpy(tmp, buf, n);
            tmp[n] = 0;
            prefix = tmp;
        }
        if (realpath(prefix, res)) {
            /* res + the rest, normalised; the rest may hold ".." that leads
             * back into existing directories ("new/../models") */
            char joined[PATH_MAX];
            if (snprintf(joined, sizeof joined, "%s/%s", res, buf + n) >= (int)sizeof joined) return false;
            normalise(joined);
            if (realpath(joined, res)) { *exists = true; return true; }
            if (strstr(buf + n, "..") && strcmp(joined, path)) return resolve_deepest(joined, res, exists);
            if (!realpath(prefix, res)) return false;
            *exists = false;
            return true;
        }
        if (n == 0) return false;
    }
}

/* (dev, ino) of `res` and every directory above it, deepest first; returns
 * the count (0 when the first stat fails) */
static size_t chain_of(const char *res, node *out, size_t cap)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s", res);
    size_t n = 0;
    for (;;) {
        struct stat st;
        if (n == cap || stat(p, &st)) break;
        out[n++] = (node){ st.st_dev, st.st_ino };
        if (!strcmp(p, "/")) break;
        char *slash = strrchr(p, '/');
        if (!slash) break;
        if (slash == p) slash[1] = 0;
        else *slash = 0;
    }
    return n;
}

#define CHAIN_CAP 1024   /* directory levels compared; deeper ones are not */

cr_status cr_outguard_check(const cr_input_paths *inputs, const char *out, const char *what, cr_error *err)
{
    if (!inputs || !inputs->n) return CR_OK;
    char out_res[PATH_MAX];
    bool out_exists;
    if (!resolve_deepest(out, out_res, &out_exists))
        return cr_fail(err, CR_ERR_ARG, "%s '%s': cannot resolve the path to check it against the inputs", what, out);
    node oc[CHAIN_CAP];
    size_t n_oc = chain_of(out_res, oc, CHAIN_CAP);
    /* three passes so the message is the most direct one: the output is
     * an input, then contains one, then lies inside an input directory */
    for (int pass = 0; pass < 3; pass++) {
        for (uint32_t i = 0; i < inputs->n; i++) {
            const cr_input_path *in = &inputs->items[i];
            if (pass == 2 && in->kind != CR_INPUT_PATH_DIR) continue;
            char in_res[PATH_MAX];
            if (!realpath(in->path, in_res)) continue;   /* missing: opening it fails later, naming it */
            node ic[CHAIN_CAP];
            size_t n_ic = chain_of(in_res, ic, CHAIN_CAP);
            if (!n_ic || !n_oc) continue;
            if (pass == 0 && out_exists && ic[0].dev == oc[0].dev && ic[0].ino == oc[0].ino)
                return cr_fail(err, CR_ERR_ARG, "%s '%s' is the input '%s' of this run; refusing to write over an input",
                               what, out, in->path);
            for (size_t k = 1; pass == 1 && out_exists && k < n_ic; k++)
                if (ic[k].dev == oc[0].dev && ic[k].ino == oc[0].ino)
                    return cr_fail(err, CR_ERR_ARG, "%s '%s' contains the input '%s'; refusing to write there "
                                   "(replacing it would delete the input)", what, out, in->path);
            for (size_t k = 0; pass == 2 && k < n_oc; k++)
                if (oc[k].dev == ic[0].dev && oc[k].ino == ic[0].ino)
                    return cr_fail(err, CR_ERR_ARG, "%s '%s' is inside the input model directory '%s'; "
                                   "refusing to write into an input", what, out, in->path);
        }
    }
    return CR_OK;
}
