/* gguf_out.h — a program's output as the source of a GGUF file
 * (spec/gguf.md §8): the output tensor table (names, shapes, dtypes, shard
 * file names) and the aux files the program would write (config.json, the
 * tokenizer, README.md, ...) are exactly what llama.cpp's converter would
 * read from the output directory, so the GGUF sink (formats/gguf_hf.h)
 * plans the same file from them, and the VM feeds it the bytes it would
 * have stored in the shards.
 */
#ifndef CR_VM_GGUF_OUT_H
#define CR_VM_GGUF_OUT_H

#include "base.h"
#include "gguf_hf.h"
#include "program.h"

/* The converter's view of p's output directory named `dir`. The aux files
 * are read from the program's blobs, and for copies from `maps` (the VM's
 * input mappings, per manifest file) or, when maps is NULL, from the
 * manifest's paths (plan: no input is mapped). *owned holds the tables and
 * the parsed config.json (free with cr_program_gguf_src_free). Errors:
 * FORMAT (config.json is not JSON), IO, NOMEM. */
cr_status cr_program_gguf_src(const cr_allocator *alloc, const cr_program *p, uint8_t *const *maps, const char *dir,
                              cr_gguf_src *src, void **owned, cr_error *err);
void cr_program_gguf_src_free(const cr_allocator *alloc, void *owned);

/* The bytes of p's aux file `name` (a blob, the mapped or read source of a
 * copy): *data allocated, NUL-terminated, or NULL when p writes no such
 * file. */
cr_status cr_program_aux_read(const cr_allocator *alloc, const cr_program *p, uint8_t *const *maps, const char *name,
                              char **data, size_t *len, cr_error *err);

/* The directory name a GGUF output OUT stands for: OUT without its ".gguf"
 * (allocated). `merge C X.gguf` writes what `merge C X` then `convert X
 * X.gguf` writes: the model card's title and general.name come from it. */
char *cr_gguf_out_dir_name(const cr_allocator *alloc, const char *out);

/* true when OUT names a GGUF file (ends in ".gguf") */
bool cr_gguf_out_is_gguf(const char *out);

#endif
