#!/usr/bin/env bash
# moe.sh — `crucible moe` end to end on synthetic models: cheap_embed,
# hidden and random gates (Mixtral, classic under --mergekit-version 0.1.4),
# the layout and config.json each mergekit version writes by default (0.1.5:
# fused, transformers-5 keys), Qwen3 MoE, a Qwen2-MoE with a shared expert,
# inspect of the outputs, determinism per --random-seed, plan / explain on
# an MoE config, and bad configs (exit 2, file:line:col, no output).
# The expert-bytes-identical-to-source check is in tests/unit/test_moe.c.
# usage: tests/e2e/moe.sh CRUCIBLE_BIN
. "$(dirname "$0")/../support/e2e_lib.sh" moe "$1"

cd "$tmp" || exit 1
v4="--mergekit-version 0.1.4"     # mergekit 0.1.4's classic layout
"$bin" synth base --arch llama --layers 2 --hidden 16 --intermediate 32 --heads 2 --kv-heads 1 --vocab 64 --seed 1 >/dev/null 2>&1
"$bin" synth e1 --from base --delta-scale 0.1 --seed 2 >/dev/null 2>&1
"$bin" synth e2 --from base --delta-scale 0.1 --seed 3 >/dev/null 2>&1
check '[ -f base/model.safetensors ] && [ -f e1/model.safetensors ] && [ -f e2/model.safetensors ]' "synth models"

for mode in cheap_embed hidden hidden_avg random; do
    cat >"$mode.yml" <<YML
base_model: base
gate_mode: $mode
dtype: bfloat16
experts:
  - source_model: e1
    positive_prompts: ["hello world", "abc"]
  - source_model: e2
    positive_prompts: ["xyz"]
    negative_prompts: ["hello"]
YML
    "$bin" moe "$mode.yml" "out_$mode" --quiet $v4 2>"$tmp/err"
    rc=$?
    check '[ $rc -eq 0 ]' "moe $mode: rc $rc: $(cat "$tmp/err")"
    out=$("$bin" inspect "out_$mode" 2>&1)
    check 'grep -q "^model.layers.1.block_sparse_moe.experts.1.w2.weight *BF16 *\[16, 32\]" <<<"$out"' "$mode: w2 row"
    check 'grep -q "^model.layers.0.block_sparse_moe.experts.0.w1.weight *BF16 *\[32, 16\]" <<<"$out"' "$mode: w1 row"
    check 'grep -q "^model.layers.0.block_sparse_moe.gate.weight *BF16 *\[2, 16\]" <<<"$out"' "$mode: router row"
    check 'grep -q "^total: 29 tensors" <<<"$out"' "$mode: total: $(grep total <<<"$out")"
    check '! grep -q "\.mlp\." <<<"$out"' "$mode: no dense MLP left"
    check 'grep -q "\"num_local_experts\": 2" "out_$mode/config.json" && grep -q "MixtralForCausalLM" "out_$mode/config.json"' "$mode: config.json"
    check 'cmp -s "$mode.yml" "out_$mode/mergekit_moe_config.yml"' "$mode: config copied verbatim"
    check '[ -f "out_$mode/README.md" ] && [ -f "out_$mode/tokenizer.json" ]' "$mode: card and tokenizer"
done
# prompt-based gates differ between modes; non-router tensors do not
d=$("$bin" diff out_cheap_embed out_hidden)
check 'grep -q "^different: 27 identical, 2 with different values" <<<"$d"' "cheap_embed vs hidden: $(tail -1 <<<"$d")"

# hidden_avg averages (padded) positions: other gates than hidden
d=$("$bin" diff out_hidden out_hidden_avg)
check 'grep -q "^different: 27 identical, 2 with different values" <<<"$d"' "hidden vs hidden_avg: $(tail -1 <<<"$d")"
# --gate-precision f32: other router bytes, same experts; a bad value is exit 2
"$bin" moe hidden.yml out_hidden_f32 --gate-precision f32 --quiet $v4
d=$("$bin" diff out_hidden out_hidden_f32)
check 'grep -q "^different: 27 identical, 2 with different values" <<<"$d"' "bf16 vs f32 gates: $(tail -1 <<<"$d")"
"$bin" moe hidden.yml out_bad --gate-precision f16 --quiet 2>"$tmp/err"
rc=$?
check '[ $rc -eq 2 ] && grep -q "gate-precision" "$tmp/err" && [ ! -e out_bad ]' "--gate-precision f16: rc $rc"

