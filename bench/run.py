#!/usr/bin/env python3
"""bench/run.py — crucible vs mergekit vs the I/O floor, side by side.

Generates Llama-shaped bf16 models with `crucible synth` (a base and three
fine-tunes), then runs each recipe with mergekit and crucible alternately
(the order flips every run), several times, measuring wall time, user+sys CPU
and peak RSS with /usr/bin/time -v. The I/O floor is reading the recipe's
inputs once (cat > /dev/null) and writing one output of the same size (dd
conv=fsync: crucible fsyncs every shard and the directory, mergekit does
not). crucible's output is compared with mergekit's (bench/compare.py, in
ulps) so speed is never bought with wrong answers, and `crucible plan`'s
predictions are compared with the measurements. Raw numbers go to
bench/results/<size>.json, a table to bench/results/<size>.md.

usage: python3 bench/run.py [--quick | --size NAME] [--runs N] [--mergekit PATH] [--skip-mergekit]
                            [--recipes a,b] [--cold [--cold-runs N]] [--scaling] [--threads N] [--baseline BIN]
--size: quick, 1.1B, 1.1B-2L (TinyLlama shapes with 2 layers: the tensor
sizes of 1.1B, including its embeddings, in a fifth of the time) or 7B-4L
(Mistral-7B shapes with 4 layers, 2.3 GB a model: with --recipes none
--scaling and BENCH_SCALING=2:1G, the 7B-shaped ties under --max-memory 1G).
--baseline BIN: another crucible binary (e.g. built from an earlier commit)
run in the same loop, alternating with this one, so a before/after ratio
comes from one run on the same machine state; its output bytes are
compared with this one's.
--cold: cold-cache runs too (root: the page cache is dropped before each,
after the inputs were read once so that the VM host's cache is the same for
every run); --cold-runs N rounds of them, each round running crucible, the
baseline (the order flips every round) and the cold floor, each from a
dropped cache; mergekit once.
--mergekit PATH: a mergekit-yaml executable (its venv's python runs compare.py
and mergekit-multi). Default bench/.venv/bin/mergekit-yaml, installed there
with pip only if it does not exist.
"""
import argparse, json, os, platform, re, shutil, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "zig-out", "bin", "crucible")
WORK = os.path.join(ROOT, "bench", "work")
VENV = os.path.join(ROOT, "bench", ".venv")
RESULTS = os.path.join(ROOT, "bench", "results")

SIZES = {
    # TinyLlama shapes (~1.1B parameters)
    "1.1B": dict(layers=22, hidden=2048, intermediate=5632, heads=32, kv_heads=4, vocab=32000),
    "1.1B-2L": dict(layers=2, hidden=2048, intermediate=5632, heads=32, kv_heads=4, vocab=32000),
    # Mistral-7B tensor shapes, 4 of its 32 layers: every tensor is the size
    # a 7B merge streams (embeddings 250 MiB, each MLP weight 112 MiB bf16),
    # 2.3 GB a model, in an eighth of the time of a whole 7B
    "7B-4L": dict(layers=4, hidden=4096, intermediate=14336, heads=32, kv_heads=8, vocab=32000),
    "quick": dict(layers=4, hidden=512, intermediate=1408, heads=8, kv_heads=2, vocab=8000),
}

# deterministic recipes must agree with mergekit; "stat" ones (random masks)
# are compared by the fraction of elements they change from the base.
KIND = {"dare-ties-3": "stat", "della-3": "stat"}

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
    "breadcrumbs-3": """models:
  - model: base
  - model: ft-a
    parameters: {density: 0.5, gamma: 0.01, weight: 0.5}
  - model: ft-b
    parameters: {density: 0.5, gamma: 0.01, weight: 0.3}
  - model: ft-c
    parameters: {density: 0.5, gamma: 0.01, weight: 0.2}
merge_method: breadcrumbs_ties
base_model: base
dtype: bfloat16
""",
    "della-3": """models:
  - model: base
  - model: ft-a
    parameters: {density: 0.5, epsilon: 0.1, weight: 0.5}
  - model: ft-b
    parameters: {density: 0.5, epsilon: 0.1, weight: 0.3}
  - model: ft-c
    parameters: {density: 0.5, epsilon: 0.1, weight: 0.2}
merge_method: della
base_model: base
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
    "multistage-3": """name: stage-ties
