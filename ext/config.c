/*
** config.c: CREATE VIRTUAL TABLE arguments -> a ts_config.
**
** Arguments are "name = value" with the value quoted ('...' or "...") or
** bare.  Every rule is checked before anything touches the disk, so a
** rejected table creates nothing.
*/
#include "tierstore_ext.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The argument names, in the order the README lists them. */
static const char *const ts_config_names[] = {
    "primary", "backup", "ephemeral", "durability", "names", "map_size",
    "flush_interval", "max_pending", "mode"};
#define TS_NARGS ((int)(sizeof(ts_config_names) / sizeof(ts_config_names[0])))

/* Columns a table may not be named after: its command column would clash. */
static const char *const ts_column_names[] = {
    "primary_namespace", "secondary_namespace", "key", "value", "tier",
    "epoch", "rowid", "oid", "_rowid_"};

/* Set *errmsg to a "tierstore: " message and return code. */
static int ts_config_error(char **errmsg, int code, const char *fmt, ...) {
  va_list ap;
  char *msg;
  va_start(ap, fmt);
  msg = sqlite3_vmprintf(fmt, ap);
  va_end(ap);
  sqlite3_free(*errmsg);
  *errmsg = sqlite3_mprintf("tierstore: %s", msg ? msg : "out of memory");
  sqlite3_free(msg);
  return code;
}

/* Copy the trimmed bytes [a, b) into a new string. */
static char *ts_trim_dup(const char *a, const char *b) {
  char *s;
  while (a < b && isspace((unsigned char)*a)) a++;
  while (b > a && isspace((unsigned char)b[-1])) b--;
  s = sqlite3_malloc64((sqlite3_uint64)(b - a) + 1);
  if (!s) return NULL;
  memcpy(s, a, (size_t)(b - a));
  s[b - a] = 0;
  return s;
}

/* Remove one level of SQL quoting ('x', "x", `x`, [x]) in place; a doubled
** quote inside stands for one. */
static void ts_unquote(char *s) {
  char q = s[0], close = q == '[' ? ']' : q;
  size_t n = strlen(s), i, j;
  if (n < 2 || (q != '\'' && q != '"' && q != '`' && q != '[') || s[n - 1] != close) return;
  for (i = 1, j = 0; i < n - 1; i++) {
    s[j++] = s[i];
    if (s[i] == close && q != '[' && i + 1 < n - 1 && s[i + 1] == close) i++;
  }
  s[j] = 0;
}

/* Parse a size: digits with an optional KiB, MiB or GiB suffix. */
static int ts_parse_size(const char *s, size_t *out) {
  char *end;
  unsigned long long v;
  size_t mult = 1;
  if (!isdigit((unsigned char)*s)) return 1;
  errno = 0;
  v = strtoull(s, &end, 10);
  if (errno) return 1;
  while (isspace((unsigned char)*end)) end++;
  if (!strcasecmp(end, "KiB")) mult = (size_t)1 << 10;
  else if (!strcasecmp(end, "MiB")) mult = (size_t)1 << 20;
  else if (!strcasecmp(end, "GiB")) mult = (size_t)1 << 30;
  else if (*end) return 1;
  if (v == 0 || v > (unsigned long long)(TS_MAX_MAP_SIZE / mult)) return 1;
  *out = (size_t)v * mult;
  return 0;
}

/* Parse a duration: digits with a us, ms or s suffix (a bare 0 too), at
** most TS_MAX_FLUSH_INTERVAL_US. */
static int ts_parse_duration(const char *s, uint64_t *us) {
  char *end;
  unsigned long long v;
  uint64_t mult;
  if (!isdigit((unsigned char)*s)) return 1;
  errno = 0;
  v = strtoull(s, &end, 10);
  if (errno) return 1;
  while (isspace((unsigned char)*end)) end++;
  if (!strcasecmp(end, "us")) mult = 1;
  else if (!strcasecmp(end, "ms")) mult = 1000;
  else if (!strcasecmp(end, "s")) mult = 1000000;
  else if (!*end && v == 0) mult = 1;
  else return 1;
  if (v > TS_MAX_FLUSH_INTERVAL_US / mult) return 1;
  *us = (uint64_t)v * mult;
  return 0;
}

