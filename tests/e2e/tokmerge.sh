#!/usr/bin/env bash
# tokmerge.sh — tokenizer merges whose inputs have different vocabularies
# (issue 16; spec/tokenizer-merge.md §5.3), on the golden models and
# mergekit 0.1.5 outputs of tests/golden/cases-0.1.5/tok_* (bit-identity of
# the tensors is test_golden's): the permutation is a graph of row gathers,
# so the same bytes come out of a .crb, under a tight --max-memory and on
# every ISA; config.json gets mergekit's vocab_size; the gathers show in
# `explain`; and the merged tokenizer is written whatever --copy-tokenizer
# says (mergekit always saves it). Slow-only tokenizers (tokenizer.model,
# vocab.json + merges.txt) are converted (formats/tokslow.c); those crucible
# does not convert are refused at plan time, naming the model.
# Usage: tokmerge.sh CRUCIBLE_BIN
. "$(dirname "$0")/../support/e2e_lib.sh" tokmerge "$1"
g=$(cd "$(dirname "$0")/../golden" && pwd)
cd "$g/models" || exit 1

# tok_multi_union_union: a union in stage 1, read by stage 2's union as an
# input (row gathers over a stage output)
for c in tok_union_abc_bf16 tok_base_b tok_union_ta tok_pad_bf16 tok_tokens_union tok_model_extern tok_multi_union_union \
         tok_spm_union_s1s2 tok_spm_ident tok_gpt2_model_g2_pad; do
    y=$g/cases-0.1.5/$c/recipe.yml
    "$bin" merge "$y" "$tmp/$c" --quiet --no-copy-tokenizer 2>"$tmp/err"
    check '[ $? -eq 0 ]' "$c: merge failed: $(head -c 300 "$tmp/err")"
    want=$(grep -o '"vocab_size": [0-9]*' "$g/cases-0.1.5/$c/mergekit-out/config.json")
    check 'grep -q "$want" "$tmp/$c/config.json"' "$c: config.json has not mergekit's $want"
    check '[ -f "$tmp/$c/tokenizer.json" ] && [ -f "$tmp/$c/tokenizer_config.json" ]' "$c: no merged tokenizer written"
    # through a .crb
    "$bin" compile "$y" -o "$tmp/$c.crb" 2>"$tmp/err"
    check '[ $? -eq 0 ]' "$c: compile failed: $(head -c 300 "$tmp/err")"
    "$bin" run "$tmp/$c.crb" "$tmp/$c-crb" --quiet 2>"$tmp/err"
    check 'cmp -s "$tmp/$c/model.safetensors" "$tmp/$c-crb/model.safetensors"' "$c: .crb gives other bytes: $(head -c 300 "$tmp/err")"
    check 'cmp -s "$tmp/$c/tokenizer.json" "$tmp/$c-crb/tokenizer.json"' "$c: .crb writes another tokenizer.json"
    # within a small budget, and on every ISA
    "$bin" merge "$y" "$tmp/$c-mem" --quiet --max-memory 4M 2>"$tmp/err"
    check 'cmp -s "$tmp/$c/model.safetensors" "$tmp/$c-mem/model.safetensors"' "$c: --max-memory 4M: $(head -c 300 "$tmp/err")"
    for isa in scalar avx2 avx512; do
        CRUCIBLE_ISA=$isa "$bin" merge "$y" "$tmp/$c-$isa" --quiet 2>"$tmp/err"
        check 'cmp -s "$tmp/$c/model.safetensors" "$tmp/$c-$isa/model.safetensors"' "$c: ISA $isa: $(head -c 300 "$tmp/err")"
    done
done
# plan: the output vocabulary and what the permutation costs
"$bin" plan "$g/cases-0.1.5/tok_union_abc_bf16/recipe.yml" >"$tmp/plan" 2>&1
check 'grep -q "^vocabulary      40 tokens after the tokenizer merge; embedding permutation: [0-9]* row gathers" "$tmp/plan"' \
    "plan: no vocabulary line: $(grep -v warning "$tmp/plan" | head -c 400)"
