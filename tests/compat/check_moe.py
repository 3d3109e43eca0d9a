#!/usr/bin/env python3
"""check_moe.py — crucible moe against mergekit-moe (run by hand; the C tests
need no Python).

Synthesises a tiny Llama base (F32), a bf16 one and two experts with
`crucible synth`, runs `mergekit-moe` and `crucible moe` on the same configs
and compares:
  - routers within 1e-3 relative (max |a-b| / max |b| per layer) and row
    cosine > 0.999, reporting how many elements differ at all: cheap_embed,
    hidden, hidden_avg with one or two prompts per expert; hidden and
    hidden_avg with several positive and negative prompts of different
    lengths (padded batches, one prompt past SDPA's 32-row query block, one
    equal-length list) on the F32 and the bf16 base; `--gate-precision f32`
    reported for scale only (not mergekit's numbers by design);
  - experts bit for bit: by name when mergekit's output has the classic
    layout (mergekit 0.1.4 under transformers v5 saves it that way), else
    gate_up_proj[e][:I] = w1, [I:] = w3, down_proj[e] = w2;
  - every base (non-MLP) tensor bit for bit;
  - a Qwen2-MoE (qwen2 base, prompted shared expert with residual_scale):
    names identical, non-gate tensors bit-identical, gates within 1e-3 —
    cheap_embed, and hidden / hidden_avg on a copy without bos_token
    (no BOS glued on, padding with eos, q/k/v biases in bf16), and hidden on
    a copy whose bos is only in special_tokens_map.json.
Writes tests/compat/results/moe.txt.

usage: tests/golden/.venv/bin/python tests/compat/check_moe.py [CRUCIBLE_BIN]
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.torch import load_file as load_torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
CRUCIBLE = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "zig-out", "bin", "crucible")
MERGEKIT_MOE = os.path.join(os.path.dirname(sys.executable), "mergekit-moe")

CONFIG = """base_model: {d}/{base}
gate_mode: {mode}
dtype: {dtype}
experts_per_token: 1
experts:
  - source_model: {d}/e1
    positive_prompts: ["hello world", "the quick brown fox"]
  - source_model: {d}/e2
    positive_prompts: ["abc def"]
    negative_prompts: ["hello"]
"""

MULTI = """base_model: {d}/{base}
gate_mode: {mode}
dtype: {dtype}
experts_per_token: 2
experts:
  - source_model: {d}/e1
    positive_prompts:
      - "hello world"
      - "the quick brown fox jumps over the lazy dog, twice over"
      - "x"
    negative_prompts: ["abc def", "abc deg"]
  - source_model: {d}/e2
    positive_prompts: ["abc def", "numbers 12345 and more"]
    negative_prompts:
      - "hello"
      - "a much longer negative prompt, well past thirty-two tokens"
  - source_model: {d}/e1
    positive_prompts: ["one two three four five six seven eight nine ten eleven", "z"]
"""

QWEN = """base_model: {d}/{base}
gate_mode: {mode}
dtype: float32
experts:
  - source_model: {d}/qe1
    positive_prompts: ["hello world"{more}]
  - source_model: {d}/qe2
    positive_prompts: ["abc def"]
shared_experts:
  - source_model: {d}/{base}
    positive_prompts: ["shared stuff"]
    residual_scale: 0.5
