"""The Lightning Dev Kit KVStore conformance checks, through SQL.

LDK's `do_read_write_remove_list_persist` (write, read back, list, remove,
120-character names, persistence) and the `list_paginated` contract
(newest first by creation, pages stable under updates), expressed as
statements on a tierstore table (SPEC 3, 4, 6).
"""
import random
import sqlite3

import pytest


PNS, SNS, KEY = "testspace", "testsubspace", "testkey"
DATA = bytes([42]) * 32


def put(con, pns, sns, key, value):
    con.execute("REPLACE INTO kv(primary_namespace, secondary_namespace, key, value) VALUES (?,?,?,?)",
                (pns, sns, key, value))


def read(con, pns, sns, key):
    rows = con.execute("SELECT value FROM kv WHERE primary_namespace=? AND secondary_namespace=? AND key=?",
                       (pns, sns, key)).fetchall()
    assert len(rows) <= 1, rows
    return rows[0][0] if rows else None


def listing(con, pns, sns):
    return [r[0] for r in con.execute(
        "SELECT key FROM kv WHERE primary_namespace=? AND secondary_namespace=?", (pns, sns))]


def remove(con, pns, sns, key):
    con.execute("DELETE FROM kv WHERE primary_namespace=? AND secondary_namespace=? AND key=?",
                (pns, sns, key))


def assert_refused(excinfo, column):
    msg = str(excinfo.value)
    assert msg.startswith("tierstore:"), msg
    assert column in msg, "message does not name %r: %s" % (column, msg)


# ---------------------------------------------------------------------------
# read / write / remove / list


def test_write_read_list_remove(db):
    put(db, PNS, SNS, KEY, DATA)
    assert listing(db, PNS, SNS) == [KEY]
    assert read(db, PNS, SNS, KEY) == DATA
    remove(db, PNS, SNS, KEY)
    assert listing(db, PNS, SNS) == []
    assert read(db, PNS, SNS, KEY) is None


@pytest.mark.parametrize("value", [
    b"\x00\xffbinary\x00", b"", "text value", "unicode \u00e9\u4e2d", 0, -1, 2**63 - 1, -2**63,
    1.5, -0.0, 1e300,
], ids=repr)
def test_values_round_trip_with_type(db, value):
    put(db, PNS, SNS, KEY, value)
    (got, typ), = db.execute("SELECT value, typeof(value) FROM kv WHERE primary_namespace=? "
                             "AND secondary_namespace=? AND key=?", (PNS, SNS, KEY))
    assert got == value
    assert type(got) is type(value)
    expected_type = {bytes: "blob", str: "text", int: "integer", float: "real"}[type(value)]
    assert typ == expected_type


def test_overwrite_with_replace(db):
    put(db, PNS, SNS, KEY, DATA)
    (rowid1,), = db.execute("SELECT rowid FROM kv WHERE primary_namespace=? AND secondary_namespace=? AND key=?",
                            (PNS, SNS, KEY))
    put(db, PNS, SNS, KEY, b"new")
    assert read(db, PNS, SNS, KEY) == b"new"
    assert listing(db, PNS, SNS) == [KEY]
    assert db.execute("SELECT count(*) FROM kv").fetchone()[0] == 1
    (rowid2,), = db.execute("SELECT rowid FROM kv WHERE primary_namespace=? AND secondary_namespace=? AND key=?",
                            (PNS, SNS, KEY))
    assert rowid1 == rowid2


def test_insert_existing_key_is_unique_violation(db):
    put(db, PNS, SNS, KEY, DATA)
    with pytest.raises(sqlite3.IntegrityError) as ei:
        db.execute("INSERT INTO kv VALUES (?,?,?,?)", (PNS, SNS, KEY, b"other"))
    assert str(ei.value).startswith("tierstore:")
    assert "UNIQUE" in str(ei.value)
    assert read(db, PNS, SNS, KEY) == DATA
    db.execute("INSERT OR IGNORE INTO kv VALUES (?,?,?,?)", (PNS, SNS, KEY, b"ignored"))
    assert read(db, PNS, SNS, KEY) == DATA
    db.execute("INSERT OR REPLACE INTO kv VALUES (?,?,?,?)", (PNS, SNS, KEY, b"replaced"))
    assert read(db, PNS, SNS, KEY) == b"replaced"


