/*
** store.c: a table's view of its tiers.
**
** A store holds the table's primary environment, its optional backup, its
** ephemeral rules and the ephemeral tier it shares with every table of the
** process on the same primary.  The router decides a key's tier from its
** names alone.  Reads merge the committed tiers with the connection's delta
** (the delta wins key by key: a PUT replaces, a DEL hides); writes go to the
** delta (ext/ does that) and reach the tiers through the primary's write
** coordinator at commit (coordinator.c): primary-tier changes to the
** primary and the backup at once, ephemeral ones to memory, in epoch
** order.  Every read of committed data first lets the coordinator write
** the commits it acknowledged as applied, so it sees them.
**
** A cursor keeps one LMDB read snapshot and one ephemeral snapshot for its
** whole life, so a statement reads one consistent state even across several
** xFilter calls (IN lists).  It takes the environment's read lock only
** inside each call, never across calls, so a commit in the same thread can
** always grow the map.  A freed cursor stays with its store, its LMDB read
** transaction reset (not aborted) and its LMDB cursor open, so the next
** statement or lookup renews them instead of allocating: a point read costs
** no allocation and no reader-slot search.
*/
#include "tierstore_int.h"

#include <stdlib.h>
#include <string.h>

struct ts_store {
  ts_env *primary;
  ts_env *backup;              /* NULL without a backup */
  ts_router *router;
  ts_mem *mem;                 /* NULL when no rule routes to memory */
  ts_coord *coord;             /* the primary's write coordinator */
  ts_coord_job job;            /* how this table's commits are queued */
  ts_names_rule names;
  ts_cursor *idle;             /* freed cursors kept for reuse (a list): their
                               ** read transactions serve lookups too */
  int nidle;
  ts_cursor *live;             /* open cursors, newest first: the views the
                               ** rowids of a DELETE or UPDATE came from */
  uint64_t closed_rowid;       /* the committed row the last cursor closed on
                               ** (0: none) and its key: a rowid names one
                               ** key for good, so this never goes stale */
  unsigned char closed_key[TS_LMDB_KEY_MAX];
  size_t nclosed_key;
};

static void ts_cursor_pool_drain(ts_store *st);
static ts_cursor *ts_store_reader(ts_store *st, int wait, ts_snap **snap, ts_err *err);
static void ts_store_reader_done(ts_cursor *c);

/* Open the backup beside the primary: same store identity, caught up. */
static int ts_store_open_backup(ts_store *st, const char *path, size_t map_size,
                                unsigned mode, ts_err *err) {
  int level = 0;
  int rc = ts_env_open_id(path, map_size, mode, ts_env_store_id(st->primary), &st->backup, err);
  if (rc) return rc;
  if (st->backup == st->primary) {
    return ts_err_set(err, TS_ERROR, "argument 'backup' names the primary environment '%s'", path);
  }
  if (memcmp(ts_env_store_id(st->backup), ts_env_store_id(st->primary), TS_STORE_ID_BYTES)) {
    return ts_err_set(err, TS_ERROR, "backup '%s' belongs to another store than primary '%s'; refusing it",
                      path, ts_env_path(st->primary));
  }
  ts_env_add_role(st->backup, TS_ROLE_BACKUP);
  rc = ts_mirror_level(st->primary, st->backup, &level, err);
  if (rc) return rc;
  if (!level) {
    /* behind, ahead or fresh: reconcile now; if that fails the next
    ** commit tries again and reports it */
    ts_err cerr = {0, {0}};
    ts_env_commit_lock(st->primary);
    ts_mirror_catch_up(st->primary, st->backup, st->job.level, 0, &cerr);
    ts_env_commit_unlock(st->primary);
  }
  return TS_OK;
}

/* Open the store's environments and rules. */
int ts_store_open(const ts_store_cfg *cfg, ts_store **out, ts_err *err) {
  size_t map = cfg->map_size ? cfg->map_size : TS_DEFAULT_MAP_SIZE;
  unsigned mode = cfg->mode ? cfg->mode : TS_DEFAULT_FILE_MODE;
  ts_store *st = calloc(1, sizeof(*st));
  int rc;
  if (!st) return ts_err_set(err, TS_NOMEM, "out of memory opening a store");
  st->job.level = cfg->durability;
  st->job.flush_interval_ns = (int64_t)cfg->flush_interval_us * 1000;
  st->job.max_pending = cfg->max_pending ? cfg->max_pending : TS_DEFAULT_MAX_PENDING;
  st->names = cfg->names;
  rc = ts_router_new(cfg->ephemeral, &st->router, err);
  if (!rc) rc = ts_env_open_id(cfg->primary, map, mode, NULL, &st->primary, err);
  if (!rc) ts_env_add_role(st->primary, TS_ROLE_PRIMARY);
  if (!rc && !(st->coord = ts_coord_open(st->primary))) {
    rc = ts_err_set(err, TS_NOMEM, "out of memory opening the write coordinator");
  }
  if (!rc && cfg->backup) rc = ts_store_open_backup(st, cfg->backup, map, mode, err);
  if (!rc && !ts_router_is_empty(st->router)) {
    st->mem = ts_env_mem(st->primary);
    if (!st->mem) rc = ts_err_set(err, TS_NOMEM, "out of memory opening the ephemeral tier");
  }
  st->job.backup = st->backup;
  st->job.mem = st->mem;
  if (rc) {
    /* a refused table leaves nothing on disk */
    ts_coord_close(st->coord);
    st->coord = NULL;
    ts_env_discard(st->backup);
    ts_env_discard(st->primary);
    st->backup = st->primary = NULL;
    ts_store_close(st);
    return rc;
  }
  *out = st;
  return TS_OK;
}

/* Close the store and release its environment references. */
void ts_store_close(ts_store *st) {
  if (!st) return;
  ts_cursor_pool_drain(st);
  ts_coord_close(st->coord);   /* writes what this process queued */
  ts_env_close(st->backup);
  ts_env_close(st->primary);
  ts_router_free(st->router);
  free(st);
}

ts_names_rule ts_store_names(const ts_store *st) { return st->names; }
ts_env *ts_store_primary(ts_store *st) { return st->primary; }

/* The delta classifier of a store's tables. */
static int ts_store_is_ephemeral(const void *st, const unsigned char *key, size_t nkey) {
  return ts_store_route(st, key, nkey) == TS_TIER_EPHEMERAL;
}

/* A delta for a table of this store: it knows which entries are
** ephemeral-tier ones.  NULL when out of memory. */
ts_delta *ts_store_new_delta(const ts_store *st) {
  ts_delta *d = ts_delta_new();
  if (d && st->mem) ts_delta_classify(d, ts_store_is_ephemeral, st);
  return d;
}

