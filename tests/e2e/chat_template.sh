#!/usr/bin/env bash
# chat_template.sh — `chat_template:` as mergekit 0.1.5 reads it (named
# templates, `auto`, Jinja text; spec/tokenizer-merge.md §4): the output's
# chat_template.jinja is byte for byte what mergekit 0.1.5 wrote for the same
# recipe (tests/e2e/fixtures/chat_template/, made by
# tests/compat/gen_chat_template_expected.sh), the tensors are those of the
# recipe without it, and bad values are refused at plan time.
# Usage: chat_template.sh CRUCIBLE_BIN
. "$(dirname "$0")/../support/e2e_lib.sh" chattmpl "$1"
fx=$(cd "$(dirname "$0")/fixtures/chat_template" && pwd)
. "$(dirname "$0")/../support/chat_template_models.sh"

m=$tmp/models
ct_models "$bin" "$m" "$fx" || bad "synth models"
strip_ct() { sed '/^chat_template:/d' "$1"; }

for c in $CT_CASES; do
    ct_recipe "$c" "" >"$tmp/$c.yml"
    "$bin" merge "$tmp/$c.yml" "$tmp/out-$c" --models-dir "$m" --quiet 2>"$tmp/err"
    rc=$?; check '[ $rc -eq 0 ]' "$c: merge failed: $(head -c 400 "$tmp/err")"
    if [ -f "$fx/$c.jinja" ]; then
        check 'cmp -s "$fx/$c.jinja" "$tmp/out-$c/chat_template.jinja"' "$c: chat_template.jinja differs from mergekit 0.1.5's"
    else
        check '[ ! -e "$tmp/out-$c/chat_template.jinja" ]' "$c: mergekit writes no chat_template.jinja here"
    fi
    # the template changes no tensor
    strip_ct "$tmp/$c.yml" >"$tmp/$c-plain.yml"
    "$bin" merge "$tmp/$c-plain.yml" "$tmp/plain-$c" --models-dir "$m" --quiet 2>"$tmp/err"
    check 'cmp -s "$tmp/out-$c/model.safetensors" "$tmp/plain-$c/model.safetensors"' "$c: tensors differ from the recipe without chat_template"
    # every file mergekit writes is there (crucible copies the donor's
    # tokenizer files where mergekit re-serialises them: spec/compat.md)
    for f in $(cat "$fx/$c.files"); do
        check '[ -f "$tmp/out-$c/$f" ]' "$c: $f missing (mergekit writes it)"
    done
done
# auto picked chatml over the donor's own llama3 template: the donor's file is not copied over it
check '! cmp -s "$m/a/chat_template.jinja" "$tmp/out-auto/chat_template.jinja"' "auto: the donor's template was kept"

# the template travels in a .crb
"$bin" compile "$tmp/llama3.yml" -o "$tmp/l3.crb" --models-dir "$m" 2>"$tmp/err"
rc=$?; check '[ $rc -eq 0 ]' "compile: $(cat "$tmp/err")"
"$bin" run "$tmp/l3.crb" "$tmp/run-l3" --models-dir "$m" --quiet 2>"$tmp/err"
check 'cmp -s "$fx/llama3.jinja" "$tmp/run-l3/chat_template.jinja"' "run of the .crb: chat_template.jinja"

# --no-copy-tokenizer: mergekit saves no tokenizer and so no template
"$bin" merge "$tmp/chatml.yml" "$tmp/nocopy" --models-dir "$m" --quiet --no-copy-tokenizer 2>"$tmp/err"
rc=$?; check '[ $rc -eq 0 ]' "--no-copy-tokenizer: $(cat "$tmp/err")"
check '[ ! -e "$tmp/nocopy/chat_template.jinja" ] && [ ! -e "$tmp/nocopy/tokenizer.json" ]' "--no-copy-tokenizer wrote tokenizer files"

# refused at plan time (mergekit 0.1.5 fails only after writing every tensor)
refuse() { # NAME VALUE EXPECTED_TEXT [OPTIONS]
    local name=$1 val=$2 want=$3; shift 3
    strip_ct "$tmp/chatml.yml" >"$tmp/$name.yml"
    printf 'chat_template: %s\n' "$val" >>"$tmp/$name.yml"
    "$bin" plan "$tmp/$name.yml" --models-dir "$m" "$@" >/dev/null 2>"$tmp/err"
    rc=$?
    check '[ $rc -ne 0 ] && grep -qF "$want" "$tmp/err"' "$name: not refused with '$want': rc=$rc $(head -c 300 "$tmp/err")"
}
refuse unknown_name nosuchtemplate "invalid chat template 'nosuchtemplate'"
refuse short_jinja '"{{ x }}"' "invalid chat template '{{ x }}'"
refuse no_brace '"a long line of text with no braces in it"' "invalid chat template"
# mergekit 0.1.4 (transformers 4.57) writes the template to
# chat_template.jinja too (tests/e2e/tokmerge014.sh checks its files)
"$bin" merge "$tmp/chatml.yml" "$tmp/v014" --models-dir "$m" --quiet --mergekit-version 0.1.4 2>"$tmp/err"
rc=$?
check '[ $rc -eq 0 ] && cmp -s "$tmp/out-chatml/chat_template.jinja" "$tmp/v014/chat_template.jinja"' \
    "0.1.4: rc=$rc, not the same chat_template.jinja: $(head -c 300 "$tmp/err")"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