models:
  - model: base
  - model: ft-a
    parameters: {density: 0.5, weight: 0.6}
  - model: ft-b
    parameters: {density: 0.5, weight: 0.4}
merge_method: ties
base_model: base
dtype: bfloat16
---
name: stage-linear
models:
  - model: stage-ties
    parameters: {weight: 0.7}
  - model: ft-c
    parameters: {weight: 0.3}
merge_method: linear
dtype: bfloat16
---
slices:
  - sources:
      - model: stage-linear
        layer_range: [0, {L}]
      - model: ft-a
        layer_range: [0, {L}]
merge_method: slerp
base_model: stage-linear
parameters:
  t:
    - filter: self_attn
      value: [0, 0.5, 0.3, 0.7, 1]
    - filter: mlp
      value: [1, 0.5, 0.7, 0.3, 0]
    - value: 0.5
dtype: bfloat16
""",
}


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def warm_inputs(dirs):
    """Read the models' files once so that they are in the page cache."""
    for d in dirs:
        for f in sorted(os.listdir(d)):
            if f.endswith(".safetensors"):
                sh(["cat", os.path.join(d, f)], stdout=subprocess.DEVNULL)


def cold_start(dirs):
    """This machine's page cache dropped, for a cold run. On a virtual
    machine the host caches the disk too, out of our reach: whichever cold
    run came first would pay for the host's misses alone (in the first
    1.1B run crucible's cold linear took 39 s, the cold floor after it 7 s).
    So the inputs are read once first: every cold run, the floor's
    included, then starts from the same host state."""
    warm_inputs(dirs)
    return drop_caches()


def drop_caches():
    """Drop the page cache (root only); False when it cannot."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def timed(cmd, env=None, cwd=None):
    """Run cmd under /usr/bin/time -v; return a dict of wall s, cpu s, peak RSS bytes, fs blocks."""
    t0 = time.monotonic()
    r = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True, env=env, cwd=cwd)
    wall = time.monotonic() - t0
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-2000:] + r.stderr[-4000:])
        raise RuntimeError(f"failed: {' '.join(cmd)}")
    g = lambda pat: float(re.search(pat, r.stderr).group(1))
    return dict(wall=wall, cpu=g(r"User time \(seconds\): ([\d.]+)") + g(r"System time \(seconds\): ([\d.]+)"),
                rss=int(g(r"Maximum resident set size \(kbytes\): (\d+)")) * 1024,
                fs_in=int(g(r"File system inputs: (\d+)")) * 512, fs_out=int(g(r"File system outputs: (\d+)")) * 512)


def find_mergekit(path):
    """The mergekit-yaml to use: PATH, else bench/.venv's (installed only if neither exists)."""
    if path:
        if not os.access(path, os.X_OK):
            raise SystemExit(f"--mergekit {path}: not an executable")
        return path
    mk = os.path.join(VENV, "bin", "mergekit-yaml")
    if not os.path.exists(mk):
        sh([sys.executable, "-m", "venv", VENV])
        sh([os.path.join(VENV, "bin", "python"), "-m", "pip", "install", "--quiet", "mergekit==0.1.4"])
    return mk


def mergekit_version(mk):
    py = os.path.join(os.path.dirname(mk), "python")
    r = subprocess.run([py, "-c", "import importlib.metadata as m; print(m.version('mergekit'), m.version('torch'))"],
                       capture_output=True, text=True)
    return r.stdout.strip()


def dir_bytes(d):
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.endswith(".safetensors"))


