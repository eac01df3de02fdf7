#!/usr/bin/env bash
# Build the release binaries and start the local demo: one controller, three agents each
# managing an erlmcp-standin, HAProxy in front when installed, certificates generated.
#   deploy/demo.sh              run in the foreground (Ctrl-C stops everything)
#   deploy/demo.sh --detach     return once every member is green
#   deploy/demo.sh --stop       stop a detached demo
# Everything goes to ./demo unless you pass --dir DIR. Other flags go to `drctl demo`.
set -euo pipefail
cd "$(dirname "$0")/.."

args=("$@")
have_dir=false
for a in "${args[@]}"; do
  case "$a" in --dir|--dir=*) have_dir=true ;; esac
done
$have_dir || args+=(--dir "$PWD/demo")

if [[ " ${args[*]} " != *" --stop "* ]]; then
  echo "building release binaries (first build takes a few minutes)..."
  cargo build --release --workspace --bins --quiet
fi
exec target/release/drctl demo "${args[@]}"
