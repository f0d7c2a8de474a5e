#!/usr/bin/env bash
# Start the single-machine test cluster used by the pytest fixtures and CI:
#
#   * an OpenSSH server on 127.0.0.1:${LOCUSTS_SSH_PORT:-2222}, key-only login
#     as the unprivileged user "locusts";
#   * munged + a one-node SLURM 22.05 cluster (slurmctld + slurmd, partition
#     "debug") reachable from that user through sbatch/squeue/scancel;
#   * ${STATE}/cluster.env describing all of it (see README.md).
#
# Everything this script creates lives under the state directory
# ${LOCUSTS_CLUSTER_DIR:-/tmp/locusts-cluster}, except: the user "locusts",
# /etc/slurm/slurm.conf (the SLURM client commands read it from there; a
# pre-existing one that is not ours is kept as slurm.conf.orig-locusts),
# /run/sshd and /run/munge, a missing munge key, and - only if the short host
# name does not resolve - one "127.0.0.1 <name>" line in /etc/hosts.
#
# Idempotent: a daemon that is already running (by its recorded pid) is left
# alone, so running it twice is cheap.  It installs nothing: if a program is
# missing it says to run tests/cluster/install.sh.  stop.sh stops what it
# started, by the pids recorded in ${STATE}/pids/.
#
# Runs as root (CI and developer machines are root; there is no sudo).

# -e: stop at the first failing command; -u: an unset variable is a bug;
# -o pipefail: a failure inside a pipeline is not hidden by its last command.
set -euo pipefail

# Files we create must be readable by the "locusts" user and the daemons,
# whatever umask the caller had; the daemons (and so every SSH session and
# every SLURM job) inherit this umask too, which makes it predictable.
umask 022

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${LOCUSTS_CLUSTER_DIR:-/tmp/locusts-cluster}
SSH_PORT=${LOCUSTS_SSH_PORT:-2222}
SSH_HOST=127.0.0.1
SSH_USER=locusts
PARTITION=debug
SLURM_CONF=/etc/slurm/slurm.conf
SLURM_CONF_BACKUP=/etc/slurm/slurm.conf.orig-locusts
# First line of the slurm.conf we write: how a rerun recognises its own file.
SLURM_CONF_MARK="# locusts-test-cluster: written by tests/cluster/start.sh"
MUNGE_KEY=/etc/munge/munge.key
MUNGE_PIDFILE=/run/munge/munged.pid

PIDS=${STATE}/pids
LOGS=${STATE}/log

log() { echo "start.sh: $*"; }
die() {
    echo "start.sh: ERROR: $*" >&2
    exit 1
}

# ---------------------------------------------------------------- checks --

if [[ ${EUID} -ne 0 ]]; then
    die "must run as root (it creates a user, runs sshd/munged/slurmd)"
fi
# munged runs as the munge package's system user: recreate it if the machine lost it.
source "${HERE}/../support/system_users.sh"
ensure_system_user munge /nonexistent || die "the munge system user is missing; reinstall the munge package"

# The state dir ends up inside generated config files, cluster.env and a JSON
# connection string; allowing only plain path characters keeps all of them
# free of quoting problems (and cluster.env trivially parseable).
if [[ ! ${STATE} =~ ^/[A-Za-z0-9._/-]+$ ]]; then
    die "LOCUSTS_CLUSTER_DIR must be an absolute path of [A-Za-z0-9._/-] characters, got '${STATE}'"
fi
if [[ ! ${SSH_PORT} =~ ^[0-9]+$ ]] || ((SSH_PORT < 1024 || SSH_PORT > 65535)); then
    die "LOCUSTS_SSH_PORT must be a port number in 1024..65535, got '${SSH_PORT}'"
fi

missing=()
for prog in /usr/sbin/sshd /usr/bin/ssh-keygen /usr/sbin/munged /usr/bin/munge \
    /usr/bin/unmunge /usr/sbin/slurmctld /usr/sbin/slurmd /usr/bin/sinfo \
    /usr/bin/scontrol /usr/bin/sbatch /usr/bin/squeue /usr/bin/scancel \
    /usr/sbin/runuser /usr/sbin/useradd /usr/sbin/usermod /usr/bin/flock; do
    [[ -x ${prog} ]] || missing+=("${prog}")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    die "missing ${missing[*]}; run tests/cluster/install.sh (as root) first"
