#!/usr/bin/env python3
"""Writes an MTurk results CSV for a study, as the requester site would:
the full column list of ANCHORS.md, a BOM, CRLF, quoted fields. Each rater
answers from what the database says about each item's sides, so that tests
know the un-swapped truth.

usage: make_results.py DB STUDY BATCH_CSV OUT_CSV [--workers N] [--prefix P]
         [--prefer a|b|left] [--reject-worker W] [--fast-worker W]
         [--radio] [--gold-wrong-worker W]
Writes one assignment per (item, worker); answers to every question are the
same: the side showing arm A (--prefer a), arm B, or always the left image.
"""
import argparse, csv, sqlite3

COLUMNS = ["HITId", "HITTypeId", "Title", "Description", "Keywords", "Reward", "CreationTime", "MaxAssignments",
           "RequesterAnnotation", "AssignmentDurationInSeconds", "AutoApprovalDelayInSeconds", "Expiration",
           "NumberOfSimilarHITs", "LifetimeInSeconds", "AssignmentId", "WorkerId", "AssignmentStatus", "AcceptTime",
           "SubmitTime", "AutoApprovalTime", "ApprovalTime", "RejectionTime", "RequesterFeedback",
           "WorkTimeInSeconds", "LifetimeApprovalRate", "Last30DaysApprovalRate", "Last7DaysApprovalRate"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("db"); ap.add_argument("study"); ap.add_argument("batch"); ap.add_argument("out")
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--prefix", default="A")
    ap.add_argument("--prefer", default="a")
    ap.add_argument("--reject-worker", default="")
    ap.add_argument("--fast-worker", default="")
    ap.add_argument("--gold-wrong-worker", default="")
    ap.add_argument("--radio", action="store_true")
    a = ap.parse_args()
    con = sqlite3.connect(a.db)
    sid = con.execute("SELECT id FROM studies WHERE name = ?", (a.study,)).fetchone()[0]
    keys = [r[0] for r in con.execute("SELECT key FROM questions WHERE study_id = ? ORDER BY position", (sid,))]
    sides = {r[0]: (r[1], r[2]) for r in con.execute("SELECT public_id, a_side, is_gold FROM items WHERE study_id = ?", (sid,))}
    with open(a.batch, newline="", encoding="utf-8") as f:
        batch = list(csv.DictReader(f))
    input_cols = ["Input." + c for c in batch[0].keys()]
    if a.radio:
        answer_cols = [f"Answer.{k}_{s}.on" for k in keys for s in ("left", "right", "tie")]
    else:
        answer_cols = [f"Answer.{k}" for k in keys]
    header = COLUMNS + input_cols + answer_cols + ["Approve", "Reject"]
    rows = []
    for n, item in enumerate(batch):
        a_side, gold = sides[item["item_id"]]
        b_side = "right" if a_side == "left" else "left"
        for w in range(a.workers):
            worker = f"W{w}"
            prefer = a.prefer
            if gold and worker == a.gold_wrong_worker:
                prefer = "b"
            shown = {"a": a_side, "b": b_side, "left": "left"}[prefer]
            status = "Rejected" if worker == a.reject_worker else "Submitted"
            seconds = "3" if worker == a.fast_worker else "45"
            r = {c: "" for c in header}
            r.update({"HITId": f"HIT{n}", "Title": "Which image, \"left\" or right?", "Reward": "$0.10",
                      "AssignmentId": f"{a.prefix}{n}x{w}", "WorkerId": worker, "AssignmentStatus": status,
                      "WorkTimeInSeconds": seconds, "Description": "Compare two images,\nthen answer"})
            for c, v in item.items():
                r["Input." + c] = v
            for k in keys:
                if a.radio:
                    for s in ("left", "right", "tie"):
                        r[f"Answer.{k}_{s}.on"] = "true" if s == shown else "false"
                else:
                    r[f"Answer.{k}"] = shown
            rows.append(r)
    with open(a.out, "w", newline="", encoding="utf-8-sig") as f:
        w = csv.DictWriter(f, fieldnames=header, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        w.writeheader()
        w.writerows(rows)


if __name__ == "__main__":
    main()
