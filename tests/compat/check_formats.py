#!/usr/bin/env python3
"""check_formats.py — checks files crucible writes against the reference
Python libraries. Run by hand (never by `zig build test`):

    python3 tests/compat/check_formats.py [--crucible zig-out/bin/crucible]
                                          [--venv DIR] [--no-torch]

It creates a virtual environment (default: $TMPDIR/crucible-compat-venv)
and pip-installs what it needs into it, then:

  1. safetensors + numpy: every file of synthetic models (f32 and f16,
     single-file and sharded) opens with safetensors.safe_open, and saving
     the same tensors with safetensors.numpy.save_file(metadata={"format":
     "pt"}) gives a byte-identical file (the writer's layout contract).
  2. The values equal an independent Python port of the synth generator.
  3. The shard index is valid JSON whose weight_map matches the files.
  4. (torch, unless --no-torch) transformers AutoModelForCausalLM and
     AutoTokenizer load bf16 llama / mistral / qwen2 models (tied and not),
     the loaded weights equal the files, and a forward pass is finite.

Prints one line per check and exits non-zero on any failure.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def ensure_venv(venv, torch):
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        subprocess.check_call([sys.executable, "-m", "venv", venv])
    pkgs = ["numpy", "safetensors"]
    if torch:
        pkgs += ["torch", "transformers", "tokenizers"]
    missing = [p for p in pkgs
               if subprocess.call([py, "-c", "import " + p], stderr=subprocess.DEVNULL) != 0]
    if missing:
        subprocess.check_call([py, "-m", "pip", "install", "-q"] + missing)
    return py


# ---- an independent port of formats/synth.c's generator ---------------------------
M64 = (1 << 64) - 1


def mix64(x):
    x ^= x >> 30
    x = (x * 0xbf58476d1ce4e5b9) & M64
    x ^= x >> 27
    x = (x * 0x94d049bb133111eb) & M64
    x ^= x >> 31
    return x


def name_hash(name):
    h = 0xcbf29ce484222325
    for b in name.encode():
        h ^= b
        h = (h * 0x100000001b3) & M64
    return h


def synth_normal(np, seed, nh, n):
    idx = np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        base = mix64((seed * 0x9e3779b97f4a7c15) & M64 ^ mix64(nh))
        h = base + idx
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xbf58476d1ce4e5b9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94d049bb133111eb)
        h ^= h >> np.uint64(31)
    s = np.zeros(n, dtype=np.float32)
    for k in range(4):
        u = ((h >> np.uint64(16 * k)) & np.uint64(0xffff)).astype(np.float32)
        s = s + (u + np.float32(0.5)) * np.float32(1.0 / 65536.0)
    return (s - np.float32(2.0)) * np.float32(1.7320508)


# ---- checks run inside the venv -----------------------------------------------
CHECK_ST = r'''
import json, os, sys
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file
sys.path.insert(0, sys.argv[1])
from check_formats import synth_normal, name_hash
fails = 0
for d, seed in json.loads(sys.argv[2]):
    files = sorted(f for f in os.listdir(d) if f.endswith(".safetensors"))
    for f in files:
        p = os.path.join(d, f)
        with safe_open(p, framework="np") as st:
            tensors = {k: st.get_tensor(k) for k in st.keys()}
            meta = st.metadata()
        out = p + ".py"
        save_file(tensors, out, metadata={"format": "pt"})
        same = open(p, "rb").read() == open(out, "rb").read()
        os.remove(out)
        print(("ok  " if same else "FAIL") + f" byte-identical re-save {os.path.basename(d)}/{f} ({len(tensors)} tensors, metadata {meta})")
        fails += not same
        for k, v in tensors.items():
            scale, off = (0.02, 1.0) if k.endswith("norm.weight") else (0.02, 0.0)
            want = (np.float32(off) + np.float32(scale) * synth_normal(np, seed, name_hash(k), v.size)).astype(v.dtype)
            if not np.array_equal(v.reshape(-1), want):
                print(f"FAIL values of {k} in {f} differ from the Python generator")
                fails += 1
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        j = json.load(open(idx))
        keys = set()
        for f in set(j["weight_map"].values()):
            with safe_open(os.path.join(d, f), framework="np") as st:
                keys |= {k for k in st.keys() if j["weight_map"].get(k) == f}
        good = keys == set(j["weight_map"]) and j["metadata"]["mergekit_version"] == "0.1.4"
        print(("ok  " if good else "FAIL") + f" index of {os.path.basename(d)}: {len(j['weight_map'])} tensors in {len(set(j['weight_map'].values()))} files")
        fails += not good
print(f"values checked against the Python port of the generator")
sys.exit(1 if fails else 0)
'''

CHECK_HF = r'''
import json, os, sys
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer
fails = 0
for d in json.loads(sys.argv[1]):
    name = os.path.basename(d)
    try:
        model = AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.bfloat16)
        tok = AutoTokenizer.from_pretrained(d)
        sd = model.state_dict()
        files = {}
        for f in os.listdir(d):
            if f.endswith(".safetensors"):
                files.update(load_file(os.path.join(d, f)))
        same = all(torch.equal(sd[k], v) for k, v in files.items())
        ids = tok("hello world", return_tensors="pt").input_ids
        with torch.no_grad():
            logits = model(ids).logits
        finite = bool(torch.isfinite(logits).all())
        tied = model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
        good = same and finite
        print(("ok  " if good else "FAIL") + f" transformers loads {name}: {type(model).__name__}, "
              f"weights equal: {same}, logits {tuple(logits.shape)} finite: {finite}, tied: {tied}")
        fails += not good
    except Exception as e:
        print(f"FAIL transformers cannot load {name}: {e}")
        fails += 1
sys.exit(1 if fails else 0)
'''


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--crucible", default=os.path.join(ROOT, "zig-out", "bin", "crucible"))
    ap.add_argument("--venv", default=os.path.join(tempfile.gettempdir(), "crucible-compat-venv"))
    ap.add_argument("--no-torch", action="store_true")
    a = ap.parse_args()
    py = ensure_venv(a.venv, not a.no_torch)
    work = tempfile.mkdtemp(prefix="crucible-compat-")
    shape = ["--layers", "2", "--hidden", "64", "--intermediate", "128", "--heads", "4", "--kv-heads", "2",
             "--vocab", "320"]

    def synth(name, *args):
        d = os.path.join(work, name)
        subprocess.check_call([a.crucible, "synth", d] + list(args))
        return d

    st_models = [
        (synth("llama-f32", "--arch", "llama", "--dtype", "float32", "--seed", "3", *shape), 3),
        (synth("qwen2-f16-sharded", "--arch", "qwen2", "--dtype", "float16", "--seed", "4", "--shard-size", "40K",
               *shape), 4),
    ]
    rc = subprocess.call([py, "-c", CHECK_ST, HERE, json.dumps(st_models)])
    if not a.no_torch:
        hf = [synth("llama-bf16", "--arch", "llama", "--dtype", "bfloat16", "--seed", "1", *shape),
              synth("mistral-bf16-tied", "--arch", "mistral", "--dtype", "bfloat16", "--tied", "--seed", "2", *shape),
              synth("qwen2-bf16-sharded", "--arch", "qwen2", "--dtype", "bfloat16", "--seed", "5",
                    "--shard-size", "30K", *shape)]
        rc |= subprocess.call([py, "-c", CHECK_HF, json.dumps(hf)])
    subprocess.call(["rm", "-rf", work])
    print("compat:", "all checks passed" if rc == 0 else "FAILED")
    return rc


if __name__ == "__main__":
    sys.exit(main())
