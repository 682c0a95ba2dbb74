/*
** store.c: a table's view of its tiers.
**
** A store holds the table's primary environment and rules.  Reads merge
** the committed snapshot with the connection's delta (the delta wins key by
** key: a PUT replaces, a DEL hides); writes go to the delta (ext/ does
** that) and reach the tiers in ts_store_flush at commit.
**
** A cursor keeps one LMDB read snapshot for its whole life, so a statement
** reads one consistent state even across several xFilter calls (IN lists).
** It takes the environment's read lock only inside each call, never across
** calls, so a commit in the same thread can always grow the map.
*/
#include "tierstore_int.h"

#include <stdlib.h>
#include <string.h>

struct ts_store {
  ts_env *primary;
  ts_durability durability;
  ts_names_rule names;
  ts_snap lookup;              /* reused for xUpdate's point lookups */
};

/* Open the store's environment. */
int ts_store_open(const ts_store_cfg *cfg, ts_store **out, ts_err *err) {
  ts_store *st = calloc(1, sizeof(*st));
  int rc;
  if (!st) return ts_err_set(err, TS_NOMEM, "out of memory opening a store");
  st->durability = cfg->durability;
  st->names = cfg->names;
  rc = ts_env_open(cfg->primary, cfg->map_size ? cfg->map_size : TS_DEFAULT_MAP_SIZE,
                   &st->primary, err);
  if (rc) {
    free(st);
    return rc;
  }
  *out = st;
  return TS_OK;
}

/* Close the store and release its environment reference. */
void ts_store_close(ts_store *st) {
  if (!st) return;
  ts_snap_free(&st->lookup);
  ts_env_close(st->primary);
  free(st);
}

ts_names_rule ts_store_names(const ts_store *st) { return st->names; }
ts_env *ts_store_primary(ts_store *st) { return st->primary; }

/* Visible state of a key: the delta's word, else the newest commit. */
int ts_store_lookup(ts_store *st, const ts_delta *d, const unsigned char *key,
                    size_t nkey, ts_row_info *info, ts_err *err) {
  const ts_delta_entry *e = ts_delta_get(d, key, nkey);
  ts_record rec;
  int rc;
  if (e) {
    if (e->op != TS_OP_PUT) return TS_NOTFOUND;
    info->rowid = e->rowid;
    info->fresh = e->fresh;
    return TS_OK;
  }
  rc = ts_snap_begin(&st->lookup, st->primary, err);
  if (rc) return rc;
  ts_env_read_lock(st->primary);
  rc = ts_snap_get(&st->lookup, key, nkey, &rec, err);
  ts_env_read_unlock(st->primary);
  ts_snap_end(&st->lookup);
  if (rc == TS_OK) {
    info->rowid = rec.rowid;
    info->fresh = 0;
  }
  return rc;
}

/* Encoded key of a visible rowid (provisional ones live in the delta). */
int ts_store_key_by_rowid(ts_store *st, const ts_delta *d, uint64_t rowid,
                          unsigned char *buf, size_t *n, ts_err *err) {
  const ts_delta_entry *e;
  int rc;
  if (rowid >= TS_ROWID_PROVISIONAL) {
    e = ts_delta_by_rowid(d, rowid);
    if (!e) return TS_NOTFOUND;
    memcpy(buf, e->key, e->nkey);
    *n = e->nkey;
    return TS_OK;
  }
  rc = ts_snap_begin(&st->lookup, st->primary, err);
  if (rc) return rc;
  ts_env_read_lock(st->primary);
  rc = ts_snap_key_by_rowid(&st->lookup, rowid, buf, n, err);
  ts_env_read_unlock(st->primary);
  ts_snap_end(&st->lookup);
  if (rc) return rc;
  e = ts_delta_get(d, buf, *n);
  if (e && (e->op == TS_OP_DEL || e->fresh)) return TS_NOTFOUND;
  return TS_OK;
}

/* Flush a frozen delta to the primary tier. */
int ts_store_flush(ts_store *st, const ts_delta *d, uint64_t *epoch,
                   ts_err *err) {
  *epoch = 0;
  if (ts_delta_count(d) == 0) return TS_OK;
  return ts_env_apply(st->primary, d, st->durability, epoch, err);
}

