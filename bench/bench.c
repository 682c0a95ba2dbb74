/*
** bench.c: tierstore side by side with native SQLite and raw LMDB (issue 5).
**
** One run, one data directory, three systems on the same keys and values:
**
**   tierstore   the virtual table through SQL (prepared statements), with a
**               primary and a backup environment, durability='durable'
**               (plus a 'written' table on the same environments);
**   native      SQLite WITHOUT ROWID table (primary_namespace,
**               secondary_namespace, key, value) in WAL mode,
**               synchronous=FULL; a second database ATTACHed as the backup
**               and written in the same transaction;
**   raw LMDB    the same keys ("pns\0sns\0key") and values put straight into
**               two environments, committed one after the other (A then B)
**               or both at once from two threads.
**
** Workloads: 1 bulk load, 2 point reads, 3 namespace scan, 4 newest-first
** pagination, 5 small commits (durable and written), 6 ephemeral writes,
** 7 memory, and 1-row commits from T connections at once (threads, each
** with its own connection): 8 durable, 9 applied (with its flush lag),
** 10 written.  The bulk loads run in a forked child per system so that each
** one's peak RSS (VmHWM) is its own.  The program prints a table with the
** ratios and the issue-5 targets (PASS/MISS), and writes the same text to
** --out and a JSON-lines form next to it.
**
** The extension is linked statically (tierstore_static + engine, built with
** -DSQLITE_CORE) and registered with sqlite3_tierstore_init(db, 0, 0).
** Run with --help for the options.
*/
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>
#include <sqlite3.h>

int sqlite3_tierstore_init(sqlite3 *db, char **errmsg, const sqlite3_api_routines *api);

/* ------------------------------------------------------------------ */
/* Options                                                             */

#define NNS 8 /* primary namespaces of the main data set */

static struct {
  uint64_t rows;
  int value_size;
  int quick;
  const char *dir;
  const char *out;
  int commits;       /* 1-row transactions per small-commit variant, and per thread in 8 and 10 */
  int eph_ops;       /* 1-row ephemeral transactions overwriting a few keys */
  int pages;         /* page queries per namespace size */
  int scan_reps;     /* repetitions of each scan (median reported) */
  int keep;          /* keep the data directory */
  int native_cache_kib; /* 0: SQLite's default cache_size */
  uint64_t seed;
  const char *label; /* free text for the report header, e.g. the git revision */
  int bulk_reps;     /* bulk loads per system (median reported) */
  const char *ts_journal; /* journal_mode of ts.db (the native side: WAL) */
  int applied_commits; /* 1-row transactions per variant of workload 9 */
} O = {200000, 100, 0, "./bench-data", NULL, 300, 5000, 2000, 5, 0, 0, 1, NULL, 3, "wal", 3000};

#define EPH_KEYS 3 /* keys the ephemeral overwrite variant cycles over */

static int in_child;

static void die(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "bench: ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n");
  fflush(stderr);
  if (in_child) _exit(1);
  exit(1);
}

static void progress(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "[bench] ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n");
}

/* ------------------------------------------------------------------ */
/* Time, memory, I/O counters                                          */

/* CLOCK_MONOTONIC in ns: one clock for the whole machine, so that a child
** process's readings compare with the parent's. */
static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static double now_s(void) { return (double)now_ns() * 1e-9; }

/* A "Name:  N kB" field of /proc/self/status, in KiB (-1 if missing). */
static long status_kib(const char *field) {
  char line[256];
  long v = -1;
  size_t n = strlen(field);
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  while (fgets(line, sizeof(line), f)) {
    if (!strncmp(line, field, n)) {
      v = strtol(line + n, NULL, 10);
      break;
    }
  }
  fclose(f);
  return v;
}

/* A field of /proc/self/io (-1 if missing). */
static long long io_counter(const char *field) {
  char line[256];
  long long v = -1;
  size_t n = strlen(field);
  FILE *f = fopen("/proc/self/io", "r");
  if (!f) return -1;
  while (fgets(line, sizeof(line), f)) {
    if (!strncmp(line, field, n) && line[n] == ':') {
      v = strtoll(line + n + 1, NULL, 10);
      break;
    }
  }
  fclose(f);
  return v;
}

/* CPU seconds the whole machine spent busy (/proc/stat), and this process
** with its children; their difference over the run is other processes'
** load, which disturbs the figures. */
static double machine_busy_s(void) {
  unsigned long long v[8] = {0};
  FILE *f = fopen("/proc/stat", "r");
  if (!f) return NAN;
  int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
                 &v[7]);
  fclose(f);
  if (n < 8) return NAN;
  return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

static double own_cpu_s(void) {
  struct rusage a, b;
  getrusage(RUSAGE_SELF, &a);
  getrusage(RUSAGE_CHILDREN, &b);
  return (double)(a.ru_utime.tv_sec + a.ru_stime.tv_sec + b.ru_utime.tv_sec + b.ru_stime.tv_sec) +
         (double)(a.ru_utime.tv_usec + a.ru_stime.tv_usec + b.ru_utime.tv_usec + b.ru_stime.tv_usec) * 1e-6;
}

/* ------------------------------------------------------------------ */
/* Data: deterministic keys and values                                 */

static uint64_t mix64(uint64_t x) { /* splitmix64 finalizer: a bijection */
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

static uint64_t rng_state;
static uint64_t rng_next(void) {
  rng_state += 0x9e3779b97f4a7c15ULL;
  uint64_t z = rng_state;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

#define KEY_LEN 17 /* one letter and 16 hex digits */

/* Key i of a set: prefix letter + 16 hex digits of a hash; returns length. */
static int make_key(char *buf, char letter, uint64_t i) {
  static const char hex[] = "0123456789abcdef";
  uint64_t h = mix64(i ^ O.seed);
  buf[0] = letter;
  for (int k = 16; k >= 1; k--) {
    buf[k] = hex[h & 15];
    h >>= 4;
  }
  buf[KEY_LEN] = 0;
  return KEY_LEN;
}

static unsigned char *vbuf; /* value_size + 4096 random bytes */
static const unsigned char *value_of(uint64_t i) { return vbuf + (mix64(i * 7 + 3) & 4095); }

static char pns_name[NNS][16];
static const char *SNS = "data";
static const char *SCAN_PNS; /* namespace of the scan workload */
static const int SCAN_NS = 3;

/* The random order of 0..n-1 (seeded). */
static uint32_t *shuffled(uint64_t n, uint64_t seed) {
  uint32_t *p = malloc(sizeof(uint32_t) * (n ? n : 1));
  if (!p) die("out of memory");
  for (uint64_t i = 0; i < n; i++) p[i] = (uint32_t)i;
  rng_state = seed;
  for (uint64_t i = n; i > 1; i--) {
    uint64_t j = rng_next() % i;
    uint32_t t = p[i - 1];
    p[i - 1] = p[j];
    p[j] = t;
  }
  return p;
}

/* Raw LMDB key "pns\0sns\0key" into buf; returns its length. */
static size_t lmdb_key(char *buf, const char *pns, const char *sns, const char *key, int nkey) {
  size_t a = strlen(pns), b = strlen(sns);
  memcpy(buf, pns, a);
  buf[a] = 0;
  memcpy(buf + a + 1, sns, b);
  buf[a + 1 + b] = 0;
  memcpy(buf + a + b + 2, key, (size_t)nkey);
  return a + b + 2 + (size_t)nkey;
}

/* ------------------------------------------------------------------ */
/* Paths                                                               */

static char run_dir[PATH_MAX];

static const char *path_in(char *buf, const char *name) {
  if (snprintf(buf, PATH_MAX, "%s/%s", run_dir, name) >= PATH_MAX) die("path too long: %s/%s", run_dir, name);
  return buf;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(p);
}

static void mkdir_p(const char *path) {
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof(tmp), "%s", path);
  for (char *p = tmp + 1; *p; p++) {
    if (*p == '/') {
      *p = 0;
      if (mkdir(tmp, 0755) && errno != EEXIST) die("mkdir %s: %s", tmp, strerror(errno));
      *p = '/';
    }
  }
  if (mkdir(tmp, 0755) && errno != EEXIST) die("mkdir %s: %s", tmp, strerror(errno));
}

/* ------------------------------------------------------------------ */
/* SQLite helpers                                                      */

static void exec(sqlite3 *db, const char *sql) {
  char *msg = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) die("%s: %s", sql, msg ? msg : "?");
  sqlite3_free(msg);
}

static sqlite3_stmt *prep(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) die("prepare %s: %s", sql, sqlite3_errmsg(db));
  return st;
}

static void step_done(sqlite3 *db, sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  if (rc != SQLITE_DONE) die("%s: %s", sqlite3_sql(st), sqlite3_errmsg(db));
  sqlite3_reset(st);
}

static sqlite3_int64 query_int(sqlite3 *db, sqlite3_stmt *st) {
  sqlite3_int64 v;
  if (sqlite3_step(st) != SQLITE_ROW) die("%s: no row (%s)", sqlite3_sql(st), sqlite3_errmsg(db));
  v = sqlite3_column_int64(st, 0);
  sqlite3_reset(st);
  return v;
}

static char ts_map_size[32];

static sqlite3 *open_ts(void) {
  char p[PATH_MAX];
  sqlite3 *db;
  if (sqlite3_open(path_in(p, "ts.db"), &db) != SQLITE_OK) die("open %s", p);
  if (sqlite3_tierstore_init(db, NULL, NULL) != SQLITE_OK) die("sqlite3_tierstore_init failed");
  if (O.ts_journal) {
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA journal_mode=%s", O.ts_journal);
    exec(db, sql);
  }
  return db;
}

static void ts_create(sqlite3 *db) {
  char sql[512];
  snprintf(sql, sizeof(sql),
           "CREATE VIRTUAL TABLE kv USING tierstore(primary='ts-primary', backup='ts-backup', "
           "ephemeral='bench_eph', durability='durable', map_size='%s')",
           ts_map_size);
  exec(db, sql);
  snprintf(sql, sizeof(sql),
           "CREATE VIRTUAL TABLE kvw USING tierstore(primary='ts-primary', backup='ts-backup', "
           "ephemeral='bench_eph', durability='written', map_size='%s')",
           ts_map_size);
  exec(db, sql);
}

/* The native database with the backup ATTACHed as "bk", both WAL + FULL. */
static sqlite3 *open_native(void) {
  char p[PATH_MAX], sql[PATH_MAX + 64];
  sqlite3 *db;
  if (sqlite3_open(path_in(p, "native.db"), &db) != SQLITE_OK) die("open %s", p);
  snprintf(sql, sizeof(sql), "ATTACH '%s' AS bk", path_in(p, "native-backup.db"));
  exec(db, sql);
  exec(db, "PRAGMA main.journal_mode=WAL; PRAGMA bk.journal_mode=WAL;"
           "PRAGMA main.synchronous=FULL; PRAGMA bk.synchronous=FULL");
  if (O.native_cache_kib > 0) {
    snprintf(sql, sizeof(sql), "PRAGMA main.cache_size=-%d; PRAGMA bk.cache_size=-%d", O.native_cache_kib,
             O.native_cache_kib);
    exec(db, sql);
  }
  return db;
}

/* Empty both WALs and flush the page cache, so that a phase does not pay
** for the previous one's leftovers. */
static void settle(sqlite3 *nat) {
  exec(nat, "PRAGMA main.wal_checkpoint(TRUNCATE); PRAGMA bk.wal_checkpoint(TRUNCATE)");
  sync();
}

/* ------------------------------------------------------------------ */
/* LMDB helpers                                                        */

static size_t lmdb_map_bytes;

static void lcheck(int rc, const char *what) {
  if (rc) die("LMDB %s: %s", what, mdb_strerror(rc));
}

static MDB_env *lmdb_open(const char *name, MDB_dbi *dbi) {
  char p[PATH_MAX];
  MDB_env *env;
  MDB_txn *txn;
  mkdir_p(path_in(p, name));
  lcheck(mdb_env_create(&env), "env_create");
  lcheck(mdb_env_set_mapsize(env, lmdb_map_bytes), "set_mapsize");
  lcheck(mdb_env_open(env, p, MDB_NOTLS, 0644), p);
  lcheck(mdb_txn_begin(env, NULL, 0, &txn), "txn_begin");
  lcheck(mdb_dbi_open(txn, NULL, 0, dbi), "dbi_open");
  lcheck(mdb_txn_commit(txn), "txn_commit");
  return env;
}

/* One 1-row write transaction. */
static void lmdb_put_commit(MDB_env *env, MDB_dbi dbi, MDB_val *k, MDB_val *v) {
  MDB_txn *txn;
  lcheck(mdb_txn_begin(env, NULL, 0, &txn), "txn_begin");
  lcheck(mdb_put(txn, dbi, k, v, 0), "put");
  lcheck(mdb_txn_commit(txn), "commit");
}

/* A helper thread that commits into its own environment on request. */
typedef struct {
  pthread_t th;
  MDB_env *env;
  MDB_dbi dbi;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int state; /* 0 idle, 1 go, 2 done, 3 quit */
  MDB_val k, v;
} lworker;

