/* inputguard.h — noticing that an input file changed while a run read it.
 *
 * The VM reads its inputs through read-only mappings of files it does not
 * own. Another process may rewrite, truncate or replace such a file during
 * the run: an in-place rewrite mixes old and new bytes into the output, and
 * a read from a mapped page past the new end of a truncated file raises
 * SIGBUS. Two mechanisms, both here (spec/reliability.md §8.2):
 *
 * - cr_file_id: a file's identity (device, inode, size, mtime and ctime to
 *   the nanosecond), recorded from fstat when the file is opened and
 *   compared with stat of its path after the run's last read, before the
 *   output is committed. The same device and inode means the path still
 *   names the mapped file, whose own fstat then says nothing more; another
 *   inode means it was replaced (renamed over, or removed and re-created).
 * - cr_input_guard: the address ranges of the run's input mappings, for a
 *   SIGBUS handler. The handler is the caller's (a process-wide pointer the
 *   library may not hold: the CLI's is in cli/run_program.c); it passes the
 *   faulting address to cr_input_guard_on_sigbus, which, if the address is
 *   inside an input mapping, maps a page of zeros over the faulting page so
 *   the interrupted load completes, and records which input faulted. The VM
 *   polls cr_input_guard_faulted between chunks and fails naming the file.
 *   Nothing unwinds the stack (no longjmp over frames that own memory).
 */
#ifndef CR_INPUTGUARD_H
#define CR_INPUTGUARD_H

#include <stdatomic.h>

#include "base.h"

typedef struct cr_file_id {
    uint64_t dev, ino, size;
    int64_t mtime_s, mtime_ns, ctime_s, ctime_ns;
} cr_file_id;

/* The identity of the open file fd; errors (IO) name `path`. */
cr_status cr_file_id_of_fd(int fd, const char *path, cr_file_id *out, cr_error *err);

/* Whether `path` still names the file recorded in `was`, unchanged.
 * CR_OK if so; otherwise CR_ERR_RUNTIME with "input PATH changed while it
 * was being read (WHAT)", WHAT saying what differs: the size, the
 * modification time, another file now at the path, or the file removed. */
cr_status cr_file_id_check(const char *path, const cr_file_id *was, cr_error *err);

/* One input mapping: [lo, hi), page-aligned lo. lo == hi: none. */
typedef struct cr_input_region {
    uintptr_t lo, hi;
} cr_input_region;

/* Owned by the caller (who installs the SIGBUS handler) and lent to one run
 * at a time through cr_vm_options.guard. The run publishes its regions
 * while its mappings exist and withdraws them before unmapping. */
typedef struct cr_input_guard {
    _Atomic(const cr_input_region *) regions;
    atomic_uint n_regions;
    atomic_uint faulted;        /* 1 + index of the first region a fault hit; 0: none */
    uintptr_t page;             /* page size, read here: sysconf is not async-signal-safe */
} cr_input_guard;

void cr_input_guard_init(cr_input_guard *g);
/* Publish n regions (the array stays owned by the caller and must live
 * until cr_input_guard_clear) and reset the fault record. */
void cr_input_guard_set(cr_input_guard *g, const cr_input_region *regions, uint32_t n);
void cr_input_guard_clear(cr_input_guard *g);

/* For a SIGBUS handler (async-signal-safe: atomics and one mmap call).
 * If addr lies in a published region, replace its page with zeros
 * (anonymous, MAP_FIXED), record the region and return true: the handler
 * may return and the faulting load runs again. False otherwise (a real
 * bug: the handler should restore the default action and return, so the
 * fault repeats and kills the process). */
bool cr_input_guard_on_sigbus(cr_input_guard *g, const void *addr);

/* 0: no fault; else 1 + the index of the first region that faulted. */
uint32_t cr_input_guard_faulted(const cr_input_guard *g);

#endif
