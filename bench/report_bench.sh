#!/usr/bin/env bash
# Times `dpo report` (bootstrap included: 10,000 resamples per question,
# category and ties mode) on a study with 1,000,000 counted votes.
#
# usage: bench/report_bench.sh [DPO_BINARY] [VOTES]
# The database is made by `dpo study create` (schema, arms, images) plus
# bench/make_report_bench_db.py (the large study, by direct SQL).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dpo=${1:-$root/build/dpo}
votes=${2:-1000000}
[ -x "$dpo" ] || { echo "report_bench: $dpo not found; build first" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
python3 "$root/tests/e2e/study_helpers/make_run.py" runA base --prompts 1 --seeds 1
python3 "$root/tests/e2e/study_helpers/make_run.py" runB tuned --prompts 1 --seeds 1
"$dpo" study create --db bench.db --name tiny --a runA --b runB --questions q1 --votes 1 >/dev/null
start=$(date +%s.%N)
python3 "$root/bench/make_report_bench_db.py" bench.db --from tiny --name bench --votes "$votes"
echo "database made in $(echo "$(date +%s.%N) - $start" | bc) s"
# Wall time is what the target is about; user + sys CPU seconds are printed
# too because the machine may be shared (see the load printed at the end).
best=
for run in 1 2 3; do
  /usr/bin/time -f "%e %U %S" -o time$run "$dpo" report --db bench.db --study bench --out "out$run" >/dev/null
  read -r wall user sys < time$run
  echo "dpo report run $run: wall $wall s, cpu user $user s + sys $sys s"
  if [ -z "$best" ] || [ "$(echo "$wall < $best" | bc)" -eq 1 ]; then best=$wall; fi
done
python3 - "$tmp/out1/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s = r["studies"][0]
n = sum(q["votes"]["a"] + q["votes"]["b"] + q["votes"]["tie"] for q in s["questions"])
print(f"counted votes in report.json: {n}; items {s['n_items']}; categories {len(s['categories'])}; "
      f"bootstrap resamples {r['bootstrap']['resamples']}")
PY
echo "best of 3 (wall): $best s"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load: $(uptime | sed 's/.*load average: //')"
