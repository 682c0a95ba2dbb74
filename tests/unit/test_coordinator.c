/*
** test_coordinator.c: unit test of src/coordinator.c, src/commit.c and the
** reconciliation of src/mirror.c, on real LMDB environments, no SQLite.
**
** Threads commit deltas through one coordinator: every commit gets its own
** epoch, the epochs of all commits are one contiguous range, several
** commits share a write (group commit), and per key the stored value is
** the one of the highest epoch that wrote it (deletes included), in the
** primary and the backup.  The watermarks never go back; applied commits
** are bounded by max_pending; a write that keeps failing makes later
** commits, sync and reads fail with the flush's error while it is retried.
** A backup that took a write its primary lost is made equal again without
** a full copy.
*/
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tierstore_int.h"
#include "check.h"
#include "keys.h"

#define THREADS 4
#define COMMITS 150          /* per thread */
#define POOL 12              /* keys every thread writes */

static char dir[64], pdir[128], bdir[128];

static ts_coord_job job_of(ts_env *backup, ts_durability level) {
  ts_coord_job j;
  memset(&j, 0, sizeof(j));
  j.backup = backup;
  j.level = level;
  j.flush_interval_ns = 2000000;
  j.max_pending = TS_DEFAULT_MAX_PENDING;
  return j;
}

/* One commit a thread made: its epoch, and what it did to one key. */
typedef struct done_op done_op;
struct done_op {
  uint64_t epoch;
  int key;
  int del;
  int64_t value;
};

typedef struct worker_arg worker_arg;
struct worker_arg {
  ts_coord *co;
  ts_env *backup;
  int id;
  done_op ops[COMMITS];
  int failures;
};

/* A thread committing COMMITS one-key deltas (a put, or a delete in
** five), each durable. */
static void *committer(void *p) {
  worker_arg *a = p;
  ts_coord_job cfg = job_of(a->backup, TS_DURABLE);
  unsigned seed = (unsigned)a->id * 7919u + 1;
  for (int i = 0; i < COMMITS; i++) {
    ts_delta *d = ts_delta_new();
    char name[16];
    ts_err err = {0, {0}};
    int key = (int)(rand_r(&seed) % POOL);
    ekey k;
    snprintf(name, sizeof(name), "k%02d", key);
    k = ek("pool", "", name);
    a->ops[i].key = key;
    a->ops[i].del = rand_r(&seed) % 5 == 0;
    a->ops[i].value = (int64_t)a->id * 1000000 + i;
    if (a->ops[i].del) {
      ts_delta_del(d, k.b, k.n);
    } else {
      ts_value v = vint(a->ops[i].value);
      ts_delta_put(d, k.b, k.n, &v, ts_delta_new_rowid(d), 1);
    }
    if (ts_coord_commit(a->co, d, &cfg, &a->ops[i].epoch, &err) != TS_OK) {
      fprintf(stderr, "  commit: %s\n", err.msg);
      a->failures++;
    }
    ts_delta_free(d);
  }
  return NULL;
}

