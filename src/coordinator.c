/*
** coordinator.c: the write coordinator of one primary environment in this
** process, shared by every connection, table and thread that writes it.
**
** COMMIT freezes the table's delta and queues it here.  One flusher thread
** takes what is queued (every commit since its last write, in order, that
** goes to the same backup) and writes it as one write of an epoch range:
** one LMDB write transaction of the primary, each commit its own epoch,
** and the backup written at the same time by a second thread (mirror.c).
** N connections committing at once cost about one flush (group commit).
** Each commit waits for its own level, Applied < Written < Durable, kept
** as watermarks over the queue's sequence numbers: an `applied` commit
** returns once queued; a `written` or `durable` one once the flush that
** took it committed at its level.  The flusher writes at once when a
** written or durable commit waits, when a reader or `sync` needs the
** queue written, when the queued bytes pass a threshold, and otherwise
** by the oldest applied commit's flush_interval.  More than max_pending
** queued bytes make COMMIT wait (backpressure).
**
** A flush that fails: the written and durable commits it carried fail with
** its error; applied ones (already acknowledged) stay queued, or, when
** only the backup failed, the backup is caught up; either is retried with
** backoff, and until a retry succeeds every COMMIT, `sync` and read of the
** environment in this process fails with the flush's error (a read cannot
** see queued commits other than by waiting for them to be written).
**
** Lock order: the coordinator's mutex before the primary's commit lock;
** the flusher never holds its mutex while it writes.
*/
#include "tierstore_int.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TS_COORD_BACKUPS 4                 /* backups whose confirmed epoch is kept */
#define TS_KEY_FILTER_BITS 16              /* buckets of the queued-key filter: 2^16 */
#define TS_BACKOFF_MIN_NS 10000000LL       /* first retry after 10 ms ... */
#define TS_BACKOFF_MAX_NS 1000000000LL     /* ... doubling up to 1 s */
#define TS_CLOSE_WAIT_NS 5000000000LL      /* how long a close waits for a failing flush */

typedef struct ts_job ts_job;
struct ts_job {
  ts_job *next;
  ts_frozen f;
  ts_delta *d;                 /* a reference of the job's own */
  ts_env *backup;              /* NULL: none */
  ts_mem *mem;                 /* NULL: no ephemeral entries */
  ts_durability level;
  size_t bytes;
  uint64_t seq;
  int64_t due_ns;              /* applied: written by then */
  uint16_t *buckets;           /* its keys' buckets in the queued-key filter */
  size_t nbuckets;
  int done;                    /* written, or failed (rc) */
  int rc;
  ts_err err;
};

struct ts_coord {
  ts_coord *next;              /* the process's registry */
  ts_env *primary;
  int refs;
  pthread_mutex_t mu;
  pthread_cond_t work;         /* the flusher waits on it */
  pthread_cond_t done;         /* committers and waiters wait on it */
  pthread_t thread;
  ts_worker *worker;           /* runs the backup's writes; NULL until one */
  int made;                    /* thread was created and not joined yet */
  int running, stop;
  ts_job *head, *tail;
  int64_t next_due;            /* the earliest due_ns in the queue (INT64_MAX: none) */
  ts_job **inflight;           /* the jobs being written (lookups see them) */
  size_t ninflight;
  size_t queued, queued_bytes; /* jobs and bytes in the queue */
  size_t nwaiting;             /* written/durable jobs queued */
  int flushing;
  int urgent;                  /* readers, sync or close waiting */
  uint64_t seq;                /* last sequence number handed out */
  uint64_t applied, written, durable;   /* the watermarks */
  int failing;                 /* acknowledged work waits for a retry */
  ts_env *retry_backup;        /* the backup to catch up at the retry */
  ts_durability retry_level;
  int64_t retry_at, backoff;
  ts_err sticky;               /* the failing flush's error */
  ts_coord_stats stats;
  struct {
    ts_env *env;
    uint64_t confirmed;        /* both took every epoch up to this */
  } held[TS_COORD_BACKUPS];
  /* how many keys of queued and in-flight jobs fall in each bucket (by
  ** ts_key_hash): a lookup of a key in none of them, the common case,
  ** costs one probe instead of a search of every job */
  uint32_t key_filter[1u << TS_KEY_FILTER_BITS];
};

