#!/usr/bin/env bash
# The device check of issue 10, in one run on a machine with an NVIDIA GPU:
#   1. the binaries: build-bundle/ from tests/device/pack.sh if it was
#      carried here (the GPU image lacks the project's C libraries), else a
#      Release build with the CUDA backend for this GPU's architecture only;
#   2. test_cuda_ops: every CUDA op against the CPU reference (tolerances
#      stated in the test) and a tiny DPO step of its own;
#   3. test_cuda_models: through the kernels' dispatch, CUDA vs CPU: the
#      layout ops, a tiny UNet forward + backward (output, input and every
#      parameter gradient) in float32 and in bf16 mixed precision (against
#      the CPU's bf16 reference; a frozen bf16 model bitwise the trainable
#      one's), the tiny CLIP, the training step's ops (sum of squares, clip
#      factor, DPO loss, AdamW, Adafactor), a tiny dpo_train_step (loss and
#      gradients), txt2img and reward-acc's pass on the tiny pipeline, 3
#      steps of dpo train --backend cuda vs cpu with the device-resident step
#      (AdamW; Adafactor with 2 micro-batches, clipped, --sft-weight, and a
#      stop + resume; SFT; --precision bf16 with a stop + resume: loss, grad
#      norm, weights); then the SD1.5 UNet forward + backward at batch 4
#      (= the baseline's 2 pairs), 64x64, 77 tokens, float32 and bf16: time
#      and memory, plain and with activation checkpointing (whose gradient
#      must be bitwise the same), and the frozen bf16 reference's forward and
#      memory (tolerances in the test);
#   4. dpo bench train --backend cuda (tiny and SD1.5, 2 pairs, float32), and
#      the SD1.5 step with --precision bf16 (policy bf16 mixed precision,
#      reference frozen bf16);
#   5. bench/torch_cuda_baseline.py: PyTorch + diffusers SD1.5 UNet, bf16,
#      SDPA, forward+backward and a DPO step, time and peak memory, 2 pairs
#      (eager; torch.compile too with DPO_TORCH_COMPILE=1);
#   6. the bf16 SD1.5 step again with --checkpointing; then the comparison:
#      every dpo SD1.5 step against the baseline's, pairs/s and memory;
#   7. sampling (one 180 s cap for the whole step): bench/torch_cuda_sampling.py
#      makes an SD1.5 pipeline with random weights (float16, in
#      $DPO_SD15_RANDOM, default /tmp/dpo-sd15-random, kept for a rerun) and
#      times diffusers' StableDiffusionPipeline on it (bf16, SDPA, 50 DDIM
#      steps, guidance 7.5, 512x512, VAE decode included); dpo bench sample
#      --backend cuda times the same folder with --precision bf16 (median of 3,
#      or 1 when short of time) and float32 (1 image) if time is left; then
#      images/s against diffusers (target >= 1.2x at bf16) and memory;
#   8.-9. optional extras, as the budget allows: the float32 SD1.5 step with
#      --checkpointing and with --tf32;
#  10. bench_cuda_ops: the CUDA ops timed at SD1.5 shapes;
#  11. dpo bench kernels: the CPU kernels, for reference (if time is left).
# Steps 4 to 7 are the comparisons of the issue's targets (training, then
# sampling), in the same run on the same card, before the extras. Like for like: dpo --precision bf16
# against the baseline's bf16 autocast (bf16 activations and GEMM/conv
# inputs, float32 accumulation, float32 master weights and gradients; the
# reference in bf16 weights without gradients) at the same batch, resolution
# and text length, both steps ending with an AdamW update (dpo's per tensor,
# torch's fused) whose moments are in both memories. Not alike: dpo's
# attention is its own kernel (tensor cores for heads <= 64), the baseline's SDPA; the
# baseline lets TF32 into the float32 ops it keeps; and the memory measures
# differ (dpo: cudaMemGetInfo, the whole device in use; torch:
# max_memory_allocated, its tensors alone). The float32 dpo lines stay as the
# reference of the CPU's numerics.
# Results go to $OUT (the caller sets it): a summary, printed as it goes and
# written to $OUT/summary.txt, and every log in $OUT/details.tar.gz. Every
# number in the summary is measured by this run; a step that could not run
# says why instead. Budget: DPO_DEVICE_BUDGET_S,
# default 450 s (7.5 minutes; each step has its own time limit, cut to what
# is left, so the steps that come late are the ones dropped when time is short).
#
# Usage: OUT=/some/dir tests/device/run.sh
# Exit 0 only when test_cuda_ops and test_cuda_models both pass: a skip (no
# device visible, exit 77), a timeout or any number beyond its tolerance is a
# failure of this script, never a silent pass.
set -uo pipefail
cd "$(dirname "$0")/../.."
: "${OUT:?set OUT to the folder for the results}"
mkdir -p "$OUT"
# Every file goes to a work folder first; on exit $OUT receives
# summary.txt and details.tar.gz (the logs, JSON lines and build log): the
# device tool returns at most 8 files.
WORK=$(mktemp -d /tmp/dpo-device.XXXXXX)
pack_results() {
  cp "$WORK/summary.txt" "$OUT/summary.txt" 2>/dev/null
  tar -C "$WORK" -czf "$OUT/details.tar.gz" . 2>/dev/null
}
trap pack_results EXIT
SUMMARY="$WORK/summary.txt"
: >"$SUMMARY"
# Results of an earlier run in the same folder must not pass for this one's.
rm -f "$OUT/summary.txt" "$OUT/details.tar.gz"
START=$(date +%s)
BUDGET=${DPO_DEVICE_BUDGET_S:-450}   # 7.5 minutes, leaving the caller margin

