/*
** test_tier_mem.c: unit tests of tier_mem.c, the ephemeral tier: an
** immutable, reference-counted snapshot of key-ordered rows replaced whole
** at each commit (ts_mem_apply of resolved changes in key order).
**
** Covered: the empty tier; PUT/DEL commits building snapshots; values
** copied at commit (the caller's buffers are freed right after, so ASan
** catches a row that still points into them); an old snapshot staying
** unchanged and readable after later commits; seek ascending (first
** >= k) and descending (last <= k), none on either side; get; by_rowid;
** replacing a key keeps order and count; deleting a missing key is
** harmless; many random commits checked against a simple model, with old
** snapshots kept and re-checked against the model of their time; readers
** taking snapshots while a writer commits; and reference counting that
** frees everything (run under valgrind --leak-check=full or ASan's leak
** checker: no leak, no invalid read).
*/
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tierstore_int.h"
#include "check.h"

/**************************************************************************
** Helpers.
*/
static uint64_t rng_state = 0x2545F4914F6CDD1DULL;
static uint64_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static ts_name N(const char *z) {
  ts_name nm = {z, strlen(z)};
  return nm;
}

/* An encoded key (pns, sns, key) in a malloc'd buffer the caller frees. */
typedef struct ekey ekey;
struct ekey {
  unsigned char *p;
  size_t n;
};
static ekey K(const char *pns, const char *sns, const char *key) {
  ekey k;
  size_t cap = strlen(pns) + strlen(sns) + strlen(key) + 2;
  k.p = malloc(cap);
  if (!k.p) abort();
  k.n = ts_key_encode(N(pns), N(sns), N(key), k.p);
  CHECK_EQ_INT(k.n, cap);
  return k;
}

/* memcmp order, shorter prefix first (what the tier promises). */
static int bcmp_(const unsigned char *a, size_t na, const unsigned char *b,
                 size_t nb) {
  int r = memcmp(a, b, na < nb ? na : nb);
  if (r) return r;
  return na < nb ? -1 : na > nb;
}

static int row_is(const ts_mem_row *r, const ekey *k) {
  return r && bcmp_(r->key, r->nkey, k->p, k->n) == 0;
}

/* A text value over a malloc'd copy of z: the caller frees v->p after the
** commit, so a row that kept the pointer reads freed memory (ASan). */
static ts_value text_val(const char *z) {
  ts_value v;
  size_t n = strlen(z);
  char *p = malloc(n ? n : 1);
  if (!p) abort();
  memcpy(p, z, n);
  memset(&v, 0, sizeof(v));
  v.type = TS_TEXT;
  v.p = p;
  v.n = n;
  return v;
}

static ts_change put_ch(const ekey *k, ts_value v, uint64_t rowid,
                        uint64_t epoch) {
  ts_change c;
  memset(&c, 0, sizeof(c));
  c.key = k->p;
  c.nkey = k->n;
  c.op = TS_OP_PUT;
  c.value = v;
  c.rowid = rowid;
  c.epoch = epoch;
  return c;
}

static ts_change del_ch(const ekey *k) {
  ts_change c;
  memset(&c, 0, sizeof(c));
  c.key = k->p;
  c.nkey = k->n;
  c.op = TS_OP_DEL;
  return c;
}

/* Apply changes that must succeed, then scribble over and free the
** callers' value buffers (text/blob) so nothing may point into them. */
static void apply_ok(ts_mem *m, ts_change *ch, size_t n) {
  ts_err err;
  memset(&err, 0, sizeof(err));
  CHECK_EQ_INT(ts_mem_apply(m, ch, n, &err), TS_OK);
  if (err.code) fprintf(stderr, "  apply: %s\n", err.msg);
  for (size_t i = 0; i < n; i++) {
    if (ch[i].op == TS_OP_PUT &&
        (ch[i].value.type == TS_TEXT || ch[i].value.type == TS_BLOB)) {
      if (ch[i].value.n) memset((void *)ch[i].value.p, '#', ch[i].value.n);
      free((void *)ch[i].value.p);
      ch[i].value.p = NULL;
    }
  }
}

static int val_is_text(const ts_value *v, const char *z) {
  return v->type == TS_TEXT && v->n == strlen(z) &&
         (v->n == 0 || memcmp(v->p, z, v->n) == 0);
}

