/*
** tierstore engine: the internal API, grouped by the file that owns it.
**
** Everything under src/ is plain C + LMDB: no SQLite header may be
** included here or in any src/ file.  The SQLite face (ext/) is the only
** caller.  Every function that can fail returns a TS_* code and, when it
** fails, fills a ts_err whose message starts with "tierstore: ".
*/
#ifndef TIERSTORE_INT_H
#define TIERSTORE_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/**************************************************************************
** Bounds, named once (DESIGN: "bounds are named constants in one place").
*/
#define TS_LDK_NAME_MAX     120          /* ldk rule: max characters per name */
#define TS_LMDB_KEY_MAX     511          /* LMDB's compiled-in key limit */
#define TS_ENC_KEY_MAX      TS_LMDB_KEY_MAX  /* encoded (pns,sns,key) limit */
#define TS_ROWID_PROVISIONAL ((uint64_t)1 << 62) /* first provisional rowid */
#define TS_FORMAT_VERSION   1            /* on-disk format version */
#define TS_STORE_ID_BYTES   16           /* random store identity */
#define TS_MAX_READERS      1022         /* LMDB reader slots per environment */
#define TS_DEFAULT_MAP_SIZE ((size_t)64 << 20)
#define TS_COUNTERS_FILE    "tierstore.shm" /* shared counters, beside lock.mdb */
#define TS_MIN_MAP_SIZE     ((size_t)64 << 10)
#define TS_DEFAULT_FILE_MODE 0600        /* files created: owner only (a node's
                                         ** state holds secrets) */
#define TS_MAX_FILE_MODE    0777         /* mode argument: permission bits only */
#define TS_MAX_MAP_SIZE     ((size_t)1 << 44)  /* largest map_size accepted: 16 TiB */
#define TS_CURSOR_POOL      2            /* idle cursors a store keeps for its
                                         ** statements and lookups (each holds
                                         ** an LMDB reader slot) */

/**************************************************************************
** Result codes (err.c).  ext/ maps them to SQLite codes.
*/
#define TS_OK          0
#define TS_ERROR       1   /* generic / misuse */
#define TS_NOMEM       2
#define TS_NOTFOUND    3   /* not an error: key or rowid absent */
#define TS_CONSTRAINT  4   /* a name or value broke a rule */
#define TS_UNIQUE      5   /* key exists already */
#define TS_FULL        6   /* map full after growing, or disk full */
#define TS_READONLY    7   /* permission denied on write */
#define TS_CANTOPEN    8   /* cannot open / create an environment */
#define TS_CORRUPT     9   /* damaged file */
#define TS_IOERR       10  /* any other I/O or LMDB failure */

typedef struct ts_err ts_err;
struct ts_err {
  int code;
  char msg[640];
};

/* Make err say "no error" without clearing all of msg (a row's xNext and
** xColumn declare one each). */
static inline void ts_err_clear(ts_err *err) {
  err->code = 0;
  err->msg[0] = 0;
}

/* Set err->code and err->msg ("tierstore: " + formatted text); returns code. */
int ts_err_set(ts_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A name or rule quoted for a message: printable ASCII, other bytes and
** '\\' '\'' as \xNN, cut with "..." past TS_SHOW_MAX characters. */
#define TS_SHOW_MAX 60
typedef struct ts_shown ts_shown;
struct ts_shown {
  char z[TS_SHOW_MAX + 4];
};
ts_shown ts_err_show(const char *p, size_t n);

/* Map an LMDB / errno error to a TS_* code (MDB_MAP_FULL, ENOSPC -> TS_FULL,
** EACCES/EROFS/EPERM -> TS_READONLY, MDB_CORRUPTED/MDB_INVALID/
** MDB_PAGE_NOTFOUND/MDB_VERSION_MISMATCH -> TS_CORRUPT, else TS_IOERR). */
int ts_err_from_lmdb(int mdb_rc);

/**************************************************************************
** Values and names (names.c).
*/
/* Value types: the same numbers as SQLite's fundamental datatypes. */
#define TS_INTEGER 1
#define TS_FLOAT   2
#define TS_TEXT    3
#define TS_BLOB    4

typedef struct ts_value ts_value;
struct ts_value {
  int type;           /* TS_INTEGER .. TS_BLOB */
  int64_t i;          /* TS_INTEGER */
  double f;           /* TS_FLOAT */
  const void *p;      /* TS_TEXT / TS_BLOB bytes (not NUL-terminated) */
  size_t n;           /* TS_TEXT / TS_BLOB length */
};

/* Big-endian 64-bit store/load: keys sort numerically, files are portable.
** One byte swap (a record's numbers are read for every row scanned). */
/* Array p of *pcap elements of size sz, grown (doubling, new elements
** zeroed) to hold at least want >= 1 of them; NULL when out of memory (p
** unchanged). */
void *ts_grow(void *p, size_t *pcap, size_t sz, size_t want);

static inline uint64_t ts_be64_swap(uint64_t v) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  return __builtin_bswap64(v);
#else
  return v;
#endif
}
static inline void ts_be64_put(unsigned char *p, uint64_t v) {
  v = ts_be64_swap(v);
  memcpy(p, &v, 8);
}
static inline uint64_t ts_be64_get(const unsigned char *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return ts_be64_swap(v);
}

/* A name: bytes plus length (a NUL after them is not guaranteed). */
typedef struct ts_name ts_name;
struct ts_name {
  const char *p;
  size_t n;
};

typedef enum ts_names_rule { TS_NAMES_LDK = 0, TS_NAMES_ANY = 1 } ts_names_rule;

/* Check (pns, sns, key) against the rule; on failure TS_CONSTRAINT with a
** message naming the column and the rule it broke. */
int ts_names_check(ts_names_rule rule, ts_name pns, ts_name sns, ts_name key,
                   ts_err *err);

