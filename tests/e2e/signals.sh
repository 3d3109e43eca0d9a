#!/usr/bin/env bash
# signals.sh — SIGINT / SIGTERM in the middle of `crucible merge`, `moe`
# and `run`: the command exits 130 saying "interrupted", and neither OUT_DIR
# nor OUT_DIR.crucible-tmp-* is left behind; the inputs are untouched. The
# signal is sent as soon as the temporary directory appears (the VM is then
# writing shards), so the test does not depend on the machine's speed as
# long as the rest of the merge takes more than a few milliseconds; a run
# that finished before the signal is reported, not counted as a pass.
# usage: tests/e2e/signals.sh CRUCIBLE_BIN
. "$(dirname "$0")/../support/e2e_lib.sh" signals "$1"

cd "$tmp" || exit 1
# ~60 MB per model: big enough that writing the output takes a while
mid=(--arch llama --layers 4 --hidden 512 --intermediate 1408 --heads 8 --kv-heads 2 --vocab 24000 --dtype bfloat16)
"$bin" synth base "${mid[@]}" --seed 1 >/dev/null 2>&1
"$bin" synth ft --from base --delta-scale 0.1 --seed 2 >/dev/null 2>&1
"$bin" synth ft2 --from base --delta-scale 0.1 --seed 3 >/dev/null 2>&1
check '[ -f base/model.safetensors ] && [ -f ft/model.safetensors ] && [ -f ft2/model.safetensors ]' "synth inputs"
sums=$(cksum base/model.safetensors ft/model.safetensors ft2/model.safetensors)
cat >ties.yml <<YML
merge_method: ties
base_model: base
models:
  - model: ft
    parameters: {weight: 0.5, density: 0.5}
  - model: ft2
    parameters: {weight: 0.5, density: 0.5}
dtype: bfloat16
YML
cat >moe.yml <<YML
base_model: base
gate_mode: random
dtype: bfloat16
experts:
  - source_model: ft
  - source_model: ft2
YML

interrupt merge_int INT m1 "$bin" merge ties.yml m1 --threads 1 --quiet
interrupt merge_term TERM m2 "$bin" merge ties.yml m2 --threads 1 --quiet
interrupt merge_threads INT m3 "$bin" merge ties.yml m3 --threads 2 --quiet
interrupt moe_term TERM moe1 "$bin" moe moe.yml moe1 --threads 1 --quiet --i-understand-this-is-not-useful-without-training
"$bin" compile ties.yml -o ties.crb 2>/dev/null
check '[ -f ties.crb ]' "compile"
interrupt run_int INT r1 "$bin" run ties.crb r1 --threads 1 --quiet
interrupt run_term TERM r2 "$bin" run ties.crb r2 --threads 1 --quiet

# a signal before the VM starts (while compiling) leaves nothing either.
# SIGTERM: a background job of a script ignores SIGINT until crucible
# installs its handler. Sent once the process is crucible (after exec), so
# that it reaches crucible and not the forked shell.
"$bin" merge ties.yml early --quiet 2>early.err &
pid=$!
i=0
while [ $i -lt 500 ] && [ "$(readlink /proc/$pid/exe 2>/dev/null)" != "$(readlink -f "$bin")" ] && kill -0 $pid 2>/dev/null; do
    i=$((i + 1))
done
kill -s TERM $pid 2>/dev/null
wait $pid
rc=$?
check '[ $rc -ne 0 ] || "$bin" verify early >/dev/null 2>&1' "early signal: rc $rc yet no valid output"
check '[ $rc -eq 0 ] || [ ! -e early ]' "early signal: early/ left behind"
check '[ -z "$(ls -d early.crucible-tmp-* 2>/dev/null)" ]' "early signal: temporary directory left"

# --force over an existing output: interrupted, the old output stays as it was
"$bin" merge ties.yml kept --quiet
before=$(cksum kept/model.safetensors.index.json kept/model.safetensors)
KEEP=1 interrupt force_int INT kept "$bin" merge ties.yml kept --force --threads 1 --quiet
check '[ -d kept ] && [ "$(cksum kept/model.safetensors.index.json kept/model.safetensors)" = "$before" ]' "--force interrupted: old output changed"
check '"$bin" verify kept >/dev/null 2>&1' "--force interrupted: old output still verifies"

check '[ "$(cksum base/model.safetensors ft/model.safetensors ft2/model.safetensors)" = "$sums" ]' "inputs untouched"

# the uninterrupted merge completes and verifies (the model size is sane)
"$bin" merge ties.yml full --threads 2 --quiet
check '"$bin" verify full >/dev/null 2>&1' "uninterrupted merge verifies"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
