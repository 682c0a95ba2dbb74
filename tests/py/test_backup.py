"""The backup tier (SPEC 2, 4, 5, 8; issue 3): mirror, catch-up, restore,
verify and repair.

The backup is checked from outside the extension:
  - by a child process that opens the backup directory as the primary of a
    new table (restore) and reads every row and newest-first pages;
  - with python3-lmdb (conftest.raw_store reads both environments in a child
    process, because this process has them open through the extension and
    LMDB forbids one environment opened twice in a process);
  - with the `verify` command.

Writers that die between the primary's and the backup's write use the
test-only fault point TIERSTORE_FAULT=after-primary (the process SIGKILLs
itself right after the primary committed).  The child sets the variable only
after its table is open, so the open (which catches a lagging backup up)
runs normally.

Some checks put a "marker" key straight into the backup's data database:
catching up by replaying the missing epochs leaves it alone, rebuilding the
backup with a whole copy of the primary removes it.  That is how the tests
tell an incremental catch-up (the issue: "without rescanning the whole store
when only a few epochs are missing") from a full copy.
"""
import ast
import os
import signal
import sqlite3
import time

import pytest

from conftest import (mdb_dump, raw_store, raw_stores, run_python, start_python, table_rows,
                      table_sql)

NS = "mirror"


def tsql(tmp_path, **args):
    """CREATE statement with absolute primary/backup under tmp_path."""
    args.setdefault("primary", str(tmp_path / "data" / "primary"))
    if "backup" not in args:
        args["backup"] = str(tmp_path / "data" / "backup")
    elif args["backup"] is None:
        del args["backup"]
    return table_sql(**args)


def dirs(tmp_path):
    return tmp_path / "data" / "primary", tmp_path / "data" / "backup"


def durable_rows(con):
    """(pns, sns, key, value, rowid, epoch) of every durable row."""
    return [r[:6] for r in table_rows(con) if r[6] == "primary"]


RESTORE = '''
import ast
db, env = sys.argv[1], sys.argv[2]
con = connect(db, table="CREATE VIRTUAL TABLE IF NOT EXISTS kv USING tierstore(primary='%s')" % env)
rows = sorted(con.execute("SELECT primary_namespace, secondary_namespace, key, value, rowid, epoch, tier FROM kv"
                          ).fetchall(), key=lambda r: r[:3])
assert all(r[6] == "primary" for r in rows), rows
pages = {}
for pns, sns in sorted({(r[0], r[1]) for r in rows}):
    got, last = [], 1 << 62
    while True:
        page = con.execute("SELECT rowid, key FROM kv WHERE primary_namespace=? AND secondary_namespace=? "
                           "AND rowid < ? ORDER BY rowid DESC LIMIT 3", (pns, sns, last)).fetchall()
        if not page:
            break
        got.append(page)
        last = page[-1][0]
    pages[(pns, sns)] = got
print(repr({"rows": [r[:6] for r in rows], "pages": pages}))
'''


def restore(tmp_path, env_dir):
    """Open env_dir as the primary of a new table in another process."""
    restore.n = getattr(restore, "n", 0) + 1
    db = tmp_path / ("restore%d.db" % restore.n)
    out = run_python(RESTORE, args=[db, env_dir]).stdout
    return ast.literal_eval(out)


def pages_of(con, pns, sns, size=3, durable_only=False):
    got, last = [], 1 << 62
    while True:
        page = con.execute("SELECT rowid, key, tier FROM kv WHERE primary_namespace=? AND secondary_namespace=? "
                           "AND rowid < ? ORDER BY rowid DESC LIMIT ?", (pns, sns, last, size)).fetchall()
        if not page:
            return got
        got.append([r[:2] for r in page if r[2] == "primary" or not durable_only])
        last = page[-1][0]


def flat(pages):
    return [r for page in pages for r in page]


def assert_same_envs(p, b):
    """Both environments hold the same durable data and metadata."""
    assert b.store_id == p.store_id, "backup store_id differs from the primary's"
    assert b.last_epoch == p.last_epoch, "backup at epoch %d, primary at %d" % (b.last_epoch, p.last_epoch)
    assert b.rows == p.rows, "data differs:\nprimary %r\nbackup  %r" % (p.rows, b.rows)
    assert b.rowids == p.rowids, "rowid index differs"
    assert b.created_named() == p.created_named(), "creation index differs"
    assert b.next_rowid >= p.next_rowid, "backup would hand out creation numbers the primary used"


def assert_mirrored(tmp_path, con=None, restore_check=True):
    """The backup holds exactly the primary's durable data: raw comparison,
    `verify` (through con), and a restore in another process."""
    P, B = dirs(tmp_path)
    p, b = raw_stores(P, B)
    assert_same_envs(p, b)
    if con is not None:
        con.execute("INSERT INTO kv(kv) VALUES ('verify')")
        rows = durable_rows(con)
        assert rows == sorted([k + (v[2], v[0], v[1]) for k, v in p.rows.items()], key=lambda r: r[:3])
    if restore_check:
        got = restore(tmp_path, B)
        expected = sorted([k + (v[2], v[0], v[1]) for k, v in p.rows.items()], key=lambda r: r[:3])
        assert got["rows"] == expected
        if con is not None:
            for ns, pages in got["pages"].items():
                assert flat(pages) == flat(pages_of(con, *ns, durable_only=True)), (
                    "newest-first pages of %r differ after restore" % (ns,))
    return p, b


def verify_fails(con):
    with pytest.raises(sqlite3.Error) as ei:
        con.execute("INSERT INTO kv(kv) VALUES ('verify')")
    return str(ei.value)


MARKER = ("zz-marker", "", "m")


