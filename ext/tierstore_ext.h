/*
** tierstore_ext.h: what the SQLite face (ext/) shares between its files.
*/
#ifndef TIERSTORE_EXT_H
#define TIERSTORE_EXT_H

#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT3
#include "../src/tierstore_int.h"

/* CREATE arguments (config.c), parsed, checked and with paths resolved. */
typedef struct ts_config ts_config;
struct ts_config {
  char *table;               /* the table's name (also its command column) */
  char *primary;             /* absolute directory of the primary environment */
  char *backup;              /* absolute directory of the backup, or NULL */
  char *ephemeral;           /* ephemeral rules (checked), or NULL */
  ts_durability durability;
  ts_names_rule names;
  size_t map_size;           /* 0: default */
  uint64_t flush_interval_us;
  size_t max_pending;
  unsigned mode;             /* of the files it creates (permission bits) */
};

/* Parse the module arguments (argv as xCreate/xConnect receive them).
** Relative paths resolve against the directory of the database file of
** schema argv[1], or the current directory for a temporary database.
** On error returns a TS_* code and *errmsg (sqlite3_malloc'd) says why. */
int ts_config_parse(sqlite3 *db, int argc, const char *const *argv,
                    ts_config **out, char **errmsg);
void ts_config_free(ts_config *cfg);

/* Register the tierstore module on db (vtab.c). */
int ts_vtab_register(sqlite3 *db);
/* Register the tierstore_status table and tierstore_version() (status.c). */
int ts_status_register(sqlite3 *db);

#define TS_STRINGIFY_(x) #x
#define TS_STRINGIFY(x) TS_STRINGIFY_(x)

/* Map a TS_* code to a SQLite result code. */
int ts_sqlite_rc(int ts_rc);

#endif
