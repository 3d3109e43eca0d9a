/* readplan.h — the order in which a run reads its input files, planned
 * from the program's schedule, for the reader thread (reader.h).
 *
 * The compiler schedules the tensors and says, with its PREFETCH steps,
 * which file views each output's domain will need and the next domain's
 * too; the kernels' LOADs and the COPYs say which views each step reads.
 * The read plan is that order made into byte ranges: every file view in
 * the order a top-level step first names it, overlapping views of one file
 * merged into one range (read once, at the first step that needs any of
 * it), consecutive ranges of one file that touch made into one extent so
 * the reader's blocks are as long as the file allows. Each KERNEL and COPY
 * gets the position in that order (bytes from its start) up to which the
 * reader must have read before the step may start.
 */
#ifndef CR_READPLAN_H
#define CR_READPLAN_H

#include "base.h"
#include "program.h"

typedef struct cr_read_extent {
    uint32_t file;             /* manifest index */
    uint64_t off, len;         /* bytes of the file, in read order */
} cr_read_extent;

typedef struct cr_read_plan {
    cr_read_extent *ext;
    uint32_t n_ext;
    uint64_t total;            /* bytes of all extents: the distinct bytes the run reads */
    /* per main instruction: the read-order position a KERNEL or COPY needs
     * read before it starts (0: nothing) */
    uint64_t *need;
    uint32_t n_main;
    const cr_allocator *alloc;
} cr_read_plan;

/* Plan the reads of p's main stream (p->main, n_main steps: a partitioned
 * run's slice reads only its own views). Files the program never reads are
 * not in the plan. rp's arrays are allocated with a (p->alloc if NULL);
 * release with cr_read_plan_free. Errors: CR_ERR_NOMEM. */
cr_status cr_read_plan_init(cr_read_plan *rp, const cr_program *p, const cr_allocator *a, cr_error *err);
void cr_read_plan_free(cr_read_plan *rp);

#endif
