"""Shared helpers of the fault and power-loss tests (tests/faults/).

The helpers of tests/py/conftest.py (loading the extension, python3-lmdb
readers, the tmpfs fixture) are reused: that file is loaded under another
module name, because this one is also called conftest.

  SHIM                 path of build/tests/faults/tsfault.so (the LD_PRELOAD shim)
  shim_env(dirs, **kv) environment of a child process with the shim preloaded
                       (after the sanitizer runtimes, when those are preloaded),
                       watching the directories `dirs`, disarmed until the child
                       calls tsfault_arm(); kv sets TSFAULT_* variables
  run_child(code, args, env)  /usr/bin/python3 -c PRELUDE+code; returns the JSON
                       object the child printed last
  check_env(dir)       mdb_stat -a -f -e and mdb_dump -a succeed on dir (no
                       corruption visible to LMDB's own tools)
  scale()              TIERSTORE_FAULTS_SCALE (default 1): longer runs
Fixtures: tmpfs (from tests/py), loopfs (a small ext4 on a loop device).
"""
import importlib.util
import json
import os
import subprocess
import textwrap

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location(
    "tierstore_py_conftest", os.path.join(os.path.dirname(HERE), "py", "conftest.py"))
pyconf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pyconf)

# fixtures reused from tests/py/conftest.py
tmpfs = pyconf.tmpfs
ext = pyconf.ext

PYTHON = pyconf.PYTHON
EXT = pyconf.EXT
BUILD_ROOT = pyconf.BUILD_ROOT
SHIM = os.path.join(BUILD_ROOT, "tests", "faults", "tsfault.so")
RawView = pyconf.RawView
raw_stores = pyconf.raw_stores
table_sql = pyconf.table_sql

SQLITE_IOERR, SQLITE_FULL, SQLITE_READONLY, SQLITE_CANTOPEN, SQLITE_CORRUPT = 10, 13, 8, 14, 11


def scale():
    try:
        return max(1, int(os.environ.get("TIERSTORE_FAULTS_SCALE", "1")))
    except ValueError:
        return 1


def shim_env(dirs, **kv):
    env = pyconf.child_env()
    pre = env.get("LD_PRELOAD", "").split()
    env["LD_PRELOAD"] = " ".join(pre + [SHIM])
    env["TSFAULT_LIB"] = SHIM
    env["TSFAULT_DIR"] = ":".join(os.path.realpath(str(d)) for d in dirs)
    env["TSFAULT_ARMED"] = "0"
    env["PYTHONPATH"] = HERE
    for k, v in kv.items():
        env["TSFAULT_" + k.upper()] = str(v)
    return env


def plain_env():
    env = pyconf.child_env()
    env["PYTHONPATH"] = HERE
    return env


PRELUDE = textwrap.dedent('''
    import ctypes, errno, json, os, sqlite3, sys
    sys.path.insert(0, %r)
    import workload
    EXT = os.environ["TIERSTORE_EXT"]
    LIB = ctypes.CDLL(os.environ["TSFAULT_LIB"]) if os.environ.get("TSFAULT_LIB") else None
    def connect(path, table):
        con = sqlite3.connect(str(path), isolation_level=None, timeout=30.0)
        con.enable_load_extension(True)
        con.load_extension(EXT)
        if table:
            con.execute(table)
        return con
    def err(e):
        return {"name": getattr(e, "sqlite_errorname", type(e).__name__),
                "code": getattr(e, "sqlite_errorcode", -1), "msg": str(e)}
    def attempt(fn, *a):
        try:
            r = fn(*a)
            return {"ok": True, "value": r}
        except sqlite3.Error as e:
            return dict(err(e), ok=False)
    def rows(con, table="kv"):
        return [[r[0], r[1], r[2], r[3].hex() if isinstance(r[3], bytes) else r[3]]
                for r in con.execute('SELECT primary_namespace, secondary_namespace, key, value FROM "%%s"' %% table)]
    def cmd(con, c, table="kv"):
        con.execute('INSERT INTO "%%s"("%%s") VALUES (?)' %% (table, table), (c,))
    def done(obj):
        sys.stdout.write("\\n" + json.dumps(obj) + "\\n")
        sys.stdout.flush()
''' % HERE)


def as_nobody():
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


