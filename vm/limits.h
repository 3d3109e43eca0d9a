/* limits.h — every hard limit of the VM in one place.
 *
 * A .crb file comes from anywhere, so each count and size a program declares
 * is bounded before it is allocated or trusted. The values are generous for
 * real merges (a 405B-parameter model has ~1,300 tensors per 5 GB shard) and
 * small enough that a crafted file cannot make the loader allocate more than
 * a few hundred MiB. Exceeding one is CR_ERR_LIMIT, naming the limit.
 */
#ifndef CR_LIMITS_H
#define CR_LIMITS_H

#define CR_LIMIT_CRB_BYTES      (1ull << 30)   /* whole .crb file */
#define CR_LIMIT_BLOB_BYTES     (512ull << 20) /* blob pool (headers, aux files) */
#define CR_LIMIT_FILES          65536u         /* input manifest entries */
#define CR_LIMIT_INPUTS         (1u << 22)     /* input views */
#define CR_LIMIT_SHARDS         65536u
#define CR_LIMIT_OUTPUTS        (1u << 22)     /* output tensors */
#define CR_LIMIT_AUX            65536u
#define CR_LIMIT_SCALARS        (1u << 24)
#define CR_LIMIT_ROWVECS        (1u << 20)
#define CR_LIMIT_ROWVEC_LEN     (1ull << 32)   /* elements of one row vector */
#define CR_LIMIT_SCRATCH        (1u << 20)
#define CR_LIMIT_SELECTS        (1u << 20)
#define CR_LIMIT_STREAMS        (1u << 22)
#define CR_LIMIT_KERNELS        (1u << 22)
#define CR_LIMIT_MESSAGES       (1u << 22)
#define CR_LIMIT_CODE           (1u << 26)     /* kernel micro-ops, all kernels */
#define CR_LIMIT_MAIN           (1u << 26)     /* top-level instructions */
#define CR_LIMIT_REGS           256u           /* registers of one kernel */
#define CR_LIMIT_CHUNK          (1ull << 24)   /* elements per chunk */
#define CR_LIMIT_KERNEL_WORK    (1ull << 31)   /* n_regs * chunk * 4 bytes, per thread */
#define CR_LIMIT_ROWRANK_COLS   (1ull << 24)   /* row length ROWRANK sorts (f32-exact ranks) */
#define CR_LIMIT_NAME           4096u          /* bytes of a file or tensor name */
#define CR_LIMIT_SECTIONS       64u            /* .crb section table entries */
#define CR_LIMIT_THREADS        1024u

#endif
