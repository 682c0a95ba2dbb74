-- SPEC 2: creating a table.
.headers off
.mode list
.shell printf '.load %s\n' "$TIERSTORE_EXT" > load.sql

-- Rejected CREATEs: each fails with a tierstore: message naming the
-- argument, and nothing is created on disk.
-- unknown argument
CREATE VIRTUAL TABLE r1 USING tierstore(primary = 'rej/unknown', colour = 'red');
-- duplicate argument
CREATE VIRTUAL TABLE r2 USING tierstore(primary = 'rej/dup1', primary = 'rej/dup2');
CREATE VIRTUAL TABLE r3 USING tierstore(primary = 'rej/dup3', names = 'any', names = 'any');
-- missing primary
CREATE VIRTUAL TABLE r4 USING tierstore(names = 'any', map_size = '1MiB');
CREATE VIRTUAL TABLE r5 USING tierstore;
CREATE VIRTUAL TABLE r6 USING tierstore(primary = '');
-- malformed sizes
CREATE VIRTUAL TABLE r7 USING tierstore(primary = 'rej/size1', map_size = '12XB');
CREATE VIRTUAL TABLE r8 USING tierstore(primary = 'rej/size2', map_size = 'lots');
CREATE VIRTUAL TABLE r9 USING tierstore(primary = 'rej/size3', map_size = '1.5MiB');
CREATE VIRTUAL TABLE r10 USING tierstore(primary = 'rej/size4', map_size = '-1');
CREATE VIRTUAL TABLE r11 USING tierstore(primary = 'rej/size5', map_size = '');
CREATE VIRTUAL TABLE r12 USING tierstore(primary = 'rej/size6', map_size = '64 KB');
-- bad rule values
CREATE VIRTUAL TABLE r13 USING tierstore(primary = 'rej/dur', durability = 'eventually');
CREATE VIRTUAL TABLE r14 USING tierstore(primary = 'rej/names', names = 'ascii');
-- an argument that is not name = value
CREATE VIRTUAL TABLE r15 USING tierstore(primary = 'rej/nodelim', 'rej/x');
-- backup equal to primary, an empty backup, malformed ephemeral rules;
-- flush_interval: a duration from 0 to 60s (us, ms, s); max_pending: a size
CREATE VIRTUAL TABLE r16 USING tierstore(primary = 'rej/backup', backup = '');
CREATE VIRTUAL TABLE r17 USING tierstore(primary = 'rej/same', backup = 'rej/same');
CREATE VIRTUAL TABLE r18 USING tierstore(primary = 'rej/eph', ephemeral = 'a/b/c/d');
CREATE VIRTUAL TABLE r19 USING tierstore(primary = 'rej/eph2', ephemeral = 'x,,y');
CREATE VIRTUAL TABLE r20 USING tierstore(primary = 'rej/fi', flush_interval = '61s');
CREATE VIRTUAL TABLE r21 USING tierstore(primary = 'rej/fi2', flush_interval = '10');
CREATE VIRTUAL TABLE r22 USING tierstore(primary = 'rej/mp', max_pending = '0');
-- a table named like a column: its command column would clash
CREATE VIRTUAL TABLE key USING tierstore(primary = 'rej/key');
CREATE VIRTUAL TABLE value USING tierstore(primary = 'rej/value');
CREATE VIRTUAL TABLE epoch USING tierstore(primary = 'rej/epoch');
CREATE VIRTUAL TABLE primary_namespace USING tierstore(primary = 'rej/pns');
-- Nothing on disk, nothing in the schema.
.shell ls -A
SELECT count(*) FROM sqlite_schema;

