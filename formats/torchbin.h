/* torchbin.h — PyTorch checkpoints (pytorch_model.bin, the zip format that
 * torch.save writes since PyTorch 1.6) opened as a cr_st_file.
 *
 * The zip's central directory (zip64 too) is read from the mmapped file;
 * <prefix>/data.pkl goes through the restricted unpickler (pickle.h); each
 * tensor becomes a byte range [begin, end) of the file inside its storage's
 * entry <prefix>/data/<key>, so it is read in place like a safetensors
 * tensor, never copied (data_start is 0; begin/end are file offsets; shared
 * storages give overlapping ranges). Entries must be stored, not
 * compressed (torch.save never compresses); byteorder must be little. The
 * legacy (pre-zip, or tar) format is refused with what to do instead.
 */
#ifndef CR_TORCHBIN_H
#define CR_TORCHBIN_H

#include "safetensors.h"

/* Open `path`. flags: CR_ST_HEADER_ONLY leaves f->map NULL (the table is
 * still read from the file). Errors name the file and, where one is at
 * fault, the zip entry or tensor: IO, FORMAT, UNSUPPORTED (compressed
 * entries, legacy format, refused pickle contents), LIMIT, NOMEM. */
cr_status cr_torchbin_open(const cr_allocator *alloc, const char *path, unsigned flags, cr_st_file *out,
                           cr_error *err);

/* Read a state dict from bytes already in memory (the fuzz target's way in):
 * as cr_torchbin_open, with `path` used in messages only. The record borrows
 * `data`, which must outlive it. */
cr_status cr_torchbin_open_mem(const cr_allocator *alloc, const char *path, const uint8_t *data, size_t len,
                               cr_st_file *out, cr_error *err);

#endif