# a multi-stage recipe: the last stage's vocabulary, and the earlier stage's
"$bin" plan "$g/cases-0.1.5/tok_multi_union_union/recipe.yml" >"$tmp/plan" 2>&1
check 'grep -q "^vocabulary      40 tokens after the tokenizer merge (earlier stages: tok_s1 36); embedding permutation: 24 row gathers" "$tmp/plan"' \
    "plan (stages): no vocabulary line: $(grep -v warning "$tmp/plan" | head -c 400)"
# two earlier stages of the same size, told apart by name (a .crb has no
# stage names: sizes only)
printf 'name: tok_s1\nmerge_method: linear\nbase_model: tok_a\nmodels:\n  - model: tok_a\n    parameters: {weight: 0.6}\n  - model: tok_b\n    parameters: {weight: 0.4}\ntokenizer_source: union\n---\nname: tok_s2\nmerge_method: linear\nbase_model: tok_s1\nmodels:\n  - model: tok_s1\n    parameters: {weight: 0.5}\n  - model: tok_a\n    parameters: {weight: 0.5}\ntokenizer_source: union\n---\nmerge_method: task_arithmetic\nbase_model: tok_c\nmodels:\n  - model: tok_s2\n    parameters: {weight: 0.5}\n  - model: tok_b\n    parameters: {weight: 0.5}\ntokenizer_source: union\n' >"$tmp/three.yml"
"$bin" plan "$tmp/three.yml" >"$tmp/plan" 2>&1
check 'grep -q "^vocabulary      40 tokens after the tokenizer merge (earlier stages: tok_s1 36, tok_s2 36);" "$tmp/plan"' \
    "plan (3 stages): $(grep -v warning "$tmp/plan" | head -c 400)"
"$bin" compile "$tmp/three.yml" -o "$tmp/three.crb" 2>"$tmp/err" && "$bin" plan "$tmp/three.crb" >"$tmp/plan" 2>&1
check 'grep -q "^vocabulary      40 tokens after the tokenizer merge (earlier stages: 36);" "$tmp/plan"' \
    "plan of the .crb (3 stages): $(grep -v warning "$tmp/plan" | head -c 400)"

# only the last stage merges tokenizers, over stage 1, which carries B's
# tokenizer as mergekit-multi copies it (--copy-tokenizer, the default):
# through a .crb and in 4 MiB the same bytes; without the copy stage 1's
# directory has no tokenizer, and mergekit fails loading it as the base
for c in tok_multi_final_base tok_multi_pad_copy; do
    y=$g/cases-0.1.5/$c/recipe.yml
    "$bin" merge "$y" "$tmp/$c" --quiet 2>"$tmp/err"
    check '[ $? -eq 0 ]' "$c: merge failed: $(head -c 300 "$tmp/err")"
    want=$(grep -o '"vocab_size": [0-9]*' "$g/cases-0.1.5/$c/mergekit-out/config.json")
    check 'grep -q "$want" "$tmp/$c/config.json"' "$c: config.json has not mergekit's $want"
    "$bin" compile "$y" -o "$tmp/$c.crb" 2>"$tmp/err" && "$bin" run "$tmp/$c.crb" "$tmp/$c-crb" --quiet 2>"$tmp/err"
    check 'cmp -s "$tmp/$c/model.safetensors" "$tmp/$c-crb/model.safetensors"' "$c: .crb gives other bytes: $(head -c 300 "$tmp/err")"
    check 'cmp -s "$tmp/$c/tokenizer.json" "$tmp/$c-crb/tokenizer.json"' "$c: .crb writes another tokenizer.json"
    "$bin" merge "$y" "$tmp/$c-mem" --quiet --max-memory 4M 2>"$tmp/err"
    check 'cmp -s "$tmp/$c/model.safetensors" "$tmp/$c-mem/model.safetensors"' "$c: --max-memory 4M: $(head -c 300 "$tmp/err")"
