# What became of managers that were lost: did each start, did it run any task, what did its
# scheduler say (job state, reason, exit code), and the last lines of its output.
# usage: bash -s -- EXEC_DIR LINES MANAGER...
# prints per manager "@manager NAME STARTED RAN_TASKS JOB_ID STATE REASON EXIT_CODE" then
# "@log N" followed by N bytes of the end of its output file.
set -u
exec_dir=$1 lines=$2
shift 2
cd -- "$exec_dir" 2> /dev/null || {
    echo "no swarm root here: $exec_dir not found on $HOSTNAME" >&2
    exit 66
}
# The swarm's own scheduler functions (written at staging); a root staged without them had
# SLURM's, which the caller defines before this script.
if [ -r scheduler.sh ]; then
    . ./scheduler.sh
fi
for manager in "$@"; do
    started=0 ran=0 job=- state=- reason=- code=-
    [ -s "pid_$manager" ] && started=1
    [ -s "events_$manager" ] && ran=1
    if [ -s "jobid_$manager" ]; then
        read -r job < "jobid_$manager"
        read -r state reason code <<< "$(scheduler_info "$job")"
    fi
    printf '@manager %s %s %s %s %s %s %s\n' "$manager" "$started" "$ran" "$job" "$state" "$reason" "$code"
    log=$(tail -n "$lines" -- "manager_$manager.log" 2> /dev/null | head -c 4000)
    printf '@log %s\n%s' "$(printf '%s' "$log" | wc -c)" "$log"
done
exit 0
