#!/usr/bin/env python3
"""torch_softmax.py — expected bits of torch's CPU softmax (and of the
bf16/f16 row sums arcee_fusion's KL divergence takes) for
tests/unit/test_torchsoftmax.c (vm/torchsoftmax.c, vm/refsum.c), run by
hand with the mergekit venv; the C test needs no Python.

F.softmax(x, dim=-1) of float32, bfloat16 and float16 rows of every length
1..300, single-threaded, once per vector width torch dispatches its softmax
kernel with: ATEN_CPU_CAPABILITY=avx2 (8 float lanes) and avx512 (16; needs
an AVX-512 host). The rows come from splitmix64 streams that the C test
replays (keep ROWS_PER_LENGTH and make_row in sync with it); per length the
fixture keeps one FNV-1a 64 hash of the outputs' bytes, so a failing length
is named without storing 2 x 45 150 values per set. "row_sums" holds the
same for x.sum(dim=-1) of the bf16/f16 rows (torch's sum kernel is
registered for AVX2 only, so both capabilities must agree; checked). Also
recorded: the capability torch picks by default on the generating host.
"sum_rows" are crafted rows whose sums depend on the order (crafted_sums);
"bf16_rows" are bf16 rows found where the softmax rounded to bf16 differs
from a correctly rounded stand-in (find_bf16_rows), with torch's bits.

  tests/fixtures/torch_softmax.json

usage: <venv>/bin/python tests/compat/torch_softmax.py
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "torch_softmax.json")
M64 = (1 << 64) - 1
MAX_LEN = 300
ROWS_PER_LENGTH = 3
DTYPES = {"float32": 0, "bfloat16": 1, "float16": 2}


class SplitMix64:
    def __init__(self, seed):
        self.s = seed & M64

    def next(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & M64
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)


def make_row(rng, dcode, n):
    """n raw values (uint32 bits for float32, uint16 for the others): a
    row scale 2^e, e in [-8, 5], values in [2^(e-3), 2^(e+1)); one row in 8
    reaches 2^8 (exp underflows to 0 for some elements), one in 8 keeps 2
    mantissa bits (ties), one in 8 spans 2^-18..2^6 (float32 sums of it
    round, so their order shows)."""
    z = rng.next()
    kind = (z >> 8) % 8
    e = 7 if kind == 1 else 5 if kind == 3 else int(z % 14) - 8
    spread = (19 if dcode == 2 else 24) if kind == 3 else 4
    mmask = 0x600000 if kind == 2 else 0x7FFFFF
    row = []
    for _ in range(n):
        z = rng.next()
        sign = z & 1
        j = (z >> 1) % spread
        mant = (z >> 40) & mmask
        if dcode == 0:
            row.append(sign << 31 | (127 + e - j) << 23 | mant)
        elif dcode == 1:
            row.append(sign << 15 | (127 + e - j) << 7 | (mant >> 16))
        else:
            row.append(sign << 15 | (15 + e - j) << 10 | (mant >> 13))
    return row


def fnv1a(h, data):
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & M64
    return h


def rows_of(dcode, n):
    import numpy as np
    import torch

    rng = SplitMix64(dcode << 32 | n)
    rows = [make_row(rng, dcode, n) for _ in range(ROWS_PER_LENGTH)]
    raw = np.array(rows, dtype=np.uint32 if dcode == 0 else np.uint16)
    name = [k for k, v in DTYPES.items() if v == dcode][0]
    return torch.from_numpy(raw.view(np.int32 if dcode == 0 else np.int16)).view(getattr(torch, name))


def hash_of(y):
    import torch

    return "%016x" % fnv1a(0xCBF29CE484222325, y.contiguous().view(torch.uint8).numpy().tobytes())


def crafted_sums():
    """rows whose exact sum lies just above a bf16/f16 rounding tie (1, half
    an ulp of 1, and n - 2 values each far below float32's half ulp of 1):
    their float32 sum rounds to the tie or past it depending on the order
    the small values meet, so x.sum(dim=-1) tells torch's order from a wide
    sum. The large values sit first, or last (in the scalar tail)."""
    import numpy as np
    import torch

    out = []
    for name, half, tiny in (("bfloat16", 2.0 ** -8, 2.0 ** -30), ("float16", 2.0 ** -11, 2.0 ** -24)):
        dt = getattr(torch, name)
        for n in (5, 9, 16, 17, 33, 72, 100, 300):
            for last in (False, True):
                row = [1.0, half] + [tiny] * (n - 2)
                if last:
                    row = row[2:] + row[:2]
                x = torch.tensor(row, dtype=torch.float64).to(dt)
                y = x.sum(dim=-1)
                out.append({"dtype": name, "bits": [int(v) for v in x.view(torch.int16).numpy().astype(np.uint16)],
                            "sum": int(y.view(torch.int16).numpy().astype(np.uint16))})
    return out


def stand_in(x):
    """crucible's softmax before torch's kernel was reproduced: exp in
    double rounded to float32, a float64 sum, a float32 division"""
    import numpy as np

    xf = x.float().numpy().astype(np.float32)
    e = np.exp((xf - xf.max(axis=-1, keepdims=True)).astype(np.float64)).astype(np.float32)
    s = e.astype(np.float64).sum(axis=-1, keepdims=True).astype(np.float32)
    return (e / s).astype(np.float32)


def find_bf16_rows():
    """bf16 rows whose softmax, rounded to bf16, tells torch's kernel from
    stand_in (random rows rarely do: the 8-bit rounding hides the last
    bits), searched once under AVX2 and then run under both widths"""
    import numpy as np
    import torch

    rng = np.random.default_rng(15)
    found = []
    for n in (20, 36, 72, 136, 300):
        for _ in range(4000):
            x = torch.from_numpy(rng.standard_normal((1, n)).astype(np.float32) * 2.0).to(torch.bfloat16)
            y = torch.nn.functional.softmax(x, dim=-1)
            if not torch.equal(torch.from_numpy(stand_in(x)).to(torch.bfloat16), y):
                found.append([int(v) for v in x.view(torch.int16).numpy().astype(np.uint16)[0]])
                break
    return found


def run_sets(cap):
    """child: hashes per dtype under ATEN_CPU_CAPABILITY=cap"""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    if cap == "search":
        print(json.dumps(find_bf16_rows()))
        return
    got = torch.backends.cpu.get_cpu_capability()
    if got.lower() != cap:
        sys.exit(f"asked for {cap}, torch dispatches {got}")
    sets, sums = [], []
    for name, dcode in DTYPES.items():
        soft = [hash_of(torch.nn.functional.softmax(rows_of(dcode, n), dim=-1)) for n in range(1, MAX_LEN + 1)]
        sets.append({"dtype": name, "hashes": soft})
        if dcode:
            sums.append({"dtype": name, "hashes": [hash_of(rows_of(dcode, n).sum(dim=-1)) for n in range(1, MAX_LEN + 1)]})
    rows = json.loads(sys.stdin.read())
    soft_rows = []
    for bits in rows:
        x = torch.from_numpy(np.array(bits, dtype=np.uint16).view(np.int16)).view(torch.bfloat16)
        y = torch.nn.functional.softmax(x, dim=-1)
        soft_rows.append({"bits": bits, "softmax": [int(v) for v in y.view(torch.int16).numpy().astype(np.uint16)]})
    print(json.dumps({"sets": sets, "row_sums": sums, "sum_rows": crafted_sums(), "softmax_rows": soft_rows}))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        run_sets(sys.argv[2])
        return
    import torch

    default = torch.backends.cpu.get_cpu_capability()
    out = {
        "about": "torch CPU F.softmax(x, dim=-1) bits; tests/compat/torch_softmax.py",
        "torch": torch.__version__,
        "default_capability": default,
        "max_len": MAX_LEN,
        "rows_per_length": ROWS_PER_LENGTH,
        "isas": [],
    }
    sums = []
    env = dict(os.environ, ATEN_CPU_CAPABILITY="avx2")
    rows = subprocess.run([sys.executable, __file__, "--child", "search"], env=env,
                          capture_output=True, text=True, check=True).stdout
    for cap, lanes in (("avx2", 8), ("avx512", 16)):
        env = dict(os.environ, ATEN_CPU_CAPABILITY=cap)
        res = subprocess.run([sys.executable, __file__, "--child", cap], env=env, input=rows,
                             capture_output=True, text=True, check=True)
        got = json.loads(res.stdout)
        out["isas"].append({"capability": cap, "lanes": lanes, "sets": got["sets"],
                            "bf16_rows": got["softmax_rows"]})
        sums.append((got["row_sums"], got["sum_rows"]))
    if sums[0] != sums[1]:
        sys.exit("x.sum(dim=-1) differs between avx2 and avx512")
    out["row_sums"], out["sum_rows"] = sums[0]
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("wrote", os.path.relpath(OUT), "torch", torch.__version__, "default", default)


if __name__ == "__main__":
    main()
