#!/usr/bin/env bash
# compile_scale.sh — a model of 100,002 tensors compiles and plans
# (spec/reliability.md §8.4). Two Llama-shaped models of 11,111 tiny layers,
# cut right after their headers (~20 MB in all), merged in two stages (the
# second reads every tensor of the first), go through the whole compiler:
# front end, graph, passes, emitter, .crb writer and loader (explain), and
# the memory plan and report (plan).
# Before the fix the emitter and the graph builder were quadratic in
# tensors and this ran for hours: the test fails by not finishing, not by
# a timing assertion.
. "$(dirname "$0")/../support/e2e_lib.sh" compile_scale "$1"

shape=(--arch llama --layers 11111 --hidden 8 --intermediate 8 --heads 2 --kv-heads 1 --vocab 16 --dtype bfloat16)
"$bin" synth "$tmp/m/base" "${shape[@]}" --seed 1 >/dev/null
"$bin" synth "$tmp/m/ft" --from "$tmp/m/base" --delta-scale 0.02 --seed 2 >/dev/null
cut_to_header "$tmp"/m/*/model.safetensors
cat >"$tmp/r.yml" <<'EOF'
name: first
models:
  - model: base
    parameters: {weight: 0.7}
  - model: ft
    parameters: {weight: 0.3}
merge_method: linear
dtype: bfloat16
---
models:
  - model: first
    parameters: {weight: 0.5}
  - model: base
    parameters: {weight: 0.5}
merge_method: linear
dtype: bfloat16
EOF
# (the models are cut after their headers: no content to hash, so --skip-hash)
"$bin" compile "$tmp/r.yml" -o "$tmp/r.crb" --models-dir "$tmp/m" --skip-hash 2>"$tmp/err"
rc=$?; check '[ $rc -eq 0 ] && [ -s "$tmp/r.crb" ]' "compile of 100,002 tensors in two stages: $(head -c 300 "$tmp/err")"
"$bin" explain "$tmp/r.crb" >"$tmp/explain" 2>&1
rc=$?; check '[ $rc -eq 0 ] && head -1 "$tmp/explain" | grep -q "100002 outputs"' "the .crb loads back: $(head -c 300 "$tmp/explain")"
"$bin" plan "$tmp/r.yml" --models-dir "$tmp/m" >"$tmp/plan" 2>&1
rc=$?; check '[ $rc -eq 0 ] && grep -q "100002 tensors" "$tmp/plan"' "plan of the same recipe: $(head -c 300 "$tmp/plan")"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