static void *lworker_main(void *arg) {
  lworker *w = arg;
  pthread_mutex_lock(&w->mu);
  for (;;) {
    while (w->state == 0 || w->state == 2) pthread_cond_wait(&w->cv, &w->mu);
    if (w->state == 3) break;
    pthread_mutex_unlock(&w->mu);
    lmdb_put_commit(w->env, w->dbi, &w->k, &w->v);
    pthread_mutex_lock(&w->mu);
    w->state = 2;
    pthread_cond_broadcast(&w->cv);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

/* ------------------------------------------------------------------ */
/* Child processes                                                     */

typedef struct {
  pid_t pid;
  int fd; /* read end of the pipe that carries the child's answer */
} child_proc;

/* Fork a child that runs fn(arg, out) and sends the n bytes of out (zeroed
** first; n may be 0) back through a pipe.  The child ends with _exit, so it
** never runs this process's exit handlers (the extension's among them), and
** die() in it ends only the child. */
static child_proc child_start(void (*fn)(const void *arg, void *out), const void *arg, size_t n) {
  int fds[2];
  child_proc c;
  if (pipe(fds)) die("pipe: %s", strerror(errno));
  fflush(NULL);
  c.pid = fork();
  if (c.pid < 0) die("fork: %s", strerror(errno));
  if (c.pid == 0) {
    void *out = calloc(1, n ? n : 1);
    in_child = 1;
    close(fds[0]);
    if (!out) _exit(2);
    fn(arg, out);
    if (write(fds[1], out, n) != (ssize_t)n) _exit(2);
    _exit(0);
  }
  close(fds[1]);
  c.fd = fds[0];
  return c;
}

/* Wait for child c; 1 if it exited 0 after sending its n bytes into out. */
static int child_finish(child_proc c, void *out, size_t n) {
  size_t got = 0;
  int status = 0;
  while (got < n) {
    ssize_t k = read(c.fd, (char *)out + got, n - got);
    if (k <= 0) break;
    got += (size_t)k;
  }
  close(c.fd);
  if (waitpid(c.pid, &status, 0) < 0) die("waitpid: %s", strerror(errno));
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 && got == n;
}

/* ------------------------------------------------------------------ */
/* Workload 1 and 7: bulk load in a child process per system           */

typedef struct {
  int ok;
  double secs;
  long rss_start, rss_load0, rss_precommit, hwm; /* KiB */
} bulk_res;

/* Remove a run-directory entry (file or tree) if it is there. */
static void rm_in_run(const char *name) {
  char p[PATH_MAX];
  nftw(path_in(p, name), rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

typedef struct {
  void (*fn)(bulk_res *);
} bulk_job;

/* The child of run_child: one bulk load, with its memory figures. */
static void bulk_child(const void *arg, void *out) {
  const bulk_job *job = arg;
  bulk_res *r = out;
  r->rss_start = status_kib("VmRSS:");
  job->fn(r);
  r->hwm = status_kib("VmHWM:");
  r->ok = 1;
}

/* One bulk load in a fresh process, so that its peak RSS is its own. */
static bulk_res run_child(void (*fn)(bulk_res *), const char *what) {
  bulk_job job = {fn};
  bulk_res r;
  progress("1 bulk load: %s", what);
  memset(&r, 0, sizeof(r));
  if (!child_finish(child_start(bulk_child, &job, sizeof(r)), &r, sizeof(r)) || !r.ok) {
    die("bulk load of %s failed in its child process (data kept in %s)", what, run_dir);
  }
  return r;
}

static void bulk_ts(bulk_res *r) {
  sqlite3 *db = open_ts();
  sqlite3_stmt *ins, *begin, *commit;
  uint32_t *perm = shuffled(O.rows, O.seed * 1000 + 1);
  char key[KEY_LEN + 1];
  double t0;
  ts_create(db);
  ins = prep(db, "INSERT INTO kv(primary_namespace, secondary_namespace, key, value) VALUES(?1, ?2, ?3, ?4)");
  begin = prep(db, "BEGIN");
  commit = prep(db, "COMMIT");
  t0 = now_s();
  step_done(db, begin);
  r->rss_load0 = status_kib("VmRSS:");
  for (uint64_t n = 0; n < O.rows; n++) {
    uint32_t i = perm[n];
    make_key(key, 'k', i);
    sqlite3_bind_text(ins, 1, pns_name[i % NNS], -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 2, SNS, -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 3, key, KEY_LEN, SQLITE_STATIC);
    sqlite3_bind_blob(ins, 4, value_of(i), O.value_size, SQLITE_STATIC);
    step_done(db, ins);
  }
  r->rss_precommit = status_kib("VmRSS:");
  step_done(db, commit);
  r->secs = now_s() - t0;
  sqlite3_finalize(ins);
  sqlite3_finalize(begin);
  sqlite3_finalize(commit);
  if (sqlite3_close(db) != SQLITE_OK) die("close ts.db");
  free(perm);
}

static void bulk_native(bulk_res *r) {
  sqlite3 *db = open_native();
  sqlite3_stmt *ins_m, *ins_b, *begin, *commit;
  uint32_t *perm = shuffled(O.rows, O.seed * 1000 + 1);
  char key[KEY_LEN + 1];
  double t0;
  exec(db, "CREATE TABLE main.kv(primary_namespace TEXT NOT NULL, secondary_namespace TEXT NOT NULL, "
           "key TEXT NOT NULL, value BLOB NOT NULL, "
           "PRIMARY KEY(primary_namespace, secondary_namespace, key)) WITHOUT ROWID");
  exec(db, "CREATE TABLE bk.kv(primary_namespace TEXT NOT NULL, secondary_namespace TEXT NOT NULL, "
           "key TEXT NOT NULL, value BLOB NOT NULL, "
           "PRIMARY KEY(primary_namespace, secondary_namespace, key)) WITHOUT ROWID");
  ins_m = prep(db, "INSERT INTO main.kv(primary_namespace, secondary_namespace, key, value) VALUES(?1, ?2, ?3, ?4)");
  ins_b = prep(db, "INSERT INTO bk.kv(primary_namespace, secondary_namespace, key, value) VALUES(?1, ?2, ?3, ?4)");
  begin = prep(db, "BEGIN");
  commit = prep(db, "COMMIT");
  t0 = now_s();
  step_done(db, begin);
  r->rss_load0 = status_kib("VmRSS:");
  for (uint64_t n = 0; n < O.rows; n++) {
    uint32_t i = perm[n];
    make_key(key, 'k', i);
    for (int t = 0; t < 2; t++) {
      sqlite3_stmt *ins = t ? ins_b : ins_m;
      sqlite3_bind_text(ins, 1, pns_name[i % NNS], -1, SQLITE_STATIC);
      sqlite3_bind_text(ins, 2, SNS, -1, SQLITE_STATIC);
      sqlite3_bind_text(ins, 3, key, KEY_LEN, SQLITE_STATIC);
      sqlite3_bind_blob(ins, 4, value_of(i), O.value_size, SQLITE_STATIC);
      step_done(db, ins);
    }
  }
  r->rss_precommit = status_kib("VmRSS:");
  step_done(db, commit);
  r->secs = now_s() - t0;
  sqlite3_finalize(ins_m);
  sqlite3_finalize(ins_b);
  sqlite3_finalize(begin);
  sqlite3_finalize(commit);
  if (sqlite3_close(db) != SQLITE_OK) die("close native.db");
  free(perm);
}

/* Put every row, in perm order, into one write transaction of env. */
static MDB_txn *lmdb_load(MDB_env *env, MDB_dbi dbi, const uint32_t *perm) {
  MDB_txn *txn;
  char kb[64], key[KEY_LEN + 1];
  lcheck(mdb_txn_begin(env, NULL, 0, &txn), "txn_begin");
  for (uint64_t n = 0; n < O.rows; n++) {
    uint32_t i = perm[n];
    MDB_val k, v;
    make_key(key, 'k', i);
    k.mv_data = kb;
    k.mv_size = lmdb_key(kb, pns_name[i % NNS], SNS, key, KEY_LEN);
    v.mv_data = (void *)value_of(i);
    v.mv_size = (size_t)O.value_size;
    lcheck(mdb_put(txn, dbi, &k, &v, 0), "put");
  }
  return txn;
}

static void bulk_lmdb_seq(bulk_res *r) {
  MDB_dbi da, db;
  MDB_env *a = lmdb_open("lmdb-seq-a", &da), *b = lmdb_open("lmdb-seq-b", &db);
  uint32_t *perm = shuffled(O.rows, O.seed * 1000 + 1);
  MDB_txn *txn;
  double t0 = now_s();
  r->rss_load0 = status_kib("VmRSS:");
  txn = lmdb_load(a, da, perm);
  r->rss_precommit = status_kib("VmRSS:"); /* one environment's transaction */
  lcheck(mdb_txn_commit(txn), "commit");
  txn = lmdb_load(b, db, perm);
  lcheck(mdb_txn_commit(txn), "commit");
  r->secs = now_s() - t0;
  mdb_env_close(a);
  mdb_env_close(b);
  free(perm);
}

typedef struct {
  MDB_env *env;
  MDB_dbi dbi;
  const uint32_t *perm;
  pthread_barrier_t *bar;
} bulk_thread_arg;

static void *bulk_thread(void *p) {
  bulk_thread_arg *a = p;
  MDB_txn *txn = lmdb_load(a->env, a->dbi, a->perm);
  pthread_barrier_wait(a->bar); /* loaded: the main thread reads RSS */
  pthread_barrier_wait(a->bar);
  lcheck(mdb_txn_commit(txn), "commit");
  return NULL;
}

static void bulk_lmdb_par(bulk_res *r) {
  bulk_thread_arg args[2];
  pthread_t th[2];
  pthread_barrier_t bar;
  uint32_t *perm = shuffled(O.rows, O.seed * 1000 + 1);
  double t0;
  args[0].env = lmdb_open("lmdb-par-a", &args[0].dbi);
  args[1].env = lmdb_open("lmdb-par-b", &args[1].dbi);
  pthread_barrier_init(&bar, NULL, 3);
  t0 = now_s();
  r->rss_load0 = status_kib("VmRSS:");
  for (int t = 0; t < 2; t++) {
    args[t].perm = perm;
    args[t].bar = &bar;
    if (pthread_create(&th[t], NULL, bulk_thread, &args[t])) die("pthread_create");
  }
  pthread_barrier_wait(&bar);
  r->rss_precommit = status_kib("VmRSS:");
  pthread_barrier_wait(&bar);
  for (int t = 0; t < 2; t++) pthread_join(th[t], NULL);
  r->secs = now_s() - t0;
  pthread_barrier_destroy(&bar);
  mdb_env_close(args[0].env);
  mdb_env_close(args[1].env);
  free(perm);
}

/* ------------------------------------------------------------------ */
/* Results                                                             */

enum { K_RATE, K_TIME, K_SIZE, K_RATIO, K_COUNT }; /* K_RATIO and K_COUNT rows have no ratio columns */

typedef struct {
  char label[80];
  const char *unit;
  int kind;
  double ts, nat, lm; /* NAN: not measured */
  const char *level;  /* workloads 8-10: the tierstore durability level, for bench/plot.py */
  const char *schema; /* workloads 8-10: where the connections declare the table */
  int connections;    /* workloads 8-10: connections committing at once (0: none) */
  unsigned long long keys; /* workload 4: the namespace's keys (0: none) */
} result;

static result R[96];
static int nR;

static result *add_result(const char *unit, int kind, double ts, double nat, double lm, const char *fmt, ...) {
  va_list ap;
  result *r;
  if (nR >= (int)(sizeof(R) / sizeof(R[0]))) die("too many results");
  r = &R[nR++];
  va_start(ap, fmt);
  vsnprintf(r->label, sizeof(r->label), fmt, ap);
  va_end(ap);
  r->unit = unit;
  r->kind = kind;
  r->ts = ts;
  r->nat = nat;
  r->lm = lm;
  r->level = r->schema = NULL;
  r->connections = 0;
  r->keys = 0;
  return r;
}

/* r, marked as workload 8-10's figure of level's table declared in schema
** and committed to from connections at once (for bench/plot.py). */
static result *mt_tag(result *r, const char *level, const char *schema, int connections) {
  r->level = level;
  r->schema = schema;
  r->connections = connections;
  return r;
}

/* tierstore against other: a speed ratio (>1: tierstore faster) for rates
** and times; tierstore/other for sizes. */
static double ratio(const result *r, double other) {
  if (isnan(r->ts) || isnan(other) || other == 0 || r->ts == 0) return NAN;
  switch (r->kind) {
    case K_RATE: return r->ts / other;
    case K_TIME: return other / r->ts;
    case K_SIZE: return r->ts / other;
    default: return NAN;
  }
}

typedef struct {
  char what[112];
  double measured;
  int at_least; /* 1: measured >= need; 0: measured <= need */
  double need;
  char note[112];
} target;

static target T[24];
static int nT;

static void add_target(double measured, int at_least, double need, const char *note, const char *fmt, ...) {
  va_list ap;
  target *t;
  if (nT >= (int)(sizeof(T) / sizeof(T[0]))) die("too many targets");
  t = &T[nT++];
  va_start(ap, fmt);
  vsnprintf(t->what, sizeof(t->what), fmt, ap);
  va_end(ap);
  t->measured = measured;
  t->at_least = at_least;
  t->need = need;
  snprintf(t->note, sizeof(t->note), "%s", note ? note : "");
}

static const char *target_result(const target *t) {
  if (isnan(t->measured)) return "n/a";
  return (t->at_least ? t->measured >= t->need : t->measured <= t->need) ? "PASS" : "MISS";
}

/* ------------------------------------------------------------------ */
/* Workload 2: point reads                                             */

static double reads_sql(sqlite3 *db, const char *sql, const uint32_t *perm) {
  sqlite3_stmt *st = prep(db, sql);
  char key[KEY_LEN + 1];
  uint64_t bad = 0;
  double t0 = now_s();
  for (uint64_t n = 0; n < O.rows; n++) {
    uint32_t i = perm[n];
    make_key(key, 'k', i);
    sqlite3_bind_text(st, 1, pns_name[i % NNS], -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, SNS, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, key, KEY_LEN, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW) die("%s: key %s missing (%s)", sql, key, sqlite3_errmsg(db));
    const void *v = sqlite3_column_blob(st, 0);
    int nv = sqlite3_column_bytes(st, 0);
    if (nv != O.value_size || memcmp(v, value_of(i), (size_t)nv)) bad++;
    sqlite3_reset(st);
  }
  double secs = now_s() - t0;
  sqlite3_finalize(st);
  if (bad) die("%s: %llu values differ", sql, (unsigned long long)bad);
  return (double)O.rows / secs;
}

static double reads_lmdb(MDB_env *env, MDB_dbi dbi, const uint32_t *perm) {
  MDB_txn *txn;
  char kb[64], key[KEY_LEN + 1];
  uint64_t bad = 0;
  double t0;
  lcheck(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), "txn_begin");
  mdb_txn_reset(txn);
  t0 = now_s();
  for (uint64_t n = 0; n < O.rows; n++) {
    uint32_t i = perm[n];
    MDB_val k, v;
    make_key(key, 'k', i);
    k.mv_data = kb;
    k.mv_size = lmdb_key(kb, pns_name[i % NNS], SNS, key, KEY_LEN);
    lcheck(mdb_txn_renew(txn), "txn_renew"); /* one snapshot per read, as a statement has */
    lcheck(mdb_get(txn, dbi, &k, &v), "get");
    if (v.mv_size != (size_t)O.value_size || memcmp(v.mv_data, value_of(i), v.mv_size)) bad++;
    mdb_txn_reset(txn);
  }
  double secs = now_s() - t0;
  mdb_txn_abort(txn);
  if (bad) die("LMDB reads: %llu values differ", (unsigned long long)bad);
  return (double)O.rows / secs;
}

/* ------------------------------------------------------------------ */
/* Workload 3: namespace scan                                          */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof(double), cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static uint64_t scan_expect(void) {
  return O.rows > (uint64_t)SCAN_NS ? (O.rows - SCAN_NS + NNS - 1) / NNS : 0;
}

static unsigned char sink[1 << 16];
static uint64_t sink_sum;

/* rows/s of one listing of the scan namespace; median of scan_reps. */
static double scan_sql(sqlite3 *db, const char *sql, int with_values) {
  sqlite3_stmt *st = prep(db, sql);
  double rates[64];
  int reps = O.scan_reps < 64 ? O.scan_reps : 64;
  for (int rep = 0; rep < reps; rep++) {
    uint64_t n = 0;
    double t0 = now_s();
    sqlite3_bind_text(st, 1, SCAN_PNS, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, SNS, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
      const unsigned char *k = sqlite3_column_text(st, 0);
      int nk = sqlite3_column_bytes(st, 0);
      memcpy(sink, k, (size_t)nk);
      if (with_values) {
        const void *v = sqlite3_column_blob(st, 1);
        int nv = sqlite3_column_bytes(st, 1);
        memcpy(sink + 512, v, (size_t)nv);
        sink_sum += sink[512];
      }
      sink_sum += sink[0];
      n++;
    }
    double secs = now_s() - t0;
    if (sqlite3_reset(st) != SQLITE_OK) die("%s: %s", sql, sqlite3_errmsg(db));
    if (n != scan_expect()) die("%s: %llu rows, expected %llu", sql, (unsigned long long)n,
                                (unsigned long long)scan_expect());
    rates[rep] = (double)n / secs;
  }
  sqlite3_finalize(st);
  return median(rates, reps);
}

static double scan_lmdb(MDB_env *env, MDB_dbi dbi, int with_values) {
  char prefix[64];
  size_t np = lmdb_key(prefix, SCAN_PNS, SNS, "", 0);
  double rates[64];
  int reps = O.scan_reps < 64 ? O.scan_reps : 64;
  for (int rep = 0; rep < reps; rep++) {
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    uint64_t n = 0;
    double t0 = now_s();
    lcheck(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), "txn_begin");
    lcheck(mdb_cursor_open(txn, dbi, &cur), "cursor_open");
    k.mv_data = prefix;
    k.mv_size = np;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (!rc && k.mv_size >= np && !memcmp(k.mv_data, prefix, np)) {
      memcpy(sink, (char *)k.mv_data + np, k.mv_size - np);
      if (with_values) {
        memcpy(sink + 512, v.mv_data, v.mv_size);
        sink_sum += sink[512];
      }
      sink_sum += sink[0];
      n++;
      rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (rc && rc != MDB_NOTFOUND) lcheck(rc, "cursor_get");
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    double secs = now_s() - t0;
    if (n != scan_expect()) die("LMDB scan: %llu rows, expected %llu", (unsigned long long)n,
                                (unsigned long long)scan_expect());
    rates[rep] = (double)n / secs;
  }
  return median(rates, reps);
}

/* ------------------------------------------------------------------ */
/* Workload 4: pagination                                              */

static uint64_t page_sizes[3];
static int npage_sizes;

static void choose_page_sizes(void) {
  static const uint64_t nominal[3] = {10000, 100000, 1000000};
  npage_sizes = 0;
  for (int i = 0; i < 3; i++) {
    if (nominal[i] <= O.rows) page_sizes[npage_sizes++] = nominal[i];
  }
  if (npage_sizes == 0) { /* tiny runs: scaled-down sizes */
    uint64_t a = O.rows / 100 < 100 ? 100 : O.rows / 100, b = O.rows / 10 < 200 ? 200 : O.rows / 10;
    uint64_t c = O.rows < 400 ? 400 : O.rows;
    page_sizes[0] = a;
    page_sizes[1] = b > a ? b : a * 2;
    page_sizes[2] = c > page_sizes[1] ? c : page_sizes[1] * 2;
    npage_sizes = 3;
  } else if (page_sizes[npage_sizes - 1] < O.rows && npage_sizes < 3) {
    page_sizes[npage_sizes++] = O.rows; /* the largest namespace --rows allows */
  }
}

/* Load one pagination namespace of n keys into both systems (one
** transaction each; untimed). */
static void page_load(sqlite3 *ts, sqlite3 *nat, const char *sns, uint64_t n, sqlite3_int64 *seq) {
  sqlite3_stmt *a = prep(ts, "INSERT INTO kv(primary_namespace, secondary_namespace, key, value) VALUES('bench_pg', ?1, ?2, ?3)");
  sqlite3_stmt *b = prep(nat, "INSERT INTO main.kvp(primary_namespace, secondary_namespace, key, value, seq) "
                              "VALUES('bench_pg', ?1, ?2, ?3, ?4)");
  char key[KEY_LEN + 1];
  exec(ts, "BEGIN");
  exec(nat, "BEGIN");
  for (uint64_t i = 0; i < n; i++) {
    uint64_t id = i + (n << 32);
    make_key(key, 'p', id);
    sqlite3_bind_text(a, 1, sns, -1, SQLITE_STATIC);
    sqlite3_bind_text(a, 2, key, KEY_LEN, SQLITE_STATIC);
    sqlite3_bind_blob(a, 3, value_of(id), O.value_size, SQLITE_STATIC);
    step_done(ts, a);
    sqlite3_bind_text(b, 1, sns, -1, SQLITE_STATIC);
    sqlite3_bind_text(b, 2, key, KEY_LEN, SQLITE_STATIC);
    sqlite3_bind_blob(b, 3, value_of(id), O.value_size, SQLITE_STATIC);
    sqlite3_bind_int64(b, 4, ++*seq);
    step_done(nat, b);
  }
  exec(ts, "COMMIT");
  exec(nat, "COMMIT");
  sqlite3_finalize(a);
  sqlite3_finalize(b);
}

/* One system's pages in one namespace: the page query, the namespace's
** creation-number range and its own random cursors. */
#define PAGE_ROUNDS 10

typedef struct {
  sqlite3 *db;
  sqlite3_stmt *st;
  char sns[32];
  sqlite3_int64 lo, hi;
  uint64_t rng;
  double us[PAGE_ROUNDS]; /* us per page, per round */
} pager;

static void pager_open(pager *pg, sqlite3 *db, const char *lo_sql, const char *hi_sql, const char *page_sql,
                       uint64_t size) {
  sqlite3_stmt *lo_st = prep(db, lo_sql), *hi_st = prep(db, hi_sql);
  memset(pg, 0, sizeof(*pg));
  pg->db = db;
  snprintf(pg->sns, sizeof(pg->sns), "n%llu", (unsigned long long)size);
  sqlite3_bind_text(lo_st, 1, pg->sns, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(hi_st, 1, pg->sns, -1, SQLITE_TRANSIENT);
  pg->lo = query_int(db, lo_st);
  pg->hi = query_int(db, hi_st);
  sqlite3_finalize(lo_st);
  sqlite3_finalize(hi_st);
  if (pg->hi - pg->lo + 1 < 50) die("pagination namespace %s too small", pg->sns);
  pg->st = prep(db, page_sql);
  pg->rng = O.seed * 77 + size;
}

/* Run n pages of 50 at random cursors (every page full); returns us/page. */
static double pager_run(pager *pg, int n, uint64_t *short_pages) {
  uint64_t span = (uint64_t)(pg->hi + 1 - (pg->lo + 50)) + 1; /* cursors lo+50 .. hi+1 */
  double t0 = now_s();
  for (int p = 0; p < n; p++) {
    pg->rng = mix64(pg->rng);
    sqlite3_int64 cursor = pg->lo + 50 + (sqlite3_int64)(pg->rng % span);
    int rows = 0;
    sqlite3_bind_text(pg->st, 1, pg->sns, -1, SQLITE_STATIC);
    sqlite3_bind_int64(pg->st, 2, cursor);
    while (sqlite3_step(pg->st) == SQLITE_ROW) {
      sqlite3_int64 id = sqlite3_column_int64(pg->st, 0);
      const unsigned char *k = sqlite3_column_text(pg->st, 1);
      int nk = sqlite3_column_bytes(pg->st, 1);
      const void *v = sqlite3_column_blob(pg->st, 2);
      int nv = sqlite3_column_bytes(pg->st, 2);
      memcpy(sink, k, (size_t)nk);
      memcpy(sink + 512, v, (size_t)nv);
      sink_sum += (uint64_t)id + sink[0] + sink[512];
      rows++;
    }
    if (sqlite3_reset(pg->st) != SQLITE_OK) die("%s: %s", sqlite3_sql(pg->st), sqlite3_errmsg(pg->db));
    if (rows != 50) (*short_pages)++;
  }
  return (now_s() - t0) * 1e6 / n;
}

/* ------------------------------------------------------------------ */
/* Workloads 5 and 6: 1-row transactions                               */

#define COMMIT_ROUNDS 5
#define WARMUP_COMMITS 5 /* untimed commits before each timed series */
#define LAG_EVERY 25     /* workload 9 samples the flush lag of every 25th commit */

/* Transactions from..to-1 of a series of 1-row transactions (the one
** commit loop of workloads 5, 6 and 8-10): transaction j writes key id
** base + j, or with nkeys > 0 base + j % nkeys (one of nkeys keys in
** turn), with value value_of(id + j); the statements run in order, each
** with (?1 key, ?2 value) bound where it has parameters.  With stamps,
** transaction from + s*LAG_EVERY stores when it returned in stamps[s]
** (now_ns(), read by a watcher process through shared memory). */
static void commit_series(sqlite3 *db, sqlite3_stmt **sts, int nst, int from, int to, char letter, uint64_t base,
                          int nkeys, int64_t *stamps) {
  char key[KEY_LEN + 1];
  for (int j = from; j < to; j++) {
    uint64_t id = base + (uint64_t)(nkeys ? j % nkeys : j);
    make_key(key, letter, id);
    for (int s = 0; s < nst; s++) {
      if (sqlite3_bind_parameter_count(sts[s]) >= 2) {
        sqlite3_bind_text(sts[s], 1, key, KEY_LEN, SQLITE_STATIC);
        sqlite3_bind_blob(sts[s], 2, value_of(id + (uint64_t)j), O.value_size, SQLITE_STATIC);
      }
      step_done(db, sts[s]);
    }
    if (stamps && (j - from) % LAG_EVERY == 0) {
      __atomic_store_n(&stamps[(j - from) / LAG_EVERY], now_ns(), __ATOMIC_RELEASE);
    }
  }
}

/* us per 1-row transaction of a commit_series of ops, after the untimed
** warm-up ones. */
static double commits_sql(sqlite3 *db, sqlite3_stmt **sts, int nst, int ops, char letter, uint64_t base,
                          int nkeys) {
  commit_series(db, sts, nst, 0, WARMUP_COMMITS, letter, base, nkeys, NULL);
  double t0 = now_s();
  commit_series(db, sts, nst, WARMUP_COMMITS, WARMUP_COMMITS + ops, letter, base, nkeys, NULL);
  return (now_s() - t0) * 1e6 / ops;
}

/* us per 1-row commit into both environments. */
static double commits_lmdb(MDB_env *a, MDB_dbi da, lworker *w, int parallel, int ops, const char *sns,
                           uint64_t base) {
  char key[KEY_LEN + 1], kb[64];
  double t0 = 0;
  for (int op = -WARMUP_COMMITS; op < ops; op++) {
    if (op == 0) t0 = now_s();
    uint64_t id = base + (uint64_t)(op + WARMUP_COMMITS);
    MDB_val k, v;
    make_key(key, 'c', id);
    k.mv_data = kb;
    k.mv_size = lmdb_key(kb, "bench_commit", sns, key, KEY_LEN);
    v.mv_data = (void *)value_of(id);
    v.mv_size = (size_t)O.value_size;
    if (parallel) {
      pthread_mutex_lock(&w->mu);
      w->k = k;
      w->v = v;
      w->state = 1;
      pthread_cond_broadcast(&w->cv);
      pthread_mutex_unlock(&w->mu);
      lmdb_put_commit(a, da, &k, &v);
      pthread_mutex_lock(&w->mu);
      while (w->state != 2) pthread_cond_wait(&w->cv, &w->mu);
      w->state = 0;
      pthread_mutex_unlock(&w->mu);
    } else {
      lmdb_put_commit(a, da, &k, &v);
      lmdb_put_commit(w->env, w->dbi, &k, &v);
    }
  }
  return (now_s() - t0) * 1e6 / ops;
}

/* ------------------------------------------------------------------ */
/* Workloads 8-10: 1-row commits from several connections at once      */

#define MT_MAX_THREADS 16
#define LAG_GIVE_UP_NS 10000000000LL /* a sampled row not in the primary 10 s after its COMMIT is lost */
static const char *const MT_PNS = "bench_mt", *const MT_SNS = "m";

/* How a connection of a system declares or finds its table. */
enum {
  MT_TEMP,   /* tierstore: ':memory:', the table in the connection's temp schema */
  MT_SHARED, /* tierstore: one database file for all, the table in its main schema */
  MT_NATIVE  /* native: one WAL database file for all, with the backup ATTACHed */
};

/* What one commit runs, per kind: 1-row INSERT OR REPLACE of (?1 key, ?2
** value) into namespaces MT_PNS / MT_SNS; on one shared file, BEGIN
** IMMEDIATE takes SQLite's write lock first, so that the busy timeout
** applies to it. */
static const char *const mt_sql[3][4] = {
    {"INSERT OR REPLACE INTO temp.kv(primary_namespace, secondary_namespace, key, value) VALUES('bench_mt', 'm', ?1, ?2)"},
    {"BEGIN IMMEDIATE",
     "INSERT OR REPLACE INTO main.kv(primary_namespace, secondary_namespace, key, value) VALUES('bench_mt', 'm', ?1, ?2)",
     "COMMIT"},
    {"BEGIN IMMEDIATE",
     "INSERT OR REPLACE INTO main.kv(primary_namespace, secondary_namespace, key, value) VALUES('bench_mt', 'm', ?1, ?2)",
     "INSERT OR REPLACE INTO bk.kv(primary_namespace, secondary_namespace, key, value) VALUES('bench_mt', 'm', ?1, ?2)",
     "COMMIT"}};
static const int mt_nst[3] = {1, 3, 4};

/* A system of workloads 8-10: one kind and level, with its files. */
typedef struct {
  int kind;
  const char *level;                        /* tierstore durability, or native synchronous */
  char primary[PATH_MAX], backup[PATH_MAX]; /* tierstore environments (absolute paths) */
  sqlite3 *setup; /* the connection that declared the table, kept for 'sync'; NULL: level refused */
} mt_sys;

/* Declare s's tierstore table on db (temp schema, or main for the shared
** file); NULL, or SQLite's error message (sqlite3_free it). */
static char *mt_declare(sqlite3 *db, const mt_sys *s) {
  char *msg = NULL;
  char *sql = sqlite3_mprintf("CREATE VIRTUAL TABLE %s.kv USING tierstore(primary='%q', backup='%q', durability='%q')",
                              s->kind == MT_TEMP ? "temp" : "main", s->primary, s->backup, s->level);
  if (!sql) die("out of memory");
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK && !msg) msg = sqlite3_mprintf("?");
  sqlite3_free(sql);
  return msg;
}

/* A connection of s, ready for mt_sql[s->kind].  If its temp-schema table
** is refused: with err, NULL and the message in *err; else die. */
static sqlite3 *mt_open(const mt_sys *s, char **err) {
  char file[PATH_MAX], bk[PATH_MAX], sql[PATH_MAX + 64];
  sqlite3 *db;
  if (s->kind == MT_TEMP) snprintf(file, sizeof(file), ":memory:");
  else path_in(file, s->kind == MT_SHARED ? "mt-shared.db" : "mt-native.db");
  if (sqlite3_open(file, &db) != SQLITE_OK) die("open %s", file);
  sqlite3_busy_timeout(db, 60000); /* the connections of one file wait for its write lock in turn */
  if (s->kind == MT_NATIVE) {
    snprintf(sql, sizeof(sql), "ATTACH '%s' AS bk", path_in(bk, "mt-native-backup.db"));
    exec(db, sql);
    snprintf(sql, sizeof(sql), "PRAGMA main.synchronous=%s; PRAGMA bk.synchronous=%s", s->level, s->level);
    exec(db, sql);
    return db;
  }
  if (sqlite3_tierstore_init(db, NULL, NULL) != SQLITE_OK) die("sqlite3_tierstore_init failed");
  if (s->kind == MT_TEMP) {
    char *msg = mt_declare(db, s);
    if (msg) {
      if (!err) die("CREATE VIRTUAL TABLE temp.kv (durability='%s'): %s", s->level, msg);
      *err = msg;
      sqlite3_close(db);
      return NULL;
    }
  }
  return db;
}

/* Create s's files and table and keep the connection that did it.  A
** durability level the extension does not offer yet leaves s->setup NULL
** and the message in *refused (sqlite3_free it); s's figures are then
** '-'.  Any other failure dies. */
static void mt_setup(mt_sys *s, char **refused) {
  char *msg = NULL;
  s->setup = mt_open(s, &msg);
  if (!s->setup) {
    if (!strstr(msg, "not available yet")) die("CREATE VIRTUAL TABLE temp.kv (durability='%s'): %s", s->level, msg);
    progress("tierstore refuses durability='%s' (%s): its figures are '-'", s->level, msg);
    sqlite3_free(*refused);
    *refused = msg;
    return;
  }
  if (s->kind == MT_SHARED) {
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA journal_mode=%s", O.ts_journal);
    exec(s->setup, sql);
    if ((msg = mt_declare(s->setup, s))) die("CREATE VIRTUAL TABLE main.kv in mt-shared.db: %s", msg);
  } else if (s->kind == MT_NATIVE) {
    exec(s->setup, "PRAGMA main.journal_mode=WAL; PRAGMA bk.journal_mode=WAL");
    exec(s->setup, "CREATE TABLE IF NOT EXISTS main.kv(primary_namespace TEXT NOT NULL, secondary_namespace TEXT NOT NULL, "
                   "key TEXT NOT NULL, value BLOB NOT NULL, "
                   "PRIMARY KEY(primary_namespace, secondary_namespace, key)) WITHOUT ROWID");
    exec(s->setup, "CREATE TABLE IF NOT EXISTS bk.kv(primary_namespace TEXT NOT NULL, secondary_namespace TEXT NOT NULL, "
                   "key TEXT NOT NULL, value BLOB NOT NULL, "
                   "PRIMARY KEY(primary_namespace, secondary_namespace, key)) WITHOUT ROWID");
  }
}

/* An environment that this process's extension has open, opened read-only
** with room for tierstore's named databases: only in a child process, as
** LMDB forbids opening one environment twice in a process. */
static MDB_env *lmdb_open_ro(const char *dir) {
  MDB_env *env;
  lcheck(mdb_env_create(&env), "env_create");
  lcheck(mdb_env_set_maxdbs(env, 8), "set_maxdbs");
  lcheck(mdb_env_open(env, dir, MDB_RDONLY, 0644), dir);
  return env;
}

/* The child of lmdb_txnid. */
static void txnid_child(const void *dir, void *out) {
  MDB_env *env = lmdb_open_ro(dir);
  MDB_envinfo info;
  lcheck(mdb_env_info(env, &info), "env_info");
  *(uint64_t *)out = info.me_last_txnid;
  mdb_env_close(env);
}

/* The id of the last LMDB write transaction of the environment in dir
** (each one a flush of that environment), read in a forked child. */
static uint64_t lmdb_txnid(const char *dir) {
  uint64_t id = 0;
  if (!child_finish(child_start(txnid_child, dir, sizeof(id)), &id, sizeof(id))) die("reading %s's last txnid failed", dir);
  return id;
}

/* The flush-lag watcher of workload 9: a child process that watches the
** primary while one connection commits, and what it shares with it. */
typedef struct {
  const char *primary;
  uint64_t base;  /* the committing connection's key ids (commit_series) */
  int n;          /* samples: its transactions WARMUP_COMMITS + s*LAG_EVERY */
  pid_t parent;
  int64_t *done;  /* shared: when COMMIT s returned (now_ns(); 0: not yet) */
  int64_t *seen;  /* shared: when the watcher found row s in the primary (-1: lost) */
  int64_t *ready; /* shared: the watcher has the environment open */
  child_proc proc;
} lag_watch;

static const struct timespec POLL_NAP = {0, 100000}; /* 0.1 ms between the watcher's polls */

/* The watcher process: for each sampled row in turn, poll the primary with
** a new read transaction every 0.1 ms and note when the row is there. */
static void lag_child(const void *arg, void *out) {
  const lag_watch *w = arg;
  MDB_env *env = lmdb_open_ro(w->primary);
  MDB_dbi dbi = 0;
  int have_dbi = 0;
  char kb[64], key[KEY_LEN + 1];
  (void)out;
  __atomic_store_n(w->ready, 1, __ATOMIC_RELEASE);
  for (int s = 0; s < w->n; s++) {
    MDB_val k, v;
    make_key(key, 'm', w->base + WARMUP_COMMITS + (uint64_t)s * LAG_EVERY);
    k.mv_data = kb;
    k.mv_size = lmdb_key(kb, MT_PNS, MT_SNS, key, KEY_LEN);
    for (;;) {
      MDB_txn *txn;
      int64_t t = now_ns(); /* the row is there by the time this snapshot is taken */
      int rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
      if (rc == MDB_MAP_RESIZED) { /* the extension grew the map */
        lcheck(mdb_env_set_mapsize(env, 0), "set_mapsize");
        continue;
      }
      lcheck(rc, "txn_begin");
      if (!have_dbi) have_dbi = !mdb_dbi_open(txn, "data", 0, &dbi);
      rc = have_dbi ? mdb_get(txn, dbi, &k, &v) : MDB_NOTFOUND;
      if (rc && rc != MDB_NOTFOUND) lcheck(rc, "get");
      lcheck(mdb_txn_commit(txn), "txn_commit"); /* a read-only commit keeps the dbi handle */
      int64_t d = __atomic_load_n(&w->done[s], __ATOMIC_ACQUIRE);
      if (!rc) {
        w->seen[s] = t;
        break;
      }
      if (d && t - d > LAG_GIVE_UP_NS) {
        w->seen[s] = -1;
        break;
      }
      if (getppid() != w->parent) _exit(1);
      nanosleep(&POLL_NAP, NULL);
    }
  }
  mdb_env_close(env);
}

/* The shared memory of a watcher of runs of up to n samples. */
static void lag_alloc(lag_watch *w, int n) {
  int64_t *m = mmap(NULL, sizeof(int64_t) * (2 * (size_t)n + 1), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) die("mmap: %s", strerror(errno));
  memset(w, 0, sizeof(*w));
  w->n = n;
  w->done = m;
  w->seen = m + n;
  w->ready = m + 2 * n;
}

static void lag_free(lag_watch *w) { munmap(w->done, sizeof(int64_t) * (2 * (size_t)w->n + 1)); }

/* Start watching for the rows of a run from key id base in primary;
** returns once the watcher has the environment open, so that it sees the
** first sampled row arrive. */
static void lag_start(lag_watch *w, const char *primary, uint64_t base) {
  int64_t t0 = now_ns();
  w->primary = primary;
  w->base = base;
  w->parent = getpid();
  memset(w->done, 0, sizeof(int64_t) * (2 * (size_t)w->n + 1));
  w->proc = child_start(lag_child, w, 0);
  while (!__atomic_load_n(w->ready, __ATOMIC_ACQUIRE)) {
    if (now_ns() - t0 > LAG_GIVE_UP_NS) die("the flush-lag watcher did not start");
    nanosleep(&POLL_NAP, NULL);
  }
}

/* Wait for the watcher of a finished run; append its lags (ms) to ms[*n]
** and count the rows it did not find in *lost. */
static void lag_finish(lag_watch *w, double *ms, int *n, int *lost) {
  if (!child_finish(w->proc, NULL, 0)) die("the flush-lag watcher failed");
  for (int s = 0; s < w->n; s++) {
    double lag = (double)(w->seen[s] - w->done[s]) * 1e-6;
    if (w->seen[s] < 0) (*lost)++;
    else ms[(*n)++] = lag > 0 ? lag : 0; /* found before COMMIT returned: no lag */
  }
}

/* One committing thread of a run, with its own connection. */
typedef struct {
  const mt_sys *sys;
  int ops;
  uint64_t base;   /* this connection's key ids */
  int64_t *stamps; /* NULL, or the watcher's done[] */
  pthread_barrier_t *bar;
  pthread_t th;
  double t0, t1;
} mt_thread;

/* One connection of a run: open, warm up, wait for the others (twice: the
** main thread reads the primary's txnid in between), then the timed
** commits. */
static void *mt_thread_main(void *p) {
  mt_thread *a = p;
  const int kind = a->sys->kind, nst = mt_nst[kind];
  sqlite3 *db = mt_open(a->sys, NULL);
  sqlite3_stmt *sts[4];
  for (int i = 0; i < nst; i++) sts[i] = prep(db, mt_sql[kind][i]);
  commit_series(db, sts, nst, 0, WARMUP_COMMITS, 'm', a->base, 0, NULL);
  pthread_barrier_wait(a->bar);
  pthread_barrier_wait(a->bar);
  a->t0 = now_s();
  commit_series(db, sts, nst, WARMUP_COMMITS, WARMUP_COMMITS + a->ops, 'm', a->base, 0, a->stamps);
  a->t1 = now_s();
  for (int i = 0; i < nst; i++) sqlite3_finalize(sts[i]);
  if (sqlite3_close(db) != SQLITE_OK) die("close: %s", sqlite3_errmsg(db));
  return NULL;
}

/* One measured variant of workloads 8-10, over the rounds. */
typedef struct {
  mt_sys *sys;
  int threads, ops;
  int lag; /* sample the flush lag (one thread) */
  double rate[COMMIT_ROUNDS];
  uint64_t commits, flushes;
} mt_case;

/* The systems of workloads 8-10, in the order each round runs them for
** each number of connections T = 1, 4, 16 (i = 0, 1, 2): the variant of
** system m with T connections is mc[MT_CASE(m, i)]. */
enum { MS_D_TEMP, MS_D_FILE, MS_NAT_FULL, MS_APPLIED, MS_WRITTEN, MS_NAT_NORMAL, MS_N };
#define MT_NTHREADS 3
#define MT_CASE(m, i) ((i) * MS_N + (m))
#define MT_LAG (MS_N * MT_NTHREADS) /* applied, 1 connection, its flush lag sampled (rate not reported) */
#define MT_NCASES (MT_LAG + 1)

/* Commits/s of threads connections of s committing ops 1-row transactions
** each, all at once (thread t's key ids from base + t<<32; stamps go to
** thread 0), timed from the start to the last connection's end.  For
** tierstore, *flushes grows by the primary's LMDB write transactions during
** the timed commits, with everything pending synced before and after. */
static double mt_run(const mt_sys *s, int threads, int ops, uint64_t base, int64_t *stamps, uint64_t *flushes) {
  mt_thread th[MT_MAX_THREADS];
  pthread_barrier_t bar;
  const char *sync_sql = s->kind == MT_TEMP ? "INSERT INTO temp.kv(kv) VALUES('sync')" : "INSERT INTO main.kv(kv) VALUES('sync')";
  uint64_t txn0 = 0;
  double t0 = INFINITY, t1 = 0;
  if (threads > MT_MAX_THREADS) die("too many threads");
  pthread_barrier_init(&bar, NULL, (unsigned)threads + 1);
  for (int t = 0; t < threads; t++) {
    memset(&th[t], 0, sizeof(th[t]));
    th[t].sys = s;
    th[t].ops = ops;
    th[t].base = base + ((uint64_t)t << 32);
    th[t].stamps = t ? NULL : stamps;
    th[t].bar = &bar;
    if (pthread_create(&th[t].th, NULL, mt_thread_main, &th[t])) die("pthread_create");
  }
  pthread_barrier_wait(&bar); /* every connection open and warmed up */
  if (s->kind != MT_NATIVE) {
    exec(s->setup, sync_sql);
    txn0 = lmdb_txnid(s->primary);
  }
  pthread_barrier_wait(&bar);
  for (int t = 0; t < threads; t++) {
    pthread_join(th[t].th, NULL);
    t0 = th[t].t0 < t0 ? th[t].t0 : t0;
    t1 = th[t].t1 > t1 ? th[t].t1 : t1;
  }
  pthread_barrier_destroy(&bar);
  if (s->kind != MT_NATIVE) {
    exec(s->setup, sync_sql);
    *flushes += lmdb_txnid(s->primary) - txn0;
  }
  return (double)threads * ops / (t1 - t0);
}

/* ------------------------------------------------------------------ */
/* Machine description                                                 */

static char machine[8192];

static void read_first(const char *path, char *buf, size_t n) {
  FILE *f = fopen(path, "r");
  buf[0] = 0;
  if (!f) return;
  if (!fgets(buf, (int)n, f)) buf[0] = 0;
  fclose(f);
  buf[strcspn(buf, "\n")] = 0;
}

static void describe_machine(const char *dir) {
  char cpu[256] = "?", line[512], mnt_dev[256] = "?", mnt_type[64] = "?", rot[16] = "?", p[PATH_MAX];
  char real[PATH_MAX], blk[PATH_MAX] = "", blkname[64] = "?";
  size_t best = 0;
  long mem_kib = 0;
  struct utsname u;
  struct stat sb;
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (f) {
    while (fgets(line, sizeof(line), f)) {
      if (!strncmp(line, "model name", 10)) {
        char *c = strchr(line, ':');
        if (c) {
          snprintf(cpu, sizeof(cpu), "%s", c + 2);
          cpu[strcspn(cpu, "\n")] = 0;
        }
        break;
      }
    }
    fclose(f);
  }
  f = fopen("/proc/meminfo", "r");
  if (f) {
    while (fgets(line, sizeof(line), f)) {
      if (!strncmp(line, "MemTotal:", 9)) mem_kib = strtol(line + 9, NULL, 10);
    }
    fclose(f);
  }
  if (!realpath(dir, real)) snprintf(real, sizeof(real), "%s", dir);
  f = fopen("/proc/self/mounts", "r");
  if (f) {
    char dev[256], mp[PATH_MAX], type[64];
    while (fgets(line, sizeof(line), f)) {
      if (sscanf(line, "%255s %4095s %63s", dev, mp, type) != 3) continue;
      size_t n = strlen(mp);
      if (!strncmp(real, mp, n) && (real[n] == '/' || real[n] == 0 || n == 1) && n >= best) {
        best = n;
        snprintf(mnt_dev, sizeof(mnt_dev), "%s", dev);
        snprintf(mnt_type, sizeof(mnt_type), "%s", type);
      }
    }
    fclose(f);
  }
  if (!stat(dir, &sb)) {
    snprintf(p, sizeof(p), "/sys/dev/block/%u:%u/queue/rotational", major(sb.st_dev), minor(sb.st_dev));
    read_first(p, rot, sizeof(rot));
    snprintf(p, sizeof(p), "/sys/dev/block/%u:%u", major(sb.st_dev), minor(sb.st_dev));
    if (realpath(p, blk)) {
      const char *slash = strrchr(blk, '/');
      snprintf(blkname, sizeof(blkname), "%s", slash ? slash + 1 : blk);
    }
    if (!rot[0]) { /* a partition: its disk's queue */
      snprintf(p, sizeof(p), "/sys/dev/block/%u:%u/../queue/rotational", major(sb.st_dev), minor(sb.st_dev));
      read_first(p, rot, sizeof(rot));
    }
  }
  uname(&u);
  int n = snprintf(machine, sizeof(machine),
           "machine: %ld cpus (nproc), %s, %.1f GiB RAM, %s %s\n"
           "disk:    %s on %s (%s; block device %s, rotational=%s)%s\n"
           "versions: SQLite %s, LMDB %d.%d.%d",
           sysconf(_SC_NPROCESSORS_ONLN), cpu, mem_kib / 1048576.0, u.sysname, u.release, real, mnt_dev, mnt_type,
           blkname, rot[0] ? rot : "?",
           !strcmp(mnt_type, "tmpfs") ? "  WARNING: tmpfs, fsync costs nothing here" : "",
           sqlite3_libversion(), MDB_VERSION_MAJOR, MDB_VERSION_MINOR, MDB_VERSION_PATCH);
  if (n >= (int)sizeof(machine)) machine[sizeof(machine) - 1] = 0; /* truncated: still a string */
}

/* ------------------------------------------------------------------ */
/* Report                                                              */

static void fmt_val(char *buf, size_t n, double v, int kind) {
  if (isnan(v)) snprintf(buf, n, "-");
  else if (kind == K_RATE) snprintf(buf, n, "%.0f", v);
  else if (kind == K_RATIO) snprintf(buf, n, "%.2fx", v);
  else if (kind == K_COUNT) snprintf(buf, n, "%.2f", v);
  else if (kind == K_TIME && v < 100) snprintf(buf, n, "%.2f", v);
  else snprintf(buf, n, "%.1f", v);
}

static void fmt_ratio(char *buf, size_t n, double v) {
  if (isnan(v)) snprintf(buf, n, "-");
  else snprintf(buf, n, "%.2fx", v);
}

static void json_num(FILE *f, const char *name, double v) {
  if (isnan(v)) fprintf(f, ",\"%s\":null", name);
  else fprintf(f, ",\"%s\":%.6g", name, v);
}

static void json_str(FILE *f, const char *name, const char *s) {
  fprintf(f, ",\"%s\":\"", name);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') fprintf(f, "\\%c", *s);
    else if (*s == '\n') fprintf(f, "\\n");
    else if ((unsigned char)*s < 0x20) fprintf(f, " ");
    else fputc(*s, f);
  }
  fputc('"', f);
}

/* ------------------------------------------------------------------ */

static void usage(void) {
  printf("usage: bench [options]\n"
         "  --rows N          rows of the main data set (default 200000)\n"
         "  --value-size N    bytes per value (default 100)\n"
         "  --quick           tiny sizes for CI (2000 rows, few ops)\n"
         "  --dir DIR         data directory, disk-backed (default ./bench-data);\n"
         "                    the run uses a fresh DIR/run-PID and removes it\n"
         "  --keep            keep DIR/run-PID afterwards\n"
         "  --out FILE        text report (default bench/results.txt if ./bench exists,\n"
         "                    else ./bench-results.txt); JSON lines go to FILE.jsonl\n"
         "  --commits N       1-row transactions per small-commit variant, and per thread\n"
         "                    in workloads 8 and 10 (default 300)\n"
         "  --applied-commits N  1-row transactions per variant of workload 9 (default 3000)\n"
         "  --ephemeral-ops N ephemeral 1-row transactions overwriting 3 keys (default 5000);\n"
         "                    the new-key variant runs --commits transactions\n"
         "  --pages N         page queries per pagination namespace (default 2000)\n"
         "  --scan-reps N     repetitions of each scan, median reported (default 5)\n"
         "  --bulk-reps N     bulk loads per system into fresh files, median reported (default 3)\n"
         "  --native-cache-kib N  native SQLite cache_size (default: SQLite's, 2000 KiB)\n"
         "  --ts-journal-mode M   journal_mode of tierstore's own database file ts.db (default\n"
         "                    wal, as the native database; delete: SQLite's default, where\n"
         "                    every statement locks and checks the file)\n"
         "  --seed N          data and order seed (default 1)\n"
         "  --label TEXT      shown in the report header (bench/run.sh passes the git revision)\n");
}

static long long num_arg(int argc, char **argv, int *i) {
  char *end;
  long long v;
  if (*i + 1 >= argc) die("%s needs a value", argv[*i]);
  v = strtoll(argv[++*i], &end, 10);
  if (*end || v < 0) die("bad value for %s: %s", argv[*i - 1], argv[*i]);
  return v;
}

int main(int argc, char **argv) {
  int rows_set = 0, bulk_reps_set = 0;
  char p[PATH_MAX];
  char out_default[PATH_MAX];
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--rows")) O.rows = (uint64_t)num_arg(argc, argv, &i), rows_set = 1;
    else if (!strcmp(a, "--value-size")) O.value_size = (int)num_arg(argc, argv, &i);
    else if (!strcmp(a, "--quick")) O.quick = 1;
    else if (!strcmp(a, "--dir")) {
      if (++i >= argc) die("--dir needs a value");
      O.dir = argv[i];
    } else if (!strcmp(a, "--out")) {
      if (++i >= argc) die("--out needs a value");
      O.out = argv[i];
    } else if (!strcmp(a, "--label")) {
      if (++i >= argc) die("--label needs a value");
      O.label = argv[i];
    } else if (!strcmp(a, "--keep")) O.keep = 1;
    else if (!strcmp(a, "--commits")) O.commits = (int)num_arg(argc, argv, &i);
    else if (!strcmp(a, "--applied-commits")) O.applied_commits = (int)num_arg(argc, argv, &i);
    else if (!strcmp(a, "--ephemeral-ops")) O.eph_ops = (int)num_arg(argc, argv, &i);
    else if (!strcmp(a, "--pages")) O.pages = (int)num_arg(argc, argv, &i);
    else if (!strcmp(a, "--scan-reps")) O.scan_reps = (int)num_arg(argc, argv, &i);
    else if (!strcmp(a, "--bulk-reps")) O.bulk_reps = (int)num_arg(argc, argv, &i), bulk_reps_set = 1;
    else if (!strcmp(a, "--native-cache-kib")) O.native_cache_kib = (int)num_arg(argc, argv, &i);
    else if (!strcmp(a, "--ts-journal-mode")) {
      if (++i >= argc) die("--ts-journal-mode needs a value");
      for (const char *c = argv[i]; *c; c++) {
        if (!isalpha((unsigned char)*c)) die("bad value for --ts-journal-mode: %s", argv[i]);
      }
      O.ts_journal = argv[i];
    }
    else if (!strcmp(a, "--seed")) O.seed = (uint64_t)num_arg(argc, argv, &i);
    else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage();
      return 0;
    } else {
      usage();
      die("unknown option %s", a);
    }
  }
  if (O.quick) {
    if (!rows_set) O.rows = 2000;
    O.commits = O.commits > 20 ? 20 : O.commits;
    O.applied_commits = O.applied_commits > 20 ? 20 : O.applied_commits;
    O.eph_ops = O.eph_ops > 200 ? 200 : O.eph_ops;
    O.pages = O.pages > 50 ? 50 : O.pages;
    O.scan_reps = O.scan_reps > 2 ? 2 : O.scan_reps;
    if (!bulk_reps_set) O.bulk_reps = 1;
  }
  if (O.rows < 100 || O.rows > 0xffffffffULL) die("--rows must be between 100 and 2^32-1");
  if (O.value_size < 1 || O.value_size > 60000) die("--value-size must be between 1 and 60000");
  if (O.commits < 1 || O.eph_ops < 1 || O.pages < 1 || O.scan_reps < 1 || O.bulk_reps < 1 || O.applied_commits < 1) {
    die("counts must be at least 1");
  }
  if (O.bulk_reps > 15) O.bulk_reps = 15;
  if (!O.out) {
    struct stat sb;
    snprintf(out_default, sizeof(out_default), "%s",
             !stat("bench", &sb) && S_ISDIR(sb.st_mode) ? "bench/results.txt" : "bench-results.txt");
    O.out = out_default;
  }

  /* Data set. */
  for (int n = 0; n < NNS; n++) snprintf(pns_name[n], sizeof(pns_name[n]), "bench_ns%d", n);
  SCAN_PNS = pns_name[SCAN_NS];
  vbuf = malloc((size_t)O.value_size + 4096);
  if (!vbuf) die("out of memory");
  rng_state = O.seed;
  for (size_t i = 0; i < (size_t)O.value_size + 4096; i++) vbuf[i] = (unsigned char)rng_next();
  choose_page_sizes();
  uint64_t page_total = 0;
  for (int s = 0; s < npage_sizes; s++) page_total += page_sizes[s];
  {
    /* Map for the largest environment: main rows + pagination + commits,
    ** with room for indexes and copy-on-write. */
    double per = (double)O.value_size + 160.0;
    double want = ((double)(O.rows + page_total) + 100000.0) * per * 3.0 + 64.0 * 1048576.0;
    size_t mib = (size_t)(want / 1048576.0) + 1;
    if (mib < 256) mib = 256;
    lmdb_map_bytes = mib << 20;
    snprintf(ts_map_size, sizeof(ts_map_size), "%zuMiB", mib);
  }
  double raw_bytes = 0;
  for (uint64_t i = 0; i < O.rows; i++) raw_bytes += (double)(strlen(pns_name[i % NNS]) + strlen(SNS) + KEY_LEN + (size_t)O.value_size);

  /* A fresh run directory on the chosen disk. */
  mkdir_p(O.dir);
  if (!realpath(O.dir, p)) die("realpath %s: %s", O.dir, strerror(errno));
  if (snprintf(run_dir, sizeof(run_dir), "%s/run-%ld", p, (long)getpid()) >= (int)sizeof(run_dir) - 64) {
    die("--dir path too long: %s", p);
  }
  nftw(run_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  mkdir_p(run_dir);
  describe_machine(run_dir);
  progress("%llu rows of %d-byte values in %d namespaces; data in %s", (unsigned long long)O.rows, O.value_size,
           NNS, run_dir);

  double run_t0 = now_s(), busy0 = machine_busy_s(), own0 = own_cpu_s();

  /* 1 + 7: bulk loads, each in its own process. */
  /* 1 + 7: bulk loads, each in its own process into fresh files; the
  ** systems take turns, bulk_reps rounds; the median time is reported, the
  ** largest peak RSS, and the files of the last round stay for the other
  ** workloads. */
  static const char *const bulk_files[4][7] = {
      {"ts.db", "ts.db-journal", "ts.db-wal", "ts.db-shm", "ts-primary", "ts-backup", NULL},
      {"native.db", "native.db-wal", "native.db-shm", "native-backup.db", NULL},
      {"lmdb-seq-a", "lmdb-seq-b", NULL},
      {"lmdb-par-a", "lmdb-par-b", NULL}};
  static const char *const bulk_what[4] = {
      "tierstore (primary + backup, durable)", "native SQLite + ATTACHed backup (WAL, FULL)",
      "raw LMDB, 2 environments, A then B", "raw LMDB, 2 environments, 2 threads"};
  void (*const bulk_fn[4])(bulk_res *) = {bulk_ts, bulk_native, bulk_lmdb_seq, bulk_lmdb_par};
  bulk_res bulk[4];
  double bulk_secs[4][16];
  memset(bulk, 0, sizeof(bulk));
  for (int rep = 0; rep < O.bulk_reps; rep++) {
    for (int sys = 0; sys < 4; sys++) {
      char what[160];
      for (int f = 0; bulk_files[sys][f]; f++) rm_in_run(bulk_files[sys][f]);
      rm_in_run("native-backup.db-wal");
      rm_in_run("native-backup.db-shm");
      sync();
      snprintf(what, sizeof(what), "%s, round %d of %d", bulk_what[sys], rep + 1, O.bulk_reps);
      bulk_res r = run_child(bulk_fn[sys], what);
      bulk_secs[sys][rep] = r.secs;
      if (rep == 0 || r.hwm > bulk[sys].hwm) bulk[sys] = r;
    }
  }
  for (int sys = 0; sys < 4; sys++) bulk[sys].secs = median(bulk_secs[sys], O.bulk_reps);
  bulk_res b_ts = bulk[0], b_nat = bulk[1], b_seq = bulk[2], b_par = bulk[3];
  sync();

  double r_ts = (double)O.rows / b_ts.secs, r_nat = (double)O.rows / b_nat.secs;
  double r_seq = (double)O.rows / b_seq.secs, r_par = (double)O.rows / b_par.secs;
  add_result("rows/s", K_RATE, r_ts, r_nat, r_seq, "1 bulk load P+B [LMDB: A then B]");
  add_result("rows/s", K_RATE, r_ts, r_nat, r_par, "1 bulk load P+B [LMDB: 2 threads]");

  /* Open everything for the remaining workloads. */
  sqlite3 *ts = open_ts();
  sqlite3 *nat = open_native();
  MDB_dbi la_dbi;
  MDB_env *la = lmdb_open("lmdb-par-a", &la_dbi);
  lworker w;
  memset(&w, 0, sizeof(w));
  w.env = lmdb_open("lmdb-par-b", &w.dbi);
  pthread_mutex_init(&w.mu, NULL);
  pthread_cond_init(&w.cv, NULL);
  if (pthread_create(&w.th, NULL, lworker_main, &w)) die("pthread_create");

  /* 2: point reads. */
  double read_ratio, scan_k_ratio, scan_kv_ratio;
  {
    uint32_t *perm = shuffled(O.rows, O.seed * 1000 + 2);
    progress("2 point reads");
    double a = reads_sql(ts, "SELECT value FROM kv WHERE primary_namespace=?1 AND secondary_namespace=?2 AND key=?3", perm);
    double b = reads_sql(nat, "SELECT value FROM main.kv WHERE primary_namespace=?1 AND secondary_namespace=?2 AND key=?3", perm);
    double c = reads_lmdb(la, la_dbi, perm);
    add_result("rows/s", K_RATE, a, b, c, "2 point reads, every key, random order");
    read_ratio = a / b;
    free(perm);
  }

  /* 3: namespace scan. */
  {
    progress("3 namespace scan (%llu keys)", (unsigned long long)scan_expect());
    double a = scan_sql(ts, "SELECT key FROM kv WHERE primary_namespace=?1 AND secondary_namespace=?2 ORDER BY key", 0);
    double b = scan_sql(nat, "SELECT key FROM main.kv WHERE primary_namespace=?1 AND secondary_namespace=?2 ORDER BY key", 0);
    double c = scan_lmdb(la, la_dbi, 0);
    add_result("rows/s", K_RATE, a, b, c, "3 scan 1 namespace (%llu), keys only", (unsigned long long)scan_expect());
    scan_k_ratio = a / b;
    a = scan_sql(ts, "SELECT key, value FROM kv WHERE primary_namespace=?1 AND secondary_namespace=?2 ORDER BY key", 1);
    b = scan_sql(nat, "SELECT key, value FROM main.kv WHERE primary_namespace=?1 AND secondary_namespace=?2 ORDER BY key", 1);
    c = scan_lmdb(la, la_dbi, 1);
    add_result("rows/s", K_RATE, a, b, c, "3 scan 1 namespace (%llu), keys+values", (unsigned long long)scan_expect());
    scan_kv_ratio = a / b;
  }

  /* 4: pagination. */
  double page_ts[3] = {NAN, NAN, NAN}, page_nat[3] = {NAN, NAN, NAN};
  uint64_t short_pages = 0;
  {
    sqlite3_int64 seq = 0;
    exec(nat, "CREATE TABLE main.kvp(primary_namespace TEXT NOT NULL, secondary_namespace TEXT NOT NULL, "
              "key TEXT NOT NULL, value BLOB NOT NULL, seq INTEGER NOT NULL, "
              "PRIMARY KEY(primary_namespace, secondary_namespace, key)) WITHOUT ROWID");
    exec(nat, "CREATE INDEX main.kvp_seq ON kvp(primary_namespace, secondary_namespace, seq)");
    for (int s = 0; s < npage_sizes; s++) {
      char sns[32];
      snprintf(sns, sizeof(sns), "n%llu", (unsigned long long)page_sizes[s]);
      progress("4 pagination: loading a namespace of %llu keys", (unsigned long long)page_sizes[s]);
      page_load(ts, nat, sns, page_sizes[s], &seq);
    }
    sync();
    /* Sizes and systems take turns, PAGE_ROUNDS rounds of pages/PAGE_ROUNDS
    ** pages each, so that a disturbance does not land on one size only;
    ** the median round is reported. */
    pager pts[3], pnat[3];
    int per_round = (O.pages + PAGE_ROUNDS - 1) / PAGE_ROUNDS;
    progress("4 pagination: %d pages per namespace and system, in %d rounds", per_round * PAGE_ROUNDS, PAGE_ROUNDS);
    for (int s = 0; s < npage_sizes; s++) {
      pager_open(&pts[s], ts,
                 "SELECT rowid FROM kv WHERE primary_namespace='bench_pg' AND secondary_namespace=?1 ORDER BY rowid ASC LIMIT 1",
                 "SELECT rowid FROM kv WHERE primary_namespace='bench_pg' AND secondary_namespace=?1 ORDER BY rowid DESC LIMIT 1",
                 "SELECT rowid, key, value FROM kv WHERE primary_namespace='bench_pg' AND secondary_namespace=?1 "
                 "AND rowid<?2 ORDER BY rowid DESC LIMIT 50",
                 page_sizes[s]);
      pager_open(&pnat[s], nat,
                 "SELECT min(seq) FROM main.kvp WHERE primary_namespace='bench_pg' AND secondary_namespace=?1",
                 "SELECT max(seq) FROM main.kvp WHERE primary_namespace='bench_pg' AND secondary_namespace=?1",
                 "SELECT seq, key, value FROM main.kvp WHERE primary_namespace='bench_pg' AND secondary_namespace=?1 "
                 "AND seq<?2 ORDER BY seq DESC LIMIT 50",
                 page_sizes[s]);
    }
    for (int r = 0; r < PAGE_ROUNDS; r++) {
      for (int s = 0; s < npage_sizes; s++) {
        pts[s].us[r] = pager_run(&pts[s], per_round, &short_pages);
        pnat[s].us[r] = pager_run(&pnat[s], per_round, &short_pages);
      }
    }
    for (int s = 0; s < npage_sizes; s++) {
      page_ts[s] = median(pts[s].us, PAGE_ROUNDS);
      page_nat[s] = median(pnat[s].us, PAGE_ROUNDS);
      sqlite3_finalize(pts[s].st);
      sqlite3_finalize(pnat[s].st);
      add_result("us/page", K_TIME, page_ts[s], page_nat[s], NAN, "4 page of 50 newest-first, ns of %llu keys",
                 (unsigned long long)page_sizes[s])->keys = (unsigned long long)page_sizes[s];
    }
    int last = npage_sizes - 1;
    add_result("ratio", K_RATIO, page_ts[last] / page_ts[0], page_nat[last] / page_nat[0], NAN,
               "4 page cost at %llu / at %llu keys", (unsigned long long)page_sizes[last],
               (unsigned long long)page_sizes[0]);
  }

  /* 5 and 6 run on a connection of their own: a connection's first large
  ** transaction changes what its later commits cost (see the note). */
  sqlite3 *tsc = open_ts();

  /* 5: small commits. */
  double c_ts_d, c_nat_d, c_l_d_seq, c_l_d_par, c_ts_w, c_nat_w;
  double c_l_nm_seq, c_l_nm_par, c_l_ns_seq, c_l_ns_par;
  {
    sqlite3_stmt *ts_ins = prep(tsc, "INSERT INTO kv(primary_namespace, secondary_namespace, key, value) VALUES('bench_commit', 'd', ?1, ?2)");
    sqlite3_stmt *tsw_ins = prep(tsc, "INSERT INTO kvw(primary_namespace, secondary_namespace, key, value) VALUES('bench_commit', 'w', ?1, ?2)");
    sqlite3_stmt *nb = prep(nat, "BEGIN"), *nc = prep(nat, "COMMIT");
    sqlite3_stmt *nm = prep(nat, "INSERT INTO main.kv(primary_namespace, secondary_namespace, key, value) VALUES('bench_commit', 'd', ?1, ?2)");
    sqlite3_stmt *nbk = prep(nat, "INSERT INTO bk.kv(primary_namespace, secondary_namespace, key, value) VALUES('bench_commit', 'd', ?1, ?2)");
    sqlite3_stmt *nmw = prep(nat, "INSERT INTO main.kv(primary_namespace, secondary_namespace, key, value) VALUES('bench_commit', 'w', ?1, ?2)");
    sqlite3_stmt *nbkw = prep(nat, "INSERT INTO bk.kv(primary_namespace, secondary_namespace, key, value) VALUES('bench_commit', 'w', ?1, ?2)");
    sqlite3_stmt *nat_d[4] = {nb, nm, nbk, nc}, *nat_w[4] = {nb, nmw, nbkw, nc};

    /* The ten variants take turns, COMMIT_ROUNDS rounds of commits /
    ** COMMIT_ROUNDS transactions each (new keys every round); the median
    ** round is reported. */
    double cu[10][COMMIT_ROUNDS];
    int per = (O.commits + COMMIT_ROUNDS - 1) / COMMIT_ROUNDS;
    settle(nat);
    progress("5 small commits: %d per variant, in %d rounds", per * COMMIT_ROUNDS, COMMIT_ROUNDS);
    for (int r = 0; r < COMMIT_ROUNDS; r++) {
      uint64_t base = (uint64_t)r * (uint64_t)(per + WARMUP_COMMITS);
      cu[0][r] = commits_sql(tsc, &ts_ins, 1, per, 'c', base, 0);
      cu[1][r] = commits_sql(nat, nat_d, 4, per, 'c', base, 0);
      cu[2][r] = commits_lmdb(la, la_dbi, &w, 0, per, "d-seq", base);
      cu[3][r] = commits_lmdb(la, la_dbi, &w, 1, per, "d-par", base);
      cu[4][r] = commits_sql(tsc, &tsw_ins, 1, per, 'c', base, 0);
      exec(nat, "PRAGMA main.synchronous=NORMAL; PRAGMA bk.synchronous=NORMAL");
      cu[5][r] = commits_sql(nat, nat_w, 4, per, 'c', base, 0);
      exec(nat, "PRAGMA main.synchronous=FULL; PRAGMA bk.synchronous=FULL");
      lcheck(mdb_env_set_flags(la, MDB_NOMETASYNC, 1), "set_flags");
      lcheck(mdb_env_set_flags(w.env, MDB_NOMETASYNC, 1), "set_flags");
      cu[6][r] = commits_lmdb(la, la_dbi, &w, 0, per, "nm-seq", base);
      cu[7][r] = commits_lmdb(la, la_dbi, &w, 1, per, "nm-par", base);
      lcheck(mdb_env_set_flags(la, MDB_NOMETASYNC, 0), "set_flags");
      lcheck(mdb_env_set_flags(w.env, MDB_NOMETASYNC, 0), "set_flags");
      lcheck(mdb_env_set_flags(la, MDB_NOSYNC, 1), "set_flags");
      lcheck(mdb_env_set_flags(w.env, MDB_NOSYNC, 1), "set_flags");
      cu[8][r] = commits_lmdb(la, la_dbi, &w, 0, per, "ns-seq", base);
      cu[9][r] = commits_lmdb(la, la_dbi, &w, 1, per, "ns-par", base);
      lcheck(mdb_env_set_flags(la, MDB_NOSYNC, 0), "set_flags");
      lcheck(mdb_env_set_flags(w.env, MDB_NOSYNC, 0), "set_flags");
      lcheck(mdb_env_sync(la, 1), "env_sync"); /* the next round's syncs start clean */
      lcheck(mdb_env_sync(w.env, 1), "env_sync");
    }
    c_ts_d = median(cu[0], COMMIT_ROUNDS);
    c_nat_d = median(cu[1], COMMIT_ROUNDS);
    c_l_d_seq = median(cu[2], COMMIT_ROUNDS);
    c_l_d_par = median(cu[3], COMMIT_ROUNDS);
    c_ts_w = median(cu[4], COMMIT_ROUNDS);
    c_nat_w = median(cu[5], COMMIT_ROUNDS);
    c_l_nm_seq = median(cu[6], COMMIT_ROUNDS);
    c_l_nm_par = median(cu[7], COMMIT_ROUNDS);
    c_l_ns_seq = median(cu[8], COMMIT_ROUNDS);
    c_l_ns_par = median(cu[9], COMMIT_ROUNDS);

    add_result("us/op", K_TIME, c_ts_d, c_nat_d, c_l_d_seq, "5 durable 1-row commit [LMDB: A then B]");
    add_result("us/op", K_TIME, c_ts_d, c_nat_d, c_l_d_par, "5 durable 1-row commit [LMDB: 2 threads]");
    add_result("us/op", K_TIME, c_ts_w, c_nat_w, c_l_nm_seq, "5 written 1-row commit [LMDB NOMETASYNC: A then B]");
    add_result("us/op", K_TIME, c_ts_w, c_nat_w, c_l_nm_par, "5 written 1-row commit [LMDB NOMETASYNC: 2 threads]");
    add_result("us/op", K_TIME, c_ts_w, c_nat_w, c_l_ns_seq, "5 written 1-row commit [LMDB NOSYNC: A then B]");
    add_result("us/op", K_TIME, c_ts_w, c_nat_w, c_l_ns_par, "5 written 1-row commit [LMDB NOSYNC: 2 threads]");
    sqlite3_finalize(ts_ins);
    sqlite3_finalize(tsw_ins);
    for (int i = 0; i < 4; i++) sqlite3_finalize(nat_d[i]);
    sqlite3_finalize(nmw);
    sqlite3_finalize(nbkw);
  }

  /* 6: ephemeral writes (native reference: a TEMP table). */
  double e_new, e_over, e_nat_new, e_nat_over, e_over_loader;
  long long e_syscw = 0, e_wbytes = 0;
  {
    sqlite3_stmt *tn = prep(tsc, "INSERT INTO kv(primary_namespace, secondary_namespace, key, value) VALUES('bench_eph', 'e', ?1, ?2)");
    sqlite3_stmt *to = prep(tsc, "INSERT OR REPLACE INTO kv(primary_namespace, secondary_namespace, key, value) VALUES('bench_eph', 'o', ?1, ?2)");
    exec(nat, "CREATE TEMP TABLE eph(primary_namespace TEXT NOT NULL, secondary_namespace TEXT NOT NULL, "
              "key TEXT NOT NULL, value BLOB NOT NULL, "
              "PRIMARY KEY(primary_namespace, secondary_namespace, key)) WITHOUT ROWID");
    sqlite3_stmt *nn = prep(nat, "INSERT INTO temp.eph VALUES('bench_eph', 'e', ?1, ?2)");
    sqlite3_stmt *no = prep(nat, "INSERT OR REPLACE INTO temp.eph VALUES('bench_eph', 'o', ?1, ?2)");
    settle(nat);
    progress("6 ephemeral writes (%d overwriting, %d new keys)", O.eph_ops, O.commits);
    long long w0 = io_counter("syscw"), b0 = io_counter("write_bytes");
    e_over = commits_sql(tsc, &to, 1, O.eph_ops, 'o', 0, EPH_KEYS);
    e_new = commits_sql(tsc, &tn, 1, O.commits, 'e', 0, 0);
    long long w1 = io_counter("syscw"), b1 = io_counter("write_bytes");
    e_syscw = w0 < 0 || w1 < 0 ? -1 : w1 - w0; /* -1: /proc/self/io unavailable */
    e_wbytes = b0 < 0 || b1 < 0 ? -1 : b1 - b0;
    /* The same overwrites on the connection that loaded the pagination
    ** namespaces: what a connection pays after one large transaction. */
    sqlite3_stmt *to_loader = prep(ts, "INSERT OR REPLACE INTO kv(primary_namespace, secondary_namespace, key, value) "
                                       "VALUES('bench_eph', 'o', ?1, ?2)");
    e_over_loader = commits_sql(ts, &to_loader, 1, O.eph_ops / 5 > 20 ? O.eph_ops / 5 : 20, 'o', 0, EPH_KEYS);
    sqlite3_finalize(to_loader);
    e_nat_over = commits_sql(nat, &no, 1, O.eph_ops, 'o', 0, EPH_KEYS);
    e_nat_new = commits_sql(nat, &nn, 1, O.commits, 'e', 0, 0);
    add_result("us/op", K_TIME, e_over, e_nat_over, NAN, "6 ephemeral 1-row commit, overwrite (%d keys)", EPH_KEYS);
    add_result("us/op", K_TIME, e_new, e_nat_new, NAN, "6 ephemeral 1-row commit, new key (tier %d->%d)", EPH_KEYS,
               EPH_KEYS + O.commits + 5);
    add_result("us/op", K_TIME, e_over_loader, NAN, NAN, "6 overwrite again, conn after a %llu-row txn",
               (unsigned long long)page_sizes[npage_sizes - 1]);
    sqlite3_finalize(tn);
    sqlite3_finalize(to);
    sqlite3_finalize(nn);
    sqlite3_finalize(no);
  }

  /* 7: memory, from the bulk-load children. */
  const double MiB = 1024.0;
  add_result("MiB", K_SIZE, b_ts.hwm / MiB, b_nat.hwm / MiB, b_par.hwm / MiB, "7 bulk-load peak RSS [LMDB: 2 threads]");
  add_result("MiB", K_SIZE, b_ts.hwm / MiB, b_nat.hwm / MiB, b_seq.hwm / MiB, "7 bulk-load peak RSS [LMDB: A then B]");
  add_result("B/row", K_SIZE, (b_ts.rss_precommit - b_ts.rss_load0) * 1024.0 / (double)O.rows,
             (b_nat.rss_precommit - b_nat.rss_load0) * 1024.0 / (double)O.rows,
             (b_par.rss_precommit - b_par.rss_load0) * 1024.0 / (double)O.rows,
             "7 RSS growth before COMMIT per row [LMDB: 2 thr]");

  /* 8-10: 1-row commits from several connections at once. */
  static const int mt_threads[MT_NTHREADS] = {1, 4, 16};
  mt_sys ts_dur = {.kind = MT_TEMP, .level = "durable"}, ts_dur_file = {.kind = MT_SHARED, .level = "durable"};
  mt_sys ts_app = {.kind = MT_TEMP, .level = "applied"}, ts_wr = {.kind = MT_TEMP, .level = "written"};
  mt_sys nat_full = {.kind = MT_NATIVE, .level = "FULL"}, nat_normal = {.kind = MT_NATIVE, .level = "NORMAL"};
  mt_case mc[MT_NCASES];
  char *mt_refused = NULL;
  double mt_med[MT_NCASES], mt_cpf[MT_NCASES], mt_lmdb[COMMIT_ROUNDS], mt_l1, lag_med, lag_max;
  int mt_rounds = O.quick ? 1 : COMMIT_ROUNDS; /* --quick: one round of the usual round's size */
  int mt_per = (O.commits + COMMIT_ROUNDS - 1) / COMMIT_ROUNDS;
  int mt_per_a = (O.applied_commits + COMMIT_ROUNDS - 1) / COMMIT_ROUNDS;
  int lag_per_run = (mt_per_a - 1) / LAG_EVERY + 1, lag_n = 0, lag_lost = 0, applied_ok;
  {
    path_in(ts_dur.primary, "mt-durable-p");
    path_in(ts_dur.backup, "mt-durable-b");
    memcpy(ts_dur_file.primary, ts_dur.primary, sizeof(ts_dur.primary));
    memcpy(ts_dur_file.backup, ts_dur.backup, sizeof(ts_dur.backup));
    path_in(ts_app.primary, "mt-applied-p");
    path_in(ts_app.backup, "mt-applied-b");
    path_in(ts_wr.primary, "mt-written-p");
    path_in(ts_wr.backup, "mt-written-b");
    mt_sys *all[6] = {&ts_dur, &ts_dur_file, &nat_full, &ts_app, &nat_normal, &ts_wr};
    for (int i = 0; i < 6; i++) mt_setup(all[i], &mt_refused);
    applied_ok = ts_app.setup != NULL;
    mt_sys *of[MS_N] = {[MS_D_TEMP] = &ts_dur, [MS_D_FILE] = &ts_dur_file, [MS_NAT_FULL] = &nat_full,
                        [MS_APPLIED] = &ts_app, [MS_WRITTEN] = &ts_wr, [MS_NAT_NORMAL] = &nat_normal};
    for (int i = 0; i < MT_NTHREADS; i++) {
      for (int m = 0; m < MS_N; m++) {
        int quick_kind = m == MS_APPLIED || m == MS_NAT_NORMAL; /* about 20x faster: more commits */
        mc[MT_CASE(m, i)] = (mt_case){.sys = of[m], .threads = mt_threads[i], .ops = quick_kind ? mt_per_a : mt_per};
      }
    }
    /* the lag watcher polls the primary: it would slow the commits it
    ** watches on a small machine, so the lag has a run of its own */
    mc[MT_LAG] = (mt_case){.sys = &ts_app, .threads = 1, .ops = mt_per_a, .lag = 1};

    lag_watch lw;
    lag_alloc(&lw, lag_per_run);
    double *lag_ms = malloc(sizeof(double) * (size_t)lag_per_run * (size_t)mt_rounds);
    if (!lag_ms) die("out of memory");

    /* The variants take turns, mt_rounds rounds (new keys every run); the
    ** median round is reported. */
    sync();
    progress("8-10 commits from 1, 4 and 16 connections at once: %d per connection (applied and native NORMAL: %d), in %d round(s)",
             mt_per * mt_rounds, mt_per_a * mt_rounds, mt_rounds);
    for (int r = 0; r < mt_rounds; r++) {
      for (int c = 0; c < MT_NCASES; c++) {
        mt_case *m = &mc[c];
        uint64_t base = (uint64_t)(r * MT_NCASES + c + 1) << 40;
        m->rate[r] = NAN;
        if (!m->sys->setup) continue;
        if (m->lag) lag_start(&lw, m->sys->primary, base);
        m->rate[r] = mt_run(m->sys, m->threads, m->ops, base, m->lag ? lw.done : NULL, &m->flushes);
        m->commits += (uint64_t)m->threads * (uint64_t)m->ops;
        if (m->lag) lag_finish(&lw, lag_ms, &lag_n, &lag_lost);
      }
      mt_lmdb[r] = 1e6 / commits_lmdb(la, la_dbi, &w, 1, mt_per, "mt", (uint64_t)r * (uint64_t)(mt_per + WARMUP_COMMITS));
    }
    for (int c = 0; c < MT_NCASES; c++) {
      mt_med[c] = mc[c].sys->setup ? median(mc[c].rate, mt_rounds) : NAN;
      mt_cpf[c] = mc[c].flushes ? (double)mc[c].commits / (double)mc[c].flushes : NAN;
    }
    mt_l1 = median(mt_lmdb, mt_rounds);
    lag_med = lag_n ? median(lag_ms, lag_n) : NAN; /* median() sorts */
    lag_max = lag_n ? lag_ms[lag_n - 1] : NAN;

    for (int i = 0; i < MT_NTHREADS; i++) {
      const int t = mt_threads[i];
      const char *pl = t > 1 ? "s" : "";
      double lm = i ? NAN : mt_l1;
      mt_tag(add_result("commits/s", K_RATE, mt_med[MT_CASE(MS_D_TEMP, i)], mt_med[MT_CASE(MS_NAT_FULL, i)], lm,
                        "8 durable 1-row commits, %d conn%s [temp schema]", t, pl), "durable", "temp", t);
      mt_tag(add_result("commits/s", K_RATE, mt_med[MT_CASE(MS_D_FILE, i)], mt_med[MT_CASE(MS_NAT_FULL, i)], lm,
                        "8 durable 1-row commits, %d conn%s [one db file]", t, pl), "durable", "main", t);
      mt_tag(add_result("commits/s", K_RATE, mt_med[MT_CASE(MS_APPLIED, i)], mt_med[MT_CASE(MS_NAT_NORMAL, i)], NAN,
                        "9 applied 1-row commits, %d conn%s [temp schema]", t, pl), "applied", "temp", t);
      mt_tag(add_result("commits/s", K_RATE, mt_med[MT_CASE(MS_WRITTEN, i)], mt_med[MT_CASE(MS_NAT_NORMAL, i)], NAN,
                        "10 written 1-row commits, %d conn%s [temp schema]", t, pl), "written", "temp", t);
    }
    for (int i = 0; i < MT_NTHREADS; i++) {
      const int t = mt_threads[i];
      const char *pl = t > 1 ? "s" : "";
      add_result("c/flush", K_COUNT, mt_cpf[MT_CASE(MS_D_TEMP, i)], NAN, NAN, "8 commits per flush, durable, %d conn%s [temp]", t, pl);
      add_result("c/flush", K_COUNT, mt_cpf[MT_CASE(MS_D_FILE, i)], NAN, NAN, "8 commits per flush, durable, %d conn%s [one file]", t,
                 pl);
      add_result("c/flush", K_COUNT, mt_cpf[MT_CASE(MS_APPLIED, i)], NAN, NAN, "9 commits per flush, applied, %d conn%s", t, pl);
      add_result("c/flush", K_COUNT, mt_cpf[MT_CASE(MS_WRITTEN, i)], NAN, NAN, "10 commits per flush, written, %d conn%s", t, pl);
    }
    add_result("ms", K_TIME, lag_med, NAN, NAN, "9 applied: COMMIT to row in primary, median");
    add_result("ms", K_TIME, lag_max, NAN, NAN, "9 applied: COMMIT to row in primary, max");

    for (int i = 0; i < 6; i++) {
      if (all[i]->setup && sqlite3_close(all[i]->setup) != SQLITE_OK) die("close: %s", sqlite3_errmsg(all[i]->setup));
    }
    lag_free(&lw);
    free(lag_ms);
  }

  /* Close. */
  pthread_mutex_lock(&w.mu);
  w.state = 3;
  pthread_cond_broadcast(&w.cv);
  pthread_mutex_unlock(&w.mu);
  pthread_join(w.th, NULL);
  pthread_mutex_destroy(&w.mu);
  pthread_cond_destroy(&w.cv);
  mdb_env_close(la);
  mdb_env_close(w.env);
  if (sqlite3_close(tsc) != SQLITE_OK) die("close ts.db: %s", sqlite3_errmsg(tsc));
  if (sqlite3_close(ts) != SQLITE_OK) die("close ts.db: %s", sqlite3_errmsg(ts));
  if (sqlite3_close(nat) != SQLITE_OK) die("close native.db: %s", sqlite3_errmsg(nat));

  double run_wall = now_s() - run_t0;
  double foreign = (machine_busy_s() - busy0 - (own_cpu_s() - own0)) / run_wall;

  /* Targets (issue 5). */
  int last = npage_sizes - 1;
  double lmdb_best = r_seq > r_par ? r_seq : r_par;
  add_target(r_ts / r_nat, 1, 2.0, NULL, "bulk load >= 2.0x native SQLite+backup");
  add_target(r_ts / lmdb_best, 1, 0.5, r_seq > r_par ? "faster LMDB: A then B" : "faster LMDB: 2 threads",
             "bulk load >= 0.5x raw LMDB into 2 environments");
  add_target(read_ratio, 1, 1.2, NULL, "point reads >= 1.2x native SQLite");
  add_target(scan_k_ratio, 1, 1.2, NULL, "namespace scan, keys only >= 1.2x native SQLite");
  add_target(scan_kv_ratio, 1, 1.2, NULL, "namespace scan, keys+values >= 1.2x native SQLite");
  add_target(page_ts[last] / page_ts[0], 0, 2.0, page_sizes[last] < 1000000 ? "1,000,000 keys needs --rows 1000000" : NULL,
             "page at %llu keys <= 2x page at %llu keys", (unsigned long long)page_sizes[last],
             (unsigned long long)page_sizes[0]);
  add_target(c_l_d_par / c_ts_d, 1, 0.9, NULL, "durable 1-row commits >= 0.9x raw LMDB 2 envs, 2 threads");
  add_target(c_nat_w / c_ts_w, 1, 1.5, NULL, "written 1-row commits >= 1.5x native+backup synchronous=NORMAL");
  add_target(c_ts_d / e_over, 1, 20.0, NULL, "ephemeral 1-row commits (overwrite) >= 20x durable commits");
  add_target(c_ts_d / e_new, 1, 20.0, NULL, "ephemeral 1-row commits (new key) >= 20x durable commits");
  add_target(e_syscw < 0 ? NAN : (double)e_syscw, 0, 0.0, "write syscalls during the ephemeral commits", "ephemeral writes touch no disk");
  add_target(b_ts.hwm * 1024.0 / raw_bytes, 0, 3.0, NULL, "bulk-load peak RSS <= 3x raw bytes of keys+values");
  add_target(mt_med[MT_CASE(MS_D_TEMP, 0)] / mt_l1, 1, 0.9, NULL, "durable 1-row commits, 1 thread >= 0.9x raw LMDB 2 envs, 2 threads");
  for (int i = 1; i < MT_NTHREADS; i++) {
    add_target(mt_med[MT_CASE(MS_D_TEMP, i)] / mt_med[MT_CASE(MS_NAT_FULL, i)], 1, 2.0, NULL,
               "durable 1-row commits, %d threads (temp schema) >= 2.0x native FULL", mt_threads[i]);
  }
  add_target(mt_med[MT_CASE(MS_APPLIED, 0)] / mt_med[MT_CASE(MS_NAT_NORMAL, 0)], 1, 2.0, applied_ok ? NULL : "'applied' not available in this build",
             "applied 1-row commits >= 2.0x native+backup synchronous=NORMAL");

  /* The report: stdout, FILE and FILE.jsonl. */
  char *text = NULL;
  size_t text_len = 0;
  FILE *t = open_memstream(&text, &text_len);
  if (!t) die("open_memstream");
  time_t now = time(NULL);
  char when[64];
  strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
  fprintf(t, "tierstore benchmark, %s%s\n", when, O.quick ? "  (--quick: tiny sizes, figures not meaningful)" : "");
  if (O.label) fprintf(t, "build:   %s\n", O.label);
  fprintf(t, "run:     %.0f s; other processes kept %.2f of %ld CPUs busy on average%s\n", run_wall, foreign,
          sysconf(_SC_NPROCESSORS_ONLN), foreign > 0.2 ? "  WARNING: the machine was not idle, figures are disturbed" : "");
  fprintf(t, "%s\n", machine);
  fprintf(t, "data:    %llu rows, %d-byte BLOB values, %d primary namespaces (%.1f MiB of keys+values); "
             "keys inserted in random order\n",
          (unsigned long long)O.rows, O.value_size, NNS, raw_bytes / 1048576.0);
  fprintf(t, "systems: tierstore = primary+backup, durability='durable' (and a 'written' table on the same "
             "environments), SQL with prepared statements, map_size=%s%s%s\n",
          ts_map_size, O.ts_journal ? ", ts.db journal_mode=" : "", O.ts_journal ? O.ts_journal : "");
  fprintf(t, "         native    = WITHOUT ROWID table, WAL, synchronous=FULL, ATTACHed backup db written in the "
             "same transaction; cache_size %s\n",
          O.native_cache_kib ? "set by --native-cache-kib" : "SQLite's default (2000 KiB)");
  fprintf(t, "         raw LMDB  = same keys (pns\\0sns\\0key) and values, 2 environments, committed A then B, "
             "or both at once from 2 threads\n\n");
  fprintf(t, "%-52s %-9s %12s %12s %12s %9s %9s\n", "workload", "unit", "tierstore", "native", "raw LMDB", "ts/native",
          "ts/LMDB");
  for (int i = 0; i < nR; i++) {
    char a[32], b[32], c[32], d[32], e[32];
    const result *r = &R[i];
    fmt_val(a, sizeof(a), r->ts, r->kind);
    fmt_val(b, sizeof(b), r->nat, r->kind);
    fmt_val(c, sizeof(c), r->lm, r->kind);
    fmt_ratio(d, sizeof(d), r->kind == K_RATIO ? NAN : ratio(r, r->nat));
    fmt_ratio(e, sizeof(e), r->kind == K_RATIO ? NAN : ratio(r, r->lm));
    fprintf(t, "%-52s %-9s %12s %12s %12s %9s %9s\n", r->label, r->unit, a, b, c, d, e);
  }
  fprintf(t, "\nratios: rows/s and us rows are speed ratios (>1: tierstore faster); MiB and B/row rows are "
             "tierstore / other (<1: tierstore smaller).\n");
  fprintf(t, "notes:\n");
  fprintf(t, "- bulk load: one transaction per system, timed from BEGIN to the end of COMMIT, each system in its\n"
             "  own forked process into fresh files; %d round(s) taking turns, median time reported (peak RSS =\n"
             "  the largest VmHWM; RSS growth = VmRSS before COMMIT minus after BEGIN, from that round). Native\n"
             "  includes the WAL checkpoint its COMMIT runs. RSS at process start: tierstore %.1f, native %.1f,\n"
             "  LMDB %.1f MiB.\n",
          O.bulk_reps, b_ts.rss_start / MiB, b_nat.rss_start / MiB, b_par.rss_start / MiB);
  if (O.bulk_reps > 1) {
    static const char *const names[4] = {"tierstore", "native", "LMDB A then B", "LMDB 2 threads"};
    fprintf(t, "  bulk rows/s per round:");
    for (int sys = 0; sys < 4; sys++) {
      fprintf(t, "%s %s", sys ? ";" : "", names[sys]);
      for (int rep = 0; rep < O.bulk_reps; rep++) fprintf(t, " %.0f", (double)O.rows / bulk_secs[sys][rep]);
    }
    fprintf(t, "\n");
  }
  fprintf(t, "- reads are warm (data in the page cache); LMDB point reads renew one read transaction per get; scans\n"
             "  are the median of %d listings; every read value is compared or copied out.\n",
          O.scan_reps);
  fprintf(t, "- pagination: namespaces of");
  for (int s = 0; s < npage_sizes; s++) fprintf(t, " %llu", (unsigned long long)page_sizes[s]);
  fprintf(t, " keys (the sizes used; the largest is bounded by --rows).\n"
             "  %d pages of 50 at random cursors per namespace and system, in %d rounds that take turns across\n"
             "  sizes and systems (median round reported). Native uses a creation-order column seq with an index\n"
             "  (pns, sns, seq); raw LMDB has no creation index and is omitted. Short pages: %llu (expected 0).\n",
          ((O.pages + PAGE_ROUNDS - 1) / PAGE_ROUNDS) * PAGE_ROUNDS, PAGE_ROUNDS, (unsigned long long)short_pages);
  fprintf(t, "- small commits: %d 1-row transactions per variant (new keys), one connection, in %d rounds taking\n"
             "  turns across variants (median round reported); tierstore autocommit INSERT, native BEGIN +\n"
             "  INSERT main + INSERT bk + COMMIT. durable: native synchronous=FULL, LMDB default sync (data\n"
             "  and meta page synced per environment). written: tierstore durability='written', native\n"
             "  synchronous=NORMAL, LMDB shown both with MDB_NOMETASYNC (data synced, meta not: the rule\n"
             "  tierstore 'written' uses) and with MDB_NOSYNC (no sync at all).\n",
          ((O.commits + COMMIT_ROUNDS - 1) / COMMIT_ROUNDS) * COMMIT_ROUNDS, COMMIT_ROUNDS);
  fprintf(t, "- durable commits vs native+backup (no target): tierstore %.2fx native. Native in WAL mode at FULL\n"
             "  syncs once per database per commit (fdatasync of each WAL: 2 for main+backup); LMDB syncs twice per\n"
             "  environment (fdatasync of the data file, then the meta page through an O_DSYNC descriptor: 4 for\n"
             "  primary+backup), and tierstore's commits also write its creation and rowid indexes.\n",
          c_nat_d / c_ts_d);
  fprintf(t, "- ephemeral: namespace 'bench_eph' is under the table's ephemeral rule (table durability='durable');\n"
             "  %d 1-row transactions overwriting %d keys in turn (the intended use: a few cached values), then %d\n"
             "  creating new keys (the tier's commit merges its whole key array, so this cost grows with the keys\n"
             "  it holds). Native reference: a TEMP table. During tierstore's ephemeral commits: %lld write\n"
             "  syscalls; /proc/self/io write_bytes grew by %lld (LMDB read transactions dirty the lock file's\n"
             "  reader table through its mmap; no data is written).\n",
          O.eph_ops, EPH_KEYS, O.commits, e_syscw, e_wbytes);
  fprintf(t, "- small commits and ephemeral commits run on a fresh tierstore connection. The row 'overwrite again,\n"
             "  conn after a N-row txn' repeats the ephemeral overwrites on the connection that loaded the\n"
             "  pagination namespaces (its largest transaction: N rows): %.2fx the fresh connection's cost.\n",
          e_over_loader / e_over);
  fprintf(t, "- the LMDB '2 threads' commit variants hand the second environment's commit to a helper thread\n"
             "  (condition variable wake-up each way); without fsync (NOSYNC) that hand-off dominates.\n");
  fprintf(t, "- commits from several connections (8-10): T threads, each with its own connection, commit %d 1-row\n"
             "  INSERT OR REPLACE transactions each (new keys, the thread's own) at once, after %d warm-up commits\n"
             "  each, in %d round(s) taking turns across variants (median round reported); commits/s = all threads'\n"
             "  commits / the time from the start to the last thread's end. temp schema: each connection is\n"
             "  ':memory:' and declares the table in its temp schema on the same primary+backup directories\n"
             "  (absolute paths), so no SQLite file lock is shared; one db file: every connection opens one\n"
             "  database file that declares the table in its main schema (BEGIN IMMEDIATE + INSERT + COMMIT), so\n"
             "  SQLite serializes them. native: T connections to one WAL database with the backup ATTACHed, BEGIN\n"
             "  IMMEDIATE + INSERT main + INSERT bk + COMMIT; synchronous=FULL in 8, NORMAL in 9 and 10.\n"
             "  Connections of one file wait for its write lock with a 60 s busy timeout (SQLite's busy handler\n"
             "  sleeps 1 to 100 ms per retry). raw LMDB (8, 1 thread): as in 5, 2 environments from 2 threads.\n"
             "  commits per flush = commits / LMDB write transactions of the primary during the timed commits\n"
             "  (me_last_txnid, read in a forked child; 'sync' before and after).\n",
          mt_per * mt_rounds, WARMUP_COMMITS, mt_rounds);
  fprintf(t, "- applied (9): durability='applied' (default flush_interval), %d commits per connection, as native\n"
             "  at NORMAL (9 and 10 share those native runs); written (10): %d per connection. Flush lag: a\n"
             "  run of its own (1 connection, not in the commits/s rows): every %dth commit, from COMMIT returning\n"
             "  until a forked process that polls the primary (a new LMDB read transaction every 0.1 ms) finds\n"
             "  the row; %d samples",
          mt_per_a * mt_rounds, mt_per * mt_rounds, LAG_EVERY, lag_n);
  if (lag_lost) fprintf(t, ", %d more not found within %.0f s", lag_lost, LAG_GIVE_UP_NS * 1e-9);
  fprintf(t, ".\n");
  if (!applied_ok) fprintf(t, "  This build refuses durability='applied' (%s): its figures are '-'.\n", mt_refused);
  fprintf(t, "\n");
  fprintf(t, "%-72s %10s %10s  %s\n", "target (issue 5)", "measured", "need", "result");
  for (int i = 0; i < nT; i++) {
    char m[32], n[32];
    const target *g = &T[i];
    int count = !strcmp(g->what, "ephemeral writes touch no disk");
    if (count) {
      snprintf(m, sizeof(m), "%.0f", g->measured);
      snprintf(n, sizeof(n), "0");
    } else {
      fmt_ratio(m, sizeof(m), g->measured);
      snprintf(n, sizeof(n), "%s%.1fx", g->at_least ? ">=" : "<=", g->need);
    }
    fprintf(t, "%-72s %10s %10s  %s%s%s%s\n", g->what, m, n, target_result(g), g->note[0] ? " (" : "", g->note,
            g->note[0] ? ")" : "");
  }
  fclose(t);
  fputs(text, stdout);
  fflush(stdout);

  FILE *f = fopen(O.out, "w");
  if (!f) die("cannot write %s: %s", O.out, strerror(errno));
  fputs(text, f);
  if (fclose(f)) die("write %s: %s", O.out, strerror(errno));
  char jpath[PATH_MAX];
  size_t ol = strlen(O.out);
  if (ol > 4 && !strcmp(O.out + ol - 4, ".txt")) snprintf(jpath, sizeof(jpath), "%.*s.jsonl", (int)(ol - 4), O.out);
  else snprintf(jpath, sizeof(jpath), "%s.jsonl", O.out);
  f = fopen(jpath, "w");
  if (!f) die("cannot write %s: %s", jpath, strerror(errno));
  fprintf(f, "{\"type\":\"run\"");
  json_str(f, "time", when);
  json_str(f, "machine", machine);
  if (O.label) json_str(f, "label", O.label);
  json_num(f, "run_seconds", run_wall);
  json_num(f, "other_cpus_busy", foreign);
  json_num(f, "rows", (double)O.rows);
  json_num(f, "value_size", O.value_size);
  json_num(f, "namespaces", NNS);
  json_num(f, "raw_bytes", raw_bytes);
  json_num(f, "commits", O.commits);
  json_num(f, "ephemeral_ops", O.eph_ops);
  json_num(f, "pages", O.pages);
  json_num(f, "bulk_reps", O.bulk_reps);
  json_num(f, "quick", O.quick);
  json_num(f, "ephemeral_write_syscalls", (double)e_syscw);
  json_num(f, "ephemeral_write_bytes", (double)e_wbytes);
  json_num(f, "applied_commits", O.applied_commits);
  json_num(f, "applied_available", applied_ok);
  json_num(f, "flush_lag_samples", lag_n);
  json_num(f, "flush_lag_lost", lag_lost);
  fprintf(f, "}\n");
  for (int i = 0; i < nR; i++) {
    const result *r = &R[i];
    fprintf(f, "{\"type\":\"result\"");
    json_str(f, "workload", r->label);
    json_str(f, "unit", r->unit);
    json_num(f, "tierstore", r->ts);
    json_num(f, "native", r->nat);
    json_num(f, "lmdb", r->lm);
    json_num(f, "ts_vs_native", r->kind == K_RATIO ? NAN : ratio(r, r->nat));
    json_num(f, "ts_vs_lmdb", r->kind == K_RATIO ? NAN : ratio(r, r->lm));
    if (r->level) json_str(f, "level", r->level);
    if (r->schema) json_str(f, "schema", r->schema);
    if (r->connections) json_num(f, "connections", r->connections);
    if (r->keys) json_num(f, "keys", (double)r->keys);
    fprintf(f, "}\n");
  }
  for (int i = 0; i < nT; i++) {
    const target *g = &T[i];
    fprintf(f, "{\"type\":\"target\"");
    json_str(f, "target", g->what);
    json_num(f, "measured", g->measured);
    json_str(f, "need", g->at_least ? ">=" : "<=");
    json_num(f, "bound", g->need);
    json_str(f, "result", target_result(g));
    json_str(f, "note", g->note);
    fprintf(f, "}\n");
  }
  if (fclose(f)) die("write %s: %s", jpath, strerror(errno));
  progress("wrote %s and %s", O.out, jpath);

  free(text);
  free(vbuf);
  sqlite3_free(mt_refused);
  if (!O.keep) nftw(run_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  else progress("kept %s", run_dir);
  (void)sink_sum;
  return 0;
}
