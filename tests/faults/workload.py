"""The data the fault and power-loss tests write, shared by the tests and
the child processes they start (which import this file).

Values are deterministic bytes, so a test knows exactly what every key must
hold after each commit and can tell a whole transaction from part of one.
"""
import hashlib

NS = "f"


def val(tag, i, n=200):
    """n deterministic bytes named by (tag, i)."""
    seed = hashlib.sha256(("%s:%s" % (tag, i)).encode()).digest()
    return (seed * (n // len(seed) + 1))[:n]


def key(name, ns=NS, sns=""):
    return (ns, sns, name)


# ---------------------------------------------------------------------------
# I/O faults: a base store and one transaction that touches many pages
# (updates spread over the tree, inserts, deletes and a value of 300 kB that
# takes overflow pages), so that its commit makes several write calls.

BASE_KEYS = 120


def base_ops():
    """Two commits: every key, then half of them rewritten (so the second
    commit leaves free pages that the next commit reuses)."""
    first = [("put", key("k%03d" % i), val("base", i)) for i in range(BASE_KEYS)]
    second = [("put", key("k%03d" % i), val("base2", i)) for i in range(0, BASE_KEYS, 2)]
    return [first, second]


def txn_ops(tag="T", small=False):
    """The transaction the faults hit: 86 changes, so that the backup's
    write runs in its own thread beside the primary's (store.c: from
    TS_PAIR_MIN_CHANGES = 64 on); with small, 5 changes, written to the
    backup after the primary in the committing thread."""
    if small:
        ops = [("put", key("k%03d" % i), val(tag, i)) for i in (0, 42, 84)]
        ops += [("put", key("%s-new" % tag), val(tag + "new", 0)), ("del", key("k001"))]
        return ops
    ops = [("put", key("k%03d" % i), val(tag, i)) for i in range(0, BASE_KEYS, 6)]
    ops += [("put", key("%s-new%02d" % (tag, i)), val(tag + "new", i)) for i in range(60)]
    ops += [("del", key("k%03d" % i)) for i in (1, 31, 61, 91, 119)]
    ops += [("put", key("%s-big" % tag), val(tag + "big", 0, 300000))]
    return ops


def apply(state, ops):
    """The state (dict key -> value) after a transaction of ops."""
    new = dict(state)
    for op in ops:
        if op[0] == "put":
            new[op[1]] = op[2]
        else:
            new.pop(op[1], None)
    return new


def state_after(commits):
    state = {}
    for ops in commits:
        state = apply(state, ops)
    return state


def write_ops(con, ops, table="kv", commit=True):
    """Run ops as one transaction on con (isolation_level=None)."""
    con.execute("BEGIN")
    for op in ops:
        if op[0] == "put":
            con.execute('REPLACE INTO "%s" VALUES (?, ?, ?, ?)' % table, op[1] + (op[2],))
        else:
            con.execute('DELETE FROM "%s" WHERE primary_namespace=? AND secondary_namespace=? AND key=?'
                        % table, op[1])
    if commit:
        con.execute("COMMIT")


# ---------------------------------------------------------------------------
# Power loss: a writer commits numbered transactions.  Transaction j
# (1-based) writes the key ('', '', 'last') = j, rewrites some keys of a
# small key space, deletes some, and creates new ones, so the state after j
# commits is known exactly and differs from the state after every other j.

def pl_ops(j, keys=40, big_every=7, dels=2):
    """dels: keys deleted per transaction (a DELETE statement reads the
    table, which in the writer's process waits until its queued 'applied'
    commits are written; with dels=0 a transaction only REPLACEs, and such
    commits queue up and share flushes)."""
    import random
    rng = random.Random(j * 7919)
    ops = [("put", ("", "", "last"), str(j).encode())]
    for k in rng.sample(range(keys), 6):
        ops.append(("put", key("p%03d" % k, ns="pl"), val("pl%d" % j, k, rng.choice((16, 200, 1500)))))
    for k in rng.sample(range(keys), dels):
        ops.append(("del", key("p%03d" % k, ns="pl")))
    ops.append(("put", key("c%05d" % j, ns="pl", sns="created"), val("c", j, 40)))
    if big_every and j % big_every == 0:
        # an overflow value (several pages), replaced now and then
        ops.append(("put", key("big%d" % (j % 3), ns="pl"), val("big%d" % j, 0, 20000 + 1000 * (j % 5))))
    return ops


def pl_states(n, keys=40, big_every=7, dels=2):
    """[state after 0 commits, after 1, ..., after n]."""
    states = [{}]
    for j in range(1, n + 1):
        states.append(apply(states[-1], pl_ops(j, keys, big_every, dels)))
    return states
