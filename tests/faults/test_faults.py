"""I/O faults (issue 4, item 3): every write and sync call of a commit gets
an injected EIO and ENOSPC in turn, on the primary and on the backup (and
every call of `repair`, of `sync` and of the catch-up at open); full disks
on small tmpfs mounts; a backup directory that is unwritable, that vanishes,
or whose disk dies under an open table; a damaged data.mdb.

Each fault must give: a COMMIT (or command) that fails with a 'tierstore:'
error naming the tier's directory, with the code of its cause (EIO:
SQLITE_IOERR, ENOSPC: SQLITE_FULL); no partial transaction (the primary has
none of the transaction's keys, or -- for a backup fault -- the primary has
all of them and the backup is exactly one commit behind); no corruption
(mdb_stat -a -f -e and mdb_dump -a succeed, python3-lmdb reads every
database, the creation and rowid indexes match the data); and full recovery
once the fault is gone: in the same process (the next commit or `repair`
catches the backup up, `verify` passes) and in a new one (open, verify,
commit, verify, read everything).

How the faults are injected: tests/faults/tsfault.so, preloaded into a child
process, fails the Nth write/pwrite/writev/fdatasync/... call on the files of
one tier (TSFAULT_DIR).  The child opens the table disarmed and arms the
shim around the operation only.  A first run without a fault counts the
operation's calls and lists them (kind, file, offset, O_DSYNC); then one
child per call fails exactly that call ("once": a transient fault), every
call from it on until the child disarms the shim ("persist": a fault that
lasts until it goes away), or writes half of the bytes and returns a short
count ("short", what a filling disk does).  Every run starts from a copy of
the same base store, so the Nth call is the same call site in every run.
A transient ("once") fault on the backup's write may not fail the COMMIT:
after the concurrent backup write failed, tierstore runs the backup write
again, and that retry can succeed; then both tiers hold the commit.
While the child waits after the fault, the test reads both environments
from outside; then the child recovers.
"""
import errno
import fcntl
import json
import os
import shutil
import struct
import subprocess
import tempfile

import pytest

import workload
from conftest import (REPORT, PYTHON, PRELUDE, SQLITE_CANTOPEN, SQLITE_CORRUPT, SQLITE_FULL, SQLITE_IOERR,
                      SQLITE_READONLY, RawView, check_env, check_indexes, raw_rows, run_child, shim_env,
                      table_sql)

ERRNO_CODE = {"EIO": SQLITE_IOERR, "ENOSPC": SQLITE_FULL}
PAGE = 4096
AFTER = ("f", "", "after")        # the key of the recovery commit
FRESH = ("f", "", "fresh")        # the key of the new process's commit

BASE_STATE = workload.state_after(workload.base_ops())
FULL_STATE = workload.apply(BASE_STATE, workload.txn_ops())
SMALL_STATE = workload.apply(BASE_STATE, workload.txn_ops(small=True))
BASE_EPOCH = 2

# what the runs did, summed over the module and printed at the end
STATS = {"injection runs": 0, "failing calls injected": 0, "disk and directory faults": 0,
         "recovered in the same process": 0, "recovered by a new process": 0, "damaged files opened": 0,
         "backup ahead after a primary meta-page fault": 0}

REPORT['fault injection'] = STATS


def table(P, B, durability="durable", name="kv"):
    args = {"primary": str(P), "durability": durability}
    if B is not None:
        args["backup"] = str(B)
    return table_sql(name, **args)


