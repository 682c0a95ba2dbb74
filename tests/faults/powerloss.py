"""Reading tsfault.so's record log and rebuilding the files a power loss
would leave (used by test_powerloss.py).

The log (TSFAULT_RECORD) lists, in the order they happened, every write to
a watched file (logged with its bytes just before the call), every sync of
one (a begin record before fsync/fdatasync, an end record after it
returned 0), every O_DSYNC write that completed, and marks that the writer
adds (tsfault_mark: "begin j", "ack j epoch").

A cut at position c means: records [0, c) happened, then the power went.
What is on the disk then, for each file:
  - the file as it was when recording started (the base copy), plus
  - every write that is durable at c: logged before the begin of a sync of
    the same file whose end record is before c, or an O_DSYNC write whose
    completion record is before c; plus
  - some of the other writes logged before c (the "maybe" writes), chosen
    by a policy:
      none     none of them (only what was flushed)
      all      all of them (what a process crash leaves: the page cache)
      random   each one or not, at random
      prefix   the first k of them in log order (a disk that writes in order)
      sectors  each 512-byte sector of each of them, or not (torn writes,
               any order within and across writes)
      zeros    each one or not; a write not kept that would have extended
               the file leaves zeros there (the size reached the disk, the
               data did not)
Maybe writes are applied in log order, so a later write over the same bytes
wins when both are kept.
"""
import struct

HEADER = struct.Struct("<IB3xIQqQII")
MAGIC = 0x52465354
WRITE, SYNC_BEGIN, SYNC_END, MARK, DSYNC_DONE = 1, 2, 3, 4, 5
POLICIES = ("none", "all", "random", "prefix", "sectors", "zeros")
SECTOR = 512


class Record:
    __slots__ = ("type", "pid", "id", "offset", "length", "path", "data")

    def __init__(self, type_, pid, id_, offset, length, path, data):
        self.type, self.pid, self.id, self.offset, self.length = type_, pid, id_, offset, length
        self.path, self.data = path, data

    def __repr__(self):
        return "<%s id=%d %s off=%d len=%d>" % ({1: "W", 2: "SB", 3: "SE", 4: "M", 5: "DS"}[self.type], self.id,
                                                  self.path, self.offset, self.length)


def read_log(path):
    """The records of a log file, in order."""
    with open(path, "rb") as f:
        buf = f.read()
    out, pos = [], 0
    while pos < len(buf):
        magic, type_, pid, id_, offset, length, plen, dlen = HEADER.unpack_from(buf, pos)
        assert magic == MAGIC, "bad record at byte %d of %s" % (pos, path)
        pos += HEADER.size
        p = buf[pos:pos + plen].decode("utf-8", "replace")
        pos += plen
        data = buf[pos:pos + dlen]
        pos += dlen
        out.append(Record(type_, pid, id_, offset, length, p, data))
    pids = {r.pid for r in out}
    assert len(pids) <= 1, "records of several processes in %s: %s" % (path, pids)
    return out


class Log:
    """A record log with its writer's marks."""

    def __init__(self, path):
        self.records = read_log(path)
        self.files = sorted({r.path for r in self.records if r.type in (WRITE, SYNC_BEGIN)})
        # mark text -> position; acks: [(position, j, epoch)]
        self.begins, self.acks = [], []
        for i, r in enumerate(self.records):
            if r.type == MARK:
                words = r.path.split()
                if words[0] == "begin":
                    self.begins.append((i, int(words[1])))
                elif words[0] == "ack":
                    self.acks.append((i, int(words[1]), int(words[2])))

    def sync_points(self):
        """Positions just after each completed sync (sync end or O_DSYNC
        write done): the moments at which something became durable."""
        return [i + 1 for i, r in enumerate(self.records) if r.type in (SYNC_END, DSYNC_DONE)]

    def acked_before(self, cut):
        """The last commit number acknowledged (COMMIT returned) before cut."""
        j = 0
        for pos, n, _ in self.acks:
            if pos < cut:
                j = max(j, n)
        return j

    def begun_before(self, cut):
        j = 0
        for pos, n in self.begins:
            if pos < cut:
                j = max(j, n)
        return j

    def epochs(self):
        return {n: e for _, n, e in self.acks}

    def durable_ids(self, cut):
        """Ids of the writes that are durable at cut."""
        last_begin = {}      # path -> highest sync-begin id whose end is before cut
        begin_path = {}
        done = set()
        for i in range(cut):
            r = self.records[i]
            if r.type == SYNC_BEGIN:
                begin_path[r.id] = r.path
            elif r.type == SYNC_END:
                p = begin_path[r.offset]
                last_begin[p] = max(last_begin.get(p, 0), r.offset)
            elif r.type == DSYNC_DONE:
                done.add(r.offset)
        out = set()
        for i in range(cut):
            r = self.records[i]
            if r.type == WRITE and (r.id < last_begin.get(r.path, 0) or r.id in done):
                out.add(r.id)
        return out

    def rebuild(self, cut, policy, base_files, rng):
        """{path: bytes} of every watched file after a power loss at cut.
        base_files: {path: bytes} when recording started.  Returns (files,
        number of durable writes, number of maybe writes kept, of them)."""
        durable = self.durable_ids(cut)
        files = {p: bytearray(base_files.get(p, b"")) for p in self.files}
        maybe = [r for r in self.records[:cut] if r.type == WRITE and r.id not in durable]
        if policy == "none":
            keep = set()
        elif policy in ("all", "sectors"):
            keep = {r.id for r in maybe}
        elif policy == "prefix":
            keep = {r.id for r in maybe[:rng.randint(0, len(maybe))]}
        else:
            keep = {r.id for r in maybe if rng.random() < 0.5}
        kept = 0
        for r in self.records[:cut]:
            if r.type != WRITE:
                continue
            f = files[r.path]
            if r.id in durable or r.id in keep:
                if policy == "sectors" and r.id not in durable:
                    # each sector of the write, or not (writes start on
                    # page boundaries or are smaller than a sector)
                    for s in range(0, len(r.data), SECTOR):
                        if rng.random() < 0.5:
                            put(f, r.offset + s, r.data[s:s + SECTOR])
                else:
                    put(f, r.offset, r.data)
                kept += r.id not in durable
            elif policy == "zeros" and r.offset + len(r.data) > len(f):
                # a lost write that extended the file: the new size made
                # it to the disk, the data did not (zeros; bytes that
                # existed before keep their old content)
                put(f, max(r.offset, len(f)), bytes(r.offset + len(r.data) - max(r.offset, len(f))))
        return {p: bytes(b) for p, b in files.items()}, len(durable), kept, len(maybe)


def put(f, offset, data):
    end = offset + len(data)
    if end > len(f):
        f.extend(bytes(end - len(f)))
    f[offset:end] = data
