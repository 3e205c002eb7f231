#!/usr/bin/env bash
# Runs every libFuzzer target in BUILD/fuzz for a fixed number of runs, seeded
# with its committed corpus (copied, so the committed corpus stays as it is).
# usage: scripts/run-fuzzers.sh BUILD_DIR [RUNS]
set -euo pipefail
build=${1:?usage: run-fuzzers.sh BUILD_DIR [RUNS]}
runs=${2:-200000}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
shopt -s nullglob
targets=("$build"/fuzz/fuzz_*)
[ ${#targets[@]} -gt 0 ] || { echo "run-fuzzers: no fuzz targets in $build/fuzz" >&2; exit 1; }
for t in "${targets[@]}"; do
  name=$(basename "$t")
  mkdir -p "$work/$name"
  cp -r "$root/tests/fuzz/corpus/$name/." "$work/$name/"
  echo "fuzz: $name ($runs runs)"
  "$t" -runs="$runs" -max_len=65536 -rss_limit_mb=2048 -artifact_prefix="$work/$name-" "$work/$name" 2>"$work/$name.log" \
    || { tail -40 "$work/$name.log"; echo "fuzz: $name FAILED" >&2; exit 1; }
  tail -1 "$work/$name.log"
done
