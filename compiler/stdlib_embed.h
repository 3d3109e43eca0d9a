/* stdlib_embed.h — the Lua files of stdlib/, embedded at build time by
 * tools/embed.c (the generated stdlib_embed.c defines the table). */
#ifndef CR_STDLIB_EMBED_H
#define CR_STDLIB_EMBED_H

#include <stddef.h>

typedef struct cr_embedded_file {
    const char *name;       /* file name, e.g. "linear.lua" */
    const char *data;       /* contents, NUL-terminated */
    size_t len;             /* bytes, not counting the NUL */
} cr_embedded_file;

extern const cr_embedded_file cr_stdlib_files[];
extern const size_t cr_stdlib_n_files;

#endif
