#!/usr/bin/env bash
# parts.sh — wall time of a single `run` against partitioned runs (spec/parts.md,
# "Measured"): TIES of three synthetic Llama models, 4 output shards; 5
# repetitions, medians. Every parts directory must be identical to the
# single run's (a line "DIFF" says otherwise).
# Usage: bench/parts.sh CRUCIBLE_BIN WORKDIR
set -u
B=$(realpath "$1"); W=${2:?usage: $0 CRUCIBLE_BIN WORKDIR}
mkdir -p "$W" && cd "$W" || exit 1
big=(--arch llama --layers 6 --hidden 768 --intermediate 2048 --heads 12 --kv-heads 4 --vocab 32000 --dtype bfloat16)
[ -d m/base ] || { "$B" synth m/base "${big[@]}" --seed 1 >/dev/null; "$B" synth m/ft --from m/base --delta-scale 0.01 --seed 2 >/dev/null
                   "$B" synth m/ft2 --from m/base --delta-scale 0.02 --seed 3 >/dev/null; }
cat >ties.yml <<'YML'
merge_method: ties
base_model: base
models:
  - model: ft
    parameters: {weight: 0.7, density: 0.5}
  - model: ft2
    parameters: {weight: 0.5, density: 0.3}
parameters: {normalize: true}
dtype: bfloat16
YML
"$B" compile ties.yml -o p.crb --models-dir m --out-shard-size 40M --force || exit 1
cat m/*/model*.safetensors >/dev/null   # warm the page cache
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }
declare -A R
for rep in 1 2 3 4 5; do
    rm -rf o*; mkdir -p o1 o2 o2t o4 os o5
    R[single]+=" $(t "$B" run p.crb o1/out --models-dir m --quiet)"
    R[single_t1]+=" $(t "$B" run p.crb os/out --models-dir m --quiet --threads 1)"
    R[p2]+=" $(t bash -c "for i in 1 2; do '$B' run p.crb o2/out --part \$i/2 --models-dir m --quiet & done; wait; '$B' assemble o2/out --quiet")"
    R[p2t1]+=" $(t bash -c "for i in 1 2; do '$B' run p.crb o2t/out --part \$i/2 --threads 1 --models-dir m --quiet & done; wait; '$B' assemble o2t/out --quiet")"
    R[p4x2t1]+=" $(t bash -c "seq 1 4 | xargs -P 2 -I{} '$B' run p.crb o4/out --part {}/4 --threads 1 --models-dir m --quiet; '$B' assemble o4/out --quiet")"
    a=$(t "$B" run p.crb o5/out --part 1/2 --models-dir m --quiet --threads 1)
    b=$(t "$B" run p.crb o5/out --part 2/2 --models-dir m --quiet --threads 1)
    R[serial_parts_t1]+=" $(echo "$a + $b" | bc)"
    for d in o2 o2t o4; do diff -r o1/out $d/out >/dev/null || echo "DIFF $d"; done
    echo "rep $rep load $(cut -d' ' -f1 /proc/loadavg)"
done
for k in single single_t1 p2 p2t1 p4x2t1 serial_parts_t1; do
    echo "$k median $(echo ${R[$k]} | tr ' ' '\n' | sort -n | sed -n 3p) s (all:${R[$k]})"
done
"$B" plan p.crb --part 1/2 | tail -4
