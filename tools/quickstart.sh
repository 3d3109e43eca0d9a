#!/usr/bin/env bash
# quickstart.sh — one command from a fresh Debian machine to a real merge:
# installs what is missing (libyaml, Lua 5.4, cJSON, clang for sanitiser
# builds; Zig from PyPI), builds crucible, generates tiny models and merges
# them (`zig build demo`).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for pkg in libyaml-dev liblua5.4-dev libcjson-dev pkg-config clang libclang-rt-14-dev; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "quickstart: installing ${need[*]}"
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}"
fi
if ! python3 -c 'import ziglang' 2>/dev/null && ! command -v zig >/dev/null 2>&1; then
    echo "quickstart: installing Zig (pip install ziglang)"
    python3 -m pip install --quiet ziglang
fi
tools/zig build demo
