#!/usr/bin/env bash
# hf_cache.sh — model references resolved in a fake Hugging Face cache
# (compiler/resolve.h): `org/name@branch` through refs/, `org/name@commit`,
# bare `org/name` through refs/main; HF_HUB_CACHE, HF_HOME/hub and the
# default ~/.cache/huggingface/hub; a local directory first, as mergekit
# does; the resolved commit in the model card and the .crb; a model absent
# everywhere is an error that quotes the exact `hf download` command
# (nothing is downloaded); mergekit-moe configs take `@revision` too; a
# snapshot holding PyTorch .bin shards reads like any other.
# usage: tests/e2e/hf_cache.sh CRUCIBLE_BIN
. "$(dirname "$0")/../support/e2e_lib.sh" hf_cache "$1"

fx=$(cd "$(dirname "$0")/fixtures/torchbin" && pwd)
cd "$tmp" || exit 1
tiny=(--arch llama --layers 2 --hidden 16 --intermediate 32 --heads 2 --kv-heads 1 --vocab 64 --dtype bfloat16)
"$bin" synth m/base "${tiny[@]}" --seed 1 >/dev/null 2>&1 || bad "synth base"
"$bin" synth m/ft --from m/base --delta-scale 0.1 --seed 2 >/dev/null 2>&1 || bad "synth ft"
"$bin" synth m/other --from m/base --delta-scale 0.1 --seed 3 >/dev/null 2>&1 || bad "synth other"

