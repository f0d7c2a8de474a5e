#!/usr/bin/env bash
# Start the single-machine OAR 2.5 test cluster used by tests/oar_e2e and CI:
#
#   * a private PostgreSQL (OAR's database) on a free 127.0.0.1 port, as the `postgres`
#     system user, its data under ${STATE}/pg;
#   * OAR's node side: OAR's own sshd (user `oar`) on 127.0.0.1:6667, through which the
#     server launches every job (oarexec);
#   * OAR's server: Almighty (and the modules it forks: scheduler, bipbip, sarko, ...),
#     its notification port 6666 bound to 127.0.0.1 only;
#   * one OAR node, "localhost", with one resource per CPU, Alive;
#   * ${STATE}/oar.env describing it (source it).
#
# Everything lives under ${LOCUSTS_OAR_DIR:-/tmp/locusts-oar} except /etc/oar/oar.conf:
# OAR's setuid commands (oarsub, oarstat, oardel) read only that file, so this script
# rewrites a few of its keys (the package's own copy is kept as oar.conf.orig-locusts and
# put back by a full stop.sh).
#
# Idempotent: a daemon already running (by its recorded pid) is left alone. It installs
# nothing: a missing program means "run tests/oar/install.sh". stop.sh stops only the
# pids recorded in ${STATE}/pids/.  Runs as root.
set -euo pipefail
umask 022

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${LOCUSTS_OAR_DIR:-/tmp/locusts-oar}
SERVER_PORT=6666 # OAR's default Almighty port
NODE_SSH_PORT=6667 # OAR's default node sshd port
NODE=localhost
LOG_LEVEL=${LOCUSTS_OAR_LOG_LEVEL:-2}
OAR_CONF=/etc/oar/oar.conf
OAR_CONF_BACKUP=/etc/oar/oar.conf.orig-locusts
OAR_CONF_MARK="# locusts-oar-test-cluster: keys rewritten by tests/oar/start.sh"
PIDS=${STATE}/pids
LOGS=${STATE}/log

log() { echo "oar/start.sh: $*"; }
die() {
    echo "oar/start.sh: ERROR: $*" >&2
    exit 1
}

if [[ ${EUID} -ne 0 ]]; then
    die "must run as root (it runs PostgreSQL, OAR's server and node sshd as their users)"
fi
if [[ ! ${LOG_LEVEL} =~ ^[1-3]$ ]]; then
    die "LOCUSTS_OAR_LOG_LEVEL must be 1, 2 or 3, got '${LOG_LEVEL}'"
fi
if [[ ! ${STATE} =~ ^/[A-Za-z0-9._/-]+$ ]]; then
    die "LOCUSTS_OAR_DIR must be an absolute path of [A-Za-z0-9._/-] characters, got '${STATE}'"
fi

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
missing=()
for prog in /usr/lib/oar/Almighty /usr/bin/oarsub /usr/bin/oarstat /usr/bin/oardel \
    /usr/sbin/oarnodesetting /usr/sbin/oar-database /usr/bin/oarnodes /usr/sbin/sshd \
    /usr/sbin/runuser /usr/bin/flock /usr/bin/setsid "${PG_BIN}/postgres" "${PG_BIN}/initdb" \
    "${PG_BIN}/pg_isready" "${PG_BIN}/psql"; do
    [[ -x ${prog} ]] || missing+=("${prog}")
done
# OAR and PostgreSQL run as their packages' system users: recreate one the machine lost.
source "${HERE}/../support/system_users.sh"
if [[ -d /var/lib/oar ]]; then
    ensure_system_user oar /var/lib/oar /usr/lib/oar/oarsh_shell || true
fi
if [[ -d /var/lib/postgresql ]]; then
    ensure_system_user postgres /var/lib/postgresql /bin/bash || true
