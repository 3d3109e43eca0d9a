#!/usr/bin/env python3
"""gen_gate_fixtures.py — mergekit-moe's own `hidden` / `hidden_avg` gate
computation (mergekit.moe.router.get_gate_params, which loads the model in
bf16 and runs each prompt list as one left-padded batch) on the forward-pass
fixture models, saved as expected values for tests/unit/test_gates.c (run by
hand with the mergekit venv; the C tests need no Python).

  tests/fixtures/gates/{llama,qwen2}.safetensors:
    hidden, hidden_avg   F32 [L, E, H]   the gates (bf16 values, widened)
    ids_e{e}_{pos,neg}   I32 [B, T]      the padded batch mergekit built
                                         (pads first; checks the tokenizer and
                                         the padding rule the C test applies)
The prompts are EXPERTS below; test_gates.c repeats them. The llama fixture
has a bos token (prompts start with "<s>", pad = bos); the qwen2 one has
none (no BOS glued on, pad = eos "<|endoftext|>"). transformers 4.x reads v4
config keys, so the llama config's v5 `rope_parameters` is rewritten as
rope_theta + rope_scaling in a temporary copy (same model).

usage: tests/golden/.venv/bin/python tests/compat/gen_gate_fixtures.py
"""
import json
import os
import shutil
import tempfile

import torch
import transformers
from safetensors.torch import save_file
from mergekit.common import ModelReference
from mergekit.moe.config import Expert
from mergekit.moe.router import get_gate_params, tokenize_prompts

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "fixtures")

# keep in sync with tests/unit/test_gates.c
EXPERTS = [
    (["The quick brown fox", "numbers 12345 and more"], ["café and emoji 😀"]),
    (["x", "a much longer prompt that runs well past thirty-two tokens, so the batch is long"], []),
]
SPECIAL = {"llama": ("<s>", "</s>"), "qwen2": (None, "<|endoftext|>")}


def v4_config(path):
    with open(path) as f:
        c = json.load(f)
    rp = c.pop("rope_parameters", None)
    if rp:
        c["rope_theta"] = rp.pop("rope_theta", 10000.0)
        c["rope_scaling"] = rp if rp.get("rope_type", "default") != "default" else None
    with open(path, "w") as f:
        json.dump(c, f, indent=2)


def main():
    os.makedirs(os.path.join(FIX, "gates"), exist_ok=True)
    for name in ("llama", "qwen2"):
        with tempfile.TemporaryDirectory() as d:
            m = os.path.join(d, name)
            shutil.copytree(os.path.join(FIX, "forward", name), m)
            v4_config(os.path.join(m, "config.json"))
            bos, eos = SPECIAL[name]
            tok = transformers.PreTrainedTokenizerFast(tokenizer_file=os.path.join(m, "tokenizer.json"),
                                                       bos_token=bos, eos_token=eos)
            # as mergekit/scripts/moe.py prepares it
            tok.padding_side = "left"
            tok.pad_token_id = tok.bos_token_id
            if tok.pad_token_id is None:
                tok.pad_token = tok.eos_token
            experts = [Expert(source_model=m, positive_prompts=p, negative_prompts=n or None) for p, n in EXPERTS]
            out = {}
            for mode in ("hidden", "hidden_avg"):
                g = get_gate_params(ModelReference.parse(m), tok, experts, mode=mode, device="cpu")
                out[mode] = g.float().contiguous()
            for e, (p, n) in enumerate(EXPERTS):
                for kind, prompts in (("pos", p), ("neg", n)):
                    if prompts:
                        out[f"ids_e{e}_{kind}"] = tokenize_prompts(prompts, tok)["input_ids"].to(torch.int32).contiguous()
            save_file(out, os.path.join(FIX, "gates", f"{name}.safetensors"))
            print(name, {k: tuple(v.shape) for k, v in out.items()})


if __name__ == "__main__":
    main()
