-- SPEC 3: columns, names and values.
.headers on
.mode quote
CREATE VIRTUAL TABLE kv USING tierstore(primary = 'data/p');
CREATE VIRTUAL TABLE anyt USING tierstore(primary = 'data/any', names = 'any');
.parameter init
INSERT INTO temp.sqlite_parameters VALUES
  (':a120', replace(hex(zeroblob(120)), '00', 'a')),
  (':a121', replace(hex(zeroblob(121)), '00', 'a')),
  (':e254', replace(hex(zeroblob(254)), '00', 'é')),
  (':x505', replace(hex(zeroblob(505)), '00', 'x')),
  (':x506', replace(hex(zeroblob(506)), '00', 'x'));

-- SELECT * shows the four visible columns.
INSERT INTO kv VALUES ('ns', 'sub', 'k', 'v');
SELECT * FROM kv;
-- The hidden columns: tier, epoch, and the command column named after the
-- table.
SELECT name, hidden FROM pragma_table_xinfo('kv');
SELECT key, tier, typeof(epoch) FROM kv;
CREATE VIRTUAL TABLE store USING tierstore(primary = 'data/p');
SELECT name FROM pragma_table_xinfo('store') WHERE hidden;
-- tier and epoch are read-only.
INSERT INTO kv(primary_namespace, secondary_namespace, key, value, tier) VALUES ('ns', '', 'ro', 1, 'primary');
INSERT INTO kv(primary_namespace, secondary_namespace, key, value, epoch) VALUES ('ns', '', 'ro', 1, 99);
UPDATE kv SET tier = 'ephemeral';
UPDATE kv SET epoch = 99;
SELECT key, tier FROM kv;

-- rowid is the key's creation number.
CREATE TEMP TABLE seen(step TEXT, key TEXT, rid INTEGER);
INSERT INTO kv VALUES ('r', '', 'c', 1);
INSERT INTO kv VALUES ('r', '', 'a', 2);
INSERT INTO kv VALUES ('r', '', 'b', 3);
-- increasing in creation order, not key order
SELECT key FROM kv WHERE primary_namespace = 'r' ORDER BY rowid;
-- also for keys created by one transaction
BEGIN;
INSERT INTO kv VALUES ('r', '', 'z2', 4);
INSERT INTO kv VALUES ('r', '', 'z1', 5);
INSERT INTO kv VALUES ('r', '', 'z3', 6);
COMMIT;
SELECT key FROM kv WHERE primary_namespace = 'r' ORDER BY rowid;
SELECT count(DISTINCT rowid) FROM kv WHERE primary_namespace = 'r';
INSERT INTO seen SELECT 'created', key, rowid FROM kv WHERE primary_namespace = 'r';
-- kept by INSERT OR REPLACE, REPLACE INTO and UPDATE of the value
INSERT OR REPLACE INTO kv VALUES ('r', '', 'a', 20);
REPLACE INTO kv VALUES ('r', '', 'b', 30);
UPDATE kv SET value = 10 WHERE primary_namespace = 'r' AND secondary_namespace = '' AND key = 'c';
UPDATE kv SET value = value * 100 WHERE primary_namespace = 'r' AND key LIKE 'z%';
INSERT INTO seen SELECT 'rewritten', key, rowid FROM kv WHERE primary_namespace = 'r';
SELECT key, count(*) AS steps, count(DISTINCT rid) AS numbers FROM seen GROUP BY key ORDER BY key;
SELECT key, value FROM kv WHERE primary_namespace = 'r';
-- a key deleted and created again gets a new, larger number
DELETE FROM kv WHERE primary_namespace = 'r' AND secondary_namespace = '' AND key = 'b';
INSERT INTO kv VALUES ('r', '', 'b', 'again');
SELECT key, rowid > (SELECT max(rid) FROM seen) AS newer FROM kv WHERE primary_namespace = 'r' AND key = 'b';
INSERT INTO seen SELECT 'recreated', key, rowid FROM kv WHERE primary_namespace = 'r';
-- also when both happen in one transaction
BEGIN;
DELETE FROM kv WHERE primary_namespace = 'r' AND secondary_namespace = '' AND key = 'c';
INSERT INTO kv VALUES ('r', '', 'c', 'again');
COMMIT;
SELECT key, rowid > (SELECT max(rid) FROM seen) AS newer FROM kv WHERE primary_namespace = 'r' AND key = 'c';
INSERT INTO seen SELECT 'recreated2', key, rowid FROM kv WHERE primary_namespace = 'r';
-- an UPDATE that renames a key moves the row to a new creation number
UPDATE kv SET key = 'd' WHERE primary_namespace = 'r' AND secondary_namespace = '' AND key = 'a';
SELECT key, value, rowid > (SELECT max(rid) FROM seen) AS newer FROM kv WHERE primary_namespace = 'r' AND key IN ('a', 'd');
-- numbers are unique across the tables of one primary environment
INSERT INTO store VALUES ('r', '', 'from_store', 1);
SELECT key, rowid > (SELECT max(rid) FROM seen) AS newer FROM kv WHERE primary_namespace = 'r' AND key = 'from_store';
SELECT key FROM kv WHERE primary_namespace = 'r' ORDER BY rowid;

