"""The ephemeral tier (SPEC 2, 3, 4, 5, 6; issue 3): routing rules, the
preset `ldk`, listings across tiers, transactions, sharing within a process,
and no disk writes for cache-only transactions.

Raw reads of the environments go through conftest.raw_store (a child
process) and mdb_dump, because this process has the environments open
through the extension.
"""
import ast
import os
import sqlite3
import time

import pytest

from conftest import mdb_dump, raw_store, table_rows, table_sql

LDK_KEYS = ["network_graph", "scorer", "external_pathfinding_scores_cache"]
ROOT = "primary_namespace='' AND secondary_namespace=''"


def tsql(tmp_path, **args):
    args.setdefault("primary", str(tmp_path / "data" / "primary"))
    return table_sql(**args)


def primary_dir(tmp_path):
    return tmp_path / "data" / "primary"


def tiers(con, where="1"):
    return {r[0]: r[1] for r in con.execute("SELECT key, tier FROM kv WHERE " + where)}


def keys(con, where, order=""):
    return [r[0] for r in con.execute("SELECT key FROM kv WHERE %s %s" % (where, order))]


def newest_first(con, where=ROOT, size=2):
    """All pages of the list_paginated query, flattened: (rowid, key)."""
    out, last = [], 1 << 62
    while True:
        page = con.execute("SELECT rowid, key FROM kv WHERE %s AND rowid < ? ORDER BY rowid DESC LIMIT ?" % where,
                           (last, size)).fetchall()
        if not page:
            return out
        assert len(page) <= size
        out += page
        last = page[-1][0]


# ---------------------------------------------------------------------------
# the preset ldk and listings across tiers


def test_ldk_keys_live_in_memory_and_manager_on_disk(tmp_path, connect):
    con = connect(tmp_path / "e.db", table=tsql(tmp_path, ephemeral="ldk"))
    con.execute("BEGIN")
    con.execute("INSERT INTO kv VALUES ('', '', 'manager', X'6d616e61676572')")
    for k in LDK_KEYS:
        con.execute("INSERT INTO kv VALUES ('', '', ?, ?)", (k, "cache:" + k))
    con.execute("INSERT INTO kv VALUES ('monitors', '', 'scorer', 'not the root scorer')")
    con.execute("INSERT INTO kv VALUES ('monitors', 'sub', 'network_graph', 'nor this')")
    con.execute("COMMIT")
    assert tiers(con, ROOT) == {"manager": "primary", "network_graph": "ephemeral", "scorer": "ephemeral",
                          "external_pathfinding_scores_cache": "ephemeral"}
    assert tiers(con, "primary_namespace='monitors'") == {"scorer": "primary", "network_graph": "primary"}
    assert con.execute("SELECT value, tier FROM kv WHERE %s AND key='scorer'" % ROOT).fetchall() == [
        ("cache:scorer", "ephemeral")]
    dump = mdb_dump(primary_dir(tmp_path))
    assert "manager" in dump and "monitors" in dump
    assert "cache:" not in dump and "pathfinding" not in dump
    lines = [l.strip() for l in dump.splitlines()]
    for k in LDK_KEYS:
        assert "\\00\\00" + k not in lines, "root key %r is in the primary:\n%s" % (k, dump)
    assert "\\00\\00manager" in lines
    raw = raw_store(primary_dir(tmp_path))
    assert sorted(raw.rows) == [("", "", "manager"), ("monitors", "", "scorer"), ("monitors", "sub", "network_graph")]


