#!/usr/bin/env python3
"""generate.py — golden reference outputs from the real mergekit.

Owns everything under tests/golden/ except the C checker: it creates a
private virtual environment (tests/golden/.venv, gitignored) with the pinned
mergekit and torch, builds tiny synthetic Llama-style models
(tests/golden/models/), runs mergekit on a matrix of recipes
(tests/golden/cases/<case>/{recipe.yml,case.json,model.safetensors}) and runs
the test vectors TV1-TV14 of merge-methods.md §10 through mergekit's own
per-tensor code (tests/golden/vectors.json, vectors.lua).

It is run by hand, never by `zig build test`:

    python3 tests/golden/generate.py            # venv + models + cases + vectors
    python3 tests/golden/generate.py --only ties_d05   # one case (substring)

Everything is deterministic: models come from fixed numpy seeds and every
merge runs with --random-seed 42 semantics (transformers.set_seed).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "models")
SEED = 42

# mergekit 0.1.4 is the version merge-methods.md describes; 0.1.5 (newest on
# PyPI) rewrote the merge engine (linear now computes in f32 and rounds once,
# slerp became a batched torch function), so its numbers differ from the spec.
# torch comes from PyPI (the CPU-only index is unreachable); the default wheel
# drags in ~4 GB of CUDA libraries but installs in a few minutes.
# transformers 5.x breaks mergekit 0.1.4 (pydantic cannot build
# ConfiguredModuleArchitecture around the v5 PretrainedConfig), so 4.57.6.
#
# Each mergekit release has its own venv and its own folder of cases
# (`--mergekit 0.1.5`); crucible runs each case with `--mergekit-version`
# set to the release that made it (tests/unit/test_golden.c). mergekit 0.1.5
# needs transformers 5.
RELEASES = {
    "0.1.4": {"venv": ".venv", "cases": "cases",
              "pins": ["mergekit==0.1.4", "torch==2.15.0", "transformers==4.57.6", "numpy==2.4.6", "pyyaml"]},
    "0.1.5": {"venv": ".venv-0.1.5", "cases": "cases-0.1.5",
              "pins": ["mergekit==0.1.5", "torch==2.15.0", "transformers==5.25.0", "numpy==2.4.6", "pyyaml"]},
}
RELEASE = "0.1.4"
VENV = os.path.join(HERE, RELEASES[RELEASE]["venv"])
CASES = os.path.join(HERE, RELEASES[RELEASE]["cases"])
PINS = RELEASES[RELEASE]["pins"]


def select_release(version):
    global RELEASE, VENV, CASES, PINS
    RELEASE = version
    VENV = os.path.join(HERE, RELEASES[version]["venv"])
    CASES = os.path.join(HERE, RELEASES[version]["cases"])
    PINS = RELEASES[version]["pins"]


def models_for_transformers5():
    """transformers 5 refuses an odd rotary dimension (the fixtures' head_dim
    is 5: hidden 20 / 4 heads) when mergekit 0.1.5 loads a config. No merge
    reads head_dim, so 0.1.5 runs on a copy of models/ whose configs say 6
    (tensors hard-linked, bytes unchanged); crucible merges models/ itself."""
    global MODELS
    src = MODELS
    dst = os.path.join(HERE, ".out", "models-head-dim-6")
    shutil.rmtree(dst, ignore_errors=True)
    for name in sorted(os.listdir(src)):
        os.makedirs(os.path.join(dst, name))
        for f in os.listdir(os.path.join(src, name)):
            s, d = os.path.join(src, name, f), os.path.join(dst, name, f)
            if f != "config.json":
                os.link(s, d)
                continue
            with open(s) as fh:
                cfg = json.load(fh)
            if cfg.get("head_dim", 0) % 2:
                cfg["head_dim"] += 1
            with open(d, "w") as fh:
                json.dump(cfg, fh, indent=2)
    MODELS = dst


def ensure_venv():
    """Create the venv on first use and re-run this script inside it."""
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    py = os.path.join(VENV, "bin", "python")
    if not os.path.exists(py):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
    try:
        subprocess.check_call([py, "-c", "import mergekit, torch, yaml"], stderr=subprocess.DEVNULL)
    except subprocess.CalledProcessError:
        subprocess.check_call([py, "-m", "pip", "install", *PINS])
    os.execv(py, [py, os.path.abspath(__file__), *sys.argv[1:]])


# --------------------------------------------------------------------------
# Synthetic models
# --------------------------------------------------------------------------

HIDDEN, INTER, HEADS, KV_HEADS, HEAD_DIM = 20, 36, 4, 2, 5
VOCAB = 67          # b_v71 has 4 more rows (mismatched vocab)


def llama_config(n_layers, vocab, dtype):
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": HIDDEN,
        "intermediate_size": INTER,
        "num_hidden_layers": n_layers,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "head_dim": HEAD_DIM,
        "vocab_size": vocab,
        "max_position_embeddings": 64,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": dtype,
    }


def tensor_shapes(n_layers, vocab, dims=None):
    """Llama tensor names and shapes, in a fixed order (dims: hidden,
    intermediate, heads, KV heads, head dim; the fixtures' by default)."""
    HIDDEN, INTER, HEADS, KV_HEADS, HEAD_DIM = dims or (globals()["HIDDEN"], globals()["INTER"], globals()["HEADS"],
                                                        globals()["KV_HEADS"], globals()["HEAD_DIM"])
    out = [("model.embed_tokens.weight", (vocab, HIDDEN))]
    for i in range(n_layers):
        p = f"model.layers.{i}."
        out += [
            (p + "input_layernorm.weight", (HIDDEN,)),
            (p + "self_attn.q_proj.weight", (HEADS * HEAD_DIM, HIDDEN)),
            (p + "self_attn.k_proj.weight", (KV_HEADS * HEAD_DIM, HIDDEN)),
            (p + "self_attn.v_proj.weight", (KV_HEADS * HEAD_DIM, HIDDEN)),
            (p + "self_attn.o_proj.weight", (HIDDEN, HEADS * HEAD_DIM)),
            (p + "post_attention_layernorm.weight", (HIDDEN,)),
            (p + "mlp.gate_proj.weight", (INTER, HIDDEN)),
            (p + "mlp.up_proj.weight", (INTER, HIDDEN)),
            (p + "mlp.down_proj.weight", (HIDDEN, INTER)),
        ]
    out += [("model.norm.weight", (HIDDEN,)), ("lm_head.weight", (vocab, HIDDEN))]
    return out


def build_models():
    import numpy as np
    import torch
    from safetensors.torch import save_file

    def write(name, tensors, n_layers, vocab, dtype, dims=None):
        d = os.path.join(MODELS, name)
        os.makedirs(d, exist_ok=True)
        tdt = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
        save_file({k: torch.from_numpy(v).to(tdt).contiguous() for k, v in tensors.items()},
                  os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        cfg = llama_config(n_layers, vocab, dtype)
        if dims:
            for key, v in zip(("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads",
                               "head_dim"), dims):
                cfg[key] = v
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)

    def family(n_layers, vocab, seed):
        """base plus task vectors of different scales and sparsity."""
        rng = np.random.default_rng(seed)
        base = {}
        for name, shape in tensor_shapes(n_layers, vocab):
            if name.endswith("norm.weight"):
                base[name] = (1.0 + 0.05 * rng.standard_normal(shape)).astype(np.float32)
            else:
                base[name] = (0.05 * rng.standard_normal(shape)).astype(np.float32)
        variants = {}
        # a: dense delta; b: larger delta, 10 % zeros; c: half the entries equal to base.
        for vname, scale, zero_frac in (("a", 0.012, 0.0), ("b", 0.02, 0.1), ("c", 0.008, 0.5)):
            t = {}
            for name, x in base.items():
                delta = scale * rng.standard_normal(x.shape)
                delta[rng.random(x.shape) < zero_frac] = 0.0
                t[name] = (x + delta).astype(np.float32)
            variants[vname] = t
        return base, variants

    base, v = family(2, VOCAB, 1234)
    write("base", base, 2, VOCAB, "float32")
    for k in ("a", "b", "c"):
        write(k, v[k], 2, VOCAB, "float32")
    for k, t in (("base", base), ("a", v["a"]), ("b", v["b"]), ("c", v["c"])):
        write(k + "_bf16", t, 2, VOCAB, "bfloat16")
    for k, t in (("base", base), ("a", v["a"]), ("b", v["b"])):
        write(k + "_f16", t, 2, VOCAB, "float16")
    # b with 4 extra vocabulary rows (embed and lm_head 71 x hidden)
    rng = np.random.default_rng(77)
    v101 = dict(v["b"])
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        extra = (0.05 * rng.standard_normal((4, HIDDEN))).astype(np.float32)
        v101[name] = np.concatenate([v101[name], extra], axis=0)
    write("b_v71", v101, 2, VOCAB + 4, "float32")
    # 4-layer bf16 pair for gradients and slices
    dbase, dv = family(4, VOCAB + 4, 999)
    write("deep_base", dbase, 4, VOCAB + 4, "bfloat16")
    write("deep_a", dv["a"], 4, VOCAB + 4, "bfloat16")
    # bf16 fine-tunes of one base whose deltas are a few bf16 ulps: many task
    # vector elements share a magnitude, so which of the elements equal to
    # the k-th largest a top-k keeps is decided by torch's sort order
    rng = np.random.default_rng(4242)
    fbase = {}
    for name, shape in tensor_shapes(2, VOCAB):
        if name.endswith("norm.weight"):
            fbase[name] = (1.0 + 0.05 * rng.standard_normal(shape)).astype(np.float32)
        else:
            fbase[name] = (0.02 * rng.standard_normal(shape)).astype(np.float32)
    write("ft_base_bf16", fbase, 2, VOCAB, "bfloat16")
    for vname, scale in (("a", 4e-4), ("b", 3e-4), ("c", 5e-4)):
        t = {}
        for name, x in fbase.items():
            s = scale * (40 if name.endswith("norm.weight") else 1)
            t[name] = (x + s * rng.standard_normal(x.shape)).astype(np.float32)
        write("ft_" + vname + "_bf16", t, 2, VOCAB, "bfloat16")
    # two more bf16 fine-tunes of `base` (own generator, so the models above
    # stay as they were) for 4-5 model groups: model_stock's mean of P = 6, 10
    # bf16 cosines, sce's variance and top-k over 4 task vectors
    rng = np.random.default_rng(5150)
    for vname, scale, zero_frac in (("d", 0.015, 0.0), ("e", 0.01, 0.3)):
        t = {}
        for name, x in base.items():
            delta = scale * rng.standard_normal(x.shape)
            delta[rng.random(x.shape) < zero_frac] = 0.0
            t[name] = (x + delta).astype(np.float32)
        write(vname + "_bf16", t, 2, VOCAB, "bfloat16")
    # a 1-layer bf16 pair with rows of 72 (8·9: softmax's 8-lane reduce and
    # exp over longer rows) for arcee_fusion; ~70 KB each
    wdims = (72, 40, 4, 2, 18)
    rng = np.random.default_rng(6060)
    wbase, wb = {}, {}
    for name, shape in tensor_shapes(1, VOCAB, wdims):
        if name.endswith("norm.weight"):
            wbase[name] = (1.0 + 0.05 * rng.standard_normal(shape)).astype(np.float32)
        else:
            wbase[name] = (0.05 * rng.standard_normal(shape)).astype(np.float32)
        wb[name] = (wbase[name] + 0.02 * rng.standard_normal(shape)).astype(np.float32)
    write("wide_base_bf16", wbase, 1, VOCAB, "bfloat16", wdims)
    write("wide_b_bf16", wb, 1, VOCAB, "bfloat16", wdims)
    # a mirrored pair around a base, sym_p = base + d and sym_n = base - d,
    # on a grid (multiples of 2^-10, |x| < 1.6) where every sum is exact in
    # f32: the offsets are exactly d and -d, so model_stock's mean cosine is
    # -1 to the last ulp and 1 + (N-1)c vanishes (0.1.5's singular guard)
    rng = np.random.default_rng(7171)
    sbase, sp, sn = {}, {}, {}
    for name, shape in tensor_shapes(2, VOCAB):
        off = 1.0 if name.endswith("norm.weight") else 0.0
        sbase[name] = (off + rng.integers(-64, 65, shape) / 128).astype(np.float32)
        d = rng.integers(-32, 33, shape) / 1024
        sp[name] = (sbase[name] + d).astype(np.float32)
        sn[name] = (sbase[name] - d).astype(np.float32)
    write("sym_base", sbase, 2, VOCAB, "float32")
    write("sym_p", sp, 2, VOCAB, "float32")
    write("sym_n", sn, 2, VOCAB, "float32")


def build_chunk_models():
    """A bf16 pair whose embedding has more than 2^20 elements (116971 x 9 =
    2^20 + 4163), so mergekit 0.1.5's slerp splits it into chunks of 2^20
    (slerp.py `_CHUNK_ELEMENTS`): a full chunk and a ragged one of 4163
    (4163 mod 8 = 3: torch's norm tail). Tied embeddings (no lm_head), one
    small layer; ~2.1 MB each. Written only if missing, in either mode, so
    the existing models' bytes never change."""
    import numpy as np
    import torch
    from safetensors.torch import save_file

    dims, vocab = (9, 16, 3, 3, 3), 116971
    rng = np.random.default_rng(8282)
    base, other = {}, {}
    for name, shape in tensor_shapes(1, vocab, dims):
        if name == "lm_head.weight":
            continue
        off = 1.0 if name.endswith("norm.weight") else 0.0
        base[name] = (off + 0.05 * rng.standard_normal(shape)).astype(np.float32)
        other[name] = (base[name] + 0.03 * rng.standard_normal(shape)).astype(np.float32)
    for name, tensors in (("big_base_bf16", base), ("big_b_bf16", other)):
        d = os.path.join(MODELS, name)
        if os.path.exists(os.path.join(d, "model.safetensors")):
            continue
        os.makedirs(d, exist_ok=True)
        save_file({k: torch.from_numpy(v).to(torch.bfloat16).contiguous() for k, v in tensors.items()},
                  os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        cfg = llama_config(1, vocab, "bfloat16")
        for key, v in zip(("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads",
                           "head_dim"), dims):
            cfg[key] = v
        cfg["tie_word_embeddings"] = True
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)


LORA_DIMS = (20, 36, 2, 1, 10)     # hidden, intermediate, heads, KV heads, head dim (even: transformers 5)


def build_lora_models():
    """A base that transformers 5 loads (head_dim 10, even), a fine-tune of
    it, and PEFT adapters written by PEFT itself (get_peft_model, weights
    filled from fixed seeds, save_pretrained): the LoRA apply cases. Written
    only if missing, so their bytes never change. Runs in the 0.1.5 venv
    (PEFT 0.21.2)."""
    import numpy as np
    import torch
    from safetensors.torch import save_file

    vocab, layers = VOCAB, 2
    rng = np.random.default_rng(4242)
    base = {}
    for name, shape in tensor_shapes(layers, vocab, LORA_DIMS):
        off = 1.0 if name.endswith("norm.weight") else 0.0
        base[name] = (off + 0.05 * rng.standard_normal(shape)).astype(np.float32)
    ft = {k: (v + 0.02 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in base.items()}

    def cfg_for(dtype):
        cfg = llama_config(layers, vocab, dtype)
        for key, v in zip(("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads",
                           "head_dim"), LORA_DIMS):
            cfg[key] = v
        return cfg

    for name, tensors, dtype in (("lora_base_bf16", base, "bfloat16"), ("lora_ft_bf16", ft, "bfloat16"),
                                 ("lora_base", base, "float32")):
        d = os.path.join(MODELS, name)
        if os.path.exists(os.path.join(d, "model.safetensors")):
            continue
        os.makedirs(d, exist_ok=True)
        tdt = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
        save_file({k: torch.from_numpy(v).to(tdt).contiguous() for k, v in tensors.items()},
                  os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg_for(dtype), f, indent=2)

    # name, LoraConfig arguments, dtype of the saved adapter weights
    adapters = [
        ("lora_qkvo", dict(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]), "float32"),
        ("lora_mlp_rs", dict(r=6, lora_alpha=12, use_rslora=True,
                             target_modules=["gate_proj", "up_proj", "down_proj"]), "bfloat16"),
        ("lora_embed", dict(r=3, lora_alpha=5, target_modules=["embed_tokens", "q_proj"],
                            modules_to_save=["lm_head"]), "float32"),
        ("lora_pattern", dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                              rank_pattern={"v_proj": 2}, alpha_pattern={"layers.1.self_attn.q_proj": 3}),
         "float32"),
    ]
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel
    # GPT-2: transformers' Conv1D stores weights in x out, so PEFT merges
    # (B A) transposed (fan_in_fan_out); n_embd 20 and 2 heads as above
    gd = os.path.join(MODELS, "lora_gpt2_bf16")
    if not os.path.exists(os.path.join(gd, "model.safetensors")):
        torch.manual_seed(77)
        g = GPT2LMHeadModel(GPT2Config(n_embd=20, n_layer=2, n_head=2, vocab_size=VOCAB, n_positions=16,
                                       n_inner=36, tie_word_embeddings=True))
        g.to(torch.bfloat16).save_pretrained(gd)
    adapters.append(("lora_gpt2_fifo", dict(r=4, lora_alpha=6, target_modules=["c_attn", "c_proj", "c_fc"],
                                            fan_in_fan_out=True), "float32", "lora_gpt2_bf16"))
    adapters = [a if len(a) == 4 else a + ("lora_base_bf16",) for a in adapters]
    if all(os.path.exists(os.path.join(MODELS, a[0], "adapter_model.safetensors")) for a in adapters):
        return
    for name, kw, wdt, base_name in adapters:
        d = os.path.join(MODELS, name)
        if os.path.exists(os.path.join(d, "adapter_model.safetensors")):
            continue
        model = AutoModelForCausalLM.from_pretrained(os.path.join(MODELS, base_name), dtype=torch.bfloat16)
        pm = get_peft_model(model, LoraConfig(lora_dropout=0.0, bias="none", task_type="CAUSAL_LM", **kw))
        r = np.random.default_rng(sum(map(ord, name)))
        with torch.no_grad():
            for pname, prm in pm.named_parameters():
                if "lora_" in pname or "modules_to_save" in pname:
                    v = 0.1 * r.standard_normal(tuple(prm.shape))
                    prm.copy_(torch.from_numpy(v).to(torch.float32).to(getattr(torch, wdt)).to(prm.dtype))
                    prm.data = prm.data.to(getattr(torch, wdt))
        pm.save_pretrained(d)
        # PEFT records the base's absolute path; keep machine paths out of the repository
        cp = os.path.join(d, "adapter_config.json")
        with open(cp) as f:
            acfg = json.load(f)
        acfg["base_model_name_or_path"] = base_name
        with open(cp, "w") as f:
            json.dump(acfg, f, indent=2, sort_keys=True)
        for extra in ("README.md",):
            if os.path.exists(os.path.join(d, extra)):
                os.remove(os.path.join(d, extra))


