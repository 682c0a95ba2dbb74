"""Introspection: SELECT tierstore_version() and the tierstore_status table.

The figures are checked against what the test wrote: keys and epochs of
the primary and its backup, the ephemeral tier's keys, the coordinator's
commits and flushes.  A backup kept behind by failing every write to its
files (tests/faults/tsfault.so preloaded into a child process, armed
around one commit) shows as behind with the flush error, then level again
once the fault is gone.  A second connection of the process watches a
long fill of a new backup (keys copied of keys total).
"""
import os
import re
import threading
import time

from conftest import (BUILD_ROOT, EXT, SOURCE_ROOT, child_env, open_connection, run_python,
                      table_sql)

SHIM = os.path.join(BUILD_ROOT, "tests", "faults", "tsfault.so")


def status(con):
    cur = con.execute("SELECT * FROM tierstore_status")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def row(rows, role, path=None):
    found = [r for r in rows if r["role"] == role and (path is None or r["tier"] == str(path))]
    assert len(found) == 1, (role, path, rows)
    return found[0]


def test_version_names_module_and_format(tmp_path):
    con = open_connection(tmp_path / "v.db", table=None)
    (v,) = con.execute("SELECT tierstore_version()").fetchone()
    with open(os.path.join(SOURCE_ROOT, "meson.build"), encoding="utf-8") as f:
        version = re.search(r"version : '([^']+)'", f.read()).group(1)
    assert v == "tierstore %s, on-disk format 1" % version
    # the format it states is the one written into a new store's meta
    con.execute(table_sql(primary=str(tmp_path / "p")))
    con.execute("INSERT INTO kv VALUES ('a', '', 'k', 1)")
    proc = run_python('''
        import lmdb, struct
        env = lmdb.open(%r, max_dbs=8, readonly=True, lock=False)
        meta = env.open_db(b"meta", create=False)
        with env.begin() as t:
            print(struct.unpack(">Q", t.get(b"format_version", db=meta))[0])
    ''' % str(tmp_path / "p"))
    assert proc.stdout.strip() == v.rsplit(" ", 1)[1]


def test_status_is_read_only_and_takes_no_arguments(tmp_path):
    con = open_connection(tmp_path / "ro.db", table=None)
    for sql in ("INSERT INTO tierstore_status(tier) VALUES ('x')",
                "DELETE FROM tierstore_status",
                "CREATE VIRTUAL TABLE s USING tierstore_status(x)"):
        try:
            con.execute(sql)
        except Exception as e:   # sqlite3.Error
            assert "tierstore_status" in str(e) or "read-only" in str(e) or "no such module" in str(e), str(e)
        else:
            raise AssertionError("accepted: " + sql)


def test_figures_match_what_was_written(tmp_path):
    P, B = tmp_path / "p", tmp_path / "b"
    con = open_connection(tmp_path / "f.db",
                          table=table_sql(primary=str(P), backup=str(B), ephemeral="ldk"))
    for i in range(20):
        con.execute("INSERT INTO kv VALUES ('node', 'chan', ?, randomblob(100))", ("k%02d" % i,))
    con.execute("BEGIN")
    for i in range(30):
        con.execute("INSERT INTO kv VALUES ('node', 'peer', ?, ?)", ("p%02d" % i, i))
    con.execute("COMMIT")
    con.execute("INSERT INTO kv VALUES ('', '', 'network_graph', randomblob(1000))")
    con.execute("DELETE FROM kv WHERE key = 'k00'")
    rows = status(con)
    p, b, e = row(rows, "primary", P), row(rows, "backup", B), row(rows, "ephemeral", P)
    (epoch,) = con.execute("SELECT max(epoch) FROM kv").fetchone()
    assert p["keys"] == b["keys"] == 49
    assert e["keys"] == 1 and e["bytes"] >= 1000 + len("network_graph")
    assert p["last_epoch"] == b["last_epoch"] >= epoch >= 22
    assert (b["behind"], b["ahead"]) == (0, 0)
    assert p["behind"] is None and p["store_id"] == b["store_id"] == e["store_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", p["store_id"])
    assert p["map_size"] >= 64 << 20 and 0 < p["bytes"] <= p["map_size"]
    assert e["map_size"] is None
    # the coordinator: 23 commits (20 + 1 + graph + delete); from one
    # connection each durable one is a flush of its own, and the commit of
    # the ephemeral key alone writes no LMDB; none failing, nothing queued
    assert p["commits"] == 23 and p["flushes"] == 22 and p["commits_per_flush"] == 1.0
    assert (p["queued_commits"], p["queued_bytes"], p["failing"], p["failed_flushes"]) == (0, 0, 0, 0)
    assert p["last_error"] is None and b["commits"] is None
    assert b["copied"] is None and b["copy_total"] is None


