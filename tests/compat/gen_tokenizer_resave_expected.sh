#!/usr/bin/env bash
# gen_tokenizer_resave_expected.sh — run by hand: what mergekit 0.1.5 writes
# for a donor with tokenizer.json but no tokenizer_config.json (the forward
# fixture tests/fixtures/forward/llama), where it falls back to transformers'
# AutoTokenizer + save_pretrained: a linear merge, the same with
# `chat_template: chatml`, and mergekit-moe (which always re-saves). Saves
# per case the tokenizer files' names, tokenizer_config.json, the
# tokenizer.json's sha256 and any chat_template.jinja under
# tests/e2e/fixtures/tokenizer_resave/ (checked by tests/e2e/tokenizer_resave.sh).
# The same three again, prefixed spm-, for a donor whose tokenizer is only a
# SentencePiece tokenizer.model (the golden model tests/golden/models/tok_s1):
# transformers converts it, and save_pretrained writes tokenizer.json; and
# merge and chatml prefixed gpt2- for a GPT-2 donor with only vocab.json +
# merges.txt (tests/golden/models/tok_g1); and the three prefixed llama- for
# a donor whose tokenizer.model has a tokenizer_config.json naming
# LlamaTokenizer (tests/golden/models/tok_l1): mergekit copies the files as
# they are for a plain merge (no tokenizer.json: no sha256 file), and
# re-saves what LlamaTokenizer builds with a chat template and in moe.
# Run online (HF_HUB_OFFLINE unset): offline, transformers writes
# "local_files_only": true.
# Usage: gen_tokenizer_resave_expected.sh VENV_DIR (mergekit 0.1.5)
set -eu
venv=$(realpath "$1")
here=$(cd "$(dirname "$0")/../.." && pwd)
out=$here/tests/e2e/fixtures/tokenizer_resave
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"
cd "$tmp"
printf 'models:\n  - model: a\n    parameters: {weight: 0.5}\n  - model: b\n    parameters: {weight: 0.5}\nmerge_method: linear\ndtype: bfloat16\n' >merge.yml
{ cat merge.yml; echo 'chat_template: chatml'; } >chatml.yml
printf 'base_model: a\ngate_mode: random\ndtype: bfloat16\nexperts:\n  - source_model: a\n  - source_model: b\n' >moe.yml
export ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2
for donor in "" spm- gpt2- llama-; do
    rm -rf a b out-*
    case $donor in
    spm-) src=$here/tests/golden/models/tok_s1 ;;
    gpt2-) src=$here/tests/golden/models/tok_g1 ;;
    llama-) src=$here/tests/golden/models/tok_l1 ;;
    *) src=$here/tests/fixtures/forward/llama ;;
    esac
    cp -r "$src" a
    cp -r "$src" b
    for c in merge chatml moe; do
        [ "$donor$c" = gpt2-moe ] && continue     # mergekit-moe has no GPT-2 output architecture
        tool=mergekit-yaml; [ $c = moe ] && tool=mergekit-moe
        "$venv/bin/$tool" $c.yml out-$c --copy-tokenizer --no-write-model-card >$c.log 2>&1 || { cat $c.log; exit 1; }
        (cd out-$c && ls | grep -E '^(tokenizer|special_tokens|chat_template|added_tokens|generation_config)') >"$out/$donor$c.files"
        cp out-$c/tokenizer_config.json "$out/$donor$c.tokenizer_config.json"
        rm -f "$out/$donor$c.tokenizer_json.sha256"
        [ ! -f out-$c/tokenizer.json ] || sha256sum <out-$c/tokenizer.json | cut -d' ' -f1 >"$out/$donor$c.tokenizer_json.sha256"
        [ ! -f out-$c/chat_template.jinja ] || cp out-$c/chat_template.jinja "$out/$donor$c.chat_template.jinja"
    done
done
"$venv/bin/python" - >"$out/VERSIONS" <<'PY'
import importlib.metadata as m
for p in ("mergekit", "transformers", "tokenizers", "torch"):
    print(p, m.version(p))
PY
