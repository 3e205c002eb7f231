#!/usr/bin/env python3
"""The PyTorch baseline of issue 10 on one CUDA GPU: diffusers' UNet2DConditionModel
in the SD1.5 configuration (random weights), 64x64 latents, text states of 77 x 768,
bf16, attention through SDPA (diffusers' AttnProcessor2_0), measured in this run:

  fwd+bwd   the policy's forward and backward on 2 x pairs samples (winners and
            losers), fp32 master weights under bf16 autocast, as accelerate's
            mixed_precision="bf16" trains;
  dpo step  Diffusion-DPO's step: the frozen reference (bf16 weights, no grad)
            and the policy on the same noisy latents, per-sample MSEs, the DPO
            loss (beta 5000), backward, AdamW (fused) on the fp32 weights.

Each time is the median of --repeat steps after --warmup, with
torch.cuda.synchronize() around each; peak memory is
torch.cuda.max_memory_allocated() over the timed steps of that phase. FLOPs come
from torch.utils.flop_counter on one forward (multiply-adds x 2); a step counts
policy forward + backward (3x forward) and the reference forward (1x), per sample.

Usage: python3 bench/torch_cuda_baseline.py [--pairs 2] [--repeat 5] [--warmup 2]
                                            [--compile] [--json results.json]
Needs torch with CUDA and diffusers (tests/device/pack.sh carries the wheel).
"""
import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

try:
    from diffusers import UNet2DConditionModel
    import diffusers
except ImportError as e:  # said plainly: run.sh reports it
    sys.exit(f"torch_cuda_baseline: diffusers is not importable ({e}); nothing measured")

SD15 = dict(act_fn="silu", attention_head_dim=8, block_out_channels=(320, 640, 1280, 1280),
            cross_attention_dim=768, down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, layers_per_block=2,
            norm_num_groups=32, in_channels=4, out_channels=4, sample_size=64)

# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' datasheets, to turn the
# measured rate into a model FLOP utilisation; unknown cards get none.
PEAK_BF16 = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def timed(fn, repeat, warmup):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeat):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), torch.cuda.max_memory_allocated()


def forward_flops(model, x, t, enc):
    from torch.utils.flop_counter import FlopCounterMode
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16), FlopCounterMode(display=False) as fc:
        model(x[:1], t[:1], enc[:1])
    return fc.get_total_flops()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--beta", type=float, default=5000.0)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile(policy)")
    ap.add_argument("--json")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("torch_cuda_baseline: torch sees no CUDA device; nothing measured")
    dev = torch.device("cuda")
    name = torch.cuda.get_device_name(0)
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    policy = UNet2DConditionModel(**SD15).to(dev)  # fp32 master weights
    policy.train()
    reference = UNet2DConditionModel(**SD15).to(dev, dtype=torch.bfloat16)
    reference.load_state_dict(policy.state_dict())
    reference.requires_grad_(False).eval()
    n_params = sum(p.numel() for p in policy.parameters())
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-8, fused=True)

    n = 2 * args.pairs  # winners then losers
    g = torch.Generator(device=dev).manual_seed(0)
    latents = torch.randn(n, 4, 64, 64, device=dev, generator=g)
    noise = torch.randn(n, 4, 64, 64, device=dev, generator=g)
    enc = torch.randn(n, 77, 768, device=dev, generator=g)
    t = torch.randint(0, 1000, (args.pairs,), device=dev, generator=g).repeat(2)  # same t for w and l
    noisy = latents + noise  # the schedule's scaling does not change the cost

    def fwd_bwd(model):
        def run():
            opt.zero_grad(set_to_none=False)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = model(noisy, t, enc).sample
            out.float().square().mean().backward()
        return run

    def dpo_step(model):
        def run():
            opt.zero_grad(set_to_none=False)
            with torch.no_grad():
                ref_pred = reference(noisy.bfloat16(), t, enc.bfloat16()).sample.float()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                pred = model(noisy, t, enc).sample.float()
            model_mse = (pred - noise).square().mean(dim=(1, 2, 3))
            ref_mse = (ref_pred - noise).square().mean(dim=(1, 2, 3))
            model_diff = model_mse[:args.pairs] - model_mse[args.pairs:]
            ref_diff = ref_mse[:args.pairs] - ref_mse[args.pairs:]
            loss = -F.logsigmoid(-0.5 * args.beta * (model_diff - ref_diff)).mean()
            loss.backward()
            opt.step()
        return run

    flops_fwd = forward_flops(policy, noisy, t, enc)
    results = {"device": name, "torch": torch.__version__, "diffusers": diffusers.__version__,
               "pairs": args.pairs, "samples_per_step": n, "params": n_params,
               "forward_flops_per_sample": flops_fwd, "repeat": args.repeat,
               "attention": type(policy.attn_processors[next(iter(policy.attn_processors))]).__name__,
               "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None)

    variants = [("eager", policy)]
    if args.compile:
        variants.append(("compile", torch.compile(policy)))
    for label, model in variants:
        s, mem = timed(fwd_bwd(model), args.repeat, args.warmup)
        results[f"fwd_bwd_{label}_s"] = s
        results[f"fwd_bwd_{label}_peak_bytes"] = mem
        s, mem = timed(dpo_step(model), args.repeat, args.warmup)
        step_flops = n * flops_fwd * 4  # policy fwd + bwd (3x) + reference fwd (1x)
        results[f"dpo_step_{label}_s"] = s
        results[f"dpo_step_{label}_peak_bytes"] = mem
        results[f"dpo_step_{label}_pairs_per_s"] = args.pairs / s
        results[f"dpo_step_{label}_tflops"] = step_flops / s / 1e12
        if peak:
            results[f"dpo_step_{label}_mfu"] = step_flops / s / 1e12 / peak

    print(f"device {name}; torch {torch.__version__}; diffusers {diffusers.__version__}; "
          f"{n_params / 1e6:.0f}M parameters; attention {results['attention']}")
    print(f"forward FLOPs per sample {flops_fwd / 1e9:.1f} GFLOP; {n} samples per step ({args.pairs} pairs)")
    for label, _ in variants:
        print(f"[{label}] fwd+bwd {results[f'fwd_bwd_{label}_s'] * 1e3:.1f} ms, "
              f"peak {results[f'fwd_bwd_{label}_peak_bytes'] / 2**30:.2f} GiB")
        mfu = results.get(f"dpo_step_{label}_mfu")
        print(f"[{label}] dpo step {results[f'dpo_step_{label}_s'] * 1e3:.1f} ms, "
              f"{results[f'dpo_step_{label}_pairs_per_s']:.2f} pairs/s, "
              f"{results[f'dpo_step_{label}_tflops']:.0f} TFLOP/s"
              + (f" (MFU {100 * mfu:.1f}% of {peak:.0f})" if mfu else "")
              + f", peak {results[f'dpo_step_{label}_peak_bytes'] / 2**30:.2f} GiB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
