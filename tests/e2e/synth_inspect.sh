#!/usr/bin/env bash
# synth_inspect.sh — crucible synth / inspect / diff from the command line:
# deterministic output, sharding, fine-tunes, exit codes and error messages.
# usage: tests/e2e/synth_inspect.sh CRUCIBLE_BIN
. "$(dirname "$0")/../support/e2e_lib.sh" synth "$1"

small=(--arch llama --layers 2 --hidden 32 --intermediate 64 --heads 4 --kv-heads 2 --vocab 300 --dtype bfloat16)

"$bin" synth "$tmp/a" "${small[@]}" --seed 1 2>"$tmp/err"
rc=$?
check '[ $rc -eq 0 ] && [ -f "$tmp/a/model.safetensors" ] && [ -f "$tmp/a/config.json" ]' "synth a: $(cat "$tmp/err")"
"$bin" synth "$tmp/b" "${small[@]}" --seed 1
rc=$?
"$bin" synth "$tmp/c" "${small[@]}" --seed 2
rc=$?
check 'cmp -s "$tmp/a/model.safetensors" "$tmp/b/model.safetensors"' "same seed gives the same file"
check '! cmp -s "$tmp/a/model.safetensors" "$tmp/c/model.safetensors"' "another seed gives another file"
check '[ -z "$(ls -d "$tmp"/*.crucible-tmp-* 2>/dev/null)" ]' "no temporary directories left"

out=$("$bin" inspect "$tmp/a")
rc=$?
check '[ $rc -eq 0 ]' "inspect exit status"
check 'grep -q "^model.layers.1.mlp.down_proj.weight *BF16 *\[32, 64\] *4096 *model.safetensors" <<<"$out"' "inspect row: $out"
check 'grep -q "^total: 21 tensors" <<<"$out"' "inspect total"

"$bin" diff "$tmp/a" "$tmp/b" >"$tmp/d1"
rc=$?
check '[ $rc -eq 0 ] && grep -q "^identical" "$tmp/d1"' "diff of identical models"
"$bin" diff "$tmp/a" "$tmp/c" >"$tmp/d2"
rc=$?
check '[ $rc -eq 1 ] && grep -q "^different: 0 identical, 21 with different values" "$tmp/d2"' "diff of different models: $(tail -1 "$tmp/d2")"

"$bin" synth "$tmp/ft" --from "$tmp/a" --delta-scale 0.01 --only self_attn.q_proj --seed 5
rc=$?
"$bin" diff "$tmp/a" "$tmp/ft" >"$tmp/d3"
rc=$?
check '[ $rc -eq 1 ] && grep -q "^different: 19 identical, 2 with different values" "$tmp/d3"' "fine-tune touches only q_proj: $(tail -1 "$tmp/d3")"
check 'cmp -s "$tmp/a/tokenizer.json" "$tmp/ft/tokenizer.json"' "fine-tune copies the tokenizer"

"$bin" synth "$tmp/sh" "${small[@]}" --seed 1 --shard-size 10K
rc=$?
check '[ -f "$tmp/sh/model.safetensors.index.json" ] && [ ! -f "$tmp/sh/model.safetensors" ]' "sharded output has an index"
"$bin" diff "$tmp/a" "$tmp/sh" >/dev/null
rc=$?
check '[ $rc -eq 0 ]' "sharded and single-file models hold the same tensors"
check 'grep -q "model-00001-of-" <<<"$("$bin" inspect "$tmp/sh")"' "inspect shows shard files"

# errors: clear messages, non-zero exits, nothing half-written
"$bin" synth "$tmp/a" "${small[@]}" 2>"$tmp/err"
rc=$?
check '[ $rc -ne 0 ] && grep -q "exists and is not" "$tmp/err"' "synth refuses a non-empty output"
"$bin" synth "$tmp/x" "${small[@]}" --shard-size 5.5B 2>"$tmp/err"
rc=$?
check '[ $rc -eq 2 ] && grep -q "5.5B" "$tmp/err" && [ ! -e "$tmp/x" ]' "bad shard size"
"$bin" synth "$tmp/x" --arch llama --layers 2 --hidden 30 --intermediate 64 --heads 4 --kv-heads 2 --vocab 300 2>"$tmp/err"
rc=$?
check '[ $rc -ne 0 ] && grep -q "multiple of --heads" "$tmp/err" && [ ! -e "$tmp/x" ]' "inconsistent sizes: $(cat "$tmp/err")"
"$bin" inspect "$tmp" 2>"$tmp/err"
rc=$?
check '[ $rc -ne 0 ] && grep -q "no model weights" "$tmp/err"' "inspect of a non-model dir"
printf 'garbage' >"$tmp/c/model.safetensors"
"$bin" inspect "$tmp/c" 2>"$tmp/err"
rc=$?
check '[ $rc -ne 0 ] && grep -q "model.safetensors" "$tmp/err"' "inspect of a corrupt file: $(cat "$tmp/err")"
"$bin" diff "$tmp/a" "$tmp/nope" 2>"$tmp/err"
rc=$?
check '[ $rc -eq 2 ] && grep -q "nope" "$tmp/err"' "diff with a missing model"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
