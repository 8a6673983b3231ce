#!/bin/sh
# Install Debian's Chromium for the browser end-to-end test (tests/test_browser.py), once.
# Idempotent: does nothing when /usr/bin/chromium exists. Never downloads a browser build of
# its own (Playwright drives this Chromium through executable_path).
set -eu
sh "$(dirname "$0")/apt_install.sh" /usr/bin/chromium "the browser test" chromium
/usr/bin/chromium --version
