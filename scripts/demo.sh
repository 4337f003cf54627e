#!/usr/bin/env bash
# demo.sh - watch a ptt-node alert travel across a small private network.
#
# What it does:
#   1. builds ptt-node (cargo build --release in the repository root);
#   2. provisions a domain with 3 members (alpha, bravo, charlie) and one
#      relay-only device (relay1), in a temporary directory;
#   3. builds a private virtual LAN out of Linux network namespaces: one
#      "switch" namespace holding a bridge, one namespace per device, joined by
#      veth pairs. Nothing is configured in your own network namespace and no
#      traffic leaves the machine;
#   4. starts `ptt-node run` on every device, waits until the members have
#      authenticated each other, starts `ptt-node listen` everywhere, sends an
#      alert from alpha, and shows what each device printed;
#   5. tears everything down (also on Ctrl-C or error).
#
# Exit status: 0 only if every other member (bravo, charlie) received the alert
# and the relay did not print it.
#
# Usage: scripts/demo.sh [--bin PATH_TO_PTT_NODE]
#   --bin PATH   use this ptt-node binary instead of building one
# Needs root for the namespaces: run it with sudo, or it re-runs itself with
# sudo (after building as you). Environment: RUST_LOG (daemon log level,
# default info), PTT_DEMO_KEEP=1 (keep the temp dir with logs and data).

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)

TAG_PREFIX=pttdemo
TAG="$TAG_PREFIX-$$"
SUBNET=10.213.250
CHANNEL=alerts
MEMBERS=(alpha bravo charlie)
RELAY=relay1
NODES=("${MEMBERS[@]}" "$RELAY")
MESH_TIMEOUT=30     # seconds for the members to authenticate each other
DELIVERY_TIMEOUT=10 # seconds for the alert to arrive

say() { printf '\n== %s\n' "$*"; }
info() { printf '   %s\n' "$*"; }
die() {
    printf '\ndemo: error: %s\n' "$*" >&2
    exit 1
}

