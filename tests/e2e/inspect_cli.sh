#!/usr/bin/env bash
# dpo inspect: valid safetensors, PNG and JPEG files are described; malformed
# ones give exit status 1 and a message naming the file and the fault's position.
set -u
dpo=${DPO:?DPO must point at the dpo binary}
src=${DPO_SOURCE_DIR:?}
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run() { "$dpo" "$@" >"$tmp/out" 2>"$tmp/err"; echo $?; }
expect() { # expect DESCRIPTION STATUS FILE TEXT -- COMMAND...
  local what=$1 want=$2 file=$3 text=$4; shift 5
  local got; got=$(run "$@")
  [ "$got" -eq "$want" ] || { echo "FAIL: $what: exit $got, expected $want"; cat "$tmp/out" "$tmp/err"; fail=1; return; }
  grep -qF -- "$text" "$tmp/$file" || { echo "FAIL: $what: '$text' not in $file:"; cat "$tmp/$file"; fail=1; }
}
st=$src/tests/fuzz/corpus/fuzz_safetensors
png=$src/tests/fuzz/corpus/fuzz_png
expect "valid safetensors" 0 out "safetensors, 11 tensors" -- inspect "$src/tests/fixtures/safetensors/py_written.safetensors"
expect "safetensors json" 0 out '"format":"safetensors"' -- inspect --json "$src/tests/fixtures/safetensors/py_written.safetensors"
expect "gap names tensor and byte" 1 err 'bad_gap.safetensors: tensor "b" begins at data byte 2 (file byte 115)' -- inspect "$st/bad_gap.safetensors"
expect "header past end" 1 err 'bad_length_past_end.safetensors: byte 0: header length 40 runs past the end' -- inspect "$st/bad_length_past_end.safetensors"
expect "bad JSON position" 1 err 'bad_json.safetensors: header:1:20: invalid JSON' -- inspect "$st/bad_json.safetensors"
# A safetensors file cut short: the last tensor's bytes are missing.
head -c 100 "$src/tests/fixtures/safetensors/py_written.safetensors" > "$tmp/cut.safetensors"
expect "truncated safetensors" 1 err "cut.safetensors" -- inspect "$tmp/cut.safetensors"
expect "valid png with text" 0 out "text prompt = a red cube" -- inspect "$png/rgba_text.png"
expect "png json" 0 out '"width":2' -- inspect --json "$png/rgba_text.png"
expect "truncated png" 1 err 'broken_truncated.png: invalid PNG (at byte 33 of 60)' -- inspect "$png/broken_truncated.png"
expect "png crc" 1 err 'broken_idat_crc.png: invalid PNG (at byte 79 of 91): IDAT: CRC error' -- inspect "$png/broken_idat_crc.png"
expect "png too large" 1 err 'broken_huge_ihdr.png: image is 100000x100000 pixels' -- inspect "$png/broken_huge_ihdr.png"
expect "jpeg named png" 0 out 'bird.png: jpeg, 1070x1070, 3 channels' -- inspect "$src/prompts/data/tedbench/originals/bird.png"
expect "truncated jpeg" 1 err 'broken_truncated.jpg: invalid JPEG (at byte 185 of 200)' -- inspect "$src/tests/fuzz/corpus/fuzz_jpeg/broken_truncated.jpg"
expect "missing file" 1 err 'nope.safetensors: cannot open' -- inspect "$tmp/nope.safetensors"
expect "no file" 2 err 'expects at least one FILE' -- inspect
expect "bad option" 2 err 'unknown option "--frob"' -- inspect --frob x
# One bad file among good ones: all are reported, the status is 1.
expect "mixed" 1 out 'rgba_text.png: png' -- inspect "$st/bad_gap.safetensors" "$png/rgba_text.png"
exit $fail
