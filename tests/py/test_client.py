"""The Python client, python/tierstore.py (issue 11 item 3).

The LDK KVStore checks (do_read_write_remove_list_persist and the
list_paginated contract) ported to tierstore.KVStore, plus its transaction(),
lazy remove, sync(), load() search order and error messages.  The client is
imported from the checkout (SOURCE_ROOT/python) and loads the extension from
conftest's EXT.
"""
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from conftest import EXT, PYTHON, SOURCE_ROOT, child_env, raw_store

CLIENT_DIR = os.path.join(SOURCE_ROOT, "python")
sys.path.insert(0, CLIENT_DIR)
import tierstore  # noqa: E402

PNS, SNS, KEY = "testspace", "testsubspace", "testkey"
DATA = bytes([42]) * 32


@pytest.fixture
def open_store(tmp_path):
    """open_store(**kwargs) -> KVStore on tmp_path/app.db with primary
    tmp_path/data/primary; closed at teardown."""
    opened = []

    def _open(db=None, primary=None, **kwargs):
        s = tierstore.KVStore(str(db or tmp_path / "app.db"), str(primary or tmp_path / "data" / "primary"),
                              ext=EXT, **kwargs)
        opened.append(s)
        return s

    yield _open
    for s in opened:
        s.close()


@pytest.fixture
def store(open_store):
    return open_store()


def refused(excinfo, *words):
    msg = str(excinfo.value)
    assert msg.startswith("tierstore:"), msg
    for w in words:
        assert w in msg, "message does not name %r: %s" % (w, msg)


def child(code, *args, env=None):
    """Run code in a fresh /usr/bin/python3 that imports the client; returns stdout."""
    src = "import sys; sys.path.insert(0, %r); import tierstore\n" % CLIENT_DIR + textwrap.dedent(code)
    proc = subprocess.run([PYTHON, "-c", src] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=60, env=env or child_env())
    assert proc.returncode == 0, "child failed:\n%s%s" % (proc.stdout, proc.stderr)
    return proc.stdout


# ---------------------------------------------------------------------------
# do_read_write_remove_list_persist


def check_read_write_remove_list(s, pns, sns, key):
    s.write(pns, sns, key, DATA)
    # the root namespace is valid
    s.write("", "", key, DATA)
    # a secondary namespace without a primary one is not
    with pytest.raises(sqlite3.IntegrityError) as ei:
        s.write("", sns, key, DATA)
    refused(ei, "secondary_namespace")
    # an empty key is not
    with pytest.raises(sqlite3.IntegrityError) as ei:
        s.write(pns, sns, "", DATA)
    refused(ei, "key")

    assert s.list(pns, sns) == [key]
    assert s.read(pns, sns, key) == DATA
    assert s.list("", "") == [key]

    s.remove(pns, sns, key)
    assert s.list(pns, sns) == []
    with pytest.raises(tierstore.NotFound):
        s.read(pns, sns, key)
    assert s.read("", "", key) == DATA     # only that key went


def test_read_write_remove_list(store):
    check_read_write_remove_list(store, PNS, SNS, KEY)


def test_read_write_remove_list_120_character_names(store):
    name = "".join("abcXYZ019_-"[i % 11] for i in range(120))
    check_read_write_remove_list(store, name, name, name)


@pytest.mark.parametrize("position", [0, 1, 2], ids=["primary_namespace", "secondary_namespace", "key"])
def test_121_character_name_refused(store, position):
    names = [PNS, SNS, KEY]
    names[position] = "x" * 121
    with pytest.raises(sqlite3.IntegrityError) as ei:
        store.write(*names, DATA)
    refused(ei, ["primary_namespace", "secondary_namespace", "key"][position])
    assert store.list(names[0], names[1]) == []


def test_persists_across_reopen(tmp_path, open_store):
    s = open_store()
    s.write(PNS, SNS, KEY, DATA)
    s.close()
    # another database file, the same primary: the data is in the directory
    s2 = open_store(db=tmp_path / "other.db")
    assert s2.read(PNS, SNS, KEY) == DATA
    assert s2.list(PNS, SNS) == [KEY]


