#!/usr/bin/env bash
# Issue 5's soak: builds the release binaries it spawns (authd, introspect,
# soak), then runs a fixed-rate mixed load (mint, verify, refresh, revoke)
# against a private redis-server, authd and introspect on loopback. Default
# 10 minutes at 200 operations/s; arguments pass through
# (--duration-secs, --rate, --sample-secs). Exits 1 if any call failed or
# answered wrong. Stops by itself (a hard limit of duration + 5 minutes).
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v redis-server >/dev/null || { echo "soak.sh: redis-server not found on PATH" >&2; exit 1; }
cargo build --release --locked -p authd -p introspect -p cred-bench
if git rev-parse --git-dir >/dev/null 2>&1; then
  echo "soak.sh: built at $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates proto Cargo.lock || echo ' + uncommitted changes')"
fi
duration=600
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  [[ "${args[$i]}" == "--duration-secs" ]] && duration="${args[$((i + 1))]:-600}"
done
target_dir="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
exec timeout --signal=INT --kill-after=30 $((duration + 300)) "${target_dir:-target}/release/soak" "$@"
