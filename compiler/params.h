/* params.h — evaluating mergekit parameter settings (merge-methods.md §5.6-5.8).
 *
 * A setting is evaluated for one tensor name at one layer position t in
 * [0, 1]: a scalar is itself, a gradient is interpolated linearly in double
 * precision, a conditional list picks its first entry whose filter is absent,
 * "*" or a substring of the name. "No value" falls through to the next level
 * of precedence: source -> slice -> module -> global for per-model
 * parameters (evaluated against that model's INPUT tensor name), slice ->
 * module -> global for global parameters (against the OUTPUT name), then the
 * method default.
 */
#ifndef CR_PARAMS_H
#define CR_PARAMS_H

#include "config.h"

/* The value of `s` for tensor `name` at position `t`; false when it yields
 * no value (a conditional list with no matching entry, or null). */
bool cr_setting_eval(const cr_setting *s, const char *name, double t, double *out);

/* Look `param` up in `levels` (highest precedence first; NULL entries are
 * skipped); the first level whose setting yields a value wins. `from`
 * (optional) receives the parameter entry that supplied the value. */
bool cr_params_lookup(const cr_params *const *levels, size_t n_levels, const char *param,
                      const char *name, double t, double *out, const cr_param **from);

/* mergekit's layer position: j/(L-1) within a slice of L layers, 1 when
 * L == 1. Pre and post weights use 0. */
double cr_layer_position(long long j, long long n_layers);

#endif
