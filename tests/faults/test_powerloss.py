"""Power loss (issue 4, item 2): a crash that loses what was not flushed to
stable storage, simulated by recording a writer's I/O and replaying only
what a disk must have kept.

How it works
  1. A store (primary + backup) is prepared and copied: the base image.
  2. A writer process runs with tests/faults/tsfault.so in record mode
     (TSFAULT_RECORD): every write to the environments' files is logged
     with its offset and bytes before it is made, every fsync/fdatasync as
     a begin record before the call and an end record after it returned,
     every write through an O_DSYNC descriptor (LMDB's meta page when
     durable) as a write plus a "range synced" record once it returned.
     The writer commits numbered transactions (workload.pl_ops: several
     keys written, deleted and created per transaction, overflow values
     now and then) and, after each COMMIT returned, puts an "ack j epoch"
     mark into the same log.
  3. The log replayed in full over the base image must give the writer's
     final files byte for byte (so nothing escaped the recording).
  4. For many cut points -- just after every sync (or a sample of them)
     and at random points between syncs -- the files are rebuilt as a power
     loss at that point could leave them (powerloss.py): the base image,
     every write that a completed sync covers, and a subset of the others
     chosen by a policy (none, all, a random subset, an in-order prefix,
     random 512-byte sectors of each, or zeros where a write was lost).
  5. Each rebuilt store is checked: LMDB opens it and picks a valid meta
     page (mdb_stat -a -f -e and mdb_dump -a succeed, python3-lmdb reads
     every database); the primary holds exactly the state after some
     commit x -- every key, value and epoch, the indexes consistent -- so
     no transaction is half visible; x is at least the last commit
     acknowledged before the cut (durable) or the one before it (written:
     a power loss may lose the last commit), and at most the last one
     begun; the backup holds exactly the state after some commit y, with
     y >= the last acknowledged commit (durable) or the one before it
     (written); the backup may be ahead of the primary by a commit in flight
     (the two are written at the same time);
     then the table opens with the extension (catching the backup up),
     reads the primary's state, passes `verify`, commits, passes `verify`.
  6. 'applied' (test_applied_group_flushes_...): the writer's commits
     return once queued, and its transactions only REPLACE (no statement
     waits for the queue), so the flusher writes several commits as one
     write of an epoch range, the primary and the backup at the same time;
     every few commits the writer runs `sync` (everything queued written,
     both environments flushed) and only then puts its "ack" mark.  The
     checks are those of 5, with "acknowledged" meaning synced: each
     environment holds exactly the state after some commit (a flush is
     never half applied, and never one commit of it without the ones
     before), at least the last synced one.

What it cannot catch (see the README): torn writes inside a 512-byte
sector; a disk that reorders writes across a flush or acknowledges a flush
it did not do (the model trusts fsync/fdatasync); writes through mmap
(LMDB uses none without MDB_WRITEMAP, which tierstore does not set;
lock.mdb and tierstore.shm are mapped and not recorded: a rebuilt store
gets no lock.mdb, and a tierstore.shm that is missing, the base one or the
writer's final one); metadata: a file created during the run is assumed to
exist after the power loss, and file sizes follow the writes kept; several
writer processes (one writer per run).

Scale: TIERSTORE_FAULTS_SCALE=N multiplies the commits and the cut points.
"""
import json
import os
import random
import shutil

import powerloss
import workload
from conftest import (REPORT, RawView, check_env, check_indexes, raw_rows, run_child, scale, shim_env, table_sql)

SCALE = scale()
STATS = {"scenarios": 0, "commits": 0, "cut points": 0, "sync points": 0, "commit points": 0, "writes replayed": 0,
         "stores opened": 0, "backup behind the primary": 0, "backup ahead of the primary": 0,
         "acknowledged commit lost (written)": 0, "new backup unreadable (removed, refilled)": 0,
         "applied commits": 0, "applied: primary flushes besides sync": 0}

REPORT['power loss'] = STATS


def table(P, B, durability, map_size=None, name="kv"):
    args = {"primary": str(P), "backup": str(B), "durability": durability}
    if map_size:
        args["map_size"] = map_size
    return table_sql(name, **args)


