#!/usr/bin/env bash
# layers.sh — the source folders are layers (spec/architecture.md "Folders
# are layers"), and the three builds agree on them:
#  - build.zig's per-folder -iquote lists (quote(&.{...})) equal
#    tools/layers.sh's, which tools/sanitize.sh and tools/fuzz.sh use;
#  - every quoted include of every source file resolves in its own folder
#    or a folder its layer may use (the check the compiler makes, here
#    without building);
#  - with a C compiler at hand: a header of a higher layer is not found
#    with a lower layer's flags (core/ including program.h), and is found
#    with its own.
# usage: tests/e2e/layers.sh CRUCIBLE_BIN   (from the repository root)
. "$(dirname "$0")/../support/e2e_lib.sh" layers "$1"
. tools/layers.sh

folders="core formats vm infer compiler cli tests"

# build.zig: `const vm_c = base_flags ++ quote(&.{ "core", "formats", "vm" });`
for f in $folders; do
    zig_dirs=$(sed -nE "s/^const ${f}_c = base_flags \+\+ quote\(&\.\{ *(.*)\}\);.*/\1/p" build.zig | tr -d '",' | xargs)
    sh_dirs=$(layer_quotes "$f/x.c" | sed 's/-iquote //g' | xargs)
    check '[ -n "$zig_dirs" ] && [ "$zig_dirs" = "$sh_dirs" ]' "$f: build.zig allows '$zig_dirs', tools/layers.sh '$sh_dirs'"
done
lib=$(sed -nE 's/^    \.\{ \.dir = "([a-z]+)", .*/\1/p' build.zig | xargs)
check '[ "$lib" = "${layer_dirs[*]}" ]' "library folders: build.zig '$lib', tools/layers.sh '${layer_dirs[*]}'"

# every include resolves within the layers its file may use
n=0
while IFS= read -r src; do
    dir=$(dirname "$src")
    allowed=$(layer_quotes "$src" | sed 's/-iquote //g')
    while IFS= read -r inc; do
        n=$((n + 1))
        [ -f "$dir/$inc" ] && continue
        found=
        for a in $allowed; do [ -f "$a/$inc" ] && found=$a && break; done
        if [ -z "$found" ]; then
            where=$(find core formats vm infer compiler cli tests -path "*/$inc" 2>/dev/null | head -n 1)
            bad "$src includes \"$inc\" ($where), outside the layers it may use: $allowed"
        fi
    done < <(sed -nE 's/^[[:space:]]*#[[:space:]]*include[[:space:]]+"([^"]+)".*/\1/p' "$src")
done < <(find $folders -name '*.[ch]' -o -name '*.def' | sort)
check '[ "$n" -gt 300 ]' "only $n includes found"

# the compiler sees the same: program.h is vm/'s, so core/ cannot have it
cc=$(command -v cc || command -v clang || command -v gcc || true)
if [ -n "$cc" ]; then
    printf '#include "program.h"\n' >"$tmp/probe.c"
    check '! "$cc" -fsyntax-only $(layer_quotes core/probe.c) "$tmp/probe.c" 2>/dev/null' "core/ flags find vm/program.h"
    check '"$cc" -fsyntax-only -D_GNU_SOURCE $(layer_quotes vm/probe.c) "$tmp/probe.c"' "vm/ flags do not find vm/program.h"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