# hidden gates use --threads (default: all cores, cr_threads_resolve) and
# give the same bytes for any count
for t in 1 3; do
    "$bin" moe hidden.yml "out_hidden_t$t" --threads $t --quiet $v4 2>"$tmp/err"
    check 'cmp -s out_hidden/model.safetensors "out_hidden_t$t/model.safetensors"' "hidden gates, --threads $t: $(cat "$tmp/err")"
done

# random gates: a function of the seed
"$bin" moe random.yml r5a --random-seed 5 --quiet $v4 && "$bin" moe random.yml r5b --random-seed 5 --quiet $v4 &&
    "$bin" moe random.yml r6 --random-seed 6 --quiet $v4
check '"$bin" diff r5a r5b >/dev/null' "same seed, same model"
check '! "$bin" diff r5a r6 >/dev/null' "another seed, other gates"

# sharding
"$bin" moe random.yml sharded --out-shard-size 8K --quiet $v4
check '[ -f sharded/model.safetensors.index.json ] && [ -f sharded/model-00001-of-00003.safetensors ]' "sharded output: $(ls sharded)"
check 'grep -q "\"mergekit_version\": \"0.1.4\"" sharded/model.safetensors.index.json' "0.1.4: index metadata"
check 'grep -q "\"torch_dtype\": \"bfloat16\"" sharded/config.json && ! grep -q "rope_parameters" sharded/config.json' \
    "0.1.4: config.json keeps the base's keys"

# mergekit 0.1.5 (the default) writes the fused layout, and config.json as
# transformers 5 saves it: `dtype`, rope_parameters, sorted keys
"$bin" moe random.yml v5 --random-seed 5 --out-shard-size 8K --quiet 2>"$tmp/err"
rc=$?
check '[ $rc -eq 0 ]' "0.1.5 default: rc $rc: $(cat "$tmp/err")"
out=$("$bin" inspect v5 2>&1)
check 'grep -q "^model.layers.1.mlp.experts.gate_up_proj *BF16 *\[2, 64, 16\]" <<<"$out"' "0.1.5: fused gate_up_proj by default"
check 'grep -q "^model.layers.0.mlp.gate.weight *BF16 *\[2, 16\]" <<<"$out" && ! grep -q block_sparse_moe <<<"$out"' \
    "0.1.5: router mlp.gate.weight, no classic names"
check 'grep -q "\"mergekit_version\": \"0.1.5\"" v5/model.safetensors.index.json' "0.1.5: index metadata"
check 'grep -q "^  \"dtype\": \"bfloat16\"," v5/config.json && ! grep -q torch_dtype v5/config.json' "0.1.5: dtype key"
check 'grep -q "^  \"rope_parameters\": {" v5/config.json && ! grep -q "^  \"rope_theta\"" v5/config.json' \
    "0.1.5: rope_parameters"
check 'grep -o "^  \"[^\"]*\"" v5/config.json | LC_ALL=C sort -c' "0.1.5: config.json keys sorted"
check 'grep -q "\"pad_token_id\": null" v5/config.json && grep -q "\"num_local_experts\": 2" v5/config.json' \
    "0.1.5: MixtralConfig fields"
# an explicit --moe-layout wins over the version's
"$bin" moe random.yml v5c --random-seed 5 --moe-layout classic --quiet
out=$("$bin" inspect v5c 2>&1)
check 'grep -q "^model.layers.0.block_sparse_moe.experts.0.w1.weight" <<<"$out" && grep -q "\"dtype\"" v5c/config.json' \
    "0.1.5 --moe-layout classic: classic names, 0.1.5 config"
check '"$bin" diff v5c r5a >/dev/null' "0.1.5 classic = 0.1.4 tensors"

# the transformers-v5 fused layout
"$bin" moe random.yml out_fused --moe-layout fused --random-seed 5 --quiet $v4 2>"$tmp/err"
rc=$?
check '[ $rc -eq 0 ]' "fused: rc $rc: $(cat "$tmp/err")"
out=$("$bin" inspect out_fused 2>&1)
check 'grep -q "^model.layers.1.mlp.experts.gate_up_proj *BF16 *\[2, 64, 16\]" <<<"$out"' "fused: gate_up_proj row"
check 'grep -q "^model.layers.1.mlp.experts.down_proj *BF16 *\[2, 16, 32\]" <<<"$out"' "fused: down_proj row"
check 'grep -q "^model.layers.0.mlp.gate.weight *BF16 *\[2, 16\]" <<<"$out"' "fused: router row"
check 'grep -q "^total: 21 tensors" <<<"$out"' "fused: total"
# same bytes as the classic layout, only packed: the files have equal size
check '[ "$(stat -c %s out_fused/model.safetensors)" -lt "$(stat -c %s r5a/model.safetensors)" ]' "fused: smaller header, same data"
check '"$bin" diff out_fused v5 >/dev/null' "0.1.5 default = --moe-layout fused"

