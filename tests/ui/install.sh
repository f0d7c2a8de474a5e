#!/usr/bin/env bash
# Install the Debian packages the browser tests need: chromium and its driver (chromedriver).
# Idempotent; runs as root (apt-get). Nothing is downloaded at test time.
set -euo pipefail

PACKAGES=(chromium chromium-driver)

if [[ ${EUID} -ne 0 ]]; then
    echo "tests/ui/install.sh: must run as root (apt-get install)" >&2
    exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null || true)
    if [[ ${status} != "install ok installed" ]]; then
        missing+=("${pkg}")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "tests/ui/install.sh: already installed: ${PACKAGES[*]}"
    exit 0
fi

echo "tests/ui/install.sh: installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
echo "tests/ui/install.sh: done"
