#!/usr/bin/env bash
# soup.sh — `crucible soup --greedy|--uniform` (cli/cmd_soup.c running
# examples/recipes/greedy-soup.lua) on tiny synthesised fine-tunes of the
# qwen2 forward fixture: every score it prints for a candidate merge equals
# `crucible merge` + `crucible eval` of the same recipe; the kept models
# are the ones whose step lowered the perplexity; the ranking, steps and
# choice are in the model card; the same inputs give the same output
# bytes and report; the temporary folder is removed; bad invocations fail.
# usage: tests/e2e/soup.sh CRUCIBLE_BIN
. "$(dirname "$0")/../support/e2e_lib.sh" soup "$1"
fx=tests/fixtures/forward/qwen2
script=examples/recipes/greedy-soup.lua
mkdir -p "$tmp/m/base" "$tmp/tmpdir"
cp "$fx/config.json" "$fx/model.safetensors" "$fx/tokenizer.json" "$tmp/m/base/"
echo '{"model_max_length": 256}' >"$tmp/m/base/tokenizer_config.json"
# noisy fine-tunes: two of the same size (their average beats either),
# one noisier and one far off, so that the greedy soup keeps and drops
for spec in 1:0.3:21 2:0.3:22 3:1:33 4:0.5:11; do
    IFS=: read -r s scale seed <<<"$spec"
    "$bin" synth "$tmp/m/ft$s" --from "$tmp/m/base" --delta-scale $scale --seed $seed >/dev/null 2>&1 ||
        bad "synth ft$s"
    cp "$tmp/m/base/tokenizer.json" "$tmp/m/base/tokenizer_config.json" "$tmp/m/ft$s/"
done
text=$tmp/held_out.txt
cat "$fx/text.txt" >"$text"
cd "$tmp/m" || exit 1
models="ft1 ft2 ft3 ft4"
root=$OLDPWD
# ppl DIR: the perplexity `crucible eval` gives (cJSON's 15 digits)
ppl() { "$bin" eval "$1" --text "$text" --json | sed -n '/"total"/,$p' |
        sed -n 's/.*"perplexity":[[:space:]]*\([0-9.e+-]*\).*/\1/p' | head -1; }
# eq PRINTED EVAL: the soup's %.6f figure is crucible eval's (to 1e-13
# relative: cJSON's 15 digits; part 6 checks all 17 digits of the NLL)
eq() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && d <= 1e-13 * b + 5e-7) }'; }
# recipe M...: the uniform average the script builds
recipe() { printf 'merge_method: linear\nparameters:\n  normalize: true\nmodels:\n'
           for m in "$@"; do printf '  - model: "%s"\n    parameters:\n      weight: 1.0\n' "$m"; done; }

TMPDIR=$tmp/tmpdir "$bin" soup --greedy --eval "$text" --script "$root/$script" $models out1 >g1.txt 2>g1.err
rc=$?
check '[ $rc = 0 ]' "soup --greedy failed: $(cat g1.err)"
check '[ -z "$(ls -A "$tmp/tmpdir")" ]' "soup left its temporary folder: $(ls -A "$tmp/tmpdir")"
check 'grep -q "^ranking" g1.txt && grep -q "^step 2: + " g1.txt && grep -q "^greedy soup: " g1.txt' \
    "report lacks ranking/steps: $(cat g1.txt)"
# 1. each model's own score is crucible eval's
ranked=$(sed -n 's/^[0-9]*\. \([^:]*\): .*/\1/p' g1.txt)
check '[ "$(echo $ranked | wc -w)" = 4 ]' "ranking has not 4 models: $ranked"
for m in $ranked; do
    got=$(sed -n "s/^[0-9]*\. $m: //p" g1.txt)
    check 'eq "$got" "$(ppl "$m")"' "ranking score of $m: $got, crucible eval: $(ppl "$m")"
