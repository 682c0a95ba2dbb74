-- SPEC 5 (and 2, 6, 8): the tiers.  A backup mirror of the primary, an
-- ephemeral tier routed by rules, listings across tiers, verify and repair.
.headers off
.mode list
.shell printf '.load %s\n' "$TIERSTORE_EXT" > load.sql
-- Helpers over mdb_dump (printable form: bytes outside ASCII as \xx).
--   keys.sh DIR DB     the keys of named database DB, in order
--   meta.sh DIR        the backup's or primary's last_epoch and next_rowid
--   storeid.sh DIR     the store identity (hex)
--   same.sh FILE MSG   MSG when stdin equals FILE (not empty), else both
--   nested.sh FILE     FILE in a second sqlite3 process with the extension
--                      loaded; this directory's absolute path shows as DIR
--   killed.sh FILE     the same, showing the exit status first (137 when
--                      TIERSTORE_FAULT killed it; the shell's own "Killed"
--                      notice is left out)
.output keys.sh
SELECT 'mdb_dump -p -s "$2" "$1" | sed ''1,/^HEADER=END$/d;/^DATA=END$/d'' | awk ''NR % 2 == 1''';
.output meta.sh
SELECT 'mdb_dump -p -s meta "$1" | sed ''1,/^HEADER=END$/d;/^DATA=END$/d'' | awk ''NR % 2 == 1 { k = $0; next } k == " last_epoch" || k == " next_rowid" { print k " =>" $0 }''';
.output storeid.sh
SELECT 'mdb_dump -s meta "$1" | sed ''1,/^HEADER=END$/d;/^DATA=END$/d'' | awk ''NR % 2 == 1 { k = $1; next } k == "73746f72655f6964" { print $1 }''';
.output killed.sh
SELECT '"$TIERSTORE_SQLITE3" -batch nested.db -cmd ".load $TIERSTORE_EXT" < "$1" > killed.out 2>&1; echo "writer exit status $?"; grep -v Killed killed.out | sed "s|$(pwd -P)|DIR|g"';
.output same.sh
SELECT 'f=$1; shift; t=$(mktemp ./same.XXXXXX); cat > "$t"; if test -s "$f" && cmp -s "$t" "$f"; then echo "$*"; else echo "differs from $f:"; cat "$t"; fi; rm -f "$t"';
.output nested.sh
SELECT '{ echo ".load $TIERSTORE_EXT"; cat "$1"; } | "$TIERSTORE_SQLITE3" -batch nested.db 2>&1 | sed "s|$(pwd -P)|DIR|g"';
.output stdout

-- A table with a backup and the LDK caches in memory.  The backup
-- directory is created and filled (empty) at CREATE.
CREATE VIRTUAL TABLE kv USING tierstore(primary = 'data/p', backup = 'data/b', ephemeral = 'ldk');
.shell ls data
.shell ls data/b

-- Durable and ephemeral keys, in the root namespace and elsewhere: one
-- creation order (rowid) and one epoch sequence across the tiers.
INSERT INTO kv VALUES ('', '', 'manager', 'manager v1');
INSERT INTO kv VALUES ('', '', 'network_graph', x'6e6731');
INSERT INTO kv VALUES ('monitors', '', 'chan1', 'mon 1');
BEGIN;
INSERT INTO kv VALUES ('', '', 'scorer', 'scorer v1');
INSERT INTO kv VALUES ('', '', 'bdk_wallet', 'wallet v1');
INSERT INTO kv VALUES ('monitors', '', 'chan2', 'mon 2');
COMMIT;
INSERT INTO kv VALUES ('', '', 'external_pathfinding_scores_cache', 'cache v1');
INSERT INTO kv VALUES ('', '', 'zz_last', 'z v1');
.mode quote
SELECT rowid, *, tier, epoch FROM kv;
.mode list
-- the ldk preset covers exactly three root keys
SELECT tier, count(*) FROM kv GROUP BY tier ORDER BY tier;

