#!/usr/bin/env bash
# torchbin.sh — PyTorch .bin inputs behave like safetensors everywhere
# (formats/torchbin.h). tests/e2e/fixtures/torchbin holds a tiny llama
# re-saved by torch.save (base: one pytorch_model.bin; ft: two shards with
# pytorch_model.bin.index.json; generate.py); the same two models are
# synthesised here as safetensors. Both must read the same (diff), merge
# to the same bytes (ties, with and without a small --max-memory), plan,
# and compile to a .crb that runs, records the .bin files' hashes and
# refuses a changed .bin. Refused inputs (a hostile pickle, a strided view,
# the legacy format) fail with the file named.
# usage: tests/e2e/torchbin.sh CRUCIBLE_BIN
. "$(dirname "$0")/../support/e2e_lib.sh" torchbin "$1"

fx=$(cd "$(dirname "$0")/fixtures/torchbin" && pwd)
tiny=(--arch llama --layers 2 --hidden 16 --intermediate 32 --heads 2 --kv-heads 1 --vocab 64 --dtype bfloat16)
"$bin" synth "$tmp/st/base" "${tiny[@]}" --seed 1 >/dev/null || bad "synth base"
"$bin" synth "$tmp/st/ft" --from "$tmp/st/base" --delta-scale 0.1 --seed 2 >/dev/null || bad "synth ft"
mkdir -p "$tmp/bin"
cp -r "$fx/base" "$fx/ft" "$tmp/bin/"

"$bin" diff "$tmp/bin/base" "$tmp/st/base" >"$tmp/d1" 2>&1
check '[ $? -eq 0 ] && grep -q "^identical: 21 identical" "$tmp/d1"' "diff of base .bin vs safetensors: $(cat "$tmp/d1")"
"$bin" diff "$tmp/bin/ft" "$tmp/st/ft" >"$tmp/d2" 2>&1
check '[ $? -eq 0 ] && grep -q "^identical: 21 identical" "$tmp/d2"' "diff of sharded ft .bin vs safetensors: $(cat "$tmp/d2")"

cat >"$tmp/ties.yml" <<YML
merge_method: ties
base_model: base
models:
  - model: ft
    parameters: {weight: 0.7, density: 0.5}
  - model: base
parameters: {normalize: true}
dtype: bfloat16
YML

# same_weights A B: every *.safetensors of A equals B's, byte for byte
same_weights() {
    local f n=0
    for f in "$1"/*.safetensors; do
        cmp -s "$f" "$2/$(basename "$f")" || return 1
        n=$((n + 1))
    done
    [ $n -gt 0 ] && [ "$(ls "$2"/*.safetensors | wc -l)" = $n ]
}

"$bin" merge "$tmp/ties.yml" "$tmp/m-st" --models-dir "$tmp/st" --quiet 2>"$tmp/err" || bad "merge safetensors: $(cat "$tmp/err")"
"$bin" merge "$tmp/ties.yml" "$tmp/m-bin" --models-dir "$tmp/bin" --quiet 2>"$tmp/err" || bad "merge .bin: $(cat "$tmp/err")"
check 'same_weights "$tmp/m-st" "$tmp/m-bin"' "merge of .bin inputs differs from the merge of the same safetensors"
"$bin" merge "$tmp/ties.yml" "$tmp/m-bin-mem" --models-dir "$tmp/bin" --max-memory 8M --threads 2 --quiet 2>"$tmp/err" \
    || bad "merge .bin --max-memory 8M: $(cat "$tmp/err")"
check 'same_weights "$tmp/m-st" "$tmp/m-bin-mem"' "merge of .bin inputs under --max-memory 8M differs"

# plan: the same memory figures as for the safetensors twins
"$bin" plan "$tmp/ties.yml" --models-dir "$tmp/bin" --threads 2 --max-memory 8M >"$tmp/plan-bin" 2>&1 || bad "plan .bin: $(cat "$tmp/plan-bin")"
"$bin" plan "$tmp/ties.yml" --models-dir "$tmp/st" --threads 2 --max-memory 8M >"$tmp/plan-st" 2>&1 || bad "plan st"
check '[ "$(grep -i "peak\|memory" "$tmp/plan-bin" | sed "s|$tmp/[a-z]*||g")" = "$(grep -i "peak\|memory" "$tmp/plan-st" | sed "s|$tmp/[a-z]*||g")" ]' \
    "plan's memory lines differ between .bin and safetensors inputs"

# compile + run: the .crb records the .bin files (sizes and hashes)
"$bin" compile "$tmp/ties.yml" -o "$tmp/p.crb" --models-dir "$tmp/bin" 2>"$tmp/err" || bad "compile .bin: $(cat "$tmp/err")"
check '"$bin" explain "$tmp/p.crb" | grep -q "pytorch_model-00001-of-00002.bin"' "explain lists the .bin shard"
"$bin" run "$tmp/p.crb" "$tmp/r" --models-dir "$tmp/bin" --quiet 2>"$tmp/err" || bad "run .crb of .bin inputs: $(cat "$tmp/err")"
check 'same_weights "$tmp/m-st" "$tmp/r"' "run of the .crb differs from the merge"
# one byte of a storage changed in place (same size): the hash catches it
f="$tmp/bin/ft/pytorch_model-00002-of-00002.bin"
printf '\x55' | dd of="$f" bs=1 seek=2000 conv=notrunc 2>/dev/null
"$bin" run "$tmp/p.crb" "$tmp/r2" --models-dir "$tmp/bin" --quiet 2>"$tmp/err"
rc=$?
check '[ $rc -ne 0 ] && grep -q "pytorch_model-00002-of-00002.bin" "$tmp/err"' "run after a .bin changed: rc $rc: $(cat "$tmp/err")"

# refused inputs name the file and the reason; nothing is executed
refused() {   # NAME FIXTURE WANT
    local name=$1 want=$3
    mkdir -p "$tmp/bad/$name"
    cp "$fx/base/config.json" "$tmp/bad/$name/"
    cp "$fx/$2" "$tmp/bad/$name/pytorch_model.bin"
    printf 'merge_method: linear\nmodels:\n  - model: %s\n    parameters: {weight: 1.0}\ndtype: bfloat16\n' "$name" >"$tmp/$name.yml"
    "$bin" merge "$tmp/$name.yml" "$tmp/o-$name" --models-dir "$tmp/bad" --quiet 2>"$tmp/$name.err"
    local rc=$?
    check '[ $rc -eq 2 ] && grep -qF "$name/pytorch_model.bin" "$tmp/$name.err" && grep -qF "$want" "$tmp/$name.err" && [ ! -e "$tmp/o-$name" ]' \
        "$name: rc $rc: $(cat "$tmp/$name.err")"
}
refused hostile hostile.bin "global 'posix.system'"
refused strided strided.bin "non-contiguous view"
refused legacy legacy.bin "legacy (pre-zip"
refused compressed compressed.bin "is compressed"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
