#!/usr/bin/env bash
# dpo generate end to end on the tiny fixture pipelines: manifests that
# `dpo study create` accepts, identical images from identical weights, shards
# that split the work without overlap, resume after a kill and a torn line,
# SDEdit on TEd-Bench with recorded sources, world prompt splits, exit codes.
set -u
dpo=${DPO:?DPO must point at the dpo binary}
src=${DPO_SOURCE_DIR:?}
sd=$src/tests/fixtures/pipelines/tiny_sd
pixel=$src/tests/fixtures/pipelines/tiny_pixel
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
equal() { [ "$2" = "$3" ] || { echo "FAIL: $1: got '$2', expected '$3'"; fail=1; }; }

# Every line's image exists with its hash, each (prompt_id, image_index) once;
# prints the number of lines.
check_manifest() {
  python3 - "$1" <<'EOF'
import hashlib, json, os, sys
run = sys.argv[1]
seen = set()
n = 0
with open(os.path.join(run, "manifest.jsonl"), "rb") as f:
    data = f.read()
assert data.endswith(b"\n"), "torn last line"
for line in data.decode().splitlines():
    e = json.loads(line)
    assert sorted(e) == sorted(["prompt_set", "prompt_id", "prompt", "category", "seed", "image_index",
                                "file", "sha256", "model", "settings"]), sorted(e)
    key = (e["prompt_id"], e["image_index"])
    assert key not in seen, f"duplicate {key}"
    seen.add(key)
    with open(os.path.join(run, e["file"]), "rb") as img:
        assert hashlib.sha256(img.read()).hexdigest() == e["sha256"], e["file"]
    n += 1
print(n)
EOF
}
# The pixels' hash of each image (the PNG's IDAT data, inflated): images of
# two models differ in their text chunks (the model) even when equal.
pixels() {
  python3 - "$1" <<'EOF'
import hashlib, json, struct, sys, zlib
for line in sorted(open(sys.argv[1] + "/manifest.jsonl")):
    e = json.loads(line)
    data = open(sys.argv[1] + "/" + e["file"], "rb").read()
    pos, idat = 8, b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + n]
        pos += 12 + n
    print(e["file"], hashlib.sha256(zlib.decompress(idat)).hexdigest())
EOF
}
hashes() { python3 -c 'import json,sys; [print(json.loads(l)["file"], json.loads(l)["sha256"]) for l in open(sys.argv[1]+"/manifest.jsonl")]' "$1" | sort; }

printf 'a red circle\na blue square\ntwo green cats\na yellow star\nthe sea\n' > p.txt
# --backend cpu: the byte-identical images whatever the batch size checked
# below are the CPU backend's guarantee (on a GPU, auto would pick CUDA).
common=(--prompts p.txt --steps 3 --guidance 4 --images-per-prompt 2 --seed 5 --threads 1 --backend cpu)

# Two models, same prompts and seed: a study pairs them.
"$dpo" -q generate --model "$sd" --out runA "${common[@]}" --batch-size 3 || { echo "FAIL: generate A"; exit 1; }
"$dpo" -q generate --model "$pixel" --out runB "${common[@]}" || { echo "FAIL: generate B"; exit 1; }
equal "runA lines" "$(check_manifest runA)" 10
equal "runB lines" "$(check_manifest runB)" 10
"$dpo" -q study create --db s.db --name ab --a runA --b runB --votes 1 || { echo "FAIL: study create"; fail=1; }

# Identical weights (a copy of the folder) give identical images, whatever
# the batch size.
cp -r "$sd" copy
"$dpo" -q generate --model copy --out runC "${common[@]}" --batch-size 1 || fail=1
equal "same weights, same images" "$(pixels runC)" "$(pixels runA)"
[ "$(pixels runB)" != "$(pixels runA)" ] || { echo "FAIL: different models gave the same pixels"; fail=1; }

# Shards split the prompts without overlap and together make the full run.
"$dpo" -q generate --model "$sd" --out shards "${common[@]}" --batch-size 3 --shard 0/2 || fail=1
equal "shard 0 lines" "$(check_manifest shards)" 6
"$dpo" -q generate --model "$sd" --out shards "${common[@]}" --batch-size 3 --shard 1/2 || fail=1
equal "both shards" "$(check_manifest shards)" 10
equal "shards = whole run" "$(hashes shards)" "$(hashes runA)"

# Shards at the same time into one folder (appends are locked).
"$dpo" -q generate --model "$sd" --out together "${common[@]}" --shard 0/3 & p0=$!
"$dpo" -q generate --model "$sd" --out together "${common[@]}" --shard 1/3 & p1=$!
"$dpo" -q generate --model "$sd" --out together "${common[@]}" --shard 2/3 || fail=1
wait $p0 || fail=1
wait $p1 || fail=1
equal "concurrent shards" "$(hashes together)" "$(hashes runA)"

# Worker processes (--jobs): the same images as one process; not with --shard.
"$dpo" -q generate --model "$sd" --out jobs "${common[@]}" --batch-size 3 --jobs 2 || fail=1
equal "jobs lines" "$(check_manifest jobs)" 10
equal "jobs = whole run" "$(hashes jobs)" "$(hashes runA)"
"$dpo" -q generate --model "$sd" --out jobs2 "${common[@]}" --jobs 2 --shard 0/2 2>/dev/null
equal "--jobs with --shard" "$?" 2

# Every sampler runs, with a negative prompt.
for s in ddim pndm euler dpmpp-2m; do
  "$dpo" -q generate --model "$sd" --prompts p.txt --limit 1 --steps 4 --sampler $s --negative-prompt ugly \
    --out "sampler-$s" --threads 1 || { echo "FAIL: sampler $s"; fail=1; }