-- Quoted values ('...' or "...") and bare values; sizes with KiB, MiB, GiB
-- suffixes or in bytes; durations.  Directories that do not exist are created.
CREATE VIRTUAL TABLE q1 USING tierstore(primary = 'data/single', durability = 'written', names = 'any', map_size = '1MiB');
CREATE VIRTUAL TABLE q2 USING tierstore(primary = "data/double", durability = "durable", names = "ldk", map_size = "2MiB");
CREATE VIRTUAL TABLE q3 USING tierstore(primary=data/bare, durability=written, names=any, map_size=64 KiB);
CREATE VIRTUAL TABLE q4 USING tierstore(primary = 'data/gib', map_size = '1GiB');
CREATE VIRTUAL TABLE q5 USING tierstore(primary = 'data/bytes', map_size = 1048576);
CREATE VIRTUAL TABLE q6 USING tierstore(primary = 'data/kib', map_size = '256KiB');
CREATE VIRTUAL TABLE q7 USING tierstore(primary = 'data/deep/er/dir', durability = applied, flush_interval = '250us', max_pending = '1MiB');
SELECT name FROM sqlite_schema ORDER BY name;
.shell ls data
.shell ls data/single
.shell ls data/deep/er/dir
-- The map sizes as LMDB records them.
.shell mdb_stat -e data/single | grep 'Map size'
.shell mdb_stat -e data/double | grep 'Map size'
.shell mdb_stat -e data/bare | grep 'Map size'
.shell mdb_stat -e data/gib | grep 'Map size'
.shell mdb_stat -e data/bytes | grep 'Map size'
.shell mdb_stat -e data/kib | grep 'Map size'
-- names = any (q1, q3) accepts a key with a space; names = ldk (q2) and the
-- default (q7) refuse it.
INSERT INTO q1 VALUES ('ns', '', 'a key', 1);
INSERT INTO q3 VALUES ('ns', '', 'a key', 3);
INSERT INTO q2 VALUES ('ns', '', 'a key', 2);
INSERT INTO q7 VALUES ('ns', '', 'a key', 7);
SELECT 'q1', * FROM q1;
SELECT 'q3', * FROM q3;
SELECT 'q2', count(*) FROM q2;
SELECT 'q7', count(*) FROM q7;

-- The arguments are kept in the schema: after reopening the database the
-- tables have the same rules.
.open test.db
.read load.sql
INSERT INTO q1 VALUES ('ns', '', 'another key', 11);
INSERT INTO q2 VALUES ('ns', '', 'another key', 22);
SELECT 'q1', * FROM q1;
SELECT 'q2', count(*) FROM q2;

-- A relative path resolves against the directory of the database file that
-- declares the table.
.shell mkdir sub elsewhere
ATTACH 'sub/other.db' AS o;
CREATE VIRTUAL TABLE o.kv2 USING tierstore(primary = 'odata');
INSERT INTO o.kv2 VALUES ('ns', '', 'k', 'lives in sub/odata');
.shell ls sub
.shell test ! -e odata && echo "no odata next to test.db"
DETACH o;
-- From another current directory the same data is found.
.cd elsewhere
ATTACH '../sub/other.db' AS o;
SELECT * FROM o.kv2;
SELECT count(*) FROM q1;
.shell ls -A
-- An in-memory or temporary database resolves against the current
-- directory.
ATTACH ':memory:' AS m;
CREATE VIRTUAL TABLE m.kv3 USING tierstore(primary = 'memdata');
CREATE VIRTUAL TABLE temp.kv4 USING tierstore(primary = 'tempdata');
INSERT INTO m.kv3 VALUES ('ns', '', 'k', 'memory');
INSERT INTO temp.kv4 VALUES ('ns', '', 'k', 'temp');
.shell ls -A
DETACH m;
DROP TABLE temp.kv4;
DETACH o;
.cd ..

-- Several tables open one primary environment and share its data, however
-- the path is spelled (one environment per directory).
.shell ln -s shared data/link
CREATE VIRTUAL TABLE sa USING tierstore(primary = 'data/shared');
CREATE VIRTUAL TABLE sb USING tierstore(primary = 'data/./shared');
CREATE VIRTUAL TABLE sc USING tierstore(primary = 'data/../data/shared/');
CREATE VIRTUAL TABLE sd USING tierstore(primary = 'data/link');
INSERT INTO sa VALUES ('ns', '', 'a', 'from sa');
INSERT INTO sc VALUES ('ns', '', 'c', 'from sc');
INSERT INTO sd VALUES ('ns', '', 'd', 'from sd');
SELECT 'sb', * FROM sb;
SELECT 'sa', * FROM sa;
.shell ls data/shared

-- DROP TABLE removes the table from the schema and leaves the files.
DROP TABLE sa;
SELECT name FROM sqlite_schema WHERE name LIKE 's_' ORDER BY name;
SELECT 'sb', * FROM sb;
DROP TABLE sb;
DROP TABLE sc;
DROP TABLE sd;
DROP TABLE q1;
SELECT name FROM sqlite_schema ORDER BY name;
.shell ls data/shared
.shell ls data/single
-- Re-creating a table over the same directory finds the data again.
CREATE VIRTUAL TABLE again USING tierstore(primary = 'data/shared');
SELECT * FROM again;
CREATE VIRTUAL TABLE q1 USING tierstore(primary = 'data/single', names = 'any');
SELECT * FROM q1;
