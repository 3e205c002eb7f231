#!/usr/bin/env bash
# dpo world render/prompts/judge as a user runs them: images that the judge
# scores as their prompt, deterministic renders, disjoint splits, exit codes
# and the messages of malformed prompts and usage errors.
set -uo pipefail
: "${DPO:?set DPO to the dpo binary}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0

fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# run EXPECTED_STATUS ARGS...: runs dpo, keeps stdout/stderr in $tmp/out, $tmp/err.
run() {
  local expected=$1
  shift
  "$DPO" "$@" >"$tmp/out" 2>"$tmp/err"
  local status=$?
  [ "$status" -eq "$expected" ] || fail "dpo $* exited $status, expected $expected; stderr: $(head -3 "$tmp/err")"
}
# has FILE PATTERN: the file has a line matching the extended regex.
has() { grep -Eq -- "$2" "$tmp/$1" || fail "$1 of the last command lacks /$2/: $(head -5 "$tmp/$1")"; }

prompt="a red circle to the left of a blue square"

# --- render: a PNG of the requested size, the same bytes for the same seed.
run 0 world render --prompt "$prompt" --out "$tmp/a.png"
has err "^wrote $tmp/a.png \(32x32, seed 0, (white|black|gray) background\): $prompt$"
run 0 world render --prompt "$prompt" --out "$tmp/b.png"
cmp -s "$tmp/a.png" "$tmp/b.png" || fail "same prompt and seed gave different files"
run 0 world render --prompt "$prompt" --out "$tmp/c.png" --seed 7 --size 64
cmp -s "$tmp/a.png" "$tmp/c.png" && fail "a different seed and size gave the same file"
run 0 inspect "$tmp/c.png"
has out 'png, 64x64, 3 channels'
has out 'text prompt = a red circle to the left of a blue square'
run 0 --quiet world render --prompt "A Large Green Triangle above a yellow circle on a grey background." \
  --out "$tmp/d.png" --seed 3
[ -s "$tmp/err" ] && fail "--quiet render printed: $(cat "$tmp/err")"

# --- judge: the true prompt scores 1, a changed one less; JSON mode.
run 0 world judge --prompt "$prompt" "$tmp/a.png"
has out '^alignment: 1\.0000 \(6 of 6 constraints\)$'
has out '^appeal: 0\.[0-9]{4}$'
has out '^object: (small|large) red circle at'
has out '^object: (small|large) blue square at \(0\.[0-9]+, 0\.[0-9]+\), [0-9]+ pixels'
run 0 world judge --prompt "a red circle to the right of a blue square" "$tmp/a.png"
has out '^alignment: 0\.8333 \(5 of 6 constraints\)$'
run 0 world judge --prompt "a large green triangle above a yellow circle on a gray background" "$tmp/d.png"
has out '^alignment: 1\.0000'
has out '^background: gray$'
run 0 world judge --json --prompt "a green triangle" "$tmp/d.png"
has out '^\{"alignment":0\.833333,"appeal":0\.[0-9]+,"background":"gray","constraints":3,"objects":\[.*"shape":"triangle"'

# --- prompts: one canonical prompt a line, distinct, splits disjoint and stable.
run 0 world prompts --n 300 --split train --seed 5
cp "$tmp/out" "$tmp/train.txt"
[ "$(wc -l <"$tmp/train.txt")" -eq 300 ] || fail "prompts --n 300 printed $(wc -l <"$tmp/train.txt") lines"
[ "$(sort -u "$tmp/train.txt" | wc -l)" -eq 300 ] || fail "train prompts repeat"
run 0 world prompts --n 100 --split heldout --seed 5
cp "$tmp/out" "$tmp/heldout.txt"
[ -z "$(sort "$tmp/train.txt" "$tmp/heldout.txt" | uniq -d)" ] || fail "train and heldout share prompts"
run 0 world prompts --n 100 --split heldout --seed 5
cmp -s "$tmp/out" "$tmp/heldout.txt" || fail "same seed gave a different heldout list"
run 0 world prompts --n 100 --split heldout --seed 6
cat "$tmp/out" "$tmp/train.txt" | sort | uniq -d >"$tmp/shared"
[ -s "$tmp/shared" ] && fail "heldout prompts of seed 6 are in the train list of seed 5: $(head -2 "$tmp/shared")"
run 0 world prompts --n 0 --split train
[ -s "$tmp/out" ] && fail "--n 0 printed prompts"
# Every generated prompt renders, and the render judges as its prompt.
head -5 "$tmp/heldout.txt" >"$tmp/five.txt"
i=0
while IFS= read -r p; do
  i=$((i + 1))
  run 0 world render --prompt "$p" --out "$tmp/h$i.png" --seed "$i"
  run 0 world judge --prompt "$p" "$tmp/h$i.png"
  has out '^alignment: 1\.0000'
