"""Where a table's data lives, and finding it again (SPEC 2).

Relative `primary` paths resolve against the directory of the database file
that declares the table (the current directory for in-memory and temporary
databases); DROP TABLE never deletes data.
"""
import json
import os
import sqlite3

import pytest

from conftest import open_connection


def write_rows(con, n=10, tag="v"):
    con.execute("BEGIN")
    for i in range(n):
        con.execute("REPLACE INTO kv VALUES ('ns', '', ?, ?)", ("k%02d" % i, "%s%d" % (tag, i)))
    con.execute("COMMIT")


def all_rows(con, table="kv"):
    return [tuple(r) for r in con.execute(
        "SELECT primary_namespace, secondary_namespace, key, value FROM %s" % table)]


READ_BACK = '''
con = connect(sys.argv[1], table=None)
print(json.dumps(con.execute("SELECT primary_namespace, secondary_namespace, key, value FROM kv").fetchall()))
'''


def test_relative_primary_resolves_against_database_directory(tmp_path, connect, run_py, monkeypatch):
    a = tmp_path / "A"
    elsewhere = tmp_path / "elsewhere"
    a.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)      # the creating process's cwd is not A either
    con = connect(a / "app.db", table="CREATE VIRTUAL TABLE kv USING tierstore(primary='data/p')")
    write_rows(con)
    expected = all_rows(con)
    con.close()
    assert (a / "data" / "p" / "data.mdb").is_file()
    assert not (elsewhere / "data").exists()
    # another process, another cwd, the database named absolutely ...
    out = run_py(READ_BACK, cwd=elsewhere, args=[a / "app.db"]).stdout
    assert [tuple(r) for r in json.loads(out)] == expected
    # ... and relatively from a third directory
    third = tmp_path / "third" / "deeper"
    third.mkdir(parents=True)
    out = run_py(READ_BACK, cwd=third, args=["../../A/app.db"]).stdout
    assert [tuple(r) for r in json.loads(out)] == expected
    assert not (elsewhere / "data").exists()
    assert not (third / "data").exists()
    assert sorted(os.listdir(a)) == ["app.db", "data"]


def test_database_moved_with_its_data_finds_it(tmp_path, connect, run_py):
    a = tmp_path / "A"
    a.mkdir()
    con = connect(a / "app.db", table="CREATE VIRTUAL TABLE kv USING tierstore(primary='data/p')")
    write_rows(con)
    expected = all_rows(con)
    con.close()
    # moving the whole directory moves the data with the database
    # (a new process: this one may keep the environment open)
    os.rename(a, tmp_path / "B")
    out = run_py(READ_BACK, cwd=tmp_path, args=[tmp_path / "B" / "app.db"]).stdout
    assert [tuple(r) for r in json.loads(out)] == expected
    assert not (a / "data").exists()


@pytest.mark.parametrize("dbname", [":memory:", ""], ids=["memory", "temporary"])
def test_in_memory_database_uses_cwd(tmp_path, run_py, dbname):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    run_py('''
        con = connect(sys.argv[1], table="CREATE VIRTUAL TABLE kv USING tierstore(primary='data/p')")
        con.execute("INSERT INTO kv VALUES ('ns', '', 'k', 'from memory')")
    ''', cwd=cwd, args=[dbname])
    assert (cwd / "data" / "p" / "data.mdb").is_file()
    out = run_py('''
        con = connect(sys.argv[1], table="CREATE VIRTUAL TABLE kv USING tierstore(primary='data/p')")
        print(json.dumps(con.execute("SELECT key, value FROM kv").fetchall()))
    ''', cwd=cwd, args=[dbname]).stdout
    assert json.loads(out) == [["k", "from memory"]]
    # a file database in the same cwd naming the same relative directory
    # shares the data too
    out = run_py('''
        con = connect("file.db", table="CREATE VIRTUAL TABLE kv USING tierstore(primary='data/p')")
        print(json.dumps(con.execute("SELECT key, value FROM kv").fetchall()))
    ''', cwd=cwd).stdout
    assert json.loads(out) == [["k", "from memory"]]


def test_attached_database_resolves_against_its_own_directory(tmp_path, connect):
    x, y = tmp_path / "X", tmp_path / "Y"
    x.mkdir()
    y.mkdir()
    con = connect(x / "main.db", table=None)
    con.execute("ATTACH ? AS aux", (str(y / "aux.db"),))
    con.execute("CREATE VIRTUAL TABLE aux.kv USING tierstore(primary='data/p')")
    con.execute("INSERT INTO aux.kv VALUES ('ns', '', 'k', 1)")
    assert (y / "data" / "p" / "data.mdb").is_file()
    assert not (x / "data").exists()
    con.close()
    con = connect(y / "aux.db", table=None)
    assert all_rows(con) == [("ns", "", "k", 1)]


