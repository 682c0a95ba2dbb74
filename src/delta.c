/*
** delta.c: one transaction's ordered write set.
**
** The delta maps an encoded key (pns 0 sns 0 key) to the transaction's
** last word on it: PUT with a value, DEL, or NONE (a write that was undone).
** Reads merge it over the tiers and COMMIT flushes it, so it must answer
** point lookups, ordered scans in both directions and savepoint rollbacks,
** and be thrown away in one go when the transaction ends.
**
** The trade-offs:
**
**   - A skip list for the order, a hash for the keys.  Reads inside the
**     transaction need ordered seeks at any moment, and a skip list gives
**     them with no rebalancing; level 0 also links backwards, so a
**     descending scan costs O(1) per step like an ascending one.  But
**     linking each write at once costs a search through nodes scattered in
**     memory, the cost that dominates a bulk load in random key order.  So
**     writes find their key through an open-addressing hash of all nodes,
**     and a new node waits in a pending array until the next ordered read
**     (or the commit) links the batch: sorted, then merged into the list
**     in one pass (or searched in one by one when the batch is small next
**     to the list).  FTS5's fts5_hash.c sorts its hash at flush time for
**     the same reason.
**
**   - An arena: nodes, key copies and value copies are carved out of 64 KiB
**     chunks (a large value gets a chunk of its own), so a row costs no
**     malloc of its own and the whole delta is freed by walking the chunk
**     list at reset.  Nothing is ever freed piecemeal: a value that is
**     overwritten stays in the arena until reset.  That wastes memory when
**     one transaction rewrites the same key many times, but it keeps every
**     value pointer valid until reset and makes undo a pointer copy.
**
**   - Entries are never unlinked while the transaction lives.  Undoing a
**     write puts the entry back in its previous state, possibly TS_OP_NONE,
**     which readers skip.  So an iterator (a pointer to an entry) held by a
**     cursor stays valid across writes and ROLLBACK TO; only reset
**     invalidates it, and reset bumps the generation so holders can tell.
**
**   - Undo costs nothing without savepoints.  Undo records (an entry and
**     its previous state) are appended only while at least one savepoint
**     mark exists, and the log is dropped when the last mark is released,
**     so a plain transaction pays only for its entries.
**
** Savepoint levels follow SQLite's virtual table numbering (xSavepoint,
** xRelease, xRollbackTo).  The marks form a stack of strictly increasing
** levels, each remembering the undo-log length when it was set.
*/
#include <stdlib.h>
#include <string.h>

#include "tierstore_int.h"

#define TS_DELTA_MAX_LEVEL  24            /* skip list height (p = 1/4) */
#define TS_DELTA_CHUNK      (64 * 1024)   /* arena chunk payload */
#define TS_DELTA_BIG        (TS_DELTA_CHUNK / 4) /* own chunk above this */
#define TS_DELTA_ALIGN      (_Alignof(ts_delta_node)) /* node alignment */
#define TS_DELTA_KEEP_SLOTS 4096          /* array sizes kept across resets */

typedef struct ts_delta_node ts_delta_node;
typedef struct ts_delta_chunk ts_delta_chunk;
typedef struct ts_delta_undo ts_delta_undo;
typedef struct ts_delta_mark ts_delta_mark;

/* A skip list node.  The entry comes first so an entry pointer handed to a
** caller converts back to its node by a cast. */
struct ts_delta_node {
  ts_delta_entry e;
  ts_delta_node *prev;          /* level-0 backward link, NULL at the front */
  int level;                    /* forward links the node has */
  ts_delta_node *next[];        /* forward links, one per level of the node */
};

/* One arena chunk; the payload follows the header. */
struct ts_delta_chunk {
  ts_delta_chunk *next;
  size_t size;                  /* payload bytes */
  size_t used;                  /* payload bytes handed out */
  _Alignas(max_align_t) unsigned char data[];
};

/* An entry's state before a write, to put back on ROLLBACK TO. */
struct ts_delta_undo {
  ts_delta_node *node;
  ts_op op;
  int fresh;
  int again;
  uint64_t rowid;
  ts_value value;
};

/* A stored rowid that a PUT keeps (the key existed when the PUT was
** written) and the PUT's node.  Kept rowids are not provisional, so the
** by_rowid array cannot map them; this hash does, for rowid lookups within
** the transaction (a later DELETE must find the row even if another
** connection has deleted the stored key meanwhile).  Entries are never
** removed before reset: one may be stale after a later write or an undo,
** so a lookup checks the node's state. */
typedef struct delta_kept delta_kept;
struct delta_kept {
  uint64_t rowid;               /* 0: a free slot */
  ts_delta_node *node;
};

/* The key order: the linked list, and the nodes written since the last
** ordered read, waiting to be linked (delta_settle).  Kept apart from
** ts_delta so that an ordered read through a const delta may link them:
** the entries and their order stay what they were, only the list catches
** up. */
typedef struct ts_delta_order ts_delta_order;
struct ts_delta_order {
  ts_delta_node *head;          /* sentinel, TS_DELTA_MAX_LEVEL links */
  ts_delta_node *tail;          /* last linked node, NULL when none */
  int level;                    /* levels in use, >= 1 */
  size_t nlinked;               /* nodes in the list */
  ts_delta_node **pending;      /* nodes not linked yet, in write order */
  size_t npending, cap_pending;
};

