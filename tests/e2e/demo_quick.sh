#!/usr/bin/env bash
# `dpo demo --quick` with the shipped base, end to end (AI-feedback pairs,
# Diffusion-DPO, held-out generation with base and tuned from the same seeds,
# implicit-reward accuracy, a simulated 5-vote study, the report): every
# stage runs, every artifact is made, report.json and summary.json agree, a
# rerun reuses every stage and prints the same numbers, bad input exits 2/1.
#
# Issue 9's acceptance check: the tuned model wins q3 (prompt alignment)
# with a Wilson 95% lower bound above 50%, read from report.json, and the
# judge scores the tuned samples better aligned than the base's.
#
# The demo folder is kept as a test artifact in the build tree
# (artifacts/demo-quick/); browser.demo_report (a ctest fixture of this test)
# opens its report in Chromium.
set -uo pipefail
: "${DPO:?set DPO to the dpo binary}"
: "${DPO_BUILD_DIR:?}"
out=$DPO_BUILD_DIR/artifacts/demo-quick
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rm -rf "$out"
mkdir -p "$DPO_BUILD_DIR/artifacts"
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

start=$(date +%s)
"$DPO" demo --quick --out "$out" >"$tmp/out" 2>"$tmp/err"
status=$?
echo "dpo demo --quick: exit $status in $(($(date +%s) - start)) s"
cat "$tmp/out"
[ "$status" -eq 0 ] || fail "demo exited $status; $(tail -5 "$tmp/err")"
for stage in "1/7 base" "2/7 pairs" "3/7 train" "4/7 generate" "5/7 reward" "6/7 study" "7/7 report"; do
  grep -q "demo: stage $stage" "$tmp/err" || fail "no log line for stage $stage"
done
grep -q "^report: $out/report/report.html$" "$tmp/out" || fail "no report path printed"
grep -q "q3 (prompt alignment): tuned wins" "$tmp/out" || fail "no q3 line printed"
grep -q "implicit-reward accuracy: " "$tmp/out" || fail "no implicit-reward accuracy printed"
for f in pairs/pairs.jsonl tuned/model_index.json tuned/train_log.jsonl runs/base/manifest.jsonl \
  runs/tuned/manifest.jsonl reward/pairs.jsonl reward/reward_acc.jsonl study.db report/report.html \
  report/report.md report/report.json report/contact_sheet.png summary.json; do
  [ -s "$out/$f" ] || fail "missing $f"
done

# The result: q3 won with the Wilson lower bound above 50%, from report.json;
# summary.json agrees with it and carries the implicit-reward accuracy.
python3 - "$out" <<'PY' || fail "result check failed"
import json, sys
out = sys.argv[1]
report = json.load(open(f"{out}/report/report.json"))
qs = {q["key"]: q for q in report["studies"][0]["questions"]}
q3 = qs["q3"]
lo, hi = q3["ci95_wilson"]
print(f"q3: tuned wins {q3['win_rate_b']:.3f} of {q3['items']} items, Wilson 95% [{lo:.3f}, {hi:.3f}]")
summary = json.load(open(f"{out}/summary.json"))
acc = summary["implicit_reward"]
print(f"implicit-reward accuracy {acc['accuracy']:.3f} on {acc['pairs']} pairs; judge alignment {summary['judge_alignment']}")
ok = True
if not 0 <= lo <= q3["win_rate_b"] <= hi <= 1 or q3["items"] != summary["heldout_prompts"]:
    print("FAIL: q3 has no valid interval over every held-out prompt"); ok = False
if not lo > 0.5:
    print(f"FAIL: q3 Wilson lower bound {lo:.3f} is not above 0.5"); ok = False
if not summary["judge_alignment"]["tuned"] > summary["judge_alignment"]["base"]:
    print("FAIL: tuned samples are not better aligned than the base's by the judge"); ok = False
if summary["questions"]["q3"]["ci95_wilson"] != q3["ci95_wilson"]:
    print("FAIL: summary.json's q3 interval differs from report.json's"); ok = False
if not (acc["pairs"] > 0 and 0 <= acc["accuracy"] <= 1):
    print("FAIL: no implicit-reward accuracy"); ok = False
lines = sum(1 for _ in open(f"{out}/reward/reward_acc.jsonl"))
if lines != acc["pairs"]:
    print(f"FAIL: reward_acc.jsonl has {lines} lines for {acc['pairs']} pairs"); ok = False
steps = sum(1 for _ in open(f"{out}/tuned/train_log.jsonl"))
if steps != json.load(open(f"{out}/settings.json"))["dpo_steps"]:
    print(f"FAIL: train_log.jsonl has {steps} lines"); ok = False
sys.exit(0 if ok else 1)
PY

# Rerun: every finished stage is reused, the same numbers printed.
before=$(stat -c %Y "$out/pairs/pairs.jsonl")
"$DPO" demo --quick --out "$out" >"$tmp/out2" 2>"$tmp/err2"
[ $? -eq 0 ] || fail "rerun failed: $(tail -3 "$tmp/err2")"
for stage in "2/7 pairs" "3/7 train" "4/7 generate" "5/7 reward" "6/7 study"; do
  grep -q "stage $stage: done already" "$tmp/err2" || fail "rerun did not reuse stage $stage"
done
[ "$(stat -c %Y "$out/pairs/pairs.jsonl")" = "$before" ] || fail "rerun rewrote pairs.jsonl"
cmp -s "$tmp/out" "$tmp/out2" || fail "rerun printed other numbers"

# Usage errors: exit 2, nothing made.
"$DPO" demo --bogus >"$tmp/o" 2>"$tmp/e"
[ $? -eq 2 ] || fail "unknown option did not exit 2"
"$DPO" demo --out "$tmp/x" --lr 0 >"$tmp/o" 2>"$tmp/e"
[ $? -eq 2 ] || fail "--lr 0 did not exit 2"
[ ! -e "$tmp/x" ] || fail "a usage error left $tmp/x behind"
"$DPO" demo --out "$tmp/y" --base "$tmp/no-such-base" >"$tmp/o" 2>"$tmp/e"
[ $? -eq 1 ] || fail "a missing base did not exit 1"
[ ! -e "$tmp/y" ] || fail "a missing base left $tmp/y behind"
# Other settings into a finished folder are refused, the folder untouched.
"$DPO" demo --quick --out "$out" --lr 0.001 >"$tmp/o" 2>"$tmp/e"
[ $? -eq 2 ] || fail "other settings into a finished demo folder did not exit 2"
grep -q "was made with other settings" "$tmp/e" || fail "no message for other settings: $(cat "$tmp/e")"

[ "$failures" -eq 0 ] || { echo "$failures failure(s)" >&2; exit 1; }
echo "demo_quick: ok"