/* Ordered key encoding: pns 0x00 sns 0x00 key.  Byte order of encodings is
** (pns, sns, key) order.  out must hold n(pns)+n(sns)+n(key)+2 bytes;
** returns the encoded length. */
size_t ts_key_encode(ts_name pns, ts_name sns, ts_name key, unsigned char *out);
/* Namespace prefix: "pns 0x00" (sns == NULL) or "pns 0x00 sns 0x00". */
size_t ts_prefix_encode(ts_name pns, const ts_name *sns, unsigned char *out);
/* Split an encoded key back into its names (pointers into enc).
** TS_CORRUPT if it does not hold two separators. */
int ts_key_decode(const unsigned char *enc, size_t n, ts_name *pns,
                  ts_name *sns, ts_name *key);
/* Length of the namespace part "pns 0 sns 0" of an encoded key. */
size_t ts_key_ns_len(const unsigned char *enc, size_t n);

/**************************************************************************
** The delta (delta.c): one transaction's ordered write set.
**
** An ordered map (skip list, arena allocated) from encoded key to the
** transaction's last word on that key.  Entries are never unlinked while
** the transaction lives: undoing a write turns the entry back to
** TS_OP_NONE, so iterators stay valid.  Savepoint marks record the undo-log
** position; the undo log is kept only while at least one mark exists.
*/
typedef enum ts_op { TS_OP_NONE = 0, TS_OP_PUT = 1, TS_OP_DEL = 2 } ts_op;

typedef struct ts_delta ts_delta;
typedef struct ts_delta_entry ts_delta_entry;
struct ts_delta_entry {
  const unsigned char *key;  /* encoded key (arena) */
  size_t nkey;
  ts_op op;
  int fresh;                 /* PUT creates the key anew: new creation number */
  int again;                 /* the transaction deleted the key as the store
                             ** had it: a DEL of a stored key, or a fresh PUT
                             ** after one (so a new number even if the key
                             ** is stored at commit) */
  int ephemeral;             /* the key lives in the ephemeral tier (the
                             ** delta's classifier said so when the entry
                             ** was made) */
  uint64_t rowid;            /* committed rowid kept, or provisional one */
  ts_value value;            /* PUT: the value (bytes in the arena) */
};

/* Which entries belong to the ephemeral tier: asked once per key, when
** its entry is made (routing depends on the names alone). */
typedef int (*ts_delta_classifier)(const void *ctx, const unsigned char *key, size_t nkey);
/* A new delta with one owner.  ts_delta_retain adds an owner (a cursor
** that keeps reading it after the table retired it at commit);
** ts_delta_free drops one and frees with the last. */
ts_delta *ts_delta_new(void);
/* Classify new entries with fn (none: every entry is primary-tier). */
void ts_delta_classify(ts_delta *d, ts_delta_classifier fn, const void *ctx);
void ts_delta_retain(ts_delta *d);
int ts_delta_is_shared(const ts_delta *d);
void ts_delta_free(ts_delta *d);
/* Discard every entry and mark; bumps the generation. */
void ts_delta_reset(ts_delta *d);
/* Generation: changes on reset, so iterators holding entries know to re-seek. */
uint64_t ts_delta_generation(const ts_delta *d);
/* Number of entries whose op is not NONE, and bytes of keys+values held. */
size_t ts_delta_count(const ts_delta *d);
/* Entries that say something, of the ephemeral tier. */
size_t ts_delta_count_ephemeral(const ts_delta *d);
size_t ts_delta_bytes(const ts_delta *d);

/* Record a PUT of key (copied) with value (copied).  fresh is sticky: a PUT
** over an entry that is a fresh PUT stays fresh and keeps its rowid. */
int ts_delta_put(ts_delta *d, const unsigned char *key, size_t nkey,
                 const ts_value *v, uint64_t rowid, int fresh);
/* Record a DELETE of key. */
int ts_delta_del(ts_delta *d, const unsigned char *key, size_t nkey);
/* Hash of an encoded key (the delta's index; the coordinator's filter of
** queued keys). */
uint64_t ts_key_hash(const unsigned char *key, size_t nkey);
/* The entry for key, or NULL when the delta says nothing (absent or NONE). */
const ts_delta_entry *ts_delta_get(const ts_delta *d, const unsigned char *key,
                                   size_t nkey);
/* Hand out the next provisional rowid (>= TS_ROWID_PROVISIONAL). */
uint64_t ts_delta_new_rowid(ts_delta *d);
/* The live PUT entry with rowid: a fresh PUT holding a provisional rowid,
** or a PUT that keeps a stored rowid; else NULL. */
const ts_delta_entry *ts_delta_by_rowid(const ts_delta *d, uint64_t rowid);

/* The creation order of a frozen delta's new keys: the rank of each live
** fresh PUT among them, by provisional rowid (a commit numbers new keys
** base + rank). */
typedef struct ts_fresh ts_fresh;
struct ts_fresh {
  size_t *rank;              /* by provisional slot; SIZE_MAX: none there;
                             ** NULL: every slot holds one, rank = slot */
  size_t nslots;
  size_t n;                  /* live fresh PUTs */
};
int ts_delta_fresh(const ts_delta *d, ts_fresh *f);
/* Rank of a fresh entry among the commit's new keys, or -1. */
long ts_fresh_rank(const ts_fresh *f, const ts_delta_entry *e);
void ts_fresh_free(ts_fresh *f);

/* Savepoints, numbered as SQLite numbers them (xSavepoint/xRelease/
** xRollbackTo). */
int ts_delta_savepoint(ts_delta *d, int level);
void ts_delta_release(ts_delta *d, int level);
void ts_delta_rollback_to(ts_delta *d, int level);

