#!/usr/bin/env python3
"""crtrig_check.py — mergekit with torch's trig replaced by correctly rounded trig.

Measurement only (spec/compat.md, "Known failures"). torch's CPU float32
acos/sin/cos are MKL VML HA (tests/golden/trig_source.py), which crucible
cannot reproduce; crucible uses correctly rounded trig instead. This script
shows that VML is the *only* difference for the trig methods: it reruns a
golden case's recipe through the same mergekit release, in-process, with
torch.acos/arccos/sin/cos replaced by correctly rounded functions (Python's
math module on the double value, rounded to the tensor's dtype — what
crucible's VM computes), and compares three outputs tensor by tensor:

  golden   the committed model.safetensors (mergekit, torch's MKL VML trig)
  cr-trig  mergekit with correctly rounded trig (this script)
  crucible `CRUCIBLE merge recipe.yml OUT --mergekit-version V`

`--dot f64` also replaces torch.dot (MKL sdot for float32, an undocumented
order; torch's own f32-lane loop for bf16) by float32 products summed in
double and rounded once, as crucible's cr.dot computes it (karcher).

Run with the release's venv, from the repository root, e.g.
  tests/golden/.venv-0.1.5/bin/python tests/golden/crtrig_check.py \\
      --mergekit 0.1.5 --crucible zig-out/bin/crucible slerp_f32 nuslerp_base
It prints one line per case and comparison: elements bit-identical, worst
ulp (float distance in the output dtype). The committed result is
tests/golden/crtrig-0.1.5.txt.
"""
import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def cr_unary(fn, torch):
    """fn applied per element in double (libm, correctly rounded in
    practice), rounded to float32 (torch computes bf16/f16 trig in float32)
    and then to the tensor's dtype."""
    def f(x, *args, **kw):
        if args or kw:
            raise TypeError("crtrig: unexpected arguments")
        xd = x.detach().to(torch.float64).reshape(-1).tolist()
        y = torch.tensor([fn(v) for v in xd], dtype=torch.float64)
        if x.dtype != torch.float64:     # bf16/f16: torch's float32 kernel, then the dtype
            y = y.to(torch.float32)
        return y.reshape(x.shape).to(x.dtype)
    return f


def patch_trig(torch, dot_f64):
    """torch.acos/arccos/sin/cos (and with dot_f64 torch.dot) replaced in
    the torch module, which mergekit's methods call through"""
    def acos(v):
        return math.acos(v) if -1.0 <= v <= 1.0 else float("nan")
    torch.acos = torch.arccos = cr_unary(acos, torch)
    torch.sin = cr_unary(math.sin, torch)
    torch.cos = cr_unary(math.cos, torch)
    if dot_f64:
        def dot(a, b):     # float32 products, summed in double, rounded once
            return (a.float() * b.float()).double().sum().to(a.dtype)
        torch.dot = dot


def run_mergekit(gen, case_dir, out):
    import yaml
    import torch
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions
    import json
    with open(os.path.join(case_dir, "recipe.yml")) as f:
        text = f.read()
    with open(os.path.join(case_dir, "case.json")) as f:
        meta = json.load(f)
    cwd = os.getcwd()
    os.chdir(gen.MODELS)
    try:
        cfg = MergeConfiguration.model_validate(yaml.safe_load(text))
        opts = MergeOptions(random_seed=gen.SEED, copy_tokenizer=False, out_shard_size=10**12,
                            write_model_card=False, quiet=True, lazy_unpickle=False,
                            **(meta.get("options") or {}))
        torch.set_num_threads(1)
        run_merge(cfg, out, options=opts, config_source=text)
    finally:
        os.chdir(cwd)
    return os.path.join(out, "model.safetensors")


def run_crucible(binary, case_dir, version, out):
    import json
    with open(os.path.join(case_dir, "case.json")) as f:
        meta = json.load(f)
    argv = [binary, "merge", os.path.join(case_dir, "recipe.yml"), out, "--mergekit-version", version]
    for k, v in (meta.get("options") or {}).items():
        if v is True:
            argv.append("--" + k.replace("_", "-"))
    subprocess.check_call(argv, cwd=os.path.join(HERE, "models"), stdout=subprocess.DEVNULL)
    return os.path.join(out, "model.safetensors")


