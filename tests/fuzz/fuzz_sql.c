/*
** fuzz_sql.c: a libFuzzer target over CREATE arguments and SQL statements
** run against the tierstore virtual table (issue 4, item 4).
**
** Input format (text; the seed corpus in tests/fuzz/corpus/ shows it):
**
**   line 1      the argument list of the table "kv", used verbatim in
**               CREATE VIRTUAL TABLE kv USING tierstore(<line 1>)
**   the rest    SQL statements, run one after the other (at most
**               TS_FUZZ_MAX_STMTS; an error ends only its own statement).
**               A statement that starts with the comment /\*2*\/ runs on a
**               second connection of the process (its own in-memory
**               database, the same CREATE), which shares the LMDB
**               environments and the ephemeral tier with the first.
**
** When line 1 names no ephemeral rule, one input in four (chosen by a hash
** of the input, so a given input always runs the same way) gets
** ", ephemeral='ldk,eph,e/s,e/s/k'" appended, so routing to the ephemeral
** tier is exercised without the fuzzer having to invent the argument.
**
** Every input runs against a fresh in-memory database with the module
** registered through sqlite3_tierstore_init(db, NULL, NULL), in one
** scratch directory that is emptied after every input.  Nothing may escape
** it: getcwd, mkdir, open, unlink, rmdir and mdb_env_open are wrapped at
** link time (-Wl,--wrap=...).  While an input runs, getcwd answers the
** scratch directory (so the relative paths of an in-memory database land
** there) and the others refuse any path outside it (the extension then
** reports an ordinary error).  The SQL cannot ATTACH
** (SQLITE_LIMIT_ATTACHED = 0, which also stops VACUUM INTO), cannot load
** extensions, runs in defensive mode, and is bounded by a progress handler
** (TS_FUZZ_MAX_STEPS) and small length limits.
**
** The process keeps one ephemeral tier per primary directory (device and
** inode) for its whole life (SPEC 5).  So that an input never sees rows of
** an earlier one (a directory created again can get the old inode back;
** see test_new_store_in_a_reused_directory_has_no_old_ephemeral_rows in
** test_bad_input.py), the harness empties the ephemeral tier of every
** environment directory before removing it.
**
** Build and run: tests/fuzz/build_and_run.sh (clang, -fsanitize=fuzzer,
** address,undefined).  Built with -DTS_FUZZ_STANDALONE (any compiler,
** e.g. gcc -fsanitize=address,undefined) it gets a main() that runs each
** file or directory named on the command line once, for machines without
** libFuzzer.
*/
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <lmdb.h>
#include <sqlite3.h>

#include "tierstore_int.h"

int sqlite3_tierstore_init(sqlite3 *db, char **errmsg, const sqlite3_api_routines *api);

#define TS_FUZZ_MAX_INPUT   16384    /* longer inputs are ignored */
#define TS_FUZZ_MAX_STMTS   64       /* statements run per input */
#define TS_FUZZ_MAX_ROWS    2000     /* rows stepped per statement */
#define TS_FUZZ_MAX_STEPS   100000   /* progress-handler callbacks (of 10 VM steps) per input */

static const char ts_fuzz_eph_rules[] = "ldk,eph,e/s,e/s/k";

/**************************************************************************
** The scratch directory and the path sandbox.
*/
static char g_root[PATH_MAX + 32];   /* absolute, no trailing slash */
static size_t g_rootlen;
static int g_sandbox;           /* refuse paths outside g_root */
static int g_verbose;           /* TIERSTORE_FUZZ_VERBOSE: print each result */

/* Lexically normalize an absolute path ("." and ".." components, repeated
** slashes) into out; 0 when it is not absolute or too long. */
static int ts_fuzz_normalize(const char *path, char *out, size_t cap) {
  size_t n = 0;
  const char *p = path;
  if (!path || path[0] != '/') return 0;
  out[0] = 0;
  while (*p) {
    const char *s;
    size_t len;
    while (*p == '/') p++;
    s = p;
    while (*p && *p != '/') p++;
    len = (size_t)(p - s);
    if (len == 0 || (len == 1 && s[0] == '.')) continue;
    if (len == 2 && s[0] == '.' && s[1] == '.') {
      while (n > 0 && out[n - 1] != '/') n--;
      if (n > 0) n--;
      out[n] = 0;
      continue;
    }
    if (n + 1 + len + 1 > cap) return 0;
    out[n++] = '/';
    memcpy(out + n, s, len);
    n += len;
    out[n] = 0;
  }
  if (n == 0) {
    out[0] = '/';
    out[1] = 0;
  }
  return 1;
}

