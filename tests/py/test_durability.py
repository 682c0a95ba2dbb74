"""Durability settings, epochs of empty transactions, admin commands and the
mapping of errors to SQLite codes / Python exception classes (SPEC 4, 7, 8).
"""
import json
import os
import sqlite3

import pytest

from conftest import table_sql


def epoch_of_new_write(con, key):
    con.execute("INSERT INTO kv VALUES ('probe', '', ?, 1)", (key,))
    (e,), = con.execute("SELECT epoch FROM kv WHERE primary_namespace='probe' AND secondary_namespace='' "
                        "AND key=?", (key,))
    assert isinstance(e, int)
    return e


# ---------------------------------------------------------------------------
# durability=durable|written


@pytest.mark.parametrize("durability", ["durable", "written", None])
def test_durability_commits_and_persists_across_processes(tmp_path, run_py, durability):
    args = {} if durability is None else {"durability": durability}
    create = table_sql(primary="data/p", **args)
    run_py('''
        con = connect(sys.argv[1], table=sys.argv[2])
        con.execute("INSERT INTO kv VALUES ('d', '', 'auto', 'autocommit')")
        con.execute("BEGIN")
        for i in range(50):
            con.execute("INSERT INTO kv VALUES ('d', '', ?, ?)", ("k%02d" % i, i))
        con.execute("COMMIT")
        con.execute("BEGIN")
        con.execute("UPDATE kv SET value = value * 2 WHERE primary_namespace='d' AND key LIKE 'k%'")
        con.execute("DELETE FROM kv WHERE primary_namespace='d' AND secondary_namespace='' AND key='k00'")
        con.execute("COMMIT")
        # the process ends without closing anything
        os._exit(0)
    ''', args=[tmp_path / "d.db", create])
    out = run_py('''
        con = connect(sys.argv[1], table=None)
        print(json.dumps(con.execute("SELECT key, value, epoch FROM kv WHERE primary_namespace='d'").fetchall()))
    ''', args=[tmp_path / "d.db"]).stdout
    rows = json.loads(out)
    assert rows[0] == ["auto", "autocommit", 1]
    assert rows[1:] == [["k%02d" % i, 2 * i, 3] for i in range(1, 50)]


def test_tables_of_both_durabilities_on_one_environment(tmp_path, connect):
    a = connect(tmp_path / "a.db", table=table_sql(primary="data/p", durability="durable"))
    b = connect(tmp_path / "b.db", table=table_sql(primary="data/p", durability="written"))
    a.execute("INSERT INTO kv VALUES ('x', '', 'from_durable', 1)")
    b.execute("INSERT INTO kv VALUES ('x', '', 'from_written', 2)")
    rows = a.execute("SELECT key, epoch FROM kv WHERE primary_namespace='x' AND secondary_namespace=''").fetchall()
    assert rows == [("from_durable", 1), ("from_written", 2)]


# ---------------------------------------------------------------------------
# transactions that touch nothing


NOTHING = [
    ("begin-commit", ["BEGIN", "COMMIT"]),
    ("read-only", ["BEGIN", "SELECT * FROM kv", "SELECT count(*) FROM kv WHERE primary_namespace='probe'", "COMMIT"]),
    ("autocommit-select", ["SELECT * FROM kv"]),
    ("delete-missing", ["DELETE FROM kv WHERE primary_namespace='probe' AND secondary_namespace='' AND key='nope'"]),
    ("update-nothing", ["UPDATE kv SET value=5 WHERE primary_namespace='nobody'"]),
    ("insert-or-ignore-existing", ["INSERT OR IGNORE INTO kv VALUES ('probe', '', 'p0', 99)"]),
    ("failed-statement", ["BEGIN", "INSERT INTO kv VALUES ('probe', '', 'bad key', 1)", "COMMIT"]),
    ("rolled-back-savepoint", ["BEGIN", "SAVEPOINT s", "INSERT INTO kv VALUES ('probe', '', 'sp', 1)",
                               "ROLLBACK TO s", "RELEASE s", "COMMIT"]),
    ("rollback", ["BEGIN", "INSERT INTO kv VALUES ('probe', '', 'rb', 1)", "ROLLBACK"]),
    ("sync-command", ["INSERT INTO kv(kv) VALUES ('sync')"]),
]


