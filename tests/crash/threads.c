/*
** threads.c: several threads, each with its own connection, writing and
** reading one primary + backup + ephemeral table in one process.  Small
** enough to run under valgrind --tool=helgrind (tests/crash/meson.build
** registers it plainly and under helgrind).
**
**   threads [OPS_PER_THREAD [THREADS]]      defaults: 300 and 4
**
** The extension is linked statically (as tests/unit/test_static.c does)
** and registered on every connection with sqlite3_tierstore_init.  Every
** thread opens an in-memory database declaring the table kv on the same
** primary and backup directories, with the ephemeral rules 'eph, mix/e'
** and durability 'durable', 'written' and 'applied' (flush_interval 2ms) in
** turn by thread, and then runs OPS_PER_THREAD operations chosen at
** random.  Every thread commits through the process's one write
** coordinator of the primary: its flusher thread writes what the threads
** queued as one write (group commit), the backup written by a second
** thread at the same time; 'applied' commits return once queued and are
** written by the flusher's timer or when a read needs them.  The
** operations:
**   - a write transaction on one group of 4 keys: ('grp', gG, kJ) in the
**     primary, ('eph', gG, kJ) in the ephemeral tier, or ('mix', 'd'|'e',
**     gGkJ), two keys in each tier; REPLACE of all 4 with one marker, or
**     one DELETE statement for the whole group;
**   - a listing of one kind (one SELECT), which must show every group of
**     each tier whole or absent (one marker, one epoch), and per key an
**     epoch never below the one this thread saw before;
**   - as its second operation and now and then, a bulk transaction: 600
**     rows into ('bulk', tT, kN), more than the batches (256) in which a
**     commit hands its changes to the backup's thread, so that hand-over
**     runs while other threads commit and read;
**   - now and then 'verify' (in one process the backup is level with the
**     primary whenever no write holds the commit lock) or 'sync' (waits
**     until everything queued is written).
** Whether one statement sees a transaction that spans both tiers whole is
** checked by tests/crash/test_concurrency.py, not here.
**
** Exit status 0 when every statement succeeded and every check held.
*/
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

int sqlite3_tierstore_init(sqlite3 *, char **, const sqlite3_api_routines *);

#define NKEYS 4
#define GROUPS 4
#define KINDS 3   /* grp, eph, mix */

static const char *const kind_name[KINDS] = {"grp", "eph", "mix"};
static char root[64];
static int ops_per_thread = 300;
static pthread_mutex_t report_mu = PTHREAD_MUTEX_INITIALIZER;
static int failures = 0;
static long total_writes = 0, total_bulks = 0, total_reads = 0, total_verifies = 0, total_syncs = 0;

static void fail(int t, const char *what, const char *detail) {
  pthread_mutex_lock(&report_mu);
  if (failures < 20) fprintf(stderr, "thread %d: %s: %s\n", t, what, detail ? detail : "");
  failures++;
  pthread_mutex_unlock(&report_mu);
}

static int exec(sqlite3 *db, int t, const char *sql) {
  char *msg = NULL;
  int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
  if (rc != SQLITE_OK) {
    char buf[600];
    snprintf(buf, sizeof(buf), "%s -> %s", sql, msg ? msg : sqlite3_errstr(rc));
    fail(t, "statement failed", buf);
  }
  sqlite3_free(msg);
  return rc;
}

static const char *const level_name[3] = {"durable", "written", "applied"};

static sqlite3 *open_table(int t, const char *durability) {
  sqlite3 *db = NULL;
  char sql[512];
  if (sqlite3_open(":memory:", &db) != SQLITE_OK || sqlite3_tierstore_init(db, NULL, NULL) != SQLITE_OK) {
    fail(t, "open", sqlite3_errmsg(db));
    return db;
  }
  snprintf(sql, sizeof(sql),
           "CREATE VIRTUAL TABLE kv USING tierstore(primary='%s/primary', backup='%s/backup', "
           "ephemeral='eph, mix/e', durability='%s'%s)",
           root, root, durability, strcmp(durability, "applied") ? "" : ", flush_interval='2ms'");
  exec(db, t, sql);
  return db;
}