def put_marker(env_dir):
    """Write a key only the backup has (see the module docstring)."""
    run_python('''
        import lmdb, struct
        env = lmdb.open(sys.argv[1], max_dbs=8)
        db = env.open_db(b"data", create=False)
        with env.begin(write=True) as txn:
            txn.put("\\0".join(sys.argv[2:5]).encode(), struct.pack(">QQ", 1 << 40, 1) + b"\\x03marker", db=db)
        env.close()
    ''', args=[env_dir] + list(MARKER))


def drop_marker(env_dir):
    run_python('''
        import lmdb
        env = lmdb.open(sys.argv[1], max_dbs=8)
        db = env.open_db(b"data", create=False)
        with env.begin(write=True) as txn:
            assert txn.delete("\\0".join(sys.argv[2:5]).encode(), db=db)
        env.close()
    ''', args=[env_dir] + list(MARKER))


def has_marker(raw):
    return MARKER in raw.rows


# ---------------------------------------------------------------------------
# the mirror after every commit

COMMITS = [
    ("inserts", ["INSERT INTO kv VALUES ('mirror', '', 'a', 'A1')",
                 "INSERT INTO kv VALUES ('mirror', '', 'b', X'00ff10')",
                 "INSERT INTO kv VALUES ('mirror', 'sub', 'c', 3)",
                 "INSERT INTO kv VALUES ('mirror', 'sub', 'd', 4.5)",
                 "INSERT INTO kv VALUES ('other', '', 'e', '')",
                 "INSERT INTO kv VALUES ('', '', 'manager', X'')"]),
    ("replace", ["REPLACE INTO kv VALUES ('mirror', '', 'a', 'A2')",
                 "INSERT OR REPLACE INTO kv VALUES ('mirror', 'sub', 'c', 33)"]),
    ("update", ["UPDATE kv SET value = value || '!' WHERE primary_namespace='mirror' AND secondary_namespace='' "
                "AND key='a'"]),
    ("delete", ["DELETE FROM kv WHERE primary_namespace='mirror' AND secondary_namespace='' AND key='b'"]),
    ("rename", ["UPDATE kv SET key='d2' WHERE primary_namespace='mirror' AND secondary_namespace='sub' AND key='d'"]),
    ("recreate", ["INSERT INTO kv VALUES ('mirror', '', 'b', 'again')"]),
    ("mixed", ["DELETE FROM kv WHERE primary_namespace='other'",
               "INSERT INTO kv VALUES ('mirror', '', 'f', 'F')",
               "REPLACE INTO kv VALUES ('mirror', '', 'a', 'A3')",
               "UPDATE kv SET secondary_namespace='moved' WHERE primary_namespace='mirror' AND key='c'"]),
    ("big", ["INSERT INTO kv VALUES ('mirror', 'big', 'k%03d', randomblob(%d))" % (i, 100 + 37 * i)
             for i in range(60)]),
    ("delete-namespace", ["DELETE FROM kv WHERE primary_namespace='mirror' AND secondary_namespace='big' "
                          "AND key < 'k030'"]),
    ("savepoint", ["SAVEPOINT s", "INSERT INTO kv VALUES ('mirror', '', 'gone', 1)", "ROLLBACK TO s", "RELEASE s",
                   "INSERT INTO kv VALUES ('mirror', '', 'kept', 1)"]),
]


@pytest.mark.parametrize("durability", ["durable", "written"])
def test_backup_holds_primary_after_every_commit(tmp_path, connect, durability):
    con = connect(tmp_path / "m.db", table=tsql(tmp_path, durability=durability))
    for i, (name, stmts) in enumerate(COMMITS):
        con.execute("BEGIN")
        for s in stmts:
            con.execute(s)
        con.execute("COMMIT")
        p, b = assert_mirrored(tmp_path, con, restore_check=(durability == "durable" or i == len(COMMITS) - 1))
        assert p.last_epoch == i + 1, "commit %r: primary at epoch %d" % (name, p.last_epoch)


def test_autocommit_statements_are_mirrored(tmp_path, connect):
    con = connect(tmp_path / "m.db", table=tsql(tmp_path))
    for i in range(5):
        con.execute("INSERT INTO kv VALUES (?, '', ?, ?)", (NS, "k%d" % i, i))
    con.execute("DELETE FROM kv WHERE primary_namespace=? AND secondary_namespace='' AND key='k1'", (NS,))
    con.execute("UPDATE kv SET value=-1 WHERE primary_namespace=? AND secondary_namespace='' AND key='k2'", (NS,))
    p, _ = assert_mirrored(tmp_path, con)
    assert p.last_epoch == 7


def test_restore_serves_all_committed_data_with_pagination(tmp_path, connect):
    """restore = point a table's primary at the backup directory."""
    con = connect(tmp_path / "m.db", table=tsql(tmp_path))
    for c in range(6):
        con.execute("BEGIN")
        for i in range(c * 7, c * 7 + 7):
            con.execute("INSERT INTO kv VALUES (?, 'list', ?, ?)", (NS, "key%03d" % (97 - i), i))
        if c:
            con.execute("DELETE FROM kv WHERE primary_namespace=? AND secondary_namespace='list' AND key=?",
                        (NS, "key%03d" % (97 - (c * 3))))
            con.execute("REPLACE INTO kv VALUES (?, 'list', ?, 'replaced')", (NS, "key%03d" % (97 - c)))
        con.execute("COMMIT")
    expected_pages = pages_of(con, NS, "list")
    expected_rows = durable_rows(con)
    _, B = dirs(tmp_path)
    got = restore(tmp_path, B)
    assert got["rows"] == expected_rows
    assert got["pages"][(NS, "list")] == expected_pages
    # newest first by creation: the rowids strictly decrease across pages
    rows = flat(expected_pages)
    assert [r[0] for r in rows] == sorted((r[0] for r in rows), reverse=True)
    assert len(rows) == len([r for r in expected_rows if r[1] == "list"])


