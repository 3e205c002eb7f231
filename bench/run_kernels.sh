#!/usr/bin/env bash
# Runs `dpo bench kernels` and bench/kernels_torch.py one after the other in
# the same run, at the same thread count, and prints one Markdown table:
# our time and GFLOP/s, the share of OpenBLAS's sgemm GFLOP/s measured in the
# same run, PyTorch's time, and PyTorch time / our time (> 1: we are faster).
#
#   bench/run_kernels.sh [--threads N] [--repeat R]
# Env: DPO (default build/dpo), PYTHON (a python with torch; default python3).
set -euo pipefail
threads=2
repeat=10
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    *) echo "usage: $0 [--threads N] [--repeat R]" >&2; exit 2 ;;
  esac
done
here=$(cd "$(dirname "$0")" && pwd)
dpo=${DPO:-$here/../build/dpo}
python=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; threads: $threads; repeat: $repeat"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$dpo" bench kernels --json --threads "$threads" --repeat "$repeat" > "$tmp/ours.jsonl"
"$python" "$here/kernels_torch.py" --threads "$threads" --repeat "$repeat" > "$tmp/torch.jsonl"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
python3 - "$tmp/ours.jsonl" "$tmp/torch.jsonl" <<'PY'
import json, sys
ours = [json.loads(l) for l in open(sys.argv[1])]
torch = {d["op"]: d for d in map(json.loads, open(sys.argv[2]))}
version = next(iter(torch.values()))["torch"] if torch else "?"
print(f"| op | shape | ours ms | ours GFLOP/s | of sgemm | PyTorch {version} ms | PyTorch GFLOP/s | PyTorch / ours time |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for d in ours:
    t = torch.get(d["op"])
    tm = f"{t['seconds'] * 1e3:.3f}" if t else "-"
    tg = f"{d['flops'] / t['seconds'] * 1e-9:.1f}" if t else "-"
    ratio = f"{t['seconds'] / d['seconds']:.2f}" if t else "-"
    print(f"| {d['op']} | {d['shape']} | {d['seconds'] * 1e3:.3f} | {d['gflops']:.1f} | "
          f"{100 * d['ratio_to_sgemm']:.0f}% | {tm} | {tg} | {ratio} |")
PY
