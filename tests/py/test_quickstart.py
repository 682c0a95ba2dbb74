"""sql/quickstart.sql runs cleanly in the sqlite3 shell and shows what it says.

The script is run from a scratch directory in which ./build points at the
build directory under test (TIERSTORE_BUILD_ROOT), so its `.load
./build/tierstore` lines load this build (the sanitizer build included).
Its fixed scratch directory /tmp/tierstore-quickstart is replaced by one
under pytest's tmp_path, so parallel runs cannot disturb each other.
"""
import os
import re
import subprocess

import pytest

from conftest import BUILD_ROOT, EXT, SOURCE_ROOT, SQLITE3

QUICKSTART = os.path.join(SOURCE_ROOT, "sql", "quickstart.sql")
FIXED_DIR = "/tmp/tierstore-quickstart"


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
    assert os.path.isfile(QUICKSTART), "sql/quickstart.sql is missing from %s" % SOURCE_ROOT
    with open(QUICKSTART, encoding="utf-8") as f:
        script = f.read()
    work = tmp_path_factory.mktemp("quickstart")
    scratch = work / "scratch"
    script = script.replace(FIXED_DIR, str(scratch))
    loads = re.findall(r"^\.load\s+(\S+)", script, re.M)
    if not loads:
        script = ".load %s\n" % EXT + script
    os.symlink(BUILD_ROOT, work / "build")
    (work / "quickstart.sql").write_text(script, encoding="utf-8")
    with open(work / "quickstart.sql", "rb") as stdin:
        proc = subprocess.run([SQLITE3, "-batch"], stdin=stdin, cwd=str(work),
                              capture_output=True, timeout=60)
    out = proc.stdout.decode("utf-8", "replace")
    err = proc.stderr.decode("utf-8", "replace")
    return proc.returncode, out, err, scratch


def sections(out):
    """Output split at the '-- N.' headers the script prints."""
    parts = re.split(r"^-- (\d+)\. ", out, flags=re.M)
    return {int(parts[i]): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def cells(text):
    """Rows of the box/ascii tables in text, as lists of stripped cells."""
    rows = []
    for line in text.splitlines():
        if line.startswith("\u2502") or line.startswith("|"):
            sep = "\u2502" if line.startswith("\u2502") else "|"
            rows.append([c.strip() for c in line.strip().strip(sep).split(sep)])
    return rows


def test_quickstart_runs_cleanly(quickstart_run):
    rc, out, err, scratch = quickstart_run
    assert rc == 0, "sqlite3 exited with %d\nstdout:\n%s\nstderr:\n%s" % (rc, out, err)
    assert "Error" not in out and "Error" not in err, out + err
    assert err.strip() == "", err
    assert (scratch / "data" / "primary" / "data.mdb").is_file()
    assert "-- Done." in out


def test_quickstart_shows_key_results(quickstart_run):
    rc, out, err, _ = quickstart_run
    assert rc == 0, err
    s = sections(out)
    assert len(s) >= 8, "expected numbered sections in the output:\n" + out
    # a point read of an INTEGER value
    assert ["483", "integer"] in cells(s[3])
    # the config namespace listed ascending by key, values with their types
    listing = cells(s[4])
    keys = [r[1] for r in listing[1:]]
    assert keys == sorted(keys) and {"alias", "fee_rate", "max_htlcs"} <= set(keys)
    assert any("'my-node'" in r and "text" in r for r in listing)
    assert any("2.5" in r and "real" in r for r in listing)
    # newest-first pages, then REPLACE keeping the creation number
    paged = [r[1] for r in cells(s[5]) if r[1].startswith("chan_")]
    assert paged[:3] == ["chan_0003", "chan_0002", "chan_0001"], paged
    assert any("X'0D0E0F10'" in r for r in cells(s[5]))
    # rollback: 'network' only inside the transaction, 'alias' back after
    text6 = s[6]
    inside, after = text6.split("After ROLLBACK", 1)
    assert "network" in inside
    assert "network" not in after.split("\n", 1)[1] and "alias" in after
    # commit: the new key gets an epoch
    net = [r for r in cells(s[7]) if len(r) > 3 and r[1] == "network"]
    assert len(net) == 2, s[7]
    assert net[0][3] == "" and net[-1][3].isdigit(), s[7]   # NULL before COMMIT, a number after
    # hidden columns: every row in the primary tier
    hidden = cells(s[8])
    assert hidden[0][-1] == "tier"
    assert all(r[-1] == "primary" for r in hidden[1:]) and len(hidden) > 5
