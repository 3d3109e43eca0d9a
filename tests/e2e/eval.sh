#!/usr/bin/env bash
# eval.sh — `crucible eval` on the tiny transformers-built models in
# tests/fixtures/forward/: the perplexity printed must match the one
# transformers computed (expected.json) to 0.1%, and bad invocations fail
# with a message and a non-zero status.
# usage: tests/e2e/eval.sh CRUCIBLE_BIN
set -u
bin=$1
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }

for m in llama qwen2; do
    d=tests/fixtures/forward/$m
    out=$("$bin" eval "$d" --text "$d/text.txt" --threads 2 2>&1)
    rc=$?
    [ $rc -eq 0 ] && ok || bad "$m: exit $rc: $out"
    got=$(printf '%s\n' "$out" | sed -n 's/^perplexity: //p')
    want=$(sed -n 's/.*"perplexity": \([0-9.e+-]*\).*/\1/p' "$d/expected.json")
    tokens=$(sed -n 's/.*"tokens": \([0-9]*\).*/\1/p' "$d/expected.json")
    if awk -v g="$got" -v w="$want" 'BEGIN { d = g - w; if (d < 0) d = -d; exit !(g != "" && d <= 1e-3 * w) }'; then ok
    else bad "$m: perplexity '$got' vs transformers $want"; fi
    printf '%s\n' "$out" | grep -q "^tokens: $tokens$" && ok || bad "$m: token count (want $tokens): $out"
    # windows of 16 tokens: still a finite perplexity, more windows
    out=$("$bin" eval "$d" --text "$d/text.txt" --max-tokens 16 2>&1)
    printf '%s\n' "$out" | grep -q "^windows: [0-9]* of up to 16 tokens" && ok || bad "$m: windows: $out"
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
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

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
