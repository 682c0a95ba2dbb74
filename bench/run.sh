#!/usr/bin/env bash
# One command for the side-by-side benchmark (issue 5):
#
#   bash bench/run.sh            release build in build-release/, default sizes
#   bash bench/run.sh --1m       the same, then again with --rows 1000000
#   bash bench/run.sh --1m -- --commits 500    (options after -- go to bench)
#
# The data lives in build-release/bench-data (on the disk that holds the
# repository; each run uses a fresh run-PID directory there and removes it).
# Reports: bench/results.txt (+ results.jsonl), and with --1m also
# bench/results-1m.txt (+ results-1m.jsonl); then bench/plot.py draws
# docs/img/commits.svg and docs/img/pages.svg from them (gnuplot; the page
# figure from the 1,000,000-row run when there is one).
set -euo pipefail
cd "$(dirname "$0")/.."

big=0
while [ $# -gt 0 ]; do
  case "$1" in
    --1m) big=1; shift ;;
    --) shift; break ;;
    *) echo "usage: bash bench/run.sh [--1m] [-- bench options...]" >&2; exit 2 ;;
  esac
done

if ! command -v gnuplot >/dev/null; then
  echo "tierstore: bench/run.sh draws its figures with gnuplot, which is not installed (Debian: apt-get install gnuplot-nox)" >&2
  exit 1
fi
if [ ! -f build-release/build.ninja ]; then
  meson setup build-release --buildtype=release >/dev/null
fi
meson compile -C build-release bench/bench >/dev/null

src=$(pwd)
label="release build of $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
if [ -n "$(git status --porcelain -- src ext 2>/dev/null)" ]; then
  label="$label + uncommitted changes in src/ ext/"
fi
cd build-release
./bench/bench --dir ./bench-data --out "$src/bench/results.txt" --label "$label" "$@"
if [ "$big" = 1 ]; then
  echo
  ./bench/bench --rows 1000000 --dir ./bench-data --out "$src/bench/results-1m.txt" --label "$label" "$@"
fi
cd "$src"
if [ "$big" = 1 ]; then
  /usr/bin/python3 bench/plot.py bench/results.jsonl bench/results-1m.jsonl --out docs/img
else
  /usr/bin/python3 bench/plot.py bench/results.jsonl --out docs/img
fi
