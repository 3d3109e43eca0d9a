#!/usr/bin/env python3
"""gen_tokmerge.py — golden cases for tokenizer merging (issue 16,
spec/tokenizer-merge.md §6): three tiny llama models whose BPE tokenizers
differ (shared and unshared tokens, different added/special tokens, a
vocab_size smaller than the tokenizer, padding rows, tied and untied
embeddings, f32 and bf16), merged by mergekit 0.1.5 with `tokenizer_source`
base / union / a model and `tokenizer:` blocks; and models whose tokenizer is
only a SentencePiece tokenizer.model (tok_s1, tok_s1b, tok_s2: trained here
with sentencepiece's BPE trainer on a small generated text; transformers
converts them for mergekit, spec/tokenizer-merge.md §8), and GPT-2 models whose
tokenizer is only vocab.json + merges.txt (tok_g1, tok_g2: trained with
tokenizers' ByteLevel BPE trainer), and tok_l1, tok_l2: tok_s1's and
tok_s2's tokenizer.model with a tokenizer_config.json naming LlamaTokenizer
(transformers builds that class from it, spec/tokenizer-merge.md §8).

Writes tests/golden/models/tok_{a,b,c}/ and tests/golden/cases-0.1.5/tok_*/
(recipe.yml, case.json, model.safetensors: the format test_golden reads;
plus mergekit's written tokenizer files and config.json under
`mergekit-out/`, for the tokenizer checks of tests/compat/).

mergekit's union is not reproducible as shipped (spec/tokenizer-merge.md
§0.1): get_vocab() iterates a Rust HashMap and referenced_models() a Python
set. The run pins both (get_vocab sorted by id, models in recipe order,
base first), which is one of mergekit's possible outputs and the one
crucible implements.

Multi-stage cases (tok_multi_*) run each document as mergekit-multi 0.1.5
does (scripts/multimerge.py: load_config patches stage names to
intermediate directories; each stage is a run_merge of its own, with
mergekit-multi's default copy_tokenizer=True), so a later stage loads an
earlier stage's written tokenizer and config.json as a model.

With `--mergekit 0.1.4` (run in tests/golden/.venv: mergekit 0.1.4,
transformers 4.57.6) the same recipes, plus the chat templates, go to
tests/golden/cases/tok_*/ and the models are left as they are. mergekit
0.1.4's PermutedEmbeddings orders its models by a Python set as well
(`set(tensors) | {base}`); the run pins that to the tensors' order with the
base last when absent, the order 0.1.5 uses (`list(tensors)`). Recipes that
mergekit 0.1.4 cannot run (its ZeroEmbedding path returns an unbound
variable, or a template text it takes for a file name) are reported FAIL
and leave no case; crucible refuses them at plan time (tests/e2e/tokmerge014.sh).

Usage: tests/golden/.venv-0.1.5/bin/python tests/golden/gen_tokmerge.py [--only X]
       tests/golden/.venv/bin/python tests/golden/gen_tokmerge.py --mergekit 0.1.4 [--only X]
"""
import argparse
import io
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "models")
CASES = os.path.join(HERE, "cases-0.1.5")
RELEASE = "0.1.5"
SEED = 42

HIDDEN, INTER, HEADS, KV_HEADS, HEAD_DIM, LAYERS = 8, 16, 2, 1, 4, 1


def added(content, id, special=True, normalized=False):
    return {"id": id, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": normalized, "special": special}


def tokenizer_json(vocab, merges, added_tokens):
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": added_tokens,
        "normalizer": None,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None,
        "decoder": {"type": "BPEDecoder", "suffix": "</w>"},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }


# name: (vocab, merges, added tokens, config vocab_size, dtype, tied, specials, template)
def model_specs():
    letters = "abcdefghijklmno"
    va = {"<unk>": 0}
    for ch in letters:
        va[ch] = len(va)
    for t in ("ab", "cd", "abcd", "ef", "gh"):
        va[t] = len(va)
    A = (va, ["a b", "c d", "ab cd", "e f", "g h"],
         [added("<s>", 21), added("</s>", 22), added("<|im_start|>", 23), added("<|im_end|>", 24)],
         25, "float32", False, {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
         "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}")
    vb = {"<unk>": 0}
    for t in ("a", "b", "c", "d", "e", "f", "q", "r", "s", "t", "u", "ab", "qr", "st", "qrst", "ef"):
        vb[t] = len(vb)
    vb["v"] = len(vb)
    vb["uv"] = len(vb)
    # id 23 is past vocab_size 23: <pad_b> is stripped from B (only B has it:
    # a token of the output past a non-base model's vocab_size crashes mergekit)
    B = (vb, ["a b", "q r", "s t", "qr st", "e f", "u v"],
         [added("<s>", 19), added("</s>", 20), added("<|im_end|>", 21, special=False, normalized=True),
          added("<tool>", 22), added("<pad_b>", 23)],
         23, "float32", True, {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "</s>"},
         None)
    vc = {"<unk>": 0}
    for t in ("a", "b", "c", "d", "e", "f", "g", "h", "x", "y", "z", "xy", "gh", "ab"):
        vc[t] = len(vc)
    C = (vc, [["x", "y"], ["g", "h"], ["a", "b"]],
         [added("<s>", 15), added("</s>", 16), added("<|im_start|>", 17), added("<|im_end|>", 18)],
         24, "bfloat16", False, {"bos_token": "<s>", "eos_token": "<|im_end|>", "unk_token": "<unk>"},
         None)
    # W: a WordPiece tokenizer.json (not BPE: mergekit reads only its
    # get_vocab(); accepted as a non-base input whose tokens fit vocab_size)
    vw = {"<unk>": 0}
    for t in ("a", "b", "c", "w", "##x", "##b", "wz", "ab", "k"):
        vw[t] = len(vw)
    W = (vw, None, [added("<s>", 10), added("</s>", 11), added("<w_only>", 12)],
         13, "float32", False, {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}, None)
    # U: a Unigram tokenizer.json (model.vocab a list of [text, score] by id)
    vu = {"<unk>": 0}
    for t in ("a", "b", "u", "n", "ab", "un", "ni", "i"):
        vu[t] = len(vu)
    U = (vu, "unigram", [added("<s>", 9), added("</s>", 10), added("<u_only>", 11), added("<|im_end|>", 12)],
         13, "float32", True, {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}, None)
    return {"tok_a": A, "tok_b": B, "tok_c": C, "tok_w": W, "tok_u": U}


def build_models():
    import numpy as np
    import torch
    from safetensors.torch import save_file
    for seed, (name, (vocab, merges, add, vsize, dtype, tied, specials, template)) in enumerate(model_specs().items()):
        d = os.path.join(MODELS, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        rng = np.random.default_rng(1000 + seed)
        shapes = [("model.embed_tokens.weight", (vsize, HIDDEN))]
        for i in range(LAYERS):
            p = f"model.layers.{i}."
            shapes += [(p + "input_layernorm.weight", (HIDDEN,)),
                       (p + "self_attn.q_proj.weight", (HEADS * HEAD_DIM, HIDDEN)),
                       (p + "self_attn.k_proj.weight", (KV_HEADS * HEAD_DIM, HIDDEN)),
                       (p + "self_attn.v_proj.weight", (KV_HEADS * HEAD_DIM, HIDDEN)),
                       (p + "self_attn.o_proj.weight", (HIDDEN, HEADS * HEAD_DIM)),
                       (p + "post_attention_layernorm.weight", (HIDDEN,)),
                       (p + "mlp.gate_proj.weight", (INTER, HIDDEN)),
                       (p + "mlp.up_proj.weight", (INTER, HIDDEN)),
                       (p + "mlp.down_proj.weight", (HIDDEN, INTER))]
        shapes.append(("model.norm.weight", (HIDDEN,)))
        if not tied:
            shapes.append(("lm_head.weight", (vsize, HIDDEN)))
        tdt = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
        t = {k: torch.from_numpy(rng.standard_normal(s).astype(np.float32)).to(tdt).contiguous() for k, s in shapes}
        save_file(t, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
               "intermediate_size": INTER, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
               "num_key_value_heads": KV_HEADS, "head_dim": HEAD_DIM, "vocab_size": vsize,
               "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu",
               "tie_word_embeddings": tied, "bos_token_id": vocab.get("<s>", 1), "torch_dtype": dtype}
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        with open(os.path.join(d, "tokenizer.json"), "w") as f:
            tj = tokenizer_json(vocab, merges, add)
            if merges is None:
                tj["model"] = {"type": "WordPiece", "unk_token": "<unk>", "continuing_subword_prefix": "##",
                               "max_input_chars_per_word": 100, "vocab": vocab}
                tj["decoder"] = {"type": "WordPiece", "prefix": "##", "cleanup": True}
            if merges == "unigram":
                tj["model"] = {"type": "Unigram", "unk_id": 0, "byte_fallback": False,
                               "vocab": [[t, 0.0 if i == 0 else -1.0 - 0.1 * i] for t, i in vocab.items()]}
                tj["decoder"] = None
            json.dump(tj, f, indent=2, ensure_ascii=False)
        tc = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 64, "clean_up_tokenization_spaces": False}
        tc.update(specials)
        if template:
            tc["chat_template"] = template
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump(tc, f, indent=2)


# SentencePiece-only models: name -> (trainer options, corpus seed, config
# vocab_size (None: every piece), dtype, tied, weight seed)
SPM_MODELS = {
    # llama style: byte fallback, identity normalizer, no extra-space removal
    "tok_s1": (dict(vocab_size=300, byte_fallback=True, normalization_rule_name="identity",
                    remove_extra_whitespaces=False, split_digits=True), 1, None, "float32", False, 50),
    # the same tokenizer.model, other weights (an identity permutation)
    "tok_s1b": (None, 1, None, "float32", False, 51),
    # another vocabulary: user-defined and control pieces, NFKC, tied, bf16
    "tok_s2": (dict(vocab_size=320, byte_fallback=True, user_defined_symbols=["<tool>", "[X]"],
                    control_symbols=["<ctl>"], normalization_rule_name="nmt_nfkc"), 2, None, "bfloat16", True, 52),
    # s2's tokenizer with config vocab_size 8 below its 320 pieces: stripped
    # as a base; as a non-base input of a union with tok_s1 mergekit fails
    # with a KeyError (tokens s1 has that s2t has past its vocab_size)
    "tok_s2t": (None, 2, 312, "float32", False, 53),
    # s1's and s2's tokenizer.model with a tokenizer_config.json naming
    # LlamaTokenizer (LLAMA_CONFIGS): transformers builds that class
    "tok_l1": (None, 1, None, "float32", False, 54),
    "tok_l2": (None, 2, None, "bfloat16", True, 55),
}


def _added_token(content):
    return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False}