note() { echo "$*" | tee -a "$SUMMARY"; }
left() { echo $((BUDGET - ($(date +%s) - START))); }
# Seconds for a step: its cap, or what is left of the budget if less.
limit() {
  local cap=$1 rest
  rest=$(left)
  if [ "$rest" -lt 1 ]; then rest=1; fi   # timeout 0 would mean no limit at all
  if [ "$rest" -lt "$cap" ]; then echo "$rest"; else echo "$cap"; fi
}

note "== dpo device run, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$WORK/gpu.txt" |
    sed 's/^/gpu: /' | tee -a "$SUMMARY"
else
  note "gpu: nvidia-smi not found"
fi

# CUDA libraries: the toolkit's, and those of PyTorch's nvidia-* wheels.
PY=${PYTHON:-python3}
libdirs=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib; do [ -d "$d" ] && libdirs="$libdirs:$d"; done
site=$("$PY" -c 'import site; print(site.getsitepackages()[0])' 2>/dev/null || true)
if [ -n "$site" ] && [ -d "$site/nvidia" ]; then
  for d in $(find "$site/nvidia" -name 'lib*.so*' -printf '%h\n' 2>/dev/null | sort -u); do libdirs="$libdirs:$d"; done
fi

# ------------------------------------------------------------- 1. binaries
if [ -f build-bundle/bundle.tar.xz ]; then
  rm -rf /tmp/dpo-bundle && mkdir -p /tmp/dpo-bundle
  tar -C /tmp/dpo-bundle -xJf build-bundle/bundle.tar.xz
  BIN=/tmp/dpo-bundle/bin
  TESTS=$BIN
  export LD_LIBRARY_PATH="/tmp/dpo-bundle/lib$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  note "build: carried build-bundle (tests/device/pack.sh: Release, CUDA sm_80;sm_90, portable CPU code)"
