#!/usr/bin/env bash
# mergekit_version.sh — `--mergekit-version 0.1.4|0.1.5` (core/mkversion.h):
# the default is the current release (0.1.5); the choice reaches the
# methods, and is recorded in the shard index's metadata, the model card and
# the .crb (`explain` shows it; `run` of the .crb writes the same files);
# anything else is refused naming the option. Usage: mergekit_version.sh CRUCIBLE_BIN
. "$(dirname "$0")/../support/e2e_lib.sh" mkversion "$1"

m=$tmp/models
shape=(--arch llama --layers 2 --hidden 32 --intermediate 64 --heads 4 --kv-heads 2 --vocab 64 --dtype bfloat16)
"$bin" synth "$m/base" "${shape[@]}" --seed 1 >/dev/null || bad "synth base"
"$bin" synth "$m/ft" --from "$m/base" --delta-scale 0.01 --seed 2 >/dev/null || bad "synth ft"
cat >"$tmp/linear.yml" <<'YML'
merge_method: linear
models:
  - model: base
    parameters: {weight: 0.3}
  - model: ft
    parameters: {weight: 0.7}
dtype: bfloat16
YML
# every index is written (crucible records shard hashes in it), so a small
# shard size is not needed to see the metadata
idx_version() { sed -n 's/.*"mergekit_version": "\([^"]*\)".*/\1/p' "$1/model.safetensors.index.json"; }

"$bin" merge "$tmp/linear.yml" "$tmp/dflt" --models-dir "$m" --quiet 2>"$tmp/err"
rc=$?; check '[ $rc -eq 0 ]' "default merge: $(cat "$tmp/err")"
check '[ "$(idx_version "$tmp/dflt")" = 0.1.5 ]' "default index metadata: $(idx_version "$tmp/dflt")"
check 'grep -q "mergekit 0.1.5 does (\`--mergekit-version 0.1.5\`)" "$tmp/dflt/README.md"' "default card names 0.1.5"

for v in 0.1.4 0.1.5; do
    "$bin" merge "$tmp/linear.yml" "$tmp/out-$v" --models-dir "$m" --quiet --mergekit-version $v 2>"$tmp/err"
    rc=$?; check '[ $rc -eq 0 ]' "merge --mergekit-version $v: $(cat "$tmp/err")"
    check '[ "$(idx_version "$tmp/out-$v")" = $v ]' "$v: index metadata says $(idx_version "$tmp/out-$v")"
    check 'grep -q "mergekit $v does" "$tmp/out-$v/README.md"' "$v: card"
    "$bin" compile "$tmp/linear.yml" -o "$tmp/p-$v.crb" --models-dir "$m" --mergekit-version=$v 2>"$tmp/err"
    rc=$?; check '[ $rc -eq 0 ]' "compile $v: $(cat "$tmp/err")"
    check '"$bin" explain "$tmp/p-$v.crb" | grep -q "^computes as mergekit $v "' "explain $v.crb: $("$bin" explain "$tmp/p-$v.crb" | head -3)"
    "$bin" run "$tmp/p-$v.crb" "$tmp/run-$v" --models-dir "$m" --quiet 2>"$tmp/err"
    rc=$?; check '[ $rc -eq 0 ]' "run $v.crb: $(cat "$tmp/err")"
    check 'cmp -s "$tmp/run-$v/model.safetensors.index.json" "$tmp/out-$v/model.safetensors.index.json"' "$v: run's index differs from merge's"
    # (the card's title is the output folder's name)
    check 'diff -q <(grep -v "^# " "$tmp/run-$v/README.md") <(grep -v "^# " "$tmp/out-$v/README.md") >/dev/null' \
        "$v: run's card differs from merge's"
done

# the methods see the choice as ctx.mergekit_version
mkdir -p "$tmp/methods"
cat >"$tmp/methods/which.lua" <<'LUA'
return {
  name = "which",
  merge = function(ctx)
    cr.error("mergekit_version=" .. tostring(ctx.mergekit_version))
  end,
}
LUA
sed 's/merge_method: linear/merge_method: which/' "$tmp/linear.yml" >"$tmp/which.yml"
for v in 0.1.4 0.1.5; do
    "$bin" plan "$tmp/which.yml" --models-dir "$m" --methods "$tmp/methods" --mergekit-version $v >/dev/null 2>"$tmp/err"
    check 'grep -q "mergekit_version=$v" "$tmp/err"' "ctx.mergekit_version under $v: $(head -c 300 "$tmp/err")"
done
"$bin" plan "$tmp/which.yml" --models-dir "$m" --methods "$tmp/methods" >/dev/null 2>"$tmp/err"
check 'grep -q "mergekit_version=0.1.5" "$tmp/err"' "ctx.mergekit_version by default: $(head -c 300 "$tmp/err")"

# anything else is refused before a file is written
for v in 0.1.3 0.2 "" latest; do
    "$bin" merge "$tmp/linear.yml" "$tmp/bad" --models-dir "$m" --quiet --mergekit-version "$v" 2>"$tmp/err"
    rc=$?
    check '[ $rc -eq 2 ] && grep -q -- "--mergekit-version" "$tmp/err" && [ ! -e "$tmp/bad" ]' \
        "--mergekit-version '$v': rc $rc: $(cat "$tmp/err")"
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
