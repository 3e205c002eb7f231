#!/usr/bin/env bash
# dpo score (built-in and HTTP scorers against a loopback server), dpo pairs
# (the trainer's format, labelled by a scorer) and dpo reward-acc end to end,
# with their exit codes.
set -u
dpo=${DPO:?DPO must point at the dpo binary}
src=${DPO_SOURCE_DIR:?}
here=$(cd "$(dirname "$0")" && pwd)
pixel=$src/tests/fixtures/pipelines/tiny_pixel
fail=0
tmp=$(mktemp -d)
server=
trap '[ -n "$server" ] && kill $server 2>/dev/null; rm -rf "$tmp"' EXIT
cd "$tmp"
equal() { [ "$2" = "$3" ] || { echo "FAIL: $1: got '$2', expected '$3'"; fail=1; }; }

printf 'a red circle\na blue square on a white background\nx\n' > p.txt
"$dpo" -q generate --model "$pixel" --prompts p.txt --out run --steps 2 --images-per-prompt 2 --threads 1 || exit 1

# Built-in scorer: a scores file with one line per image, and a summary.
"$dpo" -q score --scorer brightness --run run > out.txt || { echo "FAIL: score"; fail=1; }
grep -q "brightness .*mean .* median " out.txt || { echo "FAIL: summary"; cat out.txt; fail=1; }
equal "score lines" "$(wc -l < run/scores-brightness.jsonl)" 6
"$dpo" -q score --scorer brightness --run run --json --seed 3 > a.json && "$dpo" -q score --scorer brightness --run run --json --seed 3 > b.json
cmp -s a.json b.json || { echo "FAIL: seeded bootstrap differs"; fail=1; }

# HTTP scorer against a loopback server.
python3 "$here/eval_helpers/score_server.py" port.txt &
server=$!
for _ in $(seq 1 100); do [ -s port.txt ] && break; sleep 0.05; done
url="http://127.0.0.1:$(cat port.txt)"
"$dpo" -q score --scorer "http:$url/ok" --run run --batch-size 4 || { echo "FAIL: http score"; fail=1; }
f=$(ls run/scores-http*.jsonl 2>/dev/null | head -1)
python3 - "$f" <<'PY' || { echo "FAIL: http scores"; fail=1; }
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert len(lines) == 6, len(lines)
by_prompt = {"p:1": 0.12, "p:2": 0.35, "p:3": 0.01}
for l in lines:
    assert abs(l["score"] - by_prompt[l["prompt_id"]]) < 1e-9, l
PY
"$dpo" -q score --scorer-url "$url/fail" --run run --retries 1 --timeout 5 2> err.txt
equal "failing server" "$?" "1"
grep -q "gave up after 2 tries.*HTTP status 500" err.txt || { echo "FAIL: message"; cat err.txt; fail=1; }
"$dpo" -q score --scorer-url "$url/garbage" --run run --retries 0 2> err.txt
equal "garbage server" "$?" "1"
grep -q 'expected JSON {"scores": \[...\]}' err.txt || { echo "FAIL: garbage message"; cat err.txt; fail=1; }

# AI-feedback pairs labelled by the shapes judge; the same judge classifies
# them all correctly, and a model against itself has zero margins.
"$dpo" -q pairs --model "$pixel" --prompts world:train:4 --scorer shapes-judge --score overall --out pairs \
  --steps 2 --threads 1 || { echo "FAIL: pairs"; fail=1; }
equal "pairs lines" "$(wc -l < pairs/pairs.jsonl)" 4
"$dpo" reward-acc --scorer shapes-judge --score overall --pairs pairs/pairs.jsonl --json > acc.json || fail=1
python3 -c 'import json,sys; d=json.load(open("acc.json")); assert d["n_pairs"] + d["ties_skipped"] == 4 and d["accuracy"] == 1.0, d' ||
  { echo "FAIL: scorer accuracy"; cat acc.json; fail=1; }
"$dpo" -q reward-acc --model "$pixel" --ref "$pixel" --pairs pairs/pairs.jsonl --timesteps 2 --out per.jsonl --json \
  > racc.json || { echo "FAIL: reward-acc"; fail=1; }