static pthread_mutex_t ts_coord_registry_mutex = PTHREAD_MUTEX_INITIALIZER;
static ts_coord *ts_coord_registry;

static int64_t ts_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t ts_wall_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* A condition variable whose timed waits run on the monotonic clock (the
** one ts_now_ns reads; the default, CLOCK_REALTIME, would take a monotonic
** deadline for one long past and return at once: a spinning flusher). */
static void ts_cond_init_monotonic(pthread_cond_t *cv) {
  pthread_condattr_t a;
  pthread_condattr_init(&a);
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  pthread_cond_init(cv, &a);
  pthread_condattr_destroy(&a);
}

/* Wait on cv (made by ts_cond_init_monotonic) until the monotonic time at
** (or a signal). */
static void ts_cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t at) {
  struct timespec ts;
  ts.tv_sec = (time_t)(at / 1000000000LL);
  ts.tv_nsec = (long)(at % 1000000000LL);
  pthread_cond_timedwait(cv, mu, &ts);
}

/* The replay-record floor a write to backup may prune to (0: keep all). */
static uint64_t ts_coord_confirmed(ts_coord *co, ts_env *backup) {
  for (int i = 0; i < TS_COORD_BACKUPS; i++) {
    if (co->held[i].env == backup) return co->held[i].confirmed;
  }
  return 0;
}

static void ts_coord_confirm(ts_coord *co, ts_env *backup, uint64_t epoch) {
  int free_slot = -1;
  for (int i = 0; i < TS_COORD_BACKUPS; i++) {
    if (co->held[i].env == backup) {
      co->held[i].confirmed = epoch;
      return;
    }
    if (!co->held[i].env && free_slot < 0) free_slot = i;
  }
  if (free_slot >= 0) {
    co->held[free_slot].env = backup;
    co->held[free_slot].confirmed = epoch;
  }
}

/* Number and publish a write that touches only the ephemeral tier (the
** primary's commit lock held). */
static int ts_coord_ephemeral_only(ts_coord *co, ts_job *j, ts_err *err) {
  int rc = ts_env_reserve(co->primary, j->f.fresh.n, &j->f.epoch, &j->f.base_rowid, err);
  if (!rc && j->mem) rc = ts_commit_ephemeral(co->primary, j->mem, &j->f, err);
  return rc;
}

