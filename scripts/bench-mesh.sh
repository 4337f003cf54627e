#!/usr/bin/env bash
# The mesh benchmark: N ptt-node daemons in network namespaces on one bridge, against three
# floors run between the same namespaces in the same run (raw UDP multicast, UDP multicast whose
# receivers verify one Ed25519 signature per message, plain libp2p gossipsub).
# Measures time-to-ready, one-way latency at a steady rate, burst throughput, bytes on the wire
# (also by path: plane multicast, TCP, mDNS), the idle background, RSS and CPU, and push-to-talk
# voice (mouth to ear, CPU per talker, bytes per frame); writes report.json and report.md under
# target/bench-report/ (or --out DIR).
#
#   sudo scripts/bench-mesh.sh                    # 10 nodes, 100 alerts/s for 10 s, burst 2000
#   sudo scripts/bench-mesh.sh --nodes 3
#   sudo scripts/bench-mesh.sh --nodes 30 --systems ptt,udp,udpv --idle-secs 5
#
# Options (all passed to examples/bench-mesh.rs): --nodes N, --rate R, --secs S, --burst B,
# --size BYTES, --idle-secs S, --systems udp,udpv,gossip,ptt,ptt-gossip,voice,voice-gossip
# (the -gossip ones run the daemons with --no-plane), --voice-bursts N, --voice-secs S,
# --background-secs S (idle bytes/s per path before the runs), --warmup-secs S (wait after the
# mesh forms, before the idle window and the voice bursts), --mcast-loss PCT (every node
# drops PCT % of incoming plane multicast), --junk RATE and --junk-secs S (an outsider floods
# the plane; CPU per junk datagram), --out DIR. BENCH_PERF=K records node K with perf (call
# graphs) during the burst, or during the steady run with BENCH_PERF_PHASE=steady, into
# DIR/perf-SYSTEM-K.data.
# Needs root (ip netns) and nft; every namespace it makes is removed when it ends (its nftables
# tables with it). Builds the systems under test with profile dist (as installed) and the
# driver in release.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench-mesh needs root (network namespaces): sudo $0 $*" >&2; exit 1; }
command -v cargo >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs" >&2; exit 1; }
command -v ip >/dev/null || { apt-get update -qq && apt-get install -y -qq iproute2 >/dev/null; }
# The wire bytes per path are nftables counters in each namespace.
command -v nft >/dev/null || { apt-get update -qq && apt-get install -y -qq nftables >/dev/null; }

out=target/bench-report
args=()
while [ "$#" -gt 0 ]; do
    case "$1" in
        --out) out="$2"; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done

# The systems under test as they are installed (profile dist; the plain gossipsub baseline
# too, so both get the same compiler); the driver in release (it must unwind: its namespaces
# are removed on drop).
echo "==> building (profile dist): ptt-node, examples/bench-peer"
cargo build --profile dist --locked --bin ptt-node --example bench-peer
echo "==> building (release): examples/bench-mesh"
cargo build --release --locked --example bench-mesh
mkdir -p "$out"
exec target/release/examples/bench-mesh --ptt target/dist/ptt-node \
    --peer target/dist/examples/bench-peer --out "$out" "${args[@]}"
