-- SPEC 1: loading.
-- The runner has already run `.load <build>/tierstore` (no entry point given:
-- SQLite derives sqlite3_tierstore_init from the file name tierstore.so).
.headers off
.mode list

-- The module is registered on the connection that loaded it.
SELECT name FROM pragma_module_list WHERE name = 'tierstore';

-- The build produces tierstore.so, no "lib" prefix, exporting the entry point.
.shell basename "$TIERSTORE_EXT.so"
.shell test -f "$TIERSTORE_EXT.so" && echo "tierstore.so is built"
.shell test ! -e "$(dirname "$TIERSTORE_EXT")/libtierstore.so" && echo "no libtierstore.so"
.shell nm -D --defined-only $TIERSTORE_EXT.so | grep -o -w 'T sqlite3_tierstore_init'

-- Scripts that load the extension again, by file name and with the entry
-- point spelled out.
.shell printf '.load %s\n' "$TIERSTORE_EXT" > load.sql
.shell printf '.load %s sqlite3_tierstore_init\n' "$TIERSTORE_EXT" > load_entry.sql

-- A table in the loading connection.
CREATE VIRTUAL TABLE kv USING tierstore(primary = 'data/p');
INSERT INTO kv VALUES ('ns', '', 'k1', 'one');
SELECT * FROM kv;
.shell grep -q '/tierstore\.so$' /proc/$PPID/maps && echo "tierstore.so mapped"

-- A second connection loads it with the explicit entry point and shares the
-- primary environment (one environment per path per process).
.connection 1
.open test.db
.read load_entry.sql
SELECT name FROM pragma_module_list WHERE name = 'tierstore';
SELECT * FROM kv;
INSERT INTO kv VALUES ('ns', '', 'k2', 'two');
.connection 0
.connection close 1
SELECT * FROM kv;

-- The connection that loaded the module closes (.open replaces it): the
-- module stays loaded for the life of the process.
.open test.db
.shell grep -q '/tierstore\.so$' /proc/$PPID/maps && echo "tierstore.so still mapped"

-- Loading it again on the new connection works, and the data is there.
.read load.sql
SELECT * FROM kv;
INSERT INTO kv VALUES ('ns', '', 'k3', 'three');
SELECT * FROM kv;

-- Open, close and reopen several times in a row: the environment is
-- released and reopened cleanly each time.
.open test.db
.read load.sql
SELECT count(*) FROM kv;
.open test.db
.read load.sql
SELECT count(*) FROM kv;
