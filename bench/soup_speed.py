#!/usr/bin/env python3
"""soup_speed.py — a greedy soup with `crucible soup --greedy` against the
same loop done with mergekit-yaml + transformers in Python, side by side.

  PYTHON bench/soup_speed.py [--crucible zig-out/bin/crucible] [--models 4]
         [--tokens 2048] [--threads 2]

PYTHON is a venv with mergekit (mergekit-yaml beside it), torch and
transformers. The base is a synthesised Llama (crucible synth, bf16, ~20M
parameters), the fine-tunes `crucible synth --from BASE --delta-scale`
with different seeds and sizes. Both sides do the same work: score each
model alone, rank, then for each next model merge the uniform average
(linear, normalize) of the soup plus it and score it, keeping it if the
perplexity drops. Python writes every candidate with mergekit-yaml into a
directory and loads it with transformers (float32, the Hugging Face
perplexity guide's windows); crucible merges in memory and scores with
its own forward pass. Wall time per step and in total; the kept models
must be the same. Models and candidates go to bench/work/soup
(git-ignored).
"""
import argparse
import glob
import math
import os
import platform
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from eval_speed import make_text  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--crucible", default=os.path.join(ROOT, "zig-out", "bin", "crucible"))
    ap.add_argument("--models", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch
    import transformers

    torch.set_num_threads(args.threads)
    work = os.path.join(HERE, "work", "soup")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    base = os.path.join(work, "base")
    subprocess.run([args.crucible, "synth", base, "--arch", "llama", "--layers", "4", "--hidden", "256",
                    "--intermediate", "704", "--heads", "4", "--kv-heads", "2", "--vocab", "32000", "--seed", "1"],
                   check=True, capture_output=True)
    models = []
    for i in range(args.models):
        d = os.path.join(work, f"ft{i + 1}")
        scale = ["0.3", "0.3", "1", "0.5", "0.4", "0.6"][i % 6]
        subprocess.run([args.crucible, "synth", d, "--from", base, "--delta-scale", scale, "--seed", str(20 + i)],
                       check=True, capture_output=True)
        for f in glob.glob(os.path.join(base, "tokenizer*")) + glob.glob(os.path.join(base, "special_tokens*")):
            shutil.copy(f, d)
        models.append(d)
    tok = transformers.AutoTokenizer.from_pretrained(base)
    text = make_text(args.tokens)
    while len(tok(text).input_ids) > args.tokens:
        text = make_text(int(len(text.split()) * 0.9))
    tpath = os.path.join(work, "held_out.txt")
    with open(tpath, "w", encoding="utf-8") as f:
        f.write(text)
    ids = tok(text, return_tensors="pt").input_ids
    window = 1024

    def ppl(d):
        m = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
        n, nll, prev = ids.size(1), 0.0, 0
        cnt = 0
        for begin in range(0, n, window):
            end = min(begin + window, n)
            trg = end - prev
            x = ids[:, begin:end]
            t = x.clone()
            t[:, :-trg] = -100
            with torch.no_grad():
                loss = m(x, labels=t).loss
            k = (t != -100).sum().item() - 1
            nll += loss.item() * k
            cnt += k
            prev = end
            if end == n:
                break
        return math.exp(nll / cnt)

    mk = os.path.join(os.path.dirname(sys.executable), "mergekit-yaml")

    def merged_ppl(names, k):
        cfg = os.path.join(work, f"py-{k}.yml")
        with open(cfg, "w") as f:
            f.write("merge_method: linear\nparameters:\n  normalize: true\nmodels:\n")
            for m in names:
                f.write(f"  - model: {m}\n    parameters:\n      weight: 1.0\n")
        out = os.path.join(work, f"py-{k}")
        subprocess.run([mk, cfg, out, "--copy-tokenizer"], check=True, capture_output=True)
        p = ppl(out)
        shutil.rmtree(out)
        return p

    # Python: the loop
    steps = []
    t0 = time.perf_counter()
    alone = []
    for i, m in enumerate(models):
        s = time.perf_counter()
        alone.append((ppl(m), i, m))
        steps.append(("alone " + os.path.basename(m), time.perf_counter() - s))
    alone.sort()
    soup, best = [alone[0][2]], alone[0][0]
    for k, (_, _, m) in enumerate(alone[1:]):
        s = time.perf_counter()
        p = merged_ppl(soup + [m], k)
        steps.append(("+ " + os.path.basename(m), time.perf_counter() - s))
        if p < best:
            soup, best = soup + [m], p
    py_total = time.perf_counter() - t0
    py_kept = [os.path.basename(m) for m in soup]

    # crucible
    out = os.path.join(work, "cr-soup")
    t0 = time.perf_counter()
    r = subprocess.run([args.crucible, "soup", "--greedy", "--eval", tpath, "-j", str(args.threads)] + models + [out],
                       check=True, capture_output=True, text=True)
    cr_total = time.perf_counter() - t0
    line = [x for x in r.stdout.splitlines() if x.startswith("greedy soup:")][0]
    cr_steps = [x for x in r.stdout.splitlines() if x.startswith("step ")]
    cr_kept = []
    for x in cr_steps:
        if not x.endswith("kept"):
            continue
        body = x.split(": ", 1)[1]
        body = body[2:] if body.startswith("+ ") else body
        cr_kept.append(os.path.basename(body.rsplit(": perplexity", 1)[0]))

    n_eval = len(models) + len(models) - 1
    print(f"greedy soup of {len(models)} synthesised Llama fine-tunes (4 layers, hidden 256, vocab 32000, bf16), "
          f"{ids.size(1)} held-out tokens, {args.threads} threads")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs visible (shared with other jobs); "
          f"torch {torch.__version__}, transformers {transformers.__version__}")
    print()
    print("| step | mergekit-yaml + transformers (s) |")
    print("|---|---|")
    for name, t in steps:
        print(f"| {name} | {t:.2f} |")
    print()
    print(f"total: Python {py_total:.2f} s, crucible {cr_total:.2f} s ({py_total / cr_total:.1f}x); "
          f"per evaluation ({n_eval}): Python {py_total / n_eval:.2f} s, crucible {cr_total / n_eval:.2f} s")
    print(f"kept: Python {py_kept}, crucible {cr_kept}: {'same' if py_kept == cr_kept else 'DIFFERENT'}")
    print(f"crucible: {line}; Python perplexity {best:.6f}")


if __name__ == "__main__":
    main()