/* Where a key lives, by its names. */
ts_tier_id ts_store_route(const ts_store *st, const unsigned char *key,
                          size_t nkey) {
  ts_name pns, sns, name;
  if (!st->mem || ts_key_decode(key, nkey, &pns, &sns, &name)) return TS_TIER_PRIMARY;
  return ts_router_route(st->router, pns, sns, name);
}

/* Visible state of a key: the delta's word, else the newest commit of the
** key's tier. */
int ts_store_lookup(ts_store *st, const ts_delta *d, const unsigned char *key,
                    size_t nkey, ts_row_info *info, ts_err *err) {
  const ts_delta_entry *e = ts_delta_get(d, key, nkey);
  ts_cursor *reader;
  ts_snap *snap;
  ts_record rec;
  ts_coord_state queued;
  int rc;
  if (e) {
    if (e->op != TS_OP_PUT) return TS_NOTFOUND;
    info->rowid = e->rowid;
    info->fresh = e->fresh;
    return TS_OK;
  }
  info->fresh = 0;
  /* commits acknowledged but not written yet: their word first (a key one
  ** of them creates gets its number when written: wait for that) */
  ts_coord_lookup(st->coord, key, nkey, &queued, &info->rowid);
  if (queued == TS_QUEUED_ABSENT) return TS_NOTFOUND;
  if (queued == TS_QUEUED_PRESENT) return TS_OK;
  if (queued == TS_QUEUED_NEW && ts_coord_visible(st->coord, err)) return err->code;
  if (ts_store_route(st, key, nkey) == TS_TIER_EPHEMERAL) {
    ts_mem_snap *ms = ts_mem_snapshot(st->mem);
    const ts_mem_row *r = ts_mem_snap_get(ms, key, nkey);
    if (r) info->rowid = r->rowid;
    ts_mem_snap_release(st->mem, ms);
    return r ? TS_OK : TS_NOTFOUND;
  }
  reader = ts_store_reader(st, 0, &snap, err);
  if (!reader) return err->code;
  ts_env_read_lock(st->primary);
  rc = ts_snap_get(snap, key, nkey, &rec, err);
  ts_env_read_unlock(st->primary);
  ts_store_reader_done(reader);
  if (rc == TS_OK) info->rowid = rec.rowid;
  return rc;
}

/* Commit the frozen delta through the coordinator (an empty one writes
** nothing). */
int ts_store_flush(ts_store *st, ts_delta *d, uint64_t *epoch, ts_err *err) {
  *epoch = 0;
  if (ts_delta_count(d) == 0) return TS_OK;
  return ts_coord_commit(st->coord, d, &st->job, epoch, err);
}

/* Write everything queued, then fsync every durable tier. */
int ts_store_sync(ts_store *st, ts_err *err) {
  int rc = ts_coord_sync(st->coord, err);
  if (!rc) rc = ts_env_sync(st->primary, err);
  if (!rc && st->backup) rc = ts_env_sync(st->backup, err);
  return rc;
}

/* The 'verify' command. */
int ts_store_verify(ts_store *st, ts_err *err) {
  int rc;
  if (!st->backup) return ts_err_set(err, TS_ERROR, "verify needs a backup: this table has none");
  ts_env_commit_lock(st->primary);   /* not between this process's two writes */
  rc = ts_mirror_verify(st->primary, st->backup, err);
  ts_env_commit_unlock(st->primary);
  return rc;
}

/* The 'repair' command. */
int ts_store_repair(ts_store *st, ts_err *err) {
  int rc;
  if (!st->backup) return ts_err_set(err, TS_ERROR, "repair needs a backup: this table has none");
  ts_env_commit_lock(st->primary);
  rc = ts_mirror_catch_up(st->primary, st->backup, st->job.level, 0, err);
  if (!rc && ts_mirror_verify(st->primary, st->backup, err) != TS_OK) {
    /* level but different (written through another table): copy */
    rc = ts_mirror_catch_up(st->primary, st->backup, st->job.level, 1, err);
  }
  ts_env_commit_unlock(st->primary);
  return rc;
}

/**************************************************************************
** The merged cursor.
*/
typedef enum ts_src { TS_SRC_LMDB = 0, TS_SRC_MEM = 1, TS_SRC_DELTA = 2 } ts_src;

/* A row of a creation-order scan that is not in the LMDB creation index:
** a key created by the delta, or an ephemeral row. */
typedef struct ts_extra ts_extra;
struct ts_extra {
  const unsigned char *key;
  size_t nkey;
  uint64_t rowid, epoch;
  const ts_delta_entry *e;     /* the delta's row (its value), or NULL */
  const ts_mem_row *m;         /* the ephemeral row, or NULL */
};

struct ts_cursor {
  ts_store *st;
  ts_cursor *next_idle;        /* the store's list of idle cursors */
  ts_cursor *next_live, *prev_live;  /* the store's list of open cursors */
  ts_delta *d;                 /* a reference of the cursor's own */
  ts_snap snap;                /* kept (reset) while idle, renewed on use */
  int snap_live;
  ts_mem_snap *msnap;          /* NULL without ephemeral rows */
  ts_scan plan;
  unsigned char lo[TS_LMDB_KEY_MAX], hi[TS_LMDB_KEY_MAX], ns[TS_LMDB_KEY_MAX];
  ts_lcur lc;                  /* LMDB head (data or created db); kept open */
  size_t mi;                   /* ephemeral head (key scans); >= count: none */
  const ts_delta_entry *de;    /* delta head (key scans) */
  uint64_t dgen;               /* delta generation de belongs to */
  ts_extra *extra;             /* creation-order scans, in scan order */
  size_t nextra, iextra, aextra;
  uint64_t nsid;               /* creation-order scans: the namespace id */
  int adv_c, adv_m, adv_d;     /* which heads the current row consumed */
  int eof;
  /* the namespace of the last key looked at (ts_cursor_ns) */
  unsigned char nsc[TS_LMDB_KEY_MAX];   /* its part "pns 0 sns 0" */
  size_t nsc_len;              /* 0: nothing cached */
  size_t nsc_pns;              /* bytes of pns */
  ts_ns_route nsc_route;       /* how the rules route its keys */
  int ns_fixed;                /* every row of the plan lies in it */
  /* current row */
  ts_src src;
  const unsigned char *key;    /* kbuf, or the LMDB head's copy (key scans) */
  size_t nkey;
  unsigned char kbuf[TS_LMDB_KEY_MAX + 1];  /* NUL-terminated */
  uint64_t rowid, epoch;
  ts_record rec;               /* src LMDB: the record, valid at map rec_gen */
  uint64_t rec_gen;
  const ts_delta_entry *cur_e; /* when src == TS_SRC_DELTA */
  const ts_mem_row *cur_m;     /* when src == TS_SRC_MEM */
};

