#!/usr/bin/env bash
# The MTurk round trip of `dpo study`: create from two run folders, export,
# ingest a results file (BOM, CRLF, quoted fields), un-swap sides, refuse
# every kind of bad file with its row and leave the database unchanged,
# re-ingest as a no-op, a mixed approved/rejected file, review, status.
set -u
dpo=${DPO:?DPO must point at the dpo binary}
here=$(cd "$(dirname "$0")" && pwd)
helpers=$here/study_helpers
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
contains() { # contains DESCRIPTION FILE TEXT
  grep -qF -- "$3" "$2" || { echo "FAIL: $1: '$3' not in:"; cat "$2"; fail=1; }
}
lacks() { # lacks DESCRIPTION FILE TEXT
  if grep -qF -- "$3" "$2"; then echo "FAIL: $1: '$3' found in $2"; fail=1; fi
}
sql() { python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); [print("|".join(map(str, r))) for r in c.execute(sys.argv[2])]' "$@"; }
fingerprint() { python3 -c 'import sqlite3,sys,hashlib; c=sqlite3.connect(sys.argv[1]); print(hashlib.sha256("\n".join(c.iterdump()).encode()).hexdigest())' "$1"; }
equal() { # equal DESCRIPTION GOT WANT
  [ "$2" = "$3" ] || { echo "FAIL: $1: got '$2', expected '$3'"; fail=1; }
}

python3 "$helpers/make_run.py" runA base-model-secret --prompts 3 --seeds 2
python3 "$helpers/make_run.py" runB tuned-model-secret --prompts 3 --seeds 2

# Mismatched runs are refused with what each side lacks.
python3 "$helpers/make_run.py" runC tuned-model-secret --prompts 3 --seeds 2 --skip p001:1
check "mismatched runs refused" 1 "$dpo" study create --db bad.db --name s --a runA --b runC
contains "missing in B listed" "$tmp/err" "1 image(s) missing in B"
contains "missing key named" "$tmp/err" "tiny/p001 seed 1 image 0"
contains "nothing missing in A" "$tmp/err" "0 image(s) missing in A"

check "create" 0 "$dpo" study create --db study.db --name s1 --a runA --b runB --votes 3 --gold 2 --seed 7
equal "items" "$(sql study.db 'SELECT count(*), sum(is_gold) FROM items')" "8|2"
equal "questions" "$(sql study.db 'SELECT group_concat(key) FROM (SELECT key FROM questions ORDER BY position)')" "q1,q2,q3"
contains "q1 wording" <(sql study.db "SELECT text FROM questions WHERE key='q1'") "Which image do you prefer given the prompt?"
check "same name twice refused" 1 "$dpo" study create --db study.db --name s1 --a runA --b runB
contains "exists" "$tmp/err" "already exists"
check "unknown question" 2 "$dpo" study create --db study.db --name s2 --a runA --b runB --questions q1,q9