-- The root namespace lists both tiers, each key once, ascending and
-- descending by key; ranges, LIMIT and OFFSET cross the tiers too.
SELECT 'root', key, tier FROM kv WHERE primary_namespace = '' AND secondary_namespace = '';
EXPLAIN QUERY PLAN SELECT key FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' ORDER BY key DESC;
SELECT 'root desc', key, tier FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' ORDER BY key DESC;
SELECT 'root pns only', key FROM kv WHERE primary_namespace = '';
SELECT 'root > m', key FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' AND key > 'm';
SELECT 'root <= n desc', key FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' AND key <= 'network_graph' ORDER BY key DESC;
SELECT 'root limit 2 offset 1', key FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' LIMIT 2 OFFSET 1;
SELECT 'root in', key, tier FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' AND key IN ('scorer', 'manager', 'nope') ORDER BY key;
-- point reads in both tiers
SELECT 'point', value, tier FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' AND key = 'scorer';
SELECT 'point', value, tier FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' AND key = 'manager';
SELECT 'by rowid', key, tier FROM kv WHERE rowid = (SELECT rowid FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' AND key = 'network_graph');

-- Newest first by creation, across tiers, page by page (list_paginated).
EXPLAIN QUERY PLAN SELECT key FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' ORDER BY rowid DESC LIMIT 2;
SELECT 'page 1', rowid, key, tier FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' ORDER BY rowid DESC LIMIT 2;
.parameter init
INSERT INTO temp.sqlite_parameters SELECT ':last', min(rowid) FROM (SELECT rowid FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' ORDER BY rowid DESC LIMIT 2);
-- updating values of both tiers between pages moves nothing
UPDATE kv SET value = 'scorer v2' WHERE primary_namespace = '' AND secondary_namespace = '' AND key = 'scorer';
UPDATE kv SET value = 'manager v2' WHERE primary_namespace = '' AND secondary_namespace = '' AND key = 'manager';
EXPLAIN QUERY PLAN SELECT key FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' AND rowid < :last ORDER BY rowid DESC LIMIT 2;
SELECT 'page 2', rowid, key, tier FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' AND rowid < :last ORDER BY rowid DESC LIMIT 2;
REPLACE INTO temp.sqlite_parameters SELECT ':last', min(rowid) FROM (SELECT rowid FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' AND rowid < :last ORDER BY rowid DESC LIMIT 2);
SELECT 'page 3', rowid, key, tier, value FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' AND rowid < :last ORDER BY rowid DESC LIMIT 2;
SELECT 'oldest first', rowid, key FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' ORDER BY rowid;
-- a replaced ephemeral key keeps its creation number and gets a new epoch
SELECT 'scorer', rowid, epoch, value FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' AND key = 'scorer';

-- A transaction sees its own ephemeral writes (epoch NULL until COMMIT);
-- ROLLBACK discards them.
BEGIN;
INSERT OR IGNORE INTO kv VALUES ('', '', 'scorer', 'never');
REPLACE INTO kv VALUES ('', '', 'scorer', 'scorer in tx');
DELETE FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' AND key = 'network_graph';
REPLACE INTO kv VALUES ('', '', 'external_pathfinding_scores_cache', 'cache in tx');
INSERT INTO kv VALUES ('', '', 'a_durable', 'in tx');
.mode quote
SELECT 'in tx', key, value, tier, epoch FROM kv WHERE primary_namespace = '' AND secondary_namespace = '';
.mode list
SELECT 'in tx newest', key FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' ORDER BY rowid DESC LIMIT 3;
ROLLBACK;
.mode quote
SELECT 'rolled back', key, value, tier, epoch FROM kv WHERE primary_namespace = '' AND secondary_namespace = '';
.mode list

-- Savepoints undo exactly their part, for ephemeral keys too.
BEGIN;
UPDATE kv SET value = 'scorer v3' WHERE primary_namespace = '' AND secondary_namespace = '' AND key = 'scorer';
SAVEPOINT s1;
DELETE FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' AND key = 'scorer';
-- a failing statement undoes only itself
INSERT INTO kv VALUES ('', '', 'network_graph', 'dup');
UPDATE kv SET value = 'graph in s1' WHERE primary_namespace = '' AND secondary_namespace = '' AND key = 'network_graph';
SAVEPOINT s2;
DELETE FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' AND key = 'external_pathfinding_scores_cache';
SELECT 's2', key, value FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' AND tier = 'ephemeral';
ROLLBACK TO s2;
SELECT 'to s2', key, value FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' AND tier = 'ephemeral';
ROLLBACK TO s1;
SELECT 'to s1', key, value FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' AND tier = 'ephemeral';
SAVEPOINT s3;
DELETE FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' AND key = 'external_pathfinding_scores_cache';
RELEASE s3;
RELEASE s1;
COMMIT;
SELECT 'committed', key, value FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' AND tier = 'ephemeral';
-- a key deleted and created again gets a new creation number
INSERT INTO kv VALUES ('', '', 'external_pathfinding_scores_cache', 'cache v2');
SELECT 'recreated', rowid > (SELECT max(rowid) FROM kv WHERE key <> 'external_pathfinding_scores_cache') FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' AND key = 'external_pathfinding_scores_cache';

-- A transaction that touches only ephemeral keys writes neither
-- environment: last_epoch and next_rowid on disk stay as they were.
.shell sh meta.sh data/p > before_p.txt
.shell sh meta.sh data/b > before_b.txt
BEGIN;
REPLACE INTO kv VALUES ('', '', 'scorer', 'scorer v4');
DELETE FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' AND key = 'network_graph';
INSERT INTO kv VALUES ('', '', 'network_graph', 'graph v2');
COMMIT;
.shell sh meta.sh data/p | sh same.sh before_p.txt primary untouched
.shell sh meta.sh data/b | sh same.sh before_b.txt backup untouched
SELECT 'ephemeral only', key, value, rowid > (SELECT max(rowid) FROM kv WHERE key <> 'network_graph') FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' AND tier = 'ephemeral';

-- Moving a durable row to an ephemeral name (a pns rule would do the same)
-- takes it out of both environments (a new creation number: a new key).
BEGIN;
DELETE FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' AND key = 'external_pathfinding_scores_cache';
UPDATE kv SET key = 'external_pathfinding_scores_cache' WHERE primary_namespace = '' AND secondary_namespace = '' AND key = 'zz_last';
COMMIT;
SELECT 'moved', key, value, tier, rowid > (SELECT max(rowid) FROM kv WHERE key <> 'external_pathfinding_scores_cache') FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' AND key IN ('zz_last', 'external_pathfinding_scores_cache');

-- verify: primary and backup agree; no output.
INSERT INTO kv(kv) VALUES ('verify');
SELECT 'verify ok';

-- The backup holds exactly the durable keys; no ephemeral key is in
-- either environment.
.shell sh keys.sh data/p data
.shell sh keys.sh data/b data
.shell mdb_dump -s data -p data/b | grep -c -e network_graph -e scorer -e external_pathfinding || true
.shell mdb_dump -s data -p data/p | grep -c -e network_graph -e scorer -e external_pathfinding || true
.shell sh keys.sh data/b rowids | wc -l
.shell sh keys.sh data/b created | wc -l
-- the backup is plain LMDB with the primary's named databases
.shell mdb_stat -a data/b | grep '^Status of'
.shell mdb_stat -s data data/b | grep Entries
.shell sh meta.sh data/p > p_meta.txt
.shell sh meta.sh data/b | sh same.sh p_meta.txt backup numbers equal the primary
-- the two share one store identity
.shell sh storeid.sh data/p > p_id.txt
.shell sh storeid.sh data/b | sh same.sh p_id.txt same store identity

-- repair on a healthy backup changes nothing (not even a transaction).
.shell mdb_stat -e data/b | grep 'Last transaction ID' > b_txn.txt
INSERT INTO kv(kv) VALUES ('repair');
.shell mdb_stat -e data/b | grep 'Last transaction ID' | sh same.sh b_txn.txt no backup transaction
.shell sh meta.sh data/b | sh same.sh p_meta.txt backup numbers unchanged by repair
.shell sh keys.sh data/b data
INSERT INTO kv(kv) VALUES ('verify');
SELECT 'verify after repair ok';

-- Restore: a table whose primary is the backup directory serves every
-- durable row with its creation number and epoch, and none of the
-- ephemeral ones (with or without the ephemeral rules).
CREATE VIRTUAL TABLE restored USING tierstore(primary = 'data/b');
CREATE VIRTUAL TABLE restored_ldk USING tierstore(primary = 'data/b', ephemeral = 'ldk');
CREATE TEMP VIEW durable AS SELECT rowid AS r, primary_namespace AS p, secondary_namespace AS s, key AS k, value AS v, epoch AS e FROM kv WHERE tier = 'primary';
SELECT 'restored', rowid, *, tier, epoch FROM restored;
SELECT 'kv minus restored', count(*) FROM (SELECT * FROM durable EXCEPT SELECT rowid, primary_namespace, secondary_namespace, key, value, epoch FROM restored);
SELECT 'restored minus kv', count(*) FROM (SELECT rowid, primary_namespace, secondary_namespace, key, value, epoch FROM restored EXCEPT SELECT * FROM durable);
SELECT 'restored_ldk', rowid, key, tier FROM restored_ldk WHERE primary_namespace = '' AND secondary_namespace = '';
SELECT 'restored ephemeral', count(*) FROM restored_ldk WHERE tier = 'ephemeral';
DROP TABLE restored;
DROP TABLE restored_ldk;

-- verify and repair need a backup.
CREATE VIRTUAL TABLE nb USING tierstore(primary = 'data/nb', ephemeral = 'ldk');
INSERT INTO nb VALUES ('', '', 'scorer', 1), ('', '', 'k', 2);
INSERT INTO nb(nb) VALUES ('verify');
INSERT INTO nb(nb) VALUES ('repair');
INSERT INTO nb(nb) VALUES ('sync');
SELECT 'nb', key, tier FROM nb;

-- An empty backup is filled from the primary when the table opens: a new
-- directory, or an existing empty one.
.shell mkdir data/nb_empty
CREATE VIRTUAL TABLE nbb USING tierstore(primary = 'data/nb', backup = 'data/nb_new', ephemeral = 'ldk');
CREATE VIRTUAL TABLE nbe USING tierstore(primary = 'data/nb', backup = 'data/nb_empty');
.shell sh keys.sh data/nb_new data
.shell sh keys.sh data/nb_empty data
.shell sh meta.sh data/nb > nb_meta.txt
.shell sh meta.sh data/nb_new | sh same.sh nb_meta.txt nb_new numbers equal the primary
.shell sh meta.sh data/nb_empty | sh same.sh nb_meta.txt nb_empty numbers equal the primary
INSERT INTO nbb(nbb) VALUES ('verify');
INSERT INTO nbe(nbe) VALUES ('verify');
SELECT 'filled backups verified';

-- Rules: a pns rule takes a whole primary namespace; a pns/sns rule one
-- namespace pair; empty parts name the root namespace or an empty
-- secondary namespace.
CREATE VIRTUAL TABLE kr USING tierstore(primary = 'data/r', backup = 'data/rb',
  ephemeral = ' cache , mon/archive, //scorer, x//k');
INSERT INTO kr VALUES
  ('cache', '', 'a', 1), ('cache', 'sub', 'b', 2), ('cachex', '', 'c', 3),
  ('mon', 'archive', 'd', 4), ('mon', '', 'e', 5), ('mon', 'archived', 'f', 6),
  ('', '', 'scorer', 7), ('', '', 'manager', 8),
  ('x', '', 'k', 9), ('x', '', 'k2', 10), ('x', 'y', 'k', 11);
SELECT 'kr', primary_namespace, secondary_namespace, key, tier FROM kr;
INSERT INTO kr(kr) VALUES ('verify');
.shell sh keys.sh data/r data
.shell sh keys.sh data/rb data

-- Changed rules: keys that now belong to the ephemeral tier are no longer
-- served from the primary (their durable copies stay on disk, untouched).
CREATE VIRTUAL TABLE krn USING tierstore(primary = 'data/r', ephemeral = 'cachex, mon');
SELECT 'krn', primary_namespace, secondary_namespace, key, tier FROM krn;
SELECT 'krn cachex', count(*) FROM krn WHERE primary_namespace = 'cachex';
SELECT 'krn point', count(*) FROM krn WHERE primary_namespace = 'cachex' AND secondary_namespace = '' AND key = 'c';
INSERT INTO krn VALUES ('cachex', '', 'c', 'now in memory');
SELECT 'krn cachex', key, value, tier FROM krn WHERE primary_namespace = 'cachex';
SELECT 'kr cachex', key, value, tier FROM kr WHERE primary_namespace = 'cachex';
DROP TABLE krn;

-- A backup that belongs to another store is refused at CREATE, and so is
-- a backup that is the primary under another spelling.  A refused CREATE
-- creates nothing on disk (f3's and g1's new primaries neither).
.output refuse.sql
SELECT 'CREATE VIRTUAL TABLE f1 USING tierstore(primary = ''data/p'', backup = ''data/r'');';
SELECT 'CREATE VIRTUAL TABLE f2 USING tierstore(primary = ''data/r'', backup = ''data/b'');';
SELECT 'CREATE VIRTUAL TABLE f3 USING tierstore(primary = ''data/fresh'', backup = ''data/p'');';
SELECT 'CREATE VIRTUAL TABLE f4 USING tierstore(primary = ''data/p'', backup = ''data/./p'');';
SELECT 'CREATE VIRTUAL TABLE g1 USING tierstore(primary = ''data/fresh2'', backup = ''afile/x'');';
SELECT 'SELECT count(*) FROM sqlite_schema;';
.output stdout
.shell touch afile
.shell sh nested.sh refuse.sql
.shell test -e data/fresh || echo nothing created for f3
.shell test -e data/fresh2 || echo nothing created for g1
-- the refused backups are unchanged
INSERT INTO kv(kv) VALUES ('verify');
INSERT INTO kr(kr) VALUES ('verify');
SELECT 'still verified';

-- A backup that misses a commit (the writer died between the primary and
-- the backup write: the test-only fault point) catches up at the next
-- commit, on repair, or at the next open.
.output lag.sql
SELECT 'CREATE VIRTUAL TABLE IF NOT EXISTS n USING tierstore(primary = ''data/p'', backup = ''data/b'', ephemeral = ''ldk'');';
SELECT 'INSERT INTO n VALUES (''lag'', '''', printf(''k%d'', (SELECT count(*) FROM n WHERE primary_namespace = ''lag'') + 1), ''before the crash'');';
.output stdout
.shell TIERSTORE_FAULT=after-primary sh killed.sh lag.sql 2>/dev/null
SELECT 'lag 1', key, value FROM kv WHERE primary_namespace = 'lag';
.shell sh keys.sh data/b data | grep -c lag || true
-- the next commit brings the missing key along
INSERT INTO kv VALUES ('lag', '', 'after1', 'next commit');
.shell sh keys.sh data/b data | grep lag
INSERT INTO kv(kv) VALUES ('verify');
SELECT 'lag 1 verified';
.shell TIERSTORE_FAULT=after-primary sh killed.sh lag.sql 2>/dev/null
.shell sh keys.sh data/b data | grep -c lag
INSERT INTO kv(kv) VALUES ('repair');
.shell sh keys.sh data/b data | grep lag
.shell sh meta.sh data/p > p_meta.txt
.shell sh meta.sh data/b | sh same.sh p_meta.txt repaired backup numbers equal the primary
INSERT INTO kv(kv) VALUES ('verify');
SELECT 'lag 2 verified';
-- a deletion is caught up too, and an open (the second process) heals it
.output lagdel.sql
SELECT 'DELETE FROM n WHERE primary_namespace = ''lag'' AND secondary_namespace = '''' AND key = ''k1'';';
.output stdout
.shell TIERSTORE_FAULT=after-primary sh killed.sh lagdel.sql 2>/dev/null
.shell sh keys.sh data/b data | grep lag
.output open.sql
SELECT 'SELECT ''opened'', count(*) FROM n WHERE primary_namespace = ''lag'';';
.output stdout
.shell sh nested.sh open.sql
.shell sh keys.sh data/b data | grep lag
INSERT INTO kv(kv) VALUES ('verify');
SELECT 'lag 3 verified';
SELECT 'lag', key, value FROM kv WHERE primary_namespace = 'lag';

-- Creation numbers are unique across tiers and processes: a key created
-- in memory here and a durable key created by another process get
-- different ones.
INSERT INTO kv VALUES ('uniq', '', 'a', 'durable, here');
DELETE FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' AND key = 'scorer';
INSERT INTO kv VALUES ('', '', 'scorer', 'scorer v5');
.output uniq.sql
SELECT 'INSERT INTO n VALUES (''uniq'', '''', ''b'', ''durable, other process'');';
.output stdout
.shell sh nested.sh uniq.sql
SELECT 'uniq', count(*), count(DISTINCT rowid) FROM kv;
SELECT 'uniq', key, tier FROM kv WHERE rowid = (SELECT rowid FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' AND key = 'scorer');
SELECT 'uniq', key, tier FROM kv WHERE rowid = (SELECT rowid FROM kv WHERE primary_namespace = 'uniq' AND secondary_namespace = '' AND key = 'b');
-- deleting the ephemeral key deletes that key and no other
DELETE FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' AND key = 'scorer';
SELECT 'uniq after delete', primary_namespace, key, tier FROM kv WHERE primary_namespace = 'uniq' OR key = 'scorer';
.shell sh keys.sh data/p data | grep uniq
INSERT INTO kv VALUES ('', '', 'scorer', 'scorer v5');

-- The ephemeral tier is process memory: it lasts until the process ends
-- (SPEC 5; SPEC 1: the environments are process-wide and outlive the
-- connection), so closing the connection and opening the database again
-- in the same process still finds the cached keys.
SELECT 'before reopen', key, value FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' AND tier = 'ephemeral';
.open test.db
.read load.sql
SELECT 'reopened', key, value FROM kv WHERE primary_namespace = '' AND secondary_namespace = '' AND tier = 'ephemeral';
INSERT INTO kv(kv) VALUES ('verify');
SELECT 'end';