-- ldk names (the default): 0 to 120 characters of [A-Za-z0-9_-].
INSERT INTO kv VALUES (:a120, :a120, :a120, 'longest');
SELECT length(primary_namespace), length(secondary_namespace), length(key) FROM kv WHERE primary_namespace = :a120;
INSERT INTO kv VALUES (:a121, '', 'k', 'too long');
INSERT INTO kv VALUES ('ns', :a121, 'k', 'too long');
INSERT INTO kv VALUES ('ns', '', :a121, 'too long');
INSERT INTO kv VALUES ('Az09_-', 'zA90-_', '_-Zz', 'all allowed classes');
SELECT * FROM kv WHERE primary_namespace = 'Az09_-';
-- forbidden characters
INSERT INTO kv VALUES ('ns', '', 'a b', 1);
INSERT INTO kv VALUES ('ns', '', 'a/b', 1);
INSERT INTO kv VALUES ('ns', '', 'a.b', 1);
INSERT INTO kv VALUES ('ns', '', 'é', 1);
INSERT INTO kv VALUES ('ns', '', 'a' || char(0) || 'b', 1);
INSERT INTO kv VALUES ('n:s', '', 'k', 1);
INSERT INTO kv VALUES ('ns', 'a+b', 'k', 1);
-- the key is not empty
INSERT INTO kv VALUES ('ns', '', '', 1);
INSERT INTO kv VALUES ('ns', '', NULL, 1);
INSERT INTO kv(primary_namespace, value) VALUES ('ns', 1);
-- a non-empty secondary namespace needs a primary namespace
INSERT INTO kv VALUES ('', 'sub', 'k', 1);
INSERT INTO kv VALUES (NULL, 'sub', 'k', 1);
-- NULL or omitted namespaces mean ''
INSERT INTO kv VALUES (NULL, NULL, 'null_ns', 1);
INSERT INTO kv(key, value) VALUES ('omitted_ns', 2);
INSERT INTO kv VALUES ('ns2', NULL, 'null_sns', 3);
SELECT primary_namespace, secondary_namespace, typeof(primary_namespace), typeof(secondary_namespace), key FROM kv WHERE key IN ('null_ns', 'omitted_ns', 'null_sns');
-- a rejected row fails its whole statement: nothing of it is kept
INSERT INTO kv VALUES ('multi', '', 'ok1', 1), ('multi', '', 'ok2', 2), ('multi', '', 'bad key', 3);
SELECT count(*) FROM kv WHERE primary_namespace = 'multi';