BASE_CHILD = '''
cfg = json.loads(sys.argv[1])
con = connect(cfg["db"], cfg["table"])
for ops in workload.base_ops():
    workload.write_ops(con, ops)
cmd(con, "verify")
done({})
'''


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A store (primary + backup) holding the base commits, to be copied."""
    root = tmp_path_factory.mktemp("base")
    run_child(BASE_CHILD, [json.dumps({"db": str(root / "base.db"), "table": table(root / "p", root / "b")})])
    return root


@pytest.fixture(scope="module")
def behind(base, tmp_path_factory):
    """The base store after one more commit whose backup write failed: the
    primary holds FULL_STATE at epoch 3, the backup BASE_STATE at epoch 2."""
    root = tmp_path_factory.mktemp("behind")
    P, B = copy_base(base, root)
    out = run_fault(P, B, root / "x.db", "durable", "backup", 1, -1, "EIO", "none", op="none", behind=True)
    assert not out["behind"]["ok"] and str(B) in out["behind"]["msg"], out
    check_state(P, B, (FULL_STATE, BASE_EPOCH + 1), (BASE_STATE, BASE_EPOCH), "the store left behind")
    return root


def copy_base(src, dest):
    dest.mkdir(parents=True, exist_ok=True)
    for t in ("p", "b"):
        shutil.copytree(src / t, dest / t)
    return os.path.realpath(dest / "p"), os.path.realpath(dest / "b")


# ---------------------------------------------------------------------------
# the child of one injection run

FAULT_CHILD = '''
cfg = json.loads(sys.argv[1])
out = {}
con = None
def arm(at, times, err):
    LIB.tsfault_reset()
    LIB.tsfault_set(at, times, getattr(errno, err), cfg["classes"])
    LIB.tsfault_arm()
if cfg["op"] != "open":
    con = connect(cfg["db"], cfg["table"])
if cfg["behind"]:
    # the backup misses one commit (its write keeps failing meanwhile)
    arm(1, -1, "EIO")
    out["behind"] = attempt(workload.write_ops, con, workload.txn_ops())
    LIB.tsfault_disarm()
    if con.in_transaction:
        con.execute("ROLLBACK")
arm(cfg["at"], cfg["times"], cfg["errno"])
if cfg["op"] == "commit":
    out["result"] = attempt(workload.write_ops, con, workload.txn_ops(small=cfg["small"]))
elif cfg["op"] == "open":
    try:
        con = connect(cfg["db"], cfg["table"])
        out["result"] = {"ok": True}
    except sqlite3.Error as e:
        out["result"] = dict(err(e), ok=False)
elif cfg["op"] != "none":
    out["result"] = attempt(cmd, con, cfg["op"])
LIB.tsfault_disarm()
out["calls"], out["faults"] = LIB.tsfault_calls(), LIB.tsfault_faults()
if con is not None and con.in_transaction:
    con.execute("ROLLBACK")
if cfg["handshake"]:
    # the test reads the environments from outside, then lets us go on
    print("FAULTED " + json.dumps(out), flush=True)
    sys.stdin.readline()
rec = cfg["recover"]
if rec != "none":
    if con is None:
        con = connect(cfg["db"], cfg["table"])
    out["read"] = attempt(lambda: len(rows(con)))
    out["repair"] = attempt(cmd, con, "repair") if rec == "repair" else {"ok": True}
    out["next"] = attempt(workload.write_ops, con, [("put", ("f", "", "after"), b"after")])
    out["verify"] = attempt(cmd, con, "verify")
    out["sync"] = attempt(cmd, con, "sync")
done(out)
'''


def run_fault(P, B, db, durability, tier, at, times, err, recover, op="commit", calls="all",
              count_file=None, inspect=None, short=False, behind=False, small=False):
    """One child: arm the shim on `tier`'s directory around `op`, then
    recover.  inspect(out) runs while the child waits after the fault."""
    cfg = {"db": str(db), "table": table(P, B, durability), "at": at, "times": times, "errno": err,
           "classes": {"write": 1, "sync": 2, "all": 3}[calls], "op": op, "recover": recover,
           "handshake": inspect is not None, "behind": behind, "small": small}
    kv = {}
    if count_file:
        kv["count_file"] = count_file
    if short:
        kv["short"] = 1
    env = shim_env([P if tier == "primary" else B], **kv)
    proc = subprocess.Popen([PYTHON, "-c", PRELUDE + FAULT_CHILD, json.dumps(cfg)], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        if inspect is not None:
            line = proc.stdout.readline()
            if not line.startswith("FAULTED "):
                proc.kill()
                out, errs = proc.communicate()
                raise AssertionError("child did not reach the fault: %s\n%s\n%s" % (line, out, errs))
            inspect(json.loads(line[len("FAULTED "):]))
            proc.stdin.write("go\n")
            proc.stdin.flush()
        out, errs = proc.communicate(timeout=300)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode == 0, "child failed (rc=%d):\n%s\n%s" % (proc.returncode, out[-3000:], errs[-3000:])
    return json.loads([l for l in out.splitlines() if l.startswith("{")][-1])


def read_sites(count_file):
    """[(n, kind, path, offset, length, dsync)] from a count file."""
    sites = []
    with open(count_file) as f:
        for line in f:
            n, kind, path, off, length, dsync, _ = line.split()
            sites.append((int(n), kind, path, int(off), int(length), int(dsync)))
    return sites


def is_sync(site):
    return site[1] in ("fsync", "fdatasync", "msync")


def is_meta(site):
    """A write of one of the two meta pages (LMDB's commit point)."""
    return not is_sync(site) and site[3] < 2 * PAGE


def site_text(site):
    n, kind, path, off, length, dsync = site
    if is_sync(site):
        return "call %d %s(%s/%s)" % (n, kind, os.path.basename(os.path.dirname(path)), os.path.basename(path))
    return "call %d %s(%s/%s, offset %d, %d bytes%s)" % (
        n, kind, os.path.basename(os.path.dirname(path)), os.path.basename(path), off, length,
        ", O_DSYNC" if dsync else "")


def expect_error(res, tier_dir, err, what, code_strict=True):
    assert not res["ok"], "%s: succeeded despite the fault" % what
    assert res["msg"].startswith("tierstore:"), "%s: message %r" % (what, res["msg"])
    assert tier_dir in res["msg"], "%s: the message does not name %s: %r" % (what, tier_dir, res["msg"])
    if code_strict:
        want = ERRNO_CODE[err]
        assert res["code"] & 0xff == want, "%s: %s (%d), expected %s: %s" % (
            what, res["name"], res["code"], {SQLITE_IOERR: "SQLITE_IOERR", SQLITE_FULL: "SQLITE_FULL"}[want],
            res["msg"])
    else:
        assert res["code"] & 0xff in (SQLITE_IOERR, SQLITE_FULL), "%s: %s" % (what, res)


def check_state(P, B, want_p, want_b, what):
    """Exact contents and epochs ((state, epoch or None)) of both
    environments, their indexes, and LMDB's own tools on both."""
    p, b = RawView(P), RawView(B)    # this process never loads the extension
    for view, want, name in ((p, want_p, "primary"), (b, want_b, "backup")):
        state, epoch = want
        got = raw_rows(view)
        if got != state:
            extra = sorted(set(got) - set(state))[:5]
            missing = sorted(set(state) - set(got))[:5]
            changed = sorted(k for k in set(got) & set(state) if got[k] != state[k])[:5]
            raise AssertionError("%s: the %s holds a partial or wrong state: extra %s, missing %s, "
                                 "changed %s" % (what, name, extra, missing, changed))
        if epoch is not None:
            assert view.last_epoch == epoch, "%s: %s last_epoch %d, expected %d" % (
                what, name, view.last_epoch, epoch)
        check_indexes(view, "%s: %s" % (what, name))
    if want_p[1] is None and want_p[0] == want_b[0]:
        assert p.last_epoch == b.last_epoch, "%s: primary at epoch %d, backup at %d" % (
            what, p.last_epoch, b.last_epoch)
    check_env(P)
    check_env(B)


def check_recovered(res, P, B, state, what):
    """The child's own recovery: read, repair or next commit, verify, sync;
    then both environments hold state + the recovery commit."""
    for step in ("read", "repair", "next", "verify", "sync"):
        assert res[step]["ok"], "%s: once the fault was gone, %s failed in the same process: %s" % (
            what, step, res[step])
    state = dict(state)
    state[AFTER] = b"after"
    check_state(P, B, (state, None), (state, None), what + ", after recovering in the process")
    STATS["recovered in the same process"] += 1
    return state


FRESH_CHILD = '''
# a new process opens each run's table (which catches a lagging backup up),
# checks verify, commits, verifies again and returns the rows
res = []
for cfg in json.loads(sys.argv[1]):
    con = connect(cfg["db"], cfg["table"])
    r = {"verify1": attempt(cmd, con, "verify")}
    r["commit"] = attempt(workload.write_ops, con, [("put", ("f", "", "fresh"), b"fresh")])
    r["verify2"] = attempt(cmd, con, "verify")
    r["rows"] = attempt(lambda: rows(con))
    con.close()
    res.append(r)
done({"runs": res})
'''


def check_fresh(runs):
    """runs: [(P, B, db, durability, expected state, what)]: recovery in a
    new process (one for all runs), and LMDB's tools afterwards."""
    if not runs:
        return
    cfgs = [{"db": str(db), "table": table(P, B, dur)} for P, B, db, dur, _, _ in runs]
    out = run_child(FRESH_CHILD, [json.dumps(cfgs)], timeout=600)
    for (P, B, db, dur, state, what), r in zip(runs, out["runs"]):
        for step in ("verify1", "commit", "verify2", "rows"):
            assert r[step]["ok"], "%s: in a new process, %s failed: %s" % (what, step, r[step])
        want = dict(state)
        want[FRESH] = b"fresh"
        got = {(a, b_, c): bytes.fromhex(v) for a, b_, c, v in r["rows"]["value"]}
        assert got == want, "%s: a new process reads another state (%d rows, expected %d)" % (
            what, len(got), len(want))
        check_env(P)
        check_env(B)
        STATS["recovered by a new process"] += 1


def count_sites(src, tmp, durability, tier, op="commit", behind=False, small=False):
    """Run op without a fault and list the calls it makes on tier's files."""
    d = tmp / "count"
    P, B = copy_base(src, d)
    cf = str(d / "calls")
    res = run_fault(P, B, d / "c.db", durability, tier, 0, 1, "EIO", "none", op=op, count_file=cf, behind=behind,
                    small=small)
    assert res["result"]["ok"], res
    sites = read_sites(cf)
    assert len(sites) == res["calls"] and sites, "no calls counted on the %s: %s" % (tier, res)
    return sites


def inject_everywhere(src, tmp_path, sites, tier, durability, err, mode, op, expect, behind=False,
                      recover_meta=False, small=False):
    """Inject the fault at every site in turn.  expect(res, P, B, what,
    site) checks the state right after the fault and returns the state both
    environments must reach after recovery."""
    fresh = []
    for i, site in enumerate(sites):
        what = "%s %s %s %s, %s %s" % (op, tier, durability, err, mode, site_text(site))
        run = tmp_path / ("run%02d" % site[0])
        P, B = copy_base(src, run)
        meta = is_meta(site)
        # in-process recovery after a failed meta-page write is a known bug
        # (LMDB's MDB_PANIC sticks; see test_meta_page_fault_recovers_in_process)
        recover = "none" if meta and not recover_meta else ("repair" if i % 2 else "next")
        seen = {}

        def inspect(out):
            seen.update(out)
            assert out["faults"] >= 1, "%s: the fault was not injected: %s" % (what, out)
            if behind:
                assert not out["behind"]["ok"], out
            seen["state"] = expect(out["result"], P, B, what, site)

        res = run_fault(P, B, run / "f.db", durability, tier, site[0], -1 if mode == "persist" else 1, err,
                        recover, op=op, inspect=inspect, short=mode == "short", behind=behind, small=small)
        STATS["injection runs"] += 1
        STATS["failing calls injected"] += seen["faults"]
        state = seen["state"]
        if recover != "none":
            state = check_recovered(res, P, B, state, what)
        fresh.append((P, B, run / "g.db", durability, state, what))
    check_fresh(fresh)
    for P, B, db, _, _, _ in fresh:
        shutil.rmtree(os.path.dirname(P))


# ---------------------------------------------------------------------------
# the shim itself: every call it intercepts is counted, can fail, and is
# recorded (msync and pwritev are not used by LMDB 0.9 without WRITEMAP;
# they are checked here)

SHIM_CHILD = '''
import mmap
cfg = json.loads(sys.argv[1])
path, other = cfg["path"], cfg["other"]
calls = [
    ("write", lambda fd: os.write(fd, b"a" * 100)),
    ("pwrite", lambda fd: os.pwrite(fd, b"b" * 100, 4096)),
    ("writev", lambda fd: os.writev(fd, [b"c" * 50, b"d" * 50])),
    ("pwritev", lambda fd: os.pwritev(fd, [b"e" * 50, b"f" * 50], 8192)),
    ("fsync", lambda fd: os.fsync(fd)),
    ("fdatasync", lambda fd: os.fdatasync(fd)),
]
def run_all(fd, m):
    out = []
    for name, fn in calls:
        try:
            fn(fd)
            out.append([name, 0])
        except OSError as e:
            out.append([name, e.errno])
    try:
        m[0:3] = b"xyz"
        m.flush()
        out.append(["msync", 0])
    except OSError as e:
        out.append(["msync", e.errno])
    return out
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
os.ftruncate(fd, 16384)
m = mmap.mmap(fd, 16384)
ofd = os.open(other, os.O_RDWR | os.O_CREAT, 0o644)
res = {}
LIB.tsfault_arm()
res["plain"] = run_all(fd, m)
res["plain_calls"] = LIB.tsfault_calls()
os.write(ofd, b"not watched")
os.fsync(ofd)
res["after_other"] = LIB.tsfault_calls()
res["fail"] = []
for i in range(1, 8):
    LIB.tsfault_reset()
    LIB.tsfault_set(i, 1, errno.ENOSPC, 3)
    res["fail"].append(run_all(fd, m))
# only syncs counted (the 1st sync fails), only writes (every write from
# the 2nd on fails: a fault that persists)
LIB.tsfault_reset()
LIB.tsfault_set(1, 1, errno.EIO, 2)
res["sync_only"] = run_all(fd, m)
LIB.tsfault_reset()
LIB.tsfault_set(2, -1, errno.EIO, 1)
res["write_persist"] = run_all(fd, m)
LIB.tsfault_set(0, 1, 0, 3)
dfd = os.open(path, os.O_WRONLY | os.O_DSYNC)
LIB.tsfault_reset()
os.pwrite(dfd, b"g" * 10, 100)
res["dsync_calls"] = LIB.tsfault_calls()
LIB.tsfault_mark(b"the end")
LIB.tsfault_disarm()
done(res)
'''


def test_shim_counts_fails_and_records_every_call_kind(tmp_path):
    import powerloss
    d = tmp_path / "watched"
    d.mkdir()
    path, other = str(d / "f"), str(tmp_path / "other")
    log = str(tmp_path / "log")
    env = shim_env([d], count_file=str(tmp_path / "count"), record=log)
    out = run_child(SHIM_CHILD, [json.dumps({"path": path, "other": other})], env=env)
    names = ["write", "pwrite", "writev", "pwritev", "fsync", "fdatasync", "msync"]
    assert out["plain"] == [[n, 0] for n in names], out
    assert out["plain_calls"] == 7 and out["after_other"] == 7, "a file outside TSFAULT_DIR was counted"
    for i, row in enumerate(out["fail"]):
        # the i-th call fails with ENOSPC, the others succeed
        assert row == [[n, errno.ENOSPC if j == i else 0] for j, n in enumerate(names)], (i, row)
    assert out["sync_only"] == [[n, errno.EIO if n == "fsync" else 0] for n in names], out["sync_only"]
    assert out["write_persist"] == [[n, errno.EIO if n in ("pwrite", "writev", "pwritev") else 0]
                                    for n in names], out["write_persist"]
    # an O_DSYNC write counts once (as a write and a sync)
    assert out["dsync_calls"] == 1
    # the record log replays to the file's content (msync'd bytes are not
    # in it: mmap writes are not recorded)
    rec = powerloss.Log(log)
    assert [r.type for r in rec.records if r.type == powerloss.MARK] == [powerloss.MARK]
    files, *_ = rec.rebuild(len(rec.records), "all", {}, None)
    with open(path, "rb") as f:
        actual = bytearray(f.read())
    actual[0:3] = files[os.path.realpath(path)][0:3]        # the mmap write
    assert files[os.path.realpath(path)] == bytes(actual[:len(files[os.path.realpath(path)])])
    # the count file (emptied by each tsfault_reset): the O_DSYNC write
    assert [line.split()[1:2] + line.split()[5:] for line in open(tmp_path / "count")] == [["pwrite", "1", "0"]]


# ---------------------------------------------------------------------------
# every call site of a commit, primary and backup

def expect_commit_fault(tier, err, mode, full=FULL_STATE):
    def expect(res, P, B, what, site):
        if tier == "primary":
            expect_error(res, P, err, what, code_strict=mode != "short")
            # nothing of the transaction in the primary.  The backup is
            # written at the same time: a write only it took is undone
            # there at once, unless the primary's meta page failed (LMDB
            # then refuses every read of the primary until it is opened
            # again): then the backup holds the whole write, never part of
            # it, until the next open reconciles it (check_fresh)
            ahead = is_meta(site) and raw_rows(RawView(B)) == full
            STATS["backup ahead after a primary meta-page fault"] += ahead
            check_state(P, B, (BASE_STATE, BASE_EPOCH),
                        (full, BASE_EPOCH + 1) if ahead else (BASE_STATE, BASE_EPOCH), what)
            return BASE_STATE
        if res["ok"]:
            # a transient backup fault: the retry of the backup write took it
            assert mode != "persist", "%s: COMMIT succeeded although the backup kept failing" % what
            check_state(P, B, (full, BASE_EPOCH + 1), (full, BASE_EPOCH + 1), what)
            return full
        # (the code after a failed meta-page write: see
        # test_backup_meta_page_enospc_is_sqlite_full)
        expect_error(res, B, err, what, code_strict=mode != "short" and not is_meta(site))
        assert "did not take the commit" in res["msg"], what
        # the primary has all of it, the backup none of it
        check_state(P, B, (full, BASE_EPOCH + 1), (BASE_STATE, BASE_EPOCH), what)
        return full
    return expect


@pytest.mark.parametrize("mode", ["once", "persist"])
@pytest.mark.parametrize("err", ["EIO", "ENOSPC"])
@pytest.mark.parametrize("durability", ["durable", "written"])
@pytest.mark.parametrize("tier", ["primary", "backup"])
def test_fault_at_every_call_site_of_a_commit(base, workdir, tier, durability, err, mode):
    sites = count_sites(base, workdir, durability, tier)
    kinds = {s[1] for s in sites}
    # a commit writes pages (writev/pwrite), flushes them (fdatasync) and
    # writes the meta page (through an O_DSYNC descriptor when durable)
    assert "fdatasync" in kinds and any(is_meta(s) for s in sites), sites
    assert any(is_meta(s) and s[5] for s in sites) == (durability == "durable"), sites
    inject_everywhere(base, workdir, sites, tier, durability, err, mode, "commit",
                      expect_commit_fault(tier, err, mode))


@pytest.mark.parametrize("mode", ["once", "persist"])
@pytest.mark.parametrize("err", ["EIO", "ENOSPC"])
@pytest.mark.parametrize("durability", ["durable", "written"])
def test_fault_at_every_backup_call_site_of_a_small_commit(base, workdir, durability, err, mode):
    # a small commit: the backup's write is as short as the primary's, so
    # the two commits overlap the most
    sites = count_sites(base, workdir, durability, "backup", small=True)
    assert "fdatasync" in {s[1] for s in sites} and any(is_meta(s) for s in sites), sites
    inject_everywhere(base, workdir, sites, "backup", durability, err, mode, "commit",
                      expect_commit_fault("backup", err, mode, SMALL_STATE), small=True)


@pytest.mark.parametrize("durability", ["durable", "written"])
@pytest.mark.parametrize("tier", ["primary", "backup"])
def test_short_write_at_every_write_site_of_a_commit(base, workdir, tier, durability):
    """A write that stops half way (a filling disk): LMDB reports EIO."""
    sites = [s for s in count_sites(base, workdir, durability, tier) if not is_sync(s)]
    inject_everywhere(base, workdir, sites, tier, durability, "EIO", "short", "commit",
                      expect_commit_fault(tier, "EIO", "short"))


@pytest.mark.parametrize("err", ["EIO", "ENOSPC"])
def test_fault_at_every_call_site_of_repair(base, workdir, err):
    """`repair` of a backup one commit behind (the child's first commit
    failed on the backup, after the table opened): it fails naming the
    backup, which stays exactly one commit behind."""
    sites = count_sites(base, workdir, "durable", "backup", op="repair", behind=True)

    def expect(res, P, B, what, site):
        expect_error(res, B, err, what, code_strict=not is_meta(site))
        check_state(P, B, (FULL_STATE, BASE_EPOCH + 1), (BASE_STATE, BASE_EPOCH), what)
        return FULL_STATE

    inject_everywhere(base, workdir, sites, "backup", "durable", err, "once", "repair", expect, behind=True)


@pytest.mark.parametrize("err", ["EIO", "ENOSPC"])
def test_fault_at_every_call_site_of_catch_up_at_open(behind, workdir, err):
    """Opening a table whose backup is behind catches it up; a fault there
    is not reported at open (README), the backup stays behind, and the next
    commit catches it up."""
    sites = count_sites(behind, workdir, "durable", "backup", op="open")

    def expect(res, P, B, what, site):
        assert res["ok"], "%s: the open failed: %s" % (what, res)
        check_state(P, B, (FULL_STATE, BASE_EPOCH + 1), (BASE_STATE, BASE_EPOCH), what)
        return FULL_STATE

    inject_everywhere(behind, workdir, sites, "backup", "durable", err, "once", "open", expect)


@pytest.mark.parametrize("err", ["EIO", "ENOSPC"])
@pytest.mark.parametrize("tier", ["primary", "backup"])
def test_fault_in_sync_command(base, workdir, tier, err):
    """The `sync` command: its flush fails naming the tier, nothing
    changes, the next `sync` succeeds."""
    sites = count_sites(base, workdir, "durable", tier, op="sync")
    assert sites and all(is_sync(s) for s in sites), sites

    def expect(res, P, B, what, site):
        expect_error(res, P if tier == "primary" else B, err, what)
        check_state(P, B, (BASE_STATE, BASE_EPOCH), (BASE_STATE, BASE_EPOCH), what)
        return BASE_STATE

    inject_everywhere(base, workdir, sites, tier, "durable", err, "once", "sync", expect)


# ---------------------------------------------------------------------------
# known bug: a failed meta-page write leaves LMDB's environment in MDB_PANIC,
# and tierstore keeps using that handle until every table of the process
# that uses the directory is closed

def meta_site(base, tmp_path, tier, small=False):
    return [s for s in count_sites(base, tmp_path, "durable", tier, small=small) if is_meta(s)][0]


@pytest.mark.xfail(strict=True, raises=AssertionError, reason="bug: after a failed meta-page write LMDB returns MDB_PANIC for "
                   "every later transaction on that MDB_env, and tierstore never reopens it")
@pytest.mark.parametrize("tier", ["primary", "backup"])
def test_meta_page_fault_recovers_in_process(base, workdir, tier):
    site = meta_site(base, workdir, tier)
    P, B = copy_base(base, workdir / "run")
    res = run_fault(P, B, workdir / "f.db", "durable", tier, site[0], 1, "EIO", "next")
    assert not res["result"]["ok"]
    check_recovered(res, P, B, FULL_STATE if tier == "backup" else BASE_STATE,
                    "EIO at the %s's meta-page write" % tier)


def test_backup_meta_page_enospc_is_sqlite_full(base, workdir):
    # the backup's own write fails first; the reconciliation tried after
    # it meets LMDB's MDB_PANIC: the first cause is the one reported
    site = meta_site(base, workdir, "backup")
    P, B = copy_base(base, workdir / "run")
    res = run_fault(P, B, workdir / "f.db", "durable", "backup", site[0], 1, "ENOSPC", "none")
    expect_error(res["result"], B, "ENOSPC", "ENOSPC at the backup's meta-page write")


def test_backup_meta_page_enospc_of_a_small_commit_is_sqlite_full(base, workdir):
    # the backup write of a small commit: its error is the cause, not the
    # MDB_PANIC of the reconciliation tried after it
    site = meta_site(base, workdir, "backup", small=True)
    P, B = copy_base(base, workdir / "run")
    res = run_fault(P, B, workdir / "f.db", "durable", "backup", site[0], 1, "ENOSPC", "none", small=True)
    expect_error(res["result"], B, "ENOSPC", "ENOSPC at the backup's meta-page write of a small commit")
    check_state(P, B, (SMALL_STATE, BASE_EPOCH + 1), (BASE_STATE, BASE_EPOCH), "after the backup's meta-page fault")


def test_meta_page_fault_recovers_after_reopen_in_the_same_process(base, workdir):
    """The workaround: close every connection whose tables use the
    directory (the environment is closed with the last one), open again."""
    site = meta_site(base, workdir, "primary")
    P, B = copy_base(base, workdir / "run")
    out = run_child('''
        cfg = json.loads(sys.argv[1])
        con = connect(cfg["db"], cfg["table"])
        LIB.tsfault_set(cfg["at"], 1, errno.EIO, 3)
        LIB.tsfault_arm()
        r = {"commit": attempt(workload.write_ops, con, workload.txn_ops())}
        LIB.tsfault_disarm()
        if con.in_transaction:
            con.execute("ROLLBACK")
        r["read"] = attempt(lambda: len(rows(con)))
        con.close()
        con = connect(cfg["db"], cfg["table"])
        r["reopened"] = attempt(workload.write_ops, con, [("put", ("f", "", "after"), b"after")])
        r["verify"] = attempt(cmd, con, "verify")
        done(r)
    ''', [json.dumps({"db": str(workdir / "f.db"), "table": table(P, B), "at": site[0]})], env=shim_env([P]))
    assert not out["commit"]["ok"] and "MDB_PANIC" in out["read"].get("msg", ""), out
    assert out["reopened"]["ok"] and out["verify"]["ok"], out
    state = dict(BASE_STATE)
    state[AFTER] = b"after"
    check_state(P, B, (state, None), (state, None), "reopened after a meta-page fault")


# ---------------------------------------------------------------------------
# full disks (tmpfs)

def fill(path, leave=0):
    """A filler file that leaves about `leave` bytes free on path's file system."""
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    filler = os.path.join(path, "filler")
    with open(filler, "wb", buffering=0) as f:
        todo = max(0, free - leave)
        while todo > 0:
            todo -= f.write(bytes(min(1 << 20, todo)))
        if leave == 0:
            try:
                while True:
                    f.write(bytes(4096))
            except OSError:
                pass
    return filler


@pytest.mark.parametrize("leave", [0, 20 * 1024])
@pytest.mark.parametrize("tier", ["primary", "backup"])
def test_disk_full(base, tmp_path, tmpfs, tier, leave):
    """The tier's file system is full (no byte left, or 20 KiB left so the
    commit's write stops part way): COMMIT fails with SQLITE_FULL naming the
    tier, no partial transaction; with room again, everything recovers."""
    root = tmp_path / "run"
    root.mkdir()
    mnt = tmpfs(root / ("p" if tier == "primary" else "b"), "2m")
    other = root / ("b" if tier == "primary" else "p")
    shutil.copytree(base / ("b" if tier == "primary" else "p"), other)
    for f in os.listdir(base / ("p" if tier == "primary" else "b")):
        shutil.copy(base / ("p" if tier == "primary" else "b") / f, mnt)
    P, B = os.path.realpath(root / "p"), os.path.realpath(root / "b")
    what = "%s disk full (%d bytes left)" % (tier, leave)
    seen = {}

    def inspect(out):
        res = out["result"]
        if tier == "primary":
            expect_error(res, P, "ENOSPC", what)
            check_state(P, B, (BASE_STATE, BASE_EPOCH), (BASE_STATE, BASE_EPOCH), what)
            seen["state"] = BASE_STATE
        else:
            expect_error(res, B, "ENOSPC", what)
            check_state(P, B, (FULL_STATE, BASE_EPOCH + 1), (BASE_STATE, BASE_EPOCH), what)
            seen["state"] = FULL_STATE
        os.unlink(seen["filler"])          # the fault goes away

    # the child opens the table, then the disk is filled, then it commits
    out = run_disk_full_child(P, B, root / "f.db", mnt, leave, inspect, seen)
    state = check_recovered(out, P, B, seen["state"], what)
    check_fresh([(P, B, root / "g.db", "durable", state, what)])


DISK_FULL_CHILD = '''
cfg = json.loads(sys.argv[1])
con = connect(cfg["db"], cfg["table"])
print("OPEN", flush=True)
sys.stdin.readline()              # the test fills the disk
out = {"result": attempt(workload.write_ops, con, workload.txn_ops())}
if con.in_transaction:
    con.execute("ROLLBACK")
print("FAULTED " + json.dumps(out), flush=True)
sys.stdin.readline()              # the test checks, then makes room
out["read"] = attempt(lambda: len(rows(con)))
out["repair"] = attempt(cmd, con, "repair")
out["next"] = attempt(workload.write_ops, con, [("put", ("f", "", "after"), b"after")])
out["verify"] = attempt(cmd, con, "verify")
out["sync"] = attempt(cmd, con, "sync")
done(out)
'''


def run_disk_full_child(P, B, db, mnt, leave, inspect, seen):
    cfg = {"db": str(db), "table": table(P, B)}
    proc = subprocess.Popen([PYTHON, "-c", PRELUDE + DISK_FULL_CHILD, json.dumps(cfg)], env=shim_env([]),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "OPEN"
        seen["filler"] = fill(mnt, leave)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        assert line.startswith("FAULTED "), line
        inspect(json.loads(line[len("FAULTED "):]))
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out, errs = proc.communicate(timeout=300)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode == 0, errs
    STATS["disk and directory faults"] += 1
    return json.loads([l for l in out.splitlines() if l.startswith("{")][-1])


# ---------------------------------------------------------------------------
# an unwritable backup directory (permissions stop user nobody, not root:
# the child runs as nobody)

OPEN_CHILD = '''
cfg = json.loads(sys.argv[1])
r = {}
try:
    con = connect(cfg["db"], cfg["table"])
    r["open"] = {"ok": True}
    r["commit"] = attempt(workload.write_ops, con, workload.txn_ops(cfg.get("tag", "T")))
    r["verify"] = attempt(cmd, con, "verify")
    r["rows"] = attempt(lambda: len(rows(con)))
except sqlite3.Error as e:
    r["open"] = dict(err(e), ok=False)
done(r)
'''


def nobody_root(base):
    """A directory user nobody can reach, holding a copy of the base store
    owned by nobody."""
    root = tempfile.mkdtemp(prefix="tierstore-faults-")
    os.chmod(root, 0o755)
    P, B = copy_base(base, __import__("pathlib").Path(root))
    for d in (root, P, B):
        for dirpath, dirnames, filenames in os.walk(d):
            os.chown(dirpath, 65534, 65534)
            for f in filenames:
                os.chown(os.path.join(dirpath, f), 65534, 65534)
    return root, P, B


@pytest.mark.parametrize("how", ["files", "directory", "parent"])
def test_unwritable_backup_directory(base, how):
    """(Runs the child as user nobody: needs root.)
    The backup's files (or its directory, or the parent a missing backup
    directory would be made in) cannot be written by the user: the table
    does not open, with a 'tierstore:' error naming the backup; nothing
    changes; once the permissions are fixed the table opens and works."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a child as user nobody")
    root, P, B = nobody_root(base)
    try:
        if how == "files":
            for f in os.listdir(B):
                os.chown(os.path.join(B, f), 0, 0)        # root's 0644 files
        elif how == "directory":
            shutil.rmtree(B)
            os.mkdir(B, 0o555)                             # an empty, unwritable directory
        else:
            shutil.rmtree(B)
            B = os.path.join(root, "locked", "b")
            os.makedirs(os.path.dirname(B), 0o755)         # root's directory
        cfg = {"db": os.path.join(root, "t.db"), "table": table(P, B)}
        out = run_child(OPEN_CHILD, [json.dumps(cfg)], nobody=True)
        res = out["open"]
        what = "backup not writable (%s)" % how
        assert not res["ok"], "%s: the table opened: %s" % (what, out)
        assert res["msg"].startswith("tierstore:") and B in res["msg"], "%s: %s" % (what, res)
        assert res["code"] & 0xff in (SQLITE_READONLY, SQLITE_CANTOPEN), "%s: %s" % (what, res)
        if how == "files":
            check_state(P, B, (BASE_STATE, BASE_EPOCH), (BASE_STATE, BASE_EPOCH), what)
        else:
            assert RawView(P).rows and raw_rows(RawView(P)) == BASE_STATE
            assert not os.path.exists(os.path.join(B, "data.mdb"))
        # the fault goes away
        for d in (os.path.dirname(B), B):
            if os.path.exists(d):
                os.chown(d, 65534, 65534)
                for f in os.listdir(d):
                    os.chown(os.path.join(d, f), 65534, 65534)
                os.chmod(d, 0o755)
        out = run_child(OPEN_CHILD, [json.dumps(cfg)], nobody=True)
        for step in ("open", "commit", "verify", "rows"):
            assert out[step]["ok"], "%s, fixed: %s failed: %s" % (what, step, out[step])
        check_state(P, B, (FULL_STATE, BASE_EPOCH + 1), (FULL_STATE, BASE_EPOCH + 1), what + ", fixed")
        STATS["disk and directory faults"] += 1
        STATS["recovered by a new process"] += 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------------------
# a backup directory that vanishes while the table is open

VANISH_CHILD = '''
cfg = json.loads(sys.argv[1])
con = connect(cfg["db"], cfg["table"])
print("OPEN", flush=True)
sys.stdin.readline()              # the test removes the backup directory
out = {"result": attempt(workload.write_ops, con, workload.txn_ops())}
out["verify"] = attempt(cmd, con, "verify")
done(out)
'''


def run_vanish(base, tmp_path):
    P, B = copy_base(base, tmp_path / "run")
    cfg = {"db": str(tmp_path / "f.db"), "table": table(P, B)}
    proc = subprocess.Popen([PYTHON, "-c", PRELUDE + VANISH_CHILD, json.dumps(cfg)], env=shim_env([]),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "OPEN"
        shutil.rmtree(B)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out, errs = proc.communicate(timeout=120)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode == 0, errs
    return P, B, json.loads([l for l in out.splitlines() if l.startswith("{")][-1])


def test_vanished_backup_directory_fails_the_commit(base, tmp_path):
    P, B, out = run_vanish(base, tmp_path)
    res = out["result"]
    if res["ok"]:
        assert os.path.exists(os.path.join(B, "data.mdb")), (
            "COMMIT succeeded, but the backup directory %s no longer exists (verify: %s)" % (B, out["verify"]))
        assert raw_rows(RawView(B)) == FULL_STATE
    else:
        assert res["msg"].startswith("tierstore:") and B in res["msg"], res


def test_vanished_backup_directory_is_rebuilt_by_a_new_process(base, tmp_path):
    """Whatever the commit said, the primary has it (a failed backup write
    leaves the primary's commit in place), and the next open creates the
    backup directory again and fills it from the primary."""
    P, B, out = run_vanish(base, tmp_path)
    state = FULL_STATE
    assert raw_rows(RawView(P)) == state
    check_fresh([(P, B, tmp_path / "g.db", "durable", state, "vanished backup directory")])
    STATS["disk and directory faults"] += 1


# ---------------------------------------------------------------------------
# the backup's disk dies under an open table: an ext4 image on a loop
# device, shut down with the EXT4_IOC_SHUTDOWN ioctl (every later write,
# flush and file creation on it fails with EIO), then unmounted and mounted
# again (journal replayed): the disk "comes back"

EXT4_IOC_SHUTDOWN = 0x8004587D
EXT4_GOING_FLAGS_NOLOGFLUSH = 2

DIES_CHILD = '''
cfg = json.loads(sys.argv[1])
con = connect(cfg["db"], cfg["table"])
out = {"before": attempt(workload.write_ops, con, [("put", ("f", "", "before"), b"before")])}
print("OPEN", flush=True)
sys.stdin.readline()              # the test shuts the backup's file system down
out["result"] = attempt(workload.write_ops, con, workload.txn_ops())
if con.in_transaction:
    con.execute("ROLLBACK")
out["read"] = attempt(lambda: len(rows(con)))
out["verify"] = attempt(cmd, con, "verify")
out["repair"] = attempt(cmd, con, "repair")
con.close()                       # the last table on it closes the environment
print("FAULTED " + json.dumps(out), flush=True)
sys.stdin.readline()              # the test unmounts and mounts the disk again
con = connect(cfg["db"], cfg["table"])
out["next"] = attempt(workload.write_ops, con, [("put", ("f", "", "after"), b"after")])
out["verify2"] = attempt(cmd, con, "verify")
done(out)
'''


def test_backup_disk_dies_under_an_open_table(base, tmp_path, loopfs):
    root = tmp_path / "run"
    root.mkdir()
    P = os.path.realpath(root / "p")
    shutil.copytree(base / "p", P)
    mnt = loopfs(root / "bdisk", 16)
    B = os.path.join(os.path.realpath(mnt), "b")
    shutil.copytree(base / "b", B)
    cfg = {"db": str(root / "f.db"), "table": table(P, B)}
    proc = subprocess.Popen([PYTHON, "-c", PRELUDE + DIES_CHILD, json.dumps(cfg)], env=shim_env([]),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    before = dict(BASE_STATE)
    before[("f", "", "before")] = b"before"
    try:
        assert proc.stdout.readline().strip() == "OPEN"
        fd = os.open(mnt, os.O_RDONLY)
        try:
            fcntl.ioctl(fd, EXT4_IOC_SHUTDOWN, struct.pack("I", EXT4_GOING_FLAGS_NOLOGFLUSH))
        finally:
            os.close(fd)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        assert line.startswith("FAULTED "), line + proc.stderr.read()
        out = json.loads(line[len("FAULTED "):])
        what = "the backup's disk died"
        assert out["before"]["ok"], out
        expect_error(out["result"], B, "EIO", what)
        assert out["read"]["ok"], out           # the primary still serves reads
        for step in ("verify", "repair"):
            assert not out[step]["ok"] and out[step]["msg"].startswith("tierstore:") and B in out[step]["msg"], (
                step, out[step])
        full = workload.apply(before, workload.txn_ops())
        p = RawView(P)
        assert raw_rows(p) == full and p.last_epoch == BASE_EPOCH + 2, "the primary lacks the commit"
        check_indexes(p, what)
        check_env(P)
        # the disk comes back: what reached it before it died is there
        img = mnt.rstrip("/") + ".img"
        assert subprocess.run(["umount", mnt]).returncode == 0
        assert subprocess.run(["mount", "-o", "loop", img, mnt]).returncode == 0
        b = RawView(B)
        assert raw_rows(b) == before and b.last_epoch == BASE_EPOCH + 1, "the backup lost a durable commit"
        check_env(B)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        rest, errs = proc.communicate(timeout=120)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    assert proc.returncode == 0, errs
    out = json.loads([l for l in rest.splitlines() if l.startswith("{")][-1])
    assert out["next"]["ok"] and out["verify2"]["ok"], out
    full[AFTER] = b"after"
    check_state(P, B, (full, None), (full, None), "the backup's disk came back")
    check_fresh([(P, B, root / "g.db", "durable", full, "the backup's disk came back")])
    STATS["disk and directory faults"] += 1


# ---------------------------------------------------------------------------
# a damaged data.mdb (tests/sql/07_errors.sql and tests/py/test_durability.py
# cover files that are not LMDB at all: zeros, text, random bytes).  Here
# the file is a valid environment with one part damaged.

def meta_roots(path):
    """(main DB root page, last page) of the newest meta page of data.mdb."""
    with open(path, "rb") as f:
        head = f.read(2 * PAGE)
    best = None
    for m in (0, 1):
        off = m * PAGE + 16
        txnid = struct.unpack_from("<Q", head, off + 128)[0]
        # MDB_meta: magic, version (u32), address, mapsize, dbs[2] (48
        # bytes each, md_root last), last_pg, txnid
        root = struct.unpack_from("<Q", head, off + 24 + 48 + 40)[0]
        last = struct.unpack_from("<Q", head, off + 120)[0]
        if best is None or txnid > best[0]:
            best = (txnid, root, last)
    return best[1], best[2]


def page_nodes(path, pgno):
    """[(key bytes, node data or child pgno)] of one page."""
    with open(path, "rb") as f:
        f.seek(pgno * PAGE)
        page = f.read(PAGE)
    flags, lower = struct.unpack_from("<HH", page, 10)
    nodes = []
    for i in range((lower - 16) // 2):
        ptr = struct.unpack_from("<H", page, 16 + 2 * i)[0]
        lo, hi, nflags, ksize = struct.unpack_from("<HHHH", page, ptr)
        k = page[ptr + 8:ptr + 8 + ksize]
        if flags & 0x01:                      # P_BRANCH: the child's page number
            nodes.append((k, lo | (hi << 16) | (nflags << 32)))
        else:                                 # P_LEAF: the data
            nodes.append((k, page[ptr + 8 + ksize:ptr + 8 + ksize + (lo | (hi << 16))]))
    return nodes


def data_pages(path):
    """(root page of the 'data' database, a leaf page that is not its first,
    the first key of that leaf)."""
    main_root, _ = meta_roots(path)
    sub = dict(page_nodes(path, main_root))[b"data"]
    data_root = struct.unpack_from("<Q", sub, 40)[0]
    branch = page_nodes(path, data_root)
    assert len(branch) > 2, "the data database is a single page"
    return data_root, branch[1][1], branch[1][0]


def zero_page(path, pgno):
    with open(path, "r+b") as f:
        f.seek(pgno * PAGE)
        f.write(bytes(PAGE))


DAMAGE_CHILD = '''
cfg = json.loads(sys.argv[1])
r = {}
try:
    con = connect(cfg["db"], cfg["table"])
    r["open"] = {"ok": True}
    if cfg.get("point"):
        r["point"] = attempt(lambda: con.execute(
            "SELECT count(*) FROM kv WHERE primary_namespace=? AND secondary_namespace=? AND key=?",
            cfg["point"]).fetchall())
    else:
        r["scan"] = attempt(lambda: len(rows(con)))
        r["commit"] = attempt(workload.write_ops, con, workload.txn_ops("U"))
except sqlite3.Error as e:
    r["open"] = dict(err(e), ok=False)
done(r)
'''


def damaged_store(base, tmp_path):
    P = os.path.realpath(tmp_path / "p")
    shutil.copytree(base / "p", P)
    return P, os.path.join(P, "data.mdb")


def run_damaged(P, tmp_path, point=None):
    cfg = {"db": str(tmp_path / "d.db"), "table": table(P, None), "point": point}
    out = run_child(DAMAGE_CHILD, [json.dumps(cfg)], check=False)
    assert out["rc"] == 0, "the process died (rc %d, signal %d) instead of reporting SQLITE_CORRUPT:\n%s" % (
        out["rc"], -out["rc"] if out["rc"] < 0 else 0, out.get("stderr", "")[-2000:])
    return out


def assert_corrupt(res, P, what):
    assert not res["ok"], "%s: no error" % what
    assert res["msg"].startswith("tierstore:") and P in res["msg"], "%s: %s" % (what, res)
    assert res["code"] & 0xff == SQLITE_CORRUPT, "%s: %s, not SQLITE_CORRUPT" % (what, res)


@pytest.mark.parametrize("part", ["both meta pages", "main root", "data root", "leaf (point read)"])
def test_damaged_page_is_sqlite_corrupt(base, tmp_path, part):
    """A zeroed page that LMDB reaches through its tree: SQLITE_CORRUPT
    naming the environment, no crash, the file left as it was."""
    P, f = damaged_store(base, tmp_path)
    data_root, leaf, first = data_pages(f)
    point = None
    if part == "both meta pages":
        zero_page(f, 0)
        zero_page(f, 1)
    elif part == "main root":
        zero_page(f, meta_roots(f)[0])
    elif part == "data root":
        zero_page(f, data_root)
    else:
        zero_page(f, leaf)
        point = list(pyconf_decode(first))
    with open(f, "rb") as fh:
        damaged = fh.read()
    out = run_damaged(P, tmp_path, point)
    if part in ("both meta pages", "main root"):
        assert_corrupt(out["open"], P, part)
    elif part == "data root":
        res = out["scan"] if out["open"]["ok"] else out["open"]
        assert_corrupt(res, P, part)
    else:
        assert_corrupt(out["point"], P, part)
    with open(f, "rb") as fh:
        assert fh.read() == damaged, "the damaged file was changed"
    STATS["damaged files opened"] += 1


def pyconf_decode(k):
    from conftest import pyconf
    return pyconf.decode_key(k)


@pytest.mark.xfail(strict=True, raises=AssertionError, reason="LMDB 0.9.24 limitation: a scan that steps onto a zeroed leaf "
                   "page aborts the process (assertion IS_LEAF(mp) in mdb_cursor_next)")
def test_zeroed_leaf_page_in_a_scan_is_sqlite_corrupt(base, tmp_path):
    P, f = damaged_store(base, tmp_path)
    zero_page(f, data_pages(f)[1])
    out = run_damaged(P, tmp_path)
    assert_corrupt(out["scan"], P, "zeroed leaf page, full scan")


@pytest.mark.parametrize("keep", ["half", "all but the last page"])
def test_truncated_data_mdb_is_sqlite_corrupt(base, tmp_path, keep):
    P, f = damaged_store(base, tmp_path)
    _, last = meta_roots(f)
    size = (last + 1) * PAGE
    assert os.path.getsize(f) >= size
    os.truncate(f, size // 2 if keep == "half" else size - PAGE)
    out = run_damaged(P, tmp_path)
    res = out["open"] if not out["open"]["ok"] else out["scan"]
    assert_corrupt(res, P, "data.mdb truncated (%s)" % keep)


def test_meta_pages_with_page_size_zero_are_sqlite_corrupt(base, tmp_path):
    P, f = damaged_store(base, tmp_path)
    with open(f, "r+b") as fh:
        for m in (0, 1):
            fh.seek(m * PAGE + 16 + 24)      # mm_psize (the free DB's md_pad) of each meta page
            fh.write(bytes(4))
    out = run_damaged(P, tmp_path)
    assert_corrupt(out["open"], P, "meta pages with page size 0")