/* A savepoint mark: SQLite's level and the undo-log length when set. */
struct ts_delta_mark {
  int level;
  size_t undo_pos;
};

struct ts_delta {
  ts_delta_chunk *chunks;       /* arena; the first one is being filled */
  ts_delta_order *order;        /* the key order */
  ts_delta_node **slots;        /* hash of every node by key; NULL: free */
  uint32_t *tags;               /* per slot: 32 bits of the key's hash, 0
                                ** when free; a probe reads these and only
                                ** looks at a node whose tag matches */
  size_t nslots;                /* a power of two, or 0 */
  size_t nnodes;                /* nodes in the hash */
  uint64_t rng;                 /* xorshift64 state for node levels */
  size_t count;                 /* entries whose op is not NONE */
  size_t count_ephemeral;       /* of those, the ephemeral tier's */
  ts_delta_classifier classify; /* NULL: every entry is primary-tier */
  const void *classify_ctx;
  size_t bytes;                 /* key and value bytes copied into the arena */
  uint64_t generation;          /* bumped by reset */
  int refs;                     /* owners: the table, its open cursors and
                                ** the coordinator (atomic) */
  uint64_t next_rowid;          /* provisional rowids handed out so far */
  ts_delta_node **by_rowid;     /* [r - TS_ROWID_PROVISIONAL - 1] -> node */
  size_t n_by_rowid;            /* slots allocated in by_rowid */
  size_t nheld;                 /* slots whose node is a live fresh PUT of
                                ** that rowid (all handed out: ranks are
                                ** the slots themselves) */
  delta_kept *kept;             /* hash of kept stored rowids, at most half
                                ** full; nkept_slots a power of two or 0 */
  size_t nkept_slots, nkept;
  ts_delta_undo *undo;          /* undo log, kept only while marks exist */
  size_t n_undo, cap_undo;
  ts_delta_mark *marks;         /* stack, levels strictly increasing */
  size_t n_marks, cap_marks;
};

/* Where zero-length TEXT/BLOB values point: the value is empty but its
** pointer is not NULL, so an empty blob stays a blob and not a NULL. */
static const unsigned char delta_empty[1] = {0};

/* Carve n bytes aligned to align (a power of two) out of the arena: from
** the current chunk if they fit, else from a new one.  NULL when out of
** memory.  A request above TS_DELTA_BIG gets a chunk of its own, linked
** behind the current one so the current one keeps filling. */
static void *delta_alloc(ts_delta *d, size_t n, size_t align) {
  ts_delta_chunk *c = d->chunks;
  size_t size;
  if (c != NULL) {
    size_t at = (c->used + align - 1) & ~(align - 1);
    if (at <= c->size && n <= c->size - at) {
      c->used = at + n;
      return c->data + at;
    }
  }
  size = n > TS_DELTA_BIG ? n : TS_DELTA_CHUNK;
  if (size > (size_t)-1 - sizeof(*c)) return NULL;
  c = malloc(sizeof(*c) + size);
  if (c == NULL) return NULL;
  c->size = size;
  c->used = n;
  if (n > TS_DELTA_BIG && d->chunks != NULL) {
    c->next = d->chunks->next;
    d->chunks->next = c;
  } else {
    c->next = d->chunks;
    d->chunks = c;
  }
  return c->data;
}

/* Free every arena chunk: the memory of all nodes, keys and values. */
static void delta_arena_free(ts_delta *d) {
  while (d->chunks != NULL) {
    ts_delta_chunk *c = d->chunks;
    d->chunks = c->next;
    free(c);
  }
}

/* Order of encoded keys: memcmp over the common length, then the shorter
** (a prefix of the other) first.  This is LMDB's default key order. */
static int delta_cmp(const unsigned char *a, size_t na,
                     const unsigned char *b, size_t nb) {
  int c = memcmp(a, b, na < nb ? na : nb);
  if (c != 0) return c;
  return na < nb ? -1 : (na > nb ? 1 : 0);
}

/* Height of a new node: 1, then one more with probability 1/4 each time.
** A seeded xorshift64 keeps runs reproducible. */
static int delta_random_level(ts_delta *d) {
  int level = 1;
  uint64_t x = d->rng;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  d->rng = x;
  while (level < TS_DELTA_MAX_LEVEL && (x & 3) == 0) {
    level++;
    x >>= 2;
  }
  return level;
}

/* Hash of an encoded key: 8 bytes at a time, multiplied and folded. */
uint64_t ts_key_hash(const unsigned char *key, size_t nkey) {
  uint64_t h = 0x9E3779B97F4A7C15ULL ^ nkey;
  size_t i = 0;
  for (; i + 8 <= nkey; i += 8) {
    uint64_t w;
    memcpy(&w, key + i, 8);
    h = (h ^ w) * 0xBF58476D1CE4E5B9ULL;
    h ^= h >> 29;
  }
  if (i < nkey) {
    uint64_t w = 0;
    memcpy(&w, key + i, nkey - i);
    h = (h ^ w) * 0xBF58476D1CE4E5B9ULL;
  }
  h ^= h >> 32;
  h *= 0x94D049BB133111EBULL;
  return h ^ (h >> 31);
}

