r"""tierstore: a Python client for the tierstore SQLite extension.

A small LDK-style KVStore (read, write, remove, list, list_paginated) over a
`tierstore` virtual table, for Debian's /usr/bin/python3 and its standard
sqlite3 module.  The table is declared in the connection's `temp` schema, so
several connections (threads) on one database file do not serialize on its
write lock and their commits share flushes (see the README, "Concurrency").

    import tierstore

    with tierstore.KVStore("app.db", "/srv/node/data/primary",
                           backup="/srv/node/data/backup", ephemeral="ldk") as kv:
        kv.write("monitors", "", "chan_0001", b"\x01\x02")
        assert kv.read("monitors", "", "chan_0001") == b"\x01\x02"
        with kv.transaction():                  # one commit, one epoch
            kv.write("monitors", "", "chan_0002", b"\x03")
            kv.remove("monitors", "", "chan_0001")
        keys, token = kv.list_paginated("monitors", "")   # newest first, 50 a page
        print(kv.list("monitors", ""))          # ['chan_0002']

Names are str, values bytes.  Errors raised by the table are sqlite3 errors
whose message starts with "tierstore:"; this module's own errors start with
"tierstore:" too.
"""
import base64
import binascii
import contextlib
import glob
import hashlib
import os
import re
import sqlite3
import struct
import sys

__all__ = ["load", "KVStore", "NotFound", "LoadError", "PAGE_SIZE"]

PAGE_SIZE = 50
"""Keys per page of KVStore.list_paginated."""

_HERE = os.path.dirname(os.path.abspath(__file__))
_ARG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TOKEN = struct.Struct(">B8sq")      # version, digest of (pns, sns), last rowid returned
_TOKEN_VERSION = 1


class LoadError(sqlite3.OperationalError):
    """The extension module could not be found or loaded."""


class NotFound(KeyError):
    """read() of a key that is not in the store.  A KeyError, so
    `except KeyError` works; str() gives the plain message."""

    def __init__(self, pns, sns, key):
        super().__init__(pns, sns, key)
        self.primary_namespace, self.secondary_namespace, self.key = pns, sns, key

    def __str__(self):
        return "tierstore: key (%r, %r, %r) not found" % (
            self.primary_namespace, self.secondary_namespace, self.key)


# ---------------------------------------------------------------------------
# Loading


def _install_prefixes():
    """Prefixes an installed module may live under: the one this file is
    installed in (<prefix>/lib/.../tierstore.py), sys.prefix, /usr/local, /usr."""
    out = []
    parts = _HERE.split(os.sep)
    for i in range(len(parts) - 1, 0, -1):
        if parts[i] in ("lib", "lib64", "lib32"):
            out.append(os.sep.join(parts[:i]) or os.sep)
            break
    out += [sys.prefix, sys.base_prefix, "/usr/local", "/usr"]
    seen, uniq = set(), []
    for p in out:
        p = os.path.abspath(p)
        if p not in seen:
            seen.add(p)
            uniq.append(p)
    return uniq


def _candidates():
    """Where load() looks when neither a path nor TIERSTORE_EXT is given, in
    order: installed modules (meson installs into <libdir>/sqlite3), then a
    checkout's build directory (../build/tierstore beside this file)."""
    out = []
    for prefix in _install_prefixes():
        for pattern in ("lib/*/sqlite3/tierstore", "lib64/sqlite3/tierstore", "lib/sqlite3/tierstore"):
            pat = os.path.join(prefix, pattern)
            found = sorted(p[:-3] for p in glob.glob(pat + ".so"))
            out += found if found else [pat]
    out.append(os.path.join(os.path.dirname(_HERE), "build", "tierstore"))
    return out


def _existing(path):
    """The absolute path to hand to load_extension, or None.  SQLite adds
    the .so suffix itself, so `x` and `x.so` both name x.so."""
    for p in (path, path + ".so"):
        if os.path.isfile(p):
            # absolute, so dlopen never searches the library path instead
            return os.path.abspath(path)
    return None