/* An idle cursor of the store (its read transaction and LMDB cursor come
** along), else a new one; no view yet.  NULL when out of memory. */
static ts_cursor *ts_cursor_take(ts_store *st) {
  ts_cursor *c = st->idle;
  if (c) {
    st->idle = c->next_idle;
    st->nidle--;
  } else if ((c = calloc(1, sizeof(*c))) != NULL) {
    c->st = st;
  }
  return c;
}

/* A cursor over the store and the connection's delta. */
int ts_cursor_new(ts_store *st, ts_delta *d, ts_cursor **out, ts_err *err) {
  ts_cursor *c = ts_cursor_take(st);
  if (!c) return ts_err_set(err, TS_NOMEM, "out of memory opening a cursor");
  c->d = d;
  ts_delta_retain(d);
  c->eof = 1;
  c->prev_live = NULL;
  c->next_live = st->live;
  if (st->live) st->live->prev_live = c;
  st->live = c;
  *out = c;
  return TS_OK;
}

/* Free a cursor and everything it holds. */
static void ts_cursor_destroy(ts_cursor *c) {
  ts_lcur_close(&c->lc);
  ts_snap_free(&c->snap);
  free(c->extra);
  free(c);
}

/* Free the store's idle cursors (the store closes). */
static void ts_cursor_pool_drain(ts_store *st) {
  while (st->idle) {
    ts_cursor *c = st->idle;
    st->idle = c->next_idle;
    ts_cursor_destroy(c);
  }
  st->nidle = 0;
}

/* Keep a cursor whose view ended idle in its store for the next statement
** or lookup, or free it when the store keeps enough. */
static void ts_cursor_keep(ts_cursor *c) {
  ts_store *st = c->st;
  if (st->nidle >= TS_CURSOR_POOL) {
    ts_cursor_destroy(c);
    return;
  }
  c->next_idle = st->idle;
  st->idle = c;
  st->nidle++;
}

/* End the cursor's view (its snapshots and delta) and keep it. */
void ts_cursor_free(ts_cursor *c) {
  if (!c) return;
  if (!c->eof && c->src != TS_SRC_DELTA) {
    c->st->closed_rowid = c->rowid;
    memcpy(c->st->closed_key, c->key, c->nkey);
    c->st->nclosed_key = c->nkey;
  }
  if (c->prev_live) c->prev_live->next_live = c->next_live;
  else c->st->live = c->next_live;
  if (c->next_live) c->next_live->prev_live = c->prev_live;
  ts_snap_end(&c->snap);
  c->snap_live = 0;
  if (c->msnap) ts_mem_snap_release(c->st->mem, c->msnap);
  c->msnap = NULL;
  ts_delta_free(c->d);
  c->d = NULL;
  ts_cursor_keep(c);
}

/* A snapshot of the newest committed state for one lookup, on an idle
** cursor's read transaction (lookups share the store's few LMDB reader
** slots with its statements); wait: first let the coordinator write the
** commits it acknowledged (a caller that asked it about the key already
** does not).  NULL on failure, with err set. */
static ts_cursor *ts_store_reader(ts_store *st, int wait, ts_snap **snap, ts_err *err) {
  ts_cursor *c;
  if (wait && ts_coord_visible(st->coord, err)) return NULL;
  c = ts_cursor_take(st);
  if (!c) {
    ts_err_set(err, TS_NOMEM, "out of memory reading a key");
    return NULL;
  }
  if (ts_snap_begin(&c->snap, st->primary, err)) {
    ts_cursor_keep(c);
    return NULL;
  }
  *snap = &c->snap;
  return c;
}

/* End a lookup's snapshot and keep its cursor. */
static void ts_store_reader_done(ts_cursor *c) {
  ts_snap_end(&c->snap);
  ts_cursor_keep(c);
}

/* Encoded key of committed rowid in one view: an LMDB snapshot and the
** ephemeral snapshot of the same state (NULL: none).  TS_NOTFOUND when
** the view has no such row. */
static int ts_view_key_by_rowid(ts_store *st, ts_snap *snap, const ts_mem_snap *ms,
                                uint64_t rowid, unsigned char *buf, size_t *n,
                                ts_err *err) {
  int rc;
  ts_env_read_lock(st->primary);
  rc = ts_snap_key_by_rowid(snap, rowid, buf, n, err);
  ts_env_read_unlock(st->primary);
  if (rc == TS_OK && ts_store_route(st, buf, *n) == TS_TIER_EPHEMERAL) rc = TS_NOTFOUND;
  if (rc == TS_NOTFOUND && ms) {
    const ts_mem_row *r = ts_mem_snap_by_rowid(ms, rowid);
    if (r && ts_store_route(st, r->key, r->nkey) == TS_TIER_EPHEMERAL) {
      memcpy(buf, r->key, r->nkey);
      *n = r->nkey;
      rc = TS_OK;
    }
  }
  return rc;
}

/* Encoded key of committed rowid in the newest committed state. */
static int ts_newest_key_by_rowid(ts_store *st, uint64_t rowid, unsigned char *buf,
                                  size_t *n, ts_err *err) {
  ts_snap *snap;
  ts_mem_snap *ms = st->mem ? ts_mem_snapshot(st->mem) : NULL;
  ts_cursor *reader = ts_store_reader(st, 1, &snap, err);
  int rc = reader ? ts_view_key_by_rowid(st, snap, ms, rowid, buf, n, err) : err->code;
  if (reader) ts_store_reader_done(reader);
  if (ms) ts_mem_snap_release(st->mem, ms);
  return rc;
}

/* Encoded key of a visible rowid.  The delta knows the rowids of its own
** PUTs (new keys' provisional ones, and the stored ones that replaced keys
** keep, which must stay reachable even after another connection deleted
** the stored key).  Any other rowid is looked up in the views of the open
** cursors, newest first: a DELETE or UPDATE hands over the rowids its scan
** read, and resolving them all in that scan's snapshot keeps the statement
** on one state (the newest state may have lost some of its rows and kept
** others, and the statement would touch only those).  A one-row plan
** closes its cursor before handing the rowid over: the row the last cursor
** closed on answers for it.  Else the newest state. */
int ts_store_key_by_rowid(ts_store *st, const ts_delta *d, uint64_t rowid,
                          unsigned char *buf, size_t *n, ts_err *err) {
  const ts_delta_entry *e = ts_delta_by_rowid(d, rowid);
  int rc = TS_NOTFOUND;
  if (e) {
    memcpy(buf, e->key, e->nkey);
    *n = e->nkey;
    return TS_OK;
  }
  if (rowid >= TS_ROWID_PROVISIONAL) return TS_NOTFOUND;
  for (ts_cursor *c = st->live; c && rc == TS_NOTFOUND; c = c->next_live) {
    if (c->snap_live) rc = ts_view_key_by_rowid(st, &c->snap, c->msnap, rowid, buf, n, err);
  }
  if (rc == TS_NOTFOUND && rowid != 0 && rowid == st->closed_rowid) {
    /* a one-row plan: SQLite closed the cursor before handing the rowid */
    memcpy(buf, st->closed_key, st->nclosed_key);
    *n = st->nclosed_key;
    rc = TS_OK;
  }
  if (rc == TS_NOTFOUND) rc = ts_newest_key_by_rowid(st, rowid, buf, n, err);
  if (rc) return rc;
  e = ts_delta_get(d, buf, *n);
  if (e && (e->op == TS_OP_DEL || e->fresh)) return TS_NOTFOUND;
  return TS_OK;
}