/* Ordered iteration over entries (including NONE ones: callers skip them).
** An iterator is a pointer to an entry; NULL is the end. */
/* First entry with key >= k (desc=0) or last entry with key <= k (desc=1);
** k == NULL means the very first / very last. */
const ts_delta_entry *ts_delta_seek(const ts_delta *d, const unsigned char *k,
                                    size_t nk, int desc);
/* Next entry in the given direction, or NULL. */
const ts_delta_entry *ts_delta_step(const ts_delta *d,
                                    const ts_delta_entry *e, int desc);

/**************************************************************************
** Router (router.c): which tier a key lives in.  Rules are "pns",
** "pns/sns" or "pns/sns/key"; "ldk" is a preset.  With no rules every key
** is primary.
*/
typedef enum ts_tier_id { TS_TIER_PRIMARY = 0, TS_TIER_EPHEMERAL = 1 } ts_tier_id;
typedef struct ts_router ts_router;
/* Parse a comma-separated rule list (NULL or "" = no rules). */
int ts_router_new(const char *rules, ts_router **out, ts_err *err);
void ts_router_free(ts_router *r);
ts_tier_id ts_router_route(const ts_router *r, ts_name pns, ts_name sns,
                           ts_name key);
int ts_router_is_empty(const ts_router *r);
/* The tier of every key of a namespace, when the rules decide it without
** the key name. */
typedef enum ts_ns_route {
  TS_NS_PRIMARY = 0,     /* every key of the namespace is primary */
  TS_NS_EPHEMERAL = 1,   /* every key is ephemeral */
  TS_NS_PER_KEY = 2      /* pns/sns/key rules: route each key */
} ts_ns_route;
ts_ns_route ts_router_route_ns(const ts_router *r, ts_name pns, ts_name sns);


/**************************************************************************
** Store-wide numbers (counters.c): next creation number and last epoch,
** shared by the processes of one store through a file mapped beside
** lock.mdb (TS_COUNTERS_FILE), taken atomically.
*/
typedef struct ts_counters ts_counters;
/* The counters of the environment in dir (a file it creates gets mode);
** *shared says whether other processes see them (else process-local). */
ts_counters *ts_counters_open(const char *dir, unsigned mode, int *shared);
void ts_counters_close(ts_counters *c, int shared);
uint64_t ts_counters_take_rowids(ts_counters *c, uint64_t floor, uint64_t n);
uint64_t ts_counters_take_epoch(ts_counters *c, uint64_t floor);
uint64_t ts_counters_next_rowid(ts_counters *c, uint64_t floor);
uint64_t ts_counters_epoch(ts_counters *c, uint64_t floor);
void ts_counters_publish_epoch(ts_counters *c, uint64_t epoch);

/**************************************************************************
** The ephemeral tier (tier_mem.c): an immutable, reference-counted
** snapshot of key-ordered rows, replaced whole at each commit.
*/
typedef struct ts_mem ts_mem;
typedef struct ts_mem_snap ts_mem_snap;
typedef struct ts_mem_row ts_mem_row;
struct ts_mem_row {
  int refs;                  /* guarded by the tier's mutex */
  uint64_t rowid, epoch;
  const unsigned char *key;  /* encoded key */
  size_t nkey;
  ts_value value;
};
ts_mem *ts_mem_new(void);
void ts_mem_free(ts_mem *m);
/* The process's tier of a primary environment (its directory's device and
** inode, and its store identity), created on first use and kept until the process ends; NULL when
** out of memory. */
ts_mem *ts_mem_for_env(uint64_t dev, uint64_t ino, const unsigned char *store_id);
/* The same without creating it: NULL when no table made it. */
ts_mem *ts_mem_find(uint64_t dev, uint64_t ino, const unsigned char *store_id);
/* Empty every tier of a directory (a process that deletes environment
** directories while it runs: the fuzzer). */
void ts_mem_forget_dir(uint64_t dev, uint64_t ino);
/* Take / give back the current snapshot; rows stay valid while held. */
ts_mem_snap *ts_mem_snapshot(ts_mem *m);
void ts_mem_snap_release(ts_mem *m, ts_mem_snap *s);
size_t ts_mem_snap_count(const ts_mem_snap *s);
const ts_mem_row *ts_mem_snap_row(const ts_mem_snap *s, size_t i);
/* Index of the first row >= k (asc) or of the last row <= k (desc;
** (size_t)-1 when none). */
size_t ts_mem_snap_seek(const ts_mem_snap *s, const unsigned char *k,
                        size_t nk, int desc);
const ts_mem_row *ts_mem_snap_get(const ts_mem_snap *s, const unsigned char *k,
                                  size_t nk);
const ts_mem_row *ts_mem_snap_by_rowid(const ts_mem_snap *s, uint64_t rowid);

/**************************************************************************
** One LMDB environment (tier_lmdb.c).
**
** An environment is opened once per process and shared (LMDB forbids two
** opens of one path in a process): a registry keyed by the directory's
** device and inode hands out reference-counted ts_env handles.
**
** Named databases: "meta" (format_version, store_id, last_epoch,
** next_rowid, next_nsid), "data" (encoded key -> record), "namespaces"
** (namespace part "pns 0 sns 0" -> namespace id), "created" (namespace
** id + rowid -> key name, for newest-first listings), "rowids" (rowid ->
** encoded key).  Numbers are 8-byte big-endian.  A record is rowid(8)
** epoch(8) type(1) payload.
**
** The map can be remapped when it grows.  Every access to mapped memory
** happens between ts_env_read_lock() and ts_env_read_unlock(); growth takes
** the lock exclusively and bumps the map generation, after which LMDB
** cursors re-seek (ts_lcur_revalidate) before use.
*/
#include <lmdb.h>

typedef struct ts_env ts_env;

