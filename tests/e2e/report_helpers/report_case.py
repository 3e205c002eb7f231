#!/usr/bin/env python3
"""Known votes for the `dpo report` end-to-end test, and the checks of
report.json against values worked out by hand (and, for the interval and
agreement formulas, against independent re-implementations below).
Standard library only.

usage: report_case.py votes DB       # after `dpo study create` of s1, s2, empty, ties, onerater
       report_case.py check DIR DB    # DIR/report.json of s1 and the edge studies
       report_case.py check-bt DIR      # DIR/report.json of s1 + s2 (Bradley-Terry)
       report_case.py check-single DIR  # DIR/report.json of s1 alone
"""
import csv, json, math, sqlite3, sys

# s1 (A = base, B = tuned; 3 votes asked; ties allowed): q1 votes of raters
# r1, r2, r3 per item ('-' = no vote). Items are p000..p003 x seeds 0, 1.
S1_Q1 = {
    ("p000", 0): "bbb",  # B
    ("p000", 1): "bba",  # B
    ("p001", 0): "aab",  # A
    ("p001", 1): "bt-",  # tie (1 B of 2 votes is not more than half); short of votes
    ("p002", 0): "bbt",  # B
    ("p002", 1): "---",  # no votes: reported, short
    ("p003", 0): "aaa",  # A
    ("p003", 1): "abb",  # B
}
CATEGORY = {"p000": "animals", "p001": "animals", "p002": "food", "p003": "food"}
SOLO = ("p003", 1)  # the only item of category "solo"
CHOICE = {"a": "a", "b": "b", "t": "tie"}


def now():
    return "2026-01-01T00:00:00Z"


def study_id(con, name):
    return con.execute("SELECT id FROM studies WHERE name = ?", (name,)).fetchone()[0]


def items_of(con, sid):
    rows = con.execute("SELECT id, prompt_id, seed, a_side FROM items WHERE study_id = ? AND is_gold = 0", (sid,))
    real = {(r[1], r[2]): (r[0], r[3]) for r in rows}
    gold = list(con.execute("SELECT id, a_side FROM items WHERE study_id = ? AND is_gold = 1", (sid,)))
    return real, gold


def rater(con, sid, name):
    con.execute("INSERT OR IGNORE INTO raters(study_id, source, external_id, created_at) VALUES (?, 'simulated', ?, ?)",
                (sid, name, now()))
    return con.execute("SELECT id FROM raters WHERE study_id = ? AND external_id = ?", (sid, name)).fetchone()[0]


def vote(con, sid, item_id, a_side, rater_id, answers, excluded=None, extra=0):
    """answers: {question key: 'a' | 'b' | 'tie'}; stores what was clicked too."""
    cur = con.execute(
        "INSERT INTO assignments(study_id, item_id, rater_id, external_id, status, work_seconds, a_side, side_seed,"
        " excluded, extra, created_at) VALUES (?, ?, ?, ?, 'Approved', 30, ?, 0, ?, ?, ?)",
        (sid, item_id, rater_id, f"asg-{item_id}-{rater_id}", a_side, excluded, extra, now()))
    for key, choice in answers.items():
        qid = con.execute("SELECT id FROM questions WHERE study_id = ? AND key = ?", (sid, key)).fetchone()[0]
        if choice == "tie":
            shown = "tie"
        else:
            shown = a_side if choice == "a" else ("right" if a_side == "left" else "left")
        con.execute("INSERT INTO votes(assignment_id, question_id, shown, choice) VALUES (?, ?, ?, ?)",
                    (cur.lastrowid, qid, shown, choice))


