#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need (as root, with
# apt-get), checks formatting and lints, builds every binary, runs every test.
# Usage: tests/run.sh            (CI=true makes any missing prerequisite fatal)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

# Debian packages the tests use, by the command that proves they are there.
declare -A PACKAGES=(
  [haproxy]=haproxy      # real load balancer in front of the stand-ins
  [ip]=iproute2          # network namespaces for partition tests
  [iptables]=iptables    # cutting a namespace off without taking its link down
  [curl]=curl            # used by deploy/demo.sh checks and docs examples
  [jq]=jq                # the docs' commands read drctl -o json with it (tests/tests/docs.rs)
  [script]=bsdutils      # a pseudo-terminal for the drctl watch / colour tests
  [erl]=erlang-base      # a real Erlang/OTP node for the Erlang probe (erl, erlc, epmd)
  [zstd]=zstd            # the human restore path: zstd -dc | tar -x
  [promtool]=prometheus  # promtool check rules deploy/prometheus/alerts.yml
  [systemd-analyze]=systemd  # systemd-analyze verify deploy/systemd/*.service
  [chromium]=chromium    # headless browser for the dashboard test (screenshots in target/test-artifacts)
  [faketime]=faketime    # libfaketime: the wall-clock jump scenario (tests/tests/scenarios_host_faults.rs)
)
missing=()
for cmd in "${!PACKAGES[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${PACKAGES[$cmd]}")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "missing packages: ${missing[*]} (run as root to install them)" >&2
    if [ "${CI:-}" = "true" ]; then exit 1; fi
  fi
fi

log "format"
cargo fmt --all -- --check

log "lint"
cargo clippy --workspace --all-targets --quiet -- -D warnings

log "build"
cargo build --workspace --bins --quiet

log "test"
export DR_BIN_DIR="$PWD/target/debug"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --profile ci
  # the S3 store's tests (a real S3-protocol server in-process) need the s3 feature
  cargo nextest run -p dr-backup --features s3 --profile ci
else
  cargo test --workspace --quiet
  cargo test -p dr-backup --features s3 --quiet
fi
