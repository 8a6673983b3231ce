#!/bin/sh
# Install Debian packages the tests need, once: apt_install.sh CHECK_PATH WHY PACKAGE...
# Does nothing when CHECK_PATH exists; otherwise installs PACKAGE... with apt-get (as root, or
# with sudo), and fails with what to do where there is no apt-get or no root. Never downloads
# anything but Debian's packages.
set -eu

CHECK=$1
WHY=$2
shift 2

if [ -e "$CHECK" ]; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "$CHECK is missing and apt-get is not available; install $* ($WHY)" >&2
    echo "with your system's package manager." >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "need root (or sudo) to apt-get install $* ($WHY)" >&2
        exit 1
    fi
fi

echo "installing Debian's $* ($WHY)..."
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
ls "$CHECK" >/dev/null
