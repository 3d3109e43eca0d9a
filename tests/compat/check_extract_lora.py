#!/usr/bin/env python3
"""check_extract_lora.py — `crucible extract-lora` against mergekit-extract-lora
(mergekit 0.1.5, torch.linalg.svd) and PEFT 0.21.2 (run by hand; the C tests
need no Python).

For each case, tiny `crucible synth` models (a base and a seeded fine-tune),
the adapter from both tools, then:
  - the adapter's form: adapter_config.json fields (target_modules and
    modules_to_save as sets, r, lora_alpha, rank_pattern) and the tensor
    names, shapes and dtypes of adapter_model.safetensors are mergekit's;
  - per decomposed module the reconstruction error ||dW - B A||_F (dW =
    fine-tune - base as mergekit computes it, A and B as written, in float32)
    of crucible's adapter over mergekit's: the target is within 1 %;
  - PEFT loads crucible's adapter (PeftModel.from_pretrained: no missing or
    unexpected LoRA keys) and merge_and_unload() gives the weights that
    `crucible merge` of `base+adapter` writes (max |a-b| per tensor).
Writes tests/compat/results/extract_lora.txt.

usage: VENV/bin/python tests/compat/check_extract_lora.py [CRUCIBLE_BIN]
"""
import json
import os
import subprocess
import sys
import tempfile
import warnings

import torch
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
CRUCIBLE = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "zig-out", "bin", "crucible")

# name, synth shape args, fine-tune args, extract args
CASES = [
    ("llama_bf16_r8", ["--arch", "llama", "--layers", "2", "--hidden", "72", "--intermediate", "100",
                       "--heads", "4", "--kv-heads", "2", "--vocab", "131"],
     ["--delta-scale", "0.01"], ["--max-rank", "8"]),
    ("llama_f32_odd_r13_embed", ["--arch", "llama", "--layers", "1", "--hidden", "62", "--intermediate", "97",
                                 "--heads", "1", "--kv-heads", "1", "--vocab", "83", "--dtype", "float32"],
     ["--delta-scale", "0.02"], ["--max-rank", "13", "--embed-lora"]),
    ("llama_f32_tied_full_rank", ["--arch", "llama", "--layers", "1", "--hidden", "24", "--intermediate", "40",
                                  "--heads", "2", "--kv-heads", "1", "--vocab", "37", "--dtype", "float32", "--tied"],
     ["--delta-scale", "0.02"], ["--max-rank", "64"]),
    ("llama_bf16_nodist_regex", ["--arch", "llama", "--layers", "2", "--hidden", "48", "--intermediate", "80",
                                 "--heads", "4", "--kv-heads", "4", "--vocab", "64"],
     ["--delta-scale", "0.01", "--only", "layers.1"],
     ["--max-rank", "5", "--no-distribute-scale", "-e", "mlp", "--save-module", "o_proj", "--embed-lora",
      "--skip-undecomposable"]),
]


