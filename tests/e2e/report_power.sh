#!/usr/bin/env bash
# dpo report power: the numbers for p = 0.6 match the scipy fixture
# (tests/fixtures/stats/power.json), and bad usage exits 2.
set -euo pipefail
: "${DPO:?path of the dpo binary}" "${DPO_SOURCE_DIR:?source tree}"
fail() { echo "report_power.sh: $*" >&2; exit 1; }

fixture="$DPO_SOURCE_DIR/tests/fixtures/stats/power.json"
case_json=$(grep -o '{"p":0.6,"alpha":0.05,"power":0.8,[^}]*' "$fixture") || fail "no p=0.6 case in $fixture"
field() { printf '%s' "$case_json" | grep -o "\"$1\":[0-9.e-]*" | cut -d: -f2; }

out=$("$DPO" report power --p 0.6) || fail "dpo report power --p 0.6 failed"
# Second column of the labelled line, and the number after "power " in it.
column() { printf '%s\n' "$out" | grep "^$1 " | awk '{print $4}'; }
power_of() { printf '%s\n' "$out" | grep "^$1 " | sed -n 's/.*(power \([0-9.]*\);.*/\1/p'; }

[ "$(column 'normal approx')" = "$(field normal_n)" ] || fail "normal n: $(column 'normal approx') vs $(field normal_n)"
[ "$(column 'exact first')" = "$(field exact_first_n)" ] || fail "first n: $(column 'exact first') vs $(field exact_first_n)"
[ "$(column 'exact stable')" = "$(field exact_stable_n)" ] || fail "stable n: $(column 'exact stable') vs $(field exact_stable_n)"
printf '%s\n' "$out" | grep -q "every n from here to $(field search_limit) reaches" || fail "search limit not $(field search_limit)"
want=$(printf '%.4f' "$(field exact_stable_power)")
[ "$(power_of 'exact stable')" = "$want" ] || fail "stable power $(power_of 'exact stable') vs $want"
want=$(printf '%.4f' "$(field normal_n_real)")
printf '%s\n' "$out" | grep -q "($want before rounding up)" || fail "normal n before rounding is not $want"

# Defaults are alpha 0.05 and power 0.8: spelling them out changes nothing.
[ "$("$DPO" report power --p 0.6 --alpha 0.05 --power 0.8)" = "$out" ] || fail "explicit defaults differ"
"$DPO" report power --p 0.6 --power 0.9 | grep -q "^power  *0.9$" || fail "--power not taken"

expect_usage() {
  local rc=0
  "$DPO" "$@" >/dev/null 2>"$DPO_TMP/err" || rc=$?
  [ "$rc" -eq 2 ] || fail "dpo $* exited $rc, expected 2"
  [ -s "$DPO_TMP/err" ] || fail "dpo $* printed no message"
}
DPO_TMP=$(mktemp -d)
trap 'rm -rf "$DPO_TMP"' EXIT
expect_usage report
expect_usage report --db study.db
expect_usage report power
expect_usage report power --p
expect_usage report power --p 0.5
expect_usage report power --p 1.2
expect_usage report power --p abc
expect_usage report power --p 0.6 --alpha 0
expect_usage report power --p 0.6 --power 1
expect_usage report power --p 0.6 --bogus
grep -q "study database" <("$DPO" report 2>&1 || true) || fail "dpo report does not mention the study database"
"$DPO" report --help | grep -q "report power" || fail "help lacks report power"
"$DPO" help report | grep -q "stable n" || fail "dpo help report lacks the stable n"
echo "report_power.sh: ok"