# tokenizer_config.json beside the tokenizer.model: Llama-2's as the hub
# ships it, and LlamaTokenizerFast with legacy prepend and eos added
LLAMA_CONFIGS = {
    "tok_l1": {"add_bos_token": True, "add_eos_token": False, "bos_token": _added_token("<s>"),
               "clean_up_tokenization_spaces": False, "eos_token": _added_token("</s>"), "legacy": False,
               "model_max_length": 1000000000000000019884624838656, "pad_token": None, "padding_side": "right",
               "sp_model_kwargs": {}, "tokenizer_class": "LlamaTokenizer", "unk_token": _added_token("<unk>")},
    "tok_l2": {"tokenizer_class": "LlamaTokenizerFast", "legacy": True, "add_bos_token": True,
               "add_eos_token": True, "model_max_length": 4096},
}


def spm_corpus(seed):
    import random
    rnd = random.Random(seed)
    words = ("the quick brown fox jumps over lazy dog merge model token llama vocab byte fallback unicode "
             "héllo wörld 東京 café naïve 12 345 tool").split()
    if seed == 2:
        words += "zebra quantum xylophone mountain river 大阪 ünïcödé 6789".split()
    return "\n".join(" ".join(rnd.choice(words) for _ in range(rnd.randint(3, 12))) for _ in range(3000)) + "\n"


def build_spm_models():
    import numpy as np
    import sentencepiece as spm
    import torch
    from safetensors.torch import save_file
    import tempfile
    for name, (opts, corpus_seed, vsize, dtype, tied, wseed) in SPM_MODELS.items():
        d = os.path.join(MODELS, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        if opts is None:        # the tokenizer of the model trained on the same corpus
            src = next(n for n, v in SPM_MODELS.items() if v[0] is not None and v[1] == corpus_seed)
            shutil.copy(os.path.join(MODELS, src, "tokenizer.model"), os.path.join(d, "tokenizer.model"))
            opts = SPM_MODELS[src][0]
        else:
            # trained from memory into memory: no temporary path is recorded
            # in the model's TrainerSpec, so the bytes are reproducible
            model = io.BytesIO()
            spm.SentencePieceTrainer.train(sentence_iterator=iter(spm_corpus(corpus_seed).splitlines()),
                                           model_writer=model, model_type="bpe", character_coverage=1.0,
                                           num_threads=1, minloglevel=2, **opts)
            with open(os.path.join(d, "tokenizer.model"), "wb") as f:
                f.write(model.getvalue())
        V = vsize or opts["vocab_size"]
        rng = np.random.default_rng(wseed)
        shapes = [("model.embed_tokens.weight", (V, HIDDEN))]
        p = "model.layers.0."
        shapes += [(p + "input_layernorm.weight", (HIDDEN,)),
                   (p + "self_attn.q_proj.weight", (HEADS * HEAD_DIM, HIDDEN)),
                   (p + "self_attn.k_proj.weight", (KV_HEADS * HEAD_DIM, HIDDEN)),
                   (p + "self_attn.v_proj.weight", (KV_HEADS * HEAD_DIM, HIDDEN)),
                   (p + "self_attn.o_proj.weight", (HIDDEN, HEADS * HEAD_DIM)),
                   (p + "post_attention_layernorm.weight", (HIDDEN,)),
                   (p + "mlp.gate_proj.weight", (INTER, HIDDEN)),
                   (p + "mlp.up_proj.weight", (INTER, HIDDEN)),
                   (p + "mlp.down_proj.weight", (HIDDEN, INTER)),
                   ("model.norm.weight", (HIDDEN,))]
        if not tied:
            shapes.append(("lm_head.weight", (V, HIDDEN)))
        tdt = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
        t = {k: torch.from_numpy(rng.standard_normal(s).astype(np.float32)).to(tdt).contiguous() for k, s in shapes}
        save_file(t, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
               "intermediate_size": INTER, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
               "num_key_value_heads": KV_HEADS, "head_dim": HEAD_DIM, "vocab_size": V,
               "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu",
               "tie_word_embeddings": tied, "bos_token_id": 1, "torch_dtype": dtype}
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        if name in LLAMA_CONFIGS:
            with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
                json.dump(LLAMA_CONFIGS[name], f, indent=2)


# GPT-2 models with only vocab.json + merges.txt: name -> (corpus seed,
# trainer vocab size, weight seed)
GPT2_MODELS = {"tok_g1": (1, 300, 60), "tok_g2": (2, 320, 61)}


def build_gpt2_models():
    import numpy as np
    import torch
    from safetensors.torch import save_file
    from tokenizers import ByteLevelBPETokenizer
    import tempfile
    H, P, INNER = 8, 16, 16
    for name, (corpus_seed, vsize, wseed) in GPT2_MODELS.items():
        d = os.path.join(MODELS, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "c.txt"), "w") as f:
                f.write(spm_corpus(corpus_seed))
            t = ByteLevelBPETokenizer()
            t.train([os.path.join(tmp, "c.txt")], vocab_size=vsize, min_frequency=2,
                    special_tokens=["<|endoftext|>"], show_progress=False)
            t.save_model(d)
        V = len(json.load(open(os.path.join(d, "vocab.json"))))
        rng = np.random.default_rng(wseed)
        shapes = [("transformer.wte.weight", (V, H)), ("transformer.wpe.weight", (P, H))]
        p = "transformer.h.0."
        shapes += [(p + "ln_1.weight", (H,)), (p + "ln_1.bias", (H,)),
                   (p + "attn.c_attn.weight", (H, 3 * H)), (p + "attn.c_attn.bias", (3 * H,)),
                   (p + "attn.c_proj.weight", (H, H)), (p + "attn.c_proj.bias", (H,)),
                   (p + "ln_2.weight", (H,)), (p + "ln_2.bias", (H,)),
                   (p + "mlp.c_fc.weight", (H, INNER)), (p + "mlp.c_fc.bias", (INNER,)),
                   (p + "mlp.c_proj.weight", (INNER, H)), (p + "mlp.c_proj.bias", (H,)),
                   ("transformer.ln_f.weight", (H,)), ("transformer.ln_f.bias", (H,))]
        t = {k: torch.from_numpy(rng.standard_normal(s).astype(np.float32)).contiguous() for k, s in shapes}
        save_file(t, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
        cfg = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_embd": H, "n_head": 2, "n_layer": 1,
               "n_inner": INNER, "n_positions": P, "vocab_size": V, "activation_function": "gelu_new",
               "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True, "bos_token_id": 0, "eos_token_id": 0,
               "torch_dtype": "float32"}
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)