fi
for user in oar postgres; do
    id -u "${user}" >/dev/null 2>&1 || missing+=("user ${user}")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    die "missing ${missing[*]}; run tests/oar/install.sh (as root) first"
fi

if [[ -L ${STATE} ]]; then
    die "${STATE} is a symlink; refusing to use it"
fi
mkdir -p "${STATE}"
if [[ $(stat -c %u "${STATE}") != 0 ]]; then
    die "${STATE} is not owned by root; refusing to use it"
fi
chmod 0755 "${STATE}"
mkdir -p "${PIDS}" "${LOGS}"
# OAR's modules (running as `oar`) write their log here.
install -d -m 0755 -o oar -g oar "${LOGS}/oar"

# One start.sh/stop.sh at a time (bounded wait for the lock).
if [[ -z ${LOCUSTS_OAR_LOCKED:-} ]]; then
    exec 9>"${STATE}/lock"
    flock -w 120 9 || die "timed out waiting for the lock ${STATE}/lock"
    export LOCUSTS_OAR_LOCKED=1
fi
# Every daemon below is started with "9>&-": one that inherited fd 9 would hold the lock.
START_TIME=${SECONDS}

# pid_of NAME [COMM]: the pid recorded in ${PIDS}/NAME.pid if that process is alive and
# its command name is COMM (default NAME); a stale file may name a reused pid.
pid_of() {
    local name=$1 comm_want=${2:-$1} pidfile="${PIDS}/$1.pid" pid comm
    [[ -s ${pidfile} ]] || return 1
    pid=$(head -n 1 "${pidfile}" | tr -dc '0-9')
    [[ -n ${pid} ]] || return 1
    comm=$(cat "/proc/${pid}/comm" 2>/dev/null) || return 1
    [[ ${comm} == "${comm_want}" ]] || return 1
    echo "${pid}"
}

# wait_until SECONDS DESCRIPTION COMMAND...: retry COMMAND every 0.2 s, up to a deadline.
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
    echo "oar/start.sh: ERROR: timed out after ${limit}s waiting for ${what}" >&2
    return 1
}

show_log() {
    if [[ -f $1 ]]; then
        echo "---- last lines of $1 ----" >&2
        tail -n 20 "$1" >&2
    fi
}

# port_taken PORT: something listens on 127.0.0.1:PORT or on every address.
port_taken() {
    [[ -n $(ss -H -ltn "sport = :$1" 2>/dev/null) ]]
}

# free_port: a TCP port nothing listens on, from the kernel's ephemeral range.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ------------------------------------------------------------ secrets --
# Database passwords, made once, readable by root only (oar.conf, 0600 oar, holds them too).
if [[ ! -s ${STATE}/secrets ]]; then
    (
        umask 077
        printf 'PG_ADMIN_PASS=%s\nOAR_DB_PASS=%s\nOAR_DB_RO_PASS=%s\n' \
            "$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')" \
            "$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')" \
            "$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')" >"${STATE}/secrets"
    )
fi
# shellcheck source=/dev/null
source "${STATE}/secrets"

# ---------------------------------------------------------- PostgreSQL --
PG=${STATE}/pg
install -d -m 0700 -o postgres -g postgres "${PG}" "${PG}/run"
if [[ ! -s ${PG}/data/PG_VERSION ]]; then
    log "initdb ${PG}/data"
    rm -rf "${PG}/data"
    printf '%s\n' "${PG_ADMIN_PASS}" >"${PG}/pwfile"
    chown postgres:postgres "${PG}/pwfile"
    chmod 0600 "${PG}/pwfile"
    runuser -u postgres -- "${PG_BIN}/initdb" -D "${PG}/data" -U postgres \
        --pwfile="${PG}/pwfile" --auth-local=peer --auth-host=scram-sha-256 \
        >"${LOGS}/initdb.log" 2>&1 || {
        show_log "${LOGS}/initdb.log"
        die "initdb failed"
    }
    rm -f "${PG}/pwfile"