done
# 2. each step's candidate equals crucible merge + crucible eval; keep iff better
set -- $ranked
kept="$1"
best=$(sed -n "s/^step 1: [^:]*: perplexity \([0-9.]*\), kept/\1/p" g1.txt)
k=2
for m in $(echo $ranked | cut -d' ' -f2-); do
    line=$(grep "^step $k: + $m: " g1.txt)
    got=$(printf '%s' "$line" | sed -n 's/.*perplexity \([0-9.]*\),.*/\1/p')
    recipe $kept "$m" >"step$k.yml"
    "$bin" merge "step$k.yml" "step$k" -q >/dev/null 2>&1 || bad "merge step$k.yml"
    want=$(ppl "step$k")
    check 'eq "$got" "$want"' "step $k score $got, crucible merge + eval $want"
    if awk -v a="$got" -v b="$best" 'BEGIN { exit !(a < b) }'; then
        check 'printf "%s" "$line" | grep -q "kept$"' "step $k improved but was not kept: $line"
        kept="$kept $m"; best=$got
    else
        check 'printf "%s" "$line" | grep -q "dropped$"' "step $k did not improve but was kept: $line"
    fi
    k=$((k + 1))
done
check 'grep -q "^step [2-4]: .*, kept$" g1.txt && grep -q "^step [2-4]: .*, dropped$" g1.txt' \
    "the greedy steps should keep one model and drop one here: $(cat g1.txt)"
# 3. the written soup is the kept models' average, scored as printed
final=$(sed -n 's/^greedy soup: .* perplexity \([0-9.]*\)$/\1/p' g1.txt)
check 'eq "$final" "$(ppl out1)"' "final score $final, crucible eval out1: $(ppl out1)"
recipe $kept >final.yml
"$bin" merge final.yml final -q >/dev/null 2>&1 || bad "merge final.yml"
check 'cmp -s out1/model.safetensors final/model.safetensors' "out1 is not the average of: $kept"
check 'grep -q "^## Soup" out1/README.md && grep -q "^step 2: + " out1/README.md' "model card lacks the soup"
# 4. reproducible: same inputs, same report and bytes
TMPDIR=$tmp/tmpdir "$bin" soup --greedy --eval "$text" --script "$root/$script" $models out2 >g2.txt 2>&1
check 'sed "s/out1/out2/" g1.txt | cmp -s - g2.txt' "second run's report differs"
check 'cmp -s out1/model.safetensors out2/model.safetensors && cmp -s out1/mergekit_config.yml out2/mergekit_config.yml' \
    "second run's output differs"
# 5. --uniform: the average of all, scored as printed
TMPDIR=$tmp/tmpdir "$bin" soup --uniform --eval "$text" --script "$root/$script" $models uni >u.txt 2>&1
rc=$?
check '[ $rc = 0 ]' "soup --uniform failed: $(cat u.txt)"
got=$(sed -n 's/^uniform soup of 4 models: perplexity \([0-9.]*\) .*/\1/p' u.txt)
check 'eq "$got" "$(ppl uni)"' "uniform score $got, crucible eval: $(ppl uni)"
# 6. the script API: crucible.eval of a recipe in memory, and streamed
# through the temporary folder when the output does not fit --max-memory
# beside the VM's working memory; both equal crucible merge + crucible eval
# to the last bit (17 significant digits of mean NLL and perplexity)
cat >probe.lua <<'LUA'
local a = crucible.args()
local y = "merge_method: linear\nmodels:\n  - model: ft1\n    parameters:\n      weight: 0.3\n" ..
          "  - model: ft2\n    parameters:\n      weight: 0.7\n"
