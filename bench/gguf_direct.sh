#!/usr/bin/env bash
# gguf_direct.sh — `merge CONFIG OUT.gguf` against the two-step path `merge
# CONFIG OUT` then `convert OUT OUT.gguf` (spec/gguf.md §8, "Measured"):
# linear and TIES of three synthetic Llama models (bf16), for f16, q8_0 and
# q4_0; wall time (median of REPS), the peak disk the output takes, and
# that both paths give the same bytes (a line "DIFF" says otherwise).
# Usage: bench/gguf_direct.sh CRUCIBLE_BIN WORKDIR [REPS]
set -u
B=$(realpath "$1"); W=${2:?usage: $0 CRUCIBLE_BIN WORKDIR [REPS]}; REPS=${3:-3}
mkdir -p "$W" && cd "$W" || exit 1
big=(--arch llama --layers 6 --hidden 768 --intermediate 2048 --heads 12 --kv-heads 4 --vocab 16000)
[ -d base ] || { "$B" synth base "${big[@]}" --seed 1 >/dev/null; "$B" synth ft1 --from base --delta-scale 0.1 --seed 2 >/dev/null
                 "$B" synth ft2 --from base --delta-scale 0.1 --seed 3 >/dev/null; }
cat >linear.yml <<'YML'
merge_method: linear
models:
  - model: ft1
    parameters: {weight: 0.6}
  - model: ft2
    parameters: {weight: 0.4}
dtype: bfloat16
YML
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
cat base/*.safetensors ft1/*.safetensors ft2/*.safetensors >/dev/null   # warm the page cache
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }
med() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '%-7s %-5s %9s %9s %9s %7s %12s %12s\n' method type merge_s convert_s direct_s ratio disk_2step disk_direct
for m in linear ties; do
    for ty in f16 q8_0 q4_0; do
        M= C= D=
        for rep in $(seq "$REPS"); do
            rm -rf two two.gguf one.gguf
            M+=" $(t "$B" merge $m.yml two --quiet)"
            C+=" $(t "$B" convert two two.gguf --gguf-type $ty --gguf-pre llama-bpe)"
            disk2=$(( $(du -sb two | cut -f1) + $(stat -c %s two.gguf) ))
            D+=" $(t "$B" merge $m.yml one.gguf --gguf-type $ty --gguf-pre llama-bpe --quiet)"
            disk1=$(stat -c %s one.gguf)
            # the converter derives general.name from the name: compare under the same one
            mv one.gguf two-direct.gguf; rm -rf two.gguf
            "$B" merge $m.yml two.gguf --gguf-type $ty --gguf-pre llama-bpe --quiet
            "$B" convert two two-conv.gguf --gguf-type $ty --gguf-pre llama-bpe --force >/dev/null 2>&1
            cmp -s two.gguf two-conv.gguf || echo "DIFF $m $ty"
            rm -f two-direct.gguf two-conv.gguf two.gguf
        done
        m1=$(echo $M | med); c1=$(echo $C | med); d1=$(echo $D | med)
        printf '%-7s %-5s %9.2f %9.2f %9.2f %7.2f %12d %12d\n' $m $ty "$m1" "$c1" "$d1" \
            "$(echo "$d1 / ($m1 + $c1)" | bc -l)" "$disk2" "$disk1"
    done
done
echo "load $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
