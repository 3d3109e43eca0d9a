/* pickle.h — a restricted unpickler for the data.pkl of a PyTorch state
 * dict (what torch.save writes for `model.state_dict()`).
 *
 * A pickle is a program: GLOBAL names any Python callable and REDUCE calls
 * it. Here nothing is ever called. The reader understands only the opcodes a
 * state dict uses (protocols 2 to 5: containers, ints, floats, strings, the
 * memo, persistent ids) and only these globals: collections.OrderedDict,
 * torch._utils._rebuild_tensor_v2 and _v3, torch._utils._rebuild_parameter, the
 * torch storage classes (FloatStorage ... BFloat16Storage, UntypedStorage)
 * and the torch dtypes. Any other global, any REDUCE of something that is
 * not one of the rebuild functions, and any other opcode is refused with
 * the global's or opcode's name, its byte offset and the file: a pickle that
 * would call anything else is an attack, not a model.
 *
 * The result is the table of tensors: name, storage key, dtype, offset,
 * shape and stride, checked for a contiguous layout inside the storage.
 * Strided (non-contiguous) views are refused, not materialised: tensors are
 * read in place from the mmapped file (torchbin.c).
 */
#ifndef CR_PICKLE_H
#define CR_PICKLE_H

#include "base.h"
#include "dtype.h"
#include "limits.h"

typedef struct cr_pickle_tensor {
    const char *name;           /* the state-dict key (arena string) */
    const char *storage;        /* storage key: the zip entry is <prefix>/data/<storage> */
    cr_dtype dtype;             /* the tensor's element type (v2: its storage's) */
    uint64_t storage_numel;     /* the storage's size in elements of `dtype` */
    uint64_t offset;            /* first element of the tensor inside its storage */
    uint64_t numel;
    uint32_t ndim;
    uint64_t shape[CR_MAX_DIMS];
    uint64_t stride[CR_MAX_DIMS];
} cr_pickle_tensor;

/* Read a state dict from a pickle stream of `len` bytes. `what` names the
 * stream in messages ("DIR/pytorch_model.bin (archive/data.pkl)").
 * Everything returned lives in `ar` (tensors in pickle order). Errors:
 * FORMAT (malformed or truncated stream, a value that is not a tensor),
 * UNSUPPORTED (a refused global, opcode or strided view, naming which),
 * LIMIT, NOMEM. */
cr_status cr_pickle_state_dict(cr_arena *ar, const uint8_t *data, size_t len, const char *what,
                               cr_pickle_tensor **out, uint32_t *n_out, cr_error *err);

#endif
