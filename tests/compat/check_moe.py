#!/usr/bin/env python3
"""check_moe.py — crucible moe against mergekit-moe (run by hand; the C tests
need no Python).

Synthesises a tiny Llama base (F32) and two experts with `crucible synth`,
runs `mergekit-moe` and `crucible moe` on the same configs (cheap_embed and
hidden gates, dtype float32), and compares:
  - routers: cheap_embed within 1e-3 relative (max |a-b| / max |b|);
    hidden by cosine per row (mergekit runs the model in bf16, crucible in
    f32 unpadded), layer 0 (embeddings only) within 1e-2 relative;
  - experts bit for bit: by name when mergekit's output has the classic
    layout (mergekit 0.1.4 under transformers v5 saves it that way), else
    gate_up_proj[e][:I] = w1, [I:] = w3, down_proj[e] = w2;
  - every base (non-MLP) tensor bit for bit;
  - a Qwen2-MoE (qwen2 base, prompted shared expert with residual_scale):
    names identical, non-gate tensors bit-identical, gates within 1e-3.
Writes tests/compat/results/moe.txt.

usage: /work/wt/golden/tests/golden/.venv/bin/python tests/compat/check_moe.py [CRUCIBLE_BIN]
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
from safetensors.numpy import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
CRUCIBLE = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "zig-out", "bin", "crucible")
MERGEKIT_MOE = os.path.join(os.path.dirname(sys.executable), "mergekit-moe")

CONFIG = """base_model: {d}/base
gate_mode: {mode}
dtype: float32
experts_per_token: 1
experts:
  - source_model: {d}/e1
    positive_prompts: ["hello world", "the quick brown fox"]
  - source_model: {d}/e2
    positive_prompts: ["abc def"]
    negative_prompts: ["hello"]
"""

QWEN = """base_model: {d}/qb
gate_mode: cheap_embed
dtype: float32
experts:
  - source_model: {d}/qe1
    positive_prompts: ["hello world"]
  - source_model: {d}/qe2
    positive_prompts: ["abc def"]
shared_experts:
  - source_model: {d}/qb
    positive_prompts: ["shared stuff"]
    residual_scale: 0.5
