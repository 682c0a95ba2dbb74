"""Crash harness (issue 4, item 1): writers killed with SIGKILL at random
moments, hundreds of times, and everything they were told is checked.

Each round starts one or two writer processes (crash_writer.py) on the same
primary + backup store.  They commit transactions in a loop (2..6 keys of a
shared pool rewritten or deleted, or 70 of them in one transaction in
eight, plus one log key per transaction) and
report each transaction before its COMMIT ("intent") and after COMMIT
returned ("acknowledged", with its epoch).  Each writer dies in one of these
ways, chosen at random:
  time     SIGKILL from the harness 0..120 ms after its table opened
  commit   SIGKILL 0..3 ms after its k-th intent line (inside or right
           around a COMMIT: the fsyncs, the backup's second thread)
  startup  SIGKILL 0..80 ms after it was started (often inside the open,
           which may be catching the backup up)
  fault    TIERSTORE_FAULT=after-primary at its k-th transaction: it kills
           itself after the primary committed and before the backup did

When all writers of a round are dead, the harness reads both environments
with python3-lmdb (this process never loads the extension) and checks:
  - every acknowledged commit is in the primary with the epoch it was
    acknowledged with; every acknowledged commit is in the backup too (COMMIT
    returns only when both have it); a fault-point commit is in the primary;
  - each writer's committed transactions are 0..n-1, all acknowledged but
    possibly the last one (in flight when it died); an in-flight commit
    that was not visible may become visible later, as the next epoch, when
    the next writer takes LMDB's lock (LMDB publishes a commit whose writer
    died after writing its meta page then; see late_commits), never
    otherwise;
  - no transaction is half-visible and per key the newest commit wins: the
    pool equals the replay, in epoch order, of every committed transaction
    (acknowledged, or in flight and found in the primary), value and epoch
    of every key; deleted keys are absent;
  - creation numbers: kept by replaced keys, new ones above every older one,
    consecutive within a transaction in statement order, increasing with the
    epoch; the rowids and creation indexes agree with the data;
  - the backup is never ahead, and it equals the primary as it was at the
    backup's last_epoch (same values, epochs and creation numbers);
then catches the backup up in one of three ways (the long-lived checker
process runs 'repair', or opens the table on a new connection, or the next
round's writers open it), and after the first two checks that the backup
equals the primary and that 'verify' passes.  Any problem fails the test at
once with the round, the seed and the directories.

Size: TIERSTORE_CRASH_KILLS kills per durability level (default 400, or 200
under the sanitizers); TIERSTORE_CRASH_SEED fixes the random choices.
"""
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from crashlib import (PYTHON, Raw, child_env, env_number, sanitized, table_sql,  # noqa: E402
                      value_for)

WRITER = os.path.join(HERE, "crash_writer.py")
CHECKER = os.path.join(HERE, "crash_checker.py")
POOL = 120                    # shared pool keys
STRATEGIES = ["time", "commit", "startup", "fault"]
WEIGHTS = [35, 35, 10, 20]
PROGRESS_TIMEOUT = 60         # a writer that makes no progress for this long is hung