def test_root_listing_merges_tiers_each_key_once(tmp_path, connect):
    con = connect(tmp_path / "e.db", table=tsql(tmp_path, ephemeral="ldk"))
    durable = ["aaa", "manager", "nzz", "scorer_backup", "zzz"]
    con.execute("BEGIN")
    for k in durable[:3]:
        con.execute("INSERT INTO kv VALUES ('', '', ?, 'd')", (k,))
    con.execute("INSERT INTO kv VALUES ('', '', 'scorer', 'e')")
    con.execute("COMMIT")
    con.execute("INSERT INTO kv VALUES ('', '', 'network_graph', 'e')")
    for k in durable[3:]:
        con.execute("INSERT INTO kv VALUES ('', '', ?, 'd')", (k,))
    con.execute("INSERT INTO kv VALUES ('', '', 'external_pathfinding_scores_cache', 'e')")
    every = sorted(durable + LDK_KEYS)
    assert keys(con, ROOT) == every
    assert keys(con, ROOT, "ORDER BY key") == every
    assert keys(con, ROOT, "ORDER BY key DESC") == every[::-1]
    assert keys(con, ROOT + " AND key > 'n' AND key < 'scorer_c'") == ["network_graph", "nzz", "scorer",
                                                                       "scorer_backup"]
    assert keys(con, ROOT + " AND key >= 'network_graph' AND key <= 'scorer'", "ORDER BY key DESC") == [
        "scorer", "nzz", "network_graph"]
    assert keys(con, ROOT + " AND key IN ('scorer', 'manager', 'network_graph', 'missing')") == [
        "manager", "network_graph", "scorer"]
    assert keys(con, ROOT, "ORDER BY key LIMIT 3 OFFSET 2") == every[2:5]
    assert keys(con, ROOT, "ORDER BY key DESC LIMIT 3 OFFSET 1") == every[::-1][1:4]
    assert keys(con, "primary_namespace=''") == every
    assert con.execute("SELECT count(*) FROM kv").fetchone()[0] == len(every)
    # inside a transaction, with the delta on top of both tiers
    con.execute("BEGIN")
    con.execute("DELETE FROM kv WHERE %s AND key='scorer'" % ROOT)
    con.execute("DELETE FROM kv WHERE %s AND key='manager'" % ROOT)
    con.execute("INSERT INTO kv VALUES ('', '', 'mmm', 'd')")
    con.execute("REPLACE INTO kv VALUES ('', '', 'network_graph', 'e2')")
    expected = sorted(set(every) - {"scorer", "manager"} | {"mmm"})
    assert keys(con, ROOT) == expected
    assert keys(con, ROOT, "ORDER BY key DESC") == expected[::-1]
    con.execute("ROLLBACK")
    assert keys(con, ROOT) == every


def test_newest_first_pagination_interleaves_tiers(tmp_path, connect):
    con = connect(tmp_path / "e.db", table=tsql(tmp_path, ephemeral="ldk, cache"))
    created = []

    def add(k, ns=""):
        con.execute("INSERT INTO kv VALUES (?, '', ?, ?)", (ns, k, k))
        created.append(k)

    add("manager")                       # durable
    add("scorer")                        # ephemeral
    add("aaa")
    add("network_graph")
    con.execute("BEGIN")                 # one commit creating both tiers, in this order
    for k in ("zzz", "external_pathfinding_scores_cache", "bbb"):
        add(k)
    con.execute("COMMIT")
    add("ccc")
    pages = newest_first(con)
    assert [k for _, k in pages] == created[::-1]
    rowids = [r for r, _ in pages]
    assert rowids == sorted(rowids, reverse=True) and len(set(rowids)) == len(rowids)
    # oldest first as well, and a page in the middle
    asc = con.execute("SELECT key FROM kv WHERE %s ORDER BY rowid LIMIT 100" % ROOT).fetchall()
    assert [k for k, in asc] == created
    mid = rowids[3]
    page = con.execute("SELECT key FROM kv WHERE %s AND rowid < ? ORDER BY rowid DESC LIMIT 3" % ROOT,
                       (mid,)).fetchall()
    assert [k for k, in page] == created[::-1][4:7]
    # values updated: pages stay stable; a deleted key just drops out
    con.execute("REPLACE INTO kv VALUES ('', '', 'scorer', 'newer')")
    con.execute("UPDATE kv SET value='x' WHERE %s AND key='aaa'" % ROOT)
    con.execute("DELETE FROM kv WHERE %s AND key='network_graph'" % ROOT)
    assert [k for _, k in newest_first(con)] == [k for k in created[::-1] if k != "network_graph"]
    # rowid = ? finds rows of both tiers
    for r, k in pages:
        if k != "network_graph":
            assert con.execute("SELECT key FROM kv WHERE rowid=?", (r,)).fetchall() == [(k,)]


def test_pagination_of_an_ephemeral_only_namespace(tmp_path, connect):
    con = connect(tmp_path / "e.db", table=tsql(tmp_path, ephemeral="cache"))
    for i in range(9):
        con.execute("INSERT INTO kv VALUES ('cache', 'graph', ?, ?)", ("k%d" % (i * 7 % 9), i))
    got = newest_first(con, "primary_namespace='cache' AND secondary_namespace='graph'", size=4)
    assert [k for _, k in got] == ["k%d" % (i * 7 % 9) for i in range(9)][::-1]
    assert mdb_dump(primary_dir(tmp_path)).count("graph") == 0


