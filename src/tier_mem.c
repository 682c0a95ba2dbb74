/*
** tier_mem.c: the ephemeral tier, an ordered in-memory map shared by every
** table of the process that uses the same primary environment.
**
** Design trade-off: the tier holds an immutable, reference-counted
** snapshot (a key-ordered array of reference-counted rows).  A reader
** takes the current snapshot in O(1) and then reads it without any lock:
** a statement sees one consistent state, and a value stays valid for as
** long as the reader holds the snapshot, so values reach SQLite without an
** extra copy.  A commit builds the next snapshot by merging the old array
** with the delta's ephemeral entries: O(keys in the tier), which suits what
** the tier is for (a handful of large cached values such as a network graph
** and a scorer), not millions of small keys.
*/
#include "tierstore_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct ts_mem_snap {
  int refs;                    /* guarded by the tier's mutex */
  size_t n;
  ts_mem_row **rows;           /* key order */
};

struct ts_mem {
  pthread_mutex_t mutex;
  ts_mem_snap *cur;
};

/* memcmp order, shorter prefix first. */
static int ts_mem_cmp(const unsigned char *a, size_t na, const unsigned char *b,
                      size_t nb) {
  int r = memcmp(a, b, na < nb ? na : nb);
  if (r) return r;
  return na < nb ? -1 : na > nb;
}

/* Drop one reference to a row (mutex held). */
static void ts_mem_row_release(ts_mem_row *r) {
  if (--r->refs == 0) free(r);
}

/* Drop one reference to a snapshot and, with the last, its rows (mutex
** held). */
static void ts_mem_snap_drop(ts_mem_snap *s) {
  if (!s || --s->refs > 0) return;
  for (size_t i = 0; i < s->n; i++) ts_mem_row_release(s->rows[i]);
  free(s->rows);
  free(s);
}

/* A new, empty tier. */
ts_mem *ts_mem_new(void) {
  ts_mem *m = calloc(1, sizeof(*m));
  if (!m) return NULL;
  m->cur = calloc(1, sizeof(*m->cur));
  if (!m->cur) {
    free(m);
    return NULL;
  }
  m->cur->refs = 1;
  pthread_mutex_init(&m->mutex, NULL);
  return m;
}

/* Free the tier (no reader may hold a snapshot any more). */
void ts_mem_free(ts_mem *m) {
  if (!m) return;
  ts_mem_snap_drop(m->cur);
  pthread_mutex_destroy(&m->mutex);
  free(m);
}

/* The process's ephemeral tiers, one per primary environment (its
** directory's device and inode, and its store identity, so a new store
** made in the same directory does not inherit the old one's rows).  They live until the process ends
** (SPEC 5), even when every table using one is closed. */
typedef struct ts_mem_slot ts_mem_slot;
struct ts_mem_slot {
  ts_mem_slot *next;
  uint64_t dev, ino;
  unsigned char store_id[TS_STORE_ID_BYTES];
  ts_mem *mem;
};
static pthread_mutex_t ts_mem_registry_mutex = PTHREAD_MUTEX_INITIALIZER;
static ts_mem_slot *ts_mem_registry = NULL;

/* The ephemeral tier of a primary environment in this process, created
** on first use when create is set; NULL when out of memory or absent. */
static ts_mem *ts_mem_lookup(uint64_t dev, uint64_t ino, const unsigned char *store_id,
                             int create) {
  ts_mem_slot *s;
  ts_mem *m = NULL;
  pthread_mutex_lock(&ts_mem_registry_mutex);
  for (s = ts_mem_registry;
       s && (s->dev != dev || s->ino != ino || memcmp(s->store_id, store_id, TS_STORE_ID_BYTES));
       s = s->next) {
  }
  if (s) {
    m = s->mem;
  } else if (!create) {
    m = NULL;
  } else if ((s = calloc(1, sizeof(*s))) != NULL && (s->mem = ts_mem_new()) != NULL) {
    s->dev = dev;
    s->ino = ino;
    memcpy(s->store_id, store_id, TS_STORE_ID_BYTES);
    s->next = ts_mem_registry;
    ts_mem_registry = s;
    m = s->mem;
  } else {
    free(s);
  }
  pthread_mutex_unlock(&ts_mem_registry_mutex);
  return m;
}
ts_mem *ts_mem_for_env(uint64_t dev, uint64_t ino, const unsigned char *store_id) {
  return ts_mem_lookup(dev, ino, store_id, 1);
}
ts_mem *ts_mem_find(uint64_t dev, uint64_t ino, const unsigned char *store_id) {
  return ts_mem_lookup(dev, ino, store_id, 0);
}

/* Empty every tier of a directory: for a process that deletes an
** environment directory and keeps running (the fuzzer does, per input). */
void ts_mem_forget_dir(uint64_t dev, uint64_t ino) {
  pthread_mutex_lock(&ts_mem_registry_mutex);
  for (ts_mem_slot *s = ts_mem_registry; s; s = s->next) {
    ts_mem_snap *empty;
    if (s->dev != dev || s->ino != ino) continue;
    empty = calloc(1, sizeof(*empty));
    if (!empty) continue;
    empty->refs = 1;
    pthread_mutex_lock(&s->mem->mutex);
    ts_mem_snap_drop(s->mem->cur);
    s->mem->cur = empty;
    pthread_mutex_unlock(&s->mem->mutex);
  }
  pthread_mutex_unlock(&ts_mem_registry_mutex);
}