def add_votes(db):
    con = sqlite3.connect(db)
    # s1: categories, the votes above (q3: every cast vote is B), one rejected
    # and one extra assignment that must not count, and gold answers.
    sid = study_id(con, "s1")
    items, gold = items_of(con, sid)
    for (pid, seed), (iid, _) in items.items():
        cat = "solo" if (pid, seed) == SOLO else CATEGORY[pid]
        con.execute("UPDATE items SET category = ? WHERE id = ?", (cat, iid))
    raters = [rater(con, sid, f"r{k + 1}") for k in range(3)]
    for key, pattern in S1_Q1.items():
        iid, side = items[key]
        for k, c in enumerate(pattern):
            if c != "-":
                vote(con, sid, iid, side, raters[k], {"q1": CHOICE[c], "q3": "b"})
    r4 = rater(con, sid, "r4")
    iid, side = items[("p000", 0)]
    vote(con, sid, iid, side, r4, {"q1": "a", "q3": "a"}, excluded="rejected")
    iid, side = items[("p000", 1)]
    vote(con, sid, iid, side, r4, {"q1": "a", "q3": "a"}, extra=1)
    for gid, side in gold:
        expected = con.execute("SELECT expected FROM gold_items WHERE item_id = ?", (gid,)).fetchone()[0]
        wrong = "a" if expected == "b" else "b"
        vote(con, sid, gid, side, raters[0], {"q1": expected, "q3": expected})
        vote(con, sid, gid, side, raters[1], {"q1": wrong, "q3": expected})

    # s2 (arms B vs C): C beats B on 5 of 8 items, B wins 2, one tie.
    sid = study_id(con, "s2")
    items, _ = items_of(con, sid)
    r = [rater(con, sid, f"r{k + 1}") for k in range(3)]
    pattern = ["bbb", "bba", "bbb", "bab", "bbb", "aaa", "aab", "tta"]
    for (key, (iid, side)), p in zip(sorted(items.items()), pattern):
        for k, c in enumerate(p):
            vote(con, sid, iid, side, r[k], {"q1": CHOICE[c]})

    # ties: every vote a tie.
    sid = study_id(con, "ties")
    items, _ = items_of(con, sid)
    r = [rater(con, sid, f"r{k + 1}") for k in range(3)]
    for iid, side in items.values():
        for k in range(3):
            vote(con, sid, iid, side, r[k], {"q1": "tie"})

    # onerater: one rater, one vote per item, B on every item but one.
    sid = study_id(con, "onerater")
    items, _ = items_of(con, sid)
    r1 = rater(con, sid, "solo-rater")
    for n, (key, (iid, side)) in enumerate(sorted(items.items())):
        vote(con, sid, iid, side, r1, {"q1": "a" if n == 0 else "b"})

    # zero: a study without items (as a study whose runs were emptied would be).
    row = con.execute("SELECT arm_a, arm_b FROM studies WHERE name = 's1'").fetchone()
    cur = con.execute("INSERT INTO studies(name, arm_a, arm_b, votes_per_item, allow_tie, seed, created_at)"
                      " VALUES ('zero', ?, ?, 5, 0, 0, ?)", (row[0], row[1], now()))
    con.execute("INSERT INTO questions(study_id, key, text, position, gold_checked) VALUES (?, 'q1', 'Which image do you"
                " prefer given the prompt?', 0, 1)", (cur.lastrowid,))
    con.commit()


# ---------------------------------------------------------------- references