else
  export LD_LIBRARY_PATH="${libdirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  cudnn_args=()
  if [ -n "$site" ] && [ -f "$site/nvidia/cudnn/include/cudnn.h" ]; then
    cudnn_args=(-DDPO_CUDNN_INCLUDE_DIR="$site/nvidia/cudnn/include"
                -DDPO_CUDNN_LIBRARY="$(ls "$site"/nvidia/cudnn/lib/libcudnn.so* | head -1)")
  fi
  t=$(limit 240)
  if timeout "$t" cmake -S . -B build-device -DCMAKE_BUILD_TYPE=Release -DDPO_CUDA=ON \
       -DCMAKE_CUDA_ARCHITECTURES=native "${cudnn_args[@]}" >"$WORK/build.log" 2>&1 &&
     timeout "$t" cmake --build build-device -j "$(nproc)" --target dpo test_cuda_ops test_cuda_models bench_cuda_ops \
       >>"$WORK/build.log" 2>&1; then
    note "build: Release with CUDA (native architecture) in build-device"
  else
    note "build: FAILED (see build.log; on an image without the project's libraries, carry build-bundle from tests/device/pack.sh)"
    tail -20 "$WORK/build.log"
    exit 1
  fi
  BIN=build-device
  TESTS=build-device/tests
fi

# ------------------------------------------------------------- 2. op tests
t=$(limit 180)
timeout "$t" "$TESTS/test_cuda_ops" >"$WORK/test_cuda_ops.txt" 2>&1
ops_rc=$?
case $ops_rc in
  0) note "test_cuda_ops: PASSED ($(grep -c ' ok$' "$WORK/test_cuda_ops.txt") tensors within tolerance)" ;;
  77) note "test_cuda_ops: SKIPPED (no CUDA device visible) - counted as a failure here" ;;
  124) note "test_cuda_ops: TIMED OUT after ${t}s" ;;
  *) note "test_cuda_ops: FAILED (exit $ops_rc); failing tensors:"
     grep -E 'FAIL|error|cuda:' "$WORK/test_cuda_ops.txt" | head -40 | tee -a "$SUMMARY" ;;
esac
grep -E '^  dpo loss' "$WORK/test_cuda_ops.txt" | sed 's/^ */tiny DPO step: /' | tee -a "$SUMMARY"

# ------------------------------------------------- 3. models through dispatch
t=$(limit 210)   # tiny models (float32 and bf16), 12 tiny dpo train runs (4 on the CPU), then SD1.5 in
                 # float32 and bf16 (+ the frozen bf16 reference); not yet timed on a GPU
DPO_SOURCE_DIR=$PWD timeout "$t" "$TESTS/test_cuda_models" >"$WORK/test_cuda_models.txt" 2>&1
models_rc=$?
case $models_rc in
  0) note "test_cuda_models: PASSED ($(grep -c ' ok$' "$WORK/test_cuda_models.txt") tensors within tolerance)" ;;
  77) note "test_cuda_models: SKIPPED (no CUDA device visible) - counted as a failure here" ;;
  124) note "test_cuda_models: TIMED OUT after ${t}s" ;;
  *) note "test_cuda_models: FAILED (exit $models_rc); failures:"
     grep -E 'FAIL|error|cuda:' "$WORK/test_cuda_models.txt" | head -40 | tee -a "$SUMMARY" ;;
esac
grep -E '^  (dpo loss loss|train |sd15|random init|unet bf16 frozen)' "$WORK/test_cuda_models.txt" | sed 's/^ */  /' | tee -a "$SUMMARY"

# ------------------------------------------------- 4. dpo bench train on CUDA
t=$(limit 120)
if timeout "$t" "$BIN/dpo" bench train --backend cuda --config both --batch 2 --repeat 3 --json \
     >"$WORK/bench_train_cuda.jsonl" 2>"$WORK/bench_train_cuda.err"; then
  note "dpo bench train --backend cuda (2 pairs, float32, median of 3):"
  sed 's/^/  /' "$WORK/bench_train_cuda.jsonl" | tee -a "$SUMMARY"
else
  note "dpo bench train --backend cuda: FAILED or timed out after ${t}s:"
  tail -5 "$WORK/bench_train_cuda.err" | sed 's/^/  /' | tee -a "$SUMMARY"
fi

# --------------------------------- 4b. the same SD1.5 step in bf16 (like for like)
# The policy in bf16 mixed precision, the reference frozen bf16: the
# baseline's precision.
t=$(limit 90)
if [ "$t" -lt 30 ]; then
  note "dpo bench train --precision bf16: skipped, only ${t}s of the budget left"