/* Take the current snapshot (O(1)). */
ts_mem_snap *ts_mem_snapshot(ts_mem *m) {
  ts_mem_snap *s;
  pthread_mutex_lock(&m->mutex);
  s = m->cur;
  s->refs++;
  pthread_mutex_unlock(&m->mutex);
  return s;
}

/* Give a snapshot back. */
void ts_mem_snap_release(ts_mem *m, ts_mem_snap *s) {
  if (!s) return;
  pthread_mutex_lock(&m->mutex);
  ts_mem_snap_drop(s);
  pthread_mutex_unlock(&m->mutex);
}

size_t ts_mem_snap_count(const ts_mem_snap *s) { return s->n; }

const ts_mem_row *ts_mem_snap_row(const ts_mem_snap *s, size_t i) {
  return i < s->n ? s->rows[i] : NULL;
}

/* Index of the first row with key >= k (desc=0), or of the last row with
** key <= k (desc=1; returns (size_t)-1 when there is none). */
size_t ts_mem_snap_seek(const ts_mem_snap *s, const unsigned char *k, size_t nk,
                        int desc) {
  size_t lo = 0, hi = s->n;
  while (lo < hi) {   /* first index whose key > k (desc) or >= k (asc) */
    size_t mid = lo + (hi - lo) / 2;
    int r = ts_mem_cmp(s->rows[mid]->key, s->rows[mid]->nkey, k, nk);
    if (r < 0 || (desc && r == 0)) lo = mid + 1;
    else hi = mid;
  }
  return desc ? lo - 1 : lo;
}

/* The row stored under key k, or NULL. */
const ts_mem_row *ts_mem_snap_get(const ts_mem_snap *s, const unsigned char *k,
                                  size_t nk) {
  size_t i = ts_mem_snap_seek(s, k, nk, 0);
  if (i < s->n && ts_mem_cmp(s->rows[i]->key, s->rows[i]->nkey, k, nk) == 0) return s->rows[i];
  return NULL;
}

/* The row holding rowid, or NULL (a linear search: the tier is small). */
const ts_mem_row *ts_mem_snap_by_rowid(const ts_mem_snap *s, uint64_t rowid) {
  for (size_t i = 0; i < s->n; i++) {
    if (s->rows[i]->rowid == rowid) return s->rows[i];
  }
  return NULL;
}

/* A new row holding a copy of key and value. */
static ts_mem_row *ts_mem_row_new(const unsigned char *key, size_t nkey,
                                  const ts_value *v, uint64_t rowid,
                                  uint64_t epoch) {
  size_t nval = (v->type == TS_TEXT || v->type == TS_BLOB) ? v->n : 0;
  ts_mem_row *r = malloc(sizeof(*r) + nkey + nval + 1);
  unsigned char *p;
  if (!r) return NULL;
  p = (unsigned char *)(r + 1);
  r->refs = 1;
  r->rowid = rowid;
  r->epoch = epoch;
  r->key = p;
  r->nkey = nkey;
  memcpy(p, key, nkey);
  r->value = *v;
  if (v->type == TS_TEXT || v->type == TS_BLOB) {
    if (nval) memcpy(p + nkey, v->p, nval);
    r->value.p = p + nkey;
  }
  return r;
}

/* Commit: the next snapshot is the current one with every change applied.
** changes[] is in key order; each says PUT (with value, rowid, epoch) or
** DEL.  On failure nothing changes. */
int ts_mem_apply(ts_mem *m, const ts_change *changes, size_t nchanges,
                 ts_err *err) {
  ts_mem_snap *old, *next;
  size_t i = 0, j = 0, cap;
  int rc = TS_OK;
  if (nchanges == 0) return TS_OK;
  pthread_mutex_lock(&m->mutex);
  old = m->cur;
  cap = old->n + nchanges;
  next = calloc(1, sizeof(*next));
  if (next) next->rows = malloc(cap * sizeof(*next->rows));
  if (!next || !next->rows) {
    free(next);
    pthread_mutex_unlock(&m->mutex);
    return ts_err_set(err, TS_NOMEM, "out of memory committing to the ephemeral tier");
  }
  next->refs = 1;
  while (i < old->n || j < nchanges) {
    const ts_change *c = j < nchanges ? &changes[j] : NULL;
    int r = i >= old->n ? 1 : !c ? -1 : ts_mem_cmp(old->rows[i]->key, old->rows[i]->nkey, c->key, c->nkey);
    if (r < 0) {
      old->rows[i]->refs++;
      next->rows[next->n++] = old->rows[i++];
      continue;
    }
    if (r == 0) i++;          /* the change replaces or removes this row */
    j++;
    if (c->op == TS_OP_PUT) {
      ts_mem_row *row = ts_mem_row_new(c->key, c->nkey, &c->value, c->rowid, c->epoch);
      if (!row) {
        rc = ts_err_set(err, TS_NOMEM, "out of memory committing to the ephemeral tier");
        break;
      }
      next->rows[next->n++] = row;
    }
  }
  if (rc) {
    ts_mem_snap_drop(next);
  } else {
    m->cur = next;
    ts_mem_snap_drop(old);
  }
  pthread_mutex_unlock(&m->mutex);
  return rc;
}
