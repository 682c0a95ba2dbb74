/*
** tier_lmdb.c: one LMDB environment as a tierstore tier.
**
** Owns the process registry of open environments (LMDB forbids opening one
** path twice in a process, so tables share a reference-counted handle keyed
** by the directory's device and inode), the on-disk layout (named databases
** and record encoding, see tierstore_int.h and the README), map growth, and
** the flush of a frozen delta as one write transaction per commit.
**
** Map growth and remaps: LMDB may move the map when it grows.  Every access
** to mapped memory holds env->map_lock shared; growth takes it exclusively
** and bumps map_gen.  Cursors keep a copy of their key and re-seek when the
** generation changed, so a long scan survives another thread's commit that
** grew the map.  Writers of this process are serialized by write_mutex
** (LMDB's own lock serializes them across processes).
*/
#include "tierstore_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

struct ts_env {
  ts_env *next;                 /* registry list */
  dev_t dev;
  ino_t ino;
  int refs;
  char *path;
  MDB_env *mdb;
  MDB_dbi dbi_meta, dbi_data, dbi_namespaces, dbi_created, dbi_rowids, dbi_replay;
  unsigned char store_id[TS_STORE_ID_BYTES];
  pthread_rwlock_t map_lock;
  pthread_rwlock_t view_lock;   /* a commit to both tiers vs. a view of both */
  pthread_mutex_t write_mutex;
  uint64_t map_gen;             /* read and written under map_lock */
  struct ts_made *made;         /* what opening it created, or NULL */
  ts_counters *counters;        /* store-wide next rowid and last epoch */
  int counters_shared;
  unsigned roles;               /* TS_ROLE_* its tables gave it (registry mutex) */
  int copying;                  /* a fill into it is running (atomics) ... */
  uint64_t copy_done, copy_total; /* ... and its keys copied of keys total */
};

static pthread_mutex_t ts_registry_mutex = PTHREAD_MUTEX_INITIALIZER;
static ts_env *ts_registry = NULL;

#define TS_PATH_MAX 4096       /* longest environment path handled */
#define TS_RECORD_HEADER 17     /* rowid(8) epoch(8) type(1) */
#define TS_GROW_ATTEMPTS 40
#define TS_SETTLE_ATTEMPTS 2000 /* restarts of a read snapshot that caught a commit in flight */
#define TS_SETTLE_WAIT_NS 100000 /* pause before each (0.2 s in all before giving up) */

/* The dbi handle of a named database. */
static MDB_dbi ts_env_dbi(const ts_env *env, ts_db_id db) {
  switch (db) {
    case TS_DB_CREATED: return env->dbi_created;
    case TS_DB_ROWIDS: return env->dbi_rowids;
    case TS_DB_NAMESPACES: return env->dbi_namespaces;
    case TS_DB_META: return env->dbi_meta;
    case TS_DB_REPLAY: return env->dbi_replay;
    default: return env->dbi_data;
  }
}

/* Fill err with an LMDB failure on this environment and return its code.
** LMDB reports a write cut short by a full disk as EIO: when the
** filesystem has no room left, say so (TS_FULL). */
static int ts_env_fail(const ts_env *env, int rc, const char *what,
                       ts_err *err) {
  struct statvfs fs;
  int code = ts_err_from_lmdb(rc);
  if (rc == EIO && statvfs(env->path, &fs) == 0 &&
      (uint64_t)fs.f_bavail * fs.f_frsize < ((uint64_t)1 << 20)) {
    return ts_err_set(err, TS_FULL, "LMDB environment '%s': %s failed: the disk is full (%s)",
                      env->path, what, mdb_strerror(rc));
  }
  return ts_err_set(err, code, "LMDB environment '%s': %s failed: %s", env->path, what,
                    mdb_strerror(rc));
}

/* Read a big-endian u64 metadata value; *found=0 when absent. */
static int ts_meta_get_u64(MDB_txn *txn, const ts_env *env, const char *name,
                           uint64_t *out, int *found) {
  MDB_val k = {strlen(name), (void *)name}, v;
  int rc = mdb_get(txn, env->dbi_meta, &k, &v);
  *found = 0;
  if (rc == MDB_NOTFOUND) return 0;
  if (rc) return rc;
  if (v.mv_size != 8) return MDB_CORRUPTED;
  *out = ts_be64_get(v.mv_data);
  *found = 1;
  return 0;
}

/* Store a big-endian u64 metadata value. */
static int ts_meta_put_u64(MDB_txn *txn, const ts_env *env, const char *name,
                           uint64_t val) {
  unsigned char buf[8];
  MDB_val k = {strlen(name), (void *)name}, v = {8, buf};
  ts_be64_put(buf, val);
  return mdb_put(txn, env->dbi_meta, &k, &v, 0);
}

/* Open the named databases and create the metadata of a new store, or
** check the format version and read the identity of an existing one. */
static int ts_env_init_layout_once(ts_env *env, const unsigned char *identity, ts_err *err) {
  MDB_txn *txn = NULL;
  uint64_t version = 0;
  int found = 0;
  int rc = mdb_txn_begin(env->mdb, NULL, 0, &txn);
  if (rc == MDB_MAP_RESIZED) return rc;
  if (rc) return ts_env_fail(env, rc, "opening the environment", err);
  if (!rc) rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &env->dbi_meta);
  if (!rc) rc = mdb_dbi_open(txn, "data", MDB_CREATE, &env->dbi_data);
  if (!rc) rc = mdb_dbi_open(txn, "namespaces", MDB_CREATE, &env->dbi_namespaces);
  if (!rc) rc = mdb_dbi_open(txn, "created", MDB_CREATE, &env->dbi_created);
  if (!rc) rc = mdb_dbi_open(txn, "rowids", MDB_CREATE, &env->dbi_rowids);
  if (!rc) rc = mdb_dbi_open(txn, "replay", MDB_CREATE, &env->dbi_replay);
  if (!rc) rc = ts_meta_get_u64(txn, env, "format_version", &version, &found);
  if (rc) {
    mdb_txn_abort(txn);
    return ts_env_fail(env, rc, "opening the databases", err);
  }
  if (!found) {
    MDB_val k = {8, "store_id"}, v = {TS_STORE_ID_BYTES, env->store_id};
    if (identity) {
      memcpy(env->store_id, identity, TS_STORE_ID_BYTES);
    } else if (getrandom(env->store_id, TS_STORE_ID_BYTES, 0) != TS_STORE_ID_BYTES) {
      mdb_txn_abort(txn);
      return ts_err_set(err, TS_IOERR, "no random bytes for the store identity of '%s'",
                        env->path);
    }
    rc = ts_meta_put_u64(txn, env, "format_version", TS_FORMAT_VERSION);
    if (!rc) rc = mdb_put(txn, env->dbi_meta, &k, &v, 0);
    if (!rc) rc = ts_meta_put_u64(txn, env, "last_epoch", 0);
    if (!rc) rc = ts_meta_put_u64(txn, env, "next_rowid", 1);
    if (!rc) rc = ts_meta_put_u64(txn, env, "next_nsid", 1);
  } else if (version != TS_FORMAT_VERSION) {
    mdb_txn_abort(txn);
    return ts_err_set(err, TS_CORRUPT,
                      "LMDB environment '%s' has format version %llu; this build reads %d",
                      env->path, (unsigned long long)version, TS_FORMAT_VERSION);
  } else {
    MDB_val k = {8, "store_id"}, v;
    rc = mdb_get(txn, env->dbi_meta, &k, &v);
    if (!rc && v.mv_size != TS_STORE_ID_BYTES) rc = MDB_CORRUPTED;
    if (!rc) memcpy(env->store_id, v.mv_data, TS_STORE_ID_BYTES);
  }
  if (rc) {
    mdb_txn_abort(txn);
    return ts_env_fail(env, rc, "initializing the metadata", err);
  }
  rc = mdb_txn_commit(txn);
  if (rc) return ts_env_fail(env, rc, "initializing the metadata", err);
  return TS_OK;
}

/* Open the layout; when another process grew the map meanwhile, adopt
** its size and try again (nothing else of this environment runs yet). */
static int ts_env_init_layout(ts_env *env, const unsigned char *identity, ts_err *err) {
  for (int attempt = 0; attempt < TS_GROW_ATTEMPTS; attempt++) {
    int rc = ts_env_init_layout_once(env, identity, err);
    if (rc != MDB_MAP_RESIZED) return rc;
    rc = mdb_env_set_mapsize(env->mdb, 0);
    if (rc) return ts_env_fail(env, rc, "adopting the grown map size", err);
  }
  return ts_err_set(err, TS_IOERR, "LMDB environment '%s' kept resizing", env->path);
}

/* Free an environment handle that is not (or no longer) in the registry. */
static void ts_env_destroy(ts_env *env) {
  free(env->made);
  ts_counters_close(env->counters, env->counters_shared);
  if (env->mdb) mdb_env_close(env->mdb);
  pthread_rwlock_destroy(&env->map_lock);
  pthread_rwlock_destroy(&env->view_lock);
  pthread_mutex_destroy(&env->write_mutex);
  free(env->path);
  free(env);
}

