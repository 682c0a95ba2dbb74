/*
** tsfault.c: an LD_PRELOAD shim for tierstore's I/O-fault and power-loss
** tests (tests/faults/).  Test-only; never load it in production.
**
** It intercepts the calls that put bytes into a file or flush them --
** write, pwrite, pwrite64, writev, pwritev, pwritev64, pwritev2,
** pwritev64v2, fsync, fdatasync, msync -- made on files under the directories named by
** TSFAULT_DIR (':'-separated, resolved with realpath; a call's file is found
** with readlink(/proc/self/fd/N), msync's through /proc/self/maps).  Calls on
** other files pass through untouched and uncounted.  It finds the real
** functions with dlsym(RTLD_NEXT).
**
** Environment
**   TSFAULT_DIR=dir[:dir...]   which files count (required for anything)
**   TSFAULT_CALLS=write|sync|all  which calls count (default all).  A write
**                    to a file opened with O_DSYNC/O_SYNC is both a write and
**                    a sync (LMDB writes its meta page that way).
**   TSFAULT_AT=N     fail the Nth counted call (1-based; 0 or unset: never)
**   TSFAULT_TIMES=K  fail K calls from the Nth on (default 1; -1: every call
**                    from the Nth on, a fault that persists until disarmed)
**   TSFAULT_ERRNO=EIO|ENOSPC|EROFS|EDQUOT  the error (default EIO)
**   TSFAULT_SHORT=1  a failing write first writes half of its bytes and
**                    returns that short count (what a filling disk does)
**                    instead of failing outright; syncs still fail
**   TSFAULT_ARMED=0  start disarmed: count nothing until tsfault_arm()
**   TSFAULT_COUNT_FILE=path  one line appended per counted call (after the
**                    call): "n kind path offset length dsync fault"
**   TSFAULT_RECORD=path  record mode: append a binary log of every counted
**                    write (with its bytes, logged before the call) and every
**                    sync (a begin record before the call, an end record
**                    after it succeeded), and O_DSYNC writes as a write plus
**                    a "range synced" record after success.  See
**                    tests/faults/powerloss.py for the reader.
**
** Control from inside the process (ctypes.CDLL(path of this library)):
**   void tsfault_arm(void), tsfault_disarm(void)
**   void tsfault_set(long at, long times, int err, int classes)
**        classes: 1 write, 2 sync, 3 all; err: an errno value (0: keep)
**   long tsfault_calls(void)   counted calls since the last reset
**   long tsfault_faults(void)  faults injected since the last reset
**   void tsfault_reset(void)   counters to 0, the count file emptied
**   void tsfault_mark(const char *text)  a mark record in the log
**
** Log record (little endian): u32 magic 'TSFR', u8 type, u8 pad[3],
** u32 pid, u64 id, i64 offset, u64 length, u32 pathlen, u32 datalen,
** then path bytes, then data bytes.  Types: 1 write (data = the bytes;
** length = their count), 2 sync begin, 3 sync end (offset = the id of its
** begin), 4 mark (path = the text), 5 O_DSYNC write done (offset = the id of
** its write record).
*/
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
/* define pwrite and pwrite64 (etc.) as the distinct symbols they are */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define TSF_WRITE 1
#define TSF_SYNC 2

#define REC_WRITE 1
#define REC_SYNC_BEGIN 2
#define REC_SYNC_END 3
#define REC_MARK 4
#define REC_DSYNC_DONE 5

typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef ssize_t (*pwrite64_fn)(int, const void *, size_t, off64_t);
typedef ssize_t (*writev_fn)(int, const struct iovec *, int);
typedef ssize_t (*pwritev_fn)(int, const struct iovec *, int, off_t);
typedef ssize_t (*pwritev64_fn)(int, const struct iovec *, int, off64_t);
typedef ssize_t (*pwritev2_fn)(int, const struct iovec *, int, off_t, int);
typedef int (*fsync_fn)(int);
typedef int (*msync_fn)(void *, size_t, int);

static write_fn real_write;
static pwrite_fn real_pwrite;
static pwrite64_fn real_pwrite64;
static writev_fn real_writev;
static pwritev_fn real_pwritev;
static pwritev64_fn real_pwritev64;
static pwritev2_fn real_pwritev2, real_pwritev64v2;
static fsync_fn real_fsync, real_fdatasync;
static msync_fn real_msync;

