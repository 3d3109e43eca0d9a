#!/usr/bin/env bash
# diagnostics.sh — bad merge parameters and bad values reach the user as
# diagnostics, not as a model of NaN or an internal message
# (spec/reliability.md §8.5):
#  - .nan / .inf / 1e400 as weight, t, density or a gradient entry: exit 2
#    at plan time naming file:line:col and the YAML path, no output;
#  - the same from a Lua recipe's parameters (0/0) and a NaN number entering
#    a Lua method's graph: exit 2 naming the script's file:line;
#  - linear with weights summing to 0 (kept from mergekit): exit 0 and ONE
#    warning line for the whole model, not one per tensor;
#  - a U8 input tensor with `dtype: float32`: exit 2 naming model, tensor
#    and dtype (was "code 1 (load) in kernel 0" at run time);
#  - topk_mask with k above the tensor's size: exit 2 naming the method's
#    line (constant k) or exit 1 naming the tensor (k known at run time);
#  - --threads (and the other value options) with no value, 0, abc, -1 or a
#    huge number, for merge, plan, run, eval and moe: exit 2 naming the option.
# usage: tests/e2e/diagnostics.sh CRUCIBLE_BIN
. "$(dirname "$0")/../support/e2e_lib.sh" diagnostics "$1"
bin=$(realpath "$bin")
cd "$tmp" || exit 1

small=(--arch llama --layers 2 --hidden 32 --intermediate 64 --heads 4 --kv-heads 2 --vocab 64 --dtype bfloat16)
"$bin" synth a "${small[@]}" --seed 1 >/dev/null 2>&1 || bad "synth a"
"$bin" synth b --from a --delta-scale 0.1 --seed 2 >/dev/null 2>&1 || bad "synth b"

# expect NAME RC PATTERN CMD...: exit status RC, stderr matches PATTERN
# (grep -E), no output directory "out" or temporary directory left
expect() {
    local name=$1 want=$2 pat=$3; shift 3
    rm -rf out
    "$@" >stdout.txt 2>err.txt
    local rc=$?
    if [ "$rc" -ne "$want" ]; then bad "$name: exit $rc, expected $want: $(head -c 600 err.txt)"; return; fi
    if ! grep -Eq -- "$pat" err.txt; then bad "$name: message does not match '$pat': $(head -c 600 err.txt)"; return; fi
    if [ -e out ] || [ -n "$(ls -d ./*crucible-tmp* 2>/dev/null)" ]; then bad "$name: output left behind"; return; fi
    ok
}

# ---- non-finite parameters in YAML ---------------------------------------
lin() {  # lin WEIGHT_A WEIGHT_B: a linear recipe
    printf 'models:\n  - model: a\n    parameters: {weight: %s}\n  - model: b\n    parameters: {weight: %s}\nmerge_method: linear\n' "$1" "$2" >r.yml
}
lin .nan 0.5
expect "weight .nan" 2 'r\.yml:3:26: error: models\[0\]\.parameters\.weight: .*not a finite number' "$bin" merge r.yml out --quiet
lin 0.5 .inf
expect "weight .inf" 2 'r\.yml:5:26: error: models\[1\]\.parameters\.weight: .*not a finite number' "$bin" merge r.yml out --quiet
lin 1e400 0.5
expect "weight 1e400" 2 "r\.yml:3:26: error: models\[0\]\.parameters\.weight: '1e400' is not a finite number" "$bin" merge r.yml out --quiet
expect "plan: weight 1e400" 2 "r\.yml:3:26: .*'1e400' is not a finite number" "$bin" plan r.yml
cat >slerp.yml <<'Y'
merge_method: slerp
base_model: a
models:
  - model: a
  - model: b
parameters:
  t: [0, .nan, 1]
Y
expect "t gradient [0, .nan, 1]" 2 'slerp\.yml:7:10: error: parameters\.t\[1\]: .*not a finite number' "$bin" merge slerp.yml out --quiet
sed -i 's/t: \[0, .nan, 1\]/t: .inf/' slerp.yml
expect "t .inf" 2 'slerp\.yml:7:6: error: parameters\.t: .*not a finite number' "$bin" merge slerp.yml out --quiet
cat >ties.yml <<'Y'
merge_method: ties
base_model: a
models:
  - model: b
    parameters: {weight: 1, density: -.inf}
