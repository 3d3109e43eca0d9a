# chat_template_models.sh — the synth models and recipes behind
# tests/e2e/chat_template.sh and tests/compat/gen_chat_template_expected.sh
# (sourced; both must build the same inputs).
#   ct_models BIN DIR TEMPLATES: base, ft (no template); a (llama3 in
#     chat_template.jinja), b (chatml in tokenizer_config.json's
#     chat_template key), c (chatml with white space around it, in
#     chat_template.jinja). TEMPLATES: a folder with mergekit's
#     llama3.jinja and chatml.jinja.
#   ct_recipe CASE MODELS_PREFIX: the recipe of a case on stdout.
CT_CASES="alpaca chatml exaone llama3 mistral literal auto auto_none"

ct_models() {
    local bin=$1 m=$2 t=$3 x
    local shape=(--arch llama --layers 2 --hidden 32 --intermediate 64 --heads 4 --kv-heads 2 --vocab 64 --dtype bfloat16)
    "$bin" synth "$m/base" "${shape[@]}" --seed 1 >/dev/null || return 1
    "$bin" synth "$m/ft" --from "$m/base" --delta-scale 0.01 --seed 2 >/dev/null || return 1
    for x in a b c; do "$bin" synth "$m/$x" --from "$m/base" --delta-scale 0.01 --seed 3 >/dev/null || return 1; done
    cp "$t/llama3.jinja" "$m/a/chat_template.jinja"
    # chatml.jinja as a JSON string (written out: sed cannot carry its \n)
    local tmpl='"{% for message in messages %}{{'"'"'<|im_start|>'"'"' + message['"'"'role'"'"'] + '"'"'\\n'"'"' + message['"'"'content'"'"'] + '"'"'<|im_end|>'"'"' + '"'"'\\n'"'"'}}{% endfor %}\n{% if add_generation_prompt %}{{ '"'"'<|im_start|>assistant\\n'"'"' }}{% endif %}\n"'
    head -n -2 "$m/b/tokenizer_config.json" >"$m/b/tc"
    printf '  "unk_token": "<unk>",\n  "chat_template": %s\n}\n' "$tmpl" >>"$m/b/tc"
    mv "$m/b/tc" "$m/b/tokenizer_config.json"
    { printf '\n  '; cat "$t/chatml.jinja"; printf '  \n'; } >"$m/c/chat_template.jinja"
}

ct_recipe() {
    local case=$1 p=$2 ct
    case $case in
    literal) ct='"{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"' ;;
    auto|auto_none) ct=auto ;;
    *) ct=$case ;;
    esac
    if [ "$case" = auto ]; then
        printf 'merge_method: linear\nmodels:\n  - model: %sa\n    parameters: {weight: 0.3}\n  - model: %sb\n    parameters: {weight: 0.3}\n  - model: %sc\n    parameters: {weight: 0.4}\ndtype: bfloat16\nchat_template: %s\n' "$p" "$p" "$p" "$ct"
    else
        printf 'merge_method: linear\nmodels:\n  - model: %sbase\n    parameters: {weight: 0.3}\n  - model: %sft\n    parameters: {weight: 0.7}\ndtype: bfloat16\nchat_template: %s\n' "$p" "$p" "$ct"
    fi
}
