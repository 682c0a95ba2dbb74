/*
** test_store.c: unit test of src/store.c, a table's view of its tier.
** Plain C + LMDB, no SQLite: the merged cursor (committed snapshot + the
** connection's uncommitted delta) in key order, creation order, by rowid
** and by key, with the names it splits; point lookups; flush; cursors
** reused by their store; snapshot isolation against a second store on the
** same directory; a delta reset under an open cursor; and random scans
** compared with a simple model (an array sorted with memcmp).
**
** Every test makes its own directory under /tmp and removes it at the end.
*/
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tierstore_int.h"
#include "check.h"
#include "keys.h"

/**************************************************************************
** Helpers.
*/
static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint64_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

/* Open a store on root/name. */
static ts_store *store_open(const char *root, const char *name) {
  char p[256];
  ts_store_cfg cfg;
  ts_store *st = NULL;
  ts_err err = {0, {0}};
  int rc;
  snprintf(p, sizeof(p), "%s/%s", root, name);
  memset(&cfg, 0, sizeof(cfg));
  cfg.primary = p;
  cfg.map_size = 0;
  cfg.durability = TS_DURABLE;
  cfg.names = TS_NAMES_ANY;
  rc = ts_store_open(&cfg, &st, &err);
  CHECK_EQ_INT(rc, TS_OK);
  if (rc) {
    fprintf(stderr, "  %s\n", err.msg);
    exit(1);
  }
  CHECK(ts_store_names(st) == TS_NAMES_ANY);
  return st;
}

static uint64_t last_epoch(ts_store *st) {
  ts_snap s = {0};
  ts_err err = {0, {0}};
  uint64_t e = 999;
  ts_env *env = ts_store_primary(st);
  CHECK_EQ_INT(ts_snap_begin(&s, env, &err), TS_OK);
  ts_env_read_lock(env);
  CHECK_EQ_INT(ts_snap_last_epoch(&s, &e, &err), TS_OK);
  ts_env_read_unlock(env);
  ts_snap_free(&s);
  return e;
}

static uint64_t flush_ok(ts_store *st, ts_delta *d) {
  ts_err err = {0, {0}};
  uint64_t epoch = 999;
  int rc = ts_store_flush(st, d, &epoch, &err);
  CHECK_EQ_INT(rc, TS_OK);
  if (rc) fprintf(stderr, "  flush: %s\n", err.msg);
  ts_delta_reset(d);
  return epoch;
}

static ekey nsp(const char *pns, const char *sns) {
  ekey k;
  ts_name s = nm(sns ? sns : "");
  k.n = ts_prefix_encode(nm(pns), sns ? &s : NULL, k.b);
  return k;
}

/* memcmp order, shorter prefix first (LMDB's default). */
static int bcmp_(const unsigned char *a, size_t na, const unsigned char *b,
                 size_t nb) {
  int r = memcmp(a, b, na < nb ? na : nb);
  if (r) return r < 0 ? -1 : 1;
  return na < nb ? -1 : na > nb;
}

/* Model values are integers; every fifth one is stored as its TEXT. */
static char textbuf[32];
static ts_value mval(int64_t x) {
  ts_value v;
  memset(&v, 0, sizeof(v));
  if (x % 5 == 0) {
    int n = snprintf(textbuf, sizeof(textbuf), "t%lld", (long long)x);
    v.type = TS_TEXT;
    v.p = textbuf;
    v.n = (size_t)n;
  } else {
    v.type = TS_INTEGER;
    v.i = x;
  }
  return v;
}

/* What ts_cursor_value handed over, as a model value. */
typedef struct emitted emitted;
struct emitted {
  int calls;
  int ok;
  int64_t x;
};
static void emit_cb(void *ctx, const ts_value *v) {
  emitted *e = ctx;
  e->calls++;
  e->ok = 0;
  if (v->type == TS_INTEGER) {
    e->x = v->i;
    e->ok = 1;
  } else if (v->type == TS_TEXT && v->n > 1 && v->n < 30 &&
             ((const char *)v->p)[0] == 't') {
    char buf[32];
    memcpy(buf, (const char *)v->p + 1, v->n - 1);
    buf[v->n - 1] = 0;
    e->x = strtoll(buf, NULL, 10);
    e->ok = 1;
  }
}

/* One row as a cursor gave it or a model expects it. */
typedef struct crow crow;
struct crow {
  unsigned char k[TS_LMDB_KEY_MAX];
  size_t nk;
  uint64_t rowid, epoch;
  int has;      /* value handed over */
  int64_t x;
};
static void crow_set(crow *r, const unsigned char *k, size_t nk, uint64_t rowid,
                     uint64_t epoch, int64_t x) {
  memcpy(r->k, k, nk);
  r->nk = nk;
  r->rowid = rowid;
  r->epoch = epoch;
  r->has = 1;
  r->x = x;
}
/* The cursor's names of its current row are its key's, each followed by a
** 0x00 byte. */
static void check_names(ts_cursor *c, const unsigned char *k, size_t n) {
  ts_name got[3], want[3];
  CHECK_EQ_INT(ts_key_decode(k, n, &want[0], &want[1], &want[2]), TS_OK);
  CHECK_EQ_INT(ts_cursor_names(c, &got[0], &got[1], &got[2]), TS_OK);
  for (int i = 0; i < 3; i++) {
    CHECK(got[i].n == want[i].n && memcmp(got[i].p, want[i].p, want[i].n) == 0);
    CHECK(got[i].p[got[i].n] == 0);
  }
}

/* Fill r from the cursor's current row. */
static int crow_from(crow *r, ts_cursor *c) {
  size_t n;
  const unsigned char *k = ts_cursor_key(c, &n);
  emitted e = {0, 0, 0};
  ts_err err = {0, {0}};
  int rc;
  check_names(c, k, n);
  memcpy(r->k, k, n);
  r->nk = n;
  r->rowid = ts_cursor_rowid(c);
  r->epoch = ts_cursor_epoch(c);
  rc = ts_cursor_value(c, emit_cb, &e, &err);
  CHECK_EQ_INT(rc, TS_OK);
  CHECK(ts_cursor_tier(c) == TS_TIER_PRIMARY);
  r->has = e.calls == 1 && e.ok;
  r->x = e.x;
  return rc;
}
/* Run plan on cursor c (begun anew), collect up to max rows. */
static size_t run_scan(ts_cursor *c, const ts_scan *plan, crow *out, size_t max) {
  ts_err err = {0, {0}};
  size_t n = 0;
  int rc = ts_cursor_begin(c, plan, &err);
  CHECK_EQ_INT(rc, TS_OK);
  if (rc) fprintf(stderr, "  begin: %s\n", err.msg);
  while (!rc && !ts_cursor_eof(c)) {
    if (n < max) crow_from(&out[n], c);
    n++;
    rc = ts_cursor_next(c, &err);
    CHECK_EQ_INT(rc, TS_OK);
    if (n > max + 10) break;
  }
  /* next at the end stays at the end */
  CHECK_EQ_INT(ts_cursor_next(c, &err), TS_OK);
  CHECK(ts_cursor_eof(c));
  return n;
}
/* Compare got[0..ng) with want[0..nw); report the first difference.
** TS_DUMP=1 in the environment prints every row got. */
static int rows_match(const char *what, const crow *got, size_t ng,
                      const crow *want, size_t nw) {
  size_t i;
  if (ng != nw) {
    fprintf(stderr, "  %s: %zu rows, expected %zu\n", what, ng, nw);
  }
  if (getenv("TS_DUMP")) {
    for (i = 0; i < ng; i++) fprintf(stderr, "   got %zu: %.*s rowid %llu epoch %llu x %lld\n", i, (int)got[i].nk, got[i].k, (unsigned long long)got[i].rowid, (unsigned long long)got[i].epoch, (long long)got[i].x);
  }
  for (i = 0; i < ng && i < nw; i++) {
    const crow *a = &got[i], *b = &want[i];
    if (bcmp_(a->k, a->nk, b->k, b->nk) || a->rowid != b->rowid ||
        a->epoch != b->epoch || !a->has || a->x != b->x) {
      fprintf(stderr,
              "  %s: row %zu: got (len %zu, rowid %llu, epoch %llu, has %d, "
              "x %lld), expected (len %zu, rowid %llu, epoch %llu, x %lld)\n",
              what, i, a->nk, (unsigned long long)a->rowid,
              (unsigned long long)a->epoch, a->has, (long long)a->x, b->nk,
              (unsigned long long)b->rowid, (unsigned long long)b->epoch,
              (long long)b->x);
      return 0;
    }
  }
  return ng == nw;
}

