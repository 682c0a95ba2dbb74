#!/usr/bin/env bash
# Build the libFuzzer target tests/fuzz/fuzz_sql.c with clang
# (-fsanitize=fuzzer,address,undefined) and run it for a bounded time on a
# copy of the seed corpus (tests/fuzz/corpus/).
#
#   TIERSTORE_FUZZ_SECONDS   run time in seconds (default 60)
#   TIERSTORE_FUZZ_JOBS      parallel fuzzing processes (default 1)
#   TIERSTORE_FUZZ_KEEP      a directory: keep the grown corpus and any
#                            crash artifacts there (default: a temporary
#                            directory, removed at the end)
#   TIERSTORE_FUZZ_STANDALONE=1  no libFuzzer: build with
#                            -fsanitize=address,undefined and a main() that
#                            runs every seed once (for machines without
#                            clang's fuzzer runtime)
#   CC                       the compiler (default clang)
#
# Inputs named corpus/regress_* reproduce bugs found so far: each runs once
# by itself first and is reported by name when it still fails.  Leaks: the
# process keeps one ephemeral tier per primary directory it ever opened (by
# design, SPEC 5), so libFuzzer soon stops checking for leaks after each
# input; LeakSanitizer still checks the whole run when the process exits
# (and tests/fuzz/memcheck.sh runs the seeds under valgrind).
#
# Usage: tests/fuzz/build_and_run.sh [OUTPUT_DIR]
# OUTPUT_DIR (default: a temporary directory) receives the binary.  Exit
# status 0 when the run found nothing.  The last line says how many
# executions ran and how many inputs the corpus has.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
seconds=${TIERSTORE_FUZZ_SECONDS:-60}
jobs=${TIERSTORE_FUZZ_JOBS:-1}
cc=${CC:-clang}
# meson hands its own CC to tests; the fuzzer needs clang
case "$cc" in *clang*) ;; *) [ -n "${TIERSTORE_FUZZ_STANDALONE:-}" ] || cc=clang ;; esac

work=$(mktemp -d "${TMPDIR:-/tmp}/tierstore-fuzzrun-XXXXXX")
# the inputs' LMDB environments: in memory when /dev/shm is there (fsync
# is free), removed at the end even when the fuzzer stopped on a finding
scratch=$(mktemp -d /dev/shm/tierstore-fuzz-XXXXXX 2>/dev/null || mktemp -d "$work/scratch-XXXXXX")
export TIERSTORE_FUZZ_DIR=$scratch
cleanup() { rm -rf "$work" "$scratch"; }
trap cleanup EXIT
out=${1:-$work}
mkdir -p "$out"

