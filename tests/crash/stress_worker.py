"""One process of the concurrency test (test_concurrency.py).

    stress_worker.py PROC PRIMARY BACKUP SECONDS THREADS START [SHARED SHARED_DB]

Waits for the file START, then runs THREADS + SHARED threads for SECONDS
seconds.  Each thread opens its own connection and alternates at random
between write transactions and reads.  The first THREADS threads each use
an in-memory database declaring the table on PRIMARY + BACKUP, with
ephemeral rules 'eph, mix/e' (thread 0 with durability 'durable', the
others 'written').  The SHARED threads all open the one database file
SHARED_DB and declare the table in their connection's temp schema
(`CREATE VIRTUAL TABLE temp.kv ...`), so SQLite's lock on that file never
comes between their transactions, with durability 'durable', 'written'
and 'applied' in turn.  All threads of the process commit through its one
write coordinator of PRIMARY, so their commits share flushes.

Write transactions (each writes all NKEYS keys of one group with one marker
in NKEYS statements, or deletes the group with one statement):
  grp   ('grp', 'gG', 'kJ')                durable, shared by all processes;
        also inserts a log key ('log', 'pPtT', 'nNNNNNN') whose epoch, read
        back after COMMIT, is reported (at 'applied' it is read back only
        one time in four, which also checks that the commit is visible at
        once in its process: reading it waits for the flush; otherwise the
        test takes the epoch from the primary at the end).  Two variants: 'upd' sets the
        group's value with one UPDATE (all its keys, or none when the
        statement's snapshot has no such group); 'sp' writes the group,
        then inside a SAVEPOINT writes half of another group and deletes a
        third, and rolls the savepoint back before COMMIT
  eph   ('eph', 'gG', 'kJ')                ephemeral (this process's tier)
  mix   ('mix', 'd', 'pPgGkJ') and ('mix', 'e', 'pPgGkJ')
        one transaction over both tiers: half durable, half ephemeral
Reads (one SELECT each) and their invariants:
  - a listing of 'grp', 'eph' or this process's 'mix' keys shows every
    group whole or absent: all its keys, one marker, one epoch; no value
    written inside a savepoint that was rolled back;
  - a point read of one key, and every key of a listing: per key, the epoch
    never goes below what this thread saw before.

Prints one JSON object: operation counts, the violations by kind (with a
few examples each), the durable commits [group, marker, epoch, op] (op: put, del, or nop for a
DELETE that found no row; epoch null for an 'applied' commit not read back), and how
many commits wrote the primary ("primary_commits").
"""
import json
import os
import random
import sys
import threading
import time
import traceback

from crashlib import connect, table_sql

NKEYS = 4
GROUPS = 6
LEVELS = ("durable", "written", "applied")    # of the SHARED threads, in turn


