#!/usr/bin/env bash
# run.sh — the demo behind `zig build demo`: generates a tiny Llama-shaped
# base model and two fine-tunes with `crucible synth`, merges them with TIES
# and lists the merged model. Output under demo-out/ in the repository.
# usage: examples/demo/run.sh CRUCIBLE_BIN
set -euo pipefail
bin=$1
out=demo-out
rm -rf "$out"
mkdir -p "$out/models"
shape=(--arch llama --layers 4 --hidden 64 --intermediate 176 --heads 4 --kv-heads 2 --vocab 320 --dtype bfloat16)
"$bin" synth "$out/models/base" "${shape[@]}" --seed 1
"$bin" synth "$out/models/ft-a" --from "$out/models/base" --delta-scale 0.02 --seed 2
"$bin" synth "$out/models/ft-b" --from "$out/models/base" --delta-scale 0.02 --seed 3
"$bin" plan examples/demo/ties.yml --models-dir "$out/models"
"$bin" merge examples/demo/ties.yml "$out/merged" --models-dir "$out/models"
"$bin" inspect "$out/merged"
echo "demo: merged model written to $out/merged"