fi

# The state dir must be ours: a directory (not a symlink) owned by root.
# Under /tmp anyone could have pre-created it.
if [[ -L ${STATE} ]]; then
    die "${STATE} is a symlink; refusing to use it"
fi
mkdir -p "${STATE}"
if [[ $(stat -c %u "${STATE}") != 0 ]]; then
    die "${STATE} is not owned by root; refusing to use it"
fi
# 0755: the locusts user must be able to traverse it (to reach shared/).
chmod 0755 "${STATE}"
mkdir -p "${PIDS}" "${LOGS}"

# One start.sh/stop.sh at a time per state dir (e.g. parallel pytest
# workers all calling start.sh).  Bounded: give up after 120 s.
# LOCUSTS_CLUSTER_LOCKED is set when we call stop.sh while holding the lock.
if [[ -z ${LOCUSTS_CLUSTER_LOCKED:-} ]]; then
    exec 9>"${STATE}/lock"
    flock -w 120 9 || die "timed out waiting for the lock ${STATE}/lock"
    export LOCUSTS_CLUSTER_LOCKED=1
fi

# Every daemon below is started with "9>&-": a daemon that inherited fd 9
# would hold the lock for as long as it runs.

START_TIME=${SECONDS}

# ---------------------------------------------------------------- helpers --

# pid_of NAME: print the pid recorded in ${PIDS}/NAME.pid if that process is
# alive and really is NAME (a stale file may name a reused pid); else fail.
pid_of() {
    local name=$1 pidfile="${PIDS}/$1.pid" pid comm
    [[ -s ${pidfile} ]] || return 1
    pid=$(tr -dc '0-9' <"${pidfile}")
    [[ -n ${pid} ]] || return 1
    comm=$(cat "/proc/${pid}/comm" 2>/dev/null) || return 1
    [[ ${comm} == "${name}" ]] || return 1
    echo "${pid}"
}

# wait_until SECONDS DESCRIPTION COMMAND...: run COMMAND every 0.2 s until it
# succeeds; fail once SECONDS have passed (a deadline, not a count, so a
# slow COMMAND cannot stretch it).  Every wait in this script is bounded.
wait_until() {
    local limit=$1 what=$2 deadline
    shift 2
    deadline=$((SECONDS + limit))
    while true; do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        ((SECONDS < deadline)) || break
        sleep 0.2
    done
    echo "start.sh: ERROR: timed out after ${limit}s waiting for ${what}" >&2
    return 1
}

# show_log FILE: last lines of a daemon log, for error messages.
show_log() {
    if [[ -f $1 ]]; then
        echo "---- last lines of $1 ----" >&2
        tail -n 20 "$1" >&2
    fi
}

# write_if_changed FILE MODE: copy stdin to FILE (atomically) unless FILE
# already has exactly that content; succeeds (exit 0) iff FILE changed.
write_if_changed() {
    local file=$1 mode=$2 tmp
    tmp=$(mktemp "${file}.XXXXXX")
    cat >"${tmp}"
    chmod "${mode}" "${tmp}"
    if [[ -f ${file} ]] && cmp -s "${tmp}" "${file}"; then
        rm -f "${tmp}"
        return 1
    fi
    mv -f "${tmp}" "${file}"
    return 0
}

# One cluster per machine: slurm.conf and SLURM's ports are global.  Refuse
# (before starting anything) to take them over from a cluster still running
# from another state dir.
if [[ -f ${SLURM_CONF} ]]; then
    other=$(sed -n 's/^# (state dir \(.*\)); do not edit.*/\1/p' "${SLURM_CONF}")
    if [[ -n ${other} && ${other} != "${STATE}" ]] &&
        LOCUSTS_CLUSTER_DIR=${other} PIDS=${other}/pids pid_of slurmctld >/dev/null; then
        die "a test cluster from ${other} is running; stop it first: LOCUSTS_CLUSTER_DIR=${other} ${HERE}/stop.sh"
    fi
fi

# ------------------------------------------------------------------ user --

if ! id -u "${SSH_USER}" >/dev/null 2>&1; then
    log "creating user ${SSH_USER}"
    useradd -m -s /bin/bash "${SSH_USER}"