# ---------------------------------------------------------------------------
# rules

RULES = [
    # rule text, names, {(pns, sns, key): tier}
    ("monitors", "ldk", {("monitors", "", "a"): "ephemeral", ("monitors", "sub", "b"): "ephemeral",
                         ("monitorsx", "", "a"): "primary", ("other", "", "monitors"): "primary"}),
    ("monitors/archive", "ldk", {("monitors", "archive", "a"): "ephemeral", ("monitors", "", "a"): "primary",
                                 ("monitors", "archive2", "a"): "primary"}),
    ("a/b/onekey", "ldk", {("a", "b", "onekey"): "ephemeral", ("a", "b", "other"): "primary",
                           ("a", "", "onekey"): "primary"}),
    ("//scorer", "ldk", {("", "", "scorer"): "ephemeral", ("x", "", "scorer"): "primary",
                         ("", "", "network_graph"): "primary"}),
    # ('', 'x', ...) is not a valid name under either names rule (README), so
    # the rule '/x' is accepted and matches nothing a table can write
    ("/x", "any", {("", "", "x"): "primary", ("x", "", "k"): "primary", ("", "", "k"): "primary"}),
    ("/", "any", {("", "", "k"): "ephemeral", ("", "", "x"): "ephemeral", ("a", "", "k"): "primary"}),
    ("/", "ldk", {("", "", "k"): "ephemeral", ("a", "", "k"): "primary", ("a", "b", "k"): "primary"}),
    ("a b/c d", "any", {("a b", "c d", "k"): "ephemeral", ("a b", "", "k"): "primary"}),
    ("  //scorer ,\tmonitors/archive\n, a/b/onekey  ", "ldk",
     {("", "", "scorer"): "ephemeral", ("monitors", "archive", "z"): "ephemeral", ("a", "b", "onekey"): "ephemeral",
      ("monitors", "", "z"): "primary"}),
    ("ldk", "ldk", {("", "", k): "ephemeral" for k in LDK_KEYS} | {("", "", "manager"): "primary",
                                                                  ("x", "", "scorer"): "primary"}),
    ("cache, ldk", "ldk", {("", "", "scorer"): "ephemeral", ("cache", "s", "k"): "ephemeral",
                           ("", "", "manager"): "primary"}),
    ("  ", "ldk", {("", "", "scorer"): "primary"}),
]


@pytest.mark.parametrize("rules, names, expect", RULES, ids=[repr(r[0]) for r in RULES])
def test_rules_route_keys(tmp_path, connect, rules, names, expect):
    con = connect(tmp_path / "e.db", table=tsql(tmp_path, ephemeral=rules.replace("'", "''"), names=names))
    con.execute("BEGIN")
    for (pns, sns, key) in expect:
        con.execute("INSERT INTO kv VALUES (?, ?, ?, 'v')", (pns, sns, key))
    con.execute("COMMIT")
    got = {r[:3]: r[6] for r in table_rows(con)}
    assert got == expect
    raw = raw_store(primary_dir(tmp_path))
    assert sorted(raw.rows) == sorted(k for k, t in expect.items() if t == "primary")


@pytest.mark.parametrize("rules", ["a/b/c/d", "//a/b", "a,,b", "a,", ",a", "a, ,b", "ldk,/x/y/z/"])
def test_malformed_rules_refused_at_create(tmp_path, connect, rules):
    with pytest.raises(sqlite3.Error) as ei:
        connect(tmp_path / "e.db", table=tsql(tmp_path, ephemeral=rules))
    msg = str(ei.value)
    assert msg.startswith("tierstore:") and "ephemeral" in msg, msg
    assert not (tmp_path / "data").exists(), "a rejected table created %s" % (tmp_path / "data")


def test_ephemeral_argument_given_twice_refused(tmp_path, connect):
    with pytest.raises(sqlite3.Error) as ei:
        connect(tmp_path / "e.db",
                table="CREATE VIRTUAL TABLE kv USING tierstore(primary='p', ephemeral='ldk', ephemeral='x')")
    assert str(ei.value).startswith("tierstore:") and "ephemeral" in str(ei.value)


# ---------------------------------------------------------------------------
# transactions


@pytest.fixture
def eph(tmp_path, connect):
    con = connect(tmp_path / "e.db", table=tsql(tmp_path, ephemeral="ldk, cache"))
    con.execute("INSERT INTO kv VALUES ('', '', 'manager', 'm0')")
    con.execute("INSERT INTO kv VALUES ('', '', 'scorer', 's0')")
    return con


