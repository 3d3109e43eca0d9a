#!/usr/bin/env bash
# sanitize.sh — builds crucible and its tests with the system clang and the
# given sanitisers, then runs the same test runner as `zig build test`.
# Zig's toolchain ships no ASan/TSan runtime, so `zig build test
# -Dsanitize=...` calls this script (Debian: clang, libclang-rt-14-dev).
# usage: tools/sanitize.sh address,undefined|thread EMBEDDED_STDLIB_C
# SAN_TESTS="test_a test_b" limits the unit tests built and run; with
# `thread` it defaults to the unit tests marked "/* tsan: ... */" (the
# multithreaded VM tests: test_interp, test_pool, test_kernels, test_faults)
# and the end-to-end scripts are skipped: ThreadSanitizer is for the VM's
# threads, and the rest costs minutes.
set -eu
. "$(dirname "$0")/layers.sh"
which=$1
embedded=$2
filter=${SAN_TESTS:-}
if [ "$which" = thread ]; then
    if [ -z "$filter" ]; then
        filter=$(grep -l '^/\* tsan: ' tests/unit/test_*.c | xargs -n1 basename | sed 's/\.c$//' | tr '\n' ' ')
    fi
    export CRUCIBLE_NO_E2E=1
fi
cc=${CC_SANITIZE:-clang}
out=zig-out/san-${which//,/-}
mkdir -p "$out/obj" "$out/tests" "$out/bin"
flags=(-std=c11 -Wall -Wextra -Wno-unused-parameter -D_GNU_SOURCE -ffp-contract=off
       -fno-strict-aliasing -g -O1 -fno-omit-frame-pointer -fsanitize="$which"
       -fno-sanitize-recover=all)
libs=(-lyaml -llua5.4 -lcjson -lm -lpthread)
mapfile -t lib_src < <(find "${layer_dirs[@]}" -name '*.c' 2>/dev/null | sort)
lib_src+=("$embedded")
objs=()
for s in "${lib_src[@]}"; do
    o="$out/obj/$(echo "$s" | tr '/' '_' | sed 's/^_*//').o"
    "$cc" "${flags[@]}" $(layer_quotes "$s") -c "$s" -o "$o"
    objs+=("$o")
done
mapfile -t cli_src < <(find cli -name '*.c' | sort)
"$cc" "${flags[@]}" $(layer_quotes cli/) "${cli_src[@]}" "${objs[@]}" "${libs[@]}" -o "$out/bin/crucible"
mapfile -t support < <(find tests/support -name '*.c' 2>/dev/null | sort)
for t in tests/unit/test_*.c; do
    [ -f "$t" ] || continue
    if [ -n "$filter" ] && [[ " $filter " != *" $(basename "$t" .c) "* ]]; then continue; fi
    "$cc" "${flags[@]}" $(layer_quotes tests/) "$t" "${support[@]}" "${objs[@]}" "${libs[@]}" -o "$out/tests/$(basename "$t" .c)"
done
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1}
export CRUCIBLE_SANITIZED=$which
run=()
for t in "$out"/tests/test_*; do
    if [ -n "$filter" ] && [[ " $filter " != *" $(basename "$t") "* ]]; then continue; fi
    run+=("$t")
done
exec bash tests/run.sh "$out/bin/crucible" "${run[@]}"
