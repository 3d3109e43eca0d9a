/* infile.h — reading small input files whole: under a size limit, and, for
 * JSON, as strictly as the tools that wrote them read them back.
 *
 * Every recipe, method, config.json and index is read by cr_file_read, so
 * one rule holds for all of them: a file of exactly the limit is read, one
 * byte more is refused (spec/reliability.md §1).
 *
 * cJSON accepts text that JSON (RFC 8259), Python's json and serde_json
 * (the safetensors reference) refuse, and it ends a string at a NUL: with a
 * raw NUL (or the escape \u0000) inside a tensor name, "a<NUL>b" would be
 * read as "a" and could stand for another tensor. cr_json_check_text finds
 * those before cJSON sees the text.
 */
#ifndef CR_INFILE_H
#define CR_INFILE_H

#include "base.h"

typedef struct cJSON cJSON;

/* The whole file at `path` into a NUL-terminated buffer the caller frees
 * with `alloc` (*len excludes the NUL). Reads to end of file (the size is
 * not taken from stat: pipes and growing files read the same). A file of
 * `limit` bytes is read; a longer one is CR_ERR_LIMIT "PATH: WHAT larger
 * than LIMIT". Other errors: CR_ERR_IO (errno text appended), CR_ERR_NOMEM. */
cr_status cr_file_read(const cr_allocator *alloc, const char *path, uint64_t limit, const char *what,
                       char **out, size_t *len, cr_error *err);

/* CR_OK, or CR_ERR_FORMAT naming `path` and the byte offset in text[0..n)
 * (`where` says what the offset counts: "header byte", "byte") of the
 * first of:
 *   - a raw control character U+0000-U+001F inside a string (JSON requires
 *     them escaped; serde_json and Python's json refuse them),
 *   - a \u0000 escape (valid JSON, but a C string cannot hold the NUL, so
 *     crucible refuses what it would otherwise truncate),
 *   - a byte below 0x20 other than space, tab, LF, CR between tokens
 *     (cJSON skips them as white space; JSON does not). */
cr_status cr_json_check_text(const char *path, const char *where, const char *text, size_t n, cr_error *err);

/* `path` read (at most `limit` bytes), checked with cr_json_check_text and
 * parsed: one JSON object, nothing after it but white space. *out is the
 * caller's (cJSON_Delete). CR_ERR_FORMAT "PATH: not valid JSON (near byte
 * N)" / "PATH: not a JSON object", or cr_file_read's errors. */
cr_status cr_json_read_object(const cr_allocator *alloc, const char *path, uint64_t limit, cJSON **out,
                              cr_error *err);

#endif