/* The tag of a key: the low half of its hash, never 0 (0 marks a free
** slot).  Its low bits pick the key's first slot, so growing the hash
** re-places the nodes from the tags alone, without reading their keys. */
static uint32_t delta_tag(const unsigned char *key, size_t nkey) {
  uint32_t t = (uint32_t)ts_key_hash(key, nkey);
  return t ? t : 1;
}

/* The node holding key, or NULL (linear probing; nodes are never removed
** before reset, so a free slot ends the probe). */
static ts_delta_node *delta_find(const ts_delta *d, const unsigned char *key,
                                 size_t nkey) {
  size_t mask = d->nslots - 1;
  uint32_t tag, t;
  if (d->nslots == 0) return NULL;
  tag = delta_tag(key, nkey);
  for (size_t i = tag & mask; (t = d->tags[i]) != 0; i = (i + 1) & mask) {
    const ts_delta_node *n = d->slots[i];
    if (t == tag && n->e.nkey == nkey && memcmp(n->e.key, key, nkey) == 0) return d->slots[i];
  }
  return NULL;
}

/* Put node n with tag in the hash, which has a free slot for it. */
static void delta_hash_add(ts_delta *d, ts_delta_node *n, uint32_t tag) {
  size_t mask = d->nslots - 1;
  size_t i = tag & mask;
  while (d->tags[i] != 0) i = (i + 1) & mask;
  d->slots[i] = n;
  d->tags[i] = tag;
  d->nnodes++;
}

/* Point the hash at a zeroed block for nslots slots (pointers, then
** tags).  TS_NOMEM leaves it as it was. */
static int delta_hash_alloc(ts_delta *d, size_t nslots) {
  void *block = calloc(nslots, sizeof(*d->slots) + sizeof(*d->tags));
  if (block == NULL) return TS_NOMEM;
  d->slots = block;
  d->tags = (uint32_t *)(d->slots + nslots);
  d->nslots = nslots;
  d->nnodes = 0;
  return TS_OK;
}

/* Make room for one more node: the hash stays at most half full, and the
** pending array has a free place.  TS_NOMEM leaves both as they were. */
static int delta_reserve_node(ts_delta *d) {
  ts_delta_order *o = d->order;
  ts_delta_node **p = ts_grow(o->pending, &o->cap_pending, sizeof(*p), o->npending + 1);
  if (p == NULL) return TS_NOMEM;
  o->pending = p;
  if (2 * (d->nnodes + 1) > d->nslots) {
    ts_delta_node **old = d->slots;
    const uint32_t *old_tags = d->tags;
    size_t nold = d->nslots;
    if (delta_hash_alloc(d, nold ? 2 * nold : 64) != TS_OK) return TS_NOMEM;
    for (size_t i = 0; i < nold; i++) {
      if (old_tags[i] != 0) delta_hash_add(d, old[i], old_tags[i]);
    }
    free(old);
  }
  return TS_OK;
}

/* A new NONE entry for key (copied), in the hash and waiting to be linked
** into the order.  NULL when out of memory; the delta is then unchanged
** (besides spare room). */
static ts_delta_node *delta_insert(ts_delta *d, const unsigned char *key,
                                   size_t nkey) {
  int level;
  ts_delta_node *n;
  unsigned char *k;
  if (delta_reserve_node(d) != TS_OK) return NULL;
  level = delta_random_level(d);
  n = delta_alloc(d, sizeof(*n) + (size_t)level * sizeof(n->next[0]),
                  TS_DELTA_ALIGN);
  k = n ? delta_alloc(d, nkey ? nkey : 1, 1) : NULL;
  if (k == NULL) return NULL;
  if (nkey) memcpy(k, key, nkey);
  d->bytes += nkey;
  memset(n, 0, sizeof(*n));
  n->e.key = k;
  n->e.nkey = nkey;
  n->e.ephemeral = d->classify != NULL && d->classify(d->classify_ctx, k, nkey);
  n->level = level;
  delta_hash_add(d, n, delta_tag(k, nkey));
  d->order->pending[d->order->npending++] = n;
  return n;
}

/* qsort order of two node pointers: their keys' order. */
static int delta_node_cmp(const void *a, const void *b) {
  const ts_delta_node *x = *(ts_delta_node *const *)a;
  const ts_delta_node *y = *(ts_delta_node *const *)b;
  return delta_cmp(x->e.key, x->e.nkey, y->e.key, y->e.nkey);
}

/* A pending node and 24 bytes of its key from the batch's common prefix
** on, as big-endian words, zero-padded past the key's end.  The words
** order like the keys (a key that ends compares as zeros, and an equal
** window falls back to the whole keys), so sorting these touches the
** nodes only on ties: the nodes lie scattered in the arena. */
typedef struct delta_sortkey delta_sortkey;
struct delta_sortkey {
  uint64_t w[3];
  ts_delta_node *n;
};

/* qsort order of two sort keys: their keys' order. */
static int delta_sortkey_cmp(const void *a, const void *b) {
  const delta_sortkey *x = a, *y = b;
  for (int i = 0; i < 3; i++) {
    if (x->w[i] != y->w[i]) return x->w[i] < y->w[i] ? -1 : 1;
  }
  return delta_cmp(x->n->e.key, x->n->e.nkey, y->n->e.key, y->n->e.nkey);
}

