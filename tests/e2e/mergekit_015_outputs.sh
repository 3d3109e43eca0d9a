#!/usr/bin/env bash
# mergekit_015_outputs.sh — what mergekit 0.1.5 changed around the methods,
# each under `--mergekit-version` (spec/mergekit-0.1.5.md §1, §6; checked
# against real 0.1.5 runs on the golden models):
#  - embeddings of different vocabulary sizes: 0.1.5 refuses them, naming
#    the tensor and the models, unless --unsafe-truncate-embeddings (then
#    the common first rows); 0.1.4 merges the common submatrix silently;
#  - magnitude (TIES) with int(density·N) = 0: 0.1.4 an error, 0.1.5 k = 1;
#  - config.json: 0.1.5 (transformers 5) writes the dtype as `dtype` only,
#    0.1.4 sets `torch_dtype`; the donor's other keys are kept;
#  - the tokenizer copy: 0.1.5 copies ten files, 0.1.4 the first six.
# Usage: mergekit_015_outputs.sh CRUCIBLE_BIN
. "$(dirname "$0")/../support/e2e_lib.sh" mk015out "$1"

g=$(cd "$(dirname "$0")/../golden/models" && pwd)
m=$tmp/models
mkdir -p "$m"
for x in base a b b_v71; do cp -r "$g/$x" "$m/$x"; done

shape() { "$bin" inspect "$1" | awk -v t="$2" '$1 == t { print $2 $3 $4 }'; }   # F32[67,20]

# ---- vocabulary sizes ------------------------------------------------------
cat >"$tmp/vocab.yml" <<'YML'
models:
- model: a
  parameters: {weight: 0.5}
- model: b_v71
  parameters: {weight: 0.5}
base_model: base
merge_method: task_arithmetic
YML
"$bin" merge "$tmp/vocab.yml" "$tmp/v15" --models-dir "$m" --quiet 2>"$tmp/err"
rc=$?
check '[ $rc -eq 2 ] && [ ! -e "$tmp/v15" ]' "0.1.5 vocabulary mismatch: rc $rc, output left: $(ls "$tmp")"
check 'grep -q "lm_head.weight: vocabulary sizes differ: a has shape \[67, 20\] but b_v71 has \[71, 20\]" "$tmp/err"' \
    "0.1.5 error names the tensor and the models: $(cat "$tmp/err")"
check 'grep -q -- "--unsafe-truncate-embeddings" "$tmp/err"' "0.1.5 error names the option: $(cat "$tmp/err")"
"$bin" plan "$tmp/vocab.yml" --models-dir "$m" >/dev/null 2>"$tmp/err"
rc=$?
check '[ $rc -eq 2 ] && grep -q "vocabulary sizes differ" "$tmp/err"' "plan refuses it too: $(cat "$tmp/err")"
"$bin" merge "$tmp/vocab.yml" "$tmp/v15t" --models-dir "$m" --quiet --unsafe-truncate-embeddings 2>"$tmp/err"
rc=$?
check '[ $rc -eq 0 ]' "0.1.5 --unsafe-truncate-embeddings: $(cat "$tmp/err")"
check '[ "$(shape "$tmp/v15t" lm_head.weight)" = "F32[67,20]" ]' "truncated lm_head: $(shape "$tmp/v15t" lm_head.weight)"
"$bin" merge "$tmp/vocab.yml" "$tmp/v15n" --models-dir "$m" --quiet --unsafe-truncate-embeddings \
    --no-unsafe-truncate-embeddings 2>"$tmp/err"
rc=$?
check '[ $rc -eq 2 ] && grep -q "vocabulary sizes differ" "$tmp/err"' "--no-unsafe-truncate-embeddings: $(cat "$tmp/err")"
"$bin" merge "$tmp/vocab.yml" "$tmp/v14" --models-dir "$m" --quiet --mergekit-version 0.1.4 2>"$tmp/err"
rc=$?
check '[ $rc -eq 0 ] && [ ! -s "$tmp/err" ]' "0.1.4 merges the common submatrix silently: $(cat "$tmp/err")"
check '[ "$(shape "$tmp/v14" model.embed_tokens.weight)" = "F32[67,20]" ]' "0.1.4 embed: $(shape "$tmp/v14" model.embed_tokens.weight)"
# the first 67 rows, one and the same merge in both releases here
check '"$bin" diff "$tmp/v14" "$tmp/v15t" >/dev/null' "0.1.4 and 0.1.5 --unsafe-truncate-embeddings differ"