# fused, no output dtype (no `dtype`, no torch_dtype in the base), experts
# of different dtypes: one tensor, promoted as torch.stack does (f32)
"$bin" synth mxb --arch llama --layers 1 --hidden 16 --intermediate 32 --heads 2 --kv-heads 1 --vocab 64 \
    --dtype float32 --seed 1 >/dev/null 2>&1
"$bin" synth mxe --arch llama --layers 1 --hidden 16 --intermediate 32 --heads 2 --kv-heads 1 --vocab 64 \
    --dtype bfloat16 --seed 2 >/dev/null 2>&1
sed -i '/"torch_dtype"/d' mxb/config.json
printf 'base_model: mxb\ngate_mode: random\nexperts:\n  - source_model: mxb\n  - source_model: mxe\n' >mx.yml
"$bin" moe mx.yml out_mx --quiet 2>"$tmp/err"
rc=$?
out=$("$bin" inspect out_mx 2>&1)
check '[ $rc -eq 0 ] && grep -q "^model.layers.0.mlp.experts.gate_up_proj *F32 *\[2, 64, 16\]" <<<"$out"' \
    "fused, mixed expert dtypes: rc $rc $(cat "$tmp/err")"

# Qwen3 MoE: qwen3 models (q_norm / k_norm kept), fused under 0.1.5,
# classic mlp.experts.{e}.*_proj under 0.1.4
"$bin" synth q3 --arch qwen3 --layers 2 --hidden 16 --intermediate 32 --heads 2 --kv-heads 1 --vocab 64 --seed 1 >/dev/null 2>&1
"$bin" synth q3a --from q3 --delta-scale 0.1 --seed 2 >/dev/null 2>&1
"$bin" synth q3b --from q3 --delta-scale 0.1 --seed 3 >/dev/null 2>&1
sed 's/^base_model: base/base_model: q3/; s/source_model: e1/source_model: q3a/; s/source_model: e2/source_model: q3b/' \
    hidden.yml >q3.yml
"$bin" moe q3.yml out_q3 --quiet 2>"$tmp/err"
rc=$?
check '[ $rc -eq 0 ]' "qwen3: rc $rc: $(cat "$tmp/err")"
out=$("$bin" inspect out_q3 2>&1)
check 'grep -q "^model.layers.1.mlp.experts.gate_up_proj *BF16 *\[2, 64, 16\]" <<<"$out"' "qwen3: fused gate_up_proj"
check 'grep -q "^model.layers.1.mlp.experts.down_proj *BF16 *\[2, 16, 32\]" <<<"$out"' "qwen3: fused down_proj"
check 'grep -q "^model.layers.0.self_attn.q_norm.weight *BF16 *\[8\]" <<<"$out"' "qwen3: q_norm kept"
check 'grep -q "^total: 25 tensors" <<<"$out"' "qwen3: total: $(grep total <<<"$out")"
check 'grep -q "\"Qwen3MoeForCausalLM\"" out_q3/config.json && grep -q "\"num_local_experts\": 2" out_q3/config.json &&
    grep -q "\"moe_intermediate_size\": 32" out_q3/config.json' "qwen3: config.json"
"$bin" moe q3.yml out_q3c --quiet $v4 2>"$tmp/err"
out=$("$bin" inspect out_q3c 2>&1)
check 'grep -q "^model.layers.1.mlp.experts.1.up_proj.weight *BF16 *\[32, 16\]" <<<"$out" && grep -q "^total: 33 tensors" <<<"$out"' \
    "qwen3 0.1.4: classic: $(grep total <<<"$out")"
check 'grep -q "\"num_experts\": 2" out_q3c/config.json' "qwen3 0.1.4: config.json"

# Qwen2-MoE with a shared expert (random gates: no prompts needed)
# (without `architecture: qwen` a prompt-less shared expert picks DeepSeek,
# as in mergekit)
cat >qwen.yml <<YML
base_model: base
gate_mode: random
architecture: qwen
experts_per_token: 1
experts:
  - source_model: e1
  - source_model: e2
shared_experts:
  - source_model: base
    residual_scale: 0.5
YML
"$bin" moe qwen.yml out_qwen --quiet 2>"$tmp/err"
rc=$?
check '[ $rc -eq 0 ]' "qwen: rc $rc: $(cat "$tmp/err")"
out=$("$bin" inspect out_qwen 2>&1)
check 'grep -q "^model.layers.1.mlp.shared_expert.down_proj.weight *BF16 *\[16, 32\]" <<<"$out"' "qwen: shared expert"
check 'grep -q "^model.layers.1.mlp.shared_expert_gate.weight *BF16 *\[1, 16\]" <<<"$out"' "qwen: shared gate"
check 'grep -q "^model.layers.0.self_attn.k_proj.bias *BF16 *\[8\]" <<<"$out"' "qwen: zero k bias"
check 'grep -q "\"model_type\": \"qwen2_moe\"" out_qwen/config.json && grep -q "\"num_experts_per_tok\": 1" out_qwen/config.json' "qwen: config.json"