/* fsync every durable tier. */
int ts_store_sync(ts_store *st, ts_err *err) {
  return ts_env_sync(st->primary, err);
}

/**************************************************************************
** The merged cursor.
*/
typedef enum ts_src { TS_SRC_COMMITTED = 0, TS_SRC_DELTA = 1 } ts_src;

struct ts_cursor {
  ts_store *st;
  ts_delta *d;                 /* a reference of the cursor's own */
  ts_snap snap;
  int snap_live;
  ts_scan plan;
  unsigned char lo[TS_LMDB_KEY_MAX], hi[TS_LMDB_KEY_MAX], ns[TS_LMDB_KEY_MAX];
  ts_lcur lc;                  /* committed head (data or created db) */
  int lc_open;
  const ts_delta_entry *de;    /* delta head (key scans) */
  uint64_t dgen;               /* delta generation de belongs to */
  const ts_delta_entry **fresh;/* created scans: fresh delta rows by rowid */
  uint64_t nsid;               /* created scans: the namespace's id, 0: none */
  size_t nfresh, ifresh, afresh;
  int adv_c, adv_d;            /* which heads the current row consumed */
  int eof;
  /* current row */
  ts_src src;
  unsigned char key[TS_LMDB_KEY_MAX];
  size_t nkey;
  uint64_t rowid, epoch;
  const ts_delta_entry *cur_e; /* when src == TS_SRC_DELTA */
};

/* A new cursor over the store and the connection's delta. */
int ts_cursor_new(ts_store *st, ts_delta *d, ts_cursor **out,
                  ts_err *err) {
  ts_cursor *c = calloc(1, sizeof(*c));
  if (!c) return ts_err_set(err, TS_NOMEM, "out of memory opening a cursor");
  c->st = st;
  c->d = d;
  ts_delta_retain(d);
  c->eof = 1;
  *out = c;
  return TS_OK;
}

/* Close the LMDB cursor (lock held by caller or not needed). */
static void ts_cursor_drop_lc(ts_cursor *c) {
  if (c->lc_open) ts_lcur_close(&c->lc);
  c->lc_open = 0;
}

void ts_cursor_free(ts_cursor *c) {
  if (!c) return;
  ts_cursor_drop_lc(c);
  ts_snap_free(&c->snap);
  ts_delta_free(c->d);
  free(c->fresh);
  free(c);
}

