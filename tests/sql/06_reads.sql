-- SPEC 6: reads and listings.
-- Plans show as "VIRTUAL TABLE INDEX <idxNum>:"; the idxNum bits (ext/vtab.c):
--   0x1 primary_namespace =     0x2 secondary_namespace =   0x4 key =
--   0x8 key >(=)    0x10 inclusive    0x20 key <(=)    0x40 inclusive
--   0x80 rowid =    0x400 rowid <(=)  0x800 inclusive  0x1000 descending
--   0x2000 creation order   0x4000 LIMIT   0x8000 OFFSET
-- No "USE TEMP B-TREE FOR ORDER BY" line means the table delivers the order.
.headers off
.mode list
CREATE VIRTUAL TABLE kv USING tierstore(primary = 'data/p');
INSERT INTO kv VALUES
  ('ns', '', 'a', 'A'), ('ns', '', 'b', 'B'), ('ns', '', 'c', 'C'),
  ('ns', '', 'd', 'D'), ('ns', '', 'e', 'E'),
  ('ns', 'sub', 'x', 'X'), ('ns', 'sub', 'y', 'Y'), ('ns', 'sub2', 'x', 'X2'),
  ('ns-', '', 'a', 'dash'), ('nr', '', 'z', 'before ns'), ('ns2', '', 'a', 'ns2 a'),
  ('', '', 'r1', 'root 1'), ('', '', 'r2', 'root 2');

-- Point read: all three names with =.
EXPLAIN QUERY PLAN SELECT value FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' AND key = 'c';
SELECT value FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' AND key = 'c';
SELECT count(*) FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' AND key = 'x';
SELECT count(*) FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' AND key = 'zz';

-- Listing one namespace: only its keys, ascending by key.
EXPLAIN QUERY PLAN SELECT key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '';
SELECT key, value FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '';
SELECT key, value FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = 'sub';
-- a whole primary namespace: by secondary namespace, then key
EXPLAIN QUERY PLAN SELECT secondary_namespace, key FROM kv WHERE primary_namespace = 'ns';
SELECT secondary_namespace, key FROM kv WHERE primary_namespace = 'ns';
-- the root namespace
EXPLAIN QUERY PLAN SELECT key FROM kv WHERE primary_namespace = '' AND secondary_namespace = '';
SELECT key, value FROM kv WHERE primary_namespace = '' AND secondary_namespace = '';
-- an unknown namespace is empty
SELECT count(*) FROM kv WHERE primary_namespace = 'none' AND secondary_namespace = '';

-- ORDER BY key, ascending or descending, is delivered by the scan.
EXPLAIN QUERY PLAN SELECT key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' ORDER BY key;
EXPLAIN QUERY PLAN SELECT key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' ORDER BY key DESC;
SELECT key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' ORDER BY key DESC;

-- Key ranges, strict and not, each side and both.
EXPLAIN QUERY PLAN SELECT key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' AND key > 'b';
SELECT '> b', key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' AND key > 'b';
EXPLAIN QUERY PLAN SELECT key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' AND key >= 'b';
SELECT '>= b', key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' AND key >= 'b';
EXPLAIN QUERY PLAN SELECT key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' AND key < 'd';
SELECT '< d', key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' AND key < 'd';
EXPLAIN QUERY PLAN SELECT key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' AND key <= 'd';
SELECT '<= d', key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' AND key <= 'd';
EXPLAIN QUERY PLAN SELECT key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' AND key > 'a' AND key <= 'd';
SELECT '> a <= d', key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' AND key > 'a' AND key <= 'd';
EXPLAIN QUERY PLAN SELECT key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' AND key >= 'b' AND key < 'd';
SELECT '>= b < d', key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' AND key >= 'b' AND key < 'd';
EXPLAIN QUERY PLAN SELECT key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' AND key > 'b' ORDER BY key DESC;
SELECT '> b desc', key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' AND key > 'b' ORDER BY key DESC;
SELECT '>= b <= d desc', key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' AND key >= 'b' AND key <= 'd' ORDER BY key DESC;
-- ranges never leave the namespace
SELECT '> e', count(*) FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' AND key > 'e';
SELECT '< a', count(*) FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' AND key < 'a';
SELECT '>= empty', count(*) FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' AND key >= '';
SELECT 'sub < y', key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = 'sub' AND key < 'y';
SELECT 'sub > a desc', key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = 'sub' AND key > 'a' ORDER BY key DESC;
SELECT 'ns2 > 0', key FROM kv WHERE primary_namespace = 'ns2' AND secondary_namespace = '' AND key > '0';

