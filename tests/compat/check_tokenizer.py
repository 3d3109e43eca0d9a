#!/usr/bin/env python3
"""check_tokenizer.py — trains small tokenizers with the Hugging Face
`tokenizers` library and records what it encodes, as fixtures for
tests/unit/test_tokenizer.c (run by hand; the C tests need no Python).

No model hub is reachable, so the tokenizer.json files are trained here in
the shapes real models ship:

  qwen2     byte-level BPE, NFC, Split(Qwen2 regex, one digit per piece)
  llama3    byte-level BPE, Split(Llama-3 regex, 1-3 digits), ignore_merges,
            TemplateProcessing "<|begin_of_text|> $A"
  gpt2      byte-level BPE with ByteLevel(use_regex=true): the GPT-2 regex
  llama2    SentencePiece-style BPE: <unk> <s> </s> <0x00>..<0xFF> first,
            byte_fallback, fuse_unk, legacy Prepend("▁") + Replace(" "->"▁")
            normalizer and no pre-tokenizer, Llama-2's decoder sequence
  metaspace the llama2 model behind Metaspace(prepend_scheme=first,
            split=false): the non-legacy Llama/Mistral conversion

Each gets tests/fixtures/tokenizers/NAME.json (the tokenizer) and
NAME.cases.json: [{"text", "ids", "ids_special", "decoded"}], where ids are
encode(add_special_tokens=False), ids_special with True, and decoded is
decode(ids, skip_special_tokens=False).

usage: tests/compat/.venv/bin/python tests/compat/check_tokenizer.py
"""
import json
import os

import tokenizers
from tokenizers import Tokenizer, Regex, models, normalizers, pre_tokenizers, decoders, trainers, processors

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "tokenizers")

QWEN2 = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
LLAMA3 = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

CORPUS = """The quick brown fox jumps over the lazy dog. It's a dog's life, isn't it?
We'll see; they've gone, I'm here and you'd know. SHE'S LOUD, WE'LL SHOUT, THEY'RE HERE.
Numbers: 1, 12, 123, 1234, 12345, 3.14159, 2024-06-17, $1,000,000 and 0x1F.
Tabs\tand  double  spaces   and    more     spaces, trailing spaces   
Line one
Line two\r\nWindows line\r\n\r\nblank lines above

indented    code:
    def f(x):
        return x ** 2  # square
Unicode: café, naïve, résumé, Zürich, Ångström, São Paulo, Łódź, Ελληνικά, русский язык.
中文文本测试，你好世界。日本語のテキスト、こんにちは。한국어 텍스트 안녕하세요.
Emoji: 😀 🎉 👍🏽 🇫🇷 ❤️ and symbols © ® ™ € £ ¥ ∑ ∞ ≠ ≤ → ← ½ ¾.
Arabic: مرحبا بالعالم. Hebrew: שלום עולם. Hindi: नमस्ते दुनिया. Thai: สวัสดีชาวโลก
Punctuation!!! ??? ... --- *** ((nested)) [brackets] {braces} <angles> "quotes" 'single'
mixed123abc 456def ghi789 a1b2c3 __init__ foo_bar foo-bar foo.bar foo/bar
"""

CASES = [
    "Hello world",
    "Hello world!",
    " leading space",
    "  two leading spaces",
    "trailing space ",
    "a  b   c    d",
    "It's what we'll do, THEY'RE sure I'M right 'tis",
    "Numbers 1 12 123 1234 12345 1234567",
    "3.14159 and 2024-06-17 and 1,000,000",
    "line1\nline2\n\nline3\r\nline4\r\n\r\n  line5",
    "tabs\tand\t\ttabs \t mixed",
    "   \n   \n",
    "end with newline\n",
    "café naïve résumé",
    "cafe\u0301 decomposed e-acute",
    "中文文本测试，你好世界。",
    "日本語のテキスト",
    "한국어 텍스트",
    "Emoji 😀🎉👍🏽 🇫🇷 ❤️ done",
    "rare chars: ǅ ß ﬁ ℕ ⅷ ① ٣ ༡",
    "no\u00a0break\u3000ideographic space",
    "Ελληνικά русский עברית العربية हिन्दी",
    "x",
    " ",
    "",
    "!!!???...",
    "  !!  ??",
    "mixed123abc 456def __init__",
    "The quick brown fox jumps over the lazy dog. " * 3,
    "the zork is zorkish, zork",
]