def test_restored_store_takes_new_writes_without_reusing_rowids(tmp_path, connect, run_py):
    con = connect(tmp_path / "m.db", table=tsql(tmp_path))
    con.execute("BEGIN")
    for i in range(5):
        con.execute("INSERT INTO kv VALUES (?, '', ?, ?)", (NS, "k%d" % i, i))
    con.execute("COMMIT")
    con.execute("DELETE FROM kv WHERE primary_namespace=? AND secondary_namespace='' AND key='k4'", (NS,))
    used = {r[4] for r in table_rows(con)} | {5}
    epoch = raw_store(dirs(tmp_path)[0]).last_epoch
    _, B = dirs(tmp_path)
    out = run_py('''
        con = connect(sys.argv[1], table="CREATE VIRTUAL TABLE kv USING tierstore(primary='%s')" % sys.argv[2])
        con.execute("INSERT INTO kv VALUES ('mirror', '', 'new', 1)")
        print(json.dumps(con.execute("SELECT rowid, epoch FROM kv WHERE primary_namespace='mirror' "
                                     "AND secondary_namespace='' AND key='new'").fetchone()))
    ''', args=[tmp_path / "r.db", B]).stdout
    rowid, new_epoch = ast.literal_eval(out)
    assert rowid not in used and rowid > max(used)
    assert new_epoch == epoch + 1


# ---------------------------------------------------------------------------
# ephemeral keys never reach either environment

EPH_VALUE = "EPHEMERAL-CACHE-VALUE-7d1f"


def test_ephemeral_keys_never_written_to_primary_or_backup(tmp_path, connect):
    con = connect(tmp_path / "m.db", table=tsql(tmp_path, ephemeral="ldk, cachens, x/cachesub, y/z/onekey"))
    con.execute("BEGIN")
    con.execute("INSERT INTO kv VALUES ('', '', 'manager', 'durable-manager')")
    for k in ("network_graph", "scorer", "external_pathfinding_scores_cache"):
        con.execute("INSERT INTO kv VALUES ('', '', ?, ?)", (k, EPH_VALUE + k))
    con.execute("INSERT INTO kv VALUES ('cachens', 'any', 'k1', ?)", (EPH_VALUE + "1",))
    con.execute("INSERT INTO kv VALUES ('x', 'cachesub', 'k2', ?)", (EPH_VALUE + "2",))
    con.execute("INSERT INTO kv VALUES ('y', 'z', 'onekey', ?)", (EPH_VALUE + "3",))
    con.execute("INSERT INTO kv VALUES ('y', 'z', 'durablekey', 'durable-y')")
    con.execute("COMMIT")
    # ephemeral-only transactions, replaces and deletes
    con.execute("REPLACE INTO kv VALUES ('', '', 'scorer', ?)", (EPH_VALUE + "scorer2",))
    con.execute("BEGIN")
    con.execute("REPLACE INTO kv VALUES ('', '', 'network_graph', ?)", (EPH_VALUE + "graph2",))
    con.execute("DELETE FROM kv WHERE primary_namespace='cachens'")
    con.execute("COMMIT")
    con.execute("REPLACE INTO kv VALUES ('', '', 'manager', 'durable-manager-2')")
    tiers = {r[2]: r[6] for r in table_rows(con)}
    assert tiers == {"manager": "primary", "network_graph": "ephemeral", "scorer": "ephemeral",
                     "external_pathfinding_scores_cache": "ephemeral", "k2": "ephemeral",
                     "onekey": "ephemeral", "durablekey": "primary"}
    P, B = dirs(tmp_path)
    for env in (P, B):
        dump = mdb_dump(env, db=None)
        for word in ("network_graph", "scorer", "external_pathfinding", "cachens", "cachesub", "onekey", EPH_VALUE):
            assert word not in dump, "%r appears in mdb_dump -a of %s" % (word, env)
        assert "manager" in mdb_dump(env, "data") and "durablekey" in mdb_dump(env, "data")
        with open(os.path.join(str(env), "data.mdb"), "rb") as f:
            blob = f.read()
        assert EPH_VALUE.encode() not in blob, "an ephemeral value reached %s/data.mdb" % env
        raw = raw_store(env)
        assert sorted(k for k in raw.rows) == [("", "", "manager"), ("y", "z", "durablekey")]
        for e in raw.replay:
            for k in raw.replay_keys(e):
                assert b"scorer" not in k and b"network_graph" not in k
    assert_mirrored(tmp_path, con)


def test_cache_writes_do_not_force_full_backup_copies(tmp_path, connect):
    """A durable commit after an ephemeral-only commit is mirrored by
    applying its own changes (or replaying), not by copying the primary."""
    con = connect(tmp_path / "m.db", table=tsql(tmp_path, ephemeral="ldk"))
    con.execute("BEGIN")
    for i in range(50):
        con.execute("INSERT INTO kv VALUES ('monitors', '', ?, randomblob(200))", ("m%02d" % i,))
    con.execute("COMMIT")
    P, B = dirs(tmp_path)
    assert_mirrored(tmp_path, con, restore_check=False)
    put_marker(B)
    con.execute("REPLACE INTO kv VALUES ('', '', 'scorer', randomblob(500))")          # cache only
    con.execute("REPLACE INTO kv VALUES ('monitors', '', 'm07', 'updated')")            # durable
    b = raw_store(B)
    assert b.rows[("monitors", "", "m07")][2] == "updated"
    drop_marker_needed = has_marker(b)
    if drop_marker_needed:
        drop_marker(B)
    assert_mirrored(tmp_path, con, restore_check=False)
    assert drop_marker_needed, ("the durable commit that followed an ephemeral-only commit rebuilt the backup "
                                "with a whole copy of the primary (a key only the backup had vanished)")