def value(con, key, pns="", sns=""):
    r = con.execute("SELECT value FROM kv WHERE primary_namespace=? AND secondary_namespace=? AND key=?",
                    (pns, sns, key)).fetchall()
    return r[0][0] if r else None


def test_read_your_writes_and_rollback(eph, tmp_path, connect):
    other = connect(tmp_path / "e.db", table=None)
    eph.execute("BEGIN")
    eph.execute("REPLACE INTO kv VALUES ('', '', 'scorer', 's1')")
    eph.execute("INSERT INTO kv VALUES ('', '', 'network_graph', 'g1')")
    eph.execute("INSERT INTO kv VALUES ('cache', 'x', 'k', 1)")
    assert value(eph, "scorer") == "s1" and value(eph, "network_graph") == "g1" and value(eph, "k", "cache", "x") == 1
    assert eph.execute("SELECT epoch FROM kv WHERE %s AND key='network_graph'" % ROOT).fetchone() == (None,)
    assert tiers(eph, ROOT)["network_graph"] == "ephemeral"
    # not visible to another connection before COMMIT
    assert value(other, "scorer") == "s0" and value(other, "network_graph") is None
    eph.execute("ROLLBACK")
    assert value(eph, "scorer") == "s0" and value(eph, "network_graph") is None
    assert value(eph, "k", "cache", "x") is None
    eph.execute("BEGIN")
    eph.execute("REPLACE INTO kv VALUES ('', '', 'scorer', 's2')")
    eph.execute("DELETE FROM kv WHERE %s AND key='manager'" % ROOT)
    eph.execute("COMMIT")
    assert value(other, "scorer") == "s2" and value(other, "manager") is None
    e_scorer, = other.execute("SELECT epoch FROM kv WHERE %s AND key='scorer'" % ROOT).fetchone()
    assert isinstance(e_scorer, int) and e_scorer >= 3


def test_savepoints(eph):
    eph.execute("BEGIN")
    eph.execute("REPLACE INTO kv VALUES ('', '', 'scorer', 'a')")
    eph.execute("SAVEPOINT one")
    eph.execute("REPLACE INTO kv VALUES ('', '', 'scorer', 'b')")
    eph.execute("INSERT INTO kv VALUES ('', '', 'network_graph', 'g')")
    eph.execute("SAVEPOINT two")
    eph.execute("DELETE FROM kv WHERE %s AND key='scorer'" % ROOT)
    assert value(eph, "scorer") is None
    eph.execute("ROLLBACK TO two")
    assert value(eph, "scorer") == "b"
    eph.execute("ROLLBACK TO one")
    assert value(eph, "scorer") == "a" and value(eph, "network_graph") is None
    eph.execute("INSERT INTO kv VALUES ('cache', '', 'c', 'c')")
    eph.execute("RELEASE one")
    eph.execute("COMMIT")
    assert value(eph, "scorer") == "a" and value(eph, "network_graph") is None and value(eph, "c", "cache") == "c"


def test_update_delete_replace_unique(eph):
    rowid, = eph.execute("SELECT rowid FROM kv WHERE %s AND key='scorer'" % ROOT).fetchone()
    eph.execute("UPDATE kv SET value = value || '+' WHERE %s AND key='scorer'" % ROOT)
    assert value(eph, "scorer") == "s0+"
    eph.execute("REPLACE INTO kv VALUES ('', '', 'scorer', 'r')")
    eph.execute("INSERT OR REPLACE INTO kv VALUES ('', '', 'scorer', 'r2')")
    assert eph.execute("SELECT rowid, value FROM kv WHERE %s AND key='scorer'" % ROOT).fetchone() == (rowid, "r2")
    with pytest.raises(sqlite3.IntegrityError) as ei:
        eph.execute("INSERT INTO kv VALUES ('', '', 'scorer', 'dup')")
    assert str(ei.value).startswith("tierstore:")
    assert getattr(ei.value, "sqlite_errorname", "SQLITE_CONSTRAINT").startswith("SQLITE_CONSTRAINT")
    eph.execute("INSERT OR IGNORE INTO kv VALUES ('', '', 'scorer', 'ignored')")
    assert value(eph, "scorer") == "r2"
    # a failed statement inside a transaction undoes only itself
    eph.execute("BEGIN")
    eph.execute("INSERT INTO kv VALUES ('', '', 'network_graph', 'g')")
    with pytest.raises(sqlite3.IntegrityError):
        eph.execute("INSERT INTO kv VALUES ('cache', '', 'a', 1), ('', '', 'scorer', 'dup')")
    assert value(eph, "a", "cache") is None
    eph.execute("COMMIT")
    assert value(eph, "network_graph") == "g"
    # deleting, then creating again gives a new creation number
    eph.execute("DELETE FROM kv WHERE %s AND key='scorer'" % ROOT)
    assert value(eph, "scorer") is None
    eph.execute("DELETE FROM kv WHERE %s AND key='scorer'" % ROOT)     # not there: not an error
    eph.execute("INSERT INTO kv VALUES ('', '', 'scorer', 'again')")
    new, = eph.execute("SELECT rowid FROM kv WHERE %s AND key='scorer'" % ROOT).fetchone()
    assert new > rowid
    assert value(eph, "manager") == "m0"


