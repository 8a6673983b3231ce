#!/bin/sh
# Install Debian's Chromium for the browser end-to-end test (tests/test_browser.py), once.
# Idempotent: does nothing when /usr/bin/chromium exists. Never downloads a browser build of
# its own (Playwright drives this Chromium through executable_path).
set -eu

if [ -x /usr/bin/chromium ]; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_chromium.sh: /usr/bin/chromium is missing and apt-get is not available;" >&2
    echo "install Chromium with your system's package manager to run the browser test." >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install_chromium.sh: need root (or sudo) to apt-get install chromium" >&2
        exit 1
    fi
fi

echo "installing Debian's chromium for the browser test..."
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
/usr/bin/chromium --version