WRITER = '''
cfg = json.loads(sys.argv[1])
mark = (lambda t: LIB.tsfault_mark(t.encode())) if LIB else (lambda t: None)
epochs = {}
con = connect(cfg["db"], cfg["table"])
for j in range(cfg["first"], cfg["last"] + 1):
    mark("begin %d" % j)
    workload.write_ops(con, workload.pl_ops(j, **cfg.get("ops", {})))
    e = con.execute("SELECT epoch FROM kv WHERE primary_namespace='' AND secondary_namespace='' "
                    "AND key='last'").fetchone()[0]
    mark("ack %d %d" % (j, e))
    epochs[j] = e
done({"epochs": epochs})
'''

# 'applied': COMMIT returns once the commit is queued; reading it back would
# wait for its write, so the writer only marks what a `sync` made durable
# and takes the epochs from the commits' own keys at the end
WRITER_APPLIED = '''
cfg = json.loads(sys.argv[1])
mark = (lambda t: LIB.tsfault_mark(t.encode())) if LIB else (lambda t: None)
con = connect(cfg["db"], cfg["table"])
for j in range(cfg["first"], cfg["last"] + 1):
    mark("begin %d" % j)
    workload.write_ops(con, workload.pl_ops(j, **cfg.get("ops", {})))
    if j % cfg["sync_every"] == 0 or j == cfg["last"]:
        cmd(con, "sync")
        mark("ack %d 0" % j)
epochs = {int(k[1:]): e for k, e in con.execute(
    "SELECT key, epoch FROM kv WHERE primary_namespace='pl' AND secondary_namespace='created'")}
done({"epochs": {j: e for j, e in epochs.items() if cfg["first"] <= j <= cfg["last"]}})
'''

CHECKER = '''
# open every rebuilt store with the extension: read, verify, commit, verify
res = []
for cfg in json.load(open(sys.argv[1])):
    r = {}
    try:
        con = connect(cfg["db"], cfg["table"])
        r["open"] = {"ok": True}
        r["rows1"] = attempt(lambda: rows(con))
        r["verify1"] = attempt(cmd, con, "verify")
        r["commit"] = attempt(workload.write_ops, con, workload.pl_ops(cfg["next"], **cfg["ops"]))
        r["verify2"] = attempt(cmd, con, "verify")
        r["rows2"] = attempt(lambda: rows(con))
        con.close()
    except sqlite3.Error as e:
        r["open"] = dict(err(e), ok=False)
        if cfg["unborn"]:
            # a backup that never took its first flush: remove it, open
            # again (the README's advice), which creates and fills it
            r["refused"] = r["open"]
            import shutil
            shutil.rmtree(cfg["backup"])
            con = connect(cfg["db"], cfg["table"])
            r["open"] = {"ok": True}
            r["rows1"] = attempt(lambda: rows(con))
            r["verify1"] = attempt(cmd, con, "verify")
            r["commit"] = attempt(workload.write_ops, con, workload.pl_ops(cfg["next"], **cfg["ops"]))
            r["verify2"] = attempt(cmd, con, "verify")
            r["rows2"] = attempt(lambda: rows(con))
            con.close()
    res.append(r)
done({"res": res})
'''


def row_epochs(x, epochs, ops=None):
    """{key: epoch of the last commit <= x that wrote it} for keys present
    after x commits."""
    out = {}
    for j in range(1, x + 1):
        for op in workload.pl_ops(j, **(ops or {})):
            if op[0] == "put":
                out[op[1]] = epochs[j]
            else:
                out.pop(op[1], None)
    return out


def which_commit(view, states, epochs, what, name, ops=None):
    """The commit number whose state view holds, exactly (keys, values,
    epochs, last_epoch), or an AssertionError."""
    rows = raw_rows(view)
    last = rows.get(("", "", "last"))
    x = int(last) if last is not None else 0
    assert x < len(states), "%s: the %s says commit %d, beyond the run" % (what, name, x)
    want = states[x]
    if rows != want:
        extra = sorted(set(rows) - set(want))[:4]
        missing = sorted(set(want) - set(rows))[:4]
        changed = sorted(k for k in set(rows) & set(want) if rows[k] != want[k])[:4]
        raise AssertionError("%s: the %s holds part of a transaction (its 'last' key says %d): extra %s, "
                             "missing %s, changed %s" % (what, name, x, extra, missing, changed))
    want_epochs = row_epochs(x, epochs, ops)
    got_epochs = {k: v[1] for k, v in view.rows.items()}
    assert got_epochs == want_epochs, "%s: the %s's rows carry other epochs than commit %d gave them" % (
        what, name, x)
    assert view.last_epoch == (epochs[x] if x else 0), "%s: the %s's last_epoch %d, commit %d has epoch %s" % (
        what, name, view.last_epoch, x, epochs.get(x))
    check_indexes(view, "%s: %s" % (what, name))
    return x


