"""Several processes writing one primary environment at once (SPEC 2, 4, 9).

Writers commit many transactions that all rewrite the same keys; every
transaction also writes one log key of its own (never overwritten) that
records the epoch the transaction got.  Afterwards the epochs must form the
sequence 1..commits, follow each process's own order, and the shared keys
must hold the value of the newest epoch, never a mix of transactions.
Readers (SQL and raw LMDB) run meanwhile and check that no transaction is
ever half visible and that epochs never go back.

This module never loads the extension itself, so python3-lmdb may open the
environments in this process (LMDB forbids one environment opened twice in
a process).
"""
import json
import sqlite3
import struct
import time

import pytest

from conftest import RawStore, decode_key, run_python, start_python

NKEYS = 5           # shared keys rewritten by every transaction
TXNS = 500          # transactions per writer
WRITERS = 3

WRITER = '''
import random
db, primary, durability, proc, txns, nkeys, start = sys.argv[1:8]
proc, txns, nkeys = int(proc), int(txns), int(nkeys)
con = connect(db, table="CREATE VIRTUAL TABLE IF NOT EXISTS kv USING tierstore("
              "primary='%s', durability='%s')" % (primary, durability))
rng = random.Random(proc)
errors = []
last_seen = 0
while not os.path.exists(start):
    time.sleep(0.001)
for c in range(txns):
    marker = "%d-%d-%08x" % (proc, c, rng.getrandbits(32))
    order = list(range(nkeys))
    rng.shuffle(order)
    con.execute("BEGIN")
    for k in order:
        con.execute("REPLACE INTO kv VALUES ('shared', '', ?, ?)", ("k%d" % k, "%d:%d:%s" % (proc, c, marker)))
    con.execute("INSERT INTO kv VALUES ('log', ?, ?, ?)", ("p%d" % proc, "c%05d" % c, marker))
    con.execute("COMMIT")
    if c % 7 == 0:
        rows = con.execute("SELECT value, epoch FROM kv WHERE primary_namespace='shared' "
                           "AND secondary_namespace=''").fetchall()
        if len(rows) != nkeys or len({v.split(':')[2] for v, _ in rows}) != 1 or len({e for _, e in rows}) != 1:
            errors.append(("mixed", c, rows))
        elif rows[0][1] < last_seen:
            errors.append(("epoch went back", c, last_seen, rows[0][1]))
        else:
            last_seen = rows[0][1]
print(json.dumps({"proc": proc, "errors": errors[:5]}))
'''

SQL_READER = '''
db, primary, stop, nkeys = sys.argv[1:5]
nkeys = int(nkeys)
con = connect(db, table="CREATE VIRTUAL TABLE IF NOT EXISTS kv USING tierstore(primary='%s')" % primary)
errors = []
reads = 0
last = 0
while True:
    done = os.path.exists(stop)
    rows = con.execute("SELECT key, value, epoch FROM kv WHERE primary_namespace='shared' "
                       "AND secondary_namespace=''").fetchall()
    reads += 1
    if rows:
        markers = {v.split(':')[2] for _, v, _ in rows}
        epochs = {e for _, _, e in rows}
        if len(rows) != nkeys or len(markers) != 1 or len(epochs) != 1:
            errors.append(("half-visible transaction", rows))
        else:
            e = epochs.pop()
            if e < last:
                errors.append(("epoch went back", last, e))
            last = e
    if done:
        break
print(json.dumps({"reads": reads, "errors": errors[:5]}))
'''

LMDB_READER = '''
import lmdb, struct
primary, stop, nkeys = sys.argv[1:4]
nkeys = int(nkeys)
env = lmdb.open(primary, max_dbs=8, readonly=True, lock=True, create=False)
meta = env.open_db(b"meta"); data = env.open_db(b"data")
errors = []
reads = 0
last = 0
while True:
    done = os.path.exists(stop)
    try:
        with env.begin() as txn:
            if env.info()["last_txnid"] > txn.id() + 1:
                continue        # a commit in flight: begin again (README, reading without tierstore)
            le = struct.unpack(">Q", txn.get(b"last_epoch", db=meta))[0]
            recs = []
            for i in range(nkeys):
                v = txn.get(b"shared\\0\\0k%d" % i, db=data)
                if v is not None:
                    recs.append((struct.unpack(">QQ", v[:16])[1], bytes(v[17:]).decode().split(":")[2]))
    except lmdb.MapResizedError:
        env.set_mapsize(0)
        continue
    reads += 1
    if le < last:
        errors.append(("last_epoch went back", last, le))
    last = le
    if recs:
        if len(recs) != nkeys or len(set(recs)) != 1:
            errors.append(("half-visible transaction", recs))
        elif recs[0][0] > le:
            errors.append(("row epoch beyond last_epoch", recs[0][0], le))
    if done:
        break
print(json.dumps({"reads": reads, "errors": errors[:5]}))
'''

