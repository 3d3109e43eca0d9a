#!/usr/bin/env python3
"""check_gguf_llamacpp.py — does llama.cpp run what `crucible merge OUT.gguf`
writes, and does it compute what transformers computes on the same merge
written as safetensors? Run by hand (needs torch, transformers and
llama-cpp-python; none is needed to build or test crucible):

  PYTHON tests/compat/check_gguf_llamacpp.py --crucible zig-out/bin/crucible

For each architecture it takes a small model with a real tokenizer (the
forward-pass fixtures, tests/fixtures/forward/{llama,qwen2}: `crucible
synth`'s own tokenizer has no merges, so llama.cpp cannot load it, see
spec/gguf.md §5) as the base, synthesises two fine-tunes of it (`crucible
synth --from`), merges them with TIES once to a model directory and once straight
to GGUF in each --gguf-type, then feeds the same token ids (the merged
tokenizer's, through transformers) to transformers (float32, eager) and to
llama.cpp (llama-cpp-python, logits for every position, f32 KV cache), and prints per file:
the largest absolute logit difference, that difference over the logits'
standard deviation, and how often the two agree on the most likely next
token. It also greedily generates a few tokens with llama.cpp, to show the
file generates. Results go to stdout (tests/compat/results/gguf_llamacpp.txt
keeps one run).
"""
import argparse
import json
import os
import shutil
import subprocess
import tempfile

import numpy as np
import torch
import transformers
from llama_cpp import Llama
import llama_cpp

PROMPTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Merging models is cheaper than training them, 12345 times over!",
    "def f(x):\n    return x * 2\n",
]

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures", "forward")
# arch: the fixture, and the --gguf-pre its tokenizer needs (None: the
# converter's own choice: the llama fixture's byte-fallback BPE takes the
# LlamaHf path, which hashes nothing)
ARCHS = {"llama": ("llama", None), "qwen2": ("qwen2", "qwen2")}
# the tokenizer_config.json each fixture lacks (merge copies a tokenizer only
# with one, as mergekit's _copy_tokenizer does)
TOKENIZER_CONFIG = {
    "llama": {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
              "unk_token": "<unk>"},
    "qwen2": {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>",
              "pad_token": "<|endoftext|>"},
}
FILES = ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json"]

TYPES = ["f32", "f16", "bf16", "q8_0", "q4_0"]


def run(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


def hf_logits(model_dir, ids):
    model = transformers.AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


def cpp_logits(gguf, ids):
    # an f32 KV cache (llama.cpp's default is f16), so that f32 files compare
    # the weights' conversion and not the cache's rounding
    llm = Llama(model_path=gguf, n_ctx=256, logits_all=True, n_threads=2, verbose=False,
                type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32)
    llm.eval(ids)
    logits = np.array(llm.scores[: len(ids)], dtype=np.float32)
    llm.reset()
    gen = []
    for tok in llm.generate(ids, top_k=1, temp=0.0):
        gen.append(tok)
        if len(gen) == 8:
            break
    return logits, gen


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--crucible", required=True)
    a = ap.parse_args()
    bin_ = os.path.abspath(a.crucible)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"llama-cpp-python {llama_cpp.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        for arch, (fixture, pre) in ARCHS.items():
            base = os.path.join(tmp, f"{arch}-base")
            os.mkdir(base)
            for f in FILES:
                shutil.copy(os.path.join(FIXTURES, fixture, f), base)
            # the fixtures have no tokenizer_config.json, without which
            # merge copies no tokenizer (mergekit's _copy_tokenizer rule)
            with open(os.path.join(base, "tokenizer_config.json"), "w") as f:
                json.dump(TOKENIZER_CONFIG[arch], f, indent=2)
            fts = []
            for s in (2, 3):
                ft = os.path.join(tmp, f"{arch}-ft{s}")
                run(bin_, "synth", ft, "--from", base, "--delta-scale", "0.05", "--seed", str(s))
                fts.append(ft)
            recipe = os.path.join(tmp, f"{arch}.yml")
            with open(recipe, "w") as f:
                f.write(f"merge_method: ties\nbase_model: {base}\ndtype: bfloat16\nmodels:\n")
                for ft in fts:
                    f.write(f"  - model: {ft}\n    parameters: {{weight: 0.5, density: 0.5}}\n")
            out = os.path.join(tmp, f"{arch}-merged")
            run(bin_, "merge", recipe, out, "--quiet")
            tok = transformers.AutoTokenizer.from_pretrained(out)
            for t in TYPES:
                g = os.path.join(tmp, f"{arch}-{t}.gguf")
                run(bin_, "merge", recipe, g, "--gguf-type", t, "--quiet", *(["--gguf-pre", pre] if pre else []))
                worst = worst_rel = 0.0
                agree = total = 0
                gens = []
                for p in PROMPTS:
                    ids = tok(p)["input_ids"]
                    ref = hf_logits(out, ids)
                    got, gen = cpp_logits(g, ids)
                    d = np.abs(ref - got)
                    worst = max(worst, float(d.max()))
                    worst_rel = max(worst_rel, float(d.max() / ref.std()))
                    agree += int((ref.argmax(-1) == got.argmax(-1)).sum())
                    total += len(ids)
                    gens.append(len(gen))
                print(f"{arch:6} {t:5} max|dlogit| {worst:.3e}  /std {worst_rel:.3e}  "
                      f"top-1 agree {agree}/{total}  generated {gens} tokens")


if __name__ == "__main__":
    main()
