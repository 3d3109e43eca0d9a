#!/usr/bin/env bash
# make_seeds.sh — (re)writes the hand-made seed corpora of the fuzz targets
# under tests/fuzz/corpus/ (fuzz_crb's come from seed_crb.c). Each seed is a
# valid input or one rule away from valid. Run from the repository root.
set -eu
c=tests/fuzz/corpus
mkdir -p $c/fuzz_safetensors $c/fuzz_index $c/fuzz_config_json $c/fuzz_yaml

# st FILE JSON DATA_BYTES: safetensors file, header padded to 8 with spaces
st() {
    local json=$2 n pad len
    n=${#json}; pad=$(( (8 - n % 8) % 8 )); len=$((n + pad))
    { printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x\\x00\\x00\\x00\\x00' $((len & 255)) $((len >> 8 & 255)) $((len >> 16 & 255)) $((len >> 24 & 255)))"
      printf '%s' "$json"; printf '%*s' "$pad" ''; head -c "$3" /dev/zero; } > "$1"
}
s=$c/fuzz_safetensors
st $s/valid-f32.st '{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}' 16
st $s/valid-mixed-meta.st '{"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[3],"data_offsets":[0,6]},"b":{"dtype":"I64","shape":[1],"data_offsets":[6,14]},"c":{"dtype":"F8_E4M3","shape":[2,1],"data_offsets":[14,16]}}' 16
st $s/valid-empty.st '{}' 0
st $s/valid-scalar-zero.st '{"s":{"dtype":"F16","shape":[],"data_offsets":[0,2]},"z":{"dtype":"F32","shape":[0,4],"data_offsets":[2,2]}}' 2
st $s/gap.st '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}' 12
st $s/overlap.st '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}' 8
st $s/shape-mismatch.st '{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}' 8
st $s/duplicate.st '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}' 8
st $s/bad-dtype.st '{"a":{"dtype":"F31","shape":[1],"data_offsets":[0,4]}}' 4
st $s/trailing-data.st '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}' 8
st $s/huge-shape.st '{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}}' 4
st $s/negative.st '{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}' 4
st $s/meta-not-string.st '{"__metadata__":{"k":1},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}' 1
st $s/not-object.st '[1,2,3]' 0
# control characters in the header's strings (refused: a NUL cut names short)
st $s/escaped-ctl-name.st '{"x\u001b[31m":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}' 4
st $s/escaped-nul-name.st '{"a\u0000b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}' 4
printf '\x40\0\0\0\0\0\0\0{"a\0b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}        \0\0\0\0' > $s/raw-nul-name.st
printf '\x40\0\0\0\0\0\0\0{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\0\0\0\0' > $s/ctl-padding.st
printf '\xff\xff\xff\xff\xff\xff\xff\xff{}' > $s/length-huge.st
printf '\x02\x00\x00\x00\x00\x00\x00\x00{' > $s/length-short.st
printf '\x01\x00\x00' > $s/tiny.st

i=$c/fuzz_index
printf '%s' '{"metadata":{"total_size":26},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00001-of-00002.safetensors","c":"model-00002-of-00002.safetensors"}}' > $i/valid.json
printf '%s' '{"weight_map":{"a":"model-00001-of-00002.safetensors"}}' > $i/subset.json
printf '%s' '{"weight_map":{"a":"model-00001-of-00002.safetensors","a":"model-00002-of-00002.safetensors"}}' > $i/duplicate.json
printf '%s' '{"weight_map":{"c":"model-00001-of-00002.safetensors"}}' > $i/wrong-shard.json
printf '%s' '{"weight_map":{"a":"../model-00001-of-00002.safetensors"}}' > $i/traversal.json
printf '%s' '{"weight_map":{"a":"missing.safetensors"}}' > $i/missing.json
printf '%s' '{"weight_map":{"a":7}}' > $i/not-string.json
printf '%s' '{"weight_map":[]}' > $i/not-object.json
printf '%s' '{"weight_map":{}}' > $i/empty.json
printf '%s' '{"weight_map":{"a":"config.json"}}' > $i/not-safetensors.json
printf '%s' '{"weight_map":{"a":"model-00001-of-00002.safetensors"' > $i/truncated.json
printf '{"weight_map":{"a\0zz":"model-00001-of-00002.safetensors"}}' > $i/raw-nul-key.json
printf '%s' '{"weight_map":{"a\u0000zz":"model-00001-of-00002.safetensors"}}' > $i/escaped-nul-key.json

j=$c/fuzz_config_json
printf '%s' '{"architectures":["LlamaForCausalLM"],"hidden_size":8,"num_hidden_layers":4,"torch_dtype":"bfloat16","vocab_size":32}' > $j/llama.json
printf '%s' '{"architectures":["Qwen2ForCausalLM"],"num_hidden_layers":4,"max_window_layers":28,"layer_types":["full_attention","sliding_attention"],"torch_dtype":"float32","dtype":"float32","rope_scaling":null,"x":1e400}' > $j/qwen2.json
printf '%s' '{"architectures":["Gemma3ForConditionalGeneration"],"text_config":{"num_hidden_layers":4,"layer_types":["a","b","c","d"]},"vision_config":{"num_hidden_layers":2}}' > $j/nested.json
printf '%s' '{"num_hidden_layers":-3,"hidden_size":1.5,"vocab_size":"32","n_layer":99999999999999999999}' > $j/odd-numbers.json
printf '%s' '{"text_config":5}' > $j/bad-parent.json
printf '%s' '[]' > $j/array.json
printf '%s' '{"a":' > $j/truncated.json
printf '%s' '{"a":"\ud800","b":"\u0000x"}' > $j/escapes.json
printf '' > $j/empty.json

y=$c/fuzz_yaml
for f in examples/*.yml; do
    sed -e 's/layer_range: \[0, 32\]/layer_range: [0, 4]/' "$f" > "$y/$(basename "$f")"
done
for f in examples/invalid/*.yml; do cp "$f" "$y/invalid-$(basename "$f")"; done
printf 'a: &a [*a]\n' > $y/self-alias.yml
printf 'models:\n  - model: mistral-ft-a\n    parameters: {weight: 1}\nmerge_method: linear\ndtype: float32\n' > $y/linear-min.yml
printf 'merge_method: passthrough\nslices:\n  - sources: [{model: mistral-ft-a, layer_range: [0, 2]}]\n  - sources: [{model: mistral-ft-b, layer_range: [2, 4]}]\n---\nmerge_method: linear\nmodels: [{model: x}]\n' > $y/two-stages.yml
