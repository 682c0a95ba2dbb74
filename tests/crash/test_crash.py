"""Crash harness (issue 4, item 1): writers killed with SIGKILL at random
moments, hundreds of times, and everything they were told is checked.

Each round starts one or two writer processes (crash_writer.py) on the same
primary + backup store.  They commit transactions in a loop (2..6 keys of a
shared pool rewritten or deleted, or 70 of them in one transaction in
eight, plus one log key per transaction) and
report each transaction before its COMMIT ("intent") and after COMMIT
returned ("acknowledged", with its epoch, or for 'applied' without one,
and the time).  Every process has one write coordinator per primary: its
flusher writes what is queued as one write of an epoch range to the
primary and, at the same time, to the backup.  At the 'applied' level a
writer process runs 1 to 3 threads (logical writers of their own, each
on its own connection) whose commits share those writes.  Each writer
dies in one of these ways, chosen at random:
  time          SIGKILL from the harness 0..120 ms after its table opened
                (0..1200 ms at the 'applied' level, so that some commits
                were acknowledged long before the kill)
  commit        SIGKILL 0..3 ms after its k-th intent line (inside or right
                around a COMMIT: the fsyncs, the backup's thread)
  startup       SIGKILL 0..80 ms after it was started (often inside the
                open, which may be reconciling the backup)
  fault         TIERSTORE_FAULT=after-primary from its k-th transaction on:
                it kills itself after the primary committed a write and
                before the backup did (the backup is behind)
  fault-backup  TIERSTORE_FAULT=after-backup from its k-th transaction on:
                it kills itself after the backup committed a write and
                before the primary did (the backup holds a write the
                primary never gets)

When all writers of a round are dead, the harness reads both environments
with python3-lmdb (this process never loads the extension) and checks:
  - 'durable' and 'written': every acknowledged commit is in the primary
    with the epoch it was acknowledged with, and in the backup too (COMMIT
    returns only when both have it);
  - 'applied': every commit acknowledged more than flush_interval + a
    flush allowance (TIERSTORE_CRASH_APPLIED_SLACK, 0.5 s; 1 s under the
    sanitizers) before the harness's SIGKILL is in the primary (a commit
    that may still be published late, see late_commits, is judged once it
    can no longer appear);
  - each logical writer's committed transactions are 0..n-1 (a prefix:
    nothing older lost when a newer one survived), all acknowledged but
    possibly the last one (in flight when it died), their epochs
    increasing in the writer's order; in-flight (or, for 'applied',
    acknowledged and not yet written) commits that were not visible may
    become visible later, as the next epochs, when the next writer takes
    LMDB's lock (LMDB publishes a commit whose writer died after writing
    its meta page then; see late_commits), all of one write, never
    otherwise;
  - no transaction is half-visible and per key the newest commit wins: the
    pool equals the replay, in epoch order, of every committed transaction
    (acknowledged, or in flight and found in the primary), value and epoch
    of every key; deleted keys are absent;
  - creation numbers: kept by replaced keys, new ones above every older one,
    consecutive within a transaction in statement order, increasing with the
    epoch; the rowids and creation indexes agree with the data;
  - the backup equals the primary as it was at some epoch E at or after
    the backup's state of the last round (same values, epochs and creation
    numbers), plus at most one write the primary lacks: the transactions
    of one killed writer process, never acknowledged at 'durable' and
    'written', consecutive epochs E+1.. (their log keys name them), applied
    on top of that state (backup_only); every commit acknowledged at
    'durable' or 'written' is at or below E;
  - a writer that died at the after-backup point alone in its round left
    the backup holding its write (at 'durable' and 'written': exactly its
    last transaction), which never reaches the primary; one that died at
    the after-primary point alone left the backup behind the primary;
then catches the backup up in one of three ways (the long-lived checker
process runs 'repair', or opens the table on a new connection, or the next
round's writers open it), and after the first two checks that the backup
equals the primary (rows, last_epoch, the id of the last write) and that
'verify' passes.  Any problem fails the test at once with the round, the
seed and the directories.

Size: TIERSTORE_CRASH_KILLS kills for 'durable' and for 'written' (default
400, or 200 under the sanitizers), TIERSTORE_CRASH_APPLIED_KILLS for
'applied' (default 150, or 80); TIERSTORE_CRASH_SEED fixes the random
choices; TIERSTORE_CRASH_LEVELS (e.g. 'applied') runs only some levels.
"""
import json
import os
import random
import shutil
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
STRATEGIES = ["time", "commit", "startup", "fault", "fault-backup"]
WEIGHTS = [33, 30, 10, 15, 12]
FAULT_KIND = {"fault": "after-primary", "fault-backup": "after-backup"}
PROGRESS_TIMEOUT = 60         # a writer that makes no progress for this long is hung
FLUSH_INTERVAL = 0.005        # the 'applied' tables' flush_interval
# per level: threads per writer process (chosen at random), how often a
# thread pauses after a COMMIT (crash_writer.py: IDLE), the longest 'time' kill
LEVELS = {
    "durable": dict(threads=(1,), idle=0.0, time_kill=0.12),
    "written": dict(threads=(1,), idle=0.0, time_kill=0.12),
    "applied": dict(threads=(1, 1, 2, 3), idle=0.3, time_kill=1.2),
}


