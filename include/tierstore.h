/*
** tierstore.h: the public interface of tierstore, a SQLite virtual-table
** module for a tiered key/value store (primary and backup LMDB
** environments, an in-memory tier for caches).
**
** Loadable module: `.load tierstore` in the sqlite3 shell, or
** sqlite3_load_extension(); nothing here is needed for that.
**
** Embedded (SQLite linked into the app, no load_extension): link
** libtierstore.a (pkg-config --cflags --libs tierstore) and register the
** module on each connection,
**
**   sqlite3_tierstore_init(db, &errmsg, NULL);
**
** or on every connection opened afterwards,
**
**   sqlite3_auto_extension((void (*)(void))sqlite3_tierstore_init);
*/
#ifndef TIERSTORE_H
#define TIERSTORE_H

#include <sqlite3.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The module's version, "MAJOR.MINOR.PATCH", and the on-disk format
** version it reads and writes (also SELECT tierstore_version()). */
#define TIERSTORE_VERSION "0.1.0"
#define TIERSTORE_FORMAT_VERSION 1

/* Register the tierstore module and its functions on db.  Returns
** SQLITE_OK, or an error code with *errmsg (sqlite3_malloc'd, when errmsg
** is not NULL) saying why.  api is NULL when SQLite is linked in. */
int sqlite3_tierstore_init(sqlite3 *db, char **errmsg,
                           const sqlite3_api_routines *api);

#ifdef __cplusplus
}
#endif

#endif /* TIERSTORE_H */
