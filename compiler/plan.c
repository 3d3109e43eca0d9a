/* plan.c — the small helpers plan.h declares: parameter lookup in a
 * resolved set and releasing a plan (closing the models it opened). */
#include "plan.h"

#include <string.h>

static const cr_param_value *find(const cr_param_set *s, const char *name)
{
    for (uint32_t i = 0; s && i < s->n; i++)
        if (!strcmp(s->items[i].name, name)) return &s->items[i];
    return NULL;
}

double cr_param_get(const cr_param_set *s, const char *name, double dflt)
{
    const cr_param_value *v = find(s, name);
    return v && v->present ? v->value : dflt;
}

bool cr_param_has(const cr_param_set *s, const char *name)
{
    const cr_param_value *v = find(s, name);
    return v && v->present;
}

void cr_plan_free(cr_plan *p)
{
    for (uint32_t i = 0; i < p->n_models; i++) {
        if (p->models[i].opened) cr_model_close(&p->models[i].model);
        if (p->models[i].lora) {
            const cr_allocator *a = p->models[i].lora->arena.alloc;
            cr_lora_close(p->models[i].lora);
            cr_free(a, p->models[i].lora);
        }
    }
    cr_arena_free(&p->arena);
    cr_methods_close(p->owned_methods);
    p->owned_methods = NULL;
    p->models = NULL;
    p->stages = NULL;
    p->n_models = p->n_stages = 0;
}