"""


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")


def load_dir(path):
    """every tensor as numpy; bf16 widened to f32 (exact, so bit equality of
    the widened values is bit equality of the bf16 bytes)"""
    out = {}
    for f in sorted(os.listdir(path)):
        if f.endswith(".safetensors"):
            for k, t in load_torch(os.path.join(path, f)).items():
                out[k] = (t.float() if t.dtype == torch.bfloat16 else t).numpy()
    return out


def gate_stats(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    rel = float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))
    cos = min(float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y))) for x, y in zip(a, b))
    return rel, cos, int(np.sum(a != b))


def compare_llama(d, lines, label, config, tag, extra=(), informative=False):
    """mergekit-moe and crucible moe on one config over a 3-layer llama; gates
    within 1e-3 relative (max |a-b| / max |b| per layer), experts and base
    tensors bit-identical. informative: report only."""
    tag = tag.replace(" ", "_")
    cfg = f"{d}/{tag}.yml"
    with open(cfg, "w") as f:
        f.write(config)
    if not os.path.isdir(f"{d}/mk_{tag}"):
        run([MERGEKIT_MOE, cfg, f"{d}/mk_{tag}"])
    out = f"{d}/cr_{tag}{'_'.join(extra)}"
    run([CRUCIBLE, "moe", cfg, out, "--quiet", *extra])
    mk, cr = load_dir(f"{d}/mk_{tag}"), load_dir(out)
    ok = True
    L, I = 3, 64
    E = len([k for k in cr if k.startswith("model.layers.0.block_sparse_moe.experts.") and k.endswith(".w1.weight")])
    worst, wcos, ndiff, nel = 0.0, 1.0, 0, 0
    same = True
    for l in range(L):
        rk = f"model.layers.{l}.block_sparse_moe.gate.weight"
        a, b = cr[rk], mk[rk if rk in mk else f"model.layers.{l}.mlp.gate.weight"]
        rel, cos, nd = gate_stats(a, b)
        worst, wcos, ndiff, nel = max(worst, rel), min(wcos, cos), ndiff + nd, nel + a.size
        fused = f"model.layers.{l}.mlp.experts.gate_up_proj" in mk
        for e in range(E):
            p = f"model.layers.{l}.block_sparse_moe.experts.{e}"
            if fused:   # transformers-v5 layout: gate rows over up rows
                gu, dn = mk[f"model.layers.{l}.mlp.experts.gate_up_proj"], mk[f"model.layers.{l}.mlp.experts.down_proj"]
                w1, w3, w2 = gu[e][:I], gu[e][I:], dn[e]
            else:       # transformers saved the classic checkpoint layout
                w1, w2, w3 = (mk[f"{p}.w{i}.weight"] for i in (1, 2, 3))
            for n, w in (("w1", w1), ("w2", w2), ("w3", w3)):
                same &= np.array_equal(cr[f"{p}.{n}.weight"].view(np.uint8), w.view(np.uint8))
    good = worst <= 1e-3 and wcos > 0.999
    lines.append(f"{label} routers: max rel diff {worst:.3g}, min row cosine {wcos:.7f}, "
                 f"{ndiff}/{nel} elements differ " + ("(informative)" if informative else "ok" if good else "FAIL"))
    if informative:
        return True
    ok &= good
    names = sorted(mk) == sorted(cr)
    base = [k for k in mk if ".mlp." not in k and "block_sparse_moe" not in k]
    bsame = all(k in cr and np.array_equal(cr[k].view(np.uint8), mk[k].view(np.uint8)) for k in base)
    ok &= names and same and bsame
    lines.append(f"{label}: names identical {names}, experts bit-identical {same}, "
                 f"{len(base)} base tensors bit-identical {bsame}")
    return ok


def main():
    lines = []
    ok = True
    with tempfile.TemporaryDirectory() as d:
        run([CRUCIBLE, "synth", f"{d}/base", "--arch", "llama", "--layers", "3", "--hidden", "32",
             "--intermediate", "64", "--heads", "4", "--kv-heads", "2", "--vocab", "300", "--dtype", "float32",
             "--seed", "1"])
        run([CRUCIBLE, "synth", f"{d}/e1", "--from", f"{d}/base", "--delta-scale", "0.1", "--seed", "2"])
        run([CRUCIBLE, "synth", f"{d}/e2", "--from", f"{d}/base", "--delta-scale", "0.1", "--seed", "3"])
        for mode in ("cheap_embed", "hidden", "hidden_avg"):
            ok &= compare_llama(d, lines, mode, CONFIG.format(d=d, mode=mode, base="base", dtype="float32"), mode)
        # several positive and negative prompts of different lengths (padded
        # batches; one > 32 tokens, so SDPA's 32-row query blocks matter, and
        # one list of equal lengths, which runs unmasked with is_causal), on
        # the F32 base and on a bf16 base as users have
        run([CRUCIBLE, "synth", f"{d}/base16", "--arch", "llama", "--layers", "3", "--hidden", "32",
             "--intermediate", "64", "--heads", "4", "--kv-heads", "2", "--vocab", "300", "--dtype", "bfloat16",
             "--seed", "4"])
        for base, dtype in (("base", "float32"), ("base16", "bfloat16")):
            for mode in ("hidden", "hidden_avg"):
                label = f"multi {base} {mode}"
                ok &= compare_llama(d, lines, label, MULTI.format(d=d, mode=mode, base=base, dtype=dtype), label)
        # --gate-precision f32: not mergekit's numbers, reported for scale
        compare_llama(d, lines, "f32-precision hidden", MULTI.format(d=d, mode="hidden", base="base", dtype="float32"),
                      "f32 hidden", extra=["--gate-precision", "f32"], informative=True)
        # Qwen2-MoE: a qwen2 base (q/k/v biases), a prompted shared expert
        # with residual_scale
        run([CRUCIBLE, "synth", f"{d}/qb", "--arch", "qwen2", "--layers", "2", "--hidden", "32",
             "--intermediate", "64", "--heads", "4", "--kv-heads", "2", "--vocab", "300", "--dtype", "float32",
             "--seed", "1"])
        run([CRUCIBLE, "synth", f"{d}/qe1", "--from", f"{d}/qb", "--delta-scale", "0.1", "--seed", "2"])
        run([CRUCIBLE, "synth", f"{d}/qe2", "--from", f"{d}/qb", "--delta-scale", "0.1", "--seed", "3"])
        # qbn: the same model with no bos_token, so prompts get no BOS and
        # mergekit pads with the eos token (Qwen2's real tokenizers have none)
        shutil.copytree(f"{d}/qb", f"{d}/qbn")
        with open(f"{d}/qbn/tokenizer_config.json") as f:
            tc = json.load(f)
        tc["bos_token"] = None
        with open(f"{d}/qbn/tokenizer_config.json", "w") as f:
            json.dump(tc, f)
        # qbm: bos_token null in tokenizer_config.json but kept in
        # special_tokens_map.json, which transformers lets win: BOS glued on
        shutil.copytree(f"{d}/qbn", f"{d}/qbm")
        with open(f"{d}/qbn/special_tokens_map.json") as f:
            sm = json.load(f)
        sm.pop("bos_token", None)
        with open(f"{d}/qbn/special_tokens_map.json", "w") as f:
            json.dump(sm, f)
        more = ', "x", "a longer prompt for the batch"'
        for base, mode, more in (("qb", "cheap_embed", ""), ("qbn", "hidden", more), ("qbn", "hidden_avg", more),
                                 ("qbm", "hidden", more)):
            tag = f"q_{base}_{mode}"
            with open(f"{d}/{tag}.yml", "w") as f:
                f.write(QWEN.format(d=d, base=base, mode=mode, more=more))
            run([MERGEKIT_MOE, f"{d}/{tag}.yml", f"{d}/mk_{tag}"])
            run([CRUCIBLE, "moe", f"{d}/{tag}.yml", f"{d}/cr_{tag}", "--quiet"])
            mk, cr = load_dir(f"{d}/mk_{tag}"), load_dir(f"{d}/cr_{tag}")
            names = sorted(mk) == sorted(cr)
            gates = [k for k in mk if k.endswith("mlp.gate.weight") or k.endswith("shared_expert_gate.weight")]
            st = [gate_stats(cr[k], mk[k]) for k in gates]
            rel, cos, nd = max(x[0] for x in st), min(x[1] for x in st), sum(x[2] for x in st)
            rest = all(np.array_equal(cr[k].view(np.uint8), mk[k].view(np.uint8)) for k in mk if k not in gates and k in cr)
            good = names and rest and rel <= 1e-3
            ok &= good
            note = {"qbn": " (no bos, eos padding)", "qbm": " (bos only in special_tokens_map.json)"}.get(base, "")
            lines.append(f"qwen2_moe {mode}{note}: names identical "
                         f"{names}, {len(mk) - len(gates)} non-gate tensors bit-identical {rest}, gates max rel diff "
                         f"{rel:.3g}, min row cosine {cos:.7f}, {nd} elements differ {'ok' if good else 'FAIL'}")
    lines.append("RESULT: " + ("ok" if ok else "FAIL"))
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "moe.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