/* May an input touch path?  Only absolute paths inside g_root (the
** extension resolves every path before it uses it). */
static int ts_fuzz_allowed(const char *path) {
  char norm[2 * PATH_MAX + 2];
  if (!g_sandbox) return 1;
  if (!path || path[0] != '/' || !ts_fuzz_normalize(path, norm, sizeof(norm))) return 0;
  return strncmp(norm, g_root, g_rootlen) == 0 && (norm[g_rootlen] == 0 || norm[g_rootlen] == '/');
}

char *__real_getcwd(char *buf, size_t size);
char *__wrap_getcwd(char *buf, size_t size) {
  if (!g_sandbox) return __real_getcwd(buf, size);
  if (!buf) return strdup(g_root);
  if (size <= g_rootlen) {
    errno = ERANGE;
    return NULL;
  }
  memcpy(buf, g_root, g_rootlen + 1);
  return buf;
}

int __real_mkdir(const char *path, mode_t mode);
int __wrap_mkdir(const char *path, mode_t mode) {
  struct stat st;
  if (!ts_fuzz_allowed(path)) {
    /* mkdir -p walks every ancestor: an existing one is simply there */
    errno = stat(path, &st) == 0 ? EEXIST : EACCES;
    return -1;
  }
  return __real_mkdir(path, mode);
}

int __real_open(const char *path, int flags, ...);
int __wrap_open(const char *path, int flags, ...) {
  mode_t mode = 0;
  if (flags & (O_CREAT | O_TMPFILE)) {
    va_list ap;
    va_start(ap, flags);
    mode = (mode_t)va_arg(ap, int);
    va_end(ap);
  }
  if (!ts_fuzz_allowed(path)) {
    errno = EACCES;
    return -1;
  }
  return __real_open(path, flags, mode);
}

int __real_unlink(const char *path);
int __wrap_unlink(const char *path) {
  if (!ts_fuzz_allowed(path)) {
    errno = EACCES;
    return -1;
  }
  return __real_unlink(path);
}

int __real_rmdir(const char *path);
int __wrap_rmdir(const char *path) {
  if (!ts_fuzz_allowed(path)) {
    errno = EACCES;
    return -1;
  }
  return __real_rmdir(path);
}

int __real_mdb_env_open(MDB_env *env, const char *path, unsigned int flags, mdb_mode_t mode);
int __wrap_mdb_env_open(MDB_env *env, const char *path, unsigned int flags, mdb_mode_t mode) {
  if (!ts_fuzz_allowed(path)) return EACCES;
  return __real_mdb_env_open(env, path, flags, mode);
}

/* Empty the process's ephemeral tiers of the environment directory dir. */
static void ts_fuzz_forget_ephemeral(const struct stat *dir) {
  ts_mem_forget_dir((uint64_t)dir->st_dev, (uint64_t)dir->st_ino);
}

static int ts_fuzz_rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw) {
  if (type == FTW_DP && ftw->level > 0) {
    char f[PATH_MAX + 32];
    snprintf(f, sizeof(f), "%s/data.mdb", path);
    if (access(f, F_OK) == 0) ts_fuzz_forget_ephemeral(st);
    rmdir(path);
  } else if (type == FTW_DP) {
    char f[PATH_MAX + 32];
    snprintf(f, sizeof(f), "%s/data.mdb", path);
    if (access(f, F_OK) == 0) ts_fuzz_forget_ephemeral(st);
  } else if (type != FTW_D) {
    unlink(path);
  }
  return 0;
}

/* Remove everything below g_root (g_root itself stays). */
static void ts_fuzz_clean(void) {
  DIR *d;
  g_sandbox = 0;
  nftw(g_root, ts_fuzz_rm_one, 64, FTW_DEPTH | FTW_PHYS);
  /* the walk stops at directories it cannot read: check it left nothing */
  d = opendir(g_root);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
        fprintf(stderr, "fuzz_sql: could not remove %s/%s\n", g_root, e->d_name);
        abort();
      }
    }
    closedir(d);
  }
}

static void ts_fuzz_at_exit(void) {
  ts_fuzz_clean();
  rmdir(g_root);
}