# ---------------------------------------------------------------------------
# a writer killed between the primary's and the backup's write

KILLED = '''
db, table = sys.argv[1], sys.argv[2]
tag = sys.argv[3]
ready = sys.argv[4] if len(sys.argv) > 4 else None
go = sys.argv[5] if len(sys.argv) > 5 else None
con = connect(db, table=table)
if ready:
    open(ready, "w").close()
    while not os.path.exists(go):
        time.sleep(0.002)
os.environ["TIERSTORE_FAULT"] = "after-primary"
con.execute("BEGIN")
con.execute("REPLACE INTO kv VALUES ('mirror', '', 'shared', ?)", ("from-" + tag,))
con.execute("INSERT INTO kv VALUES ('mirror', 'killed', ?, ?)", (tag, tag))
con.execute("DELETE FROM kv WHERE primary_namespace='mirror' AND secondary_namespace='' AND key=?", ("del-" + tag,))
con.execute("COMMIT")
print("survived the fault point")
'''


def base_data(con, tags=()):
    con.execute("BEGIN")
    con.execute("INSERT INTO kv VALUES ('mirror', '', 'shared', 'base')")
    for i in range(20):
        con.execute("INSERT INTO kv VALUES ('mirror', 'base', ?, ?)", ("b%02d" % i, i))
    for t in tags:
        con.execute("INSERT INTO kv VALUES ('mirror', '', ?, 'to be deleted')", ("del-" + t,))
    con.execute("COMMIT")


def kill_one(tmp_path, table, tag):
    proc = start_python(KILLED, args=[tmp_path / ("k-%s.db" % tag), table, tag])
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (
        "writer with TIERSTORE_FAULT=after-primary was not killed (rc=%r)\n%s\n%s" % (proc.returncode, out, err))


def kill_several(tmp_path, table, tags):
    """Writers that all open the table first (so none catches the backup up
    for another), then commit once each and die after the primary."""
    procs = []
    go = tmp_path / "go"
    for t in tags:
        procs.append(start_python(KILLED, args=[tmp_path / ("k-%s.db" % t), table, t, tmp_path / ("ready-" + t), go]))
    deadline = time.time() + 30
    while not all((tmp_path / ("ready-" + t)).exists() for t in tags):
        assert time.time() < deadline, "writers did not get ready"
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs if p.poll() is not None]
        time.sleep(0.01)
    go.touch()
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == -signal.SIGKILL, (p.returncode, out, err)


def assert_behind_by(tmp_path, n, tags):
    P, B = dirs(tmp_path)
    p, b = raw_stores(P, B)
    assert p.last_epoch == b.last_epoch + n, "primary %d, backup %d" % (p.last_epoch, b.last_epoch)
    assert b.store_id == p.store_id
    for t in tags:
        assert ("mirror", "killed", t) in p.rows, "the primary lacks the killed writer's commit"
        assert ("mirror", "killed", t) not in b.rows, "the backup has a commit that was killed before it"
        assert ("mirror", "", "del-" + t) not in p.rows
        assert ("mirror", "", "del-" + t) in b.rows
    # the primary keeps what is needed to replay the missing epochs
    for e in range(b.last_epoch + 1, p.last_epoch + 1):
        assert e in p.replay, "no replay record for missing epoch %d (records: %r)" % (e, sorted(p.replay))
        keys = p.replay_keys(e)
        assert b"mirror\0killed\0" in b"|".join(keys), keys
    return p, b


@pytest.mark.parametrize("how", ["next-open-other-process", "next-open-this-process", "next-commit", "repair",
                                 "next-commit-other-process"])
def test_writer_killed_after_primary_backup_catches_up(tmp_path, connect, run_py, how):
    table = tsql(tmp_path)
    watcher = connect(tmp_path / "w.db", table=table)       # opened before the crash
    base_data(watcher, tags=["t1"])
    assert_mirrored(tmp_path, watcher, restore_check=False)
    kill_one(tmp_path, table, "t1")
    P, B = dirs(tmp_path)
    assert_behind_by(tmp_path, 1, ["t1"])
    msg = verify_fails(watcher)
    assert msg.startswith("tierstore:"), msg
    assert "backup" in msg and str(B) in msg, msg
    if how == "next-open-other-process":
        run_py("connect(sys.argv[1], table=sys.argv[2])", args=[tmp_path / "o.db", table])
    elif how == "next-open-this-process":
        connect(tmp_path / "o.db", table=table)
    elif how == "next-commit":
        watcher.execute("INSERT INTO kv VALUES ('mirror', '', 'after', 1)")
    elif how == "next-commit-other-process":
        run_py("connect(sys.argv[1], table=None).execute(\"INSERT INTO kv VALUES ('mirror', '', 'after', 1)\")",
               args=[tmp_path / "w.db"])
    elif how == "repair":
        watcher.execute("INSERT INTO kv(kv) VALUES ('repair')")
    p, b = assert_mirrored(tmp_path, watcher)
    assert ("mirror", "killed", "t1") in b.rows
    assert ("mirror", "", "del-t1") not in b.rows, "the catch-up missed a deletion"
    assert b.rows[("mirror", "", "shared")][2] == "from-t1"


def test_writer_killed_twice_in_a_row(tmp_path, connect):
    """Each new writer catches up at its open, then leaves the backup one
    epoch behind again; the survivor still ends equal."""
    table = tsql(tmp_path)
    watcher = connect(tmp_path / "w.db", table=table)
    base_data(watcher, tags=["a", "b", "c"])
    for t in ("a", "b", "c"):
        kill_one(tmp_path, table, t)
        assert_behind_by(tmp_path, 1, [t])
    watcher.execute("INSERT INTO kv(kv) VALUES ('repair')")
    assert_mirrored(tmp_path, watcher)