def cases():
    def M(m, w):
        return {"model": m, "parameters": {"weight": w}}
    c = []
    add = lambda name, method, recipe: c.append((name, method, dict(recipe, merge_method=method)))
    ab = [M("tok_a", 0.6), M("tok_b", 0.4)]
    abc = [M("tok_a", 0.5), M("tok_b", 0.3), M("tok_c", 0.2)]
    add("tok_base_a", "linear", {"base_model": "tok_a", "models": ab, "tokenizer_source": "base"})
    add("tok_base_b", "linear", {"base_model": "tok_b", "models": ab, "tokenizer_source": "base"})
    add("tok_union_ab", "linear", {"base_model": "tok_a", "models": ab, "tokenizer_source": "union"})
    add("tok_union_ba", "linear", {"base_model": "tok_b", "models": ab, "tokenizer_source": "union"})
    add("tok_union_abc_nobase", "linear", {"models": abc, "tokenizer_source": "union"})
    add("tok_union_abc_bf16", "linear", {"models": abc, "tokenizer_source": "union", "dtype": "bfloat16"})
    add("tok_union_cab", "linear", {"models": [M("tok_c", 0.5), M("tok_a", 0.3), M("tok_b", 0.2)],
                                    "tokenizer": {"source": "union"}})
    add("tok_model_c", "linear", {"base_model": "tok_a", "models": abc, "tokenizer_source": "tok_c"})
    add("tok_union_ta", "task_arithmetic", {"base_model": "tok_a",
                                            "models": [M("tok_b", 0.7), M("tok_c", 0.4)],
                                            "tokenizer_source": "union"})
    # tokenizer.tokens, every kind
    add("tok_tokens_union", "linear", {"base_model": "tok_a", "models": ab, "tokenizer": {"source": "union", "tokens": {
        "q": {"source": "tok_b"},
        "<tool>": {"source": {"kind": "model_token", "model": "tok_a", "token": "<s>"}},
        "g": {"source": {"kind": "model_token", "model": "tok_b", "token_id": 3}, "force": True},
        "a": {"source": {"kind": "zero"}, "force": True},
        "<new>": {"source": {"kind": "model_token", "model": "tok_a", "token_id": 5}},
        "ab": {"source": "tok_b"},
        "r": {"source": "tok_b", "force": True},
        "<zero>": {"source": {"kind": "zero"}}}}})
    # base C: mergekit adds the new token to the base's own tokenizer, so C
    # (vocab_size 24 > 19 tokens) maps it to its padding row 19
    add("tok_tokens_base", "linear", {"base_model": "tok_c", "models": abc, "dtype": "bfloat16", "tokenizer": {
        "source": "base", "tokens": {
            "q": {"source": {"kind": "model_token", "model": "tok_c", "token": "x"}},
            "e": {"source": "tok_c", "force": True},
            "<|im_end|>": {"source": {"kind": "model_token", "model": "tok_b", "token": "<|im_end|>"}, "force": True}}}})
    # pad_to_multiple_of: the padding rows are each model's mean row
    add("tok_pad_union", "linear", {"base_model": "tok_a", "models": ab,
                                    "tokenizer": {"source": "union", "pad_to_multiple_of": 16}})
    add("tok_pad_bf16", "linear", {"models": abc, "dtype": "bfloat16",
                                   "tokenizer": {"source": "union", "pad_to_multiple_of": 64}})
    add("tok_pad_base_c", "task_arithmetic", {"base_model": "tok_c", "models": [M("tok_a", 0.5), M("tok_b", 0.5)],
                                              "tokenizer": {"source": "base", "pad_to_multiple_of": 8}})
    # a model source that is none of the inputs (mergekit loads its tokenizer all the same)
    add("tok_model_extern", "linear", {"base_model": "tok_a", "models": ab, "tokenizer_source": "tok_c"})
    # a WordPiece input (not the base) in a union
    add("tok_union_aw", "linear", {"base_model": "tok_a", "models": [M("tok_a", 0.6), M("tok_w", 0.4)],
                                   "tokenizer_source": "union"})
    # a WordPiece base (no unused tokens: nothing to strip) under a union
    add("tok_union_wa", "linear", {"base_model": "tok_w", "models": [M("tok_w", 0.5), M("tok_a", 0.5)],
                                   "tokenizer_source": "union"})
    # a Unigram input (tied) in a union, and a Unigram tokenizer as a source
    # that is none of the inputs
    add("tok_union_au", "linear", {"base_model": "tok_a", "models": [M("tok_a", 0.6), M("tok_u", 0.4)],
                                   "tokenizer_source": "union"})
    add("tok_model_extern_u", "linear", {"base_model": "tok_a", "models": ab, "tokenizer_source": "tok_u"})
    if RELEASE == "0.1.4":
        # tok_tokens_union without its `kind: zero` entries (0.1.4 cannot
        # compute a zero row); 0.1.4 also re-adds the keys already in the
        # vocabulary ("q", "g", "ab", "r") as added tokens
        tu = dict(c[[n for n, _, _ in c].index("tok_tokens_union")][2])
        tu["tokenizer"] = {"source": "union", "tokens": {
            k: v for k, v in tu["tokenizer"]["tokens"].items() if "zero" not in json.dumps(v)}}
        c.append(("tok_tokens_union_nozero", "linear", tu))
        # chat_template with a tokenizer merge (the merged tokenizer carries
        # it) and without one (the donor re-saved through transformers 4)
        for t in ("alpaca", "chatml", "exaone", "llama3", "mistral", "auto", LITERAL):
            tag = "literal" if t == LITERAL else t
            add("tok_ct_union_" + tag, "linear", {"base_model": "tok_a", "models": ab, "tokenizer_source": "union",
                                                  "chat_template": t})
            add("tok_ct_plain_" + tag, "linear", {"base_model": "tok_a", "models": [M("tok_a", 0.6), M("tok_c", 0.4)],
                                                  "chat_template": t})
        add("tok_ct_auto_cab", "linear", {"base_model": "tok_c", "models": abc, "tokenizer_source": "base",
                                          "chat_template": "auto"})
        add("tok_ct_literal_long", "linear", {"base_model": "tok_a", "models": ab, "tokenizer_source": "union",
                                              "chat_template": LITERAL_LONG})
    else:
        # slow tokenizers (converted as transformers 5 does; crucible refuses
        # them under 0.1.4, spec/tokenizer-merge.md §8)
        # SentencePiece-only inputs (tokenizer.model, no tokenizer.json)
        s1s2 = [M("tok_s1", 0.6), M("tok_s2", 0.4)]
        add("tok_spm_union_as1", "linear", {"base_model": "tok_a", "models": [M("tok_a", 0.5), M("tok_s1", 0.5)],
                                            "tokenizer_source": "union"})
        add("tok_spm_union_s1s2", "linear", {"base_model": "tok_s1", "models": s1s2, "tokenizer_source": "union"})
        add("tok_spm_base_s2t", "linear", {"base_model": "tok_s2t", "models": [M("tok_s1", 0.6), M("tok_s2t", 0.4)],
                                           "tokenizer_source": "base"})
        add("tok_spm_union_s2ta", "task_arithmetic", {"base_model": "tok_s2t",
                                                     "models": [M("tok_s1", 0.7), M("tok_a", 0.4)],
                                                     "tokenizer_source": "union"})
        add("tok_spm_model_s1", "linear", {"base_model": "tok_a", "models": [M("tok_a", 0.5), M("tok_s2", 0.5)],
                                           "tokenizer_source": "tok_s1"})
        add("tok_spm_ident", "linear", {"base_model": "tok_s1", "models": [M("tok_s1", 0.3), M("tok_s1b", 0.7)],
                                        "tokenizer_source": "base"})
        add("tok_spm_tokens_pad", "linear", {"base_model": "tok_s1", "models": s1s2, "tokenizer": {
            "source": "union", "pad_to_multiple_of": 64, "tokens": {
                "<tool>": {"source": "tok_s2", "force": True},
                "<new>": {"source": {"kind": "model_token", "model": "tok_s2", "token": "▁qu"}},
                "▁the": {"source": {"kind": "zero"}, "force": True}}}})
        # tokenizer.model with a tokenizer_config.json naming LlamaTokenizer
        l12 = [M("tok_l1", 0.6), M("tok_l2", 0.4)]
        add("tok_llama_union_l1l2", "linear", {"base_model": "tok_l1", "models": l12, "tokenizer_source": "union"})
        add("tok_llama_union_al1", "linear", {"base_model": "tok_a", "models": [M("tok_a", 0.5), M("tok_l1", 0.5)],
                                              "tokenizer_source": "union"})
        add("tok_llama_model_l2_pad", "linear", {"base_model": "tok_l1", "models": l12,
                                                 "tokenizer": {"source": "tok_l2", "pad_to_multiple_of": 32}})
        # GPT-2 inputs with only vocab.json + merges.txt
        g12 = [M("tok_g1", 0.6), M("tok_g2", 0.4)]
        add("tok_gpt2_union_g1g2", "linear", {"base_model": "tok_g1", "models": g12, "tokenizer_source": "union"})
        add("tok_gpt2_base_g2", "linear", {"base_model": "tok_g2", "models": g12, "tokenizer_source": "base"})
        add("tok_gpt2_model_g2_pad", "linear", {"base_model": "tok_g1", "models": g12,
                                               "tokenizer": {"source": "tok_g2", "pad_to_multiple_of": 32}})
    return c