/* Make the scratch directory (a subdirectory of TIERSTORE_FUZZ_DIR named
** after the process, else a new directory in /dev/shm or $TMPDIR). */
static void ts_fuzz_setup(void) {
  const char *dir = getenv("TIERSTORE_FUZZ_DIR");
  char tmpl[PATH_MAX];
  if (g_rootlen) return;
  unsetenv("TIERSTORE_FAULT");   /* a test-only crash point: never here */
  g_verbose = getenv("TIERSTORE_FUZZ_VERBOSE") != NULL;
  if (dir && dir[0]) {
    /* one subdirectory per process: libFuzzer's -fork and -jobs run
    ** several processes on the same TIERSTORE_FUZZ_DIR */
    char base[PATH_MAX];
    mkdir(dir, 0700);
    if (!realpath(dir, base) || strlen(base) + 24 >= sizeof(g_root)) {
      perror(dir);
      abort();
    }
    snprintf(g_root, sizeof(g_root), "%s/p%ld", base, (long)getpid());
    if (mkdir(g_root, 0700) != 0 && errno != EEXIST) {
      perror(g_root);
      abort();
    }
    atexit(ts_fuzz_at_exit);
  } else {
    const char *tmp = getenv("TMPDIR");
    snprintf(tmpl, sizeof(tmpl), "/dev/shm/tierstore-fuzz-XXXXXX");
    if (!mkdtemp(tmpl)) {
      snprintf(tmpl, sizeof(tmpl), "%s/tierstore-fuzz-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
      if (!mkdtemp(tmpl)) {
        perror(tmpl);
        abort();
      }
    }
    if (!realpath(tmpl, g_root)) abort();
    atexit(ts_fuzz_at_exit);
  }
  g_rootlen = strlen(g_root);
  ts_fuzz_clean();
}

/**************************************************************************
** One input.
*/
static int g_steps;

static int ts_fuzz_progress(void *arg) {
  (void)arg;
  return ++g_steps > TS_FUZZ_MAX_STEPS;
}

/* FNV-1a, to pick the harness's variations deterministically per input. */
static uint32_t ts_fuzz_hash(const uint8_t *p, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
  return h;
}

/* Does s contain word (ASCII case-insensitively)? */
static int ts_fuzz_mentions(const char *s, const char *word) {
  size_t n = strlen(word);
  for (; *s; s++) {
    if (!sqlite3_strnicmp(s, word, (int)n)) return 1;
  }
  return 0;
}

/* Step a statement to its end (or TS_FUZZ_MAX_ROWS rows), reading every
** column of every row the way an application would. */
static int ts_fuzz_step(sqlite3_stmt *st) {
  int rows = 0, rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW && ++rows < TS_FUZZ_MAX_ROWS) {
    int nc = sqlite3_column_count(st);
    for (int i = 0; i < nc; i++) {
      switch (sqlite3_column_type(st, i)) {
        case SQLITE_INTEGER: (void)sqlite3_column_int64(st, i); break;
        case SQLITE_FLOAT: (void)sqlite3_column_double(st, i); break;
        case SQLITE_TEXT: {
          const unsigned char *t = sqlite3_column_text(st, i);
          int n = sqlite3_column_bytes(st, i);
          volatile unsigned char sink = 0;
          if (t && n > 0) sink ^= t[0] ^ t[n - 1];
          (void)sink;
          break;
        }
        case SQLITE_BLOB: {
          const unsigned char *b = sqlite3_column_blob(st, i);
          int n = sqlite3_column_bytes(st, i);
          volatile unsigned char sink = 0;
          if (b && n > 0) sink ^= b[0] ^ b[n - 1];
          (void)sink;
          break;
        }
        default: break;
      }
    }
  }
  return rc;
}

/* A fresh in-memory database with the module registered and the limits
** that keep one input small. */
static sqlite3 *ts_fuzz_open(void) {
  sqlite3 *db = NULL;
  if (sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) abort();
  if (sqlite3_tierstore_init(db, NULL, NULL) != SQLITE_OK) abort();
  sqlite3_limit(db, SQLITE_LIMIT_ATTACHED, 0);
  sqlite3_limit(db, SQLITE_LIMIT_LENGTH, 1 << 18);
  sqlite3_limit(db, SQLITE_LIMIT_SQL_LENGTH, 1 << 16);
  sqlite3_limit(db, SQLITE_LIMIT_EXPR_DEPTH, 64);
  sqlite3_limit(db, SQLITE_LIMIT_COMPOUND_SELECT, 16);
  sqlite3_limit(db, SQLITE_LIMIT_VDBE_OP, 25000);
  sqlite3_limit(db, SQLITE_LIMIT_LIKE_PATTERN_LENGTH, 100);
  sqlite3_limit(db, SQLITE_LIMIT_TRIGGER_DEPTH, 8);
  sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
  sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, NULL);
  sqlite3_progress_handler(db, 10, ts_fuzz_progress, NULL);
  return db;
}

