#!/usr/bin/env bash
# graph_merge.sh — end to end through the compiler and the VM: synthetic
# models, linear / task_arithmetic / passthrough / a two-stage recipe,
# identical bytes with every optimisation pass switched off, plan and
# explain exit codes, and a Lua error that names its file and line.
# usage: graph_merge.sh CRUCIBLE_BIN
set -u
bin=$1
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
check() { if "$@"; then ok; else bad "$*"; fi; }

dir=$(mktemp -d /tmp/crucible-graph-e2e-XXXXXX)
trap 'rm -rf "$dir"' EXIT
m=$dir/models
mkdir -p "$m"
"$bin" synth "$m/base" --arch llama --layers 2 --hidden 64 --intermediate 96 --heads 4 --kv-heads 2 \
    --vocab 128 --dtype bfloat16 --seed 1 >/dev/null || bad synth
"$bin" synth "$m/ft-a" --from "$m/base" --delta-scale 0.02 --seed 2 >/dev/null || bad synth
"$bin" synth "$m/ft-b" --from "$m/base" --delta-scale 0.02 --seed 3 >/dev/null || bad synth

cat > "$dir/lin.yml" <<'Y'
models:
  - model: ft-a
    parameters: {weight: 0.6}
  - model: ft-b
    parameters: {weight: 0.4}
merge_method: linear
dtype: bfloat16
Y
cat > "$dir/ta.yml" <<'Y'
base_model: base
models:
  - model: ft-a
    parameters: {weight: 0.7}
  - model: ft-b
    parameters: {weight: -0.3}
merge_method: task_arithmetic
parameters: {normalize: true, lambda: 0.9}
out_dtype: float32
Y
cat > "$dir/pt.yml" <<'Y'
slices:
  - sources:
      - model: ft-a
        layer_range: [0, 2]
        parameters: {scale: 0.5}
merge_method: passthrough
Y
cat > "$dir/two.yml" <<'Y'
name: soup
models:
  - model: ft-a
    parameters: {weight: 1.0}
  - model: ft-b
    parameters: {weight: 1.0}
merge_method: linear
---
base_model: base
models:
  - model: soup
    parameters: {weight: 0.5}
merge_method: task_arithmetic
Y

for r in lin ta pt two; do
    if "$bin" merge "$dir/$r.yml" "$dir/out-$r" --models-dir "$m" --quiet 2>"$dir/err"; then ok
    else bad "merge $r: $(cat "$dir/err")"; continue; fi
    check test -f "$dir/out-$r/model.safetensors"
    check test -f "$dir/out-$r/config.json"
    for p in fold cse dce fuse; do
        "$bin" merge "$dir/$r.yml" "$dir/out-$r-$p" --models-dir "$m" --quiet --no-pass=$p 2>/dev/null \
            || bad "merge $r --no-pass=$p"
        check cmp -s "$dir/out-$r/model.safetensors" "$dir/out-$r-$p/model.safetensors"
    done
done
check test -f "$dir/out-lin/README.md"
check test -f "$dir/out-lin/mergekit_config.yml"
check test -f "$dir/out-lin/tokenizer.json"
check grep -q '"dtype": *"float32"' "$dir/out-ta/config.json"   # transformers 5's key (mergekit 0.1.5)
check bash -c "! grep -q torch_dtype '$dir/out-ta/config.json'"

# two-stage soup = linear(a, b) normalised; then base + 0.5 (soup - base):
# it must differ from the base and from the plain linear merge
check bash -c "! cmp -s '$dir/out-two/model.safetensors' '$dir/out-lin/model.safetensors'"

# threads do not change a bit
"$bin" merge "$dir/ta.yml" "$dir/out-ta-1t" --models-dir "$m" --quiet --threads 1 2>/dev/null || bad "threads 1"
check cmp -s "$dir/out-ta/model.safetensors" "$dir/out-ta-1t/model.safetensors"

# small shards make several files and an index
"$bin" merge "$dir/lin.yml" "$dir/out-shards" --models-dir "$m" --quiet --out-shard-size 20K 2>/dev/null || bad shards
check test -f "$dir/out-shards/model.safetensors.index.json"
check test -f "$dir/out-shards/model-00001-of-00010.safetensors" -o -f "$dir/out-shards/model-00001-of-00011.safetensors" -o -n "$(ls "$dir/out-shards" | grep -m1 'model-00001-of-')"

# plan: 0 when it can run, 2 when not
"$bin" plan "$dir/lin.yml" --models-dir "$m" >"$dir/plan.txt" 2>&1; check test $? -eq 0
check grep -q "peak memory" "$dir/plan.txt"
printf 'models:\n  - model: nope\nmerge_method: linear\n' > "$dir/badm.yml"
"$bin" plan "$dir/badm.yml" --models-dir "$m" >/dev/null 2>&1; check test $? -eq 2

# explain and --dump
"$bin" explain "$dir/ta.yml" --models-dir "$m" >"$dir/ex.txt" 2>&1; check test $? -eq 0
check grep -q kernel "$dir/ex.txt"
"$bin" explain "$dir/ta.yml" --models-dir "$m" --dump=cse >"$dir/dump.txt" 2>&1; check test $? -eq 0
check grep -q "graph after cse" "$dir/dump.txt"
# fusion is a pass: --dump=fuse lists its kernels (domain, level, the nodes
# first computed there), and ta's first domain does all its work in one
"$bin" explain "$dir/ta.yml" --models-dir "$m" --dump=fuse >"$dir/fuse.txt" 2>&1; check test $? -eq 0
check grep -q "graph after fuse" "$dir/fuse.txt"
check grep -qE "^kernel 0 = @d0 level 0: %[0-9]+" "$dir/fuse.txt"

# a user method with an error names its file and line; the output dir is not created
cat > "$dir/broken.lua" <<'L'
return {
  name = "broken", base = "unused", inputs = { min = 1 },
  merge = function(ctx)
    cr.error("this method is broken")
  end,
}
L
printf 'models:\n  - model: ft-a\nmerge_method: lua:broken.lua\n' > "$dir/broken.yml"
"$bin" merge "$dir/broken.yml" "$dir/out-broken" --models-dir "$m" --quiet 2>"$dir/err"; rc=$?
check test $rc -eq 2
check grep -q "broken.lua:4: this method is broken" "$dir/err"
check test ! -e "$dir/out-broken"

# a method from --methods DIR, by name: half of the first input (= passthrough scale 0.5)
mkdir -p "$dir/methods"
cat > "$dir/methods/halve.lua" <<'L'
return {
  name = "halve", base = "unused", inputs = { min = 1, max = 1 },
  merge = function(ctx) return ctx.inputs[1] * 0.5 end,
}
L
printf 'slices:\n  - sources:\n      - model: ft-a\n        layer_range: [0, 2]\nmerge_method: halve\n' > "$dir/halve.yml"
"$bin" merge "$dir/halve.yml" "$dir/out-halve" --models-dir "$m" --methods "$dir/methods" --quiet 2>"$dir/err" \
    || bad "merge --methods: $(cat "$dir/err")"
check cmp -s "$dir/out-halve/model.safetensors" "$dir/out-pt/model.safetensors"

# compile writes a .crb that loads
"$bin" compile "$dir/lin.yml" --models-dir "$m" -o "$dir/lin.crb" 2>/dev/null; check test $? -eq 0
"$bin" explain "$dir/lin.crb" >/dev/null 2>&1; check test $? -eq 0

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