def test_rows_move_between_tiers_when_renamed(eph, tmp_path):
    """An UPDATE that changes a name moves the row to the new key, whose
    tier follows the new names."""
    eph.execute("UPDATE kv SET key='scorer_saved' WHERE %s AND key='scorer'" % ROOT)
    eph.execute("UPDATE kv SET key='network_graph' WHERE %s AND key='manager'" % ROOT)
    assert tiers(eph, ROOT) == {"scorer_saved": "primary", "network_graph": "ephemeral"}
    assert value(eph, "scorer_saved") == "s0" and value(eph, "network_graph") == "m0"
    raw = raw_store(primary_dir(tmp_path))
    assert sorted(raw.rows) == [("", "", "scorer_saved")]


# ---------------------------------------------------------------------------
# one tier per process and primary


def test_shared_by_tables_of_the_process_on_one_primary(tmp_path, connect):
    a = connect(tmp_path / "a.db", table=tsql(tmp_path, ephemeral="ldk"))
    b = connect(tmp_path / "b.db", table=tsql(tmp_path, ephemeral="ldk"))
    a.execute("BEGIN")
    a.execute("INSERT INTO kv VALUES ('', '', 'scorer', 'from a')")
    assert value(b, "scorer") is None
    a.execute("COMMIT")
    assert value(b, "scorer") == "from a"
    b.execute("REPLACE INTO kv VALUES ('', '', 'scorer', 'from b')")
    b.execute("INSERT INTO kv VALUES ('', '', 'network_graph', 'graph')")
    assert value(a, "scorer") == "from b" and value(a, "network_graph") == "graph"
    assert tiers(a, ROOT) == {"scorer": "ephemeral", "network_graph": "ephemeral"}
    # a table on another primary has its own tier
    c = connect(tmp_path / "c.db", table=tsql(tmp_path, primary=str(tmp_path / "other"), ephemeral="ldk"))
    assert value(c, "scorer") is None


def test_lost_when_the_process_ends(tmp_path, run_py, connect):
    table = tsql(tmp_path, ephemeral="ldk")
    run_py('''
        con = connect(sys.argv[1], table=sys.argv[2])
        con.execute("INSERT INTO kv VALUES ('', '', 'scorer', 'cache')")
        con.execute("INSERT INTO kv VALUES ('', '', 'manager', 'durable')")
        assert con.execute("SELECT count(*) FROM kv").fetchone()[0] == 2
    ''', args=[tmp_path / "a.db", table])
    out = run_py('''
        con = connect(sys.argv[1], table=None)
        print(repr(con.execute("SELECT key, value, tier FROM kv").fetchall()))
    ''', args=[tmp_path / "a.db"]).stdout
    assert ast.literal_eval(out) == [("manager", "durable", "primary")]
    con = connect(tmp_path / "a.db", table=None)
    assert con.execute("SELECT key FROM kv").fetchall() == [("manager",)]


