#!/usr/bin/env bash
# inputs_change.sh — inputs that change underneath a merge, and hang-ups
# (spec/reliability.md §8.2). A linear merge is stopped (SIGSTOP) once its
# temporary output directory exists, so the VM has mapped its inputs and is
# writing; an input is then truncated, rewritten in place with other bytes
# of the same size, or renamed over, and the merge continued (SIGCONT). It
# must fail with exit 1 (an error, not a crash signal) naming the file, and
# leave neither OUT_DIR nor OUT_DIR.crucible-tmp-*. Then SIGHUP to merge,
# run and synth must act as SIGINT does (exit 130, nothing left), and
# progress written to a closed pipe must not kill a merge.
# usage: tests/e2e/inputs_change.sh CRUCIBLE_BIN
. "$(dirname "$0")/../support/e2e_lib.sh" inputs_change "$1"

cd "$tmp" || exit 1
# ~70 MB per model; ft in four shards of ~20 MB
mid=(--arch llama --layers 4 --hidden 512 --intermediate 1408 --heads 8 --kv-heads 2 --vocab 24000 --dtype bfloat16)
"$bin" synth base "${mid[@]}" --seed 1 >/dev/null 2>&1
"$bin" synth ft --from base --delta-scale 0.1 --seed 2 --shard-size 20M >/dev/null 2>&1
check '[ -f base/model.safetensors ] && [ -f ft/model-00002-of-00004.safetensors ]' "synth inputs"
cat >lin.yml <<YML
merge_method: linear
models:
  - model: in/base
    parameters: {weight: 0.5}
  - model: in/ft
    parameters: {weight: 0.5}
dtype: bfloat16
YML

tmp_of() { ls -d "$1".crucible-tmp-* 2>/dev/null; }

# change NAME THREADS ACTION WANT: merge fresh copies of the inputs (in/),
# run ACTION while the merge is stopped in the VM, expect exit 1 with WANT
# in the message and nothing left behind.
change() {
    local name=$1 threads=$2 action=$3 want=$4 out=o_$1
    rm -rf in && mkdir in && cp -r base ft in/
    # times far back: a change moves them even within one clock tick
    touch -d '2001-01-01' in/base/* in/ft/*
    "$bin" merge lin.yml "$out" --threads "$threads" --quiet 2>"$name.err" &
    local pid=$! i=0
    while [ $i -lt 3000 ] && kill -0 $pid 2>/dev/null && [ -z "$(tmp_of "$out")" ]; do
        sleep 0.01
        i=$((i + 1))
    done
    kill -STOP $pid 2>/dev/null
    if [ -z "$(tmp_of "$out")" ]; then
        kill -CONT $pid 2>/dev/null
        wait $pid
        bad "$name: the merge finished before the input could be changed (machine too fast for this model size?)"
        return
    fi
    eval "$action"
    kill -CONT $pid
    wait $pid
    local rc=$?
    check '[ $rc -eq 1 ]' "$name: rc $rc (want 1, an error and not a crash): $(cat "$name.err")"
    check 'grep -qF "$want" "$name.err"' "$name: message does not say '$want': $(cat "$name.err")"
    check '[ ! -e "$out" ]' "$name: $out left behind"
    check '[ -z "$(tmp_of "$out")" ]' "$name: temporary directory left: $(tmp_of "$out")"
}

shard=in/ft/model-00002-of-00004.safetensors
change truncate_1 1 "truncate -s 1000000 $shard" "$shard changed while it was being read"
change truncate_2 2 "truncate -s 1000000 $shard" "$shard changed while it was being read"
change truncate_all 1 "truncate -s 0 in/base/model.safetensors" \
    "in/base/model.safetensors changed while it was being read"
change rewrite 1 "head -c 4096 /dev/zero | tr '\\0' X | dd of=in/base/model.safetensors bs=4096 seek=12000 conv=notrunc status=none" \
    "in/base/model.safetensors changed while it was being read (written to"
change rewrite_2 2 "head -c 4096 /dev/zero | tr '\\0' X | dd of=$shard bs=4096 seek=100 conv=notrunc status=none" \
    "$shard changed while it was being read (written to"
change replace 1 "cp $shard new.st && mv new.st $shard" \
    "$shard changed while it was being read (replaced by another file)"

# the same merge untouched succeeds (the copies and the recipe are sound)
rm -rf in && mkdir in && cp -r base ft in/
"$bin" merge lin.yml whole --threads 2 --quiet
check '"$bin" verify whole >/dev/null 2>&1' "untouched merge verifies"

# ---- SIGHUP: a closed terminal or SSH session ------------------------------

interrupt merge_hup HUP h1 "$bin" merge lin.yml h1 --threads 1 --quiet
interrupt merge_hup_2 HUP h2 "$bin" merge lin.yml h2 --threads 2 --quiet
"$bin" compile lin.yml -o lin.crb 2>/dev/null
check '[ -f lin.crb ]' "compile"
interrupt run_hup HUP h3 "$bin" run lin.crb h3 --threads 1 --quiet
# synth writes ~280 MB here, so that it is still writing when the signal
# comes; it had no handler at all before (SIGINT left its temporary directory)
interrupt synth_hup HUP h4 "$bin" synth h4 --arch llama --layers 16 --hidden 512 --intermediate 1408 --heads 8 \
    --kv-heads 2 --vocab 24000 --dtype float32 --seed 5
interrupt synth_int INT h5 "$bin" synth h5 --arch llama --layers 16 --hidden 512 --intermediate 1408 --heads 8 \
    --kv-heads 2 --vocab 24000 --dtype float32 --seed 5

# under nohup (SIGHUP ignored when crucible starts) a hang-up does not stop it
(trap '' HUP; exec "$bin" merge lin.yml nohup --threads 1 --quiet) &
pid=$!
i=0
while [ $i -lt 3000 ] && kill -0 $pid 2>/dev/null && [ -z "$(tmp_of nohup)" ]; do sleep 0.01; i=$((i + 1)); done
kill -s HUP $pid 2>/dev/null
wait $pid
rc=$?
check '[ $rc -eq 0 ] && "$bin" verify nohup >/dev/null 2>&1' "SIGHUP under nohup: rc $rc"

# ---- SIGPIPE: progress to a pipe nobody reads any more ---------------------
# stderr is a pipe whose reader has exited before crucible starts: the
# progress lines fail with EPIPE and the merge completes.
exec {w}> >(exec true)
reader=$!
i=0
while [ $i -lt 500 ] && kill -0 $reader 2>/dev/null; do sleep 0.01; i=$((i + 1)); done
"$bin" merge lin.yml piped --threads 1 2>&$w
rc=$?
exec {w}>&-
check '[ $rc -eq 0 ]' "merge with stderr to a closed pipe: rc $rc"
check '"$bin" verify piped >/dev/null 2>&1' "merge with stderr to a closed pipe: output does not verify"
check '[ -z "$(tmp_of piped)" ]' "merge with stderr to a closed pipe: temporary directory left"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
