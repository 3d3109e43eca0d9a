#!/usr/bin/env bash
# verify.sh — shard hashes and `crucible verify` end to end: merge (one and
# three shards), moe and run of a .crb record hashes that verify accepts;
# a flipped byte, a deleted shard, a truncated shard, an index missing a
# tensor, a wrong total_size and a tampered hash are each reported naming
# the file; a mergekit-style output without hashes passes with a clear note
# (and fails with --require-hash).
# usage: tests/e2e/verify.sh CRUCIBLE_BIN
. "$(dirname "$0")/../support/e2e_lib.sh" verify "$1"

cd "$tmp" || exit 1
small=(--arch llama --layers 2 --hidden 32 --intermediate 64 --heads 4 --kv-heads 2 --vocab 300 --dtype bfloat16)
"$bin" synth base "${small[@]}" --seed 1 >/dev/null 2>&1
"$bin" synth ft --from base --delta-scale 0.1 --seed 2 >/dev/null 2>&1
cat >lin.yml <<YML
merge_method: linear
models:
  - model: base
    parameters: {weight: 0.3}
  - model: ft
    parameters: {weight: 0.7}
dtype: bfloat16
YML

# --- outputs carry hashes and verify accepts them
"$bin" merge lin.yml one --quiet 2>err; rc=$?
check '[ $rc -eq 0 ] && [ -f one/model.safetensors ] && [ -f one/model.safetensors.index.json ]' "single-shard merge writes an index: $(cat err)"
check 'grep -q "\"crucible_shard_xxh64\": {" one/model.safetensors.index.json' "index records hashes"
check 'grep -Eq "^      \"model.safetensors\": \"[0-9a-f]{16}\"$" one/model.safetensors.index.json' "hash of model.safetensors: $(cat one/model.safetensors.index.json | head -8)"
check 'grep -q "\"total_size\": " one/model.safetensors.index.json' "total_size kept"
out=$("$bin" verify one 2>&1); rc=$?
check '[ $rc -eq 0 ] && grep -q "one: ok (1 shard, 21 tensors, .*1 shard hash match" <<<"$out"' "verify one: rc $rc: $out"
"$bin" inspect one >/dev/null 2>&1; rc=$?; check '[ $rc -eq 0 ]' "inspect reads the single-shard output"

"$bin" merge lin.yml three --out-shard-size 30K --quiet; rc=$?
check '[ $rc -eq 0 ] && [ -f three/model-00003-of-00003.safetensors ]' "three-shard merge"
out=$("$bin" verify three 2>&1); rc=$?
check '[ $rc -eq 0 ] && grep -q "ok (3 shards, 21 tensors" <<<"$out" && grep -q "3 shard hashes match" <<<"$out"' "verify three: $out"
check '[ "$("$bin" verify three --quiet 2>&1)" = "" ]' "--quiet prints nothing on success"

# same program, same bytes: the recorded hashes are deterministic
"$bin" merge lin.yml three_again --out-shard-size 30K --threads 1 --quiet
check 'cmp -s three/model.safetensors.index.json three_again/model.safetensors.index.json' "hashes do not depend on threads"

# compile + run of a .crb
"$bin" compile lin.yml -o lin.crb --out-shard-size 30K 2>/dev/null && "$bin" run lin.crb ran --quiet; rc=$?
check '[ $rc -eq 0 ] && cmp -s three/model.safetensors.index.json ran/model.safetensors.index.json' "run of a .crb records the same hashes"
check '"$bin" verify ran >/dev/null 2>&1' "verify a run output"

# moe
cat >moe.yml <<YML
base_model: base
gate_mode: random
dtype: bfloat16
experts:
  - source_model: base
  - source_model: ft
YML
"$bin" moe moe.yml moe_out --quiet --i-understand-this-is-not-useful-without-training 2>err; rc=$?
check '[ $rc -eq 0 ] && grep -q crucible_shard_xxh64 moe_out/model.safetensors.index.json' "moe output records hashes: $(cat err)"
out=$("$bin" verify moe_out 2>&1); rc=$?
check '[ $rc -eq 0 ] && grep -q "1 shard hash match" <<<"$out"' "verify moe: $out"

