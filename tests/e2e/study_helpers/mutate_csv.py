#!/usr/bin/env python3
"""Makes a broken copy of a results CSV for refusal tests.

usage: mutate_csv.py IN OUT set ROW COLUMN VALUE    (ROW as a spreadsheet counts: header = 1)
       mutate_csv.py IN OUT drop COLUMN
       mutate_csv.py IN OUT copy ROW COLUMN VALUE   (appends a copy of ROW with COLUMN changed)
       mutate_csv.py IN OUT rows N                  (keeps the header and the first N rows)
"""
import csv, sys

src, dst, op = sys.argv[1], sys.argv[2], sys.argv[3]
with open(src, newline="", encoding="utf-8-sig") as f:
    rows = list(csv.reader(f))
header = rows[0]
if op == "set":
    row, col, value = int(sys.argv[4]), sys.argv[5], sys.argv[6]
    rows[row - 1][header.index(col)] = value
elif op == "drop":
    i = header.index(sys.argv[4])
    rows = [r[:i] + r[i + 1:] for r in rows]
elif op == "copy":
    row, col, value = int(sys.argv[4]), sys.argv[5], sys.argv[6]
    extra = list(rows[row - 1])
    extra[header.index(col)] = value
    rows.append(extra)
elif op == "rows":
    rows = rows[:1 + int(sys.argv[4])]
with open(dst, "w", newline="", encoding="utf-8") as f:
    csv.writer(f, quoting=csv.QUOTE_MINIMAL, lineterminator="\n").writerows(rows)