/* Shorthand plans. */
static ts_scan plan_keys(int desc, const ekey *lo, int lo_incl, const ekey *hi,
                         int hi_incl) {
  ts_scan p;
  memset(&p, 0, sizeof(p));
  p.kind = TS_SCAN_KEYS;
  p.desc = desc;
  if (lo) {
    p.lo = lo->b;
    p.nlo = lo->n;
    p.lo_incl = lo_incl;
  }
  if (hi) {
    p.hi = hi->b;
    p.nhi = hi->n;
    p.hi_incl = hi_incl;
  }
  return p;
}
/* The namespace bounds ext/ builds: [ns, ns with its last byte 0x01). */
static ts_scan plan_ns(int desc, const ekey *ns, ekey *hi) {
  *hi = *ns;
  hi->b[hi->n - 1] = 1;
  return plan_keys(desc, ns, 1, hi, 0);
}
static ts_scan plan_created(int desc, const ekey *ns, uint64_t rlo,
                            uint64_t rhi) {
  ts_scan p;
  memset(&p, 0, sizeof(p));
  p.kind = TS_SCAN_CREATED;
  p.desc = desc;
  p.ns = ns->b;
  p.nns = ns->n;
  p.rlo = rlo;
  p.rhi = rhi;
  return p;
}
static ts_scan plan_rowid(uint64_t r) {
  ts_scan p;
  memset(&p, 0, sizeof(p));
  p.kind = TS_SCAN_ROWID;
  p.rowid = r;
  return p;
}
static ts_scan plan_key(const ekey *k) {
  ts_scan p;
  memset(&p, 0, sizeof(p));
  p.kind = TS_SCAN_KEY;
  p.lo = k->b;
  p.nlo = k->n;
  return p;
}

/* Put with an integer value. */
static void put(ts_delta *d, const ekey *k, int64_t x, uint64_t rowid,
                int fresh) {
  ts_value v = mval(x);
  CHECK_EQ_INT(ts_delta_put(d, k->b, k->n, &v, rowid, fresh), TS_OK);
}
static void del(ts_delta *d, const ekey *k) {
  CHECK_EQ_INT(ts_delta_del(d, k->b, k->n), TS_OK);
}

/* Scan and compare with the expected names (key names in ns p/s), rowids
** and epochs given as parallel arrays. */
typedef struct xrow xrow;
struct xrow {
  const char *key;
  uint64_t rowid, epoch;
  int64_t x;
};
static void expect(const char *what, ts_cursor *c, const ts_scan *plan,
                   const char *pns, const char *sns, const xrow *x, size_t nx) {
  crow got[64], want[64];
  size_t ng = run_scan(c, plan, got, 64), i;
  for (i = 0; i < nx; i++) {
    ekey k = ek(pns, sns, x[i].key);
    crow_set(&want[i], k.b, k.n, x[i].rowid, x[i].epoch, x[i].x);
  }
  CHECK(rows_match(what, got, ng, want, nx));
}

#define P1 (TS_ROWID_PROVISIONAL + 1)
#define P2 (TS_ROWID_PROVISIONAL + 2)
#define P3 (TS_ROWID_PROVISIONAL + 3)
#define NX(a) (sizeof(a) / sizeof((a)[0]))

/**************************************************************************
** Key scans over committed data + a delta.
*/
static void test_keys(void) {
  char root[64];
  ts_store *st;
  ts_delta *d = ts_delta_new();
  ts_cursor *c = NULL;
  ts_err err = {0, {0}};
  static const char *names[] = {"a", "b", "c", "d", "e"};
  ekey ka = ek("p", "s", "a"), kb = ek("p", "s", "b"), kc = ek("p", "s", "c");
  ekey kd = ek("p", "s", "d"), kbb = ek("p", "s", "bb"), kca = ek("p", "s", "ca");
  ekey ns = nsp("p", "s"), hi, lo;
  ts_scan plan;
  size_t i;

  tmp_new(root, sizeof(root));
  st = store_open(root, "env");
  /* Committed: a..e in p/s (rowids 1..5, epoch 1) and neighbours in
  ** other namespaces that the namespace bounds must leave out. */
  for (i = 0; i < 5; i++) {
    ekey k = ek("p", "s", names[i]);
    put(d, &k, (int64_t)(i + 1), ts_delta_new_rowid(d), 1);
  }
  CHECK_EQ_INT(flush_ok(st, d), 1);
  {
    static const char *nb[][3] = {{"p", "r", "z"}, {"p", "t", "a"}, {"pq", "s", "a"},
                                  {"o", "s", "z"}, {"p", "", "a"}, {"p", "s\x01", "a"}};
    for (i = 0; i < NX(nb); i++) {
      ekey k = ek(nb[i][0], nb[i][1], nb[i][2]);
      put(d, &k, 100 + (int64_t)i, ts_delta_new_rowid(d), 1);
    }
    CHECK_EQ_INT(flush_ok(st, d), 2);
  }

  /* Delta: DEL b, PUT c (not fresh: rowid kept), fresh bb; then d and a
  ** fresh ca written and undone (NONE entries). */
  del(d, &kb);
  put(d, &kc, 33, 3, 0);
  put(d, &kbb, 22, ts_delta_new_rowid(d), 1);   /* P1 */
  CHECK_EQ_INT(ts_delta_savepoint(d, 0), TS_OK);
  put(d, &kd, 44, 4, 0);
  put(d, &kca, 55, ts_delta_new_rowid(d), 1);   /* P2 */
  del(d, &ka);
  ts_delta_rollback_to(d, 0);
  ts_delta_release(d, 0);
  CHECK_EQ_INT(ts_delta_count(d), 3);

  CHECK_EQ_INT(ts_cursor_new(st, d, &c, &err), TS_OK);
  CHECK(ts_cursor_eof(c));
  {
    static const xrow all[] = {{"a", 1, 1, 1}, {"bb", P1, 0, 22}, {"c", 3, 0, 33},
                               {"d", 4, 1, 4}, {"e", 5, 1, 5}};
    static const xrow rev[] = {{"e", 5, 1, 5}, {"d", 4, 1, 4}, {"c", 3, 0, 33},
                               {"bb", P1, 0, 22}, {"a", 1, 1, 1}};
    plan = plan_ns(0, &ns, &hi);
    expect("ns asc", c, &plan, "p", "s", all, NX(all));
    plan = plan_ns(1, &ns, &hi);
    expect("ns desc", c, &plan, "p", "s", rev, NX(rev));

    /* Exclusive and inclusive bounds on a committed+delta key (c), a
    ** deleted key (b), a NONE key (d was undone) and a fresh key (bb). */
    plan = plan_keys(0, &kc, 0, &hi, 0);
    expect("asc (c,", c, &plan, "p", "s", all + 3, 2);
    plan = plan_keys(0, &kc, 1, &hi, 0);
    expect("asc [c,", c, &plan, "p", "s", all + 2, 3);
    plan = plan_keys(0, &kb, 1, &kd, 1);
    expect("asc [b,d]", c, &plan, "p", "s", all + 1, 3);
    plan = plan_keys(0, &kb, 0, &kd, 0);
    expect("asc (b,d)", c, &plan, "p", "s", all + 1, 2);
    plan = plan_keys(0, &kbb, 0, &kd, 0);
    expect("asc (bb,d)", c, &plan, "p", "s", all + 2, 1);
    plan = plan_keys(1, &kb, 1, &kd, 1);
    expect("desc [b,d]", c, &plan, "p", "s", rev + 1, 3);
    plan = plan_keys(1, &kb, 0, &kd, 0);
    expect("desc (b,d)", c, &plan, "p", "s", rev + 2, 2);
    plan = plan_keys(1, &ns, 1, &kc, 0);
    expect("desc [ns,c)", c, &plan, "p", "s", rev + 3, 2);
    plan = plan_keys(1, &ns, 1, &kbb, 0);
    expect("desc [ns,bb)", c, &plan, "p", "s", rev + 4, 1);
    plan = plan_keys(1, &ns, 1, &kbb, 1);
    expect("desc [ns,bb]", c, &plan, "p", "s", rev + 3, 2);
    plan = plan_keys(0, &kca, 1, &kca, 1);
    expect("asc [ca,ca] (NONE)", c, &plan, "p", "s", NULL, 0);
    plan = plan_keys(0, &kc, 1, &kc, 1);
    expect("asc [c,c]", c, &plan, "p", "s", all + 2, 1);
    plan = plan_keys(1, &kc, 1, &kc, 1);
    expect("desc [c,c]", c, &plan, "p", "s", all + 2, 1);
    plan = plan_keys(0, &kc, 0, &kc, 1);
    expect("asc (c,c]", c, &plan, "p", "s", NULL, 0);
    plan = plan_keys(0, &kd, 1, &kc, 1);
    expect("asc [d,c]", c, &plan, "p", "s", NULL, 0);
    plan = plan_keys(1, &kd, 1, &kc, 1);
    expect("desc [d,c]", c, &plan, "p", "s", NULL, 0);
    plan = plan_keys(0, &kb, 1, &kb, 1);
    expect("asc [b,b] (deleted)", c, &plan, "p", "s", NULL, 0);
  }

  /* Namespace prefix bounds: pns only takes every sns of p, not pq. */
  {
    crow got[32];
    size_t n;
    ekey np = nsp("p", NULL);
    plan = plan_ns(0, &np, &hi);
    n = run_scan(c, &plan, got, 32);
    CHECK_EQ_INT(n, 5 + 4); /* p/"" a, p/r z, p/s (5 visible), p/s\1 a, p/t a */
    for (i = 0; i < n && i < 32; i++) CHECK(got[i].k[0] == 'p' && got[i].k[1] == 0);
    for (i = 1; i < n && i < 32; i++) {
      CHECK(bcmp_(got[i - 1].k, got[i - 1].nk, got[i].k, got[i].nk) < 0);
    }
    plan = plan_ns(1, &np, &hi);
    CHECK_EQ_INT(run_scan(c, &plan, got, 32), 9);
    CHECK(got[0].k[0] == 'p' && got[0].k[2] == 't');
    /* Unbounded: everything, ascending and descending. */
    plan = plan_keys(0, NULL, 0, NULL, 0);
    CHECK_EQ_INT(run_scan(c, &plan, got, 32), 5 + 6);
    CHECK(got[0].k[0] == 'o');
    plan = plan_keys(1, NULL, 0, NULL, 0);
    CHECK_EQ_INT(run_scan(c, &plan, got, 32), 5 + 6);
    CHECK(got[0].k[0] == 'p' && got[0].k[1] == 'q');
    /* Only a lower or only an upper bound. */
    lo = ek("p", "s", "c");
    plan = plan_keys(0, &lo, 1, NULL, 0);
    CHECK_EQ_INT(run_scan(c, &plan, got, 32), 3 + 2 + 1); /* c d e, s\1 a, t a, pq */
    plan = plan_keys(1, NULL, 0, &lo, 0);
    CHECK_EQ_INT(run_scan(c, &plan, got, 32), 2 + 3); /* bb a, r z, "" a, o */
    CHECK(got[0].nk == kbb.n && memcmp(got[0].k, kbb.b, kbb.n) == 0);
  }

  /* Lookups and rowids agree with the scans. */
  {
    ts_row_info info;
    ekey kx;
    CHECK_EQ_INT(ts_store_lookup(st, d, ka.b, ka.n, &info, &err), TS_OK);
    CHECK(info.rowid == 1 && info.fresh == 0);
    CHECK_EQ_INT(ts_store_lookup(st, d, kb.b, kb.n, &info, &err), TS_NOTFOUND);
    CHECK_EQ_INT(ts_store_lookup(st, d, kc.b, kc.n, &info, &err), TS_OK);
    CHECK(info.rowid == 3 && info.fresh == 0);
    CHECK_EQ_INT(ts_store_lookup(st, d, kbb.b, kbb.n, &info, &err), TS_OK);
    CHECK(info.rowid == P1 && info.fresh == 1);
    CHECK_EQ_INT(ts_store_lookup(st, d, kca.b, kca.n, &info, &err), TS_NOTFOUND);
    CHECK_EQ_INT(ts_store_lookup(st, d, kd.b, kd.n, &info, &err), TS_OK);
    CHECK(info.rowid == 4 && info.fresh == 0);
    CHECK_EQ_INT(ts_store_key_by_rowid(st, d, 1, kx.b, &kx.n, &err), TS_OK);
    CHECK(kx.n == ka.n && memcmp(kx.b, ka.b, ka.n) == 0);
    CHECK_EQ_INT(ts_store_key_by_rowid(st, d, 2, kx.b, &kx.n, &err), TS_NOTFOUND);
    CHECK_EQ_INT(ts_store_key_by_rowid(st, d, 3, kx.b, &kx.n, &err), TS_OK);
    CHECK(kx.n == kc.n && memcmp(kx.b, kc.b, kc.n) == 0);
    CHECK_EQ_INT(ts_store_key_by_rowid(st, d, P1, kx.b, &kx.n, &err), TS_OK);
    CHECK(kx.n == kbb.n && memcmp(kx.b, kbb.b, kbb.n) == 0);
    CHECK_EQ_INT(ts_store_key_by_rowid(st, d, P2, kx.b, &kx.n, &err), TS_NOTFOUND);
    CHECK_EQ_INT(ts_store_key_by_rowid(st, d, P3, kx.b, &kx.n, &err), TS_NOTFOUND);
    CHECK_EQ_INT(ts_store_key_by_rowid(st, d, 0, kx.b, &kx.n, &err), TS_NOTFOUND);
    CHECK_EQ_INT(ts_store_key_by_rowid(st, d, 999, kx.b, &kx.n, &err), TS_NOTFOUND);
  }
  ts_cursor_free(c);
  ts_cursor_free(NULL);
  ts_store_close(st);
  ts_store_close(NULL);
  ts_delta_free(d);
  tmp_drop(root);
}

