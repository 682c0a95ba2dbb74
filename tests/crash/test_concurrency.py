"""Concurrency (issue 4, item 5): several processes, each with several
threads and one connection per thread, write and read one primary + backup
store with ephemeral rules for a bounded time, with invariants checked all
along (stress_worker.py describes the workload and the readers' checks).
In each process some threads declare the table in their connection's temp
schema on one shared database file, with durability 'durable', 'written'
and 'applied' in turn, beside the threads with in-memory databases
('durable', 'written'): all commit through the process's one write
coordinator, whose flusher writes what they queued as one write of the
primary and, at the same time, of the backup.

  - a reader's single SELECT never sees part of a transaction: every group
    of keys written by one transaction (in several statements, or in one
    UPDATE) is whole or absent, with one marker and one epoch; the same for
    transactions spanning the primary and the ephemeral tier; nothing
    written inside a savepoint that was rolled back;
  - per key, epochs never go backwards across a thread's successive reads;
  - an 'applied' commit is visible at once to its own connection;
  - meanwhile this process reads the primary and the backup with
    python3-lmdb: the primary's last_epoch never goes back, its groups are
    whole; the backup, written concurrently with the primary, may be ahead
    of it (it may commit a write first), and then every log key it holds
    above the primary's epoch must reach the primary with the same epoch
    (with no failure, a write the backup took is never undone);
and at the end:
  - `verify` passes, and the primary and the backup are identical (raw
    comparison of every row and the metadata), with consistent indexes;
  - every durable commit a worker reported is in the primary with the epoch
    it was given (an 'applied' one not read back: with some epoch; the
    processes exited normally, so nothing they queued may be lost), epochs
    are unique, and each shared group holds the newest commit's marker (or
    is absent when that commit deleted it);
  - the commits shared flushes: fewer primary LMDB write transactions than
    commits that wrote the primary (group commit).

Size: TIERSTORE_STRESS_SECONDS (default 20), TIERSTORE_STRESS_PROCS (3),
TIERSTORE_STRESS_THREADS (3, in-memory databases), TIERSTORE_STRESS_SHARED
(3, temp-schema tables on one file per process).
"""
import json
import os
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from crashlib import PYTHON, Raw, child_env, decode_key, env_number, table_sql  # noqa: E402

WORKER = os.path.join(HERE, "stress_worker.py")
NKEYS = 4
GROUPS = 6

VERIFY = '''
import sys
from crashlib import connect
con = connect(":memory:", sys.argv[1])
con.execute("INSERT INTO kv(kv) VALUES ('verify')")
print(con.execute("SELECT count(*) FROM kv WHERE primary_namespace='grp'").fetchone()[0])
'''


def primary_txnids(path):
    """The primary's LMDB transaction id: how many write transactions it
    has committed."""
    import lmdb
    env = lmdb.open(path, max_dbs=8, readonly=True, lock=True, create=False)
    try:
        return env.info()["last_txnid"]
    finally:
        env.close()


