#!/bin/sh
# Install Debian's nginx-light, once: the real balancer in front of two harken servers in
# tests/test_deploy.py, which runs deploy/nginx/harken.conf (nginx -t, failover on 503, the
# session-id hash, a reload mid-session). The service Debian starts with it is stopped and
# disabled: the tests run their own nginx processes on free loopback ports.
set -eu
if [ -e /usr/sbin/nginx ]; then
    exit 0
fi
sh "$(dirname "$0")/apt_install.sh" /usr/sbin/nginx "the balancer tests" nginx-light
if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now nginx >/dev/null 2>&1 || true
fi
