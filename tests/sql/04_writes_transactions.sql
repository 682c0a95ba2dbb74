-- SPEC 4: writes, transactions and epochs.
.headers off
.mode quote
.shell printf '.load %s\n' "$TIERSTORE_EXT" > load.sql
CREATE VIRTUAL TABLE kv USING tierstore(primary = 'data/p');

-- INSERT of a new key creates it; INSERT of an existing key is a UNIQUE
-- failure on the three name columns.
INSERT INTO kv VALUES ('w', '', 'a', 1);
SELECT changes();
INSERT INTO kv VALUES ('w', '', 'a', 2);
SELECT key, value FROM kv WHERE primary_namespace = 'w';
-- also within one statement (nothing of it is kept) and within a transaction
INSERT INTO kv VALUES ('w', '', 'b', 1), ('w', '', 'b', 2);
SELECT count(*) FROM kv WHERE primary_namespace = 'w' AND secondary_namespace = '' AND key = 'b';
BEGIN;
INSERT INTO kv VALUES ('w', '', 'c', 1);
INSERT INTO kv VALUES ('w', '', 'c', 2);
SELECT value FROM kv WHERE primary_namespace = 'w' AND secondary_namespace = '' AND key = 'c';
COMMIT;
-- the same key under other namespaces is another key
INSERT INTO kv VALUES ('w', 'x', 'a', 10), ('w2', '', 'a', 20);
SELECT * FROM kv WHERE key = 'a';

-- OR REPLACE overwrites and keeps the creation number; OR IGNORE skips;
-- REPLACE INTO is the upsert.
CREATE TEMP TABLE rid(key TEXT, r INTEGER);
INSERT INTO rid SELECT key, rowid FROM kv WHERE primary_namespace = 'w' AND secondary_namespace = '';
INSERT OR REPLACE INTO kv VALUES ('w', '', 'a', 'replaced');
SELECT changes();
INSERT OR IGNORE INTO kv VALUES ('w', '', 'c', 'ignored');
SELECT changes();
INSERT OR IGNORE INTO kv VALUES ('w', '', 'c', 'ignored'), ('w', '', 'd', 'new via ignore');
SELECT changes();
REPLACE INTO kv VALUES ('w', '', 'c', 'upserted'), ('w', '', 'e', 'upsert new');
SELECT changes();
SELECT key, value, rowid = (SELECT r FROM rid WHERE rid.key = kv.key) AS same_number FROM kv WHERE primary_namespace = 'w' AND secondary_namespace = '';
-- OR FAIL keeps the rows before the failing one; OR ROLLBACK ends the
-- transaction.
INSERT OR FAIL INTO kv VALUES ('w', '', 'f1', 1), ('w', '', 'a', 'dup'), ('w', '', 'f2', 2);
SELECT key, value FROM kv WHERE primary_namespace = 'w' AND secondary_namespace = '';
BEGIN;
INSERT INTO kv VALUES ('w', '', 'g', 1);
INSERT OR ROLLBACK INTO kv VALUES ('w', '', 'a', 'dup');
COMMIT;
SELECT count(*) FROM kv WHERE primary_namespace = 'w' AND secondary_namespace = '' AND key = 'g';

-- UPDATE ... SET value changes the value in place.
UPDATE kv SET value = 'updated' WHERE primary_namespace = 'w' AND secondary_namespace = '' AND key = 'a';
SELECT changes();
UPDATE kv SET value = 'nothing' WHERE primary_namespace = 'w' AND secondary_namespace = '' AND key = 'zzz';
SELECT changes();
-- an UPDATE that renames onto an existing key is a UNIQUE failure, unless
-- OR REPLACE
UPDATE kv SET key = 'c' WHERE primary_namespace = 'w' AND secondary_namespace = '' AND key = 'a';
CREATE TEMP TABLE c_before AS SELECT rowid AS r FROM kv WHERE primary_namespace = 'w' AND secondary_namespace = '' AND key = 'c';
UPDATE OR REPLACE kv SET key = 'c' WHERE primary_namespace = 'w' AND secondary_namespace = '' AND key = 'a';
SELECT key, value FROM kv WHERE primary_namespace = 'w' AND secondary_namespace = '';
-- the moved row is a new key: a new creation number, above the one 'c' had
SELECT (SELECT rowid FROM kv WHERE primary_namespace = 'w' AND secondary_namespace = '' AND key = 'c') > (SELECT r FROM c_before);

