#!/usr/bin/env python3
"""dpo bench train beside PyTorch: one Diffusion-DPO step as the official
train.py computes it (diffusers UNet2DConditionModel, random weights, CPU):
reference UNet forward (no grad) on winner and loser, policy forward +
backward on both, one shared timestep and noise per pair, the official loss
-logsigmoid(-0.5 beta (model_diff - ref_diff)), then an AdamW update of the
policy (dpo bench train's step ends with one too, since 2026-11-27; the
results recorded before that date time both steps without it). Same config, batch, latent
size, tokens and thread count as `dpo bench train`, run in the same process
tree one after the other. Prints a table; --write appends it to
bench/RESULTS.md under "## dpo bench train (issue 5)".

Pinned versions (checked): torch 2.15.0, diffusers 0.42.1.
Run: /work/venv-torch/bin/python bench/bench_train.py --dpo build/dpo --threads 2 [--config tiny|sd15|both]
     [--repeat 1] [--write]
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
import torch.nn.functional as F

VERSIONS = {"torch": "2.15.0", "diffusers": "0.42.1"}
import diffusers  # noqa: E402
from diffusers import DDPMScheduler, UNet2DConditionModel  # noqa: E402

if torch.__version__.split("+")[0] != VERSIONS["torch"] or diffusers.__version__ != VERSIONS["diffusers"]:
    sys.exit(f"need {VERSIONS}, have torch {torch.__version__}, diffusers {diffusers.__version__}")

SD15 = dict(act_fn="silu", attention_head_dim=8, block_out_channels=(320, 640, 1280, 1280),
            cross_attention_dim=768, down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, layers_per_block=2,
            norm_num_groups=32, in_channels=4, out_channels=4, sample_size=64)
TINY = dict(attention_head_dim=2, block_out_channels=(32, 64), cross_attention_dim=32,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), layers_per_block=1, norm_num_groups=8,
            sample_size=32, up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
CASES = {"tiny": (TINY, 32, 8), "sd15": (SD15, 64, 77)}


def torch_step_seconds(cfg, hw, tokens, batch, repeat, beta=5000.0):
    policy = UNet2DConditionModel(**cfg)
    reference = UNet2DConditionModel(**cfg)
    reference.load_state_dict(policy.state_dict())
    reference.requires_grad_(False)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-8)
    sched = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    gen = torch.Generator().manual_seed(0)
    c = cfg.get("in_channels", 4)
    x0 = torch.randn(2 * batch, c, hw, hw, generator=gen)       # winners then losers
    noise = torch.randn(batch, c, hw, hw, generator=gen).repeat(2, 1, 1, 1)
    t = torch.tensor([(999 - 37 * b) % 1000 for b in range(batch)]).repeat(2)
    enc = torch.randn(batch, tokens, cfg["cross_attention_dim"], generator=gen).repeat(2, 1, 1)
    times = []
    for r in range(repeat + 1):
        start = time.perf_counter()
        policy.zero_grad(set_to_none=False)
        noisy = sched.add_noise(x0, noise, t)
        pred = policy(noisy, t, enc).sample
        model_losses = (pred.float() - noise.float()).pow(2).mean(dim=[1, 2, 3])
        model_w, model_l = model_losses.chunk(2)
        with torch.no_grad():
            ref_pred = reference(noisy, t, enc).sample
            ref_losses = (ref_pred.float() - noise.float()).pow(2).mean(dim=[1, 2, 3])
            ref_w, ref_l = ref_losses.chunk(2)
        inside = -0.5 * beta * ((model_w - model_l) - (ref_w - ref_l))
        loss = -F.logsigmoid(inside).mean()
        loss.backward()
        opt.step()
        if r > 0:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dpo", default="build/dpo")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--config", default="both", choices=["tiny", "sd15", "both"])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = ["tiny", "sd15"] if args.config == "both" else [args.config]
    rows = []
    for name in names:
        cfg, hw, tokens = CASES[name]
        cmd = [args.dpo, "bench", "train", "--json", "--config", name, "--threads", str(args.threads),
               "--batch", str(args.batch), "--repeat", str(args.repeat)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        d = json.loads(out.splitlines()[-1])
        print(f"dpo   {name}: {d['step_seconds']:.3f} s/step", flush=True)
        # PyTorch second: its freed tensors stay in this process's heap, and
        # the SD1.5 case needs the memory of both UNets twice over.
        pt = torch_step_seconds(cfg, hw, tokens, args.batch, args.repeat)
        print(f"torch {name}: {pt:.3f} s/step", flush=True)
        rows.append({"config": name, "hw": hw, "tokens": tokens, "torch": pt, "dpo": d["step_seconds"]})
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    lines = [f"### {datetime.date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"{args.threads} threads, torch {VERSIONS['torch']}, diffusers {VERSIONS['diffusers']}, "
             f"median of {args.repeat} after a warm-up", "", f"Load after the run: `{load}`", "",
             "| config | pairs/step | latent | tokens | PyTorch s/step | dpo s/step | PyTorch pairs/s | dpo pairs/s | "
             "ratio (dpo / PyTorch pairs/s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['config']} | {args.batch} | {r['hw']}x{r['hw']} | {r['tokens']} | {r['torch']:.3f} | "
                     f"{r['dpo']:.3f} | {args.batch / r['torch']:.3f} | {args.batch / r['dpo']:.3f} | "
                     f"{r['torch'] / r['dpo']:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")
        with open(path) as f:
            have = f.read()
        with open(path, "a") as f:
            if "## dpo bench train (issue 5)" not in have:
                f.write("\n## dpo bench train (issue 5)\n\n"
                        "One Diffusion-DPO step on the CPU: reference forward on winner and loser, policy\n"
                        "forward + backward on both, AdamW update (bench/bench_train.py, PyTorch = the\n"
                        "official step with diffusers' UNet, same config, batch and threads, in the same run).\n")
            f.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