done <"$tmp/five.txt"

# --- malformed prompts: exit 1 naming the word, its position and what was expected.
run 1 world render --prompt "a red squre" --out "$tmp/x.png"
has err '^dpo: error: prompt word 3 "squre" \(byte 6\) is unexpected: expected a shape \(circle, square, triangle, diamond, cross\)$'
[ -e "$tmp/x.png" ] && fail "a failed render left a file"
run 1 world render --prompt "a red circle above" --out "$tmp/x.png"
has err 'prompt ends after word 4: expected "a" or "an"'
run 1 world render --prompt "a red circle above a red square" --out "$tmp/x.png"
has err 'distinct colours'
run 1 world render --prompt "" --out "$tmp/x.png"
has err 'prompt is empty'
run 1 world render --prompt "a large red circle to the left of a large blue square and to the right of a large green cross" \
  --out "$tmp/x.png"
has err 'no layout fits'
run 1 world judge --prompt "the red circle" "$tmp/a.png"
has err 'word 1 "the" \(byte 0\)'
run 1 world judge --prompt "$prompt" "$tmp/missing.png"
has err 'missing.png'
printf 'not an image' >"$tmp/bad.png"
run 1 world judge --prompt "$prompt" "$tmp/bad.png"
run 1 world render --prompt "$prompt" --out "$tmp/no/such/dir/x.png"

# --- usage errors: exit 2.
run 2 world
has err 'expected a subcommand'
run 2 world frobnicate
has err 'unknown subcommand "frobnicate"'
run 2 world render --out "$tmp/x.png"
has err "'render' needs --prompt"
run 2 world render --prompt "$prompt"
has err "'render' needs --out"
run 2 world render --prompt "$prompt" --out "$tmp/x.png" --size 8
has err '\-\-size must be 16 to 1024'
run 2 world render --prompt "$prompt" --out "$tmp/x.png" --seed -1
has err '\-\-seed expects a non-negative integer'
run 2 world render --prompt "$prompt" --out "$tmp/x.png" --n 3
has err '\-\-n does not apply to .render.'
run 2 world render --prompt
has err '\-\-prompt expects a value'
run 2 world prompts --n 3
has err "'prompts' needs --split"
run 2 world prompts --split train
has err "'prompts' needs --n"
run 2 world prompts --n 3 --split test
has err '\-\-split must be train or heldout'
run 2 world prompts --n 3 --split train --bogus
has err 'unknown option "--bogus"'
run 2 world judge --prompt "$prompt"
has err "'judge' needs an IMAGE"
run 2 world judge "$tmp/a.png"
has err "'judge' needs --prompt"
run 2 world judge --prompt "$prompt" "$tmp/a.png" "$tmp/b.png"
has err 'takes one IMAGE'

# --- help: complete and exit 0.
run 0 world --help
for word in 'dpo world render --prompt TEXT --out FILE.png \[--seed S\] \[--size N\]' \
            'dpo world prompts --n N --split train\|heldout \[--seed S\]' 'dpo world judge' \
            'COLOUR +:= red orange yellow green cyan blue purple pink' 'circle square triangle diamond cross' \
            'to the left of' 'held-out tenth' 'alignment' 'appeal' 'Exit status'; do
  has out "$word"
done
run 0 world render --help
has out '^usage: dpo world render'
run 0 help world
has out '^usage: dpo world render'
run 0 --help
has out '^  world '

if [ "$failures" -ne 0 ]; then
  echo "world_cli: $failures failure(s)" >&2
  exit 1
fi
echo "world_cli: all checks passed"
