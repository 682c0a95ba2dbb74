"""The crash harness's long-lived helper: a process that opened the table
before any writer was killed (like an application process that stays up
while another one crashes) and runs admin commands on request.

    crash_checker.py DIR TABLE_SQL

Commands on stdin, one per line; each is answered with one line, "ok" or
"err <message>":
    verify    INSERT INTO kv(kv) VALUES('verify') on the long-lived connection
    repair    'repair', then 'verify', on the long-lived connection
    reopen    a new connection opens the table (the open catches a lagging
              backup up), runs 'verify' and closes
    sql Q     runs Q on the long-lived connection (answer: "ok <json rows>")
"""
import json
import os
import sys

from crashlib import connect


def main():
    d, table = sys.argv[1:3]
    con = connect(os.path.join(d, "checker.db"), table)
    print("ready", flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        try:
            if cmd == "verify":
                con.execute("INSERT INTO kv(kv) VALUES ('verify')")
                out = "ok"
            elif cmd == "repair":
                con.execute("INSERT INTO kv(kv) VALUES ('repair')")
                con.execute("INSERT INTO kv(kv) VALUES ('verify')")
                out = "ok"
            elif cmd == "reopen":
                other = connect(os.path.join(d, "reopen.db"), table)
                try:
                    other.execute("INSERT INTO kv(kv) VALUES ('verify')")
                finally:
                    other.close()
                out = "ok"
            elif cmd.startswith("sql "):
                out = "ok " + json.dumps(con.execute(cmd[4:]).fetchall())
            else:
                out = "err unknown command %r" % cmd
        except Exception as e:     # reported to the harness
            out = "err %s: %s" % (type(e).__name__, str(e).replace("\n", " "))
        print(out, flush=True)


if __name__ == "__main__":
    main()
