#!/usr/bin/env bash
# determinism.sh — every example recipe (examples/*.yml) gives the same
# output bytes whatever the thread count (1, 2, 4), under three memory
# budgets (none, one that streams some steps, a tighter one), on a repeated
# run, and through compile + run instead of merge (spec/vm.md, determinism).
# A budget `plan` refuses must be refused by `merge` too, writing nothing.
# Models: synthetic Mistral-shaped (32 layers, vocab 32000, hidden 64: the
# embeddings are large enough to stream), named as the examples expect. Usage: determinism.sh CRUCIBLE_BIN
set -u
bin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }

m=$tmp/models
shape=(--arch mistral --layers 32 --hidden 64 --intermediate 224 --heads 4 --kv-heads 1 --vocab 32000 --dtype bfloat16)
"$bin" synth "$m/mistral-base" "${shape[@]}" --seed 1 >/dev/null || bad "synth base"
seed=10
for name in mistral-ft-a mistral-ft-b mistral-ft-c mistral-math; do
    "$bin" synth "$m/$name" --from "$m/mistral-base" --delta-scale 0.01 --seed $seed >/dev/null || bad "synth $name"
    seed=$((seed + 1))
done

# every shard's bytes, in a stable order: the comparison key of an output
digest() { cat "$1"/model*.safetensors | cksum; }

streamed=0
for recipe in "$root"/examples/*.yml; do
    r=$(basename "$recipe" .yml)
    ref=$tmp/$r-ref
    if ! "$bin" merge "$recipe" "$ref" --models-dir "$m" --quiet --threads 2 --random-seed 7 2>"$tmp/err"; then
        bad "$r: merge: $(head -c 300 "$tmp/err")"
        continue
    fi
    want=$(digest "$ref")
    # budgets below the unbounded peak by half and by 80% of its mapped
    # inputs: the model keeps the working memory and streams the inputs
    full=$("$bin" plan "$recipe" --models-dir "$m" --threads 2 2>/dev/null)
    plan=$(echo "$full" | grep '^peak memory')
    peak=$(echo "$plan" | sed -n 's/.*(\([0-9]*\) bytes).*/\1/p')
    # the output stream's window is in the peak, but under a budget it only
    # takes the headroom: the budgets are set below the rest
    window=$(echo "$full" | sed -n 's/^output stream.*(\([0-9]*\) bytes, in the peak).*/\1/p')
    [ -n "$peak" ] && [ -n "$window" ] && peak=$((peak - window))
    mapped=$(echo "$plan" | sed -n 's/.* \([0-9.]*\) \([KMG]*i*B\) mapped.*/\1 \2/p' |
             awk '{ u = $2 == "GiB" ? 1073741824 : $2 == "MiB" ? 1048576 : $2 == "KiB" ? 1024 : 1; printf "%d", $1 * u }')
    variants=("--threads 1" "--threads 4" "--threads 2")
    if [ -n "$peak" ] && [ -n "$mapped" ]; then
        for f in 0.5 0.8; do
            b=$(awk -v p="$peak" -v m="$mapped" -v f="$f" 'BEGIN { printf "%d", p - f * m }')
            variants+=("--threads 2 --max-memory $b")
            "$bin" plan "$recipe" --models-dir "$m" --threads 2 --max-memory "$b" 2>/dev/null |
                grep -q '^streamed' && streamed=$((streamed + 1))
        done
    else
        bad "$r: plan printed no peak: $plan"
    fi
    for v in "${variants[@]}"; do
        out=$tmp/$r-$(echo "$v" | tr -c 'a-z0-9' _)
        # shellcheck disable=SC2086
        "$bin" plan "$recipe" --models-dir "$m" $v >/dev/null 2>&1
        fits=$?
        # shellcheck disable=SC2086
        if "$bin" merge "$recipe" "$out" --models-dir "$m" --quiet --random-seed 7 $v 2>"$tmp/err"; then
            [ "$(digest "$out")" = "$want" ] && ok || bad "$r ($v): bytes differ"
            [ $fits -eq 0 ] && ok || bad "$r ($v): plan refused a budget the merge met"
        elif [ $fits -ne 0 ] && grep -q "max-memory" "$tmp/err" && [ ! -e "$out" ]; then
            ok   # refused up front, as plan predicted, and nothing written
        else
            bad "$r ($v): $(head -c 300 "$tmp/err")"
        fi
        rm -rf "$out"
    done
    if "$bin" compile "$recipe" -o "$tmp/$r.crb" --models-dir "$m" --random-seed 7 2>"$tmp/err" &&
       "$bin" run "$tmp/$r.crb" "$tmp/$r-run" --models-dir "$m" --quiet 2>>"$tmp/err"; then
        [ "$(digest "$tmp/$r-run")" = "$want" ] && ok || bad "$r: compile + run differs from merge"
    else
        bad "$r: compile/run: $(head -c 300 "$tmp/err")"
    fi
    rm -rf "$ref" "$tmp/$r-run" "$tmp/$r.crb"
done
# the budgets must really have streamed, or the memory variants test nothing
[ "$streamed" -ge 8 ] && ok || bad "only $streamed budgets streamed some steps"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