def test_remove_missing_key_is_fine(db):
    remove(db, PNS, SNS, "never-written")
    assert db.execute("SELECT changes()").fetchone()[0] == 0
    put(db, PNS, SNS, KEY, DATA)
    remove(db, PNS, SNS, KEY)
    remove(db, PNS, SNS, KEY)          # a second time: still fine
    assert read(db, PNS, SNS, KEY) is None


def test_read_missing_key_is_empty(db):
    assert read(db, PNS, SNS, "nope") is None
    assert read(db, "", "", "nope") is None


def test_list_unknown_namespace_is_empty(db):
    put(db, PNS, SNS, KEY, DATA)
    assert listing(db, "unknown", "") == []
    assert listing(db, "unknown", "space") == []
    assert listing(db, PNS, "other") == []
    assert listing(db, "", "") == []


def test_list_returns_keys_ascending(db):
    keys = ["k%04d" % i for i in range(200)] + ["A", "Z", "_", "-", "a", "z", "0", "9", "aa", "a-"]
    shuffled = keys[:]
    random.Random(7).shuffle(shuffled)
    db.execute("BEGIN")
    for k in shuffled:
        put(db, PNS, SNS, k, k.encode())
    db.execute("COMMIT")
    expected = sorted(keys, key=lambda s: s.encode())
    assert listing(db, PNS, SNS) == expected
    desc = [r[0] for r in db.execute(
        "SELECT key FROM kv WHERE primary_namespace=? AND secondary_namespace=? ORDER BY key DESC", (PNS, SNS))]
    assert desc == expected[::-1]


def test_list_is_confined_to_its_namespace(db):
    # Namespaces that are prefixes of each other must not leak into each
    # other's listing.
    rows = [("a", "", "k1"), ("a", "b", "k2"), ("ab", "", "k3"), ("a", "bc", "k4"),
            ("", "", "root"), ("b", "", "k5"), ("a", "", "k0")]
    for r in rows:
        put(db, *r, b"x")
    assert listing(db, "a", "") == ["k0", "k1"]
    assert listing(db, "a", "b") == ["k2"]
    assert listing(db, "a", "bc") == ["k4"]
    assert listing(db, "ab", "") == ["k3"]
    assert listing(db, "", "") == ["root"]
    pns_a = [tuple(r) for r in db.execute(
        "SELECT secondary_namespace, key FROM kv WHERE primary_namespace='a'")]
    assert pns_a == [("", "k0"), ("", "k1"), ("b", "k2"), ("bc", "k4")]


def test_null_namespaces_mean_empty(db):
    db.execute("INSERT INTO kv(key, value) VALUES ('rootkey', x'01')")
    db.execute("INSERT INTO kv VALUES (NULL, NULL, 'rootkey2', x'02')")
    assert listing(db, "", "") == ["rootkey", "rootkey2"]
    assert db.execute("SELECT primary_namespace, secondary_namespace FROM kv WHERE key='rootkey'").fetchone() == ("", "")


# ---------------------------------------------------------------------------
# name rules (names=ldk)

MAX = 120


@pytest.mark.parametrize("position", [0, 1, 2], ids=["primary_namespace", "secondary_namespace", "key"])
def test_120_characters_accepted(db, position):
    names = [PNS, SNS, KEY]
    names[position] = "".join("abcXYZ019_-"[i % 11] for i in range(MAX))
    put(db, *names, DATA)
    assert read(db, *names) == DATA
    assert listing(db, names[0], names[1]) == [names[2]]
    remove(db, *names)
    assert listing(db, names[0], names[1]) == []


def test_120_characters_in_every_position_at_once(db):
    names = ["p" * MAX, "s" * MAX, "k" * MAX]
    put(db, *names, DATA)
    assert read(db, *names) == DATA
    assert listing(db, names[0], names[1]) == [names[2]]


COLUMNS = ["primary_namespace", "secondary_namespace", "key"]