#define MAX_DIRS 8
static char dirs[MAX_DIRS][PATH_MAX];
static size_t ndirs;
static int classes = TSF_WRITE | TSF_SYNC;
static long at_call;            /* 0: inject nothing */
static long times = 1;          /* -1: sticky */
static int inject_errno = EIO;
static int short_writes;
static int armed = 1;
static long calls, faults;
static uint64_t next_id = 1;
static int count_fd = -1, record_fd = -1;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void resolve(void) {
  real_write = (write_fn)dlsym(RTLD_NEXT, "write");
  real_pwrite = (pwrite_fn)dlsym(RTLD_NEXT, "pwrite");
  real_pwrite64 = (pwrite64_fn)dlsym(RTLD_NEXT, "pwrite64");
  real_writev = (writev_fn)dlsym(RTLD_NEXT, "writev");
  real_pwritev = (pwritev_fn)dlsym(RTLD_NEXT, "pwritev");
  real_pwritev64 = (pwritev64_fn)dlsym(RTLD_NEXT, "pwritev64");
  real_pwritev2 = (pwritev2_fn)dlsym(RTLD_NEXT, "pwritev2");
  real_pwritev64v2 = (pwritev2_fn)dlsym(RTLD_NEXT, "pwritev64v2");
  real_fsync = (fsync_fn)dlsym(RTLD_NEXT, "fsync");
  real_fdatasync = (fsync_fn)dlsym(RTLD_NEXT, "fdatasync");
  real_msync = (msync_fn)dlsym(RTLD_NEXT, "msync");
}

static int parse_errno(const char *s) {
  if (!s || !*s || !strcmp(s, "EIO")) return EIO;
  if (!strcmp(s, "ENOSPC")) return ENOSPC;
  if (!strcmp(s, "EROFS")) return EROFS;
  if (!strcmp(s, "EDQUOT")) return EDQUOT;
  if (!strcmp(s, "EACCES")) return EACCES;
  return atoi(s) > 0 ? atoi(s) : EIO;
}

static void init(void) {
  const char *s;
  resolve();
  if ((s = getenv("TSFAULT_DIR")) && *s) {
    const char *p = s;
    while (*p && ndirs < MAX_DIRS) {
      const char *e = strchr(p, ':');
      size_t n = e ? (size_t)(e - p) : strlen(p);
      char raw[PATH_MAX];
      if (n && n < sizeof(raw)) {
        memcpy(raw, p, n);
        raw[n] = 0;
        if (!realpath(raw, dirs[ndirs])) snprintf(dirs[ndirs], PATH_MAX, "%s", raw);
        n = strlen(dirs[ndirs]);
        while (n > 1 && dirs[ndirs][n - 1] == '/') dirs[ndirs][--n] = 0;
        ndirs++;
      }
      if (!e) break;
      p = e + 1;
    }
  }
  if ((s = getenv("TSFAULT_CALLS"))) {
    if (!strcmp(s, "write")) classes = TSF_WRITE;
    else if (!strcmp(s, "sync")) classes = TSF_SYNC;
    else classes = TSF_WRITE | TSF_SYNC;
  }
  if ((s = getenv("TSFAULT_AT"))) at_call = atol(s);
  if ((s = getenv("TSFAULT_TIMES"))) times = atol(s);
  inject_errno = parse_errno(getenv("TSFAULT_ERRNO"));
  if ((s = getenv("TSFAULT_SHORT"))) short_writes = atoi(s) != 0;
  if ((s = getenv("TSFAULT_ARMED"))) armed = atoi(s) != 0;
  if ((s = getenv("TSFAULT_COUNT_FILE")) && *s) {
    count_fd = open(s, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  }
  if ((s = getenv("TSFAULT_RECORD")) && *s) {
    record_fd = open(s, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  }
}

static void ensure(void) { pthread_once(&once, init); }

__attribute__((constructor)) static void tsfault_ctor(void) { ensure(); }

/* Does this path lie under one of the directories? */
static int under(const char *path) {
  for (size_t i = 0; i < ndirs; i++) {
    size_t n = strlen(dirs[i]);
    if (!strncmp(path, dirs[i], n) && (path[n] == '/' || path[n] == 0)) return 1;
  }
  return 0;
}

/* The file behind fd, if it is one we watch. */
static int fd_path(int fd, char *out, size_t cap) {
  char link[64];
  ssize_t n;
  if (!ndirs || fd < 0 || fd == count_fd || fd == record_fd) return 0;
  snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
  n = readlink(link, out, cap - 1);
  if (n <= 0) return 0;
  out[n] = 0;
  return under(out);
}

/* The file mapped at addr (for msync), if it is one we watch. */
static int map_path(const void *addr, char *out, size_t cap) {
  FILE *f;
  char line[PATH_MAX + 256];
  int found = 0;
  if (!ndirs) return 0;
  f = fopen("/proc/self/maps", "re");
  if (!f) return 0;
  while (fgets(line, sizeof(line), f)) {
    unsigned long lo, hi;
    int pos = 0;
    if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &lo, &hi, &pos) < 2 || !pos) continue;
    if ((unsigned long)addr >= lo && (unsigned long)addr < hi) {
      char *p = line + pos;
      size_t n = strlen(p);
      while (n && (p[n - 1] == '\n' || p[n - 1] == ' ')) p[--n] = 0;
      snprintf(out, cap, "%s", p);
      found = under(out);
      break;
    }
  }
  fclose(f);
  return found;
}