-- names = any: any TEXT without NUL, as long as the encoding fits 511 bytes.
INSERT INTO anyt VALUES ('name space', 'ünïcödé ✓', 'key with spaces / and 🙂', 1);
INSERT INTO anyt VALUES ('ns', '', :a121, 'longer than ldk allows');
INSERT INTO anyt VALUES ('ns', '', 'a' || char(0) || 'b', 1);
INSERT INTO anyt VALUES ('ns' || char(0), '', 'k', 1);
SELECT * FROM anyt WHERE primary_namespace = 'name space';
SELECT length(key) FROM anyt WHERE primary_namespace = 'ns';
-- 'p' 0x00 '' 0x00 254 x 'é' (508 bytes) = 511 bytes: fits; one more byte does not.
INSERT INTO anyt VALUES ('p', '', :e254, 'fits');
INSERT INTO anyt VALUES ('p', '', :e254 || 'x', 'too long');
SELECT length(key), length(CAST(key AS BLOB)), value FROM anyt WHERE primary_namespace = 'p';
SELECT value FROM anyt WHERE primary_namespace = 'p' AND secondary_namespace = '' AND key = :e254;
-- 505 x 'x' 0x00 '' 0x00 'k' = 508 bytes: fits; 506 x 'x' with a 4-byte key = 512.
INSERT INTO anyt VALUES (:x505, '', 'k', 'long namespace');
INSERT INTO anyt VALUES (:x506, '', 'kkkk', 'too long');
SELECT length(primary_namespace), key, value FROM anyt WHERE primary_namespace = :x505;

-- Names must be TEXT: no silent conversion of integers, reals or blobs.
INSERT INTO kv VALUES ('ns', '', 42, 1);
INSERT INTO kv VALUES ('ns', 7, 'k', 1);
INSERT INTO kv VALUES (1.5, '', 'k', 1);
INSERT INTO kv VALUES (x'6e73', '', 'k', 1);
INSERT INTO anyt VALUES ('ns', '', 42, 1);
UPDATE kv SET key = 7 WHERE primary_namespace = 'ns' AND secondary_namespace = 'sub' AND key = 'k';
SELECT * FROM kv WHERE primary_namespace = 'ns';

-- A NULL value is an error; an empty blob is a valid value.
INSERT INTO kv VALUES ('v', '', 'null', NULL);
INSERT INTO kv(primary_namespace, key) VALUES ('v', 'omitted');
UPDATE kv SET value = NULL WHERE primary_namespace = 'ns' AND secondary_namespace = 'sub' AND key = 'k';
SELECT * FROM kv WHERE primary_namespace = 'v' OR primary_namespace = 'ns';

-- Values round-trip with their type, from the transaction's delta and after
-- the commit.
BEGIN;
INSERT INTO kv VALUES
  ('t', '', 'int', 42),
  ('t', '', 'zero', 0),
  ('t', '', 'min', -9223372036854775808),
  ('t', '', 'max', 9223372036854775807),
  ('t', '', 'real', 1.5),
  ('t', '', 'bigreal', -1e300),
  ('t', '', 'text', 'héllo'),
  ('t', '', 'numtext', '42'),
  ('t', '', 'emptytext', ''),
  ('t', '', 'nultext', 'a' || char(0) || 'b'),
  ('t', '', 'blob', x'00ff10'),
  ('t', '', 'emptyblob', x'');
SELECT key, typeof(value), value, length(CAST(value AS BLOB)) AS bytes FROM kv WHERE primary_namespace = 't' AND secondary_namespace = '';
COMMIT;
SELECT key, typeof(value), value, length(CAST(value AS BLOB)) AS bytes FROM kv WHERE primary_namespace = 't' AND secondary_namespace = '';
SELECT hex(value) FROM kv WHERE primary_namespace = 't' AND secondary_namespace = '' AND key = 'nultext';
SELECT key, typeof(value), value FROM kv WHERE primary_namespace = 't' AND secondary_namespace = '' AND key = 'emptyblob';
