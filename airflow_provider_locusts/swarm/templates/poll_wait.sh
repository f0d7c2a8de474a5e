# One poll of one or more swarms that waits on the host, up to WAIT_MS milliseconds, until one
# of them is worth reporting: every manager of its round has written its done file or is
# gone (its process ended on this host), or its root is not here. So a swarm's end is seen
# within a quarter of a second, while a poll still returns only once per WAIT_MS otherwise.
# The waiting costs no process per check: a few stat() calls every 0.25 s.
# usage: bash -s -- WAIT_MS POLL_SCRIPT N MANAGER OFFSET... [POLL_SCRIPT N MANAGER OFFSET...]
#   (N managers per swarm; OFFSET as poll.sh takes it)
# prints "@waited <ms> <1 if it stopped early>", then per swarm, in order,
#   "@result <exit code> <stdout bytes> <stderr bytes> <1 if worth reporting>"
# followed by what that swarm's poll.sh printed on stdout, then on stderr.
set -u
wait_ms=$1
shift
args=("$@")
scripts=() firsts=() counts=()
for ((i = 0; i < ${#args[@]}; i += 2 + 2 * args[i + 1])); do
    scripts+=("${args[i]}")
    counts+=("${args[i + 1]}")
    firsts+=($((i + 2)))
done

worth_reporting() {  # SWARM
    local r=$1 exec_dir=${scripts[$1]%/*} k name pid host
    [ -r "${scripts[r]}" ] || return 0
    for ((k = 0; k < counts[r]; k++)); do
        name=${args[firsts[r] + 2 * k]}
        [ -e "$exec_dir/done_$name" ] && continue
        [ -s "$exec_dir/pid_$name" ] || return 1  # not started yet
        read -r pid host < "$exec_dir/pid_$name"
        # A manager process gone from this host: the poll below says what became of it.
        [ "$host" = "$HOSTNAME" ] && [ ! -d "/proc/$pid" ] && continue
        return 1
    done
    return 0
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/locusts_poll.XXXXXX") || exit 1
trap 'rm -rf -- "$tmp"' EXIT
start=${EPOCHREALTIME//[!0-9]/}
now=$start
early=0
worth=()
for r in "${!scripts[@]}"; do worth[r]=0; done
if ((wait_ms > 0)); then
    # A FIFO nobody writes to: `read -t` on it is a sleep without a process.
    mkfifo "$tmp/tick" && exec {tick}<> "$tmp/tick" || exit 1
    while :; do
        for r in "${!scripts[@]}"; do
            worth_reporting "$r" && worth[r]=1 && early=1
        done
        ((early)) && break
        now=${EPOCHREALTIME//[!0-9]/}
        (((now - start) / 1000 >= wait_ms)) && break
        read -r -t 0.25 -u "$tick" _
    done
    now=${EPOCHREALTIME//[!0-9]/}
fi
printf '@waited %s %s\n' "$(((now - start) / 1000))" "$early"
for r in "${!scripts[@]}"; do
    script=${scripts[r]}
    if [ -r "$script" ]; then
        bash "$script" "${args[@]:firsts[r]:2 * counts[r]}" > "$tmp/out" 2> "$tmp/err"
        rc=$?
    else
        : > "$tmp/out"
        printf 'no swarm root here: %s not found on host %s\n' "${script%/exec/poll.sh}" "$HOSTNAME" > "$tmp/err"
        rc=66
        worth[r]=1
    fi
    printf '@result %s %s %s %s\n' "$rc" "$(stat -c %s -- "$tmp/out")" "$(stat -c %s -- "$tmp/err")" "${worth[r]}"
    cat -- "$tmp/out" "$tmp/err"
done
exit 0