fi
if [[ ! -s ${STATE}/pg_port ]]; then
    free_port >"${STATE}/pg_port"
fi
PG_PORT=$(tr -dc '0-9' <"${STATE}/pg_port")

pg_ready() { "${PG_BIN}/pg_isready" -q -h 127.0.0.1 -p "${PG_PORT}"; }
if pid=$(pid_of postgres); then
    log "PostgreSQL already running (pid ${pid}, port ${PG_PORT})"
else
    if port_taken "${PG_PORT}"; then
        PG_PORT=$(free_port)
        echo "${PG_PORT}" >"${STATE}/pg_port"
    fi
    log "starting PostgreSQL on 127.0.0.1:${PG_PORT}"
    # setsid: a session of its own, so the caller's terminal/job control never reaches it.
    runuser -u postgres -- setsid "${PG_BIN}/postgres" -D "${PG}/data" \
        -c listen_addresses=127.0.0.1 -c "port=${PG_PORT}" \
        -c "unix_socket_directories=${PG}/run" -c max_connections=100 \
        </dev/null 9>&- >>"${LOGS}/postgres.log" 2>&1 &
    # postmaster.pid's first line is the server's pid, written once it runs.
    wait_until 30 "PostgreSQL to accept connections" pg_ready || {
        show_log "${LOGS}/postgres.log"
        exit 1
    }
    head -n 1 "${PG}/data/postmaster.pid" >"${PIDS}/postgres.pid"
    pid_of postgres >/dev/null || die "PostgreSQL's pid file does not name a running postgres"
fi

# ------------------------------------------------------------ oar.conf --
# The package's file, kept once, is the base; ours is it with these keys replaced.
if [[ ! -f ${OAR_CONF_BACKUP} ]]; then
    if [[ $(head -n 1 "${OAR_CONF}") == "${OAR_CONF_MARK}" ]]; then
        die "${OAR_CONF} is ours but ${OAR_CONF_BACKUP} is gone; reinstall oar-common"
    fi
    cp -p "${OAR_CONF}" "${OAR_CONF_BACKUP}"
fi
set_keys=(
    "DB_TYPE=\"Pg\""
    "DB_HOSTNAME=\"127.0.0.1\""
    "DB_PORT=\"${PG_PORT}\""
    "DB_BASE_NAME=\"oar\""
    "DB_BASE_LOGIN=\"oar\""
    "DB_BASE_PASSWD=\"${OAR_DB_PASS}\""
    "DB_BASE_LOGIN_RO=\"oar_ro\""
    "DB_BASE_PASSWD_RO=\"${OAR_DB_RO_PASS}\""
    "SERVER_HOSTNAME=\"127.0.0.1\""
    "SERVER_PORT=\"${SERVER_PORT}\""
    "LOG_FILE=\"${LOGS}/oar/oar.log\""
    # 3 (debug) to see what each OAR module does and when.
    "LOG_LEVEL=\"${LOG_LEVEL}\""
    "OPENSSH_CMD=\"/usr/bin/ssh -p ${NODE_SSH_PORT} -e none\""
    "DEPLOY_HOSTNAME=\"127.0.0.1\""
    "COSYSTEM_HOSTNAME=\"127.0.0.1\""
    # The scheduler may start a job this soon after its submission (default 60 s margin).
    "SCHEDULER_JOB_SECURITY_TIME=\"1\""
    # No periodic node check (finaud): one node, on this machine, never away.
    "FINAUD_FREQUENCY=\"0\""
    # A submission is scheduled a second after its notification, not five.
    "SCHEDULER_MIN_TIME_BETWEEN_2_CALLS=\"1\""
)
tmp=$(mktemp "${OAR_CONF}.XXXXXX")
{
    echo "${OAR_CONF_MARK}"
    echo "# (state dir ${STATE}); do not edit: it is rewritten on every start."
    # The package's lines minus the keys we set, and minus the job resource manager: it
    # makes cpusets / cgroups per job, which a container does not let us create.
    grep -v -E "^(DB_TYPE|DB_HOSTNAME|DB_PORT|DB_BASE_NAME|DB_BASE_LOGIN|DB_BASE_PASSWD|DB_BASE_LOGIN_RO|DB_BASE_PASSWD_RO|SERVER_HOSTNAME|SERVER_PORT|LOG_FILE|LOG_LEVEL|OPENSSH_CMD|DEPLOY_HOSTNAME|COSYSTEM_HOSTNAME|SCHEDULER_JOB_SECURITY_TIME|FINAUD_FREQUENCY|SCHEDULER_MIN_TIME_BETWEEN_2_CALLS|JOB_RESOURCE_MANAGER_PROPERTY_DB_FIELD)=" "${OAR_CONF_BACKUP}"
    printf '%s\n' "${set_keys[@]}"
} >"${tmp}"
chown oar:root "${tmp}"
chmod 0600 "${tmp}"
conf_changed=0
if ! cmp -s "${tmp}" "${OAR_CONF}"; then
    mv -f "${tmp}" "${OAR_CONF}"
    conf_changed=1
