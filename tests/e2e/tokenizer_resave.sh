#!/usr/bin/env bash
# tokenizer_resave.sh — a donor with tokenizer.json but no
# tokenizer_config.json (the forward fixture tests/fixtures/forward/llama):
# mergekit 0.1.5 then re-saves the tokenizer through transformers 5
# (spec/compat.md, "Tokenizer files"), and so must crucible, for `merge`
# (also with `chat_template:` and through a .crb) and `moe`: the same file
# names, tokenizer_config.json byte for byte and the same tokenizer.json as
# real mergekit 0.1.5 runs (tests/e2e/fixtures/tokenizer_resave/, made by
# tests/compat/gen_tokenizer_resave_expected.sh). --no-copy-tokenizer and
# --mergekit-version 0.1.4 (transformers 4, not reproduced) write none.
# The same for a donor whose tokenizer is only a SentencePiece
# tokenizer.model (the golden model tok_s1): transformers converts it
# (formats/tokslow.c) and mergekit writes the converted tokenizer.json;
# and for a GPT-2 donor with only vocab.json + merges.txt (tok_g1); and for
# a donor whose tokenizer.model has a tokenizer_config.json naming
# LlamaTokenizer (tok_l1): mergekit copies its files for a plain merge, and
# re-saves what LlamaTokenizer builds with a chat template and in moe.
# Usage: tokenizer_resave.sh CRUCIBLE_BIN
. "$(dirname "$0")/../support/e2e_lib.sh" tokresave "$1"
here=$(cd "$(dirname "$0")/../.." && pwd)
fx=$here/tests/e2e/fixtures/tokenizer_resave

m=$tmp/models
mkdir -p "$m"
cp -r "$here/tests/fixtures/forward/llama" "$m/a"
cp -r "$here/tests/fixtures/forward/llama" "$m/b"
printf 'models:\n  - model: a\n    parameters: {weight: 0.5}\n  - model: b\n    parameters: {weight: 0.5}\nmerge_method: linear\ndtype: bfloat16\n' >"$tmp/merge.yml"
{ cat "$tmp/merge.yml"; echo 'chat_template: chatml'; } >"$tmp/chatml.yml"
printf 'base_model: a\ngate_mode: random\ndtype: bfloat16\nexperts:\n  - source_model: a\n  - source_model: b\n' >"$tmp/moe.yml"

tokfiles() { (cd "$1" && ls | grep -E '^(tokenizer|special_tokens|chat_template|added_tokens|generation_config)'); }
expect() { # CASE OUT_DIR
    local c=$1 o=$2
    check '[ "$(tokfiles "$o")" = "$(cat "$fx/$c.files")" ]' "$c: tokenizer files [$(tokfiles "$o" | tr '\n' ' ')], mergekit writes [$(tr '\n' ' ' <"$fx/$c.files")]"
    check 'cmp -s "$o/tokenizer_config.json" "$fx/$c.tokenizer_config.json"' "$c: tokenizer_config.json is not mergekit's"
    [ ! -f "$fx/$c.tokenizer_json.sha256" ] ||
        check '[ "$(sha256sum <"$o/tokenizer.json" 2>/dev/null | cut -d" " -f1)" = "$(cat "$fx/$c.tokenizer_json.sha256")" ]' "$c: tokenizer.json is not mergekit's"
    [ ! -f "$fx/$c.chat_template.jinja" ] ||
        check 'cmp -s "$o/chat_template.jinja" "$fx/$c.chat_template.jinja"' "$c: chat_template.jinja is not mergekit's"
}
for c in merge chatml; do
    "$bin" merge "$tmp/$c.yml" "$tmp/out-$c" --models-dir "$m" --quiet 2>"$tmp/err" || bad "$c: merge failed: $(head -c 300 "$tmp/err")"
    expect $c "$tmp/out-$c"
done
"$bin" moe "$tmp/moe.yml" "$tmp/out-moe" --models-dir "$m" --quiet 2>"$tmp/err" || bad "moe failed: $(head -c 300 "$tmp/err")"
expect moe "$tmp/out-moe"

# through a compiled program: the same files
"$bin" compile "$tmp/merge.yml" -o "$tmp/m.crb" --models-dir "$m" 2>"$tmp/err" || bad "compile: $(head -c 300 "$tmp/err")"
"$bin" run "$tmp/m.crb" "$tmp/out-crb" --models-dir "$m" --quiet 2>"$tmp/err" || bad "run: $(head -c 300 "$tmp/err")"
expect merge "$tmp/out-crb"

# no tokenizer: asked for none, or the 0.1.4 layout (transformers 4's save is not reproduced)
"$bin" merge "$tmp/merge.yml" "$tmp/out-no" --models-dir "$m" --quiet --no-copy-tokenizer 2>"$tmp/err" || bad "no-copy: $(head -c 300 "$tmp/err")"
check '[ -z "$(tokfiles "$tmp/out-no")" ]' "--no-copy-tokenizer wrote $(tokfiles "$tmp/out-no" | tr '\n' ' ')"
"$bin" merge "$tmp/merge.yml" "$tmp/out-014" --models-dir "$m" --quiet --mergekit-version 0.1.4 2>"$tmp/err" || bad "0.1.4: $(head -c 300 "$tmp/err")"
check '[ -z "$(tokfiles "$tmp/out-014")" ]' "0.1.4 wrote $(tokfiles "$tmp/out-014" | tr '\n' ' ')"

