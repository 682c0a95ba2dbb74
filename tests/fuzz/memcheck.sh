#!/usr/bin/env bash
# Leaks and invalid accesses (issue 4, item 6): run the C unit tests
# (BUILD/tests/test_*), every SQL test file (tests/sql/*.sql, through the
# real sqlite3 shell with the extension loaded, as tests/sql/run_sql.py runs
# them) and the Python test files whose connections live in the pytest
# process (Debian's python3 with PYTHONMALLOC=malloc; their child
# processes run without valgrind) under valgrind memcheck:
#
#   valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=9
#
# A program fails when valgrind's ERROR SUMMARY is not 0 (an invalid read or
# write, a use of uninitialized memory, a bad free, or a definite leak), or
# when valgrind wrote no summary at all.  A unit test fails also on a
# non-zero exit status of its own.  The sqlite3 shell's exit status is not
# looked at: the SQL test files contain statements that fail on purpose.
# The fuzz target's seed corpus (tests/fuzz/corpus/) runs under valgrind
# too: fuzz_sql.c built without sanitizers (-DTS_FUZZ_STANDALONE, with the
# system compiler) runs every seed once (TIERSTORE_MEMCHECK_CORPUS=0 skips
# it).
# Memory still reachable at exit (the process-wide environment registry, the
# ephemeral tiers, which live as long as the process by design) is not a
# leak.  Processes that the SQL files start themselves (nested sqlite3
# shells) run without valgrind.
#
# Usage: tests/fuzz/memcheck.sh [BUILD_DIR]   (default: $TIERSTORE_BUILD_ROOT, else build)
#   TIERSTORE_MEMCHECK_JOBS=N   programs run in parallel (default 1)
#   TIERSTORE_MEMCHECK_ONLY=REGEX   run only the programs whose name matches
# The build must not be instrumented (valgrind cannot run AddressSanitizer
# binaries).  Prints one line per program and ends with "memcheck: N programs,
# M failed, T s"; exit status 0 when none failed.  Logs of failed programs
# are printed.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(cd "${1:-${TIERSTORE_BUILD_ROOT:-$root/build}}" && pwd) || exit 1
ext=${TIERSTORE_EXT:-$build/tierstore}
shell=${TIERSTORE_SQLITE3:-$(command -v sqlite3)}
jobs=${TIERSTORE_MEMCHECK_JOBS:-1}
only=${TIERSTORE_MEMCHECK_ONLY:-}

command -v valgrind >/dev/null || { echo "memcheck: valgrind not found (apt-get install valgrind)"; exit 1; }
[ -f "$ext.so" ] || { echo "memcheck: $ext.so not built"; exit 1; }
if nm -D "$ext.so" 2>/dev/null | grep -q '__asan_init'; then
  echo "memcheck: $build is built with AddressSanitizer; valgrind cannot run it"; exit 1
fi
unset LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS TIERSTORE_FAULT

work=$(mktemp -d "${TMPDIR:-/tmp}/tierstore-memcheck-XXXXXX")
trap 'rm -rf "$work"' EXIT
vg=(valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=9
    --num-callers=40 --track-origins=no --child-silent-after-fork=yes)