def test_creation_numbers_unique_across_processes(tmp_path, connect, run_py):
    """SPEC 3: rowid is unique and increasing in creation order across all
    tiers of one primary environment, whatever process creates the key."""
    table = tsql(tmp_path, ephemeral="ldk")
    con = connect(tmp_path / "a.db", table=table)
    con.execute("INSERT INTO kv VALUES ('', '', 'manager', 'm')")
    con.execute("INSERT INTO kv VALUES ('', '', 'scorer', 's')")           # ephemeral, this process
    run_py('''
        con = connect(sys.argv[1], table=sys.argv[2])
        con.execute("INSERT INTO kv VALUES ('', '', 'other', 'o')")       # durable, another process
    ''', args=[tmp_path / "b.db", table])
    con.execute("INSERT INTO kv VALUES ('', '', 'network_graph', 'g')")    # ephemeral, this process
    rows = con.execute("SELECT rowid, key FROM kv WHERE %s ORDER BY rowid DESC" % ROOT).fetchall()
    rowids = [r for r, _ in rows]
    assert len(set(rowids)) == len(rowids), "two keys share a creation number: %r" % rows
    assert [k for _, k in rows] == ["network_graph", "other", "scorer", "manager"], rows


def test_deleting_an_ephemeral_key_never_deletes_a_durable_one(tmp_path, connect, run_py):
    table = tsql(tmp_path, ephemeral="ldk")
    con = connect(tmp_path / "a.db", table=table)
    con.execute("INSERT INTO kv VALUES ('', '', 'manager', 'm')")
    con.execute("INSERT INTO kv VALUES ('', '', 'scorer', 's')")
    run_py('''
        con = connect(sys.argv[1], table=sys.argv[2])
        con.execute("INSERT INTO kv VALUES ('', '', 'other', 'durable data of another process')")
    ''', args=[tmp_path / "b.db", table])
    con.execute("DELETE FROM kv WHERE %s AND key='scorer'" % ROOT)
    got = sorted(con.execute("SELECT key, tier FROM kv").fetchall())
    durable = sorted(raw_store(primary_dir(tmp_path)).rows)
    assert durable == [("", "", "manager"), ("", "", "other")], "DELETE of 'scorer' removed %r" % (
        sorted({("", "", "manager"), ("", "", "other")} - set(durable)),)
    assert got == [("manager", "primary"), ("other", "primary")], got


def test_updating_an_ephemeral_key_never_touches_a_durable_one(tmp_path, connect, run_py):
    table = tsql(tmp_path, ephemeral="ldk")
    con = connect(tmp_path / "a.db", table=table)
    con.execute("INSERT INTO kv VALUES ('', '', 'scorer', 's')")
    run_py('''
        con = connect(sys.argv[1], table=sys.argv[2])
        con.execute("INSERT INTO kv VALUES ('', '', 'other', 'o')")
    ''', args=[tmp_path / "b.db", table])
    con.execute("UPDATE kv SET value='s2' WHERE %s AND key='scorer'" % ROOT)
    assert sorted(con.execute("SELECT key, value FROM kv").fetchall()) == [("other", "o"), ("scorer", "s2")]


# ---------------------------------------------------------------------------
# no disk for cache-only transactions


def env_files(*dirs):
    """data.mdb: mtime and size; lock.mdb: size only.  lock.mdb's mtime is not
    a sign of a disk write: every LMDB read transaction (a plain SELECT too)
    writes its reader slot into lock.mdb's shared mapping, which moves the
    mtime once the kernel has written the page back."""
    out = {}
    for d in dirs:
        st = os.stat(os.path.join(str(d), "data.mdb"))
        out[os.path.join(str(d), "data.mdb")] = (st.st_mtime_ns, st.st_size)
        out[os.path.join(str(d), "lock.mdb")] = os.stat(os.path.join(str(d), "lock.mdb")).st_size
    return out


@pytest.mark.parametrize("with_backup", [False, True], ids=["primary", "primary+backup"])
def test_ephemeral_only_transactions_do_not_touch_the_disk(tmp_path, connect, with_backup):
    P, B = primary_dir(tmp_path), tmp_path / "data" / "backup"
    args = {"ephemeral": "ldk, cache"}
    if with_backup:
        args["backup"] = str(B)
    con = connect(tmp_path / "e.db", table=tsql(tmp_path, **args))
    con.execute("BEGIN")
    con.execute("INSERT INTO kv VALUES ('', '', 'manager', 'm')")
    con.execute("INSERT INTO kv VALUES ('', '', 'scorer', 's')")
    con.execute("COMMIT")
    dirs = [P, B] if with_backup else [P]
    raws = [raw_store(d) for d in dirs]
    os.sync()
    time.sleep(0.05)
    before = env_files(*dirs)
    con.execute("REPLACE INTO kv VALUES ('', '', 'scorer', randomblob(100000))")
    con.execute("BEGIN")
    con.execute("INSERT INTO kv VALUES ('', '', 'network_graph', randomblob(300000))")
    for i in range(50):
        con.execute("INSERT INTO kv VALUES ('cache', 'c', ?, ?)", ("k%02d" % i, i))
    con.execute("UPDATE kv SET value = value + 1 WHERE primary_namespace='cache' AND secondary_namespace='c'")
    con.execute("DELETE FROM kv WHERE primary_namespace='cache' AND secondary_namespace='c' AND key < 'k10'")
    con.execute("COMMIT")
    con.execute("DELETE FROM kv WHERE %s AND key='scorer'" % ROOT)
    after = env_files(*dirs)
    assert after == before, "a cache-only transaction changed %r" % [f for f in before if before[f] != after[f]]
    for d, r in zip(dirs, raws):
        now = raw_store(d)
        assert (now.last_epoch, now.last_txnid, now.rows) == (r.last_epoch, r.last_txnid, r.rows), (
            "a cache-only transaction wrote to %s" % d)
    assert con.execute("SELECT count(*) FROM kv WHERE primary_namespace='cache'").fetchone()[0] == 40