-- DELETE removes; deleting a key that is not there is not an error.
DELETE FROM kv WHERE primary_namespace = 'w' AND secondary_namespace = '' AND key = 'e';
SELECT changes();
DELETE FROM kv WHERE primary_namespace = 'w' AND secondary_namespace = '' AND key = 'e';
SELECT changes();
DELETE FROM kv WHERE primary_namespace = 'nowhere';
SELECT changes();
SELECT key, value FROM kv WHERE primary_namespace = 'w' AND secondary_namespace = '';

-- Read your writes inside a transaction; other connections see them only
-- after COMMIT.
BEGIN;
INSERT INTO kv VALUES ('w', '', 'new', 'fresh');
UPDATE kv SET value = 'changed' WHERE primary_namespace = 'w' AND secondary_namespace = '' AND key = 'c';
DELETE FROM kv WHERE primary_namespace = 'w' AND secondary_namespace = '' AND key = 'd';
SELECT key, value FROM kv WHERE primary_namespace = 'w' AND secondary_namespace = '';
SELECT value FROM kv WHERE primary_namespace = 'w' AND secondary_namespace = '' AND key = 'new';
SELECT count(*) FROM kv WHERE primary_namespace = 'w' AND secondary_namespace = '' AND key = 'd';
.connection 1
.open test.db
.read load.sql
SELECT 'other', key, value FROM kv WHERE primary_namespace = 'w' AND secondary_namespace = '';
.connection 0
COMMIT;
.connection 1
SELECT 'other', key, value FROM kv WHERE primary_namespace = 'w' AND secondary_namespace = '';
.connection 0
.connection close 1

-- ROLLBACK discards the delta.
BEGIN;
INSERT INTO kv VALUES ('w', '', 'gone', 1);
UPDATE kv SET value = 'lost' WHERE primary_namespace = 'w' AND secondary_namespace = '' AND key = 'c';
DELETE FROM kv WHERE primary_namespace = 'w' AND secondary_namespace = '' AND key = 'new';
ROLLBACK;
SELECT key, value FROM kv WHERE primary_namespace = 'w' AND secondary_namespace = '';

-- SAVEPOINT / ROLLBACK TO / RELEASE undo exactly their part.
BEGIN;
INSERT INTO kv VALUES ('s', '', 'a', 1);
SAVEPOINT s1;
INSERT INTO kv VALUES ('s', '', 'b', 1);
UPDATE kv SET value = 2 WHERE primary_namespace = 's' AND secondary_namespace = '' AND key = 'a';
SAVEPOINT s2;
INSERT INTO kv VALUES ('s', '', 'c', 1);
DELETE FROM kv WHERE primary_namespace = 's' AND secondary_namespace = '' AND key = 'b';
SELECT 'in s2', key, value FROM kv WHERE primary_namespace = 's';
ROLLBACK TO s2;
SELECT 'after rollback to s2', key, value FROM kv WHERE primary_namespace = 's';
INSERT INTO kv VALUES ('s', '', 'd', 1);
RELEASE s2;
SELECT 'after release s2', key, value FROM kv WHERE primary_namespace = 's';
ROLLBACK TO s1;
SELECT 'after rollback to s1', key, value FROM kv WHERE primary_namespace = 's';
INSERT INTO kv VALUES ('s', '', 'e', 1);
RELEASE s1;
COMMIT;
SELECT 'committed', key, value FROM kv WHERE primary_namespace = 's';
-- a savepoint that starts the transaction; RELEASE commits it
SAVEPOINT outer_sp;
INSERT INTO kv VALUES ('s', '', 'f', 1);
ROLLBACK TO outer_sp;
INSERT INTO kv VALUES ('s', '', 'g', 1);
RELEASE outer_sp;
SELECT 'released', key, value FROM kv WHERE primary_namespace = 's';
-- undo of updates and deletes of committed rows; a savepoint survives
-- ROLLBACK TO and can be rolled back to again
BEGIN;
SAVEPOINT sp;
UPDATE kv SET value = 'x' WHERE primary_namespace = 's' AND secondary_namespace = '' AND key = 'a';
DELETE FROM kv WHERE primary_namespace = 's' AND secondary_namespace = '' AND key = 'e';
INSERT INTO kv VALUES ('s', '', 'h', 1);
ROLLBACK TO sp;
SELECT 'undone', key, value FROM kv WHERE primary_namespace = 's';
DELETE FROM kv WHERE primary_namespace = 's' AND secondary_namespace = '' AND key = 'g';
ROLLBACK TO sp;
SELECT 'undone again', key, value FROM kv WHERE primary_namespace = 's';
RELEASE sp;
COMMIT;
SELECT 'final', key, value FROM kv WHERE primary_namespace = 's';

