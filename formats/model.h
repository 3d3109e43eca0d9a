/* model.h — a Hugging Face model directory opened for reading.
 *
 * Finds the weights the way mergekit does (model.safetensors, then
 * model.safetensors.index.json, then pytorch_model.bin.index.json, then
 * pytorch_model.bin; a .bin shard is a PyTorch zip read in place, torchbin.h),
 * validates the shard index (every mapped file exists, every
 * mapped tensor is in its shard, no duplicate keys; tensors a shard holds
 * but the index omits are counted), parses config.json, and offers lookup
 * of any tensor by name across shards.
 */
#ifndef CR_MODEL_H
#define CR_MODEL_H

#include "base.h"
#include "safetensors.h"

typedef struct cJSON cJSON;

typedef struct cr_model_tensor {
    const cr_st_tensor *info;   /* owned by the shard */
    uint32_t shard;
} cr_model_tensor;

typedef struct cr_model {
    const cr_allocator *alloc;
    char *dir;                  /* as given */
    cJSON *config;              /* parsed config.json; NULL if the file is absent */
    cr_st_file *shards;
    uint32_t n_shards;
    cr_model_tensor *tensors;   /* sorted by name */
    uint32_t n_tensors;
    uint64_t total_bytes;       /* sum of tensor data bytes */
    const char *index_name;     /* "model.safetensors.index.json", "pytorch_model.bin.index.json",
                                 * or NULL (one weights file); static, for messages */
    /* Tensors a shard holds that the index does not list: not part of the
     * model (mergekit and crucible read only what weight_map lists), but
     * worth a warning, since transformers loads every tensor of a shard. */
    uint32_t n_unlisted;
    const char *first_unlisted;         /* the first by shard order, or NULL */
    uint32_t first_unlisted_shard;
} cr_model;

/* flags: CR_ST_HEADER_ONLY opens shards header-only. */
cr_status cr_model_open(const cr_allocator *alloc, const char *dir, unsigned flags,
                        cr_model *out, cr_error *err);
void cr_model_close(cr_model *m);

/* A model whose files are not in the file system (core/memio.h): map
 * gives the path that opens DIR/NAME for reading (written into buf), or
 * NULL where there is no such file. */
typedef struct cr_model_fs {
    const char *(*map)(void *ud, const char *path, char *buf, size_t cap);
    void *ud;
} cr_model_fs;
/* cr_model_open with every file found through fs (NULL: the file system);
 * dir is then a name only, and messages name the mapped paths. */
cr_status cr_model_open_fs(const cr_allocator *alloc, const char *dir, unsigned flags, const cr_model_fs *fs,
                           cr_model *out, cr_error *err);
/* NULL if the model has no tensor of that name. */
const cr_model_tensor *cr_model_find(const cr_model *m, const char *name);
/* The path of a shard holding a tensor `name` that the index does not list,
 * or NULL (for messages: "the index omits it, but shard F holds it"). */
const char *cr_model_unlisted_shard(const cr_model *m, const char *name);

/* config.json helpers: integer / string fields (dotted keys like
 * "text_config.num_hidden_layers" walk nested objects); false if absent. */
bool cr_model_config_int(const cr_model *m, const char *key, long long *out);
const char *cr_model_config_str(const cr_model *m, const char *key);

#endif
