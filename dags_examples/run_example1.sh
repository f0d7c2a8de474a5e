#!/usr/bin/env bash
# Sets up and runs the Example 1 swarm DAG on this machine with dag.test():
# installs the package, makes an Airflow home on the embedded SQLite database
# (./airflow_home unless AIRFLOW_HOME is set), migrates it, runs the DAG and says
# where the 202 collected outputs and the manifest are.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

python3 -m pip install -q -e .
rm -rf -- "$repo/airflow_provider_locusts.egg-info"  # build leftovers: the installed metadata is what counts

export AIRFLOW_HOME=${AIRFLOW_HOME:-$repo/airflow_home}
export AIRFLOW__CORE__DAGS_FOLDER=$repo/dags_examples
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export LOCUSTS_EXAMPLE_DIR=${LOCUSTS_EXAMPLE_DIR:-/tmp/locusts_example1}
mkdir -p "$AIRFLOW_HOME"
python3 -m airflow db migrate > "$AIRFLOW_HOME/db-migrate.log" 2>&1 \
    || { cat "$AIRFLOW_HOME/db-migrate.log" >&2; exit 1; }

log=$AIRFLOW_HOME/example1-run.log
echo "Running Example 1 (101 tasks, 4 at a time); Airflow's log: $log"
python3 dags_examples/example1_local.py > "$log" 2>&1 || { tail -n 40 "$log" >&2; exit 1; }
grep -E "tasks succeeded|failed:|Example 1 finished" "$log"
