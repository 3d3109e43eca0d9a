#!/usr/bin/env bash
# gguf.sh — crucible convert writes the GGUF file llama.cpp's converter
# writes, byte for byte (tests/golden/gguf: the pinned converter's outputs for
# the same synthetic models, made by tests/golden/gguf/generate.py), and
# refuses what it cannot write right or must not overwrite.
# usage: tests/e2e/gguf.sh CRUCIBLE_BIN
. "$(dirname "$0")/../support/e2e_lib.sh" gguf "$1"
golden="$(cd "$(dirname "$0")/../golden/gguf" && pwd)"

# the models of generate.py's MODELS (the directory name is general.name's source)
"$bin" synth "$tmp/llama" --arch llama --layers 2 --hidden 32 --intermediate 48 --heads 2 --kv-heads 1 --vocab 272
"$bin" synth "$tmp/qwen2" --arch qwen2 --layers 2 --hidden 32 --intermediate 64 --heads 4 --kv-heads 2 --vocab 272
# generate.py's QWEN2_TOKENIZER_CONFIG (why: see there)
cat >"$tmp/qwen2/tokenizer_config.json" <<'JSON'
{
  "add_bos_token": true,
  "add_eos_token": false,
  "bos_token": "<s>",
  "clean_up_tokenization_spaces": false,
  "eos_token": "</s>",
  "model_max_length": 2048,
  "pad_token": "</s>",
  "tokenizer_class": "PreTrainedTokenizerFast",
  "unk_token": "<unk>"
}
JSON

"$bin" synth "$tmp/qwen3" --arch qwen3 --layers 2 --hidden 64 --intermediate 64 --heads 4 --kv-heads 2 --vocab 272
cp "$tmp/qwen2/tokenizer_config.json" "$tmp/qwen3/"
# qwen3: qwen2's path plus attn_q_norm / attn_k_norm (F32) and head_dim's key_length
for t in bf16 q8_0 q4_0; do
    "$bin" convert "$tmp/qwen3" "$tmp/qwen3-$t.gguf" --gguf-type $t --gguf-pre qwen2 2>"$tmp/err"
    check 'cmp "$tmp/qwen3-$t.gguf" "$golden/qwen3-$t.gguf"' "qwen3 $t differs from llama.cpp's converter: $(cat "$tmp/err")"