int ts_cursor_eof(const ts_cursor *c) { return c->eof; }
const unsigned char *ts_cursor_key(const ts_cursor *c, size_t *n) {
  *n = c->nkey;
  return c->key;
}
uint64_t ts_cursor_rowid(const ts_cursor *c) { return c->rowid; }
uint64_t ts_cursor_epoch(const ts_cursor *c) { return c->epoch; }
ts_tier_id ts_cursor_tier(const ts_cursor *c) {
  if (c->src == TS_SRC_MEM) return TS_TIER_EPHEMERAL;
  if (c->src == TS_SRC_DELTA) return ts_store_route(c->st, c->key, c->nkey);
  return TS_TIER_PRIMARY;
}

/* memcmp order of two byte strings, shorter prefix first. */
static int ts_bytes_cmp(const unsigned char *a, size_t na,
                        const unsigned char *b, size_t nb) {
  int r = memcmp(a, b, na < nb ? na : nb);
  if (r) return r;
  return na < nb ? -1 : na > nb;
}

/* Is key within the plan's key bounds on the side the scan moves towards? */
static int ts_key_before_end(const ts_cursor *c, const unsigned char *k,
                             size_t nk) {
  const ts_scan *p = &c->plan;
  if (!p->desc) {
    if (!p->hi) return 1;
    int r = ts_bytes_cmp(k, nk, p->hi, p->nhi);
    return r < 0 || (r == 0 && p->hi_incl);
  }
  if (!p->lo) return 1;
  int r = ts_bytes_cmp(k, nk, p->lo, p->nlo);
  return r > 0 || (r == 0 && p->lo_incl);
}

/* The key a scan starts from, and whether that key itself is excluded. */
static const unsigned char *ts_scan_start(const ts_cursor *c, size_t *n,
                                          int *excl) {
  const ts_scan *p = &c->plan;
  if (!p->desc) {
    *n = p->nlo;
    *excl = p->lo && !p->lo_incl;
    return p->lo;
  }
  *n = p->nhi;
  *excl = p->hi && !p->hi_incl;
  return p->hi;
}

/* Make the namespace cache describe key k: a key that starts with the
** cached part "pns 0 sns 0" lies in that namespace, and a plan within one
** namespace primed it for all its rows, so a scan splits and routes names
** once per namespace, not once per row (the router's rules live as long
** as the store).  TS_CORRUPT when k holds no separators. */
static int ts_cursor_ns(ts_cursor *c, const unsigned char *k, size_t n) {
  ts_name pns, sns, key;
  if (c->ns_fixed || (c->nsc_len && n >= c->nsc_len && memcmp(k, c->nsc, c->nsc_len) == 0)) return TS_OK;
  if (ts_key_decode(k, n, &pns, &sns, &key)) return TS_CORRUPT;
  c->nsc_len = n - key.n;
  c->nsc_pns = pns.n;
  memcpy(c->nsc, k, c->nsc_len);
  c->nsc_route = c->st->mem ? ts_router_route_ns(c->st->router, pns, sns) : TS_NS_PRIMARY;
  return TS_OK;
}

/* The length of the namespace part every key within a key scan's or a
** creation-order scan's bounds shares, or 0 (several namespaces). */
static size_t ts_plan_ns_len(const ts_scan *p) {
  size_t nns;
  if (p->kind == TS_SCAN_CREATED) return ts_key_ns_len(p->ns, p->nns) == p->nns ? p->nns : 0;
  if (p->kind != TS_SCAN_KEYS || !p->lo || !p->hi) return 0;
  nns = ts_key_ns_len(p->lo, p->nlo);
  if (!nns || p->nhi < nns || memcmp(p->hi, p->lo, nns - 1) != 0) return 0;
  if (p->hi[nns - 1] == 0) return nns;               /* hi lies in it too */
  return p->hi[nns - 1] == 1 && p->nhi == nns && !p->hi_incl ? nns : 0;   /* hi ends it */
}

/* Prime the namespace cache with the plan's namespace when all its rows
** lie in one. */
static void ts_cursor_plan_ns(ts_cursor *c) {
  const ts_scan *p = &c->plan;
  const unsigned char *k = p->kind == TS_SCAN_CREATED ? p->ns : p->lo;
  size_t n = p->kind == TS_SCAN_KEY ? p->nlo : p->kind == TS_SCAN_ROWID ? 0 : ts_plan_ns_len(p);
  c->ns_fixed = 0;   /* before ts_cursor_ns, which trusts it */
  c->ns_fixed = n && ts_cursor_ns(c, k, n) == TS_OK;
}

/* The tier of a key (see ts_cursor_ns). */
static ts_tier_id ts_cursor_route(ts_cursor *c, const unsigned char *k,
                                  size_t n) {
  if (!c->st->mem || ts_cursor_ns(c, k, n)) return TS_TIER_PRIMARY;
  if (c->nsc_route == TS_NS_PER_KEY) return ts_store_route(c->st, k, n);
  return c->nsc_route == TS_NS_EPHEMERAL ? TS_TIER_EPHEMERAL : TS_TIER_PRIMARY;
}

/* The current row's names, split with the namespace cache. */
int ts_cursor_names(ts_cursor *c, ts_name *pns, ts_name *sns, ts_name *key) {
  if (ts_cursor_ns(c, c->key, c->nkey)) return TS_CORRUPT;
  pns->p = (const char *)c->key;
  pns->n = c->nsc_pns;
  sns->p = (const char *)c->key + c->nsc_pns + 1;
  sns->n = c->nsc_len - c->nsc_pns - 2;
  key->p = (const char *)c->key + c->nsc_len;
  key->n = c->nkey - c->nsc_len;
  return memchr(key->p, 0, key->n) ? TS_CORRUPT : TS_OK;
}

