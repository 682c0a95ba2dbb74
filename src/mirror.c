/*
** mirror.c: keeping a backup environment equal to its primary.
**
** The primary and the backup are written at the same time: for each write
** of an epoch range, a second thread takes the backup's write lock while
** the primary's write transaction is still open (so no other write of the
** primary, in any process, can come between), applies the resolved
** changes as the primary publishes them, and commits alongside the
** primary.  The two commits are not atomic together: a crash, a full disk
** or an I/O error can leave one with a write the other lacks.  Each
** environment records what it holds: "last_epoch" and "last_flush" (the
** identity of the last write it took); the backup also keeps, as replay
** records, the keys of the writes it took until a later write shows the
** primary took them too.
**
** The primary decides.  A backup that is not level (another epoch or
** another last write) is reconciled from the primary's newest state: the
** keys of its own unconfirmed writes get the primary's values (a write
** only the backup took is undone), the epochs it missed are replayed from
** the primary's replay records (the keys each epoch changed), and where
** those records do not reach back (a new backup, one that missed a write
** by a table without it) the backup gets a full copy.  Reconciling reads
** only the keys of the epochs that differ.  (Writes made through a table
** that names the backup as its primary leave no record of their own:
** `verify` finds them and `repair` copies the primary.)
*/
#include "tierstore_int.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a reconciliation needs. */
typedef struct ts_mirror ts_mirror;
struct ts_mirror {
  ts_env *primary;
  ts_err *err;               /* for failures reading the primary */
  int force;                 /* copy everything, whatever the epochs say */
};

/* Test-only fault points: TIERSTORE_FAULT names the point at which the
** process kills itself, as a crash there would. */
int ts_fault_armed(const char *name) {
  const char *f = getenv("TIERSTORE_FAULT");
  return f && !strcmp(f, name);
}

/* Record that the backup now holds the primary's epoch and last write,
** and raise its next creation number to at least next. */
static int ts_mirror_holds(ts_wtxn *w, uint64_t epoch, uint64_t next,
                           uint64_t flush) {
  uint64_t cur;
  int rc = ts_wtxn_meta_put(w, "last_epoch", epoch);
  if (!rc) rc = ts_wtxn_meta_put(w, "last_flush", flush);
  if (!rc) rc = ts_wtxn_meta_get(w, "next_rowid", &cur);
  if (!rc && cur < next) rc = ts_wtxn_meta_put(w, "next_rowid", next);
  return rc;
}

/* Replay one record: put the primary's current state of each key it
** names into the backup.  The primary's read lock is held. */
static int ts_mirror_replay_record(ts_mirror *m, ts_wtxn *w, ts_snap *ps,
                                   const unsigned char *rec, size_t n) {
  const unsigned char *end = rec + n;
  int rc = 0;
  while (rec + 2 <= end && !rc) {
    size_t nk = ((size_t)rec[0] << 8) | rec[1];
    ts_change ch;
    ts_record r;
    int got;
    if (rec + 2 + nk > end) return MDB_CORRUPTED;
    memset(&ch, 0, sizeof(ch));
    ch.key = rec + 2;
    ch.nkey = nk;
    got = ts_snap_get(ps, ch.key, nk, &r, m->err);
    if (got != TS_OK && got != TS_NOTFOUND) return EIO;
    ch.op = got == TS_OK ? TS_OP_PUT : TS_OP_DEL;
    if (got == TS_OK) {
      ch.value = r.value;
      ch.rowid = r.rowid;
      ch.epoch = r.epoch;
    }
    rc = ts_wtxn_change(w, &ch);
    rec += 2 + nk;
  }
  return rc;
}

/* Replay the primary's records of the epochs after b up to p.  The
** primary's read lock is held. */
static int ts_mirror_replay(ts_mirror *m, ts_wtxn *w, ts_snap *ps, uint64_t b,
                            uint64_t p) {
  unsigned char from[8];
  ts_lcur rc_cur;
  int rc;
  if (ts_lcur_open(&rc_cur, ps, TS_DB_REPLAY, m->err)) return EIO;
  ts_be64_put(from, b + 1);
  rc = ts_lcur_seek(&rc_cur, from, 8, 0, m->err) ? EIO : 0;
  while (!rc && rc_cur.valid && rc_cur.k.mv_size == 8 && ts_be64_get(rc_cur.k.mv_data) <= p) {
    rc = ts_mirror_replay_record(m, w, ps, rc_cur.v.mv_data, rc_cur.v.mv_size);
    if (!rc) rc = ts_lcur_step(&rc_cur, 0, m->err) ? EIO : 0;
  }
  ts_lcur_close(&rc_cur);
  return rc;
}

