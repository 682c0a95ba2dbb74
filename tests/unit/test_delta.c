/*
** test_delta.c: unit test of src/delta.c, the transaction's ordered write
** set.  Plain C, no SQLite: entries, order, freshness, provisional rowids,
** savepoints against a snapshot model, and sizes from empty to 1 MiB.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tierstore_int.h"
#include "check.h"
#include "keys.h"

/* A small deterministic PRNG so failures reproduce. */
static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

/* Shorthands for a NUL-terminated key and for values. */
#define K(s) (const unsigned char *)(s), strlen(s)
static ts_value vtext(const char *s) {
  ts_value v = {TS_TEXT, 0, 0, s, strlen(s)};
  return v;
}
static ts_value vblob(const void *p, size_t n) {
  ts_value v = {TS_BLOB, 0, 0, p, n};
  return v;
}

/* The delta's key order, written independently: memcmp, then shorter. */
static int key_cmp(const unsigned char *a, size_t na, const unsigned char *b,
                   size_t nb) {
  size_t i;
  for (i = 0; i < na && i < nb; i++) {
    if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
  }
  return na == nb ? 0 : (na < nb ? -1 : 1);
}

/* Put an integer value, non-fresh with rowid 1, and check it worked. */
static void put_int(ts_delta *d, const char *k, int64_t i) {
  ts_value v = vint(i);
  CHECK_EQ_INT(ts_delta_put(d, K(k), &v, 1, 0), TS_OK);
}

/* The integer the delta holds for k, -1 when it says nothing, -2 on DEL. */
static int64_t get_int(ts_delta *d, const char *k) {
  const ts_delta_entry *e = ts_delta_get(d, K(k));
  if (e == NULL) return -1;
  if (e->op == TS_OP_DEL) return -2;
  return e->value.i;
}

/* Put, overwrite with another type, delete, get of absent keys. */
static void test_put_get_del(void) {
  ts_delta *d = ts_delta_new();
  const ts_delta_entry *e;
  ts_value v;
  CHECK(d != NULL);
  CHECK(ts_delta_get(d, K("a")) == NULL);
  CHECK(ts_delta_seek(d, NULL, 0, 0) == NULL);
  CHECK(ts_delta_seek(d, NULL, 0, 1) == NULL);
  CHECK(ts_delta_seek(d, K("a"), 0) == NULL);
  CHECK(ts_delta_seek(d, K("a"), 1) == NULL);

  v = vint(42);
  CHECK_EQ_INT(ts_delta_put(d, K("a"), &v, 7, 0), TS_OK);
  e = ts_delta_get(d, K("a"));
  CHECK(e != NULL);
  CHECK_EQ_INT(e->op, TS_OP_PUT);
  CHECK_EQ_INT(e->value.type, TS_INTEGER);
  CHECK_EQ_INT(e->value.i, 42);
  CHECK_EQ_INT(e->rowid, 7);
  CHECK_EQ_INT(e->fresh, 0);
  CHECK_EQ_INT(e->nkey, 1);
  CHECK(memcmp(e->key, "a", 1) == 0);
  CHECK(ts_delta_get(d, K("ab")) == NULL);
  CHECK(ts_delta_get(d, (const unsigned char *)"", 0) == NULL);

  {
    char buf[8] = "hello";
    v = vtext(buf);
    CHECK_EQ_INT(ts_delta_put(d, K("a"), &v, 7, 0), TS_OK);
    memset(buf, 'x', 5); /* the delta holds a copy */
  }
  e = ts_delta_get(d, K("a"));
  CHECK_EQ_INT(e->value.type, TS_TEXT);
  CHECK_EQ_INT(e->value.n, 5);
  CHECK(memcmp(e->value.p, "hello", 5) == 0);

  v.type = TS_FLOAT;
  v.f = 2.5;
  v.p = "dangling";
  v.n = 8;
  CHECK_EQ_INT(ts_delta_put(d, K("a"), &v, 7, 0), TS_OK);
  e = ts_delta_get(d, K("a"));
  CHECK_EQ_INT(e->value.type, TS_FLOAT);
  CHECK(e->value.f == 2.5);
  CHECK(e->value.p == NULL);
  CHECK_EQ_INT(e->value.n, 0);
  CHECK_EQ_INT(ts_delta_count(d), 1);

  CHECK_EQ_INT(ts_delta_del(d, K("a")), TS_OK);
  e = ts_delta_get(d, K("a"));
  CHECK(e != NULL);
  CHECK_EQ_INT(e->op, TS_OP_DEL);
  CHECK_EQ_INT(e->fresh, 0);
  CHECK_EQ_INT(e->rowid, 0);
  CHECK_EQ_INT(e->value.type, 0);
  CHECK_EQ_INT(ts_delta_count(d), 1);

  /* A DELETE of a key the delta never saw is recorded (it may be stored). */
  CHECK_EQ_INT(ts_delta_del(d, K("z")), TS_OK);
  CHECK_EQ_INT(get_int(d, "z"), -2);
  CHECK_EQ_INT(ts_delta_count(d), 2);

  /* The empty key is a key like any other. */
  put_int(d, "", 5);
  CHECK_EQ_INT(get_int(d, ""), 5);
  e = ts_delta_seek(d, NULL, 0, 0);
  CHECK(e != NULL && e->nkey == 0);
  ts_delta_free(d);
  ts_delta_free(NULL);
}

/* Keys from a tiny alphabet with 0x00 and 0xff, so many are prefixes of
** others and many hold NUL bytes. */
#define ORD_MAXK 10
typedef struct okey okey;
struct okey {
  unsigned char b[ORD_MAXK];
  size_t n;
};
static void okey_random(okey *k) {
  static const unsigned char alpha[] = {0x00, 0x01, 'a', 0xff};
  size_t i;
  k->n = (size_t)(rnd() % (ORD_MAXK + 1));
  for (i = 0; i < k->n; i++) k->b[i] = alpha[rnd() % 4];
}
static int okey_qcmp(const void *a, const void *b) {
  const okey *x = a, *y = b;
  return key_cmp(x->b, x->n, y->b, y->n);
}

/* Sort the reference keys and drop duplicates; returns how many remain. */
static size_t okey_sorted(okey *ref, size_t n) {
  size_t nref = 0;
  qsort(ref, n, sizeof(*ref), okey_qcmp);
  for (size_t i = 0; i < n; i++) {
    if (nref == 0 || okey_qcmp(&ref[nref - 1], &ref[i]) != 0) ref[nref++] = ref[i];
  }
  return nref;
}