@pytest.mark.parametrize("position", [0, 1, 2], ids=COLUMNS)
def test_121_characters_refused(db, position):
    names = [PNS, SNS, KEY]
    names[position] = "x" * (MAX + 1)
    with pytest.raises(sqlite3.IntegrityError) as ei:
        put(db, *names, DATA)
    assert_refused(ei, COLUMNS[position])
    assert db.execute("SELECT count(*) FROM kv").fetchone()[0] == 0


def test_empty_key_refused(db):
    with pytest.raises(sqlite3.IntegrityError) as ei:
        put(db, PNS, SNS, "", DATA)
    assert_refused(ei, "key")
    with pytest.raises(sqlite3.IntegrityError) as ei:
        db.execute("INSERT INTO kv(primary_namespace, secondary_namespace, value) VALUES (?,?,?)", (PNS, SNS, DATA))
    assert_refused(ei, "key")
    assert db.execute("SELECT count(*) FROM kv").fetchone()[0] == 0


def test_empty_primary_with_secondary_refused(db):
    with pytest.raises(sqlite3.IntegrityError) as ei:
        put(db, "", SNS, KEY, DATA)
    assert_refused(ei, "primary_namespace")
    # both empty, or only the secondary empty: fine
    put(db, "", "", KEY, DATA)
    put(db, PNS, "", KEY, DATA)
    assert db.execute("SELECT count(*) FROM kv").fetchone()[0] == 2


BAD = ["a b", "a/b", "a.b", "a\nb", "caf\u00e9", "a$", "a:b", "a\\b", "\u4e2d", "a'b", "a\tb", "a\x00b"]


@pytest.mark.parametrize("bad", BAD, ids=repr)
@pytest.mark.parametrize("position", [0, 1, 2], ids=COLUMNS)
def test_invalid_characters_refused(db, position, bad):
    names = [PNS, SNS, KEY]
    names[position] = bad
    with pytest.raises(sqlite3.IntegrityError) as ei:
        put(db, *names, DATA)
    assert_refused(ei, COLUMNS[position])
    assert db.execute("SELECT count(*) FROM kv").fetchone()[0] == 0


@pytest.mark.parametrize("position", [0, 1, 2], ids=COLUMNS)
@pytest.mark.parametrize("bad", [1, 2.5, b"blob"], ids=repr)
def test_non_text_names_refused(db, position, bad):
    names = [PNS, SNS, KEY]
    names[position] = bad
    with pytest.raises(sqlite3.IntegrityError) as ei:
        put(db, *names, DATA)
    assert_refused(ei, COLUMNS[position])
    assert db.execute("SELECT count(*) FROM kv").fetchone()[0] == 0


def test_null_value_refused(db):
    with pytest.raises(sqlite3.IntegrityError) as ei:
        put(db, PNS, SNS, KEY, None)
    assert str(ei.value).startswith("tierstore:")
    assert "value" in str(ei.value)


def test_rejected_row_keeps_nothing_of_its_statement(db):
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO kv VALUES ('ns','','good1',1), ('ns','','bad key',2), ('ns','','good2',3)")
    assert listing(db, "ns", "") == []
    db.execute("BEGIN")
    put(db, "ns", "", "kept", 1)
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO kv VALUES ('ns','','good1',1), ('ns','','bad key',2)")
    db.execute("COMMIT")
    assert listing(db, "ns", "") == ["kept"]


# ---------------------------------------------------------------------------
# persistence


def test_persists_after_reopen(tmp_path, connect):
    path = tmp_path / "persist.db"
    con = connect(path)
    put(con, PNS, SNS, KEY, DATA)
    put(con, "", "", "root", "text")
    put(con, PNS, "", "num", 42)
    con.close()
    con = connect(path)
    assert read(con, PNS, SNS, KEY) == DATA
    assert read(con, "", "", "root") == "text"
    assert read(con, PNS, "", "num") == 42
    remove(con, PNS, SNS, KEY)
    con.close()
    con = connect(path, table=None)       # the schema already knows the table
    assert read(con, PNS, SNS, KEY) is None
    assert listing(con, "", "") == ["root"]