Y
expect "density -.inf" 2 'ties\.yml:5:38: error: models\[0\]\.parameters\.density: .*not a finite number' "$bin" merge ties.yml out --quiet

# ---- non-finite parameters from Lua ----------------------------------------
cat >r.lua <<'L'
local a, b = crucible.model("a"), crucible.model("b")
for _, t in ipairs(a.tensors) do
  crucible.merge{ name = t.name, method = "linear",
                  inputs = { {a, t.name, params = {weight = 0/0}}, {b, t.name, params = {weight = 1}} } }
end
L
expect "Lua recipe weight 0/0" 2 "r\.lua:3: .*parameter 'weight' is -?nan; merge parameters must be finite" "$bin" merge r.lua out --quiet
mkdir -p methods
cat >methods/nanscale.lua <<'L'
return {
  name = "nanscale",
  inputs = { min = 1 },
  merge = function(ctx)
    local zero = 0
    return ctx.inputs[1] * (zero / zero)
  end,
}
L
printf 'models:\n  - model: a\nmerge_method: nanscale\n' >m.yml
expect "Lua method 0/0 operand" 2 'nanscale\.lua:6: a NaN number' "$bin" merge m.yml out --methods methods --quiet

# ---- linear with weights summing to zero: one warning --------------------
lin 1 -1
rm -rf zero
"$bin" merge r.yml zero --quiet 2>err.txt; rc=$?
check '[ $rc -eq 0 ]' "sum of weights 0: exit $rc (mergekit's behaviour is kept)"
n=$(grep -c 'NaN or Inf' err.txt)
check '[ "$n" -eq 1 ]' "sum of weights 0: $n NaN/Inf warning lines, expected 1: $(head -c 800 err.txt)"
check 'grep -Eq "warning: [0-9]+ of [0-9]+ output tensors contain NaN or Inf \(the inputs have none" err.txt' "sum of weights 0: summary line: $(cat err.txt)"

# ---- integer input tensors -------------------------------------------------
# a copy of a whose lm_head is U8, the header keeping its length: "BF16"
# -> "U8" plus a space, [64,32] -> [128,32] (4096 bytes of BF16 or of U8)
cp -r a u8
f=u8/model.safetensors
hl=$(st_header_len "$f")
head -c 8 "$f" >u8.st
# (through $(...), which drops the newline sed adds to the unterminated header)
printf '%s' "$(dd if="$f" bs=1 skip=8 count="$hl" status=none |
    sed 's/"lm_head.weight":{"dtype":"BF16","shape":\[64,32\]/"lm_head.weight":{"dtype":"U8", "shape":[128,32]/')" >>u8.st
tail -c +$((9 + hl)) "$f" >>u8.st
mv u8.st "$f"
check '"$bin" inspect u8 | grep -Eq "lm_head.weight +U8"' "fixture: lm_head of u8 is U8: $("$bin" inspect u8 2>&1 | head -3)"
printf 'models:\n  - model: b\n    parameters: {weight: 0.5}\n  - model: u8\n    parameters: {weight: 0.5}\nmerge_method: linear\ndtype: float32\n' >u8.yml
expect "U8 input, dtype float32" 2 "u8\.yml:4:5: error: models\[1\]: tensor 'lm_head\.weight' of model 'u8' is U8" "$bin" merge u8.yml out --quiet
expect "U8 input: plan" 2 "tensor 'lm_head\.weight' of model 'u8' is U8" "$bin" plan u8.yml
printf 'models:\n  - model: u8\nmerge_method: passthrough\n' >u8p.yml
expect "U8 input, passthrough" 2 "tensor 'lm_head\.weight' of model 'u8' is U8" "$bin" merge u8p.yml out --quiet
printf 'base_model: u8\ngate_mode: random\nexperts:\n  - source_model: a\n  - source_model: b\n' >u8moe.yml
expect "U8 input, moe" 2 "lm_head\.weight: tensor lm_head\.weight of u8 is U8" "$bin" moe u8moe.yml out --quiet
printf 'base_model: a\ngate_mode: random\nexperts:\n  - source_model: a\n  - source_model: b\n    noise_scale: .nan\n' >nanmoe.yml
expect "moe noise_scale .nan" 2 "nanmoe\.yml:6:18: .*expected a finite number, got '\.nan'" "$bin" moe nanmoe.yml out --quiet