/* The delta holds exactly the sorted keys ref: ascending and descending
** iteration and seeks (>= forward, <= backward) to present and absent
** keys agree with it. */
static int order_matches(const ts_delta *d, const okey *ref, size_t nref, int probes) {
  const ts_delta_entry *e;
  size_t i, j;
  if (ts_delta_count(d) != nref) return 0;
  for (i = 0, e = ts_delta_seek(d, NULL, 0, 0); e; e = ts_delta_step(d, e, 0), i++) {
    if (i >= nref || key_cmp(e->key, e->nkey, ref[i].b, ref[i].n)) return 0;
  }
  if (i != nref) return 0;
  for (i = nref, e = ts_delta_seek(d, NULL, 0, 1); e; e = ts_delta_step(d, e, 1)) {
    if (i == 0 || key_cmp(e->key, e->nkey, ref[i - 1].b, ref[i - 1].n)) return 0;
    i--;
  }
  if (i != 0) return 0;
  for (int k = 0; k < probes; k++) {
    okey p;
    const ts_delta_entry *ge, *le;
    okey_random(&p);
    if (k % 4 == 0 && nref > 0) p = ref[rnd() % nref];
    ge = ts_delta_seek(d, p.b, p.n, 0);
    le = ts_delta_seek(d, p.b, p.n, 1);
    for (j = 0; j < nref && key_cmp(ref[j].b, ref[j].n, p.b, p.n) < 0; j++) {
    }
    /* j: first reference key >= p */
    if (j == nref ? ge != NULL : ge == NULL || key_cmp(ge->key, ge->nkey, ref[j].b, ref[j].n)) {
      return 0;
    }
    if (j < nref && key_cmp(ref[j].b, ref[j].n, p.b, p.n) == 0) j++;
    /* j: first reference key > p, so j-1 is the last <= p */
    if (j == 0 ? le != NULL : le == NULL || key_cmp(le->key, le->nkey, ref[j - 1].b, ref[j - 1].n)) {
      return 0;
    }
  }
  return 1;
}

/* Ascending and descending iteration and seeks over random keys match a
** sorted reference. */
static void test_order(void) {
  enum { N = 3000, PROBES = 2000 };
  ts_delta *d = ts_delta_new();
  okey *ref = malloc(N * sizeof(*ref));
  size_t nref;
  for (size_t i = 0; i < N; i++) {
    ts_value v = vint((int64_t)i);
    okey_random(&ref[i]);
    CHECK_EQ_INT(ts_delta_put(d, ref[i].b, ref[i].n, &v, 1, 0), TS_OK);
  }
  nref = okey_sorted(ref, N);
  CHECK(nref > 500); /* the alphabet leaves room for many distinct keys */
  CHECK(order_matches(d, ref, nref, PROBES));
  free(ref);
  ts_delta_free(d);
}

/* Writes wait unlinked until the next ordered read: batches of every size,
** from one key into a long list (linked one by one) to batches as large as
** the list (sorted and merged), each checked against the reference.  The
** keys are longer than okey's so the list grows large. */
static void test_order_batches(void) {
  static const size_t batch[] = {1, 2, 40, 1, 700, 3, 5000, 1, 17, 300, 9000, 2, 1};
  enum { MAXN = 20000 };
  ts_delta *d = ts_delta_new();
  okey *ref = malloc(MAXN * sizeof(*ref));
  size_t n = 0;
  int ok = 1;
  for (size_t b = 0; b < sizeof(batch) / sizeof(batch[0]); b++) {
    for (size_t i = 0; i < batch[b]; i++) {
      ts_value v = vint((int64_t)n);
      okey *k = &ref[n++];
      okey_random(k);
      for (size_t j = k->n; j < 4; j++) k->b[j] = 'a';
      for (size_t j = 4; j < ORD_MAXK; j++) k->b[j] = (unsigned char)rnd();
      k->n = ORD_MAXK;
      if (ts_delta_put(d, k->b, k->n, &v, 1, 0) != TS_OK) ok = 0;
    }
    n = okey_sorted(ref, n);
    if (!order_matches(d, ref, n, 50)) ok = 0;
  }
  CHECK(ok);
  CHECK(n > 15000);
  free(ref);
  ts_delta_free(d);
}

/* Keys alike in their first 40 bytes (beyond what the batch sort looks at
** before comparing whole keys), in several namespaces, sort right. */
static void test_order_long_keys(void) {
  enum { N = 5000 };
  ts_delta *d = ts_delta_new();
  const ts_delta_entry *e, *p;
  size_t seen = 0;
  int ok = 1;
  for (int i = 0; i < N; i++) {
    char k[80];
    ts_value v = vint(i);
    int n = snprintf(k, sizeof(k), "ns%d%c%s%08llx", i % 3, 0,
                     "the-same-forty-bytes-for-every-key-here",
                     (unsigned long long)(rnd() & 0xffffffffu));
    if (ts_delta_put(d, (const unsigned char *)k, (size_t)n, &v, 1, 0) != TS_OK) ok = 0;
  }
  for (p = NULL, e = ts_delta_seek(d, NULL, 0, 0); e; p = e, e = ts_delta_step(d, e, 0), seen++) {
    if (p && key_cmp(p->key, p->nkey, e->key, e->nkey) >= 0) ok = 0;
  }
  CHECK(ok);
  CHECK_EQ_INT(seen, ts_delta_count(d));
  CHECK(seen > N - 10);
  ts_delta_free(d);
}

/* A cursor's entry steps onto keys written after it was taken. */
static void test_step_sees_later_writes(void) {
  ts_delta *d = ts_delta_new();
  const ts_delta_entry *e;
  put_int(d, "b", 1);
  put_int(d, "f", 2);
  e = ts_delta_seek(d, K("b"), 0);
  CHECK(e != NULL && e->nkey == 1 && e->key[0] == 'b');
  put_int(d, "d", 3);
  put_int(d, "c", 4);
  put_int(d, "a", 5);
  e = ts_delta_step(d, e, 0);
  CHECK(e != NULL && e->key[0] == 'c');
  e = ts_delta_step(d, e, 0);
  CHECK(e != NULL && e->key[0] == 'd');
  CHECK(ts_delta_step(d, e, 1)->key[0] == 'c');
  e = ts_delta_seek(d, NULL, 0, 0);
  CHECK(e != NULL && e->key[0] == 'a');
  ts_delta_free(d);
}

