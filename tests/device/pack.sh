#!/usr/bin/env bash
# Prepares what tests/device/run.sh needs on a GPU machine that cannot build
# the project itself (no jansson, OpenBLAS, SQLite... headers there, no
# network): a Release build with the CUDA backend for sm_80 and sm_90,
# portable CPU code (DPO_NATIVE=OFF: the GPU machine's CPU is not this one),
# the shared libraries its binaries need that a CUDA + PyTorch image lacks,
# and the diffusers wheel for the PyTorch baselines (training and sampling;
# the image has torch and transformers). The sampling step's other needs
# travel with the working tree: bench/torch_cuda_sampling.py and CLIP's
# vocabulary in tests/fixtures/tokenizer/clip/ (its random SD1.5 pipeline is
# made on the GPU machine, not carried: 2 GB). The build is
# build-device/; what travels is build-bundle/ (ignored by git): bundle.tar.xz
# (bin/ and lib/, about 10 MB: OpenBLAS alone is 36 MB unpacked, and a carried
# tree is limited to 64 MiB) and whl/. The caller carries build-bundle.
#
# Usage: tests/device/pack.sh [--jobs N]      (run on the build machine)
set -euo pipefail
cd "$(dirname "$0")/../.."
JOBS=2
if [ "${1:-}" = "--jobs" ]; then JOBS=$2; fi
BUILD=build-device
BUNDLE=build-bundle
rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/bin" "$BUNDLE/lib" "$BUNDLE/whl"

cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DDPO_CUDA=ON -DDPO_NATIVE=OFF \
  -DCMAKE_CUDA_ARCHITECTURES="80;90" >/dev/null
cmake --build "$BUILD" -j "$JOBS" --target dpo test_cuda_ops test_cuda_models bench_cuda_ops

# Shared libraries: everything ldd resolves except the C/C++ runtime (newer
# on the GPU image) and the CUDA libraries (the image has its own, through
# PyTorch's nvidia-* packages; the driver provides libcuda). libcudart
# (small) travels: it must be the 13.x the code was built with.
skip='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|libpthread\.|librt\.|libstdc\+\+|libgcc_s|libcuda\.|libcublas|libcudnn|libnvrtc|libnvJitLink)'
for bin in "$BUILD/dpo" "$BUILD/tests/test_cuda_ops" "$BUILD/tests/test_cuda_models" "$BUILD/tests/bench_cuda_ops"; do
  cp "$bin" "$BUNDLE/bin/"
  ldd "$bin" | awk '/=> \// {print $1, $3}' | while read -r name path; do
    if ! [[ $name =~ $skip ]]; then cp -L "$path" "$BUNDLE/lib/$name"; fi
  done
done

# diffusers (pure Python) for bench/torch_cuda_baseline.py and
# bench/torch_cuda_sampling.py (which checks this version); the image has torch
# and transformers.
PY=${PYTHON:-python3}
"$PY" -m pip download -q --no-deps --only-binary=:all: -d "$BUNDLE/whl" diffusers==0.42.1

tar -C "$BUNDLE" -cf - bin lib | xz -T0 -6 >"$BUNDLE/bundle.tar.xz"
rm -rf "$BUNDLE/bin" "$BUNDLE/lib"
du -sh "$BUNDLE"/*
echo "carry: $BUNDLE (command: OUT=\$OUT tests/device/run.sh)"
