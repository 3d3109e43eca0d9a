#!/usr/bin/env bash
# lora.sh — `model+adapter` references (spec/lora.md) beyond the golden
# cases' bit checks (tests/golden/cases-0.1.5/lora_*):
#  - `plan` counts the low-rank products and their A/B bytes, `explain`
#    shows the lowrank ops; no merged copy of the model is written anywhere;
#  - a compiled .crb names the adapter as a model of its own and runs to
#    the same bytes as `merge`, also from a copy of the models elsewhere;
#  - every ISA, thread count and --max-memory gives the same bytes;
#  - --lora-merge-dtype float32 reads the whole model as float32 (so the
#    output is float32); a bad value exits 2;
#  - adapters crucible cannot apply are refused naming what is unsupported
#    (DoRA, a LoHa adapter, adapter_model.bin only, a LoRA for other
#    weights), and a missing adapter names where it looked; `moe` refuses
#    LoRA references as mergekit-moe does.
# usage: tests/e2e/lora.sh CRUCIBLE_BIN   (from the repository root)
. "$(dirname "$0")/../support/e2e_lib.sh" lora "$1"
bin=$(realpath "$bin")
g=$(realpath tests/golden/models)
cd "$tmp" || exit 1
mkdir m
for d in lora_base_bf16 lora_embed lora_qkvo; do cp -r "$g/$d" m/; done
cat >r.yml <<'YML'
merge_method: linear
models:
  - model: lora_base_bf16+lora_embed
    parameters: {weight: 0.6}
  - model: lora_base_bf16+lora_qkvo
    parameters: {weight: 0.4}
YML
# weights written anywhere but the outputs (a merged copy of the model)
stray() { find . -name '*.safetensors' | grep -v -e '^./m/' -e '^./out' -e '^./run' | sort; }

# ---- plan, explain ------------------------------------------------------------
"$bin" plan r.yml --models-dir m >plan.txt 2>err.txt; rc=$?
check '[ $rc -eq 0 ] && grep -Eq "^lora +11 low-rank products .*no merged copy is written" plan.txt' \
    "plan: rc $rc: $(cat plan.txt err.txt)"
check 'grep -Eq "^inputs +3 files" plan.txt' "plan: the base and two adapters: $(grep inputs plan.txt)"
"$bin" explain r.yml --models-dir m >explain.txt 2>err.txt
check 'grep -q "lowrank_t .*lora_embedding_B \[20x3\] @ .*lora_embedding_A \[3x67\], transposed" explain.txt' \
    "explain: the embedding's transposed product: $(grep lowrank explain.txt | head -2)"
check '[ "$(grep -c " lowrank " explain.txt)" -eq 10 ]' "explain: 10 lowrank ops: $(grep -c lowrank explain.txt)"

# ---- merge, and a .crb run elsewhere --------------------------------------------
"$bin" merge r.yml out --models-dir m --quiet 2>err.txt; rc=$?
check '[ $rc -eq 0 ] && [ -s out/model.safetensors ]' "merge: rc $rc: $(cat err.txt)"
check 'grep -q "^\* .*lora_base_bf16.* + .*lora_embed" out/README.md' "model card lists model + lora: $(grep -n lora out/README.md | head -3)"
"$bin" compile r.yml -o p.crb --models-dir m 2>err.txt; rc=$?
check '[ $rc -eq 0 ] && ! grep -qaF "$tmp" p.crb' "compile: rc $rc: $(cat err.txt)"
"$bin" explain p.crb >crb.txt 2>&1
check 'grep -q "lora_embed" crb.txt && grep -q "adapter_model.safetensors" crb.txt' "explain p.crb names the adapter file: $(head -30 crb.txt)"
mv m elsewhere
"$bin" run p.crb run1 --models-dir elsewhere --quiet 2>err.txt; rc=$?
check '[ $rc -eq 0 ] && cmp -s out/model.safetensors run1/model.safetensors' "run of the .crb: rc $rc: $(cat err.txt)"
mv elsewhere m
check '[ -z "$(stray)" ]' "weights written outside the outputs: $(stray)"

# the output may not be written inside an adapter being read
"$bin" merge r.yml m/lora_qkvo/out --models-dir m --quiet >out.txt 2>err.txt; rc=$?
check '[ $rc -ne 0 ] && [ ! -e m/lora_qkvo/out ] && grep -q "lora_qkvo" err.txt' "output inside the adapter: rc $rc: $(cat err.txt)"

# ---- ISAs, threads, --max-memory: the same bytes ------------------------------------
for isa in scalar avx2 avx512; do
    CRUCIBLE_ISA=$isa "$bin" merge r.yml "out-$isa" --models-dir m --quiet -j 3 2>err.txt || continue
    check 'cmp -s out/model.safetensors "out-$isa/model.safetensors"' "CRUCIBLE_ISA=$isa differs"
done
"$bin" merge r.yml out-mem --models-dir m --quiet -j 2 --max-memory 4M 2>err.txt; rc=$?
check '[ $rc -eq 0 ] && cmp -s out/model.safetensors out-mem/model.safetensors' "--max-memory 4M: rc $rc: $(cat err.txt)"

