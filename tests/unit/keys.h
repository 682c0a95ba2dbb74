/*
** keys.h: encoded keys and values for the engine's unit tests.
*/
#ifndef TS_TEST_KEYS_H
#define TS_TEST_KEYS_H

#include <stdint.h>
#include <string.h>

#include "tierstore_int.h"

/* An encoded key (pns, sns, key) held by value. */
typedef struct ekey ekey;
struct ekey {
  unsigned char b[TS_ENC_KEY_MAX];
  size_t n;
};

/* A name over a NUL-terminated string. */
static inline ts_name nm(const char *s) {
  ts_name r = {s, strlen(s)};
  return r;
}

/* The encoded key of (pns, sns, key). */
static inline ekey ek(const char *pns, const char *sns, const char *key) {
  ekey k;
  k.n = ts_key_encode(nm(pns), nm(sns), nm(key), k.b);
  return k;
}

/* An INTEGER value. */
static inline ts_value vint(int64_t i) {
  ts_value v = {TS_INTEGER, i, 0, NULL, 0};
  return v;
}

#endif