class Writer:
    """One writer process (one or more logical writers, one per thread) and
    what it reported."""

    def __init__(self, h, wid, strategy, fault_at, nthreads, idle):
        self.wid = wid
        self.strategy = strategy
        self.fault_at = fault_at
        self.fault_kind = FAULT_KIND.get(strategy, "after-primary")
        self.nthreads = nthreads
        self.lws = [wid] if nthreads == 1 else ["%st%d" % (wid, t) for t in range(nthreads)]
        self.killed = False       # SIGKILL sent by the harness
        self.kill_time = None     # time.monotonic() just before that SIGKILL
        self.lines = []
        self.eof = False
        self.cond = threading.Condition()
        self.errpath = os.path.join(h.dir, "writer-%s.err" % wid)
        self.started = time.monotonic()
        with open(self.errpath, "wb") as err:
            self.proc = subprocess.Popen(
                [PYTHON, WRITER, h.db_for(wid), h.table, wid, str(h.rng.getrandbits(32)), str(POOL),
                 str(fault_at), self.fault_kind, str(nthreads), str(idle)],
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
            self.kill_time = time.monotonic()
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stderr(self):
        with open(self.errpath, "rb") as f:
            return f.read().decode(errors="replace")[-3000:]

    def parse(self):
        """intents[lw][c] = ops, acks[lw][c] = (epoch or -1, time)."""
        with open(self.errpath[:-4] + ".out", "w") as f:     # kept for post-mortems
            f.write("\n".join(self.lines) + "\n")
        self.intents = {lw: {} for lw in self.lws}
        self.acks = {lw: {} for lw in self.lws}
        self.opened, self.open_errors = False, []
        for line in self.lines:
            kind, _, rest = line.partition(" ")
            if kind == "O":
                self.opened = True
            elif kind == "I":
                lw, c, ops = rest.split(" ", 2)
                self.intents[lw][int(c)] = json.loads(ops)
            elif kind == "R":
                self.open_errors.append(rest)
            elif kind == "A":
                lw, c, e, t = rest.split()
                self.acks[lw][int(c)] = (int(e), float(t))
            else:
                raise AssertionError("writer %s printed %r" % (self.wid, line))


class Txn:
    def __init__(self, lw, c, epoch, ops, acked, proc, t_ack=None):
        self.wid, self.c, self.epoch, self.ops, self.acked = lw, c, epoch, ops, acked
        self.proc = proc              # the writer process's id
        self.t_ack = t_ack            # when its COMMIT returned (None: it did not)
        self.marker = "%s.%d" % (lw, c)
        self.logkey = ("log", lw, "c%06d" % c)
        self.overdue = None           # 'applied': acknowledged this long before the kill, and missing
        self.never_primary = False    # its write reached only the backup (after-backup point)
        self.late = False


class Harness:
    def __init__(self, tmp_path, durability, seed):
        self.dir = str(tmp_path)
        self.durability = durability
        self.applied = durability == "applied"
        self.level = LEVELS[durability]
        self.seed = seed
        self.rng = random.Random(seed)
        self.primary = os.path.join(self.dir, "data", "primary")
        self.backup = os.path.join(self.dir, "data", "backup")
        self.dbs = os.path.join(self.dir, "dbs")
        os.makedirs(self.dbs)
        args = dict(primary=self.primary, backup=self.backup, durability=durability, map_size="128KiB")
        if self.applied:
            args["flush_interval"] = "%dms" % round(FLUSH_INTERVAL * 1000)
        self.table = table_sql(**args)
        # an 'applied' commit acknowledged longer ago than this before a
        # SIGKILL must be in the primary
        self.bound = FLUSH_INTERVAL + env_number("TIERSTORE_CRASH_APPLIED_SLACK", 1.0 if sanitized() else 0.5,
                                                 float)
        # the model: every durable row, key -> (value, epoch, rowid, generation)
        self.model = {}
        self.max_epoch = 0
        self.b_epoch = 0              # the epoch of the primary's state the backup held when last seen
        self.history = []             # every committed transaction, in epoch order
        self.max_rowid = 0
        self.round = 0
        # in-flight transactions of killed writers that were not in the
        # primary when their round was checked, and may still appear there
        # (see late_commits)
        self.pending = []
        # every announced transaction not in the primary, (lw, c) -> Txn:
        # the backup may hold one write of them (see backup_only)
        self.uncommitted = {}
        self.committed = {}           # (lw, c) -> epoch of every committed transaction
        self.ncommitted = {}          # lw -> how many of its transactions are committed
        self.open_errors = []
        self.stats = dict(kills=0, harness_kills=0, fault_kills=0, fault_backup_kills=0, rounds=0, acked=0,
                          inflight_committed=0, inflight_lost=0, late=0, late_commits=0, backup_behind=0,
                          backup_ahead=0, backup_ahead_multi=0, ahead_after_fault=0, behind_after_fault=0,
                          repair=0, reopen=0, next_open=0, writers=0, threads=0,
                          acked_lost=0, bound_checked=0, lost_age_max=0.0)
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
        lines += ["  " + x for x in self.post_mortem()]
        keep = os.environ.get("TIERSTORE_CRASH_KEEP")
        if keep:
            # pytest keeps only its last few temporary directories
            dest = os.path.join(keep, "%s-seed%d-round%d" % (self.durability, self.seed, self.round))
            shutil.copytree(self.dir, dest, symlinks=True, ignore_dangling_symlinks=True)
            lines.append("  copied to %s" % dest)
        pytest.fail("\n".join(lines), pytrace=False)

    def post_mortem(self):
        """What the round's writers did and what both environments record,
        for a failure's message."""
        out = []
        for w in getattr(self, "round_writers", []):
            desc = "writer %s: %s%s, %s, %d thread(s)" % (
                w.wid, w.strategy, " at %d (%s)" % (w.fault_at, w.fault_kind) if w.fault_at >= 0 else "",
                "killed by the harness" if w.killed else "died by itself", w.nthreads)
            for lw in w.lws:
                intents, acks = getattr(w, "intents", {}).get(lw, {}), getattr(w, "acks", {}).get(lw, {})
                desc += "; %s: %d intents (last %s), %d acknowledged (last %s)" % (
                    lw, len(intents), max(intents) if intents else None, len(acks),
                    "%d at epoch %d" % (max(acks), acks[max(acks)][0]) if acks else None)
            out.append(desc)
        try:
            for name, path in (("primary", self.primary), ("backup", self.backup)):
                e = Raw(path)
                logs = sorted((v[1], k[1], k[2]) for k, v in e.rows.items() if k[0] == "log")[-4:]
                out.append("%s: last_epoch %d, last_flush %s, replay records %r, newest log keys %r" % (
                    name, e.last_epoch, e.meta.get(b"last_flush", b"").hex(), e.replay[-6:], logs))
        except Exception as ex:         # the message matters more
            out.append("reading the environments failed: %r" % (ex,))
        return out

    # -- one round ---------------------------------------------------------

    def run_round(self):
        self.round += 1
        n = self.rng.choice((1, 2, 2))
        writers = []
        for i in range(n):
            strategy = self.rng.choices(STRATEGIES, WEIGHTS)[0]
            fault_at = self.rng.randint(0, 30) if strategy in FAULT_KIND else -1
            nthreads = self.rng.choice(self.level["threads"])
            writers.append(Writer(self, "r%d-w%d" % (self.round, i), strategy, fault_at, nthreads,
                                  self.level["idle"]))
        self.round_writers = writers
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
            elif w.strategy == "fault-backup":
                self.stats["fault_backup_kills"] += 1
            else:
                self.stats["fault_kills"] += 1
        if problems:
            self.fail(problems)
        self.stats["kills"] += len(writers)
        self.stats["writers"] += len(writers)
        self.stats["threads"] += sum(w.nthreads for w in writers)
        self.stats["rounds"] += 1
        self.check(writers)
        self.catch_up()

    def plan(self, w):
        rng = random.Random(self.rng.getrandbits(32))
        longest = self.level["time_kill"]

        def time_kill():
            if not w.wait_for(lambda ls: "O" in ls):
                w.hung = "never opened its table"
            time.sleep(rng.uniform(0, longest))
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

        return {"time": time_kill, "commit": commit_kill, "startup": startup_kill, "fault": fault,
                "fault-backup": fault}[w.strategy]

    # -- the checks --------------------------------------------------------

    def committed_txns(self, writers, P, problems):
        """This round's transactions found in the primary, in epoch order
        (with the late ones of earlier rounds); notes the others in
        self.uncommitted and self.pending."""
        txns, new_uncommitted = [], []
        for w in writers:
            for lw in w.lws:
                intents, acks = w.intents[lw], w.acks[lw]
                logs = {k: v for k, v in P.rows.items() if k[0] == "log" and k[1] == lw}
                cs = sorted(int(k[2][1:]) for k in logs)
                if cs != list(range(len(cs))):
                    problems.append("writer %s: committed transactions %r are not 0..n-1 (not a prefix of the "
                                    "writer's commits)" % (lw, cs[:50]))
                for c, (e, t) in sorted(acks.items()):
                    if c in cs:
                        continue
                    if not self.applied:
                        problems.append("LOST: acknowledged commit %s.%d (epoch %d) is not in the primary"
                                        % (lw, c, e))
                        continue
                    # 'applied': acknowledged when queued; a SIGKILL may lose
                    # what was acknowledged within the last flush_interval
                    # plus one flush
                    self.stats["acked_lost"] += 1
                    if w.killed:
                        self.stats["lost_age_max"] = max(self.stats["lost_age_max"], w.kill_time - t)
                prev = None
                for c in cs:
                    rowid, epoch, value = logs[("log", lw, "c%06d" % c)]
                    if value != "%s.%d" % (lw, c):
                        problems.append("log key of %s.%d holds %r" % (lw, c, value))
                    if c not in intents:
                        problems.append("%s.%d is in the primary but was never announced" % (lw, c))
                        continue
                    acked = c in acks
                    if acked and not self.applied and acks[c][0] != epoch:
                        problems.append("%s.%d was acknowledged with epoch %d, the primary says %d"
                                        % (lw, c, acks[c][0], epoch))
                    if not acked and c != cs[-1]:
                        problems.append("%s.%d committed but unacknowledged, and not the writer's last" % (lw, c))
                    if prev is not None and epoch <= prev:
                        problems.append("%s.%d has epoch %d, not above its previous transaction's %d" % (
                            lw, c, epoch, prev))
                    prev = epoch
                    txns.append(Txn(lw, c, epoch, intents[c], acked, w.wid, acks[c][1] if acked else None))
                    if acked:
                        self.stats["acked"] += 1
                        if self.applied and w.killed and acks[c][1] < w.kill_time - self.bound:
                            self.stats["bound_checked"] += 1
                for c in sorted(set(intents) - set(cs)):
                    u = Txn(lw, c, None, intents[c], c in acks, w.wid, acks[c][1] if c in acks else None)
                    if u.acked and w.killed and u.t_ack < w.kill_time - self.bound:
                        u.overdue = w.kill_time - u.t_ack
                    new_uncommitted.append(u)
                last_intent = max(intents) if intents else None
                if last_intent is not None and last_intent not in acks:
                    if last_intent in cs:
                        self.stats["inflight_committed"] += 1
                    else:
                        self.stats["inflight_lost"] += 1
            if not w.killed and w.strategy in FAULT_KIND and w.nthreads == 1 and not self.applied:
                # one thread that waits for each COMMIT: the write the process
                # died in is its last transaction's
                lw = w.lws[0]
                last = max(w.intents[lw]) if w.intents[lw] else None
                incs = last is not None and ("log", lw, "c%06d" % last) in P.rows
                if (w.strategy == "fault" and w.fault_at in w.intents[lw]
                        and ("log", lw, "c%06d" % w.fault_at) not in P.rows):
                    problems.append("%s.%d died at the after-primary fault point but is not in the primary"
                                    % (lw, w.fault_at))
                if w.strategy == "fault-backup":
                    if last is None or last < w.fault_at:
                        problems.append("%s died at the after-backup fault point before transaction %d" % (
                            lw, w.fault_at))
                    elif incs:
                        problems.append("%s.%d died at the after-backup fault point (the primary's write not "
                                        "committed) but is in the primary" % (lw, last))
                    else:
                        for u in new_uncommitted:
                            if u.wid == lw and u.c == last:
                                u.never_primary = True
        late = self.late_commits(P, bool(txns), problems)
        txns += late
        self.pending += [u for u in new_uncommitted if not u.never_primary]
        for u in new_uncommitted:
            self.uncommitted[(u.wid, u.c)] = u
        for t in txns:
            self.uncommitted.pop((t.wid, t.c), None)
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
        """Unacknowledged commits of earlier rounds that became visible now
        (and, at 'applied', acknowledged ones that were queued).

        LMDB readers take their snapshot from the transaction id in
        lock.mdb, which a writer updates after writing its meta page.  A
        writer killed between the two leaves a commit that is on disk but
        that readers (and the catch-up) do not see, as long as some process
        keeps the environment open; the next writer that takes the write
        lock finds the dead owner and publishes that commit
        (mdb_mutex_failed sets mti_txnid from the newest meta page).  Such a
        commit was never acknowledged (at 'applied': it may have been), so
        it may appear, but only as the next epochs after the state that was
        visible, all of one write (one process; per logical writer the
        transactions right after its committed ones), and only until
        another transaction has been written (which takes the lock).  An
        'applied' commit acknowledged long before the kill that did not
        appear by then is lost."""
        found = []
        for u in self.pending:
            got = P.rows.get(u.logkey)
            if got is None:
                continue
            t = Txn(u.wid, u.c, got[1], u.ops, u.acked, u.proc, u.t_ack)
            t.late = True
            found.append(t)
        if found:
            found.sort(key=lambda t: t.epoch)
            epochs = [t.epoch for t in found]
            if epochs != list(range(self.max_epoch + 1, self.max_epoch + 1 + len(found))):
                problems.append("%s appeared late with epochs %r, not %d.. (the epochs after the state that was "
                                "visible)" % ([t.marker for t in found], epochs, self.max_epoch + 1))
            if len({t.proc for t in found}) > 1:
                problems.append("late commits of more than one process (one write each): %r"
                                % [t.marker for t in found])
            per = {}
            for t in sorted(found, key=lambda t: t.c):
                per.setdefault(t.wid, []).append(t.c)
            for lw, cs in per.items():
                n = self.ncommitted.get(lw, 0)
                if cs != list(range(n, n + len(cs))):
                    problems.append("%s: late commits %r do not follow its %d committed transactions" % (
                        lw, cs, n))
            self.stats["late"] += 1
            self.stats["late_commits"] += len(found)
            self.stats["inflight_lost"] -= sum(1 for t in found if not t.acked)
            self.stats["inflight_committed"] += sum(1 for t in found if not t.acked)
            self.stats["acked"] += sum(1 for t in found if t.acked)
            self.stats["acked_lost"] -= sum(1 for t in found if t.acked)
        if found or round_committed:
            got = {(t.wid, t.c) for t in found}
            for u in self.pending:
                if u.overdue is not None and (u.wid, u.c) not in got:
                    problems.append(self.overdue_message(u))
            self.pending = []
        return found

    def overdue_message(self, u):
        return ("LOST: applied commit %s was acknowledged %.3f s before the SIGKILL (more than flush_interval "
                "%.3f s + %.3f s) and is not in the primary" % (u.marker, u.overdue, FLUSH_INTERVAL,
                                                               self.bound - FLUSH_INTERVAL))

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
    def apply(state, t, tag=None):
        """Apply committed transaction t to a model; note the keys it created
        (their generation: (epoch, key), or with tag (tag, epoch, key))."""
        t.created = []

        def gen(k):
            return (t.epoch, k) if tag is None else (tag, t.epoch, k)
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
                state[k] = (value_for(t.marker, key, size), t.epoch, None, gen(k))
            else:
                state[k] = (value_for(t.marker, key, size), t.epoch, old[2], old[3])
        t.created.append(t.logkey)
        state[t.logkey] = (t.marker, t.epoch, None, gen(t.logkey))

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
                    self.key_history(txns, t)))
            if got:
                prev, prev_t = max(got), t

    def key_history(self, txns, t):
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

    def backup_only(self, B, txns, problems):
        """The transactions the backup holds that the primary does not (one
        write of a killed writer: the primary never committed it, or has not
        published it yet), in the backup's epoch order, named by their log
        keys in the backup."""
        round_epochs = {(t.wid, t.c): t.epoch for t in txns}
        out = []
        for k, (rowid, epoch, value) in B.rows.items():
            if k[0] != "log":
                continue
            lw, c = k[1], int(k[2][1:])
            e = round_epochs.get((lw, c), self.committed.get((lw, c)))
            if e is not None:
                if e != epoch:
                    problems.append("backup: %s.%d has epoch %d, the primary's has %d" % (lw, c, epoch, e))
                continue
            u = self.uncommitted.get((lw, c))
            if u is None:
                problems.append("backup: log key %r (epoch %d) belongs to no transaction the harness knows of"
                                % (k, epoch))
                continue
            if value != u.marker:
                problems.append("backup: log key of %s holds %r" % (u.marker, value))
            t = Txn(lw, c, epoch, u.ops, u.acked, u.proc, u.t_ack)
            t.overdue = u.overdue
            out.append(t)
        out.sort(key=lambda t: t.epoch)
        return out

    def check(self, writers):
        P = Raw(self.primary)
        B = Raw(self.backup)
        problems = []
        self.P_now = P
        txns = self.committed_txns(writers, P, problems)
        self.check_atomic(txns, P, problems)
        state, _ = self.replay(txns, None)
        self.compare("primary", P, state, problems)
        # a late commit became visible while this round's writer ran its
        # statements: it counts as a concurrent writer
        self.check_rowids(txns, P, problems,
                          concurrent=sum(len(w.lws) for w in writers) > 1 or any(t.late for t in txns))
        problems += ["primary: " + p for p in P.index_problems()]
        # the backup, before any catch-up: the primary's state at epoch E
        # plus at most one write the primary lacks (extra)
        if B.store_id != P.store_id:
            problems.append("backup store_id differs from the primary's")
        extra = self.backup_only(B, txns, problems)
        E = B.last_epoch - len(extra)
        if extra:
            self.stats["backup_ahead"] += 1
            if len(extra) > 1:
                self.stats["backup_ahead_multi"] += 1
            desc = "%s at epochs %r" % ([t.marker for t in extra], [t.epoch for t in extra])
            if [t.epoch for t in extra] != list(range(E + 1, B.last_epoch + 1)):
                problems.append("backup holds %s that the primary lacks, not the consecutive epochs below its "
                                "last_epoch %d" % (desc, B.last_epoch))
            if len({t.proc for t in extra}) > 1:
                problems.append("backup holds writes of more than one process that the primary lacks: %s" % desc)
            if not self.applied and any(t.acked for t in extra):
                problems.append("backup holds acknowledged commits the primary lacks: %s" % desc)
            per = {}
            for t in sorted(extra, key=lambda t: t.c):
                per.setdefault(t.wid, []).append(t.c)
            for lw, cs in per.items():
                n = self.ncommitted.get(lw, 0) + sum(1 for t in txns if t.wid == lw)
                if cs != list(range(n, n + len(cs))):
                    problems.append("backup holds %s.%r that the primary lacks, which do not follow the "
                                    "writer's %d committed transactions" % (lw, cs, n))
        if E > P.last_epoch:
            problems.append("AHEAD: backup at epoch %d (%d of it explained by unacknowledged writes the primary "
                            "lacks: %s), primary at %d" % (B.last_epoch, B.last_epoch - E,
                                                           [t.marker for t in extra], P.last_epoch))
        if E < self.b_epoch:
            problems.append("backup at epoch %d (the primary's state it holds) went below %d, where it was before "
                            "this round" % (E, self.b_epoch))
        _, at_b = self.replay(txns, E)
        if at_b is None and E < self.max_epoch:
            # not caught up since an earlier round ('next open' whose writers
            # died before opening), or a backup commit that LMDB published
            # late (see late_commits)
            at_b = self.state_at(E)
        for t in txns:
            if t.acked and not self.applied and t.epoch > E:
                problems.append("acknowledged commit %s (epoch %d) is not in the backup (which holds the primary "
                                "at epoch %d)" % (t.marker, t.epoch, E))
        if E < P.last_epoch:
            self.stats["backup_behind"] += 1
        if at_b is None:
            if E <= P.last_epoch:
                problems.append("backup holds the primary at epoch %d, which is no commit's epoch" % E)
        else:
            # creation numbers of rows that are the same creation in both
            final_gen = {k: v[3] for k, v in state.items()}
            want_b = {}
            for k, v in at_b.items():
                rowid = v[2]
                if rowid is None and final_gen.get(k) == v[3] and k in P.rows:
                    rowid = P.rows[k][0]
                want_b[k] = (v[0], v[1], rowid, v[3])
            for t in extra:
                self.apply(want_b, t, tag="backup only")
            self.compare("backup", B, want_b, problems)
        problems += ["backup: " + p for p in B.index_problems()]
        # what the fault points must have left when nothing came after
        if len(writers) == 1 and not writers[0].killed and writers[0].strategy in FAULT_KIND:
            w = writers[0]
            if w.strategy == "fault-backup":
                last = {lw: max(w.intents[lw]) for lw in w.lws if w.intents[lw]}
                if not extra or any(t.proc != w.wid for t in extra):
                    problems.append("%s died at the after-backup fault point, alone in its round, but the backup "
                                    "holds no write of it that the primary lacks (backup at %d, primary at %d)"
                                    % (w.wid, B.last_epoch, P.last_epoch))
                elif not self.applied and [t.marker for t in extra] != ["%s.%d" % (w.wid, last[w.wid])]:
                    problems.append("%s died at the after-backup fault point, but the backup holds %r beyond the "
                                    "primary, not its last transaction %s.%d" % (
                                        w.wid, [t.marker for t in extra], w.wid, last[w.wid]))
                else:
                    self.stats["ahead_after_fault"] += 1
                    for t in extra:      # the write the process died in: never in the primary
                        u = self.uncommitted.get((t.wid, t.c))
                        if u is not None:
                            u.never_primary = True
                    never = {(t.wid, t.c) for t in extra}
                    self.pending = [u for u in self.pending if (u.wid, u.c) not in never]
            elif w.strategy == "fault":
                if extra or E >= P.last_epoch:
                    problems.append("%s died at the after-primary fault point, alone in its round, but the backup "
                                    "is not behind the primary (backup at %d holding the primary's epoch %d, "
                                    "primary at %d)" % (w.wid, B.last_epoch, E, P.last_epoch))
                else:
                    self.stats["behind_after_fault"] += 1
        if problems:
            self.fail(problems)
        # adopt the round
        self.model = {k: (v[0], v[1], P.rows[k][0], v[3]) for k, v in state.items()}
        self.max_epoch = P.last_epoch
        self.b_epoch = E
        self.history += txns
        for t in txns:
            self.committed[(t.wid, t.c)] = t.epoch
            self.ncommitted[t.wid] = self.ncommitted.get(t.wid, 0) + 1
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
        # a number the meta database lacks reads as 0 (a primary never
        # written has no last_flush; a backup made level with it holds 0)
        if B.meta.get(b"last_flush", bytes(8)) != P.meta.get(b"last_flush", bytes(8)):
            problems.append("after %s the backup's last_flush %r is not the primary's %r" % (
                method, B.meta.get(b"last_flush"), P.meta.get(b"last_flush")))
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
        # 'applied' commits of the last round that were due and may still
        # have been published late: none can be any more
        problems = [self.overdue_message(u) for u in self.pending
                    if u.overdue is not None and u.logkey not in self.P.rows]
        if problems:
            self.fail(problems)


