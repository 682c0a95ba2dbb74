/*
** status.c: the figures of every tier this process has open (what the
** tierstore_status table shows).
**
** One row per LMDB environment (its role: primary, backup or both, as the
** tables that opened it use it) and one per ephemeral tier.  A backup's row
** says how many epochs it is behind or ahead of the primary of its store
** open in this process, and how far a running fill has got; a primary's
** row carries its write coordinator's figures.
*/
#include "tierstore_int.h"

#include <stdlib.h>
#include <string.h>

/* The row of environment env (roles as its tables gave them). */
static int ts_status_env_row(ts_env *env, unsigned roles, ts_status_row *r, ts_err *err) {
  ts_env_figures_t fig;
  int rc = ts_env_figures(env, &fig, err);
  if (rc) return rc;
  memset(r, 0, sizeof(*r));
  r->path = ts_env_path(env);
  r->role = roles == (TS_ROLE_PRIMARY | TS_ROLE_BACKUP) ? "primary,backup"
            : roles & TS_ROLE_BACKUP ? "backup" : "primary";
  memcpy(r->store_id, ts_env_store_id(env), TS_STORE_ID_BYTES);
  r->last_epoch = fig.last_epoch;
  r->keys = fig.keys;
  r->bytes = fig.bytes;
  r->map_size = fig.map_size;
  r->copying = ts_env_copy_progress(env, &r->copy_done, &r->copy_total);
  if (roles & TS_ROLE_PRIMARY) r->has_coord = ts_coord_stats_of(env, &r->coord);
  return TS_OK;
}

/* The row of an ephemeral tier beside primary env. */
static void ts_status_mem_row(ts_env *env, ts_mem *m, ts_status_row *r) {
  ts_mem_snap *s = ts_mem_snapshot(m);
  size_t n = ts_mem_snap_count(s);
  memset(r, 0, sizeof(*r));
  r->path = ts_env_path(env);
  r->role = "ephemeral";
  memcpy(r->store_id, ts_env_store_id(env), TS_STORE_ID_BYTES);
  for (size_t i = 0; i < n; i++) {
    const ts_mem_row *row = ts_mem_snap_row(s, i);
    if (row->epoch > r->last_epoch) r->last_epoch = row->epoch;
    r->bytes += row->nkey + (row->value.type == TS_TEXT || row->value.type == TS_BLOB ? row->value.n : 8);
  }
  r->keys = n;
  ts_mem_snap_release(m, s);
}

/* A backup's distance to the primary of its store among the rows. */
static void ts_status_lag(ts_status_row *rows, size_t n, ts_status_row *b) {
  for (size_t i = 0; i < n; i++) {
    const ts_status_row *p = rows + i;
    if (p == b || strncmp(p->role, "primary", 7) || memcmp(p->store_id, b->store_id, TS_STORE_ID_BYTES)) {
      continue;
    }
    b->has_lag = 1;
    b->behind = p->last_epoch > b->last_epoch ? p->last_epoch - b->last_epoch : 0;
    b->ahead = b->last_epoch > p->last_epoch ? b->last_epoch - p->last_epoch : 0;
    return;
  }
}

/* Every tier's row (free with ts_status_free).  The rows hold references
** on their environments, so paths stay valid. */
int ts_status_collect(ts_status *out, ts_err *err) {
  unsigned *roles = NULL;
  int rc;
  memset(out, 0, sizeof(*out));
  rc = ts_env_list(&out->envs, &out->nenvs, &roles);
  if (rc) return ts_err_set(err, TS_NOMEM, "out of memory listing the tiers");
  out->rows = calloc(2 * out->nenvs + 1, sizeof(*out->rows));
  if (!out->rows) {
    free(roles);
    ts_status_free(out);
    return ts_err_set(err, TS_NOMEM, "out of memory listing the tiers");
  }
  for (size_t i = 0; i < out->nenvs && !rc; i++) {
    ts_mem *m;
    rc = ts_status_env_row(out->envs[i], roles[i], out->rows + out->nrows, err);
    if (rc) break;
    out->nrows++;
    if ((roles[i] & TS_ROLE_PRIMARY) && (m = ts_env_mem_peek(out->envs[i])) != NULL) {
      ts_status_mem_row(out->envs[i], m, out->rows + out->nrows++);
    }
  }
  free(roles);
  if (rc) {
    ts_status_free(out);
    return rc;
  }
  for (size_t i = 0; i < out->nrows; i++) {
    if (!strcmp(out->rows[i].role, "backup")) ts_status_lag(out->rows, out->nrows, out->rows + i);
  }
  return TS_OK;
}

void ts_status_free(ts_status *s) {
  for (size_t i = 0; i < s->nenvs; i++) ts_env_close(s->envs[i]);
  free(s->envs);
  free(s->rows);
  memset(s, 0, sizeof(*s));
}
