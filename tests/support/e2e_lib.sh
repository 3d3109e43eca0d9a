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

# st_header_len FILE: the safetensors header length (the first 8 bytes, LE)
st_header_len() { od -An -tu8 -N8 "$1" | tr -d ' '; }
# cut_to_header FILE...: cut each safetensors file right after its header
# (what `plan` reads; a merge refuses such files)
cut_to_header() { local f; for f in "$@"; do truncate -s $((8 + $(st_header_len "$f"))) "$f"; done; }

# interrupt NAME SIGNAL OUT_DIR COMMAND...: start COMMAND, send SIGNAL once
# OUT_DIR's temporary directory exists, check what is left. With KEEP=1 in
# the environment OUT_DIR existed before and must still exist. With
# WAIT_FOR=CONDITION the signal waits until `eval CONDITION` succeeds
# instead (it sees the command's process id as $pid).
interrupt() {
    local name=$1 sig=$2 out=$3
    shift 3
    "$@" 2>"$name.err" &
    local pid=$! i=0
    if [ -n "${WAIT_FOR:-}" ]; then
        while [ $i -lt 3000 ] && kill -0 $pid 2>/dev/null && ! eval "$WAIT_FOR"; do
            sleep 0.005
            i=$((i + 1))
        done
    fi
    while [ $i -lt 3000 ] && kill -0 $pid 2>/dev/null && [ -z "$(ls -d "$out".crucible-tmp-* 2>/dev/null)" ]; do
        sleep 0.01
        i=$((i + 1))
    done
    kill -s "$sig" $pid 2>/dev/null
    wait $pid
    local rc=$?
    if [ $rc -eq 0 ]; then
        bad "$name: finished before SIG$sig arrived (machine too fast for this model size?)"
        return
    fi
    check '[ $rc -eq 130 ] && grep -q "interrupted" "$name.err"' "$name: rc $rc: $(cat "$name.err")"
    if [ "${KEEP:-0}" = 1 ]; then check '[ -d "$out" ]' "$name: old $out removed"
    else check '[ ! -e "$out" ]' "$name: $out left behind"; fi
    check '[ -z "$(ls -d "$out".crucible-tmp-* 2>/dev/null)" ]' "$name: temporary directory left: $(ls -d "$out".crucible-tmp-* 2>/dev/null)"
}