def test_persists_in_a_new_process(tmp_path, connect, run_py):
    path = tmp_path / "persist.db"
    con = connect(path)
    put(con, PNS, SNS, KEY, DATA)
    put(con, PNS, SNS, "float", 2.25)
    con.close()
    out = run_py('''
        con = connect(sys.argv[1], table=None)
        rows = con.execute("SELECT key, hex(value), typeof(value) FROM kv WHERE primary_namespace=? "
                           "AND secondary_namespace=?", (%r, %r)).fetchall()
        print(json.dumps(rows))
        con.execute("REPLACE INTO kv VALUES (%r, %r, 'fromchild', 'child')")
    ''' % (PNS, SNS, PNS, SNS), args=[path]).stdout
    import json
    assert json.loads(out) == [["float", "322E3235", "real"], [KEY, DATA.hex().upper(), "blob"]]
    con = connect(path)
    assert read(con, PNS, SNS, "fromchild") == "child"


# ---------------------------------------------------------------------------
# creation numbers and newest-first pagination

PAGE = "SELECT key, rowid, value FROM kv WHERE primary_namespace=? AND secondary_namespace=? " \
       "AND rowid < ? ORDER BY rowid DESC LIMIT 50"
FIRST_PAGE = "SELECT key, rowid, value FROM kv WHERE primary_namespace=? AND secondary_namespace=? " \
             "ORDER BY rowid DESC LIMIT 50"


def test_rowid_kept_across_replace_and_update(db):
    put(db, PNS, SNS, "a", 1)
    put(db, PNS, SNS, "b", 2)
    rid = dict(db.execute("SELECT key, rowid FROM kv"))
    assert rid["a"] < rid["b"]
    put(db, PNS, SNS, "a", 10)
    db.execute("UPDATE kv SET value=11 WHERE primary_namespace=? AND secondary_namespace=? AND key='a'", (PNS, SNS))
    db.execute("INSERT OR REPLACE INTO kv VALUES (?,?,?,?)", (PNS, SNS, "a", 12))
    assert dict(db.execute("SELECT key, rowid FROM kv")) == rid
    assert read(db, PNS, SNS, "a") == 12
    # inside a transaction too, before and after commit
    db.execute("BEGIN")
    put(db, PNS, SNS, "b", 20)
    assert dict(db.execute("SELECT key, rowid FROM kv")) == rid
    db.execute("COMMIT")
    assert dict(db.execute("SELECT key, rowid FROM kv")) == rid
    # deleted and created again: a new, larger creation number
    remove(db, PNS, SNS, "a")
    put(db, PNS, SNS, "a", 13)
    new = dict(db.execute("SELECT key, rowid FROM kv"))
    assert new["b"] == rid["b"]
    assert new["a"] > rid["b"]
    # the rowid finds the row
    assert db.execute("SELECT key FROM kv WHERE rowid=?", (new["a"],)).fetchone() == ("a",)
    assert db.execute("SELECT key FROM kv WHERE rowid=?", (rid["a"],)).fetchone() is None


