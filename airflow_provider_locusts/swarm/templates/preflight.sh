# Preflight of a swarm, run as the account that will run it, before anything is staged or
# submitted: can that account create the swarm root, are the scheduler's commands there,
# and (remote-shared mode) does it see the probe the Airflow side wrote into the shared
# folder, and can it write into a folder the Airflow side created?
# usage: bash -s -- ROOT SCHEDULER COMMANDS [PROBE_DIR TOKEN]   (COMMANDS: comma-separated)
# prints "@account USER GROUPS", "@host NAME", then "@ok CHECK DETAIL" or "@fail CHECK DETAIL" lines.
set -u
root=$1 scheduler=$2 commands=$3 probe=${4:-} token=${5:-}
report() {  # STATUS CHECK DETAIL (one line)
    local detail=${3//$'\n'/ }
    printf '@%s %s %s\n' "$1" "$2" "$detail"
}
printf '@account %s %s\n' "$(id -un)" "$(id -Gn | tr ' ' ,)"
printf '@host %s\n' "$HOSTNAME"

target=$root
[ -d "$root" ] || target=${root%/*}
if err=$(mkdir -p -- "$target" 2>&1) && made=$(mktemp -d "$target/.locusts_probe.XXXXXX" 2>&1); then
    rmdir -- "$made"
    report ok writable "$target"
else
    report fail writable "$target: ${err:-$made}"
fi

# The swarm's scripts need bash >= 4.4 (wait -n, mapfile -d, negative array subscripts).
if ((BASH_VERSINFO[0] > 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] >= 4))); then
    report ok bash "$BASH_VERSION"
else
    report fail bash "$BASH_VERSION"
fi

# The commands scheduler $scheduler needs (its module in swarm/schedulers/ names them).
IFS=, read -r -a needed <<< "$commands"
missing=()
for command in "${needed[@]}"; do
    command -v "$command" > /dev/null || missing+=("$command")
done
if ((${#missing[@]})); then
    report fail commands "${missing[*]} (PATH=$PATH)"
else
    report ok commands "${needed[*]}"
fi

if [ -n "$probe" ]; then
    if [ -f "$probe/from_airflow" ] && [ "$(< "$probe/from_airflow")" = "$token" ]; then
        report ok visible "$probe/from_airflow"
        if err=$( (: > "$probe/from_host") 2>&1); then
            report ok shared_write "$probe/from_host"
        else
            report fail shared_write "$probe: $err"
        fi
    else
        report fail visible "$probe/from_airflow"
    fi
fi
exit 0
