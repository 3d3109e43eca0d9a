#!/usr/bin/env python3
"""Golden GGUF files: what llama.cpp's converter writes for small synthetic
models, for tests/e2e/gguf.sh to compare `crucible convert` with byte for byte.

Reference (pinned): llama-cpp-python 0.3.36 from PyPI, source distribution
(sha256 832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e),
its vendor/llama.cpp/convert_hf_to_gguf.py run with its own vendored gguf-py
(the converter puts it first on sys.path). Fetch and unpack it with

    pip download --no-binary :all: --no-deps llama-cpp-python==0.3.36
    tar xzf llama_cpp_python-0.3.36.tar.gz

and run, with a Python that has torch, numpy, transformers (and tqdm):

    python tests/golden/gguf/generate.py CRUCIBLE_BINARY LLAMA_CPP_DIR [CASE...]

LLAMA_CPP_DIR is .../llama_cpp_python-0.3.36/vendor/llama.cpp. The versions
used are written to tests/golden/gguf/versions.json.

The one change to the converter: crucible synth's tokenizer (byte-level BPE
without merges) has a pre-tokenizer hash that no table entry matches, so the
converter would refuse it (spec/gguf.md §5). Its get_vocab_base_pre is
replaced by one returning the name the case gives, the value `crucible
convert --gguf-pre NAME` writes. Everything else is the converter's own code.

Q4_0 (spec/gguf.md §7.5): the converter has no --outtype q4_0, so a q4_0 case
runs it with --outtype q8_0 and two more patches: `tensor_force_quant` names
the type crucible's rule gives each tensor that the converter would quantise
(Q4_0; Q8_0 for the output matrix, the embedding when tied, and attn_k/attn_v
with exactly 8 experts), and `general.file_type` is written as 2
(MOSTLY_Q4_0). The blocks come from the vendored gguf-py's numpy Q4_0
(quants.py), which computes ggml's quantize_row_q4_0_ref; the order, names,
shapes, metadata and the F16 fallback are the converter's own.
"""
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TYPES = ["f32", "f16", "bf16", "q8_0", "q4_0"]

# transformers 5 loads a qwen2 model's tokenizer as Qwen2Tokenizer, whose
# default pad token "<|endoftext|>" is added past vocab_size when
# tokenizer_config.json names no pad token, and the converter then fails its
# assert max(vocab ids) < vocab_size. synth's tokenizer_config names none, so
# the qwen2 case names one (tests/e2e/gguf.sh writes the same text).
QWEN2_TOKENIZER_CONFIG = """{
  "add_bos_token": true,
  "add_eos_token": false,
  "bos_token": "<s>",
  "clean_up_tokenization_spaces": false,
  "eos_token": "</s>",
  "model_max_length": 2048,
  "pad_token": "</s>",
  "tokenizer_class": "PreTrainedTokenizerFast",
  "unk_token": "<unk>"
}
"""

# A model card in the shape crucible merge writes (Hub ids in base_model,
# tags), for the general.base_model.* / general.tags keys and the name
# heuristics on a versioned directory name (tests/e2e/gguf.sh writes the same).
MERGE_README = """---
base_model:
- org/Name-7B-v0.1
- mistralai/Mistral-7B-Instruct-v0.2
library_name: transformers
tags:
- merge
- crucible
- mergekit

---
# Llama-3-merge-8B-v0.2

A merge.
"""

# The SentencePiece case (spec/gguf.md 4.3): a tiny BPE model with byte
# fallback, one user-defined and one control symbol, trained by
# make_spm_model() into spm/tokenizer.model (committed: tests/e2e/gguf.sh
# copies it), 300 pieces under a vocab_size of 304 (four [PADi] slots), with
# tokenizer_config's added_tokens_decoder (a special, a special-looking and
# a plain token with U+2581) and added_tokens.json over those slots.
SPM_TOKENIZER_CONFIG = """{
  "add_bos_token": true,
  "add_eos_token": false,
  "add_prefix_space": true,
  "added_tokens_decoder": {
    "0": {"content": "<unk>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false, "special": true},
    "1": {"content": "<s>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false, "special": true},
    "2": {"content": "</s>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false, "special": true},
    "300": {"content": "<|im_end|>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false, "special": false},
    "302": {"content": "\u2581hello\u2581world", "lstrip": false, "normalized": true, "rstrip": false, "single_word": false, "special": false},
    "310": {"content": "<far>", "special": true}
  },
  "bos_token": "<s>",
  "chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}",
  "clean_up_tokenization_spaces": false,
  "eos_token": "</s>",
  "model_max_length": 2048,
  "pad_token": "<unk>",
  "tokenizer_class": "LlamaTokenizer",
  "unk_token": "<unk>"
}
"""
SPM_ADDED_TOKENS = """{"<tool_call>": 301, "<beyond>": 400}
"""
SPM_TEXT = """The quick brown fox jumps over the lazy dog.
A merge of two models is written straight to GGUF.
Sphinx of black quartz, judge my vow!
How vexingly quick daft zebras jump.
Pack my box with five dozen liquor jugs.
"""


