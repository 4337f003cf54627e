#!/usr/bin/env bash
# Re-creates the crates patched under vendor/ from their published source and ptt-node's patch:
# vendor/NAME is NAME VERSION as cargo downloads it, without the files vendor/patches/SERIES
# drops, with vendor/patches/NAME-VERSION.patch applied. SERIES names the versions.
#
#   scripts/vendor.sh           re-create every vendor/NAME (refuses to discard uncommitted
#                               edits there; --force does)
#   scripts/vendor.sh --check   re-create them in a temporary directory and fail if one differs
#                               from vendor/, if a patch does not apply, or if Cargo.lock does
#                               not use a copy (a bumped libp2p that no longer takes the patch)
#   scripts/vendor.sh --save    write each vendor/patches/NAME-VERSION.patch from the edited
#                               vendor/NAME, keeping the patch's header
#
# Needs cargo (it downloads the crates the first time, so then it needs the network), git (only
# `git apply` and `git diff --no-index`, outside any repository), tar and diff.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: scripts/vendor.sh [--check | --save | --force]" >&2; exit 2; }
[ $# -le 1 ] || usage
mode=write
force=
case "${1:-}" in
'') ;;
--check) mode=check ;;
--save) mode=save ;;
--force) force=1 ;;
-h | --help) sed -n '2,/^set /{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
*) usage ;;
esac

die() { echo "vendor.sh: $*" >&2; exit 1; }
for tool in cargo git tar diff; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (cargo: https://rustup.rs)"
done

series=vendor/patches/SERIES
names=() versions=() drops=()
while read -r name version rest; do
    case "$name" in '' | '#'*) continue ;; esac
    [ -n "$version" ] || die "$series: $name has no version"
    names+=("$name") versions+=("$version") drops+=("$rest")