def run(cmd, env=None):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)}: rc {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def task_vectors(ft_dir, base_dir):
    from safetensors import safe_open
    out = {}
    with safe_open(os.path.join(ft_dir, "model.safetensors"), "pt") as f, \
            safe_open(os.path.join(base_dir, "model.safetensors"), "pt") as b:
        for k in f.keys():
            out[k] = (f.get_tensor(k) - b.get_tensor(k)).to(torch.float32)
    return out


def errors(adapter_dir, tv):
    t = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    res = {}
    for k in t:
        for kind, a_sfx, b_sfx, tr in (("lin", ".lora_A.weight", ".lora_B.weight", False),
                                       ("emb", ".lora_embedding_A", ".lora_embedding_B", True)):
            if k.endswith(a_sfx):
                mod = k[len("base_model.model."):-len(a_sfx)]
                a = t[k].float()
                b = t[k[:-len(a_sfx)] + b_sfx].float()
                w = tv.get(mod + ".weight")
                if w is None and mod == "lm_head":
                    w = tv["model.embed_tokens.weight"]
                prod = b @ a
                if tr:
                    prod = prod.T
                res[mod] = (torch.linalg.norm(w - prod).item(), a.shape[0])
    return t, res


def main():
    env = dict(os.environ, HF_HUB_OFFLINE="1", ATEN_CPU_CAPABILITY="avx2", MKL_ENABLE_INSTRUCTIONS="AVX2")
    import mergekit, peft, transformers
    lines = [f"# check_extract_lora.py: crucible extract-lora vs mergekit {mergekit.__version__ if hasattr(mergekit, '__version__') else '0.1.5'} "
             f"(torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__})", ""]
    worst = 0.0
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for name, shape, ftargs, xargs in CASES:
            d = os.path.join(tmp, name)
            os.makedirs(d)
            base, ft = os.path.join(d, "base"), os.path.join(d, "ft")
            run([CRUCIBLE, "synth", base] + shape)
            run([CRUCIBLE, "synth", ft, "--from", base, "--seed", "7"] + ftargs)
            cr, mk = os.path.join(d, "cr"), os.path.join(d, "mk")
            run([CRUCIBLE, "extract-lora", "--model", ft, "--base-model", base, "--out-path", cr, "-q"] + xargs)
            r = subprocess.run([sys.executable, "-m", "mergekit.scripts.extract_lora", "--model", ft,
                                "--base-model", base, "--out-path", mk] + xargs, capture_output=True, text=True, env=env)
            # mergekit writes the config before its model card, which looks up the Hub (offline here)
            if not os.path.exists(os.path.join(mk, "adapter_config.json")):
                raise SystemExit(f"mergekit-extract-lora failed:\n{r.stderr[-3000:]}")
            cc = json.load(open(os.path.join(cr, "adapter_config.json")))
            mc = json.load(open(os.path.join(mk, "adapter_config.json")))
            form = []
            for key in ("peft_type", "r", "lora_alpha", "rank_pattern", "alpha_pattern", "use_rslora", "fan_in_fan_out"):
                if cc.get(key) != mc.get(key):
                    form.append(f"{key}: {cc.get(key)} vs {mc.get(key)}")
            for key in ("target_modules", "modules_to_save"):
                if sorted(cc[key]) != sorted(mc[key]):
                    form.append(f"{key}: {sorted(cc[key])} vs {sorted(mc[key])}")
            tv = task_vectors(ft, base)
            ct, ce = errors(cr, tv)
            mt, me = errors(mk, tv)
            if sorted(ct) != sorted(mt):
                form.append(f"tensor names: only crucible {sorted(set(ct) - set(mt))}, only mergekit {sorted(set(mt) - set(ct))}")
            for k in set(ct) & set(mt):
                if ct[k].shape != mt[k].shape or ct[k].dtype != mt[k].dtype:
                    form.append(f"{k}: {ct[k].dtype}{list(ct[k].shape)} vs {mt[k].dtype}{list(mt[k].shape)}")
            ok &= not form
            lines.append(f"## {name}: extract-lora {' '.join(xargs)}")
            lines.append(f"form (config, tensor names/shapes/dtypes) as mergekit's: {'yes' if not form else 'NO: ' + '; '.join(form)}")
            lines.append(f"{'module':45} {'rank':>4} {'crucible':>12} {'mergekit':>12} {'ratio':>8}")
            for mod in sorted(me):
                c, rank = ce.get(mod, (float('nan'), 0))
                m, _ = me[mod]
                ratio = c / m if m > 0 else (1.0 if c == 0 else float('inf'))
                if m > 1e-6 * max(1.0, torch.linalg.norm(tv.get(mod + '.weight', tv.get('model.embed_tokens.weight'))).item()):
                    worst = max(worst, ratio)
                    ok &= ratio <= 1.01
                lines.append(f"{mod:45} {rank:4d} {c:12.6g} {m:12.6g} {ratio:8.5f}")
            # PEFT loads it; merge_and_unload equals crucible's base+adapter merge
            from transformers import AutoModelForCausalLM
            from peft import PeftModel
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                model = AutoModelForCausalLM.from_pretrained(base, dtype="auto")
                pm = PeftModel.from_pretrained(model, cr)
            keyw = [str(x.message) for x in w if "key" in str(x.message).lower()]
            merged = pm.merge_and_unload().state_dict()
            rec = os.path.join(d, "rec")
            yml = os.path.join(d, "p.yml")
            with open(yml, "w") as f:
                f.write(f"merge_method: passthrough\nmodels:\n  - model: {base}+{cr}\n")
            r = subprocess.run([CRUCIBLE, "merge", yml, rec, "--quiet"], capture_output=True, text=True)
            if r.returncode == 0:
                got = load_file(os.path.join(rec, "model.safetensors"))
                worst_apply, n_same, n_all = 0.0, 0, 0
                for k, v in got.items():
                    pv = merged[k].to(v.dtype)
                    worst_apply = max(worst_apply, (v.float() - pv.float()).abs().max().item())
                    n_same += int(torch.equal(v, pv))
                    n_all += 1
                applied = (f"merge_and_unload vs crucible merge of base+adapter: {n_same}/{n_all} tensors "
                           f"identical, max |a-b| {worst_apply:.3g}")
            else:
                applied = "crucible merge of base+adapter refuses it: " + r.stderr.strip().split("error: ")[-1]
            lines.append(f"PEFT {peft.__version__} loads it: {'yes' if not keyw else 'warnings: ' + ' | '.join(keyw)}; "
                         + applied)
            ok &= not keyw
            lines.append("")
    lines.append(f"worst crucible/mergekit reconstruction-error ratio: {worst:.5f} (target <= 1.01)")
    lines.append("result: " + ("ok" if ok else "FAILED"))
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "extract_lora.txt"), "w") as f:
        f.write(text)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