class Writer:
    """One writer process and what it reported."""

    def __init__(self, h, wid, strategy, fault_at):
        self.wid = wid
        self.strategy = strategy
        self.fault_at = fault_at
        self.killed = False       # SIGKILL sent by the harness
        self.lines = []
        self.eof = False
        self.cond = threading.Condition()
        self.errpath = os.path.join(h.dir, "writer-%s.err" % wid)
        self.started = time.monotonic()
        with open(self.errpath, "wb") as err:
            self.proc = subprocess.Popen(
                [PYTHON, WRITER, h.db_for(wid), h.table, wid, str(h.rng.getrandbits(32)), str(POOL),
                 str(fault_at)],
                stdout=subprocess.PIPE, stderr=err, env=child_env(), cwd=HERE)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in iter(self.proc.stdout.readline, b""):
            if not raw.endswith(b"\n"):
                break
            with self.cond:
                self.lines.append(raw.decode().rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def wait_for(self, pred, timeout=PROGRESS_TIMEOUT):
        """Wait until pred(lines) or the output ends; False only when
        neither happened within timeout (the writer hangs)."""
        with self.cond:
            return self.cond.wait_for(lambda: self.eof or pred(self.lines), timeout)

    def kill(self):
        if self.proc.poll() is None:
            self.killed = True
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stderr(self):
        with open(self.errpath, "rb") as f:
            return f.read().decode(errors="replace")[-3000:]

    def parse(self):
        with open(self.errpath[:-4] + ".out", "w") as f:     # kept for post-mortems
            f.write("\n".join(self.lines) + "\n")
        self.intents, self.acks, self.opened, self.open_errors = {}, {}, False, []
        for line in self.lines:
            kind, _, rest = line.partition(" ")
            if kind == "O":
                self.opened = True
            elif kind == "I":
                c, ops = rest.split(" ", 1)
                self.intents[int(c)] = json.loads(ops)
            elif kind == "R":
                self.open_errors.append(rest)
            elif kind == "A":
                c, e = rest.split()
                self.acks[int(c)] = int(e)
            else:
                raise AssertionError("writer %s printed %r" % (self.wid, line))


class Txn:
    def __init__(self, wid, c, epoch, ops, acked):
        self.wid, self.c, self.epoch, self.ops, self.acked = wid, c, epoch, ops, acked
        self.marker = "%s.%d" % (wid, c)
        self.logkey = ("log", wid, "c%06d" % c)


class Harness:
    def __init__(self, tmp_path, durability, seed):
        self.dir = str(tmp_path)
        self.durability = durability
        self.seed = seed
        self.rng = random.Random(seed)
        self.primary = os.path.join(self.dir, "data", "primary")
        self.backup = os.path.join(self.dir, "data", "backup")
        self.dbs = os.path.join(self.dir, "dbs")
        os.makedirs(self.dbs)
        self.table = table_sql(primary=self.primary, backup=self.backup, durability=durability,
                               map_size="128KiB")
        # the model: every durable row, key -> (value, epoch, rowid, generation)
        self.model = {}
        self.max_epoch = 0
        self.b_epoch = 0              # the backup's epoch when last seen
        self.history = []             # every committed transaction, in epoch order
        self.max_rowid = 0
        self.round = 0
        # in-flight transactions of killed writers that were not in the
        # primary when their round was checked, and may still appear there
        # (see late_commits)
        self.pending = []
        self.open_errors = []
        self.stats = dict(kills=0, harness_kills=0, fault_kills=0, rounds=0, acked=0, inflight_committed=0,
                          inflight_lost=0, late=0, backup_behind=0, repair=0, reopen=0, next_open=0, writers=0)
        self.checker = subprocess.Popen([PYTHON, CHECKER, self.dir, self.table], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=open(os.path.join(self.dir, "checker.err"),
                                                                            "wb"),
                                        env=child_env(), cwd=HERE, text=True)
        assert self.checker.stdout.readline().strip() == "ready", self.checker_err()

    def checker_err(self):
        with open(os.path.join(self.dir, "checker.err")) as f:
            return f.read()[-3000:]

    def ask(self, cmd):
        self.checker.stdin.write(cmd + "\n")
        self.checker.stdin.flush()
        out = self.checker.stdout.readline()
        assert out, "the checker process died:\n%s" % self.checker_err()
        return out.rstrip("\n")

    def close(self):
        try:
            self.checker.stdin.close()
            self.checker.wait(timeout=30)
        except Exception:
            self.checker.kill()

    def db_for(self, wid):
        """Each writer has its own database file (declaring the same table),
        so SQLite's own locks never come between the writers."""
        return os.path.join(self.dbs, wid + ".db")

    def fail(self, problems):
        lines = ["crash harness (%s) round %d, seed %d, directory %s:" % (
            self.durability, self.round, self.seed, self.dir)]
        lines += ["  - " + p for p in problems[:25]]
        if len(problems) > 25:
            lines.append("  ... %d more" % (len(problems) - 25))
        pytest.fail("\n".join(lines), pytrace=False)

    # -- one round ---------------------------------------------------------

    def run_round(self):
        self.round += 1
        n = self.rng.choice((1, 2, 2))
        writers = []
        for i in range(n):
            strategy = self.rng.choices(STRATEGIES, WEIGHTS)[0]
            fault_at = self.rng.randint(0, 30) if strategy == "fault" else -1
            writers.append(Writer(self, "r%d-w%d" % (self.round, i), strategy, fault_at))
        plans = [self.plan(w) for w in writers]
        threads = [threading.Thread(target=p) for p in plans]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        problems = []
        for w in writers:
            try:
                w.proc.wait(timeout=PROGRESS_TIMEOUT)
            except subprocess.TimeoutExpired:
                w.kill()
                w.proc.wait()
                problems.append("writer %s (%s) did not die at its fault point" % (w.wid, w.strategy))
            w.reader.join(timeout=30)
            w.proc.stdout.close()
            w.parse()
            self.open_errors += ["%s: %s" % (w.wid, e) for e in w.open_errors]
            if getattr(w, "hung", None):
                problems.append("writer %s (%s) made no progress for %d s (%s); its stderr:\n%s" % (
                    w.wid, w.strategy, PROGRESS_TIMEOUT, w.hung, w.stderr()))
            if w.proc.returncode != -signal.SIGKILL:
                problems.append("writer %s (%s) exited with %r, not SIGKILL; its stderr:\n%s" % (
                    w.wid, w.strategy, w.proc.returncode, w.stderr()))
            elif w.killed:
                self.stats["harness_kills"] += 1
            else:
                self.stats["fault_kills"] += 1
        if problems:
            self.fail(problems)
        self.stats["kills"] += len(writers)
        self.stats["writers"] += len(writers)
        self.stats["rounds"] += 1
        self.check(writers)
        self.catch_up()

    def plan(self, w):
        rng = random.Random(self.rng.getrandbits(32))

        def time_kill():
            if not w.wait_for(lambda ls: "O" in ls):
                w.hung = "never opened its table"
            time.sleep(rng.uniform(0, 0.12))
            w.kill()

        def commit_kill():
            k = rng.randint(1, 40)
            if not w.wait_for(lambda ls: sum(1 for x in ls if x.startswith("I ")) >= k):
                w.hung = "never reached transaction %d" % k
            time.sleep(rng.uniform(0, 0.003))
            w.kill()

        def startup_kill():
            time.sleep(rng.uniform(0, 0.08))
            w.kill()

        def fault():
            try:
                w.proc.wait(timeout=PROGRESS_TIMEOUT)
            except subprocess.TimeoutExpired:
                w.hung = "never reached its fault point"
                w.kill()

        return {"time": time_kill, "commit": commit_kill, "startup": startup_kill, "fault": fault}[w.strategy]

    # -- the checks --------------------------------------------------------

    def committed_txns(self, writers, P, problems):
        """This round's transactions found in the primary, in epoch order."""
        txns, new_pending = [], []
        for w in writers:
            logs = {k: v for k, v in P.rows.items() if k[0] == "log" and k[1] == w.wid}
            cs = sorted(int(k[2][1:]) for k in logs)
            if cs != list(range(len(cs))):
                problems.append("writer %s: committed transactions %r are not 0..n-1" % (w.wid, cs[:50]))
            for c, e in sorted(w.acks.items()):
                if c not in cs:
                    problems.append("LOST: acknowledged commit %s.%d (epoch %d) is not in the primary"
                                    % (w.wid, c, e))
            for c in cs:
                rowid, epoch, value = logs[("log", w.wid, "c%06d" % c)]
                if value != "%s.%d" % (w.wid, c):
                    problems.append("log key of %s.%d holds %r" % (w.wid, c, value))
                if c not in w.intents:
                    problems.append("%s.%d is in the primary but was never announced" % (w.wid, c))
                    continue
                acked = c in w.acks
                if acked and w.acks[c] != epoch:
                    problems.append("%s.%d was acknowledged with epoch %d, the primary says %d"
                                    % (w.wid, c, w.acks[c], epoch))
                if not acked and c != cs[-1]:
                    problems.append("%s.%d committed but unacknowledged, and not the writer's last" % (w.wid, c))
                txns.append(Txn(w.wid, c, epoch, w.intents[c], acked))
            last_intent = max(w.intents) if w.intents else None
            if last_intent is not None and last_intent not in w.acks:
                if last_intent in cs:
                    self.stats["inflight_committed"] += 1
                else:
                    self.stats["inflight_lost"] += 1
                    new_pending.append((w.wid, last_intent, w.intents[last_intent]))
            if w.strategy == "fault" and w.fault_at in w.intents and not w.killed:
                if w.fault_at not in cs:
                    problems.append("%s.%d died at the after-primary fault point but is not in the primary"
                                    % (w.wid, w.fault_at))
            self.stats["acked"] += len(w.acks)
        txns += self.late_commits(P, bool(txns), problems)
        self.pending += new_pending
        txns.sort(key=lambda t: t.epoch)
        epochs = [t.epoch for t in txns]
        if len(set(epochs)) != len(epochs):
            problems.append("two transactions share an epoch: %r" % epochs)
        if epochs and epochs[0] <= self.max_epoch:
            problems.append("a new commit has epoch %d, not above the previous round's %d"
                            % (epochs[0], self.max_epoch))
        want_last = epochs[-1] if epochs else self.max_epoch
        if P.last_epoch != want_last:
            problems.append("primary last_epoch is %d, the newest commit has %d" % (P.last_epoch, want_last))
        return txns

    def late_commits(self, P, round_committed, problems):
        """Unacknowledged commits of earlier rounds that became visible now.

        LMDB readers take their snapshot from the transaction id in
        lock.mdb, which a writer updates after writing its meta page.  A
        writer killed between the two leaves a commit that is on disk but
        that readers (and the catch-up) do not see, as long as some process
        keeps the environment open; the next writer that takes the write
        lock finds the dead owner and publishes that commit
        (mdb_mutex_failed sets mti_txnid from the newest meta page).  Such a
        commit was never acknowledged, so it may appear, but only as the
        next epoch after the state that was visible, and only until another
        transaction has been written (which takes the lock)."""
        found = []
        for wid, c, ops in self.pending:
            got = P.rows.get(("log", wid, "c%06d" % c))
            if got is None:
                continue
            if got[1] != self.max_epoch + 1:
                problems.append("%s.%d appeared late with epoch %d, not %d (the epoch after the state that "
                                "was visible)" % (wid, c, got[1], self.max_epoch + 1))
            found.append(Txn(wid, c, got[1], ops, False))
            found[-1].late = True
        if len(found) > 1:
            problems.append("more than one late commit: %r" % [t.marker for t in found])
        if found:
            self.stats["late"] += 1
            self.stats["inflight_lost"] -= 1
            self.stats["inflight_committed"] += 1
        if found or round_committed:
            self.pending = []
        return found

    def replay(self, txns, stop_epoch):
        """The model after the round's transactions, and the model as of
        stop_epoch (None when no state has that epoch)."""
        state = dict(self.model)
        at = dict(state) if stop_epoch == self.max_epoch else None
        for t in txns:
            self.apply(state, t)
            if t.epoch == stop_epoch:
                at = dict(state)
        return state, at

    @staticmethod
    def apply(state, t):
        """Apply committed transaction t to a model; note the keys it created."""
        t.created = []
        for key, size in t.ops:
            k = ("pool", "", key)
            if size == -2:          # the DELETE found no row: nothing
                continue
            if size < 0:
                state.pop(k, None)
                continue
            old = state.get(k)
            if old is None:
                t.created.append(k)
                state[k] = (value_for(t.marker, key, size), t.epoch, None, (t.epoch, k))
            else:
                state[k] = (value_for(t.marker, key, size), t.epoch, old[2], old[3])
        t.created.append(t.logkey)
        state[t.logkey] = (t.marker, t.epoch, None, (t.epoch, t.logkey))

    def state_at(self, epoch):
        """The model as of an older epoch (without creation numbers), or
        None when no commit has that epoch."""
        if epoch and not any(t.epoch == epoch for t in self.history):
            return None
        state = {}
        for t in self.history:
            if t.epoch > epoch:
                break
            created = t.created
            self.apply(state, t)
            t.created = created
        return state

    @staticmethod
    def describe(k, row):
        if row is None:
            return "absent"
        rowid, epoch, value = row
        return "epoch %d rowid %d value of %s" % (epoch, rowid, value.split("|")[0] if k[0] == "pool" else value)

    def compare(self, name, env, want, problems, rowids_from=None):
        """env.rows against the model want (key -> (value, epoch, rowid, gen))."""
        for k in sorted(set(env.rows) | set(want)):
            got = env.rows.get(k)
            w = want.get(k)
            if w is None:
                problems.append("%s: %r should be absent, it is %s" % (name, k, self.describe(k, got)))
            elif got is None:
                problems.append("%s: %r is missing (expected epoch %d, %s)" % (name, k, w[1], w[0].split("|")[0]))
            elif got[1] != w[1] or got[2] != w[0]:
                problems.append("%s: %r is %s, expected epoch %d value of %s" % (
                    name, k, self.describe(k, got), w[1], w[0].split("|")[0]))
            elif w[2] is not None and got[0] != w[2]:
                problems.append("%s: %r has rowid %d, expected %d (kept since its creation)" % (
                    name, k, got[0], w[2]))

    def check_atomic(self, txns, P, problems):
        """No transaction half-visible: each key a committed transaction wrote
        carries its epoch or a later one."""
        for t in txns:
            for key, size in t.ops:
                if size == -2:
                    continue
                got = P.rows.get(("pool", "", key))
                if size >= 0 and (got is None and not self.deleted_later(txns, t, key)):
                    problems.append("HALF-VISIBLE: %s (epoch %d) wrote %s, which is absent" % (t.marker, t.epoch, key))
                elif got is not None and (got[1] < t.epoch or (got[1] == t.epoch and
                                                               got[2] != value_for(t.marker, key, size))):
                    problems.append("HALF-VISIBLE: %s (epoch %d) %s %s, which now has %s" % (
                        t.marker, t.epoch, "deleted" if size < 0 else "wrote", key,
                        self.describe(("pool",), got)))

    @staticmethod
    def deleted_later(txns, t, key):
        return any(u.epoch > t.epoch and [key, -1] in u.ops for u in txns)

    def check_rowids(self, txns, P, problems, concurrent):
        """Creation numbers of the keys each transaction created.  Across
        transactions: a later commit's numbers are above an earlier one's.
        Within one transaction (checked when it had no concurrent writer,
        since with one a key the transaction replaced may be gone at its
        commit, or one it created may exist already): consecutive, in
        statement order."""
        prev, prev_t = self.max_rowid, None
        for t in txns:
            if concurrent:
                # a pool key may have been created by another writer after
                # this transaction's statement found it absent (the commit
                # then gives it a new number) or deleted after its
                # statement found it (the commit takes a number then):
                # only the log keys are certain creations
                got = [P.rows[t.logkey][0]]
            else:
                got = [P.rows[k][0] for k in t.created if k in P.rows and P.rows[k][1] >= t.epoch
                       and not self.recreated_after(txns, t, k)]
            if not concurrent:
                if got != sorted(got):
                    problems.append("%s created %r with rowids %r: not in statement order" % (
                        t.marker, t.created, got))
                if len(got) == len(t.created) and got and got[-1] - got[0] != len(got) - 1:
                    problems.append("%s created %d keys with rowids %r: not consecutive" % (
                        t.marker, len(got), got))
            if got and min(got) <= prev:
                problems.append("%s (epoch %d) created rowids %r, not above %d (%s); history: %s" % (
                    t.marker, t.epoch, got, prev,
                    "older rounds" if prev_t is None else "%s, epoch %d" % (prev_t.marker, prev_t.epoch),
                    self.history(txns, t)))
            if got:
                prev, prev_t = max(got), t

    def history(self, txns, t):
        """What the round's commits did to the keys t created, for messages."""
        out = []
        for k in t.created:
            if k[0] != "pool":
                continue
            before = self.model.get(k)
            steps = ["%s@%d:%s" % (u.marker, u.epoch, {-1: "del", -2: "del-miss"}.get(
                [op[1] for op in u.ops if op[0] == k[2]][0], "put"))
                     for u in txns if any(op[0] == k[2] for op in u.ops)]
            out.append("%s (rowid %s, before the round %s) %s" % (
                k[2], self.P_now.rows.get(k, (None,))[0], "absent" if before is None else
                "rowid %d epoch %d" % (before[2], before[1]), " ".join(steps)))
        return "; ".join(out)

    @staticmethod
    def recreated_after(txns, t, k):
        if k[0] != "pool":
            return False
        return any(u.epoch > t.epoch and [k[2], -1] in u.ops for u in txns)

    def check(self, writers):
        P = Raw(self.primary)
        B = Raw(self.backup)
        problems = []
        self.P_now = P
        txns = self.committed_txns(writers, P, problems)
        self.check_atomic(txns, P, problems)
        state, at_b = self.replay(txns, B.last_epoch)
        self.compare("primary", P, state, problems)
        # a late commit became visible while this round's writer ran its
        # statements: it counts as a concurrent writer
        self.check_rowids(txns, P, problems,
                          concurrent=len(writers) > 1 or any(getattr(t, "late", False) for t in txns))
        problems += ["primary: " + p for p in P.index_problems()]
        # the backup, before any catch-up
        if B.store_id != P.store_id:
            problems.append("backup store_id differs from the primary's")
        if B.last_epoch > P.last_epoch:
            problems.append("AHEAD: backup at epoch %d, primary at %d" % (B.last_epoch, P.last_epoch))
        if B.last_epoch < self.b_epoch:
            problems.append("backup at epoch %d went below %d, where it was before this round" % (
                B.last_epoch, self.b_epoch))
        if at_b is None and B.last_epoch < self.max_epoch:
            # not caught up since an earlier round ('next open' whose writers
            # died before opening), or a backup commit that LMDB published
            # late (see late_commits)
            at_b = self.state_at(B.last_epoch)
        for t in txns:
            if t.acked and t.epoch > B.last_epoch:
                problems.append("acknowledged commit %s (epoch %d) is not in the backup (at epoch %d)" % (
                    t.marker, t.epoch, B.last_epoch))
        if B.last_epoch < P.last_epoch:
            self.stats["backup_behind"] += 1
        if at_b is None:
            if B.last_epoch <= P.last_epoch:
                problems.append("backup at epoch %d, which is no commit's epoch" % B.last_epoch)
        else:
            # creation numbers of rows that are the same creation in both
            final_gen = {k: v[3] for k, v in state.items()}
            want_b = {}
            for k, v in at_b.items():
                rowid = v[2]
                if rowid is None and final_gen.get(k) == v[3] and k in P.rows:
                    rowid = P.rows[k][0]
                want_b[k] = (v[0], v[1], rowid, v[3])
            self.compare("backup", B, want_b, problems)
        problems += ["backup: " + p for p in B.index_problems()]
        if problems:
            self.fail(problems)
        # adopt the round
        self.model = {k: (v[0], v[1], P.rows[k][0], v[3]) for k, v in state.items()}
        self.max_epoch = P.last_epoch
        self.b_epoch = B.last_epoch
        self.history += txns
        self.max_rowid = max([self.max_rowid] + [r for r, _, _ in P.rows.values()])
        self.P = P

    def catch_up(self, method=None):
        method = method or self.rng.choices(["repair", "reopen", "next_open"], [40, 40, 20])[0]
        self.stats[method] += 1
        if method == "next_open":
            return
        out = self.ask(method)
        problems = []
        if out != "ok":
            problems.append("%s failed: %s" % (method, out))
        P, B = Raw(self.primary), Raw(self.backup)
        if P.rows != self.P.rows or P.last_epoch != self.P.last_epoch:
            problems.append("%s changed the primary" % method)
        if B.last_epoch != P.last_epoch:
            problems.append("after %s the backup is at epoch %d, the primary at %d" % (
                method, B.last_epoch, P.last_epoch))
        if B.rows != P.rows:
            diff = sorted(set(B.rows.items()) ^ set(P.rows.items()))[:5]
            problems.append("after %s the backup's rows differ from the primary's: %r" % (method, diff))
        if B.next_rowid < P.next_rowid:
            problems.append("after %s the backup's next_rowid %d is below the primary's %d" % (
                method, B.next_rowid, P.next_rowid))
        problems += ["backup after %s: %s" % (method, p) for p in B.index_problems()]
        if problems:
            self.fail(problems)
        self.b_epoch = B.last_epoch

    def finish(self):
        """A last catch-up and verify, and SQL agrees with the raw view."""
        self.catch_up("repair")
        out = self.ask("sql SELECT count(*), max(epoch) FROM kv")
        assert out.startswith("ok "), out
        count, max_epoch = json.loads(out[3:])[0]
        assert count == len(self.P.rows) and (max_epoch or 0) == self.max_epoch, (out, len(self.P.rows))


def default_kills():
    return 200 if sanitized() else 400


@pytest.mark.parametrize("durability", ["durable", "written"])
def test_crash_harness(tmp_path, durability, capsys):
    kills = env_number("TIERSTORE_CRASH_KILLS", default_kills())
    seed = env_number("TIERSTORE_CRASH_SEED", random.SystemRandom().getrandbits(32))
    t0 = time.monotonic()
    h = Harness(tmp_path, durability, seed)
    try:
        while h.stats["kills"] < kills:
            h.run_round()
        h.finish()
    finally:
        h.close()
    s = h.stats
    elapsed = time.monotonic() - t0
    with capsys.disabled():
        print("\ncrash harness (%s): %d kills (%d SIGKILL at random moments, %d at the after-primary fault "
              "point) in %d rounds, %d commits verified (%d acknowledged, %d in flight and found committed, "
              "%d of them visible only after the next writer took LMDB's lock, %d in flight and absent), 0 lost; backup behind at %d kills and caught up (repair %d, reopen "
              "%d, next open %d); seed %d; %.1f s"
              % (durability, s["kills"], s["harness_kills"], s["fault_kills"], s["rounds"],
                 s["acked"] + s["inflight_committed"], s["acked"], s["inflight_committed"],
                 s["late"], s["inflight_lost"], s["backup_behind"], s["repair"], s["reopen"], s["next_open"], seed,
                 elapsed))
    # Opening a table while another process grows the map must not fail
    # (it did with MDB_MAP_RESIZED before 38c3a8b, see test_regressions.py);
    # the writers retry such an open, and any failure is reported here once
    # the run is done
    assert not h.open_errors, ("%d table opens failed while another process grew the map, e.g. %s"
                               % (len(h.open_errors), h.open_errors[0]))
    # the harness must really have exercised what it claims to
    assert s["fault_kills"] > 0 and s["harness_kills"] > 0
    assert s["acked"] > s["kills"]
    assert s["backup_behind"] > 0