/**************************************************************************
** Creation-order and rowid scans.
*/
static void test_created_rowid(void) {
  char root[64];
  ts_store *st;
  ts_delta *d = ts_delta_new();
  ts_cursor *c = NULL;
  ts_err err = {0, {0}};
  ekey ns = nsp("p", "s"), other = nsp("p", "t");
  ekey k[6];
  ts_scan plan;
  int i;

  tmp_new(root, sizeof(root));
  st = store_open(root, "env");
  /* k1..k5 created one commit each in p/s, so rowid i and epoch i; keys
  ** in p/t and p/s... around them in the creation index. */
  for (i = 1; i <= 5; i++) {
    char name[8];
    ekey o = ek("p", "t", "x");
    snprintf(name, sizeof(name), "k%d", i);
    k[i] = ek("p", "s", name);
    put(d, &k[i], i * 10 + 1, ts_delta_new_rowid(d), 1);
    if (i == 3) put(d, &o, 7, ts_delta_new_rowid(d), 1);
    flush_ok(st, d);
  }
  {
    ekey o2 = ek("p", "sa", "k9"), o3 = ek("p", "", "k9");
    put(d, &o2, 1, ts_delta_new_rowid(d), 1);
    put(d, &o3, 1, ts_delta_new_rowid(d), 1);
    CHECK_EQ_INT(flush_ok(st, d), 6);
  }
  /* rowids: k1 1, k2 2, k3 3, p/t x 4, k4 5, k5 6, p/sa k9 7, p//k9 8 */
  CHECK_EQ_INT(ts_cursor_new(st, d, &c, &err), TS_OK);
  {
    static const xrow asc[] = {{"k1", 1, 1, 11}, {"k2", 2, 2, 21}, {"k3", 3, 3, 31},
                               {"k4", 5, 4, 41}, {"k5", 6, 5, 51}};
    static const xrow dsc[] = {{"k5", 6, 5, 51}, {"k4", 5, 4, 41}, {"k3", 3, 3, 31},
                               {"k2", 2, 2, 21}, {"k1", 1, 1, 11}};
    plan = plan_created(0, &ns, 1, UINT64_MAX);
    expect("created asc", c, &plan, "p", "s", asc, NX(asc));
    plan = plan_created(1, &ns, 1, UINT64_MAX);
    expect("created desc", c, &plan, "p", "s", dsc, NX(dsc));
    plan = plan_created(0, &ns, 2, 5);
    expect("created asc [2,5]", c, &plan, "p", "s", asc + 1, 3);
    plan = plan_created(1, &ns, 2, 5);
    expect("created desc [2,5]", c, &plan, "p", "s", dsc + 1, 3);
    plan = plan_created(1, &ns, 4, 4);
    expect("created desc [4,4]", c, &plan, "p", "s", NULL, 0);
    plan = plan_created(0, &ns, 5, 2);
    expect("created asc [5,2]", c, &plan, "p", "s", NULL, 0);
    plan = plan_created(0, &other, 1, UINT64_MAX);
    {
      static const xrow t[] = {{"x", 4, 3, 7}};
      expect("created p/t", c, &plan, "p", "t", t, 1);
    }
  }
  ts_cursor_free(c);

  /* The delta: k2 deleted, k3 updated (rowid kept), k4 re-created (new
  ** provisional rowid), new fresh n1 before and n2 after it, k5 updated
  ** and undone (NONE), a fresh n3 created and deleted again. */
  {
    ekey n1 = ek("p", "s", "n1"), n2 = ek("p", "s", "n2"), n3 = ek("p", "s", "n3");
    uint64_t p3;
    del(d, &k[2]);
    put(d, &k[3], 333, 3, 0);
    put(d, &n1, 1000, ts_delta_new_rowid(d), 1);       /* P1 */
    del(d, &k[4]);
    put(d, &k[4], 444, ts_delta_new_rowid(d), 1);      /* P2 */
    put(d, &n2, 2000, ts_delta_new_rowid(d), 1);       /* P3 */
    p3 = ts_delta_new_rowid(d);                        /* P4 */
    put(d, &n3, 3000, p3, 1);
    del(d, &n3);
    CHECK_EQ_INT(ts_delta_savepoint(d, 2), TS_OK);
    put(d, &k[5], 555, 6, 0);
    ts_delta_rollback_to(d, 2);
    CHECK(ts_delta_get(d, k[5].b, k[5].n) == NULL);
  }
  CHECK_EQ_INT(ts_cursor_new(st, d, &c, &err), TS_OK);
  {
    static const xrow asc[] = {{"k1", 1, 1, 11}, {"k3", 3, 0, 333}, {"k5", 6, 5, 51},
                               {"n1", P1, 0, 1000}, {"k4", P2, 0, 444},
                               {"n2", P3, 0, 2000}};
    static const xrow dsc[] = {{"n2", P3, 0, 2000}, {"k4", P2, 0, 444},
                               {"n1", P1, 0, 1000}, {"k5", 6, 5, 51},
                               {"k3", 3, 0, 333}, {"k1", 1, 1, 11}};
    plan = plan_created(0, &ns, 1, UINT64_MAX);
    expect("created+delta asc", c, &plan, "p", "s", asc, NX(asc));
    plan = plan_created(1, &ns, 1, UINT64_MAX);
    expect("created+delta desc", c, &plan, "p", "s", dsc, NX(dsc));
    plan = plan_created(1, &ns, 2, 5);
    expect("created+delta desc [2,5]", c, &plan, "p", "s", dsc + 4, 1);
    plan = plan_created(0, &ns, 3, P2);
    expect("created+delta asc [3,P2]", c, &plan, "p", "s", asc + 1, 4);
    plan = plan_created(1, &ns, P2, UINT64_MAX);
    expect("created+delta desc [P2,]", c, &plan, "p", "s", dsc, 2);
    plan = plan_created(0, &ns, TS_ROWID_PROVISIONAL, UINT64_MAX);
    expect("created+delta asc fresh only", c, &plan, "p", "s", asc + 3, 3);
    plan = plan_created(1, &ns, 1, TS_ROWID_PROVISIONAL);
    expect("created+delta desc committed only", c, &plan, "p", "s", dsc + 3, 3);

    /* By rowid: committed, committed but updated, deleted, re-created
    ** (the old rowid is gone), provisional, undone, never issued. */
    plan = plan_rowid(1);
    expect("rowid 1", c, &plan, "p", "s", asc, 1);
    plan = plan_rowid(3);
    expect("rowid 3", c, &plan, "p", "s", asc + 1, 1);
    plan = plan_rowid(6);
    expect("rowid 6", c, &plan, "p", "s", asc + 2, 1);
    plan = plan_rowid(2);
    expect("rowid 2 (deleted)", c, &plan, "p", "s", NULL, 0);
    plan = plan_rowid(5);
    expect("rowid 5 (re-created)", c, &plan, "p", "s", NULL, 0);
    plan = plan_rowid(P2);
    expect("rowid P2", c, &plan, "p", "s", asc + 4, 1);
    plan = plan_rowid(P1);
    expect("rowid P1", c, &plan, "p", "s", asc + 3, 1);
    plan = plan_rowid(TS_ROWID_PROVISIONAL + 4);
    expect("rowid P4 (deleted)", c, &plan, "p", "s", NULL, 0);
    plan = plan_rowid(TS_ROWID_PROVISIONAL + 9);
    expect("rowid P9 (never)", c, &plan, "p", "s", NULL, 0);
    plan = plan_rowid(TS_ROWID_PROVISIONAL);
    expect("rowid P0", c, &plan, "p", "s", NULL, 0);
    plan = plan_rowid(0);
    expect("rowid 0", c, &plan, "p", "s", NULL, 0);
    plan = plan_rowid(99);
    expect("rowid 99", c, &plan, "p", "s", NULL, 0);
    plan = plan_rowid(UINT64_MAX);
    expect("rowid max", c, &plan, "p", "s", NULL, 0);
    plan = plan_rowid(4);
    {
      static const xrow t[] = {{"x", 4, 3, 7}};
      expect("rowid 4 (p/t)", c, &plan, "p", "t", t, 1);
    }
  }
  ts_cursor_free(c);

  /* Commit it: the fresh rows get real rowids after the 8 issued so far,
  ** in the order they were created (n1 9, k4 10, n2 11: not key order),
  ** and a new cursor lists them in that order. */
  CHECK_EQ_INT(flush_ok(st, d), 7);
  CHECK_EQ_INT(ts_cursor_new(st, d, &c, &err), TS_OK);
  {
    static const xrow asc[] = {{"k1", 1, 1, 11}, {"k3", 3, 7, 333}, {"k5", 6, 5, 51},
                               {"n1", 9, 7, 1000}, {"k4", 10, 7, 444},
                               {"n2", 11, 7, 2000}};
    plan = plan_created(0, &ns, 1, UINT64_MAX);
    expect("created after commit", c, &plan, "p", "s", asc, NX(asc));
  }
  ts_cursor_free(c);
  ts_store_close(st);
  ts_delta_free(d);
  tmp_drop(root);
}

