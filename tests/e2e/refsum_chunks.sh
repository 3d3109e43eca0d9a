#!/usr/bin/env bash
# refsum_chunks.sh — the library-order reductions (RSUM_NP, RSSQ_BLAS,
# RSSQ_TORCH fed in element order chunk by chunk, RSUM_TORCH in block
# partials: vm/refsum.c) over chunks run in parallel: on tensors of many
# chunks (256x512 f32 = 8 chunks of 16384; NumPy's leaves straddle chunk
# boundaries) the merge bytes must not depend on the thread count.
# usage: refsum_chunks.sh CRUCIBLE_BIN
set -u
bin=$1
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }

dir=$(mktemp -d /tmp/crucible-refsum-e2e-XXXXXX)
trap 'rm -rf "$dir"' EXIT
m=$dir/models
mkdir -p "$m"
"$bin" synth "$m/base" --arch llama --layers 1 --hidden 256 --intermediate 512 --heads 4 --kv-heads 2 \
    --vocab 96 --dtype float32 --seed 1 >/dev/null || bad synth
for s in 2 3 4; do
    "$bin" synth "$m/x$s" --from "$m/base" --delta-scale 0.05 --seed $s >/dev/null || bad synth
done

cat > "$dir/slerp.yml" <<'Y'
models: [{model: base}, {model: x2}]
base_model: base
parameters: {t: 0.3}
merge_method: slerp
Y
cat > "$dir/ties.yml" <<'Y'
models:
  - {model: x2, parameters: {weight: 1.0, density: 0.2}}
  - {model: x3, parameters: {weight: 0.5, density: 0.2}}
base_model: base
parameters: {rescale: true}
merge_method: ties
Y
cat > "$dir/multislerp.yml" <<'Y'
models:
  - {model: x2, parameters: {weight: 1.0}}
  - {model: x3, parameters: {weight: 2.0}}
  - {model: x4, parameters: {weight: 0.5}}
merge_method: multislerp
Y
cat > "$dir/model_stock.yml" <<'Y'
models: [{model: x2}, {model: x3}, {model: x4}]
base_model: base
parameters: {filter_wise: true}
merge_method: model_stock
Y
for r in slerp ties multislerp model_stock; do
    (cd "$m" && "$bin" merge "$dir/$r.yml" "$dir/$r-1" --threads 1 >/dev/null 2>"$dir/err") || { bad "$r --threads 1: $(cat "$dir/err")"; continue; }
    (cd "$m" && "$bin" merge "$dir/$r.yml" "$dir/$r-4" --threads 4 >/dev/null 2>"$dir/err") || { bad "$r --threads 4: $(cat "$dir/err")"; continue; }
    same=1
    for f in "$dir/$r-1"/*.safetensors; do
        cmp -s "$f" "$dir/$r-4/$(basename "$f")" || same=0
    done
    if [ $same = 1 ]; then ok; else bad "$r: bytes differ between 1 and 4 threads"; fi
done
# mergekit 0.1.5's slerp reduces chunks of 2^20 elements (RSUM_TORCH_CHUNKS,
# RSSQ_TORCH_CHUNKS, each 2^20-chunk in element order): an embedding of
# 1030 x 1024 = 2^20 + 6144 elements spans two; the bytes must not depend
# on the threads, the ISA or the budget
"$bin" synth "$m/big" --arch llama --layers 1 --hidden 1024 --intermediate 16 --heads 4 --kv-heads 2 \
    --vocab 1030 --dtype bfloat16 --seed 5 >/dev/null || bad synth
"$bin" synth "$m/big2" --from "$m/big" --delta-scale 0.05 --seed 6 >/dev/null || bad synth
cat > "$dir/big.yml" <<'Y'
models: [{model: big}, {model: big2}]
base_model: big
parameters: {t: 0.4}
merge_method: slerp
Y
for run in "1 avx2" "4 avx2" "3 scalar"; do
    set -- $run
    (cd "$m" && CRUCIBLE_ISA=$2 "$bin" merge "$dir/big.yml" "$dir/big-$1" --threads $1 --mergekit-version 0.1.5 \
        >/dev/null 2>"$dir/err") || bad "big slerp --threads $1 ($2): $(cat "$dir/err")"
done
for r in 4 3; do
    same=1
    for f in "$dir/big-1"/*.safetensors; do cmp -s "$f" "$dir/big-$r/$(basename "$f")" || same=0; done
    if [ $same = 1 ]; then ok; else bad "chunked slerp: bytes differ between runs 1 and $r"; fi
done
(cd "$m" && "$bin" explain "$dir/big.yml" --mergekit-version 0.1.5 >"$dir/explain" 2>&1) || bad "explain: $(cat "$dir/explain")"
if grep -q rssq_torch_chunks "$dir/explain" && grep -q rsum_torch_chunks "$dir/explain"; then ok
else bad "chunked slerp: the program has no rssq/rsum_torch_chunks"; fi
# the kernels holding them run chunks of 2^20, each reducing its own
# 2^20-chunks with no turn between chunks (compiler/emit.c kfinish); the
# blend that stores keeps small chunks
chunks=$(awk '/ kernel /{ch=$0; sub(/.*chunks of /, "", ch); sub(/,.*/, "", ch)} /torch_chunks/{print ch}' "$dir/explain" | sort -u | tr '\n' ' ')
if [ "$chunks" = "1048576 " ]; then ok; else bad "chunked sums run in chunks of: $chunks(want 1048576)"; fi
if awk '/ kernel /{ch=$0; sub(/.*chunks of /, "", ch); sub(/,.*/, "", ch); big = /1030x1024/} / store / && big {print ch}' "$dir/explain" | grep -qv '^16384$'; then
    bad "a storing kernel of the chunked slerp runs chunks other than 16384"
else ok; fi
# under --max-memory (10M: the 2^20-chunk kernels still hold their inputs)
# the bytes are the same, at 1 and 2 threads
for t in 1 2; do
    (cd "$m" && "$bin" merge "$dir/big.yml" "$dir/big-b$t" --threads $t --max-memory 10M --mergekit-version 0.1.5 \
        >/dev/null 2>"$dir/err") || bad "big slerp --max-memory 10M --threads $t: $(cat "$dir/err")"
    same=1
    for f in "$dir/big-1"/*.safetensors; do cmp -s "$f" "$dir/big-b$t/$(basename "$f")" || same=0; done
    if [ $same = 1 ]; then ok; else bad "chunked slerp under --max-memory 10M: bytes differ (threads $t)"; fi
done
echo "$pass passed, $fail failed"
[ $fail = 0 ]
