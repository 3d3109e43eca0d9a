/* outdir.h — an output directory that appears complete or not at all.
 *
 * Everything is written into a temporary directory beside OUT_DIR
 * (OUT_DIR.crucible-tmp-PID) which is renamed into place after every file is
 * written and fsynced. On failure or interruption the temporary directory is
 * removed. Missing parent directories are created (as mergekit does). An
 * existing non-empty OUT_DIR is refused unless `force`, in which
 * case it is replaced only at the final rename (the old one is removed then).
 */
#ifndef CR_OUTDIR_H
#define CR_OUTDIR_H

#include "base.h"

typedef struct cr_outdir {
    const cr_allocator *alloc;
    char *final_path;
    char *tmp_path;
    bool force;
    bool committed;
    const struct cr_io *io;     /* file system calls (io.h) */
} cr_outdir;

cr_status cr_outdir_begin(const cr_allocator *alloc, const char *path, bool force,
                          cr_outdir *out, cr_error *err);
/* The same with the creating, fsync and rename calls made through `io`
 * (NULL: POSIX), so tests can inject faults into them. */
cr_status cr_outdir_begin_io(const cr_allocator *alloc, const struct cr_io *io, const char *path,
                             bool force, cr_outdir *out, cr_error *err);
/* path of `name` inside the temporary directory (allocated) */
char *cr_outdir_path(const cr_outdir *o, const char *name);
cr_status cr_outdir_commit(cr_outdir *o, cr_error *err);
/* remove the temporary directory (safe after commit: does nothing) */
void cr_outdir_abort(cr_outdir *o);
void cr_outdir_free(cr_outdir *o);

#endif
