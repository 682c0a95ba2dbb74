"""The write coordinator (SPEC 4, 5, 7, 8): group commit, durability =
'applied', backpressure, failing flushes, concurrent backup writes and
their reconciliation.

How the tests look at the coordinator from outside:
  - flushes are counted as LMDB write transactions of the primary:
    `mdb_stat -e DIR` prints "Last transaction ID: N" (a subprocess; LMDB
    forbids a second open of an environment inside the process that has it
    open through the extension);
  - what is *written* (as opposed to queued in this process's memory) is
    read by another process: conftest.raw_store(s) reads the environments
    with python3-lmdb in a child process.  A read through the extension in
    the writing process would force the queue written, so every "not yet
    written" check happens before any read there;
  - two connections that both hold an open write transaction on a tierstore
    table declare it in their temp schema (`CREATE VIRTUAL TABLE temp.kv
    ...`): SQLite then takes no lock of a shared database file.
"""
import json
import os
import re
import signal
import sqlite3
import subprocess
import threading
import time

import pytest

from conftest import open_connection, raw_store, raw_stores, run_python, start_python, table_sql

KIB = 1024


def sql(primary, backup=None, name="kv", **args):
    """CREATE VIRTUAL TABLE IF NOT EXISTS name USING tierstore(...) with
    absolute directories."""
    args = dict(primary=str(primary), **args)
    if backup is not None:
        args["backup"] = str(backup)
    return table_sql(name=name, **args)


def temp_sql(primary, backup=None, **args):
    return sql(primary, backup, name="temp.kv", **args)