/* Order sk[0..n) by word w[i] alone: a least-significant-byte-first radix
** sort over its 8 bytes through tmp (n elements), skipping the bytes that
** every key shares (a namespace prefix costs nothing). */
static void delta_radix_word(delta_sortkey *sk, delta_sortkey *tmp, size_t n, int i) {
  size_t count[8][256];
  memset(count, 0, sizeof(count));
  for (size_t j = 0; j < n; j++) {
    for (int b = 0; b < 8; b++) count[b][(sk[j].w[i] >> (8 * b)) & 0xff]++;
  }
  for (int b = 0; b < 8; b++) {
    size_t at = 0, shift = 8 * (size_t)b;
    if (count[b][(sk[0].w[i] >> shift) & 0xff] == n) continue;   /* all alike */
    for (int v = 0; v < 256; v++) {
      size_t c = count[b][v];
      count[b][v] = at;
      at += c;
    }
    for (size_t j = 0; j < n; j++) tmp[count[b][(sk[j].w[i] >> shift) & 0xff]++] = sk[j];
    memcpy(sk, tmp, n * sizeof(*sk));
  }
}

/* Sort sk[0..n) by word w[i] and, among equal words, by the following
** words and then the whole keys (tmp: scratch for n elements). */
static void delta_sort_words(delta_sortkey *sk, delta_sortkey *tmp, size_t n, int i) {
  size_t run;
  if (n < 32) {
    qsort(sk, n, sizeof(*sk), delta_sortkey_cmp);
    return;
  }
  delta_radix_word(sk, tmp, n, i);
  for (size_t j = 0; j < n; j += run) {
    for (run = 1; j + run < n && sk[j + run].w[i] == sk[j].w[i]; run++) {
    }
    if (run < 2) continue;
    if (i < 2) {
      delta_sort_words(sk + j, tmp, run, i + 1);
    } else {
      qsort(sk + j, run, sizeof(*sk), delta_sortkey_cmp);
    }
  }
}

/* Sort the pending nodes by key: through sort keys when there is memory
** for them, else by comparing the nodes' keys. */
static void delta_sort_pending(ts_delta_order *o) {
  delta_sortkey *sk = malloc(2 * o->npending * sizeof(*sk));
  const ts_delta_node *first = o->pending[0];
  size_t skip = first->e.nkey;
  if (sk == NULL) {
    qsort(o->pending, o->npending, sizeof(*o->pending), delta_node_cmp);
    return;
  }
  for (size_t j = 1; j < o->npending && skip > 0; j++) {
    const ts_delta_node *n = o->pending[j];
    size_t m = n->e.nkey < skip ? n->e.nkey : skip, i = 0;
    while (i < m && n->e.key[i] == first->e.key[i]) i++;
    skip = i;
  }
  for (size_t j = 0; j < o->npending; j++) {
    ts_delta_node *n = o->pending[j];
    unsigned char win[24] = {0};
    size_t len = n->e.nkey - skip;
    memcpy(win, n->e.key + skip, len < sizeof(win) ? len : sizeof(win));
    for (int i = 0; i < 3; i++) sk[j].w[i] = ts_be64_get(win + 8 * i);
    sk[j].n = n;
  }
  delta_sort_words(sk, sk + o->npending, o->npending, 0);
  for (size_t j = 0; j < o->npending; j++) o->pending[j] = sk[j].n;
  free(sk);
}

/* The last linked node before key k (with le: at or before it), or the
** head; upd (when not NULL) gets that node at each level in use. */
static ts_delta_node *delta_descend(const ts_delta_order *o, const unsigned char *k,
                                    size_t nk, int le, ts_delta_node **upd) {
  ts_delta_node *x = o->head;
  ts_delta_node *y;
  for (int i = o->level - 1; i >= 0; i--) {
    while ((y = x->next[i]) != NULL && delta_cmp(y->e.key, y->e.nkey, k, nk) < le) x = y;
    if (upd != NULL) upd[i] = x;
  }
  return x;
}

/* Link n at its place in the order: one search from the head. */
static void delta_link_one(ts_delta_order *o, ts_delta_node *n) {
  ts_delta_node *upd[TS_DELTA_MAX_LEVEL];
  int i;
  delta_descend(o, n->e.key, n->e.nkey, 0, upd);
  for (i = o->level; i < n->level; i++) upd[i] = o->head;
  if (n->level > o->level) o->level = n->level;
  for (i = 0; i < n->level; i++) {
    n->next[i] = upd[i]->next[i];
    upd[i]->next[i] = n;
  }
  n->prev = upd[0] == o->head ? NULL : upd[0];
  if (n->next[0] != NULL) {
    n->next[0]->prev = n;
  } else {
    o->tail = n;
  }
  o->nlinked++;
}

/* Link the sorted pending nodes by rebuilding every level in one pass
** over the merged sequence of list and batch. */
static void delta_link_merge(ts_delta_order *o) {
  ts_delta_node *last[TS_DELTA_MAX_LEVEL];
  ts_delta_node *x = o->head->next[0];
  ts_delta_node *prev = NULL;
  size_t j = 0;
  int i;
  for (i = 0; i < TS_DELTA_MAX_LEVEL; i++) last[i] = o->head;
  while (x != NULL || j < o->npending) {
    ts_delta_node *n;
    if (x == NULL || (j < o->npending && delta_cmp(o->pending[j]->e.key, o->pending[j]->e.nkey,
                                                   x->e.key, x->e.nkey) < 0)) {
      n = o->pending[j++];
    } else {
      n = x;
      x = x->next[0];
    }
    for (i = 0; i < n->level; i++) {
      last[i]->next[i] = n;
      last[i] = n;
    }
    if (n->level > o->level) o->level = n->level;
    n->prev = prev;
    prev = n;
  }
  for (i = 0; i < TS_DELTA_MAX_LEVEL; i++) last[i]->next[i] = NULL;
  o->tail = prev;
  o->nlinked += o->npending;
}