def test_read_missing_key_raises_not_found(store):
    store.write(PNS, SNS, "present", b"v")
    with pytest.raises(tierstore.NotFound) as ei:
        store.read(PNS, SNS, "absent")
    assert isinstance(ei.value, KeyError)
    refused(ei, "absent", PNS, SNS)
    assert (ei.value.primary_namespace, ei.value.secondary_namespace, ei.value.key) == (PNS, SNS, "absent")


def test_values_are_bytes_and_names_str(store):
    store.write(PNS, SNS, "ba", bytearray(b"\x00\x01"))
    store.write(PNS, SNS, "mv", memoryview(b"\xff"))
    store.write(PNS, SNS, "empty", b"")
    assert store.read(PNS, SNS, "ba") == b"\x00\x01"
    assert type(store.read(PNS, SNS, "mv")) is bytes
    assert store.read(PNS, SNS, "empty") == b""
    with pytest.raises(TypeError) as ei:
        store.write(PNS, SNS, "s", "text")
    refused(ei, "bytes")
    with pytest.raises(TypeError) as ei:
        store.write(None, SNS, "s", b"x")
    refused(ei, "primary_namespace")
    assert store.list(PNS, SNS) == ["ba", "empty", "mv"]


def test_write_keeps_creation_number(store):
    store.write(PNS, SNS, KEY, b"one")
    q = "SELECT rowid FROM %s WHERE primary_namespace=? AND secondary_namespace=? AND key=?" % store._t
    (before,), = store.connection.execute(q, (PNS, SNS, KEY))
    store.write(PNS, SNS, KEY, b"two")
    (after,), = store.connection.execute(q, (PNS, SNS, KEY))
    assert store.read(PNS, SNS, KEY) == b"two"
    assert after == before


def test_remove_missing_key_is_fine(store):
    store.remove(PNS, SNS, "never")
    store.remove(PNS, SNS, "never", lazy=True)
    assert store.list(PNS, SNS) == []


# ---------------------------------------------------------------------------
# list_paginated


def write_keys(s, keys, pns=PNS, sns=SNS):
    with s.transaction():
        for k in keys:
            s.write(pns, sns, k, k.encode())


def all_pages(s, pns=PNS, sns=SNS):
    pages, token = [], None
    while True:
        keys, token = s.list_paginated(pns, sns, token)
        pages.append(keys)
        if token is None:
            return pages
        assert len(pages) < 100, "pagination does not end"


def test_paginated_small_namespace_newest_first(store):
    for k in ["k0", "k1", "k2", "k3", "k4"]:      # one commit each: creation order k0..k4
        store.write(PNS, SNS, k, b"x")
    keys, token = store.list_paginated(PNS, SNS)
    assert keys == ["k4", "k3", "k2", "k1", "k0"]
    assert token is None


def test_paginated_100_keys_two_pages(store):
    keys = ["key_%03d" % i for i in range(100)]
    write_keys(store, keys)
    first, token = store.list_paginated(PNS, SNS)
    assert len(first) == 50
    assert token is not None and isinstance(token, str)
    second, token2 = store.list_paginated(PNS, SNS, token)
    assert len(second) == 50
    assert token2 is None
    assert not set(first) & set(second)
    assert first + second == keys[::-1]


def test_paginated_exactly_50_and_51_keys(store):
    write_keys(store, ["a%02d" % i for i in range(50)])
    keys, token = store.list_paginated(PNS, SNS)
    assert len(keys) == 50 and token is None
    store.write(PNS, SNS, "newest", b"x")
    assert all_pages(store) == [["newest"] + ["a%02d" % i for i in range(49, 0, -1)], ["a00"]]


