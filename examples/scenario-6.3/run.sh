#!/usr/bin/env bash
# The TTA seed's scenario 6.3, runnable: a thermal sensor, a home server (the P2P connection
# broker, running the rules in home-server.rules.toml) and an air conditioner (running
# ac.rules.toml), each a ptt-node daemon in its own network namespace on a private bridge.
# The sensor publishes readings; above 30 °C the home server sends the air conditioner a
# directed command and its hook switches it on (writes its state file); below 24 °C, off.
# Needs root (network namespaces); tears everything down when it ends.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
[ "$(id -u)" = 0 ] || exec sudo -E "$0" "$@"
command -v ip >/dev/null || { apt-get update -qq && apt-get install -y -qq iproute2; }
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
BIN="$ROOT/target/release/ptt-node"
WORK="$(mktemp -d /tmp/ptt-s63.XXXXXX)"
P="s63-$$"
SW="$P-sw"
DEVICES=(thermal-1 home-server ac-1)
cleanup() {
    for ns in "$SW" "${DEVICES[@]/#/$P-}"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

echo "== Provisioning the home domain"
"$BIN" domain init --dir "$WORK/dom" --name home >/dev/null
"$BIN" domain enroll --dir "$WORK/dom" --device thermal-1 --kind thermal-sensor --out "$WORK/thermal-1" >/dev/null
"$BIN" domain enroll --dir "$WORK/dom" --device home-server --kind home-server --out "$WORK/home-server" >/dev/null
"$BIN" domain enroll --dir "$WORK/dom" --device ac-1 --kind air-conditioner --out "$WORK/ac-1" >/dev/null

echo "== One namespace per device on a private bridge (10.213.63.0/24)"
ip netns add "$SW"
ip -n "$SW" link set lo up
ip -n "$SW" link add br0 type bridge mcast_snooping 0 stp_state 0
ip -n "$SW" link set br0 up
i=0
for d in "${DEVICES[@]}"; do
    ns="$P-$d"; i=$((i + 1))
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip -n "$SW" link add "p$i" type veth peer name eth0 netns "$ns"
    ip -n "$SW" link set "p$i" master br0 up
    ip -n "$ns" addr add "10.213.63.$((9 + i))/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add 224.0.0.0/4 dev eth0
done

echo "== Starting the daemons"
start() { # NAME [RULES [MORE FLAGS]]
    local rules=()
    [ -n "${2:-}" ] && rules=(--rules "$HERE/$2" "${@:3}")
    ip netns exec "$P-$1" env AC_STATE="$WORK/ac-1.state" RUST_LOG=warn \
        "$BIN" run --bundle "$WORK/$1" --data "$WORK/$1/data" --mdns-interval 2 "${rules[@]}" \
        >"$WORK/$1.log" 2>&1 &
    disown
}
start thermal-1
start home-server home-server.rules.toml --broker
start ac-1 ac.rules.toml
cli() { ip netns exec "$P-$1" "$BIN" "${@:2}" --data "$WORK/$1/data"; }
for _ in $(seq 60); do
    n=$(cli home-server status --json 2>/dev/null | grep -o '"authenticated":[0-9]*' | head -1 | cut -d: -f2 || true)
    [ "${n:-0}" = 2 ] && break
    sleep 0.5
done
[ "${n:-0}" = 2 ] || { echo "the devices did not find each other; logs in $WORK"; cat "$WORK"/*.log; exit 1; }

state() { cat "$WORK/ac-1.state" 2>/dev/null || echo "(never switched)"; }
for c in 26.5 31.2 33.0 22.0; do
    cli thermal-1 alert --severity minor --kind temperature --text reading --attr "celsius=$c" >/dev/null
    sleep 2
    printf '   sensor reads %5s C  ->  air conditioner: %s\n' "$c" "$(state)"
done
echo "== Home server"
cli home-server status | grep -E '^(device|peers|rules)' || true
[ "$(state)" = off ]
