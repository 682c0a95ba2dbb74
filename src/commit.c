/*
** commit.c: frozen deltas -> resolved changes.
**
** A write to the primary covers an epoch range: the coordinator hands it
** the frozen deltas queued since the last write, in order, and each gets
** the next epoch.  Each entry becomes a resolved change against the store
** as the write transaction sees it (which holds the earlier deltas of the
** same write): a stored key keeps its creation number unless the delta
** deleted it first; a key the delta created gets base + its rank among the
** delta's new keys; a key the delta overwrote that another writer deleted
** meanwhile is created again with a new number.  The ephemeral tier gets
** the same rule against its own rows.  This is the one place these rules
** live; the tiers only apply resolved changes.
*/
#include "tierstore_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Resolved changes handed to the journal's readers at a time. */
#define TS_RESOLVED_BATCH 256

/* Freeze d: its creation order and its entries per tier. */
int ts_frozen_init(ts_frozen *f, const ts_delta *d) {
  memset(f, 0, sizeof(*f));
  f->d = d;
  f->nephemeral = ts_delta_count_ephemeral(d);
  f->nprimary = ts_delta_count(d) - f->nephemeral;
  /* an ordered read links the writes batched since the last one: done
  ** here, so the flusher's walk of the delta only reads it */
  ts_delta_seek(d, NULL, 0, 0);
  return ts_delta_fresh(d, &f->fresh) ? TS_NOMEM : TS_OK;
}

void ts_frozen_free(ts_frozen *f) { ts_fresh_free(&f->fresh); }

/* The creation number of a PUT: the stored key's (stored: it exists now,
** with number old) unless the delta deleted the stored key first; else
** the delta's numbering of its new keys; else 0 (the caller takes a new
** number: the key was deleted meanwhile). */
static uint64_t ts_commit_rowid(const ts_frozen *f, const ts_delta_entry *e,
                                int stored, uint64_t old) {
  long rank;
  if (stored && !e->again) return old;
  rank = ts_fresh_rank(&f->fresh, e);
  return rank >= 0 ? f->base_rowid + (uint64_t)rank : 0;
}

/* The i-th creation number for a kept key that another writer deleted
** meanwhile; taken once per write so that a replayed body reuses it. */
static int ts_commit_extra_rowid(ts_commit *c, ts_env *env, uint64_t floor,
                                 size_t i, uint64_t *rowid) {
  if (i == c->nextras) {
    uint64_t *grown = realloc(c->extras, (i + 1) * sizeof(*grown));
    if (!grown) return ENOMEM;
    c->extras = grown;
    c->extras[c->nextras++] = ts_env_take_rowids(env, floor, 1);
  }
  *rowid = c->extras[i];
  return 0;
}

/* A new identity for a write (meta "last_flush"): the backup records the
** one it took last, so a backup that took a write its primary lost is
** told apart from one level with the primary at the same epoch. */
static uint64_t ts_commit_flush_id(void) {
  static uint64_t seq;
  struct timespec ts;
  uint64_t x;
  clock_gettime(CLOCK_REALTIME, &ts);
  x = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^ ((uint64_t)getpid() << 40) ^
      (__atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED) * 0x9E3779B97F4A7C15u);
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9u;
  x ^= x >> 29;
  return x ? x : 1;
}