/* Write n queued jobs (one backup, epoch order) as one write: the primary
** and the backup at once, then each job's ephemeral half.  *primary_ok
** says whether the primary took it (a failure of the backup alone leaves
** it in the primary). */
static int ts_coord_write(ts_coord *co, ts_job **jobs, size_t n, int *primary_ok,
                          ts_err *err) {
  ts_env *env = co->primary, *backup = jobs[0]->backup;
  ts_durability level = TS_APPLIED;
  size_t nprimary = 0, neph = 0;
  ts_frozen **fs = malloc(n * sizeof(*fs));
  ts_mirror_pair pair;
  ts_write_hooks hooks;
  ts_commit c;
  ts_err berr = {0, {0}};
  int rc = TS_OK, brc = TS_OK;
  *primary_ok = 0;
  if (!fs) return ts_err_set(err, TS_NOMEM, "out of memory writing '%s'", ts_env_path(env));
  for (size_t i = 0; i < n; i++) {
    fs[i] = &jobs[i]->f;
    nprimary += jobs[i]->f.nprimary;
    neph += jobs[i]->f.nephemeral;
    if (jobs[i]->level < level) level = jobs[i]->level;   /* durable is 0 */
  }
  if (level == TS_APPLIED) level = TS_WRITTEN;
  ts_env_commit_lock(env);
  if (!nprimary) {
    for (size_t i = 0; i < n && !rc; i++) rc = ts_coord_ephemeral_only(co, jobs[i], err);
    *primary_ok = rc == TS_OK;
    ts_env_commit_unlock(env);
    free(fs);
    return rc;
  }
  memset(&c, 0, sizeof(c));
  c.f = fs;
  c.nf = n;
  c.durability = level;
  c.journal = backup != NULL;
  c.backup_epoch = backup ? ts_coord_confirmed(co, backup) : 0;
  if (backup && !co->worker) co->worker = ts_worker_new();   /* only the writer touches it */
  if (backup) {
    ts_mirror_pair_init(&pair, backup, level, co->worker);
    hooks = ts_mirror_pair_hooks(&pair);
    c.hooks = &hooks;
    c.on_resolved = ts_mirror_pair_resolved;
    c.on_resolved_ctx = &pair;
  }
  if (neph) ts_env_view_lock(env, 1);
  rc = ts_commit_primary(env, &c, err);
  *primary_ok = rc == TS_OK;
  /* the ephemeral halves right after the primary's, in the same view */
  for (size_t i = 0; i < n && !rc; i++) {
    if (jobs[i]->mem) rc = ts_commit_ephemeral(env, jobs[i]->mem, fs[i], err);
  }
  if (neph) ts_env_view_unlock(env);
  if (backup) {
    brc = ts_mirror_pair_finish(&pair);
    if (*primary_ok) {
      if (brc == TS_OK) {
        ts_coord_confirm(co, backup, c.prev_epoch);
      } else {
        /* the backup was not on the primary's last write, or its write
        ** failed: reconcile it with the primary now; when that fails too,
        ** the first cause is the one to report */
        int first = brc;
        if (ts_fault_armed("after-primary")) raise(SIGKILL);
        brc = ts_mirror_catch_up(env, backup, level, 0, &berr);
        if (brc == TS_OK) ts_coord_confirm(co, backup, c.last_epoch);
        else if (first != TS_NOTFOUND) {
          berr = pair.err;
          brc = first;
        }
      }
    } else if (brc == TS_OK) {
      /* the backup took a write the primary did not: undo it there now
      ** (if that fails too, the next write or open does) */
      ts_mirror_catch_up(env, backup, level, 0, &berr);
      brc = TS_OK;
    }
    ts_mirror_pair_free(&pair);
  }
  ts_env_commit_unlock(env);
  free(c.changes);
  free(fs);
  if (!rc && brc) {
    *err = berr;
    rc = brc;
  }
  return rc;
}

/* The queued-key filter buckets of the keys of j's delta d, computed
** before the job is queued (outside the mutex).  TS_NOMEM when out of
** memory. */
static int ts_job_buckets(ts_job *j, const ts_delta *d) {
  size_t cap = ts_delta_count(d), k = 0;
  j->buckets = malloc((cap ? cap : 1) * sizeof(*j->buckets));
  if (!j->buckets) return TS_NOMEM;
  for (const ts_delta_entry *e = ts_delta_seek(d, NULL, 0, 0); e && k < cap; e = ts_delta_step(d, e, 0)) {
    if (e->op != TS_OP_NONE) j->buckets[k++] = (uint16_t)(ts_key_hash(e->key, e->nkey) >> (64 - TS_KEY_FILTER_BITS));
  }
  j->nbuckets = k;
  return TS_OK;
}

/* Count j's keys in the filter as it joins the queue (dir 1), or
** uncount them once it is neither queued nor in flight (-1).  Mutex held. */
static void ts_coord_filter(ts_coord *co, const ts_job *j, int dir) {
  for (size_t i = 0; i < j->nbuckets; i++) co->key_filter[j->buckets[i]] += (uint32_t)dir;
}

/* Free a job the coordinator owns. */
static void ts_job_free(ts_job *j) {
  free(j->buckets);
  ts_frozen_free(&j->f);
  ts_delta_free(j->d);
  free(j);
}

/* Is the queue to be written now?  Mutex held. */
static int ts_coord_due(ts_coord *co, int64_t now) {
  if (!co->head) return 0;
  return co->stop || co->urgent || co->nwaiting || co->queued_bytes >= TS_FLUSH_BYTES || co->next_due <= now;
}