@pytest.mark.parametrize("how", ["next-open", "next-commit"])
def test_several_missing_epochs_are_replayed_incrementally(tmp_path, connect, run_py, how):
    table = tsql(tmp_path)
    watcher = connect(tmp_path / "w.db", table=table)
    tags = ["w%d" % i for i in range(4)]
    base_data(watcher, tags=tags)
    # a few more commits whose replay records become prunable
    for i in range(3):
        watcher.execute("REPLACE INTO kv VALUES ('mirror', 'base', 'b00', ?)", (i,))
    P, B = dirs(tmp_path)
    p0, b0 = assert_mirrored(tmp_path, watcher, restore_check=False)
    assert len(p0.replay) <= 2, "replay records of epochs the backup holds are kept: %r" % sorted(p0.replay)
    kill_several(tmp_path, table, tags)
    p, b = assert_behind_by(tmp_path, len(tags), tags)
    assert len(p.replay) >= len(tags)
    msg = verify_fails(watcher)
    assert msg.startswith("tierstore:") and str(B) in msg, msg
    put_marker(B)
    if how == "next-open":
        run_py("connect(sys.argv[1], table=sys.argv[2])", args=[tmp_path / "o.db", table])
    else:
        watcher.execute("INSERT INTO kv VALUES ('mirror', '', 'after', 1)")
    b = raw_store(B)
    replayed = has_marker(b)
    if replayed:
        drop_marker(B)
    p, b = assert_mirrored(tmp_path, watcher)
    for t in tags:
        assert ("mirror", "killed", t) in b.rows and ("mirror", "", "del-" + t) not in b.rows
    assert replayed, "the backup was rebuilt with a whole copy instead of replaying %d missing epochs" % len(tags)
    # once the backup has them, a later commit prunes the replay records
    before = len(p.replay)
    assert before >= 1
    watcher.execute("INSERT INTO kv VALUES ('mirror', '', 'later', 1)")
    watcher.execute("INSERT INTO kv VALUES ('mirror', '', 'later2', 1)")
    p, b = assert_mirrored(tmp_path, watcher, restore_check=False)
    assert len(p.replay) < before or before == 1, (before, sorted(p.replay))
    assert len(p.replay) <= 2, "replay records are not pruned: %r" % sorted(p.replay)
    assert all(e > b.last_epoch - 2 for e in p.replay), sorted(p.replay)


def test_killed_writer_with_ephemeral_commits_in_between(tmp_path, connect, run_py):
    table = tsql(tmp_path, ephemeral="ldk")
    watcher = connect(tmp_path / "w.db", table=table)
    base_data(watcher, tags=["t"])
    watcher.execute("REPLACE INTO kv VALUES ('', '', 'scorer', 'cache')")
    kill_one(tmp_path, table, "t")
    watcher.execute("REPLACE INTO kv VALUES ('', '', 'network_graph', 'cache')")
    watcher.execute("INSERT INTO kv VALUES ('mirror', '', 'after', 1)")
    p, b = assert_mirrored(tmp_path, watcher)
    assert ("", "", "scorer") not in b.rows and ("", "", "network_graph") not in b.rows


LOOPING_WRITER = '''
db, table, tag = sys.argv[1], sys.argv[2], sys.argv[3]
con = connect(db, table=table)
print("open", flush=True)
i = 0
while True:
    con.execute("BEGIN")
    con.execute("REPLACE INTO kv VALUES ('mirror', '', 'shared', ?)", ("%s-%d" % (tag, i),))
    con.execute("INSERT INTO kv VALUES ('mirror', ?, ?, randomblob(300))", (tag, "k%06d" % i))
    if i % 4 == 3:
        con.execute("DELETE FROM kv WHERE primary_namespace='mirror' AND secondary_namespace=? AND key=?",
                    (tag, "k%06d" % (i - 2)))
    con.execute("COMMIT")
    i += 1
'''


def test_writer_killed_at_random_points(tmp_path, run_py):
    """SIGKILL from outside at arbitrary moments: the backup is ahead at
    most by the one write in flight (one connection, one commit per write:
    one epoch, never acknowledged), and the next open brings it level
    (verify passes, restore equals)."""
    import random
    rng = random.Random(7)
    table = tsql(tmp_path)
    P, B = dirs(tmp_path)
    for round in range(6):
        proc = start_python(LOOPING_WRITER, args=[tmp_path / "w.db", table, "r%d" % round])
        assert proc.stdout.readline().strip() == "open", proc.communicate()
        time.sleep(rng.uniform(0.05, 0.4))
        proc.kill()
        proc.communicate(timeout=60)
        p, b = raw_stores(P, B)
        assert b.last_epoch <= p.last_epoch + 1, "the backup got ahead of the primary by more than the write in flight"
        assert b.store_id == p.store_id
        assert p.last_epoch > 0
    run_py("connect(sys.argv[1], table=sys.argv[2]).execute(\"INSERT INTO kv(kv) VALUES ('verify')\")",
           args=[tmp_path / "v.db", table])
    p, b = raw_stores(P, B)
    assert_same_envs(p, b)
    got = restore(tmp_path, B)
    assert got["rows"] == sorted([k + (v[2], v[0], v[1]) for k, v in p.rows.items()], key=lambda r: r[:3])


# ---------------------------------------------------------------------------
# a backup whose disk fills up


def fill(path, leave=0):
    """Create a filler file that leaves about `leave` bytes free."""
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    filler = os.path.join(path, "filler")
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        todo = max(0, free - leave)
        while todo > 0:
            n = os.write(fd, bytes(min(65536, todo)))
            todo -= n
        if leave == 0:
            try:
                while True:
                    os.write(fd, bytes(4096))
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def assert_full_error(e, B):
    msg = str(e)
    assert msg.startswith("tierstore:"), msg
    assert str(B) in msg, "the message does not name the backup directory: %s" % msg
    assert e.sqlite_errorcode == 13, "COMMIT failed with %s (%d), not SQLITE_FULL: %s" % (
        e.sqlite_errorname, e.sqlite_errorcode, msg)


