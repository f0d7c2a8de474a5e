#!/usr/bin/env bash
# Sets up and runs the whole test suite on a fresh machine:
#   1. installs the package with its test extras;
#   2. as root, installs Debian's chromium and chromium-driver (tests/ui/install.sh), the
#      Debian packages of the multi-host deployment of tests/deployment/ (PostgreSQL, Redis,
#      util-linux: its servers are started and stopped by the tests themselves), the
#      SSH + SLURM test cluster of tests/cluster/ and the OAR test cluster of tests/oar/,
#      starts both (OAR after SLURM), and stops them again at the end (only what it started);
#   3. runs pytest (extra arguments are passed on). pytest's "no tests collected"
#      (exit 5) fails the run like any other failure.
# As root (as CI runs it) the cluster tests never skip: a missing cluster fails them. As
# another user they are skipped, and the run ends by saying so loudly.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

python3 -m pip install -q -e ".[test]"
# The editable install leaves its build metadata in the repository too: with the repository on
# sys.path (the tests' Airflow processes get it on PYTHONPATH) the package would be found twice,
# and Airflow would load its plugin twice. The installed metadata is all that is needed.
rm -rf -- "$repo/airflow_provider_locusts.egg-info"

if [ "$(id -u)" = 0 ]; then
    bash tests/ui/install.sh            # chromium + chromium-driver for the browser tests
    bash tests/cluster/install.sh
    bash tests/deployment/install.sh
    bash tests/oar/install.sh
    bash tests/cluster/start.sh
    trap 'bash tests/cluster/stop.sh' EXIT
    bash tests/oar/start.sh
    trap 'bash tests/oar/stop.sh; bash tests/cluster/stop.sh' EXIT
else
    echo "tests/run.sh: not root, so no SSH/SLURM or OAR test cluster and no multi-host deployment: their tests will be skipped." >&2
fi

status=0
python3 -m pytest "$@" || status=$?

if [ "$(id -u)" != 0 ]; then
    {
        echo
        echo "########################################################################"
        echo "# tests/run.sh: NOT RUN AS ROOT - THE SSH + SLURM AND OAR CLUSTER TESTS WERE SKIPPED"
        echo "# (tests/cluster_e2e: SLURM, SSH outages, cancelling over SSH, secrets,"
        echo "# trigger load; tests/oar_e2e: OAR). This run says nothing about them: run"
        echo "# it as root, as CI does, for the whole suite."
        echo "########################################################################"
    } >&2
fi
exit "$status"