done
# chat templates across stages: a stage's `chat_template:` is what its
# directory holds (mergekit-multi writes chat_template.jinja there), so a
# later stage that copies that tokenizer (ct_copy: no tokenizer merge;
# ct_ident: an identity one, the files copied; ct_union: a merged one)
# writes it, and `auto` in a later stage counts it (ct_auto: two stages'
# alpaca beat tok_a's chatml; the last stage reads both earlier stages, not
# only the one before it); byte for byte as mergekit-multi 0.1.5 wrote it,
# also through a .crb
for c in tok_multi_ct_copy tok_multi_ct_ident tok_multi_ct_union tok_multi_ct_auto; do
    y=$g/cases-0.1.5/$c/recipe.yml
    "$bin" merge "$y" "$tmp/$c" --quiet 2>"$tmp/err"
    check '[ $? -eq 0 ]' "$c: merge failed: $(head -c 300 "$tmp/err")"
    check 'cmp -s "$g/cases-0.1.5/$c/mergekit-out/chat_template.jinja" "$tmp/$c/chat_template.jinja"' \
        "$c: chat_template.jinja is not mergekit-multi's"
    want=$(grep -o '"vocab_size": [0-9]*' "$g/cases-0.1.5/$c/mergekit-out/config.json")
    check 'grep -q "$want" "$tmp/$c/config.json"' "$c: config.json has not mergekit's $want"
    "$bin" compile "$y" -o "$tmp/$c.crb" 2>"$tmp/err" && "$bin" run "$tmp/$c.crb" "$tmp/$c-crb" --quiet 2>"$tmp/err"
    check 'cmp -s "$tmp/$c/chat_template.jinja" "$tmp/$c-crb/chat_template.jinja"' "$c: .crb: $(head -c 300 "$tmp/err")"
    "$bin" merge "$y" "$tmp/$c-mem" --quiet --max-memory 4M 2>"$tmp/err"
    check 'cmp -s "$tmp/$c/model.safetensors" "$tmp/$c-mem/model.safetensors"' "$c: --max-memory 4M: $(head -c 300 "$tmp/err")"
done
# without --copy-tokenizer no stage directory holds a tokenizer, so no template
"$bin" merge "$g/cases-0.1.5/tok_multi_ct_copy/recipe.yml" "$tmp/ct-nocopy" --quiet --no-copy-tokenizer 2>"$tmp/err"
check '[ $? -eq 0 ] && [ ! -e "$tmp/ct-nocopy/chat_template.jinja" ]' "ct_copy --no-copy-tokenizer: $(head -c 300 "$tmp/err")"

"$bin" merge "$g/cases-0.1.5/tok_multi_final_base/recipe.yml" "$tmp/nocopy" --quiet --no-copy-tokenizer 2>"$tmp/err"
rc=$?
check '[ $rc -ne 0 ] && grep -qF "stage '"'"'tok_s1'"'"' leaves no tokenizer in its directory" "$tmp/err"' \
    "stage without a tokenizer as the base: rc=$rc $(head -c 300 "$tmp/err")"
"$bin" explain "$g/cases-0.1.5/tok_union_ab/recipe.yml" >"$tmp/explain" 2>&1
check 'grep -q "rows gathered" "$tmp/explain"' "explain shows no row gather: $(head -c 300 "$tmp/explain")"


