#!/usr/bin/env bash
# torch_sort_pool.sh — the TIES-family tie-order sorts a round of one sort
# a thread leaves over (ties: three models on five threads; breadcrumbs:
# six selections, two a model, on four threads) run on the whole pool
# (vm/torchsort.c, cr_torchsort_partition_par; interp_select.c
# vm_partition_run): the merged bytes must be those of one thread, for a
# descending sort (ties, dare_ties) and an ascending one (breadcrumbs), on
# every kernel table. The embeddings (32000 x 64 = 2 Mi elements) are above
# the size (CR_TORCHSORT_PAR_MIN, 1 Mi words) whose partitions are split.
# Usage: torch_sort_pool.sh CRUCIBLE_BIN
. "$(dirname "$0")/../support/e2e_lib.sh" torch-sort-pool "$1"

m=$tmp/models
shape=(--arch mistral --layers 1 --hidden 64 --intermediate 128 --heads 4 --kv-heads 1 --vocab 32000 --dtype bfloat16)
"$bin" synth "$m/base" "${shape[@]}" --seed 1 >/dev/null || bad "synth base"
for i in 1 2 3; do
    "$bin" synth "$m/ft$i" --from "$m/base" --delta-scale 0.01 --seed $((10 + i)) >/dev/null || bad "synth ft$i"
done
recipe() {   # METHOD EXTRA_PARAMETERS
    printf 'merge_method: %s\nbase_model: base\ndtype: bfloat16\nmodels:\n  - model: base\n' "$1"
    for i in 1 2 3; do
        printf '  - model: ft%s\n    parameters:\n      weight: 0.%s\n      density: 0.%s\n%s' "$i" "$i" $((3 + i)) "$2"
    done
}
recipe ties "" >"$tmp/ties.yml"
recipe dare_ties "" >"$tmp/dare_ties.yml"
recipe breadcrumbs "      gamma: 0.01
" >"$tmp/breadcrumbs.yml"

digest() { cat "$1"/model*.safetensors | cksum; }
for r in ties dare_ties breadcrumbs; do
    if ! "$bin" merge "$tmp/$r.yml" "$tmp/$r-j1" --models-dir "$m" --quiet --threads 1 --random-seed 5 2>"$tmp/err"; then
        bad "$r -j1: $(head -c 300 "$tmp/err")"
        continue
    fi
    want=$(digest "$tmp/$r-j1")
    for isa in scalar avx2 avx512; do
        for j in 2 4 5; do
            out=$tmp/$r-$isa-j$j
            if CRUCIBLE_ISA=$isa "$bin" merge "$tmp/$r.yml" "$out" --models-dir "$m" --quiet --threads $j \
                   --random-seed 5 2>"$tmp/err"; then
                check '[ "$(digest "$out")" = "$want" ]' "$r ($isa, $j threads): bytes differ from one thread's"
            elif grep -q "not supported\|does not support\|unsupported" "$tmp/err"; then
                ok   # this CPU lacks the ISA
            else
                bad "$r ($isa, $j threads): $(head -c 300 "$tmp/err")"
            fi
            rm -rf "$out"
        done
    done
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