static int fd_dsync(int fd) {
  int fl = fcntl(fd, F_GETFL);
  return fl >= 0 && (fl & O_DSYNC) != 0;
}

/* Write everything (the shim's own files: never counted). */
static void put_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n) {
    ssize_t w = real_write(fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    c += w;
    n -= (size_t)w;
  }
}

/* Append one log record (mu held). */
static uint64_t record(int type, const char *path, int64_t offset, uint64_t length,
                       const struct iovec *iov, int iovcnt) {
  struct {
    uint32_t magic;
    uint8_t type, pad[3];
    uint32_t pid;
    uint64_t id;
    int64_t offset;
    uint64_t length;
    uint32_t pathlen, datalen;
  } __attribute__((packed)) h;
  uint64_t id = next_id++;
  size_t plen = path ? strlen(path) : 0, dlen = 0, total;
  char *buf;
  if (record_fd < 0) return id;
  for (int i = 0; i < iovcnt; i++) dlen += iov[i].iov_len;
  memset(&h, 0, sizeof(h));
  h.magic = 0x52465354u;   /* "TSFR" */
  h.type = (uint8_t)type;
  h.pid = (uint32_t)getpid();
  h.id = id;
  h.offset = offset;
  h.length = length;
  h.pathlen = (uint32_t)plen;
  h.datalen = (uint32_t)dlen;
  total = sizeof(h) + plen + dlen;
  buf = malloc(total);
  if (!buf) abort();   /* a log with a hole would make every check wrong */
  memcpy(buf, &h, sizeof(h));
  memcpy(buf + sizeof(h), path, plen);
  {
    char *p = buf + sizeof(h) + plen;
    for (int i = 0; i < iovcnt; i++) {
      memcpy(p, iov[i].iov_base, iov[i].iov_len);
      p += iov[i].iov_len;
    }
  }
  put_all(record_fd, buf, total);   /* one write per record: O_APPEND keeps it whole */
  free(buf);
  return id;
}

/* A counted call: returns 1 when this one must fail (mu not held). */
static int count_call(long *nout) {
  int fail = 0;
  long n;
  pthread_mutex_lock(&mu);
  n = ++calls;
  if (at_call > 0 && n >= at_call && (times < 0 || n < at_call + times)) {
    fail = 1;
    faults++;
  }
  pthread_mutex_unlock(&mu);
  *nout = n;
  return fail;
}

static void count_line(long n, const char *kind, const char *path, int64_t off, uint64_t len,
                       int dsync, int fault) {
  char line[PATH_MAX + 200];
  int k;
  if (count_fd < 0) return;
  k = snprintf(line, sizeof(line), "%ld %s %s %lld %llu %d %d\n", n, kind, path, (long long)off,
               (unsigned long long)len, dsync, fault);
  if (k > 0) put_all(count_fd, line, (size_t)k < sizeof(line) ? (size_t)k : sizeof(line) - 1);
}

/* Common path of every write-like call.  iov describes the bytes; off is
** the position for positioned calls (else the fd's current position is
** used).  call performs the real call on (iov, iovcnt) and returns its
** result.  In record mode the write is logged before the call (a write
** that then fails for a real reason stays in the log: record runs expect
** none). */
typedef ssize_t (*do_fn)(int fd, const struct iovec *iov, int iovcnt, off_t off, void *ctx);

