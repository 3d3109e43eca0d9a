#!/usr/bin/env bash
# options.sh — the option table (cli/options.def) and the commands agree:
#  - every command's --help exits 0 and lists every option its rows give it
#    (read from cli/options.def, not from the binary), with a default where
#    the row has one;
#  - an unknown option is reported as unknown, naming it (exit 2), and an
#    option of another command is unknown too;
#  - `merge --help` documents every option of mergekit-yaml (its list, as
#    of mergekit's options.py, is below); the ones crucible ignores say so,
#    and ignoring them changes no byte of a merge; refused ones exit 2;
#  - the pass names in --help and in the --no-pass/--dump messages are the
#    compiler's (`explain --dump` of each listed pass works).
# usage: tests/e2e/options.sh CRUCIBLE_BIN   (from the repository root)
. "$(dirname "$0")/../support/e2e_lib.sh" options "$1"
bin=$(realpath "$bin")
def=$(realpath cli/options.def)
cd "$tmp" || exit 1

# the table's rows, one a line: NAMES <tab> COMMANDS <tab> DEFAULT
# (a row may span lines; it ends at the ")" that closes OPT)
awk '/^OPT\(/ { row = "" } /^OPT\(|^    / && row != "x" { row = row $0 } /\)$/ && row ~ /^OPT\(/ { print row; row = "x" }' "$def" |
    sed -E 's/^OPT\([A-Z0-9_]+, "([^"]*)", [01], (NULL|"[^"]*"), (NULL|"[^"]*"), [A-Z]+, *([^"]*), (NULL|"[^"]*"), .*$/\1\t\4\t\5/' >rows.txt
n_rows=$(wc -l <rows.txt)
check '[ "$n_rows" -ge 40 ] && ! grep -q "^OPT" rows.txt' "options.def parsed into $n_rows rows: $(grep '^OPT' rows.txt | head -2)"

cmd_bit() {   # the C_ names of the groups that include command $1
    case $1 in
    merge) echo "C_MERGE C_RECIPE C_ALL" ;; plan) echo "C_PLAN C_RECIPE C_ALL" ;;
    explain) echo "C_EXPLAIN C_RECIPE C_ALL" ;; compile) echo "C_COMPILE C_RECIPE C_ALL" ;;
    moe) echo "C_MOE C_RECIPE C_ALL" ;; *) echo "C_$(tr a-z A-Z <<<"$1") C_ALL" ;;
    esac
}