/**************************************************************************
** Cursors kept by their store: a freed cursor comes back for the next
** statement with a new view (snapshot, delta), and several open at once
** stay independent.
*/
static void test_cursor_reuse(void) {
  char root[64];
  ts_store *st;
  ts_delta *d = ts_delta_new(), *d2 = ts_delta_new();
  ts_cursor *c = NULL, *c2 = NULL, *c3 = NULL, *first;
  ts_err err = {0, {0}};
  ekey k1 = ek("p", "s", "k1"), k2 = ek("q", "", "k2"), ns = nsp("p", "s"), hi;
  ts_scan plan;
  crow got[4];

  tmp_new(root, sizeof(root));
  st = store_open(root, "env");
  put(d, &k1, 1, ts_delta_new_rowid(d), 1);
  CHECK_EQ_INT(flush_ok(st, d), 1);

  CHECK_EQ_INT(ts_cursor_new(st, d, &c, &err), TS_OK);
  first = c;
  plan = plan_key(&k1);
  CHECK_EQ_INT(run_scan(c, &plan, got, 4), 1);
  CHECK(got[0].has && got[0].x == 1 && got[0].epoch == 1);
  CHECK(ts_delta_is_shared(d));
  ts_cursor_free(c);
  CHECK(!ts_delta_is_shared(d));   /* the view's delta went with it */

  /* A commit in between: the reused cursor reads the new state. */
  put(d, &k1, 2, 1, 0);
  put(d, &k2, 3, ts_delta_new_rowid(d), 1);
  CHECK_EQ_INT(flush_ok(st, d), 2);
  CHECK_EQ_INT(ts_cursor_new(st, d2, &c, &err), TS_OK);
  CHECK(c == first);
  CHECK(ts_delta_is_shared(d2));
  CHECK_EQ_INT(run_scan(c, &plan, got, 4), 1);
  CHECK(got[0].has && got[0].x == 2 && got[0].epoch == 2);

  /* Two more at once, each its own plan and names; then all freed and
  ** taken again. */
  CHECK_EQ_INT(ts_cursor_new(st, d2, &c2, &err), TS_OK);
  CHECK_EQ_INT(ts_cursor_new(st, d2, &c3, &err), TS_OK);
  CHECK(c2 != c && c3 != c && c2 != c3);
  plan = plan_ns(0, &ns, &hi);
  CHECK_EQ_INT(ts_cursor_begin(c2, &plan, &err), TS_OK);
  plan = plan_keys(1, NULL, 0, NULL, 0);
  CHECK_EQ_INT(ts_cursor_begin(c3, &plan, &err), TS_OK);
  CHECK(!ts_cursor_eof(c2) && !ts_cursor_eof(c3));
  crow_from(&got[1], c2);
  crow_from(&got[2], c3);
  CHECK(got[1].nk == k1.n && memcmp(got[1].k, k1.b, k1.n) == 0 && got[1].x == 2);
  CHECK(got[2].nk == k2.n && memcmp(got[2].k, k2.b, k2.n) == 0 && got[2].x == 3);
  ts_cursor_free(c);
  ts_cursor_free(c2);
  ts_cursor_free(c3);
  CHECK(!ts_delta_is_shared(d2));
  for (int round = 0; round < 3; round++) {
    ts_cursor *a = NULL, *b = NULL;
    CHECK_EQ_INT(ts_cursor_new(st, d, &a, &err), TS_OK);
    CHECK_EQ_INT(ts_cursor_new(st, d2, &b, &err), TS_OK);
    plan = plan_key(&k2);
    CHECK_EQ_INT(run_scan(a, &plan, got, 4), 1);
    plan = plan_created(round % 2, &ns, 1, UINT64_MAX);
    CHECK_EQ_INT(run_scan(b, &plan, got + 1, 3), 1);
    CHECK(got[0].x == 3 && got[1].x == 2);
    ts_cursor_free(b);
    ts_cursor_free(a);
  }
  ts_store_close(st);
  ts_delta_free(d);
  ts_delta_free(d2);
  tmp_drop(root);
}