# the cache: acme/base has commits c1 (= base, branch v1) and c2 (= other,
# refs/main); acme/ft's one snapshot holds the .bin shards of the same ft
c1=1111111111111111111111111111111111111111
c2=2222222222222222222222222222222222222222
c3=3333333333333333333333333333333333333333
mkcache() {   # HUB
    local hub=$1
    mkdir -p "$hub/models--acme--base/snapshots/$c1" "$hub/models--acme--base/snapshots/$c2" \
             "$hub/models--acme--base/refs" "$hub/models--acme--ft/snapshots/$c3" "$hub/models--acme--ft/refs"
    cp m/base/* "$hub/models--acme--base/snapshots/$c1/"
    cp m/other/* "$hub/models--acme--base/snapshots/$c2/"
    printf '%s' "$c2" >"$hub/models--acme--base/refs/main"
    printf '%s\n' "$c1" >"$hub/models--acme--base/refs/v1"
    cp "$fx/ft"/* "$hub/models--acme--ft/snapshots/$c3/"
    printf '%s' "$c3" >"$hub/models--acme--ft/refs/main"
}
mkcache "$tmp/hubcache"

recipe() {   # FILE BASE_REF FT_REF
    printf 'merge_method: ties\nbase_model: %s\nmodels:\n  - model: %s\n    parameters: {weight: 0.7, density: 0.5}\n  - model: %s\nparameters: {normalize: true}\ndtype: bfloat16\n' \
        "$2" "$3" "$2" >"$1"
}
recipe local.yml base ft
recipe v1.yml acme/base@v1 acme/ft
recipe commit.yml "acme/base@$c1" acme/ft
recipe main.yml acme/base acme/ft
"$bin" merge local.yml o-local --models-dir m --quiet 2>err || bad "local merge: $(cat err)"

hf() { env -u CRUCIBLE_MODELS -u HF_HUB_CACHE -u HF_HOME -u XDG_CACHE_HOME "$@"; }

# @branch, @commit: base at c1; the output equals the local merge; the card names the commit
hf HF_HUB_CACHE="$tmp/hubcache" "$bin" merge v1.yml o-v1 --quiet 2>err
rc=$?
check '[ $rc -eq 0 ] && cmp -s o-local/model.safetensors o-v1/model.safetensors' "acme/base@v1: rc $rc: $(cat err)"
check 'grep -q "Hugging Face snapshots read: \`acme/base\` at commit \`$c1\`, \`acme/ft\` at commit \`$c3\`" o-v1/README.md' \
    "model card records the commits: $(grep -i snapshot o-v1/README.md)"
hf HF_HUB_CACHE="$tmp/hubcache" "$bin" merge commit.yml o-commit --quiet 2>err
check 'cmp -s o-local/model.safetensors o-commit/model.safetensors' "acme/base@<commit>: $(cat err)"
# bare acme/base: refs/main = c2 (other), so a different merge
hf HF_HUB_CACHE="$tmp/hubcache" "$bin" merge main.yml o-main --quiet 2>err
check '[ -f o-main/model.safetensors ] && ! cmp -s o-local/model.safetensors o-main/model.safetensors' "acme/base via refs/main: $(cat err)"
check 'grep -q "\`acme/base\` at commit \`$c2\`" o-main/README.md' "card of refs/main merge"

# HF_HOME/hub and the default ~/.cache/huggingface/hub find the same cache
mkdir -p hfhome && cp -r hubcache hfhome/hub
hf HF_HOME="$tmp/hfhome" "$bin" merge v1.yml o-home --quiet 2>err
check 'cmp -s o-local/model.safetensors o-home/model.safetensors' "HF_HOME: $(cat err)"
mkdir -p home/.cache/huggingface && cp -r hubcache home/.cache/huggingface/hub
hf HOME="$tmp/home" "$bin" merge v1.yml o-default --quiet 2>err
check 'cmp -s o-local/model.safetensors o-default/model.safetensors' "default ~/.cache/huggingface/hub: $(cat err)"

# a local directory named like the Hub id comes first (mergekit: os.path.exists first)
mkdir -p localfirst/acme && cp -r m/other localfirst/acme/base && cp v1.yml localfirst/
hf HF_HUB_CACHE="$tmp/hubcache" "$bin" merge localfirst/v1.yml o-lf --quiet 2>err
check 'cmp -s o-main/model.safetensors o-lf/model.safetensors' "local directory before the cache: $(cat err)"

# the .crb records the commit; run finds it in a moved cache
hf HF_HUB_CACHE="$tmp/hubcache" "$bin" compile v1.yml -o v1.crb 2>err || bad "compile: $(cat err)"
check '"$bin" explain v1.crb | grep -q "acme/base@v1 (Hugging Face snapshot $c1)"' "explain: $("$bin" explain v1.crb | grep -i snapshot)"
hf HF_HOME="$tmp/hfhome" "$bin" run v1.crb o-run --quiet 2>err
check 'cmp -s o-local/model.safetensors o-run/model.safetensors' "run from HF_HOME: $(cat err)"

# absent: the error quotes the command that fetches it; nothing is downloaded
recipe absent.yml acme/base@v1 acme/nothere@abc123
hf HF_HUB_CACHE="$tmp/hubcache" "$bin" merge absent.yml o-absent --quiet 2>err
rc=$?
check '[ $rc -eq 2 ] && grep -qF "\`hf download acme/nothere --revision abc123\`" err && [ ! -e o-absent ] && [ ! -e hubcache/models--acme--nothere ]' \
    "absent model@rev: rc $rc: $(cat err)"
recipe absent2.yml acme/base@v1 acme/nothere
hf HF_HUB_CACHE="$tmp/hubcache" "$bin" merge absent2.yml o-absent2 --quiet 2>err
check 'grep -qF "\`hf download acme/nothere\`" err' "absent model: $(cat err)"
# a revision the cache does not hold
recipe norev.yml acme/base@v9 acme/ft
hf HF_HUB_CACHE="$tmp/hubcache" "$bin" merge norev.yml o-norev --quiet 2>err
check 'grep -qF "\`hf download acme/base --revision v9\`" err' "absent revision: $(cat err)"
# run without the recorded snapshot
rm -rf hfhome/hub/models--acme--base/snapshots/$c1
hf HF_HOME="$tmp/hfhome" "$bin" run v1.crb o-run2 --quiet 2>err
check 'grep -qF "hf download acme/base --revision $c1" err' "run, snapshot gone: $(cat err)"

# mergekit-moe: source_model / base_model with @revision
cat >moe.yml <<YML
base_model: acme/base@v1
gate_mode: random
dtype: bfloat16
experts:
  - source_model: acme/base@$c2
    positive_prompts: ["a"]
  - source_model: acme/ft
    positive_prompts: ["b"]
YML
hf HF_HUB_CACHE="$tmp/hubcache" "$bin" moe moe.yml o-moe --quiet 2>err
check '[ $? -eq 0 ] && [ -f o-moe/config.json ]' "moe with @revision: $(cat err)"
sed 's/acme\/ft/acme\/gone@main/' moe.yml >moe2.yml
hf HF_HUB_CACHE="$tmp/hubcache" "$bin" moe moe2.yml o-moe2 --quiet 2>err
check 'grep -qF "hf download acme/gone --revision main" err' "moe absent: $(cat err)"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