# --- damage, one kind per copy
cp -r three flip
printf '\x5a' | dd of=flip/model-00002-of-00003.safetensors bs=1 seek=3000 conv=notrunc 2>/dev/null
out=$("$bin" verify flip 2>&1); rc=$?
check '[ $rc -eq 1 ] && grep -q "flip/model-00002-of-00003.safetensors: content hash mismatch" <<<"$out"' "flipped byte: $out"
check '! grep -q "model-00001\|model-00003" <<<"$out"' "only the damaged shard is named: $out"

cp -r three gone
rm gone/model-00003-of-00003.safetensors
out=$("$bin" verify gone 2>&1); rc=$?
check '[ $rc -eq 1 ] && grep -q "gone/model-00003-of-00003.safetensors: missing shard" <<<"$out"' "deleted shard: $out"

cp -r three short
truncate -s -7 short/model-00001-of-00003.safetensors
out=$("$bin" verify short 2>&1); rc=$?
check '[ $rc -eq 1 ] && grep -q "short/model-00001-of-00003.safetensors: file is truncated" <<<"$out"' "truncated shard: $out"

cp -r three unindexed
grep -v '^    "lm_head.weight": ' three/model.safetensors.index.json >unindexed/model.safetensors.index.json
out=$("$bin" verify unindexed 2>&1); rc=$?
check '[ $rc -eq 1 ] && grep -q "model-00001-of-00003.safetensors: tensor .lm_head.weight. is missing from the index" <<<"$out"' "index missing a tensor: $out"

cp -r three total
sed -i 's/"total_size": [0-9]*/"total_size": 12345/' total/model.safetensors.index.json
out=$("$bin" verify total 2>&1); rc=$?
check '[ $rc -eq 1 ] && grep -q "metadata.total_size is 12345" <<<"$out"' "wrong total_size: $out"

cp -r three tampered
sed -i -E 's/("model-00001-of-00003.safetensors": ")[0-9a-f]{16}"/\10000000000000000"/' tampered/model.safetensors.index.json
out=$("$bin" verify tampered 2>&1); rc=$?
check '[ $rc -eq 1 ] && grep -q "model-00001-of-00003.safetensors: content hash mismatch: the index records xxh64 0000000000000000" <<<"$out"' "tampered hash: $out"

cp -r one single_flip
printf '\x5a' | dd of=single_flip/model.safetensors bs=1 seek=5000 conv=notrunc 2>/dev/null
out=$("$bin" verify single_flip 2>&1); rc=$?
check '[ $rc -eq 1 ] && grep -q "single_flip/model.safetensors: content hash mismatch" <<<"$out"' "single shard flipped: $out"

# --- outputs without hashes (mergekit writes none)
cp -r three mk
sed -i -e '/"crucible_shard_xxh64"/,/^    }$/d' -e 's/"mergekit_version": "\(0\.1\.[45]\)",/"mergekit_version": "\1"/' mk/model.safetensors.index.json
check '! grep -q crucible mk/model.safetensors.index.json' "mergekit-style index made"
out=$("$bin" verify mk 2>&1); rc=$?
check '[ $rc -eq 0 ] && grep -q "structure ok (3 shards, 21 tensors.*NO shard hashes recorded" <<<"$out"' "no hashes: $out"
out=$("$bin" verify mk --require-hash 2>&1); rc=$?
check '[ $rc -eq 1 ] && grep -q "no shard hashes are recorded" <<<"$out"' "--require-hash: $out"
out=$("$bin" verify base 2>&1); rc=$?
check '[ $rc -eq 0 ] && grep -q "structure ok (1 shard" <<<"$out"' "lone model.safetensors without index: $out"
cp -r mk mk_short
truncate -s -1 mk_short/model-00002-of-00003.safetensors
out=$("$bin" verify mk_short 2>&1); rc=$?
check '[ $rc -eq 1 ] && grep -q "mk_short/model-00002-of-00003.safetensors: file is truncated" <<<"$out"' "structure still checked without hashes: $out"

# --- usage
"$bin" verify >/dev/null 2>&1; rc=$?; check '[ $rc -eq 2 ]' "no argument: exit 2"
"$bin" verify three --bogus >/dev/null 2>&1; rc=$?; check '[ $rc -eq 2 ]' "unknown option: exit 2"
out=$("$bin" verify nowhere 2>&1); rc=$?
check '[ $rc -eq 1 ] && grep -q "nowhere: No such file or directory" <<<"$out"' "missing dir: $out"
mkdir empty
out=$("$bin" verify empty 2>&1); rc=$?
check '[ $rc -eq 1 ] && grep -q "no model weights" <<<"$out"' "dir without weights: $out"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
