#!/usr/bin/env bash
# nuslerp_antipodal.sh — nuslerp's colinear test per mergekit release
# (spec/mergekit-0.1.5.md §3.3) on two exactly opposite float32 models.
# Where torch's clamped cosine is -1, mergekit 0.1.5 tests 1 - c² <= 1e-16
# and interpolates linearly; 0.1.4 tests |sin θ| < 1e-8, which
# sin(float32 π) = -8.7e-8 fails, so it divides by that. On these synth
# models (seed 3) 14 of the 21 tensors have c = -1; mergekit 0.1.5's own
# output on them was checked to equal crucible's on all 21 tensors, bit
# for bit. Usage: nuslerp_antipodal.sh CRUCIBLE_BIN
. "$(dirname "$0")/../support/e2e_lib.sh" nuslerp-antipodal "$1"

m=$tmp/models
"$bin" synth "$m/a" --arch llama --layers 2 --hidden 32 --intermediate 64 --heads 4 --kv-heads 2 \
    --vocab 64 --dtype float32 --seed 3 >/dev/null || bad "synth a"
# -a, exactly
cat >"$tmp/neg.yml" <<'YML'
merge_method: linear
models:
  - model: a
    parameters: {weight: -1.0}
parameters: {normalize: false}
dtype: float32
YML
"$bin" merge "$tmp/neg.yml" "$m/neg" --models-dir "$m" --quiet || bad "merge neg"
# (1 - t)·a + t·(-a) with t = 0.3, in float32: the colinear branch, each
# product rounded, then the sum (mergekit 0.1.4's linear; 0.1.5's fuses
# the multiply-adds)
cat >"$tmp/lin.yml" <<'YML'
merge_method: linear
models:
  - model: a
    parameters: {weight: 0.7}
  - model: neg
    parameters: {weight: 0.3}
parameters: {normalize: false}
dtype: float32
YML
"$bin" merge "$tmp/lin.yml" "$tmp/lin" --models-dir "$m" --quiet --mergekit-version 0.1.4 || bad "merge lin"
sed 's/merge_method: linear/merge_method: nuslerp/; /normalize/d' "$tmp/lin.yml" >"$tmp/nus.yml"

identical() { "$bin" diff "$tmp/lin" "$1" | sed -n 's/^[a-z]*: \([0-9]*\) identical,.*/\1/p'; }
for v in 0.1.4 0.1.5; do
    "$bin" merge "$tmp/nus.yml" "$tmp/nus-$v" --models-dir "$m" --quiet --mergekit-version $v 2>"$tmp/err"
    rc=$?; check '[ $rc -eq 0 ]' "nuslerp $v: $(cat "$tmp/err")"
done
n=$(identical "$tmp/nus-0.1.5")
check '[ "$n" = 14 ]' "0.1.5: $n of 21 tensors take the linear branch, expected the 14 with c = -1"
n=$(identical "$tmp/nus-0.1.4")
check '[ "$n" = 0 ]' "0.1.4: $n tensors take the linear branch, expected none (|sin θ| = 8.7e-8)"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