def main():
    proc, primary, backup, seconds, nthreads, start = sys.argv[1:7]
    proc, seconds, nthreads = int(proc), float(seconds), int(nthreads)
    nshared = int(sys.argv[7]) if len(sys.argv) > 7 else 0
    shared_db = sys.argv[8] if len(sys.argv) > 8 else None
    lock = threading.Lock()
    result = {"proc": proc, "writes": 0, "reads": 0, "rows_read": 0, "violations": {}, "commits": [],
              "kinds": {}, "levels": {}, "primary_commits": 0, "applied_read_back": 0}

    def violation(kind, detail):
        with lock:
            v = result["violations"].setdefault(kind, {"count": 0, "examples": []})
            v["count"] += 1
            if len(v["examples"]) < 3:
                v["examples"].append(detail)

    def worker(t):
        rng = random.Random(proc * 1000 + t)
        seen = {}                      # key -> newest epoch this thread saw
        commits, kinds = [], {}
        writes = reads = rows_read = primary_commits = read_back = 0
        if t < nthreads:
            level = "durable" if t == 0 else "written"
        else:
            level = LEVELS[(t - nthreads) % len(LEVELS)]
        try:
            sql = table_sql(primary=primary, backup=backup, ephemeral="eph, mix/e", durability=level)
            if t < nthreads:
                con = connect(":memory:", sql)
            else:
                con = connect(shared_db, sql.replace("IF NOT EXISTS kv", "IF NOT EXISTS temp.kv"))
            me = "p%dt%d" % (proc, t)
            n = 0
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                if rng.random() < 0.45:
                    kind = rng.choice(("grp", "grp", "eph", "mix", "upd", "sp"))
                    g = rng.randrange(GROUPS)
                    marker = "%s-n%d" % (me, n)
                    delete = rng.random() < 0.1 and kind not in ("upd", "sp")
                    con.execute("BEGIN")
                    if kind == "upd":
                        # one statement, one snapshot: every key of the group or none
                        cur = con.execute("UPDATE kv SET value=? WHERE primary_namespace='grp' AND "
                                          "secondary_namespace=?", (marker, "g%d" % g))
                        if cur.rowcount not in (0, NKEYS):
                            violation("partial transaction", "an UPDATE of group grp %d changed %d keys"
                                      % (g, cur.rowcount))
                        op = "put" if cur.rowcount else "nop"
                    elif kind == "sp":
                        op = "put"
                        for j in range(NKEYS):
                            con.execute("REPLACE INTO kv VALUES ('grp', ?, ?, ?)", ("g%d" % g, "k%d" % j, marker))
                        con.execute("SAVEPOINT sp")
                        other, third = (g + 1) % GROUPS, (g + 2) % GROUPS
                        for j in range(NKEYS // 2):
                            con.execute("REPLACE INTO kv VALUES ('grp', ?, ?, ?)",
                                        ("g%d" % other, "k%d" % j, marker + "-undone"))
                        con.execute("DELETE FROM kv WHERE primary_namespace='grp' AND secondary_namespace=?",
                                    ("g%d" % third,))
                        con.execute("ROLLBACK TO sp")
                        con.execute("RELEASE sp")
                    elif delete:
                        # one statement, so one snapshot: it deletes the
                        # whole group or nothing (statements of one
                        # transaction may see different snapshots)
                        if kind == "mix":
                            cur = con.execute("DELETE FROM kv WHERE primary_namespace='mix' AND key >= ? "
                                              "AND key < ?", ("p%dg%dk" % (proc, g), "p%dg%dl" % (proc, g)))
                        else:
                            cur = con.execute("DELETE FROM kv WHERE primary_namespace=? AND secondary_namespace=?",
                                              (kind, "g%d" % g))
                        if cur.rowcount not in (0, NKEYS):
                            violation("partial transaction" if kind != "mix" else "partial transaction across tiers",
                                      "a DELETE of group %s %d removed %d keys" % (kind, g, cur.rowcount))
                        op = "del" if cur.rowcount else "nop"
                    else:
                        op = "put"
                        for j in range(NKEYS):
                            if kind == "mix":
                                name = ("mix", "d" if j % 2 == 0 else "e", "p%dg%dk%d" % (proc, g, j))
                            else:
                                name = (kind, "g%d" % g, "k%d" % j)
                            con.execute("REPLACE INTO kv VALUES (?, ?, ?, ?)", name + (marker,))
                    durable = kind in ("grp", "upd", "sp")
                    if durable:
                        con.execute("INSERT INTO kv VALUES ('log', ?, ?, ?)", (me, "n%06d" % n, marker))
                    con.execute("COMMIT")
                    if durable or (kind == "mix" and op != "nop"):
                        primary_commits += 1
                    if durable and (level != "applied" or rng.random() < 0.25):
                        row = con.execute("SELECT epoch FROM kv WHERE primary_namespace='log' AND "
                                          "secondary_namespace=? AND key=?", (me, "n%06d" % n)).fetchone()
                        if row is None:
                            violation("commit not visible in its process",
                                      "%s (%s): its log key is not found right after COMMIT" % (marker, level))
                            e = None
                        else:
                            e = row[0]
                        read_back += level == "applied"
                        commits.append(["g%d" % g, marker, e, op])
                    elif durable:
                        commits.append(["g%d" % g, marker, None, op])
                    kinds[kind] = kinds.get(kind, 0) + 1
                    n += 1
                    writes += 1
                    continue
                what = rng.choice(("grp", "eph", "mix", "point"))
                if what == "point":
                    kind = rng.choice(("grp", "eph"))
                    name = (kind, "g%d" % rng.randrange(GROUPS), "k%d" % rng.randrange(NKEYS))
                    rows = [name + r for r in con.execute(
                        "SELECT value, epoch FROM kv WHERE primary_namespace=? AND secondary_namespace=? "
                        "AND key=?", name).fetchall()]
                elif what == "mix":
                    rows = [("mix",) + r for r in con.execute(
                        "SELECT secondary_namespace, key, value, epoch FROM kv WHERE primary_namespace='mix' "
                        "AND key >= ? AND key < ?", ("p%dg" % proc, "p%dh" % proc)).fetchall()]
                else:
                    rows = [(what,) + r for r in con.execute(
                        "SELECT secondary_namespace, key, value, epoch FROM kv WHERE primary_namespace=?",
                        (what,)).fetchall()]
                reads += 1
                rows_read += len(rows)
                check(rows, what, seen, violation)
        except Exception:
            violation("error", traceback.format_exc()[-1500:])
        with lock:
            result["levels"][level] = result["levels"].get(level, 0) + writes
            result["primary_commits"] += primary_commits
            result["applied_read_back"] += read_back
            result["writes"] += writes
            result["reads"] += reads
            result["rows_read"] += rows_read
            result["commits"] += commits
            for k, v in kinds.items():
                result["kinds"][k] = result["kinds"].get(k, 0) + v

    while not os.path.exists(start):
        time.sleep(0.005)
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(nthreads + nshared)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    print(json.dumps(result))


def group_of(row):
    """The group a row belongs to: (pns, group name)."""
    pns, sns, key = row[:3]
    if pns == "mix":
        return ("mix", key[:key.index("k")])
    return (pns, sns)


def check(rows, what, seen, violation):
    # per key, epochs never go back
    for r in rows:
        key, epoch = r[:3], r[4]
        if epoch < seen.get(key, 0):
            violation("epoch went back", "%r: epoch %d after %d (%s read)" % (key, epoch, seen[key], what))
        seen[key] = epoch
    if what == "point":
        return
    for r in rows:
        if isinstance(r[3], str) and r[3].endswith("-undone"):
            violation("undone write visible", "%s: %r" % (what, r))
    # every group whole or absent, one marker, one epoch
    groups = {}
    for r in rows:
        groups.setdefault(group_of(r), []).append(r)
    for g, rs in groups.items():
        markers = {r[3] for r in rs}
        epochs = {r[4] for r in rs}
        if len(rs) != NKEYS or len(markers) != 1 or len(epochs) != 1:
            kind = "partial transaction across tiers" if g[0] == "mix" else "partial transaction"
            violation(kind, "%s %s: %r" % (what, g[1], sorted((r[1], r[2], r[3], r[4]) for r in rs)))


if __name__ == "__main__":
    main()