/* Recompute the earliest due time after jobs left or rejoined the queue
** (tables may differ in flush_interval, so the head's is not always the
** earliest).  Mutex held. */
static void ts_coord_redue(ts_coord *co) {
  co->next_due = INT64_MAX;
  for (ts_job *j = co->head; j; j = j->next) {
    if (j->due_ns < co->next_due) co->next_due = j->due_ns;
  }
}

/* Take the queue's first jobs that go to the same backup.  Mutex held. */
static ts_job **ts_coord_take(ts_coord *co, size_t *n) {
  size_t k = 0;
  ts_job **jobs;
  for (ts_job *j = co->head; j && j->backup == co->head->backup; j = j->next) k++;
  jobs = malloc(k * sizeof(*jobs));
  if (!jobs) return NULL;
  for (size_t i = 0; i < k; i++) {
    ts_job *j = co->head;
    co->head = j->next;
    j->next = NULL;
    jobs[i] = j;
    co->queued--;
    co->queued_bytes -= j->bytes;
    if (j->level != TS_APPLIED) co->nwaiting--;
  }
  if (!co->head) co->tail = NULL;
  ts_coord_redue(co);
  *n = k;
  return jobs;
}

/* Enter the failing state with err, retrying after the backoff.  Mutex
** held. */
static void ts_coord_fail(ts_coord *co, const ts_err *err) {
  co->failing = 1;
  co->sticky = *err;
  co->backoff = co->backoff ? co->backoff * 2 : TS_BACKOFF_MIN_NS;
  if (co->backoff > TS_BACKOFF_MAX_NS) co->backoff = TS_BACKOFF_MAX_NS;
  co->retry_at = ts_now_ns() + co->backoff;
  co->stats.last_error = *err;
  co->stats.last_error_at_ns = ts_wall_ns();
}

/* A write succeeded: leave the failing state.  Mutex held. */
static void ts_coord_recover(ts_coord *co) {
  co->failing = 0;
  co->retry_backup = NULL;
  co->backoff = 0;
}

/* Settle the jobs of a write that returned rc.  Mutex held. */
static void ts_coord_settle(ts_coord *co, ts_job **jobs, size_t n, int rc, int primary_ok,
                            const ts_err *err) {
  ts_job *back = NULL, **tail = &back;
  int requeued = 0, acked = 0;
  co->stats.flushes++;
  if (rc == TS_OK) {
    co->stats.flushed_commits += n;
    co->stats.last_epoch = jobs[n - 1]->f.epoch;
    ts_coord_recover(co);
  } else {
    co->stats.failed_flushes++;
    co->stats.last_error = *err;
    co->stats.last_error_at_ns = ts_wall_ns();
  }
  for (size_t i = 0; i < n; i++) {
    ts_job *j = jobs[i];
    if (rc != TS_OK && j->level == TS_APPLIED && !primary_ok) {
      /* acknowledged and not written: keep it, first in the queue */
      *tail = j;
      tail = &j->next;
      requeued = 1;
      continue;
    }
    ts_coord_filter(co, j, -1);   /* neither queued nor in flight any more */
    if (j->level == TS_APPLIED) acked = 1;
    if (rc == TS_OK || (j->level == TS_APPLIED && primary_ok)) {
      if (j->seq > co->written) co->written = j->seq;
      if (rc == TS_OK && j->level == TS_DURABLE && j->seq > co->durable) co->durable = j->seq;
    }
    if (j->level == TS_APPLIED) {
      ts_job_free(j);
    } else {
      j->rc = rc;
      if (rc) j->err = *err;
      j->done = 1;
    }
  }
  if (requeued) {
    size_t bytes = 0, k = 0;
    for (ts_job *j = back; j; j = j->next) {
      bytes += j->bytes;
      k++;
    }
    *tail = co->head;
    if (!co->head) {
      ts_job *last = back;
      while (last->next) last = last->next;
      co->tail = last;
    }
    co->head = back;
    co->queued += k;
    co->queued_bytes += bytes;
    ts_coord_redue(co);
    co->retry_backup = NULL;
    ts_coord_fail(co, err);
  } else if (rc != TS_OK && acked) {
    /* in the primary, not in the backup: the retry catches the backup up */
    co->retry_backup = jobs[0]->backup;
    co->retry_level = TS_WRITTEN;
    ts_coord_fail(co, err);
  }
  pthread_cond_broadcast(&co->done);
}