@pytest.mark.parametrize("recover", ["repair", "next-commit", "next-open"])
def test_full_backup_disk_fails_commit_then_catches_up(tmp_path, tmpfs, connect, run_py, recover):
    """No byte left on the backup's file system (a filler file takes it)."""
    P, B = dirs(tmp_path)
    tmpfs(B, "1m")
    table = tsql(tmp_path)
    con = connect(tmp_path / "m.db", table=table)
    con.execute("INSERT INTO kv VALUES ('mirror', '', 'before', 'x')")
    assert_mirrored(tmp_path, con, restore_check=False)
    filler = fill(str(B), leave=0)
    failures = []
    for i in range(3):
        with pytest.raises(sqlite3.OperationalError) as ei:
            con.execute("BEGIN")
            con.execute("INSERT INTO kv VALUES ('mirror', 'full', ?, randomblob(20000))", ("k%d" % i,))
            con.execute("REPLACE INTO kv VALUES ('mirror', '', 'before', ?)", (i,))
            con.execute("COMMIT")
        failures.append(ei.value)
        if con.in_transaction:
            con.execute("ROLLBACK")
    for e in failures:
        assert_full_error(e, B)
    # the primary has every failed commit
    rows = {r[2]: r for r in table_rows(con)}
    assert set(rows) >= {"k0", "k1", "k2"} and rows["before"][3] == 2
    p, b = raw_stores(P, B)
    assert p.last_epoch == b.last_epoch + 3
    assert all(e in p.replay for e in range(b.last_epoch + 1, p.last_epoch + 1))
    msg = verify_fails(con)
    assert msg.startswith("tierstore:") and str(B) in msg, msg
    os.unlink(filler)
    if recover == "repair":
        con.execute("INSERT INTO kv(kv) VALUES ('repair')")
    elif recover == "next-commit":
        con.execute("INSERT INTO kv VALUES ('mirror', '', 'after', 'y')")
    else:
        run_py("connect(sys.argv[1], table=sys.argv[2])", args=[tmp_path / "o.db", table])
    assert_mirrored(tmp_path, con)


@pytest.mark.parametrize("recover", ["repair", "next-commit"])
def test_backup_disk_that_fills_up_fails_commit_with_sqlite_full(tmp_path, tmpfs, connect, recover):
    """The backup's file system fills up while commits grow the store: the
    first commit that does not fit fails with SQLITE_FULL naming the backup,
    also when part of its write still fitted (LMDB then sees a short write,
    not ENOSPC: 20 KiB are left, a 50 kB value needs 13 pages)."""
    P, B = dirs(tmp_path)
    tmpfs(B, "1m")
    con = connect(tmp_path / "m.db", table=tsql(tmp_path))
    con.execute("INSERT INTO kv VALUES ('mirror', '', 'before', 'x')")
    filler = fill(str(B), leave=20 * 1024)
    failed = None
    for i in range(40):
        try:
            con.execute("INSERT INTO kv VALUES ('mirror', 'grow', ?, randomblob(50000))", ("k%02d" % i,))
        except sqlite3.OperationalError as e:
            failed = (i, e)
            break
    assert failed is not None, "20 KiB of free space took 2 MB of commits"
    i, e = failed
    assert con.execute("SELECT count(*) FROM kv WHERE primary_namespace='mirror' AND secondary_namespace='grow' "
                       "AND key=?", ("k%02d" % i,)).fetchone()[0] == 1, "the primary lacks the failed commit"
    os.unlink(filler)
    if recover == "repair":
        con.execute("INSERT INTO kv(kv) VALUES ('repair')")
    else:
        con.execute("INSERT INTO kv VALUES ('mirror', '', 'after', 'y')")
    assert_mirrored(tmp_path, con)
    assert_full_error(e, B)


# ---------------------------------------------------------------------------
# several processes

INTERLEAVED = '''
import random
db, table, proc, txns, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
con = connect(db, table=table)
rng = random.Random(proc)
while not os.path.exists(go):
    time.sleep(0.002)
for c in range(txns):
    con.execute("BEGIN")
    for k in rng.sample(range(6), 4):
        con.execute("REPLACE INTO kv VALUES ('shared', '', ?, ?)", ("k%d" % k, "%d:%d" % (proc, c)))
    if c % 3 == 0:
        con.execute("DELETE FROM kv WHERE primary_namespace='shared' AND secondary_namespace='' AND key=?",
                    ("k%d" % rng.randrange(6),))
    if c % 5 == 0:
        con.execute("DELETE FROM kv WHERE primary_namespace='shared' AND secondary_namespace='' AND key=?",
                    ("moved%d" % proc,))
        con.execute("UPDATE kv SET key='moved%d' WHERE primary_namespace='shared' AND secondary_namespace='' "
                    "AND key='k5'" % proc)
        con.execute("DELETE FROM kv WHERE primary_namespace='shared' AND secondary_namespace='' AND key=?",
                    ("moved%d" % (1 - proc),))
    con.execute("INSERT INTO kv VALUES ('log', ?, ?, ?)", ("p%d" % proc, "c%04d" % c, c))
    con.execute("COMMIT")
print("done")
'''


