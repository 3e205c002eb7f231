#!/usr/bin/env python3
"""Compares the load driver's ack log with the study database.

usage: verify.py DB ACKS [--allow-unacked]
Prints one JSON line: acked, in_db, lost (acknowledged but not in the
database), duplicated (the same rater and item twice, in the log or in the
database), unacked_in_db (committed but never acknowledged: votes in flight
when the server was killed), bad_votes (answers that differ from what was
sent). Exits 1 when anything was lost, duplicated or wrong, and when
unacked votes exist without --allow-unacked. Standard library only.
"""
import collections, hashlib, json, sqlite3, sys

SENT = {"q1": "left", "q2": "right", "q3": "left", "edit": "right"}


def main():
    db, acks_path = sys.argv[1], sys.argv[2]
    allow_unacked = "--allow-unacked" in sys.argv[3:]
    acks = []
    with open(acks_path) as f:
        for line in f:
            token, item = line.rstrip("\n").split("\t")
            acks.append((hashlib.sha256(token.encode()).hexdigest(), item))
    con = sqlite3.connect(db)
    rows = con.execute("SELECT r.token_sha256, i.public_id, a.id FROM assignments a JOIN raters r ON r.id = a.rater_id "
                       "JOIN items i ON i.id = a.item_id WHERE r.source = 'local'").fetchall()
    in_db = collections.Counter((t, i) for t, i, _ in rows)
    acked = collections.Counter(acks)
    n_questions = con.execute("SELECT count(*) FROM questions").fetchone()[0]
    bad_votes = con.execute("SELECT count(*) FROM votes v JOIN questions q ON q.id = v.question_id "
                            "WHERE v.shown <> CASE q.key " + " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in SENT.items())
                            + " END").fetchone()[0]
    short = con.execute("SELECT count(*) FROM assignments a WHERE (SELECT count(*) FROM votes v "
                        "WHERE v.assignment_id = a.id) <> ?", (n_questions,)).fetchone()[0]
    result = {
        "acked": len(acks),
        "in_db": len(rows),
        "lost": sum(1 for k in acked if k not in in_db),
        "duplicated": sum(n - 1 for n in acked.values() if n > 1) + sum(n - 1 for n in in_db.values() if n > 1),
        "unacked_in_db": sum(1 for k in in_db if k not in acked),
        "bad_votes": bad_votes + short,
    }
    print(json.dumps(result))
    ok = result["lost"] == 0 and result["duplicated"] == 0 and result["bad_votes"] == 0
    ok = ok and (allow_unacked or result["unacked_in_db"] == 0)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
