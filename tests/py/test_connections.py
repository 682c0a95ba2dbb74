"""Two connections of one process on one primary environment (SPEC 2, 4, 6).

Each test runs twice: both connections on the same database file, and on
two database files whose tables point at the same primary directory.
"""
import sqlite3

import pytest


@pytest.fixture(params=["same-db", "two-dbs"])
def pair(request, tmp_path, connect):
    if request.param == "same-db":
        a = connect(tmp_path / "one.db")
        b = connect(tmp_path / "one.db")
    else:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        shared = tmp_path / "shared"
        # one table by absolute path, the other by a relative path that
        # resolves against its own database's directory
        a = connect(tmp_path / "a" / "a.db",
                    table="CREATE VIRTUAL TABLE kv USING tierstore(primary='%s')" % shared)
        b = connect(tmp_path / "b" / "b.db",
                    table="CREATE VIRTUAL TABLE kv USING tierstore(primary='../shared')")
    return a, b


def value(con, key, pns="ns", sns=""):
    r = con.execute("SELECT value FROM kv WHERE primary_namespace=? AND secondary_namespace=? AND key=?",
                    (pns, sns, key)).fetchone()
    return None if r is None else r[0]


def epoch(con, key, pns="ns", sns=""):
    r = con.execute("SELECT epoch FROM kv WHERE primary_namespace=? AND secondary_namespace=? AND key=?",
                    (pns, sns, key)).fetchone()
    assert r is not None, "key %r missing" % key
    return r[0]


def keys(con, pns="ns", sns=""):
    return [r[0] for r in con.execute(
        "SELECT key FROM kv WHERE primary_namespace=? AND secondary_namespace=?", (pns, sns))]


def test_uncommitted_invisible_then_visible_after_commit(pair):
    a, b = pair
    a.execute("BEGIN")
    a.execute("INSERT INTO kv VALUES ('ns', '', 'k1', 'v1')")
    a.execute("INSERT INTO kv VALUES ('ns', '', 'k2', 'v2')")
    assert value(a, "k1") == "v1"                 # own writes are visible
    assert keys(a) == ["k1", "k2"]
    assert value(b, "k1") is None                 # the other connection's are not
    assert keys(b) == []
    assert b.execute("SELECT count(*) FROM kv").fetchone()[0] == 0
    a.execute("COMMIT")
    assert value(b, "k1") == "v1"
    assert keys(b) == ["k1", "k2"]
    # and the other direction, with updates and deletes
    b.execute("BEGIN")
    b.execute("UPDATE kv SET value='v1b' WHERE primary_namespace='ns' AND secondary_namespace='' AND key='k1'")
    b.execute("DELETE FROM kv WHERE primary_namespace='ns' AND secondary_namespace='' AND key='k2'")
    assert value(a, "k1") == "v1" and keys(a) == ["k1", "k2"]
    assert value(b, "k1") == "v1b" and keys(b) == ["k1"]
    b.execute("COMMIT")
    assert value(a, "k1") == "v1b" and keys(a) == ["k1"]


def test_rollback_discards(pair):
    a, b = pair
    a.execute("INSERT INTO kv VALUES ('ns', '', 'keep', 1)")
    a.execute("BEGIN")
    a.execute("INSERT INTO kv VALUES ('ns', '', 'gone', 2)")
    a.execute("UPDATE kv SET value=100 WHERE key='keep'")
    a.execute("ROLLBACK")
    assert keys(a) == ["keep"] and value(a, "keep") == 1
    assert keys(b) == ["keep"] and value(b, "keep") == 1
    # after a rollback the connection keeps working normally
    a.execute("BEGIN")
    a.execute("INSERT INTO kv VALUES ('ns', '', 'later', 3)")
    a.execute("COMMIT")
    assert keys(b) == ["keep", "later"]


def test_savepoints_undo_exactly_their_part(pair):
    a, b = pair
    a.execute("BEGIN")
    a.execute("INSERT INTO kv VALUES ('ns', '', 'outer', 1)")
    a.execute("SAVEPOINT s1")
    a.execute("INSERT INTO kv VALUES ('ns', '', 'inner', 2)")
    a.execute("UPDATE kv SET value=10 WHERE key='outer'")
    a.execute("ROLLBACK TO s1")
    assert keys(a) == ["outer"] and value(a, "outer") == 1
    a.execute("SAVEPOINT s2")
    a.execute("INSERT INTO kv VALUES ('ns', '', 'kept', 3)")
    a.execute("RELEASE s2")
    a.execute("COMMIT")
    assert keys(b) == ["kept", "outer"] and value(b, "outer") == 1


