#!/usr/bin/env python3
"""check_moe.py — crucible moe against mergekit-moe (run by hand; the C tests
need no Python).

Run it with the venv of the mergekit release to compare; crucible is run
with the matching --mergekit-version (0.1.5: the fused expert layout and a
transformers-5 config.json; 0.1.4: classic).

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
  - tensor names identical, and every other tensor (experts, fused or
    classic, and base tensors) bit for bit;
  - a Qwen2-MoE (qwen2 base, prompted shared expert with residual_scale):
    names identical, non-gate tensors bit-identical, gates within 1e-3 —
    cheap_embed, and hidden / hidden_avg on a copy without bos_token
    (no BOS glued on, padding with eos, q/k/v biases in bf16), and hidden on
    a copy whose bos is only in special_tokens_map.json;
  - writers and config.json (0.1.5): random and cheap_embed gates on bases
    whose config.json varies (llama3 rope_scaling, no head_dim, no dtype,
    `dtype` + `rope_parameters` already, eos list, PreTrainedConfig keys,
    a mistral base with sliding_window, a tied base, residual_scale), the
    Qwen3 MoE writer (qwen3 base, sliding window layers), the Qwen MoE
    writer on qwen2 and llama bases, the DeepSeek MoE writer (0.1.5: prompt-less
    shared expert with cheap_embed / hidden / random gates, a mistral base via
    `architecture: deepseek`, a tied base, a llama3 base with undeclared keys): config.json text identical but for
    mergekit's `transformers_version` line, every non-router tensor
    bit-identical, names identical, and the index metadata's
    mergekit_version on a sharded output; experts of different dtypes
    with no output dtype (fused tensors promoted as torch.stack does).
Writes tests/compat/results/moe.txt (moe-0.1.4.txt for 0.1.4).

usage: VENV/bin/python tests/compat/check_moe.py [CRUCIBLE_BIN]
"""
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile

# torch's CPU kernels per ISA sum in different orders; crucible reproduces
# the AVX2 ones (spec/moe.md), so mergekit-moe runs with that dispatch (as
# tests/golden/generate.py does) — on an AVX-512 host the default dispatch
# rounds a few bf16 hidden-gate elements differently
os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file as load_torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
CRUCIBLE = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "zig-out", "bin", "crucible")
MERGEKIT_MOE = os.path.join(os.path.dirname(sys.executable), "mergekit-moe")
MK_VERSION = importlib.metadata.version("mergekit")
VERSION_ARGS = ["--mergekit-version", MK_VERSION]

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


def is_router(k):
    return k.endswith("block_sparse_moe.gate.weight") or k.endswith("mlp.gate.weight") or \
        k.endswith("shared_expert_gate.weight")


def compare_llama(d, lines, label, config, tag, extra=(), informative=False):
    """mergekit-moe and crucible moe on one config over a 3-layer llama; gates
    within 1e-3 relative (max |a-b| / max |b| per layer), every other tensor
    (experts in whichever layout the release writes, base tensors)
    bit-identical. informative: report only."""
    tag = tag.replace(" ", "_")
    cfg = f"{d}/{tag}.yml"
    with open(cfg, "w") as f:
        f.write(config)
    if not os.path.isdir(f"{d}/mk_{tag}"):
        run([MERGEKIT_MOE, cfg, f"{d}/mk_{tag}"])
    out = f"{d}/cr_{tag}{'_'.join(extra)}"
    run([CRUCIBLE, "moe", cfg, out, "--quiet", *VERSION_ARGS, *extra])
    mk, cr = load_dir(f"{d}/mk_{tag}"), load_dir(out)
    routers = sorted(k for k in mk if is_router(k))
    worst, wcos, ndiff, nel = 0.0, 1.0, 0, 0
    for k in routers:
        if k not in cr:
            lines.append(f"{label}: FAIL, crucible has no {k}")
            return False
        rel, cos, nd = gate_stats(cr[k], mk[k])
        worst, wcos, ndiff, nel = max(worst, rel), min(wcos, cos), ndiff + nd, nel + cr[k].size
    good = worst <= 1e-3 and wcos > 0.999
    lines.append(f"{label} routers: max rel diff {worst:.3g}, min row cosine {wcos:.7f}, "
                 f"{ndiff}/{nel} elements differ " + ("(informative)" if informative else "ok" if good else "FAIL"))
    if informative:
        return True
    names = sorted(mk) == sorted(cr)
    rest = [k for k in mk if not is_router(k)]
    same = all(k in cr and bit_equal(cr[k], mk[k]) for k in rest)
    fused = any(k.endswith("experts.gate_up_proj") for k in mk)
    lines.append(f"{label}: names identical {names}, {len(rest)} non-router tensors "
                 f"({'fused' if fused else 'classic'} experts, base) bit-identical {same}")
    return good and names and same


