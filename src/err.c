/*
** err.c: the one error helper every engine function writes through, and
** the mapping of LMDB and errno codes to TS_* result codes.
*/
#include "tierstore_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <lmdb.h>

/* Every message starts with this (SPEC 7). */
static const char ts_err_prefix[] = "tierstore: ";

/* Fill err with code and "tierstore: " + the formatted text, truncated to
** fit err->msg; err may be NULL.  Returns code so callers can return it. */
int ts_err_set(ts_err *err, int code, const char *fmt, ...) {
  size_t n = sizeof(ts_err_prefix) - 1;
  va_list ap;

  if (err == NULL) return code;
  err->code = code;
  memcpy(err->msg, ts_err_prefix, n);
  va_start(ap, fmt);
  vsnprintf(err->msg + n, sizeof(err->msg) - n, fmt, ap);
  va_end(ap);
  return code;
}

/* Map an LMDB return code or an errno value to a TS_* code, so ext/ can
** turn it into the matching SQLite code (SPEC 7). */
int ts_err_from_lmdb(int mdb_rc) {
  switch (mdb_rc) {
    case 0:
      return TS_OK;
    case MDB_NOTFOUND:
      return TS_NOTFOUND;
    case ENOMEM:
      return TS_NOMEM;
    case MDB_MAP_FULL:
    case ENOSPC:
#ifdef EDQUOT
    case EDQUOT:
#endif
      return TS_FULL;
    case EACCES:
    case EROFS:
    case EPERM:
      return TS_READONLY;
    case MDB_CORRUPTED:
    case MDB_INVALID:
    case MDB_PAGE_NOTFOUND:
    case MDB_VERSION_MISMATCH:
      return TS_CORRUPT;
    default:
      return TS_IOERR;
  }
}

/* Render p[0..n) as printable ASCII for a message: bytes outside
** 0x20..0x7e, '\\' and '\'' become \xNN; past TS_SHOW_MAX characters, "...". */
ts_shown ts_err_show(const char *p, size_t n) {
  static const char hex[] = "0123456789abcdef";
  ts_shown s;
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    int plain = c >= 0x20 && c < 0x7f && c != '\\' && c != '\'';
    if (o + (plain ? 1 : 4) > TS_SHOW_MAX) {
      memcpy(&s.z[o], "...", 3);
      o += 3;
      break;
    }
    if (plain) {
      s.z[o++] = (char)c;
    } else {
      s.z[o++] = '\\';
      s.z[o++] = 'x';
      s.z[o++] = hex[c >> 4];
      s.z[o++] = hex[c & 0x0f];
    }
  }
  s.z[o] = '\0';
  return s;
}