/* A snapshot is strictly ascending by key. */
static void check_sorted(const ts_mem_snap *s) {
  size_t n = ts_mem_snap_count(s);
  for (size_t i = 1; i < n; i++) {
    const ts_mem_row *a = ts_mem_snap_row(s, i - 1), *b = ts_mem_snap_row(s, i);
    CHECK(bcmp_(a->key, a->nkey, b->key, b->nkey) < 0);
  }
  CHECK(ts_mem_snap_row(s, n) == NULL);
}

/**************************************************************************
** Tests.
*/

/* A new tier is empty: nothing found, seeks find nothing; an empty commit
** is a no-op that keeps the same snapshot. */
static void test_empty(void) {
  ts_mem *m = ts_mem_new();
  ts_mem_snap *s, *s2;
  ekey k = K("ns", "", "a");
  ts_err err;
  CHECK(m != NULL);
  if (!m) return;
  s = ts_mem_snapshot(m);
  CHECK(s != NULL);
  CHECK_EQ_INT(ts_mem_snap_count(s), 0);
  CHECK(ts_mem_snap_row(s, 0) == NULL);
  CHECK_EQ_INT(ts_mem_snap_seek(s, k.p, k.n, 0), 0);
  CHECK(ts_mem_snap_seek(s, k.p, k.n, 1) == (size_t)-1);
  CHECK(ts_mem_snap_get(s, k.p, k.n) == NULL);
  CHECK(ts_mem_snap_by_rowid(s, 1) == NULL);
  CHECK(ts_mem_snap_by_rowid(s, 0) == NULL);
  memset(&err, 0, sizeof(err));
  CHECK_EQ_INT(ts_mem_apply(m, NULL, 0, &err), TS_OK);
  s2 = ts_mem_snapshot(m);
  CHECK(s2 == s);
  ts_mem_snap_release(m, s2);
  ts_mem_snap_release(m, s);
  ts_mem_snap_release(m, NULL);    /* harmless */
  /* a DEL of a missing key on the empty tier */
  {
    ts_change c = del_ch(&k);
    apply_ok(m, &c, 1);
    s = ts_mem_snapshot(m);
    CHECK_EQ_INT(ts_mem_snap_count(s), 0);
    ts_mem_snap_release(m, s);
  }
  ts_mem_free(m);
  ts_mem_free(NULL);
  free(k.p);
}

/* PUTs in key order build a sorted snapshot holding copies of keys and
** values of every type, with their rowids and epochs. */
static void test_build(void) {
  ts_mem *m = ts_mem_new();
  ekey k[5];
  ts_change ch[5];
  ts_mem_snap *s;
  unsigned char blob[3] = {0x00, 0x01, 0xff};
  unsigned char *bcopy = malloc(sizeof(blob));
  const ts_mem_row *r;
  if (!m || !bcopy) abort();
  memcpy(bcopy, blob, sizeof(blob));
  /* encoded order: ("", "", "r") < ("ns", "", "a") < ("ns", "", "ab")
  ** < ("ns", "sub", "a") < ("ns2", "", "a") */
  k[0] = K("", "", "r");
  k[1] = K("ns", "", "a");
  k[2] = K("ns", "", "ab");
  k[3] = K("ns", "sub", "a");
  k[4] = K("ns2", "", "a");
  ch[0] = put_ch(&k[0], text_val("root"), 7, 3);
  memset(&ch[1], 0, sizeof(ch[1]));
  ch[1] = put_ch(&k[1], ch[1].value, 8, 3);
  ch[1].value.type = TS_INTEGER;
  ch[1].value.i = -42;
  ch[2] = put_ch(&k[2], ch[1].value, 9, 3);
  ch[2].value.type = TS_FLOAT;
  ch[2].value.f = 1.5;
  ch[3] = put_ch(&k[3], ch[1].value, 10, 3);
  ch[3].value.type = TS_BLOB;
  ch[3].value.p = bcopy;
  ch[3].value.n = sizeof(blob);
  ch[4] = put_ch(&k[4], text_val(""), 11, 3);   /* empty text */
  apply_ok(m, ch, 5);

  s = ts_mem_snapshot(m);
  CHECK_EQ_INT(ts_mem_snap_count(s), 5);
  check_sorted(s);
  for (size_t i = 0; i < 5; i++) {
    r = ts_mem_snap_row(s, i);
    CHECK(row_is(r, &k[i]));
    CHECK(r->key != k[i].p);                 /* a copy */
    CHECK_EQ_INT(r->rowid, 7 + i);
    CHECK_EQ_INT(r->epoch, 3);
    CHECK(ts_mem_snap_get(s, k[i].p, k[i].n) == r);
    CHECK(ts_mem_snap_by_rowid(s, 7 + i) == r);
  }
  r = ts_mem_snap_row(s, 0);
  CHECK(val_is_text(&r->value, "root"));
  r = ts_mem_snap_row(s, 1);
  CHECK_EQ_INT(r->value.type, TS_INTEGER);
  CHECK_EQ_INT(r->value.i, -42);
  r = ts_mem_snap_row(s, 2);
  CHECK_EQ_INT(r->value.type, TS_FLOAT);
  CHECK(r->value.f == 1.5);
  r = ts_mem_snap_row(s, 3);
  CHECK_EQ_INT(r->value.type, TS_BLOB);
  CHECK_EQ_INT(r->value.n, 3);
  CHECK(memcmp(r->value.p, blob, 3) == 0);
  r = ts_mem_snap_row(s, 4);
  CHECK(val_is_text(&r->value, ""));
  CHECK(ts_mem_snap_by_rowid(s, 6) == NULL);
  CHECK(ts_mem_snap_by_rowid(s, 12) == NULL);
  /* a key that is a prefix of a stored one is not found */
  {
    ekey x = K("ns", "", "");
    CHECK(ts_mem_snap_get(s, x.p, x.n) == NULL);
    free(x.p);
  }
  ts_mem_snap_release(m, s);
  ts_mem_free(m);
  for (size_t i = 0; i < 5; i++) free(k[i].p);
}