def test_drop_table_leaves_files_and_recreate_finds_data(tmp_path, connect):
    path = tmp_path / "app.db"
    con = connect(path, table="CREATE VIRTUAL TABLE kv USING tierstore(primary='data/p')")
    write_rows(con)
    expected = all_rows(con)
    env = tmp_path / "data" / "p"
    files = sorted(os.listdir(env))
    size = (env / "data.mdb").stat().st_size
    con.execute("DROP TABLE kv")
    assert con.execute("SELECT count(*) FROM sqlite_master WHERE name='kv'").fetchone()[0] == 0
    with pytest.raises(sqlite3.OperationalError):
        con.execute("SELECT * FROM kv")
    assert sorted(os.listdir(env)) == files
    assert (env / "data.mdb").stat().st_size == size
    # re-created on the same primary: the old data is there
    con.execute("CREATE VIRTUAL TABLE kv USING tierstore(primary='data/p')")
    assert all_rows(con) == expected
    # under another name and through an absolute path too
    con.execute("CREATE VIRTUAL TABLE other USING tierstore(primary='%s')" % env)
    assert all_rows(con, "other") == expected
    con.execute("INSERT INTO other VALUES ('ns', '', 'via_other', 'x')")
    assert ("ns", "", "via_other", "x") in all_rows(con, "kv")
    con.execute("DROP TABLE other")
    con.execute("DROP TABLE kv")
    con.close()
    # and from a fresh connection after the drops
    con = connect(path, table="CREATE VIRTUAL TABLE kv2 USING tierstore(primary='data/p')")
    assert len(all_rows(con, "kv2")) == len(expected) + 1
    # the old rows keep their creation numbers
    rowids = [r[0] for r in con.execute("SELECT rowid FROM kv2 ORDER BY rowid")]
    assert rowids == sorted(set(rowids)) and len(rowids) == len(expected) + 1


def test_drop_table_in_new_process_leaves_data(tmp_path, run_py):
    run_py('''
        con = connect(sys.argv[1], table="CREATE VIRTUAL TABLE kv USING tierstore(primary='data/p')")
        con.execute("INSERT INTO kv VALUES ('ns', '', 'k', 'kept')")
    ''', args=[tmp_path / "app.db"])
    run_py('''
        con = connect(sys.argv[1], table=None)
        con.execute("DROP TABLE kv")
    ''', args=[tmp_path / "app.db"])
    assert (tmp_path / "data" / "p" / "data.mdb").is_file()
    out = run_py('''
        con = connect(sys.argv[1], table="CREATE VIRTUAL TABLE kv USING tierstore(primary='data/p')")
        print(json.dumps(con.execute("SELECT key, value FROM kv").fetchall()))
    ''', args=[tmp_path / "app.db"]).stdout
    assert json.loads(out) == [["k", "kept"]]


@pytest.mark.parametrize("args, named", [
    ("primary='data/p', bogus=1", "bogus"),
    ("primary='data/p', primary='data/q'", "primary"),
    ("primary='data/p', map_size='12XB'", "map_size"),
    ("primary='data/p', durability='sometimes'", "durability"),
    ("primary='data/p', names='none'", "names"),
    ("map_size='1MiB'", "primary"),
])
def test_rejected_create_touches_no_disk(tmp_path, connect, args, named):
    con = connect(tmp_path / "app.db", table=None)
    with pytest.raises(sqlite3.OperationalError) as ei:
        con.execute("CREATE VIRTUAL TABLE kv USING tierstore(%s)" % args)
    msg = str(ei.value)
    assert msg.startswith("tierstore:"), msg
    assert named in msg, msg
    assert not (tmp_path / "data").exists()
    assert con.execute("SELECT count(*) FROM sqlite_master WHERE name='kv'").fetchone()[0] == 0


def test_module_outlives_the_connection_that_loaded_it(tmp_path):
    # SPEC 1: the module stays loaded (it owns process-wide environments)
    # after the connection that loaded it closes; another connection on the
    # same environment keeps working.
    first = open_connection(tmp_path / "a.db", table="CREATE VIRTUAL TABLE kv USING tierstore(primary='data/p')")
    second = open_connection(tmp_path / "b.db", table="CREATE VIRTUAL TABLE kv USING tierstore(primary='data/p')")
    first.execute("INSERT INTO kv VALUES ('ns', '', 'k1', 1)")
    first.close()
    second.execute("INSERT INTO kv VALUES ('ns', '', 'k2', 2)")
    assert all_rows(second) == [("ns", "", "k1", 1), ("ns", "", "k2", 2)]
    second.close()
    third = open_connection(tmp_path / "a.db", table=None)
    assert all_rows(third) == [("ns", "", "k1", 1), ("ns", "", "k2", 2)]
    third.close()