def special_cases(specials):
    a, b = specials[0], specials[1]
    return [
        a + "Hello world",
        a + " Hello world",
        "Hello " + b + " world" + a,
        a + a + "x" + b,
        "text with " + a + "\n" + "newline after special",
    ]


def write(name, tok, specials):
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, name + ".json")
    tok.save(path)
    if name == "gpt2":
        # exercise the legacy "a b" merges form as well as [a, b]
        with open(path, encoding="utf-8") as f:
            j = json.load(f)
        j["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in j["model"]["merges"]]
        with open(path, "w", encoding="utf-8") as f:
            json.dump(j, f, ensure_ascii=False, indent=2)
    # reload from the file so the cases describe exactly what is committed
    tok = Tokenizer.from_file(path)
    cases = []
    for text in CASES + special_cases(specials):
        enc = tok.encode(text, add_special_tokens=False)
        enc_s = tok.encode(text, add_special_tokens=True)
        cases.append({
            "text": text,
            "ids": enc.ids,
            "ids_special": enc_s.ids,
            "decoded": tok.decode(enc.ids, skip_special_tokens=False),
        })
    with open(os.path.join(OUT, name + ".cases.json"), "w", encoding="utf-8") as f:
        json.dump({"tokenizers_version": tokenizers.__version__, "cases": cases}, f,
                  ensure_ascii=False, indent=1)
    print(f"{name}: vocab {tok.get_vocab_size()}, {len(cases)} cases")


def corpus_lines():
    lines = CORPUS.split("\n")
    return lines * 3 + CASES


def byte_level(name, regex, specials, vocab_size, ignore_merges=False, nfc=False, template=None):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    if nfc:
        tok.normalizer = normalizers.NFC()
    if regex:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus_lines(), trainer)
    if template:
        tok.post_processor = processors.TemplateProcessing(
            single=template, special_tokens=[(s, tok.token_to_id(s)) for s in specials[:1]])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def sentencepiece_like(vocab_size):
    """Train a Metaspace BPE, then rebuild its JSON in Llama-2's layout."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"],
                                  limit_alphabet=120, show_progress=False)
    tok.train_from_iterator(corpus_lines(), trainer)
    j = json.loads(tok.to_str())
    old = j["model"]["vocab"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for t, _ in sorted(old.items(), key=lambda kv: kv[1]):
        if t not in vocab:
            vocab[t] = len(vocab)
    j["model"]["vocab"] = vocab
    j["added_tokens"] = [
        {"id": vocab[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True} for t in ("<unk>", "<s>", "</s>")]
    # a normalized, non-special added token and an lstrip/rstrip special one
    j["model"]["vocab"]["<sep>"] = len(vocab)
    j["added_tokens"].append({"id": vocab["<sep>"], "content": "<sep>", "single_word": False,
                              "lstrip": True, "rstrip": True, "normalized": False, "special": True})
    j["added_tokens"].append({"id": len(vocab), "content": "zork", "single_word": True, "lstrip": False,
                              "rstrip": False, "normalized": True, "special": False})
    j["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "▁"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
    j["pre_tokenizer"] = None
    j["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    j["post_processor"] = {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                    {"Sequence": {"id": "A", "type_id": 0}},
                                    {"SpecialToken": {"id": "<s>", "type_id": 1}},
                                    {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
    legacy = Tokenizer.from_str(json.dumps(j))
    j2 = dict(j)
    j2["normalizer"] = None
    j2["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}
    j2["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False},
        {"type": "ByteFallback"}, {"type": "Fuse"}]}
    meta = Tokenizer.from_str(json.dumps(j2))
    return legacy, meta


def main():
    q = byte_level("qwen2", QWEN2, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], 900, nfc=True)
    write("qwen2", q, ["<|im_start|>", "<|im_end|>"])
    l3 = byte_level("llama3", LLAMA3, ["<|begin_of_text|>", "<|end_of_text|>"], 900, ignore_merges=True,
                    template="<|begin_of_text|> $A")
    write("llama3", l3, ["<|begin_of_text|>", "<|end_of_text|>"])
    g = byte_level("gpt2", None, ["<|endoftext|>", "<|pad|>"], 700)
    write("gpt2", g, ["<|endoftext|>", "<|pad|>"])
    legacy, meta = sentencepiece_like(700)
    write("llama2", legacy, ["<s>", "<sep>", "zork"])
    write("metaspace", meta, ["<s>", "</s>"])


if __name__ == "__main__":
    main()
