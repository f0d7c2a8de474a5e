# Sourced by the test clusters' and deployment's scripts (as root): make sure a Debian system
# user a package created is still there.
#
# Machines have been seen where a package's system user was missing from /etc/passwd after
# the install although /etc/group and /etc/shadow held it (the maintainer scripts run
# `adduser ... || true`, which hides why). Then create it again as the package would, with
# the uid that owns its home (so the files the package made there stay its own) when that
# uid is free, and its own group.
ensure_system_user() {
    local name=$1 home=$2 shell=${3:-/usr/sbin/nologin} uid args=()
    if id -u "${name}" >/dev/null 2>&1; then
        return 0
    fi
    echo "system_users.sh: the system user ${name} is missing; creating it again" >&2
    if [[ -d ${home} ]]; then
        uid=$(stat -c %u "${home}")
        if [[ ${uid} != 0 ]] && ! getent passwd "${uid}" >/dev/null; then
            args+=(--uid "${uid}")
        fi
    fi
    if getent group "${name}" >/dev/null; then
        args+=(--ingroup "${name}")
    else
        args+=(--group)
    fi
    adduser --system "${args[@]}" --home "${home}" --no-create-home --shell "${shell}" "${name}" >&2
    id -u "${name}" >/dev/null 2>&1 || { echo "system_users.sh: could not create the system user ${name}" >&2; return 1; }
}