typedef enum ts_durability {
  TS_DURABLE = 0,   /* fsync data and meta at commit */
  TS_WRITTEN = 1,   /* fsync data only; meta follows with the next commit */
  TS_APPLIED = 2    /* queued in the coordinator; written within flush_interval */
} ts_durability;

/* A decoded record.  Byte pointers point into the map: valid while the
** caller holds the read lock and the map generation is unchanged. */
typedef struct ts_record ts_record;
struct ts_record {
  uint64_t rowid;
  uint64_t epoch;
  ts_value value;
};

/* Which named database a cursor walks. */
typedef enum ts_db_id {
  TS_DB_DATA = 0, TS_DB_CREATED, TS_DB_ROWIDS, TS_DB_NAMESPACES, TS_DB_META, TS_DB_REPLAY
} ts_db_id;
#define TS_NDB 6

/* Open (or share) the environment in directory path, creating it and its
** missing parents.  map_size is the initial map size when this process
** opens it first.  What it creates is owner-only (TS_DEFAULT_FILE_MODE). */
int ts_env_open(const char *path, size_t map_size, ts_env **out, ts_err *err);
/* The same, giving the files it creates mode (permission bits; the
** directories it creates get u+rwx and x for each of group and other that
** may read or write), whatever the umask, and a new environment the store
** identity identity (a backup takes its primary's; NULL: a random one).
** What existed keeps its mode. */
int ts_env_open_id(const char *path, size_t map_size, unsigned mode,
                   const unsigned char *identity, ts_env **out, ts_err *err);
/* Drop one reference; the last one closes the environment. */
void ts_env_close(ts_env *env);
/* Close the handle of a refused table: if it created the environment and
** nobody else holds it, remove its files and the directories it made. */
void ts_env_discard(ts_env *env);
const char *ts_env_path(const ts_env *env);
const unsigned char *ts_env_store_id(const ts_env *env);
/* The ephemeral tier beside this environment in this process (created on
** first use; _peek: NULL when none was). */
ts_mem *ts_env_mem(const ts_env *env);
ts_mem *ts_env_mem_peek(const ts_env *env);

/* What tables use an environment as (the status table's role column). */
#define TS_ROLE_PRIMARY 1u
#define TS_ROLE_BACKUP  2u
void ts_env_add_role(ts_env *env, unsigned role);
/* A reference to every environment this process has open, with its roles
** (close each, free both arrays). */
int ts_env_list(ts_env ***out, size_t *n, unsigned **roles);
/* 1 while a fill of this environment from its primary runs, with keys
** copied of keys total. */
int ts_env_copy_progress(ts_env *env, uint64_t *done, uint64_t *total);
/* The newest state's figures. */
typedef struct ts_env_figures_t ts_env_figures_t;
struct ts_env_figures_t {
  uint64_t keys;               /* entries of the data database */
  uint64_t bytes;              /* pages in use x page size */
  uint64_t map_size;
  uint64_t last_epoch;
};
int ts_env_figures(ts_env *env, ts_env_figures_t *out, ts_err *err);

/* The view lock: a commit writing both tiers takes it exclusively around
** its two publications; a reader takes it shared around its two snapshots.
** Taken before any other lock of the environment. */
void ts_env_view_lock(ts_env *env, int exclusive);
void ts_env_view_unlock(ts_env *env);

/* Shared access to mapped memory (see above). */
void ts_env_read_lock(ts_env *env);
void ts_env_read_unlock(ts_env *env);
uint64_t ts_env_map_generation(ts_env *env);

/* A read snapshot: one LMDB read transaction.  Begin, renew and get must
** be called with the read lock held. */
typedef struct ts_snap ts_snap;
struct ts_snap {
  ts_env *env;
  MDB_txn *txn;      /* NULL until the first begin */
  int live;          /* txn is active (not reset) */
  uint64_t bytes;    /* the file's pages when it began: items lie below */
};
/* Start (or restart) the snapshot on the newest committed state.
** Called WITHOUT the read lock (it may have to adopt a resized map). */
int ts_snap_begin(ts_snap *s, ts_env *env, ts_err *err);
/* End the snapshot's transaction (keeps the handle for a cheap renew). */
void ts_snap_end(ts_snap *s);
/* Release everything. */
void ts_snap_free(ts_snap *s);
/* Point read of an encoded key: TS_OK or TS_NOTFOUND.  Lock held. */
int ts_snap_get(ts_snap *s, const unsigned char *key, size_t nkey,
                ts_record *rec, ts_err *err);
/* Encoded key of a committed rowid into buf (TS_ENC_KEY_MAX bytes).
** TS_OK or TS_NOTFOUND.  Lock held. */
int ts_snap_key_by_rowid(ts_snap *s, uint64_t rowid, unsigned char *buf,
                         size_t *n, ts_err *err);
/* Id of a namespace part in the snapshot: TS_OK or TS_NOTFOUND (no key
** was ever created there).  Lock held. */
int ts_snap_ns_id(ts_snap *s, const unsigned char *ns, size_t nns,
                  uint64_t *id, ts_err *err);
/* Last committed epoch in the snapshot.  Lock held. */
int ts_snap_last_epoch(ts_snap *s, uint64_t *epoch, ts_err *err);