sed '/^architecture/d' qwen.yml >deepseek.yml
"$bin" moe deepseek.yml out_ds 2>"$tmp/err"
rc=$?
check '[ $rc -eq 0 ]' "deepseek: rc $rc: $(cat "$tmp/err")"
out=$("$bin" inspect out_ds 2>&1)
check 'grep -q "^model.layers.1.mlp.shared_experts.down_proj.weight *BF16 *\[16, 32\]" <<<"$out"' "deepseek: shared expert"
check 'grep -q "^model.layers.1.mlp.experts.1.gate_proj.weight *BF16 *\[32, 16\]" <<<"$out"' "deepseek: routed expert"
check 'grep -q "^model.layers.0.mlp.gate.weight *BF16 *\[2, 16\]" <<<"$out"' "deepseek: router"
check '! grep -q "shared_expert_gate\|q_proj.bias\|\.mlp\.gate_proj" <<<"$out"' "deepseek: no qwen extras, no dense MLP"
check 'grep -q "^    \"model_type\": \"deepseek\",\$" out_ds/config.json && grep -q "\"n_shared_experts\": 1," out_ds/config.json && grep -q "\"_name_or_path\": \"base\"," out_ds/config.json' "deepseek: config.json"
"$bin" moe deepseek.yml out_ds4 --mergekit-version 0.1.4 2>"$tmp/err"
rc=$?
check '[ $rc -eq 2 ] && grep -q "0.1.4" "$tmp/err" && [ ! -e out_ds4 ]' "deepseek 0.1.4: refused: rc $rc"

# plan and explain understand MoE configs
"$bin" plan cheap_embed.yml $v4 >"$tmp/plan" 2>&1
rc=$?
check '[ $rc -eq 0 ] && grep -q "29 tensors" "$tmp/plan"' "plan: rc $rc $(cat "$tmp/plan")"
"$bin" explain random.yml >"$tmp/explain" 2>&1
rc=$?
check '[ $rc -eq 0 ] && grep -q "copy" "$tmp/explain"' "explain: rc $rc"

# compile to a .crb (gates travel in its blob pool) and run it
"$bin" compile cheap_embed.yml -o moe.crb $v4 2>"$tmp/err" && "$bin" run moe.crb from_crb --quiet 2>>"$tmp/err"
rc=$?
check '[ $rc -eq 0 ] && "$bin" diff from_crb out_cheap_embed >/dev/null' "compile + run reproduce moe: rc $rc $(cat "$tmp/err")"

# bad configs: exit 2, located diagnostics, no output directory
printf 'base_model: base\ngate_mode: cheap_emb\nexperts:\n  - source_model: e1\n    positive_prompts: [a]\n  - source_model: e2\n    positive_prompts: [b]\n' >bad1.yml
"$bin" moe bad1.yml out_bad 2>"$tmp/err"
rc=$?
check '[ $rc -eq 2 ] && grep -q "bad1.yml:2:12: error: gate_mode" "$tmp/err" && grep -q "cheap_embed" "$tmp/err"' "bad gate_mode: rc $rc $(cat "$tmp/err")"
printf 'base_model: base\nexperts:\n  - source_model: e1\n    positive_prompts: [a]\n  - source_model: e2\n' >bad2.yml
"$bin" moe bad2.yml out_bad 2>"$tmp/err"
rc=$?
check '[ $rc -eq 2 ] && grep -q "bad2.yml:5:5: error: experts\[1\]" "$tmp/err"' "missing prompts: rc $rc $(cat "$tmp/err")"
printf 'base_model: base\ngate_mode: random\nexperts:\n  - source_model: e1\n  - source_model: missing_model\n' >bad3.yml
"$bin" moe bad3.yml out_bad 2>"$tmp/err"
rc=$?
check '[ $rc -eq 2 ] && grep -q "missing_model" "$tmp/err"' "missing model: rc $rc $(cat "$tmp/err")"
"$bin" moe base/config.json out_bad 2>/dev/null
rc=$?; check '[ $rc -eq 2 ]' "not a config"
check '[ ! -e out_bad ] && [ -z "$(ls -d ./*.crucible-tmp-* 2>/dev/null)" ]' "no output from failures"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