/* Bring the backup to the primary's state ps: its own unconfirmed writes
** take the primary's values, the epochs after the last confirmed one are
** replayed, or everything is copied.  The primary's read lock is held. */
static int ts_mirror_reconcile(ts_mirror *m, ts_wtxn *w, ts_snap *ps) {
  uint64_t p, floor, next, pf, b, bf, first;
  unsigned char *own = NULL;
  size_t nown = 0;
  int rc;
  if (ts_snap_last_epoch(ps, &p, m->err) || ts_snap_meta(ps, "replay_floor", &floor, m->err) ||
      ts_snap_next_rowid(ps, &next, m->err) || ts_snap_meta(ps, "last_flush", &pf, m->err)) {
    return EIO;
  }
  rc = ts_wtxn_meta_get(w, "last_epoch", &b);
  if (!rc) rc = ts_wtxn_meta_get(w, "last_flush", &bf);
  if (!rc) rc = ts_wtxn_replay_all(w, &own, &nown, &first);
  if (rc) return rc;
  if (b == p && bf == pf && !m->force) {
    free(own);
    return 0;
  }
  /* the last epoch both are known to share: before the backup's oldest
  ** unconfirmed write */
  if (first && first - 1 < b) b = first - 1;
  if (m->force || b > p || b < floor) {
    free(own);
    rc = ts_wtxn_copy_from(w, ps);
  } else {
    rc = ts_mirror_replay_record(m, w, ps, own, nown);
    free(own);
    if (!rc) rc = ts_mirror_replay(m, w, ps, b, p);
    if (!rc) rc = ts_wtxn_replay_clear(w);
  }
  if (!rc) rc = ts_mirror_holds(w, p, next, pf);
  return rc;
}

/* The backup transaction of a catch-up: reconcile with the primary's
** newest state, read after this transaction took the backup's lock. */
static int ts_mirror_body(void *ctx, ts_wtxn *w) {
  ts_mirror *m = ctx;
  ts_snap ps = {0};
  int rc;
  if (ts_snap_begin(&ps, m->primary, m->err)) return EIO;
  ts_env_read_lock(m->primary);
  rc = ts_mirror_reconcile(m, w, &ps);
  ts_env_read_unlock(m->primary);
  ts_snap_free(&ps);
  return rc;
}

static int ts_mirror_state(ts_env *env, uint64_t *epoch, uint64_t *flush, ts_err *err);

/* Word a backup write's failure after the backup. */
static int ts_mirror_fail(ts_env *backup, int rc, ts_err *err) {
  char msg[sizeof(err->msg)];
  snprintf(msg, sizeof(msg), "%s", err->msg);
  return ts_err_set(err, rc, "backup '%s' did not take the commit (it is behind and catches up later): %s",
                    ts_env_path(backup), msg + (strncmp(msg, "tierstore: ", 11) ? 0 : 11));
}

/* Make the backup equal to the primary; force: by a full copy. */
int ts_mirror_catch_up(ts_env *primary, ts_env *backup, ts_durability dur,
                       int force, ts_err *err) {
  ts_err perr = {0, {0}};
  ts_mirror m;
  int level = 0, rc;
  /* a level backup is left alone (not even a transaction) */
  if (!force && ts_mirror_level(primary, backup, &level, &perr) == TS_OK && level) return TS_OK;
  memset(&m, 0, sizeof(m));
  m.primary = primary;
  m.force = force;
  m.err = &perr;
  ts_env_commit_lock(backup);
  rc = ts_env_write(backup, dur, (size_t)64 << 20, ts_mirror_body, NULL, &m, err);
  ts_env_commit_unlock(backup);
  if (rc && perr.code) {
    /* the primary could not be read: report that instead */
    *err = perr;
    rc = perr.code;
  }
  return rc ? ts_mirror_fail(backup, rc, err) : TS_OK;
}

/* Epoch and last write an environment holds now. */
static int ts_mirror_state(ts_env *env, uint64_t *epoch, uint64_t *flush,
                           ts_err *err) {
  ts_snap s = {0};
  int rc = ts_snap_begin(&s, env, err);
  if (rc) return rc;
  ts_env_read_lock(env);
  rc = ts_snap_last_epoch(&s, epoch, err);
  if (!rc && flush) rc = ts_snap_meta(&s, "last_flush", flush, err);
  ts_env_read_unlock(env);
  ts_snap_free(&s);
  return rc;
}

