#!/usr/bin/env bash
# run.sh — the demo behind `zig build demo`: not yet able to merge.
set -eu
bin=$1
"$bin" --version
echo "demo: merging is not implemented yet" >&2
exit 1