static ssize_t handle_write(const char *kind, int fd, const struct iovec *iov, int iovcnt,
                            off_t off, int positioned, do_fn call, void *ctx) {
  char path[PATH_MAX];
  int dsync, klass, fail = 0;
  long n = 0;
  uint64_t len = 0, wid = 0;
  int64_t where;
  ssize_t rc;
  ensure();
  if (!armed || !fd_path(fd, path, sizeof(path))) return call(fd, iov, iovcnt, off, ctx);
  dsync = fd_dsync(fd);
  klass = TSF_WRITE | (dsync ? TSF_SYNC : 0);
  if (!(klass & classes) && record_fd < 0) return call(fd, iov, iovcnt, off, ctx);
  for (int i = 0; i < iovcnt; i++) len += iov[i].iov_len;
  if (positioned) {
    where = off;
  } else {
    int fl = fcntl(fd, F_GETFL);
    struct stat st;
    if (fl >= 0 && (fl & O_APPEND) && fstat(fd, &st) == 0) where = st.st_size;
    else where = lseek(fd, 0, SEEK_CUR);
  }
  /* TSFAULT_CALLS chooses what is counted (and can fail); everything is
  ** recorded */
  if (klass & classes) fail = count_call(&n);
  if (fail) {
    int e = inject_errno;
    rc = -1;
    if (short_writes && len > 1) {
      /* write the first half, report a short count */
      size_t want = len / 2, have = 0;
      struct iovec part[64];
      int np = 0;
      for (int i = 0; i < iovcnt && have < want && np < 64; i++) {
        part[np] = iov[i];
        if (have + part[np].iov_len > want) part[np].iov_len = want - have;
        have += part[np].iov_len;
        np++;
      }
      pthread_mutex_lock(&mu);
      record(REC_WRITE, path, where, have, part, np);
      pthread_mutex_unlock(&mu);
      rc = call(fd, part, np, off, ctx);
    }
    count_line(n, kind, path, where, len, dsync, 1);
    if (rc < 0) errno = e;
    return rc;
  }
  if (record_fd >= 0) {
    pthread_mutex_lock(&mu);
    wid = record(REC_WRITE, path, where, len, iov, iovcnt);
    pthread_mutex_unlock(&mu);
  }
  rc = call(fd, iov, iovcnt, off, ctx);
  {
    int e = errno;
    if (rc >= 0 && dsync && record_fd >= 0) {
      pthread_mutex_lock(&mu);
      record(REC_DSYNC_DONE, path, (int64_t)wid, (uint64_t)rc, NULL, 0);
      pthread_mutex_unlock(&mu);
    }
    if (klass & classes) count_line(n, kind, path, where, len, dsync, 0);
    errno = e;
  }
  return rc;
}

static ssize_t handle_sync(const char *kind, const char *path, int (*call)(void *), void *ctx) {
  long n = 0;
  uint64_t bid = 0;
  int rc, counted = (classes & TSF_SYNC) != 0;
  if (!counted && record_fd < 0) return call(ctx);
  if (counted && count_call(&n)) {
    count_line(n, kind, path, 0, 0, 0, 1);
    errno = inject_errno;
    return -1;
  }
  if (record_fd >= 0) {
    pthread_mutex_lock(&mu);
    bid = record(REC_SYNC_BEGIN, path, 0, 0, NULL, 0);
    pthread_mutex_unlock(&mu);
  }
  rc = call(ctx);
  {
    int e = errno;
    if (rc == 0 && record_fd >= 0) {
      pthread_mutex_lock(&mu);
      record(REC_SYNC_END, path, (int64_t)bid, 0, NULL, 0);
      pthread_mutex_unlock(&mu);
    }
    if (counted) count_line(n, kind, path, 0, 0, 0, 0);
    errno = e;
  }
  return rc;
}

/* ---- the real calls behind a common signature ---- */

static ssize_t do_write(int fd, const struct iovec *iov, int iovcnt, off_t off, void *ctx) {
  (void)off;
  (void)ctx;
  if (iovcnt == 1) return real_write(fd, iov[0].iov_base, iov[0].iov_len);
  return real_writev(fd, iov, iovcnt);
}
static ssize_t do_pwrite(int fd, const struct iovec *iov, int iovcnt, off_t off, void *ctx) {
  (void)ctx;
  if (iovcnt == 1) return real_pwrite(fd, iov[0].iov_base, iov[0].iov_len, off);
  return real_pwritev(fd, iov, iovcnt, off);
}
static ssize_t do_pwritev2(int fd, const struct iovec *iov, int iovcnt, off_t off, void *ctx) {
  return real_pwritev2(fd, iov, iovcnt, off, *(int *)ctx);
}
static ssize_t do_pwritev64v2(int fd, const struct iovec *iov, int iovcnt, off_t off, void *ctx) {
  return real_pwritev64v2(fd, iov, iovcnt, off, *(int *)ctx);
}

