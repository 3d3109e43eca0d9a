#!/usr/bin/env bash
# eval.sh — `crucible eval` on the tiny transformers-built models in
# tests/fixtures/forward/: the perplexity must equal transformers' to 1e-4
# relative for every case of eval_expected.tsv (tests/compat/check_eval.py:
# special tokens as tokenizer(text) adds them or none, sliding windows with
# a stride as the Hugging Face guide, a tokenizer_config.json whose
# add_bos_token transformers 5 ignores; Mixtral, Qwen2-MoE and Qwen3-MoE
# models transformers saved, and MoE models `crucible moe` writes), on every
# ISA this CPU has, with
# --json and the text report; several files; bad invocations fail with a
# message and a non-zero status.
# usage: tests/e2e/eval.sh CRUCIBLE_BIN
set -u
bin=$1
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# close G W: |G - W| <= 1e-4 * W
close() { awk -v g="$1" -v w="$2" 'BEGIN { d = g - w; if (d < 0) d = -d; exit !(g != "" && d <= 1e-4 * w) }'; }
# the "total" object's FIELD of eval --json output
jtotal() { printf '%s\n' "$1" | sed -n '/"total"/,$p' | sed -n "s/.*\"$2\":[[:space:]]*\([0-9.e+-]*\).*/\1/p" | head -1; }

isas="scalar"
for i in avx2 avx512; do
    CRUCIBLE_ISA=$i "$bin" eval tests/fixtures/forward/qwen2 --text tests/fixtures/forward/qwen2/text.txt \
        --max-tokens 4 >/dev/null 2>&1 && isas="$isas $i"
done
# the MoE models `crucible moe` writes (Mixtral fused and classic, Qwen2-MoE
# with a shared expert), as check_eval.py made them for transformers
bash tests/fixtures/forward/make_moe_outputs.sh "$bin" "$tmp/moe" >"$tmp/moe.log" 2>&1 && ok ||
    bad "make_moe_outputs.sh: $(cat "$tmp/moe.log")"