def run_child(code, args=(), env=None, timeout=300, check=True, nobody=False):
    """Run PRELUDE+code in /usr/bin/python3 (as user nobody when asked)."""
    src = PRELUDE + textwrap.dedent(code)
    proc = subprocess.run([PYTHON, "-c", src] + [str(a) for a in args], env=env or plain_env(),
                          capture_output=True, text=True, timeout=timeout,
                          preexec_fn=as_nobody if nobody else None)
    if check and proc.returncode != 0:
        raise AssertionError("child process failed (rc=%d)\nstdout:\n%s\nstderr:\n%s"
                             % (proc.returncode, proc.stdout[-4000:], proc.stderr[-4000:]))
    lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
    if not lines:
        if not check:
            return {"rc": proc.returncode, "stderr": proc.stderr}
        raise AssertionError("child printed no result\nstdout:\n%s\nstderr:\n%s"
                             % (proc.stdout[-4000:], proc.stderr[-4000:]))
    out = json.loads(lines[-1])
    out["rc"] = proc.returncode
    out["stderr"] = proc.stderr
    return out


TOOL_ENV = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")}


def check_env(d):
    """LMDB's own tools read every database and the free list of d (run
    without the sanitizer runtimes a sanitizer build preloads)."""
    for args in (["mdb_stat", "-a", "-f", "-e", str(d)], ["mdb_dump", "-a", str(d)]):
        proc = subprocess.run(args, capture_output=True, text=True, timeout=60, env=TOOL_ENV)
        assert proc.returncode == 0, "%s failed (rc=%d): %s" % (" ".join(args), proc.returncode,
                                                                 proc.stderr.strip())


def raw_rows(view):
    """{(pns, sns, key): value bytes} of a RawView."""
    return {k: (v[2] if isinstance(v[2], bytes) else v[2]) for k, v in view.rows.items()}


def check_indexes(view, what):
    """The creation and rowid indexes of an environment agree with its data."""
    by_rowid = {}
    for k, (rowid, epoch, value) in view.rows.items():
        assert rowid not in by_rowid, "%s: rowid %d given twice" % (what, rowid)
        by_rowid[rowid] = k
    rowids = {int.from_bytes(k, "big"): v for k, v in view.rowids}
    assert set(rowids) == set(by_rowid), "%s: the rowid index does not match the data" % what
    for r, enc in rowids.items():
        assert pyconf.decode_key(enc) == by_rowid[r], "%s: rowid %d indexes the wrong key" % (what, r)
    assert len(view.created) == len(view.rows), "%s: creation index has %d entries for %d keys" % (
        what, len(view.created), len(view.rows))


# figures the test modules add up (printed at the end of the run, so that
# meson's test log shows them)
REPORT = {}


def pytest_terminal_summary(terminalreporter):
    for name, stats in REPORT.items():
        terminalreporter.write_line("%s: %s" % (name, json.dumps(stats)))


@pytest.fixture
def workdir(tmp_path):
    """A directory for a test's stores: a tmpfs mounted under tmp_path when
    possible (as root; TIERSTORE_FAULTS_TMPFS=0 turns it off), else
    tmp_path.  The runs flush a lot, and nothing they check depends on the
    disk (the faults are injected, the power loss is replayed)."""
    d = tmp_path / "tmpfs"
    d.mkdir()
    if os.geteuid() != 0 or os.environ.get("TIERSTORE_FAULTS_TMPFS") == "0" or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1g", "tmpfs", str(d)], capture_output=True).returncode != 0:
        yield d
        return
    try:
        yield d
    finally:
        if subprocess.run(["umount", str(d)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(d)], capture_output=True)


@pytest.fixture
def loopfs():
    """loopfs(dir, size_mb=16) mounts a new ext4 on a loop device on dir;
    unmounted (and the device freed) at teardown.  Skips without loop
    devices.  Returns dir."""
    mounted = []

    def _mount(path, size_mb=16):
        path = str(path)
        os.makedirs(path, exist_ok=True)
        img = path.rstrip("/") + ".img"
        with open(img, "wb") as f:
            f.truncate(size_mb << 20)
        if subprocess.run(["mkfs.ext4", "-q", "-F", img], capture_output=True).returncode != 0:
            pytest.skip("mkfs.ext4 is not available")
        proc = subprocess.run(["mount", "-o", "loop", img, path], capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip("no loop device to mount an ext4 image (%s)" % proc.stderr.strip())
        mounted.append(path)
        return path

    yield _mount
    for path in reversed(mounted):
        if subprocess.run(["umount", path], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", path], capture_output=True)
