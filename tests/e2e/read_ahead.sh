#!/usr/bin/env bash
# read_ahead.sh — the input reader thread (vm/reader.h) changes no byte:
# linear, ties and a passthrough that skips layers give the same output
# with the reader (the default) and without it (--no-read-ahead), with 1
# and 2 threads, under a --max-memory that streams, through compile + run,
# and for PyTorch .bin inputs (tests/e2e/fixtures/torchbin). `plan` prints
# the reader's window: 256 MiB, or the budget's headroom under
# --max-memory. `run` takes --no-read-ahead too; `plan` does not.
# usage: tests/e2e/read_ahead.sh CRUCIBLE_BIN
. "$(dirname "$0")/../support/e2e_lib.sh" read_ahead "$1"

m=$tmp/models
shape=(--arch llama --layers 4 --hidden 64 --intermediate 160 --heads 4 --kv-heads 2 --vocab 4000 --dtype bfloat16)
"$bin" synth "$m/base" "${shape[@]}" --seed 1 >/dev/null || bad "synth base"
seed=10
for n in ft-a ft-b ft-c; do
    "$bin" synth "$m/$n" --from "$m/base" --delta-scale 0.01 --seed $seed >/dev/null || bad "synth $n"
    seed=$((seed + 1))
done
cat >"$tmp/linear.yml" <<'YML'
models:
  - model: ft-a
    parameters: {weight: 0.4}
  - model: ft-b
    parameters: {weight: 0.3}
  - model: ft-c
    parameters: {weight: 0.3}
merge_method: linear
dtype: bfloat16
YML
cat >"$tmp/ties.yml" <<'YML'
models:
  - model: base
  - model: ft-a
    parameters: {density: 0.5, weight: 0.5}
  - model: ft-b
    parameters: {density: 0.5, weight: 0.3}
  - model: ft-c
    parameters: {density: 0.5, weight: 0.2}
merge_method: ties
base_model: base
parameters: {normalize: true}
dtype: bfloat16
YML
cat >"$tmp/passthrough.yml" <<'YML'
slices:
  - sources:
      - model: ft-a
        layer_range: [0, 1]
  - sources:
      - model: ft-b
        layer_range: [3, 4]
merge_method: passthrough
dtype: bfloat16
YML

digest() { cat "$1"/model*.safetensors | cksum; }

for r in linear ties passthrough; do
    "$bin" merge "$tmp/$r.yml" "$tmp/$r-ref" --models-dir "$m" --quiet --no-read-ahead 2>"$tmp/err"
    check '[ $? -eq 0 ]' "$r: merge --no-read-ahead: $(head -c 300 "$tmp/err")"
    want=$(digest "$tmp/$r-ref")
    i=0
    for v in "" "--threads 1" "--threads 2" "--threads 2 --max-memory 1M" "--threads 1 --max-memory 600K"; do
        i=$((i + 1))
        # a budget plan refuses is not this test's subject: skip it
        # shellcheck disable=SC2086
        "$bin" plan "$tmp/$r.yml" --models-dir "$m" $v >/dev/null 2>&1 || continue
        # shellcheck disable=SC2086
        "$bin" merge "$tmp/$r.yml" "$tmp/$r-$i" --models-dir "$m" --quiet $v 2>"$tmp/err"
        check '[ $? -eq 0 ] && [ "$(digest "$tmp/$r-$i")" = "$want" ]' "$r ($v): bytes differ from --no-read-ahead: $(head -c 300 "$tmp/err")"
    done
done

# plan: the window, and under --max-memory the headroom (at least 16 MiB)
"$bin" plan "$tmp/ties.yml" --models-dir "$m" >"$tmp/plan" 2>&1
check 'grep -q "^read-ahead      256.0 MiB (268435456 bytes): a reader thread reads the inputs in schedule order, in 8 MiB blocks" "$tmp/plan"' \
    "plan: no read-ahead line: $(cat "$tmp/plan")"
"$bin" plan "$tmp/ties.yml" --models-dir "$m" --max-memory 20M >"$tmp/plan" 2>&1
check 'grep -q "^read-ahead      16.0 MiB (16777216 bytes).*within --max-memory.s headroom" "$tmp/plan"' \
    "plan --max-memory: no headroom window: $(cat "$tmp/plan")"
"$bin" plan "$tmp/ties.yml" --models-dir "$m" --no-read-ahead >"$tmp/plan" 2>&1
check 'grep -q "unknown option .--no-read-ahead" "$tmp/plan"' "plan accepted --no-read-ahead: $(cat "$tmp/plan")"

# compile + run, with and without the reader
"$bin" compile "$tmp/ties.yml" -o "$tmp/ties.crb" --models-dir "$m" >/dev/null 2>"$tmp/err"
check '[ $? -eq 0 ]' "compile: $(head -c 300 "$tmp/err")"
for v in "" --no-read-ahead; do
    rm -rf "$tmp/run"
    # shellcheck disable=SC2086
    "$bin" run "$tmp/ties.crb" "$tmp/run" --models-dir "$m" --quiet $v 2>"$tmp/err"
    check '[ $? -eq 0 ] && [ "$(digest "$tmp/run")" = "$(digest "$tmp/ties-ref")" ]' "run $v: $(head -c 300 "$tmp/err")"
done

# PyTorch .bin inputs: the reader reads the stored zip members
fx=$(cd "$(dirname "$0")/fixtures/torchbin" && pwd)
cat >"$tmp/bin.yml" <<'YML'
merge_method: ties
base_model: base
models:
  - model: ft
    parameters: {weight: 0.7, density: 0.5}
dtype: bfloat16
YML
"$bin" merge "$tmp/bin.yml" "$tmp/bin-off" --models-dir "$fx" --quiet --no-read-ahead 2>"$tmp/err"
check '[ $? -eq 0 ]' ".bin merge --no-read-ahead: $(head -c 300 "$tmp/err")"
for v in "" "--threads 1" "--max-memory 6M"; do
    rm -rf "$tmp/bin-on"
    # shellcheck disable=SC2086
    "$bin" merge "$tmp/bin.yml" "$tmp/bin-on" --models-dir "$fx" --quiet $v 2>"$tmp/err"
    check '[ $? -eq 0 ] && [ "$(digest "$tmp/bin-on")" = "$(digest "$tmp/bin-off")" ]' ".bin merge ($v): $(head -c 300 "$tmp/err")"
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
