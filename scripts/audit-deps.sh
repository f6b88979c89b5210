#!/bin/sh
# Audits the pinned dependencies (requirements.lock) for known vulnerabilities.
#
#   scripts/audit-deps.sh                 # exit 0: nothing known; 1: findings, or a
#                                         # dependency that could not be audited
#
# pip-audit runs from its own small virtualenv (.venv-audit, made on first use), pinned,
# so that it neither enters nor changes the project's environment or its lock. It asks
# PyPI's vulnerability data (`-s osv` would ask OSV instead) about each pinned version;
# the lock is taken as complete (`--no-deps`, `--disable-pip`: nothing is resolved or
# installed). `--strict` makes a dependency that could not be audited (a version the
# service does not know, a network failure) a failure too: an audit that saw nothing
# must not pass as a clean one.
set -eu

PIP_AUDIT_VERSION=2.10.1
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv-audit"
python=${PYTHON:-python3}

if [ ! -x "$venv/bin/pip-audit" ] \
    || ! "$venv/bin/pip-audit" --version 2>/dev/null | grep -qx "pip-audit $PIP_AUDIT_VERSION"; then
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet "pip-audit==$PIP_AUDIT_VERSION"
fi

exec "$venv/bin/pip-audit" --strict --no-deps --disable-pip --progress-spinner off \
    -r "$root/requirements.lock" "$@"
