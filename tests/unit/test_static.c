/*
** test_static.c: the extension linked statically (built with SQLITE_CORE)
** into a program that links SQLite itself, registered per connection with
** sqlite3_tierstore_init(db, NULL, NULL).  Data written through one
** connection is there for the next one.
**
** The test makes its own directory under /tmp and removes it at the end.
*/
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "check.h"

int sqlite3_tierstore_init(sqlite3 *, char **, const sqlite3_api_routines *);

/* Run sql; on failure print the error. */
static int exec(sqlite3 *db, const char *sql) {
  char *msg = NULL;
  int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
  if (rc != SQLITE_OK) fprintf(stderr, "  %s: %s\n", sql, msg ? msg : "?");
  sqlite3_free(msg);
  return rc;
}

/* The single text result of sql ("" when no row, "<error>" on failure),
** rows joined with ';' and columns with ','. */
static char result[4096];
static const char *query(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  size_t n = 0;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  result[0] = 0;
  if (rc != SQLITE_OK) {
    fprintf(stderr, "  %s: %s\n", sql, sqlite3_errmsg(db));
    snprintf(result, sizeof(result), "<error>");
    return result;
  }
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (n && n < sizeof(result) - 1) result[n++] = ';';
    for (int i = 0; i < sqlite3_column_count(st); i++) {
      const char *t = (const char *)sqlite3_column_text(st, i);
      int w;
      if (i && n < sizeof(result) - 1) result[n++] = ',';
      w = snprintf(result + n, sizeof(result) - n, "%s", t ? t : "NULL");
      if (w > 0) n += (size_t)w < sizeof(result) - n ? (size_t)w : sizeof(result) - n - 1;
    }
    result[n] = 0;
  }
  if (rc != SQLITE_DONE) {
    fprintf(stderr, "  %s: %s\n", sql, sqlite3_errmsg(db));
    snprintf(result, sizeof(result), "<error>");
  }
  sqlite3_finalize(st);
  return result;
}

#define CHECK_QUERY(db, sql, want)                                         \
  do {                                                                     \
    const char *got_ = query((db), (sql));                                 \
    ts_check_count++;                                                      \
    if (strcmp(got_, (want)) != 0) {                                       \
      ts_check_failures++;                                                 \
      fprintf(stderr, "%s:%d: %s\n  got      '%s'\n  expected '%s'\n",     \
              __FILE__, __LINE__, (sql), got_, (want));                    \
    }                                                                      \
  } while (0)

static sqlite3 *open_registered(const char *file) {
  sqlite3 *db = NULL;
  char *msg = NULL;
  CHECK_EQ_INT(sqlite3_open(file, &db), SQLITE_OK);
  CHECK_EQ_INT(sqlite3_tierstore_init(db, &msg, NULL), SQLITE_OK);
  if (msg) fprintf(stderr, "  init: %s\n", msg);
  sqlite3_free(msg);
  return db;
}

