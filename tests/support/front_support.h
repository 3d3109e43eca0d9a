/* front_support.h — tiny synthetic models for the front end's tests.
 * Test code only (plain malloc). */
#ifndef CR_FRONT_SUPPORT_H
#define CR_FRONT_SUPPORT_H

#include <stdbool.h>

typedef struct front_model_spec {
    const char *arch;       /* config architectures[0], e.g. "MistralForCausalLM" */
    int layers, hidden, intermediate, vocab;
    const char *dtype;      /* safetensors code: "BF16", "F32" */
    bool lm_head;           /* false: tied embeddings (no lm_head.weight) */
    bool no_config;         /* write no config.json */
    const char *tie;        /* config's tie_word_embeddings; NULL: "false" with an lm_head, else "true" */
} front_model_spec;

/* Write DIR/NAME/{config.json, model.safetensors} (llama/mistral layout,
 * zero data). */
bool front_write_model(const char *dir, const char *name, const front_model_spec *spec);
char *front_tmpdir(void);
void front_rmtree(const char *path);

#endif
