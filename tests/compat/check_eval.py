#!/usr/bin/env python3
"""check_eval.py — the perplexity transformers computes on the forward
fixtures (tests/fixtures/forward/{llama,qwen2}, made by check_forward.py),
the way `crucible eval` is specified to compute it, stored as
tests/fixtures/forward/eval_expected.json (and .tsv, one case a line) for
tests/e2e/eval.sh (which needs no Python). Run by hand:

  PYTHON tests/compat/check_eval.py --crucible zig-out/bin/crucible

crucible writes the MoE models of the "crucible:" cases
(tests/fixtures/forward/make_moe_outputs.sh: Mixtral fused and classic,
Qwen2-MoE with a shared expert, from the forward fixtures) and is run on
every case; the relative differences are printed (the requirement is 1e-4).

Tokenization: AutoTokenizer.from_pretrained(dir)(text) — special tokens as
transformers adds them by default ("bos") — or add_special_tokens=False
("no-bos"). The llama fixture's tokenizer.json has a TemplateProcessing
"<s> $A"; qwen2's has ByteLevel (nothing added). The "llama+config" cases
add a tokenizer_config.json with add_bos_token: false / add_eos_token: true:
transformers 5 drops both keys when a tokenizer.json exists
(PreTrainedTokenizerBase._from_pretrained), so the result is the plain
llama's, and crucible must not follow them either.

Scoring: the loop of the Hugging Face perplexity guide ("Perplexity of
fixed-length models"), verbatim: windows of max_length starting every
`stride` tokens, labels -100 before the last trg_len = end - prev_end
tokens, nll_sum += loss * (num_valid_tokens - batch_size). The model runs in
float32 (the llama's bf16 weights upcast), eager attention.
"""
import argparse
import json
import os
import shutil
import subprocess
import tempfile

import torch
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "fixtures", "forward")

CONFIG_BOS_EOS = {"add_bos_token": False, "add_eos_token": True, "bos_token": "<s>", "eos_token": "</s>"}
CONFIG_BOS = {"add_bos_token": True, "eos_token": "</s>",
              "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": False, "normalized": False,
                            "rstrip": False, "single_word": False, "special": True}}

# tiny MoE models built here (random weights, a wide init so routing matters):
# (name, config class, model class, config, dtype, tokenizer fixture)
MOE_MODELS = [
    ("mixtral", "MixtralConfig", "MixtralForCausalLM", dict(
        vocab_size=944, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, max_position_embeddings=256,
        rope_theta=10000.0, sliding_window=None, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2),
     "bfloat16", "llama2"),
    ("qwen2_moe", "Qwen2MoeConfig", "Qwen2MoeForCausalLM", dict(
        vocab_size=900, hidden_size=32, intermediate_size=64, moe_intermediate_size=24,
        shared_expert_intermediate_size=40, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
        num_experts=6, num_experts_per_tok=2, norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[1],
        max_position_embeddings=256, rope_theta=1000000.0, tie_word_embeddings=True, use_sliding_window=False),
     "float32", "qwen2"),
    ("qwen3_moe", "Qwen3MoeConfig", "Qwen3MoeForCausalLM", dict(
        vocab_size=900, hidden_size=32, intermediate_size=64, moe_intermediate_size=24, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_experts=5, num_experts_per_tok=3,
        norm_topk_prob=True, max_position_embeddings=256, rope_theta=1000000.0, tie_word_embeddings=False),
     "bfloat16", "qwen2"),
]

# (model, tokenizer_config or None, special tokens, max_length or None = the whole text, stride or None)
CASES = [
    ("llama", None, True, None, None),
    ("llama", None, False, None, None),
    ("llama", None, True, 16, 5),
    ("llama", None, False, 16, 16),
    ("llama", None, True, 12, 1),
    ("qwen2", None, True, None, None),
    ("qwen2", None, False, 20, 7),
    ("llama", CONFIG_BOS_EOS, True, None, None),
    ("llama", CONFIG_BOS_EOS, True, 16, 6),
    ("llama", CONFIG_BOS, True, None, None),
    ("mixtral", None, True, None, None),
    ("mixtral", None, False, 16, 5),
    ("qwen2_moe", None, True, None, None),
    ("qwen2_moe", None, True, 20, 7),
    ("qwen3_moe", None, True, None, None),
    ("qwen3_moe", None, False, 15, 15),
    # written by `crucible moe` (tests/fixtures/forward/make_moe_outputs.sh)
    ("crucible:mixtral_fused", None, True, None, None),
    ("crucible:mixtral_fused", None, False, 16, 5),
    ("crucible:mixtral_classic", None, True, None, None),
    ("crucible:qwen2_moe_shared", None, True, None, None),
    ("crucible:qwen2_moe_shared", None, False, 20, 7),
]


