#!/usr/bin/env bash
# Stop the OAR test cluster started by start.sh.
#
#   tests/oar/stop.sh                  stop everything start.sh started
#   tests/oar/stop.sh almighty         stop only these (start.sh restarts a daemon whose
#                                      configuration changed this way)
#
# Only the pids start.sh recorded in ${STATE}/pids/, and their descendants (by parent
# pid), are signalled - never pkill/killall: SIGTERM, a bounded wait, then SIGKILL. Before
# the server goes, the jobs OAR still runs are deleted with oardel so that no job process
# outlives the cluster. A full stop puts the package's /etc/oar/oar.conf back.
# The state dir (database, logs) is kept: start.sh reuses it.
set -euo pipefail

STATE=${LOCUSTS_OAR_DIR:-/tmp/locusts-oar}
PIDS=${STATE}/pids
OAR_CONF=/etc/oar/oar.conf
OAR_CONF_BACKUP=/etc/oar/oar.conf.orig-locusts
OAR_CONF_MARK="# locusts-oar-test-cluster: keys rewritten by tests/oar/start.sh"
ALL=(almighty oar-sshd postgres) # stop order: reverse of start order
TERM_WAIT=10
KILL_WAIT=5

log() { echo "oar/stop.sh: $*"; }

if [[ $# -gt 0 ]]; then
    NAMES=("$@")
    full_stop=0
else
    NAMES=("${ALL[@]}")
    full_stop=1
fi
for name in "${NAMES[@]}"; do
    case ${name} in
    almighty | oar-sshd | postgres) ;;
    *)
        echo "oar/stop.sh: unknown daemon '${name}' (expected: ${ALL[*]})" >&2
        exit 2
        ;;
    esac
done

if [[ ! -d ${PIDS} ]]; then
    log "nothing to stop (no ${PIDS})"
    exit 0
fi

if [[ -z ${LOCUSTS_OAR_LOCKED:-} ]]; then
    exec 9>"${STATE}/lock"
    flock -w 120 9 || {
        echo "oar/stop.sh: timed out waiting for the lock ${STATE}/lock" >&2
        exit 1
    }
fi

comm_of() {
    case $1 in
    almighty) echo Almighty ;;
    oar-sshd) echo sshd ;;
    *) echo "$1" ;;
    esac
}

pid_of() {
    local name=$1 pidfile="${PIDS}/$1.pid" pid comm
    [[ -s ${pidfile} ]] || return 1
    pid=$(head -n 1 "${pidfile}" | tr -dc '0-9')
    [[ -n ${pid} ]] || return 1
    comm=$(cat "/proc/${pid}/comm" 2>/dev/null) || return 1
    [[ ${comm} == "$(comm_of "${name}")" ]] || return 1
    echo "${pid}"
}

alive() {
    local state
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n ${state} && ${state} != Z ]]
}

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
    echo "oar/stop.sh: ERROR: ${name} (pid ${left[*]}) survived SIGKILL" >&2
    return 1
}

# Delete the jobs OAR has not finished, while the server and the node are still up, and
# wait (bounded) for them to leave the running states.
delete_jobs() {
    local jobs deadline
    pid_of almighty >/dev/null || return 0
    jobs=$(timeout 15 oarstat -J 2>/dev/null | python3 -c 'import json,sys
try:
    print(" ".join(sorted(json.load(sys.stdin))))
except ValueError:
    pass' 2>/dev/null) || return 0
    [[ -n ${jobs// /} ]] || return 0
    log "deleting jobs: ${jobs}"
    # shellcheck disable=SC2086 # one argument per job id
    timeout 15 oardel ${jobs} >/dev/null 2>&1 || true
    deadline=$((SECONDS + 20))
    while ((SECONDS < deadline)); do
        jobs=$(timeout 10 oarstat -J 2>/dev/null | python3 -c 'import json,sys
try:
    print(" ".join(sorted(json.load(sys.stdin))))
except ValueError:
    pass' 2>/dev/null) || break
        [[ -z ${jobs// /} ]] && return 0
        sleep 0.5
    done
    log "some jobs were still there after 20s: ${jobs}"
}

status=0
for name in "${NAMES[@]}"; do
    if [[ ${name} == almighty && ${full_stop} -eq 1 ]]; then
        delete_jobs
    fi
    if ! pid=$(pid_of "${name}"); then
        log "${name} not running"
        rm -f "${PIDS}/${name}.pid"
        continue
    fi
    mapfile -t pids < <(descendants "${pid}")
    if [[ ${name} == postgres ]]; then
        # PostgreSQL's smart shutdown waits for clients; SIGINT is its fast shutdown.
        kill -INT "${pid}" 2>/dev/null || true
        wait_gone "${TERM_WAIT}" "${pids[@]}" && { log "postgres stopped (pid ${pid})"; rm -f "${PIDS}/${name}.pid"; continue; }
    fi
    terminate "${name}" "${pids[@]}" || status=1
    rm -f "${PIDS}/${name}.pid"
done
rm -f "${PIDS}/almighty-launcher.pid"

if [[ ${full_stop} -eq 1 && -f ${OAR_CONF_BACKUP} ]] &&
    [[ $(head -n 1 "${OAR_CONF}") == "${OAR_CONF_MARK}" ]]; then
    log "restoring ${OAR_CONF} from ${OAR_CONF_BACKUP}"
    mv -f "${OAR_CONF_BACKUP}" "${OAR_CONF}"
fi
exit "${status}"
