#!/usr/bin/env bash
# gen_chat_template_expected.sh — run by hand: what mergekit 0.1.5 writes for
# each `chat_template:` case of tests/support/chat_template_models.sh, saved
# as tests/e2e/fixtures/chat_template/CASE.jinja (its chat_template.jinja,
# when written) and CASE.files (the output's file list), with VERSIONS.
# Usage: gen_chat_template_expected.sh CRUCIBLE_BIN VENV_DIR (mergekit 0.1.5)
set -eu
bin=$(realpath "$1"); venv=$(realpath "$2")
here=$(cd "$(dirname "$0")/../.." && pwd)
out=$here/tests/e2e/fixtures/chat_template
. "$here/tests/support/chat_template_models.sh"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pkg=$("$venv/bin/python" -c 'import mergekit, os; print(os.path.dirname(mergekit.__file__))')
ct_models "$bin" "$tmp/m" "$pkg/_data/chat_templates"
mkdir -p "$out"
for c in $CT_CASES; do
    ct_recipe "$c" "$tmp/m/" >"$tmp/$c.yml"
    "$venv/bin/mergekit-yaml" "$tmp/$c.yml" "$tmp/out-$c" >"$tmp/$c.log" 2>&1 || { cat "$tmp/$c.log"; exit 1; }
    rm -f "$out/$c.jinja"
    [ -f "$tmp/out-$c/chat_template.jinja" ] && cp "$tmp/out-$c/chat_template.jinja" "$out/$c.jinja"
    ls "$tmp/out-$c" >"$out/$c.files"
done
"$venv/bin/python" - >"$out/VERSIONS" <<'PY'
import importlib.metadata as m
for p in ("mergekit", "transformers", "tokenizers", "torch"):
    print(p, m.version(p))
PY
