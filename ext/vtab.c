/*
** vtab.c: the tierstore virtual table module.
**
**   CREATE VIRTUAL TABLE kv USING tierstore(primary='data/primary');
**   INSERT INTO kv(primary_namespace, secondary_namespace, key, value)
**     VALUES ('ns', '', 'k', x'00ff');
**   SELECT key, value FROM kv WHERE primary_namespace='ns' AND
**     secondary_namespace='';
**   INSERT INTO kv(kv) VALUES('sync');
**
** Writes go to the connection's delta and reach the tiers in xSync (one
** epoch per committed transaction); xCommit only forgets the delta, since
** SQLite ignores its result.  Reads merge the delta with the committed
** snapshot through ts_cursor (src/store.c).
*/
#include "tierstore_ext.h"

#include <math.h>
#include <string.h>

/* Column numbers, in declaration order. */
enum {
  TS_COL_PNS = 0,
  TS_COL_SNS,
  TS_COL_KEY,
  TS_COL_VALUE,
  TS_COL_TIER,
  TS_COL_EPOCH,
  TS_COL_CMD,
  TS_NCOL
};
#define TS_COL_ROWID (-1)

/* xBestIndex plan bits (idxNum).  Arguments reach xFilter in this order. */
#define TS_IX_PNS        0x0001
#define TS_IX_SNS        0x0002
#define TS_IX_KEY_EQ     0x0004
#define TS_IX_KEY_LO     0x0008
#define TS_IX_KEY_LO_INC 0x0010
#define TS_IX_KEY_HI     0x0020
#define TS_IX_KEY_HI_INC 0x0040
#define TS_IX_ROWID_EQ   0x0080
#define TS_IX_ROWID_LO   0x0100
#define TS_IX_ROWID_LO_INC 0x0200
#define TS_IX_ROWID_HI   0x0400
#define TS_IX_ROWID_HI_INC 0x0800
#define TS_IX_DESC       0x1000
#define TS_IX_CREATED    0x2000
#define TS_IX_LIMIT      0x4000
#define TS_IX_OFFSET     0x8000

typedef struct ts_vtab ts_vtab;
typedef struct ts_vcursor ts_vcursor;
struct ts_vtab {
  sqlite3_vtab base;
  sqlite3 *db;
  ts_config *cfg;
  ts_store *store;
  ts_delta *delta;
  int synced;            /* xSync flushed this transaction's delta */
  int utf8;              /* the database stores text as UTF-8 */
  ts_vcursor *idle;      /* a closed cursor's memory, for the next xOpen */
};

struct ts_vcursor {
  sqlite3_vtab_cursor base;
  ts_cursor *cur;
  sqlite3_int64 limit;   /* rows still allowed; -1 = no limit */
};

int ts_sqlite_rc(int ts_rc) {
  switch (ts_rc) {
    case TS_OK: return SQLITE_OK;
    case TS_NOMEM: return SQLITE_NOMEM;
    case TS_CONSTRAINT: return SQLITE_CONSTRAINT;
    case TS_UNIQUE: return SQLITE_CONSTRAINT_UNIQUE;
    case TS_FULL: return SQLITE_FULL;
    case TS_READONLY: return SQLITE_READONLY;
    case TS_CANTOPEN: return SQLITE_CANTOPEN;
    case TS_CORRUPT: return SQLITE_CORRUPT;
    case TS_IOERR: return SQLITE_IOERR;
    default: return SQLITE_ERROR;
  }
}

/* Report an engine error on the table; returns the SQLite code. */
static int ts_vtab_fail(ts_vtab *vt, const ts_err *err) {
  sqlite3_free(vt->base.zErrMsg);
  vt->base.zErrMsg = sqlite3_mprintf("%s", err->msg);
  return ts_sqlite_rc(err->code);
}

/* Report a formatted error with an explicit SQLite code. */
static int ts_vtab_error(ts_vtab *vt, int rc, const char *fmt, ...) {
  va_list ap;
  char *msg;
  va_start(ap, fmt);
  msg = sqlite3_vmprintf(fmt, ap);
  va_end(ap);
  sqlite3_free(vt->base.zErrMsg);
  vt->base.zErrMsg = sqlite3_mprintf("tierstore: %s: %s", vt->cfg->table, msg);
  sqlite3_free(msg);
  return rc;
}

/* Does the connection store text as UTF-8 (PRAGMA encoding)? */
static int ts_db_is_utf8(sqlite3 *db) {
  sqlite3_stmt *st;
  int utf8 = 0;
  if (sqlite3_prepare_v2(db, "PRAGMA encoding", -1, &st, NULL) != SQLITE_OK) return 0;
  if (sqlite3_step(st) == SQLITE_ROW) {
    const unsigned char *e = sqlite3_column_text(st, 0);
    utf8 = e && sqlite3_stricmp((const char *)e, "UTF-8") == 0;
  }
  sqlite3_finalize(st);
  return utf8;
}

/* The UTF-8 bytes of a TEXT value ("" when empty, NULL when out of
** memory).  In a UTF-8 database sqlite3_value_blob hands them out as they
** are, where sqlite3_value_text would first copy them to add a NUL (text
** bound with its length has none). */
static const unsigned char *ts_text_bytes(ts_vtab *vt, sqlite3_value *v, size_t *n) {
  const unsigned char *p = vt->utf8 ? sqlite3_value_blob(v) : sqlite3_value_text(v);
  *n = (size_t)sqlite3_value_bytes(v);
  return p || *n ? p : (const unsigned char *)"";
}