/* New keys are numbered in provisional rowid order, not key order; one
** undone, deleted or never written leaves no gap. */
static void test_fresh_ranks(void) {
  static const char *keys[] = {"e", "d", "c", "b", "a"};
  ts_delta *d = ts_delta_new();
  ts_fresh f;
  ts_value v = vint(1);
  for (int i = 0; i < 5; i++) {
    CHECK_EQ_INT(ts_delta_put(d, K(keys[i]), &v, ts_delta_new_rowid(d), 1), TS_OK);
  }
  CHECK_EQ_INT(ts_delta_put(d, K("stored"), &v, 7, 0), TS_OK);
  CHECK_EQ_INT(ts_delta_fresh(d, &f), TS_OK);
  CHECK_EQ_INT(f.n, 5);
  for (int i = 0; i < 5; i++) CHECK_EQ_INT(ts_fresh_rank(&f, ts_delta_get(d, K(keys[i]))), i);
  CHECK_EQ_INT(ts_fresh_rank(&f, ts_delta_get(d, K("stored"))), -1);
  ts_fresh_free(&f);

  CHECK_EQ_INT(ts_delta_del(d, K("d")), TS_OK);       /* the second new key goes */
  CHECK_EQ_INT(ts_delta_fresh(d, &f), TS_OK);
  CHECK_EQ_INT(f.n, 4);
  CHECK_EQ_INT(ts_fresh_rank(&f, ts_delta_get(d, K("c"))), 1);
  ts_fresh_free(&f);
  (void)ts_delta_new_rowid(d);                          /* a number never written */
  CHECK_EQ_INT(ts_delta_savepoint(d, 0), TS_OK);
  CHECK_EQ_INT(ts_delta_put(d, K("f"), &v, ts_delta_new_rowid(d), 1), TS_OK);
  ts_delta_rollback_to(d, 0);                           /* and one undone */
  CHECK_EQ_INT(ts_delta_put(d, K("g"), &v, ts_delta_new_rowid(d), 1), TS_OK);
  CHECK_EQ_INT(ts_delta_fresh(d, &f), TS_OK);
  CHECK_EQ_INT(f.n, 5);
  CHECK_EQ_INT(ts_fresh_rank(&f, ts_delta_get(d, K("e"))), 0);
  CHECK_EQ_INT(ts_fresh_rank(&f, ts_delta_get(d, K("c"))), 1);
  CHECK_EQ_INT(ts_fresh_rank(&f, ts_delta_get(d, K("b"))), 2);
  CHECK_EQ_INT(ts_fresh_rank(&f, ts_delta_get(d, K("a"))), 3);
  CHECK_EQ_INT(ts_fresh_rank(&f, ts_delta_get(d, K("g"))), 4);
  CHECK(ts_delta_get(d, K("f")) == NULL);
  ts_fresh_free(&f);
  ts_delta_free(d);
}

/* A classifier for test_classify: keys starting with 'e' are
** ephemeral-tier ones; counts its calls. */
static int classify_calls;
static int classify_e(const void *ctx, const unsigned char *key, size_t nkey) {
  (void)ctx;
  classify_calls++;
  return nkey > 0 && key[0] == 'e';
}

/* Entries carry their tier, asked once per key, and the delta counts the
** live ephemeral-tier ones through writes, undo and reset. */
static void test_classify(void) {
  ts_delta *d = ts_delta_new();
  ts_delta_classify(d, classify_e, NULL);
  put_int(d, "e1", 1);
  put_int(d, "p1", 2);
  put_int(d, "e2", 3);
  put_int(d, "e1", 4);
  CHECK_EQ_INT(classify_calls, 3);
  CHECK_EQ_INT(ts_delta_count(d), 3);
  CHECK_EQ_INT(ts_delta_count_ephemeral(d), 2);
  CHECK(ts_delta_get(d, K("e1"))->ephemeral && !ts_delta_get(d, K("p1"))->ephemeral);
  CHECK_EQ_INT(ts_delta_del(d, K("e2")), TS_OK);   /* a DEL still says something */
  CHECK_EQ_INT(ts_delta_count_ephemeral(d), 2);
  CHECK_EQ_INT(ts_delta_savepoint(d, 0), TS_OK);
  put_int(d, "e3", 5);
  put_int(d, "p2", 6);
  CHECK_EQ_INT(ts_delta_count_ephemeral(d), 3);
  ts_delta_rollback_to(d, 0);
  CHECK_EQ_INT(ts_delta_count(d), 3);
  CHECK_EQ_INT(ts_delta_count_ephemeral(d), 2);
  ts_delta_reset(d);
  CHECK_EQ_INT(ts_delta_count_ephemeral(d), 0);
  put_int(d, "e1", 7);
  CHECK_EQ_INT(ts_delta_count_ephemeral(d), 1);
  ts_delta_free(d);
}

/* Explicit prefix and NUL cases, to read in a failure report. */
static void test_order_prefix(void) {
  ts_delta *d = ts_delta_new();
  static const struct { const char *b; size_t n; } keys[] = {
      {"b", 1}, {"a\0b", 3}, {"a", 1}, {"", 0}, {"a\0", 2}, {"ab", 2},
      {"\0", 1}, {"a\0\0", 3}};
  static const char *order[] = {"", "\0", "a", "a\0", "a\0\0", "a\0b", "ab",
                                "b"};
  static const size_t order_n[] = {0, 1, 1, 2, 3, 3, 2, 1};
  const ts_delta_entry *e;
  size_t i;
  for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
    ts_value v = vint((int64_t)i);
    CHECK_EQ_INT(ts_delta_put(d, (const unsigned char *)keys[i].b, keys[i].n,
                              &v, 1, 0), TS_OK);
  }
  for (i = 0, e = ts_delta_seek(d, NULL, 0, 0); e;
       e = ts_delta_step(d, e, 0), i++) {
    CHECK(i < 8 && e->nkey == order_n[i] &&
          memcmp(e->key, order[i], e->nkey) == 0);
  }
  CHECK_EQ_INT(i, 8);
  /* "a\0\x01" sits between "a\0\0" and "a\0b". */
  e = ts_delta_seek(d, (const unsigned char *)"a\0\x01", 3, 0);
  CHECK(e && e->nkey == 3 && memcmp(e->key, "a\0b", 3) == 0);
  e = ts_delta_seek(d, (const unsigned char *)"a\0\x01", 3, 1);
  CHECK(e && e->nkey == 3 && memcmp(e->key, "a\0\0", 3) == 0);
  /* Exact hits in both directions, and the ends. */
  e = ts_delta_seek(d, (const unsigned char *)"a\0", 2, 1);
  CHECK(e && e->nkey == 2 && memcmp(e->key, "a\0", 2) == 0);
  e = ts_delta_seek(d, (const unsigned char *)"a\0", 2, 0);
  CHECK(e && e->nkey == 2 && memcmp(e->key, "a\0", 2) == 0);
  CHECK(ts_delta_seek(d, K("c"), 0) == NULL);
  e = ts_delta_seek(d, K("c"), 1);
  CHECK(e && e->nkey == 1 && e->key[0] == 'b');
  e = ts_delta_seek(d, (const unsigned char *)"", 0, 1);
  CHECK(e && e->nkey == 0);
  CHECK(ts_delta_step(d, e, 1) == NULL);
  e = ts_delta_seek(d, NULL, 0, 1);
  CHECK(e && e->nkey == 1 && e->key[0] == 'b');
  CHECK(ts_delta_step(d, e, 0) == NULL);
  ts_delta_free(d);
}

