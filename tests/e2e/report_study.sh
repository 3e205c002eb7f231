#!/usr/bin/env bash
# dpo report on a study database with known votes: report.json against
# values worked out by hand (tests/e2e/report_helpers/report_case.py), the
# edge cases (zero items, all ties, one rater, a one-item category, a study
# without votes) as nulls with reasons, every interval around its estimate,
# the Bradley-Terry ranking across studies, the HTML's self-containment and
# escaping, items.csv, atomic outputs and the errors.
set -u
dpo=${DPO:?DPO must point at the dpo binary}
here=$(cd "$(dirname "$0")" && pwd)
make_run=$here/study_helpers/make_run.py
case_py=$here/report_helpers/report_case.py
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

check() { # check DESCRIPTION EXPECTED_STATUS COMMAND...
  local what=$1 want=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"
  local got=$?
  if [ "$got" -ne "$want" ]; then
    echo "FAIL: $what: exit $got, expected $want"; cat "$tmp/out" "$tmp/err"; fail=1
  fi
}
contains() { grep -qF -- "$3" "$2" || { echo "FAIL: $1: '$3' not in $2"; fail=1; }; }
lacks() { if grep -qF -- "$3" "$2"; then echo "FAIL: $1: '$3' found in $2"; fail=1; fi; }

text='p000=a <b>bold</b> & "quoted" cat, <script>alert(1)</script>'
for run in "runA base" "runB tuned" "runC cmodel"; do
  set -- $run
  python3 "$make_run" "$1" "$2" --prompts 4 --seeds 2 --prompt-text "$text"
done
check "create s1" 0 "$dpo" study create --db st.db --name s1 --a runA --b runB --questions q1,q3 --votes 3 --allow-tie --gold 2 --seed 7
check "create s2" 0 "$dpo" study create --db st.db --name s2 --a runB --b runC --questions q1 --votes 3 --allow-tie --seed 8
for s in empty ties; do
  check "create $s" 0 "$dpo" study create --db st.db --name $s --a runA --b runB --questions q1 --votes 3 --allow-tie
done
check "create onerater" 0 "$dpo" study create --db st.db --name onerater --a runA --b runB --questions q1 --votes 1
python3 "$case_py" votes st.db || fail=1

# s1 and every edge study in one report
check "report" 0 "$dpo" report --db st.db --study s1 --study empty --study ties --study onerater --study zero --out rep
contains "summary line" "$tmp/out" "5 studies"
for f in report.json report.md report.html items.csv; do [ -s "rep/$f" ] || { echo "FAIL: rep/$f missing"; fail=1; }; done
python3 "$case_py" check rep st.db || fail=1
ls rep | grep -q '\.tmp' && { echo "FAIL: temporary files left in rep/"; ls rep; fail=1; }

# Markdown: the paper's table (question x benchmark) and the categories
contains "md overview" rep/report.md "| Study | Benchmark | A | B | General preference | Prompt alignment |"
contains "md s1 row" rep/report.md "| s1 | tiny | base | tuned | 57.1% ["
contains "md zero-item row" rep/report.md "| zero | (no items) | base | tuned | n/a (no items) n=0 |"
contains "md category table" rep/report.md "| solo | 1 | 1 | 0 | 0 | 0 | 100.0% ["
contains "md undefined" rep/report.md "n/a (no items)"

# HTML: self-contained, escaped, charts and gallery with embedded images
html=rep/report.html
lacks "no script tag from the prompt" $html "<script>"
contains "prompt escaped" $html "a &lt;b&gt;bold&lt;/b&gt; &amp; &quot;quoted&quot; cat, &lt;script&gt;alert(1)&lt;/script&gt;"
lacks "no network" $html "http://"
lacks "no network" $html "https://"
lacks "no external src" $html 'src="/'
contains "CSP" $html "default-src 'none'"
contains "win-rate chart" $html "Win rate of B per question"
contains "category chart" $html "Win rate of B by category: General preference"
contains "position chart" $html "Position bias"
contains "agreement chart" $html "Rater agreement"
contains "50% line" $html "50%: no preference"
contains "rater table" $html "Raters' agreement with the majority"
contains "rater row" $html "<td>simulated:r2</td>"
contains "gallery largest" $html "Examples: largest margins"
contains "gallery smallest" $html "Examples: smallest margins"
contains "embedded image" $html 'src="data:image/png;base64,iVBORw0KGgo'
lacks "NaN in html" $html "NaN"

# Bradley-Terry across studies sharing an arm; none for a single study
check "report s1+s2" 0 "$dpo" report --db st.db --study s1 --study s2 --out bt
python3 "$case_py" check-bt bt || fail=1
contains "BT chart" bt/report.html "Bradley-Terry scores: General preference"
check "report s1" 0 "$dpo" report --db st.db --study s1 --out single
python3 "$case_py" check-single single || fail=1

# The votes are read by one of two queries depending on whether the study
# holds most of the database: with the other studies' votes deleted, s1 is
# read the other way and its report must not change.
cp st.db alone.db
python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute("DELETE FROM votes WHERE assignment_id IN (SELECT a.id FROM assignments a JOIN studies s ON s.id = a.study_id WHERE s.name != ?)", ("s1",)); c.execute("DELETE FROM assignments WHERE study_id != (SELECT id FROM studies WHERE name = ?)", ("s1",)); c.commit()' alone.db
check "report s1 alone in its database" 0 "$dpo" report --db alone.db --study s1 --out alone
sed 's|alone.db|st.db|g' alone/report.json | cmp -s - single/report.json || { echo "FAIL: s1's report depends on the query plan"; diff alone/report.json single/report.json | head; fail=1; }

# Same seed, same report; the bootstrap seed is honoured
check "report again" 0 "$dpo" report --db st.db --study s1 --out single2
cmp -s single/report.json single2/report.json || { echo "FAIL: report.json differs between identical runs"; fail=1; }
check "report other seed" 0 "$dpo" report --db st.db --study s1 --seed 99 --out seed99
cmp -s single/report.json seed99/report.json && { echo "FAIL: --seed changed nothing"; fail=1; }

# A moved image shows as missing, it does not stop the report
mv runA/images/p000-s0-0.png runA/moved.png
check "report with a missing image" 0 "$dpo" report --db st.db --study s1 --out missing
contains "missing image counted" "$tmp/out" "could not be read"
contains "missing image placeholder" missing/report.html "image not embedded"
mv runA/moved.png runA/images/p000-s0-0.png

# Errors
check "unknown study" 1 "$dpo" report --db st.db --study nope --out e1
contains "unknown study named" "$tmp/err" 'no study named "nope"'
[ -e e1/report.json ] && { echo "FAIL: report written for an unknown study"; fail=1; }
check "missing db" 1 "$dpo" report --db missing.db --study s1 --out e2
check "study twice" 2 "$dpo" report --db st.db --study s1 --study s1 --out e3
check "no --out" 2 "$dpo" report --db st.db --study s1
check "no --study" 2 "$dpo" report --db st.db --out e4
check "bad seed" 2 "$dpo" report --db st.db --study s1 --out e5 --seed -1
check "unknown flag" 2 "$dpo" report --db st.db --study s1 --out e6 --bogus 1
echo "not a database" > junk.db
check "not a database" 1 "$dpo" report --db junk.db --study s1 --out e7

exit $fail
