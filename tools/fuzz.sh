#!/usr/bin/env bash
# fuzz.sh — builds the libFuzzer targets in tests/fuzz/ with the system clang
# (libFuzzer + ASan + UBSan; same library sources and flags as
# tools/sanitize.sh) and runs one.
#
#   tools/fuzz.sh build [TARGET...]        build (default: every tests/fuzz/fuzz_*.c)
#   tools/fuzz.sh run TARGET SECONDS [LIBFUZZER_ARG...]
#                                          fuzz one target for SECONDS in one process (one core);
#                                          the working corpus is zig-out/fuzz/corpus/TARGET
#                                          (seeded from tests/fuzz/corpus/TARGET), crashes
#                                          land in zig-out/fuzz/artifacts/TARGET/
#   tools/fuzz.sh replay [TARGET...]       replay tests/fuzz/{corpus,crashes}/TARGET with
#                                          the target built against tests/fuzz/replay.c
#                                          (ASan+UBSan, no libFuzzer)
# `zig build test` replays the same inputs without clang (test_fuzz_replay).
set -eu
cd "$(dirname "$0")/.."
. tools/layers.sh
cc=${CC_FUZZ:-clang}
out=zig-out/fuzz
mode=${1:-build}; shift || true
common=(-std=c11 -Wall -Wextra -Wno-unused-parameter -D_GNU_SOURCE -ffp-contract=off
        -fno-strict-aliasing -g -O1 -fno-omit-frame-pointer)
tests_quotes=$(layer_quotes tests/)
libs=(-lyaml -llua5.4 -lcjson -lm -lpthread)

all_targets() { for f in tests/fuzz/fuzz_*.c; do basename "$f" .c; done; }

# library objects for one flavour ("fuzz": libFuzzer instrumentation, "replay": none)
build_lib() {
    local flavour=$1 san=$2
    local obj=$out/obj-$flavour
    mkdir -p "$obj"
    if [ ! -x "$out/embed" ] || [ tools/embed.c -nt "$out/embed" ]; then
        "$cc" -O1 tools/embed.c -o "$out/embed"
    fi
    local lua=()
    [ -d stdlib ] && mapfile -t lua < <(find stdlib -maxdepth 1 -name '*.lua' | sort)
    "$out/embed" "$out/stdlib_embed.c" ${lua[@]+"${lua[@]}"}
    mapfile -t lib_src < <(find "${layer_dirs[@]}" -name '*.c' 2>/dev/null | sort)
    lib_src+=("$out/stdlib_embed.c")
    mapfile -t sup < <(find tests/support -name '*.c' 2>/dev/null | sort)
    lib_objs=()
    for s in "${lib_src[@]}" "${sup[@]}"; do
        local o="$obj/$(echo "$s" | tr '/' '_').o"
        if [ ! -f "$o" ] || [ "$s" -nt "$o" ] || [ -n "$(find "${layer_dirs[@]}" tests/support -name '*.h' -newer "$o" 2>/dev/null | head -n 1)" ]; then
            "$cc" "${common[@]}" $(layer_quotes "$s") $san -c "$s" -o "$o"
        fi
        lib_objs+=("$o")
    done
}

build_targets() {
    build_lib fuzz "-fsanitize=fuzzer-no-link,address,undefined"
    for t in "$@"; do
        echo "fuzz.sh: building $out/$t"
        "$cc" "${common[@]}" $tests_quotes -fsanitize=fuzzer,address,undefined "tests/fuzz/$t.c" "${lib_objs[@]}" "${libs[@]}" -o "$out/$t"
    done
}

case $mode in
build)
    [ $# -gt 0 ] || set -- $(all_targets)
    build_targets "$@"
    ;;
run)
    t=${1:?usage: fuzz.sh run TARGET SECONDS}; secs=${2:?usage: fuzz.sh run TARGET SECONDS}; shift 2
    build_targets "$t"
    mkdir -p "$out/corpus/$t" "$out/artifacts/$t"
    [ -d "tests/fuzz/corpus/$t" ] && cp -n tests/fuzz/corpus/"$t"/* "$out/corpus/$t/" 2>/dev/null || true
    dict=()
    [ -f "tests/fuzz/$t.dict" ] && dict=(-dict="tests/fuzz/$t.dict")
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    exec "$out/$t" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$out/artifacts/$t/" ${dict[@]+"${dict[@]}"} "$@" \
        "$out/corpus/$t"
    ;;
replay)
    [ $# -gt 0 ] || set -- $(all_targets)
    build_lib replay "-fsanitize=address,undefined -fno-sanitize-recover=all"
    rc=0
    for t in "$@"; do
        "$cc" "${common[@]}" $tests_quotes -fsanitize=address,undefined -fno-sanitize-recover=all "tests/fuzz/$t.c" \
            tests/fuzz/replay.c "${lib_objs[@]}" "${libs[@]}" -o "$out/replay_$t"
        dirs=()
        for d in tests/fuzz/corpus/$t tests/fuzz/crashes/$t; do [ -d "$d" ] && dirs+=("$d"); done
        printf '%-20s ' "$t"
        "$out/replay_$t" ${dirs[@]+"${dirs[@]}"} || rc=1
    done
    exit $rc
    ;;
*)
    echo "usage: tools/fuzz.sh build|run|replay ..." >&2
    exit 2
    ;;
esac
