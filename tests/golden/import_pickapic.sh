#!/usr/bin/env bash
# scripts/import_pickapic.py on a small Pick-a-Pic-like parquet file written
# here with pyarrow: strict, swapped and tie pairs, a non-dreamlike pair, and
# invalid rows; then the trainer's own loader (pairs_tool) reads the result
# and decodes every image. Needs .venv with pyarrow (scripts/setup.sh): without
# it this test fails rather than skipping.
# env: PAIRS_TOOL (tests/golden/pairs_tool.c), DPO_SOURCE_DIR.
set -euo pipefail
src=${DPO_SOURCE_DIR:?DPO_SOURCE_DIR not set}
tool=${PAIRS_TOOL:?PAIRS_TOOL not set}
python=$src/.venv/bin/python
if [ ! -x "$python" ] || ! "$python" -c 'import pyarrow' 2>/dev/null; then
  echo "FAIL: $python with pyarrow not found: run scripts/setup.sh --no-build to create .venv" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$python" - "$work" "$src/tests/fuzz/corpus/fuzz_jpeg/rgb16_baseline.jpg" <<'PY'
import struct, sys, zlib
import pyarrow as pa, pyarrow.parquet as pq
work, jpeg_path = sys.argv[1], sys.argv[2]
jpeg = open(jpeg_path, "rb").read()
def png(gray):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    raw = b"".join(b"\x00" + bytes([gray] * 4) for _ in range(4))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
rows = [  # jpg_0, jpg_1, label_0, caption, model_0, model_1
    (jpeg, png(10), 1.0, "a red cube", "dreamlike-photoreal-2.0", "dreamlike-photoreal-2.0"),
    (png(20), jpeg, 0.0, "caf\u00e9 at night", "dreamlike-2", "dreamlike-photoreal-2.0"),
    (png(30), png(40), 0.5, "a tie", "dreamlike-2", "dreamlike-2"),
    (png(50), png(60), 1.0, "not dreamlike", "sdxl-beta", "dreamlike-2"),
    (png(70), png(80), 0.3, "bad label", "dreamlike-2", "dreamlike-2"),
    (b"", png(90), 1.0, "empty image", "dreamlike-2", "dreamlike-2"),
]
cols = list(zip(*rows))
table = pa.table({"jpg_0": pa.array(cols[0], pa.binary()), "jpg_1": pa.array(cols[1], pa.binary()),
                  "label_0": pa.array(cols[2], pa.float64()), "caption": cols[3],
                  "model_0": cols[4], "model_1": cols[5], "ranking_id": list(range(len(rows)))})
pq.write_table(table, f"{work}/shard-00000.parquet", row_group_size=2)
pq.write_table(table.drop_columns(["label_0"]), f"{work}/no-label.parquet")
PY
imp=("$python" "$src/scripts/import_pickapic.py")

# Invalid rows stop the import, naming shard, row and column; no output folder.
if "${imp[@]}" --out "$work/out0" "$work/shard-00000.parquet" 2>"$work/err0"; then fail "invalid rows accepted"; fi
grep -q "shard-00000.parquet: row 4: label_0: 0.3" "$work/err0" || { cat "$work/err0"; fail "message"; }
[ ! -e "$work/out0" ] || fail "out0 left behind"
ls "$work" | grep -q tmp && fail "temporary folder left behind"
# A missing column is named.
if "${imp[@]}" --out "$work/out1" "$work/no-label.parquet" 2>"$work/err1"; then fail "missing column accepted"; fi
grep -q "missing column(s) label_0" "$work/err1" || { cat "$work/err1"; fail "column message"; }

# --skip-invalid: four pairs written (one tie), two listed as skipped.
"${imp[@]}" --skip-invalid --out "$work/out" "$work/shard-00000.parquet" 2>"$work/log"
grep -q "4 pairs (1 ties) from 6 rows" "$work/log" || { cat "$work/log"; fail "summary"; }
[ "$(wc -l < "$work/out/pairs.jsonl")" -eq 4 ] || fail "line count"
"$python" - "$work/out" <<'PY' || fail "report or bytes"
import json, sys
out = sys.argv[1]
rep = json.load(open(f"{out}/import_report.json"))
assert rep["counts"] == {"rows": 6, "written": 4, "ties_written": 1, "filtered_not_dreamlike": 0,
                         "invalid_skipped": 2, "beyond_limit": 0}, rep["counts"]
assert [s["row"] for s in rep["skipped_rows"]] == ["shard-00000.parquet:4", "shard-00000.parquet:5"]
assert "jpg_0: empty image" in rep["skipped_rows"][1]["reason"]
lines = [json.loads(l) for l in open(f"{out}/pairs.jsonl")]
assert lines[0]["image_0"].endswith(".jpg") and lines[0]["image_1"].endswith(".png")
assert lines[1]["caption"] == "caf\u00e9 at night" and lines[1]["label_0"] == 0 and lines[2]["label_0"] == 0.5
assert all(l["source"] == "pickapic_v2" for l in lines)
import pyarrow.parquet as pq
t = pq.read_table(f"{out}/../shard-00000.parquet").to_pylist()
for l in lines:
    row = t[int(l["origin"].split(":")[1])]
    assert open(f"{out}/{l['image_0']}", "rb").read() == row["jpg_0"]
    assert open(f"{out}/{l['image_1']}", "rb").read() == row["jpg_1"]
PY
# The trainer's loader: ties skipped by default, kept with half; winner first.
[ "$("$tool" "$work/out/pairs.jsonl" skip)" = "pairs=3 ties=0 swapped=1 ties_skipped=1 filtered=0 first_caption=a red cube" ] \
  || fail "loader (skip): $("$tool" "$work/out/pairs.jsonl" skip)"
[ "$("$tool" "$work/out/pairs.jsonl" half dream)" = "pairs=3 ties=1 swapped=1 ties_skipped=0 filtered=1 first_caption=a red cube" ] \
  || fail "loader (half, dream): $("$tool" "$work/out/pairs.jsonl" half dream)"

# --dreamlike-only drops the sdxl pair at import, counted.
"${imp[@]}" --skip-invalid --dreamlike-only --out "$work/dream" "$work/shard-00000.parquet" 2>"$work/log2"
grep -q "3 pairs (1 ties) from 6 rows into $work/dream; 1 not dreamlike" "$work/log2" || { cat "$work/log2"; fail "dreamlike summary"; }
# An existing output folder is refused.
if "${imp[@]}" --out "$work/dream" "$work/shard-00000.parquet" 2>/dev/null; then fail "overwrote an existing folder"; fi
echo "import_pickapic: ok"
