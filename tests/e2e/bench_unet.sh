#!/usr/bin/env bash
# dpo bench unet: the table, the --json lines, and its usage errors (tiny UNet).
set -euo pipefail
: "${DPO:?set DPO to the dpo binary}"
out=$("$DPO" bench unet --quick --threads 1)
grep -q '^forward+backward ' <<<"$out" || { echo "no forward+backward line in: $out"; exit 1; }
json=$("$DPO" bench unet --quick --json --batch 2 --threads 1)
[ "$(grep -c '^{"model": "unet"' <<<"$json")" -eq 2 ] || { echo "expected 2 JSON lines: $json"; exit 1; }
while IFS= read -r line; do
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["seconds"] > 0 and d["batch"] == 2 and d["plan_gib"] > 0, d' "$line"
done <<<"$json"
for bad in "bench unet --batch 0" "bench unet --size 12" "bench unet --repeat 0" "bench unet --bogus"; do
  set +e
  # shellcheck disable=SC2086
  "$DPO" $bad >/dev/null 2>&1
  rc=$?
  set -e
  [ "$rc" -eq 2 ] || { echo "dpo $bad: exit $rc, expected 2"; exit 1; }
done
grep -q 'dpo bench unet' <<<"$("$DPO" bench --help)"   # no pipe: grep -q leaving early would SIGPIPE dpo
echo ok
