#!/usr/bin/env bash
# dpo demo --quick with the shipped base: the stages in this build run and
# leave their artifacts in --out, a rerun reuses them, and the first stage
# that is not built yet is named (exit 1). When Diffusion-DPO training and
# generation are merged, this test checks report.json's q3 win instead.
set -uo pipefail
: "${DPO:?set DPO to the dpo binary}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

"$DPO" demo --quick --out "$tmp/demo" >"$tmp/out" 2>"$tmp/err"
status=$?
[ "$status" -eq 1 ] || fail "demo exited $status, expected 1 (training stage missing); $(tail -3 "$tmp/err")"
grep -q "stage 3/6 train is missing from this build" "$tmp/err" || fail "the missing stage is not named: $(tail -3 "$tmp/err")"
grep -q "stage 2/6 pairs: two base samples for each of 48 train prompts" "$tmp/err" || fail "no pairs stage line"

# Pairs: valid lines, winners first or second, images present, a real share
# of prompts with a preference (the base is neither perfect nor useless).
pairs="$tmp/demo/pairs/pairs.jsonl"
[ -s "$pairs" ] || fail "no pairs.jsonl"
n=$(wc -l <"$pairs")
[ "$n" -ge 10 ] || fail "only $n pairs from 48 prompts"
while IFS= read -r line; do
  for key in caption image_0 image_1 label_0 source; do
    case "$line" in *"\"$key\""*) ;; *) fail "pair line lacks $key: $line" ;; esac
  done
  img=$(printf '%s' "$line" | sed -E 's/.*"image_0": *"([^"]+)".*/\1/')
  [ -s "$tmp/demo/pairs/$img" ] || fail "missing image $img"
done <"$pairs"
[ -s "$tmp/demo/stages/pairs.json" ] || fail "the pairs stage was not recorded"

# Rerun: the finished stage is reused, not recomputed.
before=$(stat -c %Y "$pairs")
"$DPO" demo --quick --out "$tmp/demo" >"$tmp/out" 2>"$tmp/err"
[ $? -eq 1 ] || fail "rerun did not stop at the missing stage"
grep -q "stage 2/6 pairs: done already" "$tmp/err" || fail "rerun did not reuse the pairs"
[ "$(stat -c %Y "$pairs")" = "$before" ] || fail "rerun rewrote pairs.jsonl"

"$DPO" demo --bogus >"$tmp/out" 2>"$tmp/err"
[ $? -eq 2 ] || fail "unknown option did not exit 2"

[ "$failures" -eq 0 ] || { echo "$failures failure(s)" >&2; exit 1; }
echo "demo_quick: ok"
