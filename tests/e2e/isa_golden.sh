#!/usr/bin/env bash
# isa_golden.sh — crucible's bytes do not depend on the host's ISA: every
# golden recipe (tests/golden/cases*/, both mergekit releases, each with its
# case's --mergekit-version and options) merged with each kernel table this
# CPU runs (CRUCIBLE_ISA=scalar|avx2|avx512) gives the same output bytes as
# the scalar table. (Whether those bytes equal mergekit's is test_golden's
# question; mergekit's own output can depend on its host: spec/compat.md.)
# usage: tests/e2e/isa_golden.sh CRUCIBLE_BIN
. "$(dirname "$0")/../support/e2e_lib.sh" isa "$1"
golden=$(cd "$(dirname "$0")/../golden" && pwd)

cd "$golden/models" || exit 1
isas=(scalar)
for isa in avx2 avx512; do
    # a table this CPU lacks is refused ("does not support"): leave it out
    if CRUCIBLE_ISA=$isa "$bin" merge "$golden/cases/linear_f32/recipe.yml" "$tmp/probe-$isa" --quiet \
        --mergekit-version 0.1.4 2>"$tmp/err" >/dev/null; then isas+=("$isa")
    elif ! grep -q "does not support" "$tmp/err"; then bad "probe $isa: $(cat "$tmp/err")"; fi
done
echo "kernel tables run here: ${isas[*]}"

n_cases=0
for dir in "$golden"/cases*/*/; do
    case_json=$dir/case.json
    name=$(basename "$(dirname "$dir")")/$(basename "$dir")
    version=$(sed -n 's/.*"mergekit": "\([0-9.]*\)".*/\1/p' "$case_json" | head -1)
    flags=(--mergekit-version "$version" --quiet --threads 2)
    grep -q '"unsafe_truncate_embeddings": true' "$case_json" && flags+=(--unsafe-truncate-embeddings)
    ref=
    for isa in "${isas[@]}"; do
        out=$tmp/out-$isa
        rm -rf "$out"
        if ! CRUCIBLE_ISA=$isa "$bin" merge "$dir/recipe.yml" "$out" "${flags[@]}" 2>"$tmp/err"; then
            # a recipe crucible refuses must be refused under every table
            if [ -z "$ref" ] || [ "$ref" = refused ]; then ref=refused; continue; fi
            bad "$name: $isa refused what another table merged: $(head -c 300 "$tmp/err")"
            continue
        fi
        sum=$(cat "$out"/*.safetensors | cksum)
        if [ -z "$ref" ]; then ref=$sum
        else check '[ "$sum" = "$ref" ]' "$name: CRUCIBLE_ISA=$isa gives other bytes than scalar"; fi
    done
    n_cases=$((n_cases + 1))
done
check '[ $n_cases -ge 150 ]' "only $n_cases golden cases found"
echo "$n_cases golden recipes, ${#isas[@]} kernel tables"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