else
    rm -f "${tmp}"
fi

# ----------------------------------------------------------- database --
psql_admin() {
    PGPASSWORD=${PG_ADMIN_PASS} "${PG_BIN}/psql" -X -q -t -A -h 127.0.0.1 -p "${PG_PORT}" \
        -U postgres -d postgres -c "$1"
}
if [[ $(psql_admin "SELECT 1 FROM pg_database WHERE datname = 'oar'") != 1 ]]; then
    log "creating OAR's database"
    oar-database --create --db-type=Pg --db-host=127.0.0.1 --db-port="${PG_PORT}" \
        --db-user=oar --db-pass="${OAR_DB_PASS}" --db-name=oar \
        --db-ro-user=oar_ro --db-ro-pass="${OAR_DB_RO_PASS}" \
        --db-admin-user=postgres --db-admin-pass="${PG_ADMIN_PASS}" -y \
        >"${LOGS}/oar-database.log" 2>&1 || {
        show_log "${LOGS}/oar-database.log"
        die "oar-database --create failed"
    }
fi

# ------------------------------------------------------ node: OAR's sshd --
install -d -m 0755 /run/sshd
if write_tmp=$(mktemp "${STATE}/oar-sshd_config.XXXXXX"); then
    {
        echo "# locusts-oar-test-cluster: written by tests/oar/start.sh"
        echo "ListenAddress 127.0.0.1"
        echo "PidFile ${PIDS}/oar-sshd.pid"
        # The package's OAR node sshd settings, minus what we set and what OpenSSH 9
        # no longer knows.
        grep -v -E "^(ListenAddress|PidFile|UsePrivilegeSeparation|KeepAlive|Protocol|XAuthLocation|X11)" /etc/oar/sshd_config
    } >"${write_tmp}"
    chmod 0644 "${write_tmp}"
    if cmp -s "${write_tmp}" "${STATE}/oar-sshd_config"; then
        rm -f "${write_tmp}"
    else
        mv -f "${write_tmp}" "${STATE}/oar-sshd_config"
        if pid_of oar-sshd sshd >/dev/null; then
            "${HERE}/stop.sh" oar-sshd
        fi
    fi
fi
/usr/sbin/sshd -t -f "${STATE}/oar-sshd_config" || die "sshd rejects ${STATE}/oar-sshd_config"
if pid=$(pid_of oar-sshd sshd); then
    log "OAR's node sshd already running (pid ${pid})"
