#!/usr/bin/env bash
# dpo bench sample on the tiny fixture pipelines (CPU): the --json line and
# its fields, the table, and the exit statuses of usage and data errors.
set -euo pipefail
: "${DPO:?set DPO to the dpo binary}"
src=${DPO_SOURCE_DIR:?}
sd=$src/tests/fixtures/pipelines/tiny_sd
pixel=$src/tests/fixtures/pipelines/tiny_pixel

json=$("$DPO" bench sample --model "$sd" --steps 2 --images 1 --backend cpu --threads 1 --json)
[ "$(grep -c '^{"bench": "sample"' <<<"$json")" -eq 1 ] || { echo "expected one JSON line: $json"; exit 1; }
python3 - "$json" "$sd" <<'EOF'
import json, sys
d = json.loads(sys.argv[1])
want = {"bench": "sample", "model": sys.argv[2], "backend": "cpu", "precision": "float32",
        "sampler": "DDIMScheduler", "steps": 2, "guidance": 7.5, "batch": 1, "images": 1,
        "resolution": 16, "threads": 1, "device_memory_gib": 0, "device_memory_context_gib": 0}
for k, v in want.items():
    assert d[k] == v, (k, d[k], v)
for k in ("seconds_per_image", "min_seconds_per_image", "images_per_s", "warmup_seconds", "load_seconds",
          "plan_seconds"):
    assert isinstance(d[k], (int, float)) and d[k] > 0, (k, d[k])
assert d["min_seconds_per_image"] <= d["seconds_per_image"]
assert abs(d["images_per_s"] * d["seconds_per_image"] - 1) < 1e-3, d
EOF

# Batches, bf16 (the CPU's emulation), another sampler, no guidance, a
# pixel-space pipeline, another resolution.
json=$("$DPO" bench sample --model "$pixel" --steps 2 --images 4 --batch 2 --guidance 1 --sampler euler \
         --precision bf16 --resolution 16 --threads 1 --json)
python3 -c '
import json, sys
d = json.loads(sys.argv[1])
assert (d["batch"], d["images"], d["guidance"], d["precision"], d["sampler"], d["resolution"]) == \
    (2, 4, 1, "bf16", "EulerDiscreteScheduler", 16), d
assert d["seconds_per_image"] > 0, d' "$json"

out=$("$DPO" bench sample --model "$sd" --steps 1 --images 1 --threads 1)
if ! grep -q '^backend ' <<<"$out" || ! grep -q '^cpu ' <<<"$out"; then echo "no table in: $out"; exit 1; fi

expect() {
  local want=$1 rc
  shift
  set +e
  "$DPO" "$@" >/dev/null 2>"$tmp_err"
  rc=$?
  set -e
  [ "$rc" -eq "$want" ] || { echo "dpo $*: exit $rc, expected $want"; cat "$tmp_err"; exit 1; }
}
tmp_err=$(mktemp)
trap 'rm -f "$tmp_err"' EXIT
expect 2 bench sample --steps 2
grep -q -- '--model DIR' "$tmp_err" || { echo "no --model in the message"; exit 1; }
expect 2 bench sample --model "$sd" --images 3 --batch 2
grep -q 'not a multiple of --batch' "$tmp_err" || { echo "no multiple message"; cat "$tmp_err"; exit 1; }
expect 2 bench sample --model "$sd" --steps 0
expect 2 bench sample --model "$sd" --guidance -1
expect 2 bench sample --model "$sd" --sampler heun
expect 2 bench sample --model "$sd" --precision fp8
expect 2 bench sample --model "$sd" --backend tpu
expect 2 bench sample --model "$sd" --bogus 1
expect 2 bench sample --model
expect 1 bench sample --model "$src/tests/fixtures/no-such-pipeline" --steps 1
grep -q 'no-such-pipeline' "$tmp_err" || { echo "the error does not name the folder"; cat "$tmp_err"; exit 1; }
if [ "${DPO_HAVE_CUDA:-OFF}" != ON ]; then
  expect 2 bench sample --model "$sd" --backend cuda   # a build without the backend
fi
# Not piped into grep -q: the help is over a pipe buffer, and grep leaving
# early would end dpo with SIGPIPE (a failure under pipefail).
grep -q 'dpo bench sample' <<<"$("$DPO" bench --help)"
grep -q 'seconds_per_image' <<<"$("$DPO" bench sample --help)"
echo ok
