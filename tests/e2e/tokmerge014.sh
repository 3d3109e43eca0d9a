#!/usr/bin/env bash
# tokmerge014.sh — tokenizer merges and chat templates under
# `--mergekit-version 0.1.4` (mergekit 0.1.4 with transformers 4.57.6;
# spec/tokenizer-merge.md §7), beyond test_golden's bit checks of
# tests/golden/cases/tok_*:
#  - the files transformers 4 saves: special_tokens_map.json (the same
#    roles), and a tokenizer_config.json with added_tokens_decoder and no
#    chat_template (it goes to chat_template.jinja), equal as JSON to
#    mergekit's (tests/golden/cases/tok_*/mergekit-out/);
#  - a tokens: key already in the vocabulary becomes a plain added token;
#  - what mergekit 0.1.4 crashes on is refused at plan time: `kind: zero`,
#    an output token that no input has, a literal chat template whose
#    text is too long for the file name 0.1.4 first looks it up as;
#  - the same bytes through a .crb, and 0.1.5 still writes its own layout;
#  - slow-only inputs and earlier-stage tokenizer merges: refused (not
#    supported yet under 0.1.4).
# Usage: tokmerge014.sh CRUCIBLE_BIN
. "$(dirname "$0")/../support/e2e_lib.sh" tokmerge014 "$1"
g=$(cd "$(dirname "$0")/../golden" && pwd)
cd "$g/models" || exit 1
v4=(--mergekit-version 0.1.4)

# JSON equality of one file against mergekit's (python3 only reads JSON here)
same_json() { python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1])) != json.load(open(sys.argv[2])))' "$1" "$2"; }