/* The failing state's retry of a backup catch-up.  Mutex held (released
** while writing). */
static void ts_coord_retry_backup(ts_coord *co) {
  ts_env *backup = co->retry_backup;
  ts_err err = {0, {0}};
  int rc;
  co->flushing = 1;
  pthread_mutex_unlock(&co->mu);
  ts_env_commit_lock(co->primary);
  rc = ts_mirror_catch_up(co->primary, backup, co->retry_level, 0, &err);
  ts_env_commit_unlock(co->primary);
  pthread_mutex_lock(&co->mu);
  co->flushing = 0;
  if (rc == TS_OK) {
    ts_coord_recover(co);
  } else {
    ts_coord_fail(co, &err);
  }
  pthread_cond_broadcast(&co->done);
}

/* Write the queue's first jobs (one backup) as one write and settle
** them; run by the flusher thread, or by a committer waiting for its own
** commit when no write is under way (so a lone committer's commit costs
** no hand-over to another thread).  Mutex held (released while writing). */
static void ts_coord_flush(ts_coord *co) {
  size_t n = 0;
  int primary_ok = 0, rc;
  ts_err err = {0, {0}};
  ts_job **jobs = ts_coord_take(co, &n);
  if (!jobs) {
    ts_err_set(&err, TS_NOMEM, "out of memory flushing '%s'", ts_env_path(co->primary));
    ts_coord_fail(co, &err);
    return;
  }
  co->flushing = 1;
  co->inflight = jobs;
  co->ninflight = n;
  pthread_mutex_unlock(&co->mu);
  rc = ts_coord_write(co, jobs, n, &primary_ok, &err);
  pthread_mutex_lock(&co->mu);
  co->flushing = 0;
  co->inflight = NULL;
  co->ninflight = 0;
  ts_coord_settle(co, jobs, n, rc, primary_ok, &err);
  free(jobs);
}

/* The flusher thread. */
static void *ts_coord_main(void *arg) {
  ts_coord *co = arg;
  pthread_mutex_lock(&co->mu);
  for (;;) {
    int64_t now = ts_now_ns();
    if (co->flushing) {
      pthread_cond_wait(&co->done, &co->mu);   /* a committer writes */
      continue;
    }
    if (co->failing && now < co->retry_at) {
      if (co->stop && !co->urgent) break;
      ts_cond_wait_until(&co->work, &co->mu, co->retry_at);
      continue;
    }
    if (co->failing && co->retry_backup && !co->head) {
      ts_coord_retry_backup(co);
      continue;
    }
    if (!ts_coord_due(co, now)) {
      if (co->stop && !co->head) break;
      if (co->head) ts_cond_wait_until(&co->work, &co->mu, co->next_due);
      else pthread_cond_wait(&co->work, &co->mu);
      continue;
    }
    ts_coord_flush(co);
  }
  co->running = 0;
  pthread_cond_broadcast(&co->done);
  pthread_mutex_unlock(&co->mu);
  return NULL;
}

/* Start the flusher if it does not run.  Mutex held. */
static int ts_coord_start(ts_coord *co, ts_err *err) {
  if (co->running) return TS_OK;
  co->stop = 0;
  if (pthread_create(&co->thread, NULL, ts_coord_main, co) != 0) {
    return ts_err_set(err, TS_NOMEM, "cannot start the flusher thread of '%s'", ts_env_path(co->primary));
  }
  co->running = co->made = 1;
  return TS_OK;
}

