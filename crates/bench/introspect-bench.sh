#!/usr/bin/env bash
# introspect's figures: builds the release binaries the benchmark
# spawns (introspect, noop-introspect, introspect-bench), then runs it.
# Needs redis-server (7.x), h2load (Debian: nghttp2-client) and valgrind on PATH.
# Everything runs on loopback, is bounded in time and count, and stops by
# itself (about 4-6 minutes on 2 cores). Output: figures as they are
# measured, then a summary table.
set -euo pipefail
cd "$(dirname "$0")/../.."
for tool in redis-server h2load valgrind; do
  command -v "$tool" >/dev/null || { echo "introspect-bench.sh: $tool not found on PATH" >&2; exit 1; }
done
cargo build --release -p introspect -p cred-bench
if git rev-parse --git-dir >/dev/null 2>&1; then
  echo "introspect-bench.sh: built at $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates proto Cargo.lock || echo ' + uncommitted changes in crates/, proto/ or Cargo.lock')"
fi
target_dir="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
exec timeout --signal=INT --kill-after=30 900 "${target_dir:-target}/release/introspect-bench" "$@"
