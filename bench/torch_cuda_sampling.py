#!/usr/bin/env python3
"""The diffusers side of issue 10's sampling target ("SD1.5 50-step image >= 1.2x
diffusers at bf16") on one CUDA GPU, with no network:

  make   a Stable Diffusion 1.5 pipeline with random weights, built from SD1.5's
         configs (the UNet as bench/torch_cuda_baseline.py; AutoencoderKL 128/256/
         512/512; CLIPTextModel 768 wide, 12 layers, 12 heads, quick_gelu, 77
         positions; CLIP's real BPE vocabulary from tests/fixtures/tokenizer/clip;
         DDIMScheduler with SD1.5's scheduler settings), saved by
         StableDiffusionPipeline.save_pretrained in float16 (half the disk and
         time; dpo reads F16 safetensors) into --pipeline DIR, plus the tokenizer's
         vocab.json and merges.txt (transformers 5 writes tokenizer.json alone;
         dpo reads the former). `dpo bench sample --model DIR` loads the same
         weights. Skipped when DIR/model_index.json exists.
  time   StableDiffusionPipeline.from_pretrained(DIR, torch_dtype=bfloat16) on the
         GPU, attention through SDPA (AttnProcessor2_0), --steps (50) DDIM steps,
         guidance --guidance (7.5), --batch images (1) of 512x512 per call,
         output_type "np" (VAE decode and the copy to the host included), the
         prompt dpo bench sample uses; each call's time with torch.cuda.synchronize()
         around it, the median of --repeat calls after --warmup; peak memory:
         torch.cuda.max_memory_allocated() over the timed calls (its tensors alone),
         and cudaMemGetInfo's in-use memory after them (the whole device, the CUDA
         context included, as dpo reports it).

Pinned (checked): diffusers 0.42.1, the wheel tests/device/pack.sh carries. torch
and transformers are the GPU image's (written against torch 2.11, transformers
5.17; both recorded in the JSON); transformers 4.x and 5.x both make the folder.

Usage: python3 bench/torch_cuda_sampling.py --pipeline DIR [--make-only] [--steps 50]
           [--guidance 7.5] [--batch 1] [--repeat 3] [--warmup 1] [--json results.json]
"""
import argparse
import gzip
import json
import os
import shutil
import statistics
import sys
import time

VERSIONS = {"diffusers": "0.42.1"}
PROMPT = "a photograph of an astronaut riding a horse"   # as cli/bench_sample.c
HERE = os.path.dirname(os.path.abspath(__file__))
TOKENIZER_FIXTURE = os.path.join(HERE, "..", "tests", "fixtures", "tokenizer", "clip")

import numpy as np  # noqa: E402
import torch  # noqa: E402

try:
    import diffusers  # noqa: E402
    import transformers  # noqa: E402
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel  # noqa: E402
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer  # noqa: E402
except ImportError as e:  # said plainly: run.sh reports it
    sys.exit(f"torch_cuda_sampling: diffusers or transformers is not importable ({e}); nothing made or measured")
if diffusers.__version__ != VERSIONS["diffusers"]:
    sys.exit(f"torch_cuda_sampling: need diffusers {VERSIONS['diffusers']}, have {diffusers.__version__}")

# runwayml/stable-diffusion-v1-5's component configs (their computing keys; the
# rest are each class's defaults, which are SD1.5's).
UNET = dict(act_fn="silu", attention_head_dim=8, block_out_channels=(320, 640, 1280, 1280),
            cross_attention_dim=768, down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, layers_per_block=2,
            norm_num_groups=32, in_channels=4, out_channels=4, sample_size=64)
VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
           down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
           layers_per_block=2, act_fn="silu", norm_num_groups=32, sample_size=512, scaling_factor=0.18215)
TEXT = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
            max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=768)
SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                 set_alpha_to_one=False, steps_offset=1, num_train_timesteps=1000)


