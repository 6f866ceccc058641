#!/bin/sh
# tests/bench/profile.sh — profile cpmgate's HTTP gateway under the 1 KiB
# keep-alive load: a release build with frame pointers (so perf can walk
# the gateway's stacks), then tests/bench/profile.py (CPU per request by
# component, a flame graph, system calls per request).
#   tests/bench/profile.sh [OUTDIR] [profile.py options, e.g. --duration 10]
# Writes OUTDIR/profile.md (the tables), OUTDIR/flame.svg, OUTDIR/stacks.folded,
# OUTDIR/strace.txt and OUTDIR/perf.data (default OUTDIR: build-profile/profile).
# Needs perf, strace, wrk and nginx; runs as root or with
# kernel.perf_event_paranoid <= 1. Not part of ./tests/run.
set -eu
repo=$(cd "$(dirname "$0")/../.." && pwd)
build=${CPMGATE_PROFILE_BUILD:-$repo/build-profile}
out=${1:-$build/profile}
[ $# -gt 0 ] && shift
for tool in perf strace wrk nginx; do
    command -v "$tool" >/dev/null || { echo "profile.sh: $tool is not installed" >&2; exit 2; }
done
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" "$repo" --buildtype=release -Dtests=false \
        -Dc_args=-fno-omit-frame-pointer >/dev/null
fi
ninja -C "$build" -j2 >/dev/null
exec /usr/bin/python3 "$repo/tests/bench/profile.py" --build "$build" --out "$out" "$@"