/* Offsets in an LMDB 0.9 meta page (page header 16 bytes, then MDB_meta:
** magic u32, version u32, address, mapsize, two MDB_db of 48 bytes whose
** first (the free list's) md_pad holds the page size, last_pg, txnid). */
#define TS_META_MAGIC_OFF   16
#define TS_META_PSIZE_OFF   40
#define TS_META_LASTPG_OFF  136
#define TS_META_TXNID_OFF   144
#define TS_META_LEN         152
#define TS_MDB_MAGIC        0xBEEFC0DEu

/* Check an existing data.mdb's meta pages before LMDB maps it: LMDB 0.9
** trusts them and would divide by a zero page size or touch pages past the
** end of a truncated file (SIGFPE, SIGBUS) instead of failing. */
static int ts_env_precheck(const char *path, ts_err *err) {
  char file[TS_PATH_MAX + 16];
  unsigned char m[2][TS_META_LEN];
  uint64_t need = 0, best_txn = 0;
  struct stat st;
  int fd, good = 0;
  snprintf(file, sizeof(file), "%s/data.mdb", path);
  fd = open(file, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return TS_OK;                 /* a new environment */
  if (fstat(fd, &st) != 0 || st.st_size == 0) {
    close(fd);
    return TS_OK;
  }
  for (int i = 0; i < 2; i++) {
    uint32_t magic, psize;
    uint64_t lastpg, txnid;
    off_t at = 0;
    if (i == 1) {
      memcpy(&psize, m[0] + TS_META_PSIZE_OFF, 4);
      at = psize;
    }
    if (pread(fd, m[i], TS_META_LEN, at) != TS_META_LEN) break;
    memcpy(&magic, m[i] + TS_META_MAGIC_OFF, 4);
    memcpy(&psize, m[i] + TS_META_PSIZE_OFF, 4);
    memcpy(&lastpg, m[i] + TS_META_LASTPG_OFF, 8);
    memcpy(&txnid, m[i] + TS_META_TXNID_OFF, 8);
    if (magic != TS_MDB_MAGIC || psize < 512 || psize > 65536 || (psize & (psize - 1))) break;
    good++;
    if (txnid >= best_txn) {
      best_txn = txnid;
      need = (lastpg + 1) * (uint64_t)psize;
    }
  }
  /* the size after the meta pages: a writer of another process writes a
  ** commit's pages before its meta page, so a meta page read here never
  ** names pages past this size unless the file is damaged */
  if (fstat(fd, &st) != 0) st.st_size = 0;
  close(fd);
  if (good == 0) {
    return ts_err_set(err, TS_CORRUPT, "cannot open LMDB environment '%s': %s", path,
                      mdb_strerror(MDB_INVALID));
  }
  if ((uint64_t)st.st_size < need) {
    return ts_err_set(err, TS_CORRUPT,
                      "LMDB environment '%s' is damaged: data.mdb is %llu bytes, its last page ends at %llu",
                      path, (unsigned long long)st.st_size, (unsigned long long)need);
  }
  return TS_OK;
}

/* Create and open a new environment handle for path (files it creates
** get mode). */
static int ts_env_create(const char *path, const struct stat *st,
                         size_t map_size, unsigned mode,
                         const unsigned char *identity, ts_env **out,
                         ts_err *err) {
  int dead = 0;
  int rc;
  ts_env *env = calloc(1, sizeof(*env));
  if (!env || !(env->path = strdup(path))) {
    free(env);
    return ts_err_set(err, TS_NOMEM, "out of memory opening '%s'", path);
  }
  env->dev = st->st_dev;
  env->ino = st->st_ino;
  pthread_rwlock_init(&env->map_lock, NULL);
  pthread_rwlock_init(&env->view_lock, NULL);
  pthread_mutex_init(&env->write_mutex, NULL);
  if (map_size < TS_MIN_MAP_SIZE) map_size = TS_MIN_MAP_SIZE;
  rc = ts_env_precheck(path, err);
  if (rc) {
    ts_env_destroy(env);
    return rc;
  }
  rc = mdb_env_create(&env->mdb);
  if (!rc) rc = mdb_env_set_maxdbs(env->mdb, 8);
  if (!rc) rc = mdb_env_set_maxreaders(env->mdb, TS_MAX_READERS);
  if (!rc) rc = mdb_env_set_mapsize(env->mdb, map_size);
  if (!rc) rc = mdb_env_open(env->mdb, path, MDB_NOTLS, (mdb_mode_t)mode);
  if (rc) {
    int code = ts_err_from_lmdb(rc);
    if (code == TS_IOERR && (rc == ENOENT || rc == ENOTDIR)) code = TS_CANTOPEN;
    ts_err_set(err, code, "cannot open LMDB environment '%s': %s", path,
               mdb_strerror(rc));
    ts_env_destroy(env);
    return code;
  }
  mdb_reader_check(env->mdb, &dead);   /* clear slots of dead processes */
  rc = ts_env_init_layout(env, identity, err);
  if (!rc) {
    env->counters = ts_counters_open(path, mode, &env->counters_shared);
    if (!env->counters) rc = ts_err_set(err, TS_NOMEM, "out of memory opening '%s'", path);
  }
  if (rc) {
    ts_env_destroy(env);
    return rc;
  }
  *out = env;
  return TS_OK;
}

/* What opening an environment created on disk, so that a failed open
** can take exactly that away again (a rejected table leaves nothing). */
typedef struct ts_made ts_made;
struct ts_made {
  char path[TS_PATH_MAX];
  size_t first;              /* path[0..first) is the shallowest directory
                             ** created; every deeper level was created too */
  int ndirs;                 /* levels created */
  int had_lock, had_data;    /* lock.mdb / data.mdb not created by it */
  int had_counters;          /* the counters file existed before */
};

/* Does path/name exist? */
static int ts_file_exists(const char *path, const char *name) {
  char buf[TS_PATH_MAX + 16];
  snprintf(buf, sizeof(buf), "%s/%s", path, name);
  return access(buf, F_OK) == 0;
}

/* Create path/name empty with exactly mode unless it exists (LMDB then
** opens it: its own create would apply the umask); *had: not created here.
** Any failure to create is left for mdb_env_open to report. */
static int ts_file_make(const char *path, const char *name, unsigned mode,
                        int *had, ts_err *err) {
  char buf[TS_PATH_MAX + 16];
  int fd, e;
  snprintf(buf, sizeof(buf), "%s/%s", path, name);
  fd = open(buf, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)mode);
  *had = fd < 0;
  if (fd < 0 || fchmod(fd, (mode_t)mode) == 0) {
    if (fd >= 0) close(fd);
    return TS_OK;
  }
  e = errno;
  close(fd);
  return ts_err_set(err, TS_CANTOPEN, "cannot set the mode of '%s': %s", buf, strerror(e));
}

/* The mode of a directory created for files of mode: u+rwx, and x for
** each of group and other that may read or write them. */
static mode_t ts_dir_mode(unsigned mode) {
  mode_t d = (mode_t)mode | S_IRWXU;
  if (mode & (S_IRGRP | S_IWGRP)) d |= S_IXGRP;
  if (mode & (S_IROTH | S_IWOTH)) d |= S_IXOTH;
  return d;
}

/* Remove what ts_dir_make and a failed mdb_env_open created. */
static void ts_dir_unmake(ts_made *m) {
  char buf[TS_PATH_MAX + 16];
  if (!m->had_lock) {
    snprintf(buf, sizeof(buf), "%s/lock.mdb", m->path);
    unlink(buf);
  }
  if (!m->had_data) {
    snprintf(buf, sizeof(buf), "%s/data.mdb", m->path);
    unlink(buf);
  }
  if (!m->had_counters) {
    snprintf(buf, sizeof(buf), "%s/%s", m->path, TS_COUNTERS_FILE);
    unlink(buf);
  }
  /* mkdir -p creates a contiguous run of levels: remove from the leaf up
  ** to the shallowest one it created */
  if (m->ndirs > 0) {
    snprintf(buf, sizeof(buf), "%s", m->path);
    for (;;) {
      char *slash;
      rmdir(buf);                          /* fails harmlessly on "." or "" */
      slash = strrchr(buf, '/');
      if (!slash || (size_t)(slash - buf) < m->first) break;
      *slash = 0;
    }
  }
}