def write_case(gen, case_dir, output, args):
    """cases-V-crtrig/NAME: the golden case's recipe with mergekit's output
    under correctly rounded trig, to be matched bit for bit"""
    import json
    name = os.path.basename(case_dir)
    d = os.path.join(HERE, os.path.basename(gen.CASES) + "-crtrig", name)
    os.makedirs(d, exist_ok=True)
    shutil.copy(os.path.join(case_dir, "recipe.yml"), os.path.join(d, "recipe.yml"))
    shutil.copy(output, os.path.join(d, "model.safetensors"))
    with open(os.path.join(case_dir, "case.json")) as f:
        meta = json.load(f)
    meta["tolerance"] = {"max_ulp": 0, "min_exact_fraction": 1.0}
    meta["reference"] = ("mergekit with torch.acos/arccos/sin/cos correctly rounded"
                         + (" and torch.dot as float32 products summed in double" if args.dot == "f64" else "")
                         + " (tests/golden/crtrig_check.py)")
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")


def ordered(t, torch):
    """the tensor's values as int64 keys ordered like the floats (ulp distance)"""
    if t.dtype in (torch.bfloat16, torch.float16):
        b = t.view(torch.int16).to(torch.int64)
        return torch.where(b < 0, -(b & 0x7FFF), b)
    b = t.view(torch.int32).to(torch.int64)
    return torch.where(b < 0, -(b & 0x7FFFFFFF), b)


def compare(pa, pb, torch):
    from safetensors.torch import load_file
    a, b = load_file(pa), load_file(pb)
    same = total = worst = 0
    worst_name = ""
    for k in sorted(a):
        x, y = a[k], b[k]
        total += x.numel()
        same += int((ordered(x, torch) == ordered(y, torch)).sum())
        d = int((ordered(x, torch) - ordered(y, torch)).abs().max()) if x.numel() else 0
        if d > worst:
            worst, worst_name = d, k
    return same, total, worst, worst_name


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mergekit", default="0.1.5", help="the release of this venv (cases folder)")
    ap.add_argument("--crucible", help="crucible binary to compare too")
    ap.add_argument("--trig", choices=["cr", "torch"], default="cr",
                    help="torch: leave torch's trig alone (the run must then equal the golden)")
    ap.add_argument("--dot", choices=["mkl", "f64"], default="mkl",
                    help="f64: torch.dot accumulated in double, rounded once (crucible's cr.dot)")
    ap.add_argument("--write", action="store_true",
                    help="also store the cr-trig output as a reference case in cases-V-crtrig/ "
                         "(tests/unit/test_golden.c runs it with no tolerance)")
    ap.add_argument("cases", nargs="+")
    args = ap.parse_args()
    os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
    os.environ.setdefault("MKL_ENABLE_INSTRUCTIONS", "AVX2")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import generate as gen
    import logging
    logging.disable(logging.WARNING)
    gen.select_release(args.mergekit)
    import importlib.metadata as md
    if md.version("mergekit") != args.mergekit:
        sys.exit(f"this venv has mergekit {md.version('mergekit')}, not {args.mergekit}")
    if args.mergekit != "0.1.4":
        gen.models_for_transformers5()
    else:
        gen.pin_model_order()
        gen.register_ram()
    import torch
    if args.trig == "cr":
        patch_trig(torch, args.dot == "f64")
    tmp = tempfile.mkdtemp(prefix="crtrig-")
    try:
        for name in args.cases:
            d = os.path.join(gen.CASES, name)
            golden = os.path.join(d, "model.safetensors")
            mine = run_mergekit(gen, d, os.path.join(tmp, name + "-mk"))
            if args.write and args.trig == "cr":
                write_case(gen, d, mine, args)
            label = "cr-trig" if args.trig == "cr" else "torch-trig"
            rows = [(label + " vs golden", mine, golden)]
            if args.crucible:
                cru = run_crucible(os.path.abspath(args.crucible), d, args.mergekit,
                                   os.path.join(tmp, name + "-cr"))
                rows += [("crucible vs " + label, cru, mine), ("crucible vs golden", cru, golden)]
            for label, pa, pb in rows:
                s, n, w, wn = compare(pa, pb, torch)
                print(f"{name:24s} {label:20s} {s:6d}/{n:<6d} identical ({100.0 * s / n:8.4f} %)"
                      f"  worst {w} ulp{'  (' + wn + ')' if w else ''}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(os.path.join(HERE, ".out"), ignore_errors=True)


if __name__ == "__main__":
    main()
