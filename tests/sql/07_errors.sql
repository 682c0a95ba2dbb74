-- SPEC 7: errors and bad input.
.headers off
.mode list
-- nested.sh FILE runs FILE in a second sqlite3 process with the extension
-- loaded, and shows its output with this directory's absolute path as DIR
-- (messages name absolute paths).
.output nested.sh
SELECT '{ echo ".load $TIERSTORE_EXT"; cat "$1"; } | "$TIERSTORE_SQLITE3" -batch nested.db 2>&1 | sed "s|$(pwd -P)|DIR|g"';
.output stdout
CREATE VIRTUAL TABLE kv USING tierstore(primary = 'data/p');
INSERT INTO kv VALUES ('ns', '', 'a', 1), ('ns', '', 'k', 1), ('ns', '', 'z', 1);

-- Every message starts with "tierstore:" and names what failed; the shell
-- shows the SQLite result code in parentheses (none for SQLITE_ERROR).
-- the argument
CREATE VIRTUAL TABLE bad USING tierstore(primary = 'data/x', nope = 1);
CREATE VIRTUAL TABLE bad USING tierstore(primary = 'data/x', map_size = 'big');
-- the name and the rule (SQLITE_CONSTRAINT)
INSERT INTO kv VALUES ('ns', '', 'bad key', 1);
INSERT INTO kv VALUES ('', 'sub', 'k', 1);
INSERT INTO kv VALUES ('ns', '', 5, 1);
-- the key (SQLITE_CONSTRAINT)
INSERT INTO kv VALUES ('ns', '', 'k', 2);
INSERT INTO kv VALUES ('ns', '', 'k2', NULL);
-- the column
INSERT INTO kv(primary_namespace, secondary_namespace, key, value, tier) VALUES ('ns', '', 'k3', 1, 'ephemeral');
-- the command
INSERT INTO kv(kv) VALUES ('bogus');

-- The environment and its path, with the LMDB error text.
-- a damaged environment: SQLITE_CORRUPT
.shell mkdir zeroed && head -c 16384 /dev/zero > zeroed/data.mdb
.shell mkdir text && printf 'not an lmdb file' > text/data.mdb
-- a path that cannot be a directory: SQLITE_CANTOPEN
.shell touch afile
.output bad_envs.sql
SELECT 'CREATE VIRTUAL TABLE c1 USING tierstore(primary = ''zeroed'');';
SELECT 'CREATE VIRTUAL TABLE c2 USING tierstore(primary = ''text'');';
SELECT 'CREATE VIRTUAL TABLE c3 USING tierstore(primary = ''afile'');';
SELECT 'CREATE VIRTUAL TABLE c4 USING tierstore(primary = ''afile/sub'');';
SELECT 'SELECT count(*) FROM sqlite_schema;';
.output stdout
.shell sh nested.sh bad_envs.sql
-- the damaged file is left as it was
.shell head -c 16384 /dev/zero | cmp - zeroed/data.mdb && echo zeroed/data.mdb is unchanged

-- A failed statement leaves nothing behind in the primary.
.shell mdb_stat -s data data/p | grep Entries
INSERT INTO kv VALUES ('f', '', 'a', 1), ('f', '', 'b', 2), ('f', '', 'c', 3), ('f', '', 'bad key', 4);
UPDATE kv SET value = CASE key WHEN 'k' THEN NULL ELSE 0 END;
.shell mdb_stat -s data data/p | grep Entries
SELECT * FROM kv;

-- The map grows by itself: a 64 KiB map takes megabytes, in one
-- transaction, in many small ones, and as one value larger than the map.
CREATE VIRTUAL TABLE small USING tierstore(primary = 'data/small', map_size = '64KiB');
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 400)
INSERT INTO small SELECT 'big', '', printf('k%04d', i), zeroblob(10000) FROM n;
SELECT count(*), sum(length(value)) FROM small WHERE primary_namespace = 'big' AND secondary_namespace = '';
INSERT INTO small VALUES ('one', '', 'huge', zeroblob(4 * 1024 * 1024));
SELECT length(value) FROM small WHERE primary_namespace = 'one' AND secondary_namespace = '' AND key = 'huge';
CREATE TEMP TABLE n(i INTEGER);
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 200) INSERT INTO n SELECT i FROM c;
.output many.sql
SELECT printf('INSERT INTO small VALUES (''many'', '''', ''k%04d'', zeroblob(20000));', i) FROM n;
.output stdout
.read many.sql
SELECT count(*), sum(length(value)) FROM small WHERE primary_namespace = 'many' AND secondary_namespace = '';
.shell mdb_stat -s data data/small | grep Entries

-- Registered DIRECTONLY: the table cannot be used from a view or trigger of
-- the schema, even with trusted_schema on.
CREATE VIEW v AS SELECT key, value FROM kv;
SELECT * FROM v;
CREATE TABLE plain(x);
CREATE TRIGGER tr AFTER INSERT ON plain BEGIN INSERT INTO kv VALUES ('t', '', new.x, 1); END;
INSERT INTO plain VALUES ('fromtrigger');
CREATE TRIGGER tr2 AFTER INSERT ON plain BEGIN SELECT count(*) FROM kv; END;
DROP TRIGGER tr;
INSERT INTO plain VALUES ('fromtrigger');
PRAGMA trusted_schema = 1;
SELECT * FROM v;
INSERT INTO plain VALUES ('fromtrigger');
SELECT count(*) FROM plain;
SELECT count(*) FROM kv WHERE primary_namespace = 't';
