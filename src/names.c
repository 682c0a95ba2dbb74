/*
** names.c: the name rules (names=ldk, names=any; SPEC 3) and the ordered
** key encoding "pns 0x00 sns 0x00 key" that every tier stores.
**
** Names never hold a 0x00 byte (ldk forbids it with every other byte
** outside [A-Za-z0-9_-], any forbids it explicitly), so the separator sorts
** below every name byte and memcmp order of encodings is (pns, sns, key)
** tuple order, each name compared bytewise, shorter prefix first.
*/
#include "tierstore_int.h"

#include <stdio.h>
#include <string.h>

/* ldk names always fit LMDB's key limit, so only names=any checks sizes. */
_Static_assert(3 * TS_LDK_NAME_MAX + 2 <= TS_ENC_KEY_MAX,
               "ldk names must always fit the encoded key limit");

/* True if c may appear in an ldk name: [A-Za-z0-9_-], ASCII only.  One
** bit per ASCII code (every byte of every written name passes here):
** '-' 45 and '0'-'9' 48-57 in the low word, 'A'-'Z' 65-90, '_' 95 and
** 'a'-'z' 97-122 in the high word. */
static int ts_ldk_char(unsigned char c) {
  static const uint64_t allowed[2] = {
      (1ULL << 45) | (0x3FFULL << 48),
      (0x3FFFFFFULL << 1) | (1ULL << 31) | (0x3FFFFFFULL << 33)};
  return c < 128 && (allowed[c >> 6] >> (c & 63) & 1);
}

/* Check one column against the ldk rule: characters first, so a length
** reported afterwards counts ASCII characters, not bytes of UTF-8. */
static int ts_ldk_check(const char *col, ts_name nm, ts_err *err) {
  size_t i;
  for (i = 0; i < nm.n; i++) {
    if (!ts_ldk_char((unsigned char)nm.p[i])) {
      return ts_err_set(err, TS_CONSTRAINT,
                        "%s '%s' breaks the ldk name rule: only A-Z, a-z, "
                        "0-9, '_' and '-' are allowed",
                        col, ts_err_show(nm.p, nm.n).z);
    }
  }
  if (nm.n > TS_LDK_NAME_MAX) {
    return ts_err_set(err, TS_CONSTRAINT,
                      "%s is %zu characters; the ldk name rule allows at "
                      "most %d",
                      col, nm.n, TS_LDK_NAME_MAX);
  }
  return TS_OK;
}

/* Check one column against the any rule: no NUL byte (the separator of
** the key encoding). */
static int ts_any_check(const char *col, ts_name nm, ts_err *err) {
  if (nm.n > 0 && memchr(nm.p, 0, nm.n) != NULL) {
    return ts_err_set(err, TS_CONSTRAINT,
                      "%s '%s' breaks the any name rule: NUL bytes are not "
                      "allowed",
                      col, ts_err_show(nm.p, nm.n).z);
  }
  return TS_OK;
}

/* Check that the encoding of (pns, sns, key) fits LMDB's key limit, and its
** namespace part leaves room for the rowid of the creation index. */
static int ts_any_sizes(ts_name pns, ts_name sns, ts_name key, ts_err *err) {
  unsigned long long all = (unsigned long long)pns.n + sns.n + key.n + 2;
  if (all > TS_ENC_KEY_MAX) {
    return ts_err_set(err, TS_CONSTRAINT,
                      "encoded key is %llu bytes; LMDB allows at most %d "
                      "(names=any)",
                      all, TS_ENC_KEY_MAX);
  }
  return TS_OK;
}

/* Check (pns, sns, key) against the rule; the first broken rule, in column
** order, fails with TS_CONSTRAINT and a message naming column and rule. */
int ts_names_check(ts_names_rule rule, ts_name pns, ts_name sns, ts_name key,
                   ts_err *err) {
  int (*col_check)(const char *, ts_name, ts_err *) =
      rule == TS_NAMES_ANY ? ts_any_check : ts_ldk_check;
  int rc = col_check("primary_namespace", pns, err);
  if (rc == TS_OK) rc = col_check("secondary_namespace", sns, err);
  if (rc == TS_OK) rc = col_check("key", key, err);
  if (rc != TS_OK) return rc;

  if (key.n == 0) {
    return ts_err_set(err, TS_CONSTRAINT, "key must not be empty");
  }
  if (sns.n > 0 && pns.n == 0) {
    return ts_err_set(err, TS_CONSTRAINT,
                      "secondary_namespace '%s' needs a non-empty "
                      "primary_namespace",
                      ts_err_show(sns.p, sns.n).z);
  }
  if (rule == TS_NAMES_ANY) rc = ts_any_sizes(pns, sns, key, err);
  return rc;
}

/* Append nm to out (nothing for an empty name, whose p may be NULL);
** returns the number of bytes written. */
static size_t ts_name_put(ts_name nm, unsigned char *out) {
  if (nm.n > 0) memcpy(out, nm.p, nm.n);
  return nm.n;
}

/* Encode (pns, sns, key) as "pns 0x00 sns 0x00 key" into out, which holds
** n(pns)+n(sns)+n(key)+2 bytes; returns the encoded length. */
size_t ts_key_encode(ts_name pns, ts_name sns, ts_name key,
                     unsigned char *out) {
  size_t n = ts_prefix_encode(pns, &sns, out);
  return n + ts_name_put(key, out + n);
}

/* Encode the prefix shared by every key of a namespace: "pns 0x00" for a
** whole primary namespace (sns NULL), "pns 0x00 sns 0x00" for one pair. */
size_t ts_prefix_encode(ts_name pns, const ts_name *sns, unsigned char *out) {
  size_t n = ts_name_put(pns, out);
  out[n++] = 0;
  if (sns != NULL) {
    n += ts_name_put(*sns, out + n);
    out[n++] = 0;
  }
  return n;
}

/* The first two 0x00 bytes of enc: *sep1 gets the first; returns the
** second, or NULL when enc holds fewer than two. */
static const unsigned char *ts_key_seps(const unsigned char *enc, size_t n,
                                        const unsigned char **sep1) {
  *sep1 = n ? memchr(enc, 0, n) : NULL;
  return *sep1 ? memchr(*sep1 + 1, 0, n - (size_t)(*sep1 + 1 - enc)) : NULL;
}

/* Split enc at its first two 0x00 bytes into names pointing into enc;
** TS_CORRUPT when it holds fewer than two separators. */
int ts_key_decode(const unsigned char *enc, size_t n, ts_name *pns,
                  ts_name *sns, ts_name *key) {
  const unsigned char *sep1;
  const unsigned char *sep2 = ts_key_seps(enc, n, &sep1);

  if (sep2 == NULL) return TS_CORRUPT;
  pns->p = (const char *)enc;
  pns->n = (size_t)(sep1 - enc);
  sns->p = (const char *)sep1 + 1;
  sns->n = (size_t)(sep2 - sep1 - 1);
  key->p = (const char *)sep2 + 1;
  key->n = n - (size_t)(sep2 + 1 - enc);
  return TS_OK;
}

/* Length of the namespace part "pns 0x00 sns 0x00" of enc (where its
** second separator ends), or 0 when enc holds fewer than two separators. */
size_t ts_key_ns_len(const unsigned char *enc, size_t n) {
  const unsigned char *sep1;
  const unsigned char *sep2 = ts_key_seps(enc, n, &sep1);

  return sep2 ? (size_t)(sep2 + 1 - enc) : 0;
}