# ---- magnitude k = max(1, int(density·N)) ----------------------------------
cat >"$tmp/ties.yml" <<'YML'
models:
- model: a
  parameters: {weight: 1.0, density: 0.04}
base_model: base
merge_method: ties
YML
"$bin" merge "$tmp/ties.yml" "$tmp/t14" --models-dir "$m" --quiet --mergekit-version 0.1.4 2>"$tmp/err"
rc=$?
check '[ $rc -eq 2 ] && grep -q "density 0.04 keeps no element of 20" "$tmp/err"' "0.1.4 k = 0: rc $rc: $(cat "$tmp/err")"
"$bin" merge "$tmp/ties.yml" "$tmp/t15" --models-dir "$m" --quiet 2>"$tmp/err"
rc=$?
check '[ $rc -eq 0 ]' "0.1.5 k = max(1, 0): $(cat "$tmp/err")"

# ---- config.json and the tokenizer files ------------------------------------
tok=(tokenizer_config.json special_tokens_map.json tokenizer.json tokenizer.model added_tokens.json merges.txt)
new=(chat_template.jinja generation_config.json chat_template.json video_preprocessor_config.json)
for f in "${tok[@]}" "${new[@]}" vocab.json preprocessor_config.json; do echo "{\"f\": \"$f\"}" >"$m/base/$f"; done
cat >"$tmp/cfg.yml" <<'YML'
models:
- model: a
  parameters: {weight: 0.5}
base_model: base
merge_method: task_arithmetic
dtype: bfloat16
YML
for v in 0.1.4 0.1.5; do
    "$bin" merge "$tmp/cfg.yml" "$tmp/c$v" --models-dir "$m" --quiet --mergekit-version $v 2>"$tmp/err"
    rc=$?
    check '[ $rc -eq 0 ]' "merge $v: $(cat "$tmp/err")"
    for f in "${tok[@]}"; do check 'cmp -s "$m/base/$f" "$tmp/c$v/$f"' "$v: $f not copied"; done
    for f in vocab.json preprocessor_config.json; do check '[ ! -e "$tmp/c$v/$f" ]' "$v: $f copied"; done
    # the donor's keys stay, in its order (the golden base has torch_dtype last)
    check 'grep -q "\"rope_theta\": 10000.0," "$tmp/c$v/config.json"' "$v: donor keys: $(cat "$tmp/c$v/config.json")"
done
for f in "${new[@]}"; do
    check '[ ! -e "$tmp/c0.1.4/$f" ]' "0.1.4 copies $f (mergekit 0.1.4 copies six files)"
    check 'cmp -s "$m/base/$f" "$tmp/c0.1.5/$f"' "0.1.5: $f not copied"
done
check 'grep -q "\"torch_dtype\": \"bfloat16\"" "$tmp/c0.1.4/config.json" && ! grep -q "\"dtype\"" "$tmp/c0.1.4/config.json"' \
    "0.1.4 config.json: $(grep dtype "$tmp/c0.1.4/config.json")"
check 'grep -q "\"dtype\": \"bfloat16\"" "$tmp/c0.1.5/config.json" && ! grep -q "torch_dtype" "$tmp/c0.1.5/config.json"' \
    "0.1.5 config.json: $(grep dtype "$tmp/c0.1.5/config.json")"
# without a recipe dtype 0.1.5 renames the donor's torch_dtype (transformers
# 5 reads it and writes `dtype`)
sed '/^dtype:/d' "$tmp/cfg.yml" >"$tmp/cfg-nodt.yml"
"$bin" merge "$tmp/cfg-nodt.yml" "$tmp/cn" --models-dir "$m" --quiet --no-copy-tokenizer 2>"$tmp/err"
rc=$?
check '[ $rc -eq 0 ] && grep -q "\"dtype\": \"float32\"" "$tmp/cn/config.json" && ! grep -q torch_dtype "$tmp/cn/config.json"' \
    "0.1.5 without dtype: $(cat "$tmp/err") $(grep dtype "$tmp/cn/config.json")"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