# ---------------------------------------------------------------------------
# rules changed between opens


def test_keys_now_ephemeral_are_not_served_from_the_primary(tmp_path, connect, run_py):
    P = primary_dir(tmp_path)
    run_py('''
        con = connect(sys.argv[1], table=sys.argv[2])
        con.execute("BEGIN")
        for k in ("manager", "scorer", "network_graph", "zzz"):
            con.execute("INSERT INTO kv VALUES ('', '', ?, ?)", (k, "durable " + k))
        con.execute("COMMIT")
    ''', args=[tmp_path / "old.db", tsql(tmp_path)])
    durable_ids = {k: v[0] for (_, _, k), v in raw_store(P).rows.items()}
    con = connect(tmp_path / "new.db", table=tsql(tmp_path, ephemeral="ldk"))
    assert keys(con, ROOT) == ["manager", "zzz"]
    assert keys(con, ROOT, "ORDER BY key DESC") == ["zzz", "manager"]
    assert value(con, "scorer") is None
    assert keys(con, ROOT + " AND key IN ('scorer', 'network_graph', 'manager')") == ["manager"]
    assert [k for _, k in newest_first(con)] == ["zzz", "manager"]
    assert con.execute("SELECT key FROM kv WHERE rowid=?", (durable_ids["scorer"],)).fetchall() == []
    assert con.execute("SELECT count(*) FROM kv").fetchone()[0] == 2
    # the key is free in the ephemeral tier; writing it leaves the disk alone
    con.execute("INSERT INTO kv VALUES ('', '', 'scorer', 'fresh cache')")
    assert con.execute("SELECT value, tier FROM kv WHERE %s AND key='scorer'" % ROOT).fetchall() == [
        ("fresh cache", "ephemeral")]
    assert keys(con, ROOT) == ["manager", "scorer", "zzz"]
    con.execute("DELETE FROM kv WHERE %s AND key='scorer'" % ROOT)
    con.execute("DELETE FROM kv WHERE %s AND key='network_graph'" % ROOT)
    assert keys(con, ROOT) == ["manager", "zzz"]
    raw = raw_store(P)
    assert raw.rows[("", "", "scorer")][2] == "durable scorer"
    # a table without the rule still serves them
    old = connect(tmp_path / "old.db", table=None)
    assert keys(old, ROOT) == ["manager", "network_graph", "scorer", "zzz"]


# ---------------------------------------------------------------------------
# snapshots