/* Link the pending nodes into the order, before any ordered read.  A batch
** much smaller than the list goes in by searches; a larger one is sorted
** and merged.  Cannot fail (without memory for sort keys the sort compares
** the nodes, and qsort needs no memory it cannot do without). */
static void delta_settle(const ts_delta *d) {
  ts_delta_order *o = d->order;
  if (o->npending == 0) return;
  if (o->npending * 16 < o->nlinked) {
    for (size_t j = 0; j < o->npending; j++) delta_link_one(o, o->pending[j]);
  } else {
    delta_sort_pending(o);
    delta_link_merge(o);
  }
  o->npending = 0;
}

/* Slot of provisional rowid r in by_rowid, or (size_t)-1 when r was not
** handed out by this delta since the last reset. */
static size_t delta_rowid_slot(const ts_delta *d, uint64_t r) {
  if (r <= TS_ROWID_PROVISIONAL) return (size_t)-1;
  if (r - TS_ROWID_PROVISIONAL > d->next_rowid) return (size_t)-1;
  return (size_t)(r - TS_ROWID_PROVISIONAL - 1);
}

/* Slots of by_rowid that may hold a pointer: those of the rowids handed
** out since the last reset. */
static size_t delta_slots_used(const ts_delta *d) {
  return d->next_rowid < d->n_by_rowid ? (size_t)d->next_rowid : d->n_by_rowid;
}

/* Does n, a live fresh PUT, hold its provisional rowid's slot? */
static int delta_holds_slot(const ts_delta *d, const ts_delta_node *n) {
  size_t slot;
  if (n->e.op != TS_OP_PUT || !n->e.fresh) return 0;
  slot = delta_rowid_slot(d, n->e.rowid);
  return slot < d->n_by_rowid && d->by_rowid[slot] == n;
}

/* Slot where a probe for a kept rowid starts. */
static size_t delta_kept_home(uint64_t rowid, size_t mask) {
  return (size_t)((rowid * 0x9E3779B97F4A7C15ULL) >> 32) & mask;
}

/* Make room for one more kept rowid.  TS_NOMEM leaves the hash as it was. */
static int delta_kept_reserve(ts_delta *d) {
  delta_kept *old = d->kept, *t;
  size_t nold = d->nkept_slots, n = nold ? 2 * nold : 64;
  if (2 * (d->nkept + 1) <= nold) return TS_OK;
  t = calloc(n, sizeof(*t));
  if (t == NULL) return TS_NOMEM;
  for (size_t i = 0; i < nold; i++) {
    size_t j;
    if (old[i].rowid == 0) continue;
    j = delta_kept_home(old[i].rowid, n - 1);
    while (t[j].rowid != 0) j = (j + 1) & (n - 1);
    t[j] = old[i];
  }
  free(old);
  d->kept = t;
  d->nkept_slots = n;
  return TS_OK;
}

/* Record that node n's PUT keeps stored rowid (room reserved).  One entry
** per rowid: a stored rowid belongs to one key, so to one node. */
static void delta_kept_add(ts_delta *d, ts_delta_node *n, uint64_t rowid) {
  size_t mask = d->nkept_slots - 1, i = delta_kept_home(rowid, mask);
  for (; d->kept[i].rowid != 0; i = (i + 1) & mask) {
    if (d->kept[i].rowid == rowid) {
      d->kept[i].node = n;
      return;
    }
  }
  d->kept[i].rowid = rowid;
  d->kept[i].node = n;
  d->nkept++;
}

/* The live PUT that keeps stored rowid, or NULL. */
static const ts_delta_node *delta_kept_find(const ts_delta *d, uint64_t rowid) {
  size_t mask = d->nkept_slots - 1;
  if (d->nkept_slots == 0 || rowid == 0) return NULL;
  for (size_t i = delta_kept_home(rowid, mask); d->kept[i].rowid != 0; i = (i + 1) & mask) {
    const ts_delta_node *n = d->kept[i].node;
    if (d->kept[i].rowid == rowid) {
      return n->e.op == TS_OP_PUT && !n->e.fresh && n->e.rowid == rowid ? n : NULL;
    }
  }
  return NULL;
}

/* Make room for one more undo record when a mark exists, so the write that
** follows cannot fail halfway. */
static int delta_undo_reserve(ts_delta *d) {
  ts_delta_undo *u;
  if (d->n_marks == 0) return TS_OK;
  u = ts_grow(d->undo, &d->cap_undo, sizeof(*u), d->n_undo + 1);
  if (u == NULL) return TS_NOMEM;
  d->undo = u;
  return TS_OK;
}

