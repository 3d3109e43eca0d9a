/* outhash.h — content hashes of the shard files crucible writes.
 *
 * Every model crucible writes (merge, moe, run of a .crb) gets a
 * model.safetensors.index.json, even when it has a single shard, whose
 * "metadata" object carries
 *
 *     "crucible_shard_xxh64": {"model-00001-of-00002.safetensors": "<16 hex>", ...}
 *
 * XXH64 (seed 0, core/hash.h) of every byte of each finished shard file,
 * header included, as lowercase hex of the 64-bit value — the same text
 * `xxhsum -H1 FILE` prints. The VM writes tensors at their final offsets in
 * any order from several threads, so the hash is taken of the finished
 * file, read back through the page cache, after the last tensor is written
 * and before the directory is renamed into place (spec/formats.md, "Shard
 * hashes", has the measurements behind that choice). `crucible verify`
 * (vm/verify.h) recomputes and compares them.
 */
#ifndef CR_OUTHASH_H
#define CR_OUTHASH_H

#include "base.h"
#include "hash.h"

#define CR_INDEX_FILE "model.safetensors.index.json"
#define CR_INDEX_HASH_KEY "crucible_shard_xxh64"

/* the read buffer's size: fits in L2, so the copy out of the page cache
 * stays cheap */
#define CR_HASH_BLOCK (1u << 20)

/* Feed bytes [from, to) of fd to h, read with pread into buf (buf_len
 * bytes at a time); the digest of a file fed in several ranges, in order,
 * is the digest of the whole. Errors as cr_hash_fd's. */
cr_status cr_hash_fd_range(cr_xxh64_state *h, int fd, uint64_t from, uint64_t to, uint8_t *buf, size_t buf_len,
                           const volatile int *interrupt, const char *path, cr_error *err);

/* XXH64 of bytes [0, size) of the open file fd, read with pread in 1 MiB
 * blocks (buffer from alloc). `interrupt`, if not NULL, is polled between
 * blocks (CR_ERR_INTERRUPTED). A file shorter than size is CR_ERR_IO
 * naming `path`, as are read errors. */
cr_status cr_hash_fd(const cr_allocator *alloc, int fd, uint64_t size, const volatile int *interrupt,
                     const char *path, uint64_t *out, cr_error *err);

/* XXH64 of the whole file at path; *size gets its length (may be NULL).
 * Errors: CR_ERR_IO (cannot open or read, naming path), CR_ERR_NOMEM. */
cr_status cr_hash_path(const cr_allocator *alloc, const char *path, uint64_t *out, uint64_t *size,
                       cr_error *err);

/* h as 16 lowercase hex digits and a NUL */
void cr_hash_hex(uint64_t h, char out[17]);
/* exactly 16 hex digits (either case) -> true and *out */
bool cr_hash_parse_hex(const char *s, uint64_t *out);

/* The index text `text[0..len)` with the hash object added as the last key
 * of its "metadata" object, in the same json.dump(indent=2) layout. The text
 * must be as cr_shard_index_json writes it (it opens with
 * `{\n  "metadata": {\n` and the metadata object holds no nested object);
 * otherwise CR_ERR_FORMAT. files[i] is the shard whose hash is hashes[i], in
 * the order they are to be listed. *out is allocated with alloc. */
cr_status cr_index_add_hashes(const cr_allocator *alloc, const char *text, size_t len,
                              const char *const *files, const uint64_t *hashes, size_t n,
                              char **out, size_t *out_len, cr_error *err);

#endif