# tokenizer.tokens errors: mergekit 0.1.5 raises them mid-run (after some
# tensors are written) or at config load; crucible refuses at plan time
refuse() { # NAME TOKENIZER_BLOCK EXPECTED_TEXT
    printf 'merge_method: linear\nbase_model: tok_a\nmodels:\n  - model: tok_a\n    parameters: {weight: 0.6}\n  - model: tok_b\n    parameters: {weight: 0.4}\ntokenizer: %s\n' "$2" >"$tmp/$1.yml"
    local name=$1 want=$3
    "$bin" merge "$tmp/$name.yml" "$tmp/r-$name" --quiet >/dev/null 2>"$tmp/err"
    rc=$?
    check '[ $rc -ne 0 ] && grep -qF "$want" "$tmp/err"' "$name: not refused with '$want': rc=$rc $(head -c 300 "$tmp/err")"
    check '[ ! -e "$tmp/r-$name" ]' "$name: an output was written"
}
refuse no_source '{tokens: {"<zz>": {force: false}}}' "tokenizer.tokens.<zz> has no source"
refuse not_input '{tokens: {q: {source: tok_c}}}' "Token 'q' requires a vocabulary weight from model tok_c"
refuse not_found '{tokens: {q: {source: {kind: model_token, model: tok_a, token: zzz}}}}' "Token 'zzz' not found in model tok_a"
refuse absent '{tokens: {"<zz>": {source: tok_a}}}' "Token '<zz>' not found in model tok_a"
refuse id_range '{tokens: {q: {source: {kind: model_token, model: tok_a, token_id: 25}}}}' "Token ID 25 out of range for model tok_a"
refuse both '{tokens: {q: {source: {kind: model_token, model: tok_a, token: a, token_id: 1}}}}' "only one of token_id or token may be specified"
refuse neither '{tokens: {q: {source: {kind: model_token, model: tok_a}}}}' "token_id or token must be specified"
# source base: the new token joins the base's own tokenizer past its vocab_size
refuse keyerror '{source: base, tokens: {"<zz>": {source: {kind: zero}}}}' "fails with a KeyError"

# an input whose tokenizer crucible cannot read (here: tokenizer_config.json
# without tokenizer.json) is refused; mergekit would load it some other way
mkdir -p "$tmp/mods" && cp -r tok_a tok_b "$tmp/mods/" && rm "$tmp/mods/tok_b/tokenizer.json"
printf 'merge_method: linear\nbase_model: tok_a\nmodels:\n  - model: tok_a\n    parameters: {weight: 0.6}\n  - model: tok_b\n    parameters: {weight: 0.4}\ntokenizer_source: union\n' >"$tmp/unread.yml"
(cd "$tmp" && "$bin" merge "$tmp/unread.yml" "$tmp/r-unread" --models-dir "$tmp/mods" --quiet >/dev/null 2>"$tmp/err")
rc=$?
check '[ $rc -ne 0 ] && grep -qF "tok_b has tokenizer_config.json but crucible cannot read its tokenizer" "$tmp/err"' \
    "unreadable tokenizer: $(head -c 300 "$tmp/err")"

# a model source that is none of the inputs must be found like a model
printf 'merge_method: linear\nbase_model: tok_a\nmodels:\n  - model: tok_a\n    parameters: {weight: 0.6}\n  - model: tok_b\n    parameters: {weight: 0.4}\ntokenizer_source: no_such_tok\n' >"$tmp/nosrc.yml"
"$bin" plan "$tmp/nosrc.yml" >/dev/null 2>"$tmp/err"
rc=$?
check '[ $rc -ne 0 ] && grep -qF "tokenizer_source '"'"'no_such_tok'"'"' not found" "$tmp/err"' "missing source: $(head -c 300 "$tmp/err")"

# a WordPiece base with tokens past its vocab_size: mergekit 0.1.5 can strip
# only BPE (get_stripped_tokenizer's RuntimeError), at plan time here
cp -r tok_w "$tmp/mods/" && sed -i 's/"vocab_size": 13/"vocab_size": 11/' "$tmp/mods/tok_w/config.json"
printf 'merge_method: linear\nbase_model: tok_w\nmodels:\n  - model: tok_a\n    parameters: {weight: 0.6}\n  - model: tok_w\n    parameters: {weight: 0.4}\ntokenizer_source: union\n' >"$tmp/wp.yml"
(cd "$tmp" && "$bin" plan "$tmp/wp.yml" --models-dir "$tmp/mods" >/dev/null 2>"$tmp/err")
rc=$?
check '[ $rc -ne 0 ] && grep -qF "Tokenizer for tok_w has type WordPiece, but only BPE is currently supported" "$tmp/err"' \
    "WordPiece base: $(head -c 300 "$tmp/err")"