# a donor with only a SentencePiece tokenizer.model
s=$tmp/spm
mkdir -p "$s"
cp -r "$here/tests/golden/models/tok_s1" "$s/a"
cp -r "$here/tests/golden/models/tok_s1" "$s/b"
for c in merge chatml; do
    "$bin" merge "$tmp/$c.yml" "$tmp/spm-$c" --models-dir "$s" --quiet 2>"$tmp/err" || bad "spm-$c: merge failed: $(head -c 300 "$tmp/err")"
    expect spm-$c "$tmp/spm-$c"
done
"$bin" moe "$tmp/moe.yml" "$tmp/spm-moe" --models-dir "$s" --quiet 2>"$tmp/err" || bad "spm-moe failed: $(head -c 300 "$tmp/err")"
expect spm-moe "$tmp/spm-moe"
"$bin" compile "$tmp/merge.yml" -o "$tmp/s.crb" --models-dir "$s" 2>"$tmp/err" || bad "spm compile: $(head -c 300 "$tmp/err")"
"$bin" run "$tmp/s.crb" "$tmp/spm-crb" --models-dir "$s" --quiet 2>"$tmp/err" || bad "spm run: $(head -c 300 "$tmp/err")"
expect spm-merge "$tmp/spm-crb"
"$bin" merge "$tmp/merge.yml" "$tmp/spm-no" --models-dir "$s" --quiet --no-copy-tokenizer 2>"$tmp/err" || bad "spm no-copy: $(head -c 300 "$tmp/err")"
check '[ -z "$(tokfiles "$tmp/spm-no")" ]' "spm --no-copy-tokenizer wrote $(tokfiles "$tmp/spm-no" | tr '\n' ' ')"
# a GPT-2 donor with only vocab.json + merges.txt
g=$tmp/gpt2
mkdir -p "$g"
cp -r "$here/tests/golden/models/tok_g1" "$g/a"
cp -r "$here/tests/golden/models/tok_g1" "$g/b"
for c in merge chatml; do
    "$bin" merge "$tmp/$c.yml" "$tmp/gpt2-$c" --models-dir "$g" --quiet 2>"$tmp/err" || bad "gpt2-$c: merge failed: $(head -c 300 "$tmp/err")"
    expect gpt2-$c "$tmp/gpt2-$c"
done
# a donor with tokenizer.model + a LlamaTokenizer tokenizer_config.json
l=$tmp/llama
mkdir -p "$l"
cp -r "$here/tests/golden/models/tok_l1" "$l/a"
cp -r "$here/tests/golden/models/tok_l1" "$l/b"
for c in merge chatml; do
    "$bin" merge "$tmp/$c.yml" "$tmp/llama-$c" --models-dir "$l" --quiet 2>"$tmp/err" || bad "llama-$c: merge failed: $(head -c 300 "$tmp/err")"
    expect llama-$c "$tmp/llama-$c"
done
check 'cmp -s "$tmp/llama-merge/tokenizer.model" "$l/a/tokenizer.model"' "llama-merge: tokenizer.model is not the donor's"
"$bin" moe "$tmp/moe.yml" "$tmp/llama-moe" --models-dir "$l" --quiet 2>"$tmp/err" || bad "llama-moe failed: $(head -c 300 "$tmp/err")"
expect llama-moe "$tmp/llama-moe"
"$bin" compile "$tmp/chatml.yml" -o "$tmp/l.crb" --models-dir "$l" 2>"$tmp/err" || bad "llama compile: $(head -c 300 "$tmp/err")"
"$bin" run "$tmp/l.crb" "$tmp/llama-crb" --models-dir "$l" --quiet 2>"$tmp/err" || bad "llama run: $(head -c 300 "$tmp/err")"
expect llama-chatml "$tmp/llama-crb"
# a model type transformers builds in a class of its own: not converted, no tokenizer (as before)
cp -r "$s/a" "$s/q"
sed -i 's/"model_type": "llama"/"model_type": "qwen2"/' "$s/q/config.json"
printf 'models:\n  - model: q\n    parameters: {weight: 1.0}\nmerge_method: linear\ndtype: bfloat16\n' >"$tmp/q.yml"
"$bin" merge "$tmp/q.yml" "$tmp/spm-q" --models-dir "$s" --quiet 2>"$tmp/err" || bad "spm qwen2: $(head -c 300 "$tmp/err")"
check '[ -z "$(tokfiles "$tmp/spm-q")" ]' "spm qwen2 wrote $(tokfiles "$tmp/spm-q" | tr '\n' ' ')"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