/* Does an LMDB row belong to the ephemeral tier (rules changed since it was
** written)?  Such rows are not served from the primary. */
static int ts_lmdb_hidden(ts_cursor *c, const unsigned char *k, size_t n) {
  return ts_cursor_route(c, k, n) == TS_TIER_EPHEMERAL;
}

/* Move the delta head past NONE entries; NULL once out of range. */
static void ts_delta_head_settle(ts_cursor *c) {
  while (c->de && c->de->op == TS_OP_NONE) c->de = ts_delta_step(c->d, c->de, c->plan.desc);
  if (c->de && !ts_key_before_end(c, c->de->key, c->de->nkey)) c->de = NULL;
}

/* Position the delta head at key k (or just past it when excl). */
static void ts_delta_head_seek(ts_cursor *c, const unsigned char *k, size_t n,
                               int excl) {
  c->de = ts_delta_seek(c->d, k, n, c->plan.desc);
  if (c->de && excl && ts_bytes_cmp(c->de->key, c->de->nkey, k, n) == 0) {
    c->de = ts_delta_step(c->d, c->de, c->plan.desc);
  }
  c->dgen = ts_delta_generation(c->d);
  ts_delta_head_settle(c);
}

/* Step the ephemeral head one row in scan order. */
static void ts_mem_head_step(ts_cursor *c) {
  size_t n = ts_mem_snap_count(c->msnap);
  if (c->mi >= n) return;
  c->mi = c->plan.desc ? (c->mi == 0 ? n : c->mi - 1) : c->mi + 1;
}

/* The ephemeral head's row if within range (skipping rows this table's
** rules do not route to memory), else NULL. */
static const ts_mem_row *ts_mem_head(ts_cursor *c) {
  const ts_mem_row *r;
  if (!c->msnap) return NULL;
  while ((r = ts_mem_snap_row(c->msnap, c->mi)) != NULL) {
    if (!ts_key_before_end(c, r->key, r->nkey)) return NULL;
    if (ts_cursor_route(c, r->key, r->nkey) == TS_TIER_EPHEMERAL) return r;
    ts_mem_head_step(c);
  }
  return NULL;
}

/* The LMDB head if within range, skipping rows routed to memory.  Lock
** held. */
static int ts_lmdb_head(ts_cursor *c, int *have, ts_err *err) {
  *have = 0;
  while (c->lc.valid && ts_key_before_end(c, c->lc.k.mv_data, c->lc.k.mv_size)) {
    if (!ts_lmdb_hidden(c, c->lc.k.mv_data, c->lc.k.mv_size)) {
      *have = 1;
      return TS_OK;
    }
    int rc = ts_lcur_step(&c->lc, c->plan.desc, err);
    if (rc) return rc;
  }
  return TS_OK;
}

/* Copy the current row's key, NUL-terminated (see ts_cursor_key). */
static void ts_row_key(ts_cursor *c, const unsigned char *k, size_t n) {
  memcpy(c->kbuf, k, n);
  c->kbuf[n] = 0;
  c->key = c->kbuf;
  c->nkey = n;
}

/* Make the current row the delta entry e. */
static void ts_row_from_delta(ts_cursor *c, const ts_delta_entry *e, uint64_t rowid) {
  c->src = TS_SRC_DELTA;
  c->cur_e = e;
  ts_row_key(c, e->key, e->nkey);
  c->rowid = rowid;
  c->epoch = 0;
}

/* Make the current row the ephemeral row r. */
static void ts_row_from_mem(ts_cursor *c, const ts_mem_row *r) {
  c->src = TS_SRC_MEM;
  c->cur_m = r;
  ts_row_key(c, r->key, r->nkey);
  c->rowid = r->rowid;
  c->epoch = r->epoch;
}

/* Make the current row the committed record c->rec, read at map
** generation gen; the caller set its key. */
static void ts_row_from_lmdb(ts_cursor *c, uint64_t gen) {
  c->src = TS_SRC_LMDB;
  c->rowid = c->rec.rowid;
  c->epoch = c->rec.epoch;
  c->rec_gen = gen;
}

/* Decode the record under the LMDB head into c->rec.  Lock held. */
static int ts_lmdb_record(ts_cursor *c, ts_err *err) {
  if (ts_record_decode(c->lc.v.mv_data, c->lc.v.mv_size, &c->rec)) {
    return ts_err_set(err, TS_CORRUPT, "damaged record in LMDB environment '%s'",
                      ts_env_path(c->st->primary));
  }
  return TS_OK;
}

/* Point the LMDB head at db in the cursor's snapshot, reusing the LMDB
** cursor of an earlier scan when it walks the same database.  Lock held. */
static int ts_cursor_lc(ts_cursor *c, ts_db_id db, ts_err *err) {
  if (c->lc.cur && c->lc.db == db) return ts_lcur_renew(&c->lc, err);
  ts_lcur_close(&c->lc);
  return ts_lcur_open(&c->lc, &c->snap, db, err);
}

/* Make the LMDB head the current row, its key the head's own copy.  Lock
** held. */
static int ts_keys_lmdb_row(ts_cursor *c, ts_err *err) {
  int rc = ts_lmdb_record(c, err);
  if (rc) return rc;
  c->key = c->lc.kbuf;
  c->nkey = c->lc.nkbuf;
  ts_row_from_lmdb(c, c->lc.gen);
  return TS_OK;
}

/* Pick the next row of a key scan from the three heads: LMDB and memory
** (disjoint by routing) make the committed candidate; the delta overrides
** it.  With no ephemeral rows and no delta entry ahead, the LMDB head is
** the row (the common case, without the merge).  Lock held. */
static int ts_keys_settle(ts_cursor *c, ts_err *err) {
  if (!c->msnap && !c->de) {
    int have, rc = ts_lmdb_head(c, &have, err);
    c->adv_m = c->adv_d = 0;
    c->adv_c = have;
    c->eof = !have;
    return rc || !have ? rc : ts_keys_lmdb_row(c, err);
  }
  for (;;) {
    const ts_mem_row *m = ts_mem_head(c);
    const unsigned char *ck = NULL;
    size_t nck = 0;
    int have_c, from_mem = 0, cmp, rc;
    rc = ts_lmdb_head(c, &have_c, err);
    if (rc) return rc;
    if (have_c) {
      ck = c->lc.k.mv_data;
      nck = c->lc.k.mv_size;
    }
    if (m) {
      int r = have_c ? ts_bytes_cmp(m->key, m->nkey, ck, nck) : -1;
      if (c->plan.desc && have_c) r = -r;
      if (r < 0) {
        ck = m->key;
        nck = m->nkey;
        from_mem = 1;
      }
    }
    c->adv_c = c->adv_m = c->adv_d = 0;
    if (!ck && !c->de) {
      c->eof = 1;
      return TS_OK;
    }
    if (ck && c->de) {
      cmp = ts_bytes_cmp(ck, nck, c->de->key, c->de->nkey);
      if (c->plan.desc) cmp = -cmp;
    } else {
      cmp = ck ? -1 : 1;
    }
    if (cmp <= 0) {
      if (from_mem) c->adv_m = 1;
      else c->adv_c = 1;
    }
    if (cmp >= 0) c->adv_d = 1;
    if (c->adv_d && c->de->op == TS_OP_DEL) {
      /* the delta hides this key: consume the heads and look again */
      if (c->adv_c) rc = ts_lcur_step(&c->lc, c->plan.desc, err);
      if (c->adv_m) ts_mem_head_step(c);
      if (rc) return rc;
      c->de = ts_delta_step(c->d, c->de, c->plan.desc);
      ts_delta_head_settle(c);
      continue;
    }
    c->eof = 0;
    if (c->adv_d) {
      ts_row_from_delta(c, c->de, c->de->rowid);
    } else if (from_mem) {
      ts_row_from_mem(c, m);
    } else {
      return ts_keys_lmdb_row(c, err);
    }
    return TS_OK;
  }
}