ssize_t write(int fd, const void *buf, size_t n) {
  struct iovec v = {(void *)buf, n};
  ensure();
  return handle_write("write", fd, &v, 1, 0, 0, do_write, NULL);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
  struct iovec v = {(void *)buf, n};
  ensure();
  return handle_write("pwrite", fd, &v, 1, off, 1, do_pwrite, NULL);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off) {
  struct iovec v = {(void *)buf, n};
  ensure();
  return handle_write("pwrite", fd, &v, 1, (off_t)off, 1, do_pwrite, NULL);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
  ensure();
  return handle_write("writev", fd, iov, iovcnt, 0, 0, do_write, NULL);
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off) {
  ensure();
  return handle_write("pwritev", fd, iov, iovcnt, off, 1, do_pwrite, NULL);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int iovcnt, off64_t off) {
  ensure();
  return handle_write("pwritev", fd, iov, iovcnt, (off_t)off, 1, do_pwrite, NULL);
}

ssize_t pwritev2(int fd, const struct iovec *iov, int iovcnt, off_t off, int flags) {
  ensure();
  if (off == -1 || (flags & RWF_APPEND)) {
    /* position-less forms: treat like writev */
    if (!armed) return real_pwritev2(fd, iov, iovcnt, off, flags);
  }
  return handle_write("pwritev2", fd, iov, iovcnt, off, off != -1, do_pwritev2, &flags);
}

/* what programs built with _FILE_OFFSET_BITS=64 call for pwritev2
** (CPython's os.pwritev, for one) */
ssize_t pwritev64v2(int fd, const struct iovec *iov, int iovcnt, off64_t off, int flags) {
  ensure();
  if (off == -1 || (flags & RWF_APPEND)) {
    if (!armed) return real_pwritev64v2(fd, iov, iovcnt, off, flags);
  }
  return handle_write("pwritev2", fd, iov, iovcnt, (off_t)off, off != -1, do_pwritev64v2, &flags);
}

struct fd_ctx { int fd; fsync_fn fn; };
static int do_fdsync(void *ctx) {
  struct fd_ctx *c = ctx;
  return c->fn(c->fd);
}

int fsync(int fd) {
  char path[PATH_MAX];
  struct fd_ctx c;
  ensure();
  c.fd = fd;
  c.fn = real_fsync;
  if (!armed || !fd_path(fd, path, sizeof(path))) return real_fsync(fd);
  return (int)handle_sync("fsync", path, do_fdsync, &c);
}

int fdatasync(int fd) {
  char path[PATH_MAX];
  struct fd_ctx c;
  ensure();
  c.fd = fd;
  c.fn = real_fdatasync;
  if (!armed || !fd_path(fd, path, sizeof(path))) return real_fdatasync(fd);
  return (int)handle_sync("fdatasync", path, do_fdsync, &c);
}

struct ms_ctx { void *addr; size_t len; int flags; };
static int do_msync(void *ctx) {
  struct ms_ctx *c = ctx;
  return real_msync(c->addr, c->len, c->flags);
}

int msync(void *addr, size_t len, int flags) {
  char path[PATH_MAX];
  struct ms_ctx c = {addr, len, flags};
  ensure();
  if (!armed || !map_path(addr, path, sizeof(path))) return real_msync(addr, len, flags);
  return (int)handle_sync("msync", path, do_msync, &c);
}

/* ---- control ---- */

void tsfault_arm(void) {
  ensure();
  pthread_mutex_lock(&mu);
  armed = 1;
  pthread_mutex_unlock(&mu);
}

void tsfault_disarm(void) {
  ensure();
  pthread_mutex_lock(&mu);
  armed = 0;
  pthread_mutex_unlock(&mu);
}

void tsfault_set(long at, long n, int err, int which) {
  ensure();
  pthread_mutex_lock(&mu);
  at_call = at;
  times = n;
  if (err > 0) inject_errno = err;
  if (which) classes = which;
  pthread_mutex_unlock(&mu);
}

long tsfault_calls(void) {
  long n;
  ensure();
  pthread_mutex_lock(&mu);
  n = calls;
  pthread_mutex_unlock(&mu);
  return n;
}

long tsfault_faults(void) {
  long n;
  ensure();
  pthread_mutex_lock(&mu);
  n = faults;
  pthread_mutex_unlock(&mu);
  return n;
}

void tsfault_reset(void) {
  ensure();
  pthread_mutex_lock(&mu);
  calls = faults = 0;
  if (count_fd >= 0 && ftruncate(count_fd, 0) != 0) count_fd = -1;
  pthread_mutex_unlock(&mu);
}

void tsfault_mark(const char *text) {
  ensure();
  pthread_mutex_lock(&mu);
  record(REC_MARK, text, 0, 0, NULL, 0);
  pthread_mutex_unlock(&mu);
}