def run_scenario(root, durability, commits, pre=0, map_size=None, new_backup=False, sample=None,
                 mids=20, seed=1, bounds_check=True, policies=powerloss.POLICIES, ops=None, sync_every=None):
    """Record a writer, then check cut points.  sample: how many of the sync
    points to check (None: all; with new_backup, every sync point of the
    writer's open is checked too).  The moment after each COMMIT returned
    (with 'applied': each `sync`, every sync_every commits) is always a cut.
    ops: keyword arguments of workload.pl_ops.  Returns [(cut, policy,
    acked, x, y)]."""
    rng = random.Random(seed)
    ops = ops or {}
    applied = durability == "applied"
    writer = WRITER_APPLIED if applied else WRITER
    P, B = os.path.realpath(root / "p"), os.path.realpath(root / "b")
    # 1. the base: the table created (and `pre` commits made) without recording
    tsql = table(P, B, durability, map_size)
    setup = run_child(WRITER, [json.dumps({"db": str(root / "setup.db"), "table": tsql, "first": 1,
                                           "last": pre, "ops": ops})], env=shim_env([]))
    epochs = {int(k): v for k, v in setup["epochs"].items()}
    if new_backup:
        shutil.rmtree(B)         # the writer's open creates and fills it
    base = root / "base"
    base.mkdir()
    shutil.copytree(P, base / "p")
    if not new_backup:
        shutil.copytree(B, base / "b")
    shm_base = {t: read_or_none(base / t / "tierstore.shm") for t in ("p", "b")}
    data = {os.path.join(P, "data.mdb"): read_or_none(base / "p" / "data.mdb") or b"",
            os.path.join(B, "data.mdb"): read_or_none(base / "b" / "data.mdb") or b""}
    # 2. the writer, recorded
    log_path = str(root / "io.log")
    env = shim_env([P, B], armed=1, record=log_path)
    out = run_child(writer, [json.dumps({"db": str(root / "w.db"), "table": tsql, "first": pre + 1,
                                         "last": commits, "ops": ops, "sync_every": sync_every})],
                    env=env, timeout=600)
    epochs.update({int(k): v for k, v in out["epochs"].items()})
    log = powerloss.Log(log_path)
    assert set(log.files) <= set(data), "writes to unexpected files: %s" % log.files
    if applied:
        assert len(log.acks) == commits // sync_every - pre // sync_every + (commits % sync_every != 0)
        # group commit: the flushes (one data-file flush of the primary
        # each, besides those of `sync`) carried several commits
        pdata = os.path.join(P, "data.mdb")
        flushes = sum(1 for r in log.records if r.type == powerloss.SYNC_BEGIN and r.path == pdata)
        assert flushes - len(log.acks) < commits - pre, (
            "%d commits, %d flushes of the primary's data file besides the %d of `sync`: no write carried "
            "several commits" % (commits - pre, flushes - len(log.acks), len(log.acks)))
        STATS["applied commits"] += commits - pre
        STATS["applied: primary flushes besides sync"] += flushes - len(log.acks)
    else:
        assert len(log.acks) == commits - pre
    # 3. the log replays to the writer's final files
    final, _, _, _ = log.rebuild(len(log.records), "all", data, rng)
    for path, content in final.items():
        with open(path, "rb") as f:
            assert f.read() == content, "replaying the whole log does not give %s" % path
    shm_final = {"p": read_or_none(os.path.join(P, "tierstore.shm")),
                 "b": read_or_none(os.path.join(B, "tierstore.shm"))}
    states = workload.pl_states(commits, **ops)
    # 4. cut points: (position, kind, policy or None for the next in turn)
    syncs = log.sync_points()
    picked = syncs if sample is None else sorted(rng.sample(syncs, min(sample, len(syncs))))
    cuts = [(c, "sync", None) for c in picked]
    bounds = [0] + syncs + [len(log.records)]
    cuts += [(pos + 1, "commit returned", None) for pos, _, _ in log.acks]
    first_backup_sync = None
    if new_backup:
        # the writer's open creates and fills the backup: every point of it,
        # with every policy
        bpath = os.path.join(B, "data.mdb")
        first_backup_sync = min(i + 1 for i, r in enumerate(log.records)
                                if r.type == powerloss.SYNC_END and r.path == bpath)
        for c in range(log.begins[0][0] + 1):
            cuts += [(c, "opening", pol) for pol in policies]
    for _ in range(mids):
        i = rng.randrange(len(bounds) - 1)
        lo, hi = bounds[i], bounds[i + 1]
        if hi - lo > 1:
            cuts.append((rng.randrange(lo + 1, hi), "between syncs", None))
    cuts.append((len(log.records), "end", "none"))
    checks, outcome = [], []
    for n, (cut, kind, policy) in enumerate(cuts):
        policy = policy or policies[n % len(policies)]
        # a new environment before its first flush, when a later write
        # reached the disk but its first one (the meta pages, written
        # without a flush by mdb_env_open) did not: LMDB finds no meta page
        # (MDB_INVALID) and the table does not open
        unborn = (first_backup_sync is not None and cut < first_backup_sync
                  and policy in ("random", "sectors", "zeros"))
        what = "cut %d/%d (%s, %s)" % (cut, len(log.records), kind, policy)
        files, ndur, kept, nmaybe = log.rebuild(cut, policy, data, rng)
        d = root / ("cut%04d" % n)
        cp, cb = os.path.realpath(d / "p"), os.path.realpath(d / "b")
        for t, dirpath in (("p", cp), ("b", cb)):
            os.makedirs(dirpath)
            src = os.path.join(P if t == "p" else B, "data.mdb")
            with open(os.path.join(dirpath, "data.mdb"), "wb") as f:
                f.write(files.get(src, data[src]))
            shm = rng.choice([None, shm_base[t], shm_final[t]])
            if shm is not None:
                with open(os.path.join(dirpath, "tierstore.shm"), "wb") as f:
                    f.write(shm)
        acked, begun = log.acked_before(cut), log.begun_before(cut)
        # 'applied': acked means synced
        lo = max(pre, acked if durability in ("durable", "applied") else acked - 1)
        hi = max(pre, begun)
        # the rebuilt environments, read from outside
        x = which_commit(RawView(cp), states, epochs, what, "primary", ops)
        outcome.append((cut, policy, acked, x))
        if not bounds_check:
            continue
        assert lo <= x <= hi, "%s: the primary holds commit %d; acknowledged before the cut: %d, begun: %d" % (
            what, x, acked, begun)
        check_env(cp)
        if new_backup and acked <= pre:
            # the backup was being created and filled at the writer's open:
            # it may still be an empty file, an environment without the
            # layout, an empty store, or the full copy (commit `pre`)
            y = new_backup_state(cb, states, epochs, what, unborn)
            assert y in (None, 0) or lo <= y <= hi, "%s: the new backup holds commit %d" % (what, y)
        else:
            y = which_commit(RawView(cb), states, epochs, what, "backup", ops)
            assert lo <= y <= hi, "%s: the backup holds commit %d; acknowledged before the cut: %d, begun: %d" % (
                what, y, acked, begun)
            # the two are written at the same time: either may hold a commit
            # in flight that the other lacks (never acknowledged: both are
            # at least at the last acknowledged one)
            check_env(cb)
        outcome[-1] += (y,)
        STATS["backup behind the primary"] += y is not None and y < x
        STATS["backup ahead of the primary"] += y is not None and y > x
        STATS["acknowledged commit lost (written)"] += x < acked
        checks.append(({"db": str(d / "c.db"), "table": table(cp, cb, durability, map_size), "next": x + 1,
                        "unborn": unborn, "backup": cb, "ops": ops}, x, cp, cb, what))
        STATS["cut points"] += 1
        STATS["sync points"] += kind == "sync"
        STATS["commit points"] += kind == "commit returned"
        if len(checks) >= BATCH:
            open_stores(checks, states, root)
    if not bounds_check:
        return outcome
    open_stores(checks, states, root)
    STATS["scenarios"] += 1
    STATS["commits"] += commits - pre
    STATS["writes replayed"] += sum(1 for r in log.records if r.type == powerloss.WRITE)
    return outcome


