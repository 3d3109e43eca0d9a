# e2e_lib.sh — the prologue the tests/e2e scripts share (kept out of
# tests/e2e/, whose every *.sh tests/run.sh runs as a test). Sourced as
#   . "$(dirname "$0")/../support/e2e_lib.sh" NAME "$1"
# it sets `bin` (the crucible binary), `tmp` (a temporary directory named
# after NAME, removed on exit), the pass/fail counters and ok / bad /
# check (check CONDITION MESSAGE: eval the condition, count it).
set -u
bin=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/crucible-e2e-$1-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }
