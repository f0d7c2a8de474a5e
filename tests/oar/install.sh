#!/usr/bin/env bash
# Install the Debian packages of the single-machine OAR 2.5 test cluster:
# the OAR server (Almighty and its modules, with the PostgreSQL backend), the node side
# (OAR's own sshd on port 6667, oarsh) and the user commands (oarsub, oarstat, oardel),
# plus PostgreSQL itself (OAR's database; tests/oar/start.sh runs a private one).
# Idempotent: does nothing when all are installed.
#
# Runs as root (CI and developer machines are root, there is no sudo).
# start.sh never installs anything; it tells you to run this script instead.
set -euo pipefail

PACKAGES=(oar-server oar-server-pgsql oar-node oar-user oar-user-pgsql
    postgresql openssh-server openssh-client libdbd-pg-perl util-linux procps iproute2)

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

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install.sh: already installed: ${PACKAGES[*]}"
    exit 0
fi

echo "install.sh: installing: ${missing[*]}"

# The maintainer scripts would start system-wide daemons where an init system lets them:
# OAR's server, OAR's node sshd (port 6667 on every address), PostgreSQL (5432). The test
# cluster runs its own, on loopback only, so forbid service starts during the install
# (policy-rc.d exit 101 = "action forbidden"), unless the machine already has a policy;
# remove it again only if we created it.
POLICY=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e ${POLICY} ]]; then
    printf '#!/bin/sh\n# temporary, from tests/oar/install.sh\nexit 101\n' >"${POLICY}"
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
# Another install may be running (tests/cluster/install.sh, say): wait for dpkg's lock,
# bounded, instead of failing at once.
LOCK_WAIT=(-o DPkg::Lock::Timeout=600)
apt-get "${LOCK_WAIT[@]}" update
apt-get "${LOCK_WAIT[@]}" install -y --no-install-recommends "${missing[@]}"

echo "install.sh: done"
