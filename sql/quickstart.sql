.load ./build/tierstore
-- tierstore quickstart.  From the repository root, after `meson compile -C build`:
--
--     sqlite3 < sql/quickstart.sql
--
-- It works in /tmp/tierstore-quickstart, which it removes and recreates on
-- every run, so it never writes into the repository and reruns start clean.
-- The first line only checks that the build is there: `.open` below starts a
-- new connection, and SQLite registers a module per connection, so the
-- module is loaded again after it.  `.bail on` stops at the first error.
.bail on
.headers on
.mode box

.shell rm -rf /tmp/tierstore-quickstart && mkdir -p /tmp/tierstore-quickstart
.open /tmp/tierstore-quickstart/quickstart.db
.load ./build/tierstore

.print
.print "-- 1. Create a table.  A relative 'primary' is resolved against the directory"
.print "--    of the database file: /tmp/tierstore-quickstart/data/primary."
CREATE VIRTUAL TABLE kv USING tierstore(primary = 'data/primary', durability = 'durable');
.shell ls /tmp/tierstore-quickstart/data/primary

.print
.print "-- 2. Write keys in two namespaces.  Values keep their type: BLOB, TEXT, INTEGER, REAL."
INSERT INTO kv(primary_namespace, secondary_namespace, key, value) VALUES
  ('monitors', '', 'chan_0001', x'0a0b0c'),
  ('monitors', '', 'chan_0002', x'0d0e0f'),
  ('monitors', '', 'chan_0003', x'1011'),
  ('monitors', 'archive', 'chan_0000', x'ff');
INSERT INTO kv(primary_namespace, secondary_namespace, key, value) VALUES
  ('config', '', 'alias', 'my-node'),
  ('config', '', 'max_htlcs', 483),
  ('config', '', 'fee_rate', 2.5);

.print
.print "-- 3. Read one key back (all three names given: a point read)."
SELECT value, typeof(value) AS type
  FROM kv
 WHERE primary_namespace = 'config' AND secondary_namespace = '' AND key = 'max_htlcs';

.print
.print "-- 4. List a namespace, ascending by key.  rowid is the key's creation number."
SELECT rowid, key, quote(value) AS value, typeof(value) AS type
  FROM kv
 WHERE primary_namespace = 'config' AND secondary_namespace = ''
 ORDER BY key;

.print
.print "-- 5. Page through a namespace newest first, two keys per page."
.print "--    First page: no rowid bound."
SELECT rowid, key
  FROM kv
 WHERE primary_namespace = 'monitors' AND secondary_namespace = ''
 ORDER BY rowid DESC LIMIT 2;
.print "--    Next page: rowid below the smallest rowid of the previous page (2)."
SELECT rowid, key
  FROM kv
 WHERE primary_namespace = 'monitors' AND secondary_namespace = '' AND rowid < 2
 ORDER BY rowid DESC LIMIT 2;
.print "--    REPLACE INTO overwrites a value and keeps the creation number,"
.print "--    so pages stay stable while values change."
REPLACE INTO kv VALUES ('monitors', '', 'chan_0002', x'0d0e0f10');
SELECT rowid, key, quote(value) AS value
  FROM kv
 WHERE primary_namespace = 'monitors' AND secondary_namespace = '' AND key = 'chan_0002';

.print
.print "-- 6. A transaction that rolls back.  Inside it, reads see its own writes;"
.print "--    a key it created shows a provisional rowid (>= 2^62) and a NULL epoch."
BEGIN;
INSERT INTO kv VALUES ('config', '', 'network', 'testnet');
DELETE FROM kv WHERE primary_namespace = 'config' AND secondary_namespace = '' AND key = 'alias';
SELECT rowid, key, value, epoch
  FROM kv
 WHERE primary_namespace = 'config' AND secondary_namespace = '';
ROLLBACK;
.print "--    After ROLLBACK its writes are gone: 'network' absent, 'alias' back."
SELECT rowid, key, value, epoch
  FROM kv
 WHERE primary_namespace = 'config' AND secondary_namespace = '';