/* Shared body of xCreate and xConnect: parse, open the store, declare. */
static int ts_vtab_init(sqlite3 *db, void *aux, int argc, const char *const *argv,
                        sqlite3_vtab **out, char **errmsg) {
  ts_vtab *vt;
  ts_store_cfg scfg;
  ts_err err = {0, {0}};
  char *decl;
  int rc;
  (void)aux;
  vt = sqlite3_malloc(sizeof(*vt));
  if (!vt) return SQLITE_NOMEM;
  memset(vt, 0, sizeof(*vt));
  vt->db = db;
  rc = ts_config_parse(db, argc, argv, &vt->cfg, errmsg);
  if (rc) {
    sqlite3_free(vt);
    return ts_sqlite_rc(rc);
  }
  decl = sqlite3_mprintf(
      "CREATE TABLE x(primary_namespace TEXT, secondary_namespace TEXT, key TEXT, "
      "value, tier HIDDEN, epoch HIDDEN, \"%w\" HIDDEN)",
      vt->cfg->table);
  rc = decl ? sqlite3_declare_vtab(db, decl) : SQLITE_NOMEM;
  sqlite3_free(decl);
  if (rc == SQLITE_OK) {
    memset(&scfg, 0, sizeof(scfg));
    scfg.primary = vt->cfg->primary;
    scfg.backup = vt->cfg->backup;
    scfg.ephemeral = vt->cfg->ephemeral;
    scfg.map_size = vt->cfg->map_size;
    scfg.durability = vt->cfg->durability;
    scfg.flush_interval_us = vt->cfg->flush_interval_us;
    scfg.max_pending = vt->cfg->max_pending;
    scfg.names = vt->cfg->names;
    scfg.mode = vt->cfg->mode;
    rc = ts_store_open(&scfg, &vt->store, &err);
    if (rc) {
      *errmsg = sqlite3_mprintf("%s", err.msg);
      rc = ts_sqlite_rc(rc);
    }
  }
  if (rc == SQLITE_OK) {
    vt->delta = ts_store_new_delta(vt->store);
    if (!vt->delta) rc = SQLITE_NOMEM;
    vt->utf8 = ts_db_is_utf8(db);
  }
  if (rc == SQLITE_OK) {
    sqlite3_vtab_config(db, SQLITE_VTAB_CONSTRAINT_SUPPORT, 1);
    sqlite3_vtab_config(db, SQLITE_VTAB_DIRECTONLY);
    *out = &vt->base;
    return SQLITE_OK;
  }
  ts_store_close(vt->store);
  ts_config_free(vt->cfg);
  sqlite3_free(vt);
  return rc;
}

/* xDisconnect / xDestroy: the environment's files stay in place. */
static int ts_vtab_disconnect(sqlite3_vtab *p) {
  ts_vtab *vt = (ts_vtab *)p;
  sqlite3_free(vt->idle);
  ts_delta_free(vt->delta);
  ts_store_close(vt->store);
  ts_config_free(vt->cfg);
  sqlite3_free(vt);
  return SQLITE_OK;
}

/**************************************************************************
** Planning.
*/

/* Is ORDER BY satisfied by a scan whose order is cols[0..n) (desc or not),
** given the columns fixed by equality (fixed mask)?  *desc gets the
** direction. */
static int ts_order_matches(const sqlite3_index_info *info, const int *cols,
                            int n, unsigned fixed, int *desc) {
  int next = 0, dir = -1;
  for (int i = 0; i < info->nOrderBy; i++) {
    int col = info->aOrderBy[i].iColumn;
    int c = col < 0 ? 31 : col;
    if (col >= 0 && (fixed & (1u << c))) continue;
    while (next < n && cols[next] >= 0 && (fixed & (1u << cols[next]))) next++;
    if (next >= n || cols[next] != col) return 0;
    if (dir >= 0 && dir != info->aOrderBy[i].desc) return 0;
    dir = info->aOrderBy[i].desc;
    next++;
  }
  *desc = dir > 0;
  return 1;
}

/* Usable-constraint slots for one xBestIndex call. */
typedef struct ts_plan_slots ts_plan_slots;
struct ts_plan_slots {
  int pns, sns, key_eq, key_lo, key_hi, rowid_eq, rowid_lo, rowid_hi, limit, offset;
  int key_lo_inc, key_hi_inc, rowid_lo_inc, rowid_hi_inc;
  int key_in;            /* the key equality comes from IN (...) */
  int unused;            /* some constraint cannot be served */
};

/* Sort the usable constraints into slots. */
static void ts_plan_collect(sqlite3_index_info *info, ts_plan_slots *s) {
  memset(s, -1, sizeof(*s));
  s->key_in = 0;
  s->unused = 0;
  for (int i = 0; i < info->nConstraint; i++) {
    const struct sqlite3_index_constraint *c = &info->aConstraint[i];
    int op = c->op, col = c->iColumn, taken = 1;
    if (!c->usable) continue;
    if (op == SQLITE_INDEX_CONSTRAINT_LIMIT) s->limit = i;
    else if (op == SQLITE_INDEX_CONSTRAINT_OFFSET) s->offset = i;
    else if (op == SQLITE_INDEX_CONSTRAINT_EQ && col == TS_COL_PNS && s->pns < 0) s->pns = i;
    else if (op == SQLITE_INDEX_CONSTRAINT_EQ && col == TS_COL_SNS && s->sns < 0) s->sns = i;
    else if (op == SQLITE_INDEX_CONSTRAINT_EQ && col == TS_COL_KEY && s->key_eq < 0) s->key_eq = i;
    else if (op == SQLITE_INDEX_CONSTRAINT_EQ && col == TS_COL_ROWID && s->rowid_eq < 0) s->rowid_eq = i;
    else if ((op == SQLITE_INDEX_CONSTRAINT_GT || op == SQLITE_INDEX_CONSTRAINT_GE) && col == TS_COL_KEY && s->key_lo < 0) {
      s->key_lo = i;
      s->key_lo_inc = op == SQLITE_INDEX_CONSTRAINT_GE;
    } else if ((op == SQLITE_INDEX_CONSTRAINT_LT || op == SQLITE_INDEX_CONSTRAINT_LE) && col == TS_COL_KEY && s->key_hi < 0) {
      s->key_hi = i;
      s->key_hi_inc = op == SQLITE_INDEX_CONSTRAINT_LE;
    } else if ((op == SQLITE_INDEX_CONSTRAINT_GT || op == SQLITE_INDEX_CONSTRAINT_GE) && col == TS_COL_ROWID && s->rowid_lo < 0) {
      s->rowid_lo = i;
      s->rowid_lo_inc = op == SQLITE_INDEX_CONSTRAINT_GE;
    } else if ((op == SQLITE_INDEX_CONSTRAINT_LT || op == SQLITE_INDEX_CONSTRAINT_LE) && col == TS_COL_ROWID && s->rowid_hi < 0) {
      s->rowid_hi = i;
      s->rowid_hi_inc = op == SQLITE_INDEX_CONSTRAINT_LE;
    } else {
      taken = 0;
    }
    if (!taken) s->unused = 1;
  }
  if (s->key_eq >= 0) s->key_in = sqlite3_vtab_in(info, s->key_eq, -1);
}