python3 - <<'PY' || { echo "FAIL: reward-acc output"; cat racc.json; fail=1; }
import json
d = json.load(open("racc.json"))
assert d["accuracy"] == 0.0 and d["mean_margin"] == 0.0, d   # identical models: no margin, counted wrong
lines = [json.loads(l) for l in open("per.jsonl")]
assert len(lines) == d["n_pairs"] and all(l["model_diff"] == l["ref_diff"] for l in lines)
PY

# In bf16 (both UNets frozen bf16, the CPU's emulation) the same identical
# models still give equal errors, hence no margin.
"$dpo" -q reward-acc --model "$pixel" --ref "$pixel" --pairs pairs/pairs.jsonl --timesteps 2 --precision bf16 --json \
  > racc16.json || { echo "FAIL: reward-acc bf16"; fail=1; }
python3 -c 'import json; d=json.load(open("racc16.json")); assert d["mean_margin"] == 0.0 and d["n_pairs"] > 0, d' ||
  { echo "FAIL: reward-acc bf16 output"; cat racc16.json; fail=1; }

# Relabelling with the same judge keeps every label; another scorer writes
# its own source.
"$dpo" -q pairs --relabel pairs/pairs.jsonl --scorer shapes-judge --score overall --out pairs/same.jsonl || fail=1
"$dpo" -q pairs --relabel pairs/pairs.jsonl --scorer redness --out pairs/red.jsonl || fail=1
python3 - <<'PY' || { echo "FAIL: relabel"; fail=1; }
import json
a = [json.loads(l) for l in open("pairs/pairs.jsonl")]
b = [json.loads(l) for l in open("pairs/same.jsonl")]
c = [json.loads(l) for l in open("pairs/red.jsonl")]
assert [x["label_0"] for x in a] == [x["label_0"] for x in b]
assert all(x["source"] == "ai-feedback:redness:redness" and x["caption"] == y["caption"] for x, y in zip(c, a))
PY
usage() { cmd=$1; shift; "$dpo" "$cmd" "$@" 2>/dev/null; equal "usage: $cmd $*" "$?" "2"; }
usage pairs --relabel pairs/pairs.jsonl --scorer redness --out elsewhere.jsonl
usage pairs --relabel pairs/pairs.jsonl --scorer redness --out pairs/x.jsonl --model "$pixel"

# Contact sheet: 6 shared images of two runs at 32 px cells is
# (220 + 2 * 36 + 4) x (24 + 6 * 36 + 4); runs that share nothing fail.
"$dpo" -q generate --model "$pixel" --prompts p.txt --out run2 --steps 3 --images-per-prompt 2 --threads 1 || fail=1
"$dpo" -q grid --runs run run2 --out grid.png --cell 32 || { echo "FAIL: grid"; fail=1; }
"$dpo" inspect grid.png | grep -q "png, 296x244, 3 channels" || { echo "FAIL: grid size"; "$dpo" inspect grid.png; fail=1; }
"$dpo" -q grid --runs run pairs/run --out none.png 2>/dev/null
equal "grid without shared images" "$?" "1"
usage grid --runs run
usage grid --out g.png
usage grid --runs run --out g.png --cell 4

# Exit codes.
usage score --run run
usage score --scorer nope --run run
usage score --scorer brightness --scorer-url http://x --run run
usage score --scorer-url ftp://x --run run
usage pairs --model "$pixel" --prompts p.txt --out x
usage pairs --model "$pixel" --prompts p.txt --out x --scorer brightness --images-per-prompt 1
usage pairs --model "$pixel" --prompts p.txt --out x --scorer brightness --score nope
usage reward-acc --model "$pixel" --pairs pairs/pairs.jsonl
usage reward-acc --scorer brightness --model "$pixel" --pairs pairs/pairs.jsonl
usage reward-acc --model "$pixel" --ref "$pixel" --pairs pairs/pairs.jsonl --timesteps 0
"$dpo" score --scorer brightness --run nowhere 2>/dev/null
equal "missing run" "$?" "1"
"$dpo" reward-acc --model "$pixel" --ref nowhere --pairs pairs/pairs.jsonl 2>/dev/null
equal "missing ref" "$?" "1"
exit $fail
