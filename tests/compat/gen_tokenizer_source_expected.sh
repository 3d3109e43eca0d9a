#!/usr/bin/env bash
# gen_tokenizer_source_expected.sh — run by hand: the file list mergekit 0.1.5
# writes for `tokenizer_source: base | union | ft` and `tokenizer: {source:
# base}` over two synth models sharing one tokenizer (the models of
# tests/e2e/tokenizer_source.sh), and whether its tensors equal those of the
# recipe without the key; saved under tests/e2e/fixtures/tokenizer_source/.
# Usage: gen_tokenizer_source_expected.sh CRUCIBLE_BIN VENV_DIR (mergekit 0.1.5)
set -eu
bin=$(realpath "$1"); venv=$(realpath "$2")
here=$(cd "$(dirname "$0")/../.." && pwd)
out=$here/tests/e2e/fixtures/tokenizer_source
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
m=$tmp/m
shape=(--arch llama --layers 2 --hidden 32 --intermediate 64 --heads 4 --kv-heads 2 --vocab 64 --dtype bfloat16)
"$bin" synth "$m/base" "${shape[@]}" --seed 1 >/dev/null
"$bin" synth "$m/ft" --from "$m/base" --delta-scale 0.01 --seed 2 >/dev/null
mkdir -p "$out"
recipe() { printf 'merge_method: linear\nbase_model: %s/base\nmodels:\n  - model: %s/base\n    parameters: {weight: 0.3}\n  - model: %s/ft\n    parameters: {weight: 0.7}\ndtype: bfloat16\n%s' "$m" "$m" "$m" "$1"; }
recipe '' >"$tmp/plain.yml"
"$venv/bin/mergekit-yaml" "$tmp/plain.yml" "$tmp/out-plain" >/dev/null 2>&1
: >"$out/tensors"
for c in base union model block; do
    case $c in
    model) extra="tokenizer_source: $m/ft" ;;
    block) extra='tokenizer: {source: base, pad_to_multiple_of: 32}' ;;
    *) extra="tokenizer_source: $c" ;;
    esac
    recipe "$extra"$'\n' >"$tmp/$c.yml"
    "$venv/bin/mergekit-yaml" "$tmp/$c.yml" "$tmp/out-$c" >"$tmp/$c.log" 2>&1 || { cat "$tmp/$c.log"; exit 1; }
    ls "$tmp/out-$c" >"$out/$c.files"
    if cmp -s "$tmp/out-$c/model.safetensors" "$tmp/out-plain/model.safetensors"; then echo "$c same" >>"$out/tensors"
    else echo "$c differ" >>"$out/tensors"; fi
done
"$venv/bin/python" - >"$out/VERSIONS" <<'PY'
import importlib.metadata as m
for p in ("mergekit", "transformers", "tokenizers", "torch"):
    print(p, m.version(p))
PY
