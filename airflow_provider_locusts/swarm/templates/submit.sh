# Submit one scheduler job per manager and record its id in jobid_<manager>; the
# scheduler_* functions (templates/scheduler_<name>.sh) are defined before this script.
# A manager that already has a job id is not submitted again. If a submission is rejected,
# the jobs submitted by this call are cancelled, so nothing is left half-started; so are they
# when a job id cannot be recorded.
# usage: bash -s -- EXEC_DIR COMMAND MANAGER...   (COMMAND: the scheduler's submit command)
set -u
exec_dir=$1 command=$2
shift 2
cd -- "$exec_dir" || exit 1
if ! command -v "$command" > /dev/null; then
    echo "$command was not found on $(hostname) (PATH=$PATH): is the scheduler installed and on this user's PATH?" >&2
    exit 127
fi
submitted=()
cancel_submitted() {
    local job_id
    for job_id in "${submitted[@]}"; do
        scheduler_cancel "$job_id"
    done
}
for manager in "$@"; do
    [ -s "jobid_$manager" ] && continue
    [ -e "cancelled_$manager" ] && continue
    # On success scheduler_submit prints the job id alone; otherwise what went wrong.
    out=$(scheduler_submit "$(scheduler_job_script "$manager")" 2>&1)
    rc=$?
    if ((rc == 2)); then
        # Accepted, but no job id to record or cancel: say so, never pretend nothing runs.
        echo "$command accepted manager $manager but named no job id, so the swarm cannot follow or cancel that job: ${out:0:4000}; look for a job named locusts-$manager-* with the scheduler's own commands; the job(s) ${submitted[*]:-none} of this start were cancelled" >&2
        ((${#submitted[@]})) && cancel_submitted
        exit 1
    elif ((rc != 0)); then
        echo "$command rejected manager $manager: ${out:0:4000}" >&2
        ((${#submitted[@]})) && cancel_submitted
        exit 1
    fi
    job_id=${out##*$'\n'}
    submitted+=("$job_id")
    # A job the swarm cannot record would run unseen: cancel this call's jobs and say why.
    if ! err=$( { printf '%s\n' "$job_id" > "jobid_$manager.tmp" && mv -f "jobid_$manager.tmp" "jobid_$manager"; } 2>&1 ); then
        cancel_submitted
        echo "the job id $job_id of manager $manager could not be recorded in $exec_dir as $(id -un): $err; the job(s) ${submitted[*]} were cancelled" >&2
        exit 1
    fi
    echo "manager $manager: job $job_id"
done