fi
# useradd leaves the password field "!" (locked).  With "UsePAM no" sshd
# refuses a locked account even for public-key logins; "*" means "no valid
# password" without "locked".
if [[ $(getent shadow "${SSH_USER}" | cut -d: -f2) == '!'* ]]; then
    usermod -p '*' "${SSH_USER}"
fi
USER_HOME=$(getent passwd "${SSH_USER}" | cut -d: -f6)
USER_GROUP=$(id -gn "${SSH_USER}")

# Client key pair: owned by root (the Airflow side runs as root), 0600.
if [[ ! -f ${STATE}/id_ed25519 || ! -f ${STATE}/id_ed25519.pub ]]; then
    rm -f "${STATE}/id_ed25519" "${STATE}/id_ed25519.pub"
    ssh-keygen -q -t ed25519 -N '' -C "locusts-test-cluster" -f "${STATE}/id_ed25519"
fi
chown root:root "${STATE}/id_ed25519" "${STATE}/id_ed25519.pub"
chmod 0600 "${STATE}/id_ed25519"

# authorized_keys: add our key (once), restricted to loopback clients.
# StrictModes (on by default) wants ~/.ssh 0700 and the file not writable by
# others, both owned by the user.
install -d -m 0700 -o "${SSH_USER}" -g "${USER_GROUP}" "${USER_HOME}/.ssh"
AUTH_KEYS=${USER_HOME}/.ssh/authorized_keys
AUTH_LINE="from=\"127.0.0.1,::1\" $(cat "${STATE}/id_ed25519.pub")"
touch "${AUTH_KEYS}"
if ! grep -qxF "${AUTH_LINE}" "${AUTH_KEYS}"; then
    echo "${AUTH_LINE}" >>"${AUTH_KEYS}"
fi
chown "${SSH_USER}:${USER_GROUP}" "${AUTH_KEYS}"
chmod 0600 "${AUTH_KEYS}"

# Shared folder for "remote-shared" mode: the same path seen by root (the
# Airflow side) and by the SSH user, as on a cluster where both accounts share
# a group.  Setgid + group-writable (2775): folders root creates inside belong
# to the user's group, so the user can write into them; nobody else can.
install -d -m 2775 -o "${SSH_USER}" -g "${USER_GROUP}" "${STATE}/shared"

# ------------------------------------------------------------------- sshd --

if [[ ! -f ${STATE}/ssh_host_ed25519_key ]]; then
    rm -f "${STATE}/ssh_host_ed25519_key.pub"
    ssh-keygen -q -t ed25519 -N '' -C "locusts-test-cluster-host" -f "${STATE}/ssh_host_ed25519_key"
fi
chmod 0600 "${STATE}/ssh_host_ed25519_key"
HOST_KEY=$(cut -d' ' -f1,2 "${STATE}/ssh_host_ed25519_key.pub")

# Key-only, loopback-only, one user.  MaxStartups/MaxSessions are raised
# because a swarm opens many connections at once; the defaults (10:30:100,
# 10) make sshd drop connections under that load.
sshd_changed=0
if write_if_changed "${STATE}/sshd_config" 0644 <<EOF; then
# locusts-test-cluster: written by tests/cluster/start.sh
ListenAddress ${SSH_HOST}
Port ${SSH_PORT}
HostKey ${STATE}/ssh_host_ed25519_key
PidFile ${PIDS}/sshd.pid
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UsePAM no
AllowUsers ${SSH_USER}
Subsystem sftp internal-sftp
MaxStartups 100:30:200
MaxSessions 100
X11Forwarding no
PrintMotd no
LogLevel INFO
EOF
    sshd_changed=1
fi

printf '[%s]:%s %s\n' "${SSH_HOST}" "${SSH_PORT}" "${HOST_KEY}" |
    write_if_changed "${STATE}/known_hosts" 0644 || true

# Privilege separation directory, needed by sshd (normally made by systemd).
install -d -m 0755 /run/sshd
/usr/sbin/sshd -t -f "${STATE}/sshd_config" || die "sshd rejects ${STATE}/sshd_config"

if pid=$(pid_of sshd) && [[ ${sshd_changed} -eq 1 ]]; then
    log "sshd_config changed: restarting sshd (pid ${pid})"
    "${HERE}/stop.sh" sshd
fi
if pid=$(pid_of sshd); then
    log "sshd already running (pid ${pid})"