done
grep -q '"sampler":"DPMSolverMultistepScheduler"' sampler-dpmpp-2m/manifest.jsonl || { echo "FAIL: sampler name"; fail=1; }

# Resume: kill a run mid-way, tear the last line, delete one finished image.
printf 'p%d\n' $(seq 1 40) > many.txt
"$dpo" -q generate --model "$sd" --prompts many.txt --out killed --steps 3 --threads 1 &
pid=$!
for _ in $(seq 1 200); do
  [ -f killed/manifest.jsonl ] && [ "$(wc -l < killed/manifest.jsonl)" -ge 3 ] && break
  sleep 0.05
done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
before=$(wc -l < killed/manifest.jsonl)
[ "$before" -ge 3 ] && [ "$before" -lt 40 ] || { echo "FAIL: kill came at $before lines"; fail=1; }
first=$(head -1 killed/manifest.jsonl | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["file"])')
rm "killed/$first"
printf '{"prompt_set":"many","prompt_id":"ma' >> killed/manifest.jsonl
"$dpo" generate --model "$sd" --prompts many.txt --out killed --steps 3 --threads 1 2> resume.log || { cat resume.log; fail=1; }
grep -q "removed 2 torn, invalid or duplicate" resume.log || { echo "FAIL: resume warning"; cat resume.log; fail=1; }
grep -q "already done" resume.log || fail=1
equal "resumed lines" "$(check_manifest killed)" 40
"$dpo" -q generate --model "$sd" --prompts many.txt --out whole --steps 3 --threads 1 || fail=1
equal "resumed = uninterrupted" "$(hashes killed)" "$(hashes whole)"

# SDEdit on TEd-Bench: sources copied and recorded; an edit study accepts it.
for m in "$sd" copy; do
  "$dpo" -q generate --model "$m" --prompts tedbench --limit 3 --steps 4 --strength 0.6 --out "edit-$(basename "$m")" \
    --threads 1 || { echo "FAIL: tedbench"; fail=1; }
done
equal "edit lines" "$(check_manifest edit-tiny_sd)" 3
python3 - edit-tiny_sd <<'EOF' || fail=1
import json, os, sys
for line in open(sys.argv[1] + "/manifest.jsonl"):
    e = json.loads(line)
    s = e["settings"]
    assert s["mode"] == "sdedit" and abs(s["strength"] - 0.6) < 1e-6, s
    assert os.path.isfile(os.path.join(sys.argv[1], s["source_image"])), s
EOF
"$dpo" -q study create --db e.db --name edit --a edit-tiny_sd --b edit-copy --questions edit --votes 1 ||
  { echo "FAIL: edit study"; fail=1; }

# --precision bf16: the UNet and the VAE's decoder in bf16 mixed precision
# (on the CPU, the reference emulation): images made, the precision
# recorded in their settings, and not the float32 images' bytes. SDEdit in
# bf16 encodes its sources with a float32 host copy of the VAE (a bf16 VAE
# only decodes).
"$dpo" -q generate --model "$sd" --out runbf "${common[@]}" --batch-size 3 --precision bf16 || fail=1
equal "runbf lines" "$(check_manifest runbf)" 10
grep -q '"precision":"bf16"' runbf/manifest.jsonl || { echo "FAIL: bf16 settings"; fail=1; }
if [ "$(hashes runbf)" = "$(hashes runA)" ]; then echo "FAIL: bf16 images equal the float32 ones"; fail=1; fi
grep -q '"precision"' runA/manifest.jsonl && { echo "FAIL: float32 settings name a precision"; fail=1; }
"$dpo" -q generate --model "$sd" --prompts tedbench --limit 2 --steps 4 --strength 0.6 --out edit-bf16 \
  --threads 1 --backend cpu --precision bf16 || { echo "FAIL: tedbench bf16"; fail=1; }
equal "edit bf16 lines" "$(check_manifest edit-bf16)" 2
grep -q '"precision":"bf16"' edit-bf16/manifest.jsonl || { echo "FAIL: edit bf16 settings"; fail=1; }

# Shapes-world prompts.
"$dpo" -q generate --model "$pixel" --prompts world:heldout:3 --steps 2 --out world || fail=1
equal "world lines" "$(check_manifest world)" 3
grep -q '"prompt_set":"world-heldout"' world/manifest.jsonl || { echo "FAIL: world set"; fail=1; }

# Exit codes.
usage() { "$dpo" generate "$@" 2>/dev/null; equal "usage: $*" "$?" "2"; }
usage --prompts p.txt --out x
usage --model "$sd" --prompts p.txt --out x --shard 2/2
usage --model "$sd" --prompts p.txt --out x --sampler nope
usage --model "$sd" --prompts p.txt --out x --guidance -1
usage --model "$sd" --prompts p.txt --out x --strength 0
usage --model "$sd" --prompts p.txt --out x --bogus 1
usage --model "$sd" --prompts p.txt:nomatch --out x
usage --model "$sd" --prompts world:train:0 --out x
usage --model "$sd" "${common[@]}" --steps 4 --out runA
printf 'other\n' > q.txt
usage --model "$sd" --prompts q.txt --steps 3 --guidance 4 --images-per-prompt 2 --seed 5 --threads 1 --out runA
"$dpo" generate --model nowhere --prompts p.txt --out x 2>/dev/null
equal "missing model" "$?" "1"
"$dpo" generate --model "$sd" --prompts missing.txt --out x 2>/dev/null
equal "missing prompts" "$?" "1"
exit $fail
