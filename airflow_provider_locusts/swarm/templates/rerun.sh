#!/usr/bin/env bash
# Run one task of this swarm again by hand, in its folder, as its manager runs it:
#   bash <swarm root>/exec/rerun.sh TASK_ID
# The task's stdout and stderr go to the terminal (not to its logs); what it writes stays in its
# folder. Prints the folder, the exit code and any compulsory output that is missing, and
# exits with the command's exit code.
set -u
if (($# != 1)); then
    echo "usage: bash $0 TASK_ID" >&2
    exit 2
fi
exec_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd) || exit 1
export LOCUSTS_SWARM_ROOT=${exec_dir%/exec}

# Finds the task in the task lists (exec/tasks_<manager>: NUL-separated INDEX FOLDER ID
# N_ARGS ARG... N_OUTPUTS OUTPUT...), read as bytes (C locale), whatever the task's values.
find_task() {  # ID
    local LC_ALL=C list n k value
    for list in "$exec_dir"/tasks_r*; do
        [ -f "$list" ] || continue
        while IFS= read -r -d '' index && IFS= read -r -d '' folder && IFS= read -r -d '' id && IFS= read -r -d '' n; do
            args=()
            for ((k = 0; k < n; k++)); do IFS= read -r -d '' value; args+=("$value"); done
            IFS= read -r -d '' n
            outputs=()
            for ((k = 0; k < n; k++)); do IFS= read -r -d '' value; outputs+=("$value"); done
            [ "$id" = "$1" ] && return 0
        done < "$list"
    done
    return 1
}

if ! find_task "$1"; then
    echo "no task with id '$1' in $exec_dir/tasks_r*" >&2
    exit 2
fi
cd -- "$LOCUSTS_SWARM_ROOT/work/$folder" || exit 1
echo "task $index (id $id) in $PWD" >&2
export LOCUSTS_ID=$id
for k in "${!args[@]}"; do export "LOCUSTS_ARG_$k=${args[k]}"; done
bash "$exec_dir/command.sh" < /dev/null
rc=$?
echo "exit code $rc" >&2
for output in "${outputs[@]}"; do
    [ -e "$output" ] || echo "missing output: $output" >&2
done
exit "$rc"