def txn_id(env):
    """LMDB's count of committed write transactions of env (mdb_stat -e)."""
    out = subprocess.run(["mdb_stat", "-e", str(env)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    m = re.search(r"Last transaction ID: (\d+)", out.stdout)
    assert m, out.stdout
    return int(m.group(1))


def get(con, pns, key, sns="", table="kv"):
    return con.execute('SELECT value, epoch FROM "%s" WHERE primary_namespace=? AND secondary_namespace=? '
                       'AND key=?' % table, (pns, sns, key)).fetchone()


def commit_error(e, env, what):
    """The failing-state error: 'tierstore: ... flushes of '<env>' keep
    failing ...'."""
    msg = str(e)
    assert msg.startswith("tierstore:"), "%s: %s" % (what, msg)
    assert "flushes of '%s' keep failing" % env in msg, "%s does not name the failing environment: %s" % (what, msg)
    return msg


# ---------------------------------------------------------------------------
# the new arguments


@pytest.mark.parametrize("args", [
    dict(durability="applied"),
    dict(durability="APPLIED", flush_interval="0"),
    dict(durability="applied", flush_interval="250us", max_pending="1MiB"),
    dict(durability="applied", flush_interval="10ms", max_pending="64MiB"),
    dict(durability="applied", flush_interval="60s", max_pending="1048576"),
    dict(durability="durable", flush_interval="1s", max_pending="1GiB"),
])
def test_applied_arguments_accepted(tmp_path, connect, args):
    con = connect(tmp_path / "a.db", table=sql(tmp_path / "p", **args))
    con.execute("INSERT INTO kv VALUES ('a', '', 'k', 1)")
    assert get(con, "a", "k")[0] == 1


@pytest.mark.parametrize("name, value", [
    ("flush_interval", "61s"), ("flush_interval", "60001ms"), ("flush_interval", "10"),
    ("flush_interval", "-1ms"), ("flush_interval", "1m"), ("flush_interval", "fast"),
    ("max_pending", "0"), ("max_pending", "lots"), ("max_pending", "-5"),
])
def test_applied_arguments_rejected(tmp_path, connect, name, value):
    con = connect(tmp_path / "a.db", table=None)
    with pytest.raises(sqlite3.OperationalError) as ei:
        con.execute(sql(tmp_path / "p", durability="applied", **{name: value}))
    msg = str(ei.value)
    assert msg.startswith("tierstore:") and "'%s'" % name in msg, msg
    assert not (tmp_path / "p").exists(), "a rejected table created its primary"


# ---------------------------------------------------------------------------
# SQLite's lock on the declaring database file, and the temp schema


def test_main_schema_connections_on_one_file_serialize(tmp_path, connect):
    """Both tables live in the main schema of one database file: while one
    connection has a write transaction open on kv, the other's INSERT gets
    SQLITE_BUSY (busy_timeout 0)."""
    P = tmp_path / "p"
    a = connect(tmp_path / "one.db", table=sql(P))
    b = connect(tmp_path / "one.db", table=sql(P), timeout=0)
    a.execute("BEGIN")
    a.execute("INSERT INTO kv VALUES ('a', '', 'k1', 1)")
    with pytest.raises(sqlite3.OperationalError) as ei:
        b.execute("INSERT INTO kv VALUES ('b', '', 'k2', 2)")
    assert "locked" in str(ei.value) or "busy" in str(ei.value).lower(), str(ei.value)
    a.execute("COMMIT")
    b.execute("INSERT INTO kv VALUES ('b', '', 'k2', 2)")
    assert get(a, "b", "k2")[0] == 2 and get(b, "a", "k1")[0] == 1


def test_temp_schema_connections_write_at_once_and_share_one_flush(tmp_path, connect):
    """Tables in each connection's temp schema (same database file for
    both): two write transactions are open at once, and their two queued
    (applied) COMMITs go to disk as ONE LMDB write transaction of the
    primary and one of the backup, with consecutive epochs."""
    P, B = tmp_path / "p", tmp_path / "b"
    t = temp_sql(P, B, durability="applied", flush_interval="30s")
    a = connect(tmp_path / "one.db", table=t, timeout=0)
    b = connect(tmp_path / "one.db", table=t, timeout=0)
    a.execute("INSERT INTO kv VALUES ('base', '', 'k', 0)")
    a.execute("INSERT INTO kv(kv) VALUES ('sync')")
    p0, b0 = txn_id(P), txn_id(B)
    a.execute("BEGIN")
    a.execute("INSERT INTO kv VALUES ('a', '', 'k1', 'from a')")
    b.execute("BEGIN")
    b.execute("INSERT INTO kv VALUES ('b', '', 'k2', 'from b')")     # no SQLITE_BUSY
    a.execute("COMMIT")
    b.execute("COMMIT")
    raw = raw_store(P)
    assert ("a", "", "k1") not in raw.rows and ("b", "", "k2") not in raw.rows, (
        "an applied commit (flush_interval 30s) was written before anything asked for it")
    assert txn_id(P) == p0
    a.execute("INSERT INTO kv(kv) VALUES ('sync')")
    assert txn_id(P) == p0 + 1, "two queued commits took %d primary write transactions" % (txn_id(P) - p0)
    assert txn_id(B) == b0 + 1, "two queued commits took %d backup write transactions" % (txn_id(B) - b0)
    p, bk = raw_stores(P, B)
    e1, e2 = p.rows[("a", "", "k1")][1], p.rows[("b", "", "k2")][1]
    assert sorted([e1, e2]) == [p.last_epoch - 1, p.last_epoch], (e1, e2, p.last_epoch)
    assert e1 + 1 == e2, "the commits' epochs are not in commit order"
    assert bk.rows == p.rows and bk.last_epoch == p.last_epoch
    assert get(b, "a", "k1") == ("from a", e1) and get(a, "b", "k2") == ("from b", e2)
    a.execute("INSERT INTO kv(kv) VALUES ('verify')")


def test_commits_to_the_same_keys_in_one_flush_newest_epoch_wins(tmp_path, connect):
    """Four queued commits (four temp-schema connections whose statements
    all ran before the first COMMIT) write and delete the same keys and go
    to disk in one write: per key, the commit with the highest epoch wins,
    in the primary and in the backup, deletes and re-creations included."""
    P, B = tmp_path / "p", tmp_path / "b"
    t = temp_sql(P, B, durability="applied", flush_interval="30s")
    cons = [connect(tmp_path / "same.db", table=t) for _ in range(4)]
    seed = cons[0]
    seed.execute("BEGIN")
    for k in ("k", "gone", "again"):
        seed.execute("INSERT INTO kv VALUES ('s', '', ?, 'seed')", (k,))
    seed.execute("COMMIT")
    seed.execute("INSERT INTO kv(kv) VALUES ('sync')")
    rowid_again = seed.execute("SELECT rowid FROM kv WHERE primary_namespace='s' AND secondary_namespace='' "
                               "AND key='again'").fetchone()[0]
    t0 = txn_id(P)
    plan = [
        # connection: statements
        ["REPLACE INTO kv VALUES ('s', '', 'k', 'c0')", "REPLACE INTO kv VALUES ('s', '', 'gone', 'c0')",
         "DELETE FROM kv WHERE primary_namespace='s' AND secondary_namespace='' AND key='again'"],
        ["REPLACE INTO kv VALUES ('s', '', 'k', 'c1')", "REPLACE INTO kv VALUES ('s', '', 'again', 'c1')",
         "REPLACE INTO kv VALUES ('s', '', 'new', 'c1')"],
        ["DELETE FROM kv WHERE primary_namespace='s' AND secondary_namespace='' AND key='gone'",
         "REPLACE INTO kv VALUES ('s', '', 'k', 'c2')",
         "DELETE FROM kv WHERE primary_namespace='s' AND secondary_namespace='' AND key='new'"],
        ["REPLACE INTO kv VALUES ('s', '', 'k', 'c3')", "REPLACE INTO kv VALUES ('s', '', 'new', 'c3')"],
    ]
    for con, stmts in zip(cons, plan):
        con.execute("BEGIN")
        for s in stmts:
            con.execute(s)
    for con in cons:
        con.execute("COMMIT")
    assert txn_id(P) == t0, "applied commits (flush_interval 30s) were written before anything asked for it"
    seed.execute("INSERT INTO kv(kv) VALUES ('sync')")
    assert txn_id(P) == t0 + 1, "four queued commits took %d write transactions" % (txn_id(P) - t0)
    p, b = raw_stores(P, B)
    last = p.last_epoch
    got = {k[2]: (v[2], v[1]) for k, v in p.rows.items() if k[0] == "s"}
    assert got == {"k": ("c3", last), "again": ("c1", last - 2), "new": ("c3", last)}, got
    assert p.rows[("s", "", "again")][0] != rowid_again, "a key deleted then created again kept its creation number"
    assert b.rows == p.rows and b.last_epoch == last
    seed.execute("INSERT INTO kv(kv) VALUES ('verify')")


def test_group_commit_of_threads(tmp_path, ext):
    """8 threads x 40 durable one-row commits, each thread its own
    connection with the table in its temp schema: everything lands, every
    commit has its own epoch, and the commits shared LMDB write
    transactions (fewer than one per commit) in the primary and the backup."""
    P, B = tmp_path / "p", tmp_path / "b"
    t = temp_sql(P, B, durability="durable")
    nthreads, ncommits = 8, 40
    main = open_connection(tmp_path / "t.db", table=t, ext=ext)
    try:
        main.execute("INSERT INTO kv VALUES ('base', '', 'k', 0)")
        e0 = get(main, "base", "k")[1]
        opened, start = threading.Barrier(nthreads + 1), threading.Barrier(nthreads + 1)
        errors = []

        def writer(i):
            con = None
            try:
                con = open_connection(tmp_path / "t.db", table=t, ext=ext)
                opened.wait(timeout=30)
                start.wait(timeout=30)
                for c in range(ncommits):
                    con.execute("BEGIN")
                    con.execute("INSERT INTO kv VALUES ('g', ?, ?, ?)", ("t%d" % i, "c%03d" % c, "%d:%d" % (i, c)))
                    con.execute("COMMIT")
            except Exception as e:   # reported below
                errors.append("thread %d: %r" % (i, e))
                opened.abort()
                start.abort()
            finally:
                if con is not None:
                    con.close()

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(nthreads)]
        for th in threads:
            th.start()
        try:
            opened.wait(timeout=30)
            p0, b0 = txn_id(P), txn_id(B)     # every table open: from here on only the commits write
            start.wait(timeout=30)
        except threading.BrokenBarrierError:
            pass
        for th in threads:
            th.join(timeout=60)
        assert not any(th.is_alive() for th in threads), "writer threads hang"
        assert not errors, errors
        total = nthreads * ncommits
        dp, db = txn_id(P) - p0, txn_id(B) - b0
        rows = main.execute("SELECT secondary_namespace, key, value, epoch FROM kv "
                            "WHERE primary_namespace='g'").fetchall()
        assert len(rows) == total
        assert {(r[0], r[1]) for r in rows} == {("t%d" % i, "c%03d" % c) for i in range(nthreads)
                                                for c in range(ncommits)}
        assert all(r[2] == "%s:%d" % (r[0][1:], int(r[1][1:])) for r in rows)
        epochs = sorted(r[3] for r in rows)
        assert epochs == list(range(e0 + 1, e0 + 1 + total)), "epochs are not distinct and consecutive"
        # per thread, later commits have later epochs
        for i in range(nthreads):
            mine = [r[3] for r in sorted(rows) if r[0] == "t%d" % i]
            assert mine == sorted(mine)
        assert dp < total, ("%d commits took %d primary write transactions: no group commit" % (total, dp))
        assert db < total, ("%d commits took %d backup write transactions: no group commit" % (total, db))
        main.execute("INSERT INTO kv(kv) VALUES ('verify')")
        p, b = raw_stores(P, B)
        assert p.last_epoch == e0 + total and b.rows == p.rows
        print("group commit: %d commits, %d primary / %d backup write transactions" % (total, dp, db))
    finally:
        main.close()


# ---------------------------------------------------------------------------
# durability = 'applied'


def test_applied_commit_is_queued_then_visible_in_process_and_written_by_read_or_sync(tmp_path, connect):
    P = tmp_path / "p"
    a = connect(tmp_path / "a.db", table=sql(P, durability="applied", flush_interval="30s"))
    other = connect(tmp_path / "b.db", table=sql(P))      # another connection of this process
    a.execute("INSERT INTO kv VALUES ('x', '', 'seed', 0)")
    a.execute("INSERT INTO kv(kv) VALUES ('sync')")
    t0 = txn_id(P)
    # 1. COMMIT returns once queued: another process does not see it yet
    a.execute("BEGIN")
    a.execute("INSERT INTO kv VALUES ('x', '', 'k1', 'one')")
    a.execute("REPLACE INTO kv VALUES ('x', '', 'seed', 1)")
    a.execute("COMMIT")
    raw = raw_store(P)
    assert ("x", "", "k1") not in raw.rows and raw.rows[("x", "", "seed")][2] == 0, (
        "the applied commit was written at COMMIT (flush_interval 30s, nothing read)")
    assert txn_id(P) == t0
    # 2. `sync` writes and fsyncs it: the other process sees it
    a.execute("INSERT INTO kv(kv) VALUES ('sync')")
    raw = raw_store(P)
    assert raw.rows[("x", "", "k1")][2] == "one" and raw.rows[("x", "", "seed")][2] == 1
    e1 = raw.rows[("x", "", "k1")][1]
    # 3. a read from another connection of the process sees the next one at once
    # (one transaction: the DELETE's scan is a read, which would write a
    # commit queued before it)
    a.execute("BEGIN")
    a.execute("INSERT INTO kv VALUES ('x', '', 'k2', 'two')")
    a.execute("DELETE FROM kv WHERE primary_namespace='x' AND secondary_namespace='' AND key='k1'")
    a.execute("COMMIT")
    raw = raw_store(P)
    assert ("x", "", "k2") not in raw.rows and ("x", "", "k1") in raw.rows, "applied commits were written at COMMIT"
    assert get(other, "x", "k2") == ("two", e1 + 1)
    assert get(other, "x", "k1") is None
    # that read had the queue written: the other process sees it now too
    raw = raw_store(P)
    assert raw.rows[("x", "", "k2")][2] == "two" and ("x", "", "k1") not in raw.rows
    assert raw.last_epoch == e1 + 1
    # 4. the writing connection's own read, too
    a.execute("REPLACE INTO kv VALUES ('x', '', 'k2', 'three')")
    assert raw_store(P).rows[("x", "", "k2")][2] == "two"
    assert get(a, "x", "k2") == ("three", e1 + 2)
    assert raw_store(P).rows[("x", "", "k2")][2] == "three"


def test_applied_commit_flushed_within_flush_interval(tmp_path, connect):
    """No read, no sync: the flusher writes an applied commit by itself
    (flush_interval 50ms); the other process sees it within a few seconds."""
    P = tmp_path / "p"
    a = connect(tmp_path / "a.db", table=sql(P, durability="applied", flush_interval="50ms"))
    a.execute("INSERT INTO kv VALUES ('x', '', 'k', 'v')")
    deadline = time.time() + 5
    while True:
        raw = raw_store(P)
        if ("x", "", "k") in raw.rows:
            break
        assert time.time() < deadline, "an applied commit with flush_interval 50ms is not written after 5 s"
        time.sleep(0.05)
    assert raw.rows[("x", "", "k")][2] == "v"


def test_flusher_sleeps_while_an_applied_commit_waits(tmp_path, connect):
    """An applied commit queued for its flush_interval (30s) costs no CPU
    while it waits: the flusher sleeps until the commit is due (its timed
    wait runs on the clock its deadlines are read from; on another clock
    it returned at once and the flusher spun a whole CPU)."""
    import resource
    P = tmp_path / "p"
    a = connect(tmp_path / "a.db", table=sql(P, durability="applied", flush_interval="30s"))
    a.execute("INSERT INTO kv VALUES ('x', '', 'seed', 0)")
    a.execute("INSERT INTO kv(kv) VALUES ('sync')")
    t0 = txn_id(P)
    a.execute("INSERT INTO kv VALUES ('x', '', 'k', 'v')")
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    time.sleep(1.0)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    assert txn_id(P) == t0, "the applied commit (flush_interval 30s) was written before it was due"
    assert cpu < 0.3, "the process used %.2f s of CPU in 1 s while one applied commit waited" % cpu


def test_applied_survives_clean_exit_without_sync(tmp_path, run_py):
    """A process that commits applied (flush_interval 30s) and exits
    normally writes its queue on the way out."""
    P = tmp_path / "p"
    run_py('''
        con = connect(sys.argv[1], table=sys.argv[2])
        for i in range(20):
            con.execute("INSERT INTO kv VALUES ('x', '', ?, ?)", ("k%02d" % i, i))
    ''', args=[tmp_path / "a.db", sql(P, durability="applied", flush_interval="30s")])
    raw = raw_store(P)
    assert {k: v[2] for k, v in raw.rows.items()} == {("x", "", "k%02d" % i): i for i in range(20)}


def test_applied_backpressure(tmp_path, connect):
    """flush_interval 30s, max_pending 256KiB: 40 commits of 16 KiB values
    are queued by 40 connections (temp schema, their INSERTs all ran before
    the first COMMIT, so no read forces a write).  COMMIT waits for a flush
    whenever more than max_pending would be queued, so right after the
    COMMITs, before any read or sync in this process, another process sees
    all but at most max_pending / 16 KiB of them; after `sync` it sees all."""
    P = tmp_path / "p"
    n, size, max_pending = 40, 16 * KIB, 256 * KIB
    t = temp_sql(P, durability="applied", flush_interval="30s", max_pending="256KiB")
    cons = [connect(tmp_path / "bp.db", table=t) for _ in range(n)]
    values = [os.urandom(size) for _ in range(n)]
    for i, con in enumerate(cons):
        con.execute("BEGIN")
        con.execute("INSERT INTO kv VALUES ('bp', '', ?, ?)", ("k%02d" % i, values[i]))
    for con in cons:
        con.execute("COMMIT")
    raw = raw_store(P)
    written = [i for i in range(n) if ("bp", "", "k%02d" % i) in raw.rows]
    assert len(written) >= n - max_pending // size, (
        "only %d of %d applied commits of %d bytes were written with max_pending %d: COMMIT did not wait "
        "for a flush when the queue was full" % (len(written), n, size, max_pending))
    # what was written is a prefix in commit order, with the right values
    assert written == list(range(len(written)))
    for i in written:
        assert raw.rows[("bp", "", "k%02d" % i)][2] == values[i]
    cons[0].execute("INSERT INTO kv(kv) VALUES ('sync')")
    raw = raw_store(P)
    for i in range(n):
        assert raw.rows[("bp", "", "k%02d" % i)][2] == values[i], "applied commit %d lost" % i
    epochs = [raw.rows[("bp", "", "k%02d" % i)][1] for i in range(n)]
    assert epochs == sorted(epochs) and len(set(epochs)) == n


# ---------------------------------------------------------------------------
# a flush that keeps failing after its commits were acknowledged


def fill_leaving(path, leave):
    """A filler file that leaves about `leave` bytes free on path's file system."""
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    filler = os.path.join(path, "filler")
    with open(filler, "wb") as f:
        todo = max(0, free - leave)
        while todo > 0:
            todo -= f.write(bytes(min(1 << 16, todo)))
    return filler


def test_failing_flush_keeps_applied_commits_and_recovers(tmp_path, tmpfs, connect):
    """The primary lives on a 4 MiB tmpfs (map_size 256KiB, so the map also
    grows); a filler file leaves ~320 KiB.  Applied commits of 64 KiB values
    (max_pending 512KiB) fill it until a flush fails (disk full).  The
    acknowledged commits stay queued; while the flush keeps failing, a COMMIT (of a transaction opened
    before), `sync` and reads fail with 'tierstore: ... flushes of '<dir>'
    keep failing ...: <cause>'.  Once the filler is deleted a retry writes
    the queue: COMMIT works again and every acknowledged row is on disk."""
    fs = tmp_path / "fs"
    tmpfs(fs, "4m")
    P = fs / "primary"
    # flush_interval: the default 10ms.  max_pending bounds what can be
    # queued when the flush fails (a slow flusher on a loaded machine lets
    # dozens of commits pile up otherwise, more than the 4 MiB could ever
    # hold, and then no retry can succeed)
    t = sql(P, durability="applied", map_size="256KiB", max_pending="512KiB")
    a = connect(tmp_path / "a.db", table=t)
    late = connect(tmp_path / "late.db", table=t)
    reader = connect(tmp_path / "r.db", table=sql(P))
    a.execute("INSERT INTO kv VALUES ('f', '', 'base', 'b')")
    a.execute("INSERT INTO kv(kv) VALUES ('sync')")
    # a transaction opened while the store is healthy, committed while failing
    late.execute("BEGIN")
    late.execute("INSERT INTO kv VALUES ('f', '', 'late', 'l')")
    filler = fill_leaving(str(fs), 320 * KIB)
    acked, first_error = {}, None
    try:
        for i in range(200):
            v = os.urandom(64 * KIB)
            try:
                a.execute("INSERT INTO kv VALUES ('f', 'fill', ?, ?)", ("k%03d" % i, v))
            except sqlite3.OperationalError as e:
                first_error = e
                break
            acked["k%03d" % i] = v
        assert first_error is not None, "200 commits of 64 KiB fitted in 320 KiB of free space"
        assert acked, "the very first commit failed: nothing was acknowledged before the flush failed"
        # at most ~320 KiB written + 512 KiB queued: room enough once the filler goes
        assert len(acked) <= 20, "%d commits of 64 KiB acknowledged with max_pending 512KiB" % len(acked)
        msg = commit_error(first_error, P, "the first failure")
        print("first failure after %d acknowledged commits: %s" % (len(acked), msg))
        assert "full" in msg.lower() or "no space" in msg.lower(), "the cause is not named: %s" % msg
        assert first_error.sqlite_errorcode == 13, (first_error.sqlite_errorname, msg)    # SQLITE_FULL
        # while it keeps failing: COMMIT, sync and reads of the environment fail
        with pytest.raises(sqlite3.OperationalError) as ei:
            late.execute("COMMIT")
        commit_error(ei.value, P, "COMMIT while failing")
        if late.in_transaction:
            late.execute("ROLLBACK")
        for con, stmt in [(a, "INSERT INTO kv(kv) VALUES ('sync')"),
                          (reader, "SELECT count(*) FROM kv WHERE primary_namespace='f'"),
                          (late, "SELECT value FROM kv WHERE primary_namespace='f' AND secondary_namespace='' "
                                 "AND key='base'")]:
            with pytest.raises(sqlite3.OperationalError) as ei:
                con.execute(stmt).fetchall()
            commit_error(ei.value, P, stmt)
        # the acknowledged commits are not on disk (the flush failed) ...
        raw = raw_store(P)
        missing = [k for k in acked if ("f", "fill", k) not in raw.rows]
        assert missing, "every acknowledged commit is on disk, yet the flush failed"
    finally:
        os.unlink(filler)
    # ... and once there is room again, the retry writes them
    deadline = time.time() + 15
    while True:
        try:
            a.execute("INSERT INTO kv VALUES ('f', '', 'after', 'a')")
            break
        except sqlite3.OperationalError as e:
            commit_error(e, P, "COMMIT during recovery")
            assert time.time() < deadline, "no COMMIT works 15 s after the disk has room again: %s" % e
            time.sleep(0.1)
    print("recovered %.2f s after the filler was deleted" % (time.time() - deadline + 15))
    late.execute("INSERT INTO kv VALUES ('f', '', 'late', 'l2')")
    a.execute("INSERT INTO kv(kv) VALUES ('sync')")
    assert reader.execute("SELECT count(*) FROM kv WHERE primary_namespace='f' AND secondary_namespace='fill'"
                          ).fetchone()[0] == len(acked)
    raw = raw_store(P)
    for k, v in acked.items():
        assert ("f", "fill", k) in raw.rows, "acknowledged applied commit %s was lost" % k
        assert raw.rows[("f", "fill", k)][2] == v
    assert sorted(k for (p, s, k) in raw.rows if s == "fill") == sorted(acked)
    assert raw.rows[("f", "", "after")][2] == "a" and raw.rows[("f", "", "late")][2] == "l2"
    epochs = [raw.rows[("f", "fill", k)][1] for k in sorted(acked)]
    assert epochs == sorted(epochs) and len(set(epochs)) == len(epochs)


# ---------------------------------------------------------------------------
# concurrent primary and backup writes, killed in between


FAULT_WRITER = '''
db, table, fault, nbase = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
con = connect(db, table=table)
con.execute("BEGIN")
for i in range(nbase):
    con.execute("INSERT INTO kv VALUES ('base', '', ?, ?)", ("b%05d" % i, "v%d" % i))
con.execute("COMMIT")
con.execute("INSERT INTO kv VALUES ('f', '', 'victim', 'still here')")
con.execute("INSERT INTO kv VALUES ('f', '', 'upd', 'old')")
os.environ["TIERSTORE_FAULT"] = fault
con.execute("BEGIN")
con.execute("INSERT INTO kv VALUES ('f', '', 'killed', 'only in one')")
con.execute("REPLACE INTO kv VALUES ('f', '', 'upd', 'new')")
con.execute("DELETE FROM kv WHERE primary_namespace='f' AND secondary_namespace='' AND key='victim'")
con.execute("COMMIT")
print("survived the fault point")
'''

MARKER = ("zz-marker", "", "m")


def lmdb_put_marker(env, delete=False):
    """Write (or delete) a key straight into env's data database: a full
    copy of the primary removes it, a reconciliation of a few keys leaves
    it alone."""
    run_python('''
        import lmdb, struct
        env = lmdb.open(sys.argv[1], max_dbs=8)
        db = env.open_db(b"data", create=False)
        k = "\\0".join(sys.argv[2:5]).encode()
        with env.begin(write=True) as txn:
            if sys.argv[5] == "1":
                assert txn.delete(k, db=db)
            else:
                txn.put(k, struct.pack(">QQ", 1 << 40, 1) + b"\\x03marker", db=db)
        env.close()
    ''', args=[env] + list(MARKER) + ["1" if delete else "0"])