/* Hand constraint i to xFilter as the next argument, omitted by SQLite. */
static void ts_plan_use(sqlite3_index_info *info, int i, int *argn) {
  info->aConstraintUsage[i].argvIndex = ++(*argn);
  info->aConstraintUsage[i].omit = 1;
}

/* Choose a plan: point read, rowid lookup, creation-order page, namespace
** scan with key range, or full scan; consume ORDER BY and LIMIT/OFFSET
** when the plan delivers them. */
static int ts_vtab_best_index(sqlite3_vtab *p, sqlite3_index_info *info) {
  static const int key_order[] = {TS_COL_PNS, TS_COL_SNS, TS_COL_KEY};
  static const int rowid_order[] = {TS_COL_ROWID};
  ts_plan_slots s;
  int argn = 0, plan = 0, desc = 0, ordered = 0, all_used;
  unsigned fixed = 0;
  double cost = 4e6, rows = 1e6;
  (void)p;
  ts_plan_collect(info, &s);
  if (s.rowid_eq >= 0) {
    plan = TS_IX_ROWID_EQ;
    ts_plan_use(info, s.rowid_eq, &argn);
    cost = 2;
    rows = 1;
    info->idxFlags |= SQLITE_INDEX_SCAN_UNIQUE;
    ordered = 1;
  } else {
    if (s.pns >= 0) {
      plan |= TS_IX_PNS;
      fixed |= 1u << TS_COL_PNS;
      ts_plan_use(info, s.pns, &argn);
      cost = 4e4;
      rows = 1e4;
    }
    if (s.pns >= 0 && s.sns >= 0) {
      plan |= TS_IX_SNS;
      fixed |= 1u << TS_COL_SNS;
      ts_plan_use(info, s.sns, &argn);
      cost = 4e3;
      rows = 1e3;
    }
    if ((plan & TS_IX_SNS) && s.key_eq >= 0) {
      plan |= TS_IX_KEY_EQ;
      fixed |= 1u << TS_COL_KEY;
      ts_plan_use(info, s.key_eq, &argn);
      cost = 10;
      rows = 1;
      info->idxFlags |= SQLITE_INDEX_SCAN_UNIQUE;
    }
    if ((plan & TS_IX_SNS) && !(plan & TS_IX_KEY_EQ)) {
      int want_created =
          (s.rowid_lo >= 0 || s.rowid_hi >= 0 || (info->nOrderBy == 1 && info->aOrderBy[0].iColumn == TS_COL_ROWID)) &&
          s.key_lo < 0 && s.key_hi < 0;
      if (want_created) {
        plan |= TS_IX_CREATED;
        if (s.rowid_lo >= 0) {
          plan |= TS_IX_ROWID_LO | (s.rowid_lo_inc ? TS_IX_ROWID_LO_INC : 0);
          ts_plan_use(info, s.rowid_lo, &argn);
        }
        if (s.rowid_hi >= 0) {
          plan |= TS_IX_ROWID_HI | (s.rowid_hi_inc ? TS_IX_ROWID_HI_INC : 0);
          ts_plan_use(info, s.rowid_hi, &argn);
        }
        cost = 2e3;
        rows = 500;
        ordered = ts_order_matches(info, rowid_order, 1, fixed, &desc);
      } else {
        if (s.key_lo >= 0) {
          plan |= TS_IX_KEY_LO | (s.key_lo_inc ? TS_IX_KEY_LO_INC : 0);
          ts_plan_use(info, s.key_lo, &argn);
          cost /= 2;
          rows /= 2;
        }
        if (s.key_hi >= 0) {
          plan |= TS_IX_KEY_HI | (s.key_hi_inc ? TS_IX_KEY_HI_INC : 0);
          ts_plan_use(info, s.key_hi, &argn);
          cost /= 2;
          rows /= 2;
        }
      }
    }
    if (!(plan & TS_IX_CREATED)) {
      ordered = !s.key_in && ts_order_matches(info, key_order, 3, fixed, &desc);
    }
  }
  if (ordered && info->nOrderBy > 0) {
    info->orderByConsumed = 1;
    if (desc) plan |= TS_IX_DESC;
  }
  /* LIMIT/OFFSET only when every other constraint is served here, the
  ** order is delivered, and no IN list splits the scan into several. */
  all_used = !s.unused;
  for (int i = 0; i < info->nConstraint; i++) {
    const struct sqlite3_index_constraint *c = &info->aConstraint[i];
    if (c->op == SQLITE_INDEX_CONSTRAINT_LIMIT || c->op == SQLITE_INDEX_CONSTRAINT_OFFSET) continue;
    if (!c->usable || info->aConstraintUsage[i].argvIndex == 0) all_used = 0;
  }
  if (all_used && !s.key_in && (info->nOrderBy == 0 || info->orderByConsumed)) {
    if (s.limit >= 0) {
      plan |= TS_IX_LIMIT;
      ts_plan_use(info, s.limit, &argn);
    }
    if (s.offset >= 0) {
      plan |= TS_IX_OFFSET;
      ts_plan_use(info, s.offset, &argn);
    }
  }
  info->idxNum = plan;
  info->estimatedCost = cost;
  info->estimatedRows = (sqlite3_int64)rows;
  return SQLITE_OK;
}