/**************************************************************************
** Flush of an empty delta, and snapshots against a second store.
*/
static void test_flush_snapshot(void) {
  char root[64];
  ts_store *a, *b;
  ts_delta *da = ts_delta_new(), *db = ts_delta_new();
  ts_cursor *old = NULL, *fresh = NULL;
  ts_err err = {0, {0}};
  ekey k1 = ek("p", "", "k1"), k2 = ek("p", "", "k2"), k3 = ek("p", "", "k3");
  ekey k0 = ek("p", "", "k0"), ns = nsp("p", ""), hi;
  ts_scan plan;
  crow got[16];
  uint64_t epoch = 99;

  tmp_new(root, sizeof(root));
  a = store_open(root, "env");
  /* Nothing to write: epoch 0 and nothing committed. */
  CHECK_EQ_INT(ts_store_flush(a, da, &epoch, &err), TS_OK);
  CHECK_EQ_INT(epoch, 0);
  CHECK_EQ_INT(last_epoch(a), 0);
  CHECK_EQ_INT(ts_delta_savepoint(da, 0), TS_OK);
  put(da, &k1, 1, ts_delta_new_rowid(da), 1);
  ts_delta_rollback_to(da, 0);
  epoch = 99;
  CHECK_EQ_INT(ts_store_flush(a, da, &epoch, &err), TS_OK);
  CHECK_EQ_INT(epoch, 0);
  CHECK_EQ_INT(last_epoch(a), 0);
  ts_delta_reset(da);

  put(da, &k1, 1, ts_delta_new_rowid(da), 1);
  put(da, &k2, 2, ts_delta_new_rowid(da), 1);
  CHECK_EQ_INT(flush_ok(a, da), 1);
  CHECK_EQ_INT(ts_store_sync(a, &err), TS_OK);

  /* A second store on the same directory shares the environment. */
  b = store_open(root, "env/.");
  CHECK(ts_store_primary(a) == ts_store_primary(b));

  /* A cursor of a begun before b commits. */
  CHECK_EQ_INT(ts_cursor_new(a, da, &old, &err), TS_OK);
  plan = plan_ns(0, &ns, &hi);
  CHECK_EQ_INT(ts_cursor_begin(old, &plan, &err), TS_OK);
  CHECK(!ts_cursor_eof(old));
  crow_from(&got[0], old);
  CHECK(got[0].nk == k1.n && memcmp(got[0].k, k1.b, k1.n) == 0);

  put(db, &k0, 10, ts_delta_new_rowid(db), 1);
  put(db, &k3, 30, ts_delta_new_rowid(db), 1);
  put(db, &k1, 11, 1, 0);
  del(db, &k2);
  CHECK_EQ_INT(flush_ok(b, db), 2);

  /* The old cursor goes on in its snapshot: k1 (old value), k2. */
  CHECK_EQ_INT(ts_cursor_next(old, &err), TS_OK);
  CHECK(!ts_cursor_eof(old));
  crow_from(&got[1], old);
  CHECK(got[1].nk == k2.n && memcmp(got[1].k, k2.b, k2.n) == 0 && got[1].has &&
        got[1].x == 2 && got[1].epoch == 1);
  CHECK_EQ_INT(ts_cursor_next(old, &err), TS_OK);
  CHECK(ts_cursor_eof(old));
  /* Begun again (another xFilter of the same statement): same snapshot. */
  {
    static const xrow x[] = {{"k1", 1, 1, 1}, {"k2", 2, 1, 2}};
    static const xrow xd[] = {{"k2", 2, 1, 2}, {"k1", 1, 1, 1}};
    expect("old cursor again", old, &plan, "p", "", x, 2);
    plan = plan_ns(1, &ns, &hi);
    expect("old cursor desc", old, &plan, "p", "", xd, 2);
    plan = plan_created(1, &ns, 1, UINT64_MAX);
    expect("old cursor created", old, &plan, "p", "", xd, 2);
    plan = plan_rowid(3);
    expect("old cursor rowid 3", old, &plan, "p", "", NULL, 0);
    plan = plan_rowid(2);
    expect("old cursor rowid 2", old, &plan, "p", "", x + 1, 1);
  }
  /* A new cursor sees the commit; so do lookups. */
  CHECK_EQ_INT(ts_cursor_new(a, da, &fresh, &err), TS_OK);
  {
    static const xrow x[] = {{"k0", 3, 2, 10}, {"k1", 1, 2, 11}, {"k3", 4, 2, 30}};
    static const xrow xc[] = {{"k3", 4, 2, 30}, {"k0", 3, 2, 10}, {"k1", 1, 2, 11}};
    plan = plan_ns(0, &ns, &hi);
    expect("new cursor", fresh, &plan, "p", "", x, 3);
    plan = plan_created(1, &ns, 1, UINT64_MAX);
    expect("new cursor created", fresh, &plan, "p", "", xc, 3);
  }
  {
    ts_row_info info;
    CHECK_EQ_INT(ts_store_lookup(a, da, k3.b, k3.n, &info, &err), TS_OK);
    CHECK(info.rowid == 4 && !info.fresh);
    CHECK_EQ_INT(ts_store_lookup(a, da, k2.b, k2.n, &info, &err), TS_NOTFOUND);
  }
  ts_cursor_free(old);
  ts_cursor_free(fresh);
  ts_store_close(b);
  /* The first store still works after the second one closed. */
  put(da, &k2, 5, ts_delta_new_rowid(da), 1);
  CHECK_EQ_INT(flush_ok(a, da), 3);
  CHECK_EQ_INT(last_epoch(a), 3);
  ts_store_close(a);
  ts_delta_free(da);
  ts_delta_free(db);
  tmp_drop(root);
}

/**************************************************************************
** A delta reset under an open cursor: the cursor re-seeks.
*/
static void commit_k00_k19(ts_store *st, ts_delta *d) {
  for (int i = 0; i < 20; i++) {
    char name[8];
    ekey k;
    snprintf(name, sizeof(name), "k%02d", i);
    k = ek("p", "s", name);
    put(d, &k, i + 1, ts_delta_new_rowid(d), 1);
  }
  CHECK_EQ_INT(flush_ok(st, d), 1);
}
static ekey kn(const char *name) { return ek("p", "s", name); }

/* The old delta's writes, then ones for the new delta after the reset. */
static void old_writes(ts_delta *d) {
  ekey k;
  k = kn("k05a");
  put(d, &k, 501, ts_delta_new_rowid(d), 1);
  k = kn("k10a");
  put(d, &k, 1001, ts_delta_new_rowid(d), 1);
  k = kn("k07");
  del(d, &k);
  k = kn("k12");
  put(d, &k, 1200, 13, 0);
  k = kn("k03");
  put(d, &k, 300, 4, 0);
}
static void new_writes(ts_delta *d, int with_fresh) {
  ekey k;
  /* burn some memory so freed chunks are reused */
  for (int i = 0; i < 200; i++) {
    char name[16];
    snprintf(name, sizeof(name), "zz%03d", i);
    k = ek("q", "", name);
    put(d, &k, i, ts_delta_new_rowid(d), 1);
  }
  k = kn("k15");
  del(d, &k);
  k = kn("k16");
  put(d, &k, 1600, 17, 0);
  if (with_fresh) {
    k = kn("k08a");
    put(d, &k, 801, ts_delta_new_rowid(d), 1);
  }
}