/* A positioned LMDB cursor over one database that survives remaps: it keeps
** a copy of its current key and re-seeks after a map generation change. */
typedef struct ts_lcur ts_lcur;
struct ts_lcur {
  ts_snap *snap;
  ts_db_id db;
  MDB_cursor *cur;
  uint64_t gen;                       /* map generation when positioned */
  int valid;                          /* positioned on an item */
  MDB_val k, v;                       /* current item (mapped memory) */
  unsigned char kbuf[TS_LMDB_KEY_MAX + 1]; /* copy of the current key,
                                          ** NUL-terminated */
  size_t nkbuf;
};
/* Attach to a snapshot; lock held. */
int ts_lcur_open(ts_lcur *c, ts_snap *s, ts_db_id db, ts_err *err);
void ts_lcur_close(ts_lcur *c);
/* Attach an open cursor to its snapshot's transaction again (after
** ts_snap_begin renewed it), unpositioned.  Lock held. */
int ts_lcur_renew(ts_lcur *c, ts_err *err);
/* Position on the first key >= k (desc=0) or the last key <= k (desc=1);
** k == NULL: first / last.  Lock held. */
int ts_lcur_seek(ts_lcur *c, const unsigned char *k, size_t nk, int desc,
                 ts_err *err);
/* Step forward or backward.  Lock held. */
int ts_lcur_step(ts_lcur *c, int desc, ts_err *err);
/* Re-seek after a remap, so k/v point into the current map.  Lock held. */
int ts_lcur_revalidate(ts_lcur *c, ts_err *err);

/* Decode a stored record value. */
int ts_record_decode(const void *p, size_t n, ts_record *rec);

/* A resolved change: what one key becomes in a tier at a commit.  Bytes
** are owned elsewhere (the delta, or a mapped page). */
typedef struct ts_change ts_change;
struct ts_change {
  const unsigned char *key;
  size_t nkey;
  ts_op op;                  /* TS_OP_PUT or TS_OP_DEL */
  ts_value value;            /* PUT */
  uint64_t rowid, epoch;     /* PUT */
};

/* Writers of one environment in this process take its commit lock; every
** ts_env_write / ts_env_commit / ts_env_reserve call needs it held.  Lock
** order: a primary's before its backup's. */
void ts_env_commit_lock(ts_env *env);
void ts_env_commit_unlock(ts_env *env);

/* One write transaction running fn, committed at durability dur.  On
** MDB_MAP_FULL the map grows (by at least grow_hint bytes) and fn runs
** again from scratch, so fn must only depend on its inputs. */
typedef struct ts_wtxn ts_wtxn;
typedef int (*ts_write_fn)(void *ctx, ts_wtxn *w);
/* Optional hooks around the commit of each attempt: before_commit runs
** after fn succeeded (non-zero aborts the attempt with that code);
** after_commit gets the attempt's result (fn's, before_commit's or
** mdb_txn_commit's). */
typedef struct ts_write_hooks ts_write_hooks;
struct ts_write_hooks {
  int (*before_commit)(void *ctx);
  void (*after_commit)(void *ctx, int rc);
  void *ctx;
};
int ts_env_write(ts_env *env, ts_durability dur, size_t grow_hint,
                 ts_write_fn fn, const ts_write_hooks *hooks, void *ctx,
                 ts_err *err);
/* Inside fn (each returns an LMDB code): */
/* Apply a resolved change, keeping the namespace, creation and rowid
** indexes in step. */
int ts_wtxn_change(ts_wtxn *w, const ts_change *c);
/* Metadata numbers ("last_epoch", "next_rowid", ...); absent reads 0. */
int ts_wtxn_meta_get(ts_wtxn *w, const char *name, uint64_t *v);
int ts_wtxn_meta_put(ts_wtxn *w, const char *name, uint64_t v);
/* The replay record of an epoch: the keys it changed (see ts_replay_*). */
int ts_wtxn_replay_put(ts_wtxn *w, uint64_t epoch, const ts_change *ch,
                       size_t n);
/* Remove replay records of epochs <= upto. */
int ts_wtxn_replay_prune(ts_wtxn *w, uint64_t upto);
/* Every replay record of the environment, concatenated and copied into
** *out (free()); *first: the epoch of the oldest (0: none). */
int ts_wtxn_replay_all(ts_wtxn *w, unsigned char **out, size_t *n,
                       uint64_t *first);
/* Remove every replay record, leaving replay_floor as it is. */
int ts_wtxn_replay_clear(ts_wtxn *w);
/* Replace this environment's data, indexes and numbers with an exact copy
** of the snapshot's (the backup fill). */
int ts_wtxn_copy_from(ts_wtxn *w, ts_snap *src);

/* Inside fn, for a body that resolves its own changes (commit.c): the
** stored record of key (0, MDB_NOTFOUND or an error; *above: key is above
** every data key, so absent without a lookup), and the change applied
** over what ts_wtxn_find returned (old NULL: absent). */
int ts_wtxn_find(ts_wtxn *w, const unsigned char *key, size_t nkey,
                 int *above, ts_record *rec);
int ts_wtxn_apply(ts_wtxn *w, const ts_change *c, int above,
                  const ts_record *old);
/* The environment a write transaction writes, and its shared counters'
** numbers (commit.c numbers commits with them). */
ts_env *ts_wtxn_env(ts_wtxn *w);
/* Take n consecutive creation numbers, none below floor (the first is
** returned); the last epoch taken or committed, at least floor; record
** that epoch was committed. */
uint64_t ts_env_take_rowids(ts_env *env, uint64_t floor, uint64_t n);
uint64_t ts_env_epoch_floor(ts_env *env, uint64_t floor);
uint64_t ts_env_next_rowid(ts_env *env, uint64_t floor);
void ts_env_publish_epoch(ts_env *env, uint64_t epoch);
/* One creation number from the shared counters (commit lock held). */
uint64_t ts_env_take_rowid(ts_env *env);
/* Number a commit that writes no environment (only the ephemeral tier):
** the next epoch and nfresh creation numbers, in memory (commit lock
** held; reads the metadata, writes nothing). */
int ts_env_reserve(ts_env *env, size_t nfresh, uint64_t *epoch,
                   uint64_t *base_rowid, ts_err *err);
