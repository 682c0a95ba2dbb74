-- SPEC 9: on disk, plain LMDB that mdb_stat and mdb_dump read.
.headers off
.mode list
-- Helpers over mdb_dump (printable form: bytes outside ASCII as \xx).
--   keys.sh DIR DB       the keys of named database DB, in order
--   pairs.sh DIR DB      key => value, in order
--   storeid.sh DIR FILE  the size of meta's store_id; its hex saved in FILE
.output keys.sh
SELECT 'mdb_dump -p -s "$2" "$1" | sed ''1,/^HEADER=END$/d;/^DATA=END$/d'' | awk ''NR % 2 == 1''';
.output pairs.sh
SELECT 'mdb_dump -p -s "$2" "$1" | sed ''1,/^HEADER=END$/d;/^DATA=END$/d'' | awk ''NR % 2 == 1 { k = $0; next } { print k " =>" $0 }''';
.output storeid.sh
SELECT 'mdb_dump -s meta "$1" | sed ''1,/^HEADER=END$/d;/^DATA=END$/d'' | awk ''NR % 2 == 1 { k = $1; next } k == "73746f72655f6964" { print $1 }'' > "$2"';
SELECT 'echo "store_id: $(($(tr -d ''\n'' < "$2" | wc -c) / 2)) bytes"';
.output stdout

CREATE VIRTUAL TABLE kv USING tierstore(primary = 'data/p');
-- The environment directory holds LMDB's two files.
.shell ls data/p
-- The named databases.
.shell mdb_stat -a data/p | grep '^Status of'
-- A fresh store's metadata: format version 1, a random 16-byte store
-- identity, last epoch 0.
.shell sh keys.sh data/p meta
.shell sh pairs.sh data/p meta | grep -e '^ format_version =>' -e '^ last_epoch =>'
.shell sh storeid.sh data/p id1.txt

-- Keys are encoded as primary_namespace 0x00 secondary_namespace 0x00 key,
-- so they sort by (primary, secondary, key).
INSERT INTO kv VALUES ('ns', '', 'a', 'text value');
INSERT INTO kv VALUES ('ns', 'sub', 'k1', x'0102ff');
INSERT INTO kv VALUES ('', '', 'rootkey', 42);
INSERT INTO kv VALUES ('ns', '', 'b', 1.5);
.shell sh keys.sh data/p data
-- The values: creation number (8 bytes, big-endian), epoch (8 bytes,
-- big-endian), type (1 integer, 2 real, 3 text, 4 blob), then the value
-- (integers and reals as 8 big-endian bytes).
.shell sh pairs.sh data/p data
-- One entry per key in data, created and rowids; the last epoch is 4.
.shell mdb_stat -s data data/p | grep Entries
.shell mdb_stat -s created data/p | grep Entries
.shell mdb_stat -s rowids data/p | grep Entries
.shell sh pairs.sh data/p meta | grep -e '^ last_epoch =>'

-- A rolled-back transaction leaves the files as they were.
BEGIN;
INSERT INTO kv VALUES ('ns', '', 'c', 'never');
DELETE FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' AND key = 'a';
.shell sh keys.sh data/p data
ROLLBACK;
.shell sh keys.sh data/p data
.shell sh pairs.sh data/p meta | grep -e '^ last_epoch =>'

-- A delete and a rename, committed together as epoch 5.
BEGIN;
DELETE FROM kv WHERE primary_namespace = 'ns' AND secondary_namespace = '' AND key = 'b';
UPDATE kv SET key = 'renamed' WHERE primary_namespace = '' AND secondary_namespace = '' AND key = 'rootkey';
COMMIT;
.shell sh keys.sh data/p data
.shell mdb_stat -s data data/p | grep Entries
.shell mdb_stat -s created data/p | grep Entries
.shell mdb_stat -s rowids data/p | grep Entries
.shell sh pairs.sh data/p meta | grep -e '^ last_epoch =>'

-- The store identity never changes; after DROP TABLE the files are still
-- plain LMDB with all the data.
DROP TABLE kv;
.shell sh storeid.sh data/p id2.txt
.shell cmp id1.txt id2.txt && echo store_id unchanged
.shell sh keys.sh data/p data
CREATE VIRTUAL TABLE kv USING tierstore(primary = 'data/p');
INSERT INTO kv VALUES ('ns', '', 'z', 'after re-create');
.shell sh storeid.sh data/p id3.txt
.shell cmp id1.txt id3.txt && echo store_id unchanged
.shell sh pairs.sh data/p meta | grep -e '^ last_epoch =>'
