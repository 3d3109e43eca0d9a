#!/usr/bin/env bash
# force_safety.sh — the output is never an input; replacing it is atomic
# (spec/reliability.md §8.1, issue 13 items 1, 6, 7, 10).
#  - merge, moe and run refuse an OUT_DIR that is an input model directory,
#    an ancestor of one (models/, .), inside one (models/a/sub), a symlink
#    to one, or that an input symlink points into; also the directory of
#    the recipe, of a lua: method file and of the .crb; with and without
#    --force, exit 1, naming both paths; every input byte-identical after.
#  - a killed (SIGKILL) run's OUT.crucible-tmp-PID is removed by the next
#    run into OUT, which says so; a live run's, or one without crucible's
#    owner record, is kept; `crucible verify OUT` finishes a two-rename
#    replace that was killed half-way.
#  - compile -o refuses an existing .crb unless --force, and an input;
#    OUT "" and a dangling link fail at once; a link to an empty directory
#    is written through.
# usage: tests/e2e/force_safety.sh CRUCIBLE_BIN
. "$(dirname "$0")/../support/e2e_lib.sh" force_safety "$1"

cd "$tmp" || exit 1
small=(--arch llama --layers 1 --hidden 16 --intermediate 32 --heads 2 --kv-heads 1 --vocab 64)
mkdir -p models recipes methods progs
"$bin" synth models/a "${small[@]}" --seed 1 >/dev/null 2>&1
"$bin" synth models/b --from models/a --delta-scale 0.1 --seed 2 >/dev/null 2>&1
"$bin" synth models/c --from models/a --delta-scale 0.1 --seed 3 >/dev/null 2>&1
check '[ -f models/a/model.safetensors ] && [ -f models/c/model.safetensors ]' "synth inputs"
cat >recipes/r.yml <<'YML'
merge_method: linear
models:
  - model: models/a
    parameters: {weight: 0.5}
  - model: models/b
    parameters: {weight: 0.5}
dtype: float32
YML
cat >recipes/moe.yml <<'YML'
base_model: models/a
gate_mode: random
dtype: float32
experts:
  - source_model: models/b
  - source_model: models/c
YML
cat >methods/avg.lua <<'LUA'
return {
  name = "avg", base = "unused", inputs = { min = 1 }, params = {},
  merge = function(ctx)
    local xs = {}
    for k, x in ipairs(ctx.inputs) do xs[k] = x:cast("float32") end
    return cr.sum_of(xs) / #xs
  end,
}
LUA
cat >recipes/lua.yml <<'YML'
merge_method: lua:../methods/avg.lua
models:
  - model: models/a
  - model: models/b
dtype: float32
YML
cp recipes/r.yml r.yml
cp recipes/moe.yml moe.yml
"$bin" compile r.yml -o progs/r.crb >/dev/null 2>&1
check '[ -f progs/r.crb ]' "compile"
sums() { find models recipes methods progs r.yml moe.yml -type f | sort | xargs cksum | cksum; }
before=$(sums)

# refused NAME PATTERN CMD...: exit 1, stderr matches PATTERN (both paths),
# inputs unchanged, no temporary left
refused() {
    local name=$1 pat=$2; shift 2
    "$@" >out.txt 2>err.txt
    local rc=$?
    check '[ $rc -eq 1 ]' "$name: rc $rc (want 1): $(cat err.txt)"
    check 'grep -Eq -- "$pat" err.txt' "$name: message does not match '$pat': $(cat err.txt)"
    check '[ "$(sums)" = "$before" ]' "$name: an input changed"
    check '[ -z "$(find . -name "*crucible-*" 2>/dev/null)" ]' "$name: left $(find . -name "*crucible-*")"
}

ln -s models/a link
for cmd in merge moe run; do
    case $cmd in
        merge) c=("$bin" merge r.yml) ;;
        moe) c=("$bin" moe moe.yml) ;;
        run) c=("$bin" run progs/r.crb) ;;
    esac
    for force in "" --force; do
        refused "$cmd models/a $force" "'models/a' is the input '(\./)?models/a'" "${c[@]}" models/a --quiet $force
        refused "$cmd models $force" "'models' contains the input '(\./)?models/a" "${c[@]}" models --quiet $force
        refused "$cmd . $force" "'\.' contains the input" "${c[@]}" . --quiet $force
        refused "$cmd models/a/sub $force" "'models/a/sub' is inside the input model directory '(\./)?models/a'" \
            "${c[@]}" models/a/sub --quiet $force
        check '[ ! -e models/a/sub ]' "$cmd models/a/sub $force: created"
        refused "$cmd link $force" "'link' is the input '(\./)?models/a'" "${c[@]}" link --quiet $force
        check '[ -L link ]' "$cmd link $force: link replaced"
    done