/* Parse a mode: octal permission bits, at most TS_MAX_FILE_MODE, with the
** owner's read and write (tierstore reads and writes its files). */
static int ts_parse_mode(const char *s, unsigned *out) {
  unsigned v = 0;
  if (!*s) return 1;
  for (; *s; s++) {
    if (*s < '0' || *s > '7') return 1;
    v = v * 8 + (unsigned)(*s - '0');
    if (v > TS_MAX_FILE_MODE) return 1;
  }
  if ((v & 0600) != 0600) return 1;
  *out = v;
  return 0;
}

/* The directory relative paths resolve against. */
static char *ts_config_base_dir(sqlite3 *db, const char *schema) {
  const char *file = sqlite3_db_filename(db, schema);
  if (file && file[0]) {
    const char *slash = strrchr(file, '/');
    if (slash) return sqlite3_mprintf("%.*s", (int)(slash - file > 0 ? slash - file : 1), file);
  }
  char *cwd = getcwd(NULL, 0);
  char *r = cwd ? sqlite3_mprintf("%s", cwd) : NULL;
  free(cwd);
  return r;
}

/* Absolute form of path (relative paths join the base directory). */
static char *ts_config_resolve(sqlite3 *db, const char *schema, const char *path) {
  char *base, *r;
  if (path[0] == '/') return sqlite3_mprintf("%s", path);
  base = ts_config_base_dir(db, schema);
  if (!base) return NULL;
  r = sqlite3_mprintf("%s/%s", base, path);
  sqlite3_free(base);
  return r;
}

void ts_config_free(ts_config *cfg) {
  if (!cfg) return;
  sqlite3_free(cfg->table);
  sqlite3_free(cfg->primary);
  sqlite3_free(cfg->backup);
  sqlite3_free(cfg->ephemeral);
  sqlite3_free(cfg);
}

/* Check the table name and each argument value; fill cfg. */
static int ts_config_apply(sqlite3 *db, const char *schema, char **vals,
                           ts_config *cfg, char **errmsg) {
  for (size_t i = 0; i < sizeof(ts_column_names) / sizeof(ts_column_names[0]); i++) {
    if (!sqlite3_stricmp(cfg->table, ts_column_names[i])) {
      return ts_config_error(errmsg, TS_ERROR,
                             "a tierstore table cannot be named '%s': its command column would clash with a column",
                             cfg->table);
    }
  }
  if (!vals[0] || !vals[0][0]) {
    return ts_config_error(errmsg, TS_ERROR, "argument 'primary' is required (the primary LMDB environment directory)");
  }
  if (vals[1] && !vals[1][0]) {
    return ts_config_error(errmsg, TS_ERROR, "argument 'backup' is empty (name the backup LMDB environment directory)");
  }
  if (vals[2]) {
    ts_router *r = NULL;
    ts_err err = {0, {0}};
    if (ts_router_new(vals[2], &r, &err)) {
      return ts_config_error(errmsg, err.code, "argument 'ephemeral': %s", err.msg + strlen("tierstore: "));
    }
    ts_router_free(r);
    cfg->ephemeral = sqlite3_mprintf("%s", vals[2]);
    if (!cfg->ephemeral) return ts_config_error(errmsg, TS_NOMEM, "out of memory");
  }
  cfg->durability = TS_DURABLE;
  if (vals[3]) {
    if (!sqlite3_stricmp(vals[3], "durable")) cfg->durability = TS_DURABLE;
    else if (!sqlite3_stricmp(vals[3], "written")) cfg->durability = TS_WRITTEN;
    else if (!sqlite3_stricmp(vals[3], "applied")) cfg->durability = TS_APPLIED;
    else {
      return ts_config_error(errmsg, TS_ERROR, "argument 'durability' must be durable, written or applied, not '%s'",
                             vals[3]);
    }
  }
  cfg->names = TS_NAMES_LDK;
  if (vals[4]) {
    if (!sqlite3_stricmp(vals[4], "ldk")) cfg->names = TS_NAMES_LDK;
    else if (!sqlite3_stricmp(vals[4], "any")) cfg->names = TS_NAMES_ANY;
    else return ts_config_error(errmsg, TS_ERROR, "argument 'names' must be ldk or any, not '%s'", vals[4]);
  }
  if (vals[5] && ts_parse_size(vals[5], &cfg->map_size)) {
    return ts_config_error(errmsg, TS_ERROR,
                           "argument 'map_size' is malformed: '%s' (expected a positive byte count with an optional KiB, MiB or GiB suffix)",
                           vals[5]);
  }
  cfg->flush_interval_us = TS_DEFAULT_FLUSH_INTERVAL_US;
  if (vals[6] && ts_parse_duration(vals[6], &cfg->flush_interval_us)) {
    return ts_config_error(errmsg, TS_ERROR,
                           "argument 'flush_interval' is malformed: '%s' (expected a duration from 0 to 60s with a us, ms or s suffix)",
                           vals[6]);
  }
  cfg->max_pending = TS_DEFAULT_MAX_PENDING;
  if (vals[7] && ts_parse_size(vals[7], &cfg->max_pending)) {
    return ts_config_error(errmsg, TS_ERROR,
                           "argument 'max_pending' is malformed: '%s' (expected a positive byte count with an optional KiB, MiB or GiB suffix)",
                           vals[7]);
  }
  cfg->mode = TS_DEFAULT_FILE_MODE;
  if (vals[8] && ts_parse_mode(vals[8], &cfg->mode)) {
    return ts_config_error(errmsg, TS_ERROR,
                           "argument 'mode' is malformed: '%s' (expected octal permission bits up to 0777 with the owner's read and write, such as 0600 or 0640)",
                           vals[8]);
  }
  cfg->primary = ts_config_resolve(db, schema, vals[0]);
  if (!cfg->primary) return ts_config_error(errmsg, TS_NOMEM, "out of memory");
  if (vals[1]) {
    cfg->backup = ts_config_resolve(db, schema, vals[1]);
    if (!cfg->backup) return ts_config_error(errmsg, TS_NOMEM, "out of memory");
    if (!strcmp(cfg->backup, cfg->primary)) {
      return ts_config_error(errmsg, TS_ERROR, "argument 'backup' names the same directory as 'primary'");
    }
  }
  return TS_OK;
}

