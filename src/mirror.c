/*
** mirror.c: keeping a backup environment equal to its primary.
**
** The backup receives each commit's resolved changes right after the
** primary committed them, so it is never ahead of the primary.  Its
** "last_epoch" says what it holds.  When it misses epochs (a crash between
** the two writes, a full disk, another process whose backup write is still
** to come), the next writer catches it up from the primary: the primary
** keeps a replay record per epoch (the keys it changed) until the backup
** is known to hold it, so catching up reads only those keys.  When records
** are missing (a new or foreign-history backup) the backup is filled with
** a copy of the primary.
**
** Every backup write runs inside one backup write transaction and reads
** the primary's newest state only after that transaction began, so two
** writers of the backup (threads or processes) never interleave: each
** leaves it equal to some primary state at least as new as before.
*/
#include "tierstore_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a backup write needs. */
typedef struct ts_mirror ts_mirror;
struct ts_mirror {
  ts_env *primary;
  const ts_change *changes;  /* this commit's, or NULL for a catch-up */
  size_t nchanges;
  uint64_t epoch;            /* the commit's epoch (0 for a catch-up) */
  uint64_t next_rowid;
  ts_err *err;               /* for failures reading the primary */
  int force;                 /* copy everything, whatever the epochs say */
  int filled;                /* out: the backup was rebuilt by a copy */
};

