/*
** status.c: the tierstore_status eponymous table and tierstore_version().
**
**   SELECT * FROM tierstore_status;     -- one row per tier open in this process
**   SELECT tierstore_version();         -- module and on-disk format versions
**
** The table is eponymous-only (as dbstat is): it exists in every schema
** without CREATE, is read-only, and takes its rows from src/status.c when
** a statement starts, so one statement sees one set of figures.
*/
#include "tierstore_ext.h"
#include "tierstore.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* Columns, in declaration order. */
enum {
  TS_ST_TIER, TS_ST_ROLE, TS_ST_STORE_ID, TS_ST_LAST_EPOCH, TS_ST_BEHIND, TS_ST_AHEAD,
  TS_ST_KEYS, TS_ST_BYTES, TS_ST_MAP_SIZE, TS_ST_COPIED, TS_ST_COPY_TOTAL,
  TS_ST_COMMITS, TS_ST_QUEUED_COMMITS, TS_ST_QUEUED_BYTES, TS_ST_FLUSHES,
  TS_ST_FAILED_FLUSHES, TS_ST_COMMITS_PER_FLUSH, TS_ST_FAILING, TS_ST_LAST_ERROR,
  TS_ST_LAST_ERROR_AT
};
static const char ts_status_schema[] =
    "CREATE TABLE x(tier TEXT, role TEXT, store_id TEXT, last_epoch INTEGER,"
    " behind INTEGER, ahead INTEGER, keys INTEGER, bytes INTEGER, map_size INTEGER,"
    " copied INTEGER, copy_total INTEGER, commits INTEGER, queued_commits INTEGER,"
    " queued_bytes INTEGER, flushes INTEGER, failed_flushes INTEGER,"
    " commits_per_flush REAL, failing INTEGER, last_error TEXT, last_error_at TEXT)";

typedef struct ts_status_cursor ts_status_cursor;
struct ts_status_cursor {
  sqlite3_vtab_cursor base;
  ts_status st;
  size_t i;
};

static int ts_status_connect(sqlite3 *db, void *aux, int argc, const char *const *argv,
                             sqlite3_vtab **out, char **errmsg) {
  sqlite3_vtab *vt;
  int rc;
  (void)aux;
  (void)argv;
  if (argc > 3) {
    *errmsg = sqlite3_mprintf("tierstore: tierstore_status takes no arguments");
    return SQLITE_ERROR;
  }
  rc = sqlite3_declare_vtab(db, ts_status_schema);
  if (rc != SQLITE_OK) return rc;
  vt = sqlite3_malloc(sizeof(*vt));
  if (!vt) return SQLITE_NOMEM;
  memset(vt, 0, sizeof(*vt));
  sqlite3_vtab_config(db, SQLITE_VTAB_DIRECTONLY);
  *out = vt;
  return SQLITE_OK;
}

static int ts_status_disconnect(sqlite3_vtab *vt) {
  sqlite3_free(vt);
  return SQLITE_OK;
}

/* Every plan is a full scan of a handful of rows. */
static int ts_status_best_index(sqlite3_vtab *vt, sqlite3_index_info *info) {
  (void)vt;
  info->estimatedCost = 10;
  info->estimatedRows = 4;
  return SQLITE_OK;
}

static int ts_status_open(sqlite3_vtab *vt, sqlite3_vtab_cursor **out) {
  ts_status_cursor *c = sqlite3_malloc(sizeof(*c));
  (void)vt;
  if (!c) return SQLITE_NOMEM;
  memset(c, 0, sizeof(*c));
  *out = &c->base;
  return SQLITE_OK;
}

static int ts_status_close(sqlite3_vtab_cursor *cur) {
  ts_status_cursor *c = (ts_status_cursor *)cur;
  ts_status_free(&c->st);
  sqlite3_free(c);
  return SQLITE_OK;
}

/* Take the figures now. */
static int ts_status_filter(sqlite3_vtab_cursor *cur, int idx, const char *idxstr,
                            int argc, sqlite3_value **argv) {
  ts_status_cursor *c = (ts_status_cursor *)cur;
  ts_err err = {0, {0}};
  int rc;
  (void)idx;
  (void)idxstr;
  (void)argc;
  (void)argv;
  ts_status_free(&c->st);
  c->i = 0;
  rc = ts_status_collect(&c->st, &err);
  if (rc) {
    sqlite3_free(cur->pVtab->zErrMsg);
    cur->pVtab->zErrMsg = sqlite3_mprintf("%s", err.msg);
    return ts_sqlite_rc(rc);
  }
  return SQLITE_OK;
}

static int ts_status_next(sqlite3_vtab_cursor *cur) {
  ((ts_status_cursor *)cur)->i++;
  return SQLITE_OK;
}

static int ts_status_eof(sqlite3_vtab_cursor *cur) {
  ts_status_cursor *c = (ts_status_cursor *)cur;
  return c->i >= c->st.nrows;
}

/* A figure of the row as an integer, NULL when have is 0. */
static void ts_status_int(sqlite3_context *ctx, int have, uint64_t v) {
  if (have) sqlite3_result_int64(ctx, (sqlite3_int64)v);
  else sqlite3_result_null(ctx);
}