def base_rows(nbase):
    return {("base", "", "b%05d" % i): "v%d" % i for i in range(nbase)}


@pytest.mark.parametrize("fault", ["after-backup", "after-primary"])
def test_killed_between_the_two_writes_is_reconciled_by_the_primary(tmp_path, run_py, fault):
    """after-backup: the backup committed a write the primary never got
    (backup AHEAD); after-primary: the reverse (backup behind).  The next
    open makes the backup equal to the primary, which decides: the write
    found only in the backup is undone there; the write only the primary
    has is replayed into the backup.  2,000 untouched rows stay intact, and
    the reconciliation touched only the killed write's keys: a key put
    straight into the backup (outside every epoch) survives it, which a
    full copy would have removed."""
    P, B = tmp_path / "p", tmp_path / "b"
    table = sql(P, B)
    nbase = 2000
    proc = start_python(FAULT_WRITER, args=[tmp_path / "w.db", table, fault, nbase])
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (
        "writer with TIERSTORE_FAULT=%s was not killed (rc=%r)\n%s\n%s" % (fault, proc.returncode, out, err))
    p, b = raw_stores(P, B)
    killed, victim, upd = ("f", "", "killed"), ("f", "", "victim"), ("f", "", "upd")
    ahead, behind = (b, p) if fault == "after-backup" else (p, b)
    assert ahead.last_epoch == behind.last_epoch + 1, (fault, p.last_epoch, b.last_epoch)
    assert ahead.rows[killed][2] == "only in one" and ahead.rows[upd][2] == "new" and victim not in ahead.rows
    assert killed not in behind.rows and behind.rows[upd][2] == "old" and behind.rows[victim][2] == "still here"
    p_txn = txn_id(P)
    lmdb_put_marker(B)
    # the next open (another process) reconciles
    run_py("connect(sys.argv[1], table=sys.argv[2])", args=[tmp_path / "o.db", table])
    p2, b2 = raw_stores(P, B)
    assert txn_id(P) == p_txn, "the open wrote the primary: the primary must decide, not take the backup's write"
    assert p2.rows == p.rows and p2.last_epoch == p.last_epoch
    expected = dict(base_rows(nbase))
    if fault == "after-backup":
        expected.update({victim: "still here", upd: "old"})
    else:
        expected.update({killed: "only in one", upd: "new"})
    assert {k: v[2] for k, v in p2.rows.items()} == expected
    assert MARKER in b2.rows, ("the reconciliation of one differing write rebuilt the %d-row backup with a whole "
                               "copy of the primary (a key only the backup had vanished)" % nbase)
    del b2.rows[MARKER]
    assert b2.rows == p2.rows, "the backup was not made equal to the primary"
    assert b2.last_epoch == p2.last_epoch
    lmdb_put_marker(B, delete=True)
    run_py('''
        con = connect(sys.argv[1], table=sys.argv[2])
        con.execute("INSERT INTO kv(kv) VALUES ('verify')")
        con.execute("INSERT INTO kv VALUES ('f', '', 'next', 'n')")
        con.execute("INSERT INTO kv(kv) VALUES ('verify')")
    ''', args=[tmp_path / "v.db", table])
    p3, b3 = raw_stores(P, B)
    assert b3.rows == p3.rows and p3.rows[("f", "", "next")][2] == "n"


