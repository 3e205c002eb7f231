#!/usr/bin/env bash
# dpo prompts list/show/stats as a user runs them: the acceptance counts of
# the built-in sets, one prompt in full, user files, exit codes and messages.
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

# --- stats: the acceptance numbers from the SOURCE.md files.
run 0 prompts stats parti
has out '^prompts: 1632$'
has out '^categories: 12$'
for row in 'Animals +314' 'Artifacts +287' 'World Knowledge +214' 'People +177' 'Outdoor Scenes +131' \
           'Illustrations +124' 'Vehicles +104' 'Food & Beverage +74' 'Arts +66' 'Abstract +51' \
           'Produce & Plants +50' 'Indoor Scenes +40' \
           'Fine-grained Detail +312' 'Basic +272' 'Properties & Positioning +35'; do
  has out "^$row "
done
[ "$(grep -Ec '^[A-Z].* +[0-9]+ +[0-9]+$' "$tmp/out")" -eq 23 ] || fail "parti stats: expected 12 category + 11 challenge rows"

run 0 prompts stats hpsv2
has out '^prompts: 3200$'
has out '^styles: 4$'
for style in anime concept-art paintings photo; do has out "^$style +800 "; done
has out '^anime +800 +781$'

run 0 prompts stats tedbench
has out '^edits: 100$'
has out '^images: 40$'
has out '^image formats \(magic bytes\): jpeg 33, png 7$'
has out 'bird.png is really jpeg'
has out '^edits per image: 1 edit: 16 images; 2 edits: 6 images; 3 edits: 7 images; 4 edits: 5 images; 5 edits: 5 images; 6 edits: 1 image$'
has out '^white_horse2.png +6 +6 +png$'

# --- list
run 0 prompts list
has out '^parti +1632 prompts '
has out '^hpsv2 +3200 prompts '
has out '^tedbench +100 edits '
has out '^data directory: /'

# --- show one prompt in full
run 0 prompts show parti:17
has out '^id: parti:17$'
has out '^prompt: "black hole"$'
has out '^category: Abstract$'
has out '^Challenge: Basic$'
has out '^Note: Physics concepts$'
run 0 prompts show hpsv2:anime:329
has out '^prompt: "Walter White dressed as a medieval-style king\."$'
run 0 prompts show hpsv2:photo:251
has out '^prompt: " A blender sitting on top of a table\."$'
run 0 prompts show tedbench:63
has out '^category: bird\.png$'
has out '^image: /.*/tedbench/originals/bird\.png$'
has out '^format: jpeg \(from magic bytes; the file name says png\)$'
image=$(sed -n 's/^image: //p' "$tmp/out")
[ -f "$image" ] || fail "tedbench:63 image $image does not exist"
run 0 prompts show --json hpsv2:photo:204
has out '^\{"id":"hpsv2:photo:204","category":"photo","prompt":"A man is standing in front of a case filled with pastries\.\\n"\}$'
run 0 prompts show tedbench:3
has out '^format: png \(from magic bytes\)$'

# --- show a whole set: one prompt per line, escapes, JSONL
run 0 prompts show parti
[ "$(wc -l <"$tmp/out")" -eq 1633 ] || fail "show parti: expected a header and 1632 lines"
has out '^id	category	prompt$'
has out '^parti:17	Abstract	black hole$'
run 0 prompts show hpsv2
[ "$(wc -l <"$tmp/out")" -eq 3201 ] || fail "show hpsv2: embedded newlines must be escaped"
has out '^hpsv2:anime:723	anime	\.\\n\\nA full-body shot'
run 0 prompts show --json tedbench
[ "$(wc -l <"$tmp/out")" -eq 100 ] || fail "show --json tedbench: expected 100 lines"
has out '"id":"tedbench:63".*"format":"jpeg"'

# --- user files, and show --json output loaded back as a .jsonl file
printf 'a red cube\r\n\r\n  two spaces  \n' >"$tmp/mine.txt"
run 0 prompts show "$tmp/mine.txt"
has out '^mine:1		a red cube$'
has out '^mine:3		  two spaces  $'
run 0 prompts show "$tmp/mine.txt:3"
has out '^prompt: "  two spaces  "$'
run 0 prompts show --json hpsv2
cp "$tmp/out" "$tmp/again.jsonl"
run 0 prompts stats "$tmp/again.jsonl"
has out '^prompts: 3200$'
has out '^anime +800 +781$'
run 0 prompts show "$tmp/again.jsonl:hpsv2:anime:329"
has out '^prompt: "Walter White dressed as a medieval-style king\."$'

# --- malformed files: exit 1 with file:line and what was expected
printf 'prompt\tcategory\nok\tA\nno category column\n' >"$tmp/bad.tsv"
run 1 prompts stats "$tmp/bad.tsv"
has err "$tmp/bad.tsv:3: found 1 tab-separated columns, expected 2 as in the header"
printf '{"prompt": "ok"}\n{"text": "no prompt"}\n' >"$tmp/bad.jsonl"
run 1 prompts show "$tmp/bad.jsonl"
has err "$tmp/bad.jsonl:2: missing key \"prompt\""
printf 'fine\nbad \xff byte\n' >"$tmp/bad.txt"
run 1 prompts show "$tmp/bad.txt"
has err "$tmp/bad.txt:2: invalid UTF-8 at byte offset 9"
run 1 prompts show "$tmp/missing.txt"
has err 'missing.txt: cannot open'
run 1 prompts show parti:99999
has err 'no prompt with id "parti:99999"'
DPO_DATA_DIR="$tmp/nowhere" "$DPO" prompts stats parti >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] || fail "stats parti with a bad DPO_DATA_DIR should exit 1"
has err "DPO_DATA_DIR=$tmp/nowhere"

# --- usage errors: exit 2
run 2 prompts
has err 'expected a subcommand'
run 2 prompts frobnicate
has err 'unknown subcommand "frobnicate"'
run 2 prompts show
has err "'show' expects one SET"
run 2 prompts stats parti hpsv2
run 2 prompts stats parti --json
has err '\-\-json applies to .show. only'
run 2 prompts show --bogus parti
has err 'unknown option "--bogus"'
run 2 prompts list extra
run 2 prompts show parti:
has err 'empty id after "parti:"'
run 2 prompts show nosuchset
has err 'unknown prompt set "nosuchset"'
printf 'x\n' >"$tmp/prompts.csv"
run 2 prompts show "$tmp/prompts.csv"
has err 'unknown prompt file type'

# --- help: complete and exit 0
run 0 prompts --help
for word in 'dpo prompts list' 'dpo prompts show \[--json\] SET\[:ID\]' 'dpo prompts stats SET' \
            '--json' 'parti' 'hpsv2' 'tedbench' '\.txt' '\.tsv' '\.jsonl' 'DPO_DATA_DIR' 'Exit status'; do
  has out "$word"
done
run 0 prompts show --help
has out 'usage: dpo prompts list'
run 0 help prompts
has out 'usage: dpo prompts list'
run 0 --help
has out '^  prompts '

if [ "$failures" -ne 0 ]; then
  echo "prompts_cli: $failures failure(s)" >&2
  exit 1
fi
echo "prompts_cli: all checks passed"