/* mkdir -p, remembering each directory it creates, then the LMDB files
** when missing; what it creates gets mode (its directories ts_dir_mode of
** it) whatever the umask.  On failure removes what it created again. */
static int ts_dir_make(const char *path, unsigned mode, ts_made *m, ts_err *err) {
  char buf[TS_PATH_MAX];
  size_t n = strlen(path);
  mode_t dmode = ts_dir_mode(mode);
  int rc;
  memset(m, 0, sizeof(*m));
  m->had_lock = m->had_data = m->had_counters = 1;
  if (n >= sizeof(buf)) return ts_err_set(err, TS_CANTOPEN, "path '%s' is too long", path);
  memcpy(m->path, path, n + 1);
  memcpy(buf, path, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (buf[i] != '/' && buf[i] != 0) continue;
    buf[i] = 0;
    if (mkdir(buf, dmode) == 0) {
      if (m->ndirs++ == 0) m->first = i;
      if (chmod(buf, dmode) != 0) {     /* mkdir applied the umask */
        int e = errno;
        ts_dir_unmake(m);
        return ts_err_set(err, TS_CANTOPEN, "cannot set the mode of directory '%s': %s", buf,
                          strerror(e));
      }
    } else if (errno != EEXIST) {
      int e = errno;
      int code = (e == EACCES || e == EROFS || e == EPERM) ? TS_READONLY : e == ENOSPC ? TS_FULL : TS_CANTOPEN;
      ts_dir_unmake(m);
      return ts_err_set(err, code, "cannot create directory '%s': %s", buf, strerror(e));
    }
    buf[i] = path[i];
  }
  m->had_counters = ts_file_exists(path, TS_COUNTERS_FILE);
  rc = ts_file_make(path, "lock.mdb", mode, &m->had_lock, err);
  if (!rc) rc = ts_file_make(path, "data.mdb", mode, &m->had_data, err);
  if (rc) ts_dir_unmake(m);
  return rc;
}

/* Open path's environment (creating its directory) or share the one this
** process has open already.  A new environment takes identity as its store
** identity (a backup takes its primary's), or a random one.  What it
** creates gets mode (a shared one keeps the modes it has). */
int ts_env_open_id(const char *path, size_t map_size, unsigned mode,
                   const unsigned char *identity, ts_env **out, ts_err *err) {
  struct stat st;
  ts_env *env;
  ts_made made;
  int rc = ts_dir_make(path, mode, &made, err);
  if (rc) return rc;
  if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
    ts_dir_unmake(&made);
    return ts_err_set(err, TS_CANTOPEN, "LMDB environment directory '%s' is not a directory",
                      path);
  }
  pthread_mutex_lock(&ts_registry_mutex);
  for (env = ts_registry; env; env = env->next) {
    if (env->dev == st.st_dev && env->ino == st.st_ino) break;
  }
  if (env) {
    env->refs++;
  } else {
    rc = ts_env_create(path, &st, map_size, mode, identity, &env, err);
    if (rc == TS_OK) {
      env->refs = 1;
      env->next = ts_registry;
      ts_registry = env;
    }
  }
  if (rc == TS_OK && env->refs == 1 && !env->made &&
      (made.ndirs || !made.had_lock || !made.had_data || !made.had_counters)) {
    env->made = malloc(sizeof(made));   /* for ts_env_discard */
    if (env->made) *env->made = made;
  }
  pthread_mutex_unlock(&ts_registry_mutex);
  if (rc != TS_OK) {
    ts_dir_unmake(&made);
    return rc;
  }
  *out = env;
  return TS_OK;
}

/* Close a handle whose table was refused: when this handle created the
** environment and nobody else uses it, remove what it created. */
void ts_env_discard(ts_env *env) {
  ts_made made;
  int remove = 0;
  if (!env) return;
  pthread_mutex_lock(&ts_registry_mutex);
  if (env->refs == 1 && env->made) {
    made = *env->made;
    remove = 1;
  }
  pthread_mutex_unlock(&ts_registry_mutex);
  ts_env_close(env);
  if (remove) ts_dir_unmake(&made);
}

/* Open with a random identity for a new environment and owner-only files. */
int ts_env_open(const char *path, size_t map_size, ts_env **out, ts_err *err) {
  return ts_env_open_id(path, map_size, TS_DEFAULT_FILE_MODE, NULL, out, err);
}

/* Drop one reference; the last closes the LMDB environment. */
void ts_env_close(ts_env *env) {
  ts_env **pp;
  if (!env) return;
  pthread_mutex_lock(&ts_registry_mutex);
  if (--env->refs > 0) {
    pthread_mutex_unlock(&ts_registry_mutex);
    return;
  }
  for (pp = &ts_registry; *pp && *pp != env; pp = &(*pp)->next) {
  }
  if (*pp) *pp = env->next;
  pthread_mutex_unlock(&ts_registry_mutex);
  ts_env_destroy(env);
}

const char *ts_env_path(const ts_env *env) { return env->path; }
const unsigned char *ts_env_store_id(const ts_env *env) { return env->store_id; }
ts_mem *ts_env_mem(const ts_env *env) {
  return ts_mem_for_env((uint64_t)env->dev, (uint64_t)env->ino, env->store_id);
}
ts_mem *ts_env_mem_peek(const ts_env *env) {
  return ts_mem_find((uint64_t)env->dev, (uint64_t)env->ino, env->store_id);
}

/* Record what a table uses the environment as (the status table's role). */
void ts_env_add_role(ts_env *env, unsigned role) {
  pthread_mutex_lock(&ts_registry_mutex);
  env->roles |= role;
  pthread_mutex_unlock(&ts_registry_mutex);
}

/* A reference to every environment this process has open (close each, then
** free the array); *n of them.  TS_NOMEM when out of memory. */
int ts_env_list(ts_env ***out, size_t *n, unsigned **roles) {
  size_t count = 0, i = 0;
  pthread_mutex_lock(&ts_registry_mutex);
  for (ts_env *env = ts_registry; env; env = env->next) count++;
  *out = malloc((count ? count : 1) * sizeof(**out));
  *roles = malloc((count ? count : 1) * sizeof(**roles));
  if (!*out || !*roles) {
    pthread_mutex_unlock(&ts_registry_mutex);
    free(*out);
    free(*roles);
    return TS_NOMEM;
  }
  for (ts_env *env = ts_registry; env; env = env->next) {
    env->refs++;
    (*roles)[i] = env->roles;
    (*out)[i++] = env;
  }
  pthread_mutex_unlock(&ts_registry_mutex);
  *n = count;
  return TS_OK;
}

/* Is a fill of this environment from its primary running, and how far
** (keys copied of keys total)? */
int ts_env_copy_progress(ts_env *env, uint64_t *done, uint64_t *total) {
  *total = __atomic_load_n(&env->copy_total, __ATOMIC_RELAXED);
  *done = __atomic_load_n(&env->copy_done, __ATOMIC_RELAXED);
  return __atomic_load_n(&env->copying, __ATOMIC_RELAXED);
}

/* The figures of the environment's newest state: keys, pages in use, map
** size, last epoch. */
int ts_env_figures(ts_env *env, ts_env_figures_t *out, ts_err *err) {
  ts_snap s = {0};
  MDB_stat ms;
  MDB_envinfo info;
  int rc = ts_snap_begin(&s, env, err);
  if (rc) return rc;
  ts_env_read_lock(env);
  rc = ts_snap_last_epoch(&s, &out->last_epoch, err);
  if (!rc && mdb_stat(s.txn, env->dbi_data, &ms)) {
    rc = ts_err_set(err, TS_IOERR, "cannot read the figures of '%s'", env->path);
  }
  if (!rc && mdb_env_info(env->mdb, &info)) {
    rc = ts_err_set(err, TS_IOERR, "cannot read the figures of '%s'", env->path);
  }
  ts_env_read_unlock(env);
  ts_snap_free(&s);
  if (rc) return rc;
  out->keys = ms.ms_entries;
  out->bytes = ((uint64_t)info.me_last_pgno + 1) * ms.ms_psize;
  out->map_size = info.me_mapsize;
  return TS_OK;
}

/* A commit that writes both this environment and its ephemeral tier holds
** the view lock exclusively from before its LMDB commit until its ephemeral
** rows are published; a reader takes its two snapshots under it shared, so
** it never sees one half of such a commit. */
void ts_env_view_lock(ts_env *env, int exclusive) {
  if (exclusive) pthread_rwlock_wrlock(&env->view_lock);
  else pthread_rwlock_rdlock(&env->view_lock);
}
void ts_env_view_unlock(ts_env *env) { pthread_rwlock_unlock(&env->view_lock); }

/* Shared hold on mapped memory. */
void ts_env_read_lock(ts_env *env) { pthread_rwlock_rdlock(&env->map_lock); }
void ts_env_read_unlock(ts_env *env) { pthread_rwlock_unlock(&env->map_lock); }

/* The current map generation; the caller holds the read lock. */
uint64_t ts_env_map_generation(ts_env *env) { return env->map_gen; }

/* Remap to at least want bytes (0: adopt the size another process set).
** Called without the read lock; takes it exclusively. */
static int ts_env_remap(ts_env *env, size_t want) {
  MDB_envinfo info;
  int rc = 0;
  pthread_rwlock_wrlock(&env->map_lock);
  mdb_env_info(env->mdb, &info);
  if (want == 0 || info.me_mapsize < want) {
    rc = mdb_env_set_mapsize(env->mdb, want);
    env->map_gen++;
  }
  pthread_rwlock_unlock(&env->map_lock);
  return rc;
}