def default_kills(durability):
    if durability == "applied":
        return env_number("TIERSTORE_CRASH_APPLIED_KILLS", 80 if sanitized() else 150)
    return env_number("TIERSTORE_CRASH_KILLS", 200 if sanitized() else 400)


@pytest.mark.parametrize("durability", ["durable", "written", "applied"])
def test_crash_harness(tmp_path, durability, capsys):
    kills = default_kills(durability)
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
              "point, %d at the after-backup fault point) in %d rounds of %d writer processes (%d threads), "
              "%d commits verified (%d acknowledged, %d in flight and found committed, %d in %d writes visible "
              "only after the next writer took LMDB's lock, %d in flight and absent), "
              % (durability, s["kills"], s["harness_kills"], s["fault_kills"], s["fault_backup_kills"], s["rounds"],
                 s["writers"], s["threads"], s["acked"] + s["inflight_committed"], s["acked"],
                 s["inflight_committed"], s["late_commits"], s["late"], s["inflight_lost"])
              + ("%d acknowledged and lost (at most %.3f s before the kill), %d acknowledged more than %.3f s "
                 "before a kill and kept; " % (s["acked_lost"], s["lost_age_max"], s["bound_checked"], h.bound)
                 if h.applied else "0 lost; ")
              + "backup behind at %d checks (after %d lone after-primary deaths), ahead by a write the primary "
                "lacks at %d (%d of several commits; after %d lone after-backup deaths), caught up (repair %d, "
                "reopen %d, next open %d); seed %d; %.1f s"
              % (s["backup_behind"], s["behind_after_fault"], s["backup_ahead"], s["backup_ahead_multi"],
                 s["ahead_after_fault"], s["repair"], s["reopen"], s["next_open"], seed, elapsed))
    # Opening a table while another process grows the map must not fail
    # (it did with MDB_MAP_RESIZED before 38c3a8b, see test_regressions.py);
    # the writers retry such an open, and any failure is reported here once
    # the run is done
    assert not h.open_errors, ("%d table opens failed while another process grew the map, e.g. %s"
                               % (len(h.open_errors), h.open_errors[0]))
    # the harness must really have exercised what it claims to
    assert s["fault_kills"] > 0 and s["fault_backup_kills"] > 0 and s["harness_kills"] > 0
    assert s["acked"] > s["kills"]
    assert s["backup_behind"] > 0 and s["backup_ahead"] > 0
    if h.applied:
        assert s["bound_checked"] > 0, "no 'applied' commit was acknowledged long enough before a kill"
