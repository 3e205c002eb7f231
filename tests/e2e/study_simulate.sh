#!/usr/bin/env bash
# dpo study simulate from the command line: the same seed gives the same
# votes, bad options are usage errors (exit 2), and status counts the votes.
set -u
dpo=${DPO:?DPO must point at the dpo binary}
here=$(cd "$(dirname "$0")" && pwd)
helpers=$here/study_helpers
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
equal() { [ "$2" = "$3" ] || { echo "FAIL: $1: got '$2', expected '$3'"; fail=1; }; }
sql() { python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); [print("|".join(map(str, r))) for r in c.execute(sys.argv[2])]' "$@"; }

python3 "$helpers/make_run.py" runA base --prompts 6 --seeds 2
python3 "$helpers/make_run.py" runB tuned --prompts 6 --seeds 2
for db in one.db two.db; do
  "$dpo" -q study create --db $db --name s --a runA --b runB --questions q1,q2,q3 --votes 3 --gold 2 --seed 1 || exit 1
  "$dpo" study simulate --db $db --study s --raters 5 --scorer pixel-pair --seed 4 --noise 0.05 \
    --random-share 0.2 --left-bias 0.1 2> sim.log || { cat sim.log; exit 1; }
done
grep -q "5 simulated raters (1 random clickers)" sim.log || { echo "FAIL: summary"; cat sim.log; fail=1; }
dump='SELECT a.external_id, a.a_side, v.shown, v.choice FROM votes v JOIN assignments a ON a.id = v.assignment_id ORDER BY v.id'
equal "same seed, same votes" "$(sql one.db "$dump" | sha256sum)" "$(sql two.db "$dump" | sha256sum)"
equal "votes" "$(sql one.db "SELECT count(*) FROM votes")" "$((14 * 3 * 3))"
"$dpo" study status --db one.db --study s > status.txt || fail=1
grep -q "complete 12 (100.0%)" status.txt || { echo "FAIL: status"; cat status.txt; fail=1; }
grep -q "sim-1-" status.txt || { echo "FAIL: raters in status"; fail=1; }

usage() { "$dpo" study simulate --db one.db --study s "$@" 2>/dev/null; equal "usage: $*" "$?" "2"; }
usage --raters 5
usage --raters 0 --scorer brightness
usage --raters 5 --scorer brightness --noise -1
usage --raters 5 --scorer brightness --random-share 2
usage --raters 5 --scorer brightness --left-bias x
usage --raters 2 --scorer brightness
usage --raters 5 --scorer nope
"$dpo" study simulate --db one.db --study nope --raters 5 --scorer brightness 2>/dev/null
equal "unknown study" "$?" "1"
exit $fail