n=0
while IFS=$'\t' read -r model cfg special max stride tokens ppl; do
    case $model in '#'*|'') continue ;; esac
    n=$((n + 1))
    case $model in
    crucible:*) d=$tmp/moe/${model#crucible:} ;;
    *) d=tests/fixtures/forward/$model ;;
    esac
    if [ "$cfg" != - ]; then
        mkdir -p "$tmp/c$n"; cp "$d"/* "$tmp/c$n/"; printf '%s' "$cfg" > "$tmp/c$n/tokenizer_config.json"; d=$tmp/c$n
    fi
    args=(--text "$d/text.txt")
    [ "$special" = 0 ] && args+=(--no-bos)
    [ "$max" != - ] && args+=(--max-tokens "$max")
    [ "$stride" != - ] && args+=(--stride "$stride")
    for isa in $isas; do
        what="case $n ($model cfg=$cfg special=$special max=$max stride=$stride, $isa)"
        out=$(CRUCIBLE_ISA=$isa "$bin" eval "$d" "${args[@]}" --json --threads 2 2>&1); rc=$?
        [ $rc -eq 0 ] && ok || bad "$what: exit $rc: $out"
        got=$(jtotal "$out" perplexity)
        close "$got" "$ppl" && ok || bad "$what: perplexity '$got' vs transformers $ppl"
        [ "$(jtotal "$out" tokens)" = "$tokens" ] && ok || bad "$what: tokens (want $tokens): $out"
    done
done < tests/fixtures/forward/eval_expected.tsv
[ $n -ge 21 ] && ok || bad "only $n cases in eval_expected.tsv"

# the text report: the same numbers, tokens/s, the windows
d=tests/fixtures/forward/llama
out=$("$bin" eval "$d" --text "$d/text.txt" --max-tokens 16 --stride 5 --threads 1 2>&1)
want=$(awk -F'\t' '$1 == "llama" && $2 == "-" && $3 == 1 && $4 == 16 && $5 == 5 { print $7 }' tests/fixtures/forward/eval_expected.tsv)
close "$(printf '%s\n' "$out" | sed -n 's/^perplexity: //p')" "$want" && ok || bad "text report perplexity: $out"
printf '%s\n' "$out" | grep -q "^windows: 9 of up to 16 tokens, stride 5$" && ok || bad "windows line: $out"
printf '%s\n' "$out" | grep -q "^tokens: 54$" && ok || bad "tokens line: $out"
printf '%s\n' "$out" | grep -Eq "^time: [0-9.]+ s, [0-9.]+ tokens/s$" && ok || bad "time line: $out"

# several files: each scored alone, in order, and a total over all
cp "$d/text.txt" "$tmp/a.txt"
out=$("$bin" eval "$d" --text "$d/text.txt" --text tests/fixtures/forward/qwen2/text.txt --json 2>&1); rc=$?
[ $rc -eq 0 ] && ok || bad "two files: exit $rc: $out"
[ "$(printf '%s\n' "$out" | grep -c '"file":')" = 2 ] && ok || bad "two files: two results: $out"
[ "$(jtotal "$out" tokens)" = 108 ] && ok || bad "two files: total tokens 54 + 54: $out"
out1=$("$bin" eval "$d" --text "$d/text.txt" --text "$tmp/a.txt" 2>&1)
[ "$(printf '%s\n' "$out1" | grep -c '^perplexity: ')" = 2 ] && ok || bad "two files, text: $out1"
p1=$(printf '%s\n' "$out1" | sed -n 's/^perplexity: //p' | sort -u | wc -l)
[ "$p1" = 1 ] && ok || bad "the same text twice gives two perplexities: $out1"
printf '%s\n' "$out1" | grep -q "^total: 108 tokens in 2 files" && ok || bad "total line: $out1"

# the results do not depend on the thread count (bit for bit)
o1=$("$bin" eval "$d" --text "$d/text.txt" --json --threads 1 | grep -E '"(mean_nll|perplexity)"')
o3=$("$bin" eval "$d" --text "$d/text.txt" --json --threads 3 | grep -E '"(mean_nll|perplexity)"')
[ -n "$o1" ] && [ "$o1" = "$o3" ] && ok || bad "1 vs 3 threads: $o1 / $o3"

out=$("$bin" eval tests/fixtures/forward/llama 2>&1); rc=$?
[ $rc -eq 2 ] && ok || bad "missing --text: exit $rc"
out=$("$bin" eval "$tmp/none" --text tests/fixtures/forward/llama/text.txt 2>&1); rc=$?
[ $rc -eq 1 ] && printf '%s' "$out" | grep -q "$tmp/none" && ok || bad "missing model dir: $rc $out"
out=$("$bin" eval tests/fixtures/forward/llama --text "$tmp/nothing.txt" 2>&1); rc=$?
[ $rc -eq 1 ] && printf '%s' "$out" | grep -q "nothing.txt" && ok || bad "missing text: $rc $out"
printf 'a\xffb' > "$tmp/bad.txt"
out=$("$bin" eval tests/fixtures/forward/llama --text "$tmp/bad.txt" 2>&1); rc=$?
[ $rc -eq 1 ] && printf '%s' "$out" | grep -q "UTF-8" && ok || bad "invalid UTF-8: $rc $out"
out=$("$bin" eval tests/fixtures/forward/llama --text tests/fixtures/forward/llama/text.txt --threads 0 2>&1); rc=$?
[ $rc -eq 2 ] && ok || bad "--threads 0: exit $rc"
out=$("$bin" eval tests/fixtures/forward/llama --text tests/fixtures/forward/llama/text.txt --max-tokens 8 --stride 9 2>&1); rc=$?
[ $rc -eq 2 ] && printf '%s' "$out" | grep -q -- "--stride 9" && ok || bad "--stride > --max-tokens: $rc $out"
out=$("$bin" eval tests/fixtures/forward/llama --text tests/fixtures/forward/llama/text.txt --stride 0 2>&1); rc=$?
[ $rc -eq 2 ] && ok || bad "--stride 0: exit $rc"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