BIN=
while [[ $# -gt 0 ]]; do
    case $1 in
    --bin)
        [[ $# -ge 2 ]] || die "--bin needs a path"
        BIN=$2
        shift 2
        ;;
    -h | --help)
        sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
        exit 0
        ;;
    *) die "unknown argument: $1 (try --help)" ;;
    esac
done

# ---------------------------------------------------------------- build ----
if [[ -z $BIN ]]; then
    command -v cargo >/dev/null 2>&1 ||
        die "cargo not found. Install Rust (rustup), or pass --bin PATH to a built ptt-node."
    if ! { command -v pkg-config >/dev/null 2>&1 && pkg-config --exists opus alsa; }; then
        command -v apt-get >/dev/null 2>&1 || die "libopus or ALSA is missing: install libopus-dev, libasound2-dev and pkg-config."
        say "Installing libopus-dev, libasound2-dev and pkg-config (ptt-node links the system's Opus and ALSA for voice)"
        as_root=(); [[ $EUID -eq 0 ]] || as_root=(sudo --)
        "${as_root[@]}" apt-get update -qq && "${as_root[@]}" apt-get install -y -qq pkg-config libopus-dev libasound2-dev >/dev/null
    fi
    say "Building ptt-node (cargo build --release)"
    (cd "$REPO" && cargo build --release --bin ptt-node)
    target=${CARGO_TARGET_DIR:-$REPO/target}
    [[ $target == /* ]] || target=$REPO/$target
    BIN=$target/release/ptt-node
fi
[[ -x $BIN ]] || die "no executable ptt-node at $BIN"
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

# ----------------------------------------------------------------- root ----
if [[ $EUID -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        say "Network namespaces need root: re-running with sudo"
        exec sudo -- bash "${BASH_SOURCE[0]}" --bin "$BIN"
    fi
    die "network namespaces need root, and sudo is not installed. Run this script as root."
fi

if ! command -v ip >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 ||
        die "the 'ip' command (iproute2) is missing; install it with your package manager."
    say "Installing iproute2 (for the 'ip' command)"
    apt-get update -qq && apt-get install -y -qq iproute2 >/dev/null
fi
HAVE_PYTHON=false
command -v python3 >/dev/null 2>&1 && HAVE_PYTHON=true

# ------------------------------------------------------------- teardown ----
CREATED_NS=()
WORK=

# Kills every process in a namespace, then deletes it (and so its veths).
delete_ns() {
    local ns=$1 pids
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    if [[ -n $pids ]]; then
        # shellcheck disable=SC2086 # one pid per word
        kill -KILL $pids 2>/dev/null || true
        sleep 0.2
    fi
    ip netns del "$ns" 2>/dev/null || true
}

# shellcheck disable=SC2317 # invoked through the traps below
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [[ ${#CREATED_NS[@]} -gt 0 ]]; then
        say "Cleaning up"
        local ns pids
        # Kill everything first (one pause for all), then delete.
        for ns in "${CREATED_NS[@]}"; do
            pids=$(ip netns pids "$ns" 2>/dev/null || true)
            # shellcheck disable=SC2086 # one pid per word
            [[ -z $pids ]] || kill -KILL $pids 2>/dev/null
        done
        sleep 0.2
        for ns in "${CREATED_NS[@]}"; do
            delete_ns "$ns"
        done
        info "deleted ${#CREATED_NS[@]} namespaces"
    fi
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ -n ${PTT_DEMO_KEEP:-} ]]; then
            info "kept $WORK (PTT_DEMO_KEEP)"
        else
            rm -rf -- "$WORK"
        fi
    fi
    exit "$rc"
}
# EXIT covers normal ends and errors (set -e); INT/TERM exit non-zero, which
# runs the EXIT trap.
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Namespaces left by earlier runs that were killed too hard to clean up.
for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
    [[ $ns == "$TAG_PREFIX"-* ]] || continue
    pid=${ns#"$TAG_PREFIX"-}
    pid=${pid%%-*}
    [[ $pid =~ ^[0-9]+$ ]] || continue
    if [[ ! -e /proc/$pid ]]; then
        info "removing stale namespace $ns from an earlier run"
        delete_ns "$ns"
    fi
done

ip netns add "$TAG-probe" 2>/dev/null || die "'ip netns add' does not work here (a container without CAP_SYS_ADMIN?)"
ip netns del "$TAG-probe"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/$TAG-XXXXXX")
chmod 755 "$WORK"

# --------------------------------------------------------- provisioning ----
say "Provisioning a domain: members ${MEMBERS[*]}, relay-only $RELAY"
run_quiet() { # runs a command, showing its output only if it fails
    local log=$WORK/provision.log
    if ! "$@" >>"$log" 2>&1; then
        cat "$log" >&2
        die "failed: $*"
    fi
}
run_quiet "$BIN" domain init --dir "$WORK/domain" --name demo
for name in "${MEMBERS[@]}"; do
    run_quiet "$BIN" domain enroll --dir "$WORK/domain" --device "$name" \
        --out "$WORK/$name/bundle" --channel "$CHANNEL"
    info "enrolled $name (channel #$CHANNEL)"
done
run_quiet "$BIN" domain enroll --dir "$WORK/domain" --device "$RELAY" \
    --out "$WORK/$RELAY/bundle" --relay-only
info "enrolled $RELAY (relay-only: forwards alerts it cannot read)"

# --------------------------------------------------------------- network ----
say "Building a private LAN ($SUBNET.0/24) from network namespaces"
add_ns() {
    ip netns add "$1"
    CREATED_NS+=("$1")
    ip -n "$1" link set lo up
}
SW="$TAG-switch"
add_ns "$SW"
ip -n "$SW" link add br0 type bridge mcast_snooping 0 stp_state 0
ip -n "$SW" link set br0 up

declare -A NS ADDR
i=0
for name in "${NODES[@]}"; do
    ns="$TAG-$name"
    addr="$SUBNET.$((10 + i))"
    add_ns "$ns"
    # Created inside the switch, the device end moved straight into the
    # device's namespace: nothing ever appears in the root namespace.
    ip -n "$SW" link add "p$i" type veth peer name eth0 netns "$ns"
    ip -n "$SW" link set "p$i" master br0 up
    ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add 224.0.0.0/4 dev eth0 # multicast, for mDNS discovery
    ip netns exec "$ns" sh -c 'echo 0 > /proc/sys/net/ipv4/ip_forward'
    NS[$name]=$ns
    ADDR[$name]=$addr
    info "$(printf '%-8s %-15s namespace %s' "$name" "$addr" "$ns")"
    i=$((i + 1))
done

# ---------------------------------------------------------------- daemons ----
say "Starting a ptt-node daemon on every device"
for name in "${NODES[@]}"; do
    ip netns exec "${NS[$name]}" env RUST_LOG="${RUST_LOG:-info}" \
        "$BIN" run --bundle "$WORK/$name/bundle" --data "$WORK/$name/data" \
        --listen "/ip4/${ADDR[$name]}/tcp/0" \
        >"$WORK/$name.daemon.log" 2>&1 &
    disown # the cleanup kills it; no "Killed" job notice
    info "$name: pid $!, log $WORK/$name.daemon.log"
done

# ptt-node CLI inside a device's namespace, with a timeout.
cli() { # cli NAME SUBCOMMAND ARGS...
    local name=$1 sub=$2
    shift 2
    timeout 15 ip netns exec "${NS[$name]}" "$BIN" "$sub" --data "$WORK/$name/data" "$@"
}

# Number of authenticated peers from `status --json` on stdin.
authenticated_from_json() {
    if $HAVE_PYTHON; then
        python3 -c 'import json, sys; print(json.load(sys.stdin)["peers"]["authenticated"])' 2>/dev/null
    else
        tr -d ' \n\t' | sed -n 's/.*"peers":{[^}]*"authenticated":\([0-9][0-9]*\).*/\1/p'
    fi
}

show_logs() {
    local name
    for name in "${NODES[@]}"; do
        printf '\n--- %s daemon log (last 30 lines) ---\n' "$name"
        tail -n 30 "$WORK/$name.daemon.log" 2>/dev/null || true
    done
}

expected=$((${#NODES[@]} - 1))
say "Waiting for the members to find and authenticate each other (up to ${MESH_TIMEOUT}s)"
deadline=$((SECONDS + MESH_TIMEOUT))
last=
while :; do
    ready=true
    line=
    for name in "${MEMBERS[@]}"; do
        n=$(cli "$name" status --json 2>/dev/null | authenticated_from_json || true)
        line+="$name=${n:-?} "
        [[ $n == "$expected" ]] || ready=false
    done
    if [[ $line != "$last" ]]; then
        info "authenticated peers: ${line}(want $expected each)"
        last=$line
    fi
    $ready && break
    for name in "${NODES[@]}"; do
        kill -0 "$(ip netns pids "${NS[$name]}" 2>/dev/null | head -n1)" 2>/dev/null ||
            {
                show_logs
                die "the daemon on $name is not running"
            }
    done
    if ((SECONDS >= deadline)); then
        show_logs
        die "the members did not authenticate each other within ${MESH_TIMEOUT}s"
    fi
    sleep 0.5
done
info "every member is authenticated with the $expected other devices"

# -------------------------------------------------------------- listeners ----
say "Starting 'ptt-node listen' on every device"
for name in "${NODES[@]}"; do
    ip netns exec "${NS[$name]}" "$BIN" listen --data "$WORK/$name/data" --json \
        >"$WORK/$name.listen.out" 2>"$WORK/$name.listen.err" &
    disown
done
sleep 2 # let them attach, and let gossip settle

# ------------------------------------------------------------------ alert ----
SENDER=${MEMBERS[0]}
TEXT="Flood warning: river above 4 m at the north bridge (demo $$ at $(date +%H:%M:%S))"
say "Sending an alert from $SENDER"
info "ptt-node alert --severity severe --kind flood --channel $CHANNEL --text \"$TEXT\""
sent=false
for _ in 1 2 3 4 5; do
    if id=$(cli "$SENDER" alert --severity severe --kind flood --channel "$CHANNEL" --text "$TEXT" 2>"$WORK/alert.err"); then
        sent=true
        break
    fi
    sleep 1
done
$sent || {
    cat "$WORK/alert.err" >&2
    show_logs
    die "the alert was not accepted by $SENDER's daemon"
}
info "accepted, alert id $id"

others=("${MEMBERS[@]:1}")
deadline=$((SECONDS + DELIVERY_TIMEOUT))
while :; do
    all=true
    for name in "${others[@]}"; do
        grep -qF -- "$TEXT" "$WORK/$name.listen.out" || all=false
    done
    $all && break
    ((SECONDS >= deadline)) && break
    sleep 0.2
done
sleep 1 # anything late (or duplicated) shows up too

# ------------------------------------------------------------------ report ----
pretty() { # one JSON alert per line on stdin -> readable lines
    if $HAVE_PYTHON; then
        python3 -c '
import json, sys
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    try:
        a = json.loads(line)
        print("   [%s] %s from %s on #%s: %s" % (str(a.get("severity")).upper(), a.get("kind"),
              a.get("sender"), a.get("channel"), a.get("text")))
    except ValueError:
        print("   " + line)
'
    else
        sed 's/^/   /'
    fi
}

say "What each device printed"
ok=true
for name in "${NODES[@]}"; do
    out=$WORK/$name.listen.out
    printf '\n%s:\n' "$name"
    if [[ -s $out ]]; then
        pretty <"$out"
    else
        info "(nothing)"
    fi
    count=$(grep -cF -- "$TEXT" "$out" || true)
    if [[ $name == "$RELAY" ]]; then
        if [[ $count -eq 0 ]]; then
            info "-> nothing, as expected: a relay-only device forwards the encrypted alert but cannot read it"
        else
            info "-> PROBLEM: the relay printed the alert"
            ok=false
        fi
    elif [[ $name == "$SENDER" ]]; then
        info "-> (the sender)"
    elif [[ $count -eq 1 ]]; then
        info "-> received"
    elif [[ $count -eq 0 ]]; then
        info "-> PROBLEM: did not receive the alert"
        ok=false
    else
        info "-> PROBLEM: received it $count times"
        ok=false
    fi
done

if $ok; then
    say "Demo succeeded: every member got the alert; the relay passed it on without reading it"
    exit 0
fi
show_logs
say "Demo FAILED (logs above)"
exit 1
