#!/usr/bin/env bash
# Runs `dpo bench kernels` and bench/kernels_torch.py in the same run, op by
# op, at the same thread count, and prints one Markdown table:
# our time and GFLOP/s, the share of OpenBLAS's sgemm GFLOP/s measured in the
# same run, PyTorch's time, and PyTorch time / our time (> 1: we are faster).
#
#   bench/run_kernels.sh [--threads N] [--repeat R] [--min] [--cpu-time]
# --min tabulates the fastest of the R calls instead of the median (steadier
# when other jobs share the cores); --cpu-time times both sides with the
# process CPU clock (meaningful with --threads 1).
# Env: DPO (default build/dpo), PYTHON (a python with torch; default python3).
set -euo pipefail
threads=2
repeat=10
stat=median
clock=()
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --min) stat=min; shift ;;
    --cpu-time) clock=(--cpu-time); shift ;;
    *) echo "usage: $0 [--threads N] [--repeat R] [--min] [--cpu-time]" >&2; exit 2 ;;
  esac
done
here=$(cd "$(dirname "$0")" && pwd)
# OpenBLAS's own thread pool would otherwise spin briefly after start-up and
# count in a CPU-time measurement; the kernels never use it with one thread.
if [ "$threads" = 1 ]; then export OPENBLAS_NUM_THREADS=1; fi
dpo=${DPO:-$here/../build/dpo}
python=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; threads: $threads; repeat: $repeat; clock: ${clock[*]:-wall}"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
# Ours and PyTorch's run op by op, one after the other, so that both sides
# of each comparison see the same machine state (the cores may be shared).
for op in $("$dpo" bench kernels --list); do
  "$dpo" bench kernels --json --threads "$threads" --repeat "$repeat" --only "$op" "${clock[@]}" >> "$tmp/ours.jsonl"
  "$python" "$here/kernels_torch.py" --threads "$threads" --repeat "$repeat" --only "$op" "${clock[@]}" >> "$tmp/torch.jsonl"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
python3 - "$tmp/ours.jsonl" "$tmp/torch.jsonl" "$stat" <<'PY'
import json, sys
key = "min_seconds" if sys.argv[3] == "min" else "seconds"
ours = [json.loads(l) for l in open(sys.argv[1])]
torch = {d["op"]: d for d in map(json.loads, open(sys.argv[2]))}
version = next(iter(torch.values()))["torch"] if torch else "?"
sgemm = ours[0]["flops"] / ours[0][key] if ours else 0
print(f"Times are the {'fastest' if key == 'min_seconds' else 'median'} of the repeats.\n")
print(f"| op | shape | ours ms | ours GFLOP/s | of sgemm | PyTorch {version} ms | PyTorch GFLOP/s | PyTorch / ours time |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
for d in ours:
    t = torch.get(d["op"])
    g = d["flops"] / d[key] * 1e-9
    tm = f"{t[key] * 1e3:.3f}" if t else "-"
    tg = f"{d['flops'] / t[key] * 1e-9:.1f}" if t else "-"
    ratio = f"{t[key] / d[key]:.2f}" if t else "-"
    print(f"| {d['op']} | {d['shape']} | {d[key] * 1e3:.3f} | {g:.1f} | "
          f"{100 * g * 1e9 / sgemm:.0f}% | {tm} | {tg} | {ratio} |")
PY
