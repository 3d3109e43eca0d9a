#!/usr/bin/env bash
# gguf_merge.sh — merge, run and moe write GGUF directly (spec/gguf.md §8):
# OUT.gguf is byte for byte what `crucible convert` writes from the same
# command's output directory OUT (and convert equals llama.cpp's converter,
# tests/e2e/gguf.sh), for every --gguf-type, any thread count and memory
# limit; no shard or aux file is written; the file appears whole or not at
# all; plan --gguf-type gives its size.
# usage: tests/e2e/gguf_merge.sh CRUCIBLE_BIN
. "$(dirname "$0")/../support/e2e_lib.sh" gguf_merge "$1"

spm_model="$(cd "$(dirname "$0")/../golden/gguf/spm" && pwd)/tokenizer.model"
hf_tokenizer="$(cd "$(dirname "$0")/../golden/gguf/llama-hf" && pwd)/tokenizer.json"
cd "$tmp" || exit 1
"$bin" synth base --arch llama --layers 2 --hidden 64 --intermediate 96 --heads 4 --kv-heads 2 --vocab 272 --seed 1
"$bin" synth ft1 --from base --delta-scale 0.1 --seed 2
"$bin" synth ft2 --from base --delta-scale 0.1 --seed 3
cat >ties.yml <<'YML'
merge_method: ties
base_model: base
models:
  - model: ft1
    parameters: {weight: 0.6, density: 0.5}
  - model: ft2
    parameters: {weight: 0.4, density: 0.7}
dtype: bfloat16
YML

# the two-step path: merge into a directory, convert it
"$bin" merge ties.yml m --quiet
mkdir direct
for t in f32 f16 bf16 q8_0 q4_0; do
    "$bin" convert m "conv-$t.gguf" --gguf-type $t --gguf-pre llama-bpe 2>/dev/null
    # OUT.gguf stands for the directory OUT (the card's title and general.name come from it)
    "$bin" merge ties.yml direct/m.gguf --gguf-type $t --gguf-pre llama-bpe --quiet --force 2>"$tmp/err"
    rc=$?
    check '[ $rc -eq 0 ] && cmp direct/m.gguf "conv-$t.gguf"' "merge to GGUF $t differs from merge + convert: $(cat "$tmp/err")"
done
check '[ "$(ls direct)" = m.gguf ]' "merge to GGUF wrote more than the file: $(ls direct)"
# the type follows from the name too (auto: the merge's bf16)
"$bin" merge ties.yml direct/m.gguf --gguf-pre llama-bpe --quiet --force
"$bin" convert m conv-auto.gguf --gguf-pre llama-bpe 2>/dev/null
check 'cmp direct/m.gguf conv-auto.gguf' "merge to .gguf with the default type"

# threads and a memory limit change nothing (chunks reach the sink in any order)
"$bin" merge ties.yml direct/m.gguf --gguf-type q4_0 --gguf-pre llama-bpe --quiet --force -j 3 --max-memory 6M 2>"$tmp/err"
check 'cmp direct/m.gguf conv-q4_0.gguf' "q4_0 with 3 threads and --max-memory: $(cat "$tmp/err")"
for isa in scalar avx2; do
    CRUCIBLE_ISA=$isa "$bin" merge ties.yml direct/m.gguf --gguf-type q8_0 --gguf-pre llama-bpe --quiet --force
    check 'cmp direct/m.gguf conv-q8_0.gguf' "CRUCIBLE_ISA=$isa"
done

# pass-through copies (COPY, not kernels) feed the sink too; float16 output, Q8_0
cat >pt.yml <<'YML'
merge_method: passthrough
slices:
  - sources:
      - model: ft1
        layer_range: [0, 2]
  - sources:
      - model: ft2
        layer_range: [1, 2]
dtype: float16
YML
"$bin" merge pt.yml pt --quiet
"$bin" convert pt pt-c.gguf --gguf-type q8_0 --gguf-pre llama-bpe 2>/dev/null
"$bin" merge pt.yml pt.gguf --gguf-type q8_0 --gguf-pre llama-bpe --quiet 2>"$tmp/err"
check 'cmp pt.gguf pt-c.gguf' "passthrough to GGUF: $(cat "$tmp/err")"

# run: a compiled program into a GGUF file
"$bin" compile ties.yml -o ties.crb
"$bin" run ties.crb r --quiet
"$bin" convert r r-c.gguf --gguf-type f16 --gguf-pre llama-bpe 2>/dev/null
"$bin" run ties.crb r.gguf --gguf-type f16 --gguf-pre llama-bpe --quiet 2>"$tmp/err"
check 'cmp r.gguf r-c.gguf' "run to GGUF: $(cat "$tmp/err")"

