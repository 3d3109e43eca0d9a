#!/usr/bin/env python3
"""check_forward.py — tiny random Llama and Qwen2 models built with
transformers (torch, CPU), saved as Hugging Face directories with a trained
tokenizer, plus what transformers computes on them, as fixtures for
tests/unit/test_forward.c and tests/e2e/eval.sh (run by hand; the C tests
need no Python).

  tests/fixtures/forward/llama/   BF16 weights, GQA (4 heads / 2 kv heads),
      head_dim 16 != hidden/heads, llama3 rope scaling, rms_norm_eps 1e-5,
      untied lm_head; tokenizer = the llama2 fixture (byte fallback)
  tests/fixtures/forward/qwen2/   F32 weights, q/k/v biases, tied
      embeddings, rope_theta 1e6; tokenizer = the qwen2 fixture

Each directory gets expected.safetensors (not a model file: crucible's
model reader only looks at model.safetensors):
  ids          I32 [T]         tokenizer ids of text.txt (no special tokens)
  hidden_last  F32 [L+1, H]    hidden_states[l][0, -1] (HF convention:
                               hs[l<L] enters layer l, hs[L] after the norm)
  logits       F32 [T, V]
  nll          F64 [1]         mean next-token NLL over the T-1 predictions
The reference runs in float32 on the stored (possibly bf16) weights.

usage: tests/compat/.venv/bin/python tests/compat/check_forward.py
"""
import json
import os
import shutil

import torch
import transformers
from safetensors.torch import save_file
from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "fixtures")

TEXT = """The quick brown fox jumps over the lazy dog. It's 2024, and we'll see
what happens next: numbers 12345, café, 中文文本, emoji 😀 and more text.
"""


def build(name, cfg_cls, model_cls, cfg, dtype, tokenizer):
    out = os.path.join(FIX, "forward", name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    torch.manual_seed(1234)
    config = cfg_cls(**cfg)
    model = model_cls(config).eval()
    # a wider init than the default 0.02 so every layer matters
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 1:
                p.normal_(0.0, 0.15 if p.dim() == 2 else 0.3)
                if p.dim() == 1 and "norm" in "".join(n for n, q in model.named_parameters() if q is p):
                    p.add_(1.0)
    model.to(dtype).save_pretrained(out, safe_serialization=True)
    shutil.copy(os.path.join(FIX, "tokenizers", tokenizer + ".json"), os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "text.txt"), "w", encoding="utf-8") as f:
        f.write(TEXT)

    tok = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
    ids = tok.encode(TEXT, add_special_tokens=False).ids
    ref = model_cls.from_pretrained(out, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        res = ref(torch.tensor([ids]), output_hidden_states=True)
    hs = torch.stack([h[0, -1] for h in res.hidden_states]).contiguous()
    logits = res.logits[0].float().contiguous()
    logp = torch.log_softmax(logits.double(), dim=-1)
    nll = -logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].mean()
    save_file({"ids": torch.tensor(ids, dtype=torch.int32), "hidden_last": hs, "logits": logits,
               "nll": nll.reshape(1)}, os.path.join(out, "expected.safetensors"))
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump({"transformers": transformers.__version__, "torch": torch.__version__,
                   "tokens": len(ids), "nll": nll.item(), "perplexity": torch.exp(nll).item()}, f, indent=1)
    print(f"{name}: {len(ids)} tokens, nll {nll.item():.6f}, ppl {torch.exp(nll).item():.4f}")


def main():
    build("llama", transformers.LlamaConfig, transformers.LlamaForCausalLM, dict(
        vocab_size=944, hidden_size=48, intermediate_size=96, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-5,
        max_position_embeddings=256, tie_word_embeddings=False,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
        rope_theta=500000.0, bos_token_id=1, eos_token_id=2), torch.bfloat16, "llama2")
    build("qwen2", transformers.Qwen2Config, transformers.Qwen2ForCausalLM, dict(
        vocab_size=900, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6,
        max_position_embeddings=256, tie_word_embeddings=True, rope_theta=1000000.0,
        use_sliding_window=False), torch.float32, "qwen2")


if __name__ == "__main__":
    main()