/* An old snapshot stays exactly as it was after later commits replace,
** delete and add keys; it stays readable after the tier moved on several
** times and even after its successors were released. */
static void test_old_snapshot(void) {
  ts_mem *m = ts_mem_new();
  ekey a = K("ns", "", "a"), b = K("ns", "", "b"), c = K("ns", "", "c"),
       d = K("ns", "", "d");
  ts_change ch[3];
  ts_mem_snap *s1, *s2, *s3;
  const ts_mem_row *r;

  ch[0] = put_ch(&a, text_val("a1"), 1, 1);
  ch[1] = put_ch(&b, text_val("b1"), 2, 1);
  ch[2] = put_ch(&c, text_val("c1"), 3, 1);
  apply_ok(m, ch, 3);
  s1 = ts_mem_snapshot(m);

  /* epoch 2: replace a, delete b, add d */
  ch[0] = put_ch(&a, text_val("a2-longer-than-before"), 1, 2);
  ch[1] = del_ch(&b);
  ch[2] = put_ch(&d, text_val("d2"), 4, 2);
  apply_ok(m, ch, 3);
  s2 = ts_mem_snapshot(m);
  CHECK(s2 != s1);

  /* epoch 3: delete everything */
  ch[0] = del_ch(&a);
  ch[1] = del_ch(&c);
  ch[2] = del_ch(&d);
  apply_ok(m, ch, 3);
  s3 = ts_mem_snapshot(m);
  CHECK_EQ_INT(ts_mem_snap_count(s3), 0);
  ts_mem_snap_release(m, s3);

  /* s2 is the epoch-2 state */
  CHECK_EQ_INT(ts_mem_snap_count(s2), 3);
  check_sorted(s2);
  r = ts_mem_snap_get(s2, a.p, a.n);
  CHECK(r && val_is_text(&r->value, "a2-longer-than-before") && r->epoch == 2 && r->rowid == 1);
  CHECK(ts_mem_snap_get(s2, b.p, b.n) == NULL);
  r = ts_mem_snap_get(s2, c.p, c.n);
  CHECK(r && val_is_text(&r->value, "c1") && r->epoch == 1 && r->rowid == 3);
  r = ts_mem_snap_get(s2, d.p, d.n);
  CHECK(r && val_is_text(&r->value, "d2") && r->epoch == 2 && r->rowid == 4);
  ts_mem_snap_release(m, s2);

  /* s1 is still the epoch-1 state, after two successors came and went */
  CHECK_EQ_INT(ts_mem_snap_count(s1), 3);
  check_sorted(s1);
  r = ts_mem_snap_row(s1, 0);
  CHECK(row_is(r, &a) && val_is_text(&r->value, "a1") && r->epoch == 1);
  r = ts_mem_snap_row(s1, 1);
  CHECK(row_is(r, &b) && val_is_text(&r->value, "b1") && r->rowid == 2);
  r = ts_mem_snap_row(s1, 2);
  CHECK(row_is(r, &c) && val_is_text(&r->value, "c1"));
  CHECK(ts_mem_snap_get(s1, d.p, d.n) == NULL);
  CHECK(ts_mem_snap_by_rowid(s1, 4) == NULL);
  CHECK(ts_mem_snap_by_rowid(s1, 2) == ts_mem_snap_row(s1, 1));

  /* the current state is empty, s1 unaffected */
  s3 = ts_mem_snapshot(m);
  CHECK_EQ_INT(ts_mem_snap_count(s3), 0);
  ts_mem_snap_release(m, s3);
  ts_mem_snap_release(m, s1);
  ts_mem_free(m);
  free(a.p);
  free(b.p);
  free(c.p);
  free(d.p);
}