-- A statement that fails inside a transaction undoes only its own changes.
BEGIN;
INSERT INTO kv VALUES ('f', '', 'a', 1);
INSERT INTO kv VALUES ('f', '', 'b', 2), ('f', '', 'c', 3), ('f', '', 'bad key', 4);
SELECT 'after failed insert', key, value FROM kv WHERE primary_namespace = 'f';
INSERT INTO kv VALUES ('f', '', 'b', 2), ('f', '', 'c', 3);
UPDATE kv SET value = CASE key WHEN 'c' THEN NULL ELSE value * 10 END WHERE primary_namespace = 'f' AND secondary_namespace = '';
SELECT 'after failed update', key, value FROM kv WHERE primary_namespace = 'f';
UPDATE kv SET key = CASE key WHEN 'c' THEN 'bad key' ELSE key || 'r' END WHERE primary_namespace = 'f' AND secondary_namespace = '';
SELECT 'after failed rename', key, value FROM kv WHERE primary_namespace = 'f';
INSERT INTO kv VALUES ('f', '', 'd', 4), ('f', '', 'a', 'dup');
SELECT 'after failed duplicate', key, value FROM kv WHERE primary_namespace = 'f';
COMMIT;
SELECT 'committed', key, value FROM kv WHERE primary_namespace = 'f';

-- Epochs: NULL while uncommitted; one per committed transaction, increasing
-- by one, shared by every row of the transaction, kept on disk.
CREATE TEMP TABLE ep(e INTEGER);
INSERT INTO kv VALUES ('e', '', 'one', 1);
INSERT INTO ep SELECT epoch FROM kv WHERE primary_namespace = 'e' AND secondary_namespace = '' AND key = 'one';
SELECT typeof(e) FROM ep;
BEGIN;
INSERT INTO kv VALUES ('e', '', 'two', 2);
INSERT INTO kv VALUES ('e', '', 'three', 3);
SELECT key, epoch - (SELECT e FROM ep) FROM kv WHERE primary_namespace = 'e';
UPDATE kv SET value = 11 WHERE primary_namespace = 'e' AND secondary_namespace = '' AND key = 'one';
SELECT key, epoch - (SELECT e FROM ep) FROM kv WHERE primary_namespace = 'e';
COMMIT;
SELECT key, epoch - (SELECT e FROM ep) FROM kv WHERE primary_namespace = 'e';
-- a rolled-back transaction takes no epoch
BEGIN;
INSERT INTO kv VALUES ('e', '', 'four', 4);
ROLLBACK;
INSERT INTO kv VALUES ('e', '', 'five', 5);
SAVEPOINT x;
INSERT INTO kv VALUES ('e', '', 'six', 6);
RELEASE x;
SELECT key, epoch - (SELECT e FROM ep) FROM kv WHERE primary_namespace = 'e';
-- the epoch belongs to the environment: another table over it continues it
CREATE VIRTUAL TABLE kv2 USING tierstore(primary = 'data/p');
INSERT INTO kv2 VALUES ('e', '', 'seven', 7);
-- and it is kept on disk: after reopening, the count continues
.open test.db
.read load.sql
CREATE TEMP TABLE ep(e INTEGER);
INSERT INTO ep SELECT epoch FROM kv WHERE primary_namespace = 'e' AND secondary_namespace = '' AND key = 'two';
INSERT INTO kv VALUES ('e', '', 'eight', 8);
SELECT key, epoch - (SELECT e FROM ep) FROM kv WHERE primary_namespace = 'e';