/* Parse argv[3..] into name/value pairs, then check them. */
int ts_config_parse(sqlite3 *db, int argc, const char *const *argv,
                    ts_config **out, char **errmsg) {
  char *vals[TS_NARGS] = {0};
  ts_config *cfg = sqlite3_malloc(sizeof(*cfg));
  int rc = TS_OK;
  if (!cfg) return ts_config_error(errmsg, TS_NOMEM, "out of memory");
  memset(cfg, 0, sizeof(*cfg));
  cfg->table = sqlite3_mprintf("%s", argv[2]);
  for (int i = 3; i < argc && rc == TS_OK; i++) {
    const char *eq = strchr(argv[i], '=');
    char *name, *val;
    int which = -1;
    if (!eq) {
      rc = ts_config_error(errmsg, TS_ERROR, "malformed argument %s: expected name = value", argv[i]);
      break;
    }
    name = ts_trim_dup(argv[i], eq);
    val = ts_trim_dup(eq + 1, eq + strlen(eq));
    if (!name || !val) {
      sqlite3_free(name);
      sqlite3_free(val);
      rc = ts_config_error(errmsg, TS_NOMEM, "out of memory");
      break;
    }
    ts_unquote(val);
    for (int j = 0; j < TS_NARGS; j++) {
      if (!sqlite3_stricmp(name, ts_config_names[j])) which = j;
    }
    if (which < 0) {
      rc = ts_config_error(errmsg, TS_ERROR, "unknown argument '%s' (expected primary, backup, ephemeral, durability, names, map_size, flush_interval, max_pending or mode)",
                           name);
    } else if (vals[which]) {
      rc = ts_config_error(errmsg, TS_ERROR, "argument '%s' is given twice", ts_config_names[which]);
    } else {
      vals[which] = val;
      val = NULL;
    }
    sqlite3_free(name);
    sqlite3_free(val);
  }
  if (rc == TS_OK && !cfg->table) rc = ts_config_error(errmsg, TS_NOMEM, "out of memory");
  if (rc == TS_OK) rc = ts_config_apply(db, argv[1], vals, cfg, errmsg);
  for (int j = 0; j < TS_NARGS; j++) sqlite3_free(vals[j]);
  if (rc) {
    ts_config_free(cfg);
    return rc;
  }
  *out = cfg;
  return TS_OK;
}
