#!/usr/bin/env bash
# portable_crb.sh — a .crb runs wherever its models are (spec/bytecode.md,
# "Inputs"): it names each input by the model reference the recipe used and
# the file's path inside that model, with size and content hash, and holds
# no path of the machine that compiled it. `run` finds the models as
# `merge` does (--models-dir, CRUCIBLE_MODELS, the Hugging Face cache at the
# recorded snapshot) or by --input NAME=DIR, and refuses a file whose size
# or content differs, naming the model and the file, writing nothing.
# `explain` lists references, sizes, hashes and the provenance.
# Usage: portable_crb.sh CRUCIBLE_BIN
. "$(dirname "$0")/../support/e2e_lib.sh" portable "$1"

shape=(--arch llama --layers 2 --hidden 32 --intermediate 64 --heads 4 --kv-heads 2 --vocab 64 --dtype bfloat16)
"$bin" synth "$tmp/A/base" "${shape[@]}" --seed 1 >/dev/null || bad "synth base"
"$bin" synth "$tmp/A/ft" --from "$tmp/A/base" --delta-scale 0.01 --seed 2 >/dev/null || bad "synth ft"
cat >"$tmp/ties.yml" <<'YML'
merge_method: ties
base_model: base
models:
  - model: ft
    parameters: {weight: 0.7, density: 0.5}