# ---- top-k with k out of range -------------------------------------------
cat >methods/bigk.lua <<'L'
return {
  name = "bigk",
  inputs = { min = 1 },
  merge = function(ctx)
    local x = ctx.inputs[1]
    return cr.where(cr.topk_mask(x, 2^62), x, 0)
  end,
}
L
cat >methods/bigk_rt.lua <<'L'
return {
  name = "bigk_rt",
  inputs = { min = 1 },
  merge = function(ctx)
    local x = ctx.inputs[1]
    return cr.where(cr.topk_mask(x, x:norm() * 0 + 2^62), x, 0)
  end,
}
L
printf 'models:\n  - model: a\nmerge_method: bigk\n' >k.yml
expect "topk_mask k = 2^62 (constant)" 2 'bigk\.lua:6: topk_mask: k = .* is more than the [0-9]+ elements of tensor ' "$bin" merge k.yml out --methods methods --quiet
printf 'models:\n  - model: a\nmerge_method: bigk_rt\n' >k.yml
expect "topk_mask k = 2^62 (run time)" 1 'output tensor [a-z_.0-9]+: a top-k selection .* got k = ' "$bin" merge k.yml out --methods methods --quiet
check '! grep -q "selection [0-9]" err.txt' "run-time k: still an internal message: $(cat err.txt)"

# ---- option values -----------------------------------------------------------
lin 0.5 0.5
"$bin" compile r.yml -o r.crb >/dev/null 2>&1 || bad "compile r.yml"
printf 'hello world\n' >text.txt
for v in MISSING 0 abc -1 99999999999999999999 1025; do
    for c in merge plan run eval moe; do
        case $c in
        merge) cmd=("$bin" merge r.yml out) ;;
        plan) cmd=("$bin" plan r.yml) ;;
        run) cmd=("$bin" run r.crb out) ;;
        eval) cmd=("$bin" eval a --text text.txt) ;;
        moe) cmd=("$bin" moe moe.yml out) ;;
        esac
        if [ "$v" = MISSING ]; then
            expect "$c --threads (no value)" 2 "crucible $c: --threads needs a value \(a number of threads\)" "${cmd[@]}" --threads
            expect "$c --threads --quiet" 2 "crucible $c: --threads needs a value" "${cmd[@]}" --threads --quiet
        else
            expect "$c --threads $v" 2 "crucible $c: --threads wants a whole number of threads from 1 to [0-9]+.*got '$v'" "${cmd[@]}" --threads "$v"
        fi
    done
done
expect "merge --threads=abc" 2 "crucible merge: --threads wants .* got 'abc'" "$bin" merge r.yml out --threads=abc
expect "merge --max-memory (no value)" 2 "crucible merge: --max-memory needs a value \(a size such as 8G\)" "$bin" merge r.yml out --max-memory
expect "run --max-memory (no value)" 2 "crucible run: --max-memory needs a value" "$bin" run r.crb out --max-memory
expect "merge --models-dir (no value)" 2 "crucible merge: --models-dir needs a value \(a directory\)" "$bin" merge r.yml out --models-dir
expect "eval --text (no value)" 2 "crucible eval: --text needs a value" "$bin" eval a --text
expect "moe --device (no value)" 2 "crucible moe: --device needs a value" "$bin" moe moe.yml out --device
expect "merge --random-seed -1" 2 "crucible merge: --random-seed wants an integer, got '-1'" "$bin" merge r.yml out --random-seed -1
"$bin" merge r.yml good --threads 2 --quiet 2>err.txt
check '[ -f good/model.safetensors ]' "merge --threads 2 works: $(cat err.txt)"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