elif timeout "$t" "$BIN/dpo" bench train --backend cuda --config sd15 --batch 2 --repeat 3 --precision bf16 --json \
     >"$WORK/bench_train_cuda_bf16.jsonl" 2>"$WORK/bench_train_cuda_bf16.err"; then
  note "dpo bench train --backend cuda --precision bf16 (SD1.5, 2 pairs, median of 3):"
  sed 's/^/  /' "$WORK/bench_train_cuda_bf16.jsonl" | tee -a "$SUMMARY"
else
  note "dpo bench train --precision bf16: FAILED or timed out after ${t}s:"
  tail -5 "$WORK/bench_train_cuda_bf16.err" | sed 's/^/  /' | tee -a "$SUMMARY"
fi

# ----------------------------------------------- 5. PyTorch baseline
if ! "$PY" -c 'import diffusers' 2>/dev/null && ls build-bundle/whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/dpo-site \
    build-bundle/whl/*.whl >/dev/null 2>&1 && export PYTHONPATH=/tmp/dpo-site${PYTHONPATH:+:$PYTHONPATH}
fi
# torch.compile of the SD1.5 UNet's forward and backward takes minutes: only
# when asked (DPO_TORCH_COMPILE=1, with a larger DPO_DEVICE_BUDGET_S).
compile_args=()
if [ "${DPO_TORCH_COMPILE:-0}" = 1 ]; then compile_args=(--compile); fi
t=$(limit 200)
if [ "$t" -lt 60 ]; then
  note "torch baseline: skipped, only ${t}s of the budget left"
elif PYTHONUNBUFFERED=1 timeout "$t" "$PY" bench/torch_cuda_baseline.py --pairs 2 "${compile_args[@]}" \
       --json "$WORK/torch_baseline.json" >"$WORK/torch_baseline.txt" 2>&1; then
  note "torch baseline (diffusers SD1.5 UNet, bf16 autocast, SDPA, 64x64 latents, 2 pairs):"
  sed 's/^/  /' "$WORK/torch_baseline.txt" | tail -12 | tee -a "$SUMMARY"
else
  note "torch baseline: FAILED or timed out after ${t}s:"
  tail -5 "$WORK/torch_baseline.txt" | sed 's/^/  /' | tee -a "$SUMMARY"
fi

# ---------------------- 6. the bf16 step with activation checkpointing
t=$(limit 60)
if [ "$t" -lt 20 ]; then
  note "dpo bench train --precision bf16 --checkpointing: skipped, only ${t}s of the budget left"
elif timeout "$t" "$BIN/dpo" bench train --backend cuda --config sd15 --batch 2 --repeat 3 --precision bf16 \
       --checkpointing --json >"$WORK/bench_train_cuda_bf16_checkpointing.jsonl" 2>>"$WORK/bench_train_cuda_bf16.err"; then
  note "dpo bench train --backend cuda --precision bf16 --checkpointing (SD1.5, 2 pairs):"
  sed 's/^/  /' "$WORK/bench_train_cuda_bf16_checkpointing.jsonl" | tee -a "$SUMMARY"
else
  note "dpo bench train --precision bf16 --checkpointing: FAILED or timed out after ${t}s (see bench_train_cuda_bf16.err)"
fi

# ------------------------------- the issue's comparison, from 4 to 6
# Same card, same run: each of dpo's SD1.5 steps (float32; bf16, the
# baseline's precision; bf16 checkpointed) against PyTorch's bf16 step, eager
# (and torch.compile when it ran). TFLOP/s and MFU use the baseline's FLOP
# count (flop_counter). Memory: dpo's is cudaMemGetInfo's whole-device use
# after the last step (CUDA context, cuBLAS/cuDNN workspace and anything else
# on the card included), torch's is max_memory_allocated (its tensors alone,
# without the context and the caching allocator's slack), which leans
# against dpo. Both steps end with an AdamW update (fused in torch), so both
# numbers hold AdamW's two float32 moments.
dpo_sd15=()
for f in bench_train_cuda bench_train_cuda_bf16 bench_train_cuda_bf16_checkpointing; do
  if grep -q '"config": "sd15"' "$WORK/$f.jsonl" 2>/dev/null; then dpo_sd15+=("$WORK/$f.jsonl"); fi
done
if [ -s "$WORK/torch_baseline.json" ] && [ "${#dpo_sd15[@]}" -gt 0 ]; then
  "$PY" - "$WORK/torch_baseline.json" "${dpo_sd15[@]}" <<'PYEOF' | tee "$WORK/comparison.txt" | tee -a "$SUMMARY"
import json, sys
torch = json.load(open(sys.argv[1]))
dpo = []
for path in sys.argv[2:]:
    for line in open(path):
        if line.startswith("{"):
            d = json.loads(line)
            if d.get("config") == "sd15" and not d.get("tf32"):
                dpo.append(d)
order = {"float32": 0, "bf16": 1}
dpo.sort(key=lambda d: (order.get(d.get("precision", "float32"), 2), bool(d.get("checkpointing"))))
peaks = {"H100": 989.0, "H200": 989.0, "A100": 312.0}
peak = next((v for k, v in peaks.items() if k in torch["device"]), None)
gib = 2.0 ** 30
variants = [v for v in ("eager", "compile") if f"dpo_step_{v}_pairs_per_s" in torch]
print(f"comparison on {torch['device']} (SD1.5, 64x64, 77 tokens, {torch['pairs']} pairs):")
for v in variants:
    print(f"  torch {v} (bf16 autocast) {torch[f'dpo_step_{v}_pairs_per_s']:.3f} pairs/s, "
          f"peak {torch[f'dpo_step_{v}_peak_bytes'] / gib:.2f} GiB")
for d in dpo:
    if d["pairs"] != torch["pairs"]:
        continue
    label = d.get("precision", "float32") + (" checkpointed" if d.get("checkpointing") else "")
    tf = 2 * d["pairs"] * torch["forward_flops_per_sample"] * 4 / d["step_seconds"] / 1e12
    print(f"  dpo {label}: {d['pairs_per_s']:.3f} pairs/s, {tf:.1f} TFLOP/s"
          + (f", MFU {100 * tf / peak:.1f}% of the bf16 peak {peak:.0f}" if peak else "")
          + f", device memory in use {d['device_memory_gib']:.2f} GiB")
    for v in variants:
        peak_gib = torch[f"dpo_step_{v}_peak_bytes"] / gib
        target = "1.3x" if v == "eager" else "1.0x"
        print(f"    vs torch {v}: speed {d['pairs_per_s'] / torch[f'dpo_step_{v}_pairs_per_s']:.2f}x "
              f"(target >= {target}); memory {d['device_memory_gib'] / peak_gib:.2f}x of torch's peak "
              f"(target <= 1)")
if "compile" not in variants:
    print("  torch.compile not run here (DPO_TORCH_COMPILE=1 runs it)")
PYEOF
else
  note "comparison: not made (the dpo or the torch SD1.5 numbers are missing above)"
fi

# ------------------------- 7. sampling: dpo bench sample against diffusers
# Issue 10's second target: an SD1.5 50-step 512x512 image at bf16 >= 1.2x
# diffusers' images/s. bench/torch_cuda_sampling.py makes one SD1.5 pipeline
# with random weights (float16 safetensors, in $SD15_RANDOM, kept for a rerun
# on the same machine) and times diffusers' StableDiffusionPipeline on it
# (bf16, SDPA); dpo bench sample then loads the same folder (--precision bf16,
# then float32 when time is left). Both: 50 DDIM steps, guidance 7.5, one image
# per call, VAE decode included, the median of the timed calls after a warm-up.
# The whole step shares one cap, each part cut to what is left of it.
SD15_RANDOM=${DPO_SD15_RANDOM:-/tmp/dpo-sd15-random}
sample_end=$(($(date +%s) + $(limit 180)))
sample_left() {
  local r=$((sample_end - $(date +%s)))
  if [ "$r" -lt 1 ]; then r=1; fi
  echo "$r"
}
t=$(sample_left)
if [ "$t" -lt 60 ]; then
  note "sampling: skipped, only ${t}s of the budget left"
else
  if PYTHONUNBUFFERED=1 timeout "$t" "$PY" bench/torch_cuda_sampling.py --pipeline "$SD15_RANDOM" --repeat 3 \
       --json "$WORK/torch_sampling.json" >"$WORK/torch_sampling.txt" 2>&1; then
    note "diffusers sampling (random SD1.5, bf16, SDPA, 50 DDIM steps, guidance 7.5, 512x512, median of 3):"
    grep -E '^(pipeline|device|diffusers)' "$WORK/torch_sampling.txt" | sed 's/^/  /' | tee -a "$SUMMARY"
  else
    note "diffusers sampling: FAILED or timed out after ${t}s:"
    tail -5 "$WORK/torch_sampling.txt" | sed 's/^/  /' | tee -a "$SUMMARY"
  fi
  for precision in bf16 float32; do
    t=$(sample_left)
    images=3
    if [ "$precision" = float32 ] || [ "$t" -lt 90 ]; then images=1; fi
    if ! [ -f "$SD15_RANDOM/model_index.json" ]; then
      note "dpo bench sample --precision $precision: skipped, no random SD1.5 pipeline was made"
    elif [ "$t" -lt 40 ]; then
      note "dpo bench sample --precision $precision: skipped, only ${t}s of the sampling cap left"
    elif timeout "$t" "$BIN/dpo" bench sample --model "$SD15_RANDOM" --backend cuda --precision "$precision" \
           --steps 50 --guidance 7.5 --images "$images" --json >>"$WORK/bench_sample_cuda.jsonl" \
           2>>"$WORK/bench_sample_cuda.err"; then
      note "dpo bench sample --backend cuda --precision $precision (median of $images):"
      tail -1 "$WORK/bench_sample_cuda.jsonl" | sed 's/^/  /' | tee -a "$SUMMARY"
    else
      note "dpo bench sample --precision $precision: FAILED or timed out after ${t}s:"
      tail -5 "$WORK/bench_sample_cuda.err" | sed 's/^/  /' | tee -a "$SUMMARY"
    fi
  done
fi
# The sampling comparison. Memory like for like: both cudaMemGetInfo's
# whole-device use after the timed images (dpo's includes a second CUDA
# context it opens to read it); torch's max_memory_allocated (its tensors
# alone) beside it.
if [ -s "$WORK/torch_sampling.json" ] && grep -q '"bench": "sample"' "$WORK/bench_sample_cuda.jsonl" 2>/dev/null; then
  "$PY" - "$WORK/torch_sampling.json" "$WORK/bench_sample_cuda.jsonl" <<'PYEOF' | tee "$WORK/sampling_comparison.txt" | tee -a "$SUMMARY"
import json, sys
torch = json.load(open(sys.argv[1]))
gib = 2.0 ** 30
print(f"sampling comparison on {torch['device']} (SD1.5 random weights, {torch['resolution']}x{torch['resolution']}, "
      f"{torch['steps']} steps, guidance {torch['guidance']}, batch {torch['batch']}):")
print(f"  diffusers bf16: {torch['images_per_s']:.3f} images/s ({torch['seconds_per_image']:.3f} s/image), "
      f"device in use {torch['device_memory_in_use_bytes'] / gib:.2f} GiB, "
      f"peak allocated {torch['peak_allocated_bytes'] / gib:.2f} GiB"
      + ("" if torch.get("image_finite_fraction", 1) == 1 else
         f" (image finite fraction {torch['image_finite_fraction']:.3f}: random weights)"))
for line in open(sys.argv[2]):
    if not line.startswith("{"):
        continue
    d = json.loads(line)
    if (d["steps"], d["batch"], d["resolution"]) != (torch["steps"], torch["batch"], torch["resolution"]):
        print(f"  dpo {d['precision']}: other settings, not compared")
        continue
    ratio = d["images_per_s"] / torch["images_per_s"]
    print(f"  dpo {d['precision']}: {d['images_per_s']:.3f} images/s ({d['seconds_per_image']:.3f} s/image, "
          f"median of {d['images']}), {ratio:.2f}x diffusers"
          + (" (target >= 1.2x)" if d["precision"] == "bf16" else "")
          + f"; device in use {d['device_memory_gib']:.2f} GiB "
          f"({d['device_memory_gib'] * gib / torch['device_memory_in_use_bytes']:.2f}x diffusers'); "
          f"load {d['load_seconds']:.1f} s, warm-up {d['warmup_seconds']:.1f} s")
PYEOF
else
  note "sampling comparison: not made (the dpo or the diffusers numbers are missing above)"
fi

# ----------------- 8. the float32 dpo step with activation checkpointing
t=$(limit 60)
if [ "$t" -lt 20 ]; then
  note "dpo bench train --checkpointing: skipped, only ${t}s of the budget left"
elif timeout "$t" "$BIN/dpo" bench train --backend cuda --config sd15 --batch 2 --repeat 3 --checkpointing --json \
     >"$WORK/bench_train_cuda_checkpointing.jsonl" 2>>"$WORK/bench_train_cuda.err"; then
  note "dpo bench train --backend cuda --checkpointing (SD1.5, 2 pairs, float32):"
  sed 's/^/  /' "$WORK/bench_train_cuda_checkpointing.jsonl" | tee -a "$SUMMARY"
else
  note "dpo bench train --checkpointing: FAILED or timed out after ${t}s (see bench_train_cuda.err)"
fi

# ------------------------------------------- 9. the float32 dpo step with TF32
t=$(limit 45)
if [ "$t" -lt 20 ]; then
  note "dpo bench train --tf32: skipped, only ${t}s of the budget left"
elif timeout "$t" "$BIN/dpo" bench train --backend cuda --config sd15 --batch 2 --repeat 3 --tf32 --json \
     >"$WORK/bench_train_cuda_tf32.jsonl" 2>>"$WORK/bench_train_cuda.err"; then
  note "dpo bench train --backend cuda --tf32 (SD1.5, 2 pairs, TF32 GEMMs and convolutions):"
  sed 's/^/  /' "$WORK/bench_train_cuda_tf32.jsonl" | tee -a "$SUMMARY"
else
  note "dpo bench train --tf32: FAILED or timed out after ${t}s (see bench_train_cuda.err)"
fi

# -------------------------------------------------------- 10. CUDA op times
t=$(limit 60)
if [ "$t" -lt 10 ]; then
  note "bench_cuda_ops: skipped, only ${t}s of the budget left"
else
  timeout "$t" "$TESTS/bench_cuda_ops" --repeat 10 >"$WORK/bench_cuda_ops.txt" 2>&1
  case $? in
    0) note "bench_cuda_ops (median of 10, synchronised per call):"
       grep -E 'device|ms|peak' "$WORK/bench_cuda_ops.txt" | sed 's/^/  /' | tee -a "$SUMMARY" ;;
    77) note "bench_cuda_ops: SKIPPED (no CUDA device visible)" ;;
    *) note "bench_cuda_ops: FAILED or timed out after ${t}s:"
       tail -5 "$WORK/bench_cuda_ops.txt" | sed 's/^/  /' | tee -a "$SUMMARY" ;;
  esac
fi

# ------------------------------------------------------- 11. CPU kernels
t=$(limit 40)
if [ "$t" -lt 10 ]; then
  note "dpo bench kernels (CPU): skipped, only ${t}s of the budget left"
elif timeout "$t" "$BIN/dpo" bench kernels --repeat 3 >"$WORK/bench_kernels_cpu.txt" 2>&1; then
  note "dpo bench kernels (CPU, $(nproc) cores, median of 3): $(wc -l <"$WORK/bench_kernels_cpu.txt") lines in bench_kernels_cpu.txt"
  head -4 "$WORK/bench_kernels_cpu.txt" | sed 's/^/  /' | tee -a "$SUMMARY"
else
  note "dpo bench kernels: FAILED or timed out after ${t}s (see bench_kernels_cpu.txt)"
fi

note "elapsed: $(($(date +%s) - START)) s"
[ "$ops_rc" -eq 0 ] && [ "$models_rc" -eq 0 ]