/* Start a key scan.  Lock held. */
static int ts_keys_begin(ts_cursor *c, ts_err *err) {
  size_t n;
  int excl;
  const unsigned char *k = ts_scan_start(c, &n, &excl);
  int rc = ts_cursor_lc(c, TS_DB_DATA, err);
  if (rc) return rc;
  rc = ts_lcur_seek(&c->lc, k, n, c->plan.desc, err);
  if (!rc && excl && c->lc.valid &&
      ts_bytes_cmp(c->lc.k.mv_data, c->lc.k.mv_size, k, n) == 0) {
    rc = ts_lcur_step(&c->lc, c->plan.desc, err);
  }
  if (rc) return rc;
  if (c->msnap) {
    size_t count = ts_mem_snap_count(c->msnap);
    c->mi = k ? ts_mem_snap_seek(c->msnap, k, n, c->plan.desc) : (c->plan.desc ? count - 1 : 0);
    if (c->mi > count) c->mi = count;   /* desc found nothing: (size_t)-1 */
    if (excl && c->mi < count) {
      const ts_mem_row *r = ts_mem_snap_row(c->msnap, c->mi);
      if (ts_bytes_cmp(r->key, r->nkey, k, n) == 0) ts_mem_head_step(c);
    }
  }
  ts_delta_head_seek(c, k, n, excl);
  return ts_keys_settle(c, err);
}

/* Step a key scan (the delta head first: a reset re-seeks it past the
** current key, which the LMDB head's step replaces).  Lock held. */
static int ts_keys_next(ts_cursor *c, ts_err *err) {
  int rc = TS_OK;
  if (c->dgen != ts_delta_generation(c->d)) {
    ts_delta_head_seek(c, c->key, c->nkey, 1);   /* the delta was reset */
  } else if (c->adv_d) {
    c->de = ts_delta_step(c->d, c->de, c->plan.desc);
    ts_delta_head_settle(c);
  }
  if (c->adv_c) rc = ts_lcur_step(&c->lc, c->plan.desc, err);
  else rc = ts_lcur_revalidate(&c->lc, err);
  if (rc) return rc;
  if (c->adv_m) ts_mem_head_step(c);
  return ts_keys_settle(c, err);
}

/* Order extra rows by rowid (qsort callback). */
static int ts_extra_cmp(const void *a, const void *b) {
  uint64_t ra = ((const ts_extra *)a)->rowid, rb = ((const ts_extra *)b)->rowid;
  return ra < rb ? -1 : ra > rb;
}

/* Append an extra row. */
static int ts_extra_add(ts_cursor *c, const ts_extra *x, ts_err *err) {
  ts_extra *grown = ts_grow(c->extra, &c->aextra, sizeof(*grown), c->nextra + 1);
  if (!grown) return ts_err_set(err, TS_NOMEM, "out of memory in a listing");
  c->extra = grown;
  c->extra[c->nextra++] = *x;
  return TS_OK;
}

/* Collect the rows of the namespace that the LMDB creation index does not
** hold: keys the delta creates, and ephemeral rows (unless the delta hides
** or re-creates them); sorted in scan order. */
static int ts_created_collect(ts_cursor *c, ts_err *err) {
  const ts_scan *p = &c->plan;
  ts_extra x;
  int rc = TS_OK;
  c->nextra = c->iextra = 0;
  for (const ts_delta_entry *e = ts_delta_seek(c->d, p->ns, p->nns, 0); e && !rc;
       e = ts_delta_step(c->d, e, 0)) {
    if (e->nkey < p->nns || memcmp(e->key, p->ns, p->nns) != 0) break;
    if (e->op != TS_OP_PUT || !e->fresh || ts_key_ns_len(e->key, e->nkey) != p->nns) continue;
    if (e->rowid < p->rlo || e->rowid > p->rhi) continue;
    memset(&x, 0, sizeof(x));
    x.key = e->key;
    x.nkey = e->nkey;
    x.rowid = e->rowid;
    x.e = e;
    rc = ts_extra_add(c, &x, err);
  }
  for (size_t i = c->msnap ? ts_mem_snap_seek(c->msnap, p->ns, p->nns, 0) : 0;
       c->msnap && i < ts_mem_snap_count(c->msnap) && !rc; i++) {
    const ts_mem_row *r = ts_mem_snap_row(c->msnap, i);
    const ts_delta_entry *e;
    if (r->nkey < p->nns || memcmp(r->key, p->ns, p->nns) != 0) break;
    if (ts_key_ns_len(r->key, r->nkey) != p->nns || r->rowid < p->rlo || r->rowid > p->rhi) continue;
    if (ts_store_route(c->st, r->key, r->nkey) != TS_TIER_EPHEMERAL) continue;
    e = ts_delta_get(c->d, r->key, r->nkey);
    if (e && (e->op == TS_OP_DEL || e->fresh)) continue;
    memset(&x, 0, sizeof(x));
    x.key = r->key;
    x.nkey = r->nkey;
    x.rowid = r->rowid;
    x.epoch = r->epoch;
    x.e = e;
    x.m = r;
    rc = ts_extra_add(c, &x, err);
  }
  if (rc) return rc;
  if (c->nextra > 1) qsort(c->extra, c->nextra, sizeof(*c->extra), ts_extra_cmp);
  if (p->desc) {
    for (size_t i = 0; i < c->nextra / 2; i++) {
      ts_extra t = c->extra[i];
      c->extra[i] = c->extra[c->nextra - 1 - i];
      c->extra[c->nextra - 1 - i] = t;
    }
  }
  return TS_OK;
}

