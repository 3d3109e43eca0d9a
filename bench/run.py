#!/usr/bin/env python3
"""bench/run.py — crucible vs mergekit vs the I/O floor, side by side.

Generates Llama-shaped bf16 models with `crucible synth` (a base and three
fine-tunes), installs mergekit into bench/.venv if missing, then runs each
recipe with mergekit-yaml and crucible alternately, several times, measuring
wall time, user+sys CPU and peak RSS with /usr/bin/time -v. The I/O floor is
reading the inputs once (cat > /dev/null) and writing one output of the same
size (dd) on the same disk. crucible's output is compared with mergekit's
(`crucible diff`) so speed is never bought with wrong answers, and `crucible
plan`'s predictions are compared with the measurements. Writes
bench/RESULTS.md.

usage: python3 bench/run.py [--quick] [--runs N] [--skip-mergekit]
"""
import argparse, json, os, platform, re, shutil, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "zig-out", "bin", "crucible")
WORK = os.path.join(ROOT, "bench", "work")
VENV = os.path.join(ROOT, "bench", ".venv")

SIZES = {
    # TinyLlama shapes (~1.1B parameters)
    "1.1B": dict(layers=22, hidden=2048, intermediate=5632, heads=32, kv_heads=4, vocab=32000),
    "quick": dict(layers=4, hidden=512, intermediate=1408, heads=8, kv_heads=2, vocab=8000),
}

RECIPES = {
    "linear-3": """models:
  - model: ft-a
    parameters: {weight: 0.4}
  - model: ft-b
    parameters: {weight: 0.3}
  - model: ft-c
    parameters: {weight: 0.3}
merge_method: linear
dtype: bfloat16
""",
    "slerp-gradient-2": """slices:
  - sources:
      - model: ft-a
        layer_range: [0, {L}]
      - model: ft-b
        layer_range: [0, {L}]
merge_method: slerp
base_model: ft-a
parameters:
  t:
    - filter: self_attn
      value: [0, 0.5, 0.3, 0.7, 1]
    - filter: mlp
      value: [1, 0.5, 0.7, 0.3, 0]
    - value: 0.5
dtype: bfloat16
""",
    "task-arithmetic-3": """models:
  - model: base
  - model: ft-a
    parameters: {weight: 0.5}
  - model: ft-b
    parameters: {weight: 0.3}
  - model: ft-c
    parameters: {weight: -0.2}
merge_method: task_arithmetic
base_model: base
dtype: bfloat16
""",
    "ties-3": """models:
  - model: base
  - model: ft-a
    parameters: {density: 0.5, weight: 0.5}
  - model: ft-b
    parameters: {density: 0.5, weight: 0.3}
  - model: ft-c
    parameters: {density: 0.5, weight: 0.2}
merge_method: ties
base_model: base
parameters: {normalize: true}
dtype: bfloat16
""",
    "dare-ties-3": """models:
  - model: base
  - model: ft-a
    parameters: {density: 0.53, weight: 0.4}
  - model: ft-b
    parameters: {density: 0.53, weight: 0.3}
  - model: ft-c
    parameters: {density: 0.53, weight: 0.3}
merge_method: dare_ties
base_model: base
parameters: {int8_mask: true}
dtype: bfloat16
""",
    "passthrough": """slices:
  - sources:
      - model: ft-a
        layer_range: [0, {L}]
  - sources:
      - model: ft-b
        layer_range: [{H}, {L}]
merge_method: passthrough
dtype: bfloat16
""",
}


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def timed(cmd, env=None):
    """Run cmd under /usr/bin/time -v; return (wall s, cpu s, peak RSS bytes)."""
    t0 = time.monotonic()
    r = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True, env=env)
    wall = time.monotonic() - t0
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-2000:] + r.stderr[-4000:])
        raise SystemExit(f"failed: {' '.join(cmd)}")
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", r.stderr).group(1))
    syst = float(re.search(r"System time \(seconds\): ([\d.]+)", r.stderr).group(1))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1)) * 1024
    return wall, user + syst, rss


def ensure_mergekit():
    py = os.path.join(VENV, "bin", "python")
    if not os.path.exists(os.path.join(VENV, "bin", "mergekit-yaml")):
        sh([sys.executable, "-m", "venv", VENV])
        sh([py, "-m", "pip", "install", "--quiet", "mergekit"])
    return os.path.join(VENV, "bin", "mergekit-yaml")


def dir_bytes(d):
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.endswith(".safetensors"))