parameters: {normalize: true}
dtype: bfloat16
YML
# same_as A B: every file of B as in A; the card's title is the folder's name
same_as() {
    local f n=0
    for f in "$1"/*; do
        n=$((n + 1))
        if [ "$(basename "$f")" = README.md ]; then
            diff -q <(grep -v '^# ' "$f") <(grep -v '^# ' "$2/README.md") >/dev/null || return 1
        else
            cmp -s "$f" "$2/$(basename "$f")" || return 1
        fi
    done
    [ "$n" -gt 2 ] && [ "$n" -eq "$(ls "$2" | wc -l)" ]
}

# ---- compile with the models in A, absolute paths everywhere ----------------
"$bin" merge "$tmp/ties.yml" "$tmp/merged" --models-dir "$tmp/A" --random-seed 7 --quiet 2>"$tmp/err"
rc=$?
check '[ $rc -eq 0 ]' "merge: $(cat "$tmp/err")"
"$bin" compile "$tmp/ties.yml" -o "$tmp/p.crb" --models-dir "$tmp/A" --random-seed 7 2>"$tmp/err"
rc=$?
check '[ $rc -eq 0 ]' "compile: $(cat "$tmp/err")"
check '! grep -qaF "$tmp" "$tmp/p.crb"' "the .crb holds a path of the compile machine: $(strings "$tmp/p.crb" | grep -F "$tmp" | head -3)"

# (merge --precise is recorded as such)
"$bin" compile "$tmp/ties.yml" -o "$tmp/precise.crb" --models-dir "$tmp/A" --precise 2>/dev/null
check '"$bin" explain "$tmp/precise.crb" | grep -q "^provenance: .*, --precise$"' "explain of a --precise program"
# explain: references, files, sizes, hashes, provenance
"$bin" explain "$tmp/p.crb" >"$tmp/explain" 2>&1
rc=$?
check '[ $rc -eq 0 ]' "explain: $(head -5 "$tmp/explain")"
check 'grep -q "^  model base$" "$tmp/explain" && grep -q "^  model ft$" "$tmp/explain"' "explain lists no models: $(head -12 "$tmp/explain")"
size=$(stat -c %s "$tmp/A/ft/model.safetensors")
check 'grep -Eq "^    model\.safetensors +$size bytes  xxh64 [0-9a-f]{16}$" "$tmp/explain"' "explain: no size and hash for model.safetensors: $(head -12 "$tmp/explain")"
check 'grep -Eq "^provenance: crucible [^ ]+, op table [0-9a-f]{16}, mergekit 0\.1\.5, seed 7, " "$tmp/explain"' "explain: provenance: $(grep provenance "$tmp/explain")"
check 'grep -q "^  | merge_method: ties$" "$tmp/explain"' "explain: no recipe text"

# ---- the models move to B -----------------------------------------------------
mv "$tmp/A" "$tmp/B"
"$bin" run "$tmp/p.crb" "$tmp/nowhere" --quiet 2>"$tmp/err"
rc=$?
check '[ $rc -eq 1 ] && grep -Eq "input model .(base|ft). not found" "$tmp/err" && [ ! -e "$tmp/nowhere" ]' \
    "run without the models: rc $rc: $(cat "$tmp/err")"
"$bin" run "$tmp/p.crb" "$tmp/run-b" --models-dir "$tmp/B" --quiet 2>"$tmp/err"
rc=$?
check '[ $rc -eq 0 ]' "run --models-dir B: $(cat "$tmp/err")"
check 'same_as "$tmp/merged" "$tmp/run-b"' "run --models-dir B differs from merge"
# the model card carries the provenance
check 'grep -q "^Made by crucible [^ ]* (VM op table [0-9a-f]\{16\}) with random seed 7 and torch.s rounding" "$tmp/run-b/README.md"' \
    "card provenance: $(grep "Made by" "$tmp/run-b/README.md")"
CRUCIBLE_MODELS="$tmp/B" "$bin" run "$tmp/p.crb" "$tmp/run-env" --quiet 2>"$tmp/err"
rc=$?
check '[ $rc -eq 0 ] && same_as "$tmp/merged" "$tmp/run-env"' "run with CRUCIBLE_MODELS: $(cat "$tmp/err")"
# beside the .crb: a folder shipped with its models
mkdir -p "$tmp/ship"
cp -r "$tmp/B/base" "$tmp/B/ft" "$tmp/p.crb" "$tmp/ship/"
(cd / && "$bin" run "$tmp/ship/p.crb" "$tmp/run-ship" --quiet) 2>"$tmp/err"
rc=$?
check '[ $rc -eq 0 ] && same_as "$tmp/merged" "$tmp/run-ship"' "run of a .crb beside its models: $(cat "$tmp/err")"

# --input NAME=DIR, one model from elsewhere
mv "$tmp/B/ft" "$tmp/ft-elsewhere"
"$bin" run "$tmp/p.crb" "$tmp/run-in" --models-dir "$tmp/B" --input "ft=$tmp/ft-elsewhere" --quiet 2>"$tmp/err"
rc=$?
check '[ $rc -eq 0 ] && same_as "$tmp/merged" "$tmp/run-in"' "run --input ft=DIR: $(cat "$tmp/err")"
"$bin" run "$tmp/p.crb" "$tmp/run-typo" --models-dir "$tmp/B" --input "fft=$tmp/ft-elsewhere" --quiet 2>"$tmp/err"
rc=$?
check '[ $rc -eq 1 ] && grep -q -- "--input fft=.*no input model" "$tmp/err" && [ ! -e "$tmp/run-typo" ]' "--input of no model: rc $rc: $(cat "$tmp/err")"
"$bin" run "$tmp/p.crb" "$tmp/run-bad" --input "ft" --quiet 2>"$tmp/err"
rc=$?
check '[ $rc -eq 2 ] && grep -q -- "--input wants NAME=DIR" "$tmp/err"' "--input without '=': $(cat "$tmp/err")"
mv "$tmp/ft-elsewhere" "$tmp/B/ft"

# ---- a changed input is refused, naming the model and the file ---------------
f=$tmp/B/ft/model.safetensors
cp "$f" "$tmp/ft.keep"
# the same size, one byte different at the end of the data
b=$(od -An -tu1 -j $(( $(stat -c %s "$f") - 3 )) -N1 "$f" | tr -d ' ')
printf "$(printf '\\%03o' $(( b ^ 1 )))" | dd of="$f" bs=1 seek=$(( $(stat -c %s "$f") - 3 )) conv=notrunc status=none
check '[ "$(stat -c %s "$f")" = "$(stat -c %s "$tmp/ft.keep")" ] && ! cmp -s "$f" "$tmp/ft.keep"' "the test did not change the file"
"$bin" run "$tmp/p.crb" "$tmp/run-changed" --models-dir "$tmp/B" --quiet 2>"$tmp/err"
rc=$?
check '[ $rc -eq 1 ] && grep -q "B/ft/model\.safetensors has content hash .* (.*B/ft/model\.safetensors is model\.safetensors of input model .ft.)" "$tmp/err"' \
    "changed input: rc $rc: $(cat "$tmp/err")"
check '[ ! -e "$tmp/run-changed" ] && [ -z "$(ls -d "$tmp"/run-changed.crucible-tmp-* 2>/dev/null)" ]' "changed input: something was written"
# --skip-hash checks sizes only
"$bin" run "$tmp/p.crb" "$tmp/run-skip" --models-dir "$tmp/B" --skip-hash --quiet 2>"$tmp/err"
rc=$?
check '[ $rc -eq 0 ]' "--skip-hash: $(cat "$tmp/err")"
# another size is refused before the VM starts, naming both
head -c 100 "$tmp/ft.keep" >"$f"
"$bin" run "$tmp/p.crb" "$tmp/run-short" --models-dir "$tmp/B" --skip-hash --quiet 2>"$tmp/err"
rc=$?
check '[ $rc -eq 1 ] && grep -q "input ft: model\.safetensors (.*) is 100 bytes" "$tmp/err" && [ ! -e "$tmp/run-short" ]' \
    "truncated input: rc $rc: $(cat "$tmp/err")"
cp "$tmp/ft.keep" "$f"
# compile --skip-hash records sizes only (explain says so)
"$bin" compile "$tmp/ties.yml" -o "$tmp/nohash.crb" --models-dir "$tmp/B" --skip-hash 2>/dev/null
check '"$bin" explain "$tmp/nohash.crb" | grep -q "hashes not recorded"' "compile --skip-hash"

# ---- Hugging Face references: org/name@revision and org/name via refs/main --
# (huggingface_hub's layout: models--ORG--NAME/{refs/main,snapshots/REV/...})
hub=$tmp/hub1/hub
rev_a=0123456789abcdef0123456789abcdef01234567
rev_b=89abcdef0123456789abcdef0123456789abcdef
mkdir -p "$hub/models--acme--base/snapshots/$rev_a" "$hub/models--acme--base/refs" \
         "$hub/models--acme--ft/snapshots/$rev_b" "$hub/models--acme--ft/refs"
cp "$tmp/B/base"/* "$hub/models--acme--base/snapshots/$rev_a/"
cp "$tmp/B/ft"/* "$hub/models--acme--ft/snapshots/$rev_b/"
printf '%s' "$rev_b" >"$hub/models--acme--ft/refs/main"
# a second, newer snapshot of base that refs/main points at: @rev_a must not take it
mkdir -p "$hub/models--acme--base/snapshots/ffff"
cp "$tmp/B/ft"/* "$hub/models--acme--base/snapshots/ffff/"
printf 'ffff' >"$hub/models--acme--base/refs/main"
sed -e "s/base_model: base/base_model: acme\/base@$rev_a/" -e 's/model: ft/model: acme\/ft/' "$tmp/ties.yml" >"$tmp/hf.yml"
env -u CRUCIBLE_MODELS HF_HUB_CACHE="$hub" "$bin" compile "$tmp/hf.yml" -o "$tmp/hf.crb" 2>"$tmp/err"
rc=$?
check '[ $rc -eq 0 ]' "compile from the HF cache: $(cat "$tmp/err")"
check '! grep -qaF "$tmp" "$tmp/hf.crb"' "hf.crb holds a path of the compile machine"
env -u CRUCIBLE_MODELS HF_HUB_CACHE="$hub" "$bin" merge "$tmp/hf.yml" "$tmp/merged-hf" --quiet 2>"$tmp/err"
rc=$?
check '[ $rc -eq 0 ] && cmp -s "$tmp/merged/model.safetensors" "$tmp/merged-hf/model.safetensors"' "merge from the HF cache: $(cat "$tmp/err")"
"$bin" explain "$tmp/hf.crb" >"$tmp/explain-hf"
check 'grep -q "^  model acme/base@$rev_a (Hugging Face snapshot $rev_a)$" "$tmp/explain-hf" &&
       grep -q "^  model acme/ft (Hugging Face snapshot $rev_b)$" "$tmp/explain-hf"' "explain hf.crb: $(grep model "$tmp/explain-hf" | head -4)"
# the cache moves (HF_HOME/hub layout), and refs/main of ft moves on to a
# snapshot that is not there: the recorded one is used
mkdir -p "$tmp/hfhome"
mv "$hub" "$tmp/hfhome/hub"
printf 'notthere' >"$tmp/hfhome/hub/models--acme--ft/refs/main"
env -u CRUCIBLE_MODELS -u HF_HUB_CACHE HF_HOME="$tmp/hfhome" "$bin" run "$tmp/hf.crb" "$tmp/run-hf" --quiet 2>"$tmp/err"
rc=$?
check '[ $rc -eq 0 ] && same_as "$tmp/merged-hf" "$tmp/run-hf"' "run of hf.crb from a moved cache: $(cat "$tmp/err")"
# without the recorded snapshot: refused, naming the model and the revision
rm -rf "$tmp/hfhome/hub/models--acme--ft/snapshots/$rev_b"
env -u CRUCIBLE_MODELS -u HF_HUB_CACHE HF_HOME="$tmp/hfhome" "$bin" run "$tmp/hf.crb" "$tmp/run-hf2" --quiet 2>"$tmp/err"
rc=$?
check '[ $rc -eq 1 ] && grep -q "input model .acme/ft. at revision $rev_b not found" "$tmp/err" && [ ! -e "$tmp/run-hf2" ]' \
    "missing snapshot: rc $rc: $(cat "$tmp/err")"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