/* Seek: ascending gives the first row >= k, descending the last row <= k;
** exact keys, keys between rows, before the first, after the last, and
** prefixes (a shorter key sorts first). */
static void test_seek(void) {
  ts_mem *m = ts_mem_new();
  const char *names[] = {"b", "d", "dd", "f"};
  ekey k[4];
  ts_change ch[4];
  ts_mem_snap *s;
  struct {
    const char *key;
    size_t asc, desc;       /* expected indexes; 4 = none asc, -1 none desc */
  } cases[] = {
      {"a", 0, (size_t)-1},  /* before the first */
      {"b", 0, 0},           /* exact first */
      {"c", 1, 0},           /* between */
      {"d", 1, 1},           /* exact */
      {"d\x01", 2, 1},       /* between d and dd */
      {"dd", 2, 2},          /* exact */
      {"ddd", 3, 2},         /* a longer key after dd */
      {"e", 3, 2},
      {"f", 3, 3},           /* exact last */
      {"g", 4, 3},           /* after the last */
      {"", 0, (size_t)-1},   /* the empty key: before everything */
  };
  for (size_t i = 0; i < 4; i++) {
    k[i] = K("ns", "", names[i]);
    ch[i] = put_ch(&k[i], text_val(names[i]), 10 + i, 1);
  }
  apply_ok(m, ch, 4);
  s = ts_mem_snapshot(m);
  CHECK_EQ_INT(ts_mem_snap_count(s), 4);
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    ekey q = K("ns", "", cases[i].key);
    size_t asc = ts_mem_snap_seek(s, q.p, q.n, 0);
    size_t desc = ts_mem_snap_seek(s, q.p, q.n, 1);
    CHECK_EQ_INT(asc, cases[i].asc);
    CHECK(desc == cases[i].desc);
    if (desc != cases[i].desc) fprintf(stderr, "  desc seek of '%s': %zu\n", cases[i].key, desc);
    free(q.p);
  }
  /* namespace prefixes as a listing seeks them: "ns\0" and "ns\0\0" */
  {
    unsigned char pre[8];
    ts_name sns = N("");
    size_t n = ts_prefix_encode(N("ns"), NULL, pre);
    CHECK_EQ_INT(ts_mem_snap_seek(s, pre, n, 0), 0);
    CHECK(ts_mem_snap_seek(s, pre, n, 1) == (size_t)-1);
    n = ts_prefix_encode(N("ns"), &sns, pre);
    CHECK_EQ_INT(ts_mem_snap_seek(s, pre, n, 0), 0);
    n = ts_prefix_encode(N("nr"), NULL, pre);
    CHECK_EQ_INT(ts_mem_snap_seek(s, pre, n, 0), 0);
    CHECK(ts_mem_snap_seek(s, pre, n, 1) == (size_t)-1);
    n = ts_prefix_encode(N("nt"), NULL, pre);
    CHECK_EQ_INT(ts_mem_snap_seek(s, pre, n, 0), 4);
    CHECK_EQ_INT(ts_mem_snap_seek(s, pre, n, 1), 3);
  }
  /* other namespaces bracket this one */
  {
    ekey lo = K("a", "", "zzz"), hi = K("ns", "x", "a");
    CHECK_EQ_INT(ts_mem_snap_seek(s, lo.p, lo.n, 0), 0);
    CHECK(ts_mem_snap_seek(s, lo.p, lo.n, 1) == (size_t)-1);
    CHECK_EQ_INT(ts_mem_snap_seek(s, hi.p, hi.n, 0), 4);
    CHECK_EQ_INT(ts_mem_snap_seek(s, hi.p, hi.n, 1), 3);
    free(lo.p);
    free(hi.p);
  }
  /* a single-row tier */
  ts_mem_snap_release(m, s);
  {
    ts_change del[3] = {del_ch(&k[0]), del_ch(&k[1]), del_ch(&k[3])};
    apply_ok(m, del, 3);
  }
  s = ts_mem_snapshot(m);
  CHECK_EQ_INT(ts_mem_snap_count(s), 1);
  CHECK_EQ_INT(ts_mem_snap_seek(s, k[2].p, k[2].n, 0), 0);
  CHECK_EQ_INT(ts_mem_snap_seek(s, k[2].p, k[2].n, 1), 0);
  CHECK_EQ_INT(ts_mem_snap_seek(s, k[3].p, k[3].n, 0), 1);
  CHECK_EQ_INT(ts_mem_snap_seek(s, k[3].p, k[3].n, 1), 0);
  CHECK_EQ_INT(ts_mem_snap_seek(s, k[1].p, k[1].n, 0), 0);
  CHECK(ts_mem_snap_seek(s, k[1].p, k[1].n, 1) == (size_t)-1);
  ts_mem_snap_release(m, s);
  ts_mem_free(m);
  for (size_t i = 0; i < 4; i++) free(k[i].p);
}