def test_epoch_increases_by_one_per_commit(pair):
    a, b = pair
    a.execute("INSERT INTO kv VALUES ('ns', '', 'k0', 0)")
    e0 = epoch(a, "k0")
    assert isinstance(e0, int) and e0 >= 1
    expected = e0
    for i in range(1, 21):
        con = (a, b)[i % 2]
        con.execute("BEGIN")
        con.execute("INSERT INTO kv VALUES ('ns', '', ?, ?)", ("k%d" % i, i))
        con.execute("REPLACE INTO kv VALUES ('ns', '', 'shared', ?)", (i,))
        # uncommitted rows have no epoch yet
        assert epoch(con, "k%d" % i) is None
        con.execute("COMMIT")
        expected += 1
        for c in (a, b):
            assert epoch(c, "k%d" % i) == expected
            assert epoch(c, "shared") == expected
    # older rows keep the epoch of the commit that last wrote them
    assert epoch(b, "k0") == e0
    assert epoch(b, "k1") == e0 + 1


def test_epoch_is_read_only(pair):
    a, _ = pair
    with pytest.raises(sqlite3.IntegrityError) as ei:
        a.execute("INSERT INTO kv(primary_namespace, secondary_namespace, key, value, epoch) VALUES ('ns','','k',1,5)")
    assert str(ei.value).startswith("tierstore:")
    assert "epoch" in str(ei.value)


def test_statement_in_progress_keeps_its_snapshot(pair):
    a, b = pair
    # In rollback-journal mode SQLite itself refuses a COMMIT while another
    # connection of the same database file reads (SQLITE_BUSY); WAL lets the
    # writer commit, which is what this test is about.
    for c in pair:
        assert c.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    a.execute("BEGIN")
    for i in range(100):
        a.execute("INSERT INTO kv VALUES ('ns', '', ?, ?)", ("k%03d" % i, "old"))
    a.execute("COMMIT")
    for sql in ("SELECT key, value FROM kv WHERE primary_namespace='ns' AND secondary_namespace=''",
                "SELECT key, value FROM kv WHERE primary_namespace='ns' AND secondary_namespace='' ORDER BY key DESC",
                "SELECT key, value FROM kv WHERE primary_namespace='ns' AND secondary_namespace='' ORDER BY rowid DESC",
                "SELECT key, value FROM kv"):
        cur = b.execute(sql)
        first = cur.fetchmany(50)
        assert len(first) == 50
        # the other connection rewrites everything, adds and deletes keys
        a.execute("BEGIN")
        a.execute("UPDATE kv SET value='new' WHERE primary_namespace='ns'")
        a.execute("INSERT INTO kv VALUES ('ns', '', 'k050a', 'added')")
        a.execute("INSERT INTO kv VALUES ('ns', '', 'k999', 'added')")
        a.execute("INSERT INTO kv VALUES ('ns', '', 'a000', 'added')")
        for k in ("k000", "k049", "k050", "k099"):
            a.execute("DELETE FROM kv WHERE primary_namespace='ns' AND secondary_namespace='' AND key=?", (k,))
        a.execute("COMMIT")
        rest = cur.fetchall()
        rows = first + rest
        assert len(rows) == 100, sql
        assert sorted(k for k, _ in rows) == ["k%03d" % i for i in range(100)], sql
        assert {v for _, v in rows} == {"old"}, sql
        # a new statement sees the new state; put the old one back
        assert value(b, "k001") == "new"
        assert value(b, "k050a") == "added"
        a.execute("BEGIN")
        a.execute("DELETE FROM kv")
        for i in range(100):
            a.execute("INSERT INTO kv VALUES ('ns', '', ?, ?)", ("k%03d" % i, "old"))
        a.execute("COMMIT")


def test_update_scanning_its_rows_touches_each_once(pair):
    a, b = pair
    a.execute("BEGIN")
    for i in range(300):
        a.execute("INSERT INTO kv VALUES ('ns', '', ?, ?)", ("k%03d" % i, i))
    a.execute("COMMIT")
    a.execute("UPDATE kv SET value = value + 1000 WHERE primary_namespace='ns' AND secondary_namespace=''")
    assert a.execute("SELECT changes()").fetchone()[0] == 300
    assert [r[0] for r in b.execute("SELECT value FROM kv WHERE primary_namespace='ns'")] == \
        [i + 1000 for i in range(300)]
    # the same inside a transaction, over rows partly in the delta
    a.execute("BEGIN")
    for i in range(300, 350):
        a.execute("INSERT INTO kv VALUES ('ns', '', ?, ?)", ("k%03d" % i, i + 1000))
    a.execute("UPDATE kv SET value = value + 1000 WHERE primary_namespace='ns'")
    assert a.execute("SELECT changes()").fetchone()[0] == 350
    a.execute("COMMIT")
    assert [r[0] for r in b.execute("SELECT value FROM kv WHERE primary_namespace='ns'")] == \
        [i + 2000 for i in range(350)]


