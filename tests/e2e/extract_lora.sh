#!/usr/bin/env bash
# extract_lora.sh — `crucible extract-lora` (spec/lora.md, "Extracting"):
#  - on tiny synthesised models (the cases of tests/compat/check_extract_lora.py,
#    which compared them with mergekit-extract-lora and PEFT), the adapter
#    applied back through `base+adapter` gives per module ||fine-tune -
#    (base + B A)||_F within 1 % of mergekit's reconstruction error
#    (torch.linalg.svd), the figures below from
#    tests/compat/results/extract_lora.txt; full rank reconstructs to float32
#    rounding;
#  - the config mergekit writes (r, target_modules, modules_to_save in
#    transformers' module order, rank_pattern with --sv-epsilon), the PEFT
#    tensor names, a tied lm_head saved whole;
#  - the same bytes for any thread count;
#  - output safety: no --force, no overwrite; never an input; bad options.
# usage: tests/e2e/extract_lora.sh CRUCIBLE_BIN   (from the repository root)
. "$(dirname "$0")/../support/e2e_lib.sh" extract_lora "$1"
bin=$(realpath "$bin")
cd "$tmp" || exit 1

# the compat script's llama_f32_odd_r13_embed case
"$bin" synth b --arch llama --layers 1 --hidden 62 --intermediate 97 --heads 1 --kv-heads 1 --vocab 83 \
    --dtype float32 >/dev/null 2>&1
"$bin" synth f --from b --seed 7 --delta-scale 0.02 >/dev/null 2>&1
"$bin" extract-lora --model f --base-model b --out-path ad --max-rank 13 --embed-lora -q 2>err.txt; rc=$?
check '[ $rc -eq 0 ] && [ -s ad/adapter_model.safetensors ] && [ -s ad/adapter_config.json ] && grep -q "^# ad$" ad/README.md' \
    "extract-lora: rc $rc: $(cat err.txt)"
check 'grep -q "\"r\": 13," ad/adapter_config.json && grep -q "\"lora_alpha\": 13," ad/adapter_config.json' \
    "r and lora_alpha: $(cat ad/adapter_config.json)"
check 'tr -d " \n" <ad/adapter_config.json | grep -q "\"modules_to_save\":\[\"input_layernorm\",\"post_attention_layernorm\",\"norm\"\]"' \
    "modules_to_save: $(cat ad/adapter_config.json)"
names=$(grep -ao 'base_model\.model\.[a-z0-9_.]*lora_[a-zA-Z_.]*' ad/adapter_model.safetensors | sort -u | tr '\n' ' ')
check 'echo "$names" | grep -q "base_model.model.model.embed_tokens.lora_embedding_A " && echo "$names" | grep -q "base_model.model.lm_head.lora_A.weight "' \
    "tensor names: $names"

printf 'merge_method: passthrough\nmodels:\n  - model: b+ad\n' >p.yml
"$bin" merge p.yml rec --quiet 2>err.txt; rc=$?
check '[ $rc -eq 0 ]' "merge of b+ad: rc $rc: $(cat err.txt)"
"$bin" diff f rec >diff.txt 2>&1
# mergekit-extract-lora's ||dW - B A||_F per module (torch.linalg.svd)
while read -r t want; do
    got=$(grep "differs     $t " diff.txt | sed 's/.*||a-b||_F \([0-9.e+-]*\),.*/\1/')
    check 'awk -v g="$got" -v w="$want" "BEGIN { exit !(g != \"\" && g <= 1.01 * w && g >= 0.99 * w) }"' \
        "$t: ||ft - (base + B A)||_F $got, mergekit $want"
done <<'EOF'
lm_head.weight 1.01525
model.embed_tokens.weight 1.00461
model.layers.0.mlp.down_proj.weight 1.11749
model.layers.0.mlp.gate_proj.weight 1.11072
model.layers.0.mlp.up_proj.weight 1.13456
model.layers.0.self_attn.k_proj.weight 0.816072
model.layers.0.self_attn.o_proj.weight 0.842226
model.layers.0.self_attn.q_proj.weight 0.834392
model.layers.0.self_attn.v_proj.weight 0.827812
EOF
# norms are saved whole: identical
check '! grep -q "norm" diff.txt' "norms differ after the round trip: $(grep norm diff.txt)"

# full rank: the SVD is exact to float32 rounding
"$bin" extract-lora --model f --base-model b --out-path full --max-rank 200 --embed-lora -q 2>err.txt; rc=$?
printf 'merge_method: passthrough\nmodels:\n  - model: b+full\n' >full.yml
"$bin" merge full.yml recfull --quiet 2>>err.txt
worst=$("$bin" diff f recfull | sed -n 's/.*max |a-b| \([0-9.e+-]*\),.*/\1/p' | sort -g | tail -1)
check '[ $rc -eq 0 ] && awk -v w="${worst:-1}" "BEGIN { exit !(w < 1e-5) }"' "full rank: rc $rc, worst |a-b| $worst: $(cat err.txt)"