"$bin" --help >top.txt
for c in merge plan explain compile run moe synth inspect diff eval verify ops; do
    check 'grep -q "^  $c " top.txt' "crucible --help lacks $c"
    "$bin" "$c" --help >help.txt 2>err.txt; rc=$?
    check '[ $rc -eq 0 ] && [ ! -s err.txt ] && grep -q "^usage: crucible $c" help.txt' "$c --help: rc $rc $(head -2 err.txt help.txt)"
    missing=""
    n=0
    while IFS=$'\t' read -r names cmds dflt; do
        mine=0
        for g in $(cmd_bit "$c"); do grep -Eq "(^| )$g( |$)" <<<"${cmds//|/ }" && mine=1; done
        [ $mine = 1 ] || continue
        n=$((n + 1))
        IFS='|' read -ra alias <<<"$names"
        first=1
        for a in "${alias[@]}"; do
            # the first name of a --x/--no-x pair is listed as --[no-]x
            if [ $first = 1 ] && grep -q "\"$names\", 1," "$def"; then a="--[no-]${a#--}"; fi
            first=0
            grep -qF -- "$a" help.txt || missing="$missing $a"
        done
        if [ "$dflt" != NULL ]; then
            d=${dflt//\"/}
            grep -qF -- "[default: $d]" help.txt || missing="$missing (default of ${alias[0]}: $d)"
        fi
    done <rows.txt
    check '[ -z "$missing" ] && [ $n -ge 1 ]' "$c --help lacks:$missing"

    "$bin" "$c" --no-such-option >out.txt 2>err.txt; rc=$?
    check '[ $rc -eq 2 ] && grep -qF "crucible $c: unknown option '"'"'--no-such-option'"'"'" err.txt' \
        "$c --no-such-option: rc $rc: $(cat err.txt)"
done

# an option of another command is unknown here
"$bin" ops --threads 2 >out.txt 2>err.txt; rc=$?
check '[ $rc -eq 2 ] && grep -qF "crucible ops: unknown option '"'"'--threads'"'"'" err.txt' "ops --threads: rc $rc: $(cat err.txt)"
"$bin" verify x --max-memory 8G >out.txt 2>err.txt; rc=$?
check '[ $rc -eq 2 ] && grep -qF "unknown option '"'"'--max-memory'"'"'" err.txt' "verify --max-memory: rc $rc: $(cat err.txt)"
"$bin" inspect >out.txt 2>err.txt; rc=$?
check '[ $rc -eq 2 ] && grep -q "^usage: crucible inspect MODEL_DIR" err.txt' "inspect without MODEL_DIR: rc $rc: $(cat err.txt)"
"$bin" diff a b c >out.txt 2>err.txt; rc=$?
check '[ $rc -eq 2 ] && grep -qF "unexpected argument '"'"'c'"'"'" err.txt' "diff a b c: rc $rc: $(cat err.txt)"

# mergekit-yaml's options (mergekit/options.py, 0.1.5): all documented by merge --help
"$bin" merge --help >help.txt
for o in --allow-crimes --unsafe-truncate-embeddings --transformers-cache --lora-merge-cache --lora-merge-dtype --cuda --device --low-cpu-memory \
    --read-to-gpu --multi-gpu --gpu-rich --out-shard-size --copy-tokenizer --clone-tensors --trust-remote-code \
    --random-seed --lazy-unpickle --write-model-card --safe-serialization -v --quiet --num-threads -j --async-write \
    --write-threads; do
    check 'grep -Eq -- "(^  |, )(--\[no-\]${o#--}|$o)( |,|$)" help.txt' "merge --help lacks mergekit's $o"
done
check '[ "$(grep -c "(accepted; changes nothing here)" help.txt)" -ge 10 ]' "merge --help: no-op options say so"

# mergekit's no-op options change no byte; refused ones exit 2 before any work
small=(--arch llama --layers 1 --hidden 16 --intermediate 32 --heads 2 --kv-heads 1 --vocab 32)
"$bin" synth a "${small[@]}" --seed 1 >/dev/null 2>&1 && "$bin" synth b --from a --delta-scale 0.1 --seed 2 >/dev/null 2>&1
printf 'merge_method: linear\nmodels:\n  - model: a\n    parameters: {weight: 0.5}\n  - model: b\n    parameters: {weight: 0.5}\ndtype: bfloat16\n' >r.yml
"$bin" merge r.yml plain --quiet 2>err.txt
"$bin" merge r.yml noops --quiet --cuda --device cuda:0 --low-cpu-memory --read-to-gpu --multi-gpu --gpu-rich \
    --trust-remote-code --safe-serialization --async-write --write-threads 4 --lazy-unpickle --no-clone-tensors -v \
    -j 2 2>>err.txt
check 'cmp -s plain/model.safetensors noops/model.safetensors' "no-op options changed the merge: $(cat err.txt)"
# the same no-ops, -vv and --transformers-cache, identically for moe
"$bin" moe --help >help-moe.txt
for o in --allow-crimes --unsafe-truncate-embeddings --transformers-cache --cuda --device --low-cpu-memory \
    --read-to-gpu --multi-gpu --gpu-rich --out-shard-size --copy-tokenizer --clone-tensors --trust-remote-code \
    --random-seed --lazy-unpickle --write-model-card --safe-serialization -v --quiet --num-threads -j --async-write \
    --write-threads; do
    check 'grep -Eq -- "(^  |, )(--\[no-\]${o#--}|$o)( |,|$)" help-moe.txt' "moe --help lacks mergekit's $o"
done
"$bin" synth c --from a --delta-scale 0.1 --seed 3 >/dev/null 2>&1
printf 'base_model: a\ngate_mode: random\ndtype: bfloat16\nexperts:\n  - source_model: b\n    positive_prompts: ["x"]\n  - source_model: c\n    positive_prompts: ["y"]\n' >moe.yml
noops=(--cuda --device cuda:0 --low-cpu-memory --read-to-gpu --multi-gpu --gpu-rich --trust-remote-code
       --safe-serialization --async-write --write-threads 4 --lazy-unpickle --no-clone-tensors -v -vv -vvv --no-quiet
       --no-unsafe-truncate-embeddings --transformers-cache "$tmp/no-such-hub" --quiet)
"$bin" moe moe.yml moe-plain --quiet 2>err.txt
"$bin" moe moe.yml moe-noops "${noops[@]}" 2>>err.txt
check 'cmp -s moe-plain/model.safetensors moe-noops/model.safetensors' "moe: no-op options changed the output: $(cat err.txt)"
"$bin" merge r.yml noops2 "${noops[@]}" 2>err.txt
check 'cmp -s plain/model.safetensors noops2/model.safetensors' "merge -vv --no-quiet ...: $(cat err.txt)"
for c in merge moe; do
    "$bin" $c r.yml nss --no-safe-serialization >out.txt 2>err.txt; rc=$?
    check '[ $rc -eq 2 ] && [ ! -e nss ] && grep -q "crucible $c: --no-safe-serialization is not supported" err.txt' \
        "$c --no-safe-serialization: rc $rc: $(cat err.txt)"
done
# --transformers-cache DIR: the Hugging Face cache models are found in (as HF_HUB_CACHE)
mkdir -p tc/models--acme--a/snapshots/c0ffee tc/models--acme--a/refs && cp a/* tc/models--acme--a/snapshots/c0ffee/
printf c0ffee >tc/models--acme--a/refs/main
sed 's/model: a$/model: acme\/a/' r.yml >hub.yml
env -u HF_HUB_CACHE -u HF_HOME -u CRUCIBLE_MODELS HOME="$tmp/nohome" "$bin" merge hub.yml tcache --transformers-cache "$tmp/tc" --quiet 2>err.txt
check 'cmp -s plain/model.safetensors tcache/model.safetensors' "--transformers-cache: $(cat err.txt)"
env -u HF_HUB_CACHE -u HF_HOME -u CRUCIBLE_MODELS HOME="$tmp/nohome" "$bin" merge hub.yml tcache2 --quiet 2>err.txt; rc=$?
check '[ $rc -eq 2 ] && grep -qF "hf download acme/a" err.txt' "without --transformers-cache: rc $rc: $(cat err.txt)"

# --lora-merge-cache: accepted, nothing is written there (crucible applies adapters while merging)
"$bin" merge r.yml lcache --quiet --lora-merge-cache lc >out.txt 2>err.txt; rc=$?
check '[ $rc -eq 0 ] && [ ! -e lc ] && cmp -s plain/model.safetensors lcache/model.safetensors' \
    "--lora-merge-cache: rc $rc: $(cat err.txt)"

# the pass names come from the compiler: each one --help lists for --dump works
passes=$("$bin" explain --help | sed -nE 's/^  --dump PASS .*; pass: (.*)$/\1/p' | tr -d ',' | sed 's/ or / /')
check '[ -n "$passes" ]' "explain --help lists no passes for --dump"
for p in $passes; do
    "$bin" explain r.yml --dump="$p" >out.txt 2>err.txt; rc=$?
    check '[ $rc -eq 0 ] && [ -s out.txt ]' "explain --dump=$p: $(cat err.txt)"
done
"$bin" explain r.yml --no-pass=nope >out.txt 2>err.txt; rc=$?
check '[ $rc -eq 2 ] && grep -q "not a pass that can be switched off (fold, cse, dce" err.txt' "--no-pass=nope: $(cat err.txt)"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