srcs=("$root"/src/*.c "$root"/ext/*.c "$here/fuzz_sql.c")
wrap="-Wl,--wrap=getcwd,--wrap=mkdir,--wrap=open,--wrap=unlink,--wrap=rmdir,--wrap=mdb_env_open"
common=(-g -O1 -fno-omit-frame-pointer -std=c11 -D_GNU_SOURCE -DSQLITE_CORE
        -I"$root/src" -I"$root/ext" -I"$root/include" -Wall -Wextra -Werror)
libs=(-llmdb -lsqlite3 -lpthread -lm)

if [ -n "${TIERSTORE_FUZZ_STANDALONE:-}" ]; then
  bin="$out/fuzz_sql_standalone"
  echo "fuzz: building $bin with $cc (standalone, -fsanitize=address,undefined)"
  "$cc" "${common[@]}" -DTS_FUZZ_STANDALONE -fsanitize=address,undefined \
    -fno-sanitize-recover=all "${srcs[@]}" $wrap "${libs[@]}" -o "$bin" || exit 1
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
  unset LD_PRELOAD
  n=0; bad=0
  for f in "$here"/corpus/*; do
    n=$((n + 1))
    if ! "$bin" "$f" >"$work/one.log" 2>&1; then
      bad=$((bad + 1))
      echo "fuzz: input $(basename "$f") fails:"
      grep -E "runtime error|ERROR: AddressSanitizer|ERROR: LeakSanitizer|SUMMARY|#[0-9] " "$work/one.log" | head -12
    fi
  done
  echo "fuzz: standalone replay: $n inputs, $bad failing"
  [ "$bad" -eq 0 ]
  exit $?
fi

if ! command -v "$cc" >/dev/null; then
  echo "fuzz: $cc not found (apt-get install clang libclang-rt-14-dev)"; exit 1
fi
rtdir=$("$cc" -print-runtime-dir 2>/dev/null)
if [ -n "$rtdir" ] && [ ! -f "$rtdir/libclang_rt.fuzzer-$(uname -m).a" ]; then
  echo "fuzz: clang's libFuzzer runtime is missing ($rtdir/libclang_rt.fuzzer-$(uname -m).a):"
  echo "      apt-get install libclang-rt-14-dev, or run with TIERSTORE_FUZZ_STANDALONE=1"
  exit 1
fi
bin="$out/fuzz_sql"
echo "fuzz: building $bin with $cc -fsanitize=fuzzer,address,undefined"
"$cc" "${common[@]}" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  "${srcs[@]}" $wrap "${libs[@]}" -o "$bin" || exit 1

keep=${TIERSTORE_FUZZ_KEEP:-}
if [ -n "$keep" ]; then
  mkdir -p "$keep/corpus" "$keep/artifacts"
  corpus="$keep/corpus"; artifacts="$keep/artifacts"
else
  corpus="$work/corpus"; artifacts="$work/artifacts"
  mkdir -p "$corpus" "$artifacts"
fi
log="$work/fuzz.log"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
unset LD_PRELOAD
# libFuzzer's default exit status for a finding is 77, which meson reads as
# "skipped": make every finding status 1.
common_args=(-error_exitcode=1 -timeout_exitcode=1 -timeout=30 -rss_limit_mb=2048)

# The regression inputs (corpus/regress_*: bugs found so far) first, each
# once, so a known bug is reported by name and does not end the fuzzing
# before it starts; the ones that fail are left out of the fuzzing corpus.
regress_failed=0
for f in "$here"/corpus/*; do
  name=$(basename "$f")
  case "$name" in
    regress_*)
      if "$bin" "${common_args[@]}" -runs=1 "$f" >"$work/$name.log" 2>&1; then
        cp "$f" "$corpus"/
      else
        regress_failed=$((regress_failed + 1))
        echo "fuzz: regression input $name fails:"
        grep -E "runtime error|ERROR: AddressSanitizer|ERROR: LeakSanitizer|SUMMARY" "$work/$name.log" | head -5
      fi ;;
    *) cp "$f" "$corpus"/ ;;
  esac
done

echo "fuzz: running $seconds s on $(ls "$corpus" | wc -l) seed inputs"
args=("${common_args[@]}" -max_len=4096 -max_total_time="$seconds"
      -artifact_prefix="$artifacts/" -print_final_stats=1)
if [ "$jobs" -gt 1 ]; then
  # -fork=N: N fuzzing processes over one shared corpus, max_total_time in all
  "$bin" "${args[@]}" -fork="$jobs" "$corpus" >"$log" 2>&1
else
  "$bin" "${args[@]}" "$corpus" >"$log" 2>&1
fi
status=$?
grep -E "^(INFO: seed corpus|#[0-9]+ +(INITED|DONE))|stat::number_of_executed_units|ERROR|SUMMARY|runtime error|crash-|leak-|timeout-|oom-" "$log" | tail -40
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
[ -n "$execs" ] || execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
inputs=$(ls "$corpus" | wc -l)
if [ "$status" -ne 0 ]; then
  echo "fuzz: FAILED (status $status); the full log:"
  tail -200 "$log"
  ls -l "$artifacts"
  if [ -z "$keep" ]; then
    saved=${TIERSTORE_BUILD_ROOT:-$root/build}/fuzz-artifacts
    mkdir -p "$saved" && cp "$artifacts"/* "$saved"/ 2>/dev/null && echo "fuzz: artifacts copied to $saved"
  fi
fi
echo "fuzz: ${execs:-0} executions in $seconds s, corpus $inputs inputs, status $status, $regress_failed regression inputs failing"
[ "$status" -eq 0 ] && [ "$regress_failed" -eq 0 ]
