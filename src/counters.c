/*
** counters.c: the numbers every process of one store hands out, the next
** creation number and the last epoch, kept in a small file mapped shared
** by every process (tierstore.shm beside LMDB's lock.mdb, like it only
** ever written through the mapping, never waited for) and taken with
** atomic compare-and-swap.
**
** Why: a commit that writes only the ephemeral tier touches no disk, yet
** its new keys need creation numbers no other process of the store gives
** to a durable key, and its epoch must order with theirs.  The primary's
** metadata stays the durable floor: each take is max(shared, floor), so
** counters lost in a crash only skip numbers, never reuse them.  Where the
** file cannot be mapped, the counters are process-local.
*/
#include "tierstore_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct ts_counters {
  uint64_t next_rowid;
  uint64_t last_epoch;
};

/* Open (creating) the counters file in an environment's directory;
** process-local counters when it cannot be mapped.  A file this call
** creates gets exactly mode (the umask would narrow it; one that existed
** keeps its own).  NULL only when out of memory. */
ts_counters *ts_counters_open(const char *dir, unsigned mode, int *shared) {
  char path[4200];
  void *p = MAP_FAILED;
  struct stat st;
  int fd;
  snprintf(path, sizeof(path), "%s/%s", dir, TS_COUNTERS_FILE);
  fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd >= 0) {
    /* should it fail, the file stays narrower than asked, never wider,
    ** and its counters stay shared */
    (void)fchmod(fd, mode);
  } else if (errno == EEXIST) {
    fd = open(path, O_RDWR | O_CLOEXEC);
  }
  if (fd >= 0) {
    if (fstat(fd, &st) == 0 && (st.st_size >= (off_t)sizeof(ts_counters) ||
                                ftruncate(fd, sizeof(ts_counters)) == 0)) {
      p = mmap(NULL, sizeof(ts_counters), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    }
    close(fd);
  }
  *shared = p != MAP_FAILED;
  if (*shared) return p;
  return calloc(1, sizeof(ts_counters));
}

/* Release the counters. */
void ts_counters_close(ts_counters *c, int shared) {
  if (!c) return;
  if (shared) munmap(c, sizeof(*c));
  else free(c);
}

/* Take n consecutive creation numbers, none below floor; returns the
** first. */
uint64_t ts_counters_take_rowids(ts_counters *c, uint64_t floor, uint64_t n) {
  uint64_t cur = __atomic_load_n(&c->next_rowid, __ATOMIC_SEQ_CST);
  for (;;) {
    uint64_t first = cur > floor ? cur : floor;
    if (first == 0) first = 1;
    if (__atomic_compare_exchange_n(&c->next_rowid, &cur, first + n, 0, __ATOMIC_SEQ_CST,
                                    __ATOMIC_SEQ_CST)) {
      return first;
    }
  }
}

/* Take the next epoch, above floor and above every epoch taken before. */
uint64_t ts_counters_take_epoch(ts_counters *c, uint64_t floor) {
  uint64_t cur = __atomic_load_n(&c->last_epoch, __ATOMIC_SEQ_CST);
  for (;;) {
    uint64_t next = (cur > floor ? cur : floor) + 1;
    if (__atomic_compare_exchange_n(&c->last_epoch, &cur, next, 0, __ATOMIC_SEQ_CST,
                                    __ATOMIC_SEQ_CST)) {
      return next;
    }
  }
}

/* The last epoch taken or published (at least floor). */
uint64_t ts_counters_epoch(ts_counters *c, uint64_t floor) {
  uint64_t cur = __atomic_load_n(&c->last_epoch, __ATOMIC_SEQ_CST);
  return cur > floor ? cur : floor;
}

/* Record that epoch was committed (the counter only grows). */
void ts_counters_publish_epoch(ts_counters *c, uint64_t epoch) {
  uint64_t cur = __atomic_load_n(&c->last_epoch, __ATOMIC_SEQ_CST);
  while (cur < epoch &&
         !__atomic_compare_exchange_n(&c->last_epoch, &cur, epoch, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
  }
}

/* The next creation number not yet taken (at least floor). */
uint64_t ts_counters_next_rowid(ts_counters *c, uint64_t floor) {
  uint64_t cur = __atomic_load_n(&c->next_rowid, __ATOMIC_SEQ_CST);
  return cur > floor ? cur : floor;
}