def multi_cases():
    """(name, method of the last stage, [documents]): stages named tok_s1."""
    def M(m, w):
        return {"model": m, "parameters": {"weight": w}}
    s1_union = {"name": "tok_s1", "merge_method": "linear", "base_model": "tok_a",
                "models": [M("tok_a", 0.6), M("tok_b", 0.4)], "tokenizer_source": "union"}
    c = []
    # stage 1 a union of two vocabularies; stage 2 merges it with a third
    # model, its tokenizer the stage's (stripped to its config vocab_size)
    c.append(("tok_multi_union_base", "linear", [
        s1_union, {"merge_method": "linear", "base_model": "tok_s1",
                   "models": [M("tok_s1", 0.7), M("tok_c", 0.3)], "tokenizer_source": "base"}]))
    c.append(("tok_multi_union_union", "task_arithmetic", [
        s1_union, {"merge_method": "task_arithmetic", "base_model": "tok_c",
                   "models": [M("tok_s1", 0.5), M("tok_b", 0.5)], "tokenizer_source": "union"}]))
    # only the last stage merges tokenizers: stage 1 carries B's tokenizer
    # (copied, vocab_size 23 below the tokenizer's 24 entries)
    s1_copy = {"name": "tok_s1", "merge_method": "linear", "models": [M("tok_b", 1.0)], "dtype": "bfloat16"}
    c.append(("tok_multi_final_union", "linear", [
        s1_copy, {"merge_method": "linear", "base_model": "tok_a",
                  "models": [M("tok_a", 0.5), M("tok_s1", 0.5)], "tokenizer_source": "union"}]))
    c.append(("tok_multi_final_base", "linear", [
        s1_copy, {"merge_method": "linear", "base_model": "tok_s1",
                  "models": [M("tok_s1", 0.5), M("tok_a", 0.5)], "tokenizer": {"source": "union"}}]))
    # a padded union carried through a stage without a tokenizer merge
    # (its config vocab_size and tokenizer copied to the output)
    c.append(("tok_multi_pad_copy", "linear", [
        dict(s1_union, tokenizer={"source": "union", "pad_to_multiple_of": 16}, tokenizer_source=None),
        {"merge_method": "linear", "models": [M("tok_s1", 1.0)], "dtype": "bfloat16"}]))
    # the stage's tokenizer as a model source
    c.append(("tok_multi_model_src", "linear", [
        s1_union, {"merge_method": "linear", "base_model": "tok_c",
                   "models": [M("tok_c", 0.5), M("tok_s1", 0.5)], "tokenizer_source": "tok_s1"}]))
    # slow-only inputs through a stage (tokslow x tokstage): a union over two
    # SentencePiece models read by the last stage's union, and a stage that
    # copies a SentencePiece donor's tokenizer (mergekit re-saves it
    # converted) read by the last stage's union; stages named tok_sp, not
    # tok_s1, which is a SentencePiece model here
    sp_union = {"name": "tok_sp", "merge_method": "linear", "base_model": "tok_s1",
                "models": [M("tok_s1", 0.6), M("tok_s2", 0.4)], "tokenizer_source": "union"}
    c.append(("tok_multi_spm_union", "linear", [
        sp_union, {"merge_method": "linear", "base_model": "tok_a",
                   "models": [M("tok_a", 0.5), M("tok_sp", 0.5)], "tokenizer_source": "union"}]))
    sp_copy = {"name": "tok_sp", "merge_method": "linear", "models": [M("tok_s1", 1.0)]}
    c.append(("tok_multi_spm_copy", "linear", [
        sp_copy, {"merge_method": "linear", "base_model": "tok_a",
                  "models": [M("tok_a", 0.5), M("tok_sp", 0.5)], "tokenizer_source": "union"}]))
    # chat templates across stages (mergekit-multi: a stage with
    # `chat_template:` writes chat_template.jinja into its directory, which a
    # later stage copies with its tokenizer, and which `auto` in a later
    # stage counts for that stage's output); stages named tok_st1, tok_st2
    st1_ct = {"name": "tok_st1", "merge_method": "linear", "models": [M("tok_b", 1.0)], "chat_template": "llama3"}
    # the last stage copies stage 1's directory (no tokenizer merge anywhere)
    c.append(("tok_multi_ct_copy", "linear", [
        st1_ct, {"merge_method": "linear", "models": [M("tok_st1", 1.0)], "dtype": "bfloat16"}]))
    # the last stage's tokenizer merge is the identity over stage 1, which
    # carries A's tokenizer (crucible copies the files it holds)
    c.append(("tok_multi_ct_ident", "linear", [
        dict(st1_ct, models=[M("tok_a", 1.0)]),
        {"merge_method": "linear", "base_model": "tok_st1", "models": [M("tok_st1", 0.5), M("tok_a", 0.5)],
         "tokenizer_source": "base"}]))
    # stage 1's template carried into the last stage's union (B stripped as the base)
    c.append(("tok_multi_ct_union", "linear", [
        st1_ct, {"merge_method": "linear", "base_model": "tok_st1", "models": [M("tok_st1", 0.5), M("tok_a", 0.5)],
                 "tokenizer_source": "union"}]))
    # `auto` in the last stage: two stage outputs with alpaca beat A's chatml
    # (the recipe's directories alone: only A has a template)
    c.append(("tok_multi_ct_auto", "linear", [
        dict(st1_ct, chat_template="alpaca"),
        {"name": "tok_st2", "merge_method": "linear", "models": [M("tok_c", 1.0)], "chat_template": "alpaca"},
        {"merge_method": "linear", "base_model": "tok_a",
         "models": [M("tok_a", 0.4), M("tok_st1", 0.3), M("tok_st2", 0.3)], "tokenizer_source": "union",
         "chat_template": "auto"}]))
    for _, _, docs in c:
        for d in docs:
            for k in [k for k, v in d.items() if v is None]:
                del d[k]
    return c


