#!/usr/bin/env bash
# output_stream.sh — the output stream (vm/outstream.h) changes no byte:
# linear, ties, slerp and a layer-skipping passthrough give the same shards
# and index through the stream (the default) and through the per-chunk
# pwrite (--no-output-stream), with 1 and 2 threads, split into several
# shards, under --max-memory budgets that shrink or refuse the window, on
# tmpfs (/dev/shm, where O_DIRECT may be refused), and through compile +
# run. The recorded shard hashes pass `verify --require-hash`. `plan`
# prints the stream's line.
# usage: tests/e2e/output_stream.sh CRUCIBLE_BIN
. "$(dirname "$0")/../support/e2e_lib.sh" output_stream "$1"

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
merge_method: ties
base_model: base
parameters: {normalize: true}
dtype: bfloat16
YML
cat >"$tmp/slerp.yml" <<'YML'
slices:
  - sources:
      - model: ft-a
        layer_range: [0, 4]
      - model: ft-b
        layer_range: [0, 4]
merge_method: slerp
base_model: ft-a
parameters:
  t:
    - filter: self_attn
      value: [0, 0.5, 0.3, 0.7, 1]
    - value: 0.5
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
dtype: float32
YML

# every file but the model card (it names the output directory)
digest() { (cd "$1" && cat model*.safetensors model.safetensors.index.json 2>/dev/null | cksum); }

for r in linear ties slerp passthrough; do
    "$bin" merge "$tmp/$r.yml" "$tmp/$r-ref" --models-dir "$m" --quiet --no-copy-tokenizer --no-output-stream 2>"$tmp/err"
    check '[ $? -eq 0 ]' "$r: merge --no-output-stream: $(head -c 300 "$tmp/err")"
    want=$(digest "$tmp/$r-ref")
    "$bin" plan "$tmp/$r.yml" --models-dir "$m" >"$tmp/plan" 2>&1
    check 'grep -q "^output stream   1 of 1 shard written by one thread in 4096 KiB blocks with O_DIRECT" "$tmp/plan"' \
        "$r: plan has no output stream line: $(grep -v '^ ' "$tmp/plan" | head -c 600)"
    i=0
    for v in "" "--threads 1" "--threads 2" "--out-shard-size 300K" "--out-shard-size 300K --threads 1" \
             "--max-memory 1M" "--threads 1 --max-memory 600K"; do
        i=$((i + 1))
        # a budget plan refuses is not this test's subject: skip it
        # shellcheck disable=SC2086
        "$bin" plan "$tmp/$r.yml" --models-dir "$m" $v >/dev/null 2>&1 || continue
        ref=$tmp/$r-ref
        case "$v" in
        *shard-size*)
            ref=$tmp/$r-ref-$i
            # shellcheck disable=SC2086
            "$bin" merge "$tmp/$r.yml" "$ref" --models-dir "$m" --quiet --no-copy-tokenizer --no-output-stream $v 2>"$tmp/err"
            check '[ $? -eq 0 ] && [ "$(ls "$ref"/model-*.safetensors | wc -l)" -gt 1 ]' "$r ($v): not split: $(head -c 300 "$tmp/err")"
            ;;
        esac
        # shellcheck disable=SC2086
        "$bin" merge "$tmp/$r.yml" "$tmp/$r-$i" --models-dir "$m" --quiet --no-copy-tokenizer $v 2>"$tmp/err"
        check '[ $? -eq 0 ] && [ "$(digest "$tmp/$r-$i")" = "$(digest "$ref")" ]' \
            "$r ($v): bytes differ from --no-output-stream: $(head -c 300 "$tmp/err")"
        "$bin" verify "$tmp/$r-$i" --require-hash >"$tmp/verify" 2>&1
        check '[ $? -eq 0 ] && grep -Eq "hash(es)? match" "$tmp/verify"' "$r ($v): verify --require-hash: $(head -c 300 "$tmp/verify")"
    done
done

# a budget with no room for a window: plan says nothing of a stream, the bytes are the same
"$bin" plan "$tmp/ties.yml" --models-dir "$m" --max-memory 20M >"$tmp/plan" 2>&1
check 'grep -q "^output stream   1 of 1 shard written by one thread in .* KiB blocks" "$tmp/plan"' \
    "plan --max-memory 20M: no stream: $(grep -v '^ ' "$tmp/plan" | head -c 600)"

# tmpfs: O_DIRECT is refused at open on older kernels, taken on newer ones
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    shm=$(mktemp -d /dev/shm/crucible-e2e-XXXXXX)
    for r in linear ties; do
        "$bin" merge "$tmp/$r.yml" "$shm/$r" --models-dir "$m" --quiet --no-copy-tokenizer --threads 2 2>"$tmp/err"
        check '[ $? -eq 0 ] && [ "$(digest "$shm/$r")" = "$(digest "$tmp/$r-ref")" ]' "$r on /dev/shm: $(head -c 300 "$tmp/err")"
        "$bin" verify "$shm/$r" --require-hash >"$tmp/verify" 2>&1
        check '[ $? -eq 0 ]' "$r on /dev/shm: verify --require-hash: $(head -c 300 "$tmp/verify")"
    done
    rm -rf "$shm"
else
    echo "no writable /dev/shm: tmpfs check skipped"
fi

# compile + run, with and without the stream
"$bin" compile "$tmp/ties.yml" -o "$tmp/ties.crb" --models-dir "$m" >/dev/null 2>"$tmp/err"
check '[ $? -eq 0 ]' "compile: $(head -c 300 "$tmp/err")"
for v in "" --no-output-stream; do
    rm -rf "$tmp/run"
    # shellcheck disable=SC2086
    "$bin" run "$tmp/ties.crb" "$tmp/run" --models-dir "$m" --quiet $v 2>"$tmp/err"
    check '[ $? -eq 0 ] && [ "$(digest "$tmp/run")" = "$(digest "$tmp/ties-ref")" ]' "run $v: $(head -c 300 "$tmp/err")"
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