same_roles() { python3 -c 'import json,sys
r=[{k: v if isinstance(v, str) else v["content"] for k, v in json.load(open(p)).items()} for p in sys.argv[1:]]
sys.exit(r[0] != r[1])' "$1" "$2"; }

for c in tok_union_ab tok_tokens_union_nozero tok_tokens_base tok_union_ba tok_ct_union_llama3; do
    y=$g/cases/$c/recipe.yml
    mk=$g/cases/$c/mergekit-out
    "$bin" merge "$y" "$tmp/$c" "${v4[@]}" --quiet --no-copy-tokenizer 2>"$tmp/err"
    check '[ $? -eq 0 ]' "$c: merge failed: $(head -c 300 "$tmp/err")"
    f=tokenizer_config.json
    check 'same_json "$mk/$f" "$tmp/$c/$f"' "$c: $f differs from mergekit 0.1.4's: $(diff "$mk/$f" "$tmp/$c/$f" | head -c 300)"
    # special_tokens_map.json: the same role -> text (transformers 4 keeps
    # the flags a role had when loaded, and spells some roles as plain text)
    f=special_tokens_map.json
    check 'same_roles "$mk/$f" "$tmp/$c/$f"' "$c: $f names other tokens than mergekit 0.1.4's: $(diff "$mk/$f" "$tmp/$c/$f" | head -c 300)"
    if [ -f "$mk/chat_template.jinja" ]; then
        check 'cmp -s "$mk/chat_template.jinja" "$tmp/$c/chat_template.jinja"' "$c: chat_template.jinja differs"
    fi
    # tokenizer.json: the same added tokens (id, text, flags) in the same order
    check 'python3 -c "import json,sys; a,b=(json.load(open(p))[\"added_tokens\"] for p in sys.argv[1:]); sys.exit(a!=b)" "$mk/tokenizer.json" "$tmp/$c/tokenizer.json"' \
        "$c: tokenizer.json's added_tokens differ from mergekit 0.1.4's"
done

# chat templates across stages (mergekit-multi 0.1.4, --copy-tokenizer): a
# stage's `chat_template:` re-saves its tokenizer with chat_template.jinja,
# which 0.1.4's _copy_tokenizer does not copy on (tok_multi_ct_copy: no
# template in the output, the re-saved files); a tokenizer merge over the
# stage and `auto` read it (ct_ident, ct_union, ct_auto)
for c in tok_multi_ct_copy tok_multi_ct_ident tok_multi_ct_union tok_multi_ct_auto; do
    mk=$g/cases/$c/mergekit-out
    "$bin" merge "$g/cases/$c/recipe.yml" "$tmp/$c" "${v4[@]}" --quiet 2>"$tmp/err"
    check '[ $? -eq 0 ]' "$c: merge failed: $(head -c 300 "$tmp/err")"
    for f in tokenizer_config.json special_tokens_map.json; do
        check '[ -f "$tmp/$c/$f" ]' "$c: no $f"
    done
    check 'same_json "$mk/tokenizer_config.json" "$tmp/$c/tokenizer_config.json"' "$c: tokenizer_config.json differs from mergekit 0.1.4's"
    check 'same_roles "$mk/special_tokens_map.json" "$tmp/$c/special_tokens_map.json"' "$c: special_tokens_map.json roles differ"
    if [ -f "$mk/chat_template.jinja" ]; then
        check 'cmp -s "$mk/chat_template.jinja" "$tmp/$c/chat_template.jinja"' "$c: chat_template.jinja differs"
    else
        check '[ ! -e "$tmp/$c/chat_template.jinja" ]' "$c: mergekit 0.1.4 writes no chat_template.jinja here"
    fi
done
# a .crb carries the release: same tensors and tokenizer files
c=tok_tokens_union_nozero
"$bin" compile "$g/cases/$c/recipe.yml" -o "$tmp/$c.crb" "${v4[@]}" 2>"$tmp/err"
check '[ $? -eq 0 ]' "compile failed: $(head -c 300 "$tmp/err")"
"$bin" run "$tmp/$c.crb" "$tmp/$c-crb" --quiet 2>"$tmp/err"
for f in model.safetensors tokenizer.json tokenizer_config.json special_tokens_map.json; do
    check 'cmp -s "$tmp/$c/$f" "$tmp/$c-crb/$f"' ".crb: $f differs: $(head -c 300 "$tmp/err")"
done
# the default release keeps transformers 5's layout
"$bin" merge "$g/cases/tok_union_ab/recipe.yml" "$tmp/v5" --quiet --no-copy-tokenizer 2>"$tmp/err"
check '[ ! -e "$tmp/v5/special_tokens_map.json" ] && grep -q "\"backend\": \"tokenizers\"" "$tmp/v5/tokenizer_config.json"' \
    "0.1.5: transformers 5's files expected: $(ls "$tmp/v5" | tr '\n' ' ')"

# a chat template with no tokenizer merge: 0.1.4 re-saves the donor's
# tokenizer through transformers 4 (merge.py _copy_tokenizer)
for t in mistral auto; do
    mk=$g/cases/tok_ct_plain_$t/mergekit-out
    "$bin" merge "$g/cases/tok_ct_plain_$t/recipe.yml" "$tmp/plain-$t" "${v4[@]}" --quiet 2>"$tmp/err"
    check '[ $? -eq 0 ] && cmp -s "$mk/chat_template.jinja" "$tmp/plain-$t/chat_template.jinja"' \
        "plain $t template: $(head -c 300 "$tmp/err")"
    check 'same_json "$mk/tokenizer_config.json" "$tmp/plain-$t/tokenizer_config.json"' \
        "plain $t: tokenizer_config.json: $(diff "$mk/tokenizer_config.json" "$tmp/plain-$t/tokenizer_config.json" | head -c 300)"
    check 'same_roles "$mk/special_tokens_map.json" "$tmp/plain-$t/special_tokens_map.json"' "plain $t: special_tokens_map.json"
done

# what mergekit 0.1.4 crashes on, refused before anything is written
refuse() { # NAME RECIPE_TAIL EXPECTED_TEXT
    printf 'merge_method: linear\nbase_model: tok_a\nmodels:\n  - model: tok_a\n    parameters: {weight: 0.6}\n  - model: tok_b\n    parameters: {weight: 0.4}\n%s\n' "$2" >"$tmp/$1.yml"
    local name=$1 want=$3
    "$bin" merge "$tmp/$name.yml" "$tmp/r-$name" "${v4[@]}" --quiet >/dev/null 2>"$tmp/err"
    rc=$?
    check '[ $rc -ne 0 ] && grep -qF "$want" "$tmp/err"' "$name: not refused with '$want': rc=$rc $(head -c 300 "$tmp/err")"
    check '[ ! -e "$tmp/r-$name" ]' "$name: an output was written"
    "$bin" plan "$tmp/$name.yml" "${v4[@]}" >/dev/null 2>"$tmp/err"
    rc=$?
    check '[ $rc -ne 0 ] && grep -qF "$want" "$tmp/err"' "$name: plan does not refuse it: rc=$rc $(head -c 300 "$tmp/err")"
    # mergekit 0.1.5 runs it
    "$bin" merge "$tmp/$name.yml" "$tmp/r5-$name" --quiet >/dev/null 2>"$tmp/err"
    check '[ $? -eq 0 ]' "$name: 0.1.5 should merge it: $(head -c 300 "$tmp/err")"
}
refuse zero 'tokenizer: {tokens: {a: {source: {kind: zero}}}}' \
    "tokenizer.tokens.a: source {kind: zero} fails in mergekit 0.1.4 (UnboundLocalError"
refuse in_no_input 'tokenizer_source: tok_c' \
    "is in none of the input models, and mergekit 0.1.4 fails building its zero row"
long=$(printf 'x%.0s' $(seq 300))
refuse long_template "tokenizer_source: union
chat_template: \"{# $long #}{{ messages[0]['content'] }}\"" \
    "chat_template: mergekit 0.1.4 first looks the value up as a named template file"
# not reproduced under 0.1.4 yet, refused at plan time with the 0.1.5
# alternative (0.1.5 merges both: cases-0.1.5/tok_spm_union_as1,
# tok_multi_union_base): an input with only a slow tokenizer (transformers 4
# converts it with its own classes), and a tokenizer merge in a stage before
# the last of a multi-stage recipe
for c in tok_spm_union_as1:"has only a slow tokenizer" tok_multi_union_base:"before the last stage of a multi-stage recipe"; do
    name=${c%%:*} want=${c#*:}
    for cmd in plan merge; do
        if [ $cmd = plan ]; then "$bin" plan "$g/cases-0.1.5/$name/recipe.yml" "${v4[@]}" >/dev/null 2>"$tmp/err"
        else "$bin" merge "$g/cases-0.1.5/$name/recipe.yml" "$tmp/r-$name" "${v4[@]}" --quiet >/dev/null 2>"$tmp/err"; fi
        rc=$?
        check '[ $rc -ne 0 ] && grep -qF "$want" "$tmp/err" && grep -qF "not supported yet under --mergekit-version 0.1.4" "$tmp/err"' \
            "$name: $cmd does not refuse it under 0.1.4: rc=$rc $(head -c 300 "$tmp/err")"
    done
    check '[ ! -e "$tmp/r-$name" ]' "$name: an output was written"
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
