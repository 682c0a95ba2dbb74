"""Shared fixtures and helpers for the tierstore integration tests.

Every test works in pytest's tmp_path.  The extension is loaded from
TIERSTORE_EXT (the path of build/tierstore without the .so suffix); when the
variable is unset (running pytest by hand) the build directory next to the
source root is used.

Fixtures
  ext            path of the extension (no suffix)
  connect        connect(db_path, table=TABLE_SQL, ...) -> sqlite3.Connection
                 with the extension loaded and the table created
  run_py         run_py(code, cwd=..., args=..., timeout=...) runs
                 /usr/bin/python3 -c code in a fresh process; the code finds
                 the helper `connect` already defined (see CHILD_PRELUDE)
  lmdb_dump      lmdb_dump(env_dir) -> RawStore read with python3-lmdb
  tmpfs          tmpfs(dir, size) mounts a tmpfs of that size on dir (created if
                 missing) and unmounts it at teardown; fails the test when
                 mounting is impossible

Helpers
  raw_store(env_dir)   RawView: RawStore plus the namespaces and replay
                       databases, read in a child process (safe while this
                       process has the environment open through the extension)
  raw_stores(*dirs)    [RawView, ...] read by one child process
  mdb_dump(env_dir, db="data")  text of `mdb_dump -p [-s db | -a] env_dir`
  table_rows(con, table="kv")   every row as (pns, sns, key, value, rowid,
                       epoch, tier), sorted
"""
import os
import struct
import subprocess
import sys
import textwrap

import pytest

PYTHON = "/usr/bin/python3"
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from ondisk import MetaNumbers, decode_key, decode_record  # noqa: E402,F401 (re-exported to the tests)
SOURCE_ROOT = os.environ.get("TIERSTORE_SOURCE_ROOT") or os.path.dirname(os.path.dirname(HERE))
BUILD_ROOT = os.environ.get("TIERSTORE_BUILD_ROOT") or os.path.join(SOURCE_ROOT, "build")
EXT = os.environ.get("TIERSTORE_EXT") or os.path.join(BUILD_ROOT, "tierstore")
SQLITE3 = os.environ.get("TIERSTORE_SQLITE3") or "sqlite3"

TABLE_SQL = "CREATE VIRTUAL TABLE IF NOT EXISTS kv USING tierstore(primary='data/primary')"


def table_sql(name="kv", **args):
    """CREATE VIRTUAL TABLE IF NOT EXISTS <name> USING tierstore(k='v', ...)."""
    if "primary" not in args:
        args = dict(primary="data/primary", **args)
    inner = ", ".join("%s='%s'" % (k, v) for k, v in args.items())
    return "CREATE VIRTUAL TABLE IF NOT EXISTS %s USING tierstore(%s)" % (name, inner)


def open_connection(path, table=TABLE_SQL, ext=EXT, timeout=30.0):
    """A connection with explicit transactions, the extension loaded and
    `table` (a CREATE statement, or None) executed."""
    con = sqlite3_connect(str(path), timeout)
    con.enable_load_extension(True)
    con.load_extension(ext)
    if table:
        con.execute(table)
    return con


def sqlite3_connect(path, timeout=30.0):
    import sqlite3
    return sqlite3.connect(path, isolation_level=None, timeout=timeout)


# Code prepended to every child process started by run_py: the same
# `open_connection` helper, with the extension path from the environment.
CHILD_PRELUDE = textwrap.dedent('''
    import os, sqlite3, sys, json, time
    EXT = os.environ["TIERSTORE_EXT"]
    TABLE_SQL = %r
    def connect(path, table=TABLE_SQL):
        con = sqlite3.connect(str(path), isolation_level=None, timeout=30.0)
        con.enable_load_extension(True)
        con.load_extension(EXT)
        if table:
            con.execute(table)
        return con
''' % TABLE_SQL)


def child_env():
    env = dict(os.environ)
    env["TIERSTORE_EXT"] = EXT
    env["TIERSTORE_SQLITE3"] = SQLITE3
    env["TIERSTORE_SOURCE_ROOT"] = SOURCE_ROOT
    env["TIERSTORE_BUILD_ROOT"] = BUILD_ROOT
    return env


def run_python(code, cwd=None, args=(), timeout=60, check=True):
    """Run /usr/bin/python3 -c CHILD_PRELUDE+code; returns CompletedProcess."""
    src = CHILD_PRELUDE + textwrap.dedent(code)
    proc = subprocess.run([PYTHON, "-c", src] + [str(a) for a in args],
                          cwd=None if cwd is None else str(cwd), env=child_env(),
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError("child process failed (rc=%d)\nstdout:\n%s\nstderr:\n%s"
                             % (proc.returncode, proc.stdout, proc.stderr))
    return proc


def start_python(code, cwd=None, args=()):
    """Start /usr/bin/python3 -c CHILD_PRELUDE+code without waiting."""
    src = CHILD_PRELUDE + textwrap.dedent(code)
    return subprocess.Popen([PYTHON, "-c", src] + [str(a) for a in args],
                            cwd=None if cwd is None else str(cwd), env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# ---------------------------------------------------------------------------
# Raw LMDB reading (the on-disk layout of SPEC 9 / the README).

class RawStore(MetaNumbers):
    """Everything of one environment, read in one LMDB read transaction."""

    def __init__(self, env_dir):
        import lmdb
        env = lmdb.open(str(env_dir), max_dbs=8, readonly=True, lock=True, create=False)
        try:
            self.map_size = env.info()["map_size"]
            dbs = {n: env.open_db(n.encode()) for n in ("meta", "data", "created", "rowids")}
            with env.begin() as txn:
                self.meta = {bytes(k): bytes(v) for k, v in txn.cursor(db=dbs["meta"])}
                # (pns, sns, key) -> (rowid, epoch, value)
                self.rows = {decode_key(k): decode_record(v) for k, v in txn.cursor(db=dbs["data"])}
                self.data_keys = [bytes(k) for k, _ in txn.cursor(db=dbs["data"])]
                self.created = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=dbs["created"])]
                self.rowids = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=dbs["rowids"])]
        finally:
            env.close()