def io_floor(inputs, out_bytes):
    files = [os.path.join(d, f) for d in inputs for f in sorted(os.listdir(d)) if f.endswith(".safetensors")]
    t0 = time.monotonic()
    for f in files:
        sh(["cat", f], stdout=subprocess.DEVNULL)
    sink = os.path.join(WORK, "floor.out")
    sh(["dd", "if=/dev/zero", f"of={sink}", "bs=16M", f"count={max(1, out_bytes >> 24)}", "conv=fsync"],
       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.remove(sink)
    return time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip-mergekit", action="store_true")
    a = ap.parse_args()
    size = "quick" if a.quick else "1.1B"
    shape = SIZES[size]
    models = os.path.join(WORK, size, "models")
    os.makedirs(models, exist_ok=True)
    if not os.path.exists(os.path.join(models, "base", "config.json")):
        sh([BIN, "synth", os.path.join(models, "base"), "--arch", "llama", "--layers", str(shape["layers"]),
            "--hidden", str(shape["hidden"]), "--intermediate", str(shape["intermediate"]),
            "--heads", str(shape["heads"]), "--kv-heads", str(shape["kv_heads"]), "--vocab", str(shape["vocab"]),
            "--dtype", "bfloat16", "--seed", "1"])
        for i, n in enumerate(["ft-a", "ft-b", "ft-c"]):
            sh([BIN, "synth", os.path.join(models, n), "--from", os.path.join(models, "base"),
                "--delta-scale", "0.01", "--seed", str(10 + i)])
    mk = None if a.skip_mergekit else ensure_mergekit()
    L = shape["layers"]
    rows = []
    for name, text in RECIPES.items():
        text = text.replace("{L}", str(L)).replace("{H}", str(L // 2))
        recipe = os.path.join(WORK, size, f"{name}.yml")
        with open(recipe, "w") as f:
            f.write(text)
        # mergekit resolves model names as paths: run from the models dir
        res = {"crucible": [], "mergekit": []}
        out_c = os.path.join(WORK, size, f"out-crucible-{name}")
        out_m = os.path.join(WORK, size, f"out-mergekit-{name}")
        for _ in range(a.runs):
            shutil.rmtree(out_c, ignore_errors=True)
            res["crucible"].append(timed([BIN, "merge", recipe, out_c, "--models-dir", models, "--quiet",
                                          "--random-seed", "42"]))
            if mk:
                shutil.rmtree(out_m, ignore_errors=True)
                cwd = os.getcwd()
                os.chdir(models)
                try:
                    res["mergekit"].append(timed([mk, recipe, out_m, "--random-seed", "42", "--quiet",
                                                  "--no-copy-tokenizer"]))
                finally:
                    os.chdir(cwd)
        used = sorted(set(re.findall(r"model: (\S+)", text)))
        floor = io_floor([os.path.join(models, m) for m in used], dir_bytes(out_c))
        agree = None
        if mk:
            r = subprocess.run([BIN, "diff", out_c, out_m], capture_output=True, text=True)
            agree = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr.strip()
        plan = subprocess.run([BIN, "plan", recipe, "--models-dir", models, "--json"], capture_output=True, text=True)
        rows.append((name, res, floor, agree, plan.stdout))
    write_results(size, shape, rows, a)


def med(xs, i):
    v = [x[i] for x in xs]
    return statistics.median(v), min(v), max(v)


def write_results(size, shape, rows, a):
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = re.search(r"Model name:\s+(.*)", cpu)
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    out = [f"# Benchmark results ({size})", "",
           f"Machine: {model.group(1) if model else platform.processor()}, {os.cpu_count()} cores, {mem:.0f} GiB RAM; "
           f"{platform.platform()}", f"Command: `python3 bench/run.py {'--quick ' if a.quick else ''}--runs {a.runs}`",
           f"Shapes: {json.dumps(shape)}, bf16, page cache warm.", "",
           "| recipe | crucible s (min–max) | mergekit s | crucible/mergekit | floor s | crucible/floor | RSS crucible | RSS mergekit | agreement |",
           "|---|---|---|---|---|---|---|---|---|"]
    for name, res, floor, agree, _ in rows:
        c = med(res["crucible"], 0)
        cr = med(res["crucible"], 2)
        if res["mergekit"]:
            m = med(res["mergekit"], 0)
            mr = med(res["mergekit"], 2)
            ms, ratio, mrs = f"{m[0]:.2f} ({m[1]:.2f}–{m[2]:.2f})", f"{c[0] / m[0]:.3f}", f"{mr[0] / 2**20:.0f} MiB"
        else:
            ms = ratio = mrs = "—"
        out.append(f"| {name} | {c[0]:.2f} ({c[1]:.2f}–{c[2]:.2f}) | {ms} | {ratio} | {floor:.2f} | {c[0] / floor:.2f} | "
                   f"{cr[0] / 2**20:.0f} MiB | {mrs} | {agree or '—'} |")
    with open(os.path.join(ROOT, "bench", "RESULTS.md"), "w") as f:
        f.write("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
