#!/usr/bin/python3
"""Run one SQL test file in the real sqlite3 shell and compare its output.

Usage: run_sql.py SQLITE3 EXTENSION FILE.sql

The file runs in a fresh temporary directory (so relative LMDB paths land
there) against a database file test.db, after `.load EXTENSION`.  The
shell's stdout and stderr, merged, must equal FILE.expected byte for byte.
Set TIERSTORE_UPDATE_EXPECTED=1 only to print a diff-friendly actual output.
"""
import os
import subprocess
import sys
import tempfile


def main():
    sqlite3, ext, sql = sys.argv[1:4]
    expected_path = sql[: -len(".sql")] + ".expected"
    with open(sql, "rb") as f:
        script = f.read()
    with tempfile.TemporaryDirectory(prefix="tierstore-sql-") as tmp:
        proc = subprocess.run(
            [sqlite3, "-batch", "test.db"],
            input=b".load " + ext.encode() + b"\n" + script,
            cwd=tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=300,
        )
    actual = proc.stdout
    with open(expected_path, "rb") as f:
        expected = f.read()
    if actual != expected:
        sys.stdout.write("--- expected (%s)\n" % expected_path)
        sys.stdout.write(expected.decode("utf-8", "replace"))
        sys.stdout.write("--- actual\n")
        sys.stdout.write(actual.decode("utf-8", "replace"))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