/* A PUT over a fresh PUT stays fresh with its rowid; over anything else it
** takes what the caller says. */
static void test_fresh_sticky(void) {
  ts_delta *d = ts_delta_new();
  ts_value v = vint(1);
  const ts_delta_entry *e;
  uint64_t r1 = ts_delta_new_rowid(d), r2 = ts_delta_new_rowid(d);

  CHECK_EQ_INT(ts_delta_put(d, K("k"), &v, r1, 1), TS_OK);
  v = vint(2);
  CHECK_EQ_INT(ts_delta_put(d, K("k"), &v, 99, 0), TS_OK);
  e = ts_delta_get(d, K("k"));
  CHECK_EQ_INT(e->fresh, 1);
  CHECK(e->rowid == r1);
  CHECK_EQ_INT(e->value.i, 2);
  CHECK_EQ_INT(ts_delta_put(d, K("k"), &v, r2, 1), TS_OK);
  CHECK(ts_delta_get(d, K("k"))->rowid == r1);

  /* Not fresh: a later fresh PUT is taken as given, and so is a later
  ** non-fresh one. */
  CHECK_EQ_INT(ts_delta_put(d, K("s"), &v, 5, 0), TS_OK);
  CHECK_EQ_INT(ts_delta_put(d, K("s"), &v, r2, 1), TS_OK);
  e = ts_delta_get(d, K("s"));
  CHECK_EQ_INT(e->fresh, 1);
  CHECK(e->rowid == r2);

  /* After a DELETE the key is no longer a fresh PUT. */
  CHECK_EQ_INT(ts_delta_del(d, K("k")), TS_OK);
  CHECK_EQ_INT(ts_delta_put(d, K("k"), &v, 9, 0), TS_OK);
  e = ts_delta_get(d, K("k"));
  CHECK_EQ_INT(e->fresh, 0);
  CHECK_EQ_INT(e->rowid, 9);
  ts_delta_free(d);
}

/* Provisional rowids count up from TS_ROWID_PROVISIONAL + 1 and find their
** live fresh PUT, and nothing once it is deleted or undone. */
/* A PUT that keeps a stored rowid answers for it within the transaction
** (a later DELETE by rowid must find the row even when the stored key is
** gone), until a later write, an undo or the reset takes that back. */
static void test_kept_rowids(void) {
  ts_delta *d = ts_delta_new();
  ts_value v = vint(1);
  char name[16];
  CHECK(ts_delta_by_rowid(d, 7) == NULL);
  CHECK_EQ_INT(ts_delta_put(d, K("kept"), &v, 7, 0), TS_OK);
  CHECK(ts_delta_by_rowid(d, 7) == ts_delta_get(d, K("kept")));
  CHECK(ts_delta_by_rowid(d, 8) == NULL);
  CHECK_EQ_INT(ts_delta_put(d, K("kept"), &v, 7, 0), TS_OK);   /* again: one entry */
  CHECK(ts_delta_by_rowid(d, 7) == ts_delta_get(d, K("kept")));

  CHECK_EQ_INT(ts_delta_savepoint(d, 0), TS_OK);
  CHECK_EQ_INT(ts_delta_del(d, K("kept")), TS_OK);
  CHECK(ts_delta_by_rowid(d, 7) == NULL);                        /* deleted */
  ts_delta_rollback_to(d, 0);
  CHECK(ts_delta_by_rowid(d, 7) == ts_delta_get(d, K("kept")));  /* undone */
  CHECK_EQ_INT(ts_delta_savepoint(d, 1), TS_OK);
  CHECK_EQ_INT(ts_delta_put(d, K("other"), &v, 9, 0), TS_OK);
  CHECK(ts_delta_by_rowid(d, 9) == ts_delta_get(d, K("other")));
  ts_delta_rollback_to(d, 1);
  CHECK(ts_delta_by_rowid(d, 9) == NULL);                        /* never written */

  /* many: the hash grows and keeps every one */
  for (int i = 0; i < 3000; i++) {
    snprintf(name, sizeof(name), "k%05d", i);
    CHECK_EQ_INT(ts_delta_put(d, (const unsigned char *)name, strlen(name), &v, 100 + (uint64_t)i, 0), TS_OK);
  }
  for (int i = 0; i < 3000; i++) {
    const ts_delta_entry *e = ts_delta_by_rowid(d, 100 + (uint64_t)i);
    snprintf(name, sizeof(name), "k%05d", i);
    CHECK(e != NULL && e->nkey == strlen(name) && memcmp(e->key, name, e->nkey) == 0);
  }
  CHECK(ts_delta_by_rowid(d, 7) == ts_delta_get(d, K("kept")));
  ts_delta_reset(d);
  CHECK(ts_delta_by_rowid(d, 7) == NULL);
  CHECK(ts_delta_by_rowid(d, 150) == NULL);
  ts_delta_free(d);
}