else
    port_taken "${NODE_SSH_PORT}" && die "port ${NODE_SSH_PORT} (OAR's node sshd) is taken by another program"
    log "starting OAR's node sshd on 127.0.0.1:${NODE_SSH_PORT}"
    rm -f "${PIDS}/oar-sshd.pid"
    /usr/sbin/sshd -f "${STATE}/oar-sshd_config" -E "${LOGS}/oar-sshd.log" \
        </dev/null 9>&- >>"${LOGS}/oar-sshd.out" 2>&1 || {
        show_log "${LOGS}/oar-sshd.log"
        die "OAR's node sshd failed to start"
    }
    wait_until 10 "OAR's node sshd pid file" pid_of oar-sshd sshd || exit 1
fi
# The server reaches the node as `oar` with oar's key: checked end to end.
node_probe() {
    runuser -u oar -- /usr/bin/ssh -n -p "${NODE_SSH_PORT}" -o BatchMode=yes \
        -o ConnectTimeout=5 "${NODE}" true
}
wait_until 15 "an SSH login as oar on ${NODE}:${NODE_SSH_PORT}" node_probe || {
    show_log "${LOGS}/oar-sshd.log"
    exit 1
}

# ---------------------------------------------------- server: Almighty --
# Almighty listens on SERVER_PORT on every address; this Perl module, loaded into it (and
# the modules it runs) through PERL5OPT, binds every listening INET socket to 127.0.0.1.
install -d -m 0755 "${STATE}/perl"
cat >"${STATE}/perl/LocustsLoopbackOnly.pm" <<'PERL'
package LocustsLoopbackOnly;
# Written by tests/oar/start.sh: listening sockets of the OAR test server bind to 127.0.0.1.
use strict;
use warnings;
use IO::Socket::INET;
{
    no warnings 'redefine';
    my $configure = \&IO::Socket::INET::configure;
    *IO::Socket::INET::configure = sub {
        my ($sock, $arg) = @_;
        if ($arg->{Listen} && !defined $arg->{LocalAddr} && !defined $arg->{LocalHost}) {
            $arg->{LocalAddr} = '127.0.0.1';
        }
        return $configure->($sock, $arg);
    };
}
1;
PERL
chmod 0644 "${STATE}/perl/LocustsLoopbackOnly.pm"

if [[ ${conf_changed} -eq 1 ]] && pid_of almighty Almighty >/dev/null; then
    log "oar.conf changed: restarting Almighty"
    "${HERE}/stop.sh" almighty
fi
if pid=$(pid_of almighty Almighty); then
    log "Almighty already running (pid ${pid})"
else
    port_taken "${SERVER_PORT}" && die "port ${SERVER_PORT} (OAR's server) is taken by another program"
    log "starting Almighty on 127.0.0.1:${SERVER_PORT}"
    # As the oar user, the environment OAR's setuid wrapper (/usr/sbin/Almighty) would give
    # it, plus the loopback module. cd /: no daemon keeps the caller's folder busy.
    (
        cd /
        exec runuser -u oar -- env -i PATH=/usr/lib/oar/oardodo:/usr/sbin:/usr/bin:/sbin:/bin \
            HOME=/var/lib/oar USER=oar LOGNAME=oar SHELL=/bin/bash LANG=C \
            OARDIR=/usr/lib/oar OARCONFFILE="${OAR_CONF}" OARUSER=oar OARDO_USER=oar \
            OARXAUTHLOCATION=/usr/bin/xauth PERL5LIB="${STATE}/perl" PERL5OPT=-MLocustsLoopbackOnly \
            setsid /usr/lib/oar/Almighty
    ) </dev/null 9>&- >>"${LOGS}/almighty.out" 2>&1 &
    echo $! >"${PIDS}/almighty-launcher.pid"
    # runuser forks Almighty (setsid execs it in place); find it as our launcher's child.
    almighty_pid() {
        local launcher child
        launcher=$(tr -dc '0-9' <"${PIDS}/almighty-launcher.pid")
        child=$(ps -o pid= --ppid "${launcher}" 2>/dev/null | tr -dc '0-9\n' | head -n 1)
        [[ -n ${child} && $(cat "/proc/${child}/comm" 2>/dev/null) == Almighty ]] || return 1
        echo "${child}" >"${PIDS}/almighty.pid"
    }
    wait_until 15 "Almighty to start" almighty_pid || {
        show_log "${LOGS}/almighty.out"
        show_log "${LOGS}/oar/oar.log"
        exit 1
    }
    wait_until 15 "Almighty to listen on 127.0.0.1:${SERVER_PORT}" port_taken "${SERVER_PORT}" || {
        show_log "${LOGS}/almighty.out"
        show_log "${LOGS}/oar/oar.log"
        exit 1
    }