-- A statement that modifies rows it is scanning ends, and touches each
-- matching row exactly once.
INSERT INTO kv VALUES ('u', '', 'k1', 1), ('u', '', 'k2', 2), ('u', '', 'k3', 3), ('u', '', 'k4', 4);
UPDATE kv SET key = key || 'x' WHERE primary_namespace = 'u' AND secondary_namespace = '';
SELECT changes();
SELECT key, value FROM kv WHERE primary_namespace = 'u';
UPDATE kv SET key = 'z' || key WHERE primary_namespace = 'u' AND secondary_namespace = '';
SELECT changes();
UPDATE kv SET key = 'a' || key WHERE primary_namespace = 'u';
SELECT changes();
UPDATE kv SET value = value + 100 WHERE primary_namespace = 'u' AND secondary_namespace = '';
SELECT changes();
SELECT key, value FROM kv WHERE primary_namespace = 'u';
-- inside a transaction, over rows that exist only in the delta
BEGIN;
UPDATE kv SET key = key || 'y' WHERE primary_namespace = 'u' AND secondary_namespace = '';
SELECT changes();
UPDATE kv SET key = key || 'y' WHERE primary_namespace = 'u' AND secondary_namespace = '';
SELECT changes();
SELECT key, value FROM kv WHERE primary_namespace = 'u';
COMMIT;
SELECT key, value FROM kv WHERE primary_namespace = 'u';
-- moving rows to another secondary namespace of the scanned namespace
UPDATE kv SET secondary_namespace = 'moved' WHERE primary_namespace = 'u';
SELECT changes();
-- renaming in a scan of the whole table
UPDATE kv SET key = key || 'w' WHERE key LIKE 'az%';
SELECT changes();
SELECT primary_namespace, secondary_namespace, key, value FROM kv WHERE primary_namespace = 'u';
-- INSERT ... SELECT from the same table copies each row once
INSERT INTO kv SELECT primary_namespace, secondary_namespace, key || 'c', value FROM kv WHERE primary_namespace = 'u';
SELECT changes();
SELECT count(*) FROM kv WHERE primary_namespace = 'u';
DELETE FROM kv WHERE primary_namespace = 'u';
SELECT changes();
SELECT count(*) FROM kv WHERE primary_namespace = 'u';

-- durability = written: commits the same way.
CREATE VIRTUAL TABLE kvw USING tierstore(primary = 'data/w', durability = 'written');
BEGIN;
INSERT INTO kvw VALUES ('ns', '', 'a', 1);
INSERT INTO kvw VALUES ('ns', '', 'b', 2);
COMMIT;
SELECT key, value FROM kvw;

-- A transaction writing a tierstore table and an ordinary table commits or
-- rolls back both.
CREATE TABLE plain(x);
BEGIN;
INSERT INTO kv VALUES ('m', '', 'a', 1);
INSERT INTO plain VALUES (1);
COMMIT;
BEGIN;
INSERT INTO kv VALUES ('m', '', 'b', 2);
INSERT INTO plain VALUES (2);
ROLLBACK;
SELECT key FROM kv WHERE primary_namespace = 'm';
SELECT x FROM plain;