/* Put node into state (op, fresh, rowid, v; v NULL clears the value).
** With log set and a mark open, the old state goes to the undo log first
** (room reserved by delta_undo_reserve); ROLLBACK TO passes log = 0.
** Keeps the live count and the provisional rowid index in step. */
static void delta_set(ts_delta *d, ts_delta_node *n, ts_op op, int fresh,
                      int again, uint64_t rowid, const ts_value *v, int log) {
  size_t slot;
  int held = delta_holds_slot(d, n);
  if (log && d->n_marks > 0) {
    ts_delta_undo *u = &d->undo[d->n_undo++];
    u->node = n;
    u->op = n->e.op;
    u->fresh = n->e.fresh;
    u->again = n->e.again;
    u->rowid = n->e.rowid;
    u->value = n->e.value;
  }
  if (n->e.op == TS_OP_NONE && op != TS_OP_NONE) {
    d->count++;
    d->count_ephemeral += (size_t)n->e.ephemeral;
  }
  if (n->e.op != TS_OP_NONE && op == TS_OP_NONE) {
    d->count--;
    d->count_ephemeral -= (size_t)n->e.ephemeral;
  }
  n->e.op = op;
  n->e.fresh = fresh;
  n->e.again = again;
  n->e.rowid = rowid;
  if (v != NULL) {
    n->e.value = *v;
  } else {
    memset(&n->e.value, 0, sizeof(n->e.value));
  }
  slot = delta_rowid_slot(d, rowid);
  if (op == TS_OP_PUT && fresh && slot < d->n_by_rowid && d->by_rowid[slot] != n) {
    const ts_delta_node *m = d->by_rowid[slot];
    if (m != NULL && delta_holds_slot(d, m)) d->nheld--;
    d->by_rowid[slot] = n;
  }
  d->nheld += (size_t)delta_holds_slot(d, n) - (size_t)held;
}

/* Allocate a delta: an empty map with its head sentinel.  NULL when out of
** memory. */
ts_delta *ts_delta_new(void) {
  ts_delta *d = calloc(1, sizeof(*d));
  if (d == NULL) return NULL;
  d->order = calloc(1, sizeof(*d->order));
  if (d->order != NULL) {
    d->order->head = calloc(1, sizeof(*d->order->head) +
                                   TS_DELTA_MAX_LEVEL * sizeof(d->order->head->next[0]));
  }
  if (d->order == NULL || d->order->head == NULL) {
    free(d->order);
    free(d);
    return NULL;
  }
  d->order->level = 1;
  d->rng = 0x9E3779B97F4A7C15ULL;
  d->generation = 1;
  d->refs = 1;
  return d;
}

/* Classify the entries made from now on with fn. */
void ts_delta_classify(ts_delta *d, ts_delta_classifier fn, const void *ctx) {
  d->classify = fn;
  d->classify_ctx = ctx;
}

/* One more owner (a cursor that must keep reading this transaction's
** writes even after the table moved on to a new delta). */
void ts_delta_retain(ts_delta *d) {
  __atomic_add_fetch(&d->refs, 1, __ATOMIC_RELAXED);
}

/* Does anyone besides the creator hold d? */
int ts_delta_is_shared(const ts_delta *d) {
  return __atomic_load_n(&d->refs, __ATOMIC_ACQUIRE) > 1;
}

/* Drop one owner; the last one frees d and everything it holds.  NULL is
** a no-op. */
void ts_delta_free(ts_delta *d) {
  /* the coordinator drops its reference from the flusher thread */
  if (d == NULL || __atomic_sub_fetch(&d->refs, 1, __ATOMIC_ACQ_REL) > 0) return;
  delta_arena_free(d);
  free(d->order->head);
  free(d->order->pending);
  free(d->order);
  free(d->slots);
  free(d->by_rowid);
  free(d->kept);
  free(d->undo);
  free(d->marks);
  free(d);
}

/* Discard every entry, mark and provisional rowid at the end of a
** transaction; the arena is freed, the arrays keep their capacity. */
void ts_delta_reset(ts_delta *d) {
  ts_delta_order *o = d->order;
  delta_arena_free(d);
  memset(o->head->next, 0, TS_DELTA_MAX_LEVEL * sizeof(o->head->next[0]));
  o->tail = NULL;
  o->level = 1;
  o->nlinked = 0;
  o->npending = 0;
  d->count = 0;
  d->count_ephemeral = 0;
  d->bytes = 0;
  d->generation++;
  /* a big transaction's hash and arrays go back to the allocator; small
  ** ones are kept, and of by_rowid only the slots handed out are cleared */
  if (d->nslots > TS_DELTA_KEEP_SLOTS) {
    free(d->slots);
    d->slots = NULL;
    d->tags = NULL;
    d->nslots = 0;
  } else if (d->nnodes) {
    memset(d->slots, 0, d->nslots * (sizeof(*d->slots) + sizeof(*d->tags)));
  }
  d->nnodes = 0;
  if (o->cap_pending > TS_DELTA_KEEP_SLOTS) {
    free(o->pending);
    o->pending = NULL;
    o->cap_pending = 0;
  }
  if (d->n_by_rowid > TS_DELTA_KEEP_SLOTS) {
    free(d->by_rowid);
    d->by_rowid = NULL;
    d->n_by_rowid = 0;
  } else if (d->n_by_rowid) {
    memset(d->by_rowid, 0, delta_slots_used(d) * sizeof(*d->by_rowid));
  }
  if (d->nkept_slots > TS_DELTA_KEEP_SLOTS) {
    free(d->kept);
    d->kept = NULL;
    d->nkept_slots = 0;
  } else if (d->nkept) {
    memset(d->kept, 0, d->nkept_slots * sizeof(*d->kept));
  }
  d->nkept = 0;
  d->next_rowid = 0;
  d->nheld = 0;
  d->n_undo = 0;
  d->n_marks = 0;
}