# slow tokenizers crucible does not convert: refused at plan time, naming
# the model and what is not converted, as base and as another input
refuse() { # NAME WANT [PARTNER]: PARTNER (tok_a) + NAME in a union, each as the base
    local b rn=$1 rw=$2 rp=${3:-tok_a}
    for b in "$rn" "$rp"; do
        printf 'merge_method: linear\nbase_model: %s\nmodels:\n  - model: %s\n    parameters: {weight: 0.6}\n  - model: %s\n    parameters: {weight: 0.4}\ntokenizer_source: union\n' "$b" "$rp" "$rn" >"$tmp/sp.yml"
        (cd "$tmp" && "$bin" plan "$tmp/sp.yml" --models-dir "$tmp/mods" >/dev/null 2>"$tmp/err")
        rc=$?
        check '[ $rc -ne 0 ] && grep -qF "$rn" "$tmp/err" && grep -qF "$rw" "$tmp/err"' "$rn ($b base): $(head -c 300 "$tmp/err")"
    done
}
# tokenizer.model beside a tokenizer_config.json (its tokenizer_class and
# arguments decide what transformers builds)
cp -r tok_b "$tmp/mods/tok_sp" && rm "$tmp/mods/tok_sp/tokenizer.json" && cp tok_s1/tokenizer.model "$tmp/mods/tok_sp/"
refuse tok_sp "SentencePiece tokenizer.model with a tokenizer_config.json"
# a Unigram SentencePiece model
cp -r tok_s1 "$tmp/mods/tok_uni" && cp "$g/../fixtures/tokslow/spm_unigram/tokenizer.model" "$tmp/mods/tok_uni/"
refuse tok_uni "SentencePiece Unigram model"
# ... and copied through a stage (mergekit-multi re-saves it into the
# stage's directory, which crucible cannot read): refused naming the stage,
# not taken for a directory without a tokenizer (which would fall back to
# the base's vocabulary), as the base and as another input
for b in tok_st tok_a; do
    printf 'name: tok_st\nmerge_method: linear\nmodels:\n  - model: tok_uni\n    parameters: {weight: 1.0}\n---\nmerge_method: linear\nbase_model: %s\nmodels:\n  - model: tok_a\n    parameters: {weight: 0.6}\n  - model: tok_st\n    parameters: {weight: 0.4}\ntokenizer_source: union\n' "$b" >"$tmp/stuni.yml"
    (cd "$tmp" && "$bin" plan "$tmp/stuni.yml" --models-dir "$tmp/mods" >/dev/null 2>"$tmp/err")
    rc=$?
    check '[ $rc -ne 0 ] && grep -qF "cannot read tok_st'"'"'s tokenizer (tok_uni: " "$tmp/err" && grep -qF "SentencePiece Unigram model" "$tmp/err"' \
        "Unigram donor through a stage ($b base): rc=$rc $(head -c 300 "$tmp/err")"
done
# a model type transformers builds in a tokenizer class of its own
cp -r tok_s1 "$tmp/mods/tok_qw" && sed -i 's/"model_type": "llama"/"model_type": "qwen2"/' "$tmp/mods/tok_qw/config.json"
refuse tok_qw "model type 'qwen2'"
# GPT-2 files with a tokenizer_config.json
cp -r tok_g1 "$tmp/mods/tok_gc" && printf '{"tokenizer_class": "GPT2Tokenizer"}' >"$tmp/mods/tok_gc/tokenizer_config.json"
cp -r tok_g2 "$tmp/mods/"
refuse tok_gc "vocab.json + merges.txt with a tokenizer_config.json" tok_g2
# mergekit's KeyError over converted tokenizers: tok_s2t (s2's tokenizer,
# vocab_size 312 < 320 pieces) as a non-base input beside tok_s1
printf 'merge_method: linear\nbase_model: tok_s1\nmodels:\n  - model: tok_s1\n    parameters: {weight: 0.6}\n  - model: tok_s2t\n    parameters: {weight: 0.4}\ntokenizer_source: union\n' >"$tmp/ke.yml"
"$bin" plan "$tmp/ke.yml" >/dev/null 2>"$tmp/err"
rc=$?
check '[ $rc -ne 0 ] && grep -q "tok_s2t.*>= its vocab_size 312 (mergekit 0.1.5 fails with a KeyError)" "$tmp/err"' "KeyError case: $(head -c 300 "$tmp/err")"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