int ts_cursor_eof(const ts_cursor *c) { return c->eof; }
const unsigned char *ts_cursor_key(const ts_cursor *c, size_t *n) {
  *n = c->nkey;
  return c->key;
}
uint64_t ts_cursor_rowid(const ts_cursor *c) { return c->rowid; }
uint64_t ts_cursor_epoch(const ts_cursor *c) { return c->epoch; }
ts_tier_id ts_cursor_tier(const ts_cursor *c) {
  (void)c;
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

/* Move the delta head past NONE entries; NULL once out of range. */
static void ts_delta_head_settle(ts_cursor *c) {
  while (c->de && c->de->op == TS_OP_NONE) c->de = ts_delta_step(c->d, c->de, c->plan.desc);
  if (c->de && !ts_key_before_end(c, c->de->key, c->de->nkey)) c->de = NULL;
}

/* Position the delta head at the scan start. */
static void ts_delta_head_start(ts_cursor *c) {
  size_t n;
  int excl;
  const unsigned char *k = ts_scan_start(c, &n, &excl);
  c->de = ts_delta_seek(c->d, k, n, c->plan.desc);
  if (c->de && excl && ts_bytes_cmp(c->de->key, c->de->nkey, k, n) == 0) {
    c->de = ts_delta_step(c->d, c->de, c->plan.desc);
  }
  c->dgen = ts_delta_generation(c->d);
  ts_delta_head_settle(c);
}

/* Committed head within range?  (lock held) */
static int ts_lc_in_range(ts_cursor *c) {
  return c->lc.valid && ts_key_before_end(c, c->lc.k.mv_data, c->lc.k.mv_size);
}

/* Pick the next row of a key scan from the two heads.  Lock held. */
static int ts_keys_settle(ts_cursor *c, ts_err *err) {
  for (;;) {
    int have_c = ts_lc_in_range(c);
    int have_d = c->de != NULL;
    int cmp;
    c->adv_c = c->adv_d = 0;
    if (!have_c && !have_d) {
      c->eof = 1;
      return TS_OK;
    }
    if (have_c && have_d) {
      cmp = ts_bytes_cmp(c->lc.k.mv_data, c->lc.k.mv_size, c->de->key, c->de->nkey);
      if (c->plan.desc) cmp = -cmp;
    } else {
      cmp = have_c ? -1 : 1;
    }
    if (cmp <= 0) c->adv_c = 1;
    if (cmp >= 0) c->adv_d = 1;
    if (c->adv_d && c->de->op == TS_OP_DEL) {
      /* the delta hides this key: consume both heads and look again */
      int rc = c->adv_c ? ts_lcur_step(&c->lc, c->plan.desc, err) : TS_OK;
      if (rc) return rc;
      c->de = ts_delta_step(c->d, c->de, c->plan.desc);
      ts_delta_head_settle(c);
      continue;
    }
    c->eof = 0;
    if (c->adv_d) {
      c->src = TS_SRC_DELTA;
      c->cur_e = c->de;
      memcpy(c->key, c->de->key, c->de->nkey);
      c->nkey = c->de->nkey;
      c->rowid = c->de->rowid;
      c->epoch = 0;
    } else {
      ts_record rec;
      if (ts_record_decode(c->lc.v.mv_data, c->lc.v.mv_size, &rec)) {
        return ts_err_set(err, TS_CORRUPT, "damaged record in LMDB environment '%s'",
                          ts_env_path(c->st->primary));
      }
      c->src = TS_SRC_COMMITTED;
      memcpy(c->key, c->lc.k.mv_data, c->lc.k.mv_size);
      c->nkey = c->lc.k.mv_size;
      c->rowid = rec.rowid;
      c->epoch = rec.epoch;
    }
    return TS_OK;
  }
}

/* Re-find the delta head after the delta was reset under an open cursor:
** the first entry strictly past the current row. */
static void ts_delta_head_refind(ts_cursor *c) {
  c->de = ts_delta_seek(c->d, c->key, c->nkey, c->plan.desc);
  if (c->de && ts_bytes_cmp(c->de->key, c->de->nkey, c->key, c->nkey) == 0) {
    c->de = ts_delta_step(c->d, c->de, c->plan.desc);
  }
  c->dgen = ts_delta_generation(c->d);
  c->adv_d = 0;
  ts_delta_head_settle(c);
}

/* Start a key scan.  Lock held. */
static int ts_keys_begin(ts_cursor *c, ts_err *err) {
  size_t n;
  int excl;
  const unsigned char *k = ts_scan_start(c, &n, &excl);
  int rc = ts_lcur_open(&c->lc, &c->snap, TS_DB_DATA, err);
  if (rc) return rc;
  c->lc_open = 1;
  rc = ts_lcur_seek(&c->lc, k, n, c->plan.desc, err);
  if (!rc && excl && c->lc.valid &&
      ts_bytes_cmp(c->lc.k.mv_data, c->lc.k.mv_size, k, n) == 0) {
    rc = ts_lcur_step(&c->lc, c->plan.desc, err);
  }
  if (rc) return rc;
  ts_delta_head_start(c);
  return ts_keys_settle(c, err);
}

/* Step a key scan.  Lock held. */
static int ts_keys_next(ts_cursor *c, ts_err *err) {
  int rc = TS_OK;
  if (c->adv_c) rc = ts_lcur_step(&c->lc, c->plan.desc, err);
  if (rc) return rc;
  if (c->dgen != ts_delta_generation(c->d)) {
    ts_delta_head_refind(c);
  } else if (c->adv_d) {
    c->de = ts_delta_step(c->d, c->de, c->plan.desc);
    ts_delta_head_settle(c);
  }
  if (!c->adv_c) rc = ts_lcur_revalidate(&c->lc, err);
  return rc ? rc : ts_keys_settle(c, err);
}

/* Order fresh entries by rowid (qsort callback). */
static int ts_fresh_cmp(const void *a, const void *b) {
  uint64_t ra = (*(const ts_delta_entry *const *)a)->rowid;
  uint64_t rb = (*(const ts_delta_entry *const *)b)->rowid;
  return ra < rb ? -1 : ra > rb;
}

/* Collect the delta's fresh rows of the namespace within the rowid range,
** sorted in scan order. */
static int ts_created_collect_fresh(ts_cursor *c, ts_err *err) {
  const ts_scan *p = &c->plan;
  c->nfresh = c->ifresh = 0;
  for (const ts_delta_entry *e = ts_delta_seek(c->d, p->ns, p->nns, 0); e;
       e = ts_delta_step(c->d, e, 0)) {
    if (e->nkey < p->nns || memcmp(e->key, p->ns, p->nns) != 0) break;
    if (e->op != TS_OP_PUT || !e->fresh) continue;
    if (ts_key_ns_len(e->key, e->nkey) != p->nns) continue;
    if (e->rowid < p->rlo || e->rowid > p->rhi) continue;
    if (c->nfresh == c->afresh) {
      size_t na = c->afresh ? c->afresh * 2 : 16;
      const ts_delta_entry **nf = realloc(c->fresh, na * sizeof(*nf));
      if (!nf) return ts_err_set(err, TS_NOMEM, "out of memory in a listing");
      c->fresh = nf;
      c->afresh = na;
    }
    c->fresh[c->nfresh++] = e;
  }
  if (c->nfresh > 1) qsort(c->fresh, c->nfresh, sizeof(*c->fresh), ts_fresh_cmp);
  if (p->desc) {
    for (size_t i = 0; i < c->nfresh / 2; i++) {
      const ts_delta_entry *t = c->fresh[i];
      c->fresh[i] = c->fresh[c->nfresh - 1 - i];
      c->fresh[c->nfresh - 1 - i] = t;
    }
  }
  return TS_OK;
}


/* Committed creation-index head: its rowid if within the namespace and
** range, else 0 (rowids start at 1).  Lock held. */
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
    uint64_t rc_rowid = ts_created_head(c);
    const ts_delta_entry *f = c->ifresh < c->nfresh ? c->fresh[c->ifresh] : NULL;
    const ts_delta_entry *e;
    ts_record rec;
    int take_fresh, rc;
    c->adv_c = c->adv_d = 0;
    if (!rc_rowid && !f) {
      c->eof = 1;
      return TS_OK;
    }
    take_fresh = f && (!rc_rowid || (p->desc ? f->rowid > rc_rowid : f->rowid < rc_rowid));
    c->eof = 0;
    if (take_fresh) {
      c->adv_d = 1;
      c->src = TS_SRC_DELTA;
      c->cur_e = f;
      memcpy(c->key, f->key, f->nkey);
      c->nkey = f->nkey;
      c->rowid = f->rowid;
      c->epoch = 0;
      return TS_OK;
    }
    c->adv_c = 1;
    memcpy(c->key, p->ns, p->nns);
    if (p->nns + c->lc.v.mv_size > sizeof(c->key)) {
      return ts_err_set(err, TS_CORRUPT, "damaged creation index in LMDB environment '%s'",
                        ts_env_path(c->st->primary));
    }
    memcpy(c->key + p->nns, c->lc.v.mv_data, c->lc.v.mv_size);
    c->nkey = p->nns + c->lc.v.mv_size;
    c->rowid = rc_rowid;
    e = ts_delta_get(c->d, c->key, c->nkey);
    if (e && (e->op == TS_OP_DEL || e->fresh)) {
      rc = ts_lcur_step(&c->lc, p->desc, err);   /* hidden or re-created */
      if (rc) return rc;
      continue;
    }
    if (e) {
      c->src = TS_SRC_DELTA;
      c->cur_e = e;
      c->epoch = 0;
      return TS_OK;
    }
    rc = ts_snap_get(&c->snap, c->key, c->nkey, &rec, err);
    if (rc == TS_NOTFOUND) {
      return ts_err_set(err, TS_CORRUPT, "creation index of LMDB environment '%s' names a missing key",
                        ts_env_path(c->st->primary));
    }
    if (rc) return rc;
    c->src = TS_SRC_COMMITTED;
    c->epoch = rec.epoch;
    return TS_OK;
  }
}