local s = crucible.eval(y, a.eval)
crucible.print(string.format("%.17g %.17g %s", s.mean_nll, s.perplexity, tostring(s.in_memory)))
LUA
printf 'merge_method: linear\nmodels:\n  - model: ft1\n    parameters:\n      weight: 0.3\n  - model: ft2\n    parameters:\n      weight: 0.7\n' >probe.yml
"$bin" merge probe.yml probe -q >/dev/null 2>&1 || bad "merge probe.yml"
# cJSON writes 15 digits when they read back within an epsilon: the mean
# NLL (which it prints exactly here) decides, the perplexity is exp of it
json=$("$bin" eval probe --text "$text" --json | sed -n '/"total"/,$p')
want_nll=$(printf '%s' "$json" | sed -n 's/.*"mean_nll":[[:space:]]*\([0-9.e+-]*\).*/\1/p')
want_ppl=$(printf '%s' "$json" | sed -n 's/.*"perplexity":[[:space:]]*\([0-9.e+-]*\).*/\1/p')
same() {   # same FILE ROUTE: "NLL PPL ROUTE" with NLL's 17 digits and PPL's 14 equal to crucible eval's
    local nll ppl route
    read -r nll ppl route <"$1"
    [ "$nll" = "$want_nll" ] && [ "$route" = "$2" ] && [ "$(printf '%.14g' "$ppl")" = "$(printf '%.14g' "$want_ppl")" ]
}
want="$want_nll $want_ppl"
TMPDIR=$tmp/tmpdir "$bin" soup --uniform --eval "$text" --script probe.lua -j 1 ft1 x >p1.txt 2>&1
check 'same p1.txt true' "in memory: $(cat p1.txt), crucible merge + eval: $want"
# the least --max-memory the merge runs under with one thread
lo=1; hi=64000000
while [ $((hi - lo)) -gt 1 ]; do
    mid=$(((lo + hi) / 2)); rm -rf bm
    if "$bin" merge probe.yml bm -q -j 1 --max-memory $mid >/dev/null 2>&1; then hi=$mid; else lo=$mid; fi
done
TMPDIR=$tmp/tmpdir "$bin" soup --uniform --eval "$text" --script probe.lua -j 1 --max-memory $hi ft1 x >p2.txt 2>&1
check 'same p2.txt false' "streamed (--max-memory $hi): $(cat p2.txt), crucible merge + eval: $want"
TMPDIR=$tmp/tmpdir "$bin" soup --uniform --eval "$text" --script probe.lua -j 1 --max-memory $((hi + 400000)) ft1 x >p3.txt 2>&1
check 'same p3.txt true' "in memory (--max-memory $((hi + 400000))): $(cat p3.txt)"
# the text as a string, {text = "..."}: the same score
{ printf 'local y = "merge_method: linear\\nmodels:\\n  - model: ft1\\n    parameters:\\n      weight: 0.3\\n" ..\n'
  printf '          "  - model: ft2\\n    parameters:\\n      weight: 0.7\\n"\n'
  printf 'local s = crucible.eval(y, { text = [==['; cat "$text"; printf ']==] })\n'
  printf 'crucible.print(string.format("%%.17g", s.mean_nll))\n'; } >probe2.lua
TMPDIR=$tmp/tmpdir "$bin" soup --uniform --eval "$text" --script probe2.lua ft1 x >p4.txt 2>&1
check '[ "$(cat p4.txt)" = "$want_nll" ]' "{text = ...}: $(cat p4.txt), want $want_nll"
check '[ -z "$(ls -A "$tmp/tmpdir")" ] && [ ! -e x ]' "temporary folder left: $(ls -A "$tmp/tmpdir")"

# 7. bad invocations
"$bin" soup --eval "$text" ft1 x >/dev/null 2>&1; check '[ $? = 2 ]' "soup without --greedy/--uniform"
"$bin" soup --greedy ft1 x >/dev/null 2>&1; check '[ $? = 2 ]' "soup without --eval"
"$bin" soup --greedy --eval "$text" --script "$root/$script" ft1 out1 >/dev/null 2>&1
check '[ $? = 2 ]' "soup into an existing directory"
"$bin" soup --greedy --eval "$text" --script "$root/$script" ft1 nope missing >e.txt 2>&1
rc=$?
check '[ $rc = 1 ] && grep -q "nope" e.txt && [ ! -e missing ]' "a missing model: $(cat e.txt)"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