DUMP = '''
db, primary = sys.argv[1:3]
con = connect(db, table="CREATE VIRTUAL TABLE IF NOT EXISTS kv USING tierstore(primary='%s')" % primary)
rows = con.execute("SELECT primary_namespace, secondary_namespace, key, value, typeof(value), rowid, epoch "
                   "FROM kv").fetchall()
out = []
for p, s, k, v, t, r, e in rows:
    if isinstance(v, bytes):
        v = v.hex()
    out.append([p, s, k, v, t, r, e])
print(json.dumps(out))
'''


def sql_dump(db, primary):
    out = run_python(DUMP, args=[db, primary], timeout=60).stdout
    return [tuple(r) for r in json.loads(out)]


@pytest.mark.parametrize("durability", ["durable", "written"])
def test_concurrent_writers(tmp_path, durability):
    primary = tmp_path / "primary"
    start, stop = tmp_path / "start", tmp_path / "stop"
    # writers 0 and 1 share one database file (WAL), the others have their
    # own database file naming the same primary by absolute path
    shared_db = tmp_path / "shared.db"
    c = sqlite3.connect(str(shared_db))
    assert c.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    c.close()
    dbs = [shared_db, shared_db] + [tmp_path / ("own%d.db" % i) for i in range(2, WRITERS)]
    # create the environment and the tables before the race starts
    for d in set(dbs) | {tmp_path / "reader.db"}:
        run_python("connect(sys.argv[1], table=\"CREATE VIRTUAL TABLE IF NOT EXISTS kv USING tierstore("
                   "primary='%s', durability='%s')\")" % (primary, durability), args=[d])

    writers = [start_python(WRITER, args=[dbs[i], primary, durability, i, TXNS, NKEYS, start])
               for i in range(WRITERS)]
    readers = [start_python(SQL_READER, args=[tmp_path / "reader.db", primary, stop, NKEYS]),
               start_python(LMDB_READER, args=[primary, stop, NKEYS])]
    start.touch()
    t0 = time.time()
    results = []
    try:
        for p in writers:
            out, err = p.communicate(timeout=50)
            assert p.returncode == 0, "writer failed:\n%s\n%s" % (out, err)
            results.append(json.loads(out))
    finally:
        stop.touch()
        for p in writers + readers:
            if p.poll() is None:
                try:
                    p.wait(timeout=20)
                except Exception:
                    p.kill()
    elapsed = time.time() - t0
    for r in results:
        assert r["errors"] == [], "writer %d saw: %r" % (r["proc"], r["errors"])
    for p in readers:
        out, err = p.communicate(timeout=20)
        assert p.returncode == 0, "reader failed:\n%s\n%s" % (out, err)
        r = json.loads(out)
        assert r["errors"] == [], "reader saw: %r" % (r["errors"],)
        assert r["reads"] >= 1

    total = WRITERS * TXNS
    rows = sql_dump(tmp_path / "reader.db", primary)
    log = {(s, k): (v, e) for p, s, k, v, t, r, e in rows if p == "log"}
    shared = {k: (v, e, r) for p, s, k, v, t, r, e in rows if p == "shared"}
    assert len(log) == total, "%d log keys for %d commits" % (len(log), total)
    epochs = sorted(e for _, e in log.values())
    # one epoch per committed transaction: exactly 1..total, no gaps, no reuse
    assert epochs == list(range(1, total + 1))
    by_epoch = {e: (s, k, v) for (s, k), (v, e) in log.items()}
    # the writers really ran at the same time (else this tests nothing)
    owners = [by_epoch[e][0] for e in range(1, total + 1)]
    switches = sum(1 for a, b in zip(owners, owners[1:]) if a != b)
    assert switches >= WRITERS, "commits of the writers did not interleave (%d switches)" % switches
    # each process's transactions got increasing epochs, in its own order
    for proc in range(WRITERS):
        mine = [log[("p%d" % proc, "c%05d" % c)][1] for c in range(TXNS)]
        assert mine == sorted(mine), "process %d commits out of epoch order" % proc
    # the shared keys hold the newest commit's values, all of one transaction
    assert sorted(shared) == ["k%d" % i for i in range(NKEYS)]
    s, k, marker = by_epoch[total]
    for key, (v, e, _) in shared.items():
        assert e == total, (key, e)
        proc, c, m = v.split(":")
        assert m == marker, "key %s holds %s, the newest commit (epoch %d) wrote %s" % (key, v, total, marker)
        assert (s, k) == ("p%s" % proc, "c%05d" % int(c))
    # the raw environment agrees with SQL
    raw = RawStore(primary)
    assert raw.last_epoch == total
    check_raw_matches_sql(raw, rows)
    assert elapsed < 50