def make_spm_model(path):
    """spm/tokenizer.model: made once, then committed (training is deterministic
    with one thread, but the file is what the tests read)."""
    import io
    import sentencepiece as spm
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter((SPM_TEXT * 20).splitlines()), model_writer=buf,
                                   vocab_size=300, model_type="bpe", byte_fallback=True,
                                   normalization_rule_name="identity", user_defined_symbols=["<tool>"],
                                   control_symbols=["<ctl>"], character_coverage=1.0, hard_vocab_limit=False,
                                   num_threads=1, minloglevel=2)
    path.write_bytes(buf.getvalue())


def make_llama_hf_tokenizer(synth_dir, path):
    """llama-hf/tokenizer.json (committed): synth's tokenizer.json made a
    Llama-style byte-fallback BPE (the converter's LlamaHf path, taken when
    there is no tokenizer.model): ids 3..258 become <0x00>..<0xFF>, a
    Sequence decoder, and three added tokens past the base vocabulary (two
    special: true but unnamed, which transformers 5 does not count as
    special, and a plain one)."""
    t = json.loads((synth_dir / "tokenizer.json").read_text())
    m = t["model"]
    m["byte_fallback"] = True
    m["vocab"] = {("<0x%02X>" % (i - 3) if 3 <= i < 259 else k): i for k, i in m["vocab"].items()}
    t["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"}]}
    for i, (content, special) in enumerate((("<|im_start|>", True), ("<tool>", True), ("plain", False))):
        t["added_tokens"].append({"id": 272 + i, "content": content, "single_word": False, "lstrip": False,
                                  "rstrip": False, "normalized": not special, "special": special})
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(t, indent=1, ensure_ascii=False) + "\n")


LLAMA = ["--arch", "llama", "--layers", "2", "--hidden", "32", "--intermediate", "48",
         "--heads", "2", "--kv-heads", "1", "--vocab", "272"]

LLAMA3_ROPE = ('"rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0, '
               '"original_max_position_embeddings": 64, "rope_type": "llama3"},')
LLAMA32_ROPE = ('"rope_parameters": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0, '
                '"original_max_position_embeddings": 8192, "rope_theta": 500000.0, "rope_type": "llama3"},')

# (case name = model directory name, synth arguments, --gguf-pre,
#  tokenizer_config.json replacement, README.md, types[, extra files: name -> text, or ("copy", fixture path)])
MODELS = [
    ("llama", LLAMA, "llama-bpe", None, None, TYPES),
    ("qwen2", ["--arch", "qwen2", "--layers", "2", "--hidden", "32", "--intermediate", "64",
               "--heads", "4", "--kv-heads", "2", "--vocab", "272"], "qwen2", QWEN2_TOKENIZER_CONFIG, None, TYPES),
    # qwen3: qwen2's path with q/k norms (attn_q_norm / attn_k_norm, F32) and head_dim's key_length
    ("qwen3", ["--arch", "qwen3", "--layers", "2", "--hidden", "64", "--intermediate", "64",
               "--heads", "4", "--kv-heads", "2", "--vocab", "272"], "qwen2", QWEN2_TOKENIZER_CONFIG, None,
     ["bf16", "q8_0", "q4_0"]),
    ("Llama-3-merge-8B-v0.2", LLAMA, "llama-bpe", None, MERGE_README, ["f16"]),
    # synth args None: made by build_mixtral (crucible moe, classic layout)
    ("mixtral", None, "llama-bpe", None, None, ["bf16", "q8_0", "q4_0"]),
    # tied embeddings: token_embd is the output matrix, Q8_0 under q4_0
    ("llama-tied", ["--arch", "llama", "--layers", "2", "--hidden", "64", "--intermediate", "64",
                    "--heads", "2", "--kv-heads", "1", "--vocab", "272", "--tied"], "llama-bpe", None, None, ["q4_0"]),
    # SentencePiece: the converter's _set_vocab_sentencepiece (tokenizer.model beside synth's tokenizer.json,
    # which SpecialVocab still reads); "default" is the pre it writes itself
    ("llama-spm", ["--arch", "llama", "--layers", "2", "--hidden", "32", "--intermediate", "48",
                   "--heads", "2", "--kv-heads", "1", "--vocab", "304"], "default", SPM_TOKENIZER_CONFIG, None,
     ["f16", "q8_0"], {"tokenizer.model": ("copy", "spm/tokenizer.model"), "added_tokens.json": SPM_ADDED_TOKENS}),
    # Qwen MoE (Qwen2MoeModel; Qwen3MoeModel inherits it): build_qwen_moe (crucible moe, per-expert layout)
    ("qwen2moe", "qwen2moe", "qwen2", QWEN2_TOKENIZER_CONFIG, None, ["bf16", "q8_0", "q4_0"]),
    ("qwen3moe", "qwen3moe", "qwen2", QWEN2_TOKENIZER_CONFIG, None, ["bf16", "q8_0"]),
    # LlamaHf: a byte-fallback BPE tokenizer.json and no tokenizer.model
    ("llama-hf", LLAMA, "default", None, None, ["f16"],
     {"tokenizer.json": ("copy", "llama-hf/tokenizer.json")}),
    # llama3 rope (Llama 3.1/3.2): rope_freqs.weight first; head_dim 16 puts two of its 8 factors in the
    # smooth band (original context 64) and all 8 on torch's scalar pow path (spec/gguf.md 6.5)
    ("llama-rope3", LLAMA, "llama-bpe", None, None, ["f32"],
     {"config.json": ("replace", '"rope_scaling": null,', LLAMA3_ROPE)}),
    # Llama 3.2 1B's rope (transformers 5 rope_parameters, theta 500000, head_dim 64): factors 15-17 in the smooth
    # band on torch's SIMD pow, whose results for this (theta, dim) check_rope_pow.py found equal to powf's
    ("llama-rope3-64", ["--arch", "llama", "--layers", "1", "--hidden", "128", "--intermediate", "48", "--heads", "2",
                        "--kv-heads", "1", "--vocab", "272"], "llama-bpe", None, None, ["f16"],
     {"config.json": ("replace", '"rope_scaling": null,', LLAMA32_ROPE)}),
]

