# Stop managers and their running tasks: cancel their scheduler jobs, or signal the process
# group of each directly started manager. The group is signalled only when one of its
# processes still runs that manager's script (the manager itself, or its task subshells
# after the manager was killed), so a recycled pid is never hit. A manager not started yet
# is marked cancelled first, so it can never start later.
# usage: bash -s -- EXEC_DIR MANAGER...
# prints one line per manager: "<manager> finished|stopped|job-cancelled|not-running|not-started";
# exits 66 when there is no swarm root here, 3 when a manager could not be stopped (stderr says why).
set -u
exec_dir=$1
shift
cd -- "$exec_dir" 2> /dev/null || {
    echo "no swarm root here: $exec_dir not found on $HOSTNAME" >&2
    exit 66
}
# The swarm's own scheduler functions (written at staging); a root staged without them had
# SLURM's, which the caller defines before this script.
if [ -r scheduler.sh ]; then
    . ./scheduler.sh
fi

group_runs_manager() {  # PGID MANAGER
    local stat rest fields
    for stat in /proc/[0-9]*/stat; do
        rest=$(< "$stat") 2> /dev/null || continue
        rest=${rest##*) }  # fields after "pid (comm) ", whatever comm holds
        read -r -a fields <<< "$rest"
        [ "${fields[2]}" = "$1" ] || continue
        tr '\0' ' ' < "${stat%/stat}/cmdline" 2> /dev/null | grep -qF "manager_$2.sh" && return 0
    done
    return 1
}

# Fencing: a lost manager's attempts (forks of its script) can outlive it (and, with some SLURM process
# trackers, its job). They are stopped and waited for here, so no late result can land
# after the caller decided what to run again.
fence=()
failed=0
for manager in "$@"; do
    if [ -e "done_$manager" ]; then
        echo "$manager finished"
        continue
    fi
    : > "cancelled_$manager"
    outcome=not-started
    if [ -s "jobid_$manager" ]; then
        read -r job_id < "jobid_$manager"
        if scheduler_cancel "$job_id"; then
            outcome=job-cancelled
        else
            echo "manager $manager: cancelling job $job_id failed" >&2
            failed=1
        fi
    fi
    if [ -s "pid_$manager" ]; then
        read -r pid host < "pid_$manager"
        if [ "$host" != "$HOSTNAME" ]; then
            # A job's manager on a compute node ends with its job; a direct one cannot be reached.
            if [ "$outcome" != job-cancelled ]; then
                echo "manager $manager runs on host $host, not on $HOSTNAME where the swarm was reached: it cannot be stopped from here" >&2
                failed=1
            fi
        elif group_runs_manager "$pid" "$manager"; then
            kill -TERM -- "-$pid" 2> /dev/null
            fence+=("$pid $manager")
            outcome=stopped
        elif [ "$outcome" = not-started ]; then
            outcome=not-running
        fi
    fi
    echo "$manager $outcome"
done

for ((tries = 0; tries < 50 && ${#fence[@]}; tries++)); do
    sleep 0.2
    alive=()
    for entry in "${fence[@]}"; do
        group_runs_manager $entry && alive+=("$entry")
    done
    fence=("${alive[@]}")
done
for entry in "${fence[@]}"; do
    read -r pid manager <<< "$entry"
    echo "manager $manager did not stop on SIGTERM: SIGKILL to its process group" >&2
    kill -KILL -- "-$pid" 2> /dev/null
done
((failed)) && exit 3
exit 0