else
    log "starting sshd on ${SSH_HOST}:${SSH_PORT}"
    rm -f "${PIDS}/sshd.pid"
    # sshd daemonizes; stdio to the log so it never holds the caller's pipes.
    /usr/sbin/sshd -f "${STATE}/sshd_config" -E "${LOGS}/sshd.log" \
        </dev/null 9>&- >>"${LOGS}/sshd.out" 2>&1 ||
        {
            show_log "${LOGS}/sshd.out"
            show_log "${LOGS}/sshd.log"
            die "sshd failed to start"
        }
    wait_until 10 "sshd pid file" pid_of sshd || {
        show_log "${LOGS}/sshd.log"
        exit 1
    }
fi
# Accepting connections and the key login working, checked end to end.
ssh_probe() {
    # -F /dev/null: root's own ~/.ssh/config must not change this probe.
    ssh -n -F /dev/null -i "${STATE}/id_ed25519" -p "${SSH_PORT}" \
        -o BatchMode=yes -o IdentitiesOnly=yes -o ConnectTimeout=5 \
        -o UserKnownHostsFile="${STATE}/known_hosts" -o StrictHostKeyChecking=yes \
        "${SSH_USER}@${SSH_HOST}" true
}
wait_until 15 "an SSH login as ${SSH_USER}" ssh_probe || {
    show_log "${LOGS}/sshd.log"
    exit 1
}

# ------------------------------------------------------------------ munge --

# Debian's munge package creates the key on install; make one if missing.
if [[ ! -f ${MUNGE_KEY} ]]; then
    log "creating ${MUNGE_KEY}"
    install -d -m 0700 -o munge -g munge /etc/munge
    if [[ -x /usr/sbin/mungekey ]]; then
        /usr/sbin/mungekey --create --keyfile="${MUNGE_KEY}"
    else
        dd if=/dev/urandom of="${MUNGE_KEY}" bs=1 count=1024 status=none
    fi
    chmod 0400 "${MUNGE_KEY}"
fi
# munged refuses a key not owned by it or readable by group/others.
chown munge:munge "${MUNGE_KEY}"
chmod go-rwx "${MUNGE_KEY}"
# munged's socket and pid file live here (normally made by systemd).
install -d -m 0755 -o munge -g munge /run/munge

munge_ok() { munge -n | unmunge; }

if pid=$(pid_of munged); then
    log "munged already running (pid ${pid})"
elif munge_ok >/dev/null 2>&1; then
    # Someone else's munged (e.g. the system's): use it, but do not record
    # it, so that stop.sh leaves it alone.
    log "using an already running munged that this script did not start"
else
    log "starting munged"
    # munged daemonizes and writes ${MUNGE_PIDFILE}; it must run as the
    # key's owner.
    runuser -u munge -- /usr/sbin/munged \
        </dev/null 9>&- >>"${LOGS}/munged.out" 2>&1 ||
        {
            show_log "${LOGS}/munged.out"
            show_log /var/log/munge/munged.log
            die "munged failed to start"
        }
    wait_until 10 "munged (munge -n | unmunge)" munge_ok || {
        show_log /var/log/munge/munged.log
        exit 1
    }
    wait_until 5 "${MUNGE_PIDFILE}" test -s "${MUNGE_PIDFILE}"
    cp "${MUNGE_PIDFILE}" "${PIDS}/munged.pid"
    pid_of munged >/dev/null || die "${MUNGE_PIDFILE} does not name a running munged"
fi

# ------------------------------------------------------------------ slurm --

NODE=$(hostname -s)
[[ -n ${NODE} ]] || die "hostname -s is empty"
# slurmd finds its node entry by this name, and slurmctld's host must
# resolve.  We pin every SLURM address to 127.0.0.1 below anyway.
if ! getent hosts "${NODE}" >/dev/null; then
    log "adding '127.0.0.1 ${NODE}' to /etc/hosts"
    echo "127.0.0.1 ${NODE}" >>/etc/hosts
fi