static void test_reset_under_cursor(void) {
  char root[64];
  ts_store *st;
  ts_delta *d = ts_delta_new();
  ts_cursor *c = NULL;
  ts_err err = {0, {0}};
  ekey ns = nsp("p", "s"), hi;
  crow got[64];
  ts_scan plan;
  size_t n;

  tmp_new(root, sizeof(root));
  st = store_open(root, "env");
  commit_k00_k19(st, d);

  /* Key scans, on a delta row and on a committed row, both directions. */
  for (int desc = 0; desc < 2; desc++) {
    for (int stop = 0; stop < 3; stop++) {
      /* stop at: k05a (delta only), k03 (delta over committed), k09 or k14
      ** (committed) */
      const char *at = stop == 0 ? "k05a" : stop == 1 ? "k03" : desc ? "k14" : "k09";
      ekey kat = kn(at);
      size_t k;
      emitted e = {0, 0, 0};
      CHECK_EQ_INT(ts_cursor_new(st, d, &c, &err), TS_OK);
      old_writes(d);
      plan = plan_ns(desc, &ns, &hi);
      CHECK_EQ_INT(ts_cursor_begin(c, &plan, &err), TS_OK);
      for (k = 0; k < 40 && !ts_cursor_eof(c); k++) {
        size_t nk;
        const unsigned char *ck = ts_cursor_key(c, &nk);
        if (nk == kat.n && memcmp(ck, kat.b, nk) == 0) break;
        CHECK_EQ_INT(ts_cursor_next(c, &err), TS_OK);
      }
      CHECK(!ts_cursor_eof(c));
      ts_delta_reset(d);
      new_writes(d, 1);
      /* The current row's value after the reset: no crash, at most one. */
      CHECK_EQ_INT(ts_cursor_value(c, emit_cb, &e, &err), TS_OK);
      CHECK(e.calls <= 1);
      n = 0;
      for (;;) {
        CHECK_EQ_INT(ts_cursor_next(c, &err), TS_OK);
        if (ts_cursor_eof(c) || n >= 64) break;
        crow_from(&got[n++], c);
      }
      /* Expected: the new visible state strictly past the stop key. */
      {
        crow want[64];
        size_t nw = 0;
        for (int i = desc ? 19 : 0; desc ? i >= 0 : i < 20; i += desc ? -1 : 1) {
          char name[16];
          ekey kk;
          for (int extra = 0; extra < 2; extra++) {
            /* k08a sits right after k08 */
            int is_a = (desc ? 1 - extra : extra) == 1;
            if (is_a && i != 8) continue;
            snprintf(name, sizeof(name), is_a ? "k%02da" : "k%02d", i);
            kk = kn(name);
            if (desc ? bcmp_(kk.b, kk.n, kat.b, kat.n) >= 0
                     : bcmp_(kk.b, kk.n, kat.b, kat.n) <= 0) {
              continue;
            }
            if (i == 15 && !is_a) continue;
            if (is_a) {
              crow_set(&want[nw++], kk.b, kk.n, TS_ROWID_PROVISIONAL + 201, 0, 801);
            } else if (i == 16) {
              crow_set(&want[nw++], kk.b, kk.n, 17, 0, 1600);
            } else {
              crow_set(&want[nw++], kk.b, kk.n, (uint64_t)i + 1, 1, i + 1);
            }
          }
        }
        char what[64];
        snprintf(what, sizeof(what), "keys reset desc=%d at %s", desc, at);
        CHECK(rows_match(what, got, n, want, nw));
      }
      ts_cursor_free(c);
      ts_delta_reset(d);
    }
  }

  /* Creation-order scans: on a fresh row (desc lists them first) and on a
  ** committed row.  The old delta's fresh rows are gone after the reset;
  ** the new delta's DEL and PUT apply to the rows still to come. */
  for (int desc = 0; desc < 2; desc++) {
    for (int stop = 0; stop < 2; stop++) {
      uint64_t at = stop == 0 ? (desc ? TS_ROWID_PROVISIONAL + 1 : 6) : (desc ? 14 : 6);
      size_t k;
      CHECK_EQ_INT(ts_cursor_new(st, d, &c, &err), TS_OK);
      old_writes(d);
      plan = plan_created(desc, &ns, 1, UINT64_MAX);
      CHECK_EQ_INT(ts_cursor_begin(c, &plan, &err), TS_OK);
      for (k = 0; k < 40 && !ts_cursor_eof(c); k++) {
        if (ts_cursor_rowid(c) == at) break;
        CHECK_EQ_INT(ts_cursor_next(c, &err), TS_OK);
      }
      CHECK(!ts_cursor_eof(c) && ts_cursor_rowid(c) == at);
      ts_delta_reset(d);
      new_writes(d, 0);
      {
        emitted e = {0, 0, 0};
        CHECK_EQ_INT(ts_cursor_value(c, emit_cb, &e, &err), TS_OK);
        CHECK(e.calls <= 1);
      }
      n = 0;
      for (;;) {
        CHECK_EQ_INT(ts_cursor_next(c, &err), TS_OK);
        if (ts_cursor_eof(c) || n >= 64) break;
        crow_from(&got[n++], c);
      }
      {
        crow want[64];
        size_t nw = 0;
        for (int i = desc ? 19 : 0; desc ? i >= 0 : i < 20; i += desc ? -1 : 1) {
          char name[16];
          ekey kk;
          uint64_t r = (uint64_t)i + 1;
          if (desc ? r >= at : r <= at) continue;
          if (i == 15) continue;
          snprintf(name, sizeof(name), "k%02d", i);
          kk = kn(name);
          if (i == 16) crow_set(&want[nw++], kk.b, kk.n, 17, 0, 1600);
          else crow_set(&want[nw++], kk.b, kk.n, r, 1, i + 1);
        }
        char what[64];
        snprintf(what, sizeof(what), "created reset desc=%d at %llu", desc,
                 (unsigned long long)at);
        CHECK(rows_match(what, got, n, want, nw));
      }
      ts_cursor_free(c);
      ts_delta_reset(d);
    }
  }

  /* A rowid scan on a fresh row, then reset: value and next are safe. */
  {
    emitted e = {0, 0, 0};
    CHECK_EQ_INT(ts_cursor_new(st, d, &c, &err), TS_OK);
    old_writes(d);
    plan = plan_rowid(TS_ROWID_PROVISIONAL + 1);
    CHECK_EQ_INT(ts_cursor_begin(c, &plan, &err), TS_OK);
    CHECK(!ts_cursor_eof(c));
    ts_delta_reset(d);
    new_writes(d, 0);
    CHECK_EQ_INT(ts_cursor_value(c, emit_cb, &e, &err), TS_OK);
    CHECK(e.calls <= 1);
    CHECK_EQ_INT(ts_cursor_next(c, &err), TS_OK);
    CHECK(ts_cursor_eof(c));
    /* and the cursor is reusable with the new delta */
    plan = plan_rowid(17);
    {
      static const xrow x[] = {{"k16", 17, 0, 1600}};
      expect("rowid after reset", c, &plan, "p", "s", x, 1);
    }
    ts_cursor_free(c);
    ts_delta_reset(d);
  }
  ts_store_close(st);
  ts_delta_free(d);
  tmp_drop(root);
}

/**************************************************************************
** Random keys in a few namespaces against a model.
*/
#define NNS 5
static const char *const ns_p[NNS] = {"a", "a", "ab", "b", "\xff"};
static const char *const ns_s[NNS] = {"", "x", "x", "\x01y", ""};

typedef struct mkey mkey;
struct mkey {
  unsigned char b[32];
  size_t n;
  int ns;
  int c_live;                  /* committed */
  uint64_t c_rowid, c_epoch;
  int64_t c_x;
  int d_op, d_fresh;           /* the delta's word */
  uint64_t d_rowid;
  int64_t d_x;
};
typedef struct dstate dstate;
struct dstate {
  int d_op, d_fresh;
  uint64_t d_rowid;
  int64_t d_x;
};

#define NU 480
static mkey U[NU];
static size_t nu;

static int mkey_qcmp(const void *a, const void *b) {
  const mkey *x = a, *y = b;
  return bcmp_(x->b, x->n, y->b, y->n);
}

static void model_make_keys(void) {
  static const unsigned char alpha[] = {'a', 'b', 'z', 0x01, 0xff};
  size_t i, j;
  nu = 0;
  for (i = 0; i < NU; i++) {
    char name[8];
    size_t len = (size_t)(rnd() % 6);
    int ns = (int)(rnd() % NNS);
    for (j = 0; j < len; j++) name[j] = (char)alpha[rnd() % 5];
    name[len] = 0;
    memset(&U[nu], 0, sizeof(U[nu]));
    U[nu].n = ts_key_encode(nm(ns_p[ns]), nm(ns_s[ns]), nm(name), U[nu].b);
    U[nu].ns = ns;
    nu++;
  }
  qsort(U, nu, sizeof(U[0]), mkey_qcmp);
  for (i = j = 0; i < nu; i++) {
    if (j == 0 || mkey_qcmp(&U[j - 1], &U[i]) != 0) U[j++] = U[i];
  }
  nu = j;
}

/* The visible state of U[i]. */
static int visible(const mkey *m, uint64_t *rowid, uint64_t *epoch,
                   int64_t *x, int *fresh) {
  if (m->d_op == TS_OP_PUT) {
    *rowid = m->d_rowid;
    *epoch = 0;
    *x = m->d_x;
    *fresh = m->d_fresh;
    return 1;
  }
  if (m->d_op == TS_OP_DEL || !m->c_live) return 0;
  *rowid = m->c_rowid;
  *epoch = m->c_epoch;
  *x = m->c_x;
  *fresh = 0;
  return 1;
}