# ---------------------------------------------------------------------------
# two processes, one applied and one durable, writing the same keys


MIXED_WRITER = '''
import random
db, table, tag, nmin, go, peer_done, my_done = sys.argv[1:8]
nmin = int(nmin)
cap = 4 * nmin
con = connect(db, table=table)
rng = random.Random(tag)
while not os.path.exists(go):
    time.sleep(0.002)
c = 0
while True:
    ops = []
    con.execute("BEGIN")
    for k in rng.sample(range(8), rng.randint(1, 3)):
        key = "k%d" % k
        if rng.random() < 0.3:
            n = con.execute("DELETE FROM kv WHERE primary_namespace='shared' AND secondary_namespace='' AND key=?",
                            (key,)).rowcount
            # a DELETE acts on the rows its scan read: one that found no row
            # (the key absent in what this statement saw) writes nothing
            if n:
                ops.append([key, None])
        else:
            val = "%s-%05d-%s" % (tag, c, key)
            con.execute("REPLACE INTO kv VALUES ('shared', '', ?, ?)", (key, val))
            ops.append([key, val])
    # the commit's own log key: it takes the commit's epoch, so the epoch of
    # every commit (deletes included) can be read back afterwards
    con.execute("INSERT INTO kv VALUES ('log', ?, ?, ?)", (tag, "c%05d" % c, json.dumps(ops)))
    con.execute("COMMIT")
    c += 1
    if c >= cap or (c >= nmin and (peer_done == "-" or os.path.exists(peer_done))):
        break
con.execute("INSERT INTO kv(kv) VALUES ('sync')")
open(my_done, "w").close()
print(c)
'''


