/*
** tierstore.c: the extension's entry point.
**
**   sqlite3 shell:  .load ./build/tierstore
**   Python:         con.enable_load_extension(True)
**                   con.load_extension("./build/tierstore")
**
** The module owns process-wide LMDB environments, so it asks SQLite to
** keep the shared library loaded for the life of the process
** (SQLITE_OK_LOAD_PERMANENTLY).  An app that links SQLite statically
** compiles these sources with -DSQLITE_CORE and calls
** sqlite3_tierstore_init(db, NULL, NULL) on each connection.
*/
#include "tierstore_ext.h"
#include "tierstore.h"
SQLITE_EXTENSION_INIT1

_Static_assert(TIERSTORE_FORMAT_VERSION == TS_FORMAT_VERSION,
               "include/tierstore.h states the on-disk format version of src/");

#ifdef _WIN32
__declspec(dllexport)
#endif
/* Register the tierstore module on db. */
int sqlite3_tierstore_init(sqlite3 *db, char **errmsg,
                           const sqlite3_api_routines *api) {
  int rc;
  SQLITE_EXTENSION_INIT2(api);
  rc = ts_vtab_register(db);
  if (rc == SQLITE_OK) rc = ts_status_register(db);
  if (rc != SQLITE_OK) {
    if (errmsg) *errmsg = sqlite3_mprintf("tierstore: cannot register the module: %s", sqlite3_errstr(rc));
    return rc;
  }
#ifdef SQLITE_CORE
  return SQLITE_OK;
#else
  return SQLITE_OK_LOAD_PERMANENTLY;
#endif
}