fi
listeners=$(ss -H -ltn "sport = :${SERVER_PORT}" | awk '{print $4}')
if grep -qv '^127\.0\.0\.1:' <<<"${listeners}"; then
    die "OAR's server listens on more than 127.0.0.1:${SERVER_PORT}: $(ss -H -ltn "sport = :${SERVER_PORT}")"
fi

# --------------------------------------------------------- resources --
CPUS=$(nproc)
# "core" and "cpu" are not built-in resource properties: the /nodes=1/core=N requests
# need them.
# (Outputs are read whole before grep: with pipefail, `grep -q` closing a pipe early would
# turn a found line into a failure.)
properties=$(oarproperty -l 2>/dev/null || true)
for prop in cpu core; do
    if ! grep -qx "${prop}" <<<"${properties}"; then
        oarproperty -a "${prop}" >>"${LOGS}/oarnodesetting.log" 2>&1 || {
            show_log "${LOGS}/oarnodesetting.log"
            die "oarproperty -a ${prop} failed"
        }
    fi
done
have=$(oarnodes -l 2>/dev/null | grep -c . || true)
if [[ ${have} -eq 0 ]]; then
    log "adding node ${NODE} with ${CPUS} cores"
    for ((i = 0; i < CPUS; i++)); do
        oarnodesetting -a -h "${NODE}" -p "cpu=$((i + 1))" -p "core=$((i + 1))" -p "cpuset=${i}" \
            >>"${LOGS}/oarnodesetting.log" 2>&1 || {
            show_log "${LOGS}/oarnodesetting.log"
            die "oarnodesetting -a failed"
        }
    done
fi
node_alive() {
    local states
    states=$(oarnodes -s "${NODE}" 2>/dev/null) || return 1
    grep -q Alive <<<"${states}"
}
if ! node_alive; then
    oarnodesetting -s Alive -h "${NODE}" >>"${LOGS}/oarnodesetting.log" 2>&1 || true
fi
wait_until 30 "node ${NODE} to be Alive" node_alive || {
    oarnodes "${NODE}" >&2 || true
    show_log "${LOGS}/oar/oar.log"
    exit 1
}

# ------------------------------------------------------------ oar.env --
cat >"${STATE}/oar.env.tmp" <<ENV
# locusts-oar-test-cluster: written by tests/oar/start.sh; source it.
LOCUSTS_OAR_DIR='${STATE}'
LOCUSTS_OAR_NODE='${NODE}'
LOCUSTS_OAR_CPUS='${CPUS}'
LOCUSTS_OAR_SERVER_PORT='${SERVER_PORT}'
LOCUSTS_OAR_NODE_SSH_PORT='${NODE_SSH_PORT}'
LOCUSTS_OAR_DB_PORT='${PG_PORT}'
ENV
chmod 0644 "${STATE}/oar.env.tmp"
mv -f "${STATE}/oar.env.tmp" "${STATE}/oar.env"

log "OAR up in $((SECONDS - START_TIME))s: node ${NODE} (${CPUS} cores), server 127.0.0.1:${SERVER_PORT}, database 127.0.0.1:${PG_PORT}"
log "environment: ${STATE}/oar.env  (logs: ${LOGS}, stop: ${HERE}/stop.sh)"