# Hardware as slurmd sees it.  The node line must match it (or exceed none
# of it), otherwise slurmd registers with less than configured and
# slurmctld drains the node ("Low RealMemory", "Low socket*core count").
HW=$(slurmd -C | head -n 1)
hw() { sed -n "s/.*[[:space:]]$1=\([0-9]*\).*/\1/p" <<<"${HW}"; }
CPUS=$(hw CPUs)
BOARDS=$(hw Boards)
SOCKETS_PER_BOARD=$(hw SocketsPerBoard)
CORES=$(hw CoresPerSocket)
THREADS=$(hw ThreadsPerCore)
MEM=$(hw RealMemory)
for v in CPUS BOARDS SOCKETS_PER_BOARD CORES THREADS MEM; do
    [[ -n ${!v} ]] || die "could not read ${v} from 'slurmd -C': ${HW}"
done
SOCKETS=$((BOARDS * SOCKETS_PER_BOARD))
# A bit below what slurmd measures: free memory drifts, and a node that
# reports less than RealMemory gets drained.
MEM=$((MEM * 9 / 10))

mkdir -p "${STATE}/slurm/state" "${STATE}/slurm/spool"
chmod 0755 "${STATE}/slurm" "${STATE}/slurm/state" "${STATE}/slurm/spool"

# Notes on the choices:
# - SlurmUser=root: no separate slurm account to set up.
# - SlurmctldHost=NODE(127.0.0.1), NodeAddr=127.0.0.1 and
#   CommunicationParameters=NoCtldInAddrAny,NoInAddrAny: slurmctld and slurmd
#   listen on 127.0.0.1 only (the default is every address).
# - proctrack/linuxproc, task/none, no accounting: nothing needs cgroups or
#   slurmdbd, which a container or small VM may not offer.
# - MinJobAge=300: finished jobs stay visible to squeue/scontrol for 5 min
#   (sacct is unavailable without accounting storage).
# - ReturnToService=2: a node that was DOWN comes back when slurmd registers.
# - KillWait=5: scancel/time limit escalate SIGTERM to SIGKILL after 5 s.
mkdir -p "$(dirname "${SLURM_CONF}")"
if [[ -f ${SLURM_CONF} ]] && [[ $(head -n 1 "${SLURM_CONF}") != "${SLURM_CONF_MARK}" ]]; then
    if [[ -e ${SLURM_CONF_BACKUP} ]]; then
        die "${SLURM_CONF} is not ours and ${SLURM_CONF_BACKUP} already exists; move one of them away"
    fi
    log "keeping the existing ${SLURM_CONF} as ${SLURM_CONF_BACKUP}"
    mv "${SLURM_CONF}" "${SLURM_CONF_BACKUP}"
fi
slurm_changed=0
if write_if_changed "${SLURM_CONF}" 0644 <<EOF; then
${SLURM_CONF_MARK}
# (state dir ${STATE}); do not edit: it is rewritten on every start.
ClusterName=locusts
SlurmctldHost=${NODE}(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
StateSaveLocation=${STATE}/slurm/state
SlurmdSpoolDir=${STATE}/slurm/spool
SlurmctldPidFile=${PIDS}/slurmctld.pid
SlurmdPidFile=${PIDS}/slurmd.pid
SlurmctldLogFile=${LOGS}/slurmctld.log
SlurmdLogFile=${LOGS}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MinJobAge=300
ReturnToService=2
KillWait=5
MailProg=/bin/true
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${CPUS} Sockets=${SOCKETS} CoresPerSocket=${CORES} ThreadsPerCore=${THREADS} RealMemory=${MEM} State=UNKNOWN
PartitionName=${PARTITION} Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
EOF
    slurm_changed=1
fi

if [[ ${slurm_changed} -eq 1 ]] && { pid_of slurmctld >/dev/null || pid_of slurmd >/dev/null; }; then
    log "slurm.conf changed: restarting slurmd and slurmctld"
    "${HERE}/stop.sh" slurmd slurmctld
fi

if pid=$(pid_of slurmctld); then
    log "slurmctld already running (pid ${pid})"
else
    log "starting slurmctld"
    rm -f "${PIDS}/slurmctld.pid"
    /usr/sbin/slurmctld -f "${SLURM_CONF}" </dev/null 9>&- >>"${LOGS}/slurmctld.out" 2>&1 || {
        show_log "${LOGS}/slurmctld.out"
        show_log "${LOGS}/slurmctld.log"
        die "slurmctld failed to start"
    }
    wait_until 15 "slurmctld pid file" pid_of slurmctld || {
        show_log "${LOGS}/slurmctld.log"
        exit 1
    }
fi
wait_until 15 "slurmctld to answer (scontrol ping)" timeout 10 scontrol ping || {
    show_log "${LOGS}/slurmctld.log"
    exit 1
}

if pid=$(pid_of slurmd); then
    log "slurmd already running (pid ${pid})"
else
    log "starting slurmd"
    rm -f "${PIDS}/slurmd.pid"
    /usr/sbin/slurmd -f "${SLURM_CONF}" </dev/null 9>&- >>"${LOGS}/slurmd.out" 2>&1 || {
        show_log "${LOGS}/slurmd.out"
        show_log "${LOGS}/slurmd.log"
        die "slurmd failed to start"
    }
    wait_until 15 "slurmd pid file" pid_of slurmd || {
        show_log "${LOGS}/slurmd.log"
        exit 1
    }
fi

# Wait (at most 30 s) for the node to be usable.  A node left DOWN or
# DRAINED by an earlier run (e.g. slurmd killed) is resumed.  idle, mix and
# alloc all mean "up"; mix/alloc happen when jobs from a previous start are
# still running.
node_state() { timeout 15 sinfo -h -n "${NODE}" -o %t 2>/dev/null | head -n 1 || true; }
state=""
deadline=$((SECONDS + 30))
last_resume=-10
while true; do
    state=$(node_state)
    case ${state} in
    idle | mix | alloc | comp) break ;;
    down | drain | drng | fail | failg | maint)
        # No "*" suffix: slurmd answers but the node is administratively
        # down; ask for it back (every 2 s at most).
        if ((SECONDS - last_resume >= 2)); then
            timeout 15 scontrol update nodename="${NODE}" state=resume >/dev/null 2>&1 || true
            last_resume=${SECONDS}
        fi
        ;;
    esac
    ((SECONDS < deadline)) || break
    sleep 0.2