def test_paginated_after_deletes(store):
    keys = ["k%d" % i for i in range(10)]
    write_keys(store, keys)
    store.remove(PNS, SNS, "k3")
    store.remove(PNS, SNS, "k7")
    keys_left, token = store.list_paginated(PNS, SNS)
    assert token is None
    assert keys_left == ["k9", "k8", "k6", "k5", "k4", "k2", "k1", "k0"]


def test_paginated_update_keeps_position(store):
    keys = ["key_%03d" % i for i in range(60)]
    write_keys(store, keys)
    before = all_pages(store)
    store.write(PNS, SNS, "key_000", b"updated")       # the oldest: last on page 2
    store.write(PNS, SNS, "key_030", b"updated")
    assert all_pages(store) == before
    assert before[1][-1] == "key_000"
    assert store.read(PNS, SNS, "key_000") == b"updated"


def test_paginated_token_is_for_its_namespace(store):
    write_keys(store, ["k%03d" % i for i in range(60)])
    write_keys(store, ["k%03d" % i for i in range(60)], sns="other")
    _, token = store.list_paginated(PNS, SNS)
    assert token is not None
    for pns, sns in [(PNS, "other"), ("elsewhere", SNS), ("", "")]:
        with pytest.raises(ValueError) as ei:
            store.list_paginated(pns, sns, token)
        refused(ei, "namespace")
    for bad in ["", "!!!", "AAAA", token[:-2], 17]:
        with pytest.raises(ValueError) as ei:
            store.list_paginated(PNS, SNS, bad)
        refused(ei, "token")
    keys, _ = store.list_paginated(PNS, SNS, token)      # still good where it belongs
    assert keys == ["k%03d" % i for i in range(9, -1, -1)]


def test_paginated_resumes_after_deleted_token_key(store):
    keys = ["k%03d" % i for i in range(70)]
    write_keys(store, keys)
    first, token = store.list_paginated(PNS, SNS)
    assert first[-1] == "k020"
    store.remove(PNS, SNS, "k020")      # the key the token points at
    store.remove(PNS, SNS, "k019")      # and the next one
    store.write(PNS, SNS, "k100", b"new")   # newer than the token: not on later pages
    second, token = store.list_paginated(PNS, SNS, token)
    assert second == ["k%03d" % i for i in range(18, -1, -1)]
    assert token is None


def test_paginated_is_per_namespace(store):
    write_keys(store, ["a", "b"], sns="one")
    write_keys(store, ["c"], sns="two")
    assert store.list_paginated(PNS, "one") == (["b", "a"], None)
    assert store.list_paginated(PNS, "two") == (["c"], None)
    assert store.list_paginated(PNS, "three") == ([], None)


# ---------------------------------------------------------------------------
# transactions


def epochs(s, pns=PNS, sns=SNS):
    return [r[0] for r in s.connection.execute(
        "SELECT epoch FROM %s WHERE primary_namespace=? AND secondary_namespace=?" % s._t, (pns, sns))]


def test_transaction_rollback_on_exception(store):
    store.write(PNS, SNS, "kept", b"0")
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.write(PNS, SNS, "a", b"1")
            store.write(PNS, SNS, "b", b"2")
            store.remove(PNS, SNS, "kept")
            assert store.list(PNS, SNS) == ["a", "b"]     # the transaction sees its writes
            raise RuntimeError("boom")
    assert store.list(PNS, SNS) == ["kept"]
    assert not store.connection.in_transaction


def test_transaction_commit_keeps_all_in_one_epoch(store, open_store, tmp_path):
    with store.transaction() as s:
        assert s is store
        for k in ["a", "b", "c"]:
            store.write(PNS, SNS, k, k.encode())
    assert store.list(PNS, SNS) == ["a", "b", "c"]
    e = epochs(store)
    assert len(set(e)) == 1 and e[0] is not None          # one commit
    other = open_store(db=tmp_path / "other.db")           # another connection sees it
    assert other.list(PNS, SNS) == ["a", "b", "c"]