/**************************************************************************
** Cursors.
*/

/* xOpen: the engine cursor comes from the store's idle ones, its shell
** from the last one closed (a statement allocates nothing). */
static int ts_vtab_open(sqlite3_vtab *p, sqlite3_vtab_cursor **out) {
  ts_vtab *vt = (ts_vtab *)p;
  ts_vcursor *vc = vt->idle ? vt->idle : sqlite3_malloc(sizeof(*vc));
  ts_err err;
  int rc;
  ts_err_clear(&err);
  if (!vc) return SQLITE_NOMEM;
  vt->idle = NULL;
  memset(vc, 0, sizeof(*vc));
  rc = ts_cursor_new(vt->store, vt->delta, &vc->cur, &err);
  if (rc) {
    sqlite3_free(vc);
    return ts_vtab_fail(vt, &err);
  }
  *out = &vc->base;
  return SQLITE_OK;
}

/* xClose: keep the shell for the next xOpen when none is kept yet. */
static int ts_vtab_close(sqlite3_vtab_cursor *cur) {
  ts_vcursor *vc = (ts_vcursor *)cur;
  ts_vtab *vt = (ts_vtab *)cur->pVtab;
  ts_cursor_free(vc->cur);
  if (vt->idle) sqlite3_free(vc);
  else vt->idle = vc;
  return SQLITE_OK;
}

/* The text a TEXT column compares with: numbers take text affinity.
** Returns 0 when the value can equal no stored name (NULL, BLOB). */
static int ts_arg_name(ts_vtab *vt, sqlite3_value *v, ts_name *out) {
  int t = sqlite3_value_type(v);
  if (t == SQLITE_NULL || t == SQLITE_BLOB) return 0;
  if (t == SQLITE_TEXT) {
    out->p = (const char *)ts_text_bytes(vt, v, &out->n);
  } else {
    out->p = (const char *)sqlite3_value_text(v);
    out->n = (size_t)sqlite3_value_bytes(v);
  }
  return out->p != NULL;
}

/* Append bytes to a bound buffer, noting truncation past LMDB's key limit.
** A truncated bound t stands exactly for the original b: every stored key
** k (at most TS_LMDB_KEY_MAX bytes) has k >= b iff k > t, and k <= b iff
** k <= t. */
static size_t ts_bound_build(unsigned char *buf, const unsigned char *ns,
                             size_t nns, const ts_name *k, int *truncated) {
  size_t n = nns + k->n;
  memcpy(buf, ns, nns);
  *truncated = n > TS_LMDB_KEY_MAX;
  if (*truncated) n = TS_LMDB_KEY_MAX;
  memcpy(buf + nns, k->p, n - nns);
  return n;
}

/* A rowid bound as an integer, with the comparison's strictness folded in:
** returns 0 when no rowid can satisfy it (*none), else the inclusive bound. */
static int ts_rowid_bound(sqlite3_value *v, int lower, int inclusive,
                          uint64_t *out) {
  int t = sqlite3_value_numeric_type(v);
  double d;
  if (t == SQLITE_NULL) return 0;
  if (t == SQLITE_TEXT || t == SQLITE_BLOB) {
    /* numbers sort before text and blobs: rowid < 'x' holds for all */
    *out = lower ? TS_ROWID_PROVISIONAL * 2 : UINT64_MAX;
    return !lower;
  }
  d = sqlite3_value_double(v);
  if (t == SQLITE_INTEGER) {
    sqlite3_int64 i = sqlite3_value_int64(v);
    if (lower) {
      if (!inclusive) {
        if (i == INT64_MAX) return 0;
        i++;
      }
      *out = i < 1 ? 1 : (uint64_t)i;
    } else {
      if (i < 1 || (!inclusive && i == 1)) return 0;
      *out = (uint64_t)(inclusive ? i : i - 1);
    }
    return 1;
  }
  if (lower) {
    double c = inclusive ? ceil(d) : floor(d) + 1;
    *out = c < 1 ? 1 : (c >= 9.2e18 ? (uint64_t)INT64_MAX : (uint64_t)c);
    return c < 9.3e18;
  }
  double f = inclusive ? floor(d) : ceil(d) - 1;
  if (f < 1) return 0;
  *out = f >= 9.2e18 ? (uint64_t)INT64_MAX : (uint64_t)f;
  return 1;
}

/* A nonnegative LIMIT/OFFSET value, -1 for "no limit". */
static sqlite3_int64 ts_arg_count(sqlite3_value *v) {
  sqlite3_int64 n = sqlite3_value_int64(v);
  return n < 0 ? -1 : n;
}