@pytest.mark.parametrize("where", [
    "primary_namespace='ns' AND secondary_namespace=''",
    "primary_namespace='ns' AND secondary_namespace='' AND rowid > 0",
    "primary_namespace='ns' AND secondary_namespace='' AND key >= 'k'",
    "1",
], ids=["namespace", "rowid-range", "key-range", "full-scan"])
def test_update_moving_rows_touches_each_once(pair, where):
    # Renaming moves a row to a new key with a new (larger) creation number:
    # a scan must not meet the moved rows again.
    a, b = pair
    a.execute("BEGIN")
    for i in range(100):
        a.execute("INSERT INTO kv VALUES ('ns', '', ?, ?)", ("k%03d" % i, i))
    a.execute("COMMIT")
    old_rowids = {k: r for k, r in a.execute("SELECT key, rowid FROM kv")}
    a.execute("UPDATE kv SET key = key || 'x' WHERE " + where)
    assert a.execute("SELECT changes()").fetchone()[0] == 100
    rows = b.execute("SELECT key, value, rowid FROM kv WHERE primary_namespace='ns'").fetchall()
    assert [r[0] for r in rows] == ["k%03dx" % i for i in range(100)]
    assert [r[1] for r in rows] == list(range(100))
    assert min(r[2] for r in rows) > max(old_rowids.values())
    a.execute("DELETE FROM kv WHERE " + where)
    assert a.execute("SELECT changes()").fetchone()[0] == 100
    assert b.execute("SELECT count(*) FROM kv").fetchone()[0] == 0


def test_commit_retried_after_busy_writes_once(tmp_path, connect):
    # Rollback-journal mode: a reader of the same database file makes
    # SQLite's COMMIT fail with SQLITE_BUSY after tierstore's xSync ran.
    # The retried COMMIT calls xSync again, which must not write the delta
    # a second time (SPEC 4): one epoch, rows written once.
    a = connect(tmp_path / "one.db", timeout=0.1)
    b = connect(tmp_path / "one.db", timeout=0.1)
    a.execute("CREATE TABLE plain(x)")
    a.execute("INSERT INTO plain VALUES (1), (2)")
    a.execute("INSERT INTO kv VALUES ('ns', '', 'base', 0)")
    e0 = epoch(a, "base")
    a.execute("BEGIN")
    a.execute("INSERT INTO kv VALUES ('ns', '', 'n1', 1)")
    a.execute("INSERT INTO kv VALUES ('ns', '', 'n2', 2)")
    cur = b.execute("SELECT x FROM plain")
    cur.fetchone()                                   # b holds a read lock
    busy = False
    try:
        a.execute("COMMIT")
    except sqlite3.OperationalError as e:
        assert "locked" in str(e) or "busy" in str(e), e
        busy = True
    assert busy, "SQLite did not report SQLITE_BUSY: the retry path is not exercised"
    cur.fetchall()
    a.execute("COMMIT")                              # the retry
    assert not a.in_transaction
    assert keys(b) == ["base", "n1", "n2"]
    assert epoch(b, "n1") == epoch(b, "n2") == e0 + 1
    rowids = [r[0] for r in b.execute("SELECT rowid FROM kv ORDER BY key")]
    assert len(set(rowids)) == 3
    a.execute("INSERT INTO kv VALUES ('ns', '', 'n3', 3)")
    assert epoch(b, "n3") == e0 + 2


SCANS = [
    ("namespace", "SELECT key, value FROM kv WHERE primary_namespace='ns' AND secondary_namespace=''", False),
    ("namespace-desc", "SELECT key, value FROM kv WHERE primary_namespace='ns' AND secondary_namespace='' "
                       "ORDER BY key DESC", True),
    ("creation-desc", "SELECT key, value FROM kv WHERE primary_namespace='ns' AND secondary_namespace='' "
                      "ORDER BY rowid DESC", True),
    ("full", "SELECT key, value FROM kv", False),
]


