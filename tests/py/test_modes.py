"""The modes of what tierstore creates (SPEC 2).

Directories it creates are 0700 and files 0600 whatever the umask, unless
the argument `mode` (octal, for the files) asks for more: directories then
get u+rwx and x for each class that may read or write.  A malformed mode
refuses the table and creates nothing; what existed keeps its mode.

Each table is created in a child process with its own umask, so the umask
of the test process (and its open environments) never matters.
"""
import os
import sqlite3
import stat

import pytest

from conftest import table_sql

FILES = ("data.mdb", "lock.mdb", "tierstore.shm")

CREATE = '''
os.umask(int(sys.argv[2], 8))
con = connect(sys.argv[1], table=sys.argv[3])
con.execute("REPLACE INTO kv VALUES ('ns', '', 'k', 'v')")
assert con.execute("SELECT value FROM kv").fetchall() == [("v",)]
con.close()
'''


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def create(run_py, db, umask, **args):
    """Create kv in db with args (and write a row) in a child process whose
    umask is umask."""
    run_py(CREATE, args=[db, "%o" % umask, table_sql(**args)])


def modes(*paths):
    return {str(p): "%04o" % mode_of(p) for p in paths}


def env_paths(root, name):
    """The directories a nested environment root/name/x/env takes, and its
    files."""
    dirs = [root / name, root / name / "x", root / name / "x" / "env"]
    return dirs, [dirs[-1] / f for f in FILES]


@pytest.mark.parametrize("umask", [0o022, 0, 0o077], ids=["umask022", "umask0", "umask077"])
@pytest.mark.parametrize("mode,file_mode,dir_mode", [
    (None, "0600", "0700"),
    ("0640", "0640", "0750"),
    ("0660", "0660", "0770"),
    ("0604", "0604", "0705"),
    ("0644", "0644", "0755"),
])
def test_created_modes(tmp_path, run_py, umask, mode, file_mode, dir_mode):
    pdirs, pfiles = env_paths(tmp_path, "p")
    bdirs, bfiles = env_paths(tmp_path, "b")
    args = dict(primary="p/x/env", backup="b/x/env")
    if mode is not None:
        args["mode"] = mode
    create(run_py, tmp_path / "app.db", umask, **args)
    for f in pfiles + bfiles:
        assert f.is_file(), f
    assert modes(*pdirs, *bdirs) == {str(d): dir_mode for d in pdirs + bdirs}
    assert modes(*pfiles, *bfiles) == {str(f): file_mode for f in pfiles + bfiles}


@pytest.mark.parametrize("bad", ["abc", "0999", "1777", "0200", "0400", "", "0o640", "-600"])
def test_malformed_mode_refused(tmp_path, connect, bad):
    con = connect(tmp_path / "app.db", table=None)
    with pytest.raises(sqlite3.OperationalError) as e:
        con.execute(table_sql(primary="p/x/env", backup="b/x/env", mode=bad))
    msg = str(e.value)
    assert msg.startswith("tierstore: argument 'mode' is malformed: '%s'" % bad), msg
    assert sorted(os.listdir(tmp_path)) == ["app.db"]
    assert con.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)


def test_existing_directories_and_files_keep_their_modes(tmp_path, run_py):
    pre = tmp_path / "pre"
    pre.mkdir()
    os.chmod(pre, 0o755)
    env = pre / "env"
    backup = tmp_path / "backup"
    backup.mkdir()
    os.chmod(backup, 0o751)
    create(run_py, tmp_path / "a.db", 0o022, primary="pre/env", backup="backup")
    assert modes(pre, env, backup) == {str(pre): "0755", str(env): "0700", str(backup): "0751"}
    files = [env / f for f in FILES] + [backup / f for f in FILES]
    assert modes(*files) == {str(f): "0600" for f in files}
    # a file given another mode by hand keeps it too
    os.chmod(env / "data.mdb", 0o640)
    # another table on the same environments, asking for more, under umask 0
    create(run_py, tmp_path / "b.db", 0, primary="pre/env", backup="backup", mode="0666")
    want = {str(f): "0600" for f in files}
    want[str(env / "data.mdb")] = "0640"
    assert modes(*files) == want
    assert modes(pre, env, backup) == {str(pre): "0755", str(env): "0700", str(backup): "0751"}


def test_missing_file_of_existing_environment_gets_the_mode(tmp_path, run_py):
    env = tmp_path / "env"
    create(run_py, tmp_path / "a.db", 0o022, primary="env")
    os.unlink(env / "tierstore.shm")
    create(run_py, tmp_path / "b.db", 0o077, primary="env", mode="0640")
    assert modes(env, env / "data.mdb", env / "tierstore.shm") == {
        str(env): "0700", str(env / "data.mdb"): "0600", str(env / "tierstore.shm"): "0640"}
