#!/usr/bin/env bash
# Runs every check and test of ptt-node: formatting, lints, unit, property and golden-vector
# tests, the multi-node tests that start real daemons in Linux network namespaces, the
# independent check of proto/ against the golden vectors, and a bounded fuzzing run.
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
need systemd-analyze || apt_install systemd
need xmllint || apt_install libxml2-utils
# Voice: libopus and ALSA (linked, not bundled) and espeak-ng (the clips of tests/netns/voice.rs).
{ need pkg-config && pkg-config --exists opus alsa; } || apt_install pkg-config libopus-dev libasound2-dev
need espeak-ng || apt_install espeak-ng
# The service under a real systemd (tests/netns/systemd.rs): a Debian root booted with systemd-nspawn.
need debootstrap || apt_install debootstrap
need systemd-nspawn || apt_install systemd-container
rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy 2>/dev/null || true

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
# The patched crates: vendor/NAME must be the published crate + vendor/patches/ (nothing edited
# in place and left out of the patch), and Cargo.lock must still use every copy.
echo "==> vendor: vendor/ = the published crates + vendor/patches/"
scripts/vendor.sh --check
# The adversary tests run the hostile peer, examples/rogue, as a binary of its own:
# `cargo test --examples` builds examples only as test harnesses, under target/debug/deps.
echo "==> cargo build --examples"
cargo build --examples --locked
echo "==> cargo test"
cargo test --lib --bins --tests --examples --locked -- --test-threads="${PTT_TEST_THREADS:-2}"
# Criterion benchmarks run each benchmark once in test mode (their harness takes no libtest flags).
echo "==> cargo test --benches (each benchmark once)"
cargo test --benches --locked
echo "==> proto: the specification checked against the golden vectors by a second implementation"
python3 -c 'import cryptography' 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check cryptography
python3 proto/vectors/check_spec.py
# Every decoder and the control protocol under libFuzzer, a bounded time per target, on the
# corpus kept in fuzz/corpus (scripts/fuzz.sh). PTT_SKIP_FUZZ=1 skips it outside CI.
if [ -n "${PTT_SKIP_FUZZ:-}" ] && [ -z "${CI:-}" ]; then
    echo "==> fuzzing skipped (PTT_SKIP_FUZZ set)"
else
    echo "==> fuzzing (${FUZZ_SECS:-15} s per target)"
    FUZZ_SECS="${FUZZ_SECS:-15}" scripts/fuzz.sh
fi