def load(con, path=None):
    """Load the tierstore extension on the sqlite3 connection `con` and
    return the path it was loaded from.

    Search order: `path`; else the TIERSTORE_EXT environment variable; else
    the installed module (<prefix>/lib/<multiarch>/sqlite3/tierstore.so and
    lib/sqlite3/ under this file's install prefix, sys.prefix and
    /usr/local); else a checkout's build/tierstore.so.  An explicit `path`
    or TIERSTORE_EXT is the only place looked at: a wrong one is an error
    rather than a reason to load some other build.  The path may omit the
    .so suffix.  Extension loading is enabled only for the call.
    Raises LoadError ("tierstore: ...", listing the places looked at).
    """
    env = os.environ.get("TIERSTORE_EXT")
    if path is not None:
        where, places = "path=%r" % str(path), [os.fspath(path)]
    elif env:
        where, places = "TIERSTORE_EXT=%r" % env, [env]
    else:
        where, places = None, _candidates()
    target = None
    for p in places:
        target = _existing(p)
        if target:
            break
    if not target:
        looked = ", ".join("%s(.so)" % p for p in places)
        if where:
            raise LoadError("tierstore: extension module not found at %s (looked for %s)" % (where, looked))
        raise LoadError("tierstore: extension module not found; looked for %s; pass path= or set "
                        "TIERSTORE_EXT to build/tierstore" % looked)
    if not hasattr(con, "enable_load_extension"):
        raise LoadError("tierstore: this Python's sqlite3 module cannot load extensions "
                        "(use Debian's /usr/bin/python3)")
    con.enable_load_extension(True)
    try:
        con.load_extension(target)
    except sqlite3.Error as e:
        raise LoadError("tierstore: loading %s failed: %s" % (target, e)) from e
    finally:
        con.enable_load_extension(False)
    return target


# ---------------------------------------------------------------------------
# The store


def _quote_ident(name):
    return '"' + name.replace('"', '""') + '"'


def _quote_value(value):
    if isinstance(value, bool) or not isinstance(value, (str, int, os.PathLike)):
        raise TypeError("tierstore: table argument values are str or int, not %s" % type(value).__name__)
    s = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
    if "\0" in s:
        raise ValueError("tierstore: table argument values cannot contain NUL")
    return "'" + s.replace("'", "''") + "'"


def _abs_dir(value):
    """Directories are made absolute here (relative to the current directory,
    as open() does): a temp-schema table has no database file to resolve
    them against.  A URI (postgresql://...) is passed as it is."""
    s = os.fspath(value)
    return s if "://" in s else os.path.abspath(s)


def _check_name(what, value):
    if not isinstance(value, str):
        raise TypeError("tierstore: %s must be str, not %s" % (what, type(value).__name__))


def _ns_digest(pns, sns):
    return hashlib.blake2b(("%s\0%s" % (pns, sns)).encode("utf-8"), digest_size=8).digest()