done
# a Qwen3 reranker gets the converter's classifier head, not ported: refused
mkdir "$tmp/Qwen3-Reranker-mini" && cp "$tmp/qwen3"/* "$tmp/Qwen3-Reranker-mini/"
"$bin" convert "$tmp/Qwen3-Reranker-mini" "$tmp/rr.gguf" --gguf-pre qwen2 2>"$tmp/err"
rc=$?
check '[ $rc -eq 1 ] && grep -q "Qwen3 reranker" "$tmp/err" && [ ! -e "$tmp/rr.gguf" ]' "qwen3 reranker: $(cat "$tmp/err")"

for m in llama:llama-bpe qwen2:qwen2; do
    name=${m%%:*} pre=${m#*:}
    for t in f32 f16 bf16 q8_0 q4_0; do
        "$bin" convert "$tmp/$name" "$tmp/$name-$t.gguf" --gguf-type $t --gguf-pre $pre 2>"$tmp/err"
        rc=$?
        check '[ $rc -eq 0 ]' "convert $name $t: $(cat "$tmp/err")"
        check 'cmp "$tmp/$name-$t.gguf" "$golden/$name-$t.gguf"' "$name $t differs from llama.cpp's converter"
    done
done
# generate.py's build_mixtral: crucible moe of two fine-tunes (experts stacked, router F32, "2x36K"),
# in the classic layout of mergekit 0.1.4 (the converter cannot map 0.1.5's fused experts)
mkdir "$tmp/mx"
"$bin" synth "$tmp/mx/base" --arch llama --layers 2 --hidden 32 --intermediate 64 --heads 2 --kv-heads 1 --vocab 272 --seed 1
"$bin" synth "$tmp/mx/e1" --from "$tmp/mx/base" --delta-scale 0.1 --seed 2
"$bin" synth "$tmp/mx/e2" --from "$tmp/mx/base" --delta-scale 0.1 --seed 3
printf 'base_model: base\ngate_mode: random\ndtype: bfloat16\nexperts:\n  - source_model: e1\n  - source_model: e2\n' >"$tmp/mx/moe.yml"
(cd "$tmp/mx" && "$bin" moe moe.yml "$tmp/mixtral" --quiet --mergekit-version 0.1.4)
for t in bf16 q8_0 q4_0; do
    "$bin" convert "$tmp/mixtral" "$tmp/mixtral-$t.gguf" --gguf-type $t --gguf-pre llama-bpe 2>"$tmp/err"
    check 'cmp "$tmp/mixtral-$t.gguf" "$golden/mixtral-$t.gguf"' "mixtral $t differs from llama.cpp's converter: $(cat "$tmp/err")"
done
# generate.py's build_qwen_moe: Qwen2MoeModel's path (spec/gguf.md §11 item 4): experts stacked down,
# gate, up; qwen2moe's shared expert (ffn_*_shexp) and its [1, H] gate (ffn_gate_inp_shexp, F32 like
# the router); expert_feed_forward_length and expert_shared_feed_forward_length; qwen3moe's q/k norms
qmoe() {   # kind synth-args...: base, e1, e2 and the moe config in $tmp/src-kind
    local k=$1; shift
    "$bin" synth "$tmp/src-$k/base" "$@" --seed 1 >/dev/null
    "$bin" synth "$tmp/src-$k/e1" --from "$tmp/src-$k/base" --delta-scale 0.1 --seed 2 >/dev/null
    "$bin" synth "$tmp/src-$k/e2" --from "$tmp/src-$k/base" --delta-scale 0.1 --seed 3 >/dev/null
    printf 'base_model: base\ngate_mode: random\ndtype: bfloat16\nexperts:\n  - source_model: e1\n  - source_model: e2\n' >"$tmp/src-$k/moe.yml"
}
qmoe qwen2moe --arch qwen2 --layers 2 --hidden 32 --intermediate 64 --heads 4 --kv-heads 2 --vocab 272
printf 'architecture: qwen\nexperts_per_token: 1\nshared_experts:\n  - source_model: base\n    residual_scale: 0.5\n' >>"$tmp/src-qwen2moe/moe.yml"
qmoe qwen3moe --arch qwen3 --layers 2 --hidden 32 --intermediate 32 --heads 2 --kv-heads 1 --vocab 272
printf 'experts_per_token: 1\n' >>"$tmp/src-qwen3moe/moe.yml"
for k in qwen2moe:"bf16 q8_0 q4_0" qwen3moe:"bf16 q8_0"; do
    name=${k%%:*}
    (cd "$tmp/src-$name" && "$bin" moe moe.yml "$tmp/$name" --quiet --moe-layout classic)
    cp "$tmp/qwen2/tokenizer_config.json" "$tmp/$name/"
    for t in ${k#*:}; do
        "$bin" convert "$tmp/$name" "$tmp/$name-$t.gguf" --gguf-type $t --gguf-pre qwen2 2>"$tmp/err"
        check 'cmp "$tmp/$name-$t.gguf" "$golden/$name-$t.gguf"' "$name $t differs from llama.cpp's converter: $(cat "$tmp/err")"
    done
done
# transformers 5's fused experts (crucible moe's default for qwen3 under 0.1.5): the converter splits
# gate_up_proj into gate and up and passes down_proj whole, giving the per-expert layout's file
mkdir "$tmp/fused"
(cd "$tmp/src-qwen3moe" && "$bin" moe moe.yml "$tmp/fused/qwen3moe" --quiet)
check 'grep -q "model.layers.1.mlp.experts.gate_up_proj" "$tmp/fused/qwen3moe/model.safetensors.index.json"' "qwen3moe: not the fused layout"
cp "$tmp/qwen2/tokenizer_config.json" "$tmp/fused/qwen3moe/"
for t in bf16 q8_0; do
    "$bin" convert "$tmp/fused/qwen3moe" "$tmp/fused/$t.gguf" --gguf-type $t --gguf-pre qwen2 2>"$tmp/err"
    check 'cmp "$tmp/fused/$t.gguf" "$golden/qwen3moe-$t.gguf"' "fused qwen3moe $t differs from llama.cpp's converter: $(cat "$tmp/err")"
done
# a dense MLP in a Qwen MoE (mlp_only_layers): the converter has no ffn_gate/up/down for qwen3moe
mkdir "$tmp/dense-moe" && cp "$tmp/qwen3"/* "$tmp/dense-moe/"
sed -i 's/"Qwen3ForCausalLM"/"Qwen3MoeForCausalLM"/' "$tmp/dense-moe/config.json"
"$bin" convert "$tmp/dense-moe" "$tmp/dense-moe.gguf" --gguf-pre qwen2 2>"$tmp/err"
rc=$?
check '[ $rc -eq 1 ] && grep -q "tensor .model.layers.0.mlp.down_proj.weight. has no GGUF name for qwen3moe" "$tmp/err" && [ ! -e "$tmp/dense-moe.gguf" ]' "dense layer in a qwen3moe: rc $rc $(cat "$tmp/err")"
out=$("$bin" inspect "$golden/qwen2moe-q8_0.gguf" 2>&1)
check 'grep -q "^qwen2moe.expert_shared_feed_forward_length  UINT32  64" <<<"$out" && grep -q "^blk.1.ffn_gate_inp_shexp.weight *F32 *{32, 1}" <<<"$out" && grep -q "^blk.0.ffn_down_exps.weight *Q8_0 *{64, 32, 2}" <<<"$out"' "qwen2moe golden: $out"

# q4_0 with tied embeddings: token_embd is the output matrix, kept in Q8_0 (spec/gguf.md 7.5)
"$bin" synth "$tmp/llama-tied" --arch llama --layers 2 --hidden 64 --intermediate 64 --heads 2 --kv-heads 1 --vocab 272 --tied
"$bin" convert "$tmp/llama-tied" "$tmp/llama-tied-q4_0.gguf" --gguf-type q4_0 --gguf-pre llama-bpe 2>"$tmp/err"
check 'cmp "$tmp/llama-tied-q4_0.gguf" "$golden/llama-tied-q4_0.gguf"' "tied llama q4_0 differs from the golden: $(cat "$tmp/err")"
check '[ -z "$(ls "$tmp"/*.crucible-tmp-* 2>/dev/null)" ]' "temporary files left"
# the default type is the converter's auto: bf16 for synth's bf16 weights
"$bin" convert "$tmp/llama" "$tmp/auto.gguf" --gguf-pre llama-bpe 2>"$tmp/err"
check 'cmp "$tmp/auto.gguf" "$golden/llama-bf16.gguf"' "default --gguf-type auto: $(cat "$tmp/err")"

# SentencePiece (spec/gguf.md 4.3): generate.py's llama-spm, tokenizer.model (spm/) beside synth's
# tokenizer.json; tokenizer.ggml.pre is "default" without --gguf-pre and no hash is taken
"$bin" synth "$tmp/llama-spm" --arch llama --layers 2 --hidden 32 --intermediate 48 --heads 2 --kv-heads 1 --vocab 304
cp "$golden/spm/tokenizer.model" "$tmp/llama-spm/"
# generate.py's SPM_TOKENIZER_CONFIG and SPM_ADDED_TOKENS
cat >"$tmp/llama-spm/tokenizer_config.json" <<'JSON'
{
  "add_bos_token": true,
  "add_eos_token": false,
  "add_prefix_space": true,
  "added_tokens_decoder": {
    "0": {"content": "<unk>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false, "special": true},
    "1": {"content": "<s>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false, "special": true},
    "2": {"content": "</s>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false, "special": true},
    "300": {"content": "<|im_end|>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false, "special": false},
    "302": {"content": "\u2581hello\u2581world", "lstrip": false, "normalized": true, "rstrip": false, "single_word": false, "special": false},
    "310": {"content": "<far>", "special": true}
  },
  "bos_token": "<s>",
  "chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}",
  "clean_up_tokenization_spaces": false,
  "eos_token": "</s>",
  "model_max_length": 2048,
  "pad_token": "<unk>",
  "tokenizer_class": "LlamaTokenizer",
  "unk_token": "<unk>"
}
JSON
echo '{"<tool_call>": 301, "<beyond>": 400}' >"$tmp/llama-spm/added_tokens.json"
for t in f16 q8_0; do
    "$bin" convert "$tmp/llama-spm" "$tmp/llama-spm-$t.gguf" --gguf-type $t 2>"$tmp/err"
    check 'cmp "$tmp/llama-spm-$t.gguf" "$golden/llama-spm-$t.gguf"' "llama-spm $t differs from llama.cpp's converter: $(cat "$tmp/err")"
done
# a malformed tokenizer.model is refused naming the file and the byte
head -c 100 "$golden/spm/tokenizer.model" >"$tmp/llama-spm/tokenizer.model"
"$bin" convert "$tmp/llama-spm" "$tmp/bad-spm.gguf" 2>"$tmp/err"
rc=$?
check '[ $rc -eq 1 ] && grep -q "llama-spm/tokenizer.model: not a SentencePiece model: .* at byte" "$tmp/err" && [ ! -e "$tmp/bad-spm.gguf" ]' "truncated tokenizer.model: $(cat "$tmp/err")"

# LlamaHf (spec/gguf.md 4.3): a byte-fallback BPE tokenizer.json (generate.py's llama-hf fixture), no
# tokenizer.model: "llama" vocabulary, pre "default" without --gguf-pre
"$bin" synth "$tmp/llama-hf" --arch llama --layers 2 --hidden 32 --intermediate 48 --heads 2 --kv-heads 1 --vocab 272
cp "$golden/llama-hf/tokenizer.json" "$tmp/llama-hf/"
"$bin" convert "$tmp/llama-hf" "$tmp/llama-hf-f16.gguf" --gguf-type f16 2>"$tmp/err"
check 'cmp "$tmp/llama-hf-f16.gguf" "$golden/llama-hf-f16.gguf"' "llama-hf f16 differs from llama.cpp's converter: $(cat "$tmp/err")"
# a tokenizer class transformers may rebuild the tokenizer for is refused by name
sed -i 's/PreTrainedTokenizerFast/LlamaTokenizerFast/' "$tmp/llama-hf/tokenizer_config.json"
"$bin" convert "$tmp/llama-hf" "$tmp/bad-hf.gguf" 2>"$tmp/err"
rc=$?
check '[ $rc -eq 1 ] && grep -q "LlamaHf path) with tokenizer_class LlamaTokenizerFast" "$tmp/err" && [ ! -e "$tmp/bad-hf.gguf" ]' "LlamaHf with another tokenizer class: $(cat "$tmp/err")"

# llama3 rope (spec/gguf.md 6.5): rope_freqs.weight, first, from torch's f32 arithmetic; head dim 16 keeps
# every factor on torch's scalar pow (libm powf), two of them in the smooth band
rope3='"rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 64, "rope_type": "llama3"},'
"$bin" synth "$tmp/llama-rope3" --arch llama --layers 2 --hidden 32 --intermediate 48 --heads 2 --kv-heads 1 --vocab 272
sed -i "s/\"rope_scaling\": null,/$rope3/" "$tmp/llama-rope3/config.json"
"$bin" convert "$tmp/llama-rope3" "$tmp/llama-rope3-f32.gguf" --gguf-type f32 --gguf-pre llama-bpe 2>"$tmp/err"
check 'cmp "$tmp/llama-rope3-f32.gguf" "$golden/llama-rope3-f32.gguf"' "llama3 rope f32 differs from llama.cpp's converter: $(cat "$tmp/err")"
# Llama 3.2 1B's rope (rope_parameters, theta 500000, head dim 64): smooth-band factors on torch's SIMD pow,
# accepted because check_rope_pow.py found it equal to powf for this (theta, dim)
rope32='"rope_parameters": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 8192, "rope_theta": 500000.0, "rope_type": "llama3"},'
"$bin" synth "$tmp/llama-rope3-64" --arch llama --layers 1 --hidden 128 --intermediate 48 --heads 2 --kv-heads 1 --vocab 272
sed -i "s/\"rope_scaling\": null,/$rope32/" "$tmp/llama-rope3-64/config.json"
"$bin" convert "$tmp/llama-rope3-64" "$tmp/llama-rope3-64-f16.gguf" --gguf-type f16 --gguf-pre llama-bpe 2>"$tmp/err"
check 'cmp "$tmp/llama-rope3-64-f16.gguf" "$golden/llama-rope3-64-f16.gguf"' "llama3 rope head dim 64 differs from llama.cpp's converter: $(cat "$tmp/err")"
# head dim 32: all 16 factors on torch's SIMD pow (SLEEF), not reproduced; a factor in the smooth band is refused
"$bin" synth "$tmp/rope3-simd" --arch llama --layers 1 --hidden 64 --intermediate 48 --heads 2 --kv-heads 1 --vocab 272
sed -i "s/\"rope_scaling\": null,/$rope3/" "$tmp/rope3-simd/config.json"
"$bin" convert "$tmp/rope3-simd" "$tmp/rope3-simd.gguf" --gguf-pre llama-bpe 2>"$tmp/err"
rc=$?
check '[ $rc -eq 1 ] && grep -q "llama3 rope factor 2 of 16 (rope_theta 10000, head dim 32) falls between the bands" "$tmp/err" && [ ! -e "$tmp/rope3-simd.gguf" ]' "llama3 rope on the SIMD path: $(cat "$tmp/err")"

# synth's tokenizer has no pre-tokenizer hash llama.cpp knows: refused without --gguf-pre
"$bin" convert "$tmp/llama" "$tmp/x.gguf" 2>"$tmp/err"
rc=$?
check '[ $rc -eq 1 ] && grep -q "not one llama.cpp.s converter recognises (chkhsh 7d572d1dd72e0a834ce8be06261538ae348bc122aa9683accc44c5c6596abcd5); pass --gguf-pre" "$tmp/err" && [ ! -e "$tmp/x.gguf" ]' "no pre: $(cat "$tmp/err")"
"$bin" convert "$tmp/llama" "$tmp/x.gguf" --gguf-pre nonesuch 2>"$tmp/err"
rc=$?
check '[ $rc -eq 2 ] && grep -q "not a pre-tokenizer llama.cpp knows" "$tmp/err"' "unknown --gguf-pre: $(cat "$tmp/err")"
"$bin" convert "$tmp/llama" "$tmp/x.gguf" --gguf-type q4_k --gguf-pre llama-bpe 2>"$tmp/err"
rc=$?
check '[ $rc -eq 2 ] && grep -q "gguf-type .q4_k. (auto, f32, f16, bf16, q8_0, q4_0)" "$tmp/err"' "q4_k refused: $(cat "$tmp/err")"

# never overwrite without --force; never write into an input
"$bin" convert "$tmp/llama" "$tmp/llama-f16.gguf" --gguf-pre llama-bpe --gguf-type f32 2>"$tmp/err"
rc=$?
check '[ $rc -eq 1 ] && grep -q "exists (use --force" "$tmp/err" && cmp -s "$tmp/llama-f16.gguf" "$golden/llama-f16.gguf"' "overwrite without --force: $(cat "$tmp/err")"
"$bin" convert "$tmp/llama" "$tmp/llama-f16.gguf" --gguf-pre llama-bpe --gguf-type f32 --force 2>"$tmp/err"
rc=$?
check '[ $rc -eq 0 ] && cmp -s "$tmp/llama-f16.gguf" "$golden/llama-f32.gguf"' "--force replaces: $(cat "$tmp/err")"
"$bin" convert "$tmp/llama" "$tmp/llama/out.gguf" --gguf-pre llama-bpe 2>"$tmp/err"
rc=$?
check '[ $rc -eq 1 ] && [ ! -e "$tmp/llama/out.gguf" ]' "output inside the input directory: $(cat "$tmp/err")"

# a model card as crucible merge writes it and a versioned directory name:
# general.base_model.*, general.tags and the name heuristics (generate.py's MERGE_README)
m="$tmp/Llama-3-merge-8B-v0.2"
cp -r "$tmp/llama" "$m"
cat >"$m/README.md" <<'MD'
---
base_model:
- org/Name-7B-v0.1
- mistralai/Mistral-7B-Instruct-v0.2
library_name: transformers
tags:
- merge
- crucible
- mergekit

---
# Llama-3-merge-8B-v0.2

A merge.
MD
"$bin" convert "$m" "$tmp/merge.gguf" --gguf-pre llama-bpe --gguf-type f16 2>"$tmp/err"
rc=$?
check '[ $rc -eq 0 ] && cmp "$tmp/merge.gguf" "$golden/Llama-3-merge-8B-v0.2-f16.gguf"' "model card case: $(cat "$tmp/err")"

# front matter whose handling is not ported is refused by name, not guessed
printf -- '---\nmodel_name: Foo\n---\n' >"$m/README.md"
"$bin" convert "$m" "$tmp/y.gguf" --gguf-pre llama-bpe 2>"$tmp/err"
rc=$?
check '[ $rc -eq 1 ] && grep -q "front matter key .model_name. is read by llama.cpp" "$tmp/err" && [ ! -e "$tmp/y.gguf" ]' "unported card key: $(cat "$tmp/err")"
printf -- '---\nbase_model: {a: b}\n---\n' >"$m/README.md"
"$bin" convert "$m" "$tmp/y.gguf" --gguf-pre llama-bpe 2>"$tmp/err"
rc=$?
check '[ $rc -eq 1 ] && grep -q "not a plain string value" "$tmp/err"' "YAML beyond the card shape: $(cat "$tmp/err")"

# inspect reads GGUF files, with ggml's loader rules checked first
out=$("$bin" inspect "$golden/llama-q8_0.gguf" 2>"$tmp/err")
rc=$?
check '[ $rc -eq 0 ] && grep -q "^GGUF v3: 27 keys, 21 tensors, alignment 32, data at byte 6208" <<<"$out"' "inspect header: $(head -1 <<<"$out") $(cat "$tmp/err")"
check 'grep -q "^tokenizer.ggml.tokens  ARRAY\[STRING\] 272  \[\"<unk>\", \"<s>\"" <<<"$out"' "inspect array line"
check 'grep -q "^blk.0.ffn_down.weight  *F16  *{48, 32}  *3072  *24832$" <<<"$out"' "inspect tensor row"
check 'grep -q "^total: 21 tensors, 32928 parameters, 38336 bytes of data, file 44544 bytes$" <<<"$out"' "inspect total: $(tail -1 <<<"$out")"
cp "$golden/llama-q8_0.gguf" "$tmp/bad.gguf"
truncate -s -1 "$tmp/bad.gguf"
"$bin" inspect "$tmp/bad.gguf" >/dev/null 2>"$tmp/err"
rc=$?
check '[ $rc -eq 1 ] && grep -q "the tensor data needs 38336 bytes from byte 6208; the file has 44543" "$tmp/err"' "truncated GGUF: $(cat "$tmp/err")"
cp "$golden/llama-q8_0.gguf" "$tmp/bad.gguf"
printf '\002' | dd of="$tmp/bad.gguf" bs=1 seek=4 conv=notrunc 2>/dev/null
"$bin" inspect "$tmp/bad.gguf" >/dev/null 2>"$tmp/err"
rc=$?
check '[ $rc -eq 1 ] && grep -q "GGUF version 2 (obsolete); crucible reads version 3" "$tmp/err"' "version 2: $(cat "$tmp/err")"
printf '\000\000\000\003' | dd of="$tmp/bad.gguf" bs=1 seek=4 conv=notrunc 2>/dev/null
"$bin" inspect "$tmp/bad.gguf" >/dev/null 2>"$tmp/err"
rc=$?
check '[ $rc -eq 1 ] && grep -q "a big-endian file" "$tmp/err"' "big-endian: $(cat "$tmp/err")"
cp "$golden/llama-q8_0.gguf" "$tmp/bad.gguf"
printf '\377' | dd of="$tmp/bad.gguf" bs=1 seek=31 conv=notrunc 2>/dev/null   # the first key's length: 2^63+...
"$bin" inspect "$tmp/bad.gguf" >/dev/null 2>"$tmp/err"
rc=$?
check '[ $rc -eq 1 ] && grep -q "a key at byte 24 is .* bytes long (limit 1 GiB)" "$tmp/err"' "huge string length: $(cat "$tmp/err")"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