BATCH = 60     # rebuilt stores on disk at once


def open_stores(checks, states, root):
    """5. The extension opens each rebuilt store of checks (one process for
    all), which are then removed; checks is emptied."""
    cfg_file = root / "checks.json"
    with open(cfg_file, "w") as f:
        json.dump([c[0] for c in checks], f)
    res = run_child(CHECKER, [cfg_file], timeout=900)["res"]
    for (cfg, x, cp, cb, what), r in zip(checks, res):
        if "refused" in r:
            ref = r["refused"]
            # a new backup whose first pages were torn: LMDB finds no meta
            # page, or tierstore's check finds the file shorter than they say
            assert cfg["unborn"] and ref["code"] & 0xff == 11 and cb in ref["msg"] and (
                "MDB_INVALID" in ref["msg"] or "is damaged: data.mdb is" in ref["msg"]), (
                "%s: the table did not open: %s" % (what, ref))
            STATS["new backup unreadable (removed, refilled)"] += 1
        for step in ("open", "rows1", "verify1", "commit", "verify2", "rows2"):
            assert r[step]["ok"], "%s: after the power loss, %s failed: %s" % (what, step, r[step])
        for step, n in (("rows1", x), ("rows2", x + 1)):
            got = {(a, b_, c): bytes.fromhex(v) for a, b_, c, v in r[step]["value"]}
            want = states[n] if n < len(states) else workload.apply(states[x], workload.pl_ops(n, **cfg["ops"]))
            assert got == want, "%s: the table reads another state than commit %d (%s)" % (what, n, step)
        check_env(cp)
        check_env(cb)
        shutil.rmtree(os.path.dirname(cp))       # keep the tmpfs small
        STATS["stores opened"] += 1
    del checks[:]


