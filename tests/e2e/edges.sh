#!/usr/bin/env bash
# edges.sh — formats, names and sizes at their edges (spec/reliability.md
# §8.6): tensor and model names that carry terminal escapes reach inspect,
# diff, verify and plan escaped; an index that omits lm_head of an untied
# model is an error naming the index and the tensor (a tied one still falls
# back to the embedding); a recipe of exactly 16 MiB is read and one byte
# more is refused; an MoE prompt longer than the model's context is refused
# naming the expert and the prompt.
# usage: tests/e2e/edges.sh CRUCIBLE_BIN
. "$(dirname "$0")/../support/e2e_lib.sh" edges "$1"

cd "$tmp" || exit 1
ESC=$'\x1b'

# st FILE HEADER DATA_BYTES: a safetensors file (header padded with spaces)
st() {
    local h=$2
    while [ $((${#h} % 8)) -ne 0 ]; do h="$h "; done
    local n=${#h} len=""
    for i in 0 1 2 3 4 5 6 7; do len="$len$(printf '\\%03o' $(((n >> (8 * i)) & 255)))"; done
    { printf "$len"; printf '%s' "$h"; head -c "$3" /dev/zero; } >"$1"
}

# ---- names with escapes ------------------------------------------------------
mkdir -p esc plain
st esc/model.safetensors '{"x\u001b[31mRED":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"y\u009b2J":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}' 8
st plain/model.safetensors '{"y":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}' 4
"$bin" inspect esc >out 2>&1
rc=$?
check '[ $rc -eq 0 ] && ! grep -q "$ESC" out && grep -qF "x\\x1b[31mRED" out && grep -qF "y\\xc2\\x9b2J" out' \
    "inspect escapes names: rc $rc: $(od -c out | head -3)"
"$bin" diff esc plain >out 2>&1
check '! grep -q "$ESC" out && grep -qF "only in A   x\\x1b[31mRED" out' "diff escapes names: $(od -c out | head -3)"
# an error that names the tensor
mkdir -p esc_bad
st esc_bad/model.safetensors '{"x\u001b[31mRED":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}' 4
"$bin" inspect esc_bad >out 2>&1
rc=$?
check '[ $rc -eq 1 ] && ! grep -q "$ESC" out && grep -qF "tensor '"'"'x\\x1b[31mRED'"'"'" out' "error escapes names: rc $rc: $(cat out)"
# verify: an index naming the tensor in a shard that is not there
mkdir -p esc_idx
printf '{"metadata": {"total_size": 4}, "weight_map": {"x\\u001b[31mRED": "gone.safetensors"}}' \
    >esc_idx/model.safetensors.index.json
"$bin" verify esc_idx >out 2>&1
rc=$?
check '[ $rc -eq 1 ] && ! grep -q "$ESC" out' "verify escapes names: rc $rc: $(od -c out | head -3)"
# plan: a model reference from the recipe ("\e" is ESC in YAML)
printf 'merge_method: linear\nmodels:\n  - model: "m\\e[31m"\n    parameters: {weight: 1}\n' >esc.yml
"$bin" plan esc.yml >out 2>&1
rc=$?
check '[ $rc -eq 2 ] && ! grep -q "$ESC" out && grep -qF "m\\x1b[31m" out' "plan escapes names: rc $rc: $(cat out)"
# a raw NUL inside a header key is refused (it used to cut the name short)
mkdir -p nul
printf '\x40\0\0\0\0\0\0\0{"a\0b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}        \0\0\0\0' \
    >nul/model.safetensors
"$bin" inspect nul >out 2>&1
rc=$?
check '[ $rc -eq 1 ] && grep -q "nul/model.safetensors: raw control character U+0000 inside a JSON string at header byte 3" out' \
    "raw NUL in a name: rc $rc: $(cat out)"

# ---- an index that omits lm_head ---------------------------------------------
"$bin" synth m1 --arch llama --layers 2 --hidden 16 --intermediate 32 --heads 2 --kv-heads 1 --vocab 64 --seed 1 \
    --shard-size 8K >/dev/null 2>&1
"$bin" synth m2 --from m1 --delta-scale 0.1 --seed 2 >/dev/null 2>&1
check 'grep -q "\"lm_head.weight\": \"model-00001-of-00002.safetensors\"" m1/model.safetensors.index.json' \
    "synth: lm_head shares shard 1 with other tensors"
sed -i '/"lm_head.weight"/d' m1/model.safetensors.index.json
cat >lin.yml <<'YML'
merge_method: linear
models:
  - model: m1
    parameters: {weight: 0.5}
  - model: m2
    parameters: {weight: 0.5}
dtype: float32
YML
"$bin" merge lin.yml out_lin >out 2>&1
rc=$?
check '[ $rc -eq 2 ] && [ ! -e out_lin ] && grep -q "model '"'"'m1'"'"' has no tensor '"'"'lm_head.weight'"'"' and its config.json sets tie_word_embeddings: false" out && grep -q "m1/model.safetensors.index.json does not list it, but shard" out' \
    "untied model whose index omits lm_head: rc $rc: $(cat out)"
sed -i 's/"tie_word_embeddings": false/"tie_word_embeddings": true/' m1/config.json
"$bin" merge lin.yml out_lin >out 2>&1
rc=$?
check '[ $rc -eq 0 ] && grep -q "warning: .*m1/model.safetensors.index.json does not list 1 tensor that shard .* holds (first: '"'"'lm_head.weight'"'"')" out' \
    "tied: the embedding stands in, with a warning: rc $rc: $(cat out)"

# ---- a recipe of exactly the size limit --------------------------------------
cp lin.yml big.yml
pad=$((16 * 1024 * 1024 - $(stat -c %s lin.yml)))
yes "$(printf '#%.0s' $(seq 63))" | head -c "$pad" >>big.yml
"$bin" plan big.yml >out 2>&1
rc=$?
check '[ "$(stat -c %s big.yml)" -eq 16777216 ] && [ $rc -eq 0 ]' "recipe of exactly 16 MiB: rc $rc: $(head -c 300 out)"
printf '#' >>big.yml
"$bin" plan big.yml >out 2>&1
rc=$?
check '[ $rc -eq 2 ] && grep -q "big.yml: recipe larger than 16 MiB" out' "recipe of 16 MiB + 1: rc $rc: $(cat out)"

# ---- MoE prompts longer than the context ---------------------------------------
"$bin" synth base --arch llama --layers 2 --hidden 16 --intermediate 32 --heads 2 --kv-heads 1 --vocab 64 --seed 1 \
    >/dev/null 2>&1
"$bin" synth e1 --from base --delta-scale 0.1 --seed 2 >/dev/null 2>&1
moe_cfg() {   # moe_cfg REPEATS: the second expert's first prompt is "ab " REPEATS times
    printf 'base_model: base\ngate_mode: hidden\ndtype: bfloat16\nexperts:\n  - source_model: e1\n'
    printf '    positive_prompts: ["hello"]\n  - source_model: base\n    positive_prompts: ["'
    yes 'ab' | head -n "$1" | tr '\n' ' '
    printf '"]\n'
}
# 3 tokens per "ab " and a BOS: 600 -> 1801 tokens, 700 -> 2101 (context: 2048)
moe_cfg 600 >short.yml
"$bin" moe short.yml out_short --quiet >out 2>&1
rc=$?
check '[ $rc -eq 0 ]' "moe prompt within the context: rc $rc: $(cat out)"
moe_cfg 700 >long.yml
"$bin" moe long.yml out_long --quiet >out 2>&1
rc=$?
check '[ $rc -eq 2 ] && [ ! -e out_long ] && grep -q "long.yml: gate of experts\[1\] (base): positive_prompts\[0\] is 2101 tokens long.*limited to 2048 tokens (the model.s max_position_embeddings)" out' \
    "moe prompt past the context: rc $rc: $(cat out)"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