/* The failing state's error for a COMMIT, sync or read.  Mutex held. */
static int ts_coord_sticky(ts_coord *co, ts_err *err) {
  const char *m = co->sticky.msg;
  return ts_err_set(err, co->sticky.code ? co->sticky.code : TS_IOERR,
                    "flushes of '%s' keep failing (retried with backoff; commits wait in memory until one succeeds): %s",
                    ts_env_path(co->primary), m + (strncmp(m, "tierstore: ", 11) ? 0 : 11));
}

/* Wait, as a reader or sync, until the queue holds nothing older than
** target is written (target 0: until it is empty), or the coordinator is
** failing.  Mutex held. */
static int ts_coord_wait_written(ts_coord *co, uint64_t target, int64_t deadline, ts_err *err) {
  co->urgent++;
  pthread_cond_signal(&co->work);
  while (!co->failing && (target ? co->written < target : (co->head != NULL || co->flushing))) {
    if (deadline) ts_cond_wait_until(&co->done, &co->mu, deadline);
    else pthread_cond_wait(&co->done, &co->mu);
    if (deadline && ts_now_ns() >= deadline) break;
  }
  co->urgent--;
  return co->failing ? ts_coord_sticky(co, err) : TS_OK;
}

/* The ephemeral-only commit with nothing queued or being written: number
** and publish it now (no queue, no disk).  Mutex held. */
static int ts_coord_direct(ts_coord *co, ts_job *j, ts_err *err) {
  int rc;
  ts_env_commit_lock(co->primary);
  rc = ts_coord_ephemeral_only(co, j, err);
  ts_env_commit_unlock(co->primary);
  if (!rc) co->stats.commits++;
  return rc;
}

int ts_coord_commit(ts_coord *co, ts_delta *d, const ts_coord_job *cfg,
                    uint64_t *epoch, ts_err *err) {
  ts_job *j = calloc(1, sizeof(*j));
  int rc = TS_OK, sooner;
  *epoch = 0;
  if (!j) return ts_err_set(err, TS_NOMEM, "out of memory at commit");
  if (ts_frozen_init(&j->f, d)) {
    free(j);
    return ts_err_set(err, TS_NOMEM, "out of memory at commit");
  }
  if (ts_job_buckets(j, d)) {
    ts_frozen_free(&j->f);
    free(j);
    return ts_err_set(err, TS_NOMEM, "out of memory at commit");
  }
  j->backup = cfg->backup;
  j->mem = cfg->mem;
  /* a commit of ephemeral keys only waits for no disk: queued behind
  ** others, it is acknowledged once queued */
  j->level = j->f.nprimary ? cfg->level : TS_APPLIED;
  j->bytes = ts_delta_bytes(d) + 64 * ts_delta_count(d);
  j->due_ns = ts_now_ns() + cfg->flush_interval_ns;
  pthread_mutex_lock(&co->mu);
  if (co->failing) {
    rc = ts_coord_sticky(co, err);
  } else if (!j->f.nprimary && !co->head && !co->flushing) {
    rc = ts_coord_direct(co, j, err);
    *epoch = j->f.epoch;
  } else {
    /* backpressure: wait for the queue to drain below max_pending */
    while (co->queued_bytes && co->queued_bytes + j->bytes > cfg->max_pending && !co->failing) {
      co->urgent++;
      pthread_cond_signal(&co->work);
      pthread_cond_wait(&co->done, &co->mu);
      co->urgent--;
    }
    if (co->failing) rc = ts_coord_sticky(co, err);
    if (!rc) rc = ts_coord_start(co, err);
    if (!rc) {
      ts_delta_retain(d);
      j->d = d;
      j->seq = ++co->seq;
      if (co->tail) co->tail->next = j;
      else co->head = j;
      co->tail = j;
      ts_coord_filter(co, j, 1);
      sooner = j->due_ns < co->next_due;
      if (sooner) co->next_due = j->due_ns;
      co->queued++;
      co->queued_bytes += j->bytes;
      co->stats.commits++;
      if (j->level == TS_APPLIED) {
        co->applied = j->seq;
      } else {
        co->nwaiting++;
      }
      if (j->level == TS_APPLIED) {
        /* the flusher sleeps until the earliest due time: wake it only
        ** when this job moves that time up or fills the queue (a
        ** wake-up per commit would cost more than the commit) */
        if (sooner || co->queued_bytes >= TS_FLUSH_BYTES) pthread_cond_signal(&co->work);
        pthread_mutex_unlock(&co->mu);
        return TS_OK;   /* the flusher owns the job now */
      }
      while (!j->done) {
        if (!co->flushing && co->head && !co->failing) ts_coord_flush(co);
        else pthread_cond_wait(&co->done, &co->mu);
      }
      rc = j->rc;
      if (rc) *err = j->err;
      *epoch = j->f.epoch;
      j->d = NULL;
      ts_delta_free(d);
    }
  }
  pthread_mutex_unlock(&co->mu);
  free(j->buckets);
  ts_frozen_free(&j->f);
  free(j);
  return rc;
}

