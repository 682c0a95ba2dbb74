/*
** app.c: an app that embeds tierstore as its users would, built by
** tests/install/test_install.sh from an installed tree with nothing but
**   cc app.c $(pkg-config --cflags --libs tierstore)
** It links SQLite itself, registers the module without load_extension,
** writes through a table and reads the row back.  Usage: app DIR
*/
#include <stdio.h>
#include <string.h>

#include <tierstore.h>

/* Run sql, printing the first column of each row. */
static int run(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (rc == SQLITE_OK) {
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) printf("%s\n", (const char *)sqlite3_column_text(st, 0));
  }
  if (rc != SQLITE_DONE) fprintf(stderr, "%s: %s\n", sql, sqlite3_errmsg(db));
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? 0 : 1;
}

int main(int argc, char **argv) {
  sqlite3 *db = NULL;
  char *err = NULL, sql[1024];
  int bad = 0;
  if (argc != 2) return 2;
  if (sqlite3_open(":memory:", &db) != SQLITE_OK) return 1;
  if (sqlite3_tierstore_init(db, &err, NULL) != SQLITE_OK) {
    fprintf(stderr, "init: %s\n", err ? err : "?");
    return 1;
  }
  snprintf(sql, sizeof(sql), "CREATE VIRTUAL TABLE kv USING tierstore(primary='%s/p', backup='%s/b')",
           argv[1], argv[1]);
  bad |= run(db, sql);
  bad |= run(db, "INSERT INTO kv VALUES ('app', '', 'greeting', 'hello from an embedded app')");
  bad |= run(db, "SELECT value FROM kv WHERE primary_namespace = 'app' AND key = 'greeting'");
  bad |= run(db, "SELECT tierstore_version()");
  bad |= run(db, "SELECT role || ' ' || keys FROM tierstore_status ORDER BY role");
  printf("header says %s, format %d\n", TIERSTORE_VERSION, TIERSTORE_FORMAT_VERSION);
  sqlite3_close(db);
  return bad;
}
