#!/usr/bin/env bash
# evolve.sh — `crucible evolve` (cli/cmd_evolve.c, CMA-ES of core/cmaes.c)
# on three tiny synthesised fine-tunes of the qwen2 forward fixture: 6
# genes (2 layer groups x 3 models, linear), 5 generations. The best
# recipe reproduces its fitness through crucible merge + crucible eval; the
# same seed gives the same files; a search stopped after 3 generations
# and resumed ends with the same files as one never stopped; a command
# task scores by the last number printed; bad configs fail with the line.
# usage: tests/e2e/evolve.sh CRUCIBLE_BIN
. "$(dirname "$0")/../support/e2e_lib.sh" evolve "$1"
fx=$PWD/tests/fixtures/forward/qwen2
mkdir -p "$tmp/base"
cp "$fx/config.json" "$fx/model.safetensors" "$fx/tokenizer.json" "$tmp/base/"
echo '{"model_max_length": 256}' >"$tmp/base/tokenizer_config.json"
for s in 1 2 3; do
    "$bin" synth "$tmp/ft$s" --from "$tmp/base" --delta-scale 0.0$s --seed $s >/dev/null 2>&1 || bad "synth ft$s"
    cp "$tmp/base/tokenizer.json" "$tmp/base/tokenizer_config.json" "$tmp/ft$s/"
done
cp "$fx/text.txt" "$tmp/held.txt"
cd "$tmp" || exit 1
cat >evo.yml <<'YML'
genome:
  models: [ft1, ft2, ft3]
  merge_method: linear
  layer_granularity: 1
tasks:
  - perplexity: held.txt
search:
  generations: 5
  seed: 7
YML
"$bin" evolve evo.yml a >a.txt 2>&1
rc=$?
check '[ $rc = 0 ] && [ -s a/best.yml ] && [ -s a/checkpoint.json ] && [ -s a/best.json ]' "evolve failed: $(cat a.txt)"
check 'grep -q "^evolve: 6 genes (2 layer groups x 3 models x 1), population 9, seed 7" a.txt' "header: $(head -1 a.txt)"
check '[ "$(grep -c "^generation [1-5]/5: best .* mean .* elapsed .* ETA " a.txt)" = 5 ]' "progress lines: $(cat a.txt)"
# the best recipe reproduces its fitness to the last digit
"$bin" merge a/best.yml m -q >/dev/null 2>&1 || bad "merge best.yml"
want=$(sed -n 's/.*"fitness":[[:space:]]*\([0-9.e+-]*\).*/\1/p' a/best.json)
got=$("$bin" eval m --text held.txt --json | sed -n '/"total"/,$p' | sed -n 's/.*"perplexity":[[:space:]]*\([0-9.e+-]*\).*/\1/p')
check '[ -n "$want" ] && [ "$got" = "$want" ]' "best.json fitness $want, crucible merge + eval of best.yml $got"
# the search improved on the start (every model 1/3)
first=$(sed -n 's/^generation 1\/5: best \([0-9.]*\),.*/\1/p' a.txt)
check 'awk -v a="$want" -v b="$first" "BEGIN { exit !(a <= b) }"' "best $want worse than generation 1's $first"
# reproducible, and resumable bit for bit
"$bin" evolve evo.yml b >/dev/null 2>&1 || bad "second run"
"$bin" evolve evo.yml c --generations 3 >/dev/null 2>&1 || bad "3 generations"
check 'grep -q "\"generation\":[[:space:]]*3," c/checkpoint.json' "checkpoint after 3 generations"
"$bin" evolve evo.yml c --resume >r.txt 2>&1 || bad "resume: $(cat r.txt)"
check '[ "$(grep -c "^generation " r.txt)" = 2 ]' "resume ran $(grep -c "^generation " r.txt) generations, want 2"
for f in best.yml checkpoint.json best.json; do
    check 'cmp -s a/$f b/$f' "second run's $f differs"
    check 'cmp -s a/$f c/$f' "resumed run's $f differs"
done
"$bin" evolve evo.yml d --random-seed 8 --generations 1 >/dev/null 2>&1 || bad "seed 8"
check '! cmp -s <(sed -n 1,5p a/checkpoint.json) <(sed -n 1,5p d/checkpoint.json)' "seed 8 searched the same"
# a command task: the last number printed, higher is better (fitness = -score)
cat >cmd.yml <<'YML'
genome:
  models: [ft1, ft2]
  merge_method: ties
  base_model: base
tasks:
  - command: "test -s \"$CRUCIBLE_MODEL/model.safetensors\" && echo score: 2.5"
    weight: 2
search: {generations: 1, population: 2}
YML
"$bin" evolve cmd.yml e >e.txt 2>&1
rc=$?
check '[ $rc = 0 ] && grep -q "\"fitness\":[[:space:]]*-5," e/best.json' "command task: $(cat e.txt) $(cat e/best.json 2>/dev/null)"
check '[ "$(grep -c "density: 0\.[0-9]*$" e/best.yml)" = 2 ] && grep -q "int8_mask: true" e/best.yml' "ties recipe: $(cat e/best.yml)"
# refusals
"$bin" evolve evo.yml a >x.txt 2>&1; rc=$?
check '[ $rc = 2 ] && grep -q "resume" x.txt' "existing OUT_DIR: rc $rc $(cat x.txt)"
printf 'genome:\n  models: [ft1]\n  merge_method: slerp\ntasks:\n  - perplexity: held.txt\n' >bad1.yml
"$bin" evolve bad1.yml f >x.txt 2>&1; rc=$?
check '[ $rc = 2 ] && grep -q "bad1.yml:3:17: error: genome.merge_method" x.txt' "slerp: rc $rc $(cat x.txt)"
printf 'genome:\n  models: [ft1]\n  merge_method: linear\ntasks:\n  - arc_challenge\n' >bad2.yml
"$bin" evolve bad2.yml f >x.txt 2>&1; rc=$?
check '[ $rc = 2 ] && grep -q "bad2.yml:5:5: error: a task is" x.txt' "lm-eval task: rc $rc $(cat x.txt)"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