/* The group, tier half and key slot of a row of a listing. */
static int slot_of(int kind, const char *sns, const char *key, int *g, int *half, int *j) {
  if (kind == 2) {   /* mix: sns 'd' or 'e', key gGkJ */
    if (sscanf(key, "g%dk%d", g, j) != 2) return -1;
    *half = sns[0] == 'e';
  } else {
    if (sscanf(sns, "g%d", g) != 1 || sscanf(key, "k%d", j) != 1) return -1;
    *half = 0;
  }
  return (*g >= 0 && *g < GROUPS && *j >= 0 && *j < NKEYS) ? 0 : -1;
}

static void write_txn(sqlite3 *db, int t, unsigned *seed, int n) {
  int kind = rand_r(seed) % KINDS, g = rand_r(seed) % GROUPS;
  char sql[256];
  if (exec(db, t, "BEGIN") != SQLITE_OK) return;
  if (rand_r(seed) % 10 == 0) {
    if (kind == 2) {
      snprintf(sql, sizeof(sql),
               "DELETE FROM kv WHERE primary_namespace='mix' AND key >= 'g%dk' AND key < 'g%dl'", g, g);
    } else {
      snprintf(sql, sizeof(sql), "DELETE FROM kv WHERE primary_namespace='%s' AND secondary_namespace='g%d'",
               kind_name[kind], g);
    }
    exec(db, t, sql);
  } else {
    for (int j = 0; j < NKEYS; j++) {
      if (kind == 2) {
        snprintf(sql, sizeof(sql), "REPLACE INTO kv VALUES ('mix', '%s', 'g%dk%d', 't%d-n%d')",
                 j % 2 ? "e" : "d", g, j, t, n);
      } else {
        snprintf(sql, sizeof(sql), "REPLACE INTO kv VALUES ('%s', 'g%d', 'k%d', 't%d-n%d')", kind_name[kind],
                 g, j, t, n);
      }
      exec(db, t, sql);
    }
  }
  if (exec(db, t, "COMMIT") != SQLITE_OK) exec(db, t, "ROLLBACK");
}

/* One transaction of BULK_ROWS rows in this thread's own namespace. */
#define BULK_ROWS 600
static void bulk_txn(sqlite3 *db, int t, int n) {
  sqlite3_stmt *st = NULL;
  int ok = exec(db, t, "BEGIN") == SQLITE_OK &&
           sqlite3_prepare_v2(db, "REPLACE INTO kv VALUES ('bulk', ?1, ?2, ?3)", -1, &st, NULL) == SQLITE_OK;
  char sns[16], key[16], val[32];
  snprintf(sns, sizeof(sns), "t%d", t);
  for (int i = 0; ok && i < BULK_ROWS; i++) {
    snprintf(key, sizeof(key), "k%04d", (i * 263) % BULK_ROWS);
    snprintf(val, sizeof(val), "n%d-%d", n, i);
    sqlite3_bind_text(st, 1, sns, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, val, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) != SQLITE_DONE) {
      fail(t, "bulk insert", sqlite3_errmsg(db));
      ok = 0;
    }
    sqlite3_reset(st);
  }
  sqlite3_finalize(st);
  if (!ok || exec(db, t, "COMMIT") != SQLITE_OK) exec(db, t, "ROLLBACK");
}

