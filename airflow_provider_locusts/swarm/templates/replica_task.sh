#!/usr/bin/env bash
# One task of a swarm with a Custom Environment (a whole tree). The manager runs it in the
# task's folder like any command, with LOCUSTS_SWARM_ROOT, LOCUSTS_ID and LOCUSTS_ARG_<k> set:
#  1. takes a clean replica of the tree: one from the swarm's pool, or a new one made from the
#     swarm's copy of the tree (read-only parts hard-linked, writable parts copied, with
#     reflinks where the filesystem has them), checked against the snapshot of a clean one;
#  2. copies the task's inputs into it and removes write permission from its read-only folders;
#  3. runs the command (environment/command.sh) in the work folder, with LOCUSTS_TREE set to
#     the replica;
#  4. snapshots the replica again: what was created, modified or deleted goes to changes.nul,
#     and a change to a read-only part fails the task;
#  5. moves the created and modified files of the writable parts into changes/ (collected
#     at gather), resets the replica and puts it back into the pool. A replica whose read-only
#     part changed is not reused: it stays in the task's folder, for inspection.
# changes.nul holds records of four NUL-terminated fields, TAG TYPE PATH EXTRA (read by
# replica_gather.py). Values never enter code: paths are data to find, cp, mv and rm, always
# after `--` or below a fixed prefix.
set -u -o pipefail
env_dir=$LOCUSTS_SWARM_ROOT/environment
here=$PWD
replica=$here/replica
result=$here/changes.nul
before=$here/.replica_before
after=$here/.replica_after

record() {  # TAG TYPE PATH EXTRA
    printf '%s\0%s\0%s\0%s\0' "$1" "$2" "$3" "$4" >> "$result"
}

# Removes a folder this script made, even one whose folders are read-only (and never follows a
# symbolic link: a task may have replaced the folder by one).
remove_tree() {
    [ -e "$1" ] || [ -L "$1" ] || return 0
    [ -L "$1" ] || find -P "$1" -type d ! -perm -u=w -exec chmod u+w -- {} + 2> /dev/null
    rm -rf -- "$1"
}

# A sorted snapshot of the entries below the replica: "TYPE SIZE MTIME MODE PATH" records
# (sorted bytewise: file names are bytes). Folders count by their path only: what they hold
# is listed entry by entry.
snapshot() {  # OUTPUT
    (cd -- "$replica" && find -P . -mindepth 1 \( -type d -printf 'd 0 0 0 %P\0' \) -o -printf '%y %s %T@ %m %P\0') \
        | LC_ALL=C sort -z > "$1"
}

# What differs between two snapshots: kind[path] = created|modified|deleted, type[path].
declare -A kind=() type=()
compare() {  # BEFORE AFTER
    local rec path
    kind=() type=()
    while IFS= read -r -d '' rec; do
        if [[ $rec == $'\t'* ]]; then  # only in AFTER
            rec=${rec#$'\t'}
            path=${rec#* * * * }
            type[$path]=${rec%% *}
            if [ "${kind[$path]-}" = deleted ]; then kind[$path]=modified; else kind[$path]=created; fi
        else
            path=${rec#* * * * }
            if [ "${kind[$path]-}" = created ]; then
                kind[$path]=modified
            else
                kind[$path]=deleted
                type[$path]=${rec%% *}
            fi
        fi
    done < <(LC_ALL=C comm -z -3 -- "$1" "$2")
}

mapfile -d '' -t writable < "$env_dir/writable_parts"
mapfile -d '' -t input_templates < "$env_dir/input_templates"
mapfile -d '' -t output_templates < "$env_dir/output_templates"
{ IFS= read -r -d '' workdir && IFS= read -r -d '' inputs_dir; } < "$env_dir/places"

in_writable() {  # PATH: a writable part, or inside one
    local w
    for w in "${writable[@]}"; do
        [[ $w == . || $1 == "$w" || $1 == "$w"/* ]] && return 0
    done
    return 1
}

# Is PATH below (or equal to) one of the keys of the associative array named NAME?
under_any() {  # PATH NAME
    local -n set=$2
    local p=$1
    while :; do
        [ -n "${set[$p]+x}" ] && return 0
        [[ $p == */* ]] || return 1
        p=${p%/*}
    done
}

# Read-only folders: write permission removed while the command runs, restored after.
protect() { (cd -- "$replica" && xargs -0 -r chmod a-w -- < "$env_dir/readonly_dirs"); }
unprotect() {
    local list
    for list in "$env_dir"/readonly_dirs.*; do
        [ -f "$list" ] || continue
        (cd -- "$replica" && xargs -0 -r chmod "${list##*.}" -- < "$list") 2> /dev/null
    done
}
# Stopped (the task timed out, or its manager was stopped): leave a replica that can be removed.
trap 'unprotect; exit 143' TERM INT

fresh_replica() {
    remove_tree "$replica"
    cp -dRl --preserve=mode -- "$env_dir/shared" "$replica" \
        && cp -dR --preserve=mode,timestamps --reflink=auto -- "$env_dir/writable/." "$replica/"
}

take_from_pool() {
    local entry
    for entry in "$env_dir"/pool/*; do
        [ -d "$entry" ] || continue
        mv -T -- "$entry" "$replica" 2> /dev/null && return 0  # another task may take it first
    done
    return 1
}

# --- 0. what an earlier attempt of this task left ----------------------------------------
remove_tree "$replica"
remove_tree "$here/changes"
rm -f -- "$result" "$before" "$after"
: > "$result"

# --- 1. a clean replica ------------------------------------------------------------------
clean=0
if take_from_pool; then
    snapshot "$before" && cmp -s -- "$before" "$env_dir/reference" && clean=1
fi
if ((!clean)); then
    if ! err=$(fresh_replica 2>&1); then
        record error - - "cannot make the replica: $err"
        remove_tree "$replica"
        exit 1
    fi
    snapshot "$before" && cmp -s -- "$before" "$env_dir/reference" && clean=1
fi
if ((!clean)); then
    # Made from the swarm's copy and still not clean: a shared file of that copy changed.
    compare "$env_dir/reference" "$before"
    for path in "${!kind[@]}"; do
        record before "${type[$path]}" "$path" "${kind[$path]}"
    done
    record exit - - ""
    remove_tree "$replica"
    rm -f -- "$before"
    exit 1
fi

# --- 2. inputs, protection -----------------------------------------------------------------
# Inputs are copies (never links: the task may change them), part of the state "before".
declare -A placed=()
if ((${#input_templates[@]})); then
    for template in "${input_templates[@]}"; do
        name=${template//"<id>"/"$LOCUSTS_ID"}
        target=$inputs_dir/$name
        [ "$inputs_dir" = . ] && target=$name
        placed[$target]=1
        if ! err=$({ [[ $target != */* ]] || mkdir -p -- "$replica/${target%/*}"; } && cp -p --reflink=auto -- "$here/$name" "$replica/$target" 2>&1); then
            record error - "$target" "cannot place input $name in the replica: $err"
            record exit - - ""
            remove_tree "$replica"
            rm -f -- "$before"
            exit 1
        fi
    done
    snapshot "$before"
fi
protect

# --- 3. the command --------------------------------------------------------------------------
export LOCUSTS_TREE=$replica
(cd -- "$replica/$workdir" && exec bash "$env_dir/command.sh")
rc=$?

# --- 4. what changed -------------------------------------------------------------------------
snapshot "$after"
unprotect
compare "$before" "$after"
declare -A collect=() remove=() restore=()
broken=0
for path in "${!kind[@]}"; do
    k=${kind[$path]} t=${type[$path]}
    if ! in_writable "$path"; then
        record readonly "$t" "$path" "$k"
        broken=1
        continue
    fi
    case $k in
        created) remove[$path]=1 ;;
        modified) remove[$path]=1; restore[$path]=1 ;;
        deleted) [ -z "${placed[$path]+x}" ] && restore[$path]=1 ;;
    esac
    [ "$t" = d ] && continue  # folders count by what they hold
    extra=
    [ "$t" = l ] && extra=$(readlink -- "$replica/$path")
    record "$k" "$t" "$path" "$extra"
    [ "$t" = f ] && [ "$k" != deleted ] && collect[$path]=1