def test_two_processes_interleaving_commits_leave_identical_tiers(tmp_path, run_py):
    table = tsql(tmp_path)
    go = tmp_path / "go"
    procs = [start_python(INTERLEAVED, args=[tmp_path / ("i%d.db" % i), table, i, 150, go]) for i in range(2)]
    time.sleep(0.3)
    go.touch()
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    P, B = dirs(tmp_path)
    # compared before anything opens the table again (an open would catch up)
    p, b = raw_stores(P, B)
    assert p.last_epoch == 300
    assert_same_envs(p, b)
    run_py("connect(sys.argv[1], table=sys.argv[2]).execute(\"INSERT INTO kv(kv) VALUES ('verify')\")",
           args=[tmp_path / "v.db", table])
    got = restore(tmp_path, B)
    assert got["rows"] == sorted([k + (v[2], v[0], v[1]) for k, v in p.rows.items()], key=lambda r: r[:3])


def test_two_connections_in_one_process_with_threads(tmp_path, ext):
    import threading
    from conftest import open_connection
    table = tsql(tmp_path)
    errors = []

    def writer(i):
        try:
            con = open_connection(tmp_path / ("t%d.db" % i), table=table, ext=ext)
            for c in range(100):
                con.execute("BEGIN")
                con.execute("REPLACE INTO kv VALUES ('shared', '', 'a', ?)", ("%d:%d" % (i, c),))
                con.execute("REPLACE INTO kv VALUES ('shared', '', 'b', ?)", ("%d:%d" % (i, c),))
                con.execute("COMMIT")
            con.close()
        except Exception as e:   # pragma: no cover - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    P, B = dirs(tmp_path)
    p, b = raw_stores(P, B)
    assert p.last_epoch == 300
    assert_same_envs(p, b)


# ---------------------------------------------------------------------------
# empty, foreign and invalid backups


@pytest.mark.parametrize("existing_dir", [True, False], ids=["empty-dir", "missing-dir"])
def test_empty_backup_is_filled_at_open(tmp_path, run_py, existing_dir):
    P, B = dirs(tmp_path)
    no_backup = tsql(tmp_path, backup=None)
    run_py('''
        con = connect(sys.argv[1], table=sys.argv[2])
        con.execute("BEGIN")
        for i in range(200):
            con.execute("INSERT INTO kv VALUES ('ns', ?, ?, ?)", ("s%d" % (i % 3), "k%03d" % i, "v" * i))
        con.execute("COMMIT")
        con.execute("DELETE FROM kv WHERE primary_namespace='ns' AND secondary_namespace='s0' AND key < 'k100'")
        con.execute("UPDATE kv SET value='changed' WHERE primary_namespace='ns' AND secondary_namespace='s1'")
    ''', args=[tmp_path / "p.db", no_backup])
    if existing_dir:
        B.mkdir(parents=True)
    table = tsql(tmp_path)
    # the open alone fills it: nothing is committed by this process
    run_py("connect(sys.argv[1], table=sys.argv[2])", args=[tmp_path / "b.db", table])
    p, b = raw_stores(P, B)
    assert p.last_epoch == 3
    assert_same_envs(p, b)
    got = restore(tmp_path, B)
    assert got["rows"] == sorted([k + (v[2], v[0], v[1]) for k, v in p.rows.items()], key=lambda r: r[:3])
    run_py("connect(sys.argv[1], table=None).execute(\"INSERT INTO kv(kv) VALUES ('verify')\")",
           args=[tmp_path / "b.db"])


def test_commit_through_a_table_without_backup_is_caught_up(tmp_path, connect):
    """Another table on the same primary without a backup commits; the backup
    table's next commit brings the backup up to date."""
    P, B = dirs(tmp_path)
    with_backup = connect(tmp_path / "a.db", table=tsql(tmp_path))
    without = connect(tmp_path / "b.db", table=tsql(tmp_path, backup=None))
    with_backup.execute("INSERT INTO kv VALUES ('x', '', 'a', 1)")
    without.execute("INSERT INTO kv VALUES ('x', '', 'b', 2)")
    without.execute("DELETE FROM kv WHERE primary_namespace='x' AND secondary_namespace='' AND key='a'")
    with_backup.execute("INSERT INTO kv VALUES ('x', '', 'c', 3)")
    p, b = assert_mirrored(tmp_path, with_backup)
    assert sorted(b.rows) == [("x", "", "b"), ("x", "", "c")]


def make_foreign(tmp_path, run_py, name="foreign"):
    foreign = tmp_path / name
    run_py('''
        con = connect(sys.argv[1], table="CREATE VIRTUAL TABLE kv USING tierstore(primary='%s')" % sys.argv[2])
        con.execute("INSERT INTO kv VALUES ('f', '', 'theirs', 'foreign data')")
    ''', args=[tmp_path / (name + ".db"), foreign])
    return foreign


@pytest.mark.parametrize("primary_exists", [True, False])
def test_foreign_backup_is_refused(tmp_path, connect, run_py, primary_exists):
    foreign = make_foreign(tmp_path, run_py)
    before = raw_store(foreign)
    P, _ = dirs(tmp_path)
    if primary_exists:
        connect(tmp_path / "p.db", table=tsql(tmp_path, backup=None)).execute(
            "INSERT INTO kv VALUES ('mine', '', 'k', 1)")
    with pytest.raises(sqlite3.Error) as ei:
        connect(tmp_path / "m.db", table=tsql(tmp_path, backup=str(foreign)))
    msg = str(ei.value)
    assert msg.startswith("tierstore:"), msg
    assert "another store" in msg and str(foreign) in msg, msg
    after = raw_store(foreign)
    assert after.rows == before.rows and after.last_epoch == before.last_epoch
    assert after.store_id == before.store_id
    con = sqlite3.connect(str(tmp_path / "m.db"))
    assert con.execute("SELECT count(*) FROM sqlite_master WHERE name='kv'").fetchone()[0] == 0
    con.close()