/* LMDB creation-index head: its rowid if within the namespace and range,
** else 0 (rowids start at 1).  Lock held. */
static uint64_t ts_created_head(ts_cursor *c) {
  const ts_scan *p = &c->plan;
  const unsigned char *k = c->lc.k.mv_data;
  uint64_t r;
  if (!c->nsid || !c->lc.valid || c->lc.k.mv_size != 16 || ts_be64_get(k) != c->nsid) return 0;
  r = ts_be64_get(k + 8);
  return (r < p->rlo || r > p->rhi) ? 0 : r;
}

/* Pick the next row of a creation-order scan.  Lock held. */
static int ts_created_settle(ts_cursor *c, ts_err *err) {
  const ts_scan *p = &c->plan;
  for (;;) {
    uint64_t lr = ts_created_head(c);
    const ts_extra *x = c->iextra < c->nextra ? &c->extra[c->iextra] : NULL;
    const ts_delta_entry *e;
    int rc;
    c->adv_c = c->adv_d = c->adv_m = 0;
    if (!lr && !x) {
      c->eof = 1;
      return TS_OK;
    }
    c->eof = 0;
    if (x && (!lr || (p->desc ? x->rowid > lr : x->rowid < lr))) {
      c->adv_d = 1;
      if (x->e) {
        ts_row_from_delta(c, x->e, x->rowid);
      } else {
        ts_row_from_mem(c, x->m);
      }
      return TS_OK;
    }
    c->adv_c = 1;
    if (p->nns + c->lc.v.mv_size > TS_LMDB_KEY_MAX) {
      return ts_err_set(err, TS_CORRUPT, "damaged creation index in LMDB environment '%s'",
                        ts_env_path(c->st->primary));
    }
    memcpy(c->kbuf, p->ns, p->nns);
    memcpy(c->kbuf + p->nns, c->lc.v.mv_data, c->lc.v.mv_size);
    c->nkey = p->nns + c->lc.v.mv_size;
    c->kbuf[c->nkey] = 0;
    c->key = c->kbuf;
    c->rowid = lr;
    e = ts_delta_get(c->d, c->key, c->nkey);
    if ((e && (e->op == TS_OP_DEL || e->fresh)) || ts_lmdb_hidden(c, c->key, c->nkey)) {
      rc = ts_lcur_step(&c->lc, p->desc, err);   /* hidden or re-created */
      if (rc) return rc;
      continue;
    }
    if (e) {
      ts_row_from_delta(c, e, lr);
      return TS_OK;
    }
    rc = ts_snap_get(&c->snap, c->key, c->nkey, &c->rec, err);
    if (rc == TS_NOTFOUND) {
      return ts_err_set(err, TS_CORRUPT, "creation index of LMDB environment '%s' names a missing key",
                        ts_env_path(c->st->primary));
    }
    if (rc) return rc;
    ts_row_from_lmdb(c, ts_env_map_generation(c->st->primary));
    c->rowid = lr;
    return TS_OK;
  }
}

/* Start a creation-order scan.  Lock held. */
static int ts_created_begin(ts_cursor *c, ts_err *err) {
  const ts_scan *p = &c->plan;
  unsigned char k[16];
  int rc = ts_created_collect(c, err);
  if (!rc) rc = ts_snap_ns_id(&c->snap, p->ns, p->nns, &c->nsid, err);
  if (rc == TS_NOTFOUND) {
    c->nsid = 0;            /* nothing committed in this namespace */
    rc = TS_OK;
  }
  if (!rc) rc = ts_cursor_lc(c, TS_DB_CREATED, err);
  if (rc) return rc;
  c->dgen = ts_delta_generation(c->d);
  if (c->nsid) {
    ts_be64_put(k, c->nsid);
    ts_be64_put(k + 8, p->desc ? p->rhi : p->rlo);
    rc = ts_lcur_seek(&c->lc, k, 16, p->desc, err);
  }
  return rc ? rc : ts_created_settle(c, err);
}

/* Step a creation-order scan.  Lock held. */
static int ts_created_next(ts_cursor *c, ts_err *err) {
  int rc;
  if (c->dgen != ts_delta_generation(c->d)) {
    /* the delta was reset: its rows are gone, ephemeral rows stay */
    size_t k = 0;
    for (size_t i = c->iextra + (c->adv_d ? 1 : 0); i < c->nextra; i++) {
      if (!c->extra[i].e || c->extra[i].m) {
        c->extra[k] = c->extra[i];
        c->extra[k++].e = NULL;
      }
    }
    c->nextra = k;
    c->iextra = 0;
    c->adv_d = 0;
    c->dgen = ts_delta_generation(c->d);
  } else if (c->adv_d) {
    c->iextra++;
  }
  if (c->adv_c) {
    rc = ts_lcur_step(&c->lc, c->plan.desc, err);
  } else {
    rc = ts_lcur_revalidate(&c->lc, err);
  }
  return rc ? rc : ts_created_settle(c, err);
}

/* Resolve a single rowid.  Lock held. */
static int ts_rowid_begin(ts_cursor *c, ts_err *err) {
  uint64_t r = c->plan.rowid;
  const ts_delta_entry *e;
  const ts_mem_row *m = NULL;
  int rc;
  c->eof = 1;
  c->dgen = ts_delta_generation(c->d);
  if (r >= TS_ROWID_PROVISIONAL) {
    e = ts_delta_by_rowid(c->d, r);
    if (e) {
      c->eof = 0;
      ts_row_from_delta(c, e, r);
    }
    return TS_OK;
  }
  rc = ts_snap_key_by_rowid(&c->snap, r, c->kbuf, &c->nkey, err);
  c->key = c->kbuf;
  if (rc == TS_OK) c->kbuf[c->nkey] = 0;
  if (rc == TS_OK && ts_lmdb_hidden(c, c->key, c->nkey)) rc = TS_NOTFOUND;
  if (rc == TS_NOTFOUND && c->msnap) {
    m = ts_mem_snap_by_rowid(c->msnap, r);
    if (!m || ts_cursor_route(c, m->key, m->nkey) != TS_TIER_EPHEMERAL) return TS_OK;
    ts_row_key(c, m->key, m->nkey);
    rc = TS_OK;
  }
  if (rc == TS_NOTFOUND) return TS_OK;
  if (rc) return rc;
  e = ts_delta_get(c->d, c->key, c->nkey);
  if (e && (e->op == TS_OP_DEL || e->fresh)) return TS_OK;
  c->eof = 0;
  if (e) {
    ts_row_from_delta(c, e, r);
    return TS_OK;
  }
  if (m) {
    ts_row_from_mem(c, m);
    return TS_OK;
  }
  rc = ts_snap_get(&c->snap, c->key, c->nkey, &c->rec, err);
  if (rc == TS_NOTFOUND) {
    c->eof = 1;
    return TS_OK;
  }
  if (rc) return rc;
  ts_row_from_lmdb(c, ts_env_map_generation(c->st->primary));
  c->rowid = r;
  return TS_OK;
}

