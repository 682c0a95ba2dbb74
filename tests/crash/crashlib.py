"""Helpers shared by the crash harness (test_crash.py, crash_writer.py,
crash_checker.py) and the concurrency test (test_concurrency.py,
stress_worker.py).

The harness processes (the pytest processes) never load the extension: they
read the LMDB environments with python3-lmdb, which LMDB allows only in a
process that does not also open the same environment through tierstore.
Everything that needs the extension runs in a child process.
"""
import os
import struct
import sys

PYTHON = "/usr/bin/python3"
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from ondisk import MetaNumbers, decode_key, decode_record, encode_key  # noqa: E402
SOURCE_ROOT = os.environ.get("TIERSTORE_SOURCE_ROOT") or os.path.dirname(os.path.dirname(HERE))
BUILD_ROOT = os.environ.get("TIERSTORE_BUILD_ROOT") or os.path.join(SOURCE_ROOT, "build")
EXT = os.environ.get("TIERSTORE_EXT") or os.path.join(BUILD_ROOT, "tierstore")


def child_env(**extra):
    """The environment of a child process: the extension's path, never the
    fault point (a child sets it itself, after its table is open)."""
    env = dict(os.environ)
    env["TIERSTORE_EXT"] = EXT
    env["TIERSTORE_SOURCE_ROOT"] = SOURCE_ROOT
    env["TIERSTORE_BUILD_ROOT"] = BUILD_ROOT
    env.pop("TIERSTORE_FAULT", None)
    env["PYTHONPATH"] = HERE + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def sanitized():
    """True when the extension runs under AddressSanitizer (the second pass
    of tests/run_all.sh preloads the runtime into python3)."""
    return "asan" in os.environ.get("LD_PRELOAD", "")


def env_number(name, default, cast=int):
    v = os.environ.get(name, "").strip()
    return cast(v) if v else default


def connect(db, table_sql, timeout=60.0):
    """A connection with the extension loaded and the table declared (only
    for child processes: see the module docstring)."""
    import sqlite3
    con = sqlite3.connect(str(db), isolation_level=None, timeout=timeout)
    con.enable_load_extension(True)
    con.load_extension(EXT)
    con.enable_load_extension(False)
    if table_sql:
        con.execute(table_sql)
    return con


def table_sql(name="kv", **args):
    inner = ", ".join("%s='%s'" % (k, v) for k, v in args.items())
    return "CREATE VIRTUAL TABLE IF NOT EXISTS %s USING tierstore(%s)" % (name, inner)


def value_for(marker, key, size):
    """The value a transaction with this marker writes to key: it names the
    marker and the key, padded to size characters."""
    head = "%s|%s|" % (marker, key)
    fill = marker + "#"
    return head + (fill * (size // len(fill) + 1))[:size]


def marker_of(value):
    return value.split("|", 1)[0] if isinstance(value, str) else None


def write_line(text):
    """One line to stdout in one write(2): shorter than PIPE_BUF, so a
    SIGKILL never leaves half of it in the pipe."""
    data = (text + "\n").encode()
    assert len(data) < 4096, "protocol line too long"
    os.write(1, data)


# ---------------------------------------------------------------------------
# Raw reading of an environment (SPEC 9 / README "On disk")

class Raw(MetaNumbers):
    """One environment read in one LMDB read transaction with python3-lmdb.

    meta        {name bytes: value bytes}
    rows        {(pns, sns, key): (rowid, epoch, value)}
    rowids      {rowid: encoded key}          (the rowids index)
    created     [(nsid, rowid, name bytes)]   (the creation index)
    namespaces  {b"pns\\0sns\\0": nsid}
    replay      sorted epochs that have a replay record
    """

    def __init__(self, env_dir, only=None):
        import lmdb
        for attempt in range(20):
            env = lmdb.open(str(env_dir), max_dbs=8, readonly=True, lock=True, create=False)
            try:
                dbs = {n: env.open_db(n.encode(), create=False)
                       for n in ("meta", "data", "created", "rowids", "namespaces", "replay")}
                with env.begin(buffers=False) as txn:
                    self.meta = dict(txn.cursor(db=dbs["meta"]))
                    if only is None:
                        self.rows = {decode_key(k): decode_record(v) for k, v in txn.cursor(db=dbs["data"])}
                    else:
                        self.rows = {}
                        for pns in only:
                            cur = txn.cursor(db=dbs["data"])
                            prefix = pns.encode() + b"\0"
                            if cur.set_range(prefix):
                                for k, v in cur:
                                    if not k.startswith(prefix):
                                        break
                                    self.rows[decode_key(k)] = decode_record(v)
                    self.rowids = {struct.unpack(">Q", k)[0]: v for k, v in txn.cursor(db=dbs["rowids"])}
                    self.created = [struct.unpack(">QQ", k) + (v,) for k, v in txn.cursor(db=dbs["created"])]
                    self.namespaces = {k: struct.unpack(">Q", v)[0] for k, v in txn.cursor(db=dbs["namespaces"])}
                    self.replay = [struct.unpack(">Q", k)[0] for k, _ in txn.cursor(db=dbs["replay"])]
                return
            except lmdb.MapResizedError:
                continue            # a writer grew the map meanwhile: open again
            finally:
                env.close()
        raise AssertionError("could not read %s: the map kept growing" % env_dir)

    def index_problems(self):
        """The rowids and created indexes agree with the data database
        (README "On disk"); a list of problems, empty when they do."""
        out = []
        want = {r: encode_key(k) for k, (r, _, _) in self.rows.items()}
        if len(want) != len(self.rows):
            out.append("two keys share a rowid")
        if self.rowids != want:
            extra = sorted(set(self.rowids.items()) - set(want.items()))[:3]
            missing = sorted(set(want.items()) - set(self.rowids.items()))[:3]
            out.append("rowids index differs from data: extra %r missing %r" % (extra, missing))
        names = {v: k for k, v in self.namespaces.items()}
        created = {}
        for nsid, rowid, name in self.created:
            ns = names.get(nsid)
            if ns is None:
                out.append("created index entry with unknown namespace id %d" % nsid)
                continue
            created[rowid] = ns + name
        if created != want:
            out.append("created index differs from data (%d entries, %d rows)" % (len(created), len(want)))
        if self.rows and max(r for r, _, _ in self.rows.values()) >= self.next_rowid:
            out.append("a rowid is not below next_rowid %d" % self.next_rowid)
        if self.rows and max(e for _, e, _ in self.rows.values()) > self.last_epoch:
            out.append("a row's epoch is above last_epoch %d" % self.last_epoch)
        return out


def log(*a):
    print(*a, file=sys.stderr, flush=True)