/* Record that the backup now holds the primary's epoch, and raise its
** next creation number to at least next. */
static int ts_mirror_holds(ts_wtxn *w, uint64_t epoch, uint64_t next) {
  uint64_t cur;
  int rc = ts_wtxn_meta_put(w, "last_epoch", epoch);
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

/* Bring the backup from epoch b to the primary's newest state: replay the
** keys of the epochs after b (epochs without a record changed nothing on
** disk: they were memory-only), or copy everything when the records do not
** reach back to b.  The primary's read lock is held. */
static int ts_mirror_replay(ts_mirror *m, ts_wtxn *w, ts_snap *ps, uint64_t b) {
  uint64_t p, floor, next;
  unsigned char from[8];
  ts_lcur rc_cur;
  int rc;
  if (ts_snap_last_epoch(ps, &p, m->err) || ts_snap_meta(ps, "replay_floor", &floor, m->err) ||
      ts_snap_next_rowid(ps, &next, m->err)) {
    return EIO;
  }
  if (b == p && !m->force) return 0;
  if (b > p || b < floor || m->force) {
    m->filled = 1;
    return ts_wtxn_copy_from(w, ps);
  }
  if (ts_lcur_open(&rc_cur, ps, TS_DB_REPLAY, m->err)) return EIO;
  ts_be64_put(from, b + 1);
  rc = ts_lcur_seek(&rc_cur, from, 8, 0, m->err) ? EIO : 0;
  while (!rc && rc_cur.valid && rc_cur.k.mv_size == 8 && ts_be64_get(rc_cur.k.mv_data) <= p) {
    rc = ts_mirror_replay_record(m, w, ps, rc_cur.v.mv_data, rc_cur.v.mv_size);
    if (!rc) rc = ts_lcur_step(&rc_cur, 0, m->err) ? EIO : 0;
  }
  ts_lcur_close(&rc_cur);
  if (!rc) rc = ts_mirror_holds(w, p, next);
  return rc;
}

/* The backup transaction: apply this commit's changes when the backup
** holds the epoch before it, else catch up from the primary. */
static int ts_mirror_body(void *ctx, ts_wtxn *w) {
  ts_mirror *m = ctx;
  ts_snap ps = {0};
  uint64_t b;
  int rc = ts_wtxn_meta_get(w, "last_epoch", &b);
  m->filled = 0;
  if (rc) return rc;
  if (m->epoch && b + 1 == m->epoch) {
    for (size_t i = 0; i < m->nchanges && !rc; i++) rc = ts_wtxn_change(w, &m->changes[i]);
    if (!rc) rc = ts_mirror_holds(w, m->epoch, m->next_rowid);
    return rc;
  }
  /* behind: replay; level with or past this commit: someone caught it up,
  ** unless it is ahead of the primary (written through a table that
  ** named it as its primary), which a copy repairs */
  if (ts_snap_begin(&ps, m->primary, m->err)) return EIO;
  ts_env_read_lock(m->primary);
  rc = ts_mirror_replay(m, w, &ps, b);
  ts_env_read_unlock(m->primary);
  ts_snap_free(&ps);
  return rc;
}

/* Run a backup write and word its failure after the backup. */
static int ts_mirror_run(ts_env *backup, ts_mirror *m, ts_durability dur,
                         size_t hint, ts_err *err) {
  ts_err perr = {0, {0}};
  int rc;
  m->err = &perr;
  ts_env_commit_lock(backup);
  rc = ts_env_write(backup, dur, hint, ts_mirror_body, NULL, m, err);
  ts_env_commit_unlock(backup);
  if (rc && perr.code) {
    /* the primary could not be read: report that instead */
    *err = perr;
    rc = perr.code;
  }
  if (rc) {
    char msg[sizeof(err->msg)];
    snprintf(msg, sizeof(msg), "%s", err->msg);
    ts_err_set(err, rc, "backup '%s' did not take the commit (it is behind and catches up later): %s",
               ts_env_path(backup), msg + (strncmp(msg, "tierstore: ", 11) ? 0 : 11));
  }
  return rc;
}

/**************************************************************************
** The concurrent backup write of one primary commit.  While the primary
** resolves the commit's changes (creation numbers, replaced records) and
** commits them, a second thread applies each batch of resolved changes to
** the backup in a backup write transaction, and commits it only once the
** primary's commit succeeded: the two writes overlap, and the backup is
** still never ahead.  When the backup is not exactly one epoch behind (it
** needs a catch-up) the thread does nothing and the caller runs
** ts_mirror_commit after the primary's commit.
*/
#define TS_MIRROR_NOT_NEXT EALREADY   /* the fast path does not apply */

/* Wait until changes beyond 'have' are resolved, all are, or the primary
** gave its verdict; returns how many are resolved, *ended and *failed. */
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

/* The backup transaction of the concurrent write: this commit's changes,
** as the primary resolves them, on top of the epoch before it; or
** nothing. */
static int ts_pair_body(void *ctx, ts_wtxn *w) {
  ts_mirror_pair *p = ctx;
  uint64_t b;
  size_t done = 0;
  int ended = 0, failed = 0;
  int rc = ts_wtxn_meta_get(w, "last_epoch", &b);
  if (rc) return rc;
  if (b + 1 != p->epoch) return TS_MIRROR_NOT_NEXT;
  while (!rc && !ended) {
    size_t n = ts_pair_wait_changes(p, done, &ended, &failed);
    if (failed) return ECANCELED;
    for (; done < n && !rc; done++) {
      /* the changes' keys and values lie scattered in the primary's delta */
      if (done + 8 < n) {
        __builtin_prefetch(p->changes[done + 8].key);
        __builtin_prefetch(p->changes[done + 8].value.p);
      }
      rc = ts_wtxn_change(w, &p->changes[done]);
    }
  }
  if (!rc) rc = ts_mirror_holds(w, p->epoch, p->next_rowid);
  return rc;
}

/* Before the backup commits: wait for the primary's verdict. */
static int ts_pair_wait(void *ctx) {
  ts_mirror_pair *p = ctx;
  int v;
  pthread_mutex_lock(&p->mu);
  while (!p->have_verdict) pthread_cond_wait(&p->cv, &p->mu);
  v = p->verdict;
  pthread_mutex_unlock(&p->mu);
  return v ? ECANCELED : 0;
}

/* The second thread: the backup's write. */
static void *ts_pair_thread(void *arg) {
  ts_mirror_pair *p = arg;
  ts_write_hooks hooks = {ts_pair_wait, NULL, p};
  ts_env_commit_lock(p->backup);
  p->rc = ts_env_write(p->backup, p->dur, p->grow_hint, ts_pair_body, &hooks, p, &p->err);
  ts_env_commit_unlock(p->backup);
  return NULL;
}

/* Start the backup's write of a commit whose primary write begins: its
** changes will fill ch (ts_mirror_pair_publish says how far); grow_hint:
** about the bytes they hold.  When no thread can be started the caller's
** ts_mirror_pair_finish says so and the backup is written after the
** primary. */
void ts_mirror_pair_start(ts_mirror_pair *p, const ts_change *ch, uint64_t epoch,
                          size_t grow_hint) {
  p->changes = ch;
  p->epoch = epoch;
  p->grow_hint = grow_hint;
  p->n = 0;
  p->ended = 0;
  p->next_rowid = 0;
  p->have_verdict = 0;
  p->rc = TS_ERROR;
  p->running = pthread_create(&p->thread, NULL, ts_pair_thread, p) == 0;
}

/* The primary resolved n changes (ended: all of them, next_rowid set). */
void ts_mirror_pair_publish(ts_mirror_pair *p, size_t n, int ended,
                            uint64_t next_rowid) {
  if (!p->running) return;
  pthread_mutex_lock(&p->mu);
  p->n = n;
  p->ended = ended;
  if (ended) p->next_rowid = next_rowid;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

/* Tell the backup's write how the primary's commit went (0: committed);
** a failed attempt ends the thread (a retry starts another). */
void ts_mirror_pair_verdict(ts_mirror_pair *p, int rc) {
  if (!p->running) return;
  pthread_mutex_lock(&p->mu);
  p->verdict = rc;
  p->have_verdict = 1;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  if (rc) {
    pthread_join(p->thread, NULL);
    p->running = 0;
  }
}

/* Wait for the backup's write: TS_OK when the backup took the commit. */
int ts_mirror_pair_finish(ts_mirror_pair *p) {
  if (!p->running) return TS_ERROR;
  pthread_join(p->thread, NULL);
  p->running = 0;
  return p->rc;
}

void ts_mirror_pair_init(ts_mirror_pair *p, ts_env *backup, ts_durability dur) {
  memset(p, 0, sizeof(*p));
  p->backup = backup;
  p->dur = dur;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
}

void ts_mirror_pair_free(ts_mirror_pair *p) {
  if (p->running) {
    ts_mirror_pair_verdict(p, ECANCELED);
  }
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
}

/* Mirror one primary commit into the backup (the primary committed it). */
int ts_mirror_commit(ts_env *primary, ts_env *backup, const ts_change *ch,
                     size_t n, uint64_t epoch, uint64_t next_rowid,
                     ts_durability dur, ts_err *err) {
  ts_mirror m;
  size_t bytes = 0;
  memset(&m, 0, sizeof(m));
  m.primary = primary;
  m.changes = ch;
  m.nchanges = n;
  m.epoch = epoch;
  m.next_rowid = next_rowid;
  for (size_t i = 0; i < n; i++) bytes += ch[i].nkey + ch[i].value.n + 32;
  return ts_mirror_run(backup, &m, dur, bytes, err);
}

/* Bring the backup up to date with the primary; force: by a full copy. */
int ts_mirror_catch_up(ts_env *primary, ts_env *backup, ts_durability dur,
                       int force, ts_err *err) {
  ts_mirror m;
  memset(&m, 0, sizeof(m));
  m.primary = primary;
  m.force = force;
  return ts_mirror_run(backup, &m, dur, (size_t)64 << 20, err);
}

/* Epoch held by an environment right now. */
int ts_mirror_epoch(ts_env *env, uint64_t *epoch, ts_err *err) {
  ts_snap s = {0};
  int rc = ts_snap_begin(&s, env, err);
  if (rc) return rc;
  ts_env_read_lock(env);
  rc = ts_snap_last_epoch(&s, epoch, err);
  ts_env_read_unlock(env);
  ts_snap_free(&s);
  return rc;
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