# --------------------------------------------------------------------------
# The case matrix
# --------------------------------------------------------------------------

DET = "deterministic"
STAT = "statistical"
# Methods whose result depends on whole-tensor reductions (norms, dots,
# quantiles): a different (still exact-to-f32) summation order moves scalar
# coefficients by an ulp, so outputs may differ by an ulp almost everywhere.
REDUCTION_TOL = {"min_exact_fraction": 0.0, "max_ulp": 2}


def M(model, **params):
    d = {"model": model}
    if params:
        d["parameters"] = params
    return d


def cases():
    c = []

    def add(name, method, recipe, kind=DET, tol=None, stat=None, note=None, options=None, releases=None):
        """options: MergeOptions fields (true flags, or strings), passed to
        crucible as --flag-name [value]; releases: the mergekit releases the case exists for
        (None: every one)."""
        recipe = dict(recipe)
        recipe["merge_method"] = method
        if releases and RELEASE not in releases:
            return
        c.append({"name": name, "method": method, "recipe": recipe, "kind": kind,
                  "tolerance": tol or {"min_exact_fraction": 0.9999, "max_ulp": 1},
                  "stat": stat, "note": note, "options": options})

    # linear
    add("linear_f32", "linear", {"models": [M("a", weight=0.6), M("b", weight=0.4), M("c", weight=0.3)]})
    add("linear_f32_nonorm", "linear", {"models": [M("a", weight=0.5), M("b", weight=0.3)],
                                        "parameters": {"normalize": False}})
    add("linear_bf16", "linear", {"models": [M("a_bf16", weight=0.6), M("b_bf16", weight=0.4),
                                             M("c_bf16", weight=0.25)]})
    add("linear_f16", "linear", {"models": [M("a_f16", weight=0.7), M("b_f16", weight=0.3)]})
    add("linear_dtype_bf16", "linear", {"models": [M("a", weight=0.6), M("b", weight=0.4)], "dtype": "bfloat16"})
    add("linear_out_dtype", "linear", {"models": [M("a", weight=0.6), M("b", weight=0.4)],
                                       "dtype": "float32", "out_dtype": "bfloat16"})
    add("linear_negative", "linear", {"models": [M("a", weight=1.5), M("b", weight=-0.5)]})
    # vocabularies of 67 and 71 rows: 0.1.4 merges the common rows silently;
    # 0.1.5 refuses unless told to truncate (--unsafe-truncate-embeddings)
    add("linear_vocab", "linear", {"models": [M("a", weight=0.5), M("b_v71", weight=0.5)]}, releases=["0.1.4"])
    add("linear_vocab_truncate", "linear", {"models": [M("a", weight=0.5), M("b_v71", weight=0.5)]},
        options={"unsafe_truncate_embeddings": True}, releases=["0.1.5"])
    add("linear_filters_gradient", "linear", {
        "models": [M("deep_a", weight=[{"filter": "mlp", "value": [0.0, 0.3, 1.0]}, {"value": 0.5}]),
                   M("deep_base", weight=1.0)]})
    # slerp
    add("slerp_f32", "slerp", {"models": [M("base"), M("a")], "base_model": "base",
                               "parameters": {"t": 0.3}}, tol=REDUCTION_TOL)
    add("slerp_bf16", "slerp", {"models": [M("base_bf16"), M("a_bf16")], "base_model": "base_bf16",
                                "parameters": {"t": 0.6}}, tol=REDUCTION_TOL)
    add("slerp_gradient_filters", "slerp", {
        "slices": [{"sources": [{"model": "deep_base", "layer_range": [0, 4]},
                                {"model": "deep_a", "layer_range": [0, 4]}]}],
        "base_model": "deep_base",
        "parameters": {"t": [{"filter": "self_attn", "value": [0, 0.5, 0.3, 0.7, 1]},
                             {"filter": "mlp", "value": [1, 0.5, 0.7, 0.3, 0]},
                             {"value": 0.5}]},
        "dtype": "bfloat16"}, tol=REDUCTION_TOL)
    # nuslerp
    add("nuslerp_flatten", "nuslerp", {"models": [M("a", weight=0.7), M("b", weight=0.3)]}, tol=REDUCTION_TOL)
    add("nuslerp_rows", "nuslerp", {"models": [M("a", weight=0.4), M("b", weight=0.6)],
                                    "parameters": {"nuslerp_flatten": False}}, tol=REDUCTION_TOL)
    add("nuslerp_cols", "nuslerp", {"models": [M("a", weight=0.4), M("b", weight=0.6)],
                                    "parameters": {"nuslerp_flatten": False, "nuslerp_row_wise": True}},
        tol=REDUCTION_TOL)
    add("nuslerp_base", "nuslerp", {"models": [M("a", weight=1.0), M("b", weight=1.0)], "base_model": "base"},
        tol=REDUCTION_TOL)
    add("nuslerp_bf16", "nuslerp", {"models": [M("a_bf16", weight=0.5), M("b_bf16", weight=0.5)],
                                    "base_model": "base_bf16"}, tol=REDUCTION_TOL)
    # multislerp
    add("multislerp", "multislerp", {"models": [M("a", weight=1.0), M("b", weight=2.0), M("c", weight=0.5)]},
        tol=REDUCTION_TOL)
    add("multislerp_base", "multislerp", {"models": [M("a", weight=0.5), M("b", weight=0.5)], "base_model": "base",
                                          "parameters": {"normalize_weights": False}}, tol=REDUCTION_TOL)
    # karcher
    add("karcher", "karcher", {"models": [M("a"), M("b"), M("c")]}, tol=REDUCTION_TOL)
    add("karcher_bf16_iters", "karcher", {"models": [M("a_bf16"), M("b_bf16")],
                                          "parameters": {"max_iter": 3, "tol": 1e-7}}, tol=REDUCTION_TOL)
    # task arithmetic
    add("ta_f32", "task_arithmetic", {"models": [M("a", weight=0.7), M("b", weight=0.5)], "base_model": "base"})
    add("ta_normalize_lambda", "task_arithmetic", {
        "models": [M("a", weight=1.0), M("b", weight=-0.5)], "base_model": "base",
        "parameters": {"normalize": True, "lambda": 0.8}})
    add("ta_bf16", "task_arithmetic", {"models": [M("a_bf16", weight=0.7), M("b_bf16", weight=0.5),
                                                  M("c_bf16", weight=0.3)], "base_model": "base_bf16"})
    add("ta_f16", "task_arithmetic", {"models": [M("a_f16", weight=0.7), M("b_f16", weight=0.5)],
                                      "base_model": "base_f16"})
    add("ta_vocab", "task_arithmetic", {"models": [M("a", weight=0.5), M("b_v71", weight=0.5)],
                                        "base_model": "base"}, releases=["0.1.4"])
    add("ta_vocab_truncate", "task_arithmetic", {"models": [M("a", weight=0.5), M("b_v71", weight=0.5)],
                                                 "base_model": "base"},
        options={"unsafe_truncate_embeddings": True}, releases=["0.1.5"])
    # ties
    add("ties_d05", "ties", {"models": [M("a", weight=1.0, density=0.5), M("b", weight=0.6, density=0.5),
                                        M("c", weight=0.4, density=0.3)], "base_model": "base"})
    add("ties_d01_rescale", "ties", {"models": [M("a", weight=1.0, density=0.1), M("b", weight=1.0, density=0.1)],
                                     "base_model": "base", "parameters": {"rescale": True}}, tol=REDUCTION_TOL)
    add("ties_bf16_int8", "ties", {"models": [M("a_bf16", weight=1.0, density=0.5), M("b_bf16", weight=0.5, density=0.5)],
                                   "base_model": "base_bf16", "parameters": {"int8_mask": True}})
    add("ties_d1", "ties", {"models": [M("a", weight=1.0), M("b", weight=1.0), M("c", weight=1.0)],
                            "base_model": "base"})
    add("ties_negative", "ties", {"models": [M("a", weight=1.0, density=0.5), M("b", weight=-0.5, density=0.5)],
                                  "base_model": "base"})
    add("ties_f16", "ties", {"models": [M("a_f16", weight=1.0, density=0.5), M("b_f16", weight=0.5, density=0.5)],
                             "base_model": "base_f16"})
    add("ties_nonorm_lambda", "ties", {"models": [M("a", weight=0.7, density=0.5), M("b", weight=0.3, density=0.5)],
                                       "base_model": "base", "parameters": {"normalize": False, "lambda": 1.5}})
    add("ties_filters", "ties", {"models": [
        M("a", weight=1.0, density=[{"filter": "mlp", "value": 0.3}, {"value": 0.7}]),
        M("b", weight=[{"filter": "self_attn", "value": 0.2}, {"value": 0.8}], density=0.5)],
        "base_model": "base"})
    # DARE (random: statistical, single task vector so the mask is visible)
    def stat(method, density, epsilon=None, rescale=True, model="a", base="base", weight=1.0, normalize=None):
        return {"base": base, "model": model, "density": density, "epsilon": epsilon, "weight": weight,
                "rescale": rescale, "normalize": normalize}
    add("dare_ties_d05", "dare_ties", {"models": [M("a", weight=1.0, density=0.5)], "base_model": "base"},
        kind=STAT, stat=stat("dare_ties", 0.5))
    add("dare_ties_d01_bf16", "dare_ties", {"models": [M("a_bf16", weight=0.8, density=0.1)],
                                            "base_model": "base_bf16"},
        kind=STAT, stat=stat("dare_ties", 0.1, model="a_bf16", base="base_bf16", weight=0.8))
    add("dare_linear_d05", "dare_linear", {"models": [M("a", weight=0.7, density=0.5)], "base_model": "base"},
        kind=STAT, stat=stat("dare_linear", 0.5, weight=0.7))
    add("dare_linear_norescale", "dare_linear", {"models": [M("a", weight=1.0, density=0.3)], "base_model": "base",
                                                 "parameters": {"rescale": False}},
        kind=STAT, stat=stat("dare_linear", 0.3, rescale=False))
    add("dare_linear_d1", "dare_linear", {"models": [M("a", weight=0.6, density=1.0), M("b", weight=0.4, density=1.0)],
                                          "base_model": "base"})
    add("dare_ties_2models", "dare_ties", {"models": [M("a", weight=1.0, density=0.5), M("b", weight=1.0, density=0.5)],
                                           "base_model": "base"},
        kind=STAT, stat=None, note="two task vectors: only finiteness and shapes are checked")
    # DELLA
    add("della_d05", "della", {"models": [M("a", weight=1.0, density=0.5, epsilon=0.15)], "base_model": "base"},
        kind=STAT, stat=stat("della", 0.5, epsilon=0.15))
    add("della_linear_bf16", "della_linear", {"models": [M("a_bf16", weight=1.0, density=0.4, epsilon=0.1)],
                                              "base_model": "base_bf16"},
        kind=STAT, stat=stat("della_linear", 0.4, epsilon=0.1, model="a_bf16", base="base_bf16"))
    add("della_d1", "della", {"models": [M("a", weight=1.0, density=1.0), M("b", weight=0.5, density=1.0)],
                              "base_model": "base"})
    # breadcrumbs
    add("breadcrumbs", "breadcrumbs", {"models": [M("a", weight=1.0, density=0.9, gamma=0.05),
                                                  M("b", weight=0.5, density=0.8, gamma=0.05)], "base_model": "base"})
    add("breadcrumbs_default_gamma", "breadcrumbs", {"models": [M("a", weight=1.0, density=0.8)], "base_model": "base"},
        note="gamma 0.01: tensors under 100 elements get top=0 and mergekit zeroes their task vector (QUIRK)")
    add("breadcrumbs_ties_bf16", "breadcrumbs_ties", {"models": [M("a_bf16", weight=1.0, density=0.8, gamma=0.1),
                                                                 M("b_bf16", weight=0.7, density=0.7, gamma=0.1)],
                                                      "base_model": "base_bf16"})
    # bf16 task vectors with many equal magnitudes at the top-k threshold
    # (torch's sort decides which ties are kept; vm/torchsort.c)
    ft3 = [M("ft_a_bf16", weight=0.5, density=0.5), M("ft_b_bf16", weight=0.3, density=0.5),
           M("ft_c_bf16", weight=0.2, density=0.5)]
    add("ties_bf16_eqmag", "ties", {"models": ft3, "base_model": "ft_base_bf16",
                                    "parameters": {"normalize": True}, "dtype": "bfloat16"})
    add("ties_bf16_eqmag_rescale", "ties", {
        "models": [M("ft_a_bf16", weight=1.0, density=0.3), M("ft_c_bf16", weight=0.6, density=0.7)],
        "base_model": "ft_base_bf16", "parameters": {"rescale": True}, "dtype": "bfloat16"})
    add("breadcrumbs_bf16_eqmag", "breadcrumbs_ties", {
        "models": [M("ft_a_bf16", weight=1.0, density=0.6, gamma=0.1),
                   M("ft_b_bf16", weight=0.5, density=0.8, gamma=0.05)],
        "base_model": "ft_base_bf16", "dtype": "bfloat16"})
    # sce
    add("sce_topk1", "sce", {"models": [M("a"), M("b"), M("c")], "base_model": "base"}, tol=REDUCTION_TOL)
    add("sce_topk05", "sce", {"models": [M("a"), M("b")], "base_model": "base", "parameters": {"select_topk": 0.5}},
        tol=REDUCTION_TOL)
    add("sce_bf16", "sce", {"models": [M("a_bf16"), M("b_bf16")], "base_model": "base_bf16"}, tol=REDUCTION_TOL)
    add("sce_bf16_topk05_4", "sce", {"models": [M("a_bf16"), M("b_bf16"), M("c_bf16"), M("d_bf16")],
                                     "base_model": "base_bf16", "parameters": {"select_topk": 0.5}},
        tol=REDUCTION_TOL, note="bf16 variance (torch.var: Welford in double) and top-k over 4 models")
    # ram
    add("ram", "ram", {"models": [M("a"), M("b"), M("c")], "base_model": "base"})
    add("ramplus_tl", "ramplus_tl", {"models": [M("a"), M("b"), M("c")], "base_model": "base"})
    add("ramplus_tl_params", "ramplus_tl", {"models": [M("a"), M("c")], "base_model": "base",
                                            "parameters": {"r": 0.5, "alpha": 10}})
    add("ramplus_tl_bf16", "ramplus_tl", {"models": [M("b_bf16"), M("c_bf16")], "base_model": "base_bf16"},
        note="output is f32 for bf16 inputs (QUIRK)")
    # model_stock
    add("model_stock", "model_stock", {"models": [M("a"), M("b"), M("c")], "base_model": "base"}, tol=REDUCTION_TOL)
    add("model_stock_filter_wise", "model_stock", {"models": [M("a"), M("b")], "base_model": "base",
                                                   "parameters": {"filter_wise": True}}, tol=REDUCTION_TOL)
    add("model_stock_bf16_5", "model_stock", {"models": [M("a_bf16"), M("b_bf16"), M("c_bf16"), M("d_bf16"),
                                                         M("e_bf16")], "base_model": "base_bf16"},
        tol=REDUCTION_TOL, note="mean of 10 bf16 cosines: f32 sum, one rounding (torch.mean)")
    add("model_stock_bf16_base_listed", "model_stock", {
        "models": [M("base_bf16"), M("a_bf16"), M("b_bf16"), M("d_bf16")], "base_model": "base_bf16"},
        tol=REDUCTION_TOL, note="the base also listed among the models")
    add("model_stock_bf16_filter_wise", "model_stock", {"models": [M("a_bf16"), M("b_bf16"), M("c_bf16")],
                                                        "base_model": "base_bf16", "parameters": {"filter_wise": True}},
        tol=REDUCTION_TOL, note="per-row mean of 3 bf16 cosines")
    # nearswap
    add("nearswap", "nearswap", {"models": [M("a")], "base_model": "base", "parameters": {"t": 0.005}})
    add("nearswap_bf16", "nearswap", {"models": [M("b_bf16")], "base_model": "base_bf16",
                                      "parameters": {"t": 0.01}})
    # arcee_fusion
    add("arcee_fusion", "arcee_fusion", {"models": [M("b")], "base_model": "base"}, tol=REDUCTION_TOL)
    add("arcee_fusion_bf16", "arcee_fusion", {"models": [M("b_bf16")], "base_model": "base_bf16"},
        tol=REDUCTION_TOL, note="output is f32 for bf16 inputs (QUIRK)")
    add("arcee_fusion_wide_bf16", "arcee_fusion", {"models": [M("wide_b_bf16")], "base_model": "wide_base_bf16"},
        tol=REDUCTION_TOL, note="rows of 72: torch's softmax (8-lane reduce_all, SLEEF exp, reciprocal)")
    add("arcee_fusion_wide_f32", "arcee_fusion", {"models": [M("wide_b_bf16")], "base_model": "wide_base_bf16",
                                                  "dtype": "float32"},
        tol=REDUCTION_TOL, note="rows of 72 in float32")
    # 0.1.5 matrix additions (spec/mergekit-0.1.5.md §8): groups of 5-6
    # inputs, where torch's stacked sum (R3) adds the last N mod 32 elements
    # of a tensor in another order than model order; f32 accumulation of
    # linear with bf16 weights; mixed input dtypes without `dtype:`
    five = ["a_bf16", "b_bf16", "c_bf16", "d_bf16", "e_bf16"]
    wts = [0.35, 0.1, 0.3, 0.15, 0.25]
    new = ["0.1.5"]
    add("linear_bf16_6", "linear", {"models": [M("base_bf16", weight=0.2)] +
                                    [M(m, weight=w) for m, w in zip(five, wts)]}, releases=new)
    add("linear_bf16_nonorm_5", "linear", {"models": [M(m, weight=w) for m, w in zip(five, wts)],
                                           "parameters": {"normalize": False}}, releases=new)
    add("linear_mixed_dtype", "linear", {"models": [M("a", weight=0.6), M("b_bf16", weight=0.4)]}, releases=new)
    add("ta_bf16_5", "task_arithmetic", {"models": [M(m, weight=w) for m, w in zip(five, wts)],
                                         "base_model": "base_bf16"}, releases=new)
    add("ta_mixed_dtype", "task_arithmetic", {"models": [M("a", weight=0.7), M("b_bf16", weight=0.5)],
                                              "base_model": "base_bf16"}, releases=new,
        note="0.1.5 promotes the group to float32; 0.1.4 cast to the base's dtype")
    add("ties_bf16_5", "ties", {"models": [M(m, weight=w, density=0.5) for m, w in zip(five, wts)],
                                "base_model": "base_bf16"}, releases=new)
    # the same five in float32: weighted f32 deltas do not sum exactly, so
    # torch's stacked-sum order (R3: row_sum's interleaving on the last
    # N mod 32 elements of each tensor, all of a tensor under 8 elements'
    # tail rule) shows, where the bf16 groups' sums are exact
    add("ta_f32_5", "task_arithmetic", {"models": [M(m, weight=w) for m, w in zip(five, wts)],
                                        "base_model": "base_bf16", "dtype": "float32"}, releases=new,
        note="stacked-sum order (R3) on f32 sums of 5 models")
    add("ties_f32_5", "ties", {"models": [M(m, weight=w, density=0.5) for m, w in zip(five, wts)],
                               "base_model": "base_bf16", "dtype": "float32"}, releases=new,
        note="stacked-sum order (R3) in the sign election, the masked sum and the weight sum")
    add("multislerp_bf16_5", "multislerp", {"models": [M(m, weight=w) for m, w in zip(five, wts)]},
        releases=new)
    add("sce_bf16_5", "sce", {"models": [M(m) for m in five], "base_model": "base_bf16",
                              "parameters": {"select_topk": 0.3}}, tol=REDUCTION_TOL, releases=new)
    add("nuslerp_bf16_t03", "nuslerp", {"models": [M("a_bf16", weight=0.3), M("b_bf16", weight=0.7)],
                                        "base_model": "base_bf16"}, tol=REDUCTION_TOL, releases=new,
        note="t = 0.7 is not a bf16 value: c(1-t) stays f32 in torch")
    add("breadcrumbs_ties_5", "breadcrumbs_ties", {"models": [M(m, weight=w, density=0.7, gamma=0.05)
                                                             for m, w in zip(five, wts)],
                                                  "base_model": "base_bf16"}, releases=new)
    add("dare_linear_d1_5", "dare_linear", {"models": [M(m, weight=w, density=1.0) for m, w in zip(five, wts)],
                                            "base_model": "base_bf16"}, releases=new)
    add("model_stock_bf16_4", "model_stock", {"models": [M(m) for m in five[:4]], "base_model": "base_bf16"},
        tol=REDUCTION_TOL, releases=new, note="mean of 6 bf16 cosines")
    add("karcher_bf16_5", "karcher", {"models": [M(m) for m in five]}, tol=REDUCTION_TOL, releases=new)
    add("ram_bf16_5", "ram", {"models": [M(m) for m in five], "base_model": "base_bf16"}, releases=new)
    # 0.1.5's sparsifier edge cases: magnitude keeps max(1, int(d*N))
    # (0.1.4 asserted k > 0: density 0.04 on a 20-element norm is k = 0)
    # and gives zeros for density 0; breadcrumbs with gamma + density > 1
    add("ties_density_tiny", "ties", {"models": [M("a", weight=1.0, density=0.04), M("b", weight=0.5, density=0.3)],
                                      "base_model": "base"}, releases=new,
        note="k = max(1, int(0.04 * 20)) = 1 on the norms")
    add("ties_density_zero", "ties", {"models": [M("a", weight=1.0, density=0.5), M("b", weight=0.5, density=0.0)],
                                      "base_model": "base"}, releases=new, note="density 0: b's task vector is zero")
    add("breadcrumbs_gamma_overlap", "breadcrumbs", {"models": [M("a", weight=1.0, density=0.6, gamma=0.5)],
                                                     "base_model": "base"}, releases=new,
        note="gamma + density > 1: bot = 0, the `target` smallest kept")
    # model_stock's singular guard: offsets d and -d, so 1 + (N-1)c is 0 or
    # an ulp of 1; 0.1.5 sets t = 0 there (0.1.4 divides by it)
    add("model_stock_singular", "model_stock", {"models": [M("sym_p"), M("sym_n")], "base_model": "sym_base"},
        releases=new, note="mirrored offsets: |1 + (N-1)c| < 1e-6, t = 0")
    # mixed input dtypes without `dtype:` in the other method families: 0.1.5
    # casts every input (base included) to the promoted dtype first
    mix = [M("a", weight=0.7, density=0.5), M("b_bf16", weight=0.5, density=0.6)]
    add("ties_mixed_dtype", "ties", {"models": mix, "base_model": "base_bf16"}, releases=new)
    add("model_stock_mixed_dtype", "model_stock", {"models": [M("a"), M("b_bf16"), M("c")],
                                                   "base_model": "base_bf16"}, tol=REDUCTION_TOL, releases=new)
    add("sce_mixed_dtype", "sce", {"models": [M("a"), M("b_bf16"), M("c")], "base_model": "base_bf16"},
        tol=REDUCTION_TOL, releases=new)
    add("ram_mixed_dtype", "ram", {"models": [M("a"), M("b_bf16"), M("c")], "base_model": "base_bf16"},
        releases=new)
    add("multislerp_mixed_dtype", "multislerp", {"models": [M("a", weight=0.5), M("b_bf16", weight=0.3)],
                                                 "base_model": "base_bf16"}, tol=REDUCTION_TOL, releases=new)
    add("arcee_fusion_mixed_dtype", "arcee_fusion", {"models": [M("a")], "base_model": "base_bf16"},
        tol=REDUCTION_TOL, releases=new)
    add("model_stock_singular_rows", "model_stock", {"models": [M("sym_p"), M("sym_n")], "base_model": "sym_base",
                                                     "parameters": {"filter_wise": True}},
        releases=new, note="the guard per row (rows of d all zero: c = 0, t = 0 too)")
    # tensors above 2^20 elements: 0.1.5's slerp reduces them in chunks
    add("slerp_chunks_bf16", "slerp", {"models": [M("big_base_bf16"), M("big_b_bf16")],
                                       "base_model": "big_base_bf16", "parameters": {"t": 0.35}},
        tol={"min_exact_fraction": 1.0, "max_ulp": 0}, releases=new,
        note="embedding of 2^20 + 4163 elements: two chunks; bf16 output, so the whole-tensor"
             " reduction (an ulp off in the coefficients) shows on 41 elements only")
    # LoRA adapters applied as mergekit does (PEFT merge_and_unload; build_lora_models)
    lora = ["0.1.5"]
    exact = {"min_exact_fraction": 1.0, "max_ulp": 0}
    for case, ref in (("lora_qkvo", "lora_base_bf16+lora_qkvo"), ("lora_mlp_rslora", "lora_base_bf16+lora_mlp_rs"),
                      ("lora_embed_save", "lora_base_bf16+lora_embed"),
                      ("lora_pattern", "lora_base_bf16+lora_pattern"), ("lora_qkvo_f32", "lora_base+lora_qkvo")):
        add(case, "passthrough", {"models": [M(ref)]}, tol=exact, releases=lora)
    add("lora_gpt2_fan_in_fan_out", "passthrough", {"models": [M("lora_gpt2_bf16+lora_gpt2_fifo")]}, tol=exact,
        releases=lora)
    add("lora_merge_dtype_f16", "passthrough", {"models": [M("lora_base_bf16+lora_mlp_rs")]}, tol=exact,
        options={"lora_merge_dtype": "float16"}, releases=lora,
        note="--lora-merge-dtype float16: transformers loads the bf16 base as float16")
    add("lora_merge_ties", "ties", {"models": [M("lora_base_bf16+lora_qkvo", weight=0.6, density=0.7),
                                              M("lora_ft_bf16", weight=0.4, density=0.7)],
                                   "base_model": "lora_base_bf16"}, releases=lora)
    add("lora_merge_linear_map", "linear", {"models": [
        {"model": {"model": {"path": "lora_base_bf16"}, "lora": {"path": "lora_mlp_rs"}}, "parameters": {"weight": 0.5}},
        M("lora_ft_bf16", weight=0.5)]}, releases=lora)
    # passthrough
    add("passthrough_slices", "passthrough", {"slices": [
        {"sources": [{"model": "a", "layer_range": [0, 2]}]},
        {"sources": [{"model": "b", "layer_range": [1, 2]}]}]})
    add("passthrough_scale", "passthrough", {"slices": [
        {"sources": [{"model": "deep_a", "layer_range": [0, 4],
                      "parameters": {"scale": [{"filter": "o_proj", "value": 0.5},
                                               {"filter": "down_proj", "value": [1.0, 0.0]},
                                               {"value": 1.0}]}}]}]})
    return c