/* Replacing keys keeps their place and the count; the first, a middle and
** the last key, and all keys at once. */
static void test_replace(void) {
  ts_mem *m = ts_mem_new();
  ekey k[5];
  ts_change ch[5];
  ts_mem_snap *s;
  char buf[32];
  for (size_t i = 0; i < 5; i++) {
    snprintf(buf, sizeof(buf), "k%zu", i);
    k[i] = K("p", "s", buf);
    snprintf(buf, sizeof(buf), "v%zu-1", i);
    ch[i] = put_ch(&k[i], text_val(buf), 100 + i, 1);
  }
  apply_ok(m, ch, 5);
  /* epoch 2: first, middle, last */
  ch[0] = put_ch(&k[0], text_val("v0-2"), 100, 2);
  ch[1] = put_ch(&k[2], text_val("v2-2"), 102, 2);
  ch[2] = put_ch(&k[4], text_val("v4-2"), 104, 2);
  apply_ok(m, ch, 3);
  s = ts_mem_snapshot(m);
  CHECK_EQ_INT(ts_mem_snap_count(s), 5);
  check_sorted(s);
  for (size_t i = 0; i < 5; i++) {
    const ts_mem_row *r = ts_mem_snap_row(s, i);
    int replaced = i % 2 == 0;
    CHECK(row_is(r, &k[i]));
    snprintf(buf, sizeof(buf), "v%zu-%d", i, replaced ? 2 : 1);
    CHECK(val_is_text(&r->value, buf));
    CHECK_EQ_INT(r->epoch, replaced ? 2 : 1);
    CHECK_EQ_INT(r->rowid, 100 + i);
  }
  ts_mem_snap_release(m, s);
  /* epoch 3: every key, with other types */
  for (size_t i = 0; i < 5; i++) {
    memset(&ch[i], 0, sizeof(ch[i]));
    ch[i] = put_ch(&k[i], ch[i].value, 100 + i, 3);
    ch[i].value.type = TS_INTEGER;
    ch[i].value.i = (int64_t)i * 1000;
  }
  apply_ok(m, ch, 5);
  s = ts_mem_snapshot(m);
  CHECK_EQ_INT(ts_mem_snap_count(s), 5);
  check_sorted(s);
  for (size_t i = 0; i < 5; i++) {
    const ts_mem_row *r = ts_mem_snap_row(s, i);
    CHECK(row_is(r, &k[i]));
    CHECK_EQ_INT(r->value.type, TS_INTEGER);
    CHECK_EQ_INT(r->value.i, (int64_t)i * 1000);
    CHECK_EQ_INT(r->epoch, 3);
  }
  ts_mem_snap_release(m, s);
  ts_mem_free(m);
  for (size_t i = 0; i < 5; i++) free(k[i].p);
}

