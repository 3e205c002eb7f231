#!/usr/bin/env bash
# dpo pretrain as a user runs it: a short run writes a complete pipeline folder
# (atomically: no DIR.tmp left), which loads back for --measure; usage errors
# exit 2 and name the flag.
set -uo pipefail
: "${DPO:?set DPO to the dpo binary}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
run() {
  local expected=$1
  shift
  "$DPO" "$@" >"$tmp/out" 2>"$tmp/err"
  local status=$?
  [ "$status" -eq "$expected" ] || fail "dpo $* exited $status, expected $expected; stderr: $(tail -3 "$tmp/err")"
}
has() { grep -Eq -- "$2" "$tmp/$1" || fail "$1 of the last command lacks /$2/: $(head -5 "$tmp/$1")"; }

run 0 pretrain --out "$tmp/base" --steps 5 --batch-size 2 --seed 3
has out "^wrote $tmp/base: [0-9]+ parameters, final loss [0-9.]+, [0-9.]+ s$"
has err "pretrain: step 5/5 loss"
for f in model_index.json pretrain.json unet/config.json unet/diffusion_pytorch_model.safetensors \
  text_encoder/config.json text_encoder/model.safetensors tokenizer/vocab.json tokenizer/merges.txt \
  tokenizer/tokenizer_config.json scheduler/scheduler_config.json; do
  [ -s "$tmp/base/$f" ] || fail "missing $f"
done
[ ! -e "$tmp/base.tmp" ] || fail "the temporary folder was left behind"
grep -q '"vae"' "$tmp/base/model_index.json" && fail "a pixel-space pipeline must not name a vae"
grep -q '"seed": 3' "$tmp/base/pretrain.json" || fail "pretrain.json lacks the seed"

# It loads back: the sampler runs it and the judge scores the samples.
run 0 pretrain --measure "$tmp/base" --n 2 --sample-steps 2
has out "^held-out prompts 2, seed 0, guidance 3, 2 DDIM steps: judge alignment [0-9.]+ \(ground truth [0-9.]+\)"

# A second run replaces the folder.
run 0 pretrain --out "$tmp/base" --steps 1 --batch-size 1 --seed 4
grep -q '"seed": 4' "$tmp/base/pretrain.json" || fail "the folder was not replaced"
[ ! -e "$tmp/base.old" ] || fail "the old folder was left behind"

run 2 pretrain --steps 5
has err "--out DIR is required"
run 2 pretrain --out "$tmp/x" --size 30
has err "size 30 must be a multiple of 4"
run 2 pretrain --out "$tmp/x" --lr abc
has err "--lr expects a number"
run 2 pretrain --out "$tmp/x" --bogus 1
has err "unknown option"
run 1 pretrain --measure "$tmp/missing"
has err "model_index.json"

[ "$failures" -eq 0 ] || { echo "$failures failure(s)" >&2; exit 1; }
echo "pretrain_cli: ok"