@pytest.mark.parametrize("name, statements", NOTHING, ids=[n for n, _ in NOTHING])
def test_transaction_touching_nothing_does_not_bump_epoch(db, name, statements):
    e0 = epoch_of_new_write(db, "p0")
    for sql in statements:
        try:
            db.execute(sql)
        except sqlite3.IntegrityError:
            assert name == "failed-statement"
    assert not db.in_transaction
    assert epoch_of_new_write(db, "p1") == e0 + 1
    assert db.execute("SELECT value FROM kv WHERE key='p0'").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM kv").fetchone()[0] == 2


def test_empty_transactions_in_other_connection_do_not_bump_epoch(tmp_path, connect):
    a = connect(tmp_path / "x.db")
    b = connect(tmp_path / "x.db")
    e0 = epoch_of_new_write(a, "p0")
    for _ in range(5):
        b.execute("BEGIN")
        b.execute("SELECT * FROM kv").fetchall()
        b.execute("COMMIT")
    assert epoch_of_new_write(a, "p1") == e0 + 1


# ---------------------------------------------------------------------------
# admin commands


def test_sync_command(tmp_path, connect, run_py):
    con = connect(tmp_path / "s.db", table=table_sql(primary="data/p", durability="written"))
    con.execute("INSERT INTO kv VALUES ('s', '', 'k', 'synced')")
    con.execute("INSERT INTO kv(kv) VALUES ('sync')")
    con.execute("INSERT INTO kv(kv) VALUES ('sync')")
    con.execute("BEGIN")
    con.execute("INSERT INTO kv(kv) VALUES ('sync')")
    con.execute("COMMIT")
    assert con.execute("SELECT count(*) FROM kv").fetchone()[0] == 1   # no row for the command
    out = run_py('''
        con = connect(sys.argv[1], table=None)
        print(json.dumps(con.execute("SELECT key, value FROM kv").fetchall()))
        con.execute("INSERT INTO kv(kv) VALUES ('sync')")
    ''', args=[tmp_path / "s.db"]).stdout
    assert json.loads(out) == [["k", "synced"]]


def test_command_column_follows_table_name(tmp_path, connect):
    con = connect(tmp_path / "n.db", table="CREATE VIRTUAL TABLE store USING tierstore(primary='data/p')")
    con.execute("INSERT INTO store(store) VALUES ('sync')")
    with pytest.raises(sqlite3.OperationalError) as ei:
        con.execute("INSERT INTO store(store) VALUES ('frobnicate')")
    assert str(ei.value).startswith("tierstore:")
    assert "frobnicate" in str(ei.value)


# ---------------------------------------------------------------------------
# errors -> SQLite codes -> Python exception classes


def raises(exc, con, sql, params=(), errorname=None):
    with pytest.raises(exc) as ei:
        con.execute(sql, params)
    assert type(ei.value) is exc, "%s raised %s, not %s" % (sql, type(ei.value).__name__, exc.__name__)
    msg = str(ei.value)
    assert msg.startswith("tierstore:"), msg
    if errorname is not None and hasattr(ei.value, "sqlite_errorname"):
        assert ei.value.sqlite_errorname.startswith(errorname), (sql, ei.value.sqlite_errorname)
    return msg


@pytest.mark.parametrize("sql, errorname", [
    ("INSERT INTO kv VALUES ('ns', '', 'dup', 2)", "SQLITE_CONSTRAINT_UNIQUE"),
    ("UPDATE kv SET key='dup' WHERE key='other'", "SQLITE_CONSTRAINT"),
    ("INSERT INTO kv VALUES ('n s', '', 'k', 1)", "SQLITE_CONSTRAINT"),
    ("INSERT INTO kv VALUES ('ns', '', '', 1)", "SQLITE_CONSTRAINT"),
    ("INSERT INTO kv VALUES ('ns', '', NULL, 1)", "SQLITE_CONSTRAINT"),
    ("INSERT INTO kv VALUES ('ns', '', 'k', NULL)", "SQLITE_CONSTRAINT"),
    ("INSERT INTO kv VALUES ('ns', '', 5, 1)", "SQLITE_CONSTRAINT"),
    ("INSERT INTO kv VALUES ('', 'sub', 'k', 1)", "SQLITE_CONSTRAINT"),
    ("UPDATE kv SET value=NULL WHERE key='dup'", "SQLITE_CONSTRAINT"),
    ("UPDATE kv SET key='bad/key' WHERE key='dup'", "SQLITE_CONSTRAINT"),
    ("INSERT INTO kv(primary_namespace, secondary_namespace, key, value, tier) VALUES ('ns','','t',1,'ephemeral')",
     "SQLITE_CONSTRAINT"),
    ("UPDATE kv SET epoch=1 WHERE key='dup'", "SQLITE_CONSTRAINT"),
    ("INSERT INTO kv(rowid, primary_namespace, secondary_namespace, key, value) VALUES (77, 'ns', '', 'r', 1)",
     "SQLITE_CONSTRAINT"),
], ids=lambda x: x if not x.startswith("SQLITE") else "")
def test_constraint_violations_are_integrity_errors(db, sql, errorname):
    db.execute("INSERT INTO kv VALUES ('ns', '', 'dup', 1)")
    db.execute("INSERT INTO kv VALUES ('ns', '', 'other', 1)")
    raises(sqlite3.IntegrityError, db, sql, errorname=errorname)
    # nothing of the failed statement is kept
    assert sorted(db.execute("SELECT key, value FROM kv")) == [("dup", 1), ("other", 1)]