done

failed=0  # besides the command's own exit code: a missing output, a file that could not move
for template in "${output_templates[@]}"; do
    name=${template//"<id>"/"$LOCUSTS_ID"}
    if [ ! -f "$replica/$name" ] || [ -L "$replica/$name" ]; then
        record missing - "$name" ""
        failed=1
    fi
done

# --- 5. collect, reset ------------------------------------------------------------------------
# Created and modified files move to changes/<path>, one `mv` per folder.
if ((${#collect[@]})); then
    declare -A list_of_dir=()
    lists=$(mktemp -d "${TMPDIR:-/tmp}/locusts_changes.XXXXXX") || exit 92
    for path in "${!collect[@]}"; do
        dir=.
        [[ $path == */* ]] && dir=${path%/*}
        list=${list_of_dir[$dir]:-}
        if [ -z "$list" ]; then
            list=$lists/${#list_of_dir[@]}
            list_of_dir[$dir]=$list
        fi
        printf '%s\0' "$replica/$path" >> "$list"
    done
    for dir in "${!list_of_dir[@]}"; do
        if ! { mkdir -p -- "$here/changes/$dir" && xargs -0 -r mv -f -t "$here/changes/$dir" -- < "${list_of_dir[$dir]}"; }; then
            record error - "$dir" "cannot move the changed files of $dir out of the replica"
            failed=1
        fi
    done
    rm -rf -- "$lists"
fi
record exit - - "$rc"

if ((broken)); then
    rm -f -- "$before" "$after"
    # The command may have failed on its own, too: its exit code says so.
    ((rc)) && exit "$rc"
    exit 1
fi

# Back to the state of a clean replica: what the task (or staging) added goes, what it changed
# or deleted comes back from the swarm's copy of the writable parts.
for path in "${!placed[@]}"; do
    [ -e "$replica/$path" ] || [ -L "$replica/$path" ] && remove[$path]=1
done
# The folders made for inputs are in the before snapshot only when they were not in the tree.
while IFS= read -r -d '' rec; do
    remove[${rec#* * * * }]=1
done < <(LC_ALL=C comm -z -13 -- "$env_dir/reference" "$before")
reset_ok=1
{
    for path in "${!remove[@]}"; do
        parent=${path%/*}
        [[ $path == */* ]] && under_any "$parent" remove && continue
        printf '%s\0' "$replica/$path"
    done
} | xargs -0 -r rm -rf -- || reset_ok=0
{
    for path in "${!restore[@]}"; do
        parent=${path%/*}
        [[ $path == */* ]] && under_any "$parent" restore && continue
        [ -e "$env_dir/writable/$path" ] || [ -L "$env_dir/writable/$path" ] || continue
        printf '%s\0' "$path"
    done
} | (cd -- "$env_dir/writable" && xargs -0 -r cp -dR --preserve=mode,timestamps --reflink=auto --parents -t "$replica" --) || reset_ok=0
rm -f -- "$before" "$after"
if ((reset_ok)) && mv -T -- "$replica" "$env_dir/pool/r.$HOSTNAME.$$.${EPOCHREALTIME/./}" 2> /dev/null; then
    :
else
    remove_tree "$replica"
fi

((rc)) && exit "$rc"
((failed)) && exit 1
exit 0