done
case ${state} in
idle | mix | alloc | comp) ;;
*)
    scontrol show node "${NODE}" >&2 || true
    show_log "${LOGS}/slurmd.log"
    show_log "${LOGS}/slurmctld.log"
    die "node ${NODE} is '${state}', not idle, after 30 s"
    ;;
esac

# ------------------------------------------------------------ cluster.env --

# Airflow connection in Airflow's JSON form (no URI quoting of the key
# path or host key).  host_key pins the server key: both SSHHook (paramiko)
# and SSHHookAsync (asyncssh) verify it.  look_for_keys=false: use only
# key_file, never root's own ~/.ssh keys.
CONN_JSON=$(
    printf '{"conn_type": "ssh", "host": "%s", "port": %s, "login": "%s", ' \
        "${SSH_HOST}" "${SSH_PORT}" "${SSH_USER}"
    printf '"extra": {"key_file": "%s", "host_key": "%s", "look_for_keys": "false", "conn_timeout": "10"}}' \
        "${STATE}/id_ed25519" "${HOST_KEY}"
)

# KEY='value' lines, single-quoted; no value contains a single quote (the
# state dir is restricted above), so `source` and a trivial parser agree.
write_if_changed "${STATE}/cluster.env" 0644 <<EOF || true
# locusts-test-cluster: written by tests/cluster/start.sh; source it.
LOCUSTS_CLUSTER_DIR='${STATE}'
LOCUSTS_SSH_HOST='${SSH_HOST}'
LOCUSTS_SSH_PORT='${SSH_PORT}'
LOCUSTS_SSH_USER='${SSH_USER}'
LOCUSTS_SSH_KEY='${STATE}/id_ed25519'
LOCUSTS_SSH_KNOWN_HOSTS='${STATE}/known_hosts'
LOCUSTS_SSH_HOST_KEY='${HOST_KEY}'
LOCUSTS_SHARED_DIR='${STATE}/shared'
LOCUSTS_SLURM_PARTITION='${PARTITION}'
LOCUSTS_SLURM_NODE='${NODE}'
LOCUSTS_SLURM_CPUS='${CPUS}'
AIRFLOW_CONN_LOCUSTS_TEST_SSH='${CONN_JSON}'
EOF

log "cluster up in $((SECONDS - START_TIME))s: ssh ${SSH_USER}@${SSH_HOST} -p ${SSH_PORT}, SLURM node ${NODE} (${CPUS} CPUs), partition ${PARTITION}"
log "environment: ${STATE}/cluster.env  (logs: ${LOGS}, stop: ${HERE}/stop.sh)"
