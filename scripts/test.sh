#!/usr/bin/env bash
# Runs every check and test of ptt-node: formatting, lints, unit, property and golden-vector
# tests, and the multi-node tests that start real daemons in Linux network namespaces.
#
# The namespace tests need root (ip netns). Without root they are skipped with a message,
# except under CI (CI set), where they must run: a CI run that cannot create namespaces fails.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
apt_install() {
    if need apt-get && [ "$(id -u)" = 0 ]; then
        echo "==> installing $*"
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    else
        echo "missing: $* (install it, or run as root so this script can)" >&2
        exit 1
    fi
}
need cargo || { echo "cargo not found: install Rust from https://rustup.rs" >&2; exit 1; }
need ip || apt_install iproute2
need ping || apt_install iputils-ping
need nft || apt_install nftables
rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy 2>/dev/null || true

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "==> cargo test"
cargo test --all-targets --locked -- --test-threads="${PTT_TEST_THREADS:-2}"
