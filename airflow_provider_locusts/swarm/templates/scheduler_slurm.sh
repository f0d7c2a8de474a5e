# Scheduler functions for SLURM, sourced by the host scripts (submit, poll, cancel, diagnose).

# The job script of manager NAME, relative to exec/.
scheduler_job_script() { printf './manager_%s.slurm.sh\n' "$1"; }

# scheduler_submit SCRIPT: submit it; print the job id. Fails (saying why on stderr) when
# the scheduler rejected the job.
scheduler_submit() {
    local out job_id
    if ! out=$(sbatch --parsable "$1" 2>&1); then
        printf '%s\n' "$out" >&2
        return 1
    fi
    job_id=${out%%;*}
    job_id=${job_id##*$'\n'}
    printf '%s\n' "$job_id"
}

# scheduler_states ID...: one "ID STATE" line per job (UNKNOWN when SLURM forgot it).
scheduler_states() {
    local ids id state
    declare -A seen=()
    ids=$(IFS=,; printf '%s' "$*")
    while read -r id state; do
        [ -n "$id" ] || continue
        seen[$id]=1
        printf '%s %s\n' "$id" "$state"
    done < <(squeue -h -t all -o '%i %T' -j "$ids" 2>/dev/null)
    # Jobs squeue no longer lists: ask scontrol (finished jobs stay MinJobAge seconds).
    for id; do
        [ -n "${seen[$id]:-}" ] && continue
        state=$(scontrol show job "$id" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | head -n 1)
        printf '%s %s\n' "$id" "${state:-UNKNOWN}"
    done
}

# scheduler_class STATE: queued (not started yet), active (running, or state unknown) or ended.
scheduler_class() {
    case $1 in
        PENDING|CONFIGURING) echo queued ;;
        RUNNING|COMPLETING|SUSPENDED|UNKNOWN) echo active ;;
        *) echo ended ;;
    esac
}

scheduler_cancel() { scancel "$1"; }

# scheduler_info ID: "STATE REASON EXIT_CODE" of a job, "-" for what is not known.
scheduler_info() {
    local info
    info=" $(scontrol show job "$1" 2>/dev/null | tr '\n' ' ')"
    printf '%s %s %s\n' "$(_slurm_field JobState "$info")" "$(_slurm_field Reason "$info")" "$(_slurm_field ExitCode "$info")"
}
_slurm_field() {  # NAME TEXT: the value of NAME=... in scontrol's output
    local rest=${2#*" $1="}
    [ "$rest" = "$2" ] && { echo -; return; }
    echo "${rest%% *}"
}