int main(void) {
  char root[64], sql[512], dbfile[128];
  sqlite3 *db;

  tmp_new(root, sizeof(root));

  /* An in-memory database; the table's primary is absolute. */
  db = open_registered(":memory:");
  snprintf(sql, sizeof(sql),
           "CREATE VIRTUAL TABLE kv USING tierstore(primary='%s/primary')", root);
  CHECK_EQ_INT(exec(db, sql), SQLITE_OK);
  CHECK_EQ_INT(exec(db, "BEGIN"), SQLITE_OK);
  CHECK_EQ_INT(exec(db, "INSERT INTO kv(primary_namespace, secondary_namespace, key, value) "
                        "VALUES ('ns', 'sub', 'k1', 42), ('ns', 'sub', 'k2', 'two'), "
                        "('ns', 'sub', 'k3', x'4142'), ('ns', 'sub', 'k4', 2.5), "
                        "('other', '', 'k1', 1)"),
               SQLITE_OK);
  /* Uncommitted rows are visible to the writer. */
  CHECK_QUERY(db, "SELECT key, value FROM kv WHERE primary_namespace='ns' AND "
                  "secondary_namespace='sub' ORDER BY key",
              "k1,42;k2,two;k3,AB;k4,2.5");
  CHECK_EQ_INT(exec(db, "COMMIT"), SQLITE_OK);
  CHECK_QUERY(db, "SELECT count(*) FROM kv", "5");
  CHECK_QUERY(db, "SELECT typeof(value) FROM kv WHERE primary_namespace='ns' AND "
                  "secondary_namespace='sub' ORDER BY key",
              "integer;text;blob;real");
  CHECK_QUERY(db, "SELECT hex(value) FROM kv WHERE primary_namespace='ns' AND "
                  "secondary_namespace='sub' AND key='k3'",
              "4142");
  /* A rolled back transaction leaves nothing. */
  CHECK_EQ_INT(exec(db, "BEGIN"), SQLITE_OK);
  CHECK_EQ_INT(exec(db, "INSERT INTO kv(primary_namespace, secondary_namespace, key, value) "
                        "VALUES ('ns', 'sub', 'gone', 0)"),
               SQLITE_OK);
  CHECK_EQ_INT(exec(db, "DELETE FROM kv WHERE primary_namespace='ns' AND "
                        "secondary_namespace='sub' AND key='k4'"),
               SQLITE_OK);
  CHECK_QUERY(db, "SELECT count(*) FROM kv", "5");
  CHECK_EQ_INT(exec(db, "ROLLBACK"), SQLITE_OK);
  CHECK_QUERY(db, "SELECT count(*) FROM kv", "5");
  /* An autocommit update. */
  CHECK_EQ_INT(exec(db, "UPDATE kv SET value = 43 WHERE primary_namespace='ns' AND "
                        "secondary_namespace='sub' AND key='k1'"),
               SQLITE_OK);
  CHECK_EQ_INT(sqlite3_close(db), SQLITE_OK);

  /* A new connection, registered again: the data is there. */
  db = open_registered(":memory:");
  CHECK_EQ_INT(exec(db, sql), SQLITE_OK);
  CHECK_QUERY(db, "SELECT primary_namespace, secondary_namespace, key, value FROM kv "
                  "ORDER BY primary_namespace, key",
              "ns,sub,k1,43;ns,sub,k2,two;ns,sub,k3,AB;ns,sub,k4,2.5;other,,k1,1");
  /* Two tables on the same primary in one connection share it. */
  snprintf(sql, sizeof(sql),
           "CREATE VIRTUAL TABLE kv2 USING tierstore(primary='%s/primary/.')", root);
  CHECK_EQ_INT(exec(db, sql), SQLITE_OK);
  CHECK_QUERY(db, "SELECT count(*) FROM kv2", "5");
  CHECK_EQ_INT(sqlite3_close(db), SQLITE_OK);

  /* A database file: the table is declared once and connected on reopen. */
  snprintf(dbfile, sizeof(dbfile), "%s/app.db", root);
  db = open_registered(dbfile);
  snprintf(sql, sizeof(sql),
           "CREATE VIRTUAL TABLE kv USING tierstore(primary='%s/primary')", root);
  CHECK_EQ_INT(exec(db, sql), SQLITE_OK);
  CHECK_EQ_INT(exec(db, "INSERT INTO kv(primary_namespace, secondary_namespace, key, value) "
                        "VALUES ('file', 'x', 'k', 'v')"),
               SQLITE_OK);
  CHECK_EQ_INT(sqlite3_close(db), SQLITE_OK);
  db = open_registered(dbfile);
  CHECK_QUERY(db, "SELECT count(*) FROM kv", "6");
  CHECK_QUERY(db, "SELECT value FROM kv WHERE primary_namespace='file' AND "
                  "secondary_namespace='x' AND key='k'",
              "v");
  CHECK_EQ_INT(sqlite3_close(db), SQLITE_OK);

  /* Another table name on the same primary, another connection. */
  db = open_registered(":memory:");
  snprintf(sql, sizeof(sql),
           "CREATE VIRTUAL TABLE t USING tierstore(primary='%s/primary')", root);
  CHECK_EQ_INT(exec(db, sql), SQLITE_OK);
  CHECK_QUERY(db, "SELECT count(*) FROM t", "6");
  CHECK_EQ_INT(sqlite3_close(db), SQLITE_OK);

  CHECK_EQ_INT(tmp_rm(root), 0);
  CHECK(access(root, F_OK) != 0);
  return CHECK_DONE();
}
