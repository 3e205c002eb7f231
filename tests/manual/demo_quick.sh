#!/usr/bin/env bash
# Kept out of the default suite (tests/manual/, run by hand: DPO=build/dpo bash
# tests/manual/demo_quick.sh): it took over 13 minutes on the shared 2-core
# machine, beyond the e2e timeout and the CI budget, and it cannot yet check
# the result issue 9 asks for.
# dpo demo --quick with the shipped base, end to end: pairs, Diffusion-DPO,
# generation of held-out prompts with base and tuned, a simulated study and
# the report (q1/q3 win rates with Wilson intervals in report.json and on
# stdout); a rerun reuses every stage. NOT YET CHECKED: that the tuned model
# wins q3 with a Wilson lower bound above 50% (issue 9's acceptance) -- the
# DPO settings in demo/demo.h are not tuned yet and the quick run loses
# (q3 37.5% [25.2%, 51.6%] on 48 prompts); add the check once they are.
set -uo pipefail
: "${DPO:?set DPO to the dpo binary}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

"$DPO" demo --quick --out "$tmp/demo" >"$tmp/out" 2>"$tmp/err"
status=$?
[ "$status" -eq 0 ] || fail "demo exited $status; $(tail -3 "$tmp/err")"
grep -q "stage 2/6 pairs: two base samples for each of 48 train prompts" "$tmp/err" || fail "no pairs stage line"
grep -q "^report: $tmp/demo/report/report.html$" "$tmp/out" || fail "no report path printed: $(cat "$tmp/out")"
grep -q "q3: tuned wins" "$tmp/out" || fail "no q3 line printed"
for f in pairs/pairs.jsonl tuned/model_index.json tuned/train_log.jsonl runs/base/manifest.jsonl \
  runs/tuned/manifest.jsonl study.db report/report.html report/report.md report/report.json; do
  [ -s "$tmp/demo/$f" ] || fail "missing $f"
done
q3_lo=$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
q = [q for q in r["studies"][0]["questions"] if q["key"] == "q3"][0]
print(q["ci95_wilson"][0])' "$tmp/demo/report/report.json" 2>/dev/null)
python3 -c "import sys; x = float('${q3_lo:-nan}'); sys.exit(0 if 0 <= x <= 1 else 1)" ||
  fail "report.json has no q3 Wilson interval: ${q3_lo:-none}"

# Rerun: every finished stage is reused.
before=$(stat -c %Y "$tmp/demo/pairs/pairs.jsonl")
"$DPO" demo --quick --out "$tmp/demo" >"$tmp/out2" 2>"$tmp/err"
[ $? -eq 0 ] || fail "rerun failed: $(tail -3 "$tmp/err")"
grep -q "stage 2/6 pairs: done already" "$tmp/err" || fail "rerun did not reuse the pairs"
grep -q "stage 3/6 train: done already" "$tmp/err" || fail "rerun did not reuse the training"
[ "$(stat -c %Y "$tmp/demo/pairs/pairs.jsonl")" = "$before" ] || fail "rerun rewrote pairs.jsonl"
cmp -s "$tmp/out" "$tmp/out2" || fail "rerun printed other numbers"

"$DPO" demo --bogus >"$tmp/out" 2>"$tmp/err"
[ $? -eq 2 ] || fail "unknown option did not exit 2"

[ "$failures" -eq 0 ] || { echo "$failures failure(s)" >&2; exit 1; }
echo "demo_quick: ok"