/* One random write, to the delta and the model, the way ext/ does them. */
static int64_t next_x = 1;
static void model_write(ts_delta *d, int insert_pct) {
  mkey *m = &U[rnd() % nu];
  uint64_t rowid, epoch;
  int64_t x;
  int fresh;
  int vis = visible(m, &rowid, &epoch, &x, &fresh);
  ts_value v;
  if (!vis) {
    if ((int)(rnd() % 100) >= insert_pct) return;
    rowid = ts_delta_new_rowid(d);
    x = next_x++;
    v = mval(x);
    CHECK_EQ_INT(ts_delta_put(d, m->b, m->n, &v, rowid, 1), TS_OK);
    m->d_op = TS_OP_PUT;
    m->d_fresh = 1;
    m->d_rowid = rowid;
    m->d_x = x;
  } else if (rnd() % 2) {
    /* UPDATE: keep the visible rowid and freshness */
    x = next_x++;
    v = mval(x);
    CHECK_EQ_INT(ts_delta_put(d, m->b, m->n, &v, rowid, fresh), TS_OK);
    m->d_op = TS_OP_PUT;
    m->d_fresh = fresh;
    m->d_rowid = rowid;
    m->d_x = x;
  } else {
    CHECK_EQ_INT(ts_delta_del(d, m->b, m->n), TS_OK);
    m->d_op = TS_OP_DEL;
    m->d_fresh = 0;
    m->d_rowid = 0;
    m->d_x = 0;
  }
}

/* Commit the model's delta as ts_env_apply does: the keys this transaction
** created (fresh PUTs) are numbered in the order they were created, that
** is by provisional rowid, whatever their key order. */
static uint64_t model_next_rowid = 1;
static int fresh_qcmp(const void *a, const void *b) {
  uint64_t x = U[*(const size_t *)a].d_rowid, y = U[*(const size_t *)b].d_rowid;
  return x < y ? -1 : x > y;
}
static void model_commit(uint64_t epoch) {
  static size_t idx[NU];
  size_t nf = 0;
  for (size_t i = 0; i < nu; i++) {
    if (U[i].d_op == TS_OP_PUT && U[i].d_fresh) idx[nf++] = i;
  }
  qsort(idx, nf, sizeof(idx[0]), fresh_qcmp);
  for (size_t j = 0; j < nf; j++) U[idx[j]].c_rowid = model_next_rowid + j;
  model_next_rowid += nf;
  for (size_t i = 0; i < nu; i++) {
    mkey *m = &U[i];
    if (m->d_op == TS_OP_DEL) {
      m->c_live = 0;
    } else if (m->d_op == TS_OP_PUT) {
      if (!m->d_fresh && !m->c_live) m->c_rowid = model_next_rowid++;
      m->c_live = 1;
      m->c_epoch = epoch;
      m->c_x = m->d_x;
    }
    m->d_op = TS_OP_NONE;
    m->d_fresh = 0;
    m->d_rowid = 0;
  }
}

static int in_bounds(const mkey *m, const ts_scan *p) {
  if (p->lo) {
    int r = bcmp_(m->b, m->n, p->lo, p->nlo);
    if (r < 0 || (r == 0 && !p->lo_incl)) return 0;
  }
  if (p->hi) {
    int r = bcmp_(m->b, m->n, p->hi, p->nhi);
    if (r > 0 || (r == 0 && !p->hi_incl)) return 0;
  }
  return 1;
}

static crow *g_got, *g_want;
static int g_bad;

static void check_keys_plan(ts_cursor *c, const ts_scan *p, const char *what) {
  size_t nw = 0, ng;
  for (size_t j = 0; j < nu; j++) {
    size_t i = p->desc ? nu - 1 - j : j;
    uint64_t r, e;
    int64_t x;
    int f;
    if (!in_bounds(&U[i], p) || !visible(&U[i], &r, &e, &x, &f)) continue;
    crow_set(&g_want[nw++], U[i].b, U[i].n, r, e, x);
  }
  ng = run_scan(c, p, g_got, NU);
  if (!rows_match(what, g_got, ng, g_want, nw)) g_bad++;
}

static int rowid_qcmp(const void *a, const void *b) {
  uint64_t x = ((const crow *)a)->rowid, y = ((const crow *)b)->rowid;
  return x < y ? -1 : x > y;
}
static void check_created_plan(ts_cursor *c, const ts_scan *p, int ns,
                               const char *what) {
  size_t nw = 0, ng;
  for (size_t i = 0; i < nu; i++) {
    uint64_t r, e;
    int64_t x;
    int f;
    if (U[i].ns != ns || !visible(&U[i], &r, &e, &x, &f)) continue;
    if (r < p->rlo || r > p->rhi) continue;
    crow_set(&g_want[nw++], U[i].b, U[i].n, r, e, x);
  }
  qsort(g_want, nw, sizeof(crow), rowid_qcmp);
  if (p->desc) {
    for (size_t i = 0; i < nw / 2; i++) {
      crow t = g_want[i];
      g_want[i] = g_want[nw - 1 - i];
      g_want[nw - 1 - i] = t;
    }
  }
  ng = run_scan(c, p, g_got, NU);
  if (!rows_match(what, g_got, ng, g_want, nw)) g_bad++;
}

/* A random bound: a key of the universe, a namespace prefix, or random
** bytes. */
static ekey random_bound(void) {
  ekey k;
  uint64_t how = rnd() % 3;
  if (how == 0) {
    const mkey *m = &U[rnd() % nu];
    memcpy(k.b, m->b, m->n);
    k.n = m->n;
  } else if (how == 1) {
    int ns = (int)(rnd() % NNS);
    ts_name s = nm(ns_s[ns]);
    k.n = ts_prefix_encode(nm(ns_p[ns]), rnd() % 2 ? &s : NULL, k.b);
  } else {
    static const unsigned char alpha[] = {0, 'a', 'b', 0x01, 0xff, 'x'};
    /* at least one byte: an encoded key or prefix is never empty, and LMDB
    ** refuses to seek to an empty key (MDB_BAD_VALSIZE) */
    k.n = 1 + (size_t)(rnd() % 5);
    for (size_t i = 0; i < k.n; i++) k.b[i] = alpha[rnd() % 6];
  }
  return k;
}