def test_writes_outside_a_transaction_autocommit(store, open_store, tmp_path):
    other = open_store(db=tmp_path / "other.db")
    store.write(PNS, SNS, "a", b"1")
    assert not store.connection.in_transaction
    assert other.read(PNS, SNS, "a") == b"1"
    store.write(PNS, SNS, "b", b"2")
    assert len(set(epochs(store))) == 2                   # one commit each
    store.remove(PNS, SNS, "a")
    assert other.list(PNS, SNS) == ["b"]


def test_nested_transaction_is_a_savepoint(store):
    with store.transaction():
        store.write(PNS, SNS, "outer", b"1")
        with pytest.raises(ValueError):
            with store.transaction():
                store.write(PNS, SNS, "inner_undone", b"2")
                raise ValueError("undo the inner part")
        with store.transaction():
            store.write(PNS, SNS, "inner_kept", b"3")
        assert store.connection.in_transaction
    assert store.list(PNS, SNS) == ["inner_kept", "outer"]
    assert len(set(epochs(store))) == 1


def test_failed_write_inside_transaction_keeps_the_rest(store):
    with store.transaction():
        store.write(PNS, SNS, "a", b"1")
        with pytest.raises(sqlite3.IntegrityError):
            store.write(PNS, SNS, "bad key", b"2")
        store.write(PNS, SNS, "b", b"3")
    assert store.list(PNS, SNS) == ["a", "b"]


# ---------------------------------------------------------------------------
# lazy remove and sync


def child_keys(db, primary):
    """The keys of (PNS, SNS) as another process sees them."""
    out = child("""
        s = tierstore.KVStore(sys.argv[1], sys.argv[2], ext=sys.argv[3])
        print(",".join(s.list(%r, %r)))
    """ % (PNS, SNS), db, primary, EXT)
    return [k for k in out.strip().split(",") if k]


def test_lazy_remove_does_not_wait_for_the_disk(tmp_path, open_store):
    primary = tmp_path / "data" / "primary"
    s = open_store(flush_interval="60s")
    s.write(PNS, SNS, "lazy", b"1")
    s.write(PNS, SNS, "eager", b"2")
    s.remove(PNS, SNS, "eager")                  # durable: on disk when it returns
    s.remove(PNS, SNS, "lazy", lazy=True)        # applied: queued for up to 60 s
    # another process reads the disk: the lazy delete is not there yet
    assert child_keys(tmp_path / "child.db", primary) == ["lazy"]
    s.sync()                                     # writes the queue and fsyncs
    assert child_keys(tmp_path / "child.db", primary) == []
    # this process saw it at once
    with pytest.raises(tierstore.NotFound):
        s.read(PNS, SNS, "lazy")


def test_lazy_remove_inside_a_transaction_is_part_of_it(store):
    store.write(PNS, SNS, "k", b"1")
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.remove(PNS, SNS, "k", lazy=True)
            assert store.list(PNS, SNS) == []      # the transaction sees its own delete
            raise RuntimeError
    assert store.list(PNS, SNS) == ["k"]


def test_sync_writes_applied_commits(tmp_path, open_store):
    primary = tmp_path / "data" / "primary"
    s = open_store(durability="applied", flush_interval="60s")
    s.write(PNS, SNS, "queued", b"1")
    assert child_keys(tmp_path / "child.db", primary) == []
    s.sync()
    assert child_keys(tmp_path / "child.db", primary) == ["queued"]


# ---------------------------------------------------------------------------
# backup, arguments, connections


def test_backup_argument(tmp_path, open_store):
    backup = tmp_path / "data" / "backup"
    s = open_store(backup=str(backup))
    s.write(PNS, SNS, KEY, DATA)
    assert (backup / "data.mdb").is_file()
    s.connection.execute("INSERT INTO temp.kv(kv) VALUES ('verify')")    # raises if they differ
    rows = raw_store(backup).rows
    assert rows[(PNS, SNS, KEY)][2] == DATA


