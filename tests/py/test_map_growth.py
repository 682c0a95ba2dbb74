"""The LMDB map grows by itself (SPEC 2 map_size, SPEC 7).

A table created with a tiny map accepts far more data than the map holds,
in one big transaction and in many small ones; the user never sees
MDB_MAP_FULL.  Readers in the middle of a scan survive another connection
(same process) or another process growing the map.
"""
import hashlib
import json

import pytest

from conftest import run_python

MiB = 1 << 20
TABLE_1MIB = "CREATE VIRTUAL TABLE IF NOT EXISTS kv USING tierstore(primary='data/p', map_size='1MiB', durability='written')"


def blob(i, size):
    """A deterministic, incompressible-looking value of `size` bytes."""
    seed = hashlib.sha256(b"%d" % i).digest()
    return (seed * (size // len(seed) + 1))[:size]


RAW_INFO = '''
import lmdb
env = lmdb.open(sys.argv[1], max_dbs=8, readonly=True, lock=True, create=False)
print(json.dumps({"map_size": env.info()["map_size"], "last_pgno": env.info()["last_pgno"],
                  "psize": env.stat()["psize"]}))
'''


def raw_info(env_dir):
    return json.loads(run_python(RAW_INFO, args=[env_dir]).stdout)


def test_small_map_accepts_100_mib(tmp_path, connect):
    con = connect(tmp_path / "big.db", table=TABLE_1MIB)
    env = tmp_path / "data" / "p"
    assert (env / "data.mdb").is_file()
    # 100 values of 1 MiB in one transaction
    con.execute("BEGIN")
    for i in range(100):
        con.execute("INSERT INTO kv VALUES ('big', '', ?, ?)", ("v%03d" % i, blob(i, MiB)))
    con.execute("COMMIT")
    # then more in small transactions: 400 x 64 KiB, and a few small rows
    for i in range(400):
        con.execute("INSERT INTO kv VALUES ('small', '', ?, ?)", ("s%03d" % i, blob(1000 + i, 64 << 10)))
    # all readable
    rows = con.execute("SELECT key, value FROM kv WHERE primary_namespace='big' AND secondary_namespace=''")
    n = 0
    for k, v in rows:
        i = int(k[1:])
        assert v == blob(i, MiB), k
        n += 1
    assert n == 100
    got = con.execute("SELECT count(*), sum(length(value)) FROM kv WHERE primary_namespace='small'").fetchone()
    assert got == (400, 400 * (64 << 10))
    for i in (0, 199, 399):
        (v,), = con.execute("SELECT value FROM kv WHERE primary_namespace='small' AND secondary_namespace='' "
                            "AND key=?", ("s%03d" % i,))
        assert v == blob(1000 + i, 64 << 10)
    con.close()
    # the map grew past everything written; the file holds the data
    info = raw_info(env)
    size = (env / "data.mdb").stat().st_size
    assert size >= 125 * MiB
    assert info["map_size"] > 125 * MiB
    assert info["map_size"] >= (info["last_pgno"] + 1) * info["psize"]
    # still readable (and writable) in a new process
    out = run_python('''
        con = connect(sys.argv[1], table=None)
        print(json.dumps(con.execute("SELECT count(*), sum(length(value)) FROM kv").fetchone()))
        con.execute("INSERT INTO kv VALUES ('big', '', 'after', zeroblob(4194304))")
    ''', args=[tmp_path / "big.db"]).stdout
    assert json.loads(out) == [500, 100 * MiB + 400 * (64 << 10)]


def test_growth_with_failed_statements_in_between(tmp_path, connect):
    # a statement failing in a transaction that later grows the map leaves
    # no trace; the commit still lands whole
    con = connect(tmp_path / "g.db", table=TABLE_1MIB)
    con.execute("BEGIN")
    for i in range(8):
        con.execute("INSERT INTO kv VALUES ('g', '', ?, ?)", ("k%d" % i, blob(i, 512 << 10)))
    with pytest.raises(Exception):
        con.execute("INSERT INTO kv VALUES ('g', '', 'bad key', x'00')")
    con.execute("COMMIT")
    assert con.execute("SELECT count(*) FROM kv").fetchone()[0] == 8
    epochs = {r[0] for r in con.execute("SELECT epoch FROM kv")}
    assert len(epochs) == 1


SQL_SCANS = [
    ("namespace", "SELECT key, value FROM kv WHERE primary_namespace='scan' AND secondary_namespace=''", False),
    ("namespace-desc", "SELECT key, value FROM kv WHERE primary_namespace='scan' AND secondary_namespace='' "
                       "ORDER BY key DESC", True),
    ("creation-desc", "SELECT key, value FROM kv WHERE primary_namespace='scan' AND secondary_namespace='' "
                      "ORDER BY rowid DESC", True),
    ("full", "SELECT key, value FROM kv WHERE primary_namespace='scan'", False),
]


@pytest.mark.parametrize("reader", ["other-connection", "same-connection"])
@pytest.mark.parametrize("name, sql, desc", SQL_SCANS, ids=[s[0] for s in SQL_SCANS])
def test_reader_mid_scan_survives_growth_in_same_process(tmp_path, connect, name, sql, desc, reader):
    a = connect(tmp_path / "a.db", table=TABLE_1MIB)
    if reader == "same-connection":
        b = a                  # the writer's own read statement, still stepping
    else:
        b = connect(tmp_path / "b.db", table=TABLE_1MIB)   # same environment, other database
    n = 600
    a.execute("BEGIN")
    for i in range(n):
        a.execute("INSERT INTO kv VALUES ('scan', '', ?, ?)", ("k%04d" % i, blob(i, 700)))
    a.execute("COMMIT")
    order = list(range(n))[::-1] if desc else list(range(n))
    cur = b.execute(sql)
    first = cur.fetchmany(n // 2)
    # the other connection grows the map several times over, rewriting
    # the rows the reader still has to visit
    a.execute("BEGIN")
    for i in range(40):
        a.execute("INSERT INTO kv VALUES ('grow', '', ?, ?)", ("g%03d" % i, blob(5000 + i, MiB)))
    a.execute("UPDATE kv SET value = x'00' WHERE primary_namespace='scan'")
    a.execute("COMMIT")
    for i in range(10):
        a.execute("INSERT INTO kv VALUES ('grow', 'more', ?, zeroblob(2097152))", ("m%d" % i,))
    rest = cur.fetchall()
    rows = first + rest
    assert [k for k, _ in rows] == ["k%04d" % i for i in order]
    for k, v in rows:
        assert v == blob(int(k[1:]), 700), "%s changed under the reader" % k
    # a fresh statement sees the new state
    assert b.execute("SELECT count(*) FROM kv WHERE primary_namespace='grow'").fetchone()[0] == 50
    assert b.execute("SELECT value FROM kv WHERE primary_namespace='scan' AND secondary_namespace='' "
                     "AND key='k0000'").fetchone()[0] == b"\x00"


def test_growth_by_another_process(tmp_path, connect):
    # this process has the environment open with a small map; another
    # process grows it; reads and writes here adopt the new size
    a = connect(tmp_path / "a.db", table=TABLE_1MIB)
    a.execute("INSERT INTO kv VALUES ('x', '', 'before', 1)")
    cur = a.execute("SELECT key FROM kv")
    assert cur.fetchone() == ("before",)
    run_python('''
        con = connect(sys.argv[1], table=sys.argv[2])
        con.execute("BEGIN")
        for i in range(30):
            con.execute("INSERT INTO kv VALUES ('other', '', ?, zeroblob(1048576))", ("o%02d" % i,))
        con.execute("COMMIT")
    ''', args=[tmp_path / "b.db", TABLE_1MIB])
    assert cur.fetchall() == []                    # the old statement ends normally
    assert a.execute("SELECT count(*), sum(length(value)) FROM kv WHERE primary_namespace='other'").fetchone() \
        == (30, 30 * MiB)
    a.execute("BEGIN")
    for i in range(20):
        a.execute("INSERT INTO kv VALUES ('mine', '', ?, ?)", ("m%02d" % i, blob(i, MiB)))
    a.execute("COMMIT")
    for i in range(20):
        (v,), = a.execute("SELECT value FROM kv WHERE primary_namespace='mine' AND secondary_namespace='' "
                          "AND key=?", ("m%02d" % i,))
        assert v == blob(i, MiB)
    out = run_python('''
        con = connect(sys.argv[1], table=None)
        print(json.dumps(con.execute("SELECT count(*) FROM kv").fetchone()))
    ''', args=[tmp_path / "b.db"]).stdout
    assert json.loads(out) == [51]


def test_growth_with_backup_in_one_commit(tmp_path, connect):
    """Both environments start from a 1 MiB map and fill up in the middle of
    one commit: the primary's write grows and starts again while the
    backup's thread is applying the changes it was handed, and the backup's
    own write grows too.  The backup ends equal to the primary."""
    table = ("CREATE VIRTUAL TABLE IF NOT EXISTS kv USING tierstore(primary='data/p', backup='data/b', "
             "map_size='1MiB')")
    con = connect(tmp_path / "pb.db", table=table)
    for rnd in range(2):
        con.execute("BEGIN")
        for i in range(6000):
            con.execute("INSERT INTO kv VALUES ('ns', ?, ?, ?)", ("r%d" % rnd, "k%05d" % i, blob(i, 2000)))
        con.execute("COMMIT")
        con.execute("INSERT INTO kv(kv) VALUES ('verify')")   # fails on any difference
    got = con.execute("SELECT count(*), sum(length(value)) FROM kv").fetchone()
    assert got == (12000, 12000 * 2000)
    (v,), = con.execute("SELECT value FROM kv WHERE primary_namespace='ns' AND secondary_namespace='r1' "
                        "AND key='k04321'")
    assert v == blob(4321, 2000)
    con.close()
    for env in ("p", "b"):
        info = raw_info(tmp_path / "data" / env)
        assert info["map_size"] > 20 * MiB, (env, info)
