#!/usr/bin/env bash
# ObjectOS developer tasks, in one place. package.json and .ci/run call this.
#
#   scripts/dev.sh run     install what is missing, build the desktop console and open it
#                          (data in $OBJECTOS_DATA_DIR, else the OS data folder)
#   scripts/dev.sh test    install what is missing and run every test: Rust (kernel, CLI,
#                          bindings), the UI's Vitest tests, and the end-to-end test of the real
#                          app under Xvfb through tauri-driver
#   scripts/dev.sh demo    the headless kernel on a demo data directory (no display needed)
#   scripts/dev.sh bench   the benchmark table (release build)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/objectos-target}"
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if ((${#missing[@]})); then
    say "installing system packages: ${missing[*]}"
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

setup_rust() {
  apt_install build-essential pkg-config curl ca-certificates git
  if ! command -v cargo >/dev/null 2>&1; then
    say "installing the Rust toolchain (rustup)"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  fi
}

# The console: WebKitGTK for Tauri, Node for the UI build.
setup_console() {
  setup_rust
  # A CJK font so translated plugin names (Simplified Chinese ships) render on a bare system.
  apt_install libwebkit2gtk-4.1-dev fonts-wqy-microhei
  if ! command -v node >/dev/null 2>&1; then apt_install nodejs npm; fi
  # Debian 12's Node is 18; Vite needs 20.19+. Fetch a newer Node from the npm registry
  # (the node-linux-<arch> package) into a cache folder rather than touching the system.
  local local_node="$HOME/.cache/objectos-node/node_modules/node-linux-$(node -p process.arch)/bin"
  [ -x "$local_node/node" ] && export PATH="$local_node:$PATH"
  if ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a==20&&b>=19)?0:1)'; then
    say "Node $(node --version) is too old for the UI build; installing Node 22 into ~/.cache/objectos-node"
    npm install --prefix "$HOME/.cache/objectos-node" "node-linux-$(node -p process.arch)@22" --no-audit --no-fund --silent
    export PATH="$local_node:$PATH"
  fi
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    say "installing UI dependencies (npm ci)"
    npm ci --no-audit --no-fund
  fi
  say "building the UI"
  npm run --silent ui:build
}

setup_e2e() {
  apt_install xvfb xauth webkit2gtk-driver
  command -v tauri-driver >/dev/null 2>&1 || { say "installing tauri-driver"; cargo install tauri-driver --locked; }
}

FEATURES=(--features objectos-console/custom-protocol)

run() {
  setup_console
  say "building the console (release)"
  cargo build --release --locked -p objectos-console --features custom-protocol
  say "starting ObjectOS Console"
  if [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
    say "no display here: starting it under xvfb-run (for a window you can see, run this in a desktop session)"
    apt_install xvfb xauth
    exec xvfb-run -a --server-args="-screen 0 1280x800x24" "$CARGO_TARGET_DIR/release/objectos-console" "$@"
  fi
  exec "$CARGO_TARGET_DIR/release/objectos-console" "$@"
}

run_tests() {
  setup_console
  setup_e2e
  say "UI unit tests (Vitest, Tauri IPC mocked)"
  npm run --silent ui:test
  say "the author kit's TypeScript declarations check its example and the JS sample"
  npx tsc -p sdk
  say "Rust tests: kernel, plugins, objectos command, console bindings"
  cargo build --workspace --locked "${FEATURES[@]}"
  cargo test --workspace --locked "${FEATURES[@]}"
  say "end-to-end test of the real console under Xvfb"
  xvfb-run -a --server-args="-screen 0 1280x800x24" python3 tests/e2e/console_e2e.py "$CARGO_TARGET_DIR/debug/objectos-console"
}

objectos() { "$CARGO_TARGET_DIR/release/objectos" --data-dir "$DEMO" "$@"; }

demo() {
  setup_rust
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
}

bench() {
  setup_rust
  # `objectos serve`'s idle memory is measured on the release binary beside the benchmark's.
  cargo build --release --locked -p objectos-cli
  cargo run --release --locked -p objectos-bench -- "$@"
}

cmd="${1:-}"; shift || true
case "$cmd" in
  run) run "$@" ;;
  test) run_tests ;;
  demo) demo ;;
  bench) bench "$@" ;;
  *) echo "usage: scripts/dev.sh run|test|demo|bench" >&2; exit 2 ;;
esac