def test_foreign_backup_refused_leaves_nothing_on_disk(tmp_path, connect, run_py):
    """SPEC 2: nothing is created on disk for a rejected table."""
    foreign = make_foreign(tmp_path, run_py)
    P, _ = dirs(tmp_path)
    with pytest.raises(sqlite3.Error):
        connect(tmp_path / "m.db", table=tsql(tmp_path, backup=str(foreign)))
    assert not P.exists(), "the rejected table left its primary %s on disk: %s" % (P, os.listdir(str(P)))


def test_backup_of_another_store_is_refused_even_when_it_is_a_backup(tmp_path, connect, run_py):
    """A directory that is the backup of store A cannot be the backup of B."""
    a = connect(tmp_path / "a.db", table=tsql(tmp_path, primary=str(tmp_path / "A"), backup=str(tmp_path / "AB")))
    a.execute("INSERT INTO kv VALUES ('a', '', 'k', 1)")
    with pytest.raises(sqlite3.Error) as ei:
        connect(tmp_path / "b.db", table=tsql(tmp_path, primary=str(tmp_path / "B"), backup=str(tmp_path / "AB")))
    assert str(ei.value).startswith("tierstore:") and "another store" in str(ei.value)
    a.execute("INSERT INTO kv(kv) VALUES ('verify')")


@pytest.mark.parametrize("spelling", ["same", "trailing-slash", "dot", "dotdot", "symlink"])
def test_backup_equal_to_primary_is_refused(tmp_path, connect, monkeypatch, spelling):
    monkeypatch.chdir(str(tmp_path))
    primary = "data/p"
    backup = {"same": "data/p", "trailing-slash": "data/p/", "dot": "./data/p", "dotdot": "data/x/../p",
              "symlink": "link"}[spelling]
    if spelling == "symlink":
        (tmp_path / "data" / "p").mkdir(parents=True)
        os.symlink("data/p", str(tmp_path / "link"))
    if spelling == "dotdot":
        (tmp_path / "data" / "x").mkdir(parents=True)
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    with pytest.raises(sqlite3.Error) as ei:
        connect(tmp_path / "m.db", table=table_sql(primary=primary, backup=backup))
    msg = str(ei.value)
    assert msg.startswith("tierstore:") and "backup" in msg, msg
    after = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert after == before + ["m.db"] or after == sorted(before + ["m.db"]), (
        "the rejected table left files behind: %r" % sorted(set(after) - set(before)))


def test_verify_and_repair_on_a_healthy_backup(tmp_path, connect):
    con = connect(tmp_path / "m.db", table=tsql(tmp_path))
    con.execute("INSERT INTO kv(kv) VALUES ('verify')")     # empty store
    con.execute("INSERT INTO kv(kv) VALUES ('repair')")
    con.execute("INSERT INTO kv VALUES ('a', '', 'b', 1)")
    con.execute("BEGIN")
    con.execute("INSERT INTO kv(kv) VALUES ('verify')")
    con.execute("INSERT INTO kv(kv) VALUES ('repair')")
    con.execute("COMMIT")
    p, b = assert_mirrored(tmp_path, con)
    assert p.last_epoch == 1


def test_verify_reports_a_difference_in_contents(tmp_path, connect):
    """verify compares every key and value, not only the epochs."""
    con = connect(tmp_path / "m.db", table=tsql(tmp_path))
    con.execute("INSERT INTO kv VALUES ('a', '', 'b', 1)")
    P, B = dirs(tmp_path)
    put_marker(B)
    msg = verify_fails(con)
    assert msg.startswith("tierstore:") and "zz-marker" in msg, msg
    drop_marker(B)
    con.execute("INSERT INTO kv(kv) VALUES ('verify')")


def test_repair_after_several_missing_epochs(tmp_path, connect):
    table = tsql(tmp_path)
    watcher = connect(tmp_path / "w.db", table=table)
    tags = ["w%d" % i for i in range(4)]
    base_data(watcher, tags=tags)
    kill_several(tmp_path, table, tags)
    assert_behind_by(tmp_path, len(tags), tags)
    watcher.execute("INSERT INTO kv(kv) VALUES ('repair')")
    p, b = assert_mirrored(tmp_path, watcher)
    for t in tags:
        assert ("mirror", "killed", t) in b.rows and ("mirror", "", "del-" + t) not in b.rows
    watcher.execute("INSERT INTO kv VALUES ('mirror', '', 'later', 1)")
    watcher.execute("INSERT INTO kv VALUES ('mirror', '', 'later2', 1)")
    p, b = assert_mirrored(tmp_path, watcher, restore_check=False)
    assert len(p.replay) <= 2, "replay records are not pruned: %r" % sorted(p.replay)


def test_repair_makes_a_diverged_backup_pass_verify(tmp_path, connect):
    """Whatever verify reports (here: a key only the backup has, at the same
    epoch as the primary), repair brings the backup back to the primary."""
    con = connect(tmp_path / "m.db", table=tsql(tmp_path))
    con.execute("INSERT INTO kv VALUES ('a', '', 'b', 1)")
    P, B = dirs(tmp_path)
    put_marker(B)
    assert "zz-marker" in verify_fails(con)
    con.execute("INSERT INTO kv(kv) VALUES ('repair')")
    con.execute("INSERT INTO kv(kv) VALUES ('verify')")
    assert_mirrored(tmp_path, con, restore_check=False)


@pytest.mark.parametrize("cmd", ["verify", "repair"])
def test_verify_and_repair_need_a_backup(tmp_path, connect, cmd):
    con = connect(tmp_path / "m.db", table=tsql(tmp_path, backup=None))
    with pytest.raises(sqlite3.Error) as ei:
        con.execute("INSERT INTO kv(kv) VALUES (?)", (cmd,))
    assert str(ei.value).startswith("tierstore:") and "backup" in str(ei.value)
