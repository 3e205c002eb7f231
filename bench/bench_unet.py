#!/usr/bin/env python3
"""dpo bench unet beside diffusers: the SD1.5 UNet (random weights) forward and
forward+backward on the CPU, PyTorch and dpo at the same thread count, in the
same run, one after the other. Prints a table and, with --write, appends it to
bench/RESULTS.md.

Pinned versions (checked): torch 2.15.0, diffusers 0.42.1.
Run: /work/venv-torch/bin/python bench/bench_unet.py --dpo build/dpo --threads 4 [--size 64]
     [--batch 1 --batch 2] [--repeat 1] [--write]
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import torch

VERSIONS = {"torch": "2.15.0", "diffusers": "0.42.1"}
import diffusers  # noqa: E402
from diffusers import UNet2DConditionModel  # noqa: E402

if torch.__version__.split("+")[0] != VERSIONS["torch"] or diffusers.__version__ != VERSIONS["diffusers"]:
    sys.exit(f"need {VERSIONS}, have torch {torch.__version__}, diffusers {diffusers.__version__}")

SD15 = dict(act_fn="silu", attention_head_dim=8, block_out_channels=(320, 640, 1280, 1280),
            cross_attention_dim=768, down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, layers_per_block=2,
            norm_num_groups=32, in_channels=4, out_channels=4, sample_size=64)


def torch_times(model, batch, size, backward, repeat):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 4, size, size, generator=gen)
    enc = torch.randn(batch, 77, 768, generator=gen)
    t = torch.tensor([999.0 - 37.0 * b for b in range(batch)])
    g = torch.randn(batch, 4, size, size, generator=gen)
    times = []
    for r in range(repeat + 1):
        start = time.perf_counter()
        if backward:
            model.zero_grad(set_to_none=False)
            out = model(x, t, enc).sample
            (out * g).sum().backward()
        else:
            with torch.no_grad():
                model(x, t, enc)
        if r > 0:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dpo", default="build/dpo")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, action="append")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    batches = args.batch or [1, 2]
    torch.set_num_threads(args.threads)
    model = UNet2DConditionModel(**SD15)
    rows = []
    for batch in batches:
        for backward in (0, 1):
            pt = torch_times(model, batch, args.size, backward, args.repeat)
            rows.append({"pass": "forward+backward" if backward else "forward", "batch": batch, "torch": pt})
            print(f"torch {rows[-1]['pass']} batch {batch}: {pt:.3f} s", flush=True)
    del model
    for batch in batches:
        cmd = [args.dpo, "bench", "unet", "--json", "--threads", str(args.threads), "--size", str(args.size),
               "--batch", str(batch), "--repeat", str(args.repeat)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        for line in out.splitlines():
            d = json.loads(line)
            for row in rows:
                if row["pass"] == d["pass"] and row["batch"] == d["batch"]:
                    row["dpo"] = d["seconds"]
                    row["plan_gib"] = d["plan_gib"]
    lines = [f"### UNet SD1.5, {args.size}x{args.size} latent, 77 tokens, {args.threads} threads, "
             f"{datetime.date.today()} ({platform.processor() or platform.machine()}, torch {VERSIONS['torch']}, "
             f"diffusers {VERSIONS['diffusers']}, median of {args.repeat} after a warm-up)", "",
             "| pass | batch | PyTorch s | dpo s | speed-up (PyTorch / dpo) | dpo plan GiB |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['pass']} | {r['batch']} | {r['torch']:.3f} | {r['dpo']:.3f} | "
                     f"{r['torch'] / r['dpo']:.2f}x | {r['plan_gib']:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")
        with open(path, "a") as f:
            f.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