/* Bytes of data.mdb in use (last page + 1 pages): a damaged node whose
** item reaches past it would make LMDB touch pages beyond the file. */
static uint64_t ts_env_used_bytes(ts_env *env) {
  MDB_envinfo info;
  MDB_stat st;
  if (mdb_env_info(env->mdb, &info) || mdb_env_stat(env->mdb, &st)) return UINT64_MAX;
  return ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
}

/* Could an item (key or value) lie inside the snapshot's pages?  LMDB
** does not expose its map's address, so this catches the damage that
** matters most, a size larger than the whole file, not every overrun. */
static int ts_snap_holds(const ts_snap *s, const MDB_val *v) {
  return v->mv_size <= s->bytes;
}

/* Does the snapshot hold the commit its LMDB transaction id names?  LMDB
** 0.9 reads the published id T, then copies meta page T & 1 unchecked: a
** reader paused in between copies commit T+2 that a writer has written
** there but not yet published (with 'durable', during the page's fsync),
** and the next snapshot goes back to the published T+1.  A newest meta
** page at most T+1 means page T & 1 still held T.  Read lock held. */
static int ts_snap_settled(const ts_snap *s) {
  MDB_envinfo info;
  mdb_env_info(s->env->mdb, &info);
  return info.me_last_txnid <= mdb_txn_id(s->txn) + 1;
}

/* Begin or renew the snapshot's LMDB transaction; *settled says whether it
** holds the state its id names (see ts_snap_settled). */
static int ts_snap_start(ts_snap *s, ts_env *env, int *settled) {
  int rc;
  ts_env_read_lock(env);
  if (s->txn) {
    rc = mdb_txn_renew(s->txn);
  } else {
    rc = mdb_txn_begin(env->mdb, NULL, MDB_RDONLY, &s->txn);
    if (rc) s->txn = NULL;
  }
  if (rc == 0) {
    s->live = 1;
    *settled = ts_snap_settled(s);
  }
  ts_env_read_unlock(env);
  return rc;
}

/* Pause before restarting a snapshot that met a commit in flight: its
** writer publishes it as soon as its meta page is written. */
static void ts_snap_settle_wait(void) {
  struct timespec ts = {0, TS_SETTLE_WAIT_NS};
  nanosleep(&ts, NULL);
}

/* Start or restart a read snapshot on the newest committed state; restart
** it while it holds a commit its writer has not published yet. */
int ts_snap_begin(ts_snap *s, ts_env *env, ts_err *err) {
  int resized = 0, unsettled = 0;
  for (;;) {
    int settled = 0, rc;
    if (s->live) ts_snap_end(s);
    s->env = env;
    rc = ts_snap_start(s, env, &settled);
    if (rc == 0 && settled) {
      s->bytes = ts_env_used_bytes(env);
      return TS_OK;
    }
    if (rc == 0) {
      if (++unsettled == TS_SETTLE_ATTEMPTS) {
        ts_snap_end(s);
        return ts_err_set(err, TS_IOERR,
                          "LMDB environment '%s': read snapshots kept catching a commit in flight "
                          "(is a program writing it without LMDB's lock?)",
                          env->path);
      }
      ts_snap_settle_wait();
      continue;
    }
    if (rc != MDB_MAP_RESIZED) {
      if (s->txn) {
        mdb_txn_abort(s->txn);
        s->txn = NULL;
      }
      return ts_env_fail(env, rc, "starting a read transaction", err);
    }
    if (++resized == TS_GROW_ATTEMPTS) break;
    rc = ts_env_remap(env, 0);
    if (rc) return ts_env_fail(env, rc, "adopting the grown map size", err);
  }
  return ts_err_set(err, TS_IOERR, "LMDB environment '%s' kept resizing", env->path);
}

/* End the snapshot (reset: the handle is kept for renew).  Called without
** the read lock, which it takes: LMDB reads the environment's flags. */
void ts_snap_end(ts_snap *s) {
  if (s->txn && s->live) {
    ts_env_read_lock(s->env);
    mdb_txn_reset(s->txn);
    ts_env_read_unlock(s->env);
  }
  s->live = 0;
}

/* Release the snapshot's transaction handle (without the read lock). */
void ts_snap_free(ts_snap *s) {
  if (s->txn) {
    ts_env_read_lock(s->env);
    mdb_txn_abort(s->txn);
    ts_env_read_unlock(s->env);
  }
  s->txn = NULL;
  s->live = 0;
}

/* Decode a stored record (rowid, epoch, type, payload). */
int ts_record_decode(const void *p, size_t n, ts_record *rec) {
  const unsigned char *b = p;
  if (n < TS_RECORD_HEADER) return TS_CORRUPT;
  rec->rowid = ts_be64_get(b);
  rec->epoch = ts_be64_get(b + 8);
  memset(&rec->value, 0, sizeof(rec->value));
  rec->value.type = b[16];
  b += TS_RECORD_HEADER;
  n -= TS_RECORD_HEADER;
  switch (rec->value.type) {
    case TS_INTEGER:
      if (n != 8) return TS_CORRUPT;
      rec->value.i = (int64_t)ts_be64_get(b);
      return TS_OK;
    case TS_FLOAT: {
      uint64_t bits;
      if (n != 8) return TS_CORRUPT;
      bits = ts_be64_get(b);
      memcpy(&rec->value.f, &bits, 8);
      return TS_OK;
    }
    case TS_TEXT:
    case TS_BLOB:
      rec->value.p = b;
      rec->value.n = n;
      return TS_OK;
    default:
      return TS_CORRUPT;
  }
}

/* Encoded size of a record holding value v. */
static size_t ts_record_size(const ts_value *v) {
  return TS_RECORD_HEADER +
         ((v->type == TS_TEXT || v->type == TS_BLOB) ? v->n : 8);
}

/* Write a record into out (ts_record_size bytes). */
static void ts_record_encode(unsigned char *out, uint64_t rowid, uint64_t epoch,
                             const ts_value *v) {
  ts_be64_put(out, rowid);
  ts_be64_put(out + 8, epoch);
  out[16] = (unsigned char)v->type;
  out += TS_RECORD_HEADER;
  if (v->type == TS_INTEGER) {
    ts_be64_put(out, (uint64_t)v->i);
  } else if (v->type == TS_FLOAT) {
    uint64_t bits;
    memcpy(&bits, &v->f, 8);
    ts_be64_put(out, bits);
  } else if (v->n) {
    memcpy(out, v->p, v->n);
  }
}

/* Point read of an encoded key in the snapshot. */
int ts_snap_get(ts_snap *s, const unsigned char *key, size_t nkey,
                ts_record *rec, ts_err *err) {
  MDB_val k = {nkey, (void *)key}, v;
  int rc = mdb_get(s->txn, s->env->dbi_data, &k, &v);
  if (rc == MDB_NOTFOUND) return TS_NOTFOUND;
  if (rc) return ts_env_fail(s->env, rc, "reading a key", err);
  if (!ts_snap_holds(s, &v) || ts_record_decode(v.mv_data, v.mv_size, rec)) {
    return ts_err_set(err, TS_CORRUPT, "damaged record in LMDB environment '%s'",
                      s->env->path);
  }
  return TS_OK;
}

/* Encoded key of a committed rowid. */
int ts_snap_key_by_rowid(ts_snap *s, uint64_t rowid, unsigned char *buf,
                         size_t *n, ts_err *err) {
  unsigned char rb[8];
  MDB_val k = {8, rb}, v;
  int rc;
  ts_be64_put(rb, rowid);
  rc = mdb_get(s->txn, s->env->dbi_rowids, &k, &v);
  if (rc == MDB_NOTFOUND) return TS_NOTFOUND;
  if (rc) return ts_env_fail(s->env, rc, "reading a rowid", err);
  if (v.mv_size > TS_ENC_KEY_MAX) {
    return ts_err_set(err, TS_CORRUPT, "damaged rowid index in LMDB environment '%s'",
                      s->env->path);
  }
  memcpy(buf, v.mv_data, v.mv_size);
  *n = v.mv_size;
  return TS_OK;
}

/* Namespace id of a namespace part. */
int ts_snap_ns_id(ts_snap *s, const unsigned char *ns, size_t nns,
                  uint64_t *id, ts_err *err) {
  MDB_val k = {nns, (void *)ns}, v;
  int rc = mdb_get(s->txn, s->env->dbi_namespaces, &k, &v);
  if (rc == MDB_NOTFOUND) return TS_NOTFOUND;
  if (rc) return ts_env_fail(s->env, rc, "reading a namespace id", err);
  if (v.mv_size != 8) {
    return ts_err_set(err, TS_CORRUPT, "damaged namespace index in LMDB environment '%s'",
                      s->env->path);
  }
  *id = ts_be64_get(v.mv_data);
  return TS_OK;
}