/* The generation: a cursor holding an entry compares it to know whether a
** reset freed that entry since. */
uint64_t ts_delta_generation(const ts_delta *d) {
  return d->generation;
}

/* Entries that say something (op PUT or DEL). */
size_t ts_delta_count(const ts_delta *d) {
  return d->count;
}

/* Entries that say something, of the ephemeral tier. */
size_t ts_delta_count_ephemeral(const ts_delta *d) {
  return d->count_ephemeral;
}

/* Key and value bytes copied into the arena since the last reset.  An
** approximation of the memory held: it counts values that were overwritten
** or undone (the arena keeps them until reset) and leaves out node headers
** and alignment padding. */
size_t ts_delta_bytes(const ts_delta *d) {
  return d->bytes;
}

/* Record a PUT of key with value v, both copied.  A PUT over a fresh PUT
** stays fresh with the entry's rowid: the key is still new to the store.
** A fresh PUT over a DEL of the stored key creates it again. */
int ts_delta_put(ts_delta *d, const unsigned char *key, size_t nkey,
                 const ts_value *v, uint64_t rowid, int fresh) {
  ts_delta_node *n = delta_find(d, key, nkey);
  ts_value val = *v;
  size_t slot;
  int rc, again, kept;
  if (n != NULL && n->e.op == TS_OP_PUT && n->e.fresh) {
    fresh = 1;
    rowid = n->e.rowid;
  }
  fresh = fresh != 0;
  again = fresh && n != NULL && n->e.op != TS_OP_NONE && n->e.again;
  slot = delta_rowid_slot(d, rowid);
  /* a PUT over a stored key keeps its rowid: index it for rowid lookups */
  kept = !fresh && rowid != 0 && rowid < TS_ROWID_PROVISIONAL;
  rc = delta_undo_reserve(d);
  if (rc == TS_OK && kept) rc = delta_kept_reserve(d);
  if (rc != TS_OK) return rc;
  if (fresh && slot != (size_t)-1) {
    ts_delta_node **a = ts_grow(d->by_rowid, &d->n_by_rowid, sizeof(*a),
                                   slot + 1);
    if (a == NULL) return TS_NOMEM;
    d->by_rowid = a;
  }
  if (val.type == TS_TEXT || val.type == TS_BLOB) {
    if (val.n == 0) {
      val.p = delta_empty;
    } else {
      void *p = delta_alloc(d, val.n, 1);
      if (p == NULL) return TS_NOMEM;
      memcpy(p, v->p, val.n);
      val.p = p;
      d->bytes += val.n;
    }
  } else {
    val.p = NULL;
    val.n = 0;
  }
  if (n == NULL && (n = delta_insert(d, key, nkey)) == NULL) {
    return TS_NOMEM;
  }
  delta_set(d, n, TS_OP_PUT, fresh, again, rowid, &val, 1);
  if (kept) delta_kept_add(d, n, rowid);
  return TS_OK;
}

/* Record a DELETE of key: the entry drops its value, freshness and rowid.
** It deletes the stored key (again) unless it only undoes this
** transaction's own creation of a key the store did not have. */
int ts_delta_del(ts_delta *d, const unsigned char *key, size_t nkey) {
  ts_delta_node *n = delta_find(d, key, nkey);
  int rc = delta_undo_reserve(d);
  int again = n == NULL || n->e.op == TS_OP_NONE || !n->e.fresh || n->e.again;
  if (rc != TS_OK) return rc;
  if (n == NULL && (n = delta_insert(d, key, nkey)) == NULL) {
    return TS_NOMEM;
  }
  delta_set(d, n, TS_OP_DEL, 0, again, 0, NULL, 1);
  return TS_OK;
}

/* The entry for key when it says something, else NULL (the caller then
** asks the tiers). */
const ts_delta_entry *ts_delta_get(const ts_delta *d, const unsigned char *key,
                                   size_t nkey) {
  const ts_delta_node *n = delta_find(d, key, nkey);
  return n != NULL && n->e.op != TS_OP_NONE ? &n->e : NULL;
}

/* Hand out the next provisional rowid.  ROLLBACK TO does not take it back,
** so a rowid is never given to two rows of one transaction. */
uint64_t ts_delta_new_rowid(ts_delta *d) {
  return TS_ROWID_PROVISIONAL + ++d->next_rowid;
}

/* The live PUT with rowid: the fresh PUT holding a provisional rowid this
** delta handed out, or a PUT that keeps a stored rowid; else NULL.  The
** indexes may point at an entry that was deleted or undone since, so check
** it. */
const ts_delta_entry *ts_delta_by_rowid(const ts_delta *d, uint64_t rowid) {
  size_t slot = delta_rowid_slot(d, rowid);
  const ts_delta_node *n;
  if (rowid < TS_ROWID_PROVISIONAL) {
    n = delta_kept_find(d, rowid);
    return n != NULL ? &n->e : NULL;
  }
  if (slot >= d->n_by_rowid) return NULL;
  n = d->by_rowid[slot];
  if (n == NULL || n->e.op != TS_OP_PUT || !n->e.fresh || n->e.rowid != rowid) {
    return NULL;
  }
  return &n->e;
}

