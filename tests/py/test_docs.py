"""The examples of README.md and docs/*.md run, so none rots.

Every ```sql block of a file runs, in order, in one sqlite3 shell session
(a fresh scratch directory as the current directory, ./build pointing at the
build under test, the extension loaded first, and the parameters ?1 ?2 ?3
that the pagination example uses bound to 'monitors', '' and 100); the
session must print no error.  Every ```python block runs in its own
/usr/bin/python3 process in a scratch directory holding the checkout's
python/ (the client) and ./build; its argv[1] is an environment written by
the SQL of the same test (the on-disk reader reads it).  An example that
shows an error says so in a comment "-- Runtime error: <message>" on the
next line, and the error must be that one.  Absolute paths
under /tmp/tierstore-* and /srv/node in the examples are moved into the
scratch directory.
"""
import glob
import os
import re
import subprocess

import pytest

from conftest import BUILD_ROOT, EXT, PYTHON, SOURCE_ROOT, SQLITE3, child_env

FILES = [os.path.join(SOURCE_ROOT, "README.md")] + sorted(glob.glob(os.path.join(SOURCE_ROOT, "docs", "*.md")))


def blocks(path, lang):
    """The fenced blocks of one language in a markdown file (indented ones too)."""
    out, cur, indent = [], None, ""
    for line in open(path, encoding="utf-8").read().split("\n"):
        stripped = line.strip()
        if cur is None and stripped == "```" + lang:
            cur, indent = [], line[:len(line) - len(line.lstrip())]
        elif cur is not None and stripped == "```":
            out.append("\n".join(cur) + "\n")
            cur = None
        elif cur is not None:
            cur.append(line[len(indent):] if line.startswith(indent) else line)
    return out


def scratch_for(tmp_path, text):
    text = re.sub(r"/tmp/tierstore-[\w-]+", lambda m: str(tmp_path / m.group(0)[5:]), text)
    return text.replace("/srv/node", str(tmp_path / "srv-node"))


def prepare(tmp_path):
    os.symlink(BUILD_ROOT, tmp_path / "build")
    os.symlink(os.path.join(SOURCE_ROOT, "python"), tmp_path / "python")


def test_every_file_has_its_examples_found():
    found = {os.path.basename(f): len(blocks(f, "sql")) + len(blocks(f, "python")) for f in FILES}
    assert found["README.md"] >= 2 and found.get("python.md", 0) >= 1 and found.get("sql.md", 0) >= 3, found


@pytest.mark.parametrize("path", FILES, ids=os.path.basename)
def test_sql_examples_run(tmp_path, path):
    sql = blocks(path, "sql")
    if not sql:
        return   # a file without SQL examples has nothing to run
    prepare(tmp_path)
    script = ".load %s\n.parameter set ?1 'monitors'\n.parameter set ?2 ''\n.parameter set ?3 100\n" % EXT
    script += scratch_for(tmp_path, "".join(sql))
    # the examples' database file is /srv/node/app.db (relative directories
    # resolve beside it)
    os.makedirs(tmp_path / "srv-node")
    proc = subprocess.run([SQLITE3, "-batch", str(tmp_path / "srv-node" / "app.db")], input=script, text=True,
                          capture_output=True, cwd=str(tmp_path), timeout=120)
    # an error is right where the example shows it, as a comment
    # "-- Runtime error: <its message>"; any other fails the test
    errors = re.findall(r"^(?:Runtime error|Parse error|Error)[^:]*: (.*)$", proc.stderr, re.M)
    shown = re.findall(r"^-- Runtime error: (.*)$", script, re.M)
    assert len(errors) == len(shown), "%s: errors %r, the examples show %r\n%s" % (path, errors, shown, proc.stderr)
    for got, want in zip(errors, shown):
        assert got.startswith(want.strip()), "%s: error %r where the example shows %r" % (path, got, want)


@pytest.mark.parametrize("path", FILES, ids=os.path.basename)
def test_python_examples_run(tmp_path, path):
    code = blocks(path, "python")
    if not code:
        return   # a file without Python examples has nothing to run
    prepare(tmp_path)
    env_dir = tmp_path / "data" / "primary"
    setup = ".load %s\nCREATE VIRTUAL TABLE kv USING tierstore(primary='%s');\n" \
            "INSERT INTO kv VALUES ('monitors', '', 'chan_1', x'2a');\n" % (EXT, env_dir)
    subprocess.run([SQLITE3, "-batch", str(tmp_path / "setup.db")], input=setup, text=True, check=True,
                   capture_output=True, cwd=str(tmp_path), timeout=60)
    env = child_env()
    env["TIERSTORE_EXT"] = EXT
    for i, src in enumerate(code):
        src = scratch_for(tmp_path, src)
        proc = subprocess.run([PYTHON, "-c", src, str(env_dir)], text=True, capture_output=True,
                              cwd=str(tmp_path), env=env, timeout=120)
        assert proc.returncode == 0, "%s: Python example %d failed:\n%s\n%s" % (path, i + 1, proc.stderr, src)