def bit_equal(a, b):
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a.view(np.uint8), b.view(np.uint8))


WRITER_CFG = """base_model: {d}/{base}
gate_mode: {mode}
{extra}experts:
  - source_model: {d}/{e1}
    positive_prompts: ["hello world"]
    residual_scale: 0.5
  - source_model: {d}/{e2}
    positive_prompts: ["abc def"]
{shared}"""


def variant(d, src, name, edits):
    """a copy of model src whose config.json has `edits` applied
    (value None: key removed)"""
    dst = f"{d}/{name}"
    if not os.path.isdir(dst):
        shutil.copytree(f"{d}/{src}", dst)
        with open(f"{dst}/config.json") as f:
            cfg = json.load(f)
        for k, v in edits.items():
            if v is None:
                cfg.pop(k, None)
            else:
                cfg[k] = v
        with open(f"{dst}/config.json", "w") as f:
            json.dump(cfg, f, indent=2)
    return name


def compare_writer(d, lines, label, base, e1, e2, mode="random", extra="", shared="", shard=False):
    """one config through both tools: config.json text equal but for
    mergekit's transformers_version line, names equal, every non-router
    tensor bit-identical; routers reported (random gates are not torch's)"""
    tag = "w_" + label.replace(" ", "_").replace(",", "")
    cfg = f"{d}/{tag}.yml"
    with open(cfg, "w") as f:
        f.write(WRITER_CFG.format(d=d, base=base, e1=e1, e2=e2, mode=mode, extra=extra, shared=shared))
    args = ["--out-shard-size", "20000"] if shard else []
    run([MERGEKIT_MOE, cfg, f"{d}/mk_{tag}", *args])
    run([CRUCIBLE, "moe", cfg, f"{d}/cr_{tag}", "--quiet", *VERSION_ARGS, *args])
    with open(f"{d}/mk_{tag}/config.json") as f:
        mk_text = [ln for ln in f.read().splitlines() if '"transformers_version"' not in ln]
    with open(f"{d}/cr_{tag}/config.json") as f:
        cr_text = f.read().splitlines()
    if mk_text and mk_text[-2].endswith(",") and not cr_text[-2].endswith(","):
        mk_text[-2] = mk_text[-2][:-1]      # the dropped line was the last key
    cfg_same = mk_text == cr_text
    if not cfg_same:
        for a, b in zip(mk_text, cr_text):
            if a != b:
                lines.append(f"  config.json first difference: mergekit {a.strip()!r}, crucible {b.strip()!r}")
                break
        else:
            lines.append(f"  config.json lengths differ: mergekit {len(mk_text)}, crucible {len(cr_text)} lines")
    mk, cr = load_dir(f"{d}/mk_{tag}"), load_dir(f"{d}/cr_{tag}")
    names = sorted(mk) == sorted(cr)
    rest = [k for k in mk if not is_router(k) or mode != "random"]
    same = all(k in cr and bit_equal(cr[k], mk[k]) for k in rest if not is_router(k))
    routers = [k for k in mk if is_router(k)]
    gates = ""
    if mode != "random" and routers:
        st = [gate_stats(cr[k], mk[k]) for k in routers]
        rel = max(x[0] for x in st)
        gates = f", routers max rel diff {rel:.3g} ({sum(x[2] for x in st)} elements differ)"
        same &= rel <= 1e-3
    meta = ""
    if shard:
        with open(f"{d}/mk_{tag}/model.safetensors.index.json") as f:
            mkm = json.load(f).get("metadata", {}).get("mergekit_version")
        with open(f"{d}/cr_{tag}/model.safetensors.index.json") as f:
            crm = json.load(f).get("metadata", {}).get("mergekit_version")
        meta = f", index mergekit_version {crm!r} (mergekit {mkm!r})"
        same &= mkm == crm
    fused = any(k.endswith("experts.gate_up_proj") for k in mk)
    ok = cfg_same and names and same
    lines.append(f"writer {label}: config.json identical but transformers_version {cfg_same}, names identical "
                 f"{names} ({'fused' if fused else 'classic'}), {len([k for k in mk if not is_router(k)])} "
                 f"non-router tensors bit-identical {same}{gates}{meta} {'ok' if ok else 'FAIL'}")
    return ok


