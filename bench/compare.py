#!/usr/bin/env python3
"""bench/compare.py — how closely two merged models agree, in ulps.

Run with a Python that has numpy (bench/run.py uses the mergekit venv's).
usage: compare.py A_DIR B_DIR [--base BASE_DIR]
Prints one JSON object:
  deterministic view: tensors, elements, exact_fraction (over all elements),
    min_exact_fraction (worst tensor), max_ulp (worst element, in the output
    dtype's ulps, sign-magnitude ordered: near zero a tiny difference is many
    ulps), worst tensor, within_1ulp_fraction, max_rel_diff (largest |a-b|
    over the tensor's largest |b|), names only in one side;
  statistical view (with --base): changed_fraction_a / _b = fraction of
    elements that differ from the base model (for DARE: kept fraction after
    sign election), so a random mask can be compared by its statistics.
Reads safetensors headers itself (no safetensors package needed).
"""
import json, os, struct, sys

import numpy as np

DT = {"BF16": (np.uint16, 2), "F16": (np.uint16, 2), "F32": (np.uint32, 4)}


def tensors(d):
    out = {}
    for f in sorted(os.listdir(d)):
        if not f.endswith(".safetensors"):
            continue
        p = os.path.join(d, f)
        with open(p, "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            hdr = json.loads(fh.read(n))
        mm = np.memmap(p, dtype=np.uint8, mode="r")
        for k, v in hdr.items():
            if k == "__metadata__":
                continue
            a, b = v["data_offsets"]
            out[k] = (v["dtype"], v["shape"], mm, 8 + n + a, 8 + n + b)
    return out


def bits(t):
    dt, shape, mm, a, b = t
    u, _ = DT[dt]
    return np.frombuffer(mm[a:b], dtype=u)


def floats(u, dt):
    if dt == "BF16":
        return (u.astype(np.uint32) << 16).view(np.float32)
    if dt == "F16":
        return u.view(np.float16).astype(np.float32)
    return u.view(np.float32)


def ordered(x, width):
    # sign-magnitude float bits -> monotone signed integers, so |i-j| is ulps
    x = x.astype(np.int64)
    sign = 1 << (width - 1)
    return np.where(x & sign, -(x & (sign - 1)), x)


def main():
    a_dir, b_dir = sys.argv[1], sys.argv[2]
    base_dir = sys.argv[sys.argv.index("--base") + 1] if "--base" in sys.argv else None
    A, B = tensors(a_dir), tensors(b_dir)
    base = tensors(base_dir) if base_dir else {}
    res = {"tensors": 0, "elements": 0, "exact": 0, "min_exact_fraction": 1.0, "max_ulp": 0,
           "worst": None, "only_a": sorted(set(A) - set(B)), "only_b": sorted(set(B) - set(A)),
           "dtype_or_shape": [], "selection_diff": 0, "arith_diff": 0, "arith_max_ulp": 0, "within_1ulp": 0, "max_rel_diff": 0.0, "max_rel_tensor": None}
    ch_a = ch_b = n_stat = 0
    for k in sorted(set(A) & set(B)):
        ta, tb = A[k], B[k]
        if ta[0] != tb[0] or ta[1] != tb[1] or ta[0] not in DT:
            res["dtype_or_shape"].append(k)
            continue
        x, y = bits(ta), bits(tb)
        w = DT[ta[0]][1] * 8
        ulp = np.abs(ordered(x, w) - ordered(y, w))
        ex = int((ulp == 0).sum())
        res["tensors"] += 1
        res["elements"] += x.size
        res["exact"] += ex
        res["within_1ulp"] += int((ulp <= 1).sum())
        if ex != x.size:  # largest difference relative to the tensor's largest magnitude
            fa, fb = floats(x, ta[0]), floats(y, ta[0])
            rel = float(np.abs(fa - fb).max() / max(1e-30, float(np.abs(fb).max())))
            if rel > res["max_rel_diff"]:
                res["max_rel_diff"], res["max_rel_tensor"] = rel, k
        frac = ex / max(1, x.size)
        m = int(ulp.max()) if x.size else 0
        if frac < res["min_exact_fraction"]:
            res["min_exact_fraction"] = frac
        if m > res["max_ulp"]:
            res["max_ulp"], res["worst"] = m, k
        if k in base and base[k][0] == ta[0] and base[k][1] == ta[1]:
            z = bits(base[k])
            ch_a += int((x != z).sum())
            ch_b += int((y != z).sum())
            n_stat += x.size
            # a difference where one side kept the base value is a selection
            # difference (top-k magnitude tie, sign election); where both
            # changed it, it is arithmetic: measure ulps only there
            d = ulp != 0
            sel = d & ((x == z) | (y == z))
            res["selection_diff"] += int(sel.sum())
            ar = ulp[d & ~sel]
            if ar.size:
                res["arith_diff"] += int(ar.size)
                res["arith_max_ulp"] = max(res["arith_max_ulp"], int(ar.max()))
    res["exact_fraction"] = res["exact"] / max(1, res["elements"])
    res["within_1ulp_fraction"] = res["within_1ulp"] / max(1, res["elements"])
    if n_stat:
        res["changed_fraction_a"] = ch_a / n_stat
        res["changed_fraction_b"] = ch_b / n_stat
    print(json.dumps(res))


if __name__ == "__main__":
    main()