/* Every check against the model with one cursor (begun per plan). */
static void model_check(ts_store *st, ts_delta *d, const char *phase) {
  ts_cursor *c = NULL;
  ts_err err = {0, {0}};
  ts_scan p;
  char what[128];
  uint64_t maxprov = TS_ROWID_PROVISIONAL + 1;
  int before = g_bad;

  CHECK_EQ_INT(ts_cursor_new(st, d, &c, &err), TS_OK);
  /* Key scans: unbounded, namespaces, random bounds. */
  for (int desc = 0; desc < 2; desc++) {
    p = plan_keys(desc, NULL, 0, NULL, 0);
    snprintf(what, sizeof(what), "%s: all desc=%d", phase, desc);
    check_keys_plan(c, &p, what);
    for (int ns = 0; ns < NNS; ns++) {
      ekey n1 = nsp(ns_p[ns], ns_s[ns]), n2 = nsp(ns_p[ns], NULL), h1, h2;
      p = plan_ns(desc, &n1, &h1);
      snprintf(what, sizeof(what), "%s: ns %d desc=%d", phase, ns, desc);
      check_keys_plan(c, &p, what);
      p = plan_ns(desc, &n2, &h2);
      snprintf(what, sizeof(what), "%s: pns %d desc=%d", phase, ns, desc);
      check_keys_plan(c, &p, what);
    }
  }
  for (int t = 0; t < 120; t++) {
    ekey lo = random_bound(), hi = random_bound();
    int which = (int)(rnd() % 4);
    int li = (int)(rnd() % 2), hin = (int)(rnd() % 2), desc = (int)(rnd() % 2);
    if (which == 0 && bcmp_(lo.b, lo.n, hi.b, hi.n) > 0) {
      ekey t2 = lo;
      lo = hi;
      hi = t2;
    }
    p = plan_keys(desc, which != 2 ? &lo : NULL, li, which != 1 ? &hi : NULL, hin);
    snprintf(what, sizeof(what), "%s: random bounds #%d (which %d, incl %d/%d, desc %d)",
             phase, t, which, li, hin, desc);
    check_keys_plan(c, &p, what);
  }
  /* Creation order in every namespace, with rowid ranges. */
  for (size_t i = 0; i < nu; i++) {
    if (U[i].d_op == TS_OP_PUT && U[i].d_rowid > maxprov) maxprov = U[i].d_rowid;
  }
  for (int ns = 0; ns < NNS; ns++) {
    ekey n1 = nsp(ns_p[ns], ns_s[ns]);
    for (int t = 0; t < 12; t++) {
      uint64_t lo = 1, hi = UINT64_MAX;
      int desc = t % 2;
      switch (t / 2) {
        case 0: break;
        case 1: lo = 1 + rnd() % model_next_rowid; hi = lo + rnd() % 100; break;
        case 2: lo = 1 + rnd() % model_next_rowid; break;
        case 3: hi = rnd() % (model_next_rowid + 1); break;
        case 4: lo = TS_ROWID_PROVISIONAL + rnd() % 50; break;
        case 5: lo = 1 + rnd() % model_next_rowid; hi = TS_ROWID_PROVISIONAL + rnd() % 50; break;
      }
      p = plan_created(desc, &n1, lo, hi);
      snprintf(what, sizeof(what), "%s: created ns %d [%llu,%llu] desc=%d", phase, ns,
               (unsigned long long)lo, (unsigned long long)hi, desc);
      check_created_plan(c, &p, ns, what);
    }
  }
  /* Every rowid: committed ones ever issued, provisional ones. */
  {
    int bad = 0;
    for (uint64_t r = 0; r <= model_next_rowid + 1 + (maxprov - TS_ROWID_PROVISIONAL) + 1; r++) {
      uint64_t rowid = r <= model_next_rowid + 1 ? r
                       : TS_ROWID_PROVISIONAL + (r - model_next_rowid - 2);
      crow got[2];
      size_t ng, i, want = nu;
      ekey kx;
      ts_row_info info;
      int rc;
      for (i = 0; i < nu; i++) {
        uint64_t vr, e;
        int64_t x;
        int f;
        if (visible(&U[i], &vr, &e, &x, &f) && vr == rowid) {
          want = i;
          break;
        }
      }
      p = plan_rowid(rowid);
      ng = run_scan(c, &p, got, 2);
      if (want == nu) {
        if (ng != 0) bad++;
      } else {
        uint64_t vr = 0, e = 0;
        int64_t x = 0;
        int f = 0;
        visible(&U[want], &vr, &e, &x, &f);
        if (ng != 1 || bcmp_(got[0].k, got[0].nk, U[want].b, U[want].n) ||
            got[0].rowid != vr || got[0].epoch != e || !got[0].has || got[0].x != x) {
          bad++;
        }
      }
      rc = ts_store_key_by_rowid(st, d, rowid, kx.b, &kx.n, &err);
      if (want == nu ? rc != TS_NOTFOUND
                     : (rc != TS_OK || bcmp_(kx.b, kx.n, U[want].b, U[want].n))) {
        bad++;
      }
      (void)info;
    }
    if (bad) fprintf(stderr, "  %s: %d rowid mismatches\n", phase, bad);
    g_bad += bad;
  }
  /* Point reads of every key, and of keys next to them that do not exist
  ** (the same names with a byte more). */
  {
    int bad = 0;
    for (size_t i = 0; i < nu; i++) {
      uint64_t vr = 0, e = 0;
      int64_t x = 0;
      int f;
      int vis = visible(&U[i], &vr, &e, &x, &f);
      ekey k;
      crow got[2];
      size_t ng;
      memcpy(k.b, U[i].b, U[i].n);
      k.n = U[i].n;
      p = plan_key(&k);
      ng = run_scan(c, &p, got, 2);
      if (vis ? ng != 1 || bcmp_(got[0].k, got[0].nk, k.b, k.n) || got[0].rowid != vr ||
                    got[0].epoch != e || !got[0].has || got[0].x != x
              : ng != 0) {
        bad++;
      }
      k.b[k.n++] = 0x7f;
      if (i + 1 < nu && bcmp_(k.b, k.n, U[i + 1].b, U[i + 1].n) == 0) continue;
      p = plan_key(&k);
      if (run_scan(c, &p, got, 2) != 0) bad++;
    }
    if (bad) fprintf(stderr, "  %s: %d point read mismatches\n", phase, bad);
    g_bad += bad;
  }
  /* Lookups of every key. */
  {
    int bad = 0;
    for (size_t i = 0; i < nu; i++) {
      uint64_t vr, e;
      int64_t x;
      int f;
      ts_row_info info;
      int vis = visible(&U[i], &vr, &e, &x, &f);
      int rc = ts_store_lookup(st, d, U[i].b, U[i].n, &info, &err);
      if (vis ? (rc != TS_OK || info.rowid != vr || info.fresh != f) : rc != TS_NOTFOUND) bad++;
    }
    if (bad) fprintf(stderr, "  %s: %d lookup mismatches\n", phase, bad);
    g_bad += bad;
  }
  ts_cursor_free(c);
  if (g_bad != before) fprintf(stderr, "  %s: %d failed comparisons\n", phase, g_bad - before);
}

static void test_model(void) {
  char root[64], phase[64];
  ts_store *st;
  ts_delta *d = ts_delta_new();
  uint64_t epoch = 0;
  dstate *snap = malloc(NU * sizeof(*snap));

  g_got = malloc(NU * sizeof(crow) + 16 * sizeof(crow));
  g_want = malloc(NU * sizeof(crow));
  g_bad = 0;
  model_make_keys();
  CHECK(nu > 300);
  tmp_new(root, sizeof(root));
  st = store_open(root, "env");

  for (int round = 0; round < 5; round++) {
    int nwrites = round == 0 ? 400 : 150;
    for (int w = 0; w < nwrites; w++) {
      model_write(d, round == 0 ? 100 : 40);
      /* Now and then a savepoint whose writes are undone: NONE entries. */
      if (w % 50 == 25) {
        CHECK_EQ_INT(ts_delta_savepoint(d, 3), TS_OK);
        for (size_t i = 0; i < nu; i++) {
          snap[i].d_op = U[i].d_op;
          snap[i].d_fresh = U[i].d_fresh;
          snap[i].d_rowid = U[i].d_rowid;
          snap[i].d_x = U[i].d_x;
        }
        for (int u = 0; u < 20; u++) model_write(d, 60);
        ts_delta_rollback_to(d, 3);
        ts_delta_release(d, 3);
        for (size_t i = 0; i < nu; i++) {
          U[i].d_op = snap[i].d_op;
          U[i].d_fresh = snap[i].d_fresh;
          U[i].d_rowid = snap[i].d_rowid;
          U[i].d_x = snap[i].d_x;
        }
      }
    }
    if (round > 0) {
      /* The delta holds every kind of word on a committed key. */
      int nfresh = 0, nupd = 0, ndel = 0, nrecreate = 0, nnone = 0;
      for (size_t i = 0; i < nu; i++) {
        if (U[i].d_op == TS_OP_PUT && U[i].d_fresh) {
          nfresh++;
          if (U[i].c_live) nrecreate++;
        }
        if (U[i].d_op == TS_OP_PUT && !U[i].d_fresh) nupd++;
        if (U[i].d_op == TS_OP_DEL && U[i].c_live) ndel++;
      }
      for (const ts_delta_entry *e = ts_delta_seek(d, NULL, 0, 0); e;
           e = ts_delta_step(d, e, 0)) {
        if (e->op == TS_OP_NONE) nnone++;
      }
      CHECK(nfresh > 5 && nupd > 5 && ndel > 5 && nnone > 0);
      if (round > 1) CHECK(nrecreate > 0);
    }
    snprintf(phase, sizeof(phase), "round %d uncommitted", round);
    model_check(st, d, phase);
    {
      ts_err err = {0, {0}};
      uint64_t e = 0;
      int nonempty = ts_delta_count(d) > 0;
      CHECK_EQ_INT(ts_store_flush(st, d, &e, &err), TS_OK);
      if (nonempty) {
        CHECK_EQ_INT(e, ++epoch);
        model_commit(epoch);
      } else {
        CHECK_EQ_INT(e, 0);
      }
      ts_delta_reset(d);
    }
    snprintf(phase, sizeof(phase), "round %d committed", round);
    model_check(st, d, phase);
  }
  CHECK_EQ_INT(g_bad, 0);
  CHECK_EQ_INT(last_epoch(st), epoch);
  ts_store_close(st);

  /* Reopened: the same committed state. */
  st = store_open(root, "env");
  model_check(st, d, "reopened");
  CHECK_EQ_INT(g_bad, 0);
  ts_store_close(st);

  free(snap);
  free(g_got);
  free(g_want);
  ts_delta_free(d);
  tmp_drop(root);
}

int main(void) {
  test_keys();
  test_created_rowid();
  test_cursor_reuse();
  test_flush_snapshot();
  test_reset_under_cursor();
  test_model();
  return CHECK_DONE();
}