def test_pagination_newest_first_stable_under_updates(db):
    n = 1000
    keys = ["key%04d" % i for i in range(n)]
    order = keys[:]
    random.Random(42).shuffle(order)          # creation order differs from key order
    db.execute("BEGIN")
    for i, k in enumerate(order[:500]):
        put(db, PNS, SNS, k, i)
    db.execute("COMMIT")
    for i, k in enumerate(order[500:], 500):  # half in autocommit, one epoch each
        put(db, PNS, SNS, k, i)
    put(db, PNS, "other", "noise", 0)        # another namespace, created last
    created = {k: r for k, r in db.execute(
        "SELECT key, rowid FROM kv WHERE primary_namespace=? AND secondary_namespace=?", (PNS, SNS))}
    assert len(created) == n
    assert len(set(created.values())) == n
    # keys created by later commits have larger creation numbers
    assert max(created[k] for k in order[:500]) < min(created[k] for k in order[500:])
    assert [created[k] for k in order[500:]] == sorted(created[k] for k in order[500:])
    newest_first = sorted(created, key=created.get, reverse=True)
    assert newest_first == order[::-1]

    rng = random.Random(1)
    seen = []
    rows = db.execute(FIRST_PAGE, (PNS, SNS)).fetchall()
    pages = 0
    while rows:
        pages += 1
        assert len(rows) <= 50
        seen.extend(r[0] for r in rows)
        rowids = [r[1] for r in rows]
        assert rowids == sorted(rowids, reverse=True)
        assert len(set(rowids)) == len(rowids)
        last = rowids[-1]
        # between pages: update values of random keys (seen and unseen),
        # in autocommit and in a transaction, and create new keys
        for k in rng.sample(keys, 20):
            put(db, PNS, SNS, k, "updated-%d" % pages)
        db.execute("BEGIN")
        for k in rng.sample(keys, 20):
            db.execute("UPDATE kv SET value=? WHERE primary_namespace=? AND secondary_namespace=? AND key=?",
                       (-pages, PNS, SNS, k))
        db.execute("COMMIT")
        put(db, PNS, SNS, "new%04d" % pages, pages)
        rows = db.execute(PAGE, (PNS, SNS, last)).fetchall()
    assert pages == n // 50
    assert len(seen) == n, "%d rows paged, %d distinct" % (len(seen), len(set(seen)))
    assert len(set(seen)) == n
    assert seen == newest_first


def test_creation_order_within_one_transaction(db):
    # rowid is "increasing in creation order" (SPEC 3): keys created by
    # successive statements of one transaction are numbered in statement
    # order, the same order the transaction itself sees before COMMIT.
    order = ["m", "c", "x", "a", "q"]
    db.execute("BEGIN")
    for k in order:
        put(db, PNS, SNS, k, 1)
    before = [r[0] for r in db.execute(FIRST_PAGE, (PNS, SNS))]
    db.execute("COMMIT")
    after = [r[0] for r in db.execute(FIRST_PAGE, (PNS, SNS))]
    assert before == order[::-1]
    assert after == order[::-1], "creation order changed at COMMIT: %r before, %r after" % (before, after)
    # and the pagination test's stricter form: pages follow statement order
    rowids = [r[0] for r in db.execute(
        "SELECT rowid FROM kv WHERE primary_namespace=? AND secondary_namespace=? ORDER BY rowid", (PNS, SNS))]
    assert rowids == sorted(rowids) and len(set(rowids)) == len(order)


def test_pagination_inside_a_transaction_sees_own_writes(db):
    for i in range(60):
        put(db, PNS, SNS, "c%02d" % i, i)
    db.execute("BEGIN")
    for i in range(60, 80):
        put(db, PNS, SNS, "c%02d" % i, i)       # uncommitted, newest
    remove(db, PNS, SNS, "c05")
    put(db, PNS, SNS, "c10", "updated")        # existing key: keeps its place
    seen = []
    rows = db.execute(FIRST_PAGE, (PNS, SNS)).fetchall()
    while rows:
        seen.extend(r[0] for r in rows)
        rows = db.execute(PAGE, (PNS, SNS, rows[-1][1])).fetchall()
    db.execute("COMMIT")
    expected = ["c%02d" % i for i in range(79, -1, -1) if i != 5]
    assert seen == expected


def test_deleted_key_drops_out_of_pages(db):
    for i in range(120):
        put(db, PNS, SNS, "d%03d" % i, i)
    first = db.execute(FIRST_PAGE, (PNS, SNS)).fetchall()
    assert [r[0] for r in first] == ["d%03d" % i for i in range(119, 69, -1)]
    remove(db, PNS, SNS, "d050")     # not yet paged
    remove(db, PNS, SNS, "d100")     # already paged
    seen = [r[0] for r in first]
    rows = db.execute(PAGE, (PNS, SNS, first[-1][1])).fetchall()
    while rows:
        seen.extend(r[0] for r in rows)
        rows = db.execute(PAGE, (PNS, SNS, rows[-1][1])).fetchall()
    assert "d050" not in seen
    assert len(seen) == 119 and len(set(seen)) == 119
