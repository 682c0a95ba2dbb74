"""Debian's sqlite-utils command-line tool on a tierstore table (issue 11 item 4).

The table is declared in the main schema of a database file (created with
the sqlite3 module), so every `sqlite-utils ... --load-extension=EXT` run
finds it; its relative primary resolves against the database file's
directory, and sqlite-utils runs from another directory to show it.

What works (sqlite-utils 3.30, Debian 12):
  - `query` (JSON out, BLOBs as {"$base64": true, "encoded": ...}), `rows`,
    `bulk` with REPLACE INTO (the real upsert), admin commands through `query`;
  - `insert` (a batch is one multi-row INSERT: one existing key fails the
    whole batch), `insert --replace` (upsert keeping creation numbers),
    `insert --ignore`; JSON input's {"$base64": ...} values become BLOBs.
  - `upsert --pk primary_namespace --pk secondary_namespace --pk key` only
    updates keys that exist: sqlite-utils runs `INSERT OR IGNORE INTO
    kv(<pks>)` without the value, which breaks value NOT NULL and is ignored,
    then an UPDATE that finds nothing, so a new key is silently dropped
    (simonw/sqlite-utils#538, the same on ordinary tables with NOT NULL).
  - SQL UPSERT (ON CONFLICT DO UPDATE) is refused by SQLite for virtual
    tables, so no sqlite-utils version can use it here.
The tool must be installed: without it these tests fail (CI installs it).
"""
import base64
import json
import os
import shutil
import subprocess

import pytest

from conftest import EXT, child_env, open_connection, table_rows

TABLE = "CREATE VIRTUAL TABLE kv USING tierstore(primary='data/primary')"


@pytest.fixture(scope="module")
def sqlite_utils():
    path = shutil.which("sqlite-utils")
    assert path, "sqlite-utils is not installed (Debian package sqlite-utils); these tests need it"
    return path


@pytest.fixture
def dbfile(tmp_path):
    """tmp_path/db/db.sqlite with kv in its main schema; yields (path, connection)."""
    (tmp_path / "db").mkdir()
    path = tmp_path / "db" / "db.sqlite"
    con = open_connection(path, table=TABLE)
    yield path, con
    con.close()