# a literal Jinja template (>= 20 characters with "{"), and one whose text
# is longer than a file name may be (mergekit 0.1.4 first looks it up as
# `NAME.jinja` among its named templates)
LITERAL = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
LITERAL_LONG = "{# " + "x" * 300 + " #}" + LITERAL


def pin():
    """referenced_models in recipe order (base first) and get_vocab sorted by id."""
    import mergekit.config as mc
    if RELEASE == "0.1.4":
        import mergekit.tokenizer.embed as me
        import transformers.tokenization_utils_fast as tuf

        class OrderedSet(dict):
            """`set` inside embed.py: insertion order (the tensors', then the base)"""
            def __init__(self, it=()):
                super().__init__((x, None) for x in it)

            def add(self, x):
                self[x] = None
        me.set = OrderedSet
    else:
        import transformers.tokenization_utils_tokenizers as tut

    def referenced_models(self):
        out = []
        def put(m):
            if m is not None and m not in out:
                out.append(m)
        put(self.base_model)
        for m in self.models or []:
            put(m.model)
        for s in self.slices or []:
            for src in s.sources:
                put(src.model)
        for mod in (self.modules or {}).values():
            for s in mod.slices or []:
                for src in s.sources:
                    put(src.model)
        return out
    mc.MergeConfiguration.referenced_models = referenced_models
    cls = tuf.PreTrainedTokenizerFast if RELEASE == "0.1.4" else tut.TokenizersBackend
    orig = cls.get_vocab

    def get_vocab(self):
        return dict(sorted(orig(self).items(), key=lambda kv: kv[1]))
    cls.get_vocab = get_vocab


