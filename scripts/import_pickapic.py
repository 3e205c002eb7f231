#!/usr/bin/env python3
"""Converts Pick-a-Pic v2 parquet shards into dpo's pairs format.

usage: scripts/import_pickapic.py --out DIR [--dreamlike-only] [--skip-invalid]
                                  [--limit N] SHARD.parquet [SHARD.parquet ...]

Reads the columns jpg_0, jpg_1 (image bytes), label_0 (0, 0.5 or 1: the
preference for image 0), caption, and model_0 / model_1 (the generators), and
writes
  DIR/pairs.jsonl        one line per kept pair: caption, image_0, image_1,
                         label_0, source "pickapic_v2", model_0, model_1,
                         origin ("<shard>:<row>")
  DIR/images/<shard>/<row>_0.jpg, <row>_1.jpg  the image bytes as stored
                         (extension from the magic bytes: .jpg or .png)
  DIR/import_report.json counts by outcome and every row not written, with why

Ties (label_0 = 0.5) are kept in the file (the trainer skips them unless told
otherwise); --dreamlike-only keeps pairs whose two generators both contain
"dream", as the official --dreamlike_pairs_only does.

Nothing is dropped silently: every row is either written, filtered by an
option (counted), or invalid (bad label, missing caption, empty or unknown
image bytes). An invalid row stops the import with its shard, row and column
(exit 1) unless --skip-invalid, which skips it and lists it in the report.

Atomic: everything is built in DIR.tmp-<pid>, made durable (one sync(2)
rather than an fsync per image, which for a million pairs would take long),
and the folder is renamed to DIR at the end; DIR must not exist. A failed or
interrupted import leaves no DIR (at most the temporary folder).

Needs pyarrow (pinned in tests/requirements.txt; scripts/setup.sh installs it
into .venv).
"""
import argparse
import json
import os
import shutil
import sys

import pyarrow.parquet as pq

REQUIRED = ["jpg_0", "jpg_1", "label_0", "caption"]
OPTIONAL = ["model_0", "model_1"]
SOURCE = "pickapic_v2"
DREAMLIKE = "dream"


class InvalidRow(Exception):
    pass


def image_extension(data, column):
    if not isinstance(data, (bytes, bytearray)) or len(data) == 0:
        raise InvalidRow(f"{column}: empty image")
    if data[:3] == b"\xff\xd8\xff":
        return ".jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return ".png"
    raise InvalidRow(f"{column}: neither JPEG nor PNG (first bytes {bytes(data[:8]).hex()})")