class RawView(MetaNumbers):
    """A picklable copy of one environment: RawStore's fields plus
    `namespaces` {ns bytes: id}, `replay` {epoch: record bytes} and
    `last_txnid` (LMDB's count of committed write transactions)."""

    def __init__(self, env_dir):
        import lmdb
        raw = RawStore(env_dir)
        self.meta = raw.meta
        self.rows = raw.rows
        self.data_keys = raw.data_keys
        self.created = raw.created
        self.rowids = raw.rowids
        self.map_size = raw.map_size
        env = lmdb.open(str(env_dir), max_dbs=8, readonly=True, lock=True, create=False)
        try:
            self.last_txnid = env.info()["last_txnid"]     # LMDB's own write-transaction counter
            dbs = {n: env.open_db(n.encode()) for n in ("namespaces", "replay")}
            with env.begin() as txn:
                self.namespaces = {bytes(k): struct.unpack(">Q", bytes(v))[0]
                                   for k, v in txn.cursor(db=dbs["namespaces"])}
                self.replay = {struct.unpack(">Q", bytes(k))[0]: bytes(v)
                               for k, v in txn.cursor(db=dbs["replay"])}
        finally:
            env.close()

    def created_named(self):
        """The creation index as {(namespace bytes, rowid): key name bytes},
        independent of the namespace ids this environment chose."""
        names = {i: ns for ns, i in self.namespaces.items()}
        out = {}
        for k, v in self.created:
            nsid, rowid = struct.unpack(">QQ", k)
            out[(names.get(nsid, nsid), rowid)] = v
        return out

    def replay_keys(self, epoch):
        """The encoded keys listed by the replay record of epoch."""
        rec, out, i = self.replay[epoch], [], 0
        while i + 2 <= len(rec):
            n = (rec[i] << 8) | rec[i + 1]
            out.append(rec[i + 2:i + 2 + n])
            i += 2 + n
        return out


def raw_stores(*env_dirs, timeout=60):
    """RawView of each env_dir, all read by one child process."""
    import base64
    import pickle
    code = ("import sys, pickle, base64; sys.path.insert(0, %r); import conftest; "
            "sys.stdout.write(base64.b64encode(pickle.dumps([conftest.RawView(d) for d in sys.argv[1:]])).decode())"
            % HERE)
    proc = subprocess.run([PYTHON, "-c", code] + [str(d) for d in env_dirs], capture_output=True, text=True,
                          timeout=timeout, env=child_env())
    if proc.returncode != 0:
        raise AssertionError("reading %s with python3-lmdb failed:\n%s" % (env_dirs, proc.stderr))
    return pickle.loads(base64.b64decode(proc.stdout))


def raw_store(env_dir, timeout=60):
    """RawView of env_dir, read by a child process."""
    return raw_stores(env_dir, timeout=timeout)[0]


def mdb_dump(env_dir, db="data"):
    """Output of mdb_dump -p for one named database (db=None: all of them)."""
    args = ["mdb_dump", "-p"] + (["-a"] if db is None else ["-s", db]) + [str(env_dir)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise AssertionError("%s failed (rc=%d): %s" % (" ".join(args), proc.returncode, proc.stderr))
    return proc.stdout


def table_rows(con, table="kv"):
    """Every row of a tierstore table: (pns, sns, key, value, rowid, epoch, tier), sorted."""
    return sorted(con.execute(
        'SELECT primary_namespace, secondary_namespace, key, value, rowid, epoch, tier FROM "%s"' % table
    ).fetchall(), key=lambda r: r[:3])


# ---------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="session")
def ext():
    assert os.path.exists(EXT + ".so"), "extension %s.so not built" % EXT
    return EXT


@pytest.fixture
def connect(ext):
    """connect(db_path, table=TABLE_SQL) -> connection; closed at teardown."""
    opened = []

    def _connect(path, table=TABLE_SQL, timeout=30.0):
        con = open_connection(path, table=table, ext=ext, timeout=timeout)
        opened.append(con)
        return con

    yield _connect
    for con in opened:
        try:
            con.close()
        except Exception:
            pass


@pytest.fixture
def db(tmp_path, connect):
    """A connection on tmp_path/test.db with the default kv table."""
    return connect(tmp_path / "test.db")


@pytest.fixture
def run_py(ext):
    return run_python


@pytest.fixture
def lmdb_dump():
    return RawStore


@pytest.fixture
def tmpfs():
    """tmpfs(dir, size="1m") mounts a tmpfs on dir; unmounted at teardown
    (lazily when still busy).  Fails the test when mounting is impossible."""
    mounted = []

    def _mount(path, size="1m"):
        path = str(path)
        os.makedirs(path, exist_ok=True)
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s" % size, "tmpfs", path],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.fail("cannot mount a tmpfs on %s (needs root/CAP_SYS_ADMIN): %s"
                        % (path, proc.stderr.strip()), pytrace=False)
        mounted.append(path)
        return path

    yield _mount
    for path in reversed(mounted):
        if subprocess.run(["umount", path], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", path], capture_output=True)


def pytest_report_header(config):
    return "tierstore extension: %s (python %s)" % (EXT, sys.executable)