# moe: the classic layout converts; the fused one (0.1.5's default) is refused by name
printf 'base_model: base\ngate_mode: random\ndtype: bfloat16\nexperts:\n  - source_model: ft1\n  - source_model: ft2\n' >moe.yml
"$bin" moe moe.yml mx --quiet --moe-layout classic
"$bin" convert mx mx-c.gguf --gguf-type q4_0 --gguf-pre llama-bpe 2>/dev/null
"$bin" moe moe.yml mx.gguf --moe-layout classic --gguf-type q4_0 --gguf-pre llama-bpe --quiet 2>"$tmp/err"
check 'cmp mx.gguf mx-c.gguf' "moe to GGUF: $(cat "$tmp/err")"
"$bin" moe moe.yml mf.gguf --gguf-pre llama-bpe --quiet 2>"$tmp/err"
rc=$?
check '[ $rc -eq 1 ] && grep -q "in the fused expert layout (mergekit 0.1.5.s default), which llama.cpp.s converter cannot map; write the experts with --moe-layout classic" "$tmp/err" && [ ! -e mf.gguf ]' "fused MoE: $(cat "$tmp/err")"

# a Qwen3-MoE in the fused layout (0.1.5's default): gate_up_proj split into ffn_gate_exps and
# ffn_up_exps from the VM's stores, threaded, within a memory limit
mkdir q3 && "$bin" synth q3/base --arch qwen3 --layers 2 --hidden 64 --intermediate 64 --heads 2 --kv-heads 1 --vocab 272 --seed 1
"$bin" synth q3/e1 --from q3/base --delta-scale 0.1 --seed 2 && "$bin" synth q3/e2 --from q3/base --delta-scale 0.1 --seed 3
printf 'base_model: base\ngate_mode: random\ndtype: bfloat16\nexperts:\n  - source_model: e1\n  - source_model: e2\n' >q3/moe.yml
(cd q3 && "$bin" moe moe.yml qf --quiet && "$bin" convert qf qf-c.gguf --gguf-type q8_0 --gguf-pre qwen2 2>/dev/null)
check 'grep -q "gate_up_proj" q3/qf/model.safetensors.index.json' "qwen3 moe: not fused"
for isa in scalar avx2; do
    rm -f q3/qf.gguf
    (cd q3 && CRUCIBLE_ISA=$isa "$bin" moe moe.yml qf.gguf --gguf-type q8_0 --gguf-pre qwen2 -j 3 --max-memory 6M --quiet 2>"$tmp/err")
    check 'cmp q3/qf.gguf q3/qf-c.gguf' "fused qwen3 moe to GGUF ($isa): $(cat "$tmp/err")"
done

# plan: the exact size of merged.gguf
size=$("$bin" plan ties.yml --gguf-type q4_0 --gguf-pre llama-bpe | sed -n 's/^gguf  *\([0-9]*\) bytes as merged.gguf (Q4_0, header [0-9]* bytes, tokenizer.ggml.pre llama-bpe)$/\1/p')
"$bin" merge ties.yml merged.gguf --gguf-type q4_0 --gguf-pre llama-bpe --quiet
check '[ -n "$size" ] && [ "$size" = "$(stat -c %s merged.gguf)" ]' "plan's GGUF size $size vs $(stat -c %s merged.gguf)"

# refusals: an existing file, an output inside an input, no known pre-tokenizer
"$bin" merge ties.yml merged.gguf --gguf-pre llama-bpe --quiet 2>"$tmp/err"
rc=$?
check '[ $rc -eq 1 ] && grep -q "merged.gguf exists (use --force to replace it)" "$tmp/err"' "existing output: $(cat "$tmp/err")"
"$bin" merge ties.yml base/x.gguf --gguf-pre llama-bpe --quiet 2>"$tmp/err"
rc=$?
check '[ $rc -eq 1 ] && grep -q "inside the input model directory" "$tmp/err" && [ ! -e base/x.gguf ]' "output inside an input: $(cat "$tmp/err")"
"$bin" merge ties.yml y.gguf --quiet 2>"$tmp/err"
rc=$?
check '[ $rc -eq 1 ] && grep -q "pass --gguf-pre NAME" "$tmp/err" && [ ! -e y.gguf ]' "unknown pre-tokenizer: $(cat "$tmp/err")"
# a failure during the run (a NaN for Q8_0: linear weights that sum to 0, normalised) leaves nothing
printf 'merge_method: linear\nmodels:\n  - model: ft1\n    parameters: {weight: 1.0}\n  - model: ft2\n    parameters: {weight: -1.0}\ndtype: bfloat16\n' >nan.yml
"$bin" merge nan.yml nan.gguf --gguf-type q8_0 --gguf-pre llama-bpe --quiet 2>"$tmp/err"
rc=$?
check '[ $rc -eq 1 ] && grep -q "is not finite; Q8_0 cannot hold it" "$tmp/err" && [ ! -e nan.gguf ]' "NaN into Q8_0: $(cat "$tmp/err")"
check '[ -z "$(ls -a | grep crucible-tmp)" ]' "temporary files left: $(ls -a)"