def make_pipeline(out_dir, seed=0):
    """Writes the random SD1.5 pipeline into out_dir (built beside it, then renamed)."""
    tmp = out_dir.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, "tokenizer"))
    for name in ("vocab.json", "merges.txt"):
        with gzip.open(os.path.join(TOKENIZER_FIXTURE, name + ".gz"), "rb") as f, \
                open(os.path.join(tmp, "tokenizer", name), "wb") as g:
            shutil.copyfileobj(f, g)
    vocab_path, merges_path = (os.path.join(tmp, "tokenizer", n) for n in ("vocab.json", "merges.txt"))
    tokenizer = CLIPTokenizer(vocab_path, merges_path, model_max_length=77)
    with open(vocab_path, encoding="utf-8") as f:
        vocab = json.load(f)
    bos, eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    dev = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    torch.manual_seed(seed)
    with dev:  # initialised where it is fast; saved from the host
        unet = UNet2DConditionModel(**UNET)
        vae = AutoencoderKL(**VAE)
        text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), bos_token_id=bos, eos_token_id=eos,
                                                    pad_token_id=eos, **TEXT))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=DDIMScheduler(**SCHEDULER), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.to(device="cpu", dtype=torch.float16)
    pipe.save_pretrained(tmp, safe_serialization=True)
    # save_pretrained may rewrite the tokenizer folder: CLIP's files again, for dpo.
    for name in ("vocab.json", "merges.txt"):
        with gzip.open(os.path.join(TOKENIZER_FIXTURE, name + ".gz"), "rb") as f, \
                open(os.path.join(tmp, "tokenizer", name), "wb") as g:
            shutil.copyfileobj(f, g)
    del pipe, unet, vae, text_encoder
    shutil.rmtree(out_dir, ignore_errors=True)
    os.rename(tmp, out_dir)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pipeline", required=True, help="folder of the random SD1.5 pipeline (made if absent)")
    ap.add_argument("--make-only", action="store_true")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--json")
    args = ap.parse_args()
    if not args.make_only and not torch.cuda.is_available():
        sys.exit("torch_cuda_sampling: torch sees no CUDA device; nothing measured")

    results = {"torch": torch.__version__, "diffusers": diffusers.__version__,
               "transformers": transformers.__version__, "pipeline": os.path.abspath(args.pipeline),
               "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    t0 = time.perf_counter()
    made = not os.path.exists(os.path.join(args.pipeline, "model_index.json"))
    if made:
        make_pipeline(args.pipeline)
    results["made"] = made
    results["make_seconds"] = time.perf_counter() - t0
    print(f"pipeline {args.pipeline}: {'made' if made else 'already there'} in {results['make_seconds']:.1f} s")
    if args.make_only:
        return
    torch.cuda.empty_cache()

    dev = torch.device("cuda")
    results["device"] = torch.cuda.get_device_name(0)
    t0 = time.perf_counter()
    pipe = StableDiffusionPipeline.from_pretrained(args.pipeline, torch_dtype=torch.bfloat16, safety_checker=None,
                                                   requires_safety_checker=False).to(dev)
    results["load_seconds"] = time.perf_counter() - t0
    try:  # SDPA, as torch_cuda_baseline.py (diffusers' default on torch 2)
        from diffusers.models.attention_processor import AttnProcessor2_0
        pipe.unet.set_attn_processor(AttnProcessor2_0())
        pipe.vae.set_attn_processor(AttnProcessor2_0())
    except (ImportError, AttributeError, ValueError) as e:
        print(f"attention processors left as loaded ({e})")
    results["attention"] = type(pipe.unet.attn_processors[next(iter(pipe.unet.attn_processors))]).__name__
    pipe.set_progress_bar_config(disable=True)
    side = pipe.unet.config.sample_size * pipe.vae_scale_factor
    generator = torch.Generator(device=dev)

    def call():
        generator.manual_seed(0)
        return pipe([PROMPT] * args.batch, height=side, width=side, num_inference_steps=args.steps,
                    guidance_scale=args.guidance, generator=generator, output_type="np").images

    t0 = time.perf_counter()
    for _ in range(args.warmup):
        call()
    torch.cuda.synchronize()
    results["warmup_seconds"] = time.perf_counter() - t0
    torch.cuda.reset_peak_memory_stats()
    times = []
    images = None
    for _ in range(args.repeat):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        images = call()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) / args.batch)
    free, total = torch.cuda.mem_get_info()
    s = statistics.median(times)
    results.update({
        "steps": args.steps, "guidance": args.guidance, "batch": args.batch, "resolution": side,
        "repeat": args.repeat, "dtype": "bfloat16", "scheduler": type(pipe.scheduler).__name__,
        "seconds_per_image": s, "min_seconds_per_image": min(times), "images_per_s": 1.0 / s,
        "peak_allocated_bytes": torch.cuda.max_memory_allocated(),
        "peak_reserved_bytes": torch.cuda.max_memory_reserved(),
        "device_memory_in_use_bytes": total - free,
        # Random weights may drive the image out of range; the timing does not care,
        # but a reader of the numbers should know.
        "image_finite_fraction": float(np.isfinite(images).mean()),
    })
    gib = 2.0 ** 30
    print(f"device {results['device']}; torch {torch.__version__}; diffusers {diffusers.__version__}; "
          f"transformers {transformers.__version__}; attention {results['attention']}")
    print(f"diffusers StableDiffusionPipeline bf16, {side}x{side}, {args.steps} {results['scheduler']} steps, "
          f"guidance {args.guidance}, batch {args.batch}: {s:.3f} s/image ({1.0 / s:.3f} images/s, median of "
          f"{args.repeat} after {args.warmup} warm-up), peak allocated {results['peak_allocated_bytes'] / gib:.2f} "
          f"GiB, device in use {results['device_memory_in_use_bytes'] / gib:.2f} GiB; load {results['load_seconds']:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