/* Resolve a single key: the delta's word on it, else the newest commit of
** its tier.  Lock held. */
static int ts_key_begin(ts_cursor *c, ts_err *err) {
  const unsigned char *k = c->plan.lo;
  size_t n = c->plan.nlo;
  const ts_delta_entry *e = ts_delta_count(c->d) ? ts_delta_get(c->d, k, n) : NULL;
  const ts_mem_row *m;
  int rc;
  c->dgen = ts_delta_generation(c->d);
  if (e) {
    c->eof = e->op != TS_OP_PUT;
    if (!c->eof) ts_row_from_delta(c, e, e->rowid);
    return TS_OK;
  }
  if (ts_cursor_route(c, k, n) == TS_TIER_EPHEMERAL) {
    m = c->msnap ? ts_mem_snap_get(c->msnap, k, n) : NULL;
    c->eof = m == NULL;
    if (m) ts_row_from_mem(c, m);
    return TS_OK;
  }
  rc = ts_snap_get(&c->snap, k, n, &c->rec, err);
  if (rc) return rc == TS_NOTFOUND ? TS_OK : rc;
  c->eof = 0;
  ts_row_key(c, k, n);
  ts_row_from_lmdb(c, ts_env_map_generation(c->st->primary));
  return TS_OK;
}

/* Copy the plan's bounds into the cursor's own buffers. */
static void ts_cursor_copy_plan(ts_cursor *c, const ts_scan *plan) {
  c->plan = *plan;
  if (plan->lo) {
    memcpy(c->lo, plan->lo, plan->nlo);
    c->plan.lo = c->lo;
  }
  if (plan->hi) {
    memcpy(c->hi, plan->hi, plan->nhi);
    c->plan.hi = c->hi;
  }
  if (plan->ns) {
    memcpy(c->ns, plan->ns, plan->nns);
    c->plan.ns = c->ns;
  }
}

/* Take the cursor's view: the newest LMDB snapshot and, with ephemeral
** rules, the ephemeral tier's, both of one state (under the view lock); an
** empty ephemeral snapshot is dropped at once, so scans skip that head. */
static int ts_cursor_snapshots(ts_cursor *c, ts_err *err) {
  ts_env *env = c->st->primary;
  int rc = ts_coord_visible(c->st->coord, err);
  if (rc) return rc;
  if (c->st->mem) ts_env_view_lock(env, 0);
  rc = ts_snap_begin(&c->snap, env, err);
  if (!rc && c->st->mem) c->msnap = ts_mem_snapshot(c->st->mem);
  if (c->st->mem) ts_env_view_unlock(env);
  if (rc) return rc;
  if (c->msnap && ts_mem_snap_count(c->msnap) == 0) {
    ts_mem_snap_release(c->st->mem, c->msnap);
    c->msnap = NULL;
  }
  c->snap_live = 1;
  return TS_OK;
}

/* Position on the first row of plan. */
int ts_cursor_begin(ts_cursor *c, const ts_scan *plan, ts_err *err) {
  ts_env *env = c->st->primary;
  int rc = TS_OK;
  ts_cursor_copy_plan(c, plan);
  ts_cursor_plan_ns(c);
  if (!c->snap_live) {
    rc = ts_cursor_snapshots(c, err);
    if (rc) return rc;
  }
  ts_env_read_lock(env);
  c->lc.valid = 0;
  c->eof = 1;
  switch (c->plan.kind) {
    case TS_SCAN_KEYS: rc = ts_keys_begin(c, err); break;
    case TS_SCAN_CREATED: rc = ts_created_begin(c, err); break;
    case TS_SCAN_ROWID: rc = ts_rowid_begin(c, err); break;
    case TS_SCAN_KEY: rc = ts_key_begin(c, err); break;
  }
  ts_env_read_unlock(env);
  if (rc) c->eof = 1;
  return rc;
}

/* Advance to the next row. */
int ts_cursor_next(ts_cursor *c, ts_err *err) {
  ts_env *env = c->st->primary;
  int rc = TS_OK;
  if (c->eof) return TS_OK;
  ts_env_read_lock(env);
  switch (c->plan.kind) {
    case TS_SCAN_KEYS: rc = ts_keys_next(c, err); break;
    case TS_SCAN_CREATED: rc = ts_created_next(c, err); break;
    case TS_SCAN_ROWID:
    case TS_SCAN_KEY: c->eof = 1; break;
  }
  ts_env_read_unlock(env);
  if (rc) c->eof = 1;
  return rc;
}

/* Read the current committed row's record again after a remap moved the
** map (a key scan re-seeks its head; the others look the key up).  Lock
** held. */
static int ts_cursor_refetch(ts_cursor *c, ts_err *err) {
  int rc;
  if (c->plan.kind == TS_SCAN_KEYS) {
    rc = ts_lcur_revalidate(&c->lc, err);
    if (!rc) rc = ts_lmdb_record(c, err);
  } else {
    rc = ts_snap_get(&c->snap, c->key, c->nkey, &c->rec, err);
  }
  if (!rc) c->rec_gen = ts_env_map_generation(c->st->primary);
  return rc;
}

/* Emit the current row's value while its bytes are valid: a committed
** record is the one the row was read with, unless the map moved since. */
int ts_cursor_value(ts_cursor *c, ts_value_emit emit, void *ctx, ts_err *err) {
  ts_env *env = c->st->primary;
  int rc = TS_OK;
  if (c->eof) return TS_OK;
  if (c->src == TS_SRC_MEM) {
    emit(ctx, &c->cur_m->value);     /* the snapshot keeps it alive */
    return TS_OK;
  }
  if (c->src == TS_SRC_DELTA) {
    const ts_delta_entry *e = c->cur_e;
    if (c->dgen != ts_delta_generation(c->d)) e = ts_delta_get(c->d, c->key, c->nkey);
    if (e && e->op == TS_OP_PUT) emit(ctx, &e->value);
    return TS_OK;
  }
  ts_env_read_lock(env);
  if (c->rec_gen != ts_env_map_generation(env)) rc = ts_cursor_refetch(c, err);
  if (rc == TS_OK) emit(ctx, &c->rec.value);
  ts_env_read_unlock(env);
  return rc == TS_NOTFOUND ? TS_OK : rc;
}
