#!/usr/bin/env bash
# Install the Debian packages the multi-host CeleryExecutor test deployment needs:
# PostgreSQL (metadata database), Redis (Celery broker) and util-linux (`unshare`, which
# gives each Celery worker a mount + UTS namespace of its own).  Idempotent: does nothing
# when all are installed.  The deployment's own code (tests/deployment/services.py) starts
# and stops its private servers; nothing system-wide is ever started.
#
# Runs as root (CI and developer machines are root, there is no sudo).
set -euo pipefail

PACKAGES=(postgresql redis-server util-linux)

if [[ ${EUID} -ne 0 ]]; then
    echo "install.sh: must run as root (apt-get install)" >&2
    exit 1
fi

# Installed means dpkg state "install ok installed" (not removed-but-not-purged).
missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null || true)
    if [[ ${status} != "install ok installed" ]]; then
        missing+=("${pkg}")
    fi
done

# The servers run as the packages' system users: recreate one the machine lost.
source "$(dirname "${BASH_SOURCE[0]}")/../support/system_users.sh"
ensure_users() {
    ensure_system_user postgres /var/lib/postgresql /bin/bash
    ensure_system_user redis /var/lib/redis
}

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install.sh: already installed: ${PACKAGES[*]}"
    ensure_users
    exit 0
fi

echo "install.sh: installing: ${missing[*]}"

# The packages' maintainer scripts would start a system-wide PostgreSQL cluster (port
# 5432) and redis-server (port 6379) where an init system lets them. The deployment runs
# its own servers on free loopback ports instead, so forbid service starts during the
# install (policy-rc.d exit 101 = "action forbidden"), unless the machine already has a
# policy; remove it again only if we created it.
POLICY=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e ${POLICY} ]]; then
    printf '#!/bin/sh\n# temporary, from tests/deployment/install.sh\nexit 101\n' >"${POLICY}"
    chmod 0755 "${POLICY}"
    created_policy=1
fi
cleanup() {
    if [[ ${created_policy} -eq 1 ]]; then
        rm -f "${POLICY}"
    fi
}
trap cleanup EXIT

# No standard input in CI: never let debconf or dpkg ask anything.
export DEBIAN_FRONTEND=noninteractive
# Another install may be running on the machine (tests/cluster/install.sh, say): wait for
# dpkg's lock, bounded, instead of failing at once.
LOCK_WAIT=(-o DPkg::Lock::Timeout=600)
apt-get "${LOCK_WAIT[@]}" update
apt-get "${LOCK_WAIT[@]}" install -y --no-install-recommends "${missing[@]}"
ensure_users

echo "install.sh: done"
