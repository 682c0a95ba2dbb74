/*
** test_names.c: unit tests of names.c (the ldk and any name rules, the
** ordered key encoding) and of err.c, which names.c reports through.
*/
#include "tierstore_int.h"
#include "check.h"

#include <errno.h>
#include <stdlib.h>

#include <lmdb.h>

/* A name over a C string (no NUL inside). */
static ts_name N(const char *z) {
  ts_name nm = {z, strlen(z)};
  return nm;
}

/* A name over n bytes of p (may hold NUL). */
static ts_name NB(const char *p, size_t n) {
  ts_name nm = {p, n};
  return nm;
}

/* The empty name as callers may pass it: no bytes at all. */
static const ts_name EMPTY = {NULL, 0};

/* A name of n copies of c, in a static buffer per slot (0..2). */
static ts_name rep(int slot, char c, size_t n) {
  static char buf[3][1024];
  memset(buf[slot], c, n);
  return NB(buf[slot], n);
}

/* True if every byte of z is printable ASCII. */
static int printable(const char *z) {
  for (; *z; z++) {
    if ((unsigned char)*z < 0x20 || (unsigned char)*z > 0x7e) return 0;
  }
  return 1;
}

/* Run the check and verify it fails with TS_CONSTRAINT, a printable message
** starting with "tierstore: " and containing want. */
static void expect_fail(ts_names_rule rule, ts_name pns, ts_name sns,
                        ts_name key, const char *want) {
  ts_err err;
  memset(&err, 0, sizeof(err));
  CHECK_EQ_INT(ts_names_check(rule, pns, sns, key, &err), TS_CONSTRAINT);
  CHECK_EQ_INT(err.code, TS_CONSTRAINT);
  CHECK(strncmp(err.msg, "tierstore: ", 11) == 0);
  CHECK(printable(err.msg));
  CHECK_STR_HAS(err.msg, want);
}

/* Run the check and verify it passes without touching err. */
static void expect_ok(ts_names_rule rule, ts_name pns, ts_name sns,
                      ts_name key) {
  ts_err err;
  memset(&err, 0, sizeof(err));
  CHECK_EQ_INT(ts_names_check(rule, pns, sns, key, &err), TS_OK);
  CHECK_EQ_INT(err.code, 0);
}