def test_ephemeral_argument(tmp_path, open_store):
    s = open_store(ephemeral="ldk")
    s.write("", "", "scorer", b"cache")
    s.write("", "", "manager", b"durable")
    assert s.list("", "") == ["manager", "scorer"]
    assert s.read("", "", "scorer") == b"cache"
    assert (tmp_path / "data" / "primary" / "data.mdb").is_file()
    assert set(raw_store(tmp_path / "data" / "primary").rows) == {("", "", "manager")}


def test_argument_values_are_quoted(tmp_path, open_store):
    odd = tmp_path / "it's, odd) = x"
    s = open_store(primary=odd, map_size="1MiB")
    s.write(PNS, SNS, KEY, DATA)
    assert (odd / "data.mdb").is_file()
    with pytest.raises(sqlite3.OperationalError) as ei:
        open_store(table="kv2", map_size="lots")
    refused(ei, "map_size")
    with pytest.raises(sqlite3.OperationalError) as ei:
        open_store(table="kv3", no_such_argument="1")
    refused(ei, "no_such_argument")
    with pytest.raises(ValueError) as ei:
        open_store(table="kv4", **{"x = 1, y": "2"})
    refused(ei, "not an identifier")


def test_relative_primary_is_relative_to_cwd(tmp_path, monkeypatch, open_store):
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    s = open_store(db=tmp_path / "sub" / "app.db", primary="rel/primary")
    s.write(PNS, SNS, KEY, DATA)
    assert (tmp_path / "rel" / "primary" / "data.mdb").is_file()
    assert not (tmp_path / "sub" / "rel").exists()        # not the database file's directory


def test_passed_in_connection(tmp_path):
    con = sqlite3.connect(str(tmp_path / "app.db"))        # the sqlite3 module's legacy mode
    s = tierstore.KVStore(con, str(tmp_path / "p"), ext=EXT)
    s.write(PNS, SNS, "a", b"1")
    assert not con.in_transaction                          # committed, not left open
    s2 = tierstore.KVStore(str(tmp_path / "other.db"), str(tmp_path / "p"), ext=EXT)
    assert s2.read(PNS, SNS, "a") == b"1"
    # the same temp table name with another primary is refused, not silently reused
    with pytest.raises(ValueError) as ei:
        tierstore.KVStore(con, str(tmp_path / "q"), ext=EXT)
    refused(ei, "already exists")
    s.close()
    assert con.execute("SELECT 1").fetchone() == (1,)      # still the caller's, still open
    assert con.execute("SELECT count(*) FROM temp.sqlite_master WHERE name='kv'").fetchone() == (0,)
    s3 = tierstore.KVStore(con, str(tmp_path / "q"), ext=EXT)
    assert s3.list(PNS, SNS) == []
    s3.close()
    s2.close()
    con.close()


def test_context_manager_closes(tmp_path):
    with tierstore.KVStore(str(tmp_path / "app.db"), str(tmp_path / "p"), ext=EXT) as s:
        s.write(PNS, SNS, "a", b"1")
        con = s.connection
    with pytest.raises(sqlite3.ProgrammingError):
        con.execute("SELECT 1")
    with pytest.raises(sqlite3.ProgrammingError) as ei:
        s.read(PNS, SNS, "a")
    refused(ei, "closed")
    s.close()                                              # idempotent


# ---------------------------------------------------------------------------
# load()


def test_load_explicit_path(tmp_path):
    con = sqlite3.connect(":memory:")
    got = tierstore.load(con, EXT)
    assert got == os.path.abspath(EXT)
    assert con.execute("SELECT tierstore_version()").fetchone()[0].startswith("tierstore ")
    with pytest.raises(sqlite3.OperationalError) as ei:    # loading is switched off again
        con.load_extension(EXT)
    assert "not authorized" in str(ei.value)
    con.close()
    con = sqlite3.connect(":memory:")
    assert tierstore.load(con, EXT + ".so") == os.path.abspath(EXT + ".so")
    con.close()


