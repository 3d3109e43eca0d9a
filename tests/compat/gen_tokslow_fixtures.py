#!/usr/bin/env python3
"""gen_tokslow_fixtures.py — run by hand (mergekit 0.1.5 venv): the fixtures
of tests/unit/test_tokslow.c. Small SentencePiece models trained here (in
memory, so the bytes are reproducible) with the settings the converter
branches on (user-defined and control pieces, no dummy prefix, a pad piece
and no bos, no control pieces and no byte fallback, a Unigram model that is
refused), and for each of those and the golden models tok_s1, tok_s2 (NFKC
charsmap) and tok_g1 (GPT-2 vocab.json + merges.txt): what transformers
5.25's AutoTokenizer + save_pretrained writes, as the sha256 of
tokenizer.json and tokenizer_config.json itself.

The llama_* fixtures are the same SentencePiece models with a
tokenizer_config.json beside them (tokenizer_class LlamaTokenizer or
LlamaTokenizerFast and the options LlamaTokenizer honours: add_bos_token,
add_eos_token, legacy, add_prefix_space, special tokens as strings and
AddedTokens, a Llama-2 config as the hub ships it), model type llama.

Writes tests/fixtures/tokslow/NAME/{tokenizer.model,config.json} (golden
models are referred to, not copied; a llama_* fixture copies its
tokenizer.model) and tests/fixtures/tokslow/NAME.expected/.
Usage: gen_tokslow_fixtures.py   (with the 0.1.5 venv's python)
"""
import hashlib
import io
import json
import os
import random
import shutil
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
FX = os.path.join(HERE, "..", "fixtures", "tokslow")
GOLDEN = os.path.join(HERE, "..", "golden", "models")

VARIANTS = {
    "spm_ud": ("mistral", dict(vocab_size=300, byte_fallback=True, user_defined_symbols=["<tool>", "a.b", "[X]"],
                               control_symbols=["<ctl>"], normalization_rule_name="identity",
                               remove_extra_whitespaces=False)),
    "spm_nodummy": ("llama", dict(vocab_size=300, add_dummy_prefix=False, byte_fallback=True,
                                  normalization_rule_name="identity")),
    "spm_pad": ("llama", dict(vocab_size=300, pad_id=3, bos_id=-1, eos_id=2, unk_id=0, byte_fallback=True,
                              normalization_rule_name="identity")),
    "spm_noctl": ("llama", dict(vocab_size=50, bos_id=-1, eos_id=-1, byte_fallback=False,
                                normalization_rule_name="identity", remove_extra_whitespaces=False)),
    "spm_unigram": ("llama", dict(vocab_size=50, model_type="unigram", normalization_rule_name="identity")),
}


def added(content):
    return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False}


# name: (the SentencePiece model, tokenizer_config.json)
LLAMA = {
    # Llama-2's tokenizer_config.json as the hub ships it
    "llama_l2": ("spm_s1", {"add_bos_token": True, "add_eos_token": False, "bos_token": added("<s>"),
                            "clean_up_tokenization_spaces": False, "eos_token": added("</s>"), "legacy": False,
                            "model_max_length": 1000000000000000019884624838656, "pad_token": None,
                            "padding_side": "right", "sp_model_kwargs": {}, "tokenizer_class": "LlamaTokenizer",
                            "unk_token": added("<unk>")}),
    # no bos/eos pieces: both get new ids; both added
    "llama_fast_be": ("spm_noctl", {"tokenizer_class": "LlamaTokenizerFast", "add_bos_token": True,
                                    "add_eos_token": True, "model_max_length": 4096,
                                    "use_default_system_prompt": False}),
    # user-defined and control pieces, legacy prepend
    "llama_ud_legacy": ("spm_ud", {"tokenizer_class": "LlamaTokenizer", "legacy": True, "add_bos_token": True}),
    # no bos piece, no prefix space, eos only
    "llama_pad_nops": ("spm_pad", {"tokenizer_class": "LlamaTokenizer", "add_prefix_space": False,
                                   "add_bos_token": False, "add_eos_token": True, "padding_side": "left",
                                   "clean_up_tokenization_spaces": True, "bos_token": "<s>"}),
    # an NFKC charsmap (dropped by LlamaTokenizer), no options
    "llama_s2": ("spm_s2", {"tokenizer_class": "LlamaTokenizer", "add_prefix_space": True}),
}


def corpus():
    rnd = random.Random(7)
    words = "the quick brown fox jumps over lazy dog a.b [X] tool héllo 東京 12 345".split()
    return [" ".join(rnd.choice(words) for _ in range(rnd.randint(3, 12))) for _ in range(2000)]


def main():
    import sentencepiece as spm
    from transformers import AutoTokenizer
    os.makedirs(FX, exist_ok=True)
    dirs = {"spm_s1": os.path.join(GOLDEN, "tok_s1"), "spm_s2": os.path.join(GOLDEN, "tok_s2"),
            "gpt2_g1": os.path.join(GOLDEN, "tok_g1")}
    for name, (mt, opts) in VARIANTS.items():
        d = os.path.join(FX, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        model = io.BytesIO()
        kw = dict(model_type="bpe", character_coverage=1.0, num_threads=1, minloglevel=2)
        kw.update(opts)
        spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus()), model_writer=model, **kw)
        with open(os.path.join(d, "tokenizer.model"), "wb") as f:
            f.write(model.getvalue())
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump({"model_type": mt}, f)
        dirs[name] = d
    for name, (src, tc) in LLAMA.items():
        d = os.path.join(FX, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        shutil.copy(os.path.join(dirs[src], "tokenizer.model"), d)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump({"model_type": "llama"}, f)
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump(tc, f, indent=2)
        dirs[name] = d
    for name, d in dirs.items():
        e = os.path.join(FX, name + ".expected")
        shutil.rmtree(e, ignore_errors=True)
        if name == "spm_unigram":
            continue
        os.makedirs(e)
        with tempfile.TemporaryDirectory() as tmp:
            t = AutoTokenizer.from_pretrained(d)
            assert type(t).__name__ == ("LlamaTokenizer" if name.startswith("llama_") else
                                        "GPT2Tokenizer" if name.startswith("gpt2") else "TokenizersBackend"), name
            t.save_pretrained(tmp)
            with open(os.path.join(tmp, "tokenizer.json"), "rb") as f:
                h = hashlib.sha256(f.read()).hexdigest()
            with open(os.path.join(e, "tokenizer.json.sha256"), "w") as f:
                f.write(h + "\n")
            shutil.copy(os.path.join(tmp, "tokenizer_config.json"), os.path.join(e, "tokenizer_config.json"))
        print(name, h[:16])


if __name__ == "__main__":
    os.environ.pop("HF_HUB_OFFLINE", None)
    main()