int ts_coord_sync(ts_coord *co, ts_err *err) {
  int rc;
  pthread_mutex_lock(&co->mu);
  rc = ts_coord_wait_written(co, 0, 0, err);
  pthread_mutex_unlock(&co->mu);
  return rc;
}

int ts_coord_visible(ts_coord *co, ts_err *err) {
  int rc = TS_OK;
  pthread_mutex_lock(&co->mu);
  if (co->failing) rc = ts_coord_sticky(co, err);
  else if (co->applied > co->written) rc = ts_coord_wait_written(co, co->applied, 0, err);
  pthread_mutex_unlock(&co->mu);
  return rc;
}

/* The newest word a job not yet written has on key, into *state. */
static void ts_coord_job_lookup(const ts_job *j, const unsigned char *key, size_t nkey,
                                ts_coord_state *state, uint64_t *rowid) {
  const ts_delta_entry *e = ts_delta_get(j->d, key, nkey);
  if (!e) return;
  if (e->op == TS_OP_DEL) {
    *state = TS_QUEUED_ABSENT;
  } else if (!e->fresh && !e->again && e->rowid < TS_ROWID_PROVISIONAL) {
    *state = TS_QUEUED_PRESENT;   /* it keeps a stored creation number */
    *rowid = e->rowid;
  } else {
    *state = TS_QUEUED_NEW;       /* its number is given when written */
  }
}

void ts_coord_lookup(ts_coord *co, const unsigned char *key, size_t nkey,
                     ts_coord_state *state, uint64_t *rowid) {
  uint16_t b = (uint16_t)(ts_key_hash(key, nkey) >> (64 - TS_KEY_FILTER_BITS));
  *state = TS_QUEUED_NONE;
  pthread_mutex_lock(&co->mu);
  if (!co->key_filter[b]) {
    pthread_mutex_unlock(&co->mu);
    return;
  }
  for (size_t i = 0; i < co->ninflight; i++) ts_coord_job_lookup(co->inflight[i], key, nkey, state, rowid);
  for (ts_job *j = co->head; j; j = j->next) ts_coord_job_lookup(j, key, nkey, state, rowid);
  pthread_mutex_unlock(&co->mu);
}

void ts_coord_stats_get(ts_coord *co, ts_coord_stats *out) {
  pthread_mutex_lock(&co->mu);
  *out = co->stats;
  out->queued_commits = co->queued;
  out->queued_bytes = co->queued_bytes;
  out->applied = co->applied;
  out->written = co->written;
  out->durable = co->durable;
  out->failing = co->failing;
  pthread_mutex_unlock(&co->mu);
}

/* The figures of primary's coordinator, if this process has one (1) or
** not (0); never creates one. */
int ts_coord_stats_of(ts_env *primary, ts_coord_stats *out) {
  ts_coord *co;
  pthread_mutex_lock(&ts_coord_registry_mutex);
  for (co = ts_coord_registry; co && co->primary != primary; co = co->next) {
  }
  if (co) ts_coord_stats_get(co, out);
  pthread_mutex_unlock(&ts_coord_registry_mutex);
  return co != NULL;
}