"""


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")


def load_dir(path):
    out = {}
    for f in sorted(os.listdir(path)):
        if f.endswith(".safetensors"):
            out.update(load_file(os.path.join(path, f)))
    return out


def main():
    lines = []
    ok = True
    with tempfile.TemporaryDirectory() as d:
        run([CRUCIBLE, "synth", f"{d}/base", "--arch", "llama", "--layers", "3", "--hidden", "32",
             "--intermediate", "64", "--heads", "4", "--kv-heads", "2", "--vocab", "300", "--dtype", "float32",
             "--seed", "1"])
        run([CRUCIBLE, "synth", f"{d}/e1", "--from", f"{d}/base", "--delta-scale", "0.1", "--seed", "2"])
        run([CRUCIBLE, "synth", f"{d}/e2", "--from", f"{d}/base", "--delta-scale", "0.1", "--seed", "3"])
        for mode in ("cheap_embed", "hidden"):
            cfg = f"{d}/{mode}.yml"
            with open(cfg, "w") as f:
                f.write(CONFIG.format(d=d, mode=mode))
            run([MERGEKIT_MOE, cfg, f"{d}/mk_{mode}"])
            run([CRUCIBLE, "moe", cfg, f"{d}/cr_{mode}", "--quiet"])
            mk, cr = load_dir(f"{d}/mk_{mode}"), load_dir(f"{d}/cr_{mode}")
            L, I = 3, 64
            for l in range(L):
                a = cr[f"model.layers.{l}.block_sparse_moe.gate.weight"].astype(np.float64)
                rk = f"model.layers.{l}.block_sparse_moe.gate.weight"
                b = mk[rk if rk in mk else f"model.layers.{l}.mlp.gate.weight"].astype(np.float64)
                rel = float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))
                cos = min(float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y))) for x, y in zip(a, b))
                if mode == "cheap_embed":
                    good = rel <= 1e-3
                else:
                    good = cos > 0.99 and (l > 0 or rel <= 1e-2)
                ok &= good
                lines.append(f"{mode} layer {l} router: max rel diff {rel:.3g}, min row cosine {cos:.6f} "
                             f"{'ok' if good else 'FAIL'}")
                same = True
                fused = f"model.layers.{l}.mlp.experts.gate_up_proj" in mk
                for e in range(2):
                    p = f"model.layers.{l}.block_sparse_moe.experts.{e}"
                    if fused:   # transformers-v5 layout: gate rows over up rows
                        gu, dn = mk[f"model.layers.{l}.mlp.experts.gate_up_proj"], mk[f"model.layers.{l}.mlp.experts.down_proj"]
                        w1, w3, w2 = gu[e][:I], gu[e][I:], dn[e]
                    else:       # transformers saved the classic checkpoint layout
                        w1, w2, w3 = (mk[f"{p}.w{i}.weight"] for i in (1, 2, 3))
                    same &= np.array_equal(cr[f"{p}.w1.weight"].view(np.uint32), w1.view(np.uint32))
                    same &= np.array_equal(cr[f"{p}.w3.weight"].view(np.uint32), w3.view(np.uint32))
                    same &= np.array_equal(cr[f"{p}.w2.weight"].view(np.uint32), w2.view(np.uint32))
                ok &= same
                lines.append(f"{mode} layer {l} experts bit-identical to mergekit's "
                             f"({'fused' if fused else 'classic'} layout): {same}")
            base = [k for k in mk if ".mlp." not in k and "block_sparse_moe" not in k]
            lines.append(f"{mode} tensor names identical: {sorted(mk) == sorted(cr)}")
            ok &= sorted(mk) == sorted(cr)
            bsame = all(k in cr and np.array_equal(cr[k].view(np.uint8), mk[k].view(np.uint8)) for k in base)
            ok &= bsame
            lines.append(f"{mode} {len(base)} base tensors bit-identical: {bsame}")
        # Qwen2-MoE: a qwen2 base (q/k/v biases), a prompted shared expert
        # with residual_scale
        run([CRUCIBLE, "synth", f"{d}/qb", "--arch", "qwen2", "--layers", "2", "--hidden", "32",
             "--intermediate", "64", "--heads", "4", "--kv-heads", "2", "--vocab", "300", "--dtype", "float32",
             "--seed", "1"])
        run([CRUCIBLE, "synth", f"{d}/qe1", "--from", f"{d}/qb", "--delta-scale", "0.1", "--seed", "2"])
        run([CRUCIBLE, "synth", f"{d}/qe2", "--from", f"{d}/qb", "--delta-scale", "0.1", "--seed", "3"])
        with open(f"{d}/q.yml", "w") as f:
            f.write(QWEN.format(d=d))
        run([MERGEKIT_MOE, f"{d}/q.yml", f"{d}/mk_q"])
        run([CRUCIBLE, "moe", f"{d}/q.yml", f"{d}/cr_q", "--quiet"])
        mk, cr = load_dir(f"{d}/mk_q"), load_dir(f"{d}/cr_q")
        names = sorted(mk) == sorted(cr)
        gates = [k for k in mk if k.endswith("mlp.gate.weight") or k.endswith("shared_expert_gate.weight")]
        rel = max(float(np.max(np.abs(cr[k].astype(np.float64) - mk[k])) / np.max(np.abs(mk[k]))) for k in gates)
        rest = all(np.array_equal(cr[k].view(np.uint8), mk[k].view(np.uint8)) for k in mk if k not in gates and k in cr)
        good = names and rest and rel <= 1e-3
        ok &= good
        lines.append(f"qwen2_moe: names identical {names}, {len(mk) - len(gates)} non-gate tensors bit-identical "
                     f"{rest}, gates max rel diff {rel:.3g} {'ok' if good else 'FAIL'}")
    lines.append("RESULT: " + ("ok" if ok else "FAIL"))
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "moe.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