/* Replay records: the keys an epoch changed, as [u16 BE length][bytes]... */
int ts_snap_replay(ts_snap *s, uint64_t epoch, const unsigned char **p,
                   size_t *n, ts_err *err);
/* Next creation number of the snapshot. */
int ts_snap_next_rowid(ts_snap *s, uint64_t *next, ts_err *err);
/* A metadata number of the snapshot ("replay_floor", ...); 0 when absent.
** Lock held. */
int ts_snap_meta(ts_snap *s, const char *name, uint64_t *v, ts_err *err);
/* Force everything to stable storage. */
int ts_env_sync(ts_env *env, ts_err *err);
/* LMDB's figures of the environment (mdb_env_info). */
int ts_env_info(ts_env *env, MDB_envinfo *out);

/* Commit resolved changes to the ephemeral tier, in key order (tier_mem.c;
** the commit lock of its environment held).  On failure nothing changes. */
int ts_mem_apply(ts_mem *m, const ts_change *changes, size_t n, ts_err *err);

/**************************************************************************
** Commits (commit.c): frozen deltas become resolved changes with their
** epochs and creation numbers; the one place those rules live.
*/
/* One frozen delta of a write, with its numbers. */
typedef struct ts_frozen ts_frozen;
struct ts_frozen {
  const ts_delta *d;
  ts_fresh fresh;              /* creation order of its new keys */
  size_t nprimary, nephemeral; /* its live entries of each tier */
  uint64_t base_rowid;         /* creation number of its oldest new key */
  uint64_t epoch;              /* out: its epoch */
  size_t first_change, nchanges; /* out (journal): its slice of the changes */
};
/* Freeze d for a write (TS_NOMEM when out of memory). */
int ts_frozen_init(ts_frozen *f, const ts_delta *d);
void ts_frozen_free(ts_frozen *f);

/* A write of an epoch range to a primary: frozen deltas in epoch order,
** each its own epoch, all in one LMDB write transaction. */
typedef struct ts_commit ts_commit;
struct ts_commit {
  ts_frozen **f;
  size_t nf;
  ts_durability durability;
  int journal;                 /* keep replay records, return the changes */
  const ts_write_hooks *hooks; /* around the commit (the backup's write) */
  uint64_t backup_epoch;       /* replay records up to this epoch may go */
  /* out */
  uint64_t first_epoch, last_epoch;
  uint64_t prev_epoch;         /* the primary's last epoch before this write */
  uint64_t prev_flush;         /* the primary's last write before this one */
  uint64_t flush_id;           /* this write's identity (meta "last_flush") */
  uint64_t next_rowid;         /* the next creation number after the write */
  ts_change *changes;          /* journal: the resolved changes (free()),
                               ** sized once for every entry: never moves */
  size_t nchanges, cap_changes;
  /* journal readers: called as the changes are resolved, with done=0 at
  ** the start of each attempt (no changes yet) and every so often, and
  ** done=1 once all are and next_rowid is set */
  void (*on_resolved)(void *ctx, const ts_commit *c, int done);
  void *on_resolved_ctx;
  /* internal: creation numbers taken for kept keys deleted meanwhile */
  uint64_t *extras;
  size_t nextras;
};
/* Write c's primary-tier entries to the primary (commit lock held). */
int ts_commit_primary(ts_env *env, ts_commit *c, ts_err *err);
/* Publish a written frozen delta's ephemeral entries (its epoch and
** base_rowid set) to the ephemeral tier (the primary's commit lock held). */
int ts_commit_ephemeral(ts_env *env, ts_mem *mem, const ts_frozen *f,
                        ts_err *err);
/* Flush a delta on its own, every entry to env: lock, write, unlock. */
int ts_env_apply(ts_env *env, const ts_delta *d, ts_durability dur,
                 uint64_t *epoch, ts_err *err);

/**************************************************************************
** A long-lived thread running one function at a time (worker.c).
*/
typedef struct ts_worker ts_worker;
/* A worker with its thread started; NULL when it cannot be. */
ts_worker *ts_worker_new(void);
/* Stop its thread (after the function it runs) and free it. */
void ts_worker_free(ts_worker *w);
/* Hand fn(arg) over (after the one it runs, if any). */
void ts_worker_run(ts_worker *w, void (*fn)(void *), void *arg);
/* Wait until the function handed over has returned. */
void ts_worker_join(ts_worker *w);

/**************************************************************************
** A backup environment kept equal to its primary (mirror.c).  Each takes
** the backup's commit lock itself; callers may hold the primary's.
*/
/* Test-only fault points: is TIERSTORE_FAULT set to name (the process
** then kills itself there, as a crash would)? */
int ts_fault_armed(const char *name);
/* Make the backup equal to the primary's newest state: undo the writes
** only the backup took, replay the epochs it missed, or copy everything
** (when the records do not reach back, or force). */
int ts_mirror_catch_up(ts_env *primary, ts_env *backup, ts_durability dur,
                       int force, ts_err *err);
/* Is the backup level with the primary: the same epoch and the same last
** write? */
int ts_mirror_level(ts_env *primary, ts_env *backup, int *level, ts_err *err);
/* The epoch an environment holds now. */
int ts_mirror_epoch(ts_env *env, uint64_t *epoch, ts_err *err);

