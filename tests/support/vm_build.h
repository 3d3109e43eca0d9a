/* vm_build.h — hand-building small programs and input files for VM tests.
 *
 * A vm_builder collects the tables of a cr_program in growable arrays; the
 * helpers append records and return their index. vb_build hands the arrays
 * to a cr_program (the program then owns them). vb_write_safetensors writes
 * a tiny safetensors file so tests need no other branch's writer.
 */
#ifndef CR_TEST_VM_BUILD_H
#define CR_TEST_VM_BUILD_H

#include "program.h"

typedef struct vm_builder {
    const cr_allocator *alloc;
    cr_vec blobs, files, inputs, shards, outputs, aux, scalars, rowvecs, scratch,
           selects, streams, kernels, messages, code, main;
    uint64_t seed;
    /* outputs of the shard being assembled (indices into outputs) */
    uint32_t pending[64];
    unsigned n_pending;
    int cur_kernel;            /* -1 outside vb_kernel_begin/end */
} vm_builder;

void vb_init(vm_builder *b);
void vb_free(vm_builder *b);          /* after a failed build */
cr_blob vb_str(vm_builder *b, const char *s);
cr_blob vb_bytes(vm_builder *b, const void *data, size_t n);
uint32_t vb_file(vm_builder *b, const char *path, uint64_t size, uint64_t hash);
uint32_t vb_input(vm_builder *b, uint32_t file, cr_dtype dt, const char *name, uint64_t offset,
                  uint64_t nbytes, uint64_t rows, uint64_t cols, uint64_t row_stride);
/* an output tensor of the shard being assembled (rows x cols, or 1-D if rows == 0) */
uint32_t vb_output(vm_builder *b, const char *name, cr_dtype dt, uint64_t rows, uint64_t cols);
/* close the shard: safetensors header for the pending outputs, in order */
uint32_t vb_shard(vm_builder *b, const char *file_name);
uint32_t vb_aux_write(vm_builder *b, const char *dest, const char *content);
uint32_t vb_aux_copy(vm_builder *b, const char *dest, uint32_t file);
uint32_t vb_scalar(vm_builder *b, double init);
uint32_t vb_rowvec(vm_builder *b, uint64_t len);
uint32_t vb_scratch(vm_builder *b, cr_dtype dt, uint64_t numel);
uint32_t vb_select(vm_builder *b, uint64_t n, uint64_t chunk);
uint32_t vb_stream(vm_builder *b, uint64_t key);
uint32_t vb_message(vm_builder *b, const char *text);
uint32_t vb_kernel_begin(vm_builder *b, uint64_t rows, uint64_t cols, uint64_t chunk, uint32_t n_regs, uint32_t flags);
void vb_k(vm_builder *b, cr_op op, cr_dtype dt, uint32_t d, uint32_t a, uint32_t bb, uint32_t c);
void vb_kernel_end(vm_builder *b);
void vb_m(vm_builder *b, cr_op op, cr_dtype dt, uint32_t d, uint32_t a, uint32_t bb, uint32_t c);
/* move everything into *p (owned by p afterwards); resets the builder */
void vb_build(vm_builder *b, cr_program *p);

/* Write a safetensors file of n tensors (2-D shapes; shape[i][0] == 0 means
 * 1-D of shape[i][1]). offsets_out[i] receives each tensor's absolute file
 * offset. Returns the file size, 0 on failure. */
uint64_t vb_write_safetensors(const char *path, int n, const char *const *names, const cr_dtype *dts,
                              const uint64_t (*shape)[2], const void *const *data, uint64_t *offsets_out);

/* read a whole file (malloc'd; *len set); NULL if missing */
unsigned char *vb_read_file(const char *path, size_t *len);
/* mkdtemp under /tmp; returns a static-lifetime-free malloc'd path */
char *vb_tempdir(void);
void vb_rmtree(const char *path);

/* Run p into out_dir (quiet, no input hashing; `threads`, `max_memory` 0:
 * the defaults) and count the elements of its 4-byte output "t.weight"
 * whose bits differ from want[0..n) (the first three are printed after
 * label); -1 when the run or the read fails. */
int vb_run_count_diffs(const cr_program *p, const char *out_dir, unsigned threads, uint64_t max_memory,
                       const void *want, uint64_t n, const char *label, cr_error *err);

#endif
