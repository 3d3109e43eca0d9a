#!/usr/bin/env python3
"""seed_recipes.py — the tutorial recipes of shared/reference/seed-recipes.md,
unchanged, through mergekit and crucible on synthetic Mistral-7B-shaped but
thin models; checks both give the same files, tensor names, shapes, dtypes and
bytes (DARE-TIES: the same names/shapes/dtypes and the statistical bar).

Run by hand (measuring, not testing: `zig build test` never runs Python):
  tools/zig build
  MKV=/path/to/mergekit-0.1.4-venv   # e.g. tests/golden/.venv
  $MKV/bin/python tests/golden/seed_recipes.py --venv $MKV [--work DIR]
Writes tests/golden/seed_recipes.md (committed) and prints the same table.

The models: `crucible synth --arch mistral` with Mistral-7B's layer count,
vocabulary and head ratios (32 layers, vocab 32000, 4:1 query to key/value
heads, intermediate 3.5x hidden) but hidden 128, so 19 models fit in ~600 MB.
Each Hub name in the recipes is a directory of that name under the models
directory: crucible finds it through --models-dir, mergekit as a path
relative to its working directory.
"""
import argparse, json, os, shutil, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "zig-out", "bin", "crucible")
sys.path.insert(0, os.path.join(ROOT, "bench"))
import compare  # noqa: E402  (bench/compare.py: agreement in ulps)

SHAPE = ["--arch", "mistral", "--layers", "32", "--hidden", "128", "--intermediate", "448",
         "--heads", "4", "--kv-heads", "1", "--vocab", "32000", "--dtype", "bfloat16"]

BASE = "mistralai/Mistral-7B-v0.1"
FINE_TUNES = ["AIDC-ai-business/Marcoroni-7B-v3", "EmbeddedLLM/Mistral-7B-Merge-14-v0.1",
              "OpenPipe/mistral-ft-optimized-1218", "mlabonne/NeuralHermes-2.5-Mistral-7B",
              "samir-fama/SamirGPT-v1", "abacusai/Slerp-CM-mist-dpo",
              "EmbeddedLLM/Mistral-7B-Merge-14-v0.2", "nvidia/OpenMath-Mistral-7B-v0.1-hf"]
HIER = ["hier/ft-%02d" % i for i in range(1, 15)]   # stage one of recipe 5: 14 fine-tunes

GRADIENT_T = """parameters:
  t:
    - filter: self_attn
      value: [0, 0.5, 0.3, 0.7, 1]
    - filter: mlp
      value: [1, 0.5, 0.7, 0.3, 0]
    - value: 0.5
"""

# name -> (yaml, kind, mergekit-multi?, extra flags for both tools)
RECIPES = {
    "1-gradient-slerp": ("""slices:
  - sources:
      - model: AIDC-ai-business/Marcoroni-7B-v3
        layer_range: [0, 32]
      - model: EmbeddedLLM/Mistral-7B-Merge-14-v0.1
        layer_range: [0, 32]
merge_method: slerp
base_model: AIDC-ai-business/Marcoroni-7B-v3
""" + GRADIENT_T + "dtype: bfloat16\n", "det", False, ["--out-shard-size", "10M"]),
    "2-ties": ("""models:
  - model: mistralai/Mistral-7B-v0.1
    # no parameters necessary for base model
  - model: OpenPipe/mistral-ft-optimized-1218
    parameters:
      density: 0.5
      weight: 0.5
  - model: mlabonne/NeuralHermes-2.5-Mistral-7B
    parameters:
      density: 0.5
      weight: 0.3
merge_method: ties
base_model: mistralai/Mistral-7B-v0.1
parameters:
  normalize: true
dtype: float16
""", "det", False, []),
    "3-dare-ties": ("""models:
  - model: mistralai/Mistral-7B-v0.1
  - model: samir-fama/SamirGPT-v1
    parameters:
      density: 0.53
      weight: 0.4
  - model: abacusai/Slerp-CM-mist-dpo
    parameters:
      density: 0.53
      weight: 0.3
  - model: EmbeddedLLM/Mistral-7B-Merge-14-v0.2
    parameters:
      density: 0.53
      weight: 0.3
merge_method: dare_ties
base_model: mistralai/Mistral-7B-v0.1
parameters:
  int8_mask: true
dtype: bfloat16
""", "stat", False, []),
    "4-passthrough-40": ("""slices:
  - sources:
      - model: OpenPipe/mistral-ft-optimized-1218
        layer_range: [0, 32]
  - sources:
      - model: mlabonne/NeuralHermes-2.5-Mistral-7B
        layer_range: [24, 32]
merge_method: passthrough
dtype: bfloat16
""", "det", False, []),
    "5-hierarchical": ("name: stage-dare\nmodels:\n  - model: " + BASE + "\n" + "".join(
        "  - model: %s\n    parameters:\n      density: 0.53\n      weight: %s\n" % (m, w)
        for m, w in zip(HIER, ["0.1"] * 4 + ["0.06"] * 10)) + """merge_method: dare_ties
base_model: mistralai/Mistral-7B-v0.1
parameters:
  int8_mask: true
dtype: bfloat16
---
slices:
  - sources:
      - model: stage-dare
        layer_range: [0, 32]
      - model: nvidia/OpenMath-Mistral-7B-v0.1-hf
        layer_range: [0, 32]
merge_method: slerp
base_model: stage-dare
""" + GRADIENT_T + "dtype: bfloat16\n", "stat", True, []),
}


def sh(cmd, **kw):
    t = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode:
        sys.exit("failed (%d): %s\n%s%s" % (r.returncode, " ".join(cmd), r.stdout[-3000:], r.stderr[-3000:]))
    return time.time() - t


