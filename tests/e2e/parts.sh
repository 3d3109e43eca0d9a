#!/usr/bin/env bash
# parts.sh — partitioned runs (spec/parts.md): `run X.crb OUT --part I/N`
# computes only part I's shards into OUT with a manifest; `assemble OUT`
# checks every part and writes the index, config, tokenizer and card; the
# directory is then byte-identical to a single `run`. Parts run as separate
# processes, in parallel and in any order (N = 1, 2, 3, 7; a two-stage
# recipe whose stage output every part recomputes); a missing part and a
# damaged shard are named by assemble and verify; a part killed with
# SIGKILL and run again completes; a file crucible did not write is never
# clobbered; `plan --part` prints every part's figures.
# Usage: parts.sh CRUCIBLE_BIN
. "$(dirname "$0")/../support/e2e_lib.sh" parts "$1"

shape=(--arch llama --layers 2 --hidden 64 --intermediate 128 --heads 4 --kv-heads 2 --vocab 128 --dtype bfloat16)
"$bin" synth "$tmp/m/base" "${shape[@]}" --seed 1 >/dev/null || bad "synth base"
"$bin" synth "$tmp/m/ft" --from "$tmp/m/base" --delta-scale 0.01 --seed 2 >/dev/null || bad "synth ft"
"$bin" synth "$tmp/m/ft2" --from "$tmp/m/base" --delta-scale 0.02 --seed 3 >/dev/null || bad "synth ft2"
cat >"$tmp/ties.yml" <<'YML'
merge_method: ties
base_model: base
models:
  - model: ft
    parameters: {weight: 0.7, density: 0.5}
  - model: ft2
    parameters: {weight: 0.5, density: 0.3}
parameters: {normalize: true}
dtype: bfloat16
YML
# two stages: the first's output is scratch that the second reads
cat >"$tmp/stages.yml" <<'YML'
name: stage-dare
merge_method: dare_ties
base_model: base
models:
  - model: ft
    parameters: {weight: 0.6, density: 0.5}
  - model: ft2
    parameters: {weight: 0.4, density: 0.5}
dtype: bfloat16
---
merge_method: slerp
base_model: stage-dare
models:
  - model: stage-dare
  - model: ft2
parameters: {t: [0, 0.3, 0.7, 1]}
dtype: bfloat16
YML

# parallel N DIR PROGRAM: the N parts as separate processes started in a
# shuffled order, all at once
parallel() {
    local n=$1 out=$2 prog=$3 i pids=()
    for i in $(seq 1 "$n" | shuf); do
        "$bin" run "$prog" "$out" --part "$i/$n" --models-dir "$tmp/m" --quiet 2>>"$out.err" &
        pids+=($!)
    done
    local rc=0
    for i in "${pids[@]}"; do wait "$i" || rc=1; done
    return $rc
}

for r in ties stages; do
    "$bin" compile "$tmp/$r.yml" -o "$tmp/$r.crb" --models-dir "$tmp/m" --out-shard-size 20k --random-seed 5 2>"$tmp/err"
    rc=$?
    check '[ $rc -eq 0 ]' "$r: compile: $(cat "$tmp/err")"
    mkdir -p "$tmp/single-$r"
    "$bin" run "$tmp/$r.crb" "$tmp/single-$r/out" --models-dir "$tmp/m" --quiet 2>"$tmp/err"
    rc=$?
    check '[ $rc -eq 0 ]' "$r: single run: $(cat "$tmp/err")"
    n_shards=$(ls "$tmp/single-$r/out"/model-*.safetensors | wc -l)
    check '[ "$n_shards" -ge 7 ]' "$r: only $n_shards shards (want >= 7 for 7 parts)"
    for n in 1 2 3 7; do
        out=$tmp/p$n-$r/out   # the same folder name as the single run's: the card names it
        mkdir -p "$tmp/p$n-$r"
        if [ "$n" = 7 ]; then
            # the same with xargs -P, as on one machine without a scheduler
            seq 1 7 | shuf | xargs -P 4 -I{} "$bin" run "$tmp/$r.crb" "$out" --part {}/7 --models-dir "$tmp/m" --quiet 2>"$tmp/err"
        else
            parallel "$n" "$out" "$tmp/$r.crb"
        fi
        rc=$?
        check '[ $rc -eq 0 ]' "$r: $n parts: rc $rc: $(cat "$tmp/err" "$out.err" 2>/dev/null | head -5)"
        check '[ -d "$out/crucible-parts" ] && [ ! -e "$out/model.safetensors.index.json" ]' "$r: $n parts: no parts directory, or an index before assemble"
        "$bin" assemble "$out" >"$tmp/asm" 2>&1
        rc=$?
        check '[ $rc -eq 0 ]' "$r: assemble of $n parts: $(cat "$tmp/asm")"
        check 'cmp -s "$tmp/single-$r/out/model.safetensors.index.json" "$out/model.safetensors.index.json"' "$r: $n parts: index differs from the single run's"
        check 'diff -r "$tmp/single-$r/out" "$out" >/dev/null' "$r: $n parts: directory differs: $(diff -rq "$tmp/single-$r/out" "$out" | head -5)"
        "$bin" verify "$out" >/dev/null 2>"$tmp/err"
        rc=$?
        check '[ $rc -eq 0 ]' "$r: verify after $n parts: $(cat "$tmp/err")"
        check '[ -z "$(ls -a "$tmp/p$n-$r" | grep crucible)" ]' "$r: $n parts: leftovers: $(ls -a "$tmp/p$n-$r")"
    done
