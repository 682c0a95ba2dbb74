"""The on-disk format of a tierstore environment (SPEC 9, README "On
disk"), for tests that read LMDB directly with python3-lmdb: keys of the
data database and the records they map to."""
import struct

TYPE_INT, TYPE_FLOAT, TYPE_TEXT, TYPE_BLOB = 1, 2, 3, 4


def decode_key(k):
    """(pns, sns, key) of an encoded data key."""
    parts = bytes(k).split(b"\0", 2)
    assert len(parts) == 3, "data key without two separators: %r" % (bytes(k),)
    return tuple(p.decode("utf-8") for p in parts)


def encode_key(t):
    """The data key of (pns, sns, key)."""
    return b"\0".join(p.encode() for p in t)


def decode_record(v):
    """(rowid, epoch, value) of a data record."""
    v = bytes(v)
    assert len(v) >= 17, "record shorter than its header: %r" % (v,)
    rowid, epoch = struct.unpack(">QQ", v[:16])
    t, payload = v[16], v[17:]
    if t == TYPE_INT:
        assert len(payload) == 8
        value = struct.unpack(">q", payload)[0]
    elif t == TYPE_FLOAT:
        assert len(payload) == 8
        value = struct.unpack(">d", payload)[0]
    elif t == TYPE_TEXT:
        value = payload.decode("utf-8")
    elif t == TYPE_BLOB:
        value = payload
    else:
        raise AssertionError("unknown value type %d" % t)
    return rowid, epoch, value


class MetaNumbers:
    """The numbers of an environment's meta database, for the readers that
    keep it in self.meta ({name bytes: value bytes})."""

    def meta_u64(self, name):
        v = self.meta[name]
        assert len(v) == 8, "%r is %d bytes, not 8" % (name, len(v))
        return struct.unpack(">Q", v)[0]

    @property
    def last_epoch(self):
        return self.meta_u64(b"last_epoch")

    @property
    def next_rowid(self):
        return self.meta_u64(b"next_rowid")

    @property
    def store_id(self):
        return self.meta[b"store_id"]