# diff reads GGUF: two files (metadata and dequantised values), and a file against a
# directory through the converter's name map (Q/K permutation, stacked experts)
out=$("$bin" diff conv-f16.gguf conv-f16.gguf); rc=$?
check '[ $rc -eq 0 ] && grep -q "^identical: 21 identical, 0 with different values" <<<"$out"' "diff of a GGUF with itself: $out"
out=$("$bin" diff conv-f16.gguf conv-q4_0.gguf); rc=$?
check '[ $rc -eq 1 ] && grep -q "^key differs  general.file_type: 1 vs 2$" <<<"$out" && grep -q "^differs     blk.0.attn_q.weight F16{64,64} vs Q4_0{64,64}: [0-9]* of 4096 elements differ, max |a-b| 0.0" <<<"$out"' "diff f16 vs q4_0: $out"
out=$("$bin" diff m conv-bf16.gguf); rc=$?
check '[ $rc -eq 0 ] && grep -q "^identical: 21 with equal values" <<<"$out"' "diff of a directory and its bf16 GGUF: $out"
out=$("$bin" diff conv-q8_0.gguf m); rc=$?
check '[ $rc -eq 1 ] && grep -q "^differs     model.layers.0.self_attn.k_proj.weight (blk.0.attn_k.weight) Q8_0{64,32} vs BF16\[32,64\]: " <<<"$out"' "diff q8_0 GGUF vs directory: $out"
out=$("$bin" diff mx mx.gguf --all); rc=$?
check '[ $rc -eq 1 ] && grep -q "^differs     model.layers.1.block_sparse_moe.experts.1.w2.weight (blk.1.ffn_down_exps.weight\[1\]) BF16\[64,96\] vs Q4_0{96,64,2}" <<<"$out" && grep -q "^same        model.layers.0.block_sparse_moe.gate.weight (blk.0.ffn_gate_inp.weight) BF16\[2,64\] vs F32{64,2}: equal values" <<<"$out"' "diff of a MoE directory and its GGUF: $out"
out=$("$bin" diff m pt.gguf); rc=$?
check '[ $rc -eq 1 ]' "diff of unrelated models"

# a SentencePiece model (tokenizer.model, copied into the output): merge to GGUF needs no --gguf-pre
# and equals merge + convert (which equals the converter: tests/e2e/gguf.sh's llama-spm)
"$bin" synth spbase --arch llama --layers 2 --hidden 64 --intermediate 96 --heads 4 --kv-heads 2 --vocab 304 --seed 1
cp "$spm_model" spbase/
"$bin" synth spft --from spbase --delta-scale 0.1 --seed 2
sed 's/ft1/spbase/; s/ft2/spft/; s/base_model: base/base_model: spbase/' ties.yml >spm.yml
"$bin" merge spm.yml spm --quiet
"$bin" convert spm spm-conv.gguf --gguf-type q4_0 2>"$tmp/err"
"$bin" merge spm.yml spm.gguf --gguf-type q4_0 --quiet 2>>"$tmp/err"
rc=$?
check '[ $rc -eq 0 ] && [ -f spm/tokenizer.model ] && cmp spm.gguf spm-conv.gguf' "SentencePiece merge to GGUF differs from merge + convert: $(cat "$tmp/err")"

# LlamaHf (byte-fallback BPE tokenizer.json): no --gguf-pre either
"$bin" synth hfbase --arch llama --layers 2 --hidden 64 --intermediate 96 --heads 4 --kv-heads 2 --vocab 272 --seed 1
cp "$hf_tokenizer" hfbase/
"$bin" synth hfft --from hfbase --delta-scale 0.1 --seed 2
sed 's/spbase/hfbase/g; s/spft/hfft/' spm.yml >hf.yml
"$bin" merge hf.yml hf --quiet
"$bin" convert hf hf-conv.gguf --gguf-type q8_0 2>"$tmp/err"
"$bin" merge hf.yml hf.gguf --gguf-type q8_0 --quiet 2>>"$tmp/err"
rc=$?
check '[ $rc -eq 0 ] && cmp hf.gguf hf-conv.gguf' "LlamaHf merge to GGUF differs from merge + convert: $(cat "$tmp/err")"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