done

# ---- a missing part, a damaged shard: assemble and verify name them --------
out=$tmp/miss/out
mkdir -p "$tmp/miss"
for i in 3 1; do "$bin" run "$tmp/ties.crb" "$out" --part $i/3 --models-dir "$tmp/m" --quiet 2>/dev/null || bad "miss: part $i"; done
"$bin" assemble "$out" >"$tmp/asm" 2>&1
rc=$?
check '[ $rc -eq 1 ] && grep -q "part 2 of 3 is missing" "$tmp/asm"' "missing part: rc $rc: $(cat "$tmp/asm")"
check '[ ! -e "$out/model.safetensors.index.json" ] && [ ! -e "$out/config.json" ]' "missing part: assemble wrote files"
"$bin" verify "$out" >"$tmp/ver" 2>&1
rc=$?
check '[ $rc -eq 1 ] && grep -q "part 2 of 3 is missing" "$tmp/ver"' "missing part: verify: rc $rc: $(cat "$tmp/ver")"
"$bin" run "$tmp/ties.crb" "$out" --part 2/3 --models-dir "$tmp/m" --quiet 2>/dev/null || bad "miss: part 2"
# damage one shard of part 2 (its manifest names its shards)
victim=$(grep -B2 '"part": 2,' "$out/crucible-parts/part-2-of-3/manifest.json" | grep -o 'model-[0-9]*-of-[0-9]*\.safetensors' | head -1)
check '[ -n "$victim" ]' "no shard of part 2 in its manifest"
printf '\x55' | dd of="$out/$victim" bs=1 seek=200 conv=notrunc 2>/dev/null
"$bin" assemble "$out" >"$tmp/asm" 2>&1
rc=$?
check '[ $rc -eq 1 ] && grep -q "$victim: content hash mismatch.*re-run part 2 of 3" "$tmp/asm"' "damaged shard: rc $rc: $(cat "$tmp/asm")"
"$bin" verify "$out" >"$tmp/ver" 2>&1
rc=$?
check '[ $rc -eq 1 ] && grep -q "$victim: content hash mismatch" "$tmp/ver"' "damaged shard: verify: rc $rc: $(cat "$tmp/ver")"
# a missing shard
mv "$out/$victim" "$tmp/saved"
"$bin" assemble "$out" >"$tmp/asm" 2>&1
rc=$?
check '[ $rc -eq 1 ] && grep -q "$victim: missing (part 2 of 3" "$tmp/asm"' "missing shard: rc $rc: $(cat "$tmp/asm")"
mv "$tmp/saved" "$out/$victim"
# re-running the part replaces the damaged shard (its manifest lists it: crucible wrote it)
"$bin" run "$tmp/ties.crb" "$out" --part 2/3 --models-dir "$tmp/m" --quiet 2>"$tmp/err"
rc=$?
check '[ $rc -eq 0 ]' "re-run of part 2: $(cat "$tmp/err")"
"$bin" assemble "$out" >/dev/null 2>"$tmp/err" || bad "assemble after the re-run: $(cat "$tmp/err")"
check 'diff -r "$tmp/single-ties/out" "$out" >/dev/null' "after the re-run: $(diff -rq "$tmp/single-ties/out" "$out" | head -3)"
# after assembly a damaged shard is verify's (shard hashes in the index)
printf '\x55' | dd of="$out/$victim" bs=1 seek=200 conv=notrunc 2>/dev/null
"$bin" verify "$out" >"$tmp/ver" 2>&1
rc=$?
check '[ $rc -eq 1 ] && grep -q "$victim: content hash mismatch" "$tmp/ver"' "damaged after assembly: verify: rc $rc"
"$bin" assemble "$out" >"$tmp/asm" 2>&1
rc=$?
check '[ $rc -eq 1 ] && grep -q "no crucible-parts directory" "$tmp/asm"' "assemble of an assembled dir: rc $rc: $(cat "$tmp/asm")"

