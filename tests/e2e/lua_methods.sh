#!/usr/bin/env bash
# lua_methods.sh — user Lua methods and whole Lua recipes through the CLI:
# a Lua recipe meaning the same as a YAML linear merge gives identical
# tensors; plan / explain / compile / run on a .lua recipe; a user method by
# name with --methods; failing scripts exit 2 naming file:line and leave no
# output directory. (Element-wise checks of the example methods are in
# tests/unit/test_lua_methods.c.)
# usage: lua_methods.sh CRUCIBLE_BIN
set -u
bin=$(realpath "$1")
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
check() { if "$@"; then ok; else bad "$*"; fi; }

root=$(pwd)
dir=$(mktemp -d /tmp/crucible-luam-e2e-XXXXXX)
trap 'rm -rf "$dir"' EXIT
m=$dir/models
mkdir -p "$m"
"$bin" synth "$m/base" --arch llama --layers 2 --hidden 64 --intermediate 96 --heads 4 --kv-heads 2 \
    --vocab 128 --dtype bfloat16 --seed 1 >/dev/null || bad synth
"$bin" synth "$m/a" --from "$m/base" --delta-scale 0.02 --seed 2 >/dev/null || bad synth
"$bin" synth "$m/b" --from "$m/base" --delta-scale 0.02 --seed 3 >/dev/null || bad synth
"$bin" synth "$m/c" --from "$m/base" --delta-scale 0.02 --seed 4 >/dev/null || bad synth
cd "$dir" || exit 1

cat > lin.yml <<'Y'
models:
  - model: a
    parameters: {weight: 0.6}
  - model: b
    parameters: {weight: 0.4}
merge_method: linear
dtype: bfloat16
Y
cat > lin.lua <<'L'
local a, b = crucible.model("a"), crucible.model("b")
crucible.settings{ dtype = "bfloat16" }
for _, t in ipairs(a.tensors) do
  crucible.merge{ name = t.name, method = "linear",
                  inputs = { {a, t.name, params = {weight = 0.6}}, {b, t.name, params = {weight = 0.4}} } }
end
L
check "$bin" merge lin.yml o-yml --models-dir "$m" --quiet
check "$bin" merge lin.lua o-lua --models-dir "$m" --quiet
check "$bin" diff o-yml o-lua >/dev/null
check "$bin" plan lin.lua --models-dir "$m" >/dev/null
check "$bin" explain lin.lua --models-dir "$m" >/dev/null
# the same kernels as the YAML recipe
"$bin" explain lin.yml --models-dir "$m" | grep -E '^ +[0-9]+\.[0-9]+ ' | sort > k-yml.txt
"$bin" explain lin.lua --models-dir "$m" | grep -E '^ +[0-9]+\.[0-9]+ ' | sort > k-lua.txt
check test -s k-yml.txt
check cmp -s k-yml.txt k-lua.txt
check "$bin" compile lin.lua -o lin.crb --models-dir "$m"
check "$bin" run lin.crb o-run --models-dir "$m" --quiet
check "$bin" diff o-yml o-run >/dev/null

# the example recipes
check "$bin" merge "$root/examples/recipes/frankenmerge.lua" o-frank --models-dir "$m" --quiet
check grep -q '"num_hidden_layers": 4' o-frank/config.json
check "$bin" merge "$root/examples/recipes/median-of-three.lua" o-med --models-dir "$m" --quiet

# a user method by name from --methods DIR, and by lua:PATH
cat > med.yml <<'Y'
models:
  - model: a
  - model: b
  - model: c
merge_method: median
Y
check "$bin" merge med.yml o-med-name --models-dir "$m" --methods "$root/examples/methods" --quiet
"$bin" merge med.yml o-med-none --models-dir "$m" --quiet 2>/dev/null
check test $? -eq 2
check test ! -e o-med-none
check "$bin" diff o-med o-med-name >/dev/null

# failures: exit 2, file:line in the message, no output directory
fails() {  # name script-text expected-text
    printf '%s\n' "$2" > "$1.lua"
    "$bin" merge "$1.lua" "o-$1" --models-dir "$m" --quiet 2> "$1.err"
    local rc=$?
    if [ $rc -ne 2 ]; then bad "$1: exit $rc"; else ok; fi
    if grep -q "$3" "$1.err"; then ok; else bad "$1: no '$3' in: $(cat "$1.err")"; fi
    if [ -e "o-$1" ]; then bad "$1: output left"; else ok; fi
}
fails open 'local a = crucible.model("a")
local f = io.open("/etc/passwd")' 'open.lua:2'
fails exec 'local a = crucible.model("a")
os.execute("touch pwned")' 'exec.lua:2'
fails req 'local a = crucible.model("a")
require("io")' 'req.lua:2'
fails loop 'local a = crucible.model("a")
while true do end' 'instruction limit'
fails bomb 'local t = {}
for i = 1, 1e9 do t[i] = string.rep("z", 1000) .. i end' 'memory limit.*bomb.lua:2'
check test ! -e pwned

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