/* Run one statement text through db; report it when verbose. */
static void ts_fuzz_exec(sqlite3 *db, int which, const char *sql) {
  int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
  if (g_verbose) fprintf(stderr, "fuzz_sql[%d]: %s\n  -> %d %s\n", which, sql, rc, rc ? sqlite3_errmsg(db) : "");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sqlite3 *db[2] = {NULL, NULL};
  char *text, *nl, *create, *sql;
  const char *tail;
  int rc, nstmt = 0;
  if (size > TS_FUZZ_MAX_INPUT) return 0;
  ts_fuzz_setup();
  text = malloc(size + 1);
  if (!text) abort();
  memcpy(text, data, size);
  text[size] = 0;                     /* an embedded NUL ends the text */
  nl = strchr(text, '\n');
  sql = nl ? nl + 1 : text + strlen(text);
  if (nl) *nl = 0;
  if (!ts_fuzz_mentions(text, "ephemeral") && (ts_fuzz_hash(data, size) & 3) == 1) {
    create = sqlite3_mprintf("CREATE VIRTUAL TABLE kv USING tierstore(%s, ephemeral='%s')", text,
                             ts_fuzz_eph_rules);
  } else {
    create = sqlite3_mprintf("CREATE VIRTUAL TABLE kv USING tierstore(%s)", text);
  }
  if (!create) abort();

  g_steps = 0;
  g_sandbox = 1;
  db[0] = ts_fuzz_open();
  ts_fuzz_exec(db[0], 1, create);

  tail = sql;
  while (*tail && nstmt < TS_FUZZ_MAX_STMTS && g_steps <= TS_FUZZ_MAX_STEPS) {
    sqlite3_stmt *st = NULL;
    const char *next = NULL;
    int which = 0;
    while (*tail == ' ' || *tail == '\n' || *tail == '\t' || *tail == '\r') tail++;
    if (!strncmp(tail, "/*2*/", 5)) {
      /* the statement runs on a second connection of the process, with
      ** its own in-memory database and its own kv (same arguments) */
      which = 1;
      if (!db[1]) {
        db[1] = ts_fuzz_open();
        ts_fuzz_exec(db[1], 2, create);
      }
    }
    rc = sqlite3_prepare_v2(db[which], tail, -1, &st, &next);
    if (!next || next == tail) {
      sqlite3_finalize(st);
      break;
    }
    tail = next;
    if (rc != SQLITE_OK || !st) continue;   /* a comment, or an error */
    nstmt++;
    rc = ts_fuzz_step(st);
    if (g_verbose) {
      fprintf(stderr, "fuzz_sql[%d]: %s\n  -> %d %s\n", which + 1, sqlite3_sql(st), rc,
              rc == SQLITE_DONE || rc == SQLITE_ROW ? "" : sqlite3_errmsg(db[which]));
    }
    sqlite3_finalize(st);
  }
  sqlite3_free(create);
  for (int i = 0; i < 2; i++) {
    rc = sqlite3_close(db[i]);
    if (rc != SQLITE_OK) {
      fprintf(stderr, "fuzz_sql: sqlite3_close: %d\n", rc);
      abort();
    }
  }
  free(text);
  ts_fuzz_clean();
  return 0;
}

#ifdef TS_FUZZ_STANDALONE
/* Run one file as one input. */
static int ts_fuzz_run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  uint8_t *buf;
  long n;
  if (!f) {
    perror(path);
    return 1;
  }
  fseek(f, 0, SEEK_END);
  n = ftell(f);
  fseek(f, 0, SEEK_SET);
  buf = malloc((size_t)n + 1);
  if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
    perror(path);
    fclose(f);
    free(buf);
    return 1;
  }
  fclose(f);
  LLVMFuzzerTestOneInput(buf, (size_t)n);
  free(buf);
  return 0;
}

/* fuzz_sql FILE|DIR...: run each file (each file of each directory) once. */
int main(int argc, char **argv) {
  int bad = 0, runs = 0;
  ts_fuzz_setup();
  for (int i = 1; i < argc; i++) {
    const char *dir = argv[i];
    struct stat st;
    if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) {
      struct dirent **names = NULL;
      int n = scandir(dir, &names, NULL, alphasort);
      for (int j = 0; j < n; j++) {
        char f[2 * PATH_MAX];
        if (names[j]->d_name[0] != '.') {
          snprintf(f, sizeof(f), "%s/%s", dir, names[j]->d_name);
          bad |= ts_fuzz_run_file(f);
          runs++;
        }
        free(names[j]);
      }
      free(names);
    } else {
      bad |= ts_fuzz_run_file(dir);
      runs++;
    }
  }
  printf("fuzz_sql: %d inputs run\n", runs);
  return bad;
}
#endif