/* Last committed epoch of the snapshot. */
int ts_snap_last_epoch(ts_snap *s, uint64_t *epoch, ts_err *err) {
  int found = 0;
  int rc = ts_meta_get_u64(s->txn, s->env, "last_epoch", epoch, &found);
  if (rc) return ts_env_fail(s->env, rc, "reading the last epoch", err);
  if (!found) *epoch = 0;
  return TS_OK;
}

/* A metadata number of the snapshot (0 when absent). */
int ts_snap_meta(ts_snap *s, const char *name, uint64_t *v, ts_err *err) {
  int found = 0;
  int rc = ts_meta_get_u64(s->txn, s->env, name, v, &found);
  if (rc) return ts_env_fail(s->env, rc, "reading the metadata", err);
  if (!found) *v = 0;
  return TS_OK;
}

/* Next creation number of the snapshot. */
int ts_snap_next_rowid(ts_snap *s, uint64_t *next, ts_err *err) {
  int found = 0;
  int rc = ts_meta_get_u64(s->txn, s->env, "next_rowid", next, &found);
  if (rc) return ts_env_fail(s->env, rc, "reading the next rowid", err);
  if (!found) *next = 1;
  return TS_OK;
}

/* The replay record of an epoch (pointers into the map). */
int ts_snap_replay(ts_snap *s, uint64_t epoch, const unsigned char **p,
                   size_t *n, ts_err *err) {
  unsigned char eb[8];
  MDB_val k = {8, eb}, v;
  int rc;
  ts_be64_put(eb, epoch);
  rc = mdb_get(s->txn, s->env->dbi_replay, &k, &v);
  if (rc == MDB_NOTFOUND) return TS_NOTFOUND;
  if (rc) return ts_env_fail(s->env, rc, "reading a replay record", err);
  *p = v.mv_data;
  *n = v.mv_size;
  return TS_OK;
}

/* Attach an LMDB cursor over db to the snapshot. */
int ts_lcur_open(ts_lcur *c, ts_snap *s, ts_db_id db, ts_err *err) {
  int rc;
  memset(c, 0, sizeof(*c));
  c->snap = s;
  c->db = db;
  rc = mdb_cursor_open(s->txn, ts_env_dbi(s->env, db), &c->cur);
  if (rc) {
    c->cur = NULL;
    return ts_env_fail(s->env, rc, "opening a cursor", err);
  }
  return TS_OK;
}

/* Attach the open cursor to its snapshot's transaction again (renewed
** since, or still live), unpositioned: cheaper than closing and opening. */
int ts_lcur_renew(ts_lcur *c, ts_err *err) {
  int rc = mdb_cursor_renew(c->snap->txn, c->cur);
  c->valid = 0;
  if (rc) return ts_env_fail(c->snap->env, rc, "renewing a cursor", err);
  return TS_OK;
}

/* Close the LMDB cursor. */
void ts_lcur_close(ts_lcur *c) {
  if (c->cur) mdb_cursor_close(c->cur);
  c->cur = NULL;
  c->valid = 0;
}

/* After a move: keep a copy of the key and the generation, or mark the
** cursor exhausted on MDB_NOTFOUND. */
static int ts_lcur_settle(ts_lcur *c, int rc, ts_err *err) {
  if (rc == MDB_NOTFOUND) {
    c->valid = 0;
    return TS_OK;
  }
  if (rc) {
    c->valid = 0;
    return ts_env_fail(c->snap->env, rc, "moving a cursor", err);
  }
  if (c->k.mv_size > TS_LMDB_KEY_MAX || !ts_snap_holds(c->snap, &c->v)) {
    c->valid = 0;
    return ts_err_set(err, TS_CORRUPT, "oversized key in LMDB environment '%s'",
                      c->snap->env->path);
  }
  memcpy(c->kbuf, c->k.mv_data, c->k.mv_size);
  c->kbuf[c->k.mv_size] = 0;
  c->nkbuf = c->k.mv_size;
  c->gen = c->snap->env->map_gen;
  c->valid = 1;
  return TS_OK;
}

/* Position on the first key >= k (asc) or the last key <= k (desc). */
int ts_lcur_seek(ts_lcur *c, const unsigned char *k, size_t nk, int desc,
                 ts_err *err) {
  int rc;
  if (!k) {
    rc = mdb_cursor_get(c->cur, &c->k, &c->v, desc ? MDB_LAST : MDB_FIRST);
    return ts_lcur_settle(c, rc, err);
  }
  c->k.mv_size = nk;
  c->k.mv_data = (void *)k;
  rc = mdb_cursor_get(c->cur, &c->k, &c->v, MDB_SET_RANGE);
  if (desc) {
    if (rc == MDB_NOTFOUND) {
      rc = mdb_cursor_get(c->cur, &c->k, &c->v, MDB_LAST);
    } else if (rc == 0) {
      MDB_val want = {nk, (void *)k};
      MDB_txn *txn = c->snap->txn;
      if (mdb_cmp(txn, ts_env_dbi(c->snap->env, c->db), &c->k, &want) > 0) {
        rc = mdb_cursor_get(c->cur, &c->k, &c->v, MDB_PREV);
      }
    }
  }
  return ts_lcur_settle(c, rc, err);
}

/* Has the map moved since the cursor was positioned on its item? */
static int ts_lcur_moved(const ts_lcur *c) {
  return c->valid && c->gen != c->snap->env->map_gen;
}

/* Re-seek the current key after a remap. */
int ts_lcur_revalidate(ts_lcur *c, ts_err *err) {
  int rc;
  if (!ts_lcur_moved(c)) return TS_OK;
  rc = mdb_cursor_renew(c->snap->txn, c->cur);
  if (rc) return ts_env_fail(c->snap->env, rc, "renewing a cursor", err);
  c->k.mv_size = c->nkbuf;
  c->k.mv_data = c->kbuf;
  rc = mdb_cursor_get(c->cur, &c->k, &c->v, MDB_SET_KEY);
  return ts_lcur_settle(c, rc, err);
}

/* Step one item forward (asc) or backward (desc). */
int ts_lcur_step(ts_lcur *c, int desc, ts_err *err) {
  int rc;
  if (!c->valid) return TS_OK;
  if (ts_lcur_moved(c) && (rc = ts_lcur_revalidate(c, err)) != TS_OK) return rc;
  rc = mdb_cursor_get(c->cur, &c->k, &c->v, desc ? MDB_PREV : MDB_NEXT);
  return ts_lcur_settle(c, rc, err);
}

/* An index entry that a write transaction adds at its end (see
** ts_wtxn_index_flush); its key bytes are in ts_wtxn.add_keys. */
typedef struct ts_index_add ts_index_add;
struct ts_index_add {
  uint64_t nsid, rowid;
  size_t off;                /* the encoded key in add_keys */
  uint16_t nkey, nns;        /* its length and its namespace part's */
};

/* An open write transaction, as ts_env_write hands it to its callback,
** with the namespace id of the last namespace touched (changes come in key
** order, so consecutive ones mostly share it), an upper bound of the data
** keys (a change above it is new and is appended, with no lookup), and the
** index entries to add, sorted and appended at the end. */
struct ts_wtxn {
  ts_env *env;
  MDB_txn *txn;
  unsigned char ns[TS_LMDB_KEY_MAX];
  size_t nns;
  uint64_t nsid;             /* 0: ns not looked up yet */
  int tail_known;            /* tail holds an upper bound of the data keys */
  unsigned char tail[TS_LMDB_KEY_MAX];
  size_t ntail;              /* 0 with tail_known: the data db is empty */
  ts_index_add *adds;
  size_t nadds, cap_adds;
  unsigned char *add_keys;
  size_t nadd_keys, cap_add_keys;
};

/* Commit lock of an environment (writers of this process). */
void ts_env_commit_lock(ts_env *env) { pthread_mutex_lock(&env->write_mutex); }
void ts_env_commit_unlock(ts_env *env) { pthread_mutex_unlock(&env->write_mutex); }

int ts_wtxn_meta_get(ts_wtxn *w, const char *name, uint64_t *v) {
  int found;
  int rc = ts_meta_get_u64(w->txn, w->env, name, v, &found);
  if (!rc && !found) *v = 0;
  return rc;
}

int ts_wtxn_meta_put(ts_wtxn *w, const char *name, uint64_t v) {
  return ts_meta_put_u64(w->txn, w->env, name, v);
}