def test_applied_and_durable_processes_writing_the_same_keys(tmp_path, run_py):
    """Two processes write 8 shared keys at once (puts and deletes), one
    through a durability='applied' table, one through a 'durable' table,
    same primary and backup.  Every commit also writes a log key of its own,
    which carries the commit's epoch, and lists the commit's writes (a
    DELETE that found no row writes nothing and is not listed).  Afterwards each shared key holds
    exactly what the last commit (in epoch order) that touched it left, in
    the primary and in the backup, and 'verify' passes."""
    P, B = tmp_path / "p", tmp_path / "b"
    go = tmp_path / "go"
    applied_done, durable_done = tmp_path / "applied.done", tmp_path / "durable.done"
    procs = {
        # the applied writer does 300 commits; the durable one goes on until
        # the applied one is done (at least 150, at most 600), so they overlap
        "A": start_python(MIXED_WRITER, args=[tmp_path / "a.db", sql(P, B, durability="applied"), "A", 300, go,
                                               "-", applied_done]),
        "D": start_python(MIXED_WRITER, args=[tmp_path / "d.db", sql(P, B, durability="durable"), "D", 150, go,
                                               applied_done, durable_done]),
    }
    time.sleep(0.3)
    go.touch()
    counts = {}
    for tag, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, "writer %s failed:\n%s" % (tag, err)
        counts[tag] = int(out.strip())
    p, b = raw_stores(P, B)
    assert b.rows == p.rows and b.last_epoch == p.last_epoch, "the backup differs from the primary"
    # every commit of both processes, by epoch
    commits = []
    for (pns, sns, key), (rowid, epoch, value) in p.rows.items():
        if pns == "log":
            commits.append((epoch, sns, int(key[1:]), json.loads(value)))
    assert sorted((t, c) for _, t, c, _ in commits) == sorted(
        [("A", c) for c in range(counts["A"])] + [("D", c) for c in range(counts["D"])]), "a commit is missing"
    epochs = [e for e, _, _, _ in commits]
    assert len(set(epochs)) == len(epochs), "two commits share an epoch"
    for tag in "AD":
        assert any(v is None for _, t, _, ops in commits if t == tag for _, v in ops), "%s deleted nothing" % tag
    for tag in "AD":
        mine = sorted((c, e) for e, t, c, _ in commits if t == tag)
        assert [e for _, e in mine] == sorted(e for _, e in mine), "%s's commits landed out of order" % tag
    a_epochs = [e for e, t, _, _ in commits if t == "A"]
    assert any(min(a_epochs) < e < max(a_epochs) for e, t, _, _ in commits if t == "D"), (
        "the two writers did not interleave: the test proves nothing")
    expected = {}
    for epoch, tag, c, ops in sorted(commits):
        for key, val in ops:
            expected[key] = (val, epoch)
    for k in range(8):
        key = "k%d" % k
        if key not in expected:
            continue
        val, epoch = expected[key]
        got = p.rows.get(("shared", "", key))
        if val is None:
            assert got is None, "%s: the last commit (epoch %d) deleted it, yet it holds %r" % (key, epoch, got)
        else:
            assert got is not None, "%s: the last commit (epoch %d) wrote %r, yet it is absent" % (key, epoch, val)
            assert (got[2], got[1]) == (val, epoch), (
                "%s holds %r from epoch %d; the last commit that touched it (epoch %d) wrote %r"
                % (key, got[2], got[1], epoch, val))
    run_py("connect(sys.argv[1], table=sys.argv[2]).execute(\"INSERT INTO kv(kv) VALUES ('verify')\")",
           args=[tmp_path / "v.db", sql(P, B)])