/* The backup's write of one primary write, run by a second thread at the
** same time: it takes the backup's write lock while the primary's write
** transaction is open, applies each batch of resolved changes as the
** primary publishes it, and commits alongside the primary's commit.  Its
** hooks go on the primary's write (ts_mirror_pair_hooks), its resolved
** callback on the commit (ts_mirror_pair_resolved). */
typedef struct ts_mirror_pair ts_mirror_pair;
struct ts_mirror_pair {
  ts_env *backup;
  ts_durability dur;
  const ts_commit *c;        /* the primary's write (changes fill up) */
  size_t grow_hint;          /* for the backup's map, should it fill up */
  ts_worker *worker;         /* the thread it runs on */
  int running;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  size_t n;                  /* changes resolved so far (under mu) */
  int ended;                 /* all are; next_rowid is set (under mu) */
  uint64_t next_rowid;
  int begun;                 /* 1: on the epoch before; -1: it will not
                             ** take this write (under mu) */
  int have_verdict, verdict;
  int rc;                    /* TS_OK: the backup took the write */
  ts_err err;
};
void ts_mirror_pair_init(ts_mirror_pair *p, ts_env *backup, ts_durability dur,
                         ts_worker *worker);
void ts_mirror_pair_free(ts_mirror_pair *p);
void ts_mirror_pair_resolved(void *ctx, const ts_commit *c, int done);
ts_write_hooks ts_mirror_pair_hooks(ts_mirror_pair *p);
/* Join it: TS_OK when the backup took the write; TS_NOTFOUND when it did
** not try (the backup needs reconciling: ts_mirror_catch_up); else the
** error of its write, worded in p->err after the backup. */
int ts_mirror_pair_finish(ts_mirror_pair *p);
/* Compare identity, epochs and every key and value; the first difference
** fails with a message. */
int ts_mirror_verify(ts_env *primary, ts_env *backup, ts_err *err);

/**************************************************************************
** The write coordinator (coordinator.c): one per process and primary
** environment, shared by every table and thread that writes it.
*/
#define TS_FLUSH_BYTES ((size_t)4 << 20)  /* queued bytes that start a flush */
#define TS_DEFAULT_FLUSH_INTERVAL_US 10000 /* 10 ms */
#define TS_MAX_FLUSH_INTERVAL_US 60000000  /* 60 s */
#define TS_DEFAULT_MAX_PENDING ((size_t)64 << 20)

typedef struct ts_coord ts_coord;
/* The coordinator of a primary environment (shared; created on first
** use); NULL when out of memory.  ts_coord_close writes what is queued
** and drops the reference. */
ts_coord *ts_coord_open(ts_env *primary);
void ts_coord_close(ts_coord *co);

/* How a table's commits go through the coordinator. */
typedef struct ts_coord_job ts_coord_job;
struct ts_coord_job {
  ts_env *backup;              /* NULL: no backup */
  ts_mem *mem;                 /* the ephemeral tier, or NULL without rules */
  ts_durability level;
  int64_t flush_interval_ns;   /* applied: written within this */
  size_t max_pending;          /* bytes queued before COMMIT waits */
};
/* Commit the delta d at cfg->level: queue it (d is retained until it is
** written) and wait for the level.  *epoch: its epoch once written (0 for
** an applied commit, whose epoch is given when it is written). */
int ts_coord_commit(ts_coord *co, ts_delta *d, const ts_coord_job *cfg,
                    uint64_t *epoch, ts_err *err);
/* Write everything queued (the sync command; the caller then fsyncs). */
int ts_coord_sync(ts_coord *co, ts_err *err);
/* Before a read of committed data: wait until every acknowledged
** (applied) commit is written, so the read sees it. */
int ts_coord_visible(ts_coord *co, ts_err *err);

/* What the commits queued or being written say of a key (a point lookup
** sees them without waiting for their write). */
typedef enum ts_coord_state {
  TS_QUEUED_NONE = 0,        /* nothing: the tiers say */
  TS_QUEUED_ABSENT = 1,      /* deleted */
  TS_QUEUED_PRESENT = 2,     /* written, keeping the creation number *rowid */
  TS_QUEUED_NEW = 3          /* created: its number comes with the write */
} ts_coord_state;
void ts_coord_lookup(ts_coord *co, const unsigned char *key, size_t nkey,
                     ts_coord_state *state, uint64_t *rowid);

/* The coordinator's figures. */
typedef struct ts_coord_stats ts_coord_stats;
struct ts_coord_stats {
  uint64_t commits;            /* commits accepted */
  uint64_t flushes, failed_flushes;
  uint64_t flushed_commits;    /* commits written by successful flushes */
  uint64_t last_epoch;         /* of the last successful flush */
  size_t queued_commits, queued_bytes;
  uint64_t applied, written, durable;   /* watermarks (sequence numbers) */
  int failing;
  ts_err last_error;           /* code 0: none */
  int64_t last_error_at_ns;    /* wall clock */
};
void ts_coord_stats_get(ts_coord *co, ts_coord_stats *out);
/* The figures of the coordinator of primary in this process: 1, or 0 when
** it has none (nothing is created). */
int ts_coord_stats_of(ts_env *primary, ts_coord_stats *out);

/**************************************************************************
** The figures of every tier this process has open (status.c): the rows of
** the tierstore_status table.
*/
typedef struct ts_status_row ts_status_row;
struct ts_status_row {
  const char *path;            /* the environment's directory (the primary's,
                               ** for an ephemeral tier) */
  const char *role;            /* primary, backup, primary,backup, ephemeral */
  unsigned char store_id[TS_STORE_ID_BYTES];
  uint64_t last_epoch;
  int has_lag;                 /* a backup whose primary is open here */
  uint64_t behind, ahead;      /* epochs, against that primary */
  uint64_t keys, bytes, map_size; /* map_size 0: not LMDB */
  int copying;                 /* a fill into it runs: */
  uint64_t copy_done, copy_total; /* keys copied of keys total */
  int has_coord;               /* a primary with a write coordinator here */
  ts_coord_stats coord;
};
typedef struct ts_status ts_status;
struct ts_status {
  ts_status_row *rows;
  size_t nrows;
  ts_env **envs;               /* the references that keep paths valid */
  size_t nenvs;
};
int ts_status_collect(ts_status *out, ts_err *err);
void ts_status_free(ts_status *s);

