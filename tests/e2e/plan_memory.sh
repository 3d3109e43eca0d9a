#!/usr/bin/env bash
# plan_memory.sh — `crucible plan`'s memory model against the run: on
# synthetic bf16 models, the predicted peak RSS is within 10% of the peak the
# merge measures (getrusage, printed in merge's summary line), plan's bytes
# read equal the tensor bytes the recipe selects, and under --max-memory the
# run stays below the budget (streaming its inputs) with the same output
# bytes, or refuses a budget it cannot meet before writing anything.
set -u
bin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
check() { if eval "$1"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $2"; fi; }

# sanitiser builds carry shadow memory: RSS says nothing about the model there
rss_checks=1
if grep -qa -e __asan_init -e __tsan_init "$bin"; then rss_checks=0; echo "sanitised binary: RSS checks skipped"; fi

shape=(--arch llama --layers 2 --hidden 256 --intermediate 512 --heads 4 --kv-heads 2 --vocab 16000 --dtype bfloat16)
"$bin" synth "$tmp/m/base" "${shape[@]}" --seed 1 >/dev/null
for i in a b c; do "$bin" synth "$tmp/m/ft-$i" --from "$tmp/m/base" --delta-scale 0.01 --seed "$(printf %d "'$i")" >/dev/null; done

cat >"$tmp/linear.yml" <<'Y'
models:
  - model: ft-a
    parameters: {weight: 0.4}
  - model: ft-b
    parameters: {weight: 0.3}
  - model: ft-c
    parameters: {weight: 0.3}
merge_method: linear
dtype: bfloat16
Y
cat >"$tmp/ties.yml" <<'Y'
models:
  - model: base
  - model: ft-a
    parameters: {density: 0.5, weight: 0.5}
  - model: ft-b
    parameters: {density: 0.5, weight: 0.3}
merge_method: ties
base_model: base
dtype: bfloat16
Y
cat >"$tmp/pass.yml" <<'Y'
slices:
  - sources:
      - model: ft-a
        layer_range: [0, 1]
  - sources:
      - model: ft-b
        layer_range: [1, 2]
merge_method: passthrough
dtype: bfloat16
Y

plan_num() { sed -n "s/^$2 .*(\([0-9]*\) bytes).*/\1/p" "$1"; }
# peak RSS in bytes from merge's summary line ("peak RSS 12.3 MiB")
run_peak() { sed -n 's/.*peak RSS \([0-9.]*\) MiB.*/\1/p' "$1" | awk '{ printf "%d", $1 * 1048576 }'; }
within() { awk -v p="$1" -v m="$2" -v t="$3" 'BEGIN { d = p / m - 1; if (d < 0) d = -d; exit !(m > 0 && d <= t) }'; }
# tensor bytes of a safetensors file: size - 8 - header length
data_bytes() { local n; n=$(od -An -tu8 -N8 "$1" | tr -d ' '); echo $(( $(stat -c %s "$1") - 8 - n )); }

for r in linear ties pass; do
    "$bin" plan "$tmp/$r.yml" --models-dir "$tmp/m" --threads 2 >"$tmp/$r.plan" 2>&1
    rc=$?; check '[ $rc -eq 0 ]' "$r: plan exits 0"
    "$bin" merge "$tmp/$r.yml" "$tmp/out-$r" --models-dir "$tmp/m" --threads 2 >"$tmp/$r.run" 2>&1
    rc=$?; check '[ $rc -eq 0 ]' "$r: merge exits 0"
    pred=$(plan_num "$tmp/$r.plan" "peak memory")
    meas=$(run_peak "$tmp/$r.run")
    echo "$r: plan peak $pred B, measured $meas B"
    if [ $rss_checks = 1 ]; then
        check 'within "$pred" "$meas" 0.10' "$r: predicted peak $pred within 10% of measured $meas"
    fi
done

# bytes read: linear reads every tensor of its three models; passthrough
# only the layers it selects (less than two whole models)
all=0
for i in a b c; do all=$((all + $(data_bytes "$tmp/m/ft-$i/model.safetensors"))); done
check '[ "$(plan_num "$tmp/linear.plan" read)" = "$all" ]' "linear: plan read = tensor bytes of its 3 models ($all)"
two=$(( $(data_bytes "$tmp/m/ft-a/model.safetensors") + $(data_bytes "$tmp/m/ft-b/model.safetensors") ))
pr=$(plan_num "$tmp/pass.plan" read)
check '[ "$pr" -gt 0 ] && [ "$pr" -lt "$two" ]' "passthrough: plan read $pr below two whole models $two"

# --max-memory below the unbounded peak: the embedding steps stream, the
# run stays under the budget, and the output bytes do not change. The budget
# leaves room for ties' torch tie-order gathers of the embedding (two models,
# 16000 x 256 elements x 4 bytes = 31 MiB, spec/compat.md), which cannot stream.
budget=$((48 << 20))
"$bin" plan "$tmp/ties.yml" --models-dir "$tmp/m" --threads 2 --max-memory 48M >"$tmp/ties-b.plan" 2>&1
rc=$?; check '[ $rc -eq 0 ] && grep -q "^streamed" "$tmp/ties-b.plan"' "ties: plan under 48M streams some steps"
"$bin" merge "$tmp/ties.yml" "$tmp/out-b" --models-dir "$tmp/m" --threads 2 --max-memory 48M >"$tmp/ties-b.run" 2>&1
rc=$?; check '[ $rc -eq 0 ]' "ties: merge under --max-memory 48M exits 0"
check 'cmp -s "$tmp/out-ties/model.safetensors" "$tmp/out-b/model.safetensors"' "ties: streamed run writes the same bytes"
if [ $rss_checks = 1 ]; then
    meas=$(run_peak "$tmp/ties-b.run")
    echo "ties --max-memory 48M: plan peak $(plan_num "$tmp/ties-b.plan" "peak memory") B, measured $meas B"
    check '[ "$meas" -le "$budget" ]' "ties: measured peak $meas under the 48M budget"
    check 'within "$(plan_num "$tmp/ties-b.plan" "peak memory")" "$meas" 0.10' "ties: under 48M, predicted peak within 10% of measured $meas"
fi
# with room under that peak, freed gathers are kept for later tensors here
# too (vm/gatherpool.h; memplan.h gather_keep), each step keeping only what
# fits under the predicted peak
check 'grep -q "^gathers kept .*at most" "$tmp/ties-b.plan"' "ties: plan under 48M keeps gathers between tensors"
# 24M holds one embedding gather but not both: the kernel gathers them one
# at a time (two passes), still exact
"$bin" merge "$tmp/ties.yml" "$tmp/out-serial" --models-dir "$tmp/m" --threads 2 --max-memory 24M >"$tmp/ties-s.run" 2>&1
rc=$?; check '[ $rc -eq 0 ] && ! grep -q warning "$tmp/ties-s.run" && cmp -s "$tmp/out-ties/model.safetensors" "$tmp/out-serial/model.safetensors"' \
      "ties: under 24M the gathers run one at a time, same bytes"
if [ $rss_checks = 1 ]; then
    meas=$(run_peak "$tmp/ties-s.run")
    check '[ "$meas" -le $((24 << 20)) ]' "ties: measured peak $meas under the 24M budget (serial gathers)"
fi
# a budget no gather fits in memory: plan says which gathers go to a file
# (spill.h), the merge writes the same bytes without a warning and stays
# under it (tests/e2e/budget_exact.sh tries many more budgets)
"$bin" plan "$tmp/ties.yml" --models-dir "$tmp/m" --threads 2 --max-memory 20M >"$tmp/ties-f.plan" 2>&1
rc=$?; check '[ $rc -eq 0 ] && grep -q "^spill  *.*gathers of 4 top-k selections" "$tmp/ties-f.plan"' \
      "ties: plan under 20M predicts 4 spilled gathers"
"$bin" merge "$tmp/ties.yml" "$tmp/out-f" --models-dir "$tmp/m" --threads 2 --max-memory 20M >"$tmp/ties-f.run" 2>&1
rc=$?; check '[ $rc -eq 0 ] && ! grep -q warning "$tmp/ties-f.run" && cmp -s "$tmp/out-ties/model.safetensors" "$tmp/out-f/model.safetensors"' \
      "ties: merge under 20M spills the gathers, same bytes"
if [ $rss_checks = 1 ]; then
    meas=$(run_peak "$tmp/ties-f.run")
    check '[ "$meas" -le $((20 << 20)) ]' "ties: measured peak $meas under the 20M budget (spilled gathers)"
fi
"$bin" merge "$tmp/pass.yml" "$tmp/out-pb" --models-dir "$tmp/m" --threads 2 --max-memory 6M >"$tmp/pass-b.run" 2>&1
rc=$?; check '[ $rc -eq 0 ] && cmp -s "$tmp/out-pass/model.safetensors" "$tmp/out-pb/model.safetensors"' \
      "passthrough: streamed copies write the same bytes"

# a budget below what one thread needs: plan and merge refuse, nothing written
"$bin" plan "$tmp/ties.yml" --models-dir "$tmp/m" --max-memory 2M >"$tmp/small.plan" 2>&1
rc=$?; check '[ $rc -eq 2 ] && grep -q "max-memory allows 2 MiB" "$tmp/small.plan"' "plan refuses a 2M budget, naming it"
"$bin" merge "$tmp/ties.yml" "$tmp/out-s" --models-dir "$tmp/m" --max-memory 2M >"$tmp/small.run" 2>&1
rc=$?; check '[ $rc -ne 0 ] && grep -q "max-memory" "$tmp/small.run" && [ ! -e "$tmp/out-s" ]' "merge refuses a 2M budget, writes nothing"

# --max-memory sizes: one parser for every command (cli/options.c)
"$bin" plan "$tmp/ties.yml" --models-dir "$tmp/m" --max-memory 0.03GiB >"$tmp/size.plan" 2>&1
"$bin" plan "$tmp/ties.yml" --models-dir "$tmp/m" --max-memory 32212254 >"$tmp/size-bytes.plan" 2>&1
rc=$?; check '[ $rc -eq 0 ] && grep -q "^streamed" "$tmp/size.plan" && cmp -s "$tmp/size.plan" "$tmp/size-bytes.plan"' \
      "plan takes --max-memory 0.03GiB as 32212254 bytes"
"$bin" plan "$tmp/ties.yml" --models-dir "$tmp/m" --max-memory 12Q >"$tmp/size-bad.plan" 2>&1
rc=$?; check '[ $rc -eq 2 ] && grep -q "12Q" "$tmp/size-bad.plan"' "plan refuses --max-memory 12Q, naming it"
"$bin" compile "$tmp/ties.yml" -o "$tmp/t.crb" --models-dir "$tmp/m" >/dev/null 2>&1
"$bin" run "$tmp/t.crb" "$tmp/out-r" --max-memory 12Q >"$tmp/size-bad.run" 2>&1
rc=$?; check '[ $rc -eq 2 ] && grep -q "12Q" "$tmp/size-bad.run" && [ ! -e "$tmp/out-r" ]' "run refuses --max-memory 12Q, writes nothing"
"$bin" run "$tmp/t.crb" "$tmp/out-r" --models-dir "$tmp/m" --max-memory 1.5GiB --quiet >"$tmp/size.run" 2>&1
rc=$?; check '[ $rc -eq 0 ] && cmp -s "$tmp/out-ties/model.safetensors" "$tmp/out-r/model.safetensors"' "run takes --max-memory 1.5GiB, same bytes"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