# One program: memcheck_one NAME KIND ARG; writes $work/NAME.result
memcheck_one() {
  local name=$1 kind=$2 arg=$3 dir="$work/$1.d" log="$work/$1.log" rc t0 t1
  mkdir -p "$dir"
  t0=$(date +%s)
  if [ "$kind" = unit ]; then
    (cd "$dir" && "${vg[@]}" --log-file="$log" "$arg" >"$work/$name.out" 2>&1)
    rc=$?
  elif [ "$kind" = py ]; then
    # a Python test file in this process (its child processes run plainly)
    (cd "$root/tests/py" && PYTHONMALLOC=malloc TIERSTORE_EXT="$ext" TIERSTORE_SQLITE3="$shell" \
       "${vg[@]}" --log-file="$log" /usr/bin/python3 -m pytest -q -p no:cacheprovider \
       --basetemp="$dir/tmp" "$arg" >"$work/$name.out" 2>&1)
    rc=$?
  elif [ "$kind" = corpus ]; then
    (cd "$dir" && TIERSTORE_FUZZ_DIR="$dir/scratch" "${vg[@]}" --log-file="$log" \
       "$work/fuzz_sql_standalone" "$arg" >"$work/$name.out" 2>&1)
    rc=$?
  else
    # as run_sql.py: a fresh directory, test.db, ".load EXT" then the file
    (cd "$dir" && { printf '.load %s\n' "$ext"; cat "$arg"; } |
       TIERSTORE_EXT="$ext" TIERSTORE_SQLITE3="$shell" "${vg[@]}" --log-file="$log" \
         "$shell" -batch test.db >"$work/$name.out" 2>&1)
    rc=$?
  fi
  t1=$(date +%s)
  local errors definite
  errors=$(sed -n 's/^==[0-9]*== ERROR SUMMARY: \([0-9,]*\) errors.*/\1/p' "$log" | tail -1 | tr -d ,)
  definite=$(sed -n 's/^==[0-9]*==  *definitely lost: \([0-9,]*\) bytes.*/\1/p' "$log" | tail -1 | tr -d ,)
  local verdict=ok why=""
  if [ -z "$errors" ]; then
    verdict=FAIL; why="no valgrind summary (exit status $rc)"
  elif [ "$errors" != 0 ]; then
    verdict=FAIL; why="$errors errors, definitely lost ${definite:-0} bytes"
  elif [ "$kind" != sql ] && [ "$rc" != 0 ]; then
    verdict=FAIL; why="the test itself failed (exit status $rc)"
  fi
  printf '%s %s %s %ss %s\n' "$verdict" "$kind" "$name" "$((t1 - t0))" "$why" >"$work/$name.result"
}
export -f memcheck_one
export work ext shell root
export vg_flat="${vg[*]}"

list="$work/list"
: >"$list"
for exe in "$build"/tests/test_*; do
  [ -f "$exe" ] && [ -x "$exe" ] || continue
  echo "$(basename "$exe") unit $exe" >>"$list"
done
for sql in "$root"/tests/sql/*.sql; do
  echo "sql_$(basename "$sql" .sql) sql $sql" >>"$list"
done
# the Python tests whose connections live in the test process itself
for py in test_connections test_kvstore_conformance test_ephemeral test_reopen; do
  echo "py_$py py $py.py" >>"$list"
done
if [ "${TIERSTORE_MEMCHECK_CORPUS:-1}" != 0 ]; then
  # the fuzz target, uninstrumented, as a plain program over the seeds
  if ${CC:-cc} -g -O1 -std=c11 -D_GNU_SOURCE -DSQLITE_CORE -DTS_FUZZ_STANDALONE \
       -I"$root/src" -I"$root/ext" -I"$root/include" "$root"/src/*.c "$root"/ext/*.c "$here/fuzz_sql.c" \
       -Wl,--wrap=getcwd,--wrap=mkdir,--wrap=open,--wrap=unlink,--wrap=rmdir,--wrap=mdb_env_open \
       -llmdb -lsqlite3 -lpthread -lm -o "$work/fuzz_sql_standalone" 2>"$work/cc.log"; then
    echo "fuzz_corpus corpus $here/corpus" >>"$list"
  else
    echo "memcheck: cannot build the standalone fuzz driver:"; cat "$work/cc.log"; exit 1
  fi
fi
if [ -n "$only" ]; then
  grep -E "^[^ ]*($only)" "$list" >"$list.only"; mv "$list.only" "$list"
fi
n=$(wc -l <"$list")
[ "$n" -gt 0 ] || { echo "memcheck: nothing to run"; exit 1; }

start=$(date +%s)
# shellcheck disable=SC2016
xargs -P "$jobs" -L 1 bash -c 'vg=($vg_flat); memcheck_one "$0" "$1" "$2"' <"$list"
end=$(date +%s)

failed=0
while read -r name kind arg; do
  r="$work/$name.result"
  if [ ! -f "$r" ]; then echo "FAIL $kind $name (did not finish)"; failed=$((failed + 1)); continue; fi
  cat "$r"
  if ! grep -q '^ok ' "$r"; then
    failed=$((failed + 1))
    echo "---- valgrind log of $name"
    grep -v '^==[0-9]*== *$' "$work/$name.log" | head -150
    echo "---- output of $name (last 30 lines)"
    tail -30 "$work/$name.out"
  fi
done <"$list"
echo "memcheck: $n programs, $failed failed, $((end - start)) s"
[ "$failed" -eq 0 ]