def check_label(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value not in (0, 0.5, 1):
        raise InvalidRow(f"label_0: {value!r}, expected 0, 0.5 or 1")
    return 0.5 if value == 0.5 else int(value)


def check_text(value, column, required):
    if value is None:
        if required:
            raise InvalidRow(f"{column}: missing")
        return None
    if not isinstance(value, str):
        raise InvalidRow(f"{column}: expected a string, got {type(value).__name__}")
    if "\x00" in value:
        raise InvalidRow(f"{column}: contains a NUL character")
    return value


def write_file(path, data):
    with open(path, "wb") as f:
        f.write(data)


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def shard_columns(pf, path, need_models):
    names = set(pf.schema_arrow.names)
    missing = [c for c in REQUIRED if c not in names]
    if need_models:
        missing += [c for c in OPTIONAL if c not in names]
    if missing:
        raise SystemExit(f"import_pickapic: {path}: missing column(s) {', '.join(missing)} "
                         f"(has {', '.join(sorted(names))})")
    return REQUIRED + [c for c in OPTIONAL if c in names]


def convert_row(row, shard_stem, index, tmp):
    label = check_label(row["label_0"])
    caption = check_text(row["caption"], "caption", True)
    model_0 = check_text(row.get("model_0"), "model_0", False)
    model_1 = check_text(row.get("model_1"), "model_1", False)
    ext0 = image_extension(row["jpg_0"], "jpg_0")
    ext1 = image_extension(row["jpg_1"], "jpg_1")
    rel_dir = os.path.join("images", shard_stem)
    os.makedirs(os.path.join(tmp, rel_dir), exist_ok=True)
    rel0 = os.path.join(rel_dir, f"{index:07d}_0{ext0}")
    rel1 = os.path.join(rel_dir, f"{index:07d}_1{ext1}")
    write_file(os.path.join(tmp, rel0), bytes(row["jpg_0"]))
    write_file(os.path.join(tmp, rel1), bytes(row["jpg_1"]))
    record = {"caption": caption, "image_0": rel0, "image_1": rel1, "label_0": label, "source": SOURCE}
    if model_0 is not None:
        record["model_0"] = model_0
    if model_1 is not None:
        record["model_1"] = model_1
    return record


def is_dreamlike(row):
    m0, m1 = row.get("model_0"), row.get("model_1")
    return isinstance(m0, str) and isinstance(m1, str) and DREAMLIKE in m0 and DREAMLIKE in m1


def import_shards(args, tmp, pairs_file):
    counts = {"rows": 0, "written": 0, "ties_written": 0, "filtered_not_dreamlike": 0, "invalid_skipped": 0,
              "beyond_limit": 0}
    skipped = []
    for path in args.shards:
        pf = pq.ParquetFile(path)
        columns = shard_columns(pf, path, args.dreamlike_only)
        stem = os.path.splitext(os.path.basename(path))[0]
        index = 0
        for batch in pf.iter_batches(batch_size=64, columns=columns):
            for row in batch.to_pylist():
                where = f"{os.path.basename(path)}:{index}"
                counts["rows"] += 1
                if args.limit is not None and counts["written"] >= args.limit:
                    counts["beyond_limit"] += 1
                elif args.dreamlike_only and not is_dreamlike(row):
                    counts["filtered_not_dreamlike"] += 1
                else:
                    try:
                        record = convert_row(row, stem, index, tmp)
                    except InvalidRow as e:
                        if not args.skip_invalid:
                            raise SystemExit(f"import_pickapic: {path}: row {index}: {e} "
                                             f"(--skip-invalid skips such rows and lists them)")
                        counts["invalid_skipped"] += 1
                        skipped.append({"row": where, "reason": str(e)})
                    else:
                        record["origin"] = where
                        pairs_file.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
                        counts["written"] += 1
                        counts["ties_written"] += record["label_0"] == 0.5
                index += 1
    return counts, skipped


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("shards", nargs="+", help="Pick-a-Pic v2 parquet files")
    ap.add_argument("--out", required=True, help="output folder (must not exist)")
    ap.add_argument("--dreamlike-only", action="store_true", help="keep pairs whose generators both contain 'dream'")
    ap.add_argument("--skip-invalid", action="store_true", help="skip invalid rows (listed in the report)")
    ap.add_argument("--limit", type=int, help="stop writing after this many pairs (the rest are counted)")
    args = ap.parse_args()
    out = args.out.rstrip("/") or "/"
    if os.path.lexists(out):
        raise SystemExit(f"import_pickapic: {out} exists; choose a new folder")
    for path in args.shards:
        if not os.path.isfile(path):
            raise SystemExit(f"import_pickapic: {path}: not found")
    tmp = f"{out}.tmp-{os.getpid()}"
    os.makedirs(tmp)
    try:
        with open(os.path.join(tmp, "pairs.jsonl"), "w", encoding="utf-8") as pairs_file:
            counts, skipped = import_shards(args, tmp, pairs_file)
        if counts["written"] == 0:
            raise SystemExit(f"import_pickapic: no pairs written (counts: {json.dumps(counts)})")
        report = {"shards": args.shards, "dreamlike_only": args.dreamlike_only, "counts": counts,
                  "skipped_rows": skipped}
        write_file(os.path.join(tmp, "import_report.json"),
                   (json.dumps(report, indent=2, sort_keys=True) + "\n").encode("utf-8"))
        # Every file and folder durable before the folder gets its final name.
        os.sync()
        os.rename(tmp, out)
        fsync_dir(os.path.dirname(os.path.abspath(out)))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"import_pickapic: {counts['written']} pairs ({counts['ties_written']} ties) from {counts['rows']} rows "
          f"into {out}; {counts['filtered_not_dreamlike']} not dreamlike (--dreamlike-only), "
          f"{counts['invalid_skipped']} invalid skipped, {counts['beyond_limit']} beyond --limit", file=sys.stderr)


if __name__ == "__main__":
    main()
