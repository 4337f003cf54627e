#!/usr/bin/env bash
# Installs ptt-node as a service: the binary, a dedicated system user, the default configuration
# (from examples/ptt-node.toml), the state directory and a hardened systemd unit.
#
#   scripts/install.sh                       # build (profile dist) and install under /usr/local
#   scripts/install.sh --bundle ./cam-1      # also install this device's bundle
#   scripts/install.sh --bundle ./cam-1 --start   # and enable and start the service
#
# It builds as the calling user (whose cargo it finds), then re-runs itself with sudo to install.
#
# Options:
#   --prefix DIR     where bin/ptt-node and share/doc/ptt-node go (default /usr/local)
#   --bundle DIR     the device bundle from `ptt-node domain enroll`: copied to
#                    /var/lib/ptt-node/bundle, owned by the service user, files 0600
#   --binary FILE    install this binary instead of building one (cargo build --profile dist)
#   --root DIR       install into DIR as if it were / (packaging, tests): no user is created
#                    and no service is started; files are owned by the caller
#   --start          enable and start the service (needs a running systemd)
#
# An existing /etc/ptt-node/ptt-node.toml is kept. The unit is checked with
# `systemd-analyze verify` when that tool is present. Run again to upgrade.
set -euo pipefail
args=("$@")
here=$(pwd)
abs() { case "$1" in /*) echo "$1" ;; *) echo "$here/$1" ;; esac; }
cd "$(dirname "$0")/.."

prefix=/usr/local root= bundle= binary= start=
while [ "$#" -gt 0 ]; do
    case "$1" in
        --prefix) prefix="$2"; shift 2 ;;
        --root) root=$(abs "$2"); shift 2 ;;
        --bundle) bundle=$(abs "$2"); shift 2 ;;
        --binary) binary=$(abs "$2"); shift 2 ;;
        --start) start=1; shift ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$prefix" in /*) ;; *) echo "install.sh: --prefix must be an absolute path" >&2; exit 2 ;; esac
if [ -n "$bundle" ] && [ ! -f "$bundle/certificate.bin" ]; then
    echo "install.sh: $bundle is not a device bundle (no certificate.bin); make one with ptt-node domain enroll" >&2
    exit 1
fi
if [ -n "$start" ] && [ -n "$root" ]; then
    echo "install.sh: --start cannot be used with --root" >&2
    exit 2
fi

if [ -z "$binary" ]; then
    command -v cargo >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs, or pass --binary FILE" >&2; exit 1; }
    if ! { command -v pkg-config >/dev/null && pkg-config --exists opus alsa; }; then
        echo "install.sh: building needs libopus-dev, libasound2-dev and pkg-config (apt-get install pkg-config libopus-dev libasound2-dev)" >&2
        exit 1
    fi
    echo "==> building ptt-node (profile dist: LTO, panic=abort; a few minutes)"
    cargo build --profile dist --locked --bin ptt-node
    target=${CARGO_TARGET_DIR:-target}
    case "$target" in /*) ;; *) target="$(pwd)/$target" ;; esac
    binary="$target/dist/ptt-node"
fi
[ -x "$binary" ] || { echo "install.sh: $binary is not an executable" >&2; exit 1; }
binary=$(abs "$binary")
if [ -z "$root" ] && [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "install.sh needs root to install a service: run it as root" >&2; exit 1; }
    echo "==> installing needs root: re-running with sudo"
    resolved=()
    [ -n "$bundle" ] && resolved+=(--bundle "$bundle")
    exec sudo -- bash "$(pwd)/scripts/install.sh" "${args[@]}" "${resolved[@]}" --binary "$binary"
fi

bindir="$root$prefix/bin"
docdir="$root$prefix/share/doc/ptt-node"
etc="$root/etc/ptt-node"
state="$root/var/lib/ptt-node"
unitdir="$root/etc/systemd/system"
user=ptt-node

# The binary links the system's libopus and ALSA (voice).
if [ -z "$root" ]; then
    missing=()
    ldconfig -p 2>/dev/null | grep -q 'libopus\.so\.0' || missing+=(libopus0)
    ldconfig -p 2>/dev/null | grep -q 'libasound\.so\.2' || missing+=(libasound2)
    if [ ${#missing[@]} -gt 0 ]; then
        if command -v apt-get >/dev/null; then
            echo "==> installing ${missing[*]} (voice)"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
        else
            echo "install.sh: ptt-node needs libopus.so.0 and libasound.so.2: install them with your package manager" >&2
            exit 1
        fi
    fi
fi

echo "==> binary: $prefix/bin/ptt-node"
install -d -m 0755 "$bindir" "$docdir"
install -m 0755 "$binary" "$bindir/ptt-node.new"
mv -f "$bindir/ptt-node.new" "$bindir/ptt-node"
install -m 0644 README.md "$docdir/README.md"
# The README links to docs/ and proto/: install them beside it so the links resolve.
for f in docs/*.md proto/*.md; do
    [ -f "$f" ] || continue
    install -d -m 0755 "$docdir/$(dirname "$f")"
    install -m 0644 "$f" "$docdir/$f"
done
install -m 0644 examples/ptt-node.toml "$docdir/ptt-node.toml.example"

echo "==> manual pages and shell completions"
mandir="$root$prefix/share/man/man1"
install -d -m 0755 "$mandir" "$root$prefix/share/bash-completion/completions" \
    "$root$prefix/share/zsh/site-functions" "$root$prefix/share/fish/vendor_completions.d"
"$bindir/ptt-node" man --dir "$mandir" >/dev/null
"$bindir/ptt-node" completions bash >"$root$prefix/share/bash-completion/completions/ptt-node"
"$bindir/ptt-node" completions zsh >"$root$prefix/share/zsh/site-functions/_ptt-node"
"$bindir/ptt-node" completions fish >"$root$prefix/share/fish/vendor_completions.d/ptt-node.fish"

owner=()
if [ -z "$root" ]; then
    if ! id -u "$user" >/dev/null 2>&1; then
        echo "==> system user $user"
        nologin=$(command -v nologin || echo /usr/sbin/nologin)
        useradd --system --user-group --no-create-home --home-dir /var/lib/ptt-node --shell "$nologin" "$user"
    fi
    owner=(-o "$user" -g "$user")
fi

echo "==> configuration: /etc/ptt-node/ptt-node.toml"
install -d -m 0750 "$etc"
[ -z "$root" ] && chgrp "$user" "$etc"
if [ -e "$etc/ptt-node.toml" ]; then
    echo "    kept the existing file"
else
    sed -e 's|^bundle = .*|bundle = "/var/lib/ptt-node/bundle"|' \
        -e 's|^listen = .*|listen = ["/ip4/0.0.0.0/tcp/7000"]|' \
        examples/ptt-node.toml > "$etc/ptt-node.toml.new"
    chmod 0640 "$etc/ptt-node.toml.new"
    [ -z "$root" ] && chgrp "$user" "$etc/ptt-node.toml.new"
    mv "$etc/ptt-node.toml.new" "$etc/ptt-node.toml"
fi

echo "==> state: /var/lib/ptt-node"
install -d -m 0700 "${owner[@]}" "$state"
if [ -n "$bundle" ]; then
    echo "==> bundle: /var/lib/ptt-node/bundle"
    install -d -m 0700 "${owner[@]}" "$state/bundle"
    for f in "$bundle"/*; do
        [ -f "$f" ] && install -m 0600 "${owner[@]}" "$f" "$state/bundle/$(basename "$f")"
    done
fi

echo "==> unit: /etc/systemd/system/ptt-node.service"
install -d -m 0755 "$unitdir"
sed -e "s|/usr/local/bin/ptt-node|$prefix/bin/ptt-node|g" \
    -e "s|/usr/local/share/doc/ptt-node|$prefix/share/doc/ptt-node|g" \
    scripts/ptt-node.service > "$unitdir/ptt-node.service"
chmod 0644 "$unitdir/ptt-node.service"

# systemd-analyze verify exits 0 on unknown keys and bad values (it only warns), so any output
# fails the install. Under --root the unit is checked with its paths pointing into the root.
if command -v systemd-analyze >/dev/null; then
    echo "==> systemd-analyze verify"
    check="$unitdir/ptt-node.service"
    if [ -n "$root" ]; then
        tmpdir=$(mktemp -d)
        trap 'rm -rf "$tmpdir"' EXIT
        check="$tmpdir/ptt-node.service"
        sed -e "s|$prefix/bin/ptt-node|$bindir/ptt-node|g" "$unitdir/ptt-node.service" > "$check"
    fi
    if ! out=$(systemd-analyze verify "$check" 2>&1) || [ -n "$out" ]; then
        echo "$out" >&2
        echo "install.sh: systemd-analyze verify found problems in the unit (above)" >&2
        exit 1
    fi
fi

if [ -z "$root" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    if [ -n "$start" ]; then
        systemctl enable --now ptt-node.service
        echo "==> started: systemctl status ptt-node; journalctl -u ptt-node -f"
    fi
elif [ -n "$start" ]; then
    echo "install.sh: systemd is not running here: start the daemon with" >&2
    echo "  sudo install -d -o $user -g $user -m 0750 /run/ptt-node" >&2
    echo "  sudo -u $user env RUNTIME_DIRECTORY=/run/ptt-node $prefix/bin/ptt-node run --config /etc/ptt-node/ptt-node.toml" >&2
    exit 1
fi

echo
echo "Installed. Next:"
[ -z "$bundle" ] && echo "  put the device bundle in /var/lib/ptt-node/bundle (or run again with --bundle DIR)"
echo "  edit /etc/ptt-node/ptt-node.toml, then: systemctl enable --now ptt-node"
echo "  ptt-node status      (as root, or as a member of group $user: usermod -aG $user NAME)"
echo "  ptt-node listen      (alerts as they arrive; --format json|cap)"
