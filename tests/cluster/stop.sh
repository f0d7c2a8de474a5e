#!/usr/bin/env bash
# Stop the test cluster started by start.sh.
#
#   tests/cluster/stop.sh                 stop everything start.sh started
#   tests/cluster/stop.sh slurmd sshd     stop only these (start.sh uses this
#                                         to restart a daemon whose config changed)
#
# Only the processes whose pids start.sh recorded in ${STATE}/pids/, and
# their descendants (found by parent pid), are signalled - never
# pkill/killall: each gets SIGTERM, then SIGKILL if it is still there after a
# bounded wait.  A munged that was already running before start.sh
# (not recorded) is left alone.  Before slurmctld goes, the jobs still in the
# queue are cancelled through SLURM so that no job processes are left behind.
#
# The state dir (keys, SLURM state, logs, shared/) is kept: start.sh reuses
# it.  Remove ${STATE} by hand for a completely fresh cluster.
# If start.sh had moved an existing /etc/slurm/slurm.conf aside, a full stop
# puts it back.

# -e: stop at the first failing command; -u: an unset variable is a bug;
# -o pipefail: a failure inside a pipeline is not hidden by its last command.
set -euo pipefail

STATE=${LOCUSTS_CLUSTER_DIR:-/tmp/locusts-cluster}
PIDS=${STATE}/pids
SLURM_CONF=/etc/slurm/slurm.conf
SLURM_CONF_BACKUP=/etc/slurm/slurm.conf.orig-locusts
SLURM_CONF_MARK="# locusts-test-cluster: written by tests/cluster/start.sh"
ALL=(slurmd slurmctld sshd munged) # stop order: reverse of start order
TERM_WAIT=10                       # seconds to wait after SIGTERM
KILL_WAIT=5                        # seconds to wait after SIGKILL

log() { echo "stop.sh: $*"; }

if [[ $# -gt 0 ]]; then
    NAMES=("$@")
    full_stop=0
else
    NAMES=("${ALL[@]}")
    full_stop=1
fi
for name in "${NAMES[@]}"; do
    case ${name} in
    slurmd | slurmctld | sshd | munged) ;;
    *)
        echo "stop.sh: unknown daemon '${name}' (expected: ${ALL[*]})" >&2
        exit 2
        ;;
    esac
done

if [[ ! -d ${PIDS} ]]; then
    log "nothing to stop (no ${PIDS})"
    exit 0
fi

# Same lock as start.sh (unless start.sh, holding it, called us).
if [[ -z ${LOCUSTS_CLUSTER_LOCKED:-} ]]; then
    exec 9>"${STATE}/lock"
    flock -w 120 9 || {
        echo "stop.sh: timed out waiting for the lock ${STATE}/lock" >&2
        exit 1
    }
fi

# pid_of NAME: the recorded pid, if that process is alive and really is NAME
# (a stale pid file may name a reused pid); else fail.
pid_of() {
    local name=$1 pidfile="${PIDS}/$1.pid" pid comm
    [[ -s ${pidfile} ]] || return 1
    pid=$(tr -dc '0-9' <"${pidfile}")
    [[ -n ${pid} ]] || return 1
    comm=$(cat "/proc/${pid}/comm" 2>/dev/null) || return 1
    [[ ${comm} == "${name}" ]] || return 1
    echo "${pid}"
}

# alive PID: the process exists and is not a zombie (an orphaned daemon's
# zombie lingers until the machine's init reaps it; it is gone for us).
alive() {
    local state
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n ${state} && ${state} != Z ]]
}

# wait_gone SECONDS PID...: wait until none of the PIDs is alive.
wait_gone() {
    local limit=$1 i p any
    shift
    for ((i = 0; i < limit * 5; i++)); do
        any=0
        for p in "$@"; do
            if alive "${p}"; then
                any=1
                break
            fi
        done
        [[ ${any} -eq 0 ]] && return 0
        sleep 0.2
    done
    return 1
}

# descendants PID: PID and every process below it, one pid per line.
descendants() {
    local table
    table=$(ps -e -o pid=,ppid=)
    awk -v root="$1" '
        { parent[$1] = $2 }
        END {
            want[root] = 1; print root; changed = 1
            while (changed) {
                changed = 0
                for (p in parent)
                    if (!(p in want) && (parent[p] in want)) {
                        want[p] = 1; print p; changed = 1
                    }
            }
        }' <<<"${table}"
}

# terminate NAME PID...: SIGTERM, bounded wait, SIGKILL, bounded wait.
terminate() {
    local name=$1 p left=()
    shift
    kill -TERM "$@" 2>/dev/null || true
    if wait_gone "${TERM_WAIT}" "$@"; then
        log "${name} stopped (pid $*)"
        return 0
    fi
    for p in "$@"; do alive "${p}" && left+=("${p}"); done
    log "${name} still running after ${TERM_WAIT}s: SIGKILL to ${left[*]}"
    kill -KILL "${left[@]}" 2>/dev/null || true
    if wait_gone "${KILL_WAIT}" "${left[@]}"; then
        return 0
    fi
    echo "stop.sh: ERROR: ${name} (pid ${left[*]}) survived SIGKILL" >&2
    return 1
}

# Cancel the jobs still known to our slurmctld, so that their processes
# (started by slurmd through slurmstepd) do not outlive the cluster.
cancel_jobs() {
    local jobs
    pid_of slurmctld >/dev/null || return 0
    jobs=$(timeout 15 squeue -h -o %i 2>/dev/null | tr '\n' ' ') || return 0
    [[ -n ${jobs// /} ]] || return 0
    log "cancelling jobs: ${jobs}"
    # shellcheck disable=SC2086 # word splitting of the job list is intended
    timeout 15 scancel ${jobs} 2>/dev/null || true
    # Bounded wait (15 s deadline) for them to leave the running/completing
    # states, i.e. for slurmd to have killed their processes.
    local deadline=$((SECONDS + 15))
    while ((SECONDS < deadline)); do
        jobs=$(timeout 10 squeue -h -t running,completing,suspended -o %i 2>/dev/null) || break
        [[ -z ${jobs} ]] && return 0
        sleep 0.2
    done
    log "some jobs were still running/completing after 15s: ${jobs}"
}

status=0
for name in "${NAMES[@]}"; do
    if [[ ${name} == slurmctld || ${name} == slurmd ]]; then
        # Once, while both daemons are still up.
        if [[ -z ${cancelled:-} ]]; then
            cancel_jobs
            cancelled=1
        fi
    fi
    if ! pid=$(pid_of "${name}"); then
        log "${name} not running"
        rm -f "${PIDS}/${name}.pid"
        continue
    fi
    # The daemon and all its descendants, e.g. sshd's per-connection
    # processes and the commands running in open SSH sessions (sshd runs
    # those in a session of their own, so they would otherwise outlive it).
    # Found by walking parent pids down from the recorded pid.
    mapfile -t pids < <(descendants "${pid}")
    terminate "${name}" "${pids[@]}" || status=1
    # Daemons usually remove their pid file themselves; make sure.
    rm -f "${PIDS}/${name}.pid"
done

# Give back a slurm.conf that start.sh had moved aside.
if [[ ${full_stop} -eq 1 && -f ${SLURM_CONF_BACKUP} && -f ${SLURM_CONF} ]] &&
    [[ $(head -n 1 "${SLURM_CONF}") == "${SLURM_CONF_MARK}" ]]; then
    log "restoring ${SLURM_CONF} from ${SLURM_CONF_BACKUP}"
    mv -f "${SLURM_CONF_BACKUP}" "${SLURM_CONF}"
fi

exit "${status}"