def wilson(x, n, z=1.959963984540054):
    q = x / n
    centre = (q + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(q * (1 - q) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [centre - half, centre + half]


def binom_cdf(k, n, p):
    return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(0, k + 1))


def clopper_pearson(x, n, alpha=0.05):
    """By bisection on the binomial tails (integer x): the p where the tail is alpha/2."""
    def solve(f):
        lo, hi = 0.0, 1.0
        for _ in range(200):
            mid = (lo + hi) / 2
            if f(mid):
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2
    lower = 0.0 if x == 0 else solve(lambda p: 1 - binom_cdf(x - 1, n, p) < alpha / 2)
    upper = 1.0 if x == n else solve(lambda p: binom_cdf(x, n, p) > alpha / 2)
    return [lower, upper]


def fleiss(tables):
    """tables: per item [a, b, tie] counts; items under two votes left out."""
    rows = [t for t in tables if sum(t) >= 2]
    P = sum((sum(c * c for c in t) - sum(t)) / (sum(t) * (sum(t) - 1)) for t in rows) / len(rows)
    total = sum(sum(t) for t in rows)
    pj = [sum(t[j] for t in rows) / total for j in range(3)]
    Pe = sum(p * p for p in pj)
    return (P - Pe) / (1 - Pe)


def krippendorff(tables):
    rows = [t for t in tables if sum(t) >= 2]
    o = [[0.0] * 3 for _ in range(3)]
    for t in rows:
        m = sum(t)
        for c in range(3):
            for k in range(3):
                o[c][k] += (t[c] * t[k] - (t[c] if c == k else 0)) / (m - 1)
    nc = [sum(o[c]) for c in range(3)]
    n = sum(nc)
    obs = sum(o[c][k] for c in range(3) for k in range(3) if c != k)
    exp = sum(nc[c] * nc[k] / (n - 1) for c in range(3) for k in range(3) if c != k)
    return 1 - obs / exp


# -------------------------------------------------------------------- checks

failures = []


def expect(what, got, want, tol=1e-9):
    if isinstance(want, list) and all(isinstance(w, float) for w in want):
        ok = isinstance(got, list) and len(got) == len(want) and all(abs(g - w) <= tol for g, w in zip(got, want))
    elif isinstance(want, float):
        ok = isinstance(got, (int, float)) and not isinstance(got, bool) and abs(got - want) <= tol
    else:
        ok = got == want
    if not ok:
        failures.append(f"{what}: got {got!r}, expected {want!r}")


def expect_null(what, obj, key, reason_part=""):
    if obj.get(key) is not None:
        failures.append(f"{what}: {key} = {obj.get(key)!r}, expected null")
        return
    reason = obj.get("reasons", {}).get(key)
    if not reason or reason_part not in reason:
        failures.append(f"{what}: {key} is null with reason {reason!r}, expected one mentioning {reason_part!r}")


INTERVALS = [("win_rate_b", "ci95_wilson"), ("win_rate_b", "ci95_exact"), ("vote_rate_b", "ci95_bootstrap"),
             ("left_rate", "left_rate_ci95")]


def walk_invariants(where, node):
    """Every interval holds its estimate; every null has a reason; no NaN."""
    if isinstance(node, dict):
        for k, v in node.items():
            if v is None and k != "reason" and k not in node.get("reasons", {}):
                failures.append(f"{where}.{k}: null without a reason")
        if where.endswith(".reasons"):
            return
        for est, ci in INTERVALS:
            if ci in node and node[ci] is not None:
                lo, hi = node[ci]
                e = node.get(est)
                if e is None or not (lo - 1e-12 <= e <= hi + 1e-12) or not (0 <= lo <= hi <= 1):
                    failures.append(f"{where}.{ci}: {node[ci]} does not hold {est} = {e}")
        if "score" in node and node.get("ci95") is not None:
            if not (node["ci95"][0] <= node["score"] <= node["ci95"][1]):
                failures.append(f"{where}: Bradley-Terry interval {node['ci95']} misses {node['score']}")
        for k, v in node.items():
            walk_invariants(f"{where}.{k}", v)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            walk_invariants(f"{where}[{i}]", v)
    elif isinstance(node, float) and not math.isfinite(node):
        failures.append(f"{where}: not finite")


CORE_KEYS = ["items", "a_wins", "b_wins", "ties", "win_rate_b", "ci95_wilson", "ci95_exact", "ci95_bootstrap",
             "p_value", "p_value_holm", "votes", "fleiss_kappa", "left_rate"]


def study(report, name):
    return next(s for s in report["studies"] if s["name"] == name)


def question(s, key):
    return next(q for q in s["questions"] if q["key"] == key)


def check_s1(report, db):
    s = study(report, "s1")
    expect("s1 items", s["n_items"], 8)
    expect("s1 benchmark", s["prompt_sets"], "tiny")
    expect("s1 categories", s["categories"], {"animals": 4, "food": 3, "solo": 1})
    q1, q3 = question(s, "q1"), question(s, "q3")
    for q in (q1, q3):
        for k in CORE_KEYS + ["by_category"]:
            if k not in q:
                failures.append(f"s1 {q['key']}: key {k} missing")
        for cat, c in q["by_category"].items():
            for k in CORE_KEYS:
                if k not in c:
                    failures.append(f"s1 {q['key']} {cat}: key {k} missing")
    # counts by hand (the rejected and the extra assignment of r4 do not count)
    expect("q1 items", q1["items"], 7)
    expect("q1 b_wins", q1["b_wins"], 4)
    expect("q1 a_wins", q1["a_wins"], 2)
    expect("q1 ties", q1["ties"], 1)
    expect("q1 items_short", q1["items_short"], 2)
    expect("q1 items_without_votes", q1["items_without_votes"], 1)
    expect("q1 votes", q1["votes"], {"a": 7, "b": 11, "tie": 2})
    expect("q1 win_rate_b", q1["win_rate_b"], 4 / 7)
    expect("q1 ties split", q1["rates"]["ties_split"]["win_rate_b"], 4.5 / 7)
    expect("q1 ties excluded", q1["rates"]["ties_excluded"]["win_rate_b"], 4 / 6)
    expect("q1 vote_rate_b", q1["vote_rate_b"], 11 / 20)
    expect("q1 wilson", q1["ci95_wilson"], wilson(4, 7), 1e-9)
    expect("q1 exact", q1["ci95_exact"], clopper_pearson(4, 7), 1e-7)
    expect("q1 ties split wilson", q1["rates"]["ties_split"]["ci95_wilson"], wilson(4.5, 7), 1e-9)
    # sign test: 4 B wins of 6 decisive items, two-sided: P(K<=2)+P(K>=4) = 44/64
    expect("q1 p", q1["p_value"], 44 / 64)
    expect("q3 b_wins", q3["b_wins"], 7)
    expect("q3 p", q3["p_value"], 2 / 128)
    # Holm over {q1, q3}: q3 smallest -> 2 x 1/64; q1 -> max(that, 44/64)
    expect("q3 holm", q3["p_value_holm"], 2 * 2 / 128)
    expect("q1 holm", q1["p_value_holm"], 44 / 64)
    expect("q3 holm reject", q3["holm_reject"], True)
    expect("q1 holm reject", q1["holm_reject"], False)
    tables = [[p.count("a"), p.count("b"), p.count("t")] for p in S1_Q1.values()]
    expect("q1 fleiss", q1["fleiss_kappa"], fleiss(tables), 1e-12)
    expect("q1 fleiss equal counts", q1["fleiss_equal_counts"], False)
    expect("q1 krippendorff", q1["krippendorff_alpha"], krippendorff(tables), 1e-12)
    expect("q1 unanimous", q1["unanimous_share"], 2 / 7)  # bbb and aaa among the 7 items with two or more votes
    expect_null("q3 fleiss (all B)", q3, "fleiss_kappa", "same choice")
    # position bias from the sides the study recorded
    con = sqlite3.connect(db)
    sid = study_id(con, "s1")
    sides = {(r[0], r[1]): r[2] for r in con.execute("SELECT prompt_id, seed, a_side FROM items WHERE study_id = ? AND is_gold = 0", (sid,))}
    left = decisive = 0
    for key, p in S1_Q1.items():
        for c in p:
            if c in "ab":
                decisive += 1
                left += (c == "a") == (sides[key] == "left")
    expect("q1 left_rate", q1["left_rate"], left / decisive)
    expect("q1 left ci", q1["left_rate_ci95"], wilson(left, decisive))
    # gold: r1 always right, r2 wrong on q1 only
    n_gold = con.execute("SELECT COUNT(*) FROM items WHERE study_id = ? AND is_gold = 1", (sid,)).fetchone()[0]
    expect("q1 gold checks", q1["gold"]["checks"], 2 * n_gold)
    expect("q1 gold pass", q1["gold"]["pass_rate"], 0.5)
    expect("q3 gold pass", q3["gold"]["pass_rate"], 1.0)
    # categories by hand
    cat = q1["by_category"]
    expect("animals", [cat["animals"][k] for k in ("items", "b_wins", "a_wins", "ties")], [4, 2, 1, 1])
    expect("animals rate", cat["animals"]["win_rate_b"], 0.5)
    expect("food", [cat["food"][k] for k in ("items", "b_wins", "a_wins", "items_without_votes")], [2, 1, 1, 1])
    expect("solo", [cat["solo"][k] for k in ("items", "b_wins", "a_wins", "ties")], [1, 1, 0, 0])
    expect("solo rate", cat["solo"]["win_rate_b"], 1.0)
    expect("solo p", cat["solo"]["p_value"], 1.0)
    expect("solo wilson", cat["solo"]["ci95_wilson"], wilson(1, 1))
    expect("solo fleiss (one item of three votes)", cat["solo"]["fleiss_kappa"], fleiss([[1, 2, 0]]), 1e-12)
    # the gallery: the largest margins of q1 are the unanimous items, each
    # with its split on both questions; the no-votes item is never shown
    g = s["gallery"]
    expect("gallery question", g["question"], "q1")
    top = g["largest_margin"]
    expect("gallery largest", sorted((e["prompt_id"], e["seed"]) for e in top[:2]), [("p000", 0), ("p003", 0)])
    expect("gallery largest margins", [abs(e["margin"]) for e in top[:2]], [1.0, 1.0])
    expect("gallery split", next(e for e in top if e["prompt_id"] == "p003" and e["seed"] == 0)["votes"],
           {"q1": {"a": 3, "b": 0, "tie": 0, "outcome": "a"}, "q3": {"a": 0, "b": 3, "tie": 0, "outcome": "b"}})
    shown = [(e["prompt_id"], e["seed"]) for e in top + g["smallest_margin"]]
    expect("gallery has no item twice", len(shown), len(set(shown)))
    expect("gallery skips the item without votes", ("p002", 1) in shown, False)
    # rater r1 against the majority of the others (leave-one-out)
    r1 = next(r for r in q1["raters"] if r["rater"] == "simulated:r1")
    agree = compared = 0
    for p in S1_Q1.values():
        votes = [c for c in p if c != "-"]
        if not votes or p[0] == "-" or len(votes) < 2:
            continue
        others = votes[1:]
        a, b, t = others.count("a"), others.count("b"), others.count("t")
        maj = "b" if 2 * b > len(others) else "a" if 2 * a > len(others) else "t"
        compared += 1
        agree += maj == p[0]
    expect("r1 gold pass rate", r1["gold_pass_rate"], 1.0)
    r2 = next(r for r in q1["raters"] if r["rater"] == "simulated:r2")
    expect("r2 gold pass rate (wrong on every q1 gold item)", [r2["gold_checks"], r2["gold_pass_rate"]], [n_gold, 0.0])
    r4 = next(r for r in q1["raters"] if r["rater"] == "simulated:r4")
    expect("r4 (rejected and extra only) has no counted votes", [r4["votes"], r4["compared"]], [0, 0])
    expect_null("r4", r4, "majority_agreement", "shared no item")
    expect("r1 compared", r1["compared"], compared)
    expect("r1 agreement", r1["majority_agreement"], agree / compared)


def check_items_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    s1q1 = [r for r in rows if r["study"] == "s1" and r["question"] == "q1"]
    expect("items.csv s1 q1 rows (no item dropped)", len(s1q1), 8)
    none = [r for r in s1q1 if r["outcome"] == "no_votes"]
    expect("items.csv no-votes item", [(r["prompt_id"], r["seed"], r["short_of_votes"]) for r in none], [("p002", "1", "1")])
    prompt = s1q1[0]["prompt"]
    expect("items.csv prompt with quotes and comma survives", '"quotes"' in prompt and "," in prompt, True)


def check_edges(report):
    e = question(study(report, "empty"), "q1")
    expect("empty items", e["items"], 0)
    expect("empty items without votes", e["items_without_votes"], 8)
    for k in ("win_rate_b", "ci95_wilson", "ci95_exact", "ci95_bootstrap", "p_value", "p_value_holm", "fleiss_kappa",
              "left_rate", "krippendorff_alpha"):
        expect_null("empty study", e, k)
    expect_null("empty study", e, "win_rate_b", "no items")
    z = question(study(report, "zero"), "q1")
    expect("zero items", [z["items"], z["items_without_votes"], z["by_category"]], [0, 0, {}])
    expect_null("zero items", z, "win_rate_b", "no items")
    expect_null("zero items", z, "ci95_bootstrap", "no votes")
    t = question(study(report, "ties"), "q1")
    expect("all ties", [t["items"], t["ties"], t["b_wins"]], [8, 8, 0])
    expect("all ties rate (ties against B)", t["win_rate_b"], 0.0)
    expect_null("all ties", t["rates"]["ties_excluded"], "win_rate_b", "all ties")
    expect_null("all ties", t, "p_value", "")
    expect_null("all ties", t, "left_rate", "all ties")
    expect_null("all ties", t, "fleiss_kappa", "same choice")
    o = question(study(report, "onerater"), "q1")
    expect("one rater", [o["items"], o["b_wins"], o["a_wins"]], [8, 7, 1])
    expect("one rater rate", o["win_rate_b"], 7 / 8)
    expect("one rater exact", o["ci95_exact"], clopper_pearson(7, 8), 1e-7)
    expect("one rater p", o["p_value"], 18 / 256)  # P(K<=1)+P(K>=7) of Binomial(8, 1/2)
    expect_null("one rater", o, "fleiss_kappa", "two or more votes")
    expect_null("one rater", o, "krippendorff_alpha", "two or more votes")
    expect_null("one rater", o, "unanimous_share", "two")


def check_bt(report):
    fits = report["bradley_terry"]
    q1 = next(f for f in fits if f["question"] == "q1")
    models = sorted(a["model"] for a in q1["arms"])
    expect("BT arms", models, ["base", "cmodel", "tuned"])
    ranks = {a["model"]: a["rank"] for a in q1["arms"]}
    # tuned beat base 4-2 (+1 tie), cmodel beat tuned 5-2 (+1 tie): cmodel > tuned > base
    expect("BT ranks", [ranks["cmodel"], ranks["tuned"], ranks["base"]], [1, 2, 3])
    expect("BT comparisons", q1["comparisons"], 7 + 8)
    expect("BT q3 (asked by s1 only)", [a["model"] for a in next(f for f in fits if f["question"] == "q3")["arms"]],
           ["base", "tuned"])


def main():
    if sys.argv[1] == "votes":
        add_votes(sys.argv[2])
        return 0
    out = sys.argv[2]
    with open(f"{out}/report.json") as f:
        text = f.read()
    if "NaN" in text or "Infinity" in text:
        failures.append("report.json has NaN or Infinity")
    report = json.loads(text)
    walk_invariants("report", report)
    if sys.argv[1] == "check-single":
        expect_null("single study", report, "bradley_terry", "two arms")
    elif sys.argv[1] == "check-bt":
        check_bt(report)
    else:
        check_s1(report, sys.argv[3])
        check_items_csv(f"{out}/items.csv")
        check_edges(report)
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
