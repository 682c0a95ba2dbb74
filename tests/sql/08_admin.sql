-- SPEC 8: admin commands through the hidden column named after the table.
.headers off
.mode list
CREATE VIRTUAL TABLE kv USING tierstore(primary = 'data/p');
INSERT INTO kv VALUES ('ns', '', 'a', 1), ('ns', '', 'b', 2);

-- sync: flush and fsync; no output, no row written.
INSERT INTO kv(kv) VALUES ('sync');
SELECT 'after sync', count(*) FROM kv;
SELECT * FROM kv;
-- sync twice in a row, and after more writes
INSERT INTO kv(kv) VALUES ('sync');
INSERT INTO kv VALUES ('ns', '', 'c', 3);
INSERT INTO kv(kv) VALUES ('sync');
SELECT 'after syncs', count(*) FROM kv;
-- inside a transaction, sync does not commit the transaction's writes:
-- ROLLBACK still discards them
BEGIN;
INSERT INTO kv VALUES ('ns', '', 'd', 4);
INSERT INTO kv(kv) VALUES ('sync');
SELECT 'in transaction', key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '';
ROLLBACK;
SELECT 'after rollback', key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '';
-- and COMMIT still commits them
BEGIN;
INSERT INTO kv VALUES ('ns', '', 'e', 5);
INSERT INTO kv(kv) VALUES ('sync');
COMMIT;
SELECT 'after commit', key FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '';

-- The command column is named after the table.
CREATE VIRTUAL TABLE store USING tierstore(primary = 'data/w', durability = 'written');
INSERT INTO store VALUES ('ns', '', 'w', 'written');
INSERT INTO store(store) VALUES ('sync');
SELECT * FROM store;

-- An unknown command is an error that names it.
INSERT INTO kv(kv) VALUES ('optimize');
INSERT INTO kv(kv) VALUES ('SYNC!');
INSERT INTO store(store) VALUES ('compact');

-- verify and repair need a backup tier, not available yet.
INSERT INTO kv(kv) VALUES ('verify');
INSERT INTO kv(kv) VALUES ('repair');

-- Commands leave the data as it was.
SELECT * FROM kv;
