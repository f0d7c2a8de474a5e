# Scheduler functions for OAR 2.5, sourced by the host scripts (submit, poll, cancel, diagnose).

# The job script of manager NAME: an absolute path (oarsub -S runs it from the job's
# launching directory, and reads its #OAR lines).
scheduler_job_script() { printf '%s/manager_%s.oar.sh\n' "$PWD" "$1"; }

# scheduler_submit SCRIPT: submit it; print the job id from oarsub's OAR_JOB_ID=NNN line.
# Exit 1: rejected (stderr says why). Exit 2: oarsub said yes but named no job id.
scheduler_submit() {
    local out job_id
    if ! out=$(oarsub -S "$1" 2>&1); then
        printf '%s\n' "$out" >&2
        return 1
    fi
    job_id=$(printf '%s\n' "$out" | sed -n 's/^OAR_JOB_ID=\([0-9][0-9]*\)[[:space:]]*$/\1/p' | tail -n 1)
    if [ -z "$job_id" ]; then
        printf 'oarsub named no OAR_JOB_ID: %s\n' "$out" >&2
        return 2
    fi
    printf '%s\n' "$job_id"
}

# scheduler_states ID...: one "ID STATE" line per job (UNKNOWN when oarstat did not answer
# for it; OAR keeps finished jobs in its database, so that is a failed query).
scheduler_states() {
    local args=() id state
    declare -A seen=()
    for id; do args+=(-j "$id"); done
    while read -r id state; do
        [ -n "$id" ] || continue
        seen[$id]=1
        printf '%s %s\n' "$id" "$state"
    done < <(oarstat -s "${args[@]}" 2>/dev/null | sed -n 's/^[[:space:]]*\([0-9][0-9]*\):[[:space:]]*\([A-Za-z]*\)[[:space:]]*$/\1 \2/p')
    for id; do
        [ -n "${seen[$id]:-}" ] || printf '%s UNKNOWN\n' "$id"
    done
}

# scheduler_class STATE: queued (not started yet), active (running, or state unknown) or ended.
scheduler_class() {
    case $1 in
        Waiting|Hold|toLaunch|Launching|toAckReservation) echo queued ;;
        Running|Finishing|Suspended|Resuming|UNKNOWN) echo active ;;
        *) echo ended ;;
    esac
}

# scheduler_cancel ID: delete the job. One that OAR already ended or is already killing
# ("This job was already killed") needs nothing more: that is a success.
scheduler_cancel() {
    local out state
    out=$(oardel "$1" 2>&1) && return 0
    case $out in *"already killed"*) return 0 ;; esac
    read -r _ state <<< "$(scheduler_states "$1")"
    case $state in Terminated|Error|toError) return 0 ;; esac
    printf 'oardel %s: %s\n' "$1" "$out" >&2
    return 1
}

# scheduler_info ID: "STATE REASON EXIT_CODE"; the reason is the job's OAR events
# (e.g. FRAG_JOB_REQUEST,SEND_KILL_JOB,SWITCH_INTO_ERROR_STATE), "-" for what is not known.
scheduler_info() {
    local info state code reason
    info=$(oarstat -f -j "$1" 2>/dev/null)
    state=$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*state = \([A-Za-z]*\).*/\1/p' | head -n 1)
    # exit_code = 24832 (97,0,0): the wait status, then (exit status, signal, core dumped);
    # said as SLURM says it, status:signal.
    code=$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*exit_code = [0-9-]* (\([0-9-]*\),\([0-9-]*\),.*/\1:\2/p' | head -n 1)
    reason=$(printf '%s\n' "$info" | sed -n 's/^[0-9-]* [0-9:]*> \([A-Za-z_]*\):.*/\1/p' | paste -sd, -)
    printf '%s %s %s\n' "${state:--}" "${reason:--}" "${code:--}"
}
