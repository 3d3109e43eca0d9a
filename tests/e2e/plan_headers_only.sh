#!/usr/bin/env bash
# plan_headers_only.sh — `crucible plan` reads headers only: on models whose
# files are cut right after the safetensors header it still reports the
# full plan (same bytes as on complete files), while `merge` refuses them
# before writing anything.
. "$(dirname "$0")/../support/e2e_lib.sh" plan_headers_only "$1"

shape=(--arch llama --layers 2 --hidden 32 --intermediate 48 --heads 4 --kv-heads 2 --vocab 64 --dtype bfloat16)
"$bin" synth "$tmp/full/base" "${shape[@]}" --seed 1 >/dev/null
"$bin" synth "$tmp/full/ft-a" --from "$tmp/full/base" --delta-scale 0.02 --seed 2 >/dev/null
"$bin" synth "$tmp/full/ft-b" --from "$tmp/full/base" --delta-scale 0.02 --seed 3 >/dev/null
cp -r "$tmp/full" "$tmp/cut"
cut_to_header "$tmp"/cut/*/model.safetensors
"$bin" plan examples/demo/ties.yml --models-dir "$tmp/full" >"$tmp/plan-full" 2>&1
rc=$?; check '[ $rc -eq 0 ]' "plan on complete models"
"$bin" plan examples/demo/ties.yml --models-dir "$tmp/cut" >"$tmp/plan-cut" 2>&1
rc=$?; check '[ $rc -eq 0 ]' "plan on header-only models exits 0"
check 'grep -q "^read" "$tmp/plan-cut" && diff <(grep -E "^(read|write|peak)" "$tmp/plan-full") <(grep -E "^(read|write|peak)" "$tmp/plan-cut") >/dev/null' \
      "header-only plan reports the same bytes and memory"
"$bin" merge examples/demo/ties.yml "$tmp/out" --models-dir "$tmp/cut" --quiet 2>"$tmp/err"
rc=$?
check '[ $rc -ne 0 ] && grep -q "truncated" "$tmp/err" && [ ! -e "$tmp/out" ]' "merge refuses truncated inputs, writes nothing"
check '[ -z "$(ls "$tmp" | grep crucible-tmp)" ]' "no temp directory left"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