static void test_provisional(void) {
  ts_delta *d = ts_delta_new();
  ts_value v = vint(1);
  uint64_t r1, r2, r3, r4;
  const ts_delta_entry *e;

  r1 = ts_delta_new_rowid(d);
  r2 = ts_delta_new_rowid(d);
  CHECK(r1 == TS_ROWID_PROVISIONAL + 1);
  CHECK(r2 == TS_ROWID_PROVISIONAL + 2);
  CHECK(ts_delta_by_rowid(d, r1) == NULL); /* handed out, not used yet */
  CHECK(ts_delta_by_rowid(d, TS_ROWID_PROVISIONAL) == NULL);
  CHECK(ts_delta_by_rowid(d, TS_ROWID_PROVISIONAL + 1000) == NULL);
  CHECK(ts_delta_by_rowid(d, 0) == NULL);
  CHECK(ts_delta_by_rowid(d, 1) == NULL);
  CHECK(ts_delta_by_rowid(d, UINT64_MAX) == NULL);

  CHECK_EQ_INT(ts_delta_put(d, K("one"), &v, r1, 1), TS_OK);
  CHECK_EQ_INT(ts_delta_put(d, K("two"), &v, r2, 1), TS_OK);
  e = ts_delta_by_rowid(d, r1);
  CHECK(e != NULL && e == ts_delta_get(d, K("one")));
  e = ts_delta_by_rowid(d, r2);
  CHECK(e != NULL && e == ts_delta_get(d, K("two")));

  /* Deleted: gone; a non-fresh PUT does not take the rowid either. */
  CHECK_EQ_INT(ts_delta_del(d, K("one")), TS_OK);
  CHECK(ts_delta_by_rowid(d, r1) == NULL);
  CHECK_EQ_INT(ts_delta_put(d, K("one"), &v, r1, 0), TS_OK);
  CHECK(ts_delta_by_rowid(d, r1) == NULL);

  /* Rolled back: gone, and the counter does not go back. */
  CHECK_EQ_INT(ts_delta_savepoint(d, 0), TS_OK);
  r3 = ts_delta_new_rowid(d);
  CHECK_EQ_INT(ts_delta_put(d, K("three"), &v, r3, 1), TS_OK);
  CHECK(ts_delta_by_rowid(d, r3) == ts_delta_get(d, K("three")));
  ts_delta_rollback_to(d, 0);
  CHECK(ts_delta_by_rowid(d, r3) == NULL);
  CHECK(ts_delta_get(d, K("three")) == NULL);
  r4 = ts_delta_new_rowid(d);
  CHECK(r4 == TS_ROWID_PROVISIONAL + 4);

  /* A DELETE undone brings the rowid back. */
  CHECK_EQ_INT(ts_delta_del(d, K("two")), TS_OK);
  CHECK(ts_delta_by_rowid(d, r2) == NULL);
  ts_delta_rollback_to(d, 0);
  CHECK(ts_delta_by_rowid(d, r2) == ts_delta_get(d, K("two")));

  /* A row that moves to another key with its rowid, then moves back by
  ** ROLLBACK TO: the rowid finds the original key again. */
  CHECK_EQ_INT(ts_delta_del(d, K("two")), TS_OK);
  CHECK_EQ_INT(ts_delta_put(d, K("moved"), &v, r2, 1), TS_OK);
  CHECK(ts_delta_by_rowid(d, r2) == ts_delta_get(d, K("moved")));
  ts_delta_rollback_to(d, 0);
  e = ts_delta_by_rowid(d, r2);
  CHECK(e != NULL && e == ts_delta_get(d, K("two")));
  CHECK(ts_delta_get(d, K("moved")) == NULL);
  ts_delta_release(d, 0);

  /* Many rowids: the index grows. */
  {
    int i, ok = 1;
    char key[32];
    uint64_t rs[5000];
    for (i = 0; i < 5000; i++) {
      rs[i] = ts_delta_new_rowid(d);
      snprintf(key, sizeof(key), "many%d", i);
      if (ts_delta_put(d, K(key), &v, rs[i], 1) != TS_OK) ok = 0;
    }
    for (i = 0; i < 5000; i++) {
      snprintf(key, sizeof(key), "many%d", i);
      e = ts_delta_by_rowid(d, rs[i]);
      if (e == NULL || e != ts_delta_get(d, K(key))) ok = 0;
    }
    CHECK(ok);
  }
  ts_delta_free(d);
}

/* Nested savepoints: ROLLBACK TO undoes exactly its part, RELEASE keeps
** the writes, a level between two marks rolls back to the upper one. */
static void test_savepoints(void) {
  ts_delta *d = ts_delta_new();
  const ts_delta_entry *e;

  /* Without a mark nothing is undone. */
  put_int(d, "a", 1);
  ts_delta_rollback_to(d, 0);
  CHECK_EQ_INT(get_int(d, "a"), 1);

  CHECK_EQ_INT(ts_delta_savepoint(d, 0), TS_OK);
  put_int(d, "a", 2);
  put_int(d, "b", 2);
  CHECK_EQ_INT(ts_delta_savepoint(d, 1), TS_OK);
  put_int(d, "a", 3);
  CHECK_EQ_INT(ts_delta_del(d, K("b")), TS_OK);
  put_int(d, "c", 3);
  CHECK_EQ_INT(ts_delta_savepoint(d, 2), TS_OK);
  put_int(d, "a", 4);
  put_int(d, "d", 4);
  CHECK_EQ_INT(ts_delta_count(d), 4);

  ts_delta_rollback_to(d, 2);
  CHECK_EQ_INT(get_int(d, "a"), 3);
  CHECK_EQ_INT(get_int(d, "b"), -2);
  CHECK_EQ_INT(get_int(d, "c"), 3);
  CHECK_EQ_INT(get_int(d, "d"), -1);
  CHECK_EQ_INT(ts_delta_count(d), 3);
  /* The undone entry is still linked, as NONE, for iterators. */
  e = ts_delta_seek(d, K("d"), 0);
  CHECK(e != NULL && e->op == TS_OP_NONE && e->nkey == 1 && e->key[0] == 'd');

  ts_delta_rollback_to(d, 1);
  CHECK_EQ_INT(get_int(d, "a"), 2);
  CHECK_EQ_INT(get_int(d, "b"), 2);
  CHECK_EQ_INT(get_int(d, "c"), -1);
  CHECK_EQ_INT(ts_delta_count(d), 2);

  /* RELEASE 1 keeps the writes made under it; ROLLBACK TO 0 undoes them. */
  put_int(d, "e", 5);
  ts_delta_release(d, 1);
  CHECK_EQ_INT(get_int(d, "e"), 5);
  ts_delta_rollback_to(d, 1); /* no mark at or above 1 left: no-op */
  CHECK_EQ_INT(get_int(d, "e"), 5);
  ts_delta_rollback_to(d, 0);
  CHECK_EQ_INT(get_int(d, "a"), 1);
  CHECK_EQ_INT(get_int(d, "b"), -1);
  CHECK_EQ_INT(get_int(d, "e"), -1);
  CHECK_EQ_INT(ts_delta_count(d), 1);

  /* RELEASE of the outermost savepoint: nothing can be undone after. */
  put_int(d, "f", 6);
  ts_delta_release(d, 0);
  ts_delta_rollback_to(d, 0);
  CHECK_EQ_INT(get_int(d, "f"), 6);

  /* Marks 0 and 2, ROLLBACK TO 1: undo to mark 2, which becomes mark 1. */
  CHECK_EQ_INT(ts_delta_savepoint(d, 0), TS_OK);
  put_int(d, "g", 7);
  CHECK_EQ_INT(ts_delta_savepoint(d, 2), TS_OK);
  put_int(d, "h", 8);
  ts_delta_rollback_to(d, 1);
  CHECK_EQ_INT(get_int(d, "g"), 7);
  CHECK_EQ_INT(get_int(d, "h"), -1);
  put_int(d, "i", 9);
  ts_delta_rollback_to(d, 1); /* savepoint 1 is active now */
  CHECK_EQ_INT(get_int(d, "i"), -1);
  CHECK_EQ_INT(get_int(d, "g"), 7);
  ts_delta_rollback_to(d, 0);
  CHECK_EQ_INT(get_int(d, "g"), -1);
  CHECK_EQ_INT(get_int(d, "f"), 6);

  /* A savepoint at a level already open replaces it and those above. */
  CHECK_EQ_INT(ts_delta_savepoint(d, 1), TS_OK);
  put_int(d, "j", 10);
  CHECK_EQ_INT(ts_delta_savepoint(d, 2), TS_OK);
  put_int(d, "k", 11);
  CHECK_EQ_INT(ts_delta_savepoint(d, 1), TS_OK); /* after j and k */
  put_int(d, "l", 12);
  ts_delta_rollback_to(d, 2); /* no mark at or above 2: no-op */
  CHECK_EQ_INT(get_int(d, "l"), 12);
  ts_delta_rollback_to(d, 1);
  CHECK_EQ_INT(get_int(d, "l"), -1);
  CHECK_EQ_INT(get_int(d, "k"), 11);
  CHECK_EQ_INT(get_int(d, "j"), 10);
  ts_delta_rollback_to(d, 0); /* mark 0 is still there below */
  CHECK_EQ_INT(get_int(d, "j"), -1);
  CHECK_EQ_INT(get_int(d, "k"), -1);
  CHECK_EQ_INT(get_int(d, "f"), 6);

  /* Several writes to one key under one mark undo to the first state. */
  put_int(d, "f", 60);
  CHECK_EQ_INT(ts_delta_del(d, K("f")), TS_OK);
  put_int(d, "f", 61);
  ts_delta_rollback_to(d, 0);
  CHECK_EQ_INT(get_int(d, "f"), 6);
  ts_delta_release(d, 0);
  ts_delta_free(d);
}