done
refused "run: OUT holds the .crb" "'progs' contains the input 'progs/r.crb'" "$bin" run progs/r.crb progs --quiet --force
refused "merge: OUT holds the recipe" "'recipes' contains the input 'recipes/r.yml'" "$bin" merge recipes/r.yml recipes --quiet --force
refused "merge: OUT holds the lua: method" "'methods' contains the input '.*methods/avg.lua'" \
    "$bin" merge recipes/lua.yml methods --quiet --force --models-dir .

# an input reached through a symlink that points into OUT
mkdir zone && cp -r models/b zone/m && ln -s zone/m lnk
sed 's#models/b#lnk#' r.yml >rl.yml
sed 's#models/c#lnk#' moe.yml >ml.yml
"$bin" compile rl.yml -o rl.crb >/dev/null 2>&1
zsum=$(find zone -type f | sort | xargs cksum)
refused "merge: input symlink into OUT" "'zone' contains the input '(\./)?lnk" "$bin" merge rl.yml zone --quiet --force
refused "moe: input symlink into OUT" "'zone' contains the input '.*lnk" "$bin" moe ml.yml zone --quiet --force
refused "run: input symlink into OUT" "'zone' contains the input '.*lnk" "$bin" run rl.crb zone --quiet --force
check '[ "$(find zone -type f | sort | xargs cksum)" = "$zsum" ]' "zone changed"

# a sibling output is fine, for each command
for cmd in merge moe run; do
    case $cmd in
        merge) "$bin" merge r.yml "o_$cmd" --quiet 2>err.txt ;;
        moe) "$bin" moe moe.yml "o_$cmd" --quiet 2>err.txt ;;
        run) "$bin" run progs/r.crb "o_$cmd" --quiet 2>err.txt ;;
    esac
    rc=$?
    check '[ $rc -eq 0 ] && [ -f "o_$cmd/config.json" ]' "$cmd into a sibling: $(cat err.txt)"
done

# ---- stale temporaries -----------------------------------------------------
# a real SIGKILL while the VM writes (big enough to be caught in the act)
mid=(--arch llama --layers 4 --hidden 512 --intermediate 1408 --heads 8 --kv-heads 2 --vocab 24000 --dtype bfloat16)
"$bin" synth big1 "${mid[@]}" --seed 1 >/dev/null 2>&1
"$bin" synth big2 --from big1 --delta-scale 0.1 --seed 2 >/dev/null 2>&1
printf 'merge_method: linear\nmodels:\n  - model: big1\n    parameters: {weight: 0.5}\n  - model: big2\n    parameters: {weight: 0.5}\ndtype: bfloat16\n' >big.yml
"$bin" merge big.yml bigout --quiet 2>/dev/null &
pid=$!
i=0
while [ $i -lt 3000 ] && kill -0 $pid 2>/dev/null && [ ! -d "bigout.crucible-tmp-$pid" ]; do sleep 0.01; i=$((i + 1)); done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
if [ -d "bigout.crucible-tmp-$pid" ]; then
    ok
    check '[ -L "bigout.crucible-owner-$pid" ] || [ -f "bigout.crucible-owner-$pid" ]' "SIGKILL: no owner record"
    "$bin" merge big.yml bigout --quiet 2>err.txt
    rc=$?
    check '[ $rc -eq 0 ]' "run after SIGKILL: rc $rc: $(cat err.txt)"
    check 'grep -q "removed bigout.crucible-tmp-$pid, left by crucible process $pid" err.txt' "not reported: $(cat err.txt)"
    check '[ ! -e "bigout.crucible-tmp-$pid" ] && [ ! -e "bigout.crucible-owner-$pid" ]' "SIGKILL leftovers kept"
else
    bad "SIGKILL: the merge finished before the signal (machine too fast for this model size?)"
fi
rm -rf big1 big2 bigout

