#!/usr/bin/env bash
# run.sh — runs every test binary given and every end-to-end script in
# tests/e2e/ (each given the crucible binary), adds up their
# "N passed, M failed" lines and prints the total as the last line.
# usage: tests/run.sh CRUCIBLE_BIN TEST_BIN...
set -u
bin=$(realpath "$1"); shift
export CRUCIBLE_BIN="$bin"   # tests/unit/test_golden.c runs `crucible merge`
total_pass=0
total_fail=0
crashed=()
run_one() {
    local name=$1; shift
    local out rc line p f
    out=$("$@" 2>&1)
    rc=$?
    line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n 1)
    if [ -z "$line" ] || [ $rc -ne 0 ]; then
        printf '%s\n' "$out" | tail -n 40
    fi
    if [ -z "$line" ]; then
        crashed+=("$name (exit $rc, no summary)")
        return
    fi
    p=${line%% passed*}
    f=${line#*passed, }; f=${f%% failed*}
    total_pass=$((total_pass + p))
    total_fail=$((total_fail + f))
    if [ $rc -ne 0 ] && [ "$f" = 0 ]; then crashed+=("$name (exit $rc)"); fi
    printf '%-32s %s\n' "$name" "$line"
}
for t in "$@"; do
    run_one "$(basename "$t")" "$t"
done
for s in tests/e2e/*.sh; do
    [ -f "$s" ] || continue
    [ "${CRUCIBLE_NO_E2E:-}" = 1 ] && break   # tools/sanitize.sh thread
    run_one "e2e/$(basename "$s")" bash "$s" "$bin"
done
if [ ${#crashed[@]} -gt 0 ]; then
    printf 'crashed: %s\n' "${crashed[@]}"
    total_fail=$((total_fail + ${#crashed[@]}))
fi
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
