#!/usr/bin/env bash
# Build tierstore and run the whole suite: C unit tests, SQL tests in the
# sqlite3 shell, Python integration tests; check that the benchmark's
# release build compiles; then the same suite again under AddressSanitizer
# + UndefinedBehaviorSanitizer.  Ends with one line "N passed, N failed".
#   TIERSTORE_NO_SANITIZE=1 tests/run_all.sh   skips the sanitizer pass.
set -u
cd "$(dirname "$0")/.."
status=0

run_suite() { # builddir [meson setup options...]
  local dir=$1; shift
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" "$@" >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log"; return 1; }
  fi
  meson compile -C "$dir" || return 1
  meson test -C "$dir" --print-errorlogs --num-processes 1 || status=1
}

count() { # builddir -> "passed failed"
  /usr/bin/python3 - "$1/meson-logs/testlog.json" <<'PY'
import json, sys
ok = bad = 0
try:
    for line in open(sys.argv[1]):
        r = json.loads(line)["result"]
        if r in ("OK", "EXPECTEDFAIL"): ok += 1
        else: bad += 1
except FileNotFoundError:
    bad = 1
print(ok, bad)
PY
}

run_suite build || status=1
read -r p1 f1 < <(count build)
# The benchmark's release build (bash bench/run.sh) compiles too: -O3 warns
# about things -O2 does not, and -Werror makes them errors.  Counted as one
# test; the benchmark itself is not run here.
if { [ -f build-release/build.ninja ] || meson setup build-release --buildtype=release >build-release.setup.log 2>&1; } &&
   meson compile -C build-release >build-release/compile.log 2>&1; then
  p1=$((p1 + 1))
else
  cat build-release.setup.log build-release/compile.log 2>/dev/null | tail -40
  echo "release build (bench/run.sh) FAILED"
  f1=$((f1 + 1))
fi
# The whole build with clang too (-Werror: warning-free with both
# compilers).  Counted as one test.
if { [ -f build-clang/build.ninja ] || CC=clang meson setup build-clang >build-clang.setup.log 2>&1; } &&
   meson compile -C build-clang >build-clang/compile.log 2>&1; then
  p1=$((p1 + 1))
else
  cat build-clang.setup.log build-clang/compile.log 2>/dev/null | tail -40
  echo "clang build FAILED"
  f1=$((f1 + 1))
fi
p2=0; f2=0
if [ -z "${TIERSTORE_NO_SANITIZE:-}" ]; then
  run_suite build-sanitize -Db_sanitize=address,undefined -Db_lundef=false || status=1
  read -r p2 f2 < <(count build-sanitize)
fi
passed=$((p1 + p2)); failed=$((f1 + f2))
[ "$failed" -eq 0 ] || status=1
echo "$passed passed, $failed failed"
exit $status