/* Write everything queued (a close, or the process exits); a failing
** coordinator gets TS_CLOSE_WAIT_NS of retries.  Mutex held. */
static void ts_coord_drain_locked(ts_coord *co) {
  int64_t deadline = ts_now_ns() + TS_CLOSE_WAIT_NS;
  ts_err err;
  while ((co->head || co->flushing) && co->running && ts_now_ns() < deadline) {
    if (ts_coord_wait_written(co, 0, deadline, &err) == TS_OK) break;
    ts_cond_wait_until(&co->done, &co->mu, co->retry_at < deadline ? co->retry_at : deadline);
  }
}

/* Drain every coordinator of the process at exit (applied commits). */
static void ts_coord_atexit(void) {
  pthread_mutex_lock(&ts_coord_registry_mutex);
  for (ts_coord *co = ts_coord_registry; co; co = co->next) {
    pthread_mutex_lock(&co->mu);
    ts_coord_drain_locked(co);
    pthread_mutex_unlock(&co->mu);
  }
  pthread_mutex_unlock(&ts_coord_registry_mutex);
}

/* In a forked child the flushers do not exist: forget their threads and
** the parent's queued work (it is the parent's to write). */
static void ts_coord_atfork_child(void) {
  pthread_mutex_init(&ts_coord_registry_mutex, NULL);
  for (ts_coord *co = ts_coord_registry; co; co = co->next) {
    pthread_mutex_init(&co->mu, NULL);
    ts_cond_init_monotonic(&co->work);
    ts_cond_init_monotonic(&co->done);
    co->running = co->made = 0;
    co->worker = NULL;         /* its thread is the parent's */
    co->flushing = 0;
    co->urgent = 0;
    co->head = co->tail = NULL;
    co->next_due = INT64_MAX;
    memset(co->key_filter, 0, sizeof(co->key_filter));
    co->queued = co->queued_bytes = co->nwaiting = 0;
    co->written = co->applied = co->seq;
  }
}

ts_coord *ts_coord_open(ts_env *primary) {
  static int hooked;
  ts_coord *co;
  pthread_mutex_lock(&ts_coord_registry_mutex);
  for (co = ts_coord_registry; co && co->primary != primary; co = co->next) {
  }
  if (co) {
    co->refs++;
  } else if ((co = calloc(1, sizeof(*co))) != NULL) {
    co->primary = primary;
    co->refs = 1;
    co->next_due = INT64_MAX;
    pthread_mutex_init(&co->mu, NULL);
    ts_cond_init_monotonic(&co->work);
    ts_cond_init_monotonic(&co->done);
    co->next = ts_coord_registry;
    ts_coord_registry = co;
    if (!hooked) {
      hooked = 1;
      atexit(ts_coord_atexit);
      pthread_atfork(NULL, NULL, ts_coord_atfork_child);
    }
  }
  pthread_mutex_unlock(&ts_coord_registry_mutex);
  return co;
}

void ts_coord_close(ts_coord *co) {
  ts_coord **pp;
  if (!co) return;
  pthread_mutex_lock(&co->mu);
  ts_coord_drain_locked(co);
  pthread_mutex_unlock(&co->mu);
  pthread_mutex_lock(&ts_coord_registry_mutex);
  if (--co->refs > 0) {
    pthread_mutex_unlock(&ts_coord_registry_mutex);
    return;
  }
  for (pp = &ts_coord_registry; *pp && *pp != co; pp = &(*pp)->next) {
  }
  if (*pp) *pp = co->next;
  pthread_mutex_unlock(&ts_coord_registry_mutex);
  pthread_mutex_lock(&co->mu);
  co->stop = 1;
  pthread_cond_signal(&co->work);
  pthread_mutex_unlock(&co->mu);
  if (co->made) pthread_join(co->thread, NULL);
  ts_worker_free(co->worker);
  while (co->head) {
    ts_job *j = co->head;   /* a flush that kept failing: given up */
    co->head = j->next;
    ts_job_free(j);
  }
  pthread_mutex_destroy(&co->mu);
  pthread_cond_destroy(&co->work);
  pthread_cond_destroy(&co->done);
  free(co);
}