/* Start a creation-order scan.  Lock held. */
static int ts_created_begin(ts_cursor *c, ts_err *err) {
  const ts_scan *p = &c->plan;
  unsigned char k[16];
  int rc = ts_created_collect_fresh(c, err);
  if (!rc) rc = ts_snap_ns_id(&c->snap, p->ns, p->nns, &c->nsid, err);
  if (rc == TS_NOTFOUND) {
    c->nsid = 0;            /* nothing committed in this namespace */
    rc = TS_OK;
  }
  if (!rc) rc = ts_lcur_open(&c->lc, &c->snap, TS_DB_CREATED, err);
  if (rc) return rc;
  c->lc_open = 1;
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
  int rc = TS_OK;
  if (c->dgen != ts_delta_generation(c->d)) {
    c->nfresh = c->ifresh = 0;   /* the delta is gone: committed rows only */
    c->dgen = ts_delta_generation(c->d);
  } else if (c->adv_d) {
    c->ifresh++;
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
  ts_record rec;
  int rc;
  c->eof = 1;
  if (r >= TS_ROWID_PROVISIONAL) {
    e = ts_delta_by_rowid(c->d, r);
    if (!e) return TS_OK;
  } else {
    rc = ts_snap_key_by_rowid(&c->snap, r, c->key, &c->nkey, err);
    if (rc == TS_NOTFOUND) return TS_OK;
    if (rc) return rc;
    e = ts_delta_get(c->d, c->key, c->nkey);
    if (e && (e->op == TS_OP_DEL || e->fresh)) return TS_OK;
  }
  c->eof = 0;
  c->rowid = r;
  c->dgen = ts_delta_generation(c->d);
  if (e) {
    c->src = TS_SRC_DELTA;
    c->cur_e = e;
    memcpy(c->key, e->key, e->nkey);
    c->nkey = e->nkey;
    c->epoch = 0;
    return TS_OK;
  }
  rc = ts_snap_get(&c->snap, c->key, c->nkey, &rec, err);
  if (rc == TS_NOTFOUND) {
    c->eof = 1;
    return TS_OK;
  }
  c->src = TS_SRC_COMMITTED;
  c->epoch = rec.epoch;
  return rc;
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

/* Position on the first row of plan. */
int ts_cursor_begin(ts_cursor *c, const ts_scan *plan, ts_err *err) {
  ts_env *env = c->st->primary;
  int rc = TS_OK;
  ts_cursor_copy_plan(c, plan);
  if (!c->snap_live) {
    rc = ts_snap_begin(&c->snap, env, err);
    if (rc) return rc;
    c->snap_live = 1;
  }
  ts_env_read_lock(env);
  ts_cursor_drop_lc(c);
  c->eof = 1;
  switch (c->plan.kind) {
    case TS_SCAN_KEYS: rc = ts_keys_begin(c, err); break;
    case TS_SCAN_CREATED: rc = ts_created_begin(c, err); break;
    case TS_SCAN_ROWID: rc = ts_rowid_begin(c, err); break;
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
    case TS_SCAN_ROWID: c->eof = 1; break;
  }
  ts_env_read_unlock(env);
  if (rc) c->eof = 1;
  return rc;
}

/* Emit the current row's value while its bytes are valid. */
int ts_cursor_value(ts_cursor *c, ts_value_emit emit, void *ctx, ts_err *err) {
  ts_env *env = c->st->primary;
  ts_record rec;
  int rc = TS_OK;
  if (c->eof) return TS_OK;
  if (c->src == TS_SRC_DELTA) {
    const ts_delta_entry *e = c->cur_e;
    if (c->dgen != ts_delta_generation(c->d)) e = ts_delta_get(c->d, c->key, c->nkey);
    if (e && e->op == TS_OP_PUT) emit(ctx, &e->value);
    return TS_OK;
  }
  ts_env_read_lock(env);
  if (c->plan.kind == TS_SCAN_KEYS) {
    rc = ts_lcur_revalidate(&c->lc, err);
    if (!rc && ts_record_decode(c->lc.v.mv_data, c->lc.v.mv_size, &rec)) {
      rc = ts_err_set(err, TS_CORRUPT, "damaged record in LMDB environment '%s'",
                      ts_env_path(env));
    }
  } else {
    rc = ts_snap_get(&c->snap, c->key, c->nkey, &rec, err);
  }
  if (rc == TS_OK) emit(ctx, &rec.value);
  ts_env_read_unlock(env);
  return rc == TS_NOTFOUND ? TS_OK : rc;
}