/* The id of key's namespace part, created when create is set.
** *id = 0 when absent and not created. */
static int ts_wtxn_nsid(ts_wtxn *w, const unsigned char *key, size_t nkey,
                        int create, uint64_t *id) {
  size_t nns = ts_key_ns_len(key, nkey);
  MDB_val k = {nns, (void *)key}, v;
  unsigned char idb[8];
  uint64_t next;
  int rc;
  if (w->nsid && nns == w->nns && !memcmp(key, w->ns, nns)) {
    *id = w->nsid;
    return 0;
  }
  *id = 0;
  rc = mdb_get(w->txn, w->env->dbi_namespaces, &k, &v);
  if (rc == 0) {
    if (v.mv_size != 8) return MDB_CORRUPTED;
    *id = ts_be64_get(v.mv_data);
  } else if (rc != MDB_NOTFOUND) {
    return rc;
  } else if (create) {
    rc = ts_wtxn_meta_get(w, "next_nsid", &next);
    if (rc) return rc;
    *id = next ? next : 1;
    ts_be64_put(idb, *id);
    v.mv_size = 8;
    v.mv_data = idb;
    rc = mdb_put(w->txn, w->env->dbi_namespaces, &k, &v, 0);
    if (!rc) rc = ts_wtxn_meta_put(w, "next_nsid", *id + 1);
    if (rc) return rc;
  } else {
    return 0;
  }
  memcpy(w->ns, key, nns);
  w->nns = nns;
  w->nsid = *id;
  return 0;
}

/* Remember a key's creation-index and rowid-index entries for the end of
** the transaction (the key bytes are copied). */
static int ts_wtxn_index_defer(ts_wtxn *w, const unsigned char *key,
                               size_t nkey, size_t nns, uint64_t nsid,
                               uint64_t rowid) {
  ts_index_add *a = ts_grow(w->adds, &w->cap_adds, sizeof(*a), w->nadds + 1);
  unsigned char *keys = a ? ts_grow(w->add_keys, &w->cap_add_keys, 1, w->nadd_keys + nkey) : NULL;
  if (a) w->adds = a;
  if (!keys) return ENOMEM;
  w->add_keys = keys;
  a = &w->adds[w->nadds++];
  a->nsid = nsid;
  a->rowid = rowid;
  a->off = w->nadd_keys;
  a->nkey = (uint16_t)nkey;
  a->nns = (uint16_t)nns;
  memcpy(w->add_keys + w->nadd_keys, key, nkey);
  w->nadd_keys += nkey;
  return 0;
}

/* Deferred index entries by rowid, and by (namespace id, rowid) (qsort
** callbacks over pointers to the entries). */
static int ts_index_by_rowid(const void *i, const void *j) {
  const ts_index_add *x = *(const ts_index_add *const *)i;
  const ts_index_add *y = *(const ts_index_add *const *)j;
  return x->rowid < y->rowid ? -1 : x->rowid > y->rowid;
}
static int ts_index_by_created(const void *i, const void *j) {
  const ts_index_add *x = *(const ts_index_add *const *)i;
  const ts_index_add *y = *(const ts_index_add *const *)j;
  if (x->nsid != y->nsid) return x->nsid < y->nsid ? -1 : 1;
  return ts_index_by_rowid(i, j);
}

/* The n entries of a in the order cmp gives, as indexes into a (plain
** qsort over pointers: portable C, no qsort_r). */
static int ts_index_sort(const ts_index_add *a, size_t n, size_t *order,
                         int (*cmp)(const void *, const void *)) {
  const ts_index_add **p = malloc((n ? n : 1) * sizeof(*p));
  if (!p) return ENOMEM;
  for (size_t i = 0; i < n; i++) p[i] = a + i;
  qsort(p, n, sizeof(*p), cmp);
  for (size_t i = 0; i < n; i++) order[i] = (size_t)(p[i] - a);
  free(p);
  return 0;
}

/* The entries in rowid order, as indexes into a.  A commit's new rowids
** are nearly consecutive, so they are placed by value when their range
** allows (no comparisons); else sorted. */
static int ts_index_order_rowid(const ts_index_add *a, size_t n, size_t *order) {
  uint64_t lo = UINT64_MAX, hi = 0;
  size_t *slot, range, k = 0;
  for (size_t i = 0; i < n; i++) {
    if (a[i].rowid < lo) lo = a[i].rowid;
    if (a[i].rowid > hi) hi = a[i].rowid;
    order[i] = i;
  }
  if (n < 64 || hi - lo >= 4 * (uint64_t)n) return ts_index_sort(a, n, order, ts_index_by_rowid);
  range = (size_t)(hi - lo) + 1;
  slot = malloc(range * sizeof(*slot));
  if (!slot) return ENOMEM;
  memset(slot, 0xff, range * sizeof(*slot));   /* SIZE_MAX: no entry */
  for (size_t i = 0; i < n; i++) slot[a[i].rowid - lo] = i;
  for (size_t r = 0; r < range; r++) {
    if (slot[r] != SIZE_MAX) order[k++] = slot[r];
  }
  free(slot);
  return 0;
}

/* Turn a rowid order into a (namespace id, rowid) order: a commit touches
** few namespaces, so each entry gets its namespace's rank (entries come in
** key order, grouped by namespace) and one stable pass in rowid order
** places it; many namespaces fall back to sorting. */
static int ts_index_order_created(const ts_index_add *a, size_t n, size_t *order) {
  enum { FEW = 16 };
  uint64_t ns[FEW];
  size_t nns = 0, rank[FEW], start[FEW] = {0}, *by_ns;
  unsigned char *nsi = malloc(n ? n : 1);
  if (!nsi) return ENOMEM;
  for (size_t i = 0, j = 0; i < n; i++) {
    if (nns == 0 || ns[j] != a[i].nsid) {
      for (j = 0; j < nns && ns[j] != a[i].nsid; j++) {
      }
      if (j == nns && nns++ == FEW) {
        free(nsi);
        return ts_index_sort(a, n, order, ts_index_by_created);
      }
      ns[j] = a[i].nsid;
    }
    nsi[i] = (unsigned char)j;
    start[j]++;
  }
  if (nns < 2) {
    free(nsi);
    return 0;
  }
  by_ns = malloc(n * sizeof(*by_ns));
  if (!by_ns) {
    free(nsi);
    return ENOMEM;
  }
  /* rank[j]: how many namespaces sort below ns[j]; start: where its
  ** entries begin */
  for (size_t j = 0; j < nns; j++) {
    rank[j] = 0;
    for (size_t k = 0; k < nns; k++) rank[j] += ns[k] < ns[j];
  }
  {
    size_t count[FEW], at = 0;
    for (size_t j = 0; j < nns; j++) count[rank[j]] = start[j];
    for (size_t r = 0; r < nns; r++) {
      size_t c = count[r];
      count[r] = at;
      at += c;
    }
    for (size_t j = 0; j < nns; j++) start[j] = count[rank[j]];
  }
  for (size_t i = 0; i < n; i++) by_ns[start[nsi[order[i]]]++] = order[i];
  memcpy(order, by_ns, n * sizeof(*order));
  free(by_ns);
  free(nsi);
  return 0;
}

/* The last key of the cursor's database into buf (cap bytes); *n = 0 when
** the database is empty, MDB_CORRUPTED for a key longer than cap. */
static int ts_cursor_last_key(MDB_cursor *cur, unsigned char *buf, size_t cap,
                              size_t *n) {
  MDB_val k, v;
  int rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
  *n = 0;
  if (rc == MDB_NOTFOUND) return 0;
  if (rc) return rc;
  if (k.mv_size > cap) return MDB_CORRUPTED;
  memcpy(buf, k.mv_data, k.mv_size);
  *n = k.mv_size;
  return 0;
}

/* Put the entries, in the given order, into an index (created: the
** creation index, else the rowid index), appending those above its last
** key (LMDB then fills pages completely and compares no keys). */
static int ts_wtxn_put_sorted(ts_wtxn *w, MDB_dbi db, const size_t *order,
                              int created) {
  MDB_cursor *cur;
  MDB_val k, v;
  unsigned char last[16], ck[16];
  size_t nlast = 0, nk = created ? 16 : 8;
  int rc = mdb_cursor_open(w->txn, db, &cur);
  if (rc) return rc;
  rc = ts_cursor_last_key(cur, last, sizeof(last), &nlast);
  /* a key of the wrong size (a damaged index) counts as no bound: LMDB
  ** itself refuses an append that is not above its last key */
  if (rc == MDB_CORRUPTED) rc = 0;
  if (nlast != nk) nlast = 0;
  for (size_t i = 0; i < w->nadds && !rc; i++) {
    const ts_index_add *a = &w->adds[order[i]];
    const unsigned char *key = w->add_keys + a->off;
    int append;
    /* the entries lie in key order, taken here in rowid order: fetch
    ** ahead what the coming puts read */
    if (i + 32 < w->nadds) __builtin_prefetch(&w->adds[order[i + 32]]);
    if (i + 16 < w->nadds) __builtin_prefetch(w->add_keys + w->adds[order[i + 16]].off);
    ts_be64_put(ck, created ? a->nsid : a->rowid);
    ts_be64_put(ck + 8, a->rowid);
    k.mv_size = nk;
    k.mv_data = created ? ck : ck + 8;
    v.mv_size = created ? (size_t)(a->nkey - a->nns) : a->nkey;
    v.mv_data = (void *)(created ? key + a->nns : key);
    append = !nlast || memcmp(k.mv_data, last, nk) > 0;
    rc = mdb_cursor_put(cur, &k, &v, append ? MDB_APPEND : 0);
    if (!rc && append) {
      memcpy(last, k.mv_data, nk);
      nlast = nk;
    }
  }
  mdb_cursor_close(cur);
  return rc;
}