check "export" 0 "$dpo" study export --format mturk --db study.db --study s1 --image-base-url https://example.org/img/ --out mturk
equal "batch rows" "$(python3 -c 'import csv; print(len(list(csv.DictReader(open("mturk/batch.csv")))))')" "8"
contains "batch header" mturk/batch.csv "item_id,prompt,image_left_url,image_right_url"
contains "quoted prompt" mturk/batch.csv '"a red square number 0, with ""quotes"""'
contains "url by hash" mturk/batch.csv "https://example.org/img/"
lacks "model not in batch" mturk/batch.csv "model"
lacks "model not in layout" mturk/layout.html "model"
contains "radio q1" mturk/layout.html 'name="q1" value="left"'
contains "radio q3" mturk/layout.html 'name="q3" value="right"'
lacks "no tie radio" mturk/layout.html 'value="tie"'
contains "crowd-form" mturk/layout.html "<crowd-form"
for f in mturk/images/*; do
  n=$(basename "$f" .png)
  equal "image named by content hash" "$(sha256sum "$f" | cut -d' ' -f1)" "$n"
done
equal "image count" "$(ls mturk/images | wc -l)" "12"

# A results file where every worker prefers arm A: after un-swapping, every
# counted vote must be 'a' although the raters clicked left and right.
python3 "$helpers/make_results.py" study.db s1 mturk/batch.csv results.csv --workers 3 --prefer a
check "ingest" 0 "$dpo" study ingest --db study.db --study s1 results.csv
equal "votes un-swapped to A" "$(sql study.db "SELECT choice, count(*) FROM votes GROUP BY choice")" "a|72"
equal "clicked both sides" "$(sql study.db "SELECT count(DISTINCT shown) FROM votes")" "2"
equal "assignments" "$(sql study.db 'SELECT count(*) FROM assignments')" "24"
equal "import recorded" "$(sql study.db 'SELECT n_rows, n_assignments_new, n_votes FROM imports')" "24|24|72"

before=$(fingerprint study.db)
check "second ingest" 0 "$dpo" study ingest --db study.db --study s1 results.csv
contains "second ingest says so" "$tmp/err" "already ingested"
equal "second ingest changes nothing" "$(fingerprint study.db)" "$before"

# Refusals: each names its row (the header is row 1) and the line where it
# starts (every row spans two lines: Description holds a newline); the
# database stays as it was.
refuse() { # refuse DESCRIPTION EXPECTED_TEXT MUTATION...
  local what=$1 text=$2; shift 2
  python3 "$helpers/mutate_csv.py" results.csv bad.csv "$@"
  check "$what refused" 1 "$dpo" study ingest --db study.db --study s1 bad.csv
  contains "$what message" "$tmp/err" "$text"
  equal "$what leaves the database unchanged" "$(fingerprint study.db)" "$before"
}
refuse "wrong header" "row 1: wrong header: no column \"WorkerId\"" drop WorkerId
refuse "no answer column" "row 1: wrong header: no answer column for question q2" drop Answer.q2
refuse "unknown item id" "row 5 (line 8): unknown item id \"nope\"" set 5 Input.item_id nope
refuse "missing answer" "row 4 (line 6): missing answer to question q3" set 4 Answer.q3 ""
refuse "invalid answer" "row 7 (line 12): Answer.q1 is \"both\"" set 7 Answer.q1 both
refuse "tie not allowed" "row 3 (line 4): Answer.q2 is \"tie\", but the study does not allow ties" set 3 Answer.q2 tie
refuse "bad status" "row 6 (line 10): AssignmentStatus is \"Maybe\"" set 6 AssignmentStatus Maybe
refuse "bad work time" "row 6 (line 10): WorkTimeInSeconds is \"fast\"" set 6 WorkTimeInSeconds fast
refuse "changed answer of an ingested assignment" "row 2 (line 2): AssignmentId A0x0 was ingested before with different answers" set 2 Answer.q1 "$(python3 -c 'import csv; r=list(csv.DictReader(open("results.csv",encoding="utf-8-sig")))[0]; print("right" if r["Answer.q1"]=="left" else "left")')"
refuse "one assignment, two answers" "row 26 (line 50): AssignmentId A0x0 has different answers in row 2" copy 2 Answer.q2 "$(python3 -c 'import csv; r=list(csv.DictReader(open("results.csv",encoding="utf-8-sig")))[0]; print("right" if r["Answer.q2"]=="left" else "left")')"
printf 'HITId,"AssignmentId\nbad' > bad.csv
check "malformed CSV refused" 1 "$dpo" study ingest --db study.db --study s1 bad.csv
contains "malformed CSV line" "$tmp/err" "line 1: quoted field never closed"

# A mixed file: new assignments from a second batch, some approved, one
# worker rejected, one too fast; votes beyond --votes 3 are kept and flagged.
python3 "$helpers/make_results.py" study.db s1 mturk/batch.csv results2.csv --workers 4 --prefix B --prefer b \
  --reject-worker W1 --fast-worker W2 --radio
python3 - results2.csv <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1], encoding="utf-8-sig")))
status = rows[0].index("AssignmentStatus")
for r in rows[1:]:
    if r[status] == "Submitted" and r[rows[0].index("WorkerId")] == "W0": r[status] = "Approved"
csv.writer(open(sys.argv[1], "w", newline="", encoding="utf-8"), lineterminator="\r\n").writerows(rows)
PY
check "mixed ingest" 0 "$dpo" study ingest --db study.db --study s1 --min-work-seconds 10 results2.csv
equal "rejected kept, not counted" "$(sql study.db "SELECT count(*) FROM assignments WHERE excluded='rejected'")" "8"
equal "too fast kept, not counted" "$(sql study.db "SELECT count(*) FROM assignments WHERE excluded='too_fast'")" "8"
equal "extra votes flagged" "$(sql study.db "SELECT count(*) FROM assignments WHERE extra=1")" "16"
equal "counted votes are the first 3 per item" "$(sql study.db "SELECT count(*) FROM assignments WHERE excluded IS NULL AND extra=0")" "24"
equal "radio answers un-swapped to B" "$(sql study.db "SELECT count(*) FROM votes v JOIN assignments a ON a.id=v.assignment_id WHERE a.external_id LIKE 'B%' AND v.choice='b'")" "96"

check "status" 0 "$dpo" study status --db study.db --study s1
contains "status items" "$tmp/out" "items 6 (+2 gold), complete 6 (100.0%)"
contains "status q1" "$tmp/out" "q1    votes 18: A 18, B 0, tie 0"
contains "status raters" "$tmp/out" "raters 4"

# Review: W1 fails gold checks on purpose, W2 is too fast.
python3 "$helpers/make_results.py" study.db s1 mturk/batch.csv results3.csv --workers 3 --prefix C --prefer a \
  --gold-wrong-worker W1 --fast-worker W2
check "review" 0 "$dpo" study review --db study.db --study s1 --min-work-seconds 10 --out approve.csv results3.csv
python3 - approve.csv > review.txt <<'PY'
import csv, sys, collections
rows = list(csv.DictReader(open(sys.argv[1], encoding="utf-8-sig")))
c = collections.Counter()
for r in rows:
    kind = "approve" if r["Approve"] == "x" else ("gold" if "attention" in r["Reject"] else ("fast" if "seconds" in r["Reject"] else "none"))
    c[(r["WorkerId"], kind)] += 1
for k in sorted(c): print(k[0], k[1], c[k])
PY
equal "review decisions" "$(cat review.txt | tr '\n' ';')" "W0 approve 8;W1 approve 6;W1 gold 2;W2 fast 8;"
check "review refuses a bad file" 1 "$dpo" study review --db study.db --study s1 --out approve2.csv bad.csv
[ ! -e approve2.csv ] || { echo "FAIL: review wrote a file for a refused input"; fail=1; }
# An edit study (TEd-Bench): the original image travels with each HIT.
python3 "$helpers/make_run.py" editA base --prompts 2 --seeds 1 --edit
python3 "$helpers/make_run.py" editB tuned --prompts 2 --seeds 1 --edit
check "edit create" 0 "$dpo" study create --db study.db --name e1 --a editA --b editB --questions edit --allow-tie
check "edit export" 0 "$dpo" study export --format mturk --db study.db --study e1 --image-base-url http://h/i --out edit
contains "edit batch has the source column" edit/batch.csv "item_id,prompt,image_left_url,image_right_url,image_source_url"
contains "edit wording" edit/layout.html "Which edit do you prefer given the text?"
contains "edit layout shows the original" edit/layout.html '${image_source_url}'
contains "tie allowed" edit/layout.html 'name="edit" value="tie"'
check "edit study without originals refused" 1 "$dpo" study create --db study.db --name e2 --a runA --b runB --questions edit
contains "names the missing key" "$tmp/err" 'key "settings.source_image"'
exit $fail