/* Deleting keys that are not there changes nothing, alone or mixed with
** real changes; before the first row, between rows, after the last. */
static void test_delete_missing(void) {
  ts_mem *m = ts_mem_new();
  ekey b = K("n", "", "b"), d = K("n", "", "d"), a = K("n", "", "a"),
       c = K("n", "", "c"), e = K("n", "", "e"), f = K("n", "", "f");
  ts_change ch[6];
  ts_mem_snap *s;
  ch[0] = put_ch(&b, text_val("B"), 1, 1);
  ch[1] = put_ch(&d, text_val("D"), 2, 1);
  apply_ok(m, ch, 2);
  ch[0] = del_ch(&a);
  ch[1] = del_ch(&c);
  ch[2] = del_ch(&e);
  apply_ok(m, ch, 3);
  s = ts_mem_snapshot(m);
  CHECK_EQ_INT(ts_mem_snap_count(s), 2);
  CHECK(row_is(ts_mem_snap_row(s, 0), &b));
  CHECK(row_is(ts_mem_snap_row(s, 1), &d));
  CHECK(val_is_text(&ts_mem_snap_row(s, 0)->value, "B"));
  CHECK(val_is_text(&ts_mem_snap_row(s, 1)->value, "D"));
  ts_mem_snap_release(m, s);
  /* mixed: del a (missing), put b, del c (missing), del d, put e, del f */
  ch[0] = del_ch(&a);
  ch[1] = put_ch(&b, text_val("B2"), 1, 3);
  ch[2] = del_ch(&c);
  ch[3] = del_ch(&d);
  ch[4] = put_ch(&e, text_val("E"), 3, 3);
  ch[5] = del_ch(&f);
  apply_ok(m, ch, 6);
  s = ts_mem_snapshot(m);
  CHECK_EQ_INT(ts_mem_snap_count(s), 2);
  CHECK(row_is(ts_mem_snap_row(s, 0), &b));
  CHECK(row_is(ts_mem_snap_row(s, 1), &e));
  CHECK(val_is_text(&ts_mem_snap_row(s, 0)->value, "B2"));
  CHECK(ts_mem_snap_get(s, d.p, d.n) == NULL);
  CHECK(ts_mem_snap_by_rowid(s, 2) == NULL);
  CHECK(ts_mem_snap_by_rowid(s, 3) == ts_mem_snap_row(s, 1));
  ts_mem_snap_release(m, s);
  /* a key put and deleted again, then deleted once more */
  ch[0] = del_ch(&e);
  apply_ok(m, ch, 1);
  ch[0] = del_ch(&e);
  apply_ok(m, ch, 1);
  s = ts_mem_snapshot(m);
  CHECK_EQ_INT(ts_mem_snap_count(s), 1);
  CHECK(row_is(ts_mem_snap_row(s, 0), &b));
  ts_mem_snap_release(m, s);
  ts_mem_free(m);
  free(a.p);
  free(b.p);
  free(c.p);
  free(d.p);
  free(e.p);
  free(f.p);
}

/**************************************************************************
** Random commits against a model: NKEYS possible keys (index order is key
** order), each present or not with a value, rowid and epoch.
*/
#define NKEYS 48
#define NKEPT 6
typedef struct mrow mrow;
struct mrow {
  int present;
  uint64_t rowid, epoch;
  char val[40];
};
typedef struct model model;
struct model {
  mrow r[NKEYS];
};

static ekey mkeys[NKEYS];

static void model_keys(void) {
  /* names chosen so that index order is encoded-key order: a few
  ** namespaces, keys that are prefixes of others, the root namespace */
  static const char *ns[][2] = {{"", ""}, {"a", ""}, {"a", "b"}, {"ab", ""}};
  static const char *keys[] = {"k", "k0", "k00", "k1", "kz", "l",
                               "m", "mm", "x", "y", "yy", "z"};
  size_t i = 0;
  for (size_t a = 0; a < 4; a++) {
    for (size_t b = 0; b < 12; b++) mkeys[i++] = K(ns[a][0], ns[a][1], keys[b]);
  }
  for (i = 1; i < NKEYS; i++) {
    CHECK(bcmp_(mkeys[i - 1].p, mkeys[i - 1].n, mkeys[i].p, mkeys[i].n) < 0);
  }
}

