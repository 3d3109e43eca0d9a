#!/usr/bin/env bash
# task_vectors.sh — kept task vectors (spec/graph-ir.md "Kept task
# vectors"): without --max-memory a TIES-family merge stores each model's
# task vector once per tensor, in the selection's first pass, and its later
# passes read it back instead of recomputing it. `plan` shows how many and
# the most one tensor holds; under --max-memory nothing is kept (the passes
# recompute); the output bytes are the same either way, through a .crb too.
. "$(dirname "$0")/../support/e2e_lib.sh" task_vectors "$1"

shape=(--arch llama --layers 2 --hidden 256 --intermediate 512 --heads 4 --kv-heads 2 --vocab 16000 --dtype bfloat16)
"$bin" synth "$tmp/m/base" "${shape[@]}" --seed 1 >/dev/null
for i in 2 3 4; do "$bin" synth "$tmp/m/ft-$i" --from "$tmp/m/base" --delta-scale 0.01 --seed "$i" >/dev/null; done
export CRUCIBLE_MODELS=$tmp/m

for method in ties breadcrumbs; do
    cat >"$tmp/$method.yml" <<Y
models:
  - model: base
  - model: ft-2
    parameters: {density: 0.5, weight: 0.5}
  - model: ft-3
    parameters: {density: 0.4, weight: 0.3}
  - model: ft-4
    parameters: {density: 0.6, weight: 0.2}
merge_method: $method
base_model: base
dtype: bfloat16
Y
    "$bin" plan "$tmp/$method.yml" >"$tmp/plan" 2>&1
    tensors=$(sed -n 's/^write .* in 1 shard, \([0-9]*\) tensors.*/\1/p' "$tmp/plan")
    kept=$(sed -n 's/^task vectors *\([0-9]*\) kept.*/\1/p' "$tmp/plan")
    at_once=$(sed -n 's/^task vectors .*(\([0-9]*\) bytes) at once.*/\1/p' "$tmp/plan")
    # three models' task vectors per tensor; the embeddings (16000 x 256
    # bf16) are the most held at once
    check '[ -n "$tensors" ] && [ "${kept:-0}" = $((3 * tensors)) ]' "$method: plan keeps 3 x $tensors task vectors (got ${kept:-none})"
    check '[ "${at_once:-0}" = $((3 * 16000 * 256 * 2)) ]' "$method: at most 3 embedding task vectors at once (got ${at_once:-none})"
    "$bin" plan --max-memory 1G "$tmp/$method.yml" >"$tmp/plan-budget" 2>&1
    check '! grep -q "^task vectors" "$tmp/plan-budget"' "$method: nothing kept under --max-memory"
    check 'grep -q "^peak memory" "$tmp/plan-budget"' "$method: plan under --max-memory"

    "$bin" merge "$tmp/$method.yml" "$tmp/kept-$method" >/dev/null 2>&1
    "$bin" merge --max-memory 1G "$tmp/$method.yml" "$tmp/recomputed-$method" >/dev/null 2>&1
    "$bin" compile "$tmp/$method.yml" -o "$tmp/$method.crb" >/dev/null 2>&1
    "$bin" run "$tmp/$method.crb" "$tmp/crb-$method" >/dev/null 2>&1
    check 'cmp -s "$tmp/kept-$method/model.safetensors" "$tmp/recomputed-$method/model.safetensors"' \
        "$method: the same bytes kept and recomputed"
    check 'cmp -s "$tmp/kept-$method/model.safetensors" "$tmp/crb-$method/model.safetensors"' \
        "$method: the same bytes through a .crb"
done

# a method without a selection keeps nothing (one pass: nothing to share)
sed 's/merge_method: breadcrumbs/merge_method: task_arithmetic/' "$tmp/breadcrumbs.yml" >"$tmp/ta.yml"
"$bin" plan "$tmp/ta.yml" >"$tmp/plan-ta" 2>&1
check 'grep -q "^peak memory" "$tmp/plan-ta" && ! grep -q "^task vectors" "$tmp/plan-ta"' "task_arithmetic keeps nothing"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