/* Drop the marks at level >= level; the undo log goes with the last one. */
static void delta_marks_drop(ts_delta *d, int level) {
  while (d->n_marks > 0 && d->marks[d->n_marks - 1].level >= level) {
    d->n_marks--;
  }
  if (d->n_marks == 0) d->n_undo = 0;
}

/* xSavepoint: open savepoint level, replacing any at that level or above.
** TS_NOMEM leaves the marks as they were. */
int ts_delta_savepoint(ts_delta *d, int level) {
  size_t keep = d->n_marks;
  ts_delta_mark *m;
  while (keep > 0 && d->marks[keep - 1].level >= level) keep--;
  m = ts_grow(d->marks, &d->cap_marks, sizeof(*m), keep + 1);
  if (m == NULL) return TS_NOMEM;
  d->marks = m;
  delta_marks_drop(d, level);
  d->marks[d->n_marks].level = level;
  d->marks[d->n_marks].undo_pos = d->n_undo;
  d->n_marks++;
  return TS_OK;
}

/* xRelease: keep the writes since savepoint level, forget its mark and the
** marks above it. */
void ts_delta_release(ts_delta *d, int level) {
  delta_marks_drop(d, level);
}

/* xRollbackTo: undo the writes since savepoint level (the oldest mark at
** or above it), newest first.  Savepoint level stays open at that point;
** the marks above it go.  Never allocates, so it cannot fail. */
void ts_delta_rollback_to(ts_delta *d, int level) {
  size_t i = 0;
  size_t pos;
  if (level < 0) {
    /* SQLite's -1: the savepoint that opened the transaction, before which
    ** the delta was empty */
    ts_delta_reset(d);
    return;
  }
  while (i < d->n_marks && d->marks[i].level < level) i++;
  if (i == d->n_marks) return;
  pos = d->marks[i].undo_pos;
  while (d->n_undo > pos) {
    const ts_delta_undo *u = &d->undo[--d->n_undo];
    delta_set(d, u->node, u->op, u->fresh, u->again, u->rowid, &u->value, 0);
  }
  d->marks[i].level = level;
  d->n_marks = i + 1;
}

/* First entry with key >= k (desc=0) or last entry with key <= k (desc=1);
** k == NULL means the first / last entry.  NONE entries are included. */
const ts_delta_entry *ts_delta_seek(const ts_delta *d, const unsigned char *k,
                                    size_t nk, int desc) {
  const ts_delta_order *o = d->order;
  const ts_delta_node *x, *n;
  delta_settle(d);
  if (k == NULL) {
    n = desc ? o->tail : o->head->next[0];
    return n ? &n->e : NULL;
  }
  x = delta_descend(o, k, nk, desc != 0, NULL);
  if (desc) return x == o->head ? NULL : &x->e;
  n = x->next[0];
  return n ? &n->e : NULL;
}

/* The entry after e (desc=0) or before it (desc=1), or NULL at the end. */
const ts_delta_entry *ts_delta_step(const ts_delta *d,
                                    const ts_delta_entry *e, int desc) {
  const ts_delta_node *n = (const ts_delta_node *)e;
  delta_settle(d);
  n = desc ? n->prev : n->next[0];
  if (n == NULL) return NULL;
  /* nodes lie in write order, not key order: start fetching the one after
  ** (a walk spends its time waiting for nodes otherwise) */
  __builtin_prefetch(desc ? n->prev : n->next[0]);
  return &n->e;
}

/* Number the live fresh PUTs in creation order (provisional rowid
** order): by_rowid lists them by slot already, so one pass over the slots
** handed out ranks them, with no sort.  When every slot holds one (no
** INSERT undone, deleted or failed) the ranks are the slots: f->rank
** stays NULL.  Else f->rank is malloc'd. */
int ts_delta_fresh(const ts_delta *d, ts_fresh *f) {
  size_t slots = delta_slots_used(d);
  memset(f, 0, sizeof(*f));
  f->nslots = slots;
  if (d->nheld == slots) {
    f->n = slots;
    return TS_OK;
  }
  f->rank = malloc(slots * sizeof(*f->rank));
  if (!f->rank) return TS_NOMEM;
  for (size_t i = 0; i < slots; i++) {
    f->rank[i] = ts_delta_by_rowid(d, TS_ROWID_PROVISIONAL + 1 + i) ? f->n++ : SIZE_MAX;
  }
  return TS_OK;
}

/* Rank of a fresh entry among the commit's new keys, or -1 when it is not
** a live fresh PUT of this delta. */
long ts_fresh_rank(const ts_fresh *f, const ts_delta_entry *e) {
  uint64_t slot;
  if (!e->fresh || e->rowid <= TS_ROWID_PROVISIONAL) return -1;
  slot = e->rowid - TS_ROWID_PROVISIONAL - 1;
  if (slot >= f->nslots) return -1;
  if (!f->rank) return e->op == TS_OP_PUT ? (long)slot : -1;
  if (f->rank[slot] == SIZE_MAX) return -1;
  return (long)f->rank[slot];
}

/* Free what ts_delta_fresh allocated. */
void ts_fresh_free(ts_fresh *f) {
  free(f->rank);
  memset(f, 0, sizeof(*f));
}
