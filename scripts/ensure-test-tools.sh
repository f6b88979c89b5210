#!/bin/sh
# Installs the system tools the tests call, when they are missing; quiet when they are not.
#
#   promtool           (Debian package `prometheus`): `promtool check metrics` on /metrics
#   /usr/bin/chromium  (Debian package `chromium`): the browser test
#
# Idempotent: when both are present it installs nothing and prints nothing. Packages come
# from the machine's apt sources, without recommends. The package lists are refreshed
# (`apt-get update`) only when a first install fails, so a machine with fresh lists makes
# no extra request. Installing needs root, or sudo without a password.
#
# When the tools cannot be installed, CI (CI set) stops here with status 1. Elsewhere this
# only warns: the tests that need a missing tool skip and say which one.
set -eu

missing=""
command -v promtool >/dev/null 2>&1 || missing="$missing prometheus"
[ -x /usr/bin/chromium ] || missing="$missing chromium"
[ -n "$missing" ] || exit 0

cannot() {
    echo "ensure-test-tools: cannot install$missing: $1" >&2
    if [ -n "${CI:-}" ]; then
        exit 1
    fi
    echo "ensure-test-tools: the tests that need them will skip" >&2
    exit 0
}

if [ "$(id -u)" -eq 0 ]; then
    as_root=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root="sudo -n"
else
    cannot "not root, and no password-less sudo"
fi
command -v apt-get >/dev/null 2>&1 || cannot "no apt-get (a Debian or Ubuntu machine is needed)"

echo "ensure-test-tools: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# $as_root and $missing are word lists, split on purpose.
# shellcheck disable=SC2086
if ! $as_root apt-get install -y -q --no-install-recommends $missing >/dev/null 2>&1; then
    $as_root apt-get update -q >/dev/null || cannot "apt-get update failed"
    # shellcheck disable=SC2086
    $as_root apt-get install -y -q --no-install-recommends $missing >/dev/null \
        || cannot "apt-get install failed"
fi