.print
.print "-- 7. A transaction that commits: COMMIT gives the new key its creation"
.print "--    number and stamps every row it wrote with one new epoch."
BEGIN;
INSERT INTO kv VALUES ('config', '', 'network', 'testnet');
UPDATE kv SET value = 2.75
 WHERE primary_namespace = 'config' AND secondary_namespace = '' AND key = 'fee_rate';
SELECT rowid, key, value, epoch
  FROM kv
 WHERE primary_namespace = 'config' AND secondary_namespace = '' AND key IN ('network', 'fee_rate');
COMMIT;
SELECT rowid, key, value, epoch
  FROM kv
 WHERE primary_namespace = 'config' AND secondary_namespace = '' AND key IN ('network', 'fee_rate');

.print
.print "-- 8. Hidden columns: epoch (the commit that last wrote the row) and tier"
.print "--    (where it lives).  kv has no ephemeral rules, so every key is 'primary'."
SELECT primary_namespace, secondary_namespace, key, epoch, tier
  FROM kv
 ORDER BY primary_namespace, secondary_namespace, key;

.print
.print "-- 9. Durability.  kv is 'durable': COMMIT returns once LMDB has fsynced the"
.print "--    commit.  kv_written is 'written': it asks LMDB not to fsync its meta page"
.print "--    at COMMIT (a process crash loses nothing; an OS crash may lose the last"
.print "--    commit, never corrupts).  It has its own environment, data/written."
CREATE VIRTUAL TABLE kv_written USING tierstore(primary = 'data/written', durability = 'written');
INSERT INTO kv_written VALUES ('metrics', '', 'last_seen', 1700000000);
SELECT key, value, epoch FROM kv_written;
.print "--    The 'sync' command forces everything committed to stable storage."
INSERT INTO kv(kv) VALUES ('sync');
INSERT INTO kv_written(kv_written) VALUES ('sync');
.shell ls /tmp/tierstore-quickstart/data

.print
.print "-- 10. The tiers.  node keeps durable keys in data/node, mirrors each commit"
.print "--     into the backup data/node-backup, and keeps the LDK caches"
.print "--     (ephemeral = 'ldk': network_graph, scorer, ...) in process memory only."
CREATE VIRTUAL TABLE node USING tierstore(
  primary   = 'data/node',
  backup    = 'data/node-backup',
  ephemeral = 'ldk');
.print "--     One transaction writes a durable key and an ephemeral key: one epoch."
BEGIN;
INSERT INTO node VALUES ('', '', 'manager', x'6d616e61676572');
INSERT INTO node VALUES ('', '', 'network_graph', x'6772617068');
COMMIT;
.print "--     A transaction that writes only ephemeral keys touches no disk."
INSERT INTO node VALUES ('', '', 'scorer', x'73636f726573');
.print "--     The root namespace lists both tiers together, ascending by key ..."
SELECT rowid, key, length(value) AS bytes, epoch, tier
  FROM node
 WHERE primary_namespace = '' AND secondary_namespace = ''
 ORDER BY key;
.print "--     ... and newest first: creation order is one order across the tiers."
SELECT rowid, key, tier
  FROM node
 WHERE primary_namespace = '' AND secondary_namespace = ''
 ORDER BY rowid DESC;

.print
.print "-- 11. 'verify' compares the primary and the backup (identity, epochs, every"
.print "--     key and value).  It prints nothing when they agree; a difference fails"
.print "--     the statement (and .bail on would stop the script here)."
INSERT INTO node(node) VALUES ('verify');
.print "--     verify passed."
.shell ls /tmp/tierstore-quickstart/data

.print
.print "-- 12. Restore: a backup directory is a valid primary.  A table whose primary"
.print "--     is data/node-backup serves the durable keys; the ephemeral ones never"
.print "--     left memory, so they are not there."
CREATE VIRTUAL TABLE restored USING tierstore(primary = 'data/node-backup');
SELECT rowid, primary_namespace, secondary_namespace, key, epoch, tier
  FROM restored;

.print
.print "-- Done.  The data stays in /tmp/tierstore-quickstart; inspect it with"
.print "--   mdb_stat -a /tmp/tierstore-quickstart/data/primary"