done <"$series"
[ ${#names[@]} -gt 0 ] || die "$series names no crate"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# git runs only below $work: never inside a repository (not even one around TMPDIR), and with
# git's defaults instead of the user's settings, so a patch does not depend on who wrote it.
git_() {
    GIT_CEILING_DIRECTORIES="$(dirname "$work")" GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null \
        git "$@"
}

# Has cargo download every crate of SERIES, through a throw-away package that depends on each
# version exactly. Offline first: once cargo has the crates, no network is needed.
fetch() {
    local p="$work/fetch" i
    mkdir -p "$p/src"
    : >"$p/src/lib.rs"
    {
        # Its own [workspace]: cargo must not look for one around TMPDIR.
        printf '[package]\nname = "vendor-fetch"\nversion = "0.0.0"\nedition = "2021"\n'
        printf 'publish = false\n\n[workspace]\n\n[dependencies]\n'
        for i in "${!names[@]}"; do printf '%s = "=%s"\n' "${names[$i]}" "${versions[$i]}"; done
    } >"$p/Cargo.toml"
    (cd "$p" && cargo fetch --offline --quiet) >/dev/null 2>&1 && return
    (cd "$p" && cargo fetch --quiet) ||
        die "cargo could not download ${names[*]} (its message is above); the first run needs the network to the crates registry"
}

# The .crate cargo downloaded for NAME VERSION (cargo checked it against the index's checksum;
# the unpacked copy next to it is not checked again and may have been edited).
crate_file() {
    local f
    for f in "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$1-$2.crate"; do
        [ -f "$f" ] && { echo "$f"; return; }
    done
    die "cargo fetched $1 $2, but no $1-$2.crate is in its registry cache"
}

# Unpacks SERIES line I's crate into DEST, without the paths the line drops.
upstream() {
    local name=${names[$1]} version=${versions[$1]} x="$work/x/$1" crate path
    crate=$(crate_file "$name" "$version") || exit 1
    mkdir -p "$x"
    tar -xzf "$crate" -C "$x" --no-same-owner || die "could not unpack $crate"
    for path in ${drops[$1]}; do
        [ -e "$x/$name-$version/$path" ] || die "$series drops $path, but $name $version has no $path"
        rm -rf "${x:?}/$name-$version/$path"
    done
    mv "$x/$name-$version" "$2" || die "could not move $name $version to $2"
}

# Builds SERIES line I's vendor copy in DEST. A patch that does not apply is fatal; with
# REJECT set, the hunks that do apply are applied and the rest left in *.rej files next to
# their files (the first step of moving the patch to a new version), and this returns 1.
recreate() {
    local name=${names[$1]} version=${versions[$1]} reject=${3:-}
    local patch="$PWD/vendor/patches/$name-$version.patch"
    [ -f "$patch" ] || die "no vendor/patches/$name-$version.patch (see vendor/README.md)"
    upstream "$1" "$2"
    (cd "$2" && git_ apply --whitespace=nowarn "$patch") && return
    [ -n "$reject" ] && (cd "$2" && git_ apply --whitespace=nowarn --reject "$patch" >/dev/null 2>&1)
    [ -n "$reject" ] && return 1
    die "vendor/patches/$name-$version.patch does not apply to $name $version (git's message is above): after a version bump, run scripts/vendor.sh and see vendor/README.md"
}

# Is Cargo.lock's NAME VERSION the copy under vendor/? (A path package has no source line.)
lock_uses_copy() {
    awk -v want="\"$1\"" -v ver="\"$2\"" '
        function end_package() { if (pkg && n == want && v == ver && s == "") found = 1 }
        /^\[/ { end_package(); n = v = s = ""; pkg = ($0 == "[[package]]"); next }
        pkg && $1 == "name" { n = $3 }
        pkg && $1 == "version" { v = $3 }
        pkg && $1 == "source" { s = $3 }
        END { end_package(); exit !found }' Cargo.lock
}

fetch
mkdir -p "$work/out"
case "$mode" in
write)
    failed=0
    for i in "${!names[@]}"; do
        name=${names[$i]} version=${versions[$i]} out="$work/out/${names[$i]}"
        if ! recreate "$i" "$out" reject; then
            failed=1
        elif [ -d "vendor/$name" ] && diff -r -q "vendor/$name" "$out" >/dev/null; then
            echo "vendor/$name: unchanged ($name $version + its patch)"
            continue
        fi
        if [ -z "$force" ] && [ -d "vendor/$name" ] &&
            [ -n "$(git status --porcelain -- "vendor/$name" 2>/dev/null)" ]; then
            die "vendor/$name has uncommitted changes this would discard: keep them in the patch with scripts/vendor.sh --save, or discard them with --force"
        fi
        rm -rf "vendor/$name"
        mv "$out" "vendor/$name"
        if [ "$failed" = 1 ]; then
            echo "vendor/$name: $name $version with the hunks of its patch that apply; the rest:" >&2
            (cd "vendor/$name" && find . -name '*.rej' | sort | sed 's|^\./|    |') >&2
            die "merge each .rej by hand, delete it, then scripts/vendor.sh --save and --check"
        fi
        echo "vendor/$name: re-created ($name $version + vendor/patches/$name-$version.patch)"
    done
    ;;
save)
    for i in "${!names[@]}"; do
        name=${names[$i]} version=${versions[$i]} d="$work/diff/$i"
        patch="vendor/patches/$name-$version.patch"
        mkdir -p "$d"
        upstream "$i" "$d/a"
        cp -R "vendor/$name" "$d/b"
        if [ -f "$patch" ]; then
            # The header: everything before the first file's diff.
            sed '/^diff --git /,$d' "$patch" >"$d/header"
        else
            printf '%s\n' "ptt-node's patch to $name $version as published (vendor/patches/SERIES)." \
                "scripts/vendor.sh applies it inside the crate's directory (git apply, or patch -p1)." \
                "" >"$d/header"
        fi
        rc=0
        (cd "$d" && git_ diff --no-index --no-prefix --no-renames --no-color --no-ext-diff \
            --no-textconv --diff-algorithm=myers a b) >"$d/body" || rc=$?
        [ "$rc" -le 1 ] || die "git diff failed for $name"
        cat "$d/header" "$d/body" >"$patch"
        echo "$patch: $(wc -l <"$patch") lines"
    done
    ;;
check)
    failed=0
    for i in "${!names[@]}"; do
        name=${names[$i]} version=${versions[$i]}
        recreate "$i" "$work/out/$name"
        if ! diff -r -q "vendor/$name" "$work/out/$name" >/dev/null 2>&1; then
            echo "vendor/$name is not $name $version + vendor/patches/$name-$version.patch:" >&2
            diff -ru "$work/out/$name" "vendor/$name" | sed "s|$work/out/|(published + patch) |" |
                head -n 40 >&2 || true
            echo "    (keep an edit of vendor/$name with scripts/vendor.sh --save; undo it with scripts/vendor.sh --force)" >&2
            failed=1
        fi
        if ! lock_uses_copy "$name" "$version"; then
            echo "Cargo.lock does not use vendor/$name ($name $version): a dependency now needs another version, so cargo builds the published crate without ptt-node's patch; move the patch to that version (vendor/README.md)" >&2
            failed=1
        fi
    done
    if grep -q '^\[\[patch.unused\]\]' Cargo.lock; then
        echo "Cargo.lock lists a [patch] cargo does not use:" >&2
        sed -n '/^\[\[patch.unused\]\]/,/^$/p' Cargo.lock >&2
        failed=1
    fi
    [ "$failed" = 0 ] || die "vendor/ check failed (above)"
    echo "vendor/: ${names[*]} are their published versions + vendor/patches/ (and Cargo.lock uses them)"
    ;;
esac
