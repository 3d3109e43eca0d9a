#!/usr/bin/env python3
"""Which (rope_theta, head_dim) pairs crucible may write a llama3
rope_freqs.weight for with factors on torch's SIMD pow path (spec/gguf.md
6.5): torch's `base ** (arange(0, dim, 2, f32) / dim)` is compared with libm
powf, element by element. crucible's table in formats/gguf_hf.c
(rope_pow_checked) lists the pairs this printed as equal under both
ATEN_CPU_CAPABILITY=avx2 and avx512 (torch 2.15.0, glibc powf).

    ATEN_CPU_CAPABILITY=avx2 python tests/golden/gguf/check_rope_pow.py
    ATEN_CPU_CAPABILITY=avx512 python tests/golden/gguf/check_rope_pow.py
"""
import ctypes
import ctypes.util

import numpy as np
import torch

libm = ctypes.CDLL(ctypes.util.find_library("m"))
libm.powf.restype = ctypes.c_float
libm.powf.argtypes = [ctypes.c_float, ctypes.c_float]

for base in [10000.0, 500000.0, 1000000.0]:
    for dim in [64, 128]:
        t = torch.arange(0, dim, 2, dtype=torch.float32) / dim
        p = (base ** t).numpy()
        c = np.array([libm.powf(base, float(x)) for x in t.numpy()], dtype=np.float32)
        diff = np.nonzero(p.view(np.uint32) != c.view(np.uint32))[0].tolist()
        print(f"rope_theta {base:g} head_dim {dim}: {'equal' if not diff else 'differs at ' + str(diff)}")