/* err.c: prefix, formatting, truncation, NULL err. */
static void test_err_set(void) {
  ts_err err;
  char big[2000];

  CHECK_EQ_INT(ts_err_set(&err, TS_IOERR, "x %d %s", 7, "y"), TS_IOERR);
  CHECK_EQ_INT(err.code, TS_IOERR);
  CHECK(strcmp(err.msg, "tierstore: x 7 y") == 0);

  memset(big, 'z', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  CHECK_EQ_INT(ts_err_set(&err, TS_ERROR, "%s", big), TS_ERROR);
  CHECK_EQ_INT(strlen(err.msg), sizeof(err.msg) - 1);
  CHECK(strncmp(err.msg, "tierstore: zzz", 14) == 0);

  CHECK_EQ_INT(ts_err_set(NULL, TS_FULL, "ignored %s", "too"), TS_FULL);
}

/* err.c: every documented LMDB / errno mapping. */
static void test_err_from_lmdb(void) {
  CHECK_EQ_INT(ts_err_from_lmdb(0), TS_OK);
  CHECK_EQ_INT(ts_err_from_lmdb(MDB_NOTFOUND), TS_NOTFOUND);
  CHECK_EQ_INT(ts_err_from_lmdb(ENOMEM), TS_NOMEM);
  CHECK_EQ_INT(ts_err_from_lmdb(MDB_MAP_FULL), TS_FULL);
  CHECK_EQ_INT(ts_err_from_lmdb(ENOSPC), TS_FULL);
  CHECK_EQ_INT(ts_err_from_lmdb(EDQUOT), TS_FULL);
  CHECK_EQ_INT(ts_err_from_lmdb(EACCES), TS_READONLY);
  CHECK_EQ_INT(ts_err_from_lmdb(EROFS), TS_READONLY);
  CHECK_EQ_INT(ts_err_from_lmdb(EPERM), TS_READONLY);
  CHECK_EQ_INT(ts_err_from_lmdb(MDB_CORRUPTED), TS_CORRUPT);
  CHECK_EQ_INT(ts_err_from_lmdb(MDB_INVALID), TS_CORRUPT);
  CHECK_EQ_INT(ts_err_from_lmdb(MDB_PAGE_NOTFOUND), TS_CORRUPT);
  CHECK_EQ_INT(ts_err_from_lmdb(MDB_VERSION_MISMATCH), TS_CORRUPT);
  CHECK_EQ_INT(ts_err_from_lmdb(EIO), TS_IOERR);
  CHECK_EQ_INT(ts_err_from_lmdb(MDB_BAD_TXN), TS_IOERR);
  CHECK_EQ_INT(ts_err_from_lmdb(MDB_READERS_FULL), TS_IOERR);
  CHECK_EQ_INT(ts_err_from_lmdb(EINVAL), TS_IOERR);
}

/* ldk: 0, 1, 120 and 121 characters in each column. */
static void test_ldk_lengths(void) {
  ts_name a = N("a");

  /* primary_namespace */
  expect_ok(TS_NAMES_LDK, EMPTY, EMPTY, a);
  expect_ok(TS_NAMES_LDK, N(""), N(""), a);
  expect_ok(TS_NAMES_LDK, rep(0, 'p', 1), EMPTY, a);
  expect_ok(TS_NAMES_LDK, rep(0, 'p', 120), EMPTY, a);
  expect_fail(TS_NAMES_LDK, rep(0, 'p', 121), EMPTY, a,
              "tierstore: primary_namespace is 121 characters; the ldk name "
              "rule allows at most 120");

  /* secondary_namespace (needs a pns when not empty) */
  expect_ok(TS_NAMES_LDK, a, EMPTY, a);
  expect_ok(TS_NAMES_LDK, a, rep(1, 's', 1), a);
  expect_ok(TS_NAMES_LDK, a, rep(1, 's', 120), a);
  expect_fail(TS_NAMES_LDK, a, rep(1, 's', 121), a,
              "tierstore: secondary_namespace is 121 characters; the ldk "
              "name rule allows at most 120");

  /* key */
  expect_fail(TS_NAMES_LDK, a, a, EMPTY, "tierstore: key must not be empty");
  expect_ok(TS_NAMES_LDK, a, a, rep(2, 'k', 1));
  expect_ok(TS_NAMES_LDK, a, a, rep(2, 'k', 120));
  expect_fail(TS_NAMES_LDK, a, a, rep(2, 'k', 121),
              "tierstore: key is 121 characters; the ldk name rule allows at "
              "most 120");

  /* all three at the maximum: 362 encoded bytes, far below LMDB's limit */
  expect_ok(TS_NAMES_LDK, rep(0, 'p', 120), rep(1, 's', 120),
            rep(2, 'k', 120));
  /* the first broken column is reported */
  expect_fail(TS_NAMES_LDK, rep(0, 'p', 121), rep(1, 's', 121),
              rep(2, 'k', 121), "primary_namespace is 121");
}

/* ldk: each forbidden character class in each column, and every byte. */
static void test_ldk_chars(void) {
  static const char *cols[3] = {"primary_namespace", "secondary_namespace",
                                "key"};
  struct bad {
    ts_name nm;
    const char *shown;
  } bad[] = {
      {N("a b"), "'a b'"},
      {N("a/b"), "'a/b'"},
      {N("a.b"), "'a.b'"},
      {N("caf\xc3\xa9"), "'caf\\xc3\\xa9'"},
      {NB("a\0b", 3), "'a\\x00b'"},
      {N("a\nb"), "'a\\x0ab'"},
      {N("a'b"), "'a\\x27b'"},
      {N("a\\b"), "'a\\x5cb'"},
      {N("a\x7f"), "'a\\x7f'"},
      {N("a:b"), "'a:b'"},
  };
  ts_name ok = N("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                 "0123456789_-");
  size_t i;
  int col, c;
  char want[200];

  expect_ok(TS_NAMES_LDK, ok, ok, ok);
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    for (col = 0; col < 3; col++) {
      ts_name v[3] = {N("p"), N("s"), N("k")};
      v[col] = bad[i].nm;
      snprintf(want, sizeof(want),
               "tierstore: %s %s breaks the ldk name rule: only A-Z, a-z, "
               "0-9, '_' and '-' are allowed",
               cols[col], bad[i].shown);
      expect_fail(TS_NAMES_LDK, v[0], v[1], v[2], want);
    }
  }

  /* every single byte as a key: allowed iff in [A-Za-z0-9_-] */
  for (c = 0; c < 256; c++) {
    char ch = (char)c;
    int allowed = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                  (c >= '0' && c <= '9') || c == '_' || c == '-';
    CHECK_EQ_INT(ts_names_check(TS_NAMES_LDK, EMPTY, EMPTY, NB(&ch, 1), NULL),
                 allowed ? TS_OK : TS_CONSTRAINT);
  }

  /* a forbidden character past 120 characters is reported as such */
  {
    char buf[200];
    memset(buf, 'x', sizeof(buf));
    buf[150] = ' ';
    expect_fail(TS_NAMES_LDK, EMPTY, EMPTY, NB(buf, sizeof(buf)),
                "breaks the ldk name rule");
  }
}

/* The structural rules, shared by ldk and any: empty key, sns without pns. */
static void test_structure(void) {
  ts_names_rule rules[2] = {TS_NAMES_LDK, TS_NAMES_ANY};
  int i;
  for (i = 0; i < 2; i++) {
    expect_fail(rules[i], EMPTY, EMPTY, EMPTY,
                "tierstore: key must not be empty");
    expect_fail(rules[i], N("p"), N("s"), N(""),
                "tierstore: key must not be empty");
    expect_fail(rules[i], EMPTY, N("x"), N("k"),
                "tierstore: secondary_namespace 'x' needs a non-empty "
                "primary_namespace");
    expect_ok(rules[i], EMPTY, EMPTY, N("k"));
    expect_ok(rules[i], N("p"), EMPTY, N("k"));
    expect_ok(rules[i], N("p"), N("s"), N("k"));
  }
  /* err may be NULL: only the code comes back */
  CHECK_EQ_INT(ts_names_check(TS_NAMES_LDK, EMPTY, N("x"), N("k"), NULL),
               TS_CONSTRAINT);
}

/* Long names in messages are cut to about 60 characters, still printable. */
static void test_message_quoting(void) {
  ts_err err;
  char buf[300];
  size_t i;

  for (i = 0; i < sizeof(buf); i++) buf[i] = (char)(i % 2 ? ' ' : 0xff);
  CHECK_EQ_INT(ts_names_check(TS_NAMES_LDK, EMPTY, EMPTY,
                              NB(buf, sizeof(buf)), &err),
               TS_CONSTRAINT);
  CHECK(printable(err.msg));
  CHECK_STR_HAS(err.msg, "tierstore: key '\\xff \\xff ");
  CHECK_STR_HAS(err.msg, "...' breaks the ldk name rule");
  CHECK(strlen(err.msg) < 200);

  CHECK_EQ_INT(ts_names_check(TS_NAMES_ANY, EMPTY, rep(1, 'q', 400),
                              N("k"), &err),
               TS_CONSTRAINT);
  CHECK_STR_HAS(err.msg, "secondary_namespace 'qqqqqqqqqqqqqqqqqqqqqqqqqqqq"
                         "qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq...' needs");
}

/* any: NUL forbidden in every column; everything else goes. */
static void test_any_chars(void) {
  static const char *cols[3] = {"primary_namespace", "secondary_namespace",
                                "key"};
  int col;
  char want[200];

  for (col = 0; col < 3; col++) {
    ts_name v[3] = {N("p"), N("s"), N("k")};
    v[col] = NB("a\0b", 3);
    snprintf(want, sizeof(want),
             "tierstore: %s 'a\\x00b' breaks the any name rule: NUL bytes "
             "are not allowed",
             cols[col]);
    expect_fail(TS_NAMES_ANY, v[0], v[1], v[2], want);
    v[col] = NB("\0", 1);
    expect_fail(TS_NAMES_ANY, v[0], v[1], v[2], "'\\x00' breaks the any");
  }
  expect_ok(TS_NAMES_ANY, N("a b/c.d"), N("caf\xc3\xa9 \x01\xff"),
            N("k\n'\\\x7f"));
  expect_ok(TS_NAMES_ANY, rep(0, 'p', 121), EMPTY, rep(2, 'k', 121));
}

/* any: the 511-byte encoded key limit. */
static void test_any_sizes(void) {
  /* encoded key = pns + sns + key + 2 */
  expect_ok(TS_NAMES_ANY, rep(0, 'p', 100), rep(1, 's', 100),
            rep(2, 'k', 309));
  expect_fail(TS_NAMES_ANY, rep(0, 'p', 100), rep(1, 's', 100),
              rep(2, 'k', 310),
              "tierstore: encoded key is 512 bytes; LMDB allows at most 511 "
              "(names=any)");
  expect_ok(TS_NAMES_ANY, EMPTY, EMPTY, rep(2, 'k', 509));
  expect_fail(TS_NAMES_ANY, EMPTY, EMPTY, rep(2, 'k', 510),
              "encoded key is 512 bytes");
  expect_fail(TS_NAMES_ANY, rep(0, 'p', 200), rep(1, 's', 200),
              rep(2, 'k', 198),
              "tierstore: encoded key is 600 bytes; LMDB allows at most 511 "
              "(names=any)");

  /* long namespaces are fine while the whole encoded key fits */
  expect_ok(TS_NAMES_ANY, rep(0, 'p', 505), rep(1, 's', 3), rep(2, 'k', 1));
  expect_fail(TS_NAMES_ANY, rep(0, 'p', 505), rep(1, 's', 3), rep(2, 'k', 2),
              "encoded key is 512 bytes");
  expect_fail(TS_NAMES_ANY, rep(0, 'p', 600), EMPTY, rep(2, 'k', 1),
              "encoded key is 603 bytes");
}

/* Fill a random name of 0..maxlen bytes drawn from alphabet. */
static ts_name rand_name(char *buf, size_t maxlen, const char *alpha,
                         size_t nalpha) {
  size_t n = (size_t)rand() % (maxlen + 1), i;
  for (i = 0; i < n; i++) buf[i] = alpha[(size_t)rand() % nalpha];
  return NB(buf, n);
}

/* Compare names bytewise, a proper prefix first: the order callers expect. */
static int name_cmp(ts_name a, ts_name b) {
  size_t n = a.n < b.n ? a.n : b.n;
  int c = n ? memcmp(a.p, b.p, n) : 0;
  if (c != 0) return c < 0 ? -1 : 1;
  return a.n < b.n ? -1 : a.n > b.n ? 1 : 0;
}

/* Compare encodings as LMDB does by default (memcmp, then length). */
static int enc_cmp(const unsigned char *a, size_t na, const unsigned char *b,
                   size_t nb) {
  ts_name x = NB((const char *)a, na), y = NB((const char *)b, nb);
  return name_cmp(x, y);
}

/* Encode / decode round trip, ns_len, and the layout byte by byte. */
static void test_encode_decode(void) {
  unsigned char out[TS_ENC_KEY_MAX + 8];
  char alpha[255];
  ts_name p, s, k;
  size_t n;
  int i;

  n = ts_key_encode(N("ab"), N("c"), N("def"), out);
  CHECK_EQ_INT(n, 8);
  CHECK(memcmp(out, "ab\0c\0def", 8) == 0);
  CHECK_EQ_INT(ts_key_ns_len(out, n), 5);

  n = ts_key_encode(EMPTY, EMPTY, N("k"), out);
  CHECK_EQ_INT(n, 3);
  CHECK(memcmp(out, "\0\0k", 3) == 0);
  CHECK_EQ_INT(ts_key_decode(out, n, &p, &s, &k), TS_OK);
  CHECK_EQ_INT(p.n, 0);
  CHECK_EQ_INT(s.n, 0);
  CHECK(k.n == 1 && k.p[0] == 'k');
  CHECK_EQ_INT(ts_key_ns_len(out, n), 2);

  /* two separators and nothing else: empty names decode fine */
  CHECK_EQ_INT(ts_key_decode((const unsigned char *)"\0\0", 2, &p, &s, &k),
               TS_OK);
  CHECK(p.n == 0 && s.n == 0 && k.n == 0);

  /* fewer than two separators is corrupt */
  CHECK_EQ_INT(ts_key_decode((const unsigned char *)"abc", 3, &p, &s, &k),
               TS_CORRUPT);
  CHECK_EQ_INT(ts_key_decode((const unsigned char *)"ab\0cd", 5, &p, &s, &k),
               TS_CORRUPT);
  CHECK_EQ_INT(ts_key_decode((const unsigned char *)"ab\0", 3, &p, &s, &k),
               TS_CORRUPT);
  CHECK_EQ_INT(ts_key_decode(NULL, 0, &p, &s, &k), TS_CORRUPT);
  CHECK_EQ_INT(ts_key_ns_len((const unsigned char *)"ab\0cd", 5), 0);
  CHECK_EQ_INT(ts_key_ns_len(NULL, 0), 0);
  /* the separator search stays within n */
  CHECK_EQ_INT(ts_key_ns_len((const unsigned char *)"a\0b\0c", 3), 0);

  /* random round trips with every non-NUL byte */
  for (i = 1; i < 256; i++) alpha[i - 1] = (char)i;
  for (i = 0; i < 2000; i++) {
    char bp[200], bs[200], bk[200];
    ts_name ip = rand_name(bp, 150, alpha, 255);
    ts_name is = rand_name(bs, 150, alpha, 255);
    ts_name ik = rand_name(bk, 150, alpha, 255);
    n = ts_key_encode(ip, is, ik, out);
    CHECK_EQ_INT(n, ip.n + is.n + ik.n + 2);
    CHECK_EQ_INT(ts_key_ns_len(out, n), ip.n + is.n + 2);
    CHECK_EQ_INT(ts_key_decode(out, n, &p, &s, &k), TS_OK);
    CHECK(name_cmp(p, ip) == 0 && name_cmp(s, is) == 0 &&
          name_cmp(k, ik) == 0);
    CHECK(p.p == (const char *)out);
    CHECK(k.p + k.n == (const char *)out + n);
  }
}

/* Byte order of encodings is (pns, sns, key) tuple order. */
static void test_order(void) {
  /* a tiny alphabet with the extreme bytes makes prefixes and ties common */
  static const char alpha[] = {'\x01', 'a', 'b', '\x7f', '\xff'};
  int i, bad = 0;

  for (i = 0; i < 100000; i++) {
    char b[6][8];
    unsigned char ea[32], eb[32];
    ts_name a[3], z[3];
    size_t na, nb;
    int j, tc = 0, ec;
    for (j = 0; j < 3; j++) {
      a[j] = rand_name(b[j], 3, alpha, sizeof(alpha));
      z[j] = rand_name(b[j + 3], 3, alpha, sizeof(alpha));
    }
    for (j = 0; j < 3 && tc == 0; j++) tc = name_cmp(a[j], z[j]);
    na = ts_key_encode(a[0], a[1], a[2], ea);
    nb = ts_key_encode(z[0], z[1], z[2], eb);
    ec = enc_cmp(ea, na, eb, nb);
    if (ec != tc) bad++;
  }
  CHECK_EQ_INT(bad, 0);

  /* the classic traps: a shorter pns sorts before a longer one sharing it */
  {
    unsigned char e1[16], e2[16];
    size_t n1 = ts_key_encode(N("a"), N("zzz"), N("zzz"), e1);
    size_t n2 = ts_key_encode(N("ab"), EMPTY, N("a"), e2);
    CHECK(enc_cmp(e1, n1, e2, n2) < 0);
    n1 = ts_key_encode(N("a"), N("b"), N("zzz"), e1);
    n2 = ts_key_encode(N("a"), N("bc"), N("a"), e2);
    CHECK(enc_cmp(e1, n1, e2, n2) < 0);
  }
}

/* Prefixes: "pns 0" covers exactly the keys of pns, "pns 0 sns 0" exactly
** the keys of the pair. */
static void test_prefix(void) {
  unsigned char pre[32], key[32];
  ts_name sns = N("s"), none = EMPTY;
  size_t np, nk;

  np = ts_prefix_encode(N("ab"), NULL, pre);
  CHECK_EQ_INT(np, 3);
  CHECK(memcmp(pre, "ab\0", 3) == 0);
  np = ts_prefix_encode(N("ab"), &sns, pre);
  CHECK_EQ_INT(np, 5);
  CHECK(memcmp(pre, "ab\0s\0", 5) == 0);
  np = ts_prefix_encode(EMPTY, &none, pre);
  CHECK_EQ_INT(np, 2);
  CHECK(memcmp(pre, "\0\0", 2) == 0);
  np = ts_prefix_encode(EMPTY, NULL, pre);
  CHECK_EQ_INT(np, 1);

  /* a key of the pair starts with both prefixes, and the prefix equals
  ** its namespace part */
  nk = ts_key_encode(N("ab"), N("s"), N("k"), key);
  np = ts_prefix_encode(N("ab"), &sns, pre);
  CHECK(nk > np && memcmp(key, pre, np) == 0);
  CHECK_EQ_INT(ts_key_ns_len(key, nk), np);
  np = ts_prefix_encode(N("ab"), NULL, pre);
  CHECK(memcmp(key, pre, np) == 0);

  /* neighbours sharing bytes do not share the prefix */
  np = ts_prefix_encode(N("a"), NULL, pre);
  CHECK(memcmp(key, pre, np) != 0);
  np = ts_prefix_encode(N("ab"), &sns, pre);
  nk = ts_key_encode(N("ab"), N("st"), N("k"), key);
  CHECK(memcmp(key, pre, np) != 0);
  nk = ts_key_encode(N("ab"), EMPTY, N("s"), key);
  CHECK(memcmp(key, pre, np < nk ? np : nk) != 0);
}

int main(void) {
  srand(12345);
  test_err_set();
  test_err_from_lmdb();
  test_ldk_lengths();
  test_ldk_chars();
  test_structure();
  test_message_quoting();
  test_any_chars();
  test_any_sizes();
  test_encode_decode();
  test_order();
  test_prefix();
  return CHECK_DONE();
}