# ---- --lora-merge-dtype ---------------------------------------------------------------
printf 'merge_method: passthrough\nmodels:\n  - model: lora_base_bf16+lora_qkvo\n' >p.yml
"$bin" merge p.yml out-f32 --models-dir m --quiet --lora-merge-dtype float32 2>err.txt; rc=$?
check '[ $rc -eq 0 ] && "$bin" inspect out-f32 | grep -q "F32" && ! "$bin" inspect out-f32 | grep -q "BF16"' \
    "--lora-merge-dtype float32: rc $rc: $(cat err.txt; "$bin" inspect out-f32 | head -5)"
"$bin" merge p.yml out-bad --models-dir m --lora-merge-dtype bf16 >out.txt 2>err.txt; rc=$?
check '[ $rc -eq 2 ] && [ ! -e out-bad ] && grep -q "bfloat16, float16 or float32" err.txt' "--lora-merge-dtype bf16: rc $rc: $(cat err.txt)"

# ---- refusals ----------------------------------------------------------------------
refused() {   # refused NAME SED_EDIT_OF_THE_CONFIG EXPECTED_TEXT [no-safetensors]
    rm -rf "m/$1"
    cp -r m/lora_qkvo "m/$1"
    sed -i "$2" "m/$1/adapter_config.json"
    if [ "${4:-}" = no-safetensors ]; then mv "m/$1/adapter_model.safetensors" "m/$1/adapter_model.bin"; fi
    printf 'merge_method: passthrough\nmodels:\n  - model: lora_base_bf16+%s\n' "$1" >"$1.yml"
    "$bin" merge "$1.yml" "out-$1" --models-dir m >out.txt 2>err.txt; rc=$?
    name=$1 want=$3
    check '[ $rc -ne 0 ] && [ ! -e "out-$name" ] && grep -qF "$want" err.txt && grep -q "$name.yml:3:" err.txt' \
        "$1: rc $rc: $(cat err.txt)"
}
refused dora 's/"use_dora": false/"use_dora": true/' "DoRA (use_dora) is not supported; crucible applies plain LoRA only"
refused loha 's/"peft_type": "LORA"/"peft_type": "LOHA"/' "a PEFT LOHA adapter; crucible applies plain LoRA adapters only"
refused pickled 's/x/x/' "adapter_model.bin (a PyTorch pickle) is not read yet" no-safetensors
printf 'merge_method: passthrough\nmodels:\n  - model: lora_base_bf16+nowhere\n' >missing.yml
"$bin" merge missing.yml out-missing --models-dir m >out.txt 2>err.txt; rc=$?
check '[ $rc -ne 0 ] && grep -q "LoRA adapter '"'"'nowhere'"'"' of '"'"'lora_base_bf16+nowhere'"'"' not found (looked in" err.txt' \
    "missing adapter: rc $rc: $(cat err.txt)"
# a relative adapter path is listed once where it was looked for: the
# recipe's folder is the working directory here (not "././nope, ././nope")
printf 'merge_method: passthrough\nmodels:\n  - model: lora_base_bf16+./nope\n' >relmissing.yml
"$bin" merge relmissing.yml out-nope --models-dir m >out.txt 2>err.txt; rc=$?
check '[ $rc -ne 0 ] && [ "$(grep -o "nope" err.txt | wc -l)" -eq 4 ] && grep -qF "(looked in ./nope, m/./nope," err.txt' \
    "missing ./nope: named once per place: rc $rc: $(cat err.txt)"
# an adapter for weights this model does not have
mkdir -p m/other_base
"$bin" synth m/other_base --arch llama --layers 1 --hidden 16 --intermediate 32 --heads 2 --kv-heads 1 --vocab 32 >/dev/null 2>&1
printf 'merge_method: passthrough\nmodels:\n  - model: other_base+lora_qkvo\n' >other.yml
"$bin" merge other.yml out-other --models-dir m >out.txt 2>err.txt; rc=$?
check '[ $rc -ne 0 ] && grep -q "LoRA '"'"'lora_qkvo'"'"' changes '"'"'model.layers.1.self_attn.k_proj.weight'"'"', which model '"'"'other_base'"'"' does not have" err.txt' \
    "adapter of another model: rc $rc: $(cat err.txt)"

# mergekit-moe refuses LoRA references, and so does `moe`
printf 'base_model: lora_base_bf16+lora_qkvo\ngate_mode: random\ndtype: bfloat16\nexperts:\n  - source_model: lora_base_bf16+lora_qkvo\n  - source_model: lora_base_bf16\n' >moe.yml
"$bin" moe moe.yml out-moe --models-dir m >out.txt 2>err.txt; rc=$?
check '[ $rc -ne 0 ] && [ ! -e out-moe ] && grep -q "is a LoRA reference (.model+adapter.); mergekit-moe refuses them too" err.txt' \
    "moe with a LoRA reference: rc $rc: $(cat err.txt)"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
