/* outguard.h — the output is never an input (spec/reliability.md §8.1).
 *
 * A command that writes an output (a model directory, a .crb) first lists
 * every path it will read: model directories and their shard files,
 * tokenizer and config donors, Lua method and recipe files, the .crb it
 * runs. cr_outguard_check then refuses an output that is one of them, an
 * ancestor of one (replacing it under --force would delete the input) or
 * inside an input directory (the output would change a model being read).
 * Paths are compared as device + inode after resolving symbolic links, for
 * every ancestor, so a symlink or a bind mount to an input is caught; an
 * output that does not exist yet is judged by its nearest existing ancestor.
 * A new kind of input is covered by adding its paths to the list (LoRA
 * adapters are: their file is a program input, and a folder holding
 * adapter_config.json counts as a model directory).
 */
#ifndef CR_OUTGUARD_H
#define CR_OUTGUARD_H

#include "base.h"

typedef enum cr_input_kind {
    CR_INPUT_PATH_FILE = 0,   /* a file read whole or in part */
    CR_INPUT_PATH_DIR = 1     /* a model directory: nothing may be written inside it */
} cr_input_kind;

typedef struct cr_input_path {
    char *path;
    cr_input_kind kind;
} cr_input_path;

typedef struct cr_input_paths {
    const cr_allocator *alloc;
    cr_input_path *items;
    uint32_t n, cap;
} cr_input_paths;

void cr_input_paths_init(cr_input_paths *ip, const cr_allocator *alloc);
/* Add a copy of `path`. Errors: NOMEM. */
cr_status cr_input_paths_add(cr_input_paths *ip, const char *path, cr_input_kind kind, cr_error *err);
/* Append all of `from` (may be NULL). Errors: NOMEM. */
cr_status cr_input_paths_add_all(cr_input_paths *ip, const cr_input_paths *from, cr_error *err);
void cr_input_paths_free(cr_input_paths *ip);

/* Refuse `out` (a directory or file to be written, existing or not) when it
 * is an input, an ancestor of an input, or inside an input directory. An
 * input that does not exist is skipped (reading it fails later, naming it).
 * `what` names the output in the message ("output directory", "output
 * file"). Errors: ARG, naming both paths. Reads no file contents. */
cr_status cr_outguard_check(const cr_input_paths *inputs, const char *out, const char *what, cr_error *err);

#endif
