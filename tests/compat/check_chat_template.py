#!/usr/bin/env python3
"""Run by hand: crucible's output with `chat_template:` against mergekit
0.1.5's for the same recipe. mergekit re-serialises the donor tokenizer
through transformers (tokenizer.json, tokenizer_config.json,
chat_template.jinja only); crucible copies the donor's files and writes
chat_template.jinja. This checks that transformers loads the same tokenizer
from both: same ids for a set of strings, same special tokens, same
rendered chat. Usage: check_chat_template.py CRUCIBLE_OUT MERGEKIT_OUT"""
import sys
from transformers import AutoTokenizer

a = AutoTokenizer.from_pretrained(sys.argv[1])
b = AutoTokenizer.from_pretrained(sys.argv[2])
texts = ["", "hello world", " leading space", "<s>x</s>", "tab\there\nnewline", "héllo ✓ 日本語",
         "a" * 100, "<unk><s></s>", "  two  spaces  "]
bad = 0
for t in texts:
    for spec in (True, False):
        x, y = a(t, add_special_tokens=spec)["input_ids"], b(t, add_special_tokens=spec)["input_ids"]
        if x != y:
            bad += 1
            print(f"ids differ for {t!r} (add_special_tokens={spec}): {x} vs {y}")
if a.get_vocab() != b.get_vocab(): bad += 1; print("vocab differs")
if a.all_special_tokens != b.all_special_tokens: bad += 1; print("special tokens differ")
if a.chat_template != b.chat_template: bad += 1; print("chat_template differs")
msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"}]
if a.chat_template:
    ra = a.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    rb = b.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    if ra != rb: bad += 1; print("rendered chat differs")
print("OK" if not bad else f"{bad} difference(s)")
sys.exit(1 if bad else 0)
