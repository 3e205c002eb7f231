#!/usr/bin/env bash
# --backend cpu|cuda|auto and --precision float32|bf16 on dpo train,
# generate, reward-acc and bench train:
# a backend the build or the machine lacks is refused at once with a clear
# message (exit 2 when the build has no CUDA, 1 when no device is visible);
# unknown names are usage errors;
# cpu and auto (no device) run on the CPU. The expectation follows the build
# (DPO_HAVE_CUDA, from ctest) and the machine (nvidia-smi lists a GPU).
set -euo pipefail
: "${DPO:?set DPO to the dpo binary}"
have_cuda=${DPO_HAVE_CUDA:-OFF}
gpu=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then gpu=1; fi

# Runs dpo with the given arguments; sets rc and msg (stderr).
run() {
  set +e
  msg=$("$DPO" "$@" 2>&1 >/dev/null)
  rc=$?
  set -e
}
expect() {  # expect RC PATTERN WHAT
  [ "$rc" -eq "$1" ] || { echo "$3: exit $rc, expected $1 ($msg)"; exit 1; }
  grep -q -- "$2" <<<"$msg" || { echo "$3: message \"$msg\" lacks \"$2\""; exit 1; }
}

for cmd in "train --base b --pairs p --out o" "generate --model m --prompts p --out o" \
           "reward-acc --model m --ref r --pairs p"; do
  # shellcheck disable=SC2086
  run $cmd --backend cuda
  if [ "$have_cuda" != ON ]; then expect 2 "this build has no CUDA backend" "$cmd --backend cuda"
  elif [ "$gpu" -eq 0 ]; then expect 1 "no CUDA device is visible" "$cmd --backend cuda"
  else
    # The commands run on CUDA there: the missing inputs are what fails.
    [ "$rc" -eq 1 ] || { echo "$cmd --backend cuda on a GPU: exit $rc, expected 1 ($msg)"; exit 1; }
  fi
  # shellcheck disable=SC2086
  run $cmd --backend tpu
  expect 2 "unknown backend 'tpu' (expected cpu, cuda or auto)" "$cmd --backend tpu"
  # shellcheck disable=SC2086
  run $cmd --backend cpu --precision fp16
  expect 2 "unknown precision 'fp16' (expected float32 or bf16)" "$cmd --precision fp16"
done

# bench train runs a tiny step wherever the backend exists.
run bench train --config tiny --backend cuda
if [ "$have_cuda" != ON ]; then expect 2 "this build has no CUDA backend" "bench train --backend cuda"
elif [ "$gpu" -eq 0 ]; then expect 1 "no CUDA device is visible" "bench train --backend cuda"
else [ "$rc" -eq 0 ] || { echo "bench train --backend cuda on a GPU: exit $rc ($msg)"; exit 1; }
fi
run bench train --config tiny --backend
expect 2 "needs a value" "bench train --backend (no value)"
out=$("$DPO" bench train --config tiny --backend cpu --json --checkpointing --tf32)
grep -q '"backend": "cpu", "precision": "float32", "checkpointing": true, "tf32": true' <<<"$out" ||
  { echo "bench train --backend cpu: $out"; exit 1; }
out=$("$DPO" bench train --config tiny --backend cpu --json --precision bf16)
grep -q '"backend": "cpu", "precision": "bf16"' <<<"$out" || { echo "bench train --precision bf16: $out"; exit 1; }
out=$("$DPO" bench train --config tiny --json)
want=cpu
if [ "$have_cuda" = ON ] && [ "$gpu" -eq 1 ]; then want=cuda; fi
grep -q "\"backend\": \"$want\"" <<<"$out" || { echo "bench train (auto) should run on $want: $out"; exit 1; }
echo ok
