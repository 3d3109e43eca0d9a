/* rel_support.h — fixtures for the reliability tests (fault injection,
 * fuzz seeds): a small complete merge program over two tiny input files.
 * Test code only (plain malloc). */
#ifndef CR_REL_SUPPORT_H
#define CR_REL_SUPPORT_H

#include "program.h"

/* Write DIR/a.safetensors and DIR/b.safetensors (one bf16 tensor "w",
 * 3 x 37, and a 1-D f32 "n" of 5) and build into *p a program that writes
 * their 0.3/0.7 linear blend to model.safetensors, a config.json and a copy
 * of a.safetensors (aux files). false if the inputs cannot be written. */
bool rel_build_linear(cr_program *p, const char *dir);

#endif
