#!/usr/bin/env bash
# local-xargs.sh — the parts of a crucible merge on one machine with
# `xargs -P`, then assemble (spec/parts.md). More parts than parallel slots
# evens out parts of unequal cost (parts balance bytes, not time).
#
#   ./local-xargs.sh merge.crb OUT [PARTS] [JOBS] [-- run options...]
#   e.g. ./local-xargs.sh merge.crb out 8 2 -- --models-dir ~/models
set -euo pipefail
CRB=${1:?usage: $0 MERGE.crb OUT [PARTS] [JOBS] [-- run options]}
OUT=${2:?usage: $0 MERGE.crb OUT [PARTS] [JOBS] [-- run options]}
PARTS=${3:-8}
JOBS=${4:-$(nproc)}
shift $(( $# < 4 ? $# : 4 ))
[ "${1:-}" = "--" ] && shift
CRUCIBLE=${CRUCIBLE:-crucible}
# one thread per part: JOBS parts side by side fill JOBS cores
seq 1 "$PARTS" | xargs -P "$JOBS" -I{} "$CRUCIBLE" run "$CRB" "$OUT" --part "{}/$PARTS" --threads 1 --quiet "$@"
"$CRUCIBLE" assemble "$OUT"
"$CRUCIBLE" verify "$OUT"