def make_models(models):
    base = os.path.join(models, BASE)
    if not os.path.exists(os.path.join(base, "config.json")):
        shutil.rmtree(base, ignore_errors=True)
        sh([BIN, "synth", base, *SHAPE, "--seed", "1"])
    for i, name in enumerate(FINE_TUNES + HIER):
        d = os.path.join(models, name)
        if not os.path.exists(os.path.join(d, "config.json")):
            shutil.rmtree(d, ignore_errors=True)
            sh([BIN, "synth", d, "--from", base, "--delta-scale", "0.01", "--seed", str(100 + i)])


def layout(d):
    """shard file name -> sorted tensor names, and each tensor's (dtype, shape)"""
    files, meta = {}, {}
    for name, (dt, shape, _mm, _a, _b) in compare.tensors(d).items():
        meta[name] = (dt, tuple(shape))
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        for t, f in json.load(open(idx))["weight_map"].items():
            files.setdefault(f, []).append(t)
    else:
        files["model.safetensors"] = sorted(meta)
    return {f: sorted(v) for f, v in files.items()}, meta


def agreement(a, b, base):
    argv = sys.argv
    sys.argv = ["compare.py", a, b, "--base", base]
    try:
        from io import StringIO
        old, sys.stdout = sys.stdout, StringIO()
        compare.main()
        out = sys.stdout.getvalue()
    finally:
        sys.stdout, sys.argv = old, argv
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--venv", required=True, help="a mergekit 0.1.4 virtual environment")
    ap.add_argument("--work", default="/tmp/crucible-seed-recipes")
    ap.add_argument("--only", default="", help="comma-separated recipe names")
    args = ap.parse_args()
    models = os.path.join(args.work, "models")
    os.makedirs(models, exist_ok=True)
    make_models(models)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    rows = []
    for name, (yml, kind, multi, extra) in RECIPES.items():
        if args.only and name not in args.only.split(","):
            continue
        recipe = os.path.join(args.work, name + ".yml")
        open(recipe, "w").write(yml)
        out_c, out_m = (os.path.join(args.work, "out-%s-%s" % (t, name)) for t in ("crucible", "mergekit"))
        for d in (out_c, out_m, out_m + "-stages"):
            shutil.rmtree(d, ignore_errors=True)
        common = ["--random-seed", "42", "--no-copy-tokenizer", *extra]
        t_c = sh([BIN, "merge", recipe, out_c, "--models-dir", models, "--quiet", *common])
        if multi:
            mk = [os.path.join(args.venv, "bin", "mergekit-multi"), recipe, "--out-path", out_m,
                  "-I", out_m + "-stages"]
        else:
            mk = [os.path.join(args.venv, "bin", "mergekit-yaml"), recipe, out_m]
        t_m = sh(mk + common + ["--no-write-model-card", "--quiet"], env=env, cwd=models)
        files_c, meta_c = layout(out_c)
        files_m, meta_m = layout(out_m)
        ag = agreement(out_c, out_m, os.path.join(models, BASE))
        rows.append({
            "recipe": name, "kind": kind, "tensors": len(meta_c),
            "same_files": files_c == files_m, "same_names_shapes_dtypes": meta_c == meta_m,
            "exact": ag["exact_fraction"], "worst_tensor_exact": ag["min_exact_fraction"],
            "max_ulp": ag["max_ulp"], "within_1ulp": ag["within_1ulp_fraction"],
            "changed_c": ag.get("changed_fraction_a"), "changed_m": ag.get("changed_fraction_b"),
            "elements": ag["elements"],
            "seconds_c": t_c, "seconds_m": t_m,
        })
        print(json.dumps(rows[-1]), flush=True)
    write_table(rows, args)


def write_table(rows, args):
    mk_version = subprocess.run([os.path.join(args.venv, "bin", "python"), "-c",
                                 "import importlib.metadata as m; print(m.version('mergekit'))"],
                                capture_output=True, text=True).stdout.strip()
    lines = [
        "# Seed recipes: crucible vs mergekit " + mk_version,
        "",
        "The recipes of shared/reference/seed-recipes.md, unchanged, on synthetic",
        "Mistral-7B-shaped thin models (32 layers, vocab 32000, hidden 128; see",
        "tests/golden/seed_recipes.py). `det`: deterministic, bar = bit-identical on",
        ">= 99.99% of each tensor's elements, the rest within 1 ulp. `stat`: DARE's",
        "random masks cannot match torch's RNG; bar = same names/shapes/dtypes and",
        "the fraction of elements changed from the base within 3 sigma of mergekit's.",
        "",
        "Generated %s by `python tests/golden/seed_recipes.py --venv VENV`." % time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "",
        "| recipe | kind | tensors | same shard files | same names/shapes/dtypes | bit-exact | worst tensor bit-exact | max ulp | changed from base crucible / mergekit |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ch = "-"
        if r["changed_c"] is not None:
            # binomial sigma of a changed fraction over this many elements
            p = r["changed_m"]
            sigma = max(1e-12, (p * (1 - p) / max(1, r["elements"])) ** 0.5)
            ch = "%.5f / %.5f (%.1f sigma)" % (r["changed_c"], p, abs(r["changed_c"] - p) / sigma)
        lines.append("| %s | %s | %d | %s | %s | %.6f | %.4f | %d | %s |" % (
            r["recipe"], r["kind"], r["tensors"], "yes" if r["same_files"] else "NO",
            "yes" if r["same_names_shapes_dtypes"] else "NO", r["exact"], r["worst_tensor_exact"],
            r["max_ulp"], ch))
    text = "\n".join(lines) + "\n"
    if not args.only:
        open(os.path.join(ROOT, "tests", "golden", "seed_recipes.md"), "w").write(text)
    print(text)


if __name__ == "__main__":
    main()
