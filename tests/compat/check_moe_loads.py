#!/usr/bin/env python3
"""check_moe_loads.py — the MoE models `crucible moe` writes load and run in
transformers (run by hand; the C tests need no Python).

Builds Mixtrals (classic layout, each gate mode) and a Qwen2-MoE from tiny
`crucible synth` models, loads each with AutoModelForCausalLM and
AutoTokenizer, runs a forward pass and a short greedy generation, and checks
the logits are finite and that the MoE's output equals the dense base
model's when every expert is the base (a Mixtral of copies computes the
same function whatever its router says). Writes tests/compat/results/moe_loads.txt.

usage: VENV/bin/python tests/compat/check_moe_loads.py [CRUCIBLE_BIN]
(VENV: any environment with torch and transformers, e.g. the golden venv)
"""
import os
import subprocess
import sys
import tempfile

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
CRUCIBLE = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "zig-out", "bin", "crucible")

SHAPE = ["--layers", "2", "--hidden", "64", "--intermediate", "128", "--heads", "4", "--kv-heads", "2",
         "--vocab", "300", "--dtype", "float32"]


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")


def config(d, base, experts, mode, shared=None):
    text = f"base_model: {d}/{base}\ngate_mode: {mode}\ndtype: float32\nexperts:\n"
    for e, prompt in experts:
        text += f"  - source_model: {d}/{e}\n    positive_prompts: [\"{prompt}\"]\n"
    if shared:
        text += f"shared_experts:\n  - source_model: {d}/{shared}\n    positive_prompts: [\"shared\"]\n    residual_scale: 0.5\n"
    path = os.path.join(d, f"{base}-{mode}.yml")
    open(path, "w").write(text)
    return path


def check(out, base_dir, same_function, lines, name):
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out, torch_dtype=torch.float32)
    model.eval()
    enc = tok("hello world, the quick brown fox", return_tensors="pt")
    # synth's minimal tokenizer also returns token_type_ids, which causal
    # LMs' generate() refuses
    ids = {k: enc[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        logits = model(**ids).logits
        gen = model.generate(**ids, max_new_tokens=8, do_sample=False)
    good = bool(torch.isfinite(logits).all()) and gen.shape[1] == ids["input_ids"].shape[1] + 8
    msg = f"{name}: {type(model).__name__} loaded, logits {tuple(logits.shape)} finite, generated 8 tokens"
    if same_function:
        dense = AutoModelForCausalLM.from_pretrained(base_dir, torch_dtype=torch.float32).eval()
        with torch.no_grad():
            ref = dense(**ids).logits
        diff = float((logits - ref).abs().max() / ref.abs().max())
        good = good and diff < 1e-5
        msg += f"; equals the dense base (max rel diff {diff:.2e})"
    lines.append(msg + (" ok" if good else " FAIL"))
    return good


def main():
    lines = [f"transformers {transformers.__version__}, torch {torch.__version__}"]
    ok = True
    with tempfile.TemporaryDirectory() as d:
        run([CRUCIBLE, "synth", f"{d}/base", "--arch", "llama", *SHAPE, "--seed", "1"])
        run([CRUCIBLE, "synth", f"{d}/e1", "--from", f"{d}/base", "--delta-scale", "0.05", "--seed", "2"])
        run([CRUCIBLE, "synth", f"{d}/e2", "--from", f"{d}/base", "--delta-scale", "0.05", "--seed", "3"])
        run([CRUCIBLE, "synth", f"{d}/qbase", "--arch", "qwen2", *SHAPE, "--seed", "4"])
        run([CRUCIBLE, "synth", f"{d}/qe1", "--from", f"{d}/qbase", "--delta-scale", "0.05", "--seed", "5"])

        for mode in ("hidden", "cheap_embed", "random"):
            cfg = config(d, "base", [("e1", "hello world"), ("e2", "abc def")], mode)
            out = f"{d}/moe-{mode}"
            run([CRUCIBLE, "moe", cfg, out, "--quiet"])
            ok &= check(out, f"{d}/base", False, lines, f"mixtral {mode}")
        # experts that are all the base: the MoE computes the base's function
        cfg = config(d, "base", [("base", "hello world"), ("base", "abc def")], "hidden")
        run([CRUCIBLE, "moe", cfg, f"{d}/moe-copies", "--quiet", "--i-understand-this-is-not-useful-without-training"])
        ok &= check(f"{d}/moe-copies", f"{d}/base", True, lines, "mixtral of base copies")
        cfg = config(d, "qbase", [("qe1", "hello world"), ("qbase", "abc def")], "cheap_embed", shared="qbase")
        run([CRUCIBLE, "moe", cfg, f"{d}/qmoe", "--quiet"])
        ok &= check(f"{d}/qmoe", f"{d}/qbase", False, lines, "qwen2_moe cheap_embed + shared expert")
    lines.append("RESULT: " + ("ok" if ok else "FAIL"))
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    open(os.path.join(HERE, "results", "moe_loads.txt"), "w").write(text)
    print(text, end="")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