# --------------------------------------------------------------------------
# Running mergekit
# --------------------------------------------------------------------------

def run_case(case):
    import yaml
    import torch
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    d = os.path.join(CASES, case["name"])
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    text = yaml.safe_dump(case["recipe"], sort_keys=False)
    with open(os.path.join(d, "recipe.yml"), "w") as f:
        f.write(text)
    tmp = os.path.join(HERE, ".out", case["name"])
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(tmp + "-lora", ignore_errors=True)
    cwd = os.getcwd()
    os.chdir(MODELS)            # model names in recipes are relative to models/
    try:
        cfg = MergeConfiguration.model_validate(yaml.safe_load(text))
        opts = MergeOptions(random_seed=SEED, copy_tokenizer=False, out_shard_size=10**12,
                            write_model_card=False, quiet=True, lazy_unpickle=False,
                            lora_merge_cache=tmp + "-lora",
                            **(case.get("options") or {}))
        torch.set_num_threads(1)      # fixed reduction order
        run_merge(cfg, tmp, options=opts, config_source=text)
    finally:
        os.chdir(cwd)
    shutil.copy(os.path.join(tmp, "model.safetensors"), os.path.join(d, "model.safetensors"))
    meta = {
        "method": case["method"],
        "kind": case["kind"],
        "tolerance": case["tolerance"],
        "seed": SEED,
        "mergekit": mergekit_version(),
    }
    if case["stat"]:
        meta["stat"] = case["stat"]
    if case.get("options"):
        meta["options"] = case["options"]
    if case["note"]:
        meta["note"] = case["note"]
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")
    shutil.rmtree(tmp, ignore_errors=True)