MIXTRAL_BASE = ["--arch", "llama", "--layers", "2", "--hidden", "32", "--intermediate", "64",
                "--heads", "2", "--kv-heads", "1", "--vocab", "272", "--seed", "1"]
MOE_CONFIG = """base_model: base
gate_mode: random
dtype: bfloat16
experts:
  - source_model: e1
  - source_model: e2
"""


def build_mixtral(crucible, tmp, model):
    """Two seeded fine-tunes of a synth llama as a Mixtral (tests/e2e/gguf.sh does the same)."""
    subprocess.run([str(crucible), "synth", str(tmp / "base")] + MIXTRAL_BASE, check=True)
    for e, seed in (("e1", "2"), ("e2", "3")):
        subprocess.run([str(crucible), "synth", str(tmp / e), "--from", str(tmp / "base"), "--delta-scale", "0.1",
                        "--seed", seed], check=True)
    (tmp / "moe.yml").write_text(MOE_CONFIG)
    subprocess.run([str(crucible), "moe", "moe.yml", str(model), "--quiet", "--mergekit-version", "0.1.4"], check=True, cwd=tmp)

# Qwen MoE (spec/gguf.md §11 item 4), made by crucible moe from seeded synth models in the per-expert
# layout (--moe-layout classic; tests/e2e/gguf.sh also converts qwen3moe's fused layout, 0.1.5's default,
# which the converter gives the same file): qwen2moe with a shared expert and its [1, H] gate, qwen3moe
# with q/k norms
QWEN_MOE = {
    "qwen2moe": (["--arch", "qwen2", "--layers", "2", "--hidden", "32", "--intermediate", "64", "--heads", "4",
                  "--kv-heads", "2", "--vocab", "272", "--seed", "1"],
                 "architecture: qwen\nexperts_per_token: 1\nshared_experts:\n  - source_model: base\n"
                 "    residual_scale: 0.5\n"),
    "qwen3moe": (["--arch", "qwen3", "--layers", "2", "--hidden", "32", "--intermediate", "32", "--heads", "2",
                  "--kv-heads", "1", "--vocab", "272", "--seed", "1"], "experts_per_token: 1\n"),
}


def build_qwen_moe(crucible, tmp, model, kind):
    """Two seeded fine-tunes of a synth qwen2/qwen3 as a Qwen MoE (tests/e2e/gguf.sh does the same)."""
    synth, extra = QWEN_MOE[kind]
    d = tmp / ("src-" + kind)
    subprocess.run([str(crucible), "synth", str(d / "base")] + synth, check=True)
    for e, seed in (("e1", "2"), ("e2", "3")):
        subprocess.run([str(crucible), "synth", str(d / e), "--from", str(d / "base"), "--delta-scale", "0.1",
                        "--seed", seed], check=True)
    (d / "moe.yml").write_text(MOE_CONFIG + extra)
    subprocess.run([str(crucible), "moe", "moe.yml", str(model), "--quiet", "--moe-layout", "classic"], check=True,
                   cwd=d)


