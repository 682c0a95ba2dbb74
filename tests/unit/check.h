/*
** check.h: the few macros the C unit tests share.
** A failed CHECK prints file:line and the expression and counts a failure;
** main() returns non-zero when any check failed, which meson test reports.
*/
#ifndef TS_CHECK_H
#define TS_CHECK_H
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int ts_check_failures = 0;
static int ts_check_count = 0;

#define CHECK(expr)                                                        \
  do {                                                                     \
    ts_check_count++;                                                      \
    if (!(expr)) {                                                         \
      ts_check_failures++;                                                 \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,     \
              #expr);                                                      \
    }                                                                      \
  } while (0)

#define CHECK_EQ_INT(a, b)                                                 \
  do {                                                                     \
    long long ts_a_ = (long long)(a), ts_b_ = (long long)(b);              \
    ts_check_count++;                                                      \
    if (ts_a_ != ts_b_) {                                                  \
      ts_check_failures++;                                                 \
      fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n",    \
              __FILE__, __LINE__, #a, #b, ts_a_, ts_b_);                   \
    }                                                                      \
  } while (0)

#define CHECK_STR_HAS(hay, needle)                                         \
  do {                                                                     \
    ts_check_count++;                                                      \
    if (strstr((hay), (needle)) == NULL) {                                 \
      ts_check_failures++;                                                 \
      fprintf(stderr, "%s:%d: CHECK failed: \"%s\" does not contain \"%s\"\n", \
              __FILE__, __LINE__, (hay), (needle));                        \
    }                                                                      \
  } while (0)

/* Temporary directories: tmp_new makes one under /tmp into buf, tmp_rm
** removes a tree (not following symlinks), tmp_drop removes and checks. */
static inline void tmp_new(char *buf, size_t n) {
  snprintf(buf, n, "/tmp/ts_unit_XXXXXX");
  if (mkdtemp(buf) == NULL) {
    perror("mkdtemp");
    exit(2);
  }
}
static inline int tmp_rm_one(const char *p, const struct stat *sb, int flag,
                      struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(p);
}
static inline int tmp_rm(const char *dir) {
  return nftw(dir, tmp_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}
#define tmp_drop(dir)                                                     \
  do {                                                                    \
    CHECK_EQ_INT(tmp_rm(dir), 0);                                         \
    CHECK(access((dir), F_OK) != 0);                                      \
  } while (0)

/* Print the tally and give main() its exit status. */
#define CHECK_DONE()                                                       \
  (printf("%s: %d checks, %d failed\n", __FILE__, ts_check_count,          \
          ts_check_failures),                                              \
   ts_check_failures ? 1 : 0)

#endif
