/* outdir.h — an output directory that appears complete or not at all, and
 * is never one of the run's inputs (spec/reliability.md §8.1).
 *
 * Everything is written into a temporary directory beside OUT_DIR
 * (OUT_DIR.crucible-tmp-PID), which replaces OUT_DIR after every file is
 * written and fsynced. Beside it, OUT_DIR.crucible-owner-PID records which
 * process (pid, start time, boot) made it: the proof that lets a later run
 * remove what a killed one (SIGKILL, power loss) left behind, and only that.
 *
 * Begin refuses, before any input is read: an empty name; a dangling
 * symlink; an OUT_DIR that is an input, an ancestor of one or inside an
 * input directory (outguard.h), with or without force; an existing
 * non-empty OUT_DIR unless force; a location where the temporary directory
 * cannot be created. A symlink to a directory is followed: the output
 * replaces the link's target and the link stays. Missing parent directories
 * are created (as mergekit does).
 *
 * Commit replaces a forced-over OUT_DIR with one atomic exchange
 * (renameat2 RENAME_EXCHANGE) where the file system has it, so at every
 * instant OUT_DIR is the old directory or the complete new one. Elsewhere
 * it takes two renames (OUT_DIR -> OUT_DIR.crucible-old-PID, then the
 * temporary directory -> OUT_DIR); a process killed between them leaves
 * OUT_DIR absent, and the next begin (or cr_outdir_clean_stale) of the same
 * OUT_DIR completes the replacement, since the new directory was complete.
 */
#ifndef CR_OUTDIR_H
#define CR_OUTDIR_H

#include "base.h"

struct cr_io;
struct cr_input_paths;

/* Receives one line per thing done to stale leftovers (NULL: stderr, as
 * "crucible: MESSAGE"). */
typedef void (*cr_outdir_note_fn)(void *ud, const char *msg);

typedef struct cr_outdir_options {
    bool force;                          /* replace a non-empty OUT_DIR */
    const struct cr_io *io;              /* file system calls (io.h); NULL: POSIX */
    const struct cr_input_paths *inputs; /* every path the run reads; NULL: none */
    cr_outdir_note_fn note;
    void *note_ud;
} cr_outdir_options;

typedef struct cr_outdir {
    const cr_allocator *alloc;
    char *final_path;           /* OUT_DIR (a symlink's target when OUT_DIR is one) */
    char *tmp_path;             /* OUT_DIR.crucible-tmp-PID */
    char *owner_path;           /* OUT_DIR.crucible-owner-PID */
    bool force;
    bool committed;
    const struct cr_io *io;
} cr_outdir;

/* Checks (above), removes stale leftovers of dead processes for this
 * OUT_DIR, creates the owner record and the temporary directory. opt may
 * be NULL (no force, POSIX, no inputs). Errors: ARG (the refusals above,
 * naming the paths), IO (cannot create), NOMEM. */
cr_status cr_outdir_begin(const cr_allocator *alloc, const char *path, const cr_outdir_options *opt,
                          cr_outdir *out, cr_error *err);
/* The refusals of begin that need no input list (empty name, dangling
 * symlink, not a directory, a location that does not take new entries),
 * without creating anything: for a command to call before it compiles, so
 * a bad OUT_DIR fails at once. Not the non-empty check: begin makes that
 * after the input check, so an input is refused by saying so, with or
 * without force. Errors: ARG, IO. */
cr_status cr_outdir_check(const char *path, cr_error *err);
/* path of `name` inside the temporary directory (allocated) */
char *cr_outdir_path(const cr_outdir *o, const char *name);
cr_status cr_outdir_commit(cr_outdir *o, cr_error *err);
/* remove the temporary directory (safe after commit: does nothing) */
void cr_outdir_abort(cr_outdir *o);
void cr_outdir_free(cr_outdir *o);

/* Find OUT_DIR.crucible-owner-N records beside `path` whose process N is
 * no longer running (a live pid with another start time or boot counts as
 * dead: the pid was reused), finish or undo what that process was doing
 * (an interrupted two-rename replace is completed; a lone old directory is
 * put back), remove its OUT_DIR.crucible-tmp-N / -old-N and the record, and
 * say each thing through `note`. Directories of those names without a
 * record are left alone (noted once). Returns the number of records
 * handled; -1 when the parent directory cannot be read. */
int cr_outdir_clean_stale(const cr_allocator *alloc, const char *path, cr_outdir_note_fn note, void *note_ud);

/* Process pid's start time in clock ticks since boot (/proc/PID/stat field
 * 22), 0 if it is gone: with the boot id, what tells a live owner of a
 * temporary directory from a later process that reused its pid. */
unsigned long long cr_outdir_proc_start(long pid);

/* A single output file (convert's OUT.gguf, merge's OUT.gguf, compile's
 * .crb) written as OUT.crucible-tmp-PID and renamed. The same owner record
 * as a directory's (OUT.crucible-owner-PID) covers the temporary file, so
 * a killed run's leftover is removed by the next run for OUT, and only
 * once that process is gone. */
typedef struct cr_outfile {
    const cr_allocator *alloc;
    char *tmp_path;             /* OUT.crucible-tmp-PID: the caller creates, renames or unlinks it */
    char *owner_path;           /* OUT.crucible-owner-PID */
} cr_outfile;

/* Removes stale leftovers of dead processes for `path` (through `note`,
 * NULL: stderr), writes this process's owner record and sets tmp_path; the
 * temporary file itself is not created. Errors: IO (cannot create the
 * record), NOMEM, ARG (empty name). */
cr_status cr_outfile_begin(const cr_allocator *alloc, const char *path, cr_outdir_note_fn note, void *note_ud,
                           cr_outfile *out, cr_error *err);
/* Removes the owner record, after the caller has renamed or unlinked
 * tmp_path, and frees the names; safe on a zeroed or failed cr_outfile. */
void cr_outfile_end(cr_outfile *f);

#endif