/* Late join: the first mark comes at level 3 on an empty delta, and
** ROLLBACK TO 0 (an outer savepoint) undoes everything since. */
static void test_late_join(void) {
  ts_delta *d = ts_delta_new();
  CHECK_EQ_INT(ts_delta_savepoint(d, 3), TS_OK);
  put_int(d, "a", 1);
  put_int(d, "b", 2);
  CHECK_EQ_INT(ts_delta_del(d, K("c")), TS_OK);
  CHECK_EQ_INT(ts_delta_count(d), 3);
  ts_delta_rollback_to(d, 0);
  CHECK_EQ_INT(ts_delta_count(d), 0);
  CHECK(ts_delta_get(d, K("a")) == NULL);
  CHECK(ts_delta_get(d, K("c")) == NULL);
  /* Savepoint 0 stays open: a write then ROLLBACK TO 0 empties again. */
  put_int(d, "x", 1);
  CHECK_EQ_INT(ts_delta_count(d), 1);
  ts_delta_rollback_to(d, 0);
  CHECK_EQ_INT(ts_delta_count(d), 0);
  ts_delta_release(d, 0);
  put_int(d, "y", 1);
  ts_delta_rollback_to(d, 0);
  CHECK_EQ_INT(ts_delta_count(d), 1);
  ts_delta_free(d);
}

/* ROLLBACK TO keeps the savepoint: write, roll back, write, roll back. */
static void test_rollback_keeps_active(void) {
  ts_delta *d = ts_delta_new();
  int i;
  put_int(d, "base", 0);
  CHECK_EQ_INT(ts_delta_savepoint(d, 0), TS_OK);
  for (i = 0; i < 5; i++) {
    put_int(d, "base", 100 + i);
    put_int(d, "w", i);
    ts_delta_rollback_to(d, 0);
    CHECK_EQ_INT(get_int(d, "base"), 0);
    CHECK_EQ_INT(get_int(d, "w"), -1);
    CHECK_EQ_INT(ts_delta_count(d), 1);
  }
  put_int(d, "w", 7);
  ts_delta_release(d, 0);
  CHECK_EQ_INT(get_int(d, "w"), 7);
  ts_delta_free(d);
}

/* count follows ops; bytes counts key and value bytes copied in. */
static void test_count_bytes(void) {
  ts_delta *d = ts_delta_new();
  ts_value v;
  CHECK_EQ_INT(ts_delta_count(d), 0);
  CHECK_EQ_INT(ts_delta_bytes(d), 0);
  v = vblob("xyz", 3);
  CHECK_EQ_INT(ts_delta_put(d, K("ab"), &v, 1, 0), TS_OK);
  CHECK_EQ_INT(ts_delta_count(d), 1);
  CHECK_EQ_INT(ts_delta_bytes(d), 5);
  v = vint(3);
  CHECK_EQ_INT(ts_delta_put(d, K("ab"), &v, 1, 0), TS_OK);
  CHECK_EQ_INT(ts_delta_count(d), 1);
  CHECK_EQ_INT(ts_delta_bytes(d), 5); /* the arena still holds "xyz" */
  v = vtext("hi");
  CHECK_EQ_INT(ts_delta_put(d, K("c"), &v, 1, 0), TS_OK);
  CHECK_EQ_INT(ts_delta_bytes(d), 8);
  CHECK_EQ_INT(ts_delta_del(d, K("dd")), TS_OK);
  CHECK_EQ_INT(ts_delta_count(d), 3);
  CHECK_EQ_INT(ts_delta_bytes(d), 10);
  CHECK_EQ_INT(ts_delta_savepoint(d, 0), TS_OK);
  CHECK_EQ_INT(ts_delta_del(d, K("ab")), TS_OK);
  CHECK_EQ_INT(ts_delta_count(d), 3);
  put_int(d, "e", 1);
  CHECK_EQ_INT(ts_delta_count(d), 4);
  ts_delta_rollback_to(d, 0);
  CHECK_EQ_INT(ts_delta_count(d), 3);
  CHECK(ts_delta_bytes(d) >= 10);
  ts_delta_free(d);
}

/* Reset empties everything, bumps the generation, restarts rowids, and the
** delta works again after it. */
static void test_reset(void) {
  ts_delta *d = ts_delta_new();
  ts_value v = vtext("value");
  uint64_t g0 = ts_delta_generation(d), r;
  int i;
  char key[32];
  CHECK(ts_delta_generation(d) == g0);
  for (i = 0; i < 2000; i++) {
    snprintf(key, sizeof(key), "k%04d", i);
    CHECK_EQ_INT(ts_delta_put(d, K(key), &v, ts_delta_new_rowid(d), 1), TS_OK);
  }
  CHECK_EQ_INT(ts_delta_savepoint(d, 0), TS_OK);
  put_int(d, "z", 1);
  ts_delta_reset(d);
  CHECK(ts_delta_generation(d) != g0);
  CHECK_EQ_INT(ts_delta_count(d), 0);
  CHECK_EQ_INT(ts_delta_bytes(d), 0);
  CHECK(ts_delta_seek(d, NULL, 0, 0) == NULL);
  CHECK(ts_delta_seek(d, NULL, 0, 1) == NULL);
  CHECK(ts_delta_seek(d, K("k0001"), 0) == NULL);
  CHECK(ts_delta_get(d, K("k0001")) == NULL);
  CHECK(ts_delta_by_rowid(d, TS_ROWID_PROVISIONAL + 1) == NULL);
  /* The marks went too: nothing to roll back. */
  put_int(d, "after", 1);
  ts_delta_rollback_to(d, 0);
  CHECK_EQ_INT(get_int(d, "after"), 1);
  r = ts_delta_new_rowid(d);
  CHECK(r == TS_ROWID_PROVISIONAL + 1);
  CHECK_EQ_INT(ts_delta_put(d, K("fresh"), &v, r, 1), TS_OK);
  CHECK(ts_delta_by_rowid(d, r) == ts_delta_get(d, K("fresh")));
  CHECK_EQ_INT(ts_delta_count(d), 2);
  {
    uint64_t g1 = ts_delta_generation(d);
    ts_delta_reset(d);
    CHECK(ts_delta_generation(d) != g1);
    CHECK(ts_delta_generation(d) != g0);
    ts_delta_reset(d); /* reset of an empty delta is fine */
  }
  ts_delta_free(d);
}