def io_floor(inputs, out_bytes, cold, direct=False):
    """Seconds to read the inputs once and write+fsync out_bytes on the same disk.
    direct: the output written with O_DIRECT in 8 MiB blocks (dd oflag=direct),
    as crucible's output stream writes it, instead of through the page cache."""
    files = [os.path.join(d, f) for d in inputs for f in sorted(os.listdir(d)) if f.endswith(".safetensors")]
    if cold:
        cold_start(inputs)
    t0 = time.monotonic()
    for f in files:
        sh(["cat", f], stdout=subprocess.DEVNULL)
    sink = os.path.join(WORK, "floor.out")
    mib = max(1, (out_bytes + (1 << 20) - 1) >> 20)
    if direct:
        sh(["dd", "if=/dev/zero", f"of={sink}", "bs=8M", f"count={(mib + 7) // 8}", "oflag=direct", "conv=fsync"],
           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        sh(["dd", "if=/dev/zero", f"of={sink}", "bs=1M", f"count={mib}", "conv=fsync"],
           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t = time.monotonic() - t0
    os.remove(sink)
    return t


UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


def plan(recipe, models, extra=()):
    """`crucible plan`'s predictions, parsed from its text report."""
    r = subprocess.run([BIN, "plan", recipe, "--models-dir", models, *extra], capture_output=True, text=True)
    out = {}
    m = re.search(r"^read\s+.*?\((\d+) bytes\)", r.stdout, re.M)
    if m: out["read"] = int(m.group(1))
    m = re.search(r"^write\s+.*?\((\d+) bytes\)", r.stdout, re.M)
    if m: out["write"] = int(m.group(1))
    m = re.search(r"^peak memory\s+~.*?\((\d+) bytes\)", r.stdout, re.M)
    if m: out["peak"] = int(m.group(1))
    m = re.search(r"^time\s+~([\d.]+) s", r.stdout, re.M)
    if m: out["time"] = float(m.group(1))
    return out


def compare(py, a, b, base):
    r = subprocess.run([py, os.path.join(ROOT, "bench", "compare.py"), a, b, "--base", base],
                       capture_output=True, text=True)
    if r.returncode:
        return {"error": r.stderr.strip()[-500:]}
    return json.loads(r.stdout)


def synth(models, shape):
    if os.path.exists(os.path.join(models, "ft-c", "config.json")):
        return
    sh([BIN, "synth", os.path.join(models, "base"), "--arch", "llama", "--layers", str(shape["layers"]),
        "--hidden", str(shape["hidden"]), "--intermediate", str(shape["intermediate"]),
        "--heads", str(shape["heads"]), "--kv-heads", str(shape["kv_heads"]), "--vocab", str(shape["vocab"]),
        "--dtype", "bfloat16", "--seed", "1"])
    for i, n in enumerate(["ft-a", "ft-b", "ft-c"]):
        sh([BIN, "synth", os.path.join(models, n), "--from", os.path.join(models, "base"),
            "--delta-scale", "0.01", "--seed", str(10 + i)])


def run_crucible(recipe, out, models, threads=None, max_memory=None, binary=BIN):
    shutil.rmtree(out, ignore_errors=True)
    cmd = [binary, "merge", recipe, out, "--models-dir", models, "--quiet", "--random-seed", "42",
           "--no-copy-tokenizer"]
    if threads: cmd += ["--threads", str(threads)]
    if max_memory: cmd += ["--max-memory", max_memory]
    return timed(cmd)


def evict(dirs):
    """Drop the models' safetensors pages from the page cache (POSIX_FADV_DONTNEED
    drops clean pages without root; other files stay cached)."""
    for d in dirs:
        for f in os.listdir(d):
            if f.endswith(".safetensors"):
                fd = os.open(os.path.join(d, f), os.O_RDONLY)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)


def measured_read(recipe, out, models, used, threads):
    """Bytes a crucible merge reads from disk with its input files evicted
    first: what `crucible plan`'s read figure predicts (plus readahead)."""
    evict([os.path.join(models, m) for m in used])
    return run_crucible(recipe, out, models, threads)["fs_in"]


def run_mergekit(mk, recipe, out, models, multi):
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    if multi:
        inter = out + "-stages"
        shutil.rmtree(inter, ignore_errors=True)
        cmd = [os.path.join(os.path.dirname(mk), "mergekit-multi"), recipe, "--out-path", out, "-I", inter]
    else:
        cmd = [mk, recipe, out]
    # mergekit resolves model names as paths relative to the working directory
    r = timed(cmd + ["--random-seed", "42", "--quiet", "--no-copy-tokenizer", "--no-write-model-card"],
              env=env, cwd=models)
    if multi:
        shutil.rmtree(out + "-stages", ignore_errors=True)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--size", choices=sorted(SIZES), help="model shape (default 1.1B; --quick: quick)")
    ap.add_argument("--baseline", help="another crucible binary, run alternately with this one (before/after)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mergekit", help="path of a mergekit-yaml executable")
    ap.add_argument("--skip-mergekit", action="store_true")
    ap.add_argument("--recipes", help="comma-separated subset of: " + ",".join(RECIPES))
    ap.add_argument("--cold", action="store_true", help="also cold-cache runs of each tool per recipe")
    ap.add_argument("--cold-runs", type=int, default=1, help="rounds of cold runs (crucible, baseline, floor)")
    ap.add_argument("--scaling", action="store_true", help="crucible ties-3 under --max-memory and 1 vs 2 threads")
    ap.add_argument("--threads", type=int, help="crucible --threads (default: its own)")
    ap.add_argument("--mk-runs", default="", help="mergekit runs per recipe, e.g. ties-3=1 (default --runs); "
                    "with 0 an existing out-mergekit-RECIPE from an earlier run is still compared")
    ap.add_argument("--tag", default="", help="suffix for results/<size><tag>.json/.md")
    ap.add_argument("--report", action="store_true", help="only rewrite results/<size>.md from results/<size>.json")
    a = ap.parse_args()
    a.scaling_set = [(2, None), (1, None), (2, "1G"), (2, "256M"), (1, "1G")]
    if os.environ.get("BENCH_SCALING"):  # e.g. "1:-,2:1G,2:256M" (threads:max-memory, - for none)
        a.scaling_set = [(int(t), None if m == "-" else m)
                         for t, m in (x.split(":") for x in os.environ["BENCH_SCALING"].split(","))]
    size = a.size or ("quick" if a.quick else "1.1B")
    if a.report:
        with open(os.path.join(RESULTS, f"{size}{a.tag}.json")) as f:
            d = json.load(f)
        write_table(size + a.tag, d["meta"], d["rows"], d["scaling"])
        return
    shape = SIZES[size]
    models = os.path.join(WORK, size, "models")
    os.makedirs(models, exist_ok=True)
    synth(models, shape)
    mk = None if a.skip_mergekit else find_mergekit(a.mergekit)
    py = os.path.join(os.path.dirname(mk), "python") if mk else None
    names = [] if a.recipes == "none" else a.recipes.split(",") if a.recipes else list(RECIPES)
    L = shape["layers"]
    rows = []
    for name in names:
        text = RECIPES[name].replace("{L}", str(L)).replace("{H}", str(L // 2))
        multi = "\n---\n" in text
        recipe = os.path.join(WORK, size, f"{name}.yml")
        with open(recipe, "w") as f:
            f.write(text)
        res = {"crucible": [], "mergekit": [], "crucible_cold": [], "mergekit_cold": [], "baseline": [], "baseline_cold": []}
        out_b = os.path.join(WORK, size, f"out-baseline-{name}")
        out_c = os.path.join(WORK, size, f"out-crucible-{name}")
        out_m = os.path.join(WORK, size, f"out-mergekit-{name}")
        mk_runs = dict(x.split("=") for x in a.mk_runs.split(",") if x).get(name)
        mk_runs = a.runs if mk_runs is None else int(mk_runs)
        # inputs: every model named that is not an earlier stage
        stages = set(re.findall(r"^name: (\S+)", text, re.M))
        used = sorted(set(re.findall(r"model: (\S+)", text)) - stages)
        inputs = [os.path.join(models, m) for m in used]
        floor, floor_direct = [], []
        for i in range(max(a.runs, mk_runs)):
            order = ["crucible", "mergekit"] if i % 2 == 0 else ["mergekit", "crucible"]
            if a.baseline:
                order.insert(1 if i % 2 == 0 else 0, "baseline")
            for tool in order:
                if not (tool in ("crucible", "baseline") and i < a.runs) and not (tool == "mergekit" and mk and i < mk_runs):
                    continue
                # "warm" means warm for both tools: mergekit's RSS (13 GB for
                # ties at 1.1B) evicts inputs the previous run had cached
                warm_inputs([os.path.join(models, m) for m in used])
                if tool == "crucible":
                    res["crucible"].append(run_crucible(recipe, out_c, models, a.threads))
                elif tool == "baseline":
                    res["baseline"].append(run_crucible(recipe, out_b, models, a.threads, binary=a.baseline))
                else:
                    res["mergekit"].append(run_mergekit(mk, recipe, out_m, models, multi))
                print(f"{size} {name} run {i} {tool}: {res[tool][-1]}", flush=True)
            if i < a.runs:  # the floors in the same rounds, so drift in the disk's pace hits them too
                warm_inputs(inputs)
                floor.append(io_floor(inputs, dir_bytes(out_c), False))
                floor_direct.append(io_floor(inputs, dir_bytes(out_c), False, direct=True))
                print(f"{size} {name} run {i} floor: {floor[-1]:.2f} (direct write {floor_direct[-1]:.2f})", flush=True)
        out_bytes = dir_bytes(out_c)
        floor_cold = []
        if a.cold and not drop_caches():
            print("cannot drop the page cache (not root?): no cold runs", flush=True)
        elif a.cold:
            for i in range(a.cold_runs):
                order = ["crucible", "baseline"] if i % 2 == 0 else ["baseline", "crucible"]
                for tool in order:
                    if tool == "baseline" and not a.baseline:
                        continue
                    cold_start(inputs)
                    if tool == "crucible":
                        res["crucible_cold"].append(run_crucible(recipe, out_c, models, a.threads))
                    else:
                        res["baseline_cold"].append(run_crucible(recipe, out_b, models, a.threads, binary=a.baseline))
                    print(f"{size} {name} cold {i} {tool}: {res[tool + '_cold'][-1]}", flush=True)
                floor_cold.append(io_floor(inputs, out_bytes, True))
                print(f"{size} {name} cold {i} floor: {floor_cold[-1]:.2f}", flush=True)
            if mk and mk_runs and cold_start(inputs):
                res["mergekit_cold"].append(run_mergekit(mk, recipe, out_m, models, multi))
        agree = compare(py, out_c, out_m, os.path.join(models, "base")) if mk else None
        same = None
        if a.baseline:  # the same bytes before and after, tensor files and all
            same = all(subprocess.run(["cmp", "-s", os.path.join(out_c, f), os.path.join(out_b, f)]).returncode == 0
                       for f in sorted(os.listdir(out_c)) if f.endswith(".safetensors"))
            shutil.rmtree(out_b, ignore_errors=True)
        pl = plan(recipe, models, ["--threads", str(a.threads)] if a.threads else [])
        in_bytes = sum(dir_bytes(os.path.join(models, m)) for m in used)
        read_meas = measured_read(recipe, out_c, models, used, a.threads)
        rows.append(dict(name=name, kind=KIND.get(name, "det"), res=res, floor=floor, floor_direct=floor_direct, floor_cold=floor_cold,
                         agree=agree, plan=pl, out_bytes=out_bytes, in_bytes=in_bytes,
                         read_meas=read_meas, baseline_same=same))
        print(f"{name}: floor {floor} agree {agree and {k: agree.get(k) for k in ('exact_fraction', 'max_ulp', 'changed_fraction_a', 'changed_fraction_b')}} plan {pl}", flush=True)
        if size != "quick":  # 2.2 GB each: keep the disk tidy
            shutil.rmtree(out_m, ignore_errors=True)
    scaling = []
    if a.scaling:
        recipe = os.path.join(WORK, size, "ties-3.yml")
        with open(recipe, "w") as f:
            f.write(RECIPES["ties-3"])
        out_c = os.path.join(WORK, size, "out-crucible-scaling")
        for threads, mm in a.scaling_set:
            warm_inputs([os.path.join(models, m) for m in ("base", "ft-a", "ft-b", "ft-c")])
            try:
                r = run_crucible(recipe, out_c, models, threads, mm)
            except RuntimeError as e:
                print(f"scaling threads={threads} max-memory={mm}: {e}", flush=True)
                continue
            pl = plan(recipe, models, ["--threads", str(threads)] + (["--max-memory", mm] if mm else []))
            scaling.append(dict(threads=threads, max_memory=mm, run=r, plan=pl))
            print(f"scaling threads={threads} max-memory={mm}: {r} plan {pl}", flush=True)
    startup = None
    if mk:  # mergekit's fixed cost: importing torch and mergekit, no merge
        startup = timed([py, "-c", "import torch, mergekit.merge, mergekit.config, mergekit.options"])
    version = subprocess.run([BIN, "--version"], capture_output=True, text=True).stdout.strip()
    meta = dict(size=size, shape=shape, argv=sys.argv[1:], date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                mergekit=mergekit_version(mk) if mk else None,
                crucible=version or subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                                    capture_output=True, text=True).stdout.strip(),
                machine=machine(), mergekit_startup=startup, baseline=a.baseline and os.path.basename(a.baseline))
    os.makedirs(RESULTS, exist_ok=True)
    size += a.tag
    with open(os.path.join(RESULTS, f"{size}.json"), "w") as f:
        json.dump(dict(meta=meta, rows=rows, scaling=scaling), f, indent=1)
    write_table(size, meta, rows, scaling)


def machine():
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = re.search(r"Model name:\s+(.*)", cpu)
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    df = subprocess.run(["df", "-h", WORK], capture_output=True, text=True).stdout.splitlines()[-1].split()
    return (f"{model.group(1) if model else platform.processor()}, {os.cpu_count()} cores (KVM), {mem:.0f} GiB RAM, "
            f"no swap; disk {df[0]} {df[1]} ({df[3]} free); {platform.platform()}")


def stats(xs, k):
    v = [x[k] for x in xs]
    return statistics.median(v), min(v), max(v)


def mib(b):
    return f"{b / 2**20:.0f} MiB"


def write_table(size, meta, rows, scaling):
    out = [f"### {size}: {json.dumps(meta['shape'])}, bf16", "",
           f"{meta['date']}; `python3 bench/run.py {' '.join(meta['argv'])}`; mergekit/torch {meta['mergekit']}; "
           f"crucible {meta['crucible']}", "", meta["machine"], "",
           "Warm page cache (the inputs are read once before every run of either tool); wall seconds median (min–max) of the runs. "
           "The floor is `cat` of the inputs plus `dd bs=1M conv=fsync` of the output's size (through the page cache); "
           "the direct-write floor the same with `dd bs=8M oflag=direct conv=fsync`; both measured once per round, after the tools' runs." +
           (f" mergekit's fixed start-up (import torch + mergekit, no merge): {meta['mergekit_startup']['wall']:.2f} s wall, "
            f"{mib(meta['mergekit_startup']['rss'])} RSS." if meta.get("mergekit_startup") else ""), "",
           "| recipe | crucible s | mergekit s | crucible/mergekit | floor s | crucible/floor | floor s, direct write | crucible/direct floor | RSS crucible | RSS mergekit | RSS ratio | CPU s crucible / mergekit |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        res = r["res"]
        c, cr, cc = stats(res["crucible"], "wall"), stats(res["crucible"], "rss"), stats(res["crucible"], "cpu")
        fl = statistics.median(r["floor"])
        if res["mergekit"]:
            m, mr, mc = stats(res["mergekit"], "wall"), stats(res["mergekit"], "rss"), stats(res["mergekit"], "cpu")
            ms = f"{m[0]:.2f} ({m[1]:.2f}–{m[2]:.2f})"
            ratio, mrs, rr, cpu = f"{c[0] / m[0]:.3f} ({m[0] / c[0]:.1f}× faster)", mib(mr[0]), f"{cr[0] / mr[0]:.2f}", f"{cc[0]:.1f} / {mc[0]:.1f}"
        else:
            ms = ratio = mrs = rr = "—"
            cpu = f"{cc[0]:.1f} / —"
        fd = statistics.median(r["floor_direct"]) if r.get("floor_direct") else None
        fds = (f"{fd:.2f} | {c[0] / fd:.2f}") if fd else "— | —"
        out.append(f"| {r['name']} | {c[0]:.2f} ({c[1]:.2f}–{c[2]:.2f}) | {ms} | {ratio} | {fl:.2f} | {c[0] / fl:.2f} | {fds} | "
                   f"{mib(cr[0])} | {mrs} | {rr} | {cpu} |")
    if any(r["res"].get("baseline") for r in rows):
        out += ["", f"Before/after: crucible against the baseline binary `{meta.get('baseline')}`, alternating in the same loop "
                "(warm; wall and CPU seconds, medians):", "",
                "| recipe | crucible s | baseline s | crucible/baseline wall | CPU s crucible / baseline | crucible/floor | baseline/floor | same bytes |",
                "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            b = r["res"].get("baseline")
            if not b:
                continue
            c, bw = stats(r["res"]["crucible"], "wall")[0], stats(b, "wall")[0]
            cc, bc = stats(r["res"]["crucible"], "cpu")[0], stats(b, "cpu")[0]
            fl = statistics.median(r["floor"])
            out.append(f"| {r['name']} | {c:.2f} | {bw:.2f} | {c / bw:.3f} | {cc:.1f} / {bc:.1f} ({cc / bc:.3f}) | "
                       f"{c / fl:.2f} | {bw / fl:.2f} | {'yes' if r.get('baseline_same') else 'NO'} |")
    if any(r["res"]["crucible_cold"] for r in rows):
        out += ["", "Cold page cache (inputs read once, so the VM host's cache is the same for every run, then `echo 3 > /proc/sys/vm/drop_caches`; "
                "medians (min–max) of the rounds; the floor is a cold `cat` of the inputs plus `dd conv=fsync` of the output, once per round; mergekit one run):", "",
                "| recipe | crucible s | baseline s | crucible/baseline | mergekit s | crucible/mergekit | floor s (cold) | crucible/floor | baseline/floor | CPU s crucible / baseline | read from disk crucible / baseline / mergekit |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            cc, bc, mc = r["res"]["crucible_cold"], r["res"].get("baseline_cold") or [], r["res"]["mergekit_cold"]
            if not cc:
                continue
            fl = r["floor_cold"] if isinstance(r["floor_cold"], list) else [r["floor_cold"]]
            f = statistics.median(fl)
            c, ccpu, cin = stats(cc, "wall"), stats(cc, "cpu")[0], stats(cc, "fs_in")[0]
            b = stats(bc, "wall") if bc else None
            m = mc[0] if mc else None
            bs = f"{b[0]:.2f} ({b[1]:.2f}–{b[2]:.2f})" if b else "—"
            out.append(f"| {r['name']} | {c[0]:.2f} ({c[1]:.2f}–{c[2]:.2f}) | {bs} | {c[0] / b[0] if b else float('nan'):.3f} | "
                       f"{m['wall'] if m else float('nan'):.2f} | {c[0] / m['wall'] if m else float('nan'):.3f} | "
                       f"{f:.2f} ({min(fl):.2f}–{max(fl):.2f}) | {c[0] / f:.2f} | {b[0] / f if b else float('nan'):.2f} | "
                       f"{ccpu:.1f} / {stats(bc, 'cpu')[0] if bc else float('nan'):.1f} | "
                       f"{mib(cin)} / {mib(stats(bc, 'fs_in')[0]) if bc else '—'} / {mib(m['fs_in']) if m else '—'} |")
    out += ["", "Agreement (bench/compare.py, crucible vs mergekit; ulps of bf16) and plan accuracy:", "",
            "| recipe | kind | bit-exact | within 1 ulp | worst tensor bit-exact | max ulp | max rel diff | changed-from-base crucible / mergekit | plan read vs read (inputs evicted) | input files | plan write vs output | plan peak vs RSS |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ag, pl = r["agree"] or {}, r["plan"]
        rss = stats(r["res"]["crucible"], "rss")[0]
        chg = (f"{ag['changed_fraction_a']:.4f} / {ag['changed_fraction_b']:.4f}" if "changed_fraction_a" in ag else "—")
        ex = f"{ag['exact_fraction']:.6f}" if "exact_fraction" in ag else ag.get("error", "—")
        w1 = f"{ag['within_1ulp_fraction']:.6f}" if "within_1ulp_fraction" in ag else "—"
        rel = f"{ag['max_rel_diff']:.2g}" if "max_rel_diff" in ag else "—"
        out.append(f"| {r['name']} | {r['kind']} | {ex} | {w1} | {ag.get('min_exact_fraction', float('nan')):.4f} | "
                   f"{ag.get('max_ulp', '—')} | {rel} | {chg} | "
                   f"{mib(pl.get('read', 0))} vs {mib(r['read_meas']) if r.get('read_meas') is not None else '—'} | "
                   f"{mib(r['in_bytes'])} | {pl.get('write', 0)} vs {r['out_bytes']} B | "
                   f"{mib(pl.get('peak', 0))} vs {mib(rss)} ({pl.get('peak', 0) / rss:.2f}) |")
    if scaling:
        out += ["", "Memory scaling (crucible ties-3):", "",
                "| threads | --max-memory | wall s | CPU s | peak RSS | plan peak |", "|---|---|---|---|---|---|"]
        for s in scaling:
            out.append(f"| {s['threads']} | {s['max_memory'] or '—'} | {s['run']['wall']:.2f} | {s['run']['cpu']:.2f} | "
                       f"{mib(s['run']['rss'])} | {mib(s['plan'].get('peak', 0))} |")
    text = "\n".join(out) + "\n"
    with open(os.path.join(RESULTS, f"{size}.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