/* Add the deferred index entries: each index in its own key order. */
static int ts_wtxn_index_flush(ts_wtxn *w) {
  size_t *order;
  int rc;
  if (!w->nadds) return 0;
  order = malloc(w->nadds * sizeof(*order));
  if (!order) return ENOMEM;
  rc = ts_index_order_rowid(w->adds, w->nadds, order);
  if (!rc) rc = ts_wtxn_put_sorted(w, w->env->dbi_rowids, order, 0);
  if (!rc) rc = ts_index_order_created(w->adds, w->nadds, order);
  if (!rc) rc = ts_wtxn_put_sorted(w, w->env->dbi_created, order, 1);
  free(order);
  w->nadds = 0;
  w->nadd_keys = 0;
  return rc;
}

/* Delete db's entry k if its value is want (wn bytes): an entry another
** key holds now is kept.  0 also when there is none. */
static int ts_wtxn_del_if(ts_wtxn *w, MDB_dbi db, MDB_val *k, const void *want, size_t wn) {
  MDB_val v;
  int rc = mdb_get(w->txn, db, k, &v);
  if (rc) return rc == MDB_NOTFOUND ? 0 : rc;
  if (v.mv_size != wn || memcmp(v.mv_data, want, wn) != 0) return 0;
  return mdb_del(w->txn, db, k, NULL);
}

/* Add (add=1: deferred to the transaction's end) or remove a key's
** creation-index and rowid-index entries.  A removal first adds what was
** deferred, so the two always apply in the order they were asked, and
** removes only entries that name this key: while a reconciliation undoes
** a write that took a creation number, the number may already name the
** key the primary gave it to. */
static int ts_wtxn_index(ts_wtxn *w, const unsigned char *key, size_t nkey,
                         uint64_t rowid, int add) {
  unsigned char ck[16];
  size_t nns = ts_key_ns_len(key, nkey);
  MDB_val k = {16, ck};
  uint64_t nsid;
  int rc = ts_wtxn_nsid(w, key, nkey, add, &nsid);
  if (rc) return rc;
  if (add) return ts_wtxn_index_defer(w, key, nkey, nns, nsid, rowid);
  rc = ts_wtxn_index_flush(w);
  if (rc) return rc;
  ts_be64_put(ck, nsid);
  ts_be64_put(ck + 8, rowid);
  rc = ts_wtxn_del_if(w, w->env->dbi_created, &k, key + nns, nkey - nns);
  if (rc) return rc;
  k.mv_size = 8;
  k.mv_data = ck + 8;
  return ts_wtxn_del_if(w, w->env->dbi_rowids, &k, key, nkey);
}

/* Is key above every data key of the transaction (so absent)?  The bound
** is read once per transaction and rises with each appended key. */
static int ts_wtxn_above_tail(ts_wtxn *w, const unsigned char *key, size_t nkey,
                              int *above) {
  size_t n;
  int c;
  if (!w->tail_known) {
    MDB_cursor *cur;
    int rc = mdb_cursor_open(w->txn, w->env->dbi_data, &cur);
    if (rc) return rc;
    rc = ts_cursor_last_key(cur, w->tail, sizeof(w->tail), &w->ntail);
    mdb_cursor_close(cur);
    if (rc) return rc;
    w->tail_known = 1;
  }
  n = nkey < w->ntail ? nkey : w->ntail;
  c = n ? memcmp(key, w->tail, n) : 0;
  *above = c > 0 || (c == 0 && nkey > w->ntail);
  return 0;
}

/* The stored record of key in the write transaction: 0, MDB_NOTFOUND or
** an error.  *above: key is above every data key, so absent without a
** lookup (a bulk load in key order), and appended when written. */
int ts_wtxn_find(ts_wtxn *w, const unsigned char *key, size_t nkey, int *above,
                 ts_record *rec) {
  MDB_val k = {nkey, (void *)key}, v;
  int rc;
  *above = 0;
  rc = ts_wtxn_above_tail(w, key, nkey, above);
  if (!rc) rc = *above ? MDB_NOTFOUND : mdb_get(w->txn, w->env->dbi_data, &k, &v);
  if (rc) return rc;
  return ts_record_decode(v.mv_data, v.mv_size, rec) ? MDB_CORRUPTED : 0;
}

/* Apply a resolved change over the stored record old (NULL: absent) that
** ts_wtxn_find returned with above, keeping the indexes in step. */
int ts_wtxn_apply(ts_wtxn *w, const ts_change *c, int above,
                  const ts_record *old) {
  MDB_val k = {c->nkey, (void *)c->key}, v;
  int rc = 0;
  if (c->op == TS_OP_DEL) {
    if (!old) return 0;
    rc = ts_wtxn_index(w, c->key, c->nkey, old->rowid, 0);
    return rc ? rc : mdb_del(w->txn, w->env->dbi_data, &k, NULL);
  }
  if (old && old->rowid != c->rowid) rc = ts_wtxn_index(w, c->key, c->nkey, old->rowid, 0);
  if (!rc && (!old || old->rowid != c->rowid)) rc = ts_wtxn_index(w, c->key, c->nkey, c->rowid, 1);
  if (rc) return rc;
  v.mv_size = ts_record_size(&c->value);
  rc = mdb_put(w->txn, w->env->dbi_data, &k, &v, MDB_RESERVE | (above ? MDB_APPEND : 0));
  if (rc) return rc;
  ts_record_encode(v.mv_data, c->rowid, c->epoch, &c->value);
  if (above) {
    memcpy(w->tail, c->key, c->nkey);
    w->ntail = c->nkey;
  }
  return 0;
}

/* Apply a resolved change with its indexes. */
int ts_wtxn_change(ts_wtxn *w, const ts_change *c) {
  ts_record old;
  int above, rc = ts_wtxn_find(w, c->key, c->nkey, &above, &old);
  if (rc && rc != MDB_NOTFOUND) return rc;
  return ts_wtxn_apply(w, c, above, rc ? NULL : &old);
}

/* Store the replay record of an epoch: the keys of its changes. */
int ts_wtxn_replay_put(ts_wtxn *w, uint64_t epoch, const ts_change *ch, size_t n) {
  unsigned char eb[8];
  MDB_val k = {8, eb}, v;
  unsigned char *p;
  size_t total = 0;
  int rc;
  for (size_t i = 0; i < n; i++) total += 2 + ch[i].nkey;
  if (!total) return 0;
  ts_be64_put(eb, epoch);
  v.mv_size = total;
  rc = mdb_put(w->txn, w->env->dbi_replay, &k, &v, MDB_RESERVE);
  if (rc) return rc;
  p = v.mv_data;
  for (size_t i = 0; i < n; i++) {
    p[0] = (unsigned char)(ch[i].nkey >> 8);
    p[1] = (unsigned char)(ch[i].nkey & 0xff);
    memcpy(p + 2, ch[i].key, ch[i].nkey);
    p += 2 + ch[i].nkey;
  }
  return 0;
}

/* Remove the replay records of epochs <= upto (raising replay_floor). */
int ts_wtxn_replay_prune(ts_wtxn *w, uint64_t upto) {
  MDB_cursor *cur;
  MDB_val k, v;
  uint64_t floor;
  int rc = ts_wtxn_meta_get(w, "replay_floor", &floor);
  if (!rc && floor < upto) rc = ts_wtxn_meta_put(w, "replay_floor", upto);
  if (!rc) rc = mdb_cursor_open(w->txn, w->env->dbi_replay, &cur);
  if (rc) return rc;
  while ((rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST)) == 0) {
    if (k.mv_size != 8 || ts_be64_get(k.mv_data) > upto) break;
    rc = mdb_cursor_del(cur, 0);
    if (rc) break;
  }
  mdb_cursor_close(cur);
  return rc == MDB_NOTFOUND || rc == 0 ? 0 : rc;
}

/* Every replay record of this environment, in epoch order, copied out
** (free() *out): a backup's records of the writes it took that its
** primary may lack. */
int ts_wtxn_replay_all(ts_wtxn *w, unsigned char **out, size_t *n,
                       uint64_t *first) {
  MDB_cursor *cur;
  MDB_val k, v;
  size_t cap = 0;
  int rc = mdb_cursor_open(w->txn, w->env->dbi_replay, &cur);
  *out = NULL;
  *n = 0;
  *first = 0;
  if (rc) return rc;
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    unsigned char *grown;
    if (k.mv_size != 8) continue;
    if (!*first) *first = ts_be64_get(k.mv_data);
    grown = ts_grow(*out, &cap, 1, *n + v.mv_size);
    if (!grown) {
      rc = ENOMEM;
      break;
    }
    *out = grown;
    memcpy(*out + *n, v.mv_data, v.mv_size);
    *n += v.mv_size;
  }
  mdb_cursor_close(cur);
  return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Remove every replay record (replay_floor unchanged). */
