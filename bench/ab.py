#!/usr/bin/env python3
"""bench/ab.py — two crucible binaries side by side on bench/run.py's recipes.

For a change that must not slow crucible down (a restructuring, a safety
check): both binaries run each recipe alternately (the order flips every
run) on the same synthesised models with a warm page cache, and the table
gives each one's median wall time and peak RSS and their ratio. Outputs are
compared byte for byte, so a regression in bytes shows too.

usage: python3 bench/ab.py OLD_BIN NEW_BIN [--size quick|1.1B] [--runs N] [--recipes a,b]
                           [--threads N] [--out FILE.md]
"""
import argparse, filecmp, os, platform, statistics, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (bench/run.py: recipes, model synthesis, timing)


def merge(binary, recipe, out, models, threads):
    run.BIN = binary
    return run.run_crucible(recipe, out, models, threads)


def same_output(a, b):
    names = sorted(f for f in os.listdir(a) if f.endswith(".safetensors"))
    return names == sorted(f for f in os.listdir(b) if f.endswith(".safetensors")) and all(
        filecmp.cmp(os.path.join(a, n), os.path.join(b, n), shallow=False) for n in names)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--size", default="quick", choices=sorted(run.SIZES))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--recipes", default=",".join(run.RECIPES))
    ap.add_argument("--threads", type=int)
    ap.add_argument("--out")
    a = ap.parse_args()
    old, new = os.path.abspath(a.old), os.path.abspath(a.new)
    shape = run.SIZES[a.size]
    work = os.path.join(run.WORK, a.size)
    models = os.path.join(work, "models")
    os.makedirs(models, exist_ok=True)
    run.BIN = new
    run.synth(models, shape)
    L = shape["layers"]
    rows = []
    for name in a.recipes.split(","):
        recipe = os.path.join(work, name + ".yml")
        with open(recipe, "w") as f:
            f.write(run.RECIPES[name].replace("{L}", str(L)).replace("{H}", str(L // 2)))
        run.warm_inputs([os.path.join(models, m) for m in os.listdir(models)])
        res = {old: [], new: []}
        outs = {old: os.path.join(work, "ab-old"), new: os.path.join(work, "ab-new")}
        for i in range(a.runs):
            for b in ((old, new) if i % 2 == 0 else (new, old)):
                res[b].append(merge(b, recipe, outs[b], models, a.threads))
        med = lambda b, k: statistics.median(r[k] for r in res[b])
        # random methods (dare) give the same bytes for the same seed too
        same = same_output(outs[old], outs[new])
        rows.append((name, med(old, "wall"), med(new, "wall"), med(old, "rss"), med(new, "rss"), same))
        print(f"{name}: {rows[-1][1]:.3f} s -> {rows[-1][2]:.3f} s, same bytes: {same}", file=sys.stderr)
    lines = [f"### A/B: {a.size}, {a.runs} runs each, alternating, warm cache",
             "",
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; `python3 bench/ab.py OLD NEW --size {a.size} --runs {a.runs}`",
             "",
             f"{run.machine()}",
             "",
             "| recipe | old s | new s | new/old | RSS old | RSS new | same bytes |",
             "|---|---|---|---|---|---|---|"]
    for n, wo, wn, ro, rn, same in rows:
        lines.append(f"| {n} | {wo:.3f} | {wn:.3f} | {wn / wo:.3f} | {run.mib(ro)} | {run.mib(rn)} | {'yes' if same else 'NO'} |")
    text = "\n".join(lines) + "\n"
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    print(text)
    return 0 if all(r[5] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