/* An empty blob and an empty text come back as empty values of their type
** with a non-NULL pointer, whether the caller gave NULL or not. */
static void test_empty_values(void) {
  ts_delta *d = ts_delta_new();
  const ts_delta_entry *e;
  ts_value v = vblob(NULL, 0);
  CHECK_EQ_INT(ts_delta_put(d, K("nullp"), &v, 1, 0), TS_OK);
  v = vblob("", 0);
  CHECK_EQ_INT(ts_delta_put(d, K("emptyp"), &v, 1, 0), TS_OK);
  v = vtext("");
  CHECK_EQ_INT(ts_delta_put(d, K("text"), &v, 1, 0), TS_OK);
  e = ts_delta_get(d, K("nullp"));
  CHECK(e && e->value.type == TS_BLOB && e->value.n == 0 && e->value.p != NULL);
  e = ts_delta_get(d, K("emptyp"));
  CHECK(e && e->value.type == TS_BLOB && e->value.n == 0 && e->value.p != NULL);
  e = ts_delta_get(d, K("text"));
  CHECK(e && e->value.type == TS_TEXT && e->value.n == 0 && e->value.p != NULL);
  CHECK_EQ_INT(ts_delta_bytes(d), 5 + 6 + 4);
  ts_delta_free(d);
}

/* A 1 MiB value round trips; small rows around it keep working. */
static void test_big_value(void) {
  enum { BIG = 1 << 20 };
  ts_delta *d = ts_delta_new();
  unsigned char *big = malloc(BIG);
  const ts_delta_entry *e;
  ts_value v;
  size_t i;
  for (i = 0; i < BIG; i++) big[i] = (unsigned char)(i * 7 + (i >> 11));
  put_int(d, "before", 1);
  v = vblob(big, BIG);
  CHECK_EQ_INT(ts_delta_put(d, K("big"), &v, 1, 0), TS_OK);
  put_int(d, "after", 2);
  CHECK_EQ_INT(ts_delta_put(d, K("big2"), &v, 1, 0), TS_OK);
  memset(big, 0, BIG);
  e = ts_delta_get(d, K("big"));
  CHECK(e != NULL && e->value.type == TS_BLOB && e->value.n == BIG);
  for (i = 0; i < BIG; i++) big[i] = (unsigned char)(i * 7 + (i >> 11));
  CHECK(e && memcmp(e->value.p, big, BIG) == 0);
  e = ts_delta_get(d, K("big2"));
  CHECK(e && e->value.n == BIG && memcmp(e->value.p, big, BIG) == 0);
  CHECK_EQ_INT(get_int(d, "before"), 1);
  CHECK_EQ_INT(get_int(d, "after"), 2);
  CHECK(ts_delta_bytes(d) >= 2 * (size_t)BIG);
  free(big);
  ts_delta_free(d);
}

/* 100k random puts: iteration is strictly ordered both ways, visits every
** entry, and each key holds its last value. */
static void test_many(void) {
  enum { N = 100000 };
  ts_delta *d = ts_delta_new();
  unsigned char (*keys)[12] = malloc(N * sizeof(*keys));
  size_t *lens = malloc(N * sizeof(*lens));
  const ts_delta_entry *e, *p;
  size_t i, seen;
  int ok = 1;
  for (i = 0; i < N; i++) {
    uint64_t x = rnd();
    ts_value v = vint((int64_t)i);
    size_t j;
    lens[i] = 8 + (size_t)(x % 5); /* 8..12 bytes, some with 0x00 */
    x = rnd();
    for (j = 0; j < lens[i]; j++) keys[i][j] = (unsigned char)(x >> (j * 5));
    if (ts_delta_put(d, keys[i], lens[i], &v, 1, 0) != TS_OK) ok = 0;
  }
  CHECK(ok);
  for (seen = 0, p = NULL, e = ts_delta_seek(d, NULL, 0, 0); e;
       p = e, e = ts_delta_step(d, e, 0), seen++) {
    if (p && key_cmp(p->key, p->nkey, e->key, e->nkey) >= 0) ok = 0;
  }
  CHECK(ok);
  CHECK_EQ_INT(seen, ts_delta_count(d));
  CHECK(seen > N - 100);
  for (seen = 0, p = NULL, e = ts_delta_seek(d, NULL, 0, 1); e;
       p = e, e = ts_delta_step(d, e, 1), seen++) {
    if (p && key_cmp(p->key, p->nkey, e->key, e->nkey) <= 0) ok = 0;
  }
  CHECK(ok);
  CHECK_EQ_INT(seen, ts_delta_count(d));
  /* The last write to each key wins (walk backwards to find it). */
  for (i = N; i-- > 0;) {
    e = ts_delta_get(d, keys[i], lens[i]);
    if (e == NULL || e->op != TS_OP_PUT) {
      ok = 0;
    } else if (e->value.i != (int64_t)i) {
      size_t j; /* a later duplicate of this key? */
      for (j = i + 1; j < N; j++) {
        if (lens[j] == lens[i] && memcmp(keys[j], keys[i], lens[i]) == 0) break;
      }
      if (j == N) ok = 0;
    }
  }
  CHECK(ok);
  free(keys);
  free(lens);
  ts_delta_free(d);
}

/* A random walk of writes, savepoints and resets against a model that
** snapshots the whole state at each mark: SQLite's savepoint semantics
** written the slow, obvious way. */
#define M_KEYS 16
#define M_LEVELS 5
typedef struct mstate mstate;
struct mstate {
  int op, fresh;
  uint64_t rowid;
  int64_t val;
  int text;
};
typedef struct mmark mmark;
struct mmark {
  int level;
  mstate snap[M_KEYS];
};