@pytest.mark.parametrize("name, sql, desc", SCANS, ids=[s[0] for s in SCANS])
def test_own_statement_in_progress_across_commit(tmp_path, connect, name, sql, desc):
    # SQLite lets a connection COMMIT while one of its read statements is
    # still stepping.  The statement read "one consistent snapshot of the
    # committed data, plus its own transaction's delta" (SPEC 6): the rows
    # its transaction wrote must not vanish from it when that transaction
    # commits.
    con = connect(tmp_path / "own.db")
    con.execute("INSERT INTO kv VALUES ('ns', '', 'k00', 0)")        # committed before
    con.execute("BEGIN")
    for i in range(1, 10):
        con.execute("INSERT INTO kv VALUES ('ns', '', ?, ?)", ("k%02d" % i, i))
    cur = con.execute(sql)
    first = cur.fetchmany(4)
    con.execute("COMMIT")
    rows = first + cur.fetchall()
    expected = [("k%02d" % i, i) for i in range(10)]
    assert rows == (expected[::-1] if desc else expected)


def rowid(con, key, pns="ns", sns=""):
    r = con.execute("SELECT rowid FROM kv WHERE primary_namespace=? AND secondary_namespace=? AND key=?",
                    (pns, sns, key)).fetchone()
    assert r is not None, "key %r missing" % key
    return r[0]


@pytest.fixture(params=["primary", "ephemeral"])
def racing(request, tmp_path, connect):
    """Two connections on one primary through two database files (so each
    can hold a write transaction), writing namespace 'ns' of the tier named
    by the parameter."""
    eph = ", ephemeral='ns'" if request.param == "ephemeral" else ""
    shared = tmp_path / "shared"
    cons = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        cons.append(connect(tmp_path / name / (name + ".db"),
                            table="CREATE VIRTUAL TABLE kv USING tierstore(primary='%s'%s)" % (shared, eph)))
    return cons


def test_key_created_meanwhile_keeps_its_creation_number(racing):
    """SPEC 3: a creation number is kept when the value is replaced.  A
    transaction that created a key which another connection created and
    committed meanwhile replaces it at COMMIT: the key keeps the number the
    other commit gave it (crash harness finding, seed 734932970)."""
    a, b = racing
    a.execute("BEGIN")
    a.execute("REPLACE INTO kv VALUES ('ns', '', 'k', 'from a')")
    a.execute("INSERT INTO kv VALUES ('ns', '', 'only-a', 'x')")
    b.execute("INSERT INTO kv VALUES ('ns', '', 'k', 'from b')")
    first = rowid(b, "k")
    a.execute("COMMIT")
    assert value(b, "k") == "from a"               # the last writer wins
    assert rowid(b, "k") == first                  # and keeps the creation number
    assert rowid(b, "only-a") > first              # a key it did create gets a new one


def test_key_deleted_meanwhile_gets_a_new_creation_number(racing):
    """SPEC 3: a key that is deleted and created again gets a new number,
    also when the delete came from another connection while this one's
    transaction overwrote the key."""
    a, b = racing
    a.execute("INSERT INTO kv VALUES ('ns', '', 'k', 'v0')")
    before = rowid(a, "k")
    a.execute("BEGIN")
    a.execute("UPDATE kv SET value='v1' WHERE primary_namespace='ns' AND secondary_namespace='' AND key='k'")
    b.execute("DELETE FROM kv WHERE primary_namespace='ns' AND secondary_namespace='' AND key='k'")
    b.execute("INSERT INTO kv VALUES ('ns', '', 'other', 'x')")
    other = rowid(b, "other")
    a.execute("COMMIT")
    assert value(b, "k") == "v1"
    assert rowid(b, "k") > other > before


def test_key_deleted_and_created_again_meanwhile_created_elsewhere(racing):
    """A transaction that deleted a stored key and created it again gives
    it a new creation number, even when the key is stored at COMMIT."""
    a, b = racing
    a.execute("INSERT INTO kv VALUES ('ns', '', 'k', 'v0')")
    before = rowid(a, "k")
    a.execute("BEGIN")
    a.execute("DELETE FROM kv WHERE primary_namespace='ns' AND secondary_namespace='' AND key='k'")
    a.execute("INSERT INTO kv VALUES ('ns', '', 'k', 'again')")
    b.execute("REPLACE INTO kv VALUES ('ns', '', 'k', 'from b')")
    assert rowid(b, "k") == before
    a.execute("COMMIT")
    assert value(b, "k") == "again"
    assert rowid(b, "k") > before