def check_raw_matches_sql(raw, sql_rows):
    """The LMDB layout (SPEC 9 / README) agrees with what SQL shows."""
    assert len(raw.meta[b"store_id"]) == 16
    assert raw.meta_u64(b"format_version") >= 1
    sql = {}
    for p, s, k, v, t, r, e in sql_rows:
        if t == "blob":
            v = bytes.fromhex(v)
        sql[(p, s, k)] = (r, e, v)
    assert raw.rows == sql
    # data keys are pns \\0 sns \\0 key, in LMDB (memcmp) order
    assert raw.data_keys == sorted(raw.data_keys)
    assert [decode_key(k) for k in raw.data_keys] == sorted(sql, key=lambda t: tuple(x.encode() for x in t))
    # epochs and creation numbers stay within the metadata's counters
    assert max(e for _, e, _ in sql.values()) <= raw.last_epoch
    rowids = [r for r, _, _ in sql.values()]
    assert len(set(rowids)) == len(rowids)
    assert max(rowids) < raw.next_rowid
    # the rowid index maps each live rowid to its encoded key, nothing else
    enc = {r: (p.encode() + b"\0" + s.encode() + b"\0" + k.encode()) for (p, s, k), (r, _, _) in sql.items()}
    assert {struct.unpack(">Q", k)[0]: v for k, v in raw.rowids} == enc
    # the creation index: one entry per live row, its key ending in the
    # rowid (8 BE) and its value the key name (how the namespace part of the
    # index key is encoded is the README's business)
    names = {r: k.encode() for (p, s, k), (r, _, _) in sql.items()}
    created = {}
    for k, v in raw.created:
        created[struct.unpack(">Q", k[-8:])[0]] = v
    assert len(raw.created) == len(sql)
    assert created == names


def test_raw_layout_matches_sql(tmp_path):
    primary = tmp_path / "primary"
    run_python('''
        con = connect(sys.argv[1], table="CREATE VIRTUAL TABLE kv USING tierstore(primary='%s')" % sys.argv[2])
        con.execute("BEGIN")
        con.execute("INSERT INTO kv VALUES ('ns', 'sub', 'int', 42)")
        con.execute("INSERT INTO kv VALUES ('ns', 'sub', 'neg', -2)")
        con.execute("INSERT INTO kv VALUES ('ns', 'sub', 'big', 9223372036854775807)")
        con.execute("INSERT INTO kv VALUES ('ns', '', 'float', -1.25)")
        con.execute("INSERT INTO kv VALUES ('ns', '', 'text', 'h\\u00e9llo')")
        con.execute("INSERT INTO kv VALUES ('', '', 'blob', x'00ff00')")
        con.execute("INSERT INTO kv VALUES ('', '', 'empty', x'')")
        con.execute("INSERT INTO kv VALUES ('ns', '', 'gone', 1)")
        con.execute("COMMIT")
        con.execute("DELETE FROM kv WHERE key='gone'")
        con.execute("REPLACE INTO kv VALUES ('ns', 'sub', 'int', 43)")
        con.execute("UPDATE kv SET key='moved' WHERE key='neg'")
    ''', args=[tmp_path / "x.db", primary])
    rows = sql_dump(tmp_path / "x.db", primary)
    raw = RawStore(primary)
    check_raw_matches_sql(raw, rows)
    assert raw.last_epoch == 4
    # the exact record encoding of a few values
    import lmdb
    env = lmdb.open(str(primary), max_dbs=8, readonly=True, lock=True)
    try:
        data = env.open_db(b"data")
        with env.begin() as txn:
            v = txn.get(b"ns\0sub\0int", db=data)
            assert v[8:16] == struct.pack(">Q", 3) and v[16:] == b"\x01" + struct.pack(">q", 43)
            v = txn.get(b"ns\0sub\0moved", db=data)
            assert v[8:16] == struct.pack(">Q", 4) and v[16:] == b"\x01" + struct.pack(">q", -2)
            v = txn.get(b"ns\0\0float", db=data)
            assert v[8:16] == struct.pack(">Q", 1) and v[16:] == b"\x02" + struct.pack(">d", -1.25)
            v = txn.get(b"ns\0\0text", db=data)
            assert v[16:] == b"\x03" + "h\u00e9llo".encode()
            v = txn.get(b"\0\0blob", db=data)
            assert v[16:] == b"\x04\x00\xff\x00"
            v = txn.get(b"\0\0empty", db=data)
            assert v[16:] == b"\x04"
            assert txn.get(b"ns\0\0gone", db=data) is None
            assert txn.get(b"ns\0sub\0neg", db=data) is None
    finally:
        env.close()
    by_key = {(p, s, k): r for p, s, k, v, t, r, e in rows}
    assert by_key[("ns", "sub", "moved")] > max(r for key, r in by_key.items() if key[2] != "moved")