def run_case(name, method, recipe):
    import importlib.metadata as md
    import torch
    import yaml
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions
    d = os.path.join(CASES, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    text = yaml.safe_dump(recipe, sort_keys=False)
    with open(os.path.join(d, "recipe.yml"), "w") as f:
        f.write(text)
    tmp = os.path.join(HERE, ".out", name)
    shutil.rmtree(tmp, ignore_errors=True)
    cwd = os.getcwd()
    os.chdir(MODELS)
    try:
        cfg = MergeConfiguration.model_validate(yaml.safe_load(text))
        opts = MergeOptions(random_seed=SEED, copy_tokenizer=name.startswith("tok_ct_plain"), out_shard_size=10**12,
                            write_model_card=False, quiet=True, lazy_unpickle=False)
        torch.set_num_threads(1)
        run_merge(cfg, tmp, options=opts, config_source=text)
    finally:
        os.chdir(cwd)
    shutil.copy(os.path.join(tmp, "model.safetensors"), os.path.join(d, "model.safetensors"))
    mo = os.path.join(d, "mergekit-out")
    os.makedirs(mo)
    for f in sorted(os.listdir(tmp)):
        if f.endswith(".safetensors") or f in ("model.safetensors.index.json", "mergekit_config.yml", "README.md"):
            continue
        if os.path.exists(os.path.join(tmp, f)):
            shutil.copy(os.path.join(tmp, f), os.path.join(mo, f))
    v = {k: md.version(k) for k in ("mergekit", "torch", "transformers", "tokenizers", "numpy", "safetensors")}
    v["aten_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    meta = {"method": method, "kind": "deterministic", "seed": SEED, "mergekit": v,
            "tolerance": {"max_ulp": 0, "min_exact_fraction": 1.0},
            "note": "tokenizer merge (tests/golden/gen_tokmerge.py): get_vocab sorted by id, "
                    "referenced_models in recipe order"}
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")
    shutil.rmtree(tmp, ignore_errors=True)


def run_multi_case(name, method, docs):
    import importlib.metadata as md
    import torch
    import yaml
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions
    from mergekit.scripts.multimerge import load_config
    d = os.path.join(CASES, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    text = yaml.safe_dump_all(docs, sort_keys=False)
    with open(os.path.join(d, "recipe.yml"), "w") as f:
        f.write(text)
    tmp = os.path.join(HERE, ".out", name)
    shutil.rmtree(tmp, ignore_errors=True)
    inter = os.path.join(tmp, "intermediate")
    final = os.path.join(tmp, "final")
    cwd = os.getcwd()
    os.chdir(MODELS)
    try:
        configs, _ = load_config(text, inter)
        opts = MergeOptions(random_seed=SEED, copy_tokenizer=True, out_shard_size=10**12,
                            write_model_card=False, quiet=True, lazy_unpickle=False)
        torch.set_num_threads(1)
        # documents in file order (each stage only names earlier ones)
        for doc in docs:
            stage = doc.get("name")
            run_merge(configs[stage], os.path.join(inter, stage) if stage else final, options=opts)
    finally:
        os.chdir(cwd)
    shutil.copy(os.path.join(final, "model.safetensors"), os.path.join(d, "model.safetensors"))
    mo = os.path.join(d, "mergekit-out")
    os.makedirs(mo)
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
              "special_tokens_map.json"):
        if os.path.exists(os.path.join(final, f)):
            shutil.copy(os.path.join(final, f), os.path.join(mo, f))
    v = {k: md.version(k) for k in ("mergekit", "torch", "transformers", "tokenizers", "numpy", "safetensors")}
    v["aten_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    meta = {"method": method, "kind": "deterministic", "seed": SEED, "mergekit": v,
            "options": {"copy_tokenizer": True},
            "tolerance": {"max_ulp": 0, "min_exact_fraction": 1.0},
            "note": "multi-stage tokenizer merge run as mergekit-multi (tests/golden/gen_tokmerge.py): "
                    "get_vocab sorted by id, referenced_models in recipe order"}
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")
    shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only")
    ap.add_argument("--no-models", action="store_true")
    ap.add_argument("--mergekit", choices=("0.1.4", "0.1.5"), default="0.1.5",
                    help="the release this venv holds: its cases folder")
    a = ap.parse_args()
    global CASES, RELEASE
    RELEASE = a.mergekit
    if RELEASE == "0.1.4":
        CASES = os.path.join(HERE, "cases")
        a.no_models = True
    os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
    os.environ.setdefault("MKL_ENABLE_INSTRUCTIONS", "AVX2")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not a.no_models:
        build_models()
        build_spm_models()
        build_gpt2_models()
    pin()
    failed = []
    multi = multi_cases()
    if RELEASE == "0.1.4":
        # crucible reproduces 0.1.4's tokenizer merge in the last stage only
        # (spec/tokenizer-merge.md §7): the cases whose earlier stages merge none
        multi = [(n, m, docs) for n, m, docs in multi
                 if not any("tokenizer_source" in d or "tokenizer" in d for d in docs[:-1])
                 and "spm" not in n]
    todo = [(n, m, r, run_case) for n, m, r in cases()] + [(n, m, r, run_multi_case) for n, m, r in multi]
    for name, method, recipe, fn in todo:
        if a.only and a.only not in name:
            continue
        try:
            fn(name, method, recipe)
            print("ok  ", name)
        except Exception as e:
            failed.append(name)
            print("FAIL", name, type(e).__name__, e)
            shutil.rmtree(os.path.join(CASES, name), ignore_errors=True)
    shutil.rmtree(os.path.join(HERE, ".out"), ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
