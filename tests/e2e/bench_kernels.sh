#!/usr/bin/env bash
# dpo bench kernels: the table, the --json lines, and its usage errors.
set -euo pipefail
: "${DPO:?set DPO to the dpo binary}"
out=$("$DPO" bench kernels --quick --repeat 2 --threads 1)
grep -q '^sgemm_128 ' <<<"$out" || { echo "no sgemm line in: $out"; exit 1; }
grep -q '^self_attn_bwd ' <<<"$out" || { echo "no attention line in: $out"; exit 1; }
json=$("$DPO" bench kernels --quick --repeat 1 --json)
lines=$(grep -c '^{"op": ' <<<"$json")
[ "$lines" -ge 10 ] || { echo "expected >= 10 JSON lines, got $lines: $json"; exit 1; }
grep -q '"ratio_to_sgemm": 1[,}]' <<<"$json" || { echo "sgemm is not its own reference: $json"; exit 1; }
# Every line parses as JSON with a positive GFLOP/s.
while IFS= read -r line; do
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["gflops"] > 0 and d["seconds"] > 0, d' "$line"
done <<<"$json"
# --list names every case; --only runs just the one named.
[ "$("$DPO" bench kernels --list --quick | head -1)" = sgemm_128 ] || { echo "--list does not start with sgemm_128"; exit 1; }
only=$("$DPO" bench kernels --quick --repeat 1 --json --only conv3x3_bwd)
[ "$(grep -c '"op"' <<<"$only")" -eq 1 ] && grep -q '"op": "conv3x3_bwd"' <<<"$only" || { echo "--only ran: $only"; exit 1; }
for bad in "bench" "bench nothing" "bench kernels --repeat 0" "bench kernels --threads x" "bench kernels --bogus" \
           "bench kernels --only no_such_case" "bench kernels --only"; do
  set +e
  # shellcheck disable=SC2086
  "$DPO" $bad >/dev/null 2>&1
  rc=$?
  set -e
  [ "$rc" -eq 2 ] || { echo "dpo $bad: exit $rc, expected 2"; exit 1; }
done
grep -q 'dpo bench kernels' <<<"$("$DPO" bench --help)"   # no pipe: grep -q leaving early would SIGPIPE dpo
echo ok
