"""A writer for the crash harness (test_crash.py): commits transactions in a
loop until it is killed.

    crash_writer.py DB TABLE_SQL WRITER_ID SEED POOL FAULT_AT [FAULT_KIND [THREADS [IDLE]]]

Each transaction c rewrites or deletes 2..6 keys of the shared pool (one
in eight rewrites or deletes BULK keys: a commit of many changes, which
the backup's thread takes in several batches while the primary resolves
them, see commit.c) ('pool', '', 'kNNN') and inserts its own log key
('log', LW, 'cNNNNNN') whose value is the transaction's marker LW.c.
Every written pool value is value_for(marker, key, size) (crashlib), so
the value names the transaction that wrote it.

THREADS (default 1) threads commit at once in this process, each on its
own connection (its own database file DB.tT declaring the table, so
SQLite's locks never come between them), all through this process's one
write coordinator, so their commits share flushes.  Each thread is a
logical writer LW of its own: WRITER_ID with one thread, WRITER_IDtT with
several.

Protocol on stdout, one line per write(2), flushed at once:
    O                  the table is open (on every thread's connection)
    R MESSAGE          opening the table failed with MESSAGE (MDB_MAP_RESIZED,
                       see test_regressions.py); the writer tried again
    I LW c OPS         transaction c of LW is about to COMMIT; OPS is JSON
                       [[key, size], ...] with size -1 for a DELETE that
                       removed the key from the statement's snapshot, -2 for
                       a DELETE that found no row (it changes nothing)
    A LW c EPOCH T     COMMIT of transaction c returned, with this epoch
                       (read back from its log key; -1 when the table's
                       durability is 'applied': the epoch is given only when
                       the flusher writes the commit, and reading it here
                       would force that write), at time.monotonic() T
The harness counts a transaction as acknowledged only after its A line.

With FAULT_AT >= 0 the first thread sets TIERSTORE_FAULT=FAULT_KIND
(after-primary, the default, or after-backup) before COMMIT of its
transaction FAULT_AT: the process kills itself at the next write of the
primary and the backup that reaches the fault point (after-primary: the
primary committed, the backup not; after-backup: the backup committed,
the primary not).  The variable is set once at start to a value that arms
nothing, so that arming it later only replaces the entry in place while
the flusher thread may read the environment.

IDLE (a probability, default 0): after an acknowledged COMMIT a thread
sleeps 0..25 ms that often, so that queued 'applied' commits are written
by the flusher's own timer (flush_interval) and not only when a later
statement needs them.
"""
import json
import os
import random
import sqlite3
import sys
import threading
import time
import traceback

from crashlib import connect, value_for, write_line

BULK = 70          # keys of a large transaction: more than a few batches handed to the backup


def open_table(db, table):
    for attempt in range(50):
        try:
            return connect(db, table)
        except sqlite3.OperationalError as e:
            if "MDB_MAP_RESIZED" not in str(e):
                raise
            write_line("R " + str(e).replace("\n", " ")[:1000])
    raise SystemExit("could not open the table")


def run(*args):
    try:
        loop(*args)
    except BaseException:
        # the harness sees an exit status other than SIGKILL and this
        # process's stderr
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(3)


def loop(opened, db, table, lw, seed, pool, fault_at, fault_kind, applied, idle):
    con = open_table(db, table)
    opened.wait()
    rng = random.Random(seed)
    c = 0
    while True:
        keys = rng.sample(range(pool), BULK if rng.random() < 0.125 else rng.randint(2, 6))
        ops = []
        for k in keys:
            size = -1 if rng.random() < 0.15 else rng.choice((8, 40, 200, 1000, 3000))
            ops.append(["k%03d" % k, size])
        marker = "%s.%d" % (lw, c)
        con.execute("BEGIN")
        for op in ops:
            key, size = op
            if size < 0:
                cur = con.execute("DELETE FROM kv WHERE primary_namespace='pool' AND secondary_namespace='' "
                                  "AND key=?", (key,))
                op[1] = -1 if cur.rowcount == 1 else -2
            else:
                con.execute("REPLACE INTO kv VALUES ('pool', '', ?, ?)", (key, value_for(marker, key, size)))
        con.execute("INSERT INTO kv VALUES ('log', ?, ?, ?)", (lw, "c%06d" % c, marker))
        write_line("I %s %d %s" % (lw, c, json.dumps(ops, separators=(",", ":"))))
        if c == fault_at:
            os.environ["TIERSTORE_FAULT"] = fault_kind
        con.execute("COMMIT")
        t = time.monotonic()
        if applied:
            epoch = -1
        else:
            epoch = con.execute("SELECT epoch FROM kv WHERE primary_namespace='log' AND secondary_namespace=? "
                                "AND key=?", (lw, "c%06d" % c)).fetchone()[0]
        write_line("A %s %d %d %.6f" % (lw, c, epoch, t))
        c += 1
        if idle and rng.random() < idle:
            time.sleep(rng.uniform(0, 0.025))


def main():
    db, table, wid, seed, pool, fault_at = sys.argv[1:7]
    fault_kind = sys.argv[7] if len(sys.argv) > 7 else "after-primary"
    nthreads = int(sys.argv[8]) if len(sys.argv) > 8 else 1
    idle = float(sys.argv[9]) if len(sys.argv) > 9 else 0.0
    seed, pool, fault_at = int(seed), int(pool), int(fault_at)
    assert fault_kind in ("after-primary", "after-backup"), fault_kind
    os.environ["TIERSTORE_FAULT"] = "none-yet"       # see the docstring
    applied = "durability='applied'" in table
    rng = random.Random(seed)
    if nthreads == 1:
        lws, dbs = [wid], [db]
    else:
        lws = ["%st%d" % (wid, t) for t in range(nthreads)]
        dbs = ["%s.t%d" % (db, t) for t in range(nthreads)]
    seeds = [rng.getrandbits(32) for _ in lws]
    opened = threading.Barrier(len(lws) + 1)
    threads = [threading.Thread(target=run, daemon=True,
                                args=(opened, dbs[i], table, lws[i], seeds[i], pool, fault_at if i == 0 else -1,
                                      fault_kind, applied, idle))
               for i in range(len(lws))]
    for th in threads:
        th.start()
    opened.wait()
    write_line("O")
    for th in threads:
        th.join()        # until killed (a thread that fails ends the process, see run)


if __name__ == "__main__":
    main()