static int ts_status_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int col) {
  ts_status_cursor *c = (ts_status_cursor *)cur;
  const ts_status_row *r = &c->st.rows[c->i];
  const ts_coord_stats *s = &r->coord;
  int lmdb = r->map_size != 0, co = r->has_coord;
  switch (col) {
    case TS_ST_TIER: sqlite3_result_text(ctx, r->path, -1, SQLITE_TRANSIENT); break;
    case TS_ST_ROLE: sqlite3_result_text(ctx, r->role, -1, SQLITE_STATIC); break;
    case TS_ST_STORE_ID: {
      char hex[2 * TS_STORE_ID_BYTES + 1];
      for (int i = 0; i < TS_STORE_ID_BYTES; i++) snprintf(hex + 2 * i, 3, "%02x", r->store_id[i]);
      sqlite3_result_text(ctx, hex, -1, SQLITE_TRANSIENT);
      break;
    }
    case TS_ST_LAST_EPOCH: ts_status_int(ctx, 1, r->last_epoch); break;
    case TS_ST_BEHIND: ts_status_int(ctx, r->has_lag, r->behind); break;
    case TS_ST_AHEAD: ts_status_int(ctx, r->has_lag, r->ahead); break;
    case TS_ST_KEYS: ts_status_int(ctx, 1, r->keys); break;
    case TS_ST_BYTES: ts_status_int(ctx, 1, r->bytes); break;
    case TS_ST_MAP_SIZE: ts_status_int(ctx, lmdb, r->map_size); break;
    case TS_ST_COPIED: ts_status_int(ctx, r->copying, r->copy_done); break;
    case TS_ST_COPY_TOTAL: ts_status_int(ctx, r->copying, r->copy_total); break;
    case TS_ST_COMMITS: ts_status_int(ctx, co, s->commits); break;
    case TS_ST_QUEUED_COMMITS: ts_status_int(ctx, co, s->queued_commits); break;
    case TS_ST_QUEUED_BYTES: ts_status_int(ctx, co, s->queued_bytes); break;
    case TS_ST_FLUSHES: ts_status_int(ctx, co, s->flushes); break;
    case TS_ST_FAILED_FLUSHES: ts_status_int(ctx, co, s->failed_flushes); break;
    case TS_ST_COMMITS_PER_FLUSH:
      if (co && s->flushes > s->failed_flushes) {
        sqlite3_result_double(ctx, (double)s->flushed_commits / (double)(s->flushes - s->failed_flushes));
      } else {
        sqlite3_result_null(ctx);
      }
      break;
    case TS_ST_FAILING: ts_status_int(ctx, co, (uint64_t)s->failing); break;
    case TS_ST_LAST_ERROR:
      if (co && s->last_error.code) sqlite3_result_text(ctx, s->last_error.msg, -1, SQLITE_TRANSIENT);
      else sqlite3_result_null(ctx);
      break;
    case TS_ST_LAST_ERROR_AT:
      if (co && s->last_error.code) {
        char when[40];
        struct tm tm;
        time_t t = (time_t)(s->last_error_at_ns / 1000000000);
        gmtime_r(&t, &tm);
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
        sqlite3_result_text(ctx, when, -1, SQLITE_TRANSIENT);
      } else {
        sqlite3_result_null(ctx);
      }
      break;
    default: sqlite3_result_null(ctx); break;
  }
  return SQLITE_OK;
}

static int ts_status_rowid(sqlite3_vtab_cursor *cur, sqlite3_int64 *rowid) {
  *rowid = (sqlite3_int64)((ts_status_cursor *)cur)->i + 1;
  return SQLITE_OK;
}

static sqlite3_module ts_status_module = {
  .iVersion = 0,
  .xCreate = NULL, /* eponymous only */
  .xConnect = ts_status_connect,
  .xBestIndex = ts_status_best_index,
  .xDisconnect = ts_status_disconnect,
  .xDestroy = ts_status_disconnect,
  .xOpen = ts_status_open,
  .xClose = ts_status_close,
  .xFilter = ts_status_filter,
  .xNext = ts_status_next,
  .xEof = ts_status_eof,
  .xColumn = ts_status_column,
  .xRowid = ts_status_rowid,
};

/* tierstore_version(): "tierstore <version>, on-disk format <n>". */
static void ts_version_func(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc;
  (void)argv;
  sqlite3_result_text(ctx, "tierstore " TIERSTORE_VERSION ", on-disk format "
                      TS_STRINGIFY(TIERSTORE_FORMAT_VERSION), -1, SQLITE_STATIC);
}

/* Register the status table and the version function on db. */
int ts_status_register(sqlite3 *db) {
  int rc = sqlite3_create_module_v2(db, "tierstore_status", &ts_status_module, NULL, NULL);
  if (rc == SQLITE_OK) {
    rc = sqlite3_create_function(db, "tierstore_version", 0,
                                 SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, NULL,
                                 ts_version_func, NULL, NULL);
  }
  return rc;
}
