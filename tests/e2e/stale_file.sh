#!/usr/bin/env bash
# stale_file.sh — a single output file (convert's OUT.gguf, merge's
# OUT.gguf, compile's X.crb) is written as OUT.crucible-tmp-PID under an
# owner record OUT.crucible-owner-PID, as an output directory is (outdir.h);
# the next run for OUT removes what a killed run left, only when the record
# proves crucible made it and its process is gone.
# usage: tests/e2e/stale_file.sh CRUCIBLE_BIN
. "$(dirname "$0")/../support/e2e_lib.sh" stale_file "$1"

cd "$tmp" || exit 1
"$bin" synth base --arch llama --layers 1 --hidden 32 --intermediate 48 --heads 2 --kv-heads 1 --vocab 272 --seed 1
"$bin" synth ft --from base --delta-scale 0.1 --seed 2
printf 'merge_method: linear\nmodels:\n  - model: base\n    parameters: {weight: 0.5}\n  - model: ft\n    parameters: {weight: 0.5}\ndtype: bfloat16\n' >r.yml

# a pid that is certainly gone
sh -c 'exit 0' &
dead=$!
wait $dead
sleep 600 &
live=$!
start=$(awk '{print $22}' "/proc/$live/stat" 2>/dev/null || echo 0)
sh -c 'exit 0' &
norec=$!
wait $norec

# leftovers beside OUT: a killed run's (record, dead), a running one's (record,
# live), and one with no record (not provably crucible's)
plant() {
    echo partial >"$1.crucible-tmp-$dead" && ln -s "crucible-owner $dead 0 -" "$1.crucible-owner-$dead"
    echo partial >"$1.crucible-tmp-$live" && ln -s "crucible-owner $live $start -" "$1.crucible-owner-$live"
    echo mine >"$1.crucible-tmp-$norec"
}
verdict() {   # OUT WHAT (check evaluates its text later: no positional names in it)
    o=$1 w=$2
    check 'grep -q "removed $o.crucible-tmp-$dead, left by crucible process $dead" err.txt' "$w: stale temporary not reported: $(cat err.txt)"
    check '[ ! -e "$o.crucible-tmp-$dead" ] && [ ! -L "$o.crucible-owner-$dead" ]' "$w: a dead run's temporary or record kept"
    check '[ -f "$o.crucible-tmp-$live" ] && [ -L "$o.crucible-owner-$live" ]' "$w: a running process's temporary was removed"
    check '[ "$(cat "$o.crucible-tmp-$norec")" = mine ]' "$w: a temporary without a record was removed"
    check 'grep -q "$o.crucible-tmp-$norec alone" err.txt' "$w: the unproven temporary not reported: $(cat err.txt)"
    check '[ -z "$(ls | grep "^$o.crucible-owner-" | grep -v "[-]$live\$")" ]' "$w: owner record left: $(ls)"
    rm -f "$o.crucible-tmp-$live" "$o.crucible-owner-$live" "$o.crucible-tmp-$norec"
}

plant c.gguf
"$bin" convert base c.gguf --gguf-pre llama-bpe 2>err.txt
rc=$?
check '[ $rc -eq 0 ] && [ -f c.gguf ]' "convert: rc $rc: $(cat err.txt)"
verdict c.gguf convert

plant m.gguf
"$bin" merge r.yml m.gguf --gguf-pre llama-bpe --quiet 2>err.txt
rc=$?
check '[ $rc -eq 0 ] && [ -f m.gguf ]' "merge OUT.gguf: rc $rc: $(cat err.txt)"
verdict m.gguf "merge OUT.gguf"

plant r.crb
"$bin" compile r.yml -o r.crb 2>err.txt
rc=$?
check '[ $rc -eq 0 ] && [ -f r.crb ]' "compile -o: rc $rc: $(cat err.txt)"
verdict r.crb "compile -o"

# a failed run removes its own temporary and record
"$bin" convert base bad.gguf --gguf-pre nonesuch 2>/dev/null
"$bin" convert ft c.gguf --gguf-pre llama-bpe 2>/dev/null   # exists, no --force
check '[ -z "$(ls | grep crucible-)" ]' "leftovers after the runs: $(ls | grep crucible-)"

kill $live 2>/dev/null
wait $live 2>/dev/null
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