LOOPER = '''
db, primary, nkeys, tag = sys.argv[1:5]
con = connect(db, table="CREATE VIRTUAL TABLE IF NOT EXISTS kv USING tierstore(primary='%s')" % primary)
c = 0
while True:
    con.execute("BEGIN")
    for k in range(int(nkeys)):
        con.execute("REPLACE INTO kv VALUES ('shared', '', ?, ?)", ("k%d" % k, "%s:%d:m%d" % (tag, c, c)))
    con.execute("INSERT INTO kv VALUES ('log', ?, ?, ?)", (tag, "c%05d" % c, "m%d" % c))
    con.execute("COMMIT")
    c += 1
'''


def last_epoch(primary):
    import lmdb
    env = lmdb.open(str(primary), max_dbs=8, readonly=True, lock=True, create=False)
    try:
        meta = env.open_db(b"meta")
        with env.begin() as txn:
            return struct.unpack(">Q", txn.get(b"last_epoch", db=meta))[0]
    finally:
        env.close()


def test_writer_killed_mid_stream(tmp_path):
    # A writer killed with SIGKILL (possibly inside a commit) leaves every
    # transaction whole or absent, and the others keep writing.
    primary = tmp_path / "primary"
    run_python("connect(sys.argv[1], table=sys.argv[2])",
               args=[tmp_path / "setup.db", "CREATE VIRTUAL TABLE kv USING tierstore(primary='%s')" % primary])
    for round_ in range(3):
        p = start_python(LOOPER, args=[tmp_path / ("loop%d.db" % round_), primary, NKEYS, "r%d" % round_])
        target = last_epoch(primary) + 150
        deadline = time.time() + 30
        try:
            while last_epoch(primary) < target:
                assert p.poll() is None, "looping writer exited: %s" % (p.communicate(),)
                assert time.time() < deadline, "looping writer made no progress"
                time.sleep(0.005)
        finally:
            p.kill()
            p.wait(timeout=20)
    # a process that exits in the middle of a transaction leaves nothing
    run_python('''
        con = connect(sys.argv[1], table="CREATE VIRTUAL TABLE IF NOT EXISTS kv USING tierstore(primary='%s')" % sys.argv[2])
        con.execute("BEGIN")
        for i in range(100):
            con.execute("INSERT INTO kv VALUES ('uncommitted', '', ?, 1)", ("u%d" % i,))
        os._exit(0)
    ''', args=[tmp_path / "quit.db", primary])
    # another writer still gets through, promptly
    run_python('''
        con = connect(sys.argv[1], table="CREATE VIRTUAL TABLE IF NOT EXISTS kv USING tierstore(primary='%s')" % sys.argv[2])
        for i in range(20):
            con.execute("BEGIN")
            for k in range(int(sys.argv[3])):
                con.execute("REPLACE INTO kv VALUES ('shared', '', ?, ?)", ("k%d" % k, "8:%d:after%d" % (i, i)))
            con.execute("INSERT INTO kv VALUES ('log', 'p8', ?, ?)", ("c%05d" % i, "after%d" % i))
            con.execute("COMMIT")
    ''', args=[tmp_path / "after.db", primary, NKEYS], timeout=30)
    rows = sql_dump(tmp_path / "setup.db", primary)
    assert not [r for r in rows if r[0] == "uncommitted"]
    log = {(s, k): (v, e) for p, s, k, v, t, r, e in rows if p == "log"}
    epochs = sorted(e for _, e in log.values())
    # every commit that happened is whole and accounted for
    assert epochs == list(range(1, len(log) + 1))
    assert len([1 for (s, _) in log if s == "p8"]) == 20
    # each killed writer's commits: counters 0..n-1 without a gap, in epoch order
    for round_ in range(3):
        mine = sorted((k, e) for (s, k), (v, e) in log.items() if s == "r%d" % round_)
        assert len(mine) >= 150
        assert [k for k, _ in mine] == ["c%05d" % i for i in range(len(mine))]
        assert [e for _, e in mine] == sorted(e for _, e in mine)
    shared = {k: (v, e) for p, s, k, v, t, r, e in rows if p == "shared"}
    assert len(shared) == NKEYS
    assert {v for v, _ in shared.values()} == {"8:19:after19"}
    assert {e for _, e in shared.values()} == {epochs[-1]}
    raw = RawStore(primary)
    assert raw.last_epoch == epochs[-1]
    check_raw_matches_sql(raw, rows)
