/* outhash.c — shard content hashes (outhash.h): hashing a finished file and
 * adding the hashes to the index text the compiler produced.
 *
 * The file is read with pread into a 1 MiB buffer rather than mmapped: just
 * after the VM wrote it the pages are in the page cache, so the cost is a
 * memory copy plus XXH64, and a buffer that fits in L2 keeps the copy cheap.
 */
#include "outhash.h"
#include "hash.h"
#include "jsonw.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

cr_status cr_hash_fd_range(cr_xxh64_state *h, int fd, uint64_t from, uint64_t to, uint8_t *buf, size_t buf_len,
                           const volatile int *interrupt, const char *path, cr_error *err)
{
    uint64_t off = from;
    while (off < to) {
        if (interrupt && *interrupt) return cr_fail(err, CR_ERR_INTERRUPTED, "interrupted");
        size_t want = to - off < buf_len ? (size_t)(to - off) : buf_len;
        ssize_t r = pread(fd, buf, want, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return cr_fail_errno(err, errno, "cannot read %s", path);
        if (r == 0)
            return cr_fail(err, CR_ERR_IO, "%s: file ends at byte %llu, expected %llu bytes", path,
                           (unsigned long long)off, (unsigned long long)to);
        cr_xxh64_update(h, buf, (size_t)r);
        off += (uint64_t)r;
    }
    return CR_OK;
}

cr_status cr_hash_fd(const cr_allocator *alloc, int fd, uint64_t size, const volatile int *interrupt,
                     const char *path, uint64_t *out, cr_error *err)
{
    uint8_t *buf = cr_malloc(alloc, CR_HASH_BLOCK);
    if (!buf) return cr_fail(err, CR_ERR_NOMEM, "out of memory hashing %s", path);
#ifdef POSIX_FADV_SEQUENTIAL
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);   /* a hint only: cold files read ahead further */
#endif
    cr_xxh64_state h;
    cr_xxh64_init(&h, 0);
    cr_status st = cr_hash_fd_range(&h, fd, 0, size, buf, CR_HASH_BLOCK, interrupt, path, err);
    cr_free(alloc, buf);
    if (!st) *out = cr_xxh64_final(&h);
    return st;
}

cr_status cr_hash_path(const cr_allocator *alloc, const char *path, uint64_t *out, uint64_t *size,
                       cr_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cr_fail_errno(err, errno, "cannot open %s", path);
    struct stat sb;
    cr_status st;
    if (fstat(fd, &sb)) st = cr_fail_errno(err, errno, "cannot stat %s", path);
    else st = cr_hash_fd(alloc, fd, (uint64_t)sb.st_size, NULL, path, out, err);
    if (!st && size) *size = (uint64_t)sb.st_size;
    close(fd);
    return st;
}

void cr_hash_hex(uint64_t h, char out[17])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, h >>= 4) out[i] = digits[h & 15];
    out[16] = 0;
}

bool cr_hash_parse_hex(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        unsigned d;
        if (c >= '0' && c <= '9') d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') d = (unsigned)(c - 'A' + 10);
        else return false;   /* also catches a string shorter than 16 (its NUL) */
        v = v << 4 | d;
    }
    if (s[16]) return false;
    *out = v;
    return true;
}

cr_status cr_index_add_hashes(const cr_allocator *alloc, const char *text, size_t len,
                              const char *const *files, const uint64_t *hashes, size_t n,
                              char **out, size_t *out_len, cr_error *err)
{
    static const char head[] = "{\n  \"metadata\": {\n";
    size_t hl = sizeof head - 1;
    if (len < hl || memcmp(text, head, hl))
        return cr_fail(err, CR_ERR_FORMAT, "%s: not in the layout crucible writes (no leading metadata object)",
                       CR_INDEX_FILE);
    /* the metadata object holds only scalars, so it ends at the first "\n  }" */
    const char *end = NULL;
    for (const char *p = text + hl - 1; p + 4 <= text + len; p++)
        if (!memcmp(p, "\n  }", 4)) { end = p; break; }
    if (!end || (end > text + hl && memchr(text + hl, '{', (size_t)(end - (text + hl)))))
        return cr_fail(err, CR_ERR_FORMAT, "%s: not in the layout crucible writes (metadata object not closed)",
                       CR_INDEX_FILE);
    bool empty = end == text + hl - 1;   /* "metadata": {\n  } */
    cr_sbuf b;
    cr_sbuf_init(&b, alloc);
    cr_sbuf_add(&b, text, (size_t)(end - text));
    cr_sbuf_adds(&b, empty ? "\n    " : ",\n    ");
    cr_json_add_string(&b, CR_INDEX_HASH_KEY, strlen(CR_INDEX_HASH_KEY), true);
    cr_sbuf_adds(&b, ": {");
    for (size_t i = 0; i < n; i++) {
        char hex[17];
        cr_hash_hex(hashes[i], hex);
        cr_sbuf_adds(&b, i ? ",\n      " : "\n      ");
        cr_json_add_string(&b, files[i], strlen(files[i]), true);
        cr_sbuf_printf(&b, ": \"%s\"", hex);
    }
    cr_sbuf_adds(&b, n ? "\n    }" : "}");
    cr_sbuf_add(&b, end, len - (size_t)(end - text));
    *out = cr_sbuf_take(&b, out_len);
    if (!*out) return cr_fail(err, CR_ERR_NOMEM, "out of memory writing %s", CR_INDEX_FILE);
    return CR_OK;
}
