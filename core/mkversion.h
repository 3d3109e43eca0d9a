/* mkversion.h — which mergekit release's arithmetic a run reproduces.
 *
 * mergekit 0.1.5 changed some methods' numbers (spec/mergekit-0.1.5.md):
 * linear sums in f32, slerp runs in torch, breadcrumbs slices differently,
 * mergekit-moe writes the fused expert layout. `--mergekit-version` picks one
 * per run; the compiler hands it to every method (ctx.mergekit_version) and
 * records it in the program, the shard index and the model card, so an
 * output says which mergekit it matches. The default is the release PyPI
 * serves today. */
#ifndef CR_MKVERSION_H
#define CR_MKVERSION_H

#include <stdbool.h>
#include <string.h>

typedef enum cr_mk_version {
    CR_MK_DEFAULT = 0,      /* an option left unset: the current release */
    CR_MK_0_1_4 = 14,
    CR_MK_0_1_5 = 15,
} cr_mk_version;

#define CR_MK_CURRENT CR_MK_0_1_5
#define CR_MK_VERSIONS "0.1.4|0.1.5"   /* as --help lists them */

static inline cr_mk_version cr_mk_resolve(cr_mk_version v) { return v == CR_MK_DEFAULT ? CR_MK_CURRENT : v; }

/* "0.1.4" / "0.1.5" (the unset value names the current release) */
static inline const char *cr_mk_name(cr_mk_version v)
{ return cr_mk_resolve(v) == CR_MK_0_1_4 ? "0.1.4" : "0.1.5"; }

/* false for anything but the versions crucible reproduces */
static inline bool cr_mk_parse(const char *s, cr_mk_version *out)
{
    if (!s) return false;
    if (!strcmp(s, "0.1.4")) { *out = CR_MK_0_1_4; return true; }
    if (!strcmp(s, "0.1.5")) { *out = CR_MK_0_1_5; return true; }
    return false;
}

#endif
