#!/usr/bin/env python3
"""eval_speed.py — `crucible eval` against transformers on CPU, side by side
in one run: the same synthesised Llama (crucible synth, bf16 weights), the
same text and windows, tokens/s at each thread count, and the perplexities
compared (they must agree to 1e-4 relative).

  PYTHON bench/eval_speed.py [--crucible zig-out/bin/crucible] [--threads 1,2]
         [--tokens 4096] [--window 1024] [--size 90m|500m] [--runs 1]
         [--baseline OTHER_CRUCIBLE]

PYTHON is a venv with torch and transformers (tests/compat's). transformers
runs the model in float32 (the weights upcast from bf16, as crucible
computes) with its default (sdpa) attention under torch.set_num_threads(N),
scoring consecutive windows with the Hugging Face perplexity guide's loop;
crucible runs `eval --json --threads N --max-tokens W`, whose
tokens_per_second covers the scoring (not the model load or tokenization) —
the Python side is timed the same way. Runs alternate crucible /
transformers per thread count so drifting load from other processes hits
both; with --baseline a second crucible binary (e.g. the previous
commit's) runs in the same rotation. CPU seconds per token: the child's
user+sys time for crucible (the whole command, model load included), the
process's for transformers (the scoring loop, all torch threads). The load
average is printed before and after, since the machine may be shared. The
models go to bench/work/eval (git-ignored). Results: a markdown
table on stdout; bench/results/eval-speed.md keeps the last one by hand.
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

SIZES = {
    # ~87M parameters: 2 x 24.6M embeddings/head + 6 layers of 6.3M
    "90m": dict(layers=6, hidden=768, intermediate=2048, heads=12, kv=4, vocab=32000),
    # ~0.5B: Qwen2.5-0.5B-like widths as a Llama
    "500m": dict(layers=24, hidden=896, intermediate=4864, heads=14, kv=2, vocab=32000),
}

WORDS = ("the of and to in is was for on that with as by at from his her an were which are this be has "
         "had one other their there after first new two also its time into only over city can most "
         "river mountain music history school water north station village party film game year 1998 "
         "2024 42 3.14 café naïve über résumé").split()


def make_text(n_words, seed=1):
    x = seed
    out = []
    for i in range(n_words):
        x = (x * 1103515245 + 12345) & 0x7fffffff
        w = WORDS[x % len(WORDS)]
        out.append(w + ("." if x % 17 == 0 else ","if x % 11 == 0 else ""))
        if x % 97 == 0:
            out.append("\n")
    return " ".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--crucible", default=os.path.join(ROOT, "zig-out", "bin", "crucible"))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--tokens", type=int, default=4096, help="about this many tokens of text")
    ap.add_argument("--window", type=int, default=1024)
    ap.add_argument("--size", default="90m", choices=sorted(SIZES))
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--baseline", help="a second crucible binary run in the same rotation")
    args = ap.parse_args()

    import torch
    import transformers

    work = os.path.join(HERE, "work", "eval")
    os.makedirs(work, exist_ok=True)
    mdir = os.path.join(work, "llama-" + args.size)
    s = SIZES[args.size]
    if not os.path.exists(os.path.join(mdir, "config.json")):
        subprocess.run([args.crucible, "synth", mdir, "--arch", "llama", "--layers", str(s["layers"]),
                        "--hidden", str(s["hidden"]), "--intermediate", str(s["intermediate"]),
                        "--heads", str(s["heads"]), "--kv-heads", str(s["kv"]), "--vocab", str(s["vocab"]),
                        "--seed", "1"], check=True)
    tok = transformers.AutoTokenizer.from_pretrained(mdir)
    n_words = args.tokens
    text = make_text(n_words)
    while len(tok(text).input_ids) > args.tokens:
        n_words = int(n_words * 0.9)
        text = make_text(n_words)
    tpath = os.path.join(work, f"text-{args.tokens}.txt")
    with open(tpath, "w", encoding="utf-8") as f:
        f.write(text)
    ids = tok(text, return_tensors="pt").input_ids
    model = transformers.AutoModelForCausalLM.from_pretrained(mdir, dtype=torch.float32).eval()
    n_params = sum(p.numel() for p in model.parameters())

    def hf_run(threads):
        torch.set_num_threads(threads)
        seq_len, W = ids.size(1), args.window
        nll_sum, n_tok, prev_end, processed = 0.0, 0, 0, 0
        t0, c0 = time.perf_counter(), time.process_time()
        for begin in range(0, seq_len, W):
            end = min(begin + W, seq_len)
            trg = end - prev_end
            x = ids[:, begin:end]
            tgt = x.clone()
            tgt[:, :-trg] = -100
            with torch.no_grad():
                loss = model(x, labels=tgt).loss
            k = (tgt != -100).sum().item() - 1
            nll_sum += loss.item() * k
            n_tok += k
            processed += end - begin
            prev_end = end
            if end == seq_len:
                break
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        return dict(ppl=float(torch.exp(torch.tensor(nll_sum / n_tok))), tps=processed / dt, seconds=dt,
                    cpu_per_tok=cpu / processed)

    def cr_run(threads, binary=args.crucible):
        t0 = time.perf_counter()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        p = subprocess.run([binary, "eval", mdir, "--text", tpath, "--json", "--threads", str(threads),
                            "--max-tokens", str(args.window)], check=True, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        r = json.loads(p.stdout)
        return dict(ppl=r["total"]["perplexity"], tps=r["total"]["tokens_per_second"],
                    cpu_per_tok=cpu / r["total"]["tokens"],
                    seconds=r["total"]["seconds"], wall=wall, isa=r["isa"], tokens=r["total"]["tokens"])

    runners = [("c", cr_run), ("h", hf_run)]
    if args.baseline:
        runners.append(("b", lambda th: cr_run(th, args.baseline)))
    load0 = os.getloadavg()
    rows = []
    for th in [int(t) for t in args.threads.split(",")]:
        best = {}
        for r in range(args.runs):
            order = runners if r % 2 == 0 else runners[::-1]
            for who, fn in order:
                res = fn(th)
                if who not in best or res["tps"] > best[who]["tps"]:
                    best[who] = res
        rows.append((th, best))
    load1 = os.getloadavg()

    print(f"model: synthesised llama {args.size} ({n_params / 1e6:.1f}M parameters, bf16 weights), "
          f"{ids.size(1)} tokens in windows of {args.window}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs visible (shared with other jobs); "
          f"torch {torch.__version__}, transformers {transformers.__version__}; crucible kernels "
          f"{rows[0][1]['c']['isa']}; best of {args.runs} run(s)")
    print(f"load average (1/5/15 min): before {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, "
          f"after {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    print()
    print("| threads | crucible tok/s | transformers tok/s | ratio | crucible CPU ms/tok | transformers CPU ms/tok "
          "| crucible ppl | transformers ppl | rel diff |")
    print("|---|---|---|---|---|---|---|---|---|")
    for th, b in rows:
        c, h = b["c"], b["h"]
        rel = abs(c["ppl"] - h["ppl"]) / h["ppl"]
        print(f"| {th} | {c['tps']:.0f} | {h['tps']:.0f} | {c['tps'] / h['tps']:.2f} | "
              f"{c['cpu_per_tok'] * 1e3:.2f} | {h['cpu_per_tok'] * 1e3:.2f} | {c['ppl']:.6f} | "
              f"{h['ppl']:.6f} | {rel:.1e} |")
    if args.baseline:
        print()
        print("| threads | baseline tok/s | crucible tok/s | speed-up | baseline CPU ms/tok | crucible CPU ms/tok "
              "| baseline ppl |")
        print("|---|---|---|---|---|---|---|")
        for th, b in rows:
            c, o = b["c"], b["b"]
            print(f"| {th} | {o['tps']:.0f} | {c['tps']:.0f} | {c['tps'] / o['tps']:.2f} | "
                  f"{o['cpu_per_tok'] * 1e3:.2f} | {c['cpu_per_tok'] * 1e3:.2f} | {o['ppl']:.6f} |")
    if len(rows) > 1:
        c1, h1 = rows[0][1]["c"]["tps"], rows[0][1]["h"]["tps"]
        print()
        for th, b in rows[1:]:
            print(f"scaling 1 -> {th} threads: crucible {b['c']['tps'] / c1:.2f}x, "
                  f"transformers {b['h']['tps'] / h1:.2f}x")

if __name__ == "__main__":
    main()
