#!/usr/bin/env bash
# meson install into a scratch DESTDIR, then use the installed tree as a
# user would: the files are where the README says; an app builds with
# nothing but `cc app.c $(pkg-config --cflags --libs tierstore)` (the static
# library, no load_extension) and runs; the installed loadable module loads
# in the sqlite3 shell; the installed Python client finds it by itself.
# Usage: test_install.sh BUILD_DIR SOURCE_DIR
set -u
build=$1 src=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/tierstore-install-XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
dest=$work/root
meson install -C "$build" --destdir "$dest" --no-rebuild >"$work/install.log" 2>&1 || { cat "$work/install.log"; fail "meson install"; }
prefix=$(meson introspect "$build" --buildoptions | /usr/bin/python3 -c 'import json,sys; print([o["value"] for o in json.load(sys.stdin) if o["name"]=="prefix"][0])')
libdir=$(meson introspect "$build" --buildoptions | /usr/bin/python3 -c 'import json,sys; print([o["value"] for o in json.load(sys.stdin) if o["name"]=="libdir"][0])')
root=$dest$prefix
for f in "$libdir/sqlite3/tierstore.so" "$libdir/libtierstore.a" include/tierstore.h "$libdir/pkgconfig/tierstore.pc"; do
  [ -f "$root/$f" ] || fail "$f not installed (installed: $(cd "$dest" && find . -type f | tr '\n' ' '))"
done
py=$(find "$root" -name tierstore.py -path '*-packages/*' | head -1)
[ -n "$py" ] || fail "the Python client is not installed under a site directory"
echo "installed: $(cd "$dest" && find . -type f | sort | tr '\n' ' ')"

# an app built with the flags of the .pc file and nothing else
export PKG_CONFIG_SYSROOT_DIR=$dest PKG_CONFIG_PATH=$root/$libdir/pkgconfig
flags=$(pkg-config --cflags --libs tierstore) || fail "pkg-config cannot read tierstore.pc"
echo "pkg-config --cflags --libs tierstore: $flags"
# shellcheck disable=SC2086
cc -Wall -Wextra -Werror -o "$work/app" "$src/tests/install/app.c" $flags 2>"$work/cc.log" || { cat "$work/cc.log"; fail "the app does not build from tierstore.pc"; }
nm -D "$work/app" | grep -q load_extension && fail "the app calls load_extension"
mkdir "$work/data"
out=$("$work/app" "$work/data" 2>&1) || { echo "$out"; fail "the app failed"; }
echo "$out"
echo "$out" | grep -qx 'hello from an embedded app' || fail "the app did not read its row back"
echo "$out" | grep -qx "tierstore $(pkg-config --modversion tierstore), on-disk format 1" || fail "tierstore_version() does not give the .pc version"
echo "$out" | grep -qx 'backup 1' && echo "$out" | grep -qx 'primary 1' || fail "status table rows"
[ -f "$work/data/p/data.mdb" ] && [ -f "$work/data/b/data.mdb" ] || fail "no environments on disk"

# the installed module in the shell, from the directory the .pc names
moddir=$(pkg-config --variable=moduledir tierstore)
got=$(printf '.load %s/tierstore\nSELECT tierstore_version();\n' "$moddir" | sqlite3 -batch 2>&1)
[ "$got" = "tierstore $(pkg-config --modversion tierstore), on-disk format 1" ] || fail "the installed module: $got"

# the installed Python client finds the installed module on its own
got=$(cd "$work" && PYTHONPATH=$(dirname "$py") TIERSTORE_EXT= /usr/bin/python3 - "$root" <<'PY' 2>&1
import sys, tierstore
# the client looks under its own prefix: the installed tree, not this build
assert tierstore.__file__.startswith(sys.argv[1]), tierstore.__file__
with tierstore.KVStore(":memory:", "kvdata") as kv:
    kv.write("a", "", "k", b"\x2a" * 32)
    print(kv.read("a", "", "k").hex())
PY
)
[ "$got" = "$(printf '2a%.0s' $(seq 32))" ] || fail "the installed Python client: $got"
echo "install test passed"