int ts_mirror_epoch(ts_env *env, uint64_t *epoch, ts_err *err) {
  return ts_mirror_state(env, epoch, NULL, err);
}

int ts_mirror_level(ts_env *primary, ts_env *backup, int *level, ts_err *err) {
  uint64_t pe = 0, pf = 0, be = 0, bf = 0;
  int rc = ts_mirror_state(primary, &pe, &pf, err);
  if (!rc) rc = ts_mirror_state(backup, &be, &bf, err);
  *level = !rc && pe == be && pf == bf;
  return rc;
}

/**************************************************************************
** The concurrent backup write of one primary write.
*/
#define TS_MIRROR_NOT_NEXT EALREADY   /* the backup is not on the write before */

/* Set the pair's begun state and wake the primary waiting for it. */
static void ts_pair_begun(ts_mirror_pair *p, int begun) {
  pthread_mutex_lock(&p->mu);
  p->begun = begun;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

/* Wait until changes beyond 'have' are resolved, all are, or the primary's
** attempt failed; returns how many are resolved, *ended and *failed. */
static size_t ts_pair_wait_changes(ts_mirror_pair *p, size_t have, int *ended,
                                   int *failed) {
  size_t n;
  pthread_mutex_lock(&p->mu);
  while (p->n == have && !p->ended && !p->have_verdict) pthread_cond_wait(&p->cv, &p->mu);
  n = p->n;
  *ended = p->ended;
  *failed = p->have_verdict && p->verdict;
  pthread_mutex_unlock(&p->mu);
  return n;
}

/* The backup transaction of the concurrent write: on top of the write the
** primary took last (else nothing: the caller reconciles after the
** primary), this write's changes as the primary resolves them, then what
** the backup now holds and the record of the keys it took. */
static int ts_pair_body(void *ctx, ts_wtxn *w) {
  ts_mirror_pair *p = ctx;
  const ts_commit *c = p->c;
  uint64_t b, bf;
  size_t done = 0;
  int ended = 0, failed = 0;
  int rc = ts_wtxn_meta_get(w, "last_epoch", &b);
  if (!rc) rc = ts_wtxn_meta_get(w, "last_flush", &bf);
  if (rc || b != c->prev_epoch || bf != c->prev_flush) {
    ts_pair_begun(p, -1);
    return rc ? rc : TS_MIRROR_NOT_NEXT;
  }
  ts_pair_begun(p, 1);
  while (!rc && !ended) {
    size_t n = ts_pair_wait_changes(p, done, &ended, &failed);
    if (failed) return ECANCELED;
    for (; done < n && !rc; done++) {
      /* the changes' keys and values lie scattered in the primary's deltas */
      if (done + 8 < n) {
        __builtin_prefetch(c->changes[done + 8].key);
        __builtin_prefetch(c->changes[done + 8].value.p);
      }
      rc = ts_wtxn_change(w, &c->changes[done]);
    }
  }
  /* the writes before this one are confirmed: the primary took them */
  if (!rc) rc = ts_wtxn_replay_prune(w, c->prev_epoch);
  if (!rc && done) rc = ts_wtxn_replay_put(w, c->first_epoch, c->changes, done);
  if (!rc) rc = ts_wtxn_meta_put(w, "replay_floor", c->last_epoch);
  if (!rc) rc = ts_mirror_holds(w, c->last_epoch, p->next_rowid, c->flush_id);
  return rc;
}

/* Before the backup commits: under the after-primary fault, wait for the
** primary's commit and die before the backup's (a crash between). */
static int ts_pair_before_commit(void *ctx) {
  ts_mirror_pair *p = ctx;
  int v;
  if (!ts_fault_armed("after-primary")) return 0;
  pthread_mutex_lock(&p->mu);
  while (!p->have_verdict) pthread_cond_wait(&p->cv, &p->mu);
  v = p->verdict;
  pthread_mutex_unlock(&p->mu);
  if (v == 0) raise(SIGKILL);
  return ECANCELED;
}

/* The second thread: the backup's write. */
static void ts_pair_thread(void *arg) {
  ts_mirror_pair *p = arg;
  ts_write_hooks hooks = {ts_pair_before_commit, NULL, p};
  ts_env_commit_lock(p->backup);
  p->rc = ts_env_write(p->backup, p->dur, p->grow_hint, ts_pair_body, &hooks, p, &p->err);
  ts_env_commit_unlock(p->backup);
  if (p->begun == 0) ts_pair_begun(p, -1);   /* failed before its body */
}

/* The primary's write resolved changes: start the backup's write with the
** first call of an attempt, then hand it each batch. */
void ts_mirror_pair_resolved(void *ctx, const ts_commit *c, int done) {
  ts_mirror_pair *p = ctx;
  if (!p->running && c->nchanges == 0 && !done) {
    size_t bytes = 32 * c->cap_changes;
    for (size_t i = 0; i < c->nf; i++) bytes += ts_delta_bytes(c->f[i]->d);
    p->c = c;
    p->grow_hint = bytes;
    p->n = 0;
    p->ended = 0;
    p->next_rowid = 0;
    p->begun = 0;
    p->have_verdict = 0;
    p->rc = TS_ERROR;
    p->running = p->worker != NULL;
    if (p->running) ts_worker_run(p->worker, ts_pair_thread, p);
    return;
  }
  if (!p->running) return;
  pthread_mutex_lock(&p->mu);
  p->n = c->nchanges;
  p->ended = done;
  if (done) p->next_rowid = c->next_rowid;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

/* Before the primary commits: the backup's write must hold the backup's
** lock first (so the backup's writes keep the primary's order).  Under the
** after-backup fault, wait for the backup's commit and die before the
** primary's. */
static int ts_pair_primary_ready(void *ctx) {
  ts_mirror_pair *p = ctx;
  if (!p->running) return 0;
  pthread_mutex_lock(&p->mu);
  while (p->begun == 0) pthread_cond_wait(&p->cv, &p->mu);
  pthread_mutex_unlock(&p->mu);
  if (ts_fault_armed("after-backup") && p->begun == 1) {
    ts_worker_join(p->worker);
    p->running = 0;
    if (p->rc == TS_OK) raise(SIGKILL);
  }
  return 0;
}

/* After the primary's attempt: tell the backup's write (0: committed); a
** failed attempt ends the thread (a retry starts another). */
static void ts_pair_primary_done(void *ctx, int rc) {
  ts_mirror_pair *p = ctx;
  if (!p->running) return;
  pthread_mutex_lock(&p->mu);
  p->verdict = rc;
  p->have_verdict = 1;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  if (rc) {
    ts_worker_join(p->worker);
    p->running = 0;
  }
}

ts_write_hooks ts_mirror_pair_hooks(ts_mirror_pair *p) {
  ts_write_hooks h = {ts_pair_primary_ready, ts_pair_primary_done, p};
  return h;
}

/* Wait for the backup's write: TS_OK when the backup took the write,
** TS_NOTFOUND when it did not try (not on the primary's last write, or
** no thread), else its error, worded in p->err. */
int ts_mirror_pair_finish(ts_mirror_pair *p) {
  if (p->running) {
    ts_worker_join(p->worker);
    p->running = 0;
  }
  if (!p->c || p->begun != 1) return TS_NOTFOUND;
  return p->rc ? ts_mirror_fail(p->backup, p->rc, &p->err) : TS_OK;
}

void ts_mirror_pair_init(ts_mirror_pair *p, ts_env *backup, ts_durability dur,
                         ts_worker *worker) {
  memset(p, 0, sizeof(*p));
  p->backup = backup;
  p->worker = worker;
  p->dur = dur;
  p->rc = TS_ERROR;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
}

void ts_mirror_pair_free(ts_mirror_pair *p) {
  if (p->running) ts_pair_primary_done(p, ECANCELED);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
}

/* Describe an encoded key for a message. */
static void ts_mirror_key_text(const unsigned char *k, size_t n, char *out,
                               size_t cap) {
  ts_name a, b, c;
  if (ts_key_decode(k, n, &a, &b, &c)) {
    snprintf(out, cap, "(undecodable)");
    return;
  }
  snprintf(out, cap, "('%s', '%s', '%s')", ts_err_show(a.p, a.n).z,
           ts_err_show(b.p, b.n).z, ts_err_show(c.p, c.n).z);
}

/* Compare the two data databases key by key.  Read locks held. */
static int ts_mirror_compare(ts_env *primary, ts_env *backup, ts_snap *ps,
                             ts_snap *bs, ts_err *err) {
  ts_lcur pc, bc;
  char what[3 * (TS_SHOW_MAX + 8)];
  int rc = ts_lcur_open(&pc, ps, TS_DB_DATA, err);
  if (rc) return rc;
  rc = ts_lcur_open(&bc, bs, TS_DB_DATA, err);
  if (rc) {
    ts_lcur_close(&pc);
    return rc;
  }
  rc = ts_lcur_seek(&pc, NULL, 0, 0, err);
  if (!rc) rc = ts_lcur_seek(&bc, NULL, 0, 0, err);
  while (!rc && (pc.valid || bc.valid)) {
    int cmp;
    if (!pc.valid || !bc.valid) {
      cmp = pc.valid ? -1 : 1;
    } else {
      size_t n = pc.k.mv_size < bc.k.mv_size ? pc.k.mv_size : bc.k.mv_size;
      cmp = memcmp(pc.k.mv_data, bc.k.mv_data, n);
      if (!cmp) cmp = pc.k.mv_size < bc.k.mv_size ? -1 : pc.k.mv_size > bc.k.mv_size;
    }
    if (cmp < 0) {
      ts_mirror_key_text(pc.k.mv_data, pc.k.mv_size, what, sizeof(what));
      rc = ts_err_set(err, TS_ERROR, "verify: key %s is in the primary '%s' but not in the backup '%s'",
                      what, ts_env_path(primary), ts_env_path(backup));
    } else if (cmp > 0) {
      ts_mirror_key_text(bc.k.mv_data, bc.k.mv_size, what, sizeof(what));
      rc = ts_err_set(err, TS_ERROR, "verify: key %s is in the backup '%s' but not in the primary '%s'",
                      what, ts_env_path(backup), ts_env_path(primary));
    } else if (pc.v.mv_size != bc.v.mv_size || memcmp(pc.v.mv_data, bc.v.mv_data, pc.v.mv_size)) {
      ts_record pr, br;
      ts_mirror_key_text(pc.k.mv_data, pc.k.mv_size, what, sizeof(what));
      ts_record_decode(pc.v.mv_data, pc.v.mv_size, &pr);
      ts_record_decode(bc.v.mv_data, bc.v.mv_size, &br);
      rc = ts_err_set(err, TS_ERROR,
                      "verify: key %s differs: primary rowid %llu epoch %llu, backup rowid %llu epoch %llu%s",
                      what, (unsigned long long)pr.rowid, (unsigned long long)pr.epoch,
                      (unsigned long long)br.rowid, (unsigned long long)br.epoch,
                      pr.rowid == br.rowid && pr.epoch == br.epoch ? " (the values differ)" : "");
    } else {
      rc = ts_lcur_step(&pc, 0, err);
      if (!rc) rc = ts_lcur_step(&bc, 0, err);
    }
  }
  ts_lcur_close(&pc);
  ts_lcur_close(&bc);
  return rc;
}

/* Compare identity, epochs and every key and value of the two. */
int ts_mirror_verify(ts_env *primary, ts_env *backup, ts_err *err) {
  ts_snap ps = {0}, bs = {0};
  uint64_t pe = 0, be = 0;
  int rc;
  if (memcmp(ts_env_store_id(primary), ts_env_store_id(backup), TS_STORE_ID_BYTES)) {
    return ts_err_set(err, TS_ERROR, "verify: backup '%s' belongs to another store than primary '%s'",
                      ts_env_path(backup), ts_env_path(primary));
  }
  rc = ts_snap_begin(&ps, primary, err);
  if (!rc) rc = ts_snap_begin(&bs, backup, err);
  if (!rc) {
    ts_env_read_lock(primary);
    ts_env_read_lock(backup);
    rc = ts_snap_last_epoch(&ps, &pe, err);
    if (!rc) rc = ts_snap_last_epoch(&bs, &be, err);
    if (!rc && pe != be) {
      rc = ts_err_set(err, TS_ERROR, "verify: backup '%s' is at epoch %llu, primary '%s' at epoch %llu",
                      ts_env_path(backup), (unsigned long long)be, ts_env_path(primary),
                      (unsigned long long)pe);
    }
    if (!rc) rc = ts_mirror_compare(primary, backup, &ps, &bs, err);
    ts_env_read_unlock(backup);
    ts_env_read_unlock(primary);
  }
  ts_snap_free(&ps);
  ts_snap_free(&bs);
  return rc;
}