def pin_model_order():
    """Give mergekit's easy_define methods (multislerp, nearswap, sce and the
    ram/ramplus_tl registered below) the models in recipe order.

    easy_define's _execute builds the model list from `set(tensors.keys())`.
    A set of ModelReferences iterates in hash order, and a pydantic model's
    hash includes hash(type(self)), an object address, so the order (and the
    order of every float32 sum over the models) changes from run to run of
    the same recipe, PYTHONHASHSEED or not: `--only ram` gave three
    different outputs in four runs. mergekit leaves the order undefined; the
    goldens pin it to the recipe order (the insertion order of `tensors`),
    which is one of mergekit's possible outputs and the one crucible gives."""
    import mergekit.merge_methods.easy_define as ed

    class ordered_set:
        def __init__(self, items=()):
            self.d = dict.fromkeys(items)
        def remove(self, x):
            del self.d[x]
        def __contains__(self, x):
            return x in self.d
        def __iter__(self):
            return iter(self.d)
        def __len__(self):
            return len(self.d)

    ed.set = ordered_set


def register_ram():
    """The PyPI wheel of mergekit 0.1.4 predates `ram` and `ramplus_tl`
    (merge-methods.md describes a later 0.1.4 commit). Register them with the
    maths copied verbatim from mergekit 0.1.5's merge_methods/ram.py, adapted
    to 0.1.4's decorator signature (tensors list + base_tensor)."""
    from typing import List
    import torch
    import mergekit.merge_methods as mm
    from mergekit.merge_methods.easy_define import merge_method
    if "ram" in mm.REGISTERED_MERGE_METHODS:
        return

    def prepare(tensors, base_tensor, epsilon):
        task_vectors = torch.stack([t - base_tensor for t in tensors], dim=0)
        tv_flat = task_vectors.view(len(tensors), -1)
        nonzero_mask = tv_flat.abs() > epsilon
        contrib_counts = nonzero_mask.sum(dim=0, keepdim=True)
        return tv_flat, nonzero_mask, contrib_counts, contrib_counts > 1, contrib_counts == 1

    @merge_method(name="ram", pretty_name="Reinforced Agent Merging",
                  reference_url="https://arxiv.org/abs/2601.13572")
    def ram_merge(tensors: List[torch.Tensor], base_tensor: torch.Tensor, epsilon: float = 1e-5) -> torch.Tensor:
        if not tensors:
            return base_tensor
        tv_flat, nz, counts, overlap, unique = prepare(tensors, base_tensor, epsilon)
        z = tv_flat * nz
        merged = ((z * unique) + (z * overlap / counts.clamp(min=1))).sum(dim=0, keepdim=True)
        return base_tensor + merged.reshape_as(base_tensor)

    @merge_method(name="ramplus_tl", pretty_name="Reinforced Agent Merging Plus (Tensor-Local)",
                  reference_url="https://arxiv.org/abs/2601.13572")
    def ramplus_tl_merge(tensors: List[torch.Tensor], base_tensor: torch.Tensor, r: float = 0.1, alpha: float = 0.2,
                         epsilon: float = 1e-5) -> torch.Tensor:
        if not tensors:
            return base_tensor
        tv_flat, nz, counts, overlap, unique = prepare(tensors, base_tensor, epsilon)
        shared_counts = (nz & overlap).sum(dim=1)
        unique_counts = (nz & unique).sum(dim=1)
        rho = shared_counts / unique_counts.clamp(min=epsilon)
        lambda_ = 1 + r * rho.clamp(min=0, max=alpha)
        z = tv_flat * nz
        merged = ((z * unique * lambda_.unsqueeze(-1)) + (z * overlap / counts.clamp(min=1))).sum(dim=0, keepdim=True)
        return base_tensor + merged.reshape_as(base_tensor)