def test_load_wrong_explicit_path(tmp_path):
    con = sqlite3.connect(":memory:")
    wrong = str(tmp_path / "nowhere" / "tierstore")
    with pytest.raises(tierstore.LoadError) as ei:
        tierstore.load(con, wrong)
    assert isinstance(ei.value, sqlite3.OperationalError)
    refused(ei, wrong, "not found")
    with pytest.raises(tierstore.LoadError) as ei:
        tierstore.KVStore(str(tmp_path / "app.db"), str(tmp_path / "p"), ext=wrong)
    refused(ei, wrong)
    # a file that is not a loadable module
    junk = tmp_path / "junk.so"
    junk.write_bytes(b"not an ELF file")
    with pytest.raises(tierstore.LoadError) as ei:
        tierstore.load(con, str(junk))
    refused(ei, "loading", str(junk))
    con.close()


def test_load_wrong_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv("TIERSTORE_EXT", str(tmp_path / "nope"))
    with pytest.raises(tierstore.LoadError) as ei:
        tierstore.load(sqlite3.connect(":memory:"))
    refused(ei, "TIERSTORE_EXT", str(tmp_path / "nope"))


def no_ext_env():
    env = child_env()
    env.pop("TIERSTORE_EXT", None)
    return env


LOAD_AND_REPORT = """
    import sqlite3
    con = sqlite3.connect(":memory:")
    try:
        print("loaded", tierstore.load(con))
        print(con.execute("SELECT tierstore_version()").fetchone()[0])
    except tierstore.LoadError as e:
        print("error", e)
"""


def copy_client(dir):
    os.makedirs(dir, exist_ok=True)
    shutil.copy(os.path.join(CLIENT_DIR, "tierstore.py"), dir)
    return dir


def run_client_copy(client_dir):
    src = "import sys; sys.path.insert(0, %r); import tierstore\n" % str(client_dir) + textwrap.dedent(LOAD_AND_REPORT)
    proc = subprocess.run([PYTHON, "-c", src], capture_output=True, text=True, timeout=60, env=no_ext_env())
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_load_not_found_lists_where_it_looked(tmp_path):
    out = run_client_copy(copy_client(tmp_path / "python"))
    assert out.startswith("error tierstore:"), out
    for place in ["/usr/local/lib/", "/sqlite3/tierstore", str(tmp_path / "build" / "tierstore"),
                  "TIERSTORE_EXT"]:
        assert place in out, "%r not listed: %s" % (place, out)


def test_load_finds_a_checkout_build(tmp_path):
    copy_client(tmp_path / "python")
    (tmp_path / "build").mkdir()
    os.symlink(EXT + ".so", tmp_path / "build" / "tierstore.so")
    out = run_client_copy(tmp_path / "python")
    assert out.startswith("loaded %s\ntierstore " % (tmp_path / "build" / "tierstore")), out


def test_load_finds_the_installed_module(tmp_path):
    prefix = tmp_path / "prefix"
    site = copy_client(prefix / "lib" / "python3" / "dist-packages")
    moddir = prefix / "lib" / "x86_64-linux-gnu" / "sqlite3"
    moddir.mkdir(parents=True)
    os.symlink(EXT + ".so", moddir / "tierstore.so")
    # a checkout-style build beside it (../build) loses to the installed module
    (prefix / "lib" / "python3" / "build").mkdir()
    os.symlink(EXT + ".so", prefix / "lib" / "python3" / "build" / "tierstore.so")
    out = run_client_copy(site)
    assert out.startswith("loaded %s\ntierstore " % (moddir / "tierstore")), out


def test_load_env_var_wins_over_search(tmp_path):
    site = copy_client(tmp_path / "python")
    env = no_ext_env()
    env["TIERSTORE_EXT"] = EXT
    src = "import sys; sys.path.insert(0, %r); import tierstore\n" % str(site) + textwrap.dedent(LOAD_AND_REPORT)
    proc = subprocess.run([PYTHON, "-c", src], capture_output=True, text=True, timeout=60, env=env)
    assert proc.stdout.startswith("loaded %s\n" % os.path.abspath(EXT)), proc.stdout + proc.stderr