@pytest.mark.parametrize("sql", [
    "INSERT INTO kv(kv) VALUES ('unknown-command')",
    "INSERT INTO kv(kv) VALUES ('SYNC ')",
    "INSERT INTO kv(kv) VALUES (42)",
])
def test_unknown_commands_are_operational_errors(db, sql):
    msg = raises(sqlite3.OperationalError, db, sql, errorname="SQLITE_ERROR")
    assert "command" in msg


def test_command_column_takes_insert_only(db):
    db.execute("INSERT INTO kv VALUES ('ns', '', 'k', 1)")
    with pytest.raises(sqlite3.DatabaseError) as ei:
        db.execute("UPDATE kv SET kv='sync' WHERE key='k'")
    assert str(ei.value).startswith("tierstore:")
    assert db.execute("SELECT value FROM kv").fetchone() == (1,)


def test_primary_that_is_a_file_cannot_open(tmp_path, connect):
    (tmp_path / "afile").write_bytes(b"not a directory")
    con = connect(tmp_path / "f.db", table=None)
    msg = raises(sqlite3.OperationalError, con,
                 "CREATE VIRTUAL TABLE kv USING tierstore(primary='afile')", errorname="SQLITE_CANTOPEN")
    assert "afile" in msg


def test_damaged_environment_is_corrupt(tmp_path, connect):
    env = tmp_path / "damaged"
    env.mkdir()
    (env / "data.mdb").write_bytes(os.urandom(64 << 10))
    con = connect(tmp_path / "c.db", table=None)
    with pytest.raises(sqlite3.DatabaseError) as ei:
        con.execute("CREATE VIRTUAL TABLE kv USING tierstore(primary='damaged')")
    # SQLITE_CORRUPT is a plain DatabaseError, not one of its subclasses
    assert type(ei.value) is sqlite3.DatabaseError, type(ei.value)
    assert str(ei.value).startswith("tierstore:")
    assert "damaged" in str(ei.value)
    if hasattr(ei.value, "sqlite_errorname"):
        assert ei.value.sqlite_errorname.startswith("SQLITE_CORRUPT")


def test_wrong_format_version_is_corrupt(tmp_path, connect, run_py):
    run_py('''
        connect(sys.argv[1], table="CREATE VIRTUAL TABLE kv USING tierstore(primary='data/p')")
    ''', args=[tmp_path / "v.db"])
    run_py('''
        import lmdb, struct
        env = lmdb.open(sys.argv[1], max_dbs=8)
        meta = env.open_db(b"meta")
        with env.begin(write=True) as txn:
            txn.put(b"format_version", struct.pack(">Q", 999), db=meta)
        env.close()
    ''', args=[tmp_path / "data" / "p"])
    con = connect(tmp_path / "w.db", table=None)
    with pytest.raises(sqlite3.DatabaseError) as ei:
        con.execute("CREATE VIRTUAL TABLE kv USING tierstore(primary='data/p')")
    assert type(ei.value) is sqlite3.DatabaseError, type(ei.value)
    assert str(ei.value).startswith("tierstore:")
    assert "999" in str(ei.value) or "version" in str(ei.value)


def test_directonly_refuses_triggers_and_views(db):
    db.execute("CREATE TABLE plain(x)")
    db.execute("CREATE TRIGGER t AFTER INSERT ON plain BEGIN "
               "INSERT INTO kv VALUES ('trig', '', 'k' || new.x, new.x); END")
    with pytest.raises(sqlite3.OperationalError):
        db.execute("INSERT INTO plain VALUES (1)")
    db.execute("CREATE VIEW v AS SELECT key FROM kv")
    with pytest.raises(sqlite3.OperationalError):
        db.execute("SELECT * FROM v").fetchall()
    assert db.execute("SELECT count(*) FROM kv").fetchone()[0] == 0