def mergekit_version():
    import importlib.metadata as md
    import torch
    v = {k: md.version(k) for k in ("mergekit", "torch", "transformers", "numpy", "safetensors")}
    if RELEASE != "0.1.4":      # the 0.1.4 cases were made on an AVX2 host, before this was recorded
        v["aten_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return v


# --------------------------------------------------------------------------
# Test vectors (§10) through mergekit's per-tensor code
# --------------------------------------------------------------------------

def vectors():
    import numpy as np
    import torch
    import mergekit.merge_methods as mm
    from mergekit.architecture import WeightInfo
    from mergekit.common import ImmutableMap, ModelReference
    from mergekit.io.tasks import GatherTensors
    from mergekit import sparsify as sp

    def f(x, dtype=torch.float32):
        return torch.tensor(x, dtype=dtype)

    def run(method, xs, base=None, params=None, tparams=None, embed=False):
        """xs: list of tensors in source order; base: index into xs."""
        m = mm.get(method)
        refs = [ModelReference.parse(f"m{i}") for i in range(len(xs))]
        wi = WeightInfo(name="t", is_embed=embed)
        gather = GatherTensors(weight_info=ImmutableMap({r: wi for r in refs}))
        p = {d.name: d.default_value for d in m.parameters()}
        p.update(params or {})
        tp = {}
        for i, r in enumerate(refs):
            q = {d.name: d.default_value for d in m.tensor_parameters()}
            q.update((tparams or [{}] * len(xs))[i] if tparams else {})
            tp[r] = ImmutableMap({k: v for k, v in q.items()})
        task = m.make_task(output_weight=wi, tensors=gather, parameters=ImmutableMap(p),
                           tensor_parameters=ImmutableMap(tp),
                           base_model=refs[base] if base is not None else None)
        return task.execute(tensors={r: x.clone() for r, x in zip(refs, xs)})

    def out(t):
        return {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape),
                "values": [float(v) for v in t.double().flatten().tolist()]}

    def attempt(fn):
        try:
            return out(fn())
        except Exception as e:      # mergekit's failure is the expected value
            return {"error": f"{type(e).__name__}: {e}"[:200]}

    V = {}
    A, B = f([1, 2, 3]), f([3, 2, -1])
    W = [{"weight": 0.6}, {"weight": 0.4}]
    V["TV1a"] = attempt(lambda: run("linear", [A, B], tparams=W))
    V["TV1b"] = attempt(lambda: run("linear", [A, B], tparams=W, params={"normalize": False}))
    V["TV1c"] = attempt(lambda: run("linear", [A, B], tparams=[{"weight": 1.0}, {"weight": -1.0}]))
    bf = torch.bfloat16
    V["TV2"] = attempt(lambda: run("linear", [f([1.0, 0.1, 3.3], bf), f([0.7, 0.3, -1.1], bf)], tparams=W))

    base = 0.5 * torch.ones(6)
    d1, d2 = f([1, -2, 3, 0.5, 0.25, -1.5]), f([-3, 1, 1.5, 0.75, 0.1, 2])
    xs = [base + d1, base + d2, base]
    V["TV3a"] = attempt(lambda: run("task_arithmetic", xs, 2, tparams=[{"weight": 1.0}, {"weight": 1.0}, {}]))
    V["TV3b"] = attempt(lambda: run("ties", xs, 2, tparams=[{"weight": 1.0, "density": 0.5}] * 2 + [{}]))
    V["TV3c"] = attempt(lambda: run("ties", xs, 2, tparams=[{"weight": 0.7, "density": 0.5},
                                                            {"weight": 0.3, "density": 0.5}, {}]))
    V["TV3d"] = attempt(lambda: run("ties", xs, 2, params={"rescale": True},
                                    tparams=[{"weight": 1.0, "density": 0.5}] * 2 + [{}]))
    V["TV3e"] = attempt(lambda: run("breadcrumbs_ties", xs, 2,
                                    tparams=[{"weight": 1.0, "density": 0.5, "gamma": 0.2}] * 2 + [{}]))

    z = torch.zeros(6)
    m1, m2 = f([1, -2, 3, 0.5, 0, -1]), f([-3, 1, 1, 0.25, 0, 2])
    xs4 = [m1, m2, z]
    V["TV4a"] = attempt(lambda: run("ties", xs4, 2, tparams=[{"weight": 1.0}, {"weight": 0.5}, {}]))
    V["TV4b"] = attempt(lambda: run("ties", xs4, 2, params={"normalize": False},
                                    tparams=[{"weight": 1.0}, {"weight": 0.5}, {}]))
    V["TV4c"] = attempt(lambda: run("ties", xs4, 2, tparams=[{"weight": 1.0}, {"weight": -0.5}, {}]))
    V["TV4d"] = attempt(lambda: run("task_arithmetic", xs4, 2, params={"normalize": True},
                                    tparams=[{"weight": 1.0}, {"weight": -1.0}, {}]))
    V["TV4e"] = attempt(lambda: run("ties", xs4, 2, params={"lambda": 2.0},
                                    tparams=[{"weight": 1.0}, {"weight": 0.5}, {}]))

    V["TV5a"] = attempt(lambda: sp.magnitude(f(list(range(1, 11))), density=0.35))
    rng = np.random.default_rng(5)
    x100 = torch.from_numpy(rng.permutation(100).astype(np.float32) + 1)
    V["TV5b_input"] = out(x100)
    V["TV5b"] = attempt(lambda: sp.magnitude(x100, density=0.29))
    V["TV5c"] = attempt(lambda: sp.magnitude(f(list(range(1, 11))), density=0.05))

    X6 = f([0.5, -1, 2, -3, 0.1, 0.2, 0.3, 0.4])
    V["TV6a"] = attempt(lambda: sp.magnitude_outliers(f([0.1 * i for i in range(1, 11)]), density=0.5, gamma=0.1))
    V["TV6b"] = attempt(lambda: sp.magnitude_outliers(X6, density=0.5, gamma=0.01))
    V["TV6c"] = attempt(lambda: sp.magnitude_outliers(X6, density=0.5, gamma=0.125))
    V["TV6d"] = attempt(lambda: sp.magnitude_outliers(X6, density=0.5, gamma=0.6))

    # TV7: DARE statistics over 200 seeds on a fixed N(0,1) sample
    g = torch.Generator().manual_seed(7)
    X7 = torch.randn(128, 64, generator=g)
    keep, l1err, nonkept_ok = [], 0.0, True
    for s in range(200):
        torch.manual_seed(s)
        o = sp.sparsify(X7, density=0.5, method=sp.SparsificationMethod.random, rescale_norm=sp.RescaleNorm.l1)
        keep.append(float((o != 0).float().mean()))
        l1err = max(l1err, abs(float(o.abs().sum() / X7.abs().sum()) - 1))
        torch.manual_seed(s)
        o2 = sp.sparsify(X7, density=0.5, method=sp.SparsificationMethod.random, rescale_norm=None)
        nonkept_ok &= bool(((o2 == 0) | (o2 == X7)).all())
    o1 = sp.sparsify(X7, density=1.0, method=sp.SparsificationMethod.random, rescale_norm=sp.RescaleNorm.l1)
    V["TV7"] = {"mean_keep": float(np.mean(keep)), "max_rel_l1_error": l1err,
                "norescale_values_unchanged": nonkept_ok, "density1_identity": bool((o1 == X7).all())}

    # TV8: DELLA probabilities: empirical keep rate per rank over many draws
    row = f([[0.1, -0.4, 0.3, 0.2, -0.5]])
    kept = torch.zeros(5)
    n = 20000
    torch.manual_seed(8)
    for _ in range(n):
        kept += (sp.della_magprune(row, density=0.5, epsilon=0.2, rescale_norm=None) != 0).float()[0]
    V["TV8_keep_rate"] = [float(v) for v in (kept / n).tolist()]
    V["TV8_err_a"] = attempt(lambda: sp.della_magprune(row, density=0.66, epsilon=1.35))
    V["TV8_err_b"] = attempt(lambda: sp.della_magprune(row, density=0.5, epsilon=0.5))
    V["TV8_err_c"] = attempt(lambda: sp.della_magprune(f([[1.0], [2.0]]), density=0.5, epsilon=0.1))
    g = torch.Generator().manual_seed(9)
    X8 = torch.randn(200, 100, generator=g)
    torch.manual_seed(9)
    o8 = sp.della_magprune(X8, density=0.5, epsilon=0.15, rescale_norm=sp.RescaleNorm.l1)
    V["TV8_bulk"] = {"keep": float((o8 != 0).float().mean()),
                     "rel_l1_error": abs(float(o8.abs().sum() / X8.abs().sum()) - 1)}

    def sl(a, b, t):
        return run("slerp", [f(a), f(b)], 0, params={"t": t})
    V["TV9a"] = attempt(lambda: sl([1, 0], [0, 2], 0.75))
    V["TV9b"] = attempt(lambda: sl([[1, 0], [0, 0]], [[0, 0], [0, 3]], 0.3))
    V["TV9c"] = attempt(lambda: sl([0, 0], [3, 4], 0.3))
    V["TV9d"] = attempt(lambda: sl([1, 2], [2, 4], 0.3))
    V["TV9e"] = attempt(lambda: sl([1, 0], [-2, 0], 0.5))

    A10, B10 = f([[1, 0], [0, 1]]), f([[0, 1], [0, 1]])
    w11 = [{"weight": 1.0}, {"weight": 1.0}]
    V["TV10a"] = attempt(lambda: run("nuslerp", [A10, B10], tparams=w11,
                                     params={"nuslerp_flatten": False, "nuslerp_row_wise": False}))
    V["TV10b"] = attempt(lambda: run("nuslerp", [A10, B10], tparams=w11,
                                     params={"nuslerp_flatten": False, "nuslerp_row_wise": True}))
    V["TV10c"] = attempt(lambda: run("nuslerp", [A10, B10], tparams=w11))
    V["TV10d"] = attempt(lambda: run("nuslerp", [1 + A10, 1 + B10, torch.ones(2, 2)], 2,
                                     tparams=w11 + [{}]))
    V["TV10e"] = attempt(lambda: run("nuslerp", [A10, B10], tparams=[{"weight": -0.5}, {"weight": 0.5}]))
    V["TV10f"] = attempt(lambda: run("nuslerp", [f([1, 0]), f([0, 2])],
                                     tparams=[{"weight": 1.0}, {"weight": 3.0}]))

    V["TV11a"] = attempt(lambda: run("multislerp", [f([1, 0]), f([0, 2])], tparams=w11))
    V["TV11b"] = attempt(lambda: run("multislerp", [f([1, 0]), f([0, 2])],
                                     tparams=[{"weight": 1.0}, {"weight": 3.0}]))
    V["TV11c"] = attempt(lambda: run("multislerp", [f([1, 0]), f([0, 2])], tparams=w11,
                                     params={"normalize_weights": False}))
    V["TV11d"] = attempt(lambda: run("multislerp", [f([2, 1]), f([1, 3]), f([1, 1])], 2, tparams=w11 + [{}]))
    V["TV11e"] = attempt(lambda: run("multislerp", [f([1, 0]), f([-1, 0])], tparams=w11))
    V["TV11f"] = attempt(lambda: run("multislerp", [f([1, 0]), f([-1, 0]), f([0, 0])], tparams=w11 + [{"weight": 1.0}]))

    c10, s10 = np.cos(np.radians(10)), np.sin(np.radians(10))
    K = [f([1, 0]), f([2 * c10, 2 * s10]), f([0, 3])]
    V["TV12a"] = attempt(lambda: run("karcher", K))
    V["TV12b"] = attempt(lambda: run("karcher", K, params={"max_iter": 0}))
    V["TV12c"] = attempt(lambda: run("karcher", [f([1, 0]), f([-1, 0])]))
    V["TV12d"] = attempt(lambda: run("karcher", [f([1, 0]), f([0, 0])]))

    w0 = torch.ones(2, 2)
    w1, w2, w2c = f([[2, 1], [1, 3]]), f([[2, 2], [1, 1]]), f([[1, 2], [2, 1]])
    V["TV13a"] = attempt(lambda: run("model_stock", [w0, w1, w2], 0))
    V["TV13b"] = attempt(lambda: run("model_stock", [w0, w1, w2], 0, params={"filter_wise": True}))
    V["TV13c"] = attempt(lambda: run("model_stock", [w0, w1, w2c], 0))

    z4 = torch.zeros(4)
    s1, s2 = f([1, -2, 0.5, 0]), f([3, 1, 0.5, 0])
    V["TV14a1"] = attempt(lambda: run("sce", [s1, s2, z4], 2))
    V["TV14a2"] = attempt(lambda: run("sce", [s1, s2, z4], 2, params={"select_topk": 0.5}))
    one5 = torch.ones(5)
    R = [f([2, 1, 3, 1.000001, 1]), f([1, 0, 5, 1, 1]), f([1, 1, 0, 1, 1]), one5]
    V["TV14b_ram"] = attempt(lambda: run("ram", R, 3))
    V["TV14b_ramplus"] = attempt(lambda: run("ramplus_tl", R, 3))
    V["TV14b_ramplus2"] = attempt(lambda: run("ramplus_tl", R, 3, params={"r": 0.5, "alpha": 10.0}))
    V["TV14c"] = attempt(lambda: run("nearswap", [torch.ones(4), f([1, 1.0001, 1.5, 3])], 0, params={"t": 0.01}))
    af = [torch.zeros(2, 4), f([[0.1, 0, 0, 0], [2, 0, -1, 0.5]])]
    V["TV14d"] = attempt(lambda: run("arcee_fusion", af, 0))
    V["TV14d_bf16"] = attempt(lambda: run("arcee_fusion", [t.to(torch.bfloat16) for t in af], 0))
    return V