/* The commit's numbering of new keys agrees with the model: one rank per
** live fresh PUT, 0..n-1 in provisional rowid order. */
static int fresh_ranks_agree(const ts_delta *d, const mstate *m) {
  ts_fresh f;
  size_t live = 0, seen = 0;
  char key[8];
  int ok = 1;
  if (ts_delta_fresh(d, &f) != TS_OK) return 0;
  for (int i = 0; i < M_KEYS; i++) live += m[i].op == TS_OP_PUT && m[i].fresh;
  if (f.n != live) ok = 0;
  for (int i = 0; i < M_KEYS && ok; i++) {
    const ts_delta_entry *e;
    long rank, below = 0;
    snprintf(key, sizeof(key), "m%02d", i);
    e = ts_delta_get(d, K(key));
    rank = e ? ts_fresh_rank(&f, e) : -1;
    if (!(m[i].op == TS_OP_PUT && m[i].fresh)) {
      if (rank != -1) ok = 0;
      continue;
    }
    for (int j = 0; j < M_KEYS; j++) below += m[j].op == TS_OP_PUT && m[j].fresh && m[j].rowid < m[i].rowid;
    if (rank != below) ok = 0;
    seen++;
  }
  ts_fresh_free(&f);
  return ok && seen == live;
}

/* The delta agrees with the model on every key, the count, rowids, the
** numbering of new keys and ascending order. */
static int model_agrees(ts_delta *d, const mstate *m, uint64_t issued) {
  char key[8], txt[32];
  int i, live = 0;
  const ts_delta_entry *e, *p;
  for (i = 0; i < M_KEYS; i++) {
    snprintf(key, sizeof(key), "m%02d", i);
    e = ts_delta_get(d, K(key));
    if (m[i].op == TS_OP_NONE) {
      if (e != NULL) return 0;
      continue;
    }
    live++;
    if (e == NULL || (int)e->op != m[i].op || e->fresh != m[i].fresh ||
        e->rowid != m[i].rowid) {
      return 0;
    }
    if (m[i].op == TS_OP_PUT) {
      if (m[i].text) {
        snprintf(txt, sizeof(txt), "t%lld", (long long)m[i].val);
        if (e->value.type != TS_TEXT || e->value.n != strlen(txt) ||
            memcmp(e->value.p, txt, e->value.n) != 0) {
          return 0;
        }
      } else if (e->value.type != TS_INTEGER || e->value.i != m[i].val) {
        return 0;
      }
      if (m[i].fresh && ts_delta_by_rowid(d, m[i].rowid) != e) return 0;
    }
  }
  if (ts_delta_count(d) != (size_t)live) return 0;
  if (issued > 0) {
    uint64_t r = TS_ROWID_PROVISIONAL + 1 + rnd() % issued;
    const ts_delta_entry *want = NULL;
    for (i = 0; i < M_KEYS; i++) {
      if (m[i].op == TS_OP_PUT && m[i].fresh && m[i].rowid == r) {
        snprintf(key, sizeof(key), "m%02d", i);
        want = ts_delta_get(d, K(key));
      }
    }
    if (ts_delta_by_rowid(d, r) != want) return 0;
  }
  for (p = NULL, e = ts_delta_seek(d, NULL, 0, 0); e;
       p = e, e = ts_delta_step(d, e, 0)) {
    if (p && key_cmp(p->key, p->nkey, e->key, e->nkey) >= 0) return 0;
    if (ts_delta_step(d, e, 1) != p) return 0;
  }
  return fresh_ranks_agree(d, m);
}

static void test_model(void) {
  enum { STEPS = 20000 };
  ts_delta *d = ts_delta_new();
  mstate cur[M_KEYS];
  mmark marks[M_LEVELS + 1];
  int nmarks = 0, step, bad = -1, i;
  uint64_t issued = 0;
  char key[8], txt[32];
  memset(cur, 0, sizeof(cur));
  for (step = 0; step < STEPS && bad < 0; step++) {
    int what = (int)(rnd() % 100);
    int k = (int)(rnd() % M_KEYS);
    int level = (int)(rnd() % M_LEVELS);
    snprintf(key, sizeof(key), "m%02d", k);
    if (what < 40) {
      int fresh = (int)(rnd() % 2);
      uint64_t rowid;
      ts_value v;
      mstate *s = &cur[k];
      int64_t val = (int64_t)step;
      int text = (int)(rnd() % 2);
      if (fresh) {
        rowid = ts_delta_new_rowid(d);
        issued++;
      } else {
        rowid = 1 + rnd() % 1000;
      }
      snprintf(txt, sizeof(txt), "t%lld", (long long)val);
      v = text ? vtext(txt) : vint(val);
      if (ts_delta_put(d, K(key), &v, rowid, fresh) != TS_OK) bad = step;
      if (!(s->op == TS_OP_PUT && s->fresh)) {
        s->fresh = fresh;
        s->rowid = rowid;
      }
      s->op = TS_OP_PUT;
      s->val = val;
      s->text = text;
    } else if (what < 60) {
      if (ts_delta_del(d, K(key)) != TS_OK) bad = step;
      memset(&cur[k], 0, sizeof(cur[k]));
      cur[k].op = TS_OP_DEL;
    } else if (what < 75) {
      if (ts_delta_savepoint(d, level) != TS_OK) bad = step;
      while (nmarks > 0 && marks[nmarks - 1].level >= level) nmarks--;
      marks[nmarks].level = level;
      memcpy(marks[nmarks].snap, cur, sizeof(cur));
      nmarks++;
    } else if (what < 85) {
      ts_delta_release(d, level);
      while (nmarks > 0 && marks[nmarks - 1].level >= level) nmarks--;
    } else if (what < 99) {
      ts_delta_rollback_to(d, level);
      for (i = 0; i < nmarks && marks[i].level < level; i++) {
      }
      if (i < nmarks) {
        memcpy(cur, marks[i].snap, sizeof(cur));
        marks[i].level = level;
        nmarks = i + 1;
      }
    } else {
      ts_delta_reset(d);
      memset(cur, 0, sizeof(cur));
      nmarks = 0;
      issued = 0;
    }
    if (bad < 0 && !model_agrees(d, cur, issued)) bad = step;
  }
  CHECK_EQ_INT(bad, -1);
  ts_delta_free(d);
}

int main(void) {
  test_put_get_del();
  test_order();
  test_order_batches();
  test_order_long_keys();
  test_step_sees_later_writes();
  test_order_prefix();
  test_fresh_sticky();
  test_fresh_ranks();
  test_classify();
  test_provisional();
  test_kept_rowids();
  test_savepoints();
  test_late_join();
  test_rollback_keeps_active();
  test_count_bytes();
  test_reset();
  test_empty_values();
  test_big_value();
  test_many();
  test_model();
  return CHECK_DONE();
}