int ts_wtxn_replay_clear(ts_wtxn *w) { return mdb_drop(w->txn, w->env->dbi_replay, 0); }

/* Replace one database's contents with the snapshot's (sorted, so
** MDB_APPEND). */
static int ts_wtxn_copy_db(ts_wtxn *w, ts_snap *src, ts_db_id db) {
  MDB_dbi to = ts_env_dbi(w->env, db);
  MDB_cursor *cur;
  MDB_val k, v;
  int rc = mdb_drop(w->txn, to, 0);
  if (!rc) rc = mdb_cursor_open(src->txn, ts_env_dbi(src->env, db), &cur);
  if (rc) return rc;
  for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
    rc = mdb_put(w->txn, to, &k, &v, MDB_APPEND);
    if (rc) break;
    if (db == TS_DB_DATA) __atomic_add_fetch(&w->env->copy_done, 1, __ATOMIC_RELAXED);
  }
  mdb_cursor_close(cur);
  return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Make this environment an exact copy of the snapshot's store (the meta
** keeps this environment's own identity check to the caller). */
int ts_wtxn_copy_from(ts_wtxn *w, ts_snap *src) {
  static const ts_db_id dbs[] = {TS_DB_DATA, TS_DB_NAMESPACES, TS_DB_CREATED, TS_DB_ROWIDS};
  static const char *const nums[] = {"last_epoch", "next_rowid", "next_nsid", "last_flush"};
  int rc = 0;
  MDB_stat ms;
  /* the copy replaces what this transaction wrote so far */
  w->nadds = w->nadd_keys = 0;
  w->tail_known = 0;
  w->nsid = 0;
  /* its progress, for the status table of another connection */
  __atomic_store_n(&w->env->copy_done, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&w->env->copy_total,
                   mdb_stat(src->txn, src->env->dbi_data, &ms) ? 0 : (uint64_t)ms.ms_entries,
                   __ATOMIC_RELAXED);
  __atomic_store_n(&w->env->copying, 1, __ATOMIC_RELAXED);
  for (size_t i = 0; i < sizeof(dbs) / sizeof(dbs[0]) && !rc; i++) rc = ts_wtxn_copy_db(w, src, dbs[i]);
  __atomic_store_n(&w->env->copying, 0, __ATOMIC_RELAXED);
  rc = rc ? rc : mdb_drop(w->txn, w->env->dbi_replay, 0);
  for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]) && !rc; i++) {
    uint64_t v = 0;
    int found;
    rc = ts_meta_get_u64(src->txn, src->env, nums[i], &v, &found);
    if (!rc) rc = ts_wtxn_meta_put(w, nums[i], v);
  }
  return rc;
}

/* The map size to grow to after MDB_MAP_FULL. */
static size_t ts_grow_target(ts_env *env, size_t hint) {
  MDB_envinfo info;
  size_t cur, want;
  mdb_env_info(env->mdb, &info);
  cur = info.me_mapsize;
  want = cur + 4 * hint + ((size_t)1 << 20);
  if (want < 2 * cur) want = 2 * cur;
  return (want + ((size_t)1 << 20) - 1) & ~(((size_t)1 << 20) - 1);
}

/* Set or clear MDB_NOMETASYNC.  LMDB 0.9 reads the sync flags from the
** environment, not the transaction, and every transaction reads that
** field: the change happens with the map lock held exclusively, so no
** thread of this process is inside LMDB on this environment meanwhile
** (the commit lock keeps other writers out for the whole commit). */
static void ts_env_sync_flags(ts_env *env, int nometasync) {
  pthread_rwlock_wrlock(&env->map_lock);
  mdb_env_set_flags(env->mdb, MDB_NOMETASYNC, nometasync);
  pthread_rwlock_unlock(&env->map_lock);
}

/* Run fn in a write transaction; grow and run again on map full.  The
** 'written' level sets MDB_NOMETASYNC on the environment around the commit
** (LMDB 0.9 reads the sync flags from the environment, not the
** transaction; the commit lock keeps other writers of this process out). */
int ts_env_write(ts_env *env, ts_durability dur, size_t grow_hint,
                 ts_write_fn fn, const ts_write_hooks *hooks, void *ctx,
                 ts_err *err) {
  struct stat st;
  mdb_filehandle_t fd;
  int rc = 0;
  /* LMDB would go on writing into a data.mdb that was unlinked */
  if (mdb_env_get_fd(env->mdb, &fd) == 0 && fstat(fd, &st) == 0 && st.st_nlink == 0) {
    return ts_err_set(err, TS_CANTOPEN, "LMDB environment '%s' was removed from disk", env->path);
  }
  for (int attempt = 0; attempt < TS_GROW_ATTEMPTS; attempt++) {
    ts_wtxn w;
    memset(&w, 0, sizeof(w));
    w.env = env;
    if (dur != TS_DURABLE) ts_env_sync_flags(env, 1);
    ts_env_read_lock(env);
    rc = mdb_txn_begin(env->mdb, NULL, 0, &w.txn);
    if (!rc) {
      rc = fn(ctx, &w);
      if (!rc) rc = ts_wtxn_index_flush(&w);
      if (!rc && hooks && hooks->before_commit) rc = hooks->before_commit(hooks->ctx);
      if (!rc) {
        rc = mdb_txn_commit(w.txn);
      } else {
        mdb_txn_abort(w.txn);
      }
      if (hooks && hooks->after_commit) hooks->after_commit(hooks->ctx, rc);
    }
    ts_env_read_unlock(env);
    free(w.adds);
    free(w.add_keys);
    if (dur != TS_DURABLE) ts_env_sync_flags(env, 0);
    if (rc == MDB_MAP_RESIZED) {
      rc = ts_env_remap(env, 0);
      if (rc) break;
      continue;
    }
    if (rc != MDB_MAP_FULL) break;
    rc = ts_env_remap(env, ts_grow_target(env, grow_hint));
    if (rc) {
      rc = MDB_MAP_FULL;
      break;
    }
  }
  if (rc == MDB_MAP_FULL) {
    return ts_err_set(err, TS_FULL, "LMDB environment '%s' is full and cannot grow its map",
                      env->path);
  }
  if (rc == ENOMEM) return ts_err_set(err, TS_NOMEM, "out of memory writing '%s'", env->path);
  if (rc) return ts_env_fail(env, rc, "commit", err);
  return TS_OK;
}

/* LMDB's figures of the environment (map size, last page, last
** transaction). */
int ts_env_info(ts_env *env, MDB_envinfo *out) {
  return mdb_env_info(env->mdb, out) ? TS_IOERR : TS_OK;
}

/* The write transaction's environment. */
ts_env *ts_wtxn_env(ts_wtxn *w) { return w->env; }

/* The store-wide numbers of the shared counters (see counters.c). */
uint64_t ts_env_take_rowids(ts_env *env, uint64_t floor, uint64_t n) {
  return ts_counters_take_rowids(env->counters, floor, n);
}
uint64_t ts_env_epoch_floor(ts_env *env, uint64_t floor) {
  return ts_counters_epoch(env->counters, floor);
}
uint64_t ts_env_next_rowid(ts_env *env, uint64_t floor) {
  return ts_counters_next_rowid(env->counters, floor);
}
void ts_env_publish_epoch(ts_env *env, uint64_t epoch) {
  ts_counters_publish_epoch(env->counters, epoch);
}

/* One more creation number (for a key deleted meanwhile by another
** writer of the ephemeral tier; commit lock held). */
uint64_t ts_env_take_rowid(ts_env *env) {
  return ts_counters_take_rowids(env->counters, 0, 1);
}

/* Number an in-memory-only commit (commit lock held). */
int ts_env_reserve(ts_env *env, size_t nfresh, uint64_t *epoch,
                   uint64_t *base_rowid, ts_err *err) {
  ts_snap s = {0};
  uint64_t last = 0, next = 0;
  int rc = ts_snap_begin(&s, env, err);
  if (rc) return rc;
  ts_env_read_lock(env);
  rc = ts_snap_last_epoch(&s, &last, err);
  if (!rc) rc = ts_snap_next_rowid(&s, &next, err);
  ts_env_read_unlock(env);
  ts_snap_free(&s);
  if (rc) return rc;
  *epoch = ts_counters_take_epoch(env->counters, last);
  *base_rowid = ts_counters_take_rowids(env->counters, next, nfresh);
  return TS_OK;
}

/* Flush the environment to stable storage. */
int ts_env_sync(ts_env *env, ts_err *err) {
  int rc;
  ts_env_read_lock(env); /* the sync flags may be changing (ts_env_sync_flags) */
  rc = mdb_env_sync(env->mdb, 1);
  ts_env_read_unlock(env);
  if (rc) return ts_env_fail(env, rc, "syncing", err);
  return TS_OK;
}
