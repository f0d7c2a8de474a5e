#!/usr/bin/env bash
# Install the Debian packages the single-machine test cluster needs:
# OpenSSH (server + client), munge and SLURM (slurm-wlm: slurmctld, slurmd and
# the client commands).  Idempotent: does nothing when all are installed.
#
# Runs as root (CI and developer machines are root, there is no sudo).
# start.sh never installs anything; it tells you to run this script instead.

# -e: stop at the first failing command; -u: an unset variable is a bug;
# -o pipefail: a failure inside a pipeline is not hidden by its last command.
set -euo pipefail

PACKAGES=(openssh-server openssh-client slurm-wlm munge bubblewrap)

if [[ ${EUID} -ne 0 ]]; then
    echo "install.sh: must run as root (apt-get install)" >&2
    exit 1
fi

# A package counts as installed only in dpkg state "install ok installed"
# (a removed-but-not-purged package has config files but no binaries).
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

# The packages' maintainer scripts would start system-wide sshd (port 22 on
# every address), munged, slurmctld and slurmd where an init system lets them.
# The test cluster runs its own daemons on loopback only, so forbid service
# starts during the install with a policy-rc.d (exit 101 = "action forbidden"),
# unless the machine already has one (Debian container images usually do);
# remove it again only if we created it.
POLICY=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e ${POLICY} ]]; then
    printf '#!/bin/sh\n# temporary, from tests/cluster/install.sh\nexit 101\n' >"${POLICY}"
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
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"

echo "install.sh: done"