# the same bytes for any thread count
"$bin" extract-lora --model f --base-model b --out-path ad1 --max-rank 13 --embed-lora -q -j 1 2>/dev/null
"$bin" extract-lora --model f --base-model b --out-path ad3 --max-rank 13 --embed-lora -q -j 3 2>/dev/null
check 'cmp -s ad1/adapter_model.safetensors ad/adapter_model.safetensors && cmp -s ad3/adapter_model.safetensors ad/adapter_model.safetensors' \
    "-j 1 / -j 3 differ"

# --sv-epsilon: per-module ranks in rank_pattern / alpha_pattern; -e, -i, --save-module
"$bin" extract-lora --model f --base-model b --out-path eps --max-rank 13 --sv-epsilon 0.25 -i 'self_attn|mlp' \
    -e 'k_proj' --save-module v_proj -q 2>err.txt; rc=$?
cfg=$(tr -d ' \n' <eps/adapter_config.json)
check '[ $rc -eq 0 ] && echo "$cfg" | grep -q "\"rank_pattern\":{\"model" && echo "$cfg" | grep -q "\"alpha_pattern\":{\"model"' \
    "--sv-epsilon: rc $rc: $cfg $(cat err.txt)"
check 'echo "$cfg" | grep -q "\"target_modules\":\[\"down_proj\",\"gate_proj\",\"o_proj\",\"q_proj\",\"up_proj\"\]" && echo "$cfg" | grep -q "\"modules_to_save\":\[\"v_proj\",\"embed_tokens\",\"lm_head\"\]"' \
    "-i / -e / --save-module: $cfg"

# a tied model: lm_head (the embedding) saved whole, as mergekit loads it
"$bin" synth tb --arch llama --layers 1 --hidden 24 --intermediate 40 --heads 2 --kv-heads 1 --vocab 37 --tied >/dev/null 2>&1
"$bin" synth tf --from tb --seed 3 --delta-scale 0.02 >/dev/null 2>&1
"$bin" extract-lora --model tf --base-model tb --out-path tad --max-rank 4 -q 2>err.txt; rc=$?
check '[ $rc -eq 0 ] && grep -aq "base_model.model.lm_head.weight" tad/adapter_model.safetensors' "tied: rc $rc: $(cat err.txt)"

# output safety
"$bin" extract-lora --model f --base-model b --out-path ad --max-rank 4 -q >out.txt 2>err.txt; rc=$?
check '[ $rc -ne 0 ] && cmp -s ad/adapter_model.safetensors ad1/adapter_model.safetensors' "existing output without --force: rc $rc"
"$bin" extract-lora --model f --base-model b --out-path ad --max-rank 4 -q --force 2>err.txt; rc=$?
check '[ $rc -eq 0 ] && grep -q "\"r\": 4," ad/adapter_config.json' "--force: rc $rc: $(cat err.txt)"
"$bin" extract-lora --model f --base-model b --out-path b --max-rank 4 -q --force >out.txt 2>err.txt; rc=$?
check '[ $rc -ne 0 ] && [ -s b/model.safetensors ] && [ ! -e b/adapter_config.json ]' "output = the base model: rc $rc: $(cat err.txt)"
"$bin" extract-lora --model f --base-model b --out-path f/sub -q >out.txt 2>err.txt; rc=$?
check '[ $rc -ne 0 ] && [ ! -e f/sub ]' "output inside the fine-tune: rc $rc"
"$bin" extract-lora --model f --out-path x -q >out.txt 2>err.txt; rc=$?
check '[ $rc -eq 2 ] && grep -q "base-model is required" err.txt' "no --base-model: rc $rc: $(cat err.txt)"
"$bin" extract-lora --model f --base-model b --out-path x --max-rank 0 >out.txt 2>err.txt; rc=$?
check '[ $rc -eq 2 ] && grep -q "max-rank wants a positive integer" err.txt && [ ! -e x ]' "--max-rank 0: rc $rc: $(cat err.txt)"
"$bin" extract-lora --model f --base-model b --out-path x -e '(' >out.txt 2>err.txt; rc=$?
check '[ $rc -eq 2 ] && grep -q "not a valid" err.txt && [ ! -e x ]' "bad regex: rc $rc: $(cat err.txt)"
# mergekit's device and I/O options are accepted and change nothing
"$bin" extract-lora --model f --base-model b --out-path dev --max-rank 13 --embed-lora -q --cuda --device cpu \
    --lazy-unpickle --trust-remote-code --low-cpu-memory 2>err.txt; rc=$?
check '[ $rc -eq 0 ] && cmp -s dev/adapter_model.safetensors ad1/adapter_model.safetensors' "no-op options: rc $rc: $(cat err.txt)"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