/* Build the scan from idxNum and the arguments, then position. */
static int ts_vtab_filter(sqlite3_vtab_cursor *cur, int plan, const char *idxStr,
                          int argc, sqlite3_value **argv) {
  ts_vcursor *vc = (ts_vcursor *)cur;
  ts_vtab *vt = (ts_vtab *)cur->pVtab;
  unsigned char ns[TS_LMDB_KEY_MAX + 2], lo[TS_LMDB_KEY_MAX + 2], hi[TS_LMDB_KEY_MAX + 2];
  ts_name pns = {"", 0}, sns = {"", 0}, key;
  ts_scan scan;
  ts_err err;
  sqlite3_int64 offset = 0;
  int a = 0, empty = 0, rc, trunc;
  (void)idxStr;
  (void)argc;
  ts_err_clear(&err);
  memset(&scan, 0, sizeof(scan));
  vc->limit = -1;
  scan.desc = (plan & TS_IX_DESC) != 0;
  if ((plan & TS_IX_PNS) && !ts_arg_name(vt, argv[a++], &pns)) empty = 1;
  if ((plan & TS_IX_SNS) && !ts_arg_name(vt, argv[a++], &sns)) empty = 1;
  if (pns.n + sns.n + 2 >= TS_ENC_KEY_MAX || memchr(pns.p, 0, pns.n) || memchr(sns.p, 0, sns.n)) empty = 1;
  if (plan & TS_IX_ROWID_EQ) {
    sqlite3_value *v = argv[a++];
    uint64_t upper = 0;
    scan.kind = TS_SCAN_ROWID;
    if (!ts_rowid_bound(v, 1, 1, &scan.rowid) || !ts_rowid_bound(v, 0, 1, &upper) || scan.rowid != upper) empty = 1;
  } else if (plan & TS_IX_CREATED) {
    scan.kind = TS_SCAN_CREATED;
    scan.rlo = 1;
    scan.rhi = UINT64_MAX;
    if ((plan & TS_IX_ROWID_LO) && !ts_rowid_bound(argv[a++], 1, (plan & TS_IX_ROWID_LO_INC) != 0, &scan.rlo)) empty = 1;
    if ((plan & TS_IX_ROWID_HI) && !ts_rowid_bound(argv[a++], 0, (plan & TS_IX_ROWID_HI_INC) != 0, &scan.rhi)) empty = 1;
    if (!empty) {
      scan.nns = ts_prefix_encode(pns, &sns, ns);
      scan.ns = ns;
    }
  } else if (plan & TS_IX_KEY_EQ) {
    /* one key (the plan has both namespaces): encoded once, looked up */
    size_t nns;
    scan.kind = TS_SCAN_KEY;
    if (!ts_arg_name(vt, argv[a++], &key) || memchr(key.p, 0, key.n)) empty = 1;
    if (!empty) {
      nns = ts_prefix_encode(pns, &sns, lo);
      if (nns + key.n > TS_LMDB_KEY_MAX) {
        empty = 1;
      } else {
        memcpy(lo + nns, key.p, key.n);
        scan.lo = lo;
        scan.nlo = nns + key.n;
      }
    }
  } else {
    size_t nns = 0;
    scan.kind = TS_SCAN_KEYS;
    if (!empty && (plan & TS_IX_PNS)) nns = ts_prefix_encode(pns, (plan & TS_IX_SNS) ? &sns : NULL, ns);
    if (nns) {
      /* the namespace: [ns, ns with its last separator raised to 0x01) */
      memcpy(lo, ns, nns);
      memcpy(hi, ns, nns);
      hi[nns - 1] = 1;
      scan.lo = lo;
      scan.nlo = nns;
      scan.lo_incl = 1;
      scan.hi = hi;
      scan.nhi = nns;
      scan.hi_incl = 0;
    }
    if (plan & TS_IX_KEY_LO) {
      sqlite3_value *v = argv[a++];
      int t = sqlite3_value_type(v);
      if (t == SQLITE_NULL || t == SQLITE_BLOB) {
        empty = 1;                    /* text is never >= a blob or NULL */
      } else if (!empty && ts_arg_name(vt, v, &key)) {
        scan.nlo = ts_bound_build(lo, ns, nns, &key, &trunc);
        scan.lo_incl = trunc ? 0 : (plan & TS_IX_KEY_LO_INC) != 0;
      }
    }
    if (plan & TS_IX_KEY_HI) {
      sqlite3_value *v = argv[a++];
      int t = sqlite3_value_type(v);
      if (t == SQLITE_NULL) {
        empty = 1;
      } else if (t != SQLITE_BLOB && !empty && ts_arg_name(vt, v, &key)) {
        scan.nhi = ts_bound_build(hi, ns, nns, &key, &trunc);
        scan.hi_incl = trunc ? 1 : (plan & TS_IX_KEY_HI_INC) != 0;
      }
    }
  }
  if (plan & TS_IX_LIMIT) vc->limit = ts_arg_count(argv[a++]);
  if (plan & TS_IX_OFFSET) offset = ts_arg_count(argv[a++]);
  if (empty || vc->limit == 0) {
    /* an impossible plan: an empty key range */
    memset(&scan, 0, sizeof(scan));
    scan.kind = TS_SCAN_KEYS;
    scan.lo = scan.hi = lo;
    lo[0] = 1;
    scan.nlo = scan.nhi = 1;
    scan.lo_incl = 1;
  }
  rc = ts_cursor_begin(vc->cur, &scan, &err);
  while (rc == TS_OK && offset-- > 0 && !ts_cursor_eof(vc->cur)) rc = ts_cursor_next(vc->cur, &err);
  return rc ? ts_vtab_fail(vt, &err) : SQLITE_OK;
}

static int ts_vtab_next(sqlite3_vtab_cursor *cur) {
  ts_vcursor *vc = (ts_vcursor *)cur;
  ts_err err;
  ts_err_clear(&err);
  if (vc->limit > 0) vc->limit--;
  if (vc->limit == 0) return SQLITE_OK;
  if (ts_cursor_next(vc->cur, &err)) return ts_vtab_fail((ts_vtab *)cur->pVtab, &err);
  return SQLITE_OK;
}

