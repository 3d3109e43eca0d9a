"""check_tokenizer_resave.py — run by hand with the mergekit 0.1.5 venv: for
each model_type, what transformers' AutoTokenizer.from_pretrained +
save_pretrained (mergekit 0.1.5's fallback in _copy_tokenizer, and
mergekit-moe's save) writes for a donor holding only config.json and the
forward fixture's tokenizer.json; SAME when that is the tokenizer.json byte
for byte plus the tokenizer_config.json crucible writes
(tests/e2e/fixtures/tokenizer_resave/merge.tokenizer_config.json). The
model types printed SAME are those formats/hfdir.c re-saves.
Usage: python check_tokenizer_resave.py [MODEL_TYPE...]"""
import filecmp
import json
import os
import shutil
import sys
import tempfile

import transformers

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(os.path.dirname(here))
donor = os.path.join(root, "tests/fixtures/forward/llama")
expect = os.path.join(root, "tests/e2e/fixtures/tokenizer_resave/merge.tokenizer_config.json")
types = sys.argv[1:] or ["llama", "mistral", "mixtral", "olmo2", "stablelm", "deepseek_v3", "granite",
                         "exaone", "llama4", "qwen2", "qwen3", "gemma", "gemma2", "phi"]
print("transformers", transformers.__version__)
base = json.load(open(os.path.join(donor, "config.json")))
with tempfile.TemporaryDirectory() as tmp:
    for mt in types:
        d = os.path.join(tmp, mt)
        os.makedirs(d)
        shutil.copy(os.path.join(donor, "tokenizer.json"), d)
        json.dump(dict(base, model_type=mt, architectures=[]), open(os.path.join(d, "config.json"), "w"))
        try:
            tok = transformers.AutoTokenizer.from_pretrained(d)
        except Exception as e:  # a config this fixture cannot stand for
            print(mt, "ERROR", str(e).splitlines()[0][:100])
            continue
        o = d + "-out"
        tok.save_pretrained(o, safe_serialization=True)
        same = (sorted(os.listdir(o)) == ["tokenizer.json", "tokenizer_config.json"]
                and filecmp.cmp(os.path.join(o, "tokenizer.json"), os.path.join(donor, "tokenizer.json"), shallow=False)
                and filecmp.cmp(os.path.join(o, "tokenizer_config.json"), expect, shallow=False))
        print(mt, type(tok).__name__, "SAME" if same else "DIFF")