/* Resolve and apply one frozen delta's primary-tier entries at epoch. */
static int ts_commit_one(ts_commit *c, ts_wtxn *w, ts_frozen *f,
                         uint64_t next_rowid, size_t *nextra) {
  ts_env *env = ts_wtxn_env(w);
  int rc = 0;
  f->first_change = c->nchanges;
  for (const ts_delta_entry *e = ts_delta_seek(f->d, NULL, 0, 0), *next; e && !rc; e = next) {
    ts_change ch;
    ts_record old;
    int above, stored;
    next = ts_delta_step(f->d, e, 0);
    if (next) {
      /* the next entry's key and value lie elsewhere in the delta's arena */
      __builtin_prefetch(next->key);
      __builtin_prefetch(next->value.p);
    }
    if (e->op == TS_OP_NONE || e->ephemeral) continue;
    memset(&ch, 0, sizeof(ch));
    ch.key = e->key;
    ch.nkey = e->nkey;
    ch.op = e->op;
    rc = ts_wtxn_find(w, e->key, e->nkey, &above, &old);
    if (rc && rc != MDB_NOTFOUND) break;
    stored = rc == 0;
    rc = 0;
    if (e->op == TS_OP_PUT) {
      ch.rowid = ts_commit_rowid(f, e, stored, stored ? old.rowid : 0);
      if (!ch.rowid && (rc = ts_commit_extra_rowid(c, env, next_rowid, (*nextra)++, &ch.rowid)) != 0) break;
      ch.value = e->value;
      ch.epoch = f->epoch;
    }
    rc = ts_wtxn_apply(w, &ch, above, stored ? &old : NULL);
    if (!rc && c->journal) {
      c->changes[c->nchanges++] = ch;
      if (c->on_resolved && c->nchanges % TS_RESOLVED_BATCH == 0) c->on_resolved(c->on_resolved_ctx, c, 0);
    }
  }
  f->nchanges = c->nchanges - f->first_change;
  return rc;
}

/* The transaction body of a primary write: number the epochs, resolve and
** apply each frozen delta in order, and record the numbers, the replay
** records and the write's identity. */
static int ts_commit_body(void *ctx, ts_wtxn *w) {
  ts_commit *c = ctx;
  ts_env *env = ts_wtxn_env(w);
  uint64_t last, next_rowid;
  size_t nextra = 0;
  int rc = ts_wtxn_meta_get(w, "last_epoch", &last);
  if (!rc) rc = ts_wtxn_meta_get(w, "next_rowid", &next_rowid);
  if (!rc) rc = ts_wtxn_meta_get(w, "last_flush", &c->prev_flush);
  if (rc) return rc;
  /* the epochs are published only once committed (ts_commit_primary), so
  ** a retry or a crash leaves no gap; creation numbers are taken up front
  ** (once per delta) because memory-only commits take them concurrently */
  c->prev_epoch = last;
  c->first_epoch = ts_env_epoch_floor(env, last) + 1;
  c->last_epoch = c->first_epoch + c->nf - 1;
  c->nchanges = 0;
  if (c->journal && !c->changes) {
    /* one per live entry at most: the array never moves under its readers */
    c->cap_changes = 0;
    for (size_t i = 0; i < c->nf; i++) c->cap_changes += c->f[i]->nprimary;
    c->changes = malloc((c->cap_changes ? c->cap_changes : 1) * sizeof(*c->changes));
    if (!c->changes) return ENOMEM;
  }
  if (c->on_resolved) c->on_resolved(c->on_resolved_ctx, c, 0);
  for (size_t i = 0; i < c->nf && !rc; i++) {
    ts_frozen *f = c->f[i];
    f->epoch = c->first_epoch + i;
    if (f->base_rowid < next_rowid) f->base_rowid = ts_env_take_rowids(env, next_rowid, f->fresh.n);
    rc = ts_commit_one(c, w, f, next_rowid, &nextra);
    if (!rc && c->journal && f->nchanges) {
      rc = ts_wtxn_replay_put(w, f->epoch, c->changes + f->first_change, f->nchanges);
    }
  }
  if (!rc) rc = ts_wtxn_meta_put(w, "last_epoch", c->last_epoch);
  c->next_rowid = ts_env_next_rowid(env, next_rowid);
  if (!rc && c->on_resolved) c->on_resolved(c->on_resolved_ctx, c, 1);
  if (!rc) rc = ts_wtxn_meta_put(w, "next_rowid", c->next_rowid);
  if (!rc) rc = ts_wtxn_meta_put(w, "last_flush", c->flush_id);
  /* replay records are complete only above replay_floor: a write without
  ** them moves the floor up to itself */
  if (!rc && !c->journal) rc = ts_wtxn_meta_put(w, "replay_floor", c->last_epoch);
  if (!rc && c->backup_epoch) rc = ts_wtxn_replay_prune(w, c->backup_epoch);
  return rc;
}

