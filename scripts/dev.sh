#!/usr/bin/env bash
# ObjectOS developer tasks, in one place. package.json and .ci/run call this.
#
#   scripts/dev.sh run     install what is missing, build, and run the headless kernel on a
#                          demo data directory (install the sample packages, approve, enable, list)
#   scripts/dev.sh test    install what is missing and run every test
#   scripts/dev.sh bench   build in release mode and print the benchmark table
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/objectos-target}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

install_system_packages() {
  local want=(build-essential pkg-config curl ca-certificates git) missing=()
  for p in "${want[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if ((${#missing[@]})); then
    say "installing system packages: ${missing[*]}"
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

install_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] || {
      say "installing the Rust toolchain (rustup)"
      curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    }
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
}

setup() {
  install_system_packages
  install_rust
}

objectos() { "$CARGO_TARGET_DIR/release/objectos" --data-dir "$DEMO" "$@"; }

run() {
  setup
  say "building objectos (release)"
  cargo build --release --locked --bin objectos
  DEMO="${OBJECTOS_DEMO_DIR:-$ROOT/.demo-data}"
  say "demo data directory: $DEMO"
  for pkg in contacts crm invoicing; do
    id=$(sed -n 's/.*"id": *"\([^"]*\)".*/\1/p' "plugins/packages/$pkg/plugin.json" | head -n1)
    if ! objectos plugins show "$id" >/dev/null 2>&1; then
      objectos plugins install "plugins/packages/$pkg"
    fi
    objectos permissions grant "$id" --all >/dev/null
  done
  objectos plugins enable com.acme.invoicing --with-deps
  objectos plugins enable com.objectos.metrics
  say "installed plugins"
  objectos plugins list
  say "dependency graph"
  objectos plugins graph
  say "audit trail"
  objectos audit verify
  objectos audit --limit 8
  say "done: try \`$CARGO_TARGET_DIR/release/objectos --data-dir $DEMO --help\`"
}

run_tests() {
  setup
  say "running every test"
  cargo test --workspace --locked
}

bench() {
  setup
  cargo run --release --locked -p objectos-bench -- "$@"
}

case "${1:-}" in
  run) run ;;
  test) run_tests ;;
  bench) shift; bench "$@" ;;
  *) echo "usage: scripts/dev.sh run|test|bench" >&2; exit 2 ;;
esac