static int ts_vtab_eof(sqlite3_vtab_cursor *cur) {
  ts_vcursor *vc = (ts_vcursor *)cur;
  return vc->limit == 0 || ts_cursor_eof(vc->cur);
}

/* Emit a value into a SQLite result, copying the bytes (SQLITE_TRANSIENT).
** SQLITE_STATIC would tell SQLite the bytes never change, and it keeps such
** a pointer beyond the row (max() holds on to it, and the caller may read a
** column until its next step); but an LMDB page moves when this process
** remaps a grown map, even during another statement's COMMIT in the same
** thread, and a cursor's buffers and read transaction are reused. */
static void ts_emit_result(void *ctx, const ts_value *v) {
  sqlite3_context *c = ctx;
  switch (v->type) {
    case TS_INTEGER: sqlite3_result_int64(c, v->i); break;
    case TS_FLOAT: sqlite3_result_double(c, v->f); break;
    case TS_TEXT: sqlite3_result_text64(c, v->p, v->n, SQLITE_TRANSIENT, SQLITE_UTF8); break;
    default: sqlite3_result_blob64(c, v->n ? v->p : "", v->n, SQLITE_TRANSIENT); break;
  }
}

static int ts_vtab_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int col) {
  ts_vcursor *vc = (ts_vcursor *)cur;
  ts_name n[3];
  ts_err err;
  ts_err_clear(&err);
  switch (col) {
    case TS_COL_PNS:
    case TS_COL_SNS:
    case TS_COL_KEY:
      if (ts_cursor_names(vc->cur, &n[0], &n[1], &n[2])) {
        return ts_vtab_error((ts_vtab *)cur->pVtab, SQLITE_CORRUPT, "a stored key is damaged (its three names cannot be split)");
      }
      /* each name ends at a 0x00 in the cursor's key: a length of -1 lets
      ** SQLite mark the copy as terminated, so reading it as C text later
      ** does not reallocate it */
      sqlite3_result_text(ctx, n[col].p, -1, SQLITE_TRANSIENT);
      return SQLITE_OK;
    case TS_COL_VALUE:
      if (ts_cursor_value(vc->cur, ts_emit_result, ctx, &err)) {
        return ts_vtab_fail((ts_vtab *)cur->pVtab, &err);
      }
      return SQLITE_OK;
    case TS_COL_TIER:
      if (sqlite3_vtab_nochange(ctx)) return SQLITE_OK;
      sqlite3_result_text(ctx, ts_cursor_tier(vc->cur) == TS_TIER_EPHEMERAL ? "ephemeral" : "primary", -1,
                          SQLITE_STATIC);
      return SQLITE_OK;
    case TS_COL_EPOCH:
      if (sqlite3_vtab_nochange(ctx)) return SQLITE_OK;
      if (ts_cursor_epoch(vc->cur)) sqlite3_result_int64(ctx, (sqlite3_int64)ts_cursor_epoch(vc->cur));
      return SQLITE_OK;
    default:
      return SQLITE_OK;   /* the command column reads as NULL */
  }
}

static int ts_vtab_rowid(sqlite3_vtab_cursor *cur, sqlite3_int64 *rowid) {
  *rowid = (sqlite3_int64)ts_cursor_rowid(((ts_vcursor *)cur)->cur);
  return SQLITE_OK;
}

/**************************************************************************
** Writes.
*/

/* Read one name column of a new row: NULL means '' for the namespaces;
** anything but TEXT is refused. */
static int ts_row_name(ts_vtab *vt, sqlite3_value *v, const char *col, int required,
                       ts_name *out) {
  int t = sqlite3_value_type(v);
  if (t == SQLITE_NULL && !required) {
    out->p = "";
    out->n = 0;
    return SQLITE_OK;
  }
  if (t == SQLITE_NULL) {
    return ts_vtab_error(vt, SQLITE_CONSTRAINT_NOTNULL, "%s is required (NOT NULL)", col);
  }
  if (t != SQLITE_TEXT) {
    static const char *const types[] = {"", "INTEGER", "REAL", "TEXT", "BLOB"};
    return ts_vtab_error(vt, SQLITE_CONSTRAINT, "%s must be TEXT, not %s", col, types[t]);
  }
  out->p = (const char *)ts_text_bytes(vt, v, &out->n);
  return out->p ? SQLITE_OK : SQLITE_NOMEM;
}

/* Check a new row's names and value; encode its key into buf. */
static int ts_row_prepare(ts_vtab *vt, sqlite3_value **cols, unsigned char *buf,
                          size_t *nkey, ts_value *val) {
  ts_name pns, sns, key;
  ts_err err = {0, {0}};
  int rc = ts_row_name(vt, cols[TS_COL_PNS], "primary_namespace", 0, &pns);
  if (!rc) rc = ts_row_name(vt, cols[TS_COL_SNS], "secondary_namespace", 0, &sns);
  if (!rc) rc = ts_row_name(vt, cols[TS_COL_KEY], "key", 1, &key);
  if (rc) return rc;
  if (ts_names_check(ts_store_names(vt->store), pns, sns, key, &err)) return ts_vtab_fail(vt, &err);
  memset(val, 0, sizeof(*val));
  val->type = sqlite3_value_type(cols[TS_COL_VALUE]);
  switch (val->type) {
    case SQLITE_NULL:
      return ts_vtab_error(vt, SQLITE_CONSTRAINT_NOTNULL, "value must not be NULL (key '%s')",
                           ts_err_show(key.p, key.n).z);
    case SQLITE_INTEGER: val->i = sqlite3_value_int64(cols[TS_COL_VALUE]); break;
    case SQLITE_FLOAT: val->f = sqlite3_value_double(cols[TS_COL_VALUE]); break;
    case SQLITE_TEXT:
      val->p = ts_text_bytes(vt, cols[TS_COL_VALUE], &val->n);
      if (!val->p && val->n) return SQLITE_NOMEM;
      break;
    default:
      val->p = sqlite3_value_blob(cols[TS_COL_VALUE]);
      val->n = (size_t)sqlite3_value_bytes(cols[TS_COL_VALUE]);
      break;
  }
  *nkey = ts_key_encode(pns, sns, key, buf);
  return SQLITE_OK;
}

