#!/usr/bin/env bash
# tokenizer_source.sh — `tokenizer_source: base | union | MODEL` and
# `tokenizer: {source: ...}` where every input shares one tokenizer, so
# mergekit 0.1.5's embedding permutation is the identity
# (spec/tokenizer-merge.md §5.0): the tensors are those of the recipe
# without the key (as mergekit's are: tests/e2e/fixtures/tokenizer_source/,
# made by tests/compat/gen_tokenizer_source_expected.sh), the source model's
# tokenizer is written (also under --no-copy-tokenizer, as mergekit does),
# and every case that would move rows is refused, naming the models.
# Usage: tokenizer_source.sh CRUCIBLE_BIN
. "$(dirname "$0")/../support/e2e_lib.sh" toksrc "$1"
fx=$(cd "$(dirname "$0")/fixtures/tokenizer_source" && pwd)

m=$tmp/models
shape=(--arch llama --layers 2 --hidden 32 --intermediate 64 --heads 4 --kv-heads 2 --vocab 64 --dtype bfloat16)
"$bin" synth "$m/base" "${shape[@]}" --seed 1 >/dev/null || bad "synth base"
"$bin" synth "$m/ft" --from "$m/base" --delta-scale 0.01 --seed 2 >/dev/null || bad "synth ft"
# ft's tokenizer config differs from base's (not its vocabulary): shows whose files are written
sed -i 's/"model_max_length": 2048/"model_max_length": 4096/' "$m/ft/tokenizer_config.json"
recipe() { printf 'merge_method: linear\nbase_model: base\nmodels:\n  - model: base\n    parameters: {weight: 0.3}\n  - model: %s\n    parameters: {weight: 0.7}\ndtype: bfloat16\n%s\n' "${2:-ft}" "$1"; }
recipe '' >"$tmp/plain.yml"
"$bin" merge "$tmp/plain.yml" "$tmp/plain" --models-dir "$m" --quiet 2>"$tmp/err" || bad "plain merge: $(cat "$tmp/err")"

for c in base union model block; do
    case $c in
    model) extra='tokenizer_source: ft'; src=ft ;;
    block) extra='tokenizer: {source: base, pad_to_multiple_of: 32}'; src=base ;;
    *) extra="tokenizer_source: $c"; src=base ;;
    esac
    recipe "$extra" >"$tmp/$c.yml"
    for copy in --copy-tokenizer --no-copy-tokenizer; do
        o=$tmp/out-$c$copy
        "$bin" merge "$tmp/$c.yml" "$o" --models-dir "$m" --quiet $copy 2>"$tmp/err"
        rc=$?; check '[ $rc -eq 0 ]' "$c $copy: merge failed: $(head -c 400 "$tmp/err")"
        # mergekit's tensors equal its plain recipe's; so must crucible's
        check 'grep -qx "$c same" "$fx/tensors"' "$c: mergekit's tensors were not the plain recipe's"
        check 'cmp -s "$o/model.safetensors" "$tmp/plain/model.safetensors"' "$c $copy: tensors differ from the recipe without it"
        for f in $(cat "$fx/$c.files"); do
            check '[ -f "$o/$f" ]' "$c $copy: $f missing (mergekit writes it)"
        done
        check 'cmp -s "$o/tokenizer_config.json" "$m/$src/tokenizer_config.json"' "$c $copy: not $src's tokenizer"
    done
done

# with chat_template: the template written next to the source's tokenizer
recipe 'tokenizer_source: union' >"$tmp/ct.yml"; echo 'chat_template: chatml' >>"$tmp/ct.yml"
"$bin" merge "$tmp/ct.yml" "$tmp/out-ct" --models-dir "$m" --quiet --no-copy-tokenizer 2>"$tmp/err"
check 'cmp -s "$tmp/out-ct/chat_template.jinja" "$(dirname "$fx")/chat_template/chatml.jinja"' "union + chatml: $(head -c 300 "$tmp/err")"