# a live process's temporary is kept, even when its pid's directory looks stale
sleep 600 &
live=$!
start=$(awk '{print $22}' "/proc/$live/stat" 2>/dev/null || echo 0)
mkdir "o2.crucible-tmp-$live" && ln -s "crucible-owner $live $start -" "o2.crucible-owner-$live"
# a dead process's directory without a record: not provably crucible's
sh -c 'exit 0' &
dead=$!
wait $dead
mkdir "o2.crucible-tmp-$dead"
echo mine >"o2.crucible-tmp-$dead/file"
"$bin" merge r.yml o2 --quiet 2>err.txt
rc=$?
check '[ $rc -eq 0 ]' "merge o2: $(cat err.txt)"
check '[ -d "o2.crucible-tmp-$live" ] && [ -L "o2.crucible-owner-$live" ]' "a live process's temporary was removed"
check '[ -f "o2.crucible-tmp-$dead/file" ]' "a directory without a record was removed"
check 'grep -q "o2.crucible-tmp-$dead alone" err.txt' "the unproven directory not reported: $(cat err.txt)"
kill $live 2>/dev/null
wait $live 2>/dev/null
rm -rf "o2.crucible-tmp-$live" "o2.crucible-owner-$live" "o2.crucible-tmp-$dead"

# verify finishes a two-rename replace killed between its renames
# (OUT moved aside, the complete new directory not yet in place)
sh -c 'exit 0' &
gone=$!
wait $gone
mv o_merge "o_merge.crucible-old-$gone"
cp -r o_run "o_merge.crucible-tmp-$gone"
ln -s "crucible-owner $gone 0 -" "o_merge.crucible-owner-$gone"
"$bin" verify o_merge >out.txt 2>err.txt
rc=$?
check '[ $rc -eq 0 ] && cmp -s o_merge/model.safetensors o_run/model.safetensors' "verify after an interrupted replace: $(cat err.txt)"
check 'grep -q "completed the replace that process $gone was killed in" err.txt' "recovery not reported: $(cat err.txt)"
check '[ -z "$(ls -d o_merge.crucible-* 2>/dev/null)" ]' "leftovers after recovery: $(ls -d o_merge.crucible-* 2>/dev/null)"

# ---- compile -o, and bad OUT_DIR names ------------------------------------
crb_sum=$(cksum <progs/r.crb)
"$bin" compile r.yml -o progs/r.crb 2>err.txt
rc=$?
check '[ $rc -eq 1 ] && grep -q "progs/r.crb exists (use --force" err.txt' "compile over an existing .crb: $(cat err.txt)"
check '[ "$(cksum <progs/r.crb)" = "$crb_sum" ]' "existing .crb changed"
check '"$bin" compile r.yml -o progs/r.crb --force 2>/dev/null' "compile --force"
check '[ -z "$(ls progs | grep crucible-tmp)" ]' "compile left a temporary"
"$bin" compile r.yml -o r.yml --force 2>err.txt
rc=$?
check '[ $rc -eq 1 ] && grep -q "output file .r.yml. is the input .r.yml." err.txt' "compile -o the recipe: $(cat err.txt)"
"$bin" compile r.yml -o models/a/x.crb 2>err.txt
rc=$?
check '[ $rc -eq 1 ] && grep -q "inside the input model directory" err.txt && [ ! -e models/a/x.crb ]' "compile -o into a model: $(cat err.txt)"
check '[ "$(sums)" = "$before" ]' "inputs changed (compile is deterministic)"

for cmd in merge moe run; do
    case $cmd in
        merge) c=("$bin" merge r.yml) ;;
        moe) c=("$bin" moe moe.yml) ;;
        run) c=("$bin" run progs/r.crb) ;;
    esac
    "${c[@]}" "" --quiet 2>err.txt
    rc=$?
    check '[ $rc -eq 1 ] && grep -q "output directory name is empty" err.txt' "$cmd \"\": $(cat err.txt)"
    ln -sfn nowhere dangling
    "${c[@]}" dangling --quiet 2>err.txt
    rc=$?
    check '[ $rc -eq 1 ] && grep -q "dangling is a symbolic link to nothing" err.txt' "$cmd dangling: $(cat err.txt)"
    mkdir -p "empty_$cmd" && ln -sfn "empty_$cmd" "elink_$cmd"
    "${c[@]}" "elink_$cmd" --quiet 2>err.txt
    rc=$?
    check '[ $rc -eq 0 ] && [ -L "elink_$cmd" ] && [ -f "empty_$cmd/config.json" ]' "$cmd through a link to an empty dir: $(cat err.txt)"
done
if [ "$(id -u)" != 0 ]; then
    mkdir ro && chmod 555 ro
    "$bin" merge r.yml ro/out --quiet 2>err.txt
    rc=$?
    check '[ $rc -eq 1 ] && grep -q "cannot create output directory ro/out" err.txt' "read-only parent: $(cat err.txt)"
    chmod 755 ro
fi
check '[ -z "$(find . -name "*crucible-*" 2>/dev/null)" ]' "left at the end: $(find . -name "*crucible-*")"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