/* The read-only columns must not be given a value. */
static int ts_row_check_readonly(ts_vtab *vt, sqlite3_value **cols) {
  if (!sqlite3_value_nochange(cols[TS_COL_TIER]) && sqlite3_value_type(cols[TS_COL_TIER]) != SQLITE_NULL) {
    return ts_vtab_error(vt, SQLITE_CONSTRAINT, "column 'tier' is read-only: routing decides it");
  }
  if (!sqlite3_value_nochange(cols[TS_COL_EPOCH]) && sqlite3_value_type(cols[TS_COL_EPOCH]) != SQLITE_NULL) {
    return ts_vtab_error(vt, SQLITE_CONSTRAINT, "column 'epoch' is read-only: the commit stamps it");
  }
  return SQLITE_OK;
}

/* A UNIQUE failure on the three name columns, as SQLite words it. */
static int ts_unique_error(ts_vtab *vt, const unsigned char *key, size_t nkey) {
  ts_name n[3];
  ts_key_decode(key, nkey, &n[0], &n[1], &n[2]);
  return ts_vtab_error(vt, SQLITE_CONSTRAINT_UNIQUE,
                       "UNIQUE constraint failed: primary_namespace, secondary_namespace, key ('%s', '%s', '%s')",
                       ts_err_show(n[0].p, n[0].n).z, ts_err_show(n[1].p, n[1].n).z,
                       ts_err_show(n[2].p, n[2].n).z);
}

/* Put a row at key, which must not exist unless the conflict mode says
** how to treat it.  fresh_always: the row is new even over an existing key
** (a row moved by UPDATE).  *rowid gets the row's rowid. */
static int ts_row_put(ts_vtab *vt, const unsigned char *key, size_t nkey,
                      const ts_value *val, int fresh_always, sqlite3_int64 *rowid) {
  ts_row_info info;
  ts_err err = {0, {0}};
  int rc = ts_store_lookup(vt->store, vt->delta, key, nkey, &info, &err);
  int fresh = 1;
  uint64_t r;
  if (rc != TS_OK && rc != TS_NOTFOUND) return ts_vtab_fail(vt, &err);
  if (rc == TS_OK) {
    int mode = sqlite3_vtab_on_conflict(vt->db);
    if (mode == SQLITE_IGNORE) return SQLITE_CONSTRAINT;   /* SQLite skips the row */
    if (mode != SQLITE_REPLACE) return ts_unique_error(vt, key, nkey);
    fresh = fresh_always || info.fresh;
  }
  if (rc == TS_OK && !fresh_always) {
    r = info.rowid;
  } else {
    r = ts_delta_new_rowid(vt->delta);
  }
  /* a moved row replaces the key it lands on: delete that key first, so
  ** the row is created again with a new creation number */
  if (rc == TS_OK && fresh_always && ts_delta_del(vt->delta, key, nkey)) return SQLITE_NOMEM;
  if (ts_delta_put(vt->delta, key, nkey, val, r, fresh)) return SQLITE_NOMEM;
  *rowid = (sqlite3_int64)r;
  return SQLITE_OK;
}

/* Run an admin command written to the command column. */
static int ts_vtab_command(ts_vtab *vt, sqlite3_value *cmd) {
  const char *c = (const char *)sqlite3_value_text(cmd);
  ts_err err = {0, {0}};
  if (sqlite3_value_type(cmd) != SQLITE_TEXT || !c) {
    return ts_vtab_error(vt, SQLITE_ERROR, "a command must be TEXT");
  }
  if (!strcmp(c, "sync")) {
    return ts_store_sync(vt->store, &err) ? ts_vtab_fail(vt, &err) : SQLITE_OK;
  }
  if (!strcmp(c, "verify")) {
    return ts_store_verify(vt->store, &err) ? ts_vtab_fail(vt, &err) : SQLITE_OK;
  }
  if (!strcmp(c, "repair")) {
    return ts_store_repair(vt->store, &err) ? ts_vtab_fail(vt, &err) : SQLITE_OK;
  }
  return ts_vtab_error(vt, SQLITE_ERROR, "unknown command '%s' (expected sync, verify or repair)", c);
}

