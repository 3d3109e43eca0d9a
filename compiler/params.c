/* params.c — parameter evaluation: gradients, filters, precedence.
 *
 * Follows mergekit/config.py evaluate_setting and ConfigReader.parameter to
 * the bit: the gradient index is int(t*(m-1)) computed in double and the
 * blend (1-f)*g[i0] + f*g[i1] is done in double, as Python does.
 */
#include "params.h"

#include <string.h>

bool cr_setting_eval(const cr_setting *s, const char *name, double t, double *out)
{
    switch (s->kind) {
    case CR_SETTING_NONE:
        return false;
    case CR_SETTING_SCALAR:
        *out = s->scalar;
        return true;
    case CR_SETTING_GRADIENT: {
        uint32_t m = s->n_grad;
        if (m == 0) return false;
        if (m == 1) { *out = s->grad[0]; return true; }
        double x = t * (double)(m - 1);
        /* int() truncates toward zero; a negative t (never produced by the
         * planner) would index before the start, so clamp. */
        long long i0 = (long long)x;
        if (i0 < 0) i0 = 0;
        if (i0 > (long long)m - 1) i0 = (long long)m - 1;
        long long i1 = i0 + 1 < (long long)m ? i0 + 1 : (long long)m - 1;
        double f = x - (double)i0;
        *out = (1.0 - f) * s->grad[i0] + f * s->grad[i1];
        return true;
    }
    case CR_SETTING_COND:
        for (uint32_t i = 0; i < s->n_conds; i++) {
            const cr_cond *c = &s->conds[i];
            if (!c->filter || strstr(name, c->filter))
                return cr_setting_eval(&c->value, name, t, out);
        }
        return false;
    }
    return false;
}

bool cr_params_lookup(const cr_params *const *levels, size_t n_levels, const char *param,
                      const char *name, double t, double *out, const cr_param **from)
{
    for (size_t l = 0; l < n_levels; l++) {
        const cr_params *ps = levels[l];
        if (!ps) continue;
        for (uint32_t i = 0; i < ps->n; i++) {
            if (strcmp(ps->items[i].name, param)) continue;
            if (cr_setting_eval(&ps->items[i].value, name, t, out)) {
                if (from) *from = &ps->items[i];
                return true;
            }
            break;   /* one entry per name per level; no value -> next level */
        }
    }
    return false;
}

double cr_layer_position(long long j, long long n_layers)
{
    if (n_layers <= 1) return 1.0;
    return (double)j / (double)(n_layers - 1);
}
