#!/usr/bin/env python3
"""check_tokmerge.py — run by hand (issue 16): does the tokenizer crucible
writes for a tokenizer merge tokenise like mergekit 0.1.5's?

For every golden case tests/golden/cases-0.1.5/tok_*/ (mergekit's written
files are in its mergekit-out/), merges the recipe with crucible, loads both
outputs with transformers 5 (AutoTokenizer) and compares: get_vocab(), the
added tokens (content, id, special, normalized, lstrip, rstrip,
single_word), the special-token roles, config.json's vocab_size, and the
ids of N random strings (ASCII letters of every input's alphabet, spaces,
punctuation, Unicode, added and special tokens spliced in), encoded with
and without special tokens, and their decodings. The tok_union_ab merge is
also loaded as a model and made to generate, with no warning.

With `--mergekit 0.1.4` (run with tests/golden/.venv's python: transformers
4.57.6) it checks tests/golden/cases/tok_*/ against mergekit 0.1.4's files,
merging with `--mergekit-version 0.1.4`; the tok_ct_plain_* cases (a chat
template and no tokenizer merge) keep --copy-tokenizer, as do the multi-stage
cases whose case.json options say so. It also compares the chat template and
that both wrote the same set of tokenizer files.

Usage: check_tokmerge.py CRUCIBLE_BIN [N [PREFIX]] [--mergekit 0.1.4]   (with the matching venv's python;
PREFIX limits it to the cases whose name starts with it, e.g. tok_spm)
"""
import json
import os
import random
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "..", "golden")


def main():
    import transformers
    args = sys.argv[1:]
    release = "0.1.5"
    if "--mergekit" in args:
        i = args.index("--mergekit")
        release = args[i + 1]
        del args[i:i + 2]
    bin_ = os.path.abspath(args[0])
    n = int(args[1]) if len(args) > 1 else 3000
    prefix = args[2] if len(args) > 2 else "tok_"
    folder = "cases" if release == "0.1.4" else "cases-0.1.5"
    cases = sorted(c for c in os.listdir(os.path.join(GOLDEN, folder))
                   if c.startswith("tok_") and c.startswith(prefix)
                   and os.path.exists(os.path.join(GOLDEN, folder, c, "mergekit-out")))
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for c in cases:
            d = os.path.join(GOLDEN, folder, c)
            out = os.path.join(tmp, c)
            # multi-stage cases ran as mergekit-multi does, copying each
            # stage's tokenizer (case.json options)
            meta = json.load(open(os.path.join(d, "case.json")))
            copy = meta.get("options", {}).get("copy_tokenizer") or c.startswith("tok_ct_plain")
            flags = ["--mergekit-version", release, "--copy-tokenizer" if copy else "--no-copy-tokenizer"]
            r = subprocess.run([bin_, "merge", os.path.join(d, "recipe.yml"), out, "--quiet", *flags],
                               cwd=os.path.join(GOLDEN, "models"), capture_output=True, text=True)
            if r.returncode:
                print(f"{c}: crucible failed: {r.stderr.strip()[:300]}")
                bad += 1
                continue
            mk = transformers.AutoTokenizer.from_pretrained(os.path.join(d, "mergekit-out"))
            cr = transformers.AutoTokenizer.from_pretrained(out)
            probs = []
            if mk.get_vocab() != cr.get_vocab():
                probs.append("get_vocab differs")

            def added(t):
                return {i: (a.content, a.special, a.normalized, a.lstrip, a.rstrip, a.single_word)
                        for i, a in t.added_tokens_decoder.items()}
            if added(mk) != added(cr):
                a, b = added(mk), added(cr)
                probs.append("added tokens differ: " + str({i: (a.get(i), b.get(i)) for i in set(a) | set(b)
                                                            if a.get(i) != b.get(i)}))
            if mk.chat_template != cr.chat_template:
                probs.append("chat_template differs")
            tokfiles = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"}
            fm = set(os.listdir(os.path.join(d, "mergekit-out"))) & tokfiles
            fc = set(os.listdir(out)) & tokfiles
            if release == "0.1.4" and fm != fc:
                probs.append(f"files {sorted(fm)} vs {sorted(fc)}")
            if mk.special_tokens_map != cr.special_tokens_map:
                probs.append(f"specials {mk.special_tokens_map} vs {cr.special_tokens_map}")
            vs = [json.load(open(os.path.join(p, "config.json")))["vocab_size"] for p in (os.path.join(d, "mergekit-out"), out)]
            if vs[0] != vs[1]:
                probs.append(f"config vocab_size {vs[0]} vs {vs[1]}")
            rnd = random.Random(c)
            pieces = sorted(mk.get_vocab()) + [" ", " ", "  ", ".", ",", "!", "é", "ß", "中", "🙂", "\n", "\t"]
            same = 0
            for _ in range(n):
                s = "".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 12)))
                ok = True
                for special in (False, True):
                    a = mk(s, add_special_tokens=special)["input_ids"]
                    b = cr(s, add_special_tokens=special)["input_ids"]
                    ok = ok and a == b and mk.decode(a) == cr.decode(b)
                if ok:
                    same += 1
                elif len(probs) < 5:
                    probs.append(f"ids differ for {s!r}: {mk(s)['input_ids']} vs {cr(s)['input_ids']}")
            print(f"{c}: {same}/{n} strings give the same ids" + ("" if not probs else "; " + "; ".join(probs)))
            bad += bool(probs) or same != n
            if c == "tok_union_ab":     # the merged model loads with no warning and generates
                import warnings
                import torch
                with warnings.catch_warnings(record=True) as w:
                    warnings.simplefilter("always")
                    m = transformers.AutoModelForCausalLM.from_pretrained(out)
                    x = cr("ab qr <tool>", return_tensors="pt")
                    x.pop("token_type_ids", None)      # transformers 4 returns them; llama takes none
                    g = m.generate(**x, max_new_tokens=5, do_sample=False, pad_token_id=cr.eos_token_id)
                rows = m.get_input_embeddings().weight.shape[0]
                print(f"{c}: loads in transformers ({rows} embedding rows, {len(cr)} tokens), generates "
                      f"{cr.decode(g[0])!r}; warnings: {[str(x.message)[:100] for x in w] or 'none'}")
                bad += bool(w) or rows != len(cr)
    print("OK" if not bad else f"{bad} case(s) differ")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
