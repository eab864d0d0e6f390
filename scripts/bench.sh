#!/usr/bin/env bash
# `make bench`: compile speed and rebuild costs (bench/run.py), measured side by side in one
# run, written to bench/results/<date>.json and .md. Not part of `make test`.
# Installs beets into its own venv (.cache/bench-venv) from bench/requirements.txt first.
# Settings (environment): BENCH_SECTIONS, BENCH_TRACKS, BENCH_SECONDS, BENCH_SCALE_TRACKS,
# BENCH_SCALE_SECONDS, BENCH_ALBUM_SECONDS, BENCH_SCALE_PROFILES, BENCH_ROTATE_SNAPSHOTS,
# BENCH_JOBS, BENCH_WORK, BENCH_KEEP; see docs/bench.md.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.cache/bench-venv
STAMP=$VENV/.installed

for tool in tup fusermount3 flac opusenc lame sox /usr/bin/python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing: run make setup" >&2; exit 1; }
done
if [ ! -r /dev/fuse ] || [ ! -w /dev/fuse ]; then
  echo "bench: /dev/fuse is not usable by $(id -un); tup needs it" >&2
  exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "bench: creating $VENV"
  /usr/bin/python3 -m venv "$VENV"
fi
if [ ! -f "$STAMP" ] || [ bench/requirements.txt -nt "$STAMP" ]; then
  echo "bench: installing beets into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r bench/requirements.txt
  touch "$STAMP"
fi

export BENCH_BEET="$PWD/$VENV/bin/beet"
exec .venv/bin/python bench/run.py "$@"