def run_child(code, *args, timeout=120):
    p = subprocess.run([PYTHON, "-c", code] + [str(a) for a in args], env=child_env(), cwd=HERE,
                       capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, "child failed:\n%s\n%s" % (p.stdout, p.stderr)
    return p.stdout



def prefix_items(txn, db, prefix):
    """The (key, value) items of db whose keys start with prefix, in key order."""
    cur = txn.cursor(db=db)
    if not cur.set_range(prefix):
        return
    for k, v in cur:
        if not k.startswith(prefix):
            return
        yield k, v

class RawWatcher(threading.Thread):
    """Reads the primary and the backup with python3-lmdb while the workers
    run (this process never loads the extension)."""

    def __init__(self, primary, backup, stop):
        super().__init__(daemon=True)
        self.primary, self.backup, self.stop = primary, backup, stop
        self.errors, self.reads = [], 0
        # the backup seen ahead of the primary: (primary epoch, backup
        # epoch, {log key: epoch} the backup held above the primary's epoch)
        self.ahead = []

    def run(self):
        import lmdb
        envs = {}

        def env(path):
            if path not in envs:
                e = lmdb.open(path, max_dbs=8, readonly=True, lock=True, create=False)
                try:
                    envs[path] = (e, e.open_db(b"meta", create=False), e.open_db(b"data", create=False))
                except lmdb.MapResizedError:
                    e.close()       # opening the tables met a grown map: open again
                    raise
            return envs[path]

        def reopen(path):
            if path in envs:
                envs.pop(path)[0].close()

        last = 0
        try:
            while not self.stop.is_set():
                try:
                    b_env, b_meta, b_data = env(self.backup)
                    btxn = b_env.begin()
                except lmdb.MapResizedError:
                    reopen(self.backup)
                    continue
                try:
                    # the backup's snapshot first, kept open while the
                    # primary is read
                    b_epoch = struct.unpack(">Q", btxn.get(b"last_epoch", db=b_meta))[0]
                    try:
                        p_env, p_meta, p_data = env(self.primary)
                        with p_env.begin() as txn:
                            if p_env.info()["last_txnid"] > txn.id() + 1:
                                continue    # a commit in flight: begin again (README)
                            p_epoch = struct.unpack(">Q", txn.get(b"last_epoch", db=p_meta))[0]
                            groups = {}
                            for k, v in prefix_items(txn, p_data, b"grp\0"):
                                _, g, _ = k.split(b"\0")
                                rowid, epoch = struct.unpack(">QQ", v[:16])
                                groups.setdefault(g, []).append((epoch, bytes(v[17:])))
                    except lmdb.MapResizedError:
                        reopen(self.primary)
                        continue
                    if b_epoch > p_epoch:
                        # ahead: a write the backup committed first; note
                        # the log keys it holds above the primary's epoch
                        above = {}
                        for k, v in prefix_items(btxn, b_data, b"log\0"):
                            epoch = struct.unpack(">Q", v[8:16])[0]
                            if epoch > p_epoch:
                                above[bytes(k)] = epoch
                        self.ahead.append((p_epoch, b_epoch, above))
                finally:
                    btxn.abort()
                self.reads += 1
                if p_epoch < last:
                    self.errors.append("primary last_epoch went back from %d to %d" % (last, p_epoch))
                last = p_epoch
                for g, rs in groups.items():
                    if len(rs) != NKEYS or len(set(rs)) != 1:
                        self.errors.append("raw primary: group %s is partial: %r" % (g, rs))
                if len(self.errors) > 20:
                    break
                time.sleep(0.002)
        except Exception as e:       # reported by the test
            self.errors.append("raw watcher failed: %r" % (e,))
        finally:
            for e, _, _ in envs.values():
                e.close()


def test_concurrent_processes_threads_and_connections(tmp_path, capsys):
    seconds = env_number("TIERSTORE_STRESS_SECONDS", 20.0, float)
    nprocs = env_number("TIERSTORE_STRESS_PROCS", 3)
    nthreads = env_number("TIERSTORE_STRESS_THREADS", 3)
    nshared = env_number("TIERSTORE_STRESS_SHARED", 3)
    primary, backup = str(tmp_path / "primary"), str(tmp_path / "backup")
    table = table_sql(primary=primary, backup=backup, ephemeral="eph, mix/e")
    run_child(VERIFY, table)                          # creates both environments
    start = tmp_path / "start"
    procs = [subprocess.Popen([PYTHON, WORKER, str(i), primary, backup, str(seconds), str(nthreads), str(start),
                               str(nshared), str(tmp_path / ("shared-%d.db" % i))],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(), cwd=HERE,
                              text=True)
             for i in range(nprocs)]
    stop = threading.Event()
    watcher = RawWatcher(primary, backup, stop)
    time.sleep(0.5)
    t0 = time.monotonic()
    start.touch()
    watcher.start()
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=seconds + 120)
            assert p.returncode == 0, "worker failed (rc=%d):\n%s" % (p.returncode, err[-3000:])
            results.append(json.loads(out))
    finally:
        stop.set()
        for p in procs:
            if p.poll() is None:
                p.kill()
        watcher.join(timeout=30)
    elapsed = time.monotonic() - t0

    writes = sum(r["writes"] for r in results)
    reads = sum(r["reads"] for r in results)
    kinds = {}
    for r in results:
        for k, v in r["kinds"].items():
            kinds[k] = kinds.get(k, 0) + v
    violations = {}
    for r in results:
        for kind, v in r["violations"].items():
            agg = violations.setdefault(kind, {"count": 0, "examples": []})
            agg["count"] += v["count"]
            agg["examples"] += ["proc %d: %s" % (r["proc"], x) for x in v["examples"]][:3 - len(agg["examples"])]

    # the end state
    count = int(run_child(VERIFY, table).strip())      # verify passes (or raises)
    P, B = Raw(primary), Raw(backup)
    problems = []
    if B.last_epoch != P.last_epoch:
        problems.append("backup at epoch %d, primary at %d" % (B.last_epoch, P.last_epoch))
    if B.rows != P.rows:
        diff = sorted(set(B.rows.items()) ^ set(P.rows.items()))[:5]
        problems.append("primary and backup rows differ: %r" % (diff,))
    problems += ["primary: " + p for p in P.index_problems()] + ["backup: " + p for p in B.index_problems()]
    if any(k[0] in ("eph",) or (k[0] == "mix" and k[1] == "e") for k in P.rows):
        problems.append("ephemeral keys reached the primary")
    undone = sorted(k for k, v in P.rows.items() if str(v[2]).endswith("-undone"))
    if undone:
        problems.append("writes rolled back to a savepoint reached the primary: %r" % undone[:5])
    commits = []
    for r in results:
        for g, marker, epoch, op in r["commits"]:
            me, n = marker.rsplit("-n", 1)
            got = P.rows.get(("log", me, "n%06d" % int(n)))
            if got is None or (epoch is not None and got[1] != epoch):
                problems.append("commit %s (epoch %s) is not in the primary as reported: %r" % (marker, epoch, got))
                continue
            commits.append((g, marker, got[1], op))       # 'applied' ones not read back: the primary's epoch
    commits.sort(key=lambda c: c[2])
    epochs = [c[2] for c in commits]
    if len(set(epochs)) != len(epochs):
        problems.append("two durable commits share an epoch")
    # the backup seen ahead: what it held above the primary reached the
    # primary as it was
    ahead_max = 0
    for p_epoch, b_epoch, above in watcher.ahead:
        ahead_max = max(ahead_max, b_epoch - p_epoch)
        for k, epoch in sorted(above.items()):
            got = P.rows.get(decode_key(k))
            if got is None or got[1] != epoch:
                problems.append("the backup was seen at epoch %d, the primary at %d, holding %r at epoch %d; the "
                                "primary ends with %r" % (b_epoch, p_epoch, decode_key(k), epoch, got))
    # group commit: the commits that wrote the primary took fewer LMDB
    # write transactions (each flush is one; opening tables adds a few)
    primary_commits = sum(r["primary_commits"] for r in results)
    txnids = primary_txnids(primary)
    if primary_commits and txnids >= primary_commits:
        problems.append("%d commits wrote the primary in %d LMDB write transactions: no flush carried more "
                        "than one commit" % (primary_commits, txnids))
    newest = {}
    for g, marker, epoch, op in commits:
        if op != "nop":
            newest[g] = (marker, epoch, op)
    for g in sorted(newest):
        marker, epoch, op = newest[g]
        rows = {k: v for k, v in P.rows.items() if k[0] == "grp" and k[1] == g}
        want = {} if op == "del" else {("grp", g, "k%d" % j): (epoch, marker) for j in range(NKEYS)}
        if {k: (v[1], v[2]) for k, v in rows.items()} != want:
            problems.append("group %s: %r, the newest commit (epoch %d) %s %s" % (
                g, sorted((k[2], v[1], v[2]) for k, v in rows.items()), epoch,
                "deleted it" if op == "del" else "wrote", marker))
    if count != sum(1 for k in P.rows if k[0] == "grp"):
        problems.append("SQL counts %d 'grp' rows, the primary holds %d" % (
            count, sum(1 for k in P.rows if k[0] == "grp")))

    levels = {}
    for r in results:
        for k, v in r["levels"].items():
            levels[k] = levels.get(k, 0) + v
    with capsys.disabled():
        print("\nconcurrency: %d processes x %d threads (one connection each; %d of them on temp-schema tables "
              "of one file), %.1f s: %d operations "
              "(%d write transactions: %s; by level: %s; %d reads; %d raw reads of the primary and backup), "
              "%d durable commits (%d 'applied' ones read back at once), %d commits wrote the primary in %d LMDB "
              "write transactions; backup seen ahead of the primary %d times (by up to %d epochs); final epoch %d; "
              "invariant violations: %s"
              % (nprocs, nthreads + nshared, nshared, elapsed, writes + reads + watcher.reads, writes,
                 ", ".join("%s %d" % kv for kv in sorted(kinds.items())),
                 ", ".join("%s %d" % kv for kv in sorted(levels.items())), reads, watcher.reads, len(commits),
                 sum(r["applied_read_back"] for r in results), primary_commits, txnids, len(watcher.ahead),
                 ahead_max, P.last_epoch,
                 ", ".join("%s %d" % (k, v["count"]) for k, v in sorted(violations.items())) or "none"))
    report = []
    for kind, v in sorted(violations.items()):
        report.append("%s: %d times, e.g.\n    %s" % (kind, v["count"], "\n    ".join(v["examples"])))
    report += ["raw: " + e for e in watcher.errors[:10]]
    report += problems
    assert not report, "\n".join(report)
    assert writes > 0 and reads > 0 and watcher.reads > 0
    assert all(kinds.get(k, 0) > 0 for k in ("grp", "eph", "mix", "upd", "sp"))
    if nshared >= 3:
        assert all(levels.get(k, 0) > 0 for k in ("durable", "written", "applied")), levels