def test_backup_behind_while_its_writes_fail_then_level(tmp_path):
    assert os.path.isfile(SHIM), "tests/faults/tsfault.so is not built"
    P, B = tmp_path / "p", tmp_path / "b"
    code = '''
        import ctypes, errno
        LIB = ctypes.CDLL(os.environ["TSFAULT_LIB"])
        con = connect(sys.argv[1], sys.argv[2])
        def status():
            cur = con.execute("SELECT * FROM tierstore_status")
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]
        for i in range(3):
            con.execute("INSERT INTO kv VALUES ('a', '', ?, 1)", ("k%d" % i,))
        out = {"before": status()}
        LIB.tsfault_set(1, -1, errno.EIO, 3)
        LIB.tsfault_arm()
        try:
            con.execute("INSERT INTO kv VALUES ('a', '', 'failed', 2)")
            out["commit"] = "ok"
        except sqlite3.Error as e:
            out["commit"] = str(e)
        out["during"] = status()
        LIB.tsfault_disarm()
        deadline = time.time() + 20
        while True:
            try:
                con.execute("INSERT INTO kv VALUES ('a', '', 'after', 3)")
                break
            except sqlite3.Error as e:
                if time.time() > deadline:
                    out["after_error"] = str(e)
                    break
                time.sleep(0.05)
        out["after"] = status()
        print(json.dumps(out))
    '''
    env = child_env()
    env["LD_PRELOAD"] = " ".join(env.get("LD_PRELOAD", "").split() + [SHIM])
    env["TSFAULT_LIB"] = SHIM
    env["TSFAULT_DIR"] = os.path.realpath(str(tmp_path)) + "/b"
    env["TSFAULT_ARMED"] = "0"
    B.mkdir()
    import json
    import subprocess
    import textwrap
    from conftest import CHILD_PRELUDE, PYTHON
    proc = subprocess.run([PYTHON, "-c", CHILD_PRELUDE + textwrap.dedent(code), str(tmp_path / "s.db"),
                           table_sql(primary=str(P), backup=str(B))],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["commit"].startswith("tierstore:") and str(B) in out["commit"], out["commit"]
    before_b = row(out["before"], "backup")
    assert (before_b["behind"], before_b["ahead"]) == (0, 0)
    p, b = row(out["during"], "primary"), row(out["during"], "backup")
    assert b["behind"] >= 1 and b["ahead"] == 0 and p["last_epoch"] > b["last_epoch"], out["during"]
    # the failed write was a durable commit's: its COMMIT got the error, so
    # nothing acknowledged waits (failing 0), but the flush counts as failed
    assert p["failing"] == 0 and p["failed_flushes"] >= 1 and p["commits"] == 4
    assert p["last_error"].startswith("tierstore:") and str(B) in p["last_error"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", p["last_error_at"])
    assert "after_error" not in out, out.get("after_error")
    p, b = row(out["after"], "primary"), row(out["after"], "backup")
    assert (b["behind"], b["ahead"], p["failing"]) == (0, 0, 0), out["after"]
    assert p["commits_per_flush"] == 1.0 and p["flushes"] - p["failed_flushes"] >= 4
    assert b["last_epoch"] == p["last_epoch"] and b["keys"] == p["keys"]


def test_second_connection_watches_a_backup_fill(tmp_path):
    P, B = tmp_path / "p", tmp_path / "b"
    n = 300000
    writer = open_connection(tmp_path / "w.db", table=table_sql(primary=str(P)))
    writer.execute("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?) "
                   "INSERT INTO kv(primary_namespace, secondary_namespace, key, value) "
                   "SELECT 'bulk', '', printf('k%07d', i), randomblob(32) FROM c", (n,))
    watcher = open_connection(tmp_path / "watch.db", table=None)
    seen, done, held = [], threading.Event(), []

    def fill():
        try:
            con = __import__("sqlite3").connect(str(tmp_path / "fill.db"), isolation_level=None,
                                                check_same_thread=False)
            con.enable_load_extension(True)
            con.load_extension(EXT)
            con.execute(table_sql(primary=str(P), backup=str(B)))
            held.append(con)
        finally:
            done.set()

    t = threading.Thread(target=fill)
    t.start()
    while not done.is_set():
        for r in status(watcher):
            if r["role"] == "backup" and r["copied"] is not None:
                seen.append((r["copied"], r["copy_total"]))
    t.join()
    assert seen, "the watcher never saw the fill running"
    assert all(total == n and 0 <= copied <= n for copied, total in seen), seen[:5]
    assert [c for c, _ in seen] == sorted(c for c, _ in seen), "copied went back"
    b = row(status(watcher), "backup", B)
    assert b["copied"] is None and b["keys"] == n and (b["behind"], b["ahead"]) == (0, 0)
    held[0].close()