def test_statement_keeps_its_snapshot_of_ephemeral_rows(tmp_path, connect):
    table = tsql(tmp_path, ephemeral="cache, ldk")
    a = connect(tmp_path / "a.db", table=table)
    b = connect(tmp_path / "b.db", table=table)      # another database file: no SQLite lock between them
    a.execute("BEGIN")
    for i in range(10):
        a.execute("INSERT INTO kv VALUES ('cache', '', ?, ?)", ("k%d" % i, "old%d" % i))
    a.execute("INSERT INTO kv VALUES ('', '', 'scorer', 'old')")
    a.execute("INSERT INTO kv VALUES ('', '', 'manager', 'durable-old')")
    a.execute("COMMIT")
    expected = [("k%d" % i, "old%d" % i) for i in range(10)]
    for sql in ["SELECT key, value FROM kv WHERE primary_namespace='cache' AND secondary_namespace=''",
                "SELECT key, value FROM kv WHERE primary_namespace='cache' AND secondary_namespace='' "
                "ORDER BY key DESC",
                "SELECT key, value FROM kv WHERE primary_namespace='cache' AND secondary_namespace='' "
                "AND rowid < 1000000 ORDER BY rowid DESC"]:
        cur = a.execute(sql)
        first = [cur.fetchone() for _ in range(3)]
        b.execute("BEGIN")
        b.execute("UPDATE kv SET value='new' WHERE primary_namespace='cache'")
        b.execute("DELETE FROM kv WHERE primary_namespace='cache' AND secondary_namespace='' AND key IN ('k5','k6')")
        b.execute("INSERT INTO kv VALUES ('cache', '', 'k55', 'inserted')")
        b.execute("COMMIT")
        rest = cur.fetchall()
        want = expected if "key DESC" not in sql and "rowid" not in sql else expected[::-1]
        assert first + rest == want, sql
        # reset for the next query
        b.execute("BEGIN")
        b.execute("DELETE FROM kv WHERE primary_namespace='cache'")
        for i in range(10):
            b.execute("INSERT INTO kv VALUES ('cache', '', ?, ?)", ("k%d" % i, "old%d" % i))
        b.execute("COMMIT")
    # the root namespace mixes both tiers in one snapshot
    cur = a.execute("SELECT key, value FROM kv WHERE %s" % ROOT)
    first = cur.fetchone()
    b.execute("BEGIN")
    b.execute("REPLACE INTO kv VALUES ('', '', 'scorer', 'new')")
    b.execute("REPLACE INTO kv VALUES ('', '', 'manager', 'durable-new')")
    b.execute("INSERT INTO kv VALUES ('', '', 'network_graph', 'new')")
    b.execute("COMMIT")
    assert [first] + cur.fetchall() == [("manager", "durable-old"), ("scorer", "old")]
    assert a.execute("SELECT key, value FROM kv WHERE %s" % ROOT).fetchall() == [
        ("manager", "durable-new"), ("network_graph", "new"), ("scorer", "new")]


def test_point_reads_and_epochs_of_ephemeral_rows(eph):
    e1, = eph.execute("SELECT epoch FROM kv WHERE %s AND key='scorer'" % ROOT).fetchone()
    eph.execute("REPLACE INTO kv VALUES ('', '', 'scorer', 'next')")
    e2, = eph.execute("SELECT epoch FROM kv WHERE %s AND key='scorer'" % ROOT).fetchone()
    eph.execute("REPLACE INTO kv VALUES ('', '', 'manager', 'next')")
    e3, = eph.execute("SELECT epoch FROM kv WHERE %s AND key='manager'" % ROOT).fetchone()
    assert e1 < e2 < e3
    for v in (b"\x00\x01", 7, 2.5, "text", b""):
        eph.execute("REPLACE INTO kv VALUES ('', '', 'scorer', ?)", (v,))
        got = value(eph, "scorer")
        assert got == v and type(got) is type(v)


EPH_SCANS = [
    ("namespace", "SELECT key, value FROM kv WHERE primary_namespace='cache' AND secondary_namespace=''", False),
    ("namespace-desc", "SELECT key, value FROM kv WHERE primary_namespace='cache' AND secondary_namespace='' "
                       "ORDER BY key DESC", True),
    ("creation-desc", "SELECT key, value FROM kv WHERE primary_namespace='cache' AND secondary_namespace='' "
                      "ORDER BY rowid DESC", True),
    ("full", "SELECT key, value FROM kv WHERE primary_namespace='cache'", False),
]


@pytest.mark.parametrize("name, sql, desc", EPH_SCANS, ids=[s[0] for s in EPH_SCANS])
def test_own_statement_in_progress_across_commit(tmp_path, connect, name, sql, desc):
    """The ephemeral form of test_connections' test: rows the statement's
    transaction wrote do not vanish from it when that transaction commits."""
    con = connect(tmp_path / "own.db", table=tsql(tmp_path, ephemeral="cache"))
    con.execute("INSERT INTO kv VALUES ('cache', '', 'k00', 0)")
    con.execute("BEGIN")
    for i in range(1, 10):
        con.execute("INSERT INTO kv VALUES ('cache', '', ?, ?)", ("k%02d" % i, i))
    cur = con.execute(sql)
    first = cur.fetchmany(4)
    con.execute("COMMIT")
    rows = first + cur.fetchall()
    expected = [("k%02d" % i, i) for i in range(10)]
    assert rows == (expected[::-1] if desc else expected)