def writers(d, lines):
    """the writers and their config.json on varied bases (0.1.5 only: 0.1.4's
    config.json came from transformers 4 and is not checked here)"""
    ok = True
    syn = ["--layers", "2", "--hidden", "32", "--intermediate", "64", "--heads", "4", "--kv-heads", "2",
           "--vocab", "300"]
    for name, arch, dt in (("wl", "llama", "bfloat16"), ("wm", "mistral", "float32"), ("wq3", "qwen3", "bfloat16"),
                           ("wq2", "qwen2", "float32")):
        run([CRUCIBLE, "synth", f"{d}/{name}", "--arch", arch, *syn, "--dtype", dt, "--seed", "1"])
        run([CRUCIBLE, "synth", f"{d}/{name}1", "--from", f"{d}/{name}", "--delta-scale", "0.1", "--seed", "2"])
        run([CRUCIBLE, "synth", f"{d}/{name}2", "--from", f"{d}/{name}", "--delta-scale", "0.1", "--seed", "3"])
    run([CRUCIBLE, "synth", f"{d}/wmb", "--arch", "mistral", *syn, "--dtype", "bfloat16", "--seed", "7"])
    run([CRUCIBLE, "synth", f"{d}/wlt", "--arch", "llama", *syn, "--dtype", "bfloat16", "--seed", "5", "--tied"])
    run([CRUCIBLE, "synth", f"{d}/wlt1", "--from", f"{d}/wlt", "--delta-scale", "0.1", "--seed", "6"])
    llama3 = variant(d, "wl", "wl_llama3", {
        "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 1024, "rope_type": "llama3"},
        "rope_theta": 500000.0, "head_dim": None, "torch_dtype": None, "pretraining_tp": None,
        "return_dict": True, "_name_or_path": "x", "transformers_version": "4.40.0", "custom_key": 1.5e-7,
        "eos_token_id": [1, 2], "rms_norm_eps": 1e-5, "output_attentions": False})
    v5 = variant(d, "wl", "wl_v5", {"torch_dtype": None, "dtype": "bfloat16", "rope_theta": None,
                                    "rope_scaling": None,
                                    "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"}})
    mistral = variant(d, "wm", "wm_sw", {"sliding_window": 4096, "head_dim": None, "rope_theta": 1000000})
    nodtype = variant(d, "wm", "wm_nodtype", {"torch_dtype": None})
    q3sw = variant(d, "wq3", "wq3_sw", {"use_sliding_window": True, "sliding_window": 64, "max_window_layers": 1,
                                        "torch_dtype": None})
    shared = "shared_experts:\n  - source_model: {d}/{b}\n    positive_prompts: [\"shared stuff\"]\n"
    cases = [
        ("mixtral llama random", "wl", "wl1", "wl2", "random", "", "", True),
        ("mixtral llama cheap_embed", "wl", "wl1", "wl2", "cheap_embed", "", "", False),
        ("mixtral llama3-rope base no dtype", llama3, "wl1", "wl2", "random", "experts_per_token: 1\n", "", False),
        ("mixtral transformers-5 base", v5, "wl1", "wl2", "random", "", "", False),
        ("mixtral mistral sliding_window", mistral, "wm1", "wm2", "random", "dtype: bfloat16\n", "", False),
        ("mixtral tied base", "wlt", "wlt1", "wlt1", "random", "", "", False),
        ("mixtral no dtype, f32 + bf16 experts", nodtype, "wm1", "wmb", "random", "", "", False),
        ("qwen3 random", "wq3", "wq31", "wq32", "random", "", "", True),
        ("qwen3 cheap_embed", "wq3", "wq31", "wq32", "cheap_embed", "", "", False),
        ("qwen3 hidden", "wq3", "wq31", "wq32", "hidden", "", "", False),
        ("qwen3 hidden_avg", "wq3", "wq31", "wq32", "hidden_avg", "", "", False),
        ("qwen3 sliding layers dtype float32", q3sw, "wq31", "wq32", "random", "dtype: float32\n", "", False),
        ("qwen2_moe qwen2", "wq2", "wq21", "wq22", "random", "", shared.format(d=d, b="wq2"), False),
        ("qwen2_moe llama", "wl", "wl1", "wl2", "random", "architecture: qwen\n", shared.format(d=d, b="wl"),
         False),
    ]
    if VERSION_ARGS[-1] == "0.1.5":
        # DeepSeek MoE: a prompt-less shared expert (or architecture: deepseek)
        ds = "shared_experts:\n  - source_model: {d}/{b}\n"
        cases += [
            ("deepseek llama cheap_embed", "wl", "wl1", "wl2", "cheap_embed", "", ds.format(d=d, b="wl"), True),
            ("deepseek llama hidden", "wl", "wl1", "wl2", "hidden", "", ds.format(d=d, b="wl1"), False),
            ("deepseek llama random", "wl", "wl1", "wl2", "random", "", ds.format(d=d, b="wl"), False),
            ("deepseek mistral no shared", mistral, "wm1", "wm2", "random",
             "architecture: deepseek\ndtype: bfloat16\nexperts_per_token: 1\n", "", False),
            ("deepseek tied base", "wlt", "wlt1", "wlt1", "random", "", ds.format(d=d, b="wlt1"), False),
            ("deepseek llama3-rope base no dtype", llama3, "wl1", "wl2", "random", "", ds.format(d=d, b=llama3),
             False),
        ]
    for label, base, e1, e2, mode, extra, sh, shard in cases:
        ok &= compare_writer(d, lines, label, base, e1, e2, mode, extra, sh, shard)
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
            run([CRUCIBLE, "moe", f"{d}/{tag}.yml", f"{d}/cr_{tag}", "--quiet", *VERSION_ARGS])
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
        if MK_VERSION != "0.1.4":
            ok &= writers(d, lines)
    lines.insert(0, f"mergekit {MK_VERSION}, transformers {importlib.metadata.version('transformers')}, "
                    f"torch {torch.__version__} (ATEN_CPU_CAPABILITY={os.environ['ATEN_CPU_CAPABILITY']}); "
                    f"crucible --mergekit-version {MK_VERSION}")
    lines.append("RESULT: " + ("ok" if ok else "FAIL"))
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    name = "moe-0.1.4.txt" if MK_VERSION == "0.1.4" else "moe.txt"
    with open(os.path.join(HERE, "results", name), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