# ---- parts of another program or part count are not mixed -----------------
out=$tmp/mixed/out
mkdir -p "$tmp/mixed"
"$bin" run "$tmp/ties.crb" "$out" --part 1/2 --models-dir "$tmp/m" --quiet 2>/dev/null || bad "mixed: ties 1/2"
"$bin" run "$tmp/stages.crb" "$out" --part 2/2 --models-dir "$tmp/m" --quiet 2>"$tmp/err"
rc=$?
if [ $rc -eq 0 ]; then
    "$bin" assemble "$out" >"$tmp/asm" 2>&1
    rc=$?
    check '[ $rc -eq 1 ] && grep -q "of another program" "$tmp/asm"' "mixed programs: rc $rc: $(cat "$tmp/asm")"
else
    check 'grep -q "crucible did not write it" "$tmp/err"' "mixed programs: part refused for another reason: $(cat "$tmp/err")"
fi
rm -rf "$tmp/mixed"

# ---- a file crucible did not write is never clobbered ----------------------
out=$tmp/foreign/out
mkdir -p "$out"
one=$(ls "$tmp/single-ties/out" | grep -m1 'model-')
# find part 1's first shard with plan: run part 1 of 1 writes every shard
echo "my own file" >"$out/$one"
"$bin" run "$tmp/ties.crb" "$out" --part 1/1 --models-dir "$tmp/m" --quiet 2>"$tmp/err"
rc=$?
check '[ $rc -eq 1 ] && grep -q "$one exists with other bytes.*crucible did not write it" "$tmp/err"' "foreign shard: rc $rc: $(cat "$tmp/err")"
check '[ "$(cat "$out/$one")" = "my own file" ]' "foreign shard was clobbered"
check '[ -z "$(ls -a "$out/crucible-parts" | grep crucible-tmp)" ]' "foreign shard: temporary left"
"$bin" run "$tmp/ties.crb" "$out" --part 1/1 --models-dir "$tmp/m" --quiet --force 2>"$tmp/err" || bad "--force over a foreign shard: $(cat "$tmp/err")"
echo '{"mine": true}' >"$out/config.json"
"$bin" assemble "$out" >"$tmp/asm" 2>&1
rc=$?
check '[ $rc -eq 1 ] && grep -q "config.json exists with other bytes" "$tmp/asm"' "foreign config.json: rc $rc: $(cat "$tmp/asm")"
check '[ "$(cat "$out/config.json")" = "{\"mine\": true}" ]' "foreign config.json clobbered"
"$bin" assemble "$out" --force >/dev/null 2>"$tmp/err" || bad "assemble --force: $(cat "$tmp/err")"

# ---- a part killed with SIGKILL and run again completes ---------------------
big=(--arch llama --layers 4 --hidden 256 --intermediate 1024 --heads 4 --kv-heads 2 --vocab 16000 --dtype bfloat16)
"$bin" synth "$tmp/b/base" "${big[@]}" --seed 1 >/dev/null || bad "synth big base"
"$bin" synth "$tmp/b/ft" --from "$tmp/b/base" --delta-scale 0.01 --seed 2 >/dev/null || bad "synth big ft"
"$bin" synth "$tmp/b/ft2" --from "$tmp/b/base" --delta-scale 0.02 --seed 3 >/dev/null || bad "synth big ft2"
"$bin" compile "$tmp/ties.yml" -o "$tmp/big.crb" --models-dir "$tmp/b" --out-shard-size 2M 2>"$tmp/err" || bad "compile big: $(cat "$tmp/err")"
out=$tmp/kill/out
mkdir -p "$tmp/kill"
"$bin" run "$tmp/big.crb" "$out" --part 1/2 --models-dir "$tmp/b" --quiet --threads 1 2>/dev/null &
pid=$!
i=0
# until the part has moved a shard into OUT (or its temporary has files)
while [ $i -lt 3000 ] && kill -0 $pid 2>/dev/null && [ -z "$(ls "$out" 2>/dev/null | grep model-)" ] &&
      [ -z "$(ls "$out"/crucible-parts/*.crucible-tmp-*/ 2>/dev/null | grep model-)" ]; do
    sleep 0.005
    i=$((i + 1))