/* The snapshot equals the model: rows, order, values, get, by_rowid, seek
** from every key in both directions. */
static void model_check(const ts_mem_snap *s, const model *md) {
  size_t n = 0, j = 0;
  for (size_t i = 0; i < NKEYS; i++) n += md->r[i].present;
  CHECK_EQ_INT(ts_mem_snap_count(s), n);
  for (size_t i = 0; i < NKEYS; i++) {
    const mrow *mr = &md->r[i];
    const ts_mem_row *r = ts_mem_snap_get(s, mkeys[i].p, mkeys[i].n);
    size_t asc = ts_mem_snap_seek(s, mkeys[i].p, mkeys[i].n, 0);
    size_t desc = ts_mem_snap_seek(s, mkeys[i].p, mkeys[i].n, 1);
    /* j = number of present keys before i */
    CHECK_EQ_INT(asc, j);
    if (mr->present) {
      CHECK(desc == j);
      CHECK(r != NULL);
      if (!r) continue;
      CHECK(r == ts_mem_snap_row(s, j));
      CHECK(val_is_text(&r->value, mr->val));
      CHECK_EQ_INT(r->rowid, mr->rowid);
      CHECK_EQ_INT(r->epoch, mr->epoch);
      CHECK(ts_mem_snap_by_rowid(s, mr->rowid) == r);
      j++;
    } else {
      CHECK(desc == j - 1);    /* (size_t)-1 when j == 0 */
      CHECK(r == NULL);
    }
  }
  check_sorted(s);
}

static void test_random(void) {
  ts_mem *m = ts_mem_new();
  model md, kept_md[NKEPT];
  ts_mem_snap *kept[NKEPT] = {0};
  uint64_t next_rowid = 1;
  memset(&md, 0, sizeof(md));
  for (uint64_t epoch = 1; epoch <= 600; epoch++) {
    ts_change ch[NKEYS];
    size_t n = 0;
    int density = (int)(rnd() % 4);   /* sparse to dense commits */
    for (size_t i = 0; i < NKEYS; i++) {
      uint64_t x = rnd() % 16;
      if ((int)x > density * 2) continue;
      if (rnd() % 3 == 0) {
        ch[n++] = del_ch(&mkeys[i]);
        md.r[i].present = 0;
      } else {
        char v[40];
        if (!md.r[i].present || rnd() % 5 == 0) md.r[i].rowid = next_rowid++;
        snprintf(v, sizeof(v), "e%llu-k%zu-%llu", (unsigned long long)epoch, i,
                 (unsigned long long)(rnd() % 1000));
        md.r[i].present = 1;
        md.r[i].epoch = epoch;
        snprintf(md.r[i].val, sizeof(md.r[i].val), "%s", v);
        ch[n++] = put_ch(&mkeys[i], text_val(v), md.r[i].rowid, epoch);
      }
    }
    apply_ok(m, ch, n);
    if (epoch % 7 == 0 || rnd() % 11 == 0) {
      /* keep this state; drop the oldest kept one after checking it again */
      size_t slot = (size_t)(rnd() % NKEPT);
      if (kept[slot]) {
        model_check(kept[slot], &kept_md[slot]);
        ts_mem_snap_release(m, kept[slot]);
      }
      kept[slot] = ts_mem_snapshot(m);
      kept_md[slot] = md;
    }
    if (epoch % 10 == 0) {
      ts_mem_snap *s = ts_mem_snapshot(m);
      model_check(s, &md);
      ts_mem_snap_release(m, s);
    }
  }
  for (size_t i = 0; i < NKEPT; i++) {
    if (!kept[i]) continue;
    model_check(kept[i], &kept_md[i]);
    ts_mem_snap_release(m, kept[i]);
  }
  {
    ts_mem_snap *s = ts_mem_snapshot(m);
    model_check(s, &md);
    ts_mem_snap_release(m, s);
  }
  ts_mem_free(m);
}