@pytest.fixture
def su(sqlite_utils, tmp_path):
    """su(*args, input=None, load=True) runs sqlite-utils from another directory."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def _run(*args, input=None, load=True):
        argv = [sqlite_utils] + [str(a) for a in args] + (["--load-extension=" + EXT] if load else [])
        return subprocess.run(argv, input=input, capture_output=True, text=True, timeout=120,
                              cwd=str(elsewhere), env=child_env())
    return _run


def ok(proc):
    assert proc.returncode == 0, "sqlite-utils failed (rc=%d):\n%s%s" % (proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout


def put(con, *rows):
    con.execute("BEGIN")
    for r in rows:
        con.execute("INSERT INTO kv VALUES (?,?,?,?)", r)
    con.execute("COMMIT")


def rowid_of(con, pns, sns, key):
    row = con.execute("SELECT rowid FROM kv WHERE primary_namespace=? AND secondary_namespace=? AND key=?",
                      (pns, sns, key)).fetchone()
    return row and row[0]


def b64(data):
    return {"$base64": True, "encoded": base64.b64encode(data).decode()}


# ---------------------------------------------------------------------------
# query and rows


def test_query_outputs_json(dbfile, su):
    path, con = dbfile
    put(con, ("a", "", "k1", b"\x00\x01\xff"), ("a", "", "k2", "text"), ("a", "b", "k3", 3), ("a", "", "k4", 1.5))
    out = ok(su("query", path,
                "select rowid, key, value, typeof(value) as t, epoch, tier from kv "
                "where primary_namespace = :p and secondary_namespace = '' order by rowid desc",
                "-p", "p", "a"))
    assert json.loads(out) == [
        {"rowid": 4, "key": "k4", "value": 1.5, "t": "real", "epoch": 1, "tier": "primary"},
        {"rowid": 2, "key": "k2", "value": "text", "t": "text", "epoch": 1, "tier": "primary"},
        {"rowid": 1, "key": "k1", "value": b64(b"\x00\x01\xff"), "t": "blob", "epoch": 1, "tier": "primary"},
    ]
    # a point read and the JSON of SELECT *: the four visible columns
    out = ok(su("query", path, "select * from kv where primary_namespace='a' and secondary_namespace='b' "
                               "and key='k3'"))
    assert json.loads(out) == [{"primary_namespace": "a", "secondary_namespace": "b", "key": "k3", "value": 3}]


def test_query_without_the_extension_fails(dbfile, su):
    path, con = dbfile
    put(con, ("a", "", "k1", b"x"))
    proc = su("query", path, "select * from kv", load=False)
    assert proc.returncode != 0
    assert "no such module: tierstore" in proc.stderr


def test_rows_command(dbfile, su):
    path, con = dbfile
    put(con, ("b", "", "z", b"1"), ("a", "x", "y", "2"), ("", "", "root", 3))
    out = ok(su("rows", path, "kv"))
    assert json.loads(out) == [      # a full scan: ordered by (pns, sns, key)
        {"primary_namespace": "", "secondary_namespace": "", "key": "root", "value": 3},
        {"primary_namespace": "a", "secondary_namespace": "x", "key": "y", "value": "2"},
        {"primary_namespace": "b", "secondary_namespace": "", "key": "z", "value": b64(b"1")},
    ]


def test_admin_commands_through_query(dbfile, su):
    path, con = dbfile
    put(con, ("a", "", "k", b"x"))
    out = ok(su("query", path, "insert into kv(kv) values ('sync')"))
    assert json.loads(out) == [{"rows_affected": 1}]        # no row is written: SQLite counts the xUpdate call
    assert table_rows(con) == [("a", "", "k", b"x", 1, 1, "primary")]
    proc = su("query", path, "insert into kv(kv) values ('verify')")
    assert proc.returncode != 0
    assert "tierstore: verify needs a backup" in proc.stderr


# ---------------------------------------------------------------------------
# insert


def test_insert_json_rows(dbfile, su):
    path, con = dbfile
    put(con, ("a", "", "old", b"o"))
    rows = [
        {"primary_namespace": "a", "secondary_namespace": "", "key": "blob", "value": b64(b"\x00\x2a")},
        {"primary_namespace": "a", "secondary_namespace": "", "key": "text", "value": "hello"},
        {"primary_namespace": "a", "key": "int", "value": 42},          # no secondary: NULL means ''
        {"primary_namespace": "a", "secondary_namespace": "s", "key": "real", "value": 2.5},
    ]
    ok(su("insert", path, "kv", "-", input=json.dumps(rows)))
    got = con.execute("SELECT primary_namespace, secondary_namespace, key, value, typeof(value), rowid "
                      "FROM kv ORDER BY rowid").fetchall()
    assert got == [("a", "", "old", b"o", "blob", 1),
                   ("a", "", "blob", b"\x00\x2a", "blob", 2),     # one commit: consecutive, in input order
                   ("a", "", "text", "hello", "text", 3),
                   ("a", "", "int", 42, "integer", 4),
                   ("a", "s", "real", 2.5, "real", 5)]
    assert len({e for (e,) in con.execute("SELECT epoch FROM kv WHERE rowid > 1")}) == 1


def test_insert_existing_key_fails_the_batch(dbfile, su):
    path, con = dbfile
    put(con, ("a", "", "k", b"old"))
    before = table_rows(con)
    rows = [{"primary_namespace": "a", "secondary_namespace": "", "key": "new", "value": "n"},
            {"primary_namespace": "a", "secondary_namespace": "", "key": "k", "value": "dup"}]
    proc = su("insert", path, "kv", "-", input=json.dumps(rows))
    assert proc.returncode != 0
    assert "tierstore: kv: UNIQUE constraint failed" in proc.stderr
    assert "('a', '', 'k')" in proc.stderr
    assert table_rows(con) == before           # "new" was undone with the statement


def test_insert_replace_keeps_creation_numbers(dbfile, su):
    path, con = dbfile
    put(con, ("a", "", "k1", b"1"), ("a", "", "k2", b"2"))
    rows = [{"primary_namespace": "a", "secondary_namespace": "", "key": "k1", "value": "one"},
            {"primary_namespace": "a", "secondary_namespace": "", "key": "k9", "value": "nine"}]
    ok(su("insert", path, "kv", "-", "--replace", input=json.dumps(rows)))
    assert con.execute("SELECT rowid, key, value FROM kv ORDER BY rowid").fetchall() == [
        (1, "k1", "one"), (2, "k2", b"2"), (3, "k9", "nine")]


def test_insert_ignore_skips_existing(dbfile, su):
    path, con = dbfile
    put(con, ("a", "", "k1", b"1"))
    rows = [{"primary_namespace": "a", "secondary_namespace": "", "key": "k1", "value": "ignored"},
            {"primary_namespace": "a", "secondary_namespace": "", "key": "k2", "value": "two"}]
    ok(su("insert", path, "kv", "-", "--ignore", input=json.dumps(rows)))
    assert con.execute("SELECT rowid, key, value FROM kv ORDER BY rowid").fetchall() == [
        (1, "k1", b"1"), (2, "k2", "two")]


def test_insert_broken_name_refused(dbfile, su):
    path, con = dbfile
    rows = [{"primary_namespace": "a", "secondary_namespace": "", "key": "fine", "value": "1"},
            {"primary_namespace": "a", "secondary_namespace": "", "key": "bad key", "value": "2"}]
    proc = su("insert", path, "kv", "-", input=json.dumps(rows))
    assert proc.returncode != 0
    assert "Error: tierstore:" in proc.stderr
    assert "key 'bad key' breaks the ldk name rule" in proc.stderr
    assert table_rows(con) == []


def test_insert_alter_refused(dbfile, su):
    path, con = dbfile
    rows = [{"primary_namespace": "a", "secondary_namespace": "", "key": "k", "value": "1", "extra": 2}]
    proc = su("insert", path, "kv", "-", "--alter", input=json.dumps(rows))
    assert proc.returncode != 0
    assert "virtual tables may not be altered" in proc.stderr
    proc = su("insert", path, "kv", "-", input=json.dumps(rows))
    assert proc.returncode != 0
    assert "no column named extra" in proc.stderr
    assert table_rows(con) == []


# ---------------------------------------------------------------------------
# upsert


def test_upsert_by_names_updates_existing_keys_only(dbfile, su):
    path, con = dbfile
    put(con, ("a", "", "k1", b"1"), ("a", "", "k2", b"2"))
    rows = [{"primary_namespace": "a", "secondary_namespace": "", "key": "k2", "value": "two"},
            {"primary_namespace": "a", "secondary_namespace": "", "key": "k3", "value": "three"}]
    proc = su("upsert", path, "kv", "-", "--pk", "primary_namespace", "--pk", "secondary_namespace",
              "--pk", "key", input=json.dumps(rows))
    ok(proc)
    # k2 updated in place (creation number kept) ...
    assert con.execute("SELECT rowid, value FROM kv WHERE primary_namespace='a' AND secondary_namespace='' "
                       "AND key='k2'").fetchall() == [(2, "two")]
    # ... and k3 silently dropped: sqlite-utils' INSERT OR IGNORE INTO kv(<pks>)
    # leaves value NULL, which the table refuses, and OR IGNORE skips the row
    # (simonw/sqlite-utils#538).  Use `insert --replace` or `bulk` instead.
    assert rowid_of(con, "a", "", "k3") is None
    assert [r[2] for r in table_rows(con)] == ["k1", "k2"]


def test_upsert_by_rowid_updates_by_creation_number(dbfile, su):
    path, con = dbfile
    put(con, ("a", "", "k1", b"1"), ("b", "c", "k2", b"2"))
    rows = [{"rowid": 2, "value": "by creation number"}, {"rowid": 99, "value": "no such row"}]
    ok(su("upsert", path, "kv", "-", "--pk", "rowid", input=json.dumps(rows)))
    assert table_rows(con) == [("a", "", "k1", b"1", 1, 1, "primary"),
                               ("b", "c", "k2", "by creation number", 2, 2, "primary")]


def test_sql_upsert_is_refused_for_virtual_tables(dbfile, su):
    path, con = dbfile
    proc = su("query", path, "insert into kv values ('a', '', 'k', 'v') "
                             "on conflict do update set value = excluded.value")
    assert proc.returncode != 0
    assert 'UPSERT not implemented for virtual table "kv"' in proc.stderr


def test_bulk_replace_is_the_upsert(dbfile, su):
    path, con = dbfile
    put(con, ("a", "", "k1", b"1"), ("a", "", "k2", b"2"))
    rows = [{"pns": "a", "sns": "", "key": "k1", "value": "one"},
            {"pns": "a", "sns": "", "key": "k3", "value": "three"}]
    ok(su("bulk", path, "REPLACE INTO kv(primary_namespace, secondary_namespace, key, value) "
                        "VALUES (:pns, :sns, :key, :value)", "-", input=json.dumps(rows)))
    assert con.execute("SELECT rowid, key, value FROM kv ORDER BY rowid").fetchall() == [
        (1, "k1", "one"), (2, "k2", b"2"), (3, "k3", "three")]
    # newest first, as list_paginated pages
    assert json.loads(ok(su("query", path, "select key from kv where primary_namespace='a' and "
                                           "secondary_namespace='' order by rowid desc limit 2"))) == [
        {"key": "k3"}, {"key": "k2"}]
    assert os.path.isfile(path.parent / "data" / "primary" / "data.mdb")     # relative to the db file
