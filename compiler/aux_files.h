/* aux_files.h — the non-tensor files of a merged model, as program aux
 * records: config.json (patched), tokenizer copies, README.md model card and
 * mergekit_config.yml (merge-methods.md §7). The VM writes them, so `run` of
 * a .crb reproduces the whole directory. */
#ifndef CR_AUX_FILES_H
#define CR_AUX_FILES_H

#include "plan.h"
#include "program.h"

typedef struct cr_aux_options {
    bool copy_tokenizer;    /* --copy-tokenizer (default on) */
    bool write_card;        /* --write-model-card: README.md and mergekit_config.yml */
    const char *out_path;   /* OUT_DIR as given, for the card's title */
} cr_aux_options;

cr_status cr_program_add_aux(cr_program *p, const cr_plan *plan, const cr_aux_options *o,
                             cr_error *err);

/* One aux record: write `text` (len bytes) to OUT_DIR/dest, or copy the
 * file `src` (added to the input manifest with its model and current
 * size, compiler/bind.h) to OUT_DIR/dest. Used by the MoE builder too. */
cr_status cr_program_aux_write(cr_program *p, const char *dest, const char *text, size_t len, cr_error *err);
struct cr_input_file;
cr_status cr_program_aux_copy(cr_program *p, const char *dest, const struct cr_input_file *src, cr_error *err);

#endif