RUNNER = r'''
import runpy, sys
from pathlib import Path
conv = Path(sys.argv[1]); pre = sys.argv[2]
sys.argv = [str(conv)] + sys.argv[3:]
sys.path.insert(0, str(conv.parent))
sys.path.insert(1, str(conv.parent / "gguf-py"))
import conversion.base as base
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
if "--q4_0" in sys.argv:
    # spec/gguf.md 7.5: crucible's Q4_0 rule over the converter's q8_0 run
    sys.argv.remove("--q4_0")
    import json, struct
    import gguf
    model = Path(sys.argv[1])
    names = set()
    for f in model.glob("*.safetensors"):
        with open(f, "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            names |= set(json.loads(fh.read(n)))
    tied = "lm_head.weight" not in names
    config = json.loads((model / "config.json").read_text())
    n_expert = config.get("num_local_experts", config.get("num_experts", 0))
    Q = gguf.GGMLQuantizationType
    def force(self, name, new_name, bid, n_dims):
        if (n_dims <= 1 or new_name.endswith("_norm.weight") or not new_name.endswith(".weight")
                or new_name.endswith(".ffn_gate_inp.weight") or new_name.endswith(".ffn_gate_inp_shexp.weight")):
            return False   # the converter's F32 rules
        if (new_name == "output.weight" or (tied and new_name == "token_embd.weight")
                or (n_expert == 8 and (new_name.endswith(".attn_k.weight") or new_name.endswith(".attn_v.weight")))):
            return Q.Q8_0
        return Q.Q4_0
    base.ModelBase.tensor_force_quant = force
    orig = gguf.GGUFWriter.add_file_type
    gguf.GGUFWriter.add_file_type = lambda self, ft: orig(self, 2)
runpy.run_path(str(conv), run_name="__main__")
'''


def main():
    crucible, llama_cpp = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    conv = llama_cpp / "convert_hf_to_gguf.py"
    import numpy
    import sentencepiece
    import torch
    import transformers
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "runner.py").write_text(RUNNER)
        old = HERE / "versions.json"
        cases = json.loads(old.read_text())["cases"] if old.exists() else {}
        only = sys.argv[3:]          # case names to regenerate (default: all)
        for name, args, pre, tok_config, readme, types, *extra in MODELS:
            if only and name not in only:
                continue
            extra = extra[0] if extra else {}
            model = tmp / name      # the directory name is general.name's source
            if args is None:
                build_mixtral(crucible, tmp, model)
            elif isinstance(args, str):
                build_qwen_moe(crucible, tmp, model, args)
            else:
                subprocess.run([str(crucible), "synth", str(model)] + args, check=True)
            if tok_config:
                (model / "tokenizer_config.json").write_text(tok_config)
            if readme:
                (model / "README.md").write_text(readme)
            for fname, text in extra.items():
                if isinstance(text, tuple) and text[0] == "replace":   # ("replace", old, new) in synth's file
                    f = model / fname
                    assert text[1] in f.read_text()
                    f.write_text(f.read_text().replace(text[1], text[2]))
                elif isinstance(text, tuple):   # ("copy", a committed fixture), made once if missing
                    src = HERE / text[1]
                    if not src.exists():
                        src.parent.mkdir(exist_ok=True)
                        make_spm_model(src) if fname == "tokenizer.model" else make_llama_hf_tokenizer(model, src)
                    shutil.copy(src, model / fname)
                else:
                    (model / fname).write_text(text)
            for t in types:
                out = HERE / f"{name}-{t}.gguf"
                if out.exists():
                    out.unlink()
                q4 = ["--outtype", "q8_0", "--q4_0"] if t == "q4_0" else ["--outtype", t]
                subprocess.run([sys.executable, str(tmp / "runner.py"), str(conv), pre, str(model)] + q4 +
                               ["--outfile", str(out)], check=True)
                cases[out.name] = {"synth": args if args is not None else "build_mixtral", "gguf_pre": pre, "outtype": t,
                                   "tokenizer_config_replaced": tok_config is not None,
                                   "readme": readme is not None, "extra_files": sorted(extra),
                                   "sha256": hashlib.sha256(out.read_bytes()).hexdigest()}
    versions = {
        "reference": "llama-cpp-python==0.3.36 sdist, vendor/llama.cpp/convert_hf_to_gguf.py with its gguf-py",
        "sdist_sha256": "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e",
        "python": sys.version.split()[0], "torch": torch.__version__, "numpy": numpy.__version__,
        "transformers": transformers.__version__, "sentencepiece": sentencepiece.__version__,
        "patch": "TextModel.get_vocab_base_pre returns the case's gguf_pre (synth's tokenizer has no known hash); "
                 "q4_0 cases: --outtype q8_0 with tensor_force_quant giving crucible's Q4_0 rule and file_type 2",
        "cases": cases,
    }
    (HERE / "versions.json").write_text(json.dumps(versions, indent=2) + "\n")


if __name__ == "__main__":
    main()