def write_vectors(V):
    with open(os.path.join(HERE, "vectors.json"), "w") as f:
        json.dump({"mergekit": mergekit_version(), "vectors": V}, f, indent=1, sort_keys=True)
        f.write("\n")

    def lua(v, ind=""):
        if isinstance(v, dict):
            inner = ",\n".join(f"{ind}  [{json.dumps(k)}] = {lua(x, ind + '  ')}" for k, x in sorted(v.items()))
            return "{\n" + inner + "\n" + ind + "}"
        if isinstance(v, list):
            return "{" + ", ".join(lua(x, ind) for x in v) + "}"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            if v != v:
                return "0/0"
            if v in (float("inf"), float("-inf")):
                return "1/0" if v > 0 else "-1/0"
            return repr(float(v))
        return json.dumps(v)
    with open(os.path.join(HERE, "vectors.lua"), "w") as f:
        f.write("-- generated by tests/golden/generate.py from vectors.json; do not edit\n")
        f.write("return " + lua(V) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", help="run only cases whose name contains this")
    ap.add_argument("--no-models", action="store_true", help="keep existing models/")
    ap.add_argument("--no-vectors", action="store_true")
    ap.add_argument("--mergekit", choices=sorted(RELEASES), default="0.1.4",
                    help="the mergekit release to run (its own venv and cases folder)")
    args = ap.parse_args()
    select_release(args.mergekit)
    # torch's and MKL's kernels as dispatched on an AVX2 host (the 0.1.4
    # goldens' host; crucible reproduces that dispatch: spec/compat.md)
    os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
    os.environ.setdefault("MKL_ENABLE_INSTRUCTIONS", "AVX2")
    ensure_venv()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import logging
    logging.disable(logging.WARNING)
    build_chunk_models()
    if RELEASE == "0.1.5":
        build_lora_models()
    if RELEASE == "0.1.4":
        pin_model_order()
        register_ram()
    else:
        # the models are the 0.1.4 run's (bytes unchanged); the vectors are
        # 0.1.4's per-tensor API
        args.no_models = args.no_vectors = True
        models_for_transformers5()
    if not args.no_models:
        build_models()
    failed = []
    for case in cases():
        if args.only and args.only not in case["name"]:
            continue
        try:
            run_case(case)
            print("ok  ", case["name"])
        except Exception as e:
            failed.append(case["name"])
            print("FAIL", case["name"], type(e).__name__, e)
    if not args.no_vectors and not args.only:
        write_vectors(vectors())
        print("vectors.json written")
    shutil.rmtree(os.path.join(HERE, ".out"), ignore_errors=True)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