done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
rc=$?
check '[ $rc -eq 137 ]' "SIGKILL: the part was not killed mid-run (rc $rc: finished first?)"
check '[ -n "$(ls "$out/crucible-parts" | grep crucible-tmp)" ]' "SIGKILL: no temporary left to recover from: $(ls -a "$out/crucible-parts")"
check '[ ! -e "$out/crucible-parts/part-1-of-2/manifest.json" ]' "SIGKILL: a manifest of the killed part"
"$bin" assemble "$out" >"$tmp/asm" 2>&1
rc=$?
check '[ $rc -eq 1 ] && grep -q "no finished part" "$tmp/asm"' "killed part: assemble: rc $rc: $(cat "$tmp/asm")"
"$bin" run "$tmp/big.crb" "$out" --part 1/2 --models-dir "$tmp/b" --quiet 2>"$tmp/err"
rc=$?
check '[ $rc -eq 0 ]' "re-run of the killed part: $(cat "$tmp/err")"
"$bin" run "$tmp/big.crb" "$out" --part 2/2 --models-dir "$tmp/b" --quiet 2>"$tmp/err" || bad "part 2/2: $(cat "$tmp/err")"
"$bin" assemble "$out" >/dev/null 2>"$tmp/err" || bad "assemble after the kill: $(cat "$tmp/err")"
mkdir -p "$tmp/kill-single"
"$bin" run "$tmp/big.crb" "$tmp/kill-single/out" --models-dir "$tmp/b" --quiet 2>/dev/null || bad "big single run"
check 'diff -r "$tmp/kill-single/out" "$out" >/dev/null' "after the kill: differs from a single run: $(diff -rq "$tmp/kill-single/out" "$out" | head -3)"
check '[ -z "$(ls -a "$tmp/kill" | grep crucible)" ] && [ ! -e "$out/crucible-parts" ]' "after the kill: leftovers: $(ls -a "$tmp/kill" "$out")"

# ---- plan --part ------------------------------------------------------------
"$bin" plan "$tmp/ties.crb" --part 2/3 >"$tmp/plan" 2>&1
rc=$?
check '[ $rc -eq 0 ] && grep -q "^part            2 of 3" "$tmp/plan"' "plan --part: rc $rc: $(head -3 "$tmp/plan")"
check '[ "$(grep -cE "^(=>|  ) +[0-9]+/3 " "$tmp/plan")" -eq 3 ] && grep -qE "^=> +2/3 " "$tmp/plan"' "plan --part: no line per part: $(cat "$tmp/plan")"
# the parts' shards add up to the program's
total=0
for i in 1 2 3; do
    w=$("$bin" plan "$tmp/ties.crb" --part $i/3 | sed -n 's/^write .*(\([0-9]*\) bytes).*/\1/p')
    total=$((total + w))
done
whole=$("$bin" plan "$tmp/ties.crb" | sed -n 's/^write .*(\([0-9]*\) bytes).*/\1/p')
check '[ "$total" -eq "$whole" ]' "plan: parts write $total bytes, the whole $whole"
# a part reads less than the whole run (it skips other parts' tensors)
part_read=$("$bin" plan "$tmp/ties.crb" --part 1/7 | sed -n 's/^read .*(\([0-9]*\) bytes).*/\1/p')
whole_read=$("$bin" plan "$tmp/ties.crb" | sed -n 's/^read .*(\([0-9]*\) bytes).*/\1/p')
check '[ -n "$part_read" ] && [ "$part_read" -lt "$whole_read" ]' "plan: part 1/7 reads $part_read bytes, the whole run $whole_read"
"$bin" plan "$tmp/ties.yml" --models-dir "$tmp/m" --out-shard-size 20k --part 1/7 >"$tmp/plan" 2>&1
check 'grep -q "^part            1 of 7" "$tmp/plan"' "plan of a recipe --part: $(head -3 "$tmp/plan")"
for bad_part in 0/3 4/3 3 x/2 1/0 -1/2 "1/2x"; do
    "$bin" run "$tmp/ties.crb" "$tmp/never" --part "$bad_part" >/dev/null 2>"$tmp/err"
    rc=$?
    check '[ $rc -eq 2 ] && grep -q -- "--part wants I/N" "$tmp/err" && [ ! -e "$tmp/never" ]' "--part $bad_part: rc $rc: $(cat "$tmp/err")"
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
