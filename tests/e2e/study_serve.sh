#!/usr/bin/env bash
# The local rating server: invite links, a rater voting through every item
# (each once, sides un-swapped correctly), and the security rules: bad
# tokens, ".." and absolute paths, a prompt holding <script>, oversized bodies.
set -u
dpo=${DPO:?DPO must point at the dpo binary}
here=$(cd "$(dirname "$0")" && pwd)
helpers=$here/study_helpers
command -v curl >/dev/null || { echo "study_serve: curl is missing (scripts/setup.sh installs it)"; exit 1; }
fail=0
tmp=$(mktemp -d)
server_pid=
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
cd "$tmp"
equal() { [ "$2" = "$3" ] || { echo "FAIL: $1: got '$2', expected '$3'"; fail=1; }; }
sql() { python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); [print("|".join(map(str, r))) for r in c.execute(sys.argv[2])]' "$@"; }
status_of() { curl -s -o "$tmp/body" -w '%{http_code}' --path-as-is "$@"; }

python3 "$helpers/make_run.py" runA base --prompts 3 --seeds 1 --prompt-text 'p000=<script>alert(1)</script> & "cats"'
python3 "$helpers/make_run.py" runB tuned --prompts 3 --seeds 1 --prompt-text 'p000=<script>alert(1)</script> & "cats"'
"$dpo" -q study create --db s.db --name s --a runA --b runB --questions q1,q3 --votes 1 --gold 1 --allow-tie --seed 5 || exit 1
"$dpo" study invite --db s.db --study s --raters 2 > invites.txt || exit 1
equal "two invitations" "$(wc -l < invites.txt)" "2"
equal "tokens stored as hashes only" "$(sql s.db "SELECT count(*) FROM raters WHERE source='local' AND length(token_sha256)=64")" "2"
token=$(sed -n 1p invites.txt | sed 's#.*/r/##')
grep -q "$token" s.db && { echo "FAIL: the token itself is in the database"; fail=1; }

"$dpo" study serve --db s.db --port 0 --port-file port.txt 2>server.log &
server_pid=$!
for _ in $(seq 100); do [ -s port.txt ] && break; sleep 0.1; done
port=$(cat port.txt)
base=http://127.0.0.1:$port

equal "bad token" "$(status_of "$base/r/0123")" "403"
equal "unknown token" "$(status_of "$base/r/$(printf 'a%.0s' $(seq 64))")" "403"
equal "vote without a valid token" "$(status_of -X POST -d 'item=x&q1=left&q3=left' "$base/r/nottoken/vote")" "403"
equal "dot-dot path" "$(status_of "$base/img/../../../etc/passwd")" "404"
equal "encoded dot-dot" "$(status_of "$base/img/..%2f..%2fetc%2fpasswd")" "404"
equal "absolute path" "$(status_of "$base/img//etc/passwd")" "404"
equal "unregistered hash" "$(status_of "$base/img/$(printf '0%.0s' $(seq 64))")" "404"
img=$(sql s.db "SELECT sha256 FROM images LIMIT 1")
equal "registered image" "$(status_of "$base/img/$img")" "200"
equal "image bytes" "$(sha256sum body | cut -d' ' -f1)" "$img"

# Vote through every item, always clicking left (tie on q3 once).
n_items=$(sql s.db "SELECT count(*) FROM items")
seen=""
for i in $(seq "$n_items"); do
  equal "page $i" "$(status_of "$base/r/$token")" "200"
  grep -q "<script>alert" body && { echo "FAIL: prompt not escaped"; fail=1; }
  grep -q "$((i - 1)) of $n_items rated" body || { echo "FAIL: progress counter on page $i"; fail=1; }
  item=$(sed -n 's/.*name="item" value="\([0-9a-f]*\)".*/\1/p' body)
  case " $seen " in *" $item "*) echo "FAIL: item $item shown twice"; fail=1 ;; esac
  seen="$seen $item"
  q3=left; [ "$i" -eq 1 ] && q3=tie
  equal "vote $i" "$(status_of -X POST -d "item=$item&q1=left&q3=$q3&elapsed_ms=1500" "$base/r/$token/vote")" "303"
done
equal "done page" "$(status_of "$base/r/$token")" "200"
grep -q "All items are rated" body || { echo "FAIL: no done page"; fail=1; }
equal "votes recorded" "$(sql s.db "SELECT count(*) FROM votes")" "$((2 * n_items))"
equal "un-swapped per (rater, item) side" \
  "$(sql s.db "SELECT count(*) FROM votes v JOIN assignments a ON a.id = v.assignment_id WHERE v.shown = 'left' AND v.choice = CASE a.a_side WHEN 'left' THEN 'a' ELSE 'b' END")" \
  "$((2 * n_items - 1))"
equal "tie kept" "$(sql s.db "SELECT count(*) FROM votes WHERE choice = 'tie'")" "1"
equal "work time recorded" "$(sql s.db "SELECT min(work_seconds) FROM assignments")" "1.5"

before=$(sql s.db "SELECT count(*) FROM votes")
first=$(echo $seen | cut -d' ' -f1)
equal "same item twice refused" "$(status_of -X POST -d "item=$first&q1=left&q3=left" "$base/r/$token/vote")" "409"
token2=$(sed -n 2p invites.txt | sed 's#.*/r/##')
equal "rater 2 page" "$(status_of "$base/r/$token2")" "200"
equal "invalid answer" "$(status_of -X POST -d "item=$first&q1=up&q3=left" "$base/r/$token2/vote")" "400"
equal "missing answer" "$(status_of -X POST -d "item=$first&q1=left" "$base/r/$token2/vote")" "400"
equal "unknown item" "$(status_of -X POST -d "item=zzz&q1=left&q3=left" "$base/r/$token2/vote")" "404"
head -c 10000 /dev/zero | tr '\0' 'a' > big.txt
equal "oversized body" "$(status_of -X POST --data-binary @big.txt "$base/r/$token2/vote")" "413"
equal "oversized body, chunked" "$(status_of -X POST -H 'Transfer-Encoding: chunked' --data-binary @big.txt "$base/r/$token2/vote")" "413"
equal "refusals change nothing" "$(sql s.db "SELECT count(*) FROM votes")" "$before"
# The escaped prompt is on the page of whichever rater gets p000.
python3 - s.db "$base" "$token2" <<'PY' || fail=1
import sqlite3, sys, urllib.request
db, base, token = sys.argv[1:]
for _ in range(10):
    page = urllib.request.urlopen(f"{base}/r/{token}").read().decode()
    if "<script>alert" in page: sys.exit("FAIL: unescaped prompt")
    if "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;cats&quot;" in page: sys.exit(0)
    item = page.split('name="item" value="')[1].split('"')[0]
    urllib.request.urlopen(urllib.request.Request(f"{base}/r/{token}/vote", data=f"item={item}&q1=right&q3=right".encode()))
sys.exit("FAIL: escaped prompt never shown")
PY
grep -q "127.0.0.1" server.log || { echo "FAIL: server did not say it binds 127.0.0.1"; cat server.log; fail=1; }
kill "$server_pid"; wait "$server_pid" 2>/dev/null; server_pid=
exit $fail