/**************************************************************************
** The store (store.c): a table's view of its tiers.  It routes keys,
** merges the committed tiers with the connection's delta on reads, and
** flushes a frozen delta at commit.
*/
typedef struct ts_store_cfg ts_store_cfg;
struct ts_store_cfg {
  const char *primary;        /* absolute directory of the primary env */
  const char *backup;         /* absolute directory of the backup, or NULL */
  const char *ephemeral;      /* ephemeral rules, or NULL */
  size_t map_size;            /* initial map size (0: default) */
  ts_durability durability;
  uint64_t flush_interval_us; /* applied: longest wait before a flush */
  size_t max_pending;         /* applied: queued bytes before COMMIT waits */
  ts_names_rule names;
  unsigned mode;              /* of the files it creates (0: default) */
};

typedef struct ts_store ts_store;
int ts_store_open(const ts_store_cfg *cfg, ts_store **out, ts_err *err);
void ts_store_close(ts_store *st);
ts_names_rule ts_store_names(const ts_store *st);
ts_env *ts_store_primary(ts_store *st);

/* What a statement needs to know about a key's visible state. */
typedef struct ts_row_info ts_row_info;
struct ts_row_info {
  uint64_t rowid;             /* creation number (provisional if fresh) */
  int fresh;                  /* created by this transaction */
};
/* A delta for a table of this store (its entries classified by tier). */
ts_delta *ts_store_new_delta(const ts_store *st);
/* Visible state of key (delta over newest committed): TS_OK or
** TS_NOTFOUND. */
int ts_store_lookup(ts_store *st, const ts_delta *d, const unsigned char *key,
                    size_t nkey, ts_row_info *info, ts_err *err);
/* Encoded key of a visible rowid: TS_OK or TS_NOTFOUND.  buf holds
** TS_ENC_KEY_MAX bytes. */
int ts_store_key_by_rowid(ts_store *st, const ts_delta *d, uint64_t rowid,
                          unsigned char *buf, size_t *n, ts_err *err);
/* Flush the delta at commit (no-op for an empty one); *epoch gets the
** commit's epoch or 0 when nothing was written. */
int ts_store_flush(ts_store *st, ts_delta *d, uint64_t *epoch, ts_err *err);
/* Make everything committed durable (the 'sync' command). */
int ts_store_sync(ts_store *st, ts_err *err);
/* The 'verify' and 'repair' commands: compare primary and backup; bring
** the backup up to date.  TS_ERROR with a message when there is no backup. */
int ts_store_verify(ts_store *st, ts_err *err);
int ts_store_repair(ts_store *st, ts_err *err);
/* Where a key lives. */
ts_tier_id ts_store_route(const ts_store *st, const unsigned char *key,
                          size_t nkey);

/* A scan plan. */
typedef enum ts_scan_kind {
  TS_SCAN_KEYS = 0,      /* key order within [lo, hi] */
  TS_SCAN_CREATED = 1,   /* creation order within namespace ns, rowid range */
  TS_SCAN_ROWID = 2,     /* one rowid */
  TS_SCAN_KEY = 3        /* one encoded key: lo */
} ts_scan_kind;

typedef struct ts_scan ts_scan;
struct ts_scan {
  ts_scan_kind kind;
  int desc;
  /* TS_SCAN_KEYS: encoded bounds; NULL = unbounded.  TS_SCAN_KEY: lo. */
  const unsigned char *lo;
  size_t nlo;
  int lo_incl;
  const unsigned char *hi;
  size_t nhi;
  int hi_incl;
  /* TS_SCAN_CREATED: namespace part "pns 0 sns 0" and inclusive rowids. */
  const unsigned char *ns;
  size_t nns;
  uint64_t rlo, rhi;
  /* TS_SCAN_ROWID */
  uint64_t rowid;
};

/* A merged cursor: committed snapshot + delta, one consistent snapshot for
** the cursor's life.  The cursor holds a reference on the delta, so a
** statement still stepping when its transaction commits keeps seeing that
** transaction's writes.  Freed cursors go back to their store, which hands
** them out again with their LMDB read transaction and cursor (so a
** statement costs no allocation); the store must outlive its cursors. */
typedef struct ts_cursor ts_cursor;
int ts_cursor_new(ts_store *st, ts_delta *d, ts_cursor **out, ts_err *err);
void ts_cursor_free(ts_cursor *c);
/* Position on the first row of the plan (bounds are copied). */
int ts_cursor_begin(ts_cursor *c, const ts_scan *plan, ts_err *err);
int ts_cursor_next(ts_cursor *c, ts_err *err);
int ts_cursor_eof(const ts_cursor *c);
/* Current row's encoded key (cursor-owned), followed by a 0x00 byte: each
** name it holds is NUL-terminated in place. */
const unsigned char *ts_cursor_key(const ts_cursor *c, size_t *n);
/* The current row's names, pointing into its key (each NUL-terminated);
** TS_CORRUPT when the key is damaged (no separators, or a 0x00 in its key
** name).  A scan within one namespace splits them without looking. */
int ts_cursor_names(ts_cursor *c, ts_name *pns, ts_name *sns, ts_name *key);
uint64_t ts_cursor_rowid(const ts_cursor *c);
/* Epoch of the commit that wrote the row; 0 while uncommitted. */
uint64_t ts_cursor_epoch(const ts_cursor *c);
ts_tier_id ts_cursor_tier(const ts_cursor *c);
/* Hand the current value to emit while its bytes are guaranteed valid
** (emit must copy what it keeps). */
typedef void (*ts_value_emit)(void *ctx, const ts_value *v);
int ts_cursor_value(ts_cursor *c, ts_value_emit emit, void *ctx, ts_err *err);

#endif /* TIERSTORE_INT_H */
