#!/usr/bin/env python3
"""Adds a large study to a study database for `dpo report`'s benchmark, by
direct SQL (the votes are random; only their number and shape matter).

usage: make_report_bench_db.py DB --from STUDY --name NAME [--votes N] [--seed S]
The new study reuses the arms and the first item's images of STUDY (made by
`dpo study create`). Shape: questions q1, q2, q3; 5 votes asked per item,
ties allowed; one item per prompt; 12 categories (PartiPrompts' count);
200 raters, each item rated by 5 different ones; every assignment answers
all three questions, so N votes are N / 3 assignments of N / 15 items.
"""
import argparse, random, sqlite3

CATEGORIES = ["Abstract", "Animals", "Artifacts", "Arts", "Food & Beverage", "Illustrations", "Indoor Scenes",
              "Outdoor Scenes", "People", "Produce & Plants", "Vehicles", "World Knowledge"]
TEXT = {"q1": "Which image do you prefer given the prompt?", "q2": "Which image is more visually appealing?",
        "q3": "Which image better fits the text description?"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("db")
    ap.add_argument("--from", dest="src", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--votes", type=int, default=1000000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    con = sqlite3.connect(a.db)
    con.execute("PRAGMA synchronous = OFF")
    arm_a, arm_b = con.execute("SELECT arm_a, arm_b FROM studies WHERE name = ?", (a.src,)).fetchone()
    img_a, img_b = con.execute("SELECT image_a, image_b FROM items i JOIN studies s ON s.id = i.study_id "
                               "WHERE s.name = ? AND is_gold = 0 LIMIT 1", (a.src,)).fetchone()
    now = "2026-01-01T00:00:00Z"
    cur = con.execute("INSERT INTO studies(name, arm_a, arm_b, votes_per_item, allow_tie, seed, created_at) "
                      "VALUES (?, ?, ?, 5, 1, ?, ?)", (a.name, arm_a, arm_b, a.seed, now))
    sid = cur.lastrowid
    qids = []
    for pos, key in enumerate(["q1", "q2", "q3"]):
        qids.append(con.execute("INSERT INTO questions(study_id, key, text, position, gold_checked) VALUES (?, ?, ?, ?, ?)",
                                (sid, key, TEXT[key], pos, int(key != "q2"))).lastrowid)
    n_items = a.votes // 15 + (a.votes % 15 > 0)
    first_item = (con.execute("SELECT COALESCE(MAX(id), 0) FROM items").fetchone()[0]) + 1
    items = []
    for i in range(n_items):
        side = "left" if rng.random() < 0.5 else "right"
        items.append((first_item + i, sid, f"bench-{i:07d}", i, "bench", f"b{i:07d}", f"a bench prompt number {i}",
                      CATEGORIES[i % len(CATEGORIES)], 0, 0, img_a, img_b, side, i, 0))
    con.executemany("INSERT INTO items(id, study_id, public_id, position, prompt_set, prompt_id, prompt, category, seed,"
                    " image_index, image_a, image_b, a_side, side_seed, is_gold) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    items)
    raters = []
    for r in range(200):
        raters.append(con.execute("INSERT INTO raters(study_id, source, external_id, created_at) VALUES (?, 'simulated', ?, ?)",
                                  (sid, f"bench-{r}", now)).lastrowid)
    first_asg = (con.execute("SELECT COALESCE(MAX(id), 0) FROM assignments").fetchone()[0]) + 1
    assignments, votes = [], []
    left = a.votes
    for i in range(n_items):
        item_id, side = first_item + i, items[i][12]
        for r in rng.sample(raters, 5):
            if left <= 0:
                break
            aid = first_asg + len(assignments)
            assignments.append((aid, sid, item_id, r, f"bench-{aid}", "Approved", 30.0, side, 0, now))
            for q in qids:
                if left <= 0:
                    break
                u = rng.random()
                choice = "b" if u < 0.55 else "a" if u < 0.9 else "tie"
                shown = "tie" if choice == "tie" else side if choice == "a" else ("right" if side == "left" else "left")
                votes.append((aid, q, shown, choice))
                left -= 1
    con.executemany("INSERT INTO assignments(id, study_id, item_id, rater_id, external_id, status, work_seconds, a_side,"
                    " side_seed, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", assignments)
    con.executemany("INSERT INTO votes(assignment_id, question_id, shown, choice) VALUES (?, ?, ?, ?)", votes)
    con.commit()
    print(f"{a.name}: {n_items} items, {len(assignments)} assignments, {len(votes)} votes")


if __name__ == "__main__":
    main()