# refused, naming what and whom
refuse() { # NAME YAML_FILE EXPECTED_TEXT [OPTIONS]
    local name=$1 y=$2 want=$3; shift 3
    "$bin" merge "$y" "$tmp/r-$name" --models-dir "$m" --quiet "$@" >/dev/null 2>"$tmp/err"
    rc=$?
    check '[ $rc -ne 0 ] && grep -qF "$want" "$tmp/err"' "$name: not refused with '$want': rc=$rc $(head -c 300 "$tmp/err")"
    check '[ ! -e "$tmp/r-$name" ]' "$name: an output was written"
}
# a different vocabulary of the same size: two tokens swap ids
cp -r "$m/ft" "$m/other"
sed -i 's/"Ā": 3,/"Ā": 4,/; s/"ā": 4,/"ā": 3,/' "$m/other/tokenizer.json"
recipe 'tokenizer_source: union' other >"$tmp/diff.yml"
# merged since issue 16's second slice: rows 3 and 4 of other trade places
# (the vocabularies themselves: tests/golden/cases-0.1.5/tok_*)
"$bin" merge "$tmp/diff.yml" "$tmp/out-diff" --models-dir "$m" --quiet 2>"$tmp/err"
check '[ $? -eq 0 ] && grep -q "\"vocab_size\": 64" "$tmp/out-diff/config.json" && [ -f "$tmp/out-diff/tokenizer.json" ]' \
    "diff_vocab: $(head -c 300 "$tmp/err")"
check '! cmp -s "$tmp/out-diff/model.safetensors" "$tmp/out-union--copy-tokenizer/model.safetensors"' "diff_vocab: rows not permuted"
recipe 'tokenizer: {source: union, tokens: {"<s>": {source: base}}}' >"$tmp/tokens.yml"
# a token every model has, not forced: its config is unused (mergekit's
# tensors are the plain recipe's); tokens: of every kind are goldens
# (tests/golden/cases-0.1.5/tok_tokens_*) and tests/e2e/tokmerge.sh
"$bin" merge "$tmp/tokens.yml" "$tmp/out-tokens" --models-dir "$m" --quiet 2>"$tmp/err"
check 'cmp -s "$tmp/out-tokens/model.safetensors" "$tmp/plain/model.safetensors"' "tokens: $(head -c 300 "$tmp/err")"
recipe 'tokenizer: {source: base, pad_to_multiple_of: 48}' >"$tmp/pad.yml"
# padding rows (the mean row of each model; goldens tok_pad_*): 64 -> 96
"$bin" merge "$tmp/pad.yml" "$tmp/out-pad" --models-dir "$m" --quiet 2>"$tmp/err"
check 'grep -q "\"vocab_size\": 96" "$tmp/out-pad/config.json"' "pad: $(head -c 300 "$tmp/err")"
# a source that is none of the inputs is looked up like a model (golden
# tok_model_extern); one that is nowhere is refused
recipe 'tokenizer_source: elsewhere' >"$tmp/elsewhere.yml"
refuse not_found "$tmp/elsewhere.yml" "tokenizer_source 'elsewhere' not found"
cat >"$tmp/stages.yml" <<'Y'
name: soup
models:
  - model: base
    parameters: {weight: 0.5}
  - model: ft
    parameters: {weight: 0.5}
merge_method: linear
tokenizer_source: union
---
models:
  - model: soup
    parameters: {weight: 1.0}
merge_method: linear
Y
# a tokenizer merge in an earlier stage (issue 16; goldens tok_multi_*): the
# stage's merged vocabulary is what the last stage reads and writes
"$bin" merge "$tmp/stages.yml" "$tmp/out-stages" --models-dir "$m" --quiet 2>"$tmp/err"
check '[ $? -eq 0 ] && grep -q "\"vocab_size\": 64" "$tmp/out-stages/config.json" && [ -f "$tmp/out-stages/tokenizer.json" ]' \
    "stage: $(head -c 300 "$tmp/err")"
refuse v014stage "$tmp/stages.yml" "not supported yet under --mergekit-version 0.1.4" --mergekit-version 0.1.4
# mergekit 0.1.4 merges it too, with transformers 4's files (tokmerge014.sh)
"$bin" merge "$tmp/union.yml" "$tmp/v014" --models-dir "$m" --quiet --mergekit-version 0.1.4 >/dev/null 2>"$tmp/err"
check '[ $? -eq 0 ] && [ -f "$tmp/v014/special_tokens_map.json" ] && grep -q added_tokens_decoder "$tmp/v014/tokenizer_config.json"' \
    "v014: $(head -c 300 "$tmp/err")"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