/* xUpdate: DELETE (argc == 1), INSERT (argv[0] NULL) or UPDATE. */
static int ts_vtab_update(sqlite3_vtab *p, int argc, sqlite3_value **argv,
                          sqlite3_int64 *rowid) {
  ts_vtab *vt = (ts_vtab *)p;
  unsigned char oldkey[TS_LMDB_KEY_MAX], newkey[TS_LMDB_KEY_MAX];
  size_t nold = 0, nnew = 0;
  sqlite3_value **cols = argv + 2;
  ts_value val;
  ts_err err = {0, {0}};
  int rc, found = 0;
  if (argc > 1 && sqlite3_value_type(cols[TS_COL_CMD]) != SQLITE_NULL) {
    if (sqlite3_value_type(argv[0]) != SQLITE_NULL) {
      return ts_vtab_error(vt, SQLITE_ERROR, "the command column '%s' takes INSERT only", vt->cfg->table);
    }
    return ts_vtab_command(vt, cols[TS_COL_CMD]);
  }
  if (sqlite3_value_type(argv[0]) != SQLITE_NULL) {
    uint64_t r = (uint64_t)sqlite3_value_int64(argv[0]);
    rc = ts_store_key_by_rowid(vt->store, vt->delta, r, oldkey, &nold, &err);
    if (rc != TS_OK && rc != TS_NOTFOUND) return ts_vtab_fail(vt, &err);
    found = rc == TS_OK;
  }
  if (argc == 1) {
    if (found && ts_delta_del(vt->delta, oldkey, nold)) return SQLITE_NOMEM;
    return SQLITE_OK;
  }
  if (sqlite3_value_type(argv[1]) != SQLITE_NULL &&
      (sqlite3_value_type(argv[0]) == SQLITE_NULL || sqlite3_value_int64(argv[0]) != sqlite3_value_int64(argv[1]))) {
    return ts_vtab_error(vt, SQLITE_CONSTRAINT, "rowid is the key's creation number and cannot be set");
  }
  rc = ts_row_check_readonly(vt, cols);
  if (!rc) rc = ts_row_prepare(vt, cols, newkey, &nnew, &val);
  if (rc) return rc;
  if (sqlite3_value_type(argv[0]) == SQLITE_NULL) return ts_row_put(vt, newkey, nnew, &val, 0, rowid);
  if (!found) return SQLITE_OK;   /* the row went away meanwhile */
  if (nold == nnew && !memcmp(oldkey, newkey, nnew)) {
    /* same key: the value changes in place, the creation number stays (the
    ** row's as the statement read it; a provisional one is this
    ** transaction's creation) */
    uint64_t r = (uint64_t)sqlite3_value_int64(argv[0]);
    return ts_delta_put(vt->delta, newkey, nnew, &val, r, r >= TS_ROWID_PROVISIONAL) ? SQLITE_NOMEM : SQLITE_OK;
  }
  /* a new name: the row moves to a new key with a new creation number */
  rc = ts_row_put(vt, newkey, nnew, &val, 1, rowid);
  if (rc) return rc;
  return ts_delta_del(vt->delta, oldkey, nold) ? SQLITE_NOMEM : SQLITE_OK;
}

/**************************************************************************
** Transactions.
*/

/* Give the table an empty delta of its own.  Statements still stepping
** keep the one they hold: it is their transaction's (or, for statements
** opened before this transaction, the state they started from), never a
** later transaction's. */
static void ts_vtab_fresh_delta(ts_vtab *vt) {
  ts_delta *fresh = ts_delta_is_shared(vt->delta) ? ts_store_new_delta(vt->store) : NULL;
  if (fresh) {
    ts_delta_free(vt->delta);
    vt->delta = fresh;
  } else {
    ts_delta_reset(vt->delta);   /* open cursors notice and re-seek */
  }
}

static int ts_vtab_begin(sqlite3_vtab *p) {
  ts_vtab *vt = (ts_vtab *)p;
  vt->synced = 0;
  if (ts_delta_is_shared(vt->delta)) ts_vtab_fresh_delta(vt);
  return SQLITE_OK;
}

/* Flush the frozen delta before SQLite commits; a second call for the same
** transaction (a COMMIT retried after SQLITE_BUSY) writes nothing. */
static int ts_vtab_sync(sqlite3_vtab *p) {
  ts_vtab *vt = (ts_vtab *)p;
  uint64_t epoch;
  ts_err err = {0, {0}};
  if (vt->synced) return SQLITE_OK;
  if (ts_store_flush(vt->store, vt->delta, &epoch, &err)) return ts_vtab_fail(vt, &err);
  vt->synced = 1;
  return SQLITE_OK;
}

/* xCommit and xRollback: forget the delta (flushed, or discarded). */
static int ts_vtab_end(sqlite3_vtab *p) {
  ts_vtab *vt = (ts_vtab *)p;
  vt->synced = 0;
  ts_vtab_fresh_delta(vt);
  return SQLITE_OK;
}

static int ts_vtab_savepoint(sqlite3_vtab *p, int level) {
  return ts_delta_savepoint(((ts_vtab *)p)->delta, level) ? SQLITE_NOMEM : SQLITE_OK;
}

static int ts_vtab_release(sqlite3_vtab *p, int level) {
  ts_delta_release(((ts_vtab *)p)->delta, level);
  return SQLITE_OK;
}

static int ts_vtab_rollback_to(sqlite3_vtab *p, int level) {
  ts_delta_rollback_to(((ts_vtab *)p)->delta, level);
  return SQLITE_OK;
}

/* Renaming needs nothing: the command column follows the schema's name on
** the next connect. */
static int ts_vtab_rename(sqlite3_vtab *p, const char *name) {
  (void)p;
  (void)name;
  return SQLITE_OK;
}

static const sqlite3_module ts_module = {
    2,                      /* iVersion: savepoints */
    ts_vtab_init,           /* xCreate */
    ts_vtab_init,           /* xConnect */
    ts_vtab_best_index,
    ts_vtab_disconnect,
    ts_vtab_disconnect,     /* xDestroy: data stays on disk */
    ts_vtab_open,
    ts_vtab_close,
    ts_vtab_filter,
    ts_vtab_next,
    ts_vtab_eof,
    ts_vtab_column,
    ts_vtab_rowid,
    ts_vtab_update,
    ts_vtab_begin,
    ts_vtab_sync,
    ts_vtab_end,            /* xCommit */
    ts_vtab_end,            /* xRollback */
    NULL,                   /* xFindFunction */
    ts_vtab_rename,
    ts_vtab_savepoint,
    ts_vtab_release,
    ts_vtab_rollback_to,
    NULL,                   /* xShadowName */
#if SQLITE_VERSION_NUMBER >= 3044000
    NULL,                   /* xIntegrity */
#endif
};

int ts_vtab_register(sqlite3 *db) {
  return sqlite3_create_module_v2(db, "tierstore", &ts_module, NULL, NULL);
}