def new_backup_state(cb, states, epochs, what, unborn):
    """None for an empty file, an environment without tierstore's layout,
    or (when unborn) a file without a meta page; else the commit the
    backup holds."""
    import lmdb
    if os.path.getsize(os.path.join(cb, "data.mdb")) == 0:
        return None
    try:
        env = lmdb.open(cb, max_dbs=8, readonly=True, lock=True, create=False)
    except lmdb.InvalidError:
        assert unborn, "%s: the new backup is not an LMDB file" % what
        return None
    try:
        with env.begin() as txn:
            names = {bytes(k) for k, _ in txn.cursor()}
    finally:
        env.close()
    if b"meta" not in names:
        return None
    check_env(cb)
    return which_commit(RawView(cb), states, epochs, what, "new backup")


def read_or_none(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def test_durable_keeps_every_acknowledged_commit(workdir):
    """durable, primary + backup: every sync point of the run is a cut."""
    run_scenario(workdir, "durable", commits=30 * SCALE, sample=None, mids=30 * SCALE, seed=11)


def test_written_loses_at_most_the_last_commit_and_never_corrupts(workdir):
    run_scenario(workdir, "written", commits=30 * SCALE, sample=None, mids=30 * SCALE, seed=12)


def test_durable_while_the_map_grows(workdir):
    """A 64 KiB map that grows several times during the run."""
    run_scenario(workdir, "durable", commits=25 * SCALE, map_size="64KiB", sample=40 * SCALE,
                 mids=15 * SCALE, seed=13)


def test_durable_while_a_new_backup_is_filled(workdir):
    """The writer's open fills an empty backup with a copy of the primary
    (10 commits), then commits on: power lost during the copy too."""
    run_scenario(workdir, "durable", commits=10 + 15 * SCALE, pre=10, new_backup=True, sample=40 * SCALE,
                 mids=15 * SCALE, seed=14)


def test_applied_group_flushes_lose_only_unsynced_commits(workdir):
    """'applied', primary + backup: commits queued and written several at a
    time (each write an epoch range, the primary and the backup at the same
    time), `sync` every 5 commits; every sync point of the run is a cut."""
    run_scenario(workdir, "applied", commits=30 * SCALE, sample=None, mids=30 * SCALE, seed=16,
                 ops={"dels": 0}, sync_every=5)


def test_the_simulation_loses_unflushed_commits(workdir):
    """The model is not too kind: with `written`, a cut just after a
    COMMIT returned, keeping no unflushed write, loses that commit (its
    meta page was not flushed), which a model treating every write as
    durable would never show."""
    outcome = run_scenario(workdir, "written", commits=6, sample=0, mids=0, seed=15, bounds_check=False,
                           policies=("none",))
    lost = [o for o in outcome if o[1] == "none" and o[3] < o[2]]
    assert lost, "no cut lost an acknowledged written commit: %s" % outcome
