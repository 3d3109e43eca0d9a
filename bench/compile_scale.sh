#!/usr/bin/env bash
# compile_scale.sh — how `crucible compile` and `crucible plan` scale with the
# number of tensors (issue 13, item 5; results in COMPILE_SCALE.md).
#
#   bench/compile_scale.sh BIN [RUNS] [SIZES] [CAP_SECONDS]
#
# Synthesises three Llama-shaped models (base, ft-a, ft-b) with 9 tensors a
# layer and tiny shapes (hidden 8), cut right after their safetensors
# headers (compile and plan read headers only; a 100k-tensor set is ~30 MB),
# for each size in SIZES (layers; default "111 1111 11111" = 1,002 / 10,002 /
# 100,002 tensors), then times compile and plan of a linear and a ties
# recipe over the three, RUNS times each (default 3), and prints one line a
# measurement: layers tensors recipe command median_seconds all_runs. A run
# longer than CAP_SECONDS (default 600) is killed and reported as ">CAP".
# Models are cached in $CS_MODELS (default /tmp/crucible-compile-scale).
set -u
bin=$(realpath "$1")
runs=${2:-3}
sizes=${3:-"111 1111 11111"}
cap=${4:-600}
root=${CS_MODELS:-/tmp/crucible-compile-scale}
mkdir -p "$root"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cat >"$tmp/linear.yml" <<'EOF'
models:
  - model: base
    parameters: {weight: 0.5}
  - model: ft-a
    parameters: {weight: 0.3}
  - model: ft-b
    parameters: {weight: 0.2}
merge_method: linear
dtype: bfloat16
EOF
cat >"$tmp/ties.yml" <<'EOF'
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
EOF

for L in $sizes; do
    dir="$root/L$L"
    if [ ! -f "$dir/ft-b/model.safetensors" ]; then
        rm -rf "$dir"
        "$bin" synth "$dir/base" --arch llama --layers "$L" --hidden 8 --intermediate 8 --heads 2 \
            --kv-heads 1 --vocab 16 --dtype bfloat16 --seed 1 >/dev/null || exit 1
        "$bin" synth "$dir/ft-a" --from "$dir/base" --delta-scale 0.02 --seed 2 >/dev/null || exit 1
        "$bin" synth "$dir/ft-b" --from "$dir/base" --delta-scale 0.02 --seed 3 >/dev/null || exit 1
        for f in "$dir"/*/model.safetensors; do
            n=$(od -An -tu8 -N8 "$f" | tr -d ' ')
            truncate -s $((8 + n)) "$f"
        done
    fi
    tensors=$(( 9 * L + 3 ))
    for recipe in linear ties; do
        for cmd in compile plan; do
            times=()
            for ((r = 0; r < runs; r++)); do
                if [ "$cmd" = compile ]; then
                    args=(compile "$tmp/$recipe.yml" -o "$tmp/out.crb" --models-dir "$dir")
                else
                    args=(plan "$tmp/$recipe.yml" --models-dir "$dir")
                fi
                start=$(date +%s.%N)
                timeout "$cap" "$bin" "${args[@]}" >/dev/null 2>"$tmp/err"
                rc=$?
                end=$(date +%s.%N)
                rm -f "$tmp/out.crb"
                if [ $rc -eq 124 ]; then times+=(">$cap"); break; fi
                if [ $rc -ne 0 ]; then echo "error: $cmd $recipe L$L: $(head -c 300 "$tmp/err")" >&2; times+=(err); break; fi
                times+=("$(echo "$end - $start" | bc)")
            done
            med=$(printf '%s\n' "${times[@]}" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
            echo "$L $tensors $recipe $cmd $med ${times[*]}"
        done
    done
done