/* The stored state of a pool key in env: 1 and its value, or 0. */
static int stored(ts_env *env, int key, int64_t *value, uint64_t *epoch) {
  ts_snap s = {0};
  ts_err err = {0, {0}};
  ts_record rec;
  char name[16];
  ekey k;
  int rc;
  snprintf(name, sizeof(name), "k%02d", key);
  k = ek("pool", "", name);
  CHECK_EQ_INT(ts_snap_begin(&s, env, &err), TS_OK);
  ts_env_read_lock(env);
  rc = ts_snap_get(&s, k.b, k.n, &rec, &err);
  if (rc == TS_OK) {
    *value = rec.value.i;
    *epoch = rec.epoch;
  }
  ts_env_read_unlock(env);
  ts_snap_free(&s);
  return rc == TS_OK;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Watermarks sampled while the committers run (every 100 us: a thread
** that never sleeps would starve the others under valgrind, which runs
** one thread at a time): none may go back. */
typedef struct watch_arg watch_arg;
struct watch_arg {
  ts_coord *co;
  volatile int stop;
  int went_back;
  uint64_t samples;
};
static void *watcher(void *p) {
  watch_arg *w = p;
  ts_coord_stats last, now;
  memset(&last, 0, sizeof(last));
  while (!w->stop) {
    ts_coord_stats_get(w->co, &now);
    if (now.applied < last.applied || now.written < last.written || now.durable < last.durable ||
        now.flushes < last.flushes || now.commits < last.commits) {
      w->went_back++;
    }
    last = now;
    w->samples++;
    nanosleep(&(struct timespec){0, 100000}, NULL);
  }
  return NULL;
}

/* Threads commit at once: epochs contiguous, group commit, newest wins
** per key in both environments, watermarks monotonic. */
static void test_group_commit(void) {
  ts_env *p = NULL, *b = NULL;
  ts_err err = {0, {0}};
  static worker_arg args[THREADS];
  pthread_t th[THREADS], wt;
  watch_arg w = {0};
  uint64_t epochs[THREADS * COMMITS];
  ts_coord_stats st;
  size_t n = 0;
  CHECK_EQ_INT(ts_env_open(pdir, 0, &p, &err), TS_OK);
  CHECK_EQ_INT(ts_env_open_id(bdir, 0, TS_DEFAULT_FILE_MODE, ts_env_store_id(p), &b, &err), TS_OK);
  ts_coord *co = ts_coord_open(p);
  CHECK(co != NULL);
  w.co = co;
  pthread_create(&wt, NULL, watcher, &w);
  for (int t = 0; t < THREADS; t++) {
    memset(&args[t], 0, sizeof(args[t]));
    args[t].co = co;
    args[t].backup = b;
    args[t].id = t;
    pthread_create(&th[t], NULL, committer, &args[t]);
  }
  for (int t = 0; t < THREADS; t++) pthread_join(th[t], NULL);
  w.stop = 1;
  pthread_join(wt, NULL);
  for (int t = 0; t < THREADS; t++) {
    CHECK_EQ_INT(args[t].failures, 0);
    for (int i = 0; i < COMMITS; i++) epochs[n++] = args[t].ops[i].epoch;
  }
  /* every commit its own epoch, all of them one range */
  qsort(epochs, n, sizeof(epochs[0]), cmp_u64);
  for (size_t i = 1; i < n; i++) CHECK_EQ_INT(epochs[i], epochs[i - 1] + 1);
  CHECK_EQ_INT(epochs[0], 1);
  ts_coord_stats_get(co, &st);
  CHECK_EQ_INT(st.commits, n);
  CHECK_EQ_INT(st.flushed_commits, n);
  CHECK_EQ_INT(st.last_epoch, epochs[n - 1]);
  /* several commits per write */
  CHECK(st.flushes < n);
  fprintf(stderr, "  group commit: %zu commits in %llu writes\n", n, (unsigned long long)st.flushes);
  CHECK_EQ_INT(w.went_back, 0);
  CHECK(w.samples > 0);
  /* per key, the stored state is the highest epoch's operation */
  for (int key = 0; key < POOL; key++) {
    const done_op *best = NULL;
    for (int t = 0; t < THREADS; t++) {
      for (int i = 0; i < COMMITS; i++) {
        const done_op *o = &args[t].ops[i];
        if (o->key == key && (!best || o->epoch > best->epoch)) best = o;
      }
    }
    for (int which = 0; which < 2; which++) {
      int64_t v = 0;
      uint64_t e = 0;
      int have = stored(which ? b : p, key, &v, &e);
      if (!best) continue;
      CHECK_EQ_INT(have, !best->del);
      if (have && !best->del) {
        CHECK_EQ_INT(v, best->value);
        CHECK_EQ_INT(e, best->epoch);
      }
    }
  }
  CHECK_EQ_INT(ts_mirror_verify(p, b, &err), TS_OK);
  ts_coord_close(co);
  ts_env_close(b);
  ts_env_close(p);
}

/* Applied commits: acknowledged before their write, bounded by
** max_pending, written by sync; a lookup sees them queued. */
static void test_applied_and_backpressure(void) {
  ts_env *p = NULL;
  ts_err err = {0, {0}};
  ts_coord_job cfg;
  ts_coord_stats st;
  size_t most = 0, jobmax = 0;
  char big[2048];
  CHECK_EQ_INT(ts_env_open(pdir, 0, &p, &err), TS_OK);
  ts_coord *co = ts_coord_open(p);
  cfg = job_of(NULL, TS_APPLIED);
  cfg.flush_interval_ns = 60LL * 1000000000LL;   /* never by the interval */
  cfg.max_pending = 16 * 1024;
  memset(big, 'v', sizeof(big));
  for (int i = 0; i < 200; i++) {
    ts_delta *d = ts_delta_new();
    char name[16];
    ekey k;
    uint64_t epoch = 1;
    ts_value v = {TS_BLOB, 0, 0, big, sizeof(big)};
    snprintf(name, sizeof(name), "a%03d", i);
    k = ek("applied", "", name);
    ts_delta_put(d, k.b, k.n, &v, ts_delta_new_rowid(d), 1);
    if (ts_delta_bytes(d) + 64 > jobmax) jobmax = ts_delta_bytes(d) + 64;
    CHECK_EQ_INT(ts_coord_commit(co, d, &cfg, &epoch, &err), TS_OK);
    CHECK_EQ_INT(epoch, 0);          /* given when written */
    ts_delta_free(d);
    ts_coord_stats_get(co, &st);
    if (st.queued_bytes > most) most = st.queued_bytes;
    if (i == 0) {
      ts_coord_state q;
      uint64_t r = 0;
      ts_coord_lookup(co, k.b, k.n, &q, &r);
      CHECK_EQ_INT(q, TS_QUEUED_NEW);
      CHECK(st.applied > st.written);   /* acknowledged, not written */
    }
  }
  /* backpressure: the queue never held more than max_pending (plus the
  ** one commit that waited for room) */
  CHECK(most <= cfg.max_pending + jobmax);
  CHECK(most > 0);
  ts_coord_stats_get(co, &st);
  CHECK(st.flushes > 0);             /* COMMIT waited for writes */
  CHECK_EQ_INT(ts_coord_sync(co, &err), TS_OK);
  ts_coord_stats_get(co, &st);
  CHECK_EQ_INT(st.queued_commits, 0);
  CHECK_EQ_INT(st.written, st.applied);
  CHECK_EQ_INT(st.flushed_commits, 200);
  CHECK_EQ_INT(ts_coord_visible(co, &err), TS_OK);
  ts_coord_close(co);
  ts_env_close(p);
}

/* A write that keeps failing after applied commits were acknowledged:
** retried, and until then commits, sync and reads fail naming it. */
static void test_failing_write_is_sticky(void) {
  char sub[160], data[200];
  ts_env *p = NULL;
  ts_err err = {0, {0}};
  ts_coord_job cfg = job_of(NULL, TS_APPLIED);
  ts_coord_stats st;
  ts_delta *d = ts_delta_new();
  ekey k = ek("x", "", "gone");
  ts_value v = vint(1);
  uint64_t epoch;
  snprintf(sub, sizeof(sub), "%s/sticky", dir);
  CHECK_EQ_INT(ts_env_open(sub, 0, &p, &err), TS_OK);
  ts_coord *co = ts_coord_open(p);
  /* the environment's file removed from disk: every write is refused */
  snprintf(data, sizeof(data), "%s/data.mdb", sub);
  CHECK_EQ_INT(unlink(data), 0);
  ts_delta_put(d, k.b, k.n, &v, ts_delta_new_rowid(d), 1);
  CHECK_EQ_INT(ts_coord_commit(co, d, &cfg, &epoch, &err), TS_OK);   /* acknowledged */
  ts_delta_free(d);
  err.code = 0;
  CHECK(ts_coord_sync(co, &err) != TS_OK);
  CHECK_STR_HAS(err.msg, "tierstore: flushes of '");
  CHECK_STR_HAS(err.msg, sub);
  CHECK_STR_HAS(err.msg, "was removed from disk");
  d = ts_delta_new();
  ts_delta_put(d, k.b, k.n, &v, ts_delta_new_rowid(d), 1);
  CHECK(ts_coord_commit(co, d, &cfg, &epoch, &err) != TS_OK);
  CHECK_STR_HAS(err.msg, "keep failing");
  ts_delta_free(d);
  CHECK(ts_coord_visible(co, &err) != TS_OK);
  /* retried with backoff, the commit kept */
  usleep(100000);
  ts_coord_stats_get(co, &st);
  CHECK(st.failed_flushes >= 2);
  CHECK(st.failing);
  CHECK_EQ_INT(st.queued_commits, 1);
  CHECK_STR_HAS(st.last_error.msg, "was removed from disk");
  ts_coord_close(co);   /* gives up after its wait */
  ts_env_close(p);
}

/* The pair's hooks on a primary write that fails after the backup took
** it: the backup ends ahead. */
static int fail_after_backup(void *ctx) {
  ts_write_hooks *pair_hooks = ctx;
  ts_mirror_pair *pair = pair_hooks->ctx;
  pair_hooks->before_commit(pair);
  CHECK_EQ_INT(ts_mirror_pair_finish(pair), TS_OK);   /* the backup committed */
  return EIO;
}
static void after_pair(void *ctx, int rc) {
  ts_write_hooks *pair_hooks = ctx;
  pair_hooks->after_commit(pair_hooks->ctx, rc);
}

/* A backup ahead of its primary (a write only it took) is reconciled from
** the primary's state without a full copy. */
static void test_backup_ahead_is_undone(void) {
  char sp[160], sb[160];
  ts_env *p = NULL, *b = NULL;
  ts_err err = {0, {0}};
  ts_worker *wk = ts_worker_new();
  ts_delta *d = ts_delta_new();
  MDB_envinfo before, after;
  int level = 1;
  snprintf(sp, sizeof(sp), "%s/ahead_p", dir);
  snprintf(sb, sizeof(sb), "%s/ahead_b", dir);
  CHECK_EQ_INT(ts_env_open(sp, 0, &p, &err), TS_OK);
  CHECK_EQ_INT(ts_env_open_id(sb, 0, TS_DEFAULT_FILE_MODE, ts_env_store_id(p), &b, &err), TS_OK);
  /* 3,000 keys in both */
  for (int i = 0; i < 3000; i++) {
    char name[16];
    ekey k;
    ts_value v = vint(i);
    snprintf(name, sizeof(name), "k%05d", i);
    k = ek("base", "", name);
    ts_delta_put(d, k.b, k.n, &v, ts_delta_new_rowid(d), 1);
  }
  {
    ts_coord *co = ts_coord_open(p);
    ts_coord_job cfg = job_of(b, TS_DURABLE);
    uint64_t e;
    CHECK_EQ_INT(ts_coord_commit(co, d, &cfg, &e, &err), TS_OK);
    ts_coord_close(co);
  }
  ts_delta_free(d);
  CHECK_EQ_INT(ts_mirror_verify(p, b, &err), TS_OK);
  /* a write of two changes that only the backup takes */
  {
    ts_frozen f, *fp = &f;
    ts_commit c;
    ts_mirror_pair pair;
    ts_write_hooks ph, mine;
    ekey k1 = ek("base", "", "k00007"), k2 = ek("base", "", "new");
    ts_value v = vint(-1);
    d = ts_delta_new();
    ts_delta_del(d, k1.b, k1.n);
    ts_delta_put(d, k2.b, k2.n, &v, ts_delta_new_rowid(d), 1);
    CHECK_EQ_INT(ts_frozen_init(&f, d), TS_OK);
    memset(&c, 0, sizeof(c));
    c.f = &fp;
    c.nf = 1;
    c.durability = TS_DURABLE;
    c.journal = 1;
    ts_mirror_pair_init(&pair, b, TS_DURABLE, wk);
    ph = ts_mirror_pair_hooks(&pair);
    mine.before_commit = fail_after_backup;
    mine.after_commit = after_pair;
    mine.ctx = &ph;
    c.hooks = &mine;
    c.on_resolved = ts_mirror_pair_resolved;
    c.on_resolved_ctx = &pair;
    ts_env_commit_lock(p);
    CHECK(ts_commit_primary(p, &c, &err) != TS_OK);
    ts_env_commit_unlock(p);
    ts_mirror_pair_free(&pair);
    free(c.changes);
    ts_frozen_free(&f);
    ts_delta_free(d);
  }
  CHECK(ts_mirror_verify(p, b, &err) != TS_OK);   /* the backup is ahead */
  CHECK_EQ_INT(ts_mirror_level(p, b, &level, &err), TS_OK);
  CHECK_EQ_INT(level, 0);
  /* reconcile: the two changed keys take the primary's state */
  CHECK_EQ_INT(ts_env_info(b, &before), TS_OK);
  ts_env_commit_lock(p);
  CHECK_EQ_INT(ts_mirror_catch_up(p, b, TS_DURABLE, 0, &err), TS_OK);
  ts_env_commit_unlock(p);
  CHECK_EQ_INT(ts_env_info(b, &after), TS_OK);
  CHECK_EQ_INT(ts_mirror_verify(p, b, &err), TS_OK);
  CHECK_EQ_INT(ts_mirror_level(p, b, &level, &err), TS_OK);
  CHECK_EQ_INT(level, 1);
  /* one backup write of a few pages, not a copy of 3,000 keys */
  CHECK_EQ_INT(after.me_last_txnid, before.me_last_txnid + 1);
  CHECK(after.me_last_pgno < before.me_last_pgno + 20);
  ts_worker_free(wk);
  ts_env_close(b);
  ts_env_close(p);
}

/* How many of the keys look/q<from>..q<to - 1> the coordinator's lookup
** finds in state want. */
static int lookups_finding(ts_coord *co, int from, int to, ts_coord_state want) {
  int n = 0;
  for (int i = from; i < to; i++) {
    char name[16];
    ts_coord_state q;
    uint64_t r = 0;
    ekey k;
    snprintf(name, sizeof(name), "q%03d", i);
    k = ek("look", "", name);
    ts_coord_lookup(co, k.b, k.n, &q, &r);
    n += q == want;
  }
  return n;
}

/* What a key's lookup finds among queued commits: the newest queued word
** on it (created, deleted), nothing for a key no job holds, and nothing
** once the queue is written (the queued-key filter counts jobs out as
** they leave). */
static void test_lookup_of_queued_keys(void) {
  enum { N = 300 };
  char sub[160];
  ts_env *p = NULL;
  ts_err err = {0, {0}};
  ts_coord_job cfg = job_of(NULL, TS_APPLIED);
  ts_coord_state q;
  uint64_t r = 0, epoch;
  snprintf(sub, sizeof(sub), "%s/lookup", dir);
  CHECK_EQ_INT(ts_env_open(sub, 0, &p, &err), TS_OK);
  ts_coord *co = ts_coord_open(p);
  cfg.flush_interval_ns = 60LL * 1000000000LL;   /* written only by sync */
  for (int i = 0; i <= N; i++) {
    ts_delta *d = ts_delta_new();
    char name[16];
    ts_value v = vint(i);
    ekey k;
    snprintf(name, sizeof(name), "q%03d", i % N);
    k = ek("look", "", name);
    /* the last commit deletes the first one's key */
    if (i < N) ts_delta_put(d, k.b, k.n, &v, ts_delta_new_rowid(d), 1);
    else ts_delta_del(d, k.b, k.n);
    CHECK_EQ_INT(ts_coord_commit(co, d, &cfg, &epoch, &err), TS_OK);
    ts_delta_free(d);
  }
  CHECK_EQ_INT(lookups_finding(co, 1, N, TS_QUEUED_NEW), N - 1);
  {
    ekey gone = ek("look", "", "q000"), never = ek("look", "", "never");
    ts_coord_lookup(co, gone.b, gone.n, &q, &r);
    CHECK_EQ_INT(q, TS_QUEUED_ABSENT);
    ts_coord_lookup(co, never.b, never.n, &q, &r);
    CHECK_EQ_INT(q, TS_QUEUED_NONE);
    CHECK_EQ_INT(ts_coord_sync(co, &err), TS_OK);
    ts_coord_lookup(co, gone.b, gone.n, &q, &r);
    CHECK_EQ_INT(q, TS_QUEUED_NONE);
  }
  CHECK_EQ_INT(lookups_finding(co, 1, N, TS_QUEUED_NONE), N - 1);   /* written: the tiers answer */
  ts_coord_close(co);
  ts_env_close(p);
}

int main(void) {
  tmp_new(dir, sizeof(dir));
  snprintf(pdir, sizeof(pdir), "%s/p", dir);
  snprintf(bdir, sizeof(bdir), "%s/b", dir);
  test_group_commit();
  test_applied_and_backpressure();
  test_failing_write_is_sticky();
  test_lookup_of_queued_keys();
  test_backup_ahead_is_undone();
  tmp_drop(dir);
  printf("%d checks, %d failed\n", ts_check_count, ts_check_failures);
  return ts_check_failures != 0;
}