-- IN (...) on key: point reads.
EXPLAIN QUERY PLAN SELECT key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' AND key IN ('b', 'd', 'zz') ORDER BY key;
SELECT 'in', key, value FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' AND key IN ('b', 'd', 'zz') ORDER BY key;

-- LIMIT and OFFSET are served by the table.
EXPLAIN QUERY PLAN SELECT key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' LIMIT 2;
SELECT 'limit 2', key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' LIMIT 2;
EXPLAIN QUERY PLAN SELECT key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' LIMIT 2 OFFSET 1;
SELECT 'limit 2 offset 1', key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' LIMIT 2 OFFSET 1;
EXPLAIN QUERY PLAN SELECT key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' ORDER BY key DESC LIMIT 2 OFFSET 1;
SELECT 'desc limit 2 offset 1', key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' ORDER BY key DESC LIMIT 2 OFFSET 1;
EXPLAIN QUERY PLAN SELECT key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' AND key > 'a' LIMIT 2;
SELECT '> a limit 2', key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' AND key > 'a' LIMIT 2;
SELECT 'offset 9', count(*) FROM (SELECT key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' LIMIT 5 OFFSET 9);
SELECT 'limit 0', count(*) FROM (SELECT key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' LIMIT 0);

-- A full scan lists everything in (primary, secondary, key) order.
EXPLAIN QUERY PLAN SELECT * FROM kv;
SELECT * FROM kv;

-- Listings merge the transaction's delta with the committed data.
BEGIN;
INSERT INTO kv VALUES ('ns', '', 'bb', 'new BB');
UPDATE kv SET value = 'new A' WHERE primary_namespace = 'ns' AND secondary_namespace = '' AND key = 'a';
DELETE FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' AND key = 'c';
SELECT 'delta', key, value FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '';
SELECT 'delta desc', key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' ORDER BY key DESC;
SELECT 'delta > b', key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' AND key > 'b';
SELECT 'delta limit 2 offset 1', key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' LIMIT 2 OFFSET 1;
SELECT 'delta in', key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' AND key IN ('bb', 'c') ORDER BY key;
SELECT 'delta point c', count(*) FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' AND key = 'c';
SELECT 'delta ns', secondary_namespace, key FROM kv WHERE primary_namespace = 'ns';
ROLLBACK;
SELECT 'rolled back', key, value FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '';

-- A row found by its rowid.
SELECT 'by rowid', key FROM kv WHERE rowid = (SELECT rowid FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = 'sub' AND key = 'y');

-- Pagination, newest first by creation (list_paginated): pages stay stable
-- while values are updated; a deleted key drops out.
INSERT INTO kv VALUES ('pg', '', 'e', 'e1');
INSERT INTO kv VALUES ('pg', '', 'a', 'a1');
INSERT INTO kv VALUES ('pg', '', 'd', 'd1');
INSERT INTO kv VALUES ('pg', '', 'b', 'b1');
INSERT INTO kv VALUES ('pg', '', 'c', 'c1');
INSERT INTO kv VALUES ('pg', '', 'g', 'g1');
INSERT INTO kv VALUES ('pg', '', 'f', 'f1');
INSERT INTO kv VALUES ('pg', 'other', 'zz', 'not this namespace');
INSERT INTO kv VALUES ('pg2', '', 'zz', 'not this namespace');
.parameter init
EXPLAIN QUERY PLAN SELECT key, value FROM kv WHERE primary_namespace = 'pg' AND secondary_namespace = '' ORDER BY rowid DESC LIMIT 3;
SELECT 'page 1', key, value FROM kv WHERE primary_namespace = 'pg' AND secondary_namespace = '' ORDER BY rowid DESC LIMIT 3;
INSERT INTO temp.sqlite_parameters SELECT ':last', min(rowid) FROM (SELECT rowid FROM kv WHERE primary_namespace = 'pg' AND secondary_namespace = '' ORDER BY rowid DESC LIMIT 3);
-- between pages: update a key of page 1 and one of page 2, delete one of
-- page 2, create a new key
UPDATE kv SET value = 'g2' WHERE primary_namespace = 'pg' AND secondary_namespace = '' AND key = 'g';
UPDATE kv SET value = 'b2' WHERE primary_namespace = 'pg' AND secondary_namespace = '' AND key = 'b';
DELETE FROM kv WHERE primary_namespace = 'pg' AND secondary_namespace = '' AND key = 'd';
INSERT INTO kv VALUES ('pg', '', 'h', 'h1');
EXPLAIN QUERY PLAN SELECT key, value FROM kv WHERE primary_namespace = 'pg' AND secondary_namespace = '' AND rowid < :last ORDER BY rowid DESC LIMIT 3;
SELECT 'page 2', key, value FROM kv WHERE primary_namespace = 'pg' AND secondary_namespace = '' AND rowid < :last ORDER BY rowid DESC LIMIT 3;
REPLACE INTO temp.sqlite_parameters SELECT ':last', min(rowid) FROM (SELECT rowid FROM kv WHERE primary_namespace = 'pg' AND secondary_namespace = '' AND rowid < :last ORDER BY rowid DESC LIMIT 3);
SELECT 'page 3', count(*) FROM (SELECT key FROM kv WHERE primary_namespace = 'pg' AND secondary_namespace = '' AND rowid < :last ORDER BY rowid DESC LIMIT 3);
-- the first page again, now with the new key
SELECT 'page 1 again', key, value FROM kv WHERE primary_namespace = 'pg' AND secondary_namespace = '' ORDER BY rowid DESC LIMIT 3;
-- inclusive bound, and the oldest first
EXPLAIN QUERY PLAN SELECT key FROM kv WHERE primary_namespace = 'pg' AND secondary_namespace = '' AND rowid <= :last ORDER BY rowid DESC LIMIT 3;
SELECT 'rowid <= last', key FROM kv WHERE primary_namespace = 'pg' AND secondary_namespace = '' AND rowid <= :last ORDER BY rowid DESC LIMIT 3;
EXPLAIN QUERY PLAN SELECT key FROM kv WHERE primary_namespace = 'pg' AND secondary_namespace = '' ORDER BY rowid LIMIT 3;
SELECT 'oldest first', key FROM kv WHERE primary_namespace = 'pg' AND secondary_namespace = '' ORDER BY rowid LIMIT 3;
SELECT 'all newest first', key FROM kv WHERE primary_namespace = 'pg' AND secondary_namespace = '' ORDER BY rowid DESC;
-- keys created by the open transaction are the newest
BEGIN;
INSERT INTO kv VALUES ('pg', '', 'i', 'i1');
DELETE FROM kv WHERE primary_namespace = 'pg' AND secondary_namespace = '' AND key = 'f';
SELECT 'page 1 in transaction', key, value FROM kv WHERE primary_namespace = 'pg' AND secondary_namespace = '' ORDER BY rowid DESC LIMIT 3;
ROLLBACK;
SELECT 'page 1 after rollback', key, value FROM kv WHERE primary_namespace = 'pg' AND secondary_namespace = '' ORDER BY rowid DESC LIMIT 3;
