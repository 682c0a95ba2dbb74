#!/usr/bin/python3
"""Build the seed corpus of fuzz_sql (tests/fuzz/corpus/sql_*) from the SQL
tests (tests/sql/*.sql).

Each seed is one small file in fuzz_sql's input format: line 1 is the
argument list of the table kv, the rest are SQL statements.  Every SQL test
file is cut into chunks of at most CHUNK statements (shell dot-commands
dropped).  A chunk that uses tables created earlier in its file gets their
CREATE statements first, and kv's arguments become line 1 (a chunk without
kv gets a plain kv on 'data/p').  The hand-written seeds (corpus/hand_* and
corpus/regress_*) are not touched.

Usage: make_corpus.py [OUT_DIR]    (default: tests/fuzz/corpus next to it)
Rerun it after changing tests/sql; it replaces every sql_* seed.
"""
import glob
import os
import re
import sqlite3
import sys

CHUNK = 12
HERE = os.path.dirname(os.path.abspath(__file__))
SQL_DIR = os.path.join(os.path.dirname(HERE), "sql")
CREATE_RE = re.compile(
    r"^\s*CREATE\s+VIRTUAL\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?([\w.]+)\s+USING\s+tierstore\s*(?:\((.*)\))?\s*;\s*$",
    re.I | re.S)


def statements(path):
    """The SQL statements of a test file, without dot-commands."""
    out, cur = [], ""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not cur and line.startswith("."):
                continue
            if not cur and (not line.strip() or line.lstrip().startswith("--")):
                continue
            cur += line
            if sqlite3.complete_statement(cur):
                out.append(cur.strip())
                cur = ""
    return out


def seeds(path):
    stmts = statements(path)
    defined = {}          # table -> its CREATE statement (latest so far)
    kv_args = None
    result = []
    for start in range(0, len(stmts), CHUNK):
        chunk = stmts[start:start + CHUNK]
        body, first_kv = [], None
        used = set()
        for s in chunk:
            m = CREATE_RE.match(s)
            if m and m.group(1).lower() == "kv" and kv_args is None and first_kv is None:
                first_kv = m.group(2) or ""
                continue
            body.append(s)
        text = "\n".join(body)
        for name in defined:
            if name != "kv" and re.search(r"\b%s\b" % re.escape(name), text, re.I):
                used.add(name)
        prelude = [defined[n] for n in sorted(used)
                   if not any(CREATE_RE.match(s) and CREATE_RE.match(s).group(1).lower() == n
                              for s in body)]
        args = kv_args if kv_args is not None else first_kv
        if args is None:
            args = "primary = 'data/p'"
        args = " ".join(args.split())   # one line
        result.append(args + "\n" + "\n".join(prelude + body) + "\n")
        for s in chunk:
            m = CREATE_RE.match(s)
            if m:
                name = m.group(1).lower()
                if name == "kv":
                    if kv_args is None:
                        kv_args = m.group(2) or ""
                else:
                    defined[name] = s
    return result


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus")
    os.makedirs(out, exist_ok=True)
    for old in glob.glob(os.path.join(out, "sql_*")):
        os.remove(old)
    n = 0
    for path in sorted(glob.glob(os.path.join(SQL_DIR, "*.sql"))):
        stem = os.path.basename(path)[:-4]
        for i, seed in enumerate(seeds(path)):
            with open(os.path.join(out, "sql_%s_%02d" % (stem, i)), "w", encoding="utf-8") as f:
                f.write(seed)
            n += 1
    print("%d seeds from %s" % (n, SQL_DIR))


if __name__ == "__main__":
    main()
