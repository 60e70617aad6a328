#!/usr/bin/env bash
# Installs what pushbridge needs to build, test and run its demo on a fresh Debian machine.
# Idempotent: installs only what is missing. Usage: scripts/setup.sh [--test]
#   --test   also the test-only tools (PostgreSQL server, systemd-analyze, Python checkers)
set -euo pipefail

want=(libgit2-dev libssl-dev libsqlite3-dev pkg-config git)
if [[ "${1:-}" == "--test" ]]; then
    want+=(postgresql systemd tar gzip openssl)
    python3 -m pip --version >/dev/null 2>&1 || want+=(python3-pip)
fi

missing=()
for pkg in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    as_root=()
    [[ $(id -u) -eq 0 ]] || as_root=(sudo)
    "${as_root[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ "${1:-}" == "--test" ]]; then
    # Independent implementations the tests check our OAuth 1.0a signatures and API against.
    py_missing=()
    python3 -c "import oauthlib" 2>/dev/null || py_missing+=(oauthlib)
    python3 -c "import cryptography" 2>/dev/null || py_missing+=(cryptography)
    python3 -c "import schemathesis" 2>/dev/null || py_missing+=(schemathesis)
    if ((${#py_missing[@]})); then
        echo "setup: pip installing ${py_missing[*]}"
        python3 -m pip install --quiet --disable-pip-version-check "${py_missing[@]}" 2>/dev/null \
            || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "${py_missing[@]}"
    fi
fi
echo "setup: ok (libgit2 $(pkg-config --modversion libgit2))"