/**************************************************************************
** Readers and a writer at once: every snapshot a reader takes is one
** whole commit (every row carries the same epoch, which is its value),
** epochs never go backwards for one reader, and values stay readable
** while held.
*/
#define TKEYS 16
#define TEPOCHS 2000
typedef struct thr thr;
struct thr {
  ts_mem *m;
  volatile int *done;
  int bad;
  long snaps;
};

static void *reader(void *arg) {
  thr *t = arg;
  uint64_t last = 0;
  while (!*t->done || t->snaps < 10) {
    ts_mem_snap *s = ts_mem_snapshot(t->m);
    size_t n = ts_mem_snap_count(s);
    uint64_t e = n ? ts_mem_snap_row(s, 0)->epoch : 0;
    if (n != 0 && n != TKEYS) t->bad++;
    if (e < last) t->bad++;
    last = e;
    for (size_t i = 0; i < n; i++) {
      const ts_mem_row *r = ts_mem_snap_row(s, i);
      char want[32];
      snprintf(want, sizeof(want), "epoch %llu", (unsigned long long)e);
      if (r->epoch != e || !val_is_text(&r->value, want)) t->bad++;
    }
    ts_mem_snap_release(t->m, s);
    t->snaps++;
  }
  return NULL;
}

static void test_threads(void) {
  ts_mem *m = ts_mem_new();
  volatile int done = 0;
  thr t[3];
  pthread_t tid[3];
  for (int i = 0; i < 3; i++) {
    t[i].m = m;
    t[i].done = &done;
    t[i].bad = 0;
    t[i].snaps = 0;
    CHECK_EQ_INT(pthread_create(&tid[i], NULL, reader, &t[i]), 0);
  }
  for (uint64_t e = 1; e <= TEPOCHS; e++) {
    ts_change ch[TKEYS];
    char v[32];
    snprintf(v, sizeof(v), "epoch %llu", (unsigned long long)e);
    for (size_t i = 0; i < TKEYS; i++) ch[i] = put_ch(&mkeys[i], text_val(v), i + 1, e);
    apply_ok(m, ch, TKEYS);
  }
  __atomic_store_n(&done, 1, __ATOMIC_SEQ_CST);
  for (int i = 0; i < 3; i++) {
    pthread_join(tid[i], NULL);
    CHECK_EQ_INT(t[i].bad, 0);
    CHECK(t[i].snaps >= 10);
  }
  ts_mem_free(m);
}

/* Reference counting: the tier freed while rows are shared by several
** retired snapshots, snapshots released in any order, the tier freed
** with rows shared between its current snapshot and released ones.  The
** check is the leak checker's (valgrind --leak-check=full, or ASan). */
static void test_refcounts(void) {
  ts_mem *m = ts_mem_new();
  ts_mem_snap *s[8];
  ts_change ch[NKEYS];
  for (int round = 0; round < 8; round++) {
    size_t n = 0;
    for (size_t i = (size_t)round; i < NKEYS; i += 3) {
      if (i % 5 == 0) ch[n++] = del_ch(&mkeys[i]);
      else ch[n++] = put_ch(&mkeys[i], text_val("shared value"), i + 1, (uint64_t)round + 1);
    }
    apply_ok(m, ch, n);
    s[round] = ts_mem_snapshot(m);
  }
  /* release out of order: odd ones, then even ones backwards */
  for (int i = 1; i < 8; i += 2) ts_mem_snap_release(m, s[i]);
  for (int i = 6; i >= 0; i -= 2) ts_mem_snap_release(m, s[i]);
  ts_mem_free(m);   /* frees the current snapshot and its rows */

  /* a tier never committed to, and one whose every key was deleted */
  m = ts_mem_new();
  ts_mem_free(m);
  m = ts_mem_new();
  ch[0] = put_ch(&mkeys[0], text_val("x"), 1, 1);
  apply_ok(m, ch, 1);
  ch[0] = del_ch(&mkeys[0]);
  apply_ok(m, ch, 1);
  ts_mem_free(m);
}

int main(void) {
  model_keys();
  test_empty();
  test_build();
  test_old_snapshot();
  test_seek();
  test_replace();
  test_delete_missing();
  test_random();
  test_threads();
  test_refcounts();
  for (size_t i = 0; i < NKEYS; i++) free(mkeys[i].p);
  return CHECK_DONE();
}
