"""A writer for the crash harness (test_crash.py): commits transactions in a
loop until it is killed.

    crash_writer.py DB TABLE_SQL WRITER_ID SEED POOL FAULT_AT

Each transaction c rewrites or deletes 2..6 keys of the shared pool (one
in eight rewrites or deletes BULK keys: a commit large enough that the
backup's write runs in its own thread beside the primary's, see store.c)
('pool', '', 'kNNN') and inserts its own log key ('log', WRITER_ID,
'cNNNNNN') whose value is the transaction's marker WRITER_ID.c.  Every
written pool value is value_for(marker, key, size) (crashlib), so the value
names the transaction that wrote it.

Protocol on stdout, one line per write(2), flushed at once:
    O                  the table is open
    R MESSAGE          opening the table failed with MESSAGE (MDB_MAP_RESIZED,
                       see test_regressions.py); the writer tried again
    I c OPS            transaction c is about to COMMIT; OPS is JSON
                       [[key, size], ...] with size -1 for a DELETE that
                       removed the key from the statement's snapshot, -2 for
                       a DELETE that found no row (it changes nothing)
    A c EPOCH          COMMIT of transaction c returned, with this epoch
                       (read back from its log key)
The harness counts a transaction as acknowledged only after its A line.

With FAULT_AT >= 0 the writer sets TIERSTORE_FAULT=after-primary before
COMMIT of transaction FAULT_AT, so the process kills itself right after the
primary committed it and before the backup did.
"""
import json
import os
import random
import sqlite3
import sys

from crashlib import connect, value_for, write_line

BULK = 70          # keys of a large transaction (store.c: TS_PAIR_MIN_CHANGES is 64)


def main():
    db, table, wid, seed, pool, fault_at = sys.argv[1:7]
    seed, pool, fault_at = int(seed), int(pool), int(fault_at)
    rng = random.Random(seed)
    for attempt in range(50):
        try:
            con = connect(db, table)
            break
        except sqlite3.OperationalError as e:
            if "MDB_MAP_RESIZED" not in str(e):
                raise
            write_line("R " + str(e).replace("\n", " ")[:1000])
    else:
        raise SystemExit("could not open the table")
    write_line("O")
    c = 0
    while True:
        keys = rng.sample(range(pool), BULK if rng.random() < 0.125 else rng.randint(2, 6))
        ops = []
        for k in keys:
            size = -1 if rng.random() < 0.15 else rng.choice((8, 40, 200, 1000, 3000))
            ops.append(["k%03d" % k, size])
        marker = "%s.%d" % (wid, c)
        con.execute("BEGIN")
        for op in ops:
            key, size = op
            if size < 0:
                cur = con.execute("DELETE FROM kv WHERE primary_namespace='pool' AND secondary_namespace='' "
                                  "AND key=?", (key,))
                op[1] = -1 if cur.rowcount == 1 else -2
            else:
                con.execute("REPLACE INTO kv VALUES ('pool', '', ?, ?)", (key, value_for(marker, key, size)))
        con.execute("INSERT INTO kv VALUES ('log', ?, ?, ?)", (wid, "c%06d" % c, marker))
        write_line("I %d %s" % (c, json.dumps(ops, separators=(",", ":"))))
        if c == fault_at:
            os.environ["TIERSTORE_FAULT"] = "after-primary"
        con.execute("COMMIT")
        epoch = con.execute("SELECT epoch FROM kv WHERE primary_namespace='log' AND secondary_namespace=? "
                            "AND key=?", (wid, "c%06d" % c)).fetchone()[0]
        write_line("A %d %d" % (c, epoch))
        c += 1


if __name__ == "__main__":
    main()