class KVStore:
    """An LDK-style key/value store on one tierstore table.

    `path_or_connection` is a database file path (":memory:" works; the data
    lives in the LMDB directories either way) or an open sqlite3.Connection.
    A path is opened with isolation_level=None (SQLite's own autocommit,
    explicit transactions) and closed by close().  A connection that is
    passed in stays the caller's: close() leaves it open and drops only the
    tables this store declared on it.

    The table is declared as `temp.<table>` (SPEC 4: no lock of the database
    file, commits of several connections share flushes) with the arguments
    given here; `primary` and `backup` are made absolute.  **more_args are
    further table arguments (map_size='256MiB', flush_interval='5ms',
    max_pending=..., mode='0640').  `ext` is the extension path for load().
    If the connection already has `temp.<table>` with other arguments,
    ValueError: pass another `table` name.

    Writes outside transaction() commit on their own; the call returns when
    the table's durability level is reached (durable by default).
    """

    def __init__(self, path_or_connection, primary, backup=None, ephemeral=None,
                 durability="durable", names="ldk", table="kv", *, ext=None, timeout=30.0,
                 **more_args):
        if isinstance(path_or_connection, sqlite3.Connection):
            con, self._owns = path_or_connection, False
        else:
            con = sqlite3.connect(os.fspath(path_or_connection), isolation_level=None, timeout=timeout)
            self._owns = True
        self._con = con
        self._created = []
        self._sp = 0
        try:
            if self._owns or not self._has_extension(con):
                load(con, ext)
            if not isinstance(table, str) or not table:
                raise ValueError("tierstore: table must be a non-empty str")
            args = [("primary", _abs_dir(primary))]
            if backup is not None:
                args.append(("backup", _abs_dir(backup)))
            if ephemeral is not None:
                args.append(("ephemeral", ephemeral))
            args.append(("durability", durability))
            args.append(("names", names))
            for k, v in more_args.items():
                if not _ARG_NAME.match(k):
                    raise ValueError("tierstore: table argument name %r is not an identifier" % k)
                if v is not None:
                    args.append((k, v))
            self.table = table
            self.durability = str(durability).lower()
            self._t = "temp." + _quote_ident(table)
            self._declare(table, args)
            # lazy removes: the same table at 'applied' (see remove())
            self._lazy_table = table + "_lazy"
            self._lazy_args = [(k, "applied" if k == "durability" else v) for k, v in args]
            self._lazy_t = None
        except BaseException:
            if self._owns:
                con.close()
            self._con = None
            raise
        t = self._t
        where = "WHERE primary_namespace = ? AND secondary_namespace = ?"
        self._sql_read = "SELECT value FROM %s %s AND key = ?" % (t, where)
        self._sql_write = ("REPLACE INTO %s(primary_namespace, secondary_namespace, key, value) "
                           "VALUES (?, ?, ?, ?)" % t)
        self._sql_list = "SELECT key FROM %s %s ORDER BY key" % (t, where)
        self._sql_page_first = "SELECT rowid, key FROM %s %s ORDER BY rowid DESC LIMIT %d" % (
            t, where, PAGE_SIZE + 1)
        self._sql_page_next = "SELECT rowid, key FROM %s %s AND rowid < ? ORDER BY rowid DESC LIMIT %d" % (
            t, where, PAGE_SIZE + 1)

    # -- setup ------------------------------------------------------------

    @staticmethod
    def _has_extension(con):
        try:
            con.execute("SELECT tierstore_version()").fetchone()
            return True
        except sqlite3.OperationalError:
            return False

    def _declare(self, table, args):
        """CREATE VIRTUAL TABLE IF NOT EXISTS temp.<table>, refusing an
        existing declaration with other arguments (IF NOT EXISTS would
        otherwise silently keep it, with its other primary)."""
        using = "tierstore(%s)" % ", ".join("%s = %s" % (k, _quote_value(v)) for k, v in args)
        row = self._con.execute("SELECT sql FROM temp.sqlite_master WHERE type = 'table' "
                                "AND lower(name) = lower(?)", (table,)).fetchone()
        if row is not None:
            have = (row[0] or "").split(" USING ", 1)[-1]
            if have != using:
                raise ValueError("tierstore: temp.%s already exists on this connection as %r, not %r; "
                                 "pass another table= name" % (table, have, using))
            return
        self._con.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.%s USING %s" % (_quote_ident(table), using))
        self._created.append(table)

    # -- plumbing ---------------------------------------------------------

    @property
    def connection(self):
        """The sqlite3 connection (for SQL of your own on self.table)."""
        if self._con is None:
            raise sqlite3.ProgrammingError("tierstore: the store is closed")
        return self._con

    def _write(self, sql, params):
        """Run one write.  Outside a transaction it commits on its own: with
        isolation_level=None SQLite does that; a passed-in connection in the
        sqlite3 module's legacy mode opens a transaction implicitly, which
        is committed (or rolled back) here."""
        con = self.connection
        own = not con.in_transaction
        try:
            con.execute(sql, params)
        except BaseException:
            if own and con.in_transaction:
                con.rollback()
            raise
        if own and con.in_transaction:
            con.commit()

    # -- the KVStore ------------------------------------------------------

    def read(self, primary_namespace, secondary_namespace, key):
        """The value of the key (bytes, as written; a value written through
        SQL as TEXT, INTEGER or REAL comes back with that type).  Raises
        NotFound (a KeyError) when the key is not there."""
        for what, v in (("primary_namespace", primary_namespace),
                        ("secondary_namespace", secondary_namespace), ("key", key)):
            _check_name(what, v)
        row = self.connection.execute(self._sql_read, (primary_namespace, secondary_namespace, key)).fetchone()
        if row is None:
            raise NotFound(primary_namespace, secondary_namespace, key)
        return row[0]

    def write(self, primary_namespace, secondary_namespace, key, value):
        """Create or overwrite the key (REPLACE INTO: an overwrite keeps the
        key's creation number, so its place in list_paginated)."""
        for what, v in (("primary_namespace", primary_namespace),
                        ("secondary_namespace", secondary_namespace), ("key", key)):
            _check_name(what, v)
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError("tierstore: value must be bytes, not %s" % type(value).__name__)
        self._write(self._sql_write, (primary_namespace, secondary_namespace, key, bytes(value)))

    def remove(self, primary_namespace, secondary_namespace, key, lazy=False):
        """Delete the key; a key that is not there is not an error.

        lazy=False returns when the delete has the table's durability.
        lazy=True (LDK's lazy remove: the delete may reach the disk later)
        runs it, outside a transaction, through a second declaration of the
        same directories at durability='applied': it returns once the delete
        is queued in this process's write coordinator, is visible at once to
        every reader in this process, reaches the disk within the
        flush_interval (10 ms by default; or at the next sync(), close or
        exit), and other processes see it then.  A crash in between may lose
        it.  Inside transaction(), and when the table is already 'applied',
        lazy=True is a normal remove (the transaction's reads must see it).
        """
        for what, v in (("primary_namespace", primary_namespace),
                        ("secondary_namespace", secondary_namespace), ("key", key)):
            _check_name(what, v)
        table = self._t
        if lazy and self.durability != "applied" and not self.connection.in_transaction:
            if self._lazy_t is None:
                self._declare(self._lazy_table, self._lazy_args)
                self._lazy_t = "temp." + _quote_ident(self._lazy_table)
            table = self._lazy_t
        self._write("DELETE FROM %s WHERE primary_namespace = ? AND secondary_namespace = ? AND key = ?"
                    % table, (primary_namespace, secondary_namespace, key))

    def list(self, primary_namespace, secondary_namespace):
        """Every key of the namespace pair, ascending."""
        _check_name("primary_namespace", primary_namespace)
        _check_name("secondary_namespace", secondary_namespace)
        return [r[0] for r in self.connection.execute(self._sql_list, (primary_namespace, secondary_namespace))]

    def list_paginated(self, primary_namespace, secondary_namespace, page_token=None):
        """(keys, next_page_token): one page of at most PAGE_SIZE (50) keys of
        the namespace pair, newest created first.

        Pages follow creation numbers (rowid), so they stay stable while
        values are overwritten, a deleted key just drops out, and a token
        whose last key was deleted resumes at the next older key.
        next_page_token is an opaque str, valid for this namespace pair only
        (ValueError otherwise), or None when this page is the last.  Keys a
        running transaction created carry provisional rowids until COMMIT:
        a token taken from them is good only inside that transaction.
        """
        _check_name("primary_namespace", primary_namespace)
        _check_name("secondary_namespace", secondary_namespace)
        digest = _ns_digest(primary_namespace, secondary_namespace)
        if page_token is None:
            rows = self.connection.execute(self._sql_page_first,
                                           (primary_namespace, secondary_namespace)).fetchall()
        else:
            after = self._decode_token(page_token, digest, primary_namespace, secondary_namespace)
            rows = self.connection.execute(self._sql_page_next,
                                           (primary_namespace, secondary_namespace, after)).fetchall()
        page = rows[:PAGE_SIZE]
        token = None
        if len(rows) > PAGE_SIZE:
            raw = _TOKEN.pack(_TOKEN_VERSION, digest, page[-1][0])
            token = base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
        return [r[1] for r in page], token

    @staticmethod
    def _decode_token(token, digest, pns, sns):
        try:
            if not isinstance(token, str):
                raise ValueError
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            version, got, rowid = _TOKEN.unpack(raw)
            if version != _TOKEN_VERSION:
                raise ValueError
        except (ValueError, binascii.Error, struct.error):
            raise ValueError("tierstore: malformed page token %r" % (token,)) from None
        if got != digest:
            raise ValueError("tierstore: page token %r belongs to another namespace than (%r, %r)"
                             % (token, pns, sns))
        return rowid

    # -- transactions and admin -------------------------------------------

    @contextlib.contextmanager
    def transaction(self):
        """`with store.transaction():` groups writes into one commit (one
        epoch): BEGIN ... COMMIT, ROLLBACK when the block raises.  Nested
        (or inside a transaction the caller opened on a passed-in
        connection) it is a SAVEPOINT: RELEASE, or ROLLBACK TO on an
        exception, undoing exactly its part.  A failed COMMIT rolls back
        and raises."""
        con = self.connection
        if not con.in_transaction:
            con.execute("BEGIN")
            try:
                yield self
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
            try:
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
            return
        self._sp += 1
        name = "tierstore_sp%d" % self._sp
        con.execute("SAVEPOINT " + name)
        try:
            try:
                yield self
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK TO " + name)
                    con.execute("RELEASE " + name)
                raise
            con.execute("RELEASE " + name)
        finally:
            self._sp -= 1

    def sync(self):
        """Flush everything this process queued on the primary (applied
        commits included) and fsync the primary and the backup."""
        self._write("INSERT INTO %s(%s) VALUES ('sync')" % (self._t, _quote_ident(self.table)), ())

    def status(self):
        """The rows of tierstore_status (one per tier this process has
        open) as a list of dicts."""
        cur = self.connection.execute("SELECT * FROM tierstore_status")
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur]

    def close(self):
        """Close the connection this store opened, or drop the tables this
        store declared on a passed-in one (the data stays on disk).
        Idempotent."""
        con, self._con = self._con, None
        if con is None:
            return
        if self._owns:
            con.close()
        else:
            for name in reversed(self._created):
                con.execute("DROP TABLE IF EXISTS temp.%s" % _quote_ident(name))
        self._created = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        return "<tierstore.KVStore %s%s>" % (self._t, "" if self._con is not None else " (closed)")