def build_moe(name, cfg_cls, model_cls, cfg, dtype, tokenizer):
    """A tiny MoE model in tests/fixtures/forward/NAME as transformers saves it."""
    out = os.path.join(FIX, name)
    if os.path.exists(os.path.join(out, "config.json")):
        return
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(4321)
    model = getattr(transformers, model_cls)(getattr(transformers, cfg_cls)(**cfg)).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.normal_(0.0, 0.3 if p.dim() == 1 else 0.15)
            if p.dim() == 1 and "norm" in n:
                p.add_(1.0)
    model.to(getattr(torch, dtype)).save_pretrained(out)
    shutil.copy(os.path.join(FIX, "..", "tokenizers", tokenizer + ".json"), os.path.join(out, "tokenizer.json"))
    shutil.copy(os.path.join(FIX, "llama", "text.txt"), os.path.join(out, "text.txt"))


def guide_ppl(model, input_ids, max_length, stride):
    """The Hugging Face guide's loop."""
    seq_len = input_ids.size(1)
    nll_sum = 0.0
    n_tokens = 0
    prev_end_loc = 0
    for begin_loc in range(0, seq_len, stride):
        end_loc = min(begin_loc + max_length, seq_len)
        trg_len = end_loc - prev_end_loc
        ids = input_ids[:, begin_loc:end_loc]
        target_ids = ids.clone()
        target_ids[:, :-trg_len] = -100
        with torch.no_grad():
            outputs = model(ids, labels=target_ids)
            neg_log_likelihood = outputs.loss
        num_valid_tokens = (target_ids != -100).sum().item()
        batch_size = target_ids.size(0)
        num_loss_tokens = num_valid_tokens - batch_size
        nll_sum += neg_log_likelihood * num_loss_tokens
        n_tokens += num_loss_tokens
        prev_end_loc = end_loc
        if end_loc == seq_len:
            break
    avg_nll = nll_sum / n_tokens
    return avg_nll.item(), torch.exp(avg_nll).item()


def model_dir(name, cfg, tmp):
    if name.startswith("crucible:"):
        return os.path.join(tmp, "moe", name.split(":", 1)[1])
    src = os.path.join(FIX, name)
    if cfg is None:
        return src
    d = os.path.join(tmp, name + "-config")
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(src, d)
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f)
    return d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--crucible", required=True,
                    help="the crucible binary: writes the MoE outputs scored here, and is run on every case")
    args = ap.parse_args()
    args.crucible = os.path.abspath(args.crucible)
    torch.set_num_threads(1)
    out = {"transformers": transformers.__version__, "torch": torch.__version__, "cases": []}
    worst = 0.0
    for m in MOE_MODELS:
        build_moe(*m)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["bash", os.path.join(FIX, "make_moe_outputs.sh"), args.crucible, os.path.join(tmp, "moe")],
                       check=True)
        for name, cfg, special, max_length, stride in CASES:
            d = model_dir(name, cfg, tmp)
            tok = transformers.AutoTokenizer.from_pretrained(d)
            with open(os.path.join(d, "text.txt"), encoding="utf-8") as f:
                text = f.read()
            ids = tok(text, add_special_tokens=special, return_tensors="pt").input_ids
            model = transformers.AutoModelForCausalLM.from_pretrained(
                d, dtype=torch.float32, attn_implementation="eager").eval()
            ml = max_length or ids.size(1)
            nll, ppl = guide_ppl(model, ids, ml, stride or ml)
            case = {"model": name, "tokenizer_config": cfg, "special_tokens": special,
                    "max_tokens": max_length, "stride": stride, "tokens": ids.size(1),
                    "first_ids": ids[0, :3].tolist(), "last_id": ids[0, -1].item(),
                    "mean_nll": nll, "perplexity": ppl}
            out["cases"].append(case)
            line = f"{name}{'+config' if cfg else ''} special={special} max={max_length} stride={stride}: " \
                   f"{ids.size(1)} tokens, ppl {ppl:.6f}"
            if args.crucible:
                cmd = [args.crucible, "eval", d, "--text", os.path.join(d, "text.txt"), "--json", "--threads", "1"]
                if not special:
                    cmd.append("--no-bos")
                if max_length:
                    cmd += ["--max-tokens", str(max_length)]
                if stride:
                    cmd += ["--stride", str(stride)]
                got = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
                g = got["total"]["perplexity"]
                rel = abs(g - ppl) / ppl
                worst = max(worst, rel)
                line += f"; crucible {g:.6f} (rel {rel:.2e}, {got['total']['tokens']} tokens)"
            print(line)
    with open(os.path.join(FIX, "eval_expected.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    # the same, one case a line, for tests/e2e/eval.sh (no JSON parser in bash):
    # model  tokenizer_config-or-"-"  special(1/0)  max-or-"-"  stride-or-"-"  tokens  perplexity
    with open(os.path.join(FIX, "eval_expected.tsv"), "w") as f:
        f.write(f"# transformers {out['transformers']}, torch {out['torch']}: tests/compat/check_eval.py\n")
        for c in out["cases"]:
            cfg = json.dumps(c["tokenizer_config"], separators=(",", ":")) if c["tokenizer_config"] else "-"
            f.write("\t".join([c["model"], cfg, "1" if c["special_tokens"] else "0", str(c["max_tokens"] or "-"),
                               str(c["stride"] or "-"), str(c["tokens"]), repr(c["perplexity"])]) + "\n")
    if args.crucible:
        print(f"worst relative difference: {worst:.2e}")


if __name__ == "__main__":
    main()