/* Write c's frozen deltas to the primary as one transaction. */
int ts_commit_primary(ts_env *env, ts_commit *c, ts_err *err) {
  size_t bytes = 0;
  int rc;
  for (size_t i = 0; i < c->nf; i++) {
    c->f[i]->base_rowid = ts_env_take_rowids(env, 0, c->f[i]->fresh.n);
    bytes += ts_delta_bytes(c->f[i]->d);
  }
  c->flush_id = ts_commit_flush_id();
  rc = ts_env_write(env, c->durability, bytes, ts_commit_body, c->hooks, c, err);
  if (rc == TS_OK) ts_env_publish_epoch(env, c->last_epoch);
  free(c->extras);
  c->extras = NULL;
  c->nextras = 0;
  return rc;
}

/* The frozen delta's ephemeral entries as changes, numbered by the rule
** above against the ephemeral tier as it is now (its commits are
** serialized by the primary's commit lock). */
static int ts_commit_mem_changes(ts_env *env, ts_mem *mem, const ts_frozen *f,
                                 ts_change **out, size_t *n) {
  size_t cap = 0;
  ts_mem_snap *now = ts_mem_snapshot(mem);
  int rc = TS_OK;
  *out = NULL;
  *n = 0;
  for (const ts_delta_entry *e = ts_delta_seek(f->d, NULL, 0, 0); e; e = ts_delta_step(f->d, e, 0)) {
    ts_change *ch;
    if (e->op == TS_OP_NONE || !e->ephemeral) continue;
    ts_change *grown = ts_grow(*out, &cap, sizeof(*grown), *n + 1);
    if (!grown) {
      rc = TS_NOMEM;
      break;
    }
    *out = grown;
    ch = &(*out)[(*n)++];
    memset(ch, 0, sizeof(*ch));
    ch->key = e->key;
    ch->nkey = e->nkey;
    ch->op = e->op;
    if (e->op == TS_OP_PUT) {
      const ts_mem_row *row = ts_mem_snap_get(now, e->key, e->nkey);
      ch->rowid = ts_commit_rowid(f, e, row != NULL, row ? row->rowid : 0);
      if (!ch->rowid) ch->rowid = ts_env_take_rowid(env);
      ch->epoch = f->epoch;
      ch->value = e->value;
    }
  }
  ts_mem_snap_release(mem, now);
  return rc;
}

/* Publish the frozen delta's ephemeral entries. */
int ts_commit_ephemeral(ts_env *env, ts_mem *mem, const ts_frozen *f,
                        ts_err *err) {
  ts_change *mch = NULL;
  size_t nmch = 0;
  int rc;
  if (!f->nephemeral) return TS_OK;
  rc = ts_commit_mem_changes(env, mem, f, &mch, &nmch);
  if (rc) rc = ts_err_set(err, TS_NOMEM, "out of memory at commit");
  if (!rc && nmch) rc = ts_mem_apply(mem, mch, nmch, err);
  free(mch);
  return rc;
}

/* Flush a delta on its own: every entry goes to this environment. */
int ts_env_apply(ts_env *env, const ts_delta *d, ts_durability dur,
                 uint64_t *epoch, ts_err *err) {
  ts_frozen f, *fp = &f;
  ts_commit c;
  int rc;
  if (ts_frozen_init(&f, d)) return ts_err_set(err, TS_NOMEM, "out of memory");
  /* an unclassified delta: every entry is primary-tier */
  memset(&c, 0, sizeof(c));
  c.f = &fp;
  c.nf = 1;
  c.durability = dur;
  ts_env_commit_lock(env);
  rc = ts_commit_primary(env, &c, err);
  ts_env_commit_unlock(env);
  ts_frozen_free(&f);
  *epoch = rc ? 0 : f.epoch;
  return rc;
}
