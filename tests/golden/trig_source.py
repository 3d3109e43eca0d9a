"""trig_source.py — which library computes torch's CPU float32 acos/sin/cos.

Measurement only (spec/compat.md, "Which library computes torch's trig").
Run with the golden venv:  tests/golden/.venv/bin/python tests/golden/trig_source.py
For each function it compares, bit for bit on random float32 inputs, torch's
result (long tensors and 0-dim tensors) with MKL VML's vms* in VML_HA mode
(called through ctypes from libtorch_cpu.so, where torch links MKL
statically), with the correctly rounded value and with glibc's scalar
acosf/sinf/cosf. torch agreeing with VML on every input is what makes the
nuslerp/karcher golden cases known failures: VML is closed source.
"""
import ctypes
import os

import numpy as np
import torch

VML_HA, VML_FTZDAZ_OFF, VML_ERRMODE_IGNORE = 0x2, 0x140000, 0x100


def main():
    lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
    libm = ctypes.CDLL("libm.so.6")
    rng = np.random.default_rng(1)
    xs = {"acos": rng.uniform(-1, 1, 200000).astype(np.float32),
          "sin": rng.uniform(0, 3.2, 200000).astype(np.float32),
          "cos": rng.uniform(0, 3.2, 200000).astype(np.float32)}
    for name, x in xs.items():
        tf = getattr(torch, name)
        t = tf(torch.from_numpy(x)).numpy().view(np.uint32)
        vml = np.empty_like(x)
        getattr(lib, "vms" + name.capitalize())(
            ctypes.c_int(len(x)), x.ctypes.data_as(ctypes.c_void_p), vml.ctypes.data_as(ctypes.c_void_p),
            ctypes.c_longlong(VML_HA | VML_FTZDAZ_OFF | VML_ERRMODE_IGNORE))
        cr = getattr(np, "arc" + name[1:] if name == "acos" else name)(x.astype(np.float64)).astype(np.float32)
        g = getattr(libm, name + "f")
        g.restype, g.argtypes = ctypes.c_float, [ctypes.c_float]
        m = 5000
        zero_dim = np.array([tf(torch.tensor(float(v), dtype=torch.float32)).item() for v in x[:m]],
                            dtype=np.float32).view(np.uint32)
        glibc = np.array([g(float(v)) for v in x[:m]], dtype=np.float32).view(np.uint32)
        print(f"{name:5s} torch==VML_HA {np.mean(t == vml.view(np.uint32)):.6f}  "
              f"0-dim==long {np.mean(zero_dim == t[:m]):.6f}  "
              f"torch==correctly-rounded {np.mean(t == cr.view(np.uint32)):.4f}  "
              f"torch==glibc {np.mean(glibc == t[:m]):.4f}")


if __name__ == "__main__":
    main()