static void read_check(sqlite3 *db, int t, unsigned *seed, sqlite3_int64 seen[KINDS][GROUPS][NKEYS]) {
  int kind = rand_r(seed) % KINDS;
  sqlite3_stmt *st = NULL;
  char marker[GROUPS][2][64];
  sqlite3_int64 epoch[GROUPS][2];
  int count[GROUPS][2], bad[GROUPS][2];
  int rc;
  memset(count, 0, sizeof(count));
  memset(bad, 0, sizeof(bad));
  if (sqlite3_prepare_v2(db, "SELECT secondary_namespace, key, value, epoch FROM kv WHERE primary_namespace=?",
                         -1, &st, NULL) != SQLITE_OK) {
    fail(t, "prepare", sqlite3_errmsg(db));
    return;
  }
  sqlite3_bind_text(st, 1, kind_name[kind], -1, SQLITE_STATIC);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const char *sns = (const char *)sqlite3_column_text(st, 0);
    const char *key = (const char *)sqlite3_column_text(st, 1);
    const char *value = (const char *)sqlite3_column_text(st, 2);
    sqlite3_int64 e = sqlite3_column_int64(st, 3);
    int g, half, j;
    char buf[256];
    if (slot_of(kind, sns, key, &g, &half, &j)) {
      snprintf(buf, sizeof(buf), "%s/%s/%s", kind_name[kind], sns, key);
      fail(t, "unexpected row", buf);
      continue;
    }
    if (e < seen[kind][g][j]) {
      snprintf(buf, sizeof(buf), "%s/%s/%s: epoch %lld after %lld", kind_name[kind], sns, key, (long long)e,
               (long long)seen[kind][g][j]);
      fail(t, "epoch went back", buf);
    }
    seen[kind][g][j] = e;
    if (count[g][half]++ == 0) {
      snprintf(marker[g][half], sizeof(marker[g][half]), "%s", value);
      epoch[g][half] = e;
    } else if (strcmp(marker[g][half], value) || epoch[g][half] != e) {
      bad[g][half] = 1;
    }
  }
  if (rc != SQLITE_DONE) fail(t, "listing", sqlite3_errmsg(db));
  sqlite3_finalize(st);
  for (int g = 0; g < GROUPS; g++) {
    for (int half = 0; half < 2; half++) {
      int whole = kind == 2 ? NKEYS / 2 : (half ? 0 : NKEYS);
      if (bad[g][half] || (count[g][half] && count[g][half] != whole)) {
        char buf[128];
        snprintf(buf, sizeof(buf), "%s group g%d%s: %d keys, %s", kind_name[kind], g,
                 kind == 2 ? (half ? " (ephemeral half)" : " (durable half)") : "", count[g][half],
                 bad[g][half] ? "mixed markers or epochs" : "not all of them");
        fail(t, "partial transaction", buf);
      }
    }
  }
}

static void *worker(void *arg) {
  int t = (int)(long)arg;
  unsigned seed = 1234u + (unsigned)t * 7919u;
  sqlite3_int64 seen[KINDS][GROUPS][NKEYS];
  long writes = 0, bulks = 0, reads = 0, verifies = 0, syncs = 0;
  sqlite3 *db = open_table(t, level_name[t % 3]);
  memset(seen, 0, sizeof(seen));
  for (int n = 0; n < ops_per_thread; n++) {
    int r = n == 1 ? 95 : rand_r(&seed) % 100;   /* every thread: one bulk early on */
    if (r < 45) {
      write_txn(db, t, &seed, n);
      writes++;
    } else if (r < 95) {
      read_check(db, t, &seed, seen);
      reads++;
    } else if (r < 97) {
      bulk_txn(db, t, n);
      bulks++;
    } else if (r < 99) {
      exec(db, t, "INSERT INTO kv(kv) VALUES ('verify')");
      verifies++;
    } else {
      exec(db, t, "INSERT INTO kv(kv) VALUES ('sync')");
      syncs++;
    }
  }
  sqlite3_close(db);
  pthread_mutex_lock(&report_mu);
  total_writes += writes;
  total_bulks += bulks;
  total_reads += reads;
  total_verifies += verifies;
  total_syncs += syncs;
  pthread_mutex_unlock(&report_mu);
  return NULL;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

int main(int argc, char **argv) {
  int nthreads = 4;
  pthread_t th[64];
  sqlite3 *db;
  if (argc > 1) ops_per_thread = atoi(argv[1]);
  if (argc > 2) nthreads = atoi(argv[2]);
  if (nthreads < 1 || nthreads > 64 || ops_per_thread < 1) {
    fprintf(stderr, "usage: threads [OPS_PER_THREAD [THREADS]]\n");
    return 2;
  }
  snprintf(root, sizeof(root), "/tmp/tierstore-threads-XXXXXX");
  if (!mkdtemp(root)) {
    perror("mkdtemp");
    return 2;
  }
  db = open_table(-1, "durable");   /* creates both environments */
  for (int t = 0; t < nthreads; t++) pthread_create(&th[t], NULL, worker, (void *)(long)t);
  for (int t = 0; t < nthreads; t++) pthread_join(th[t], NULL);
  exec(db, -1, "INSERT INTO kv(kv) VALUES ('verify')");
  sqlite3_close(db);
  nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  printf("threads: %d threads x %d operations: %ld write transactions, %ld bulk transactions, "
         "%ld listings, %ld verifies, %ld syncs, %d failures\n",
         nthreads, ops_per_thread, total_writes, total_bulks, total_reads, total_verifies, total_syncs, failures);
  return failures ? 1 : 0;
}
