#!/usr/bin/env bash
# One task of a swarm with a Custom Environment (a whole tree). The manager runs it in the
# task's folder like any command, with LOCUSTS_SWARM_ROOT, LOCUSTS_ID and LOCUSTS_ARG_<k> set:
#  1. takes a clean replica of the tree: one from the swarm's pool (reset by the task that used
#     it last, and checked then), or a new one made from the swarm's sealed copy of the tree
#     (read-only parts hard-linked, writable parts copied, with reflinks where the filesystem
#     has them);
#  2. copies the task's inputs into it and removes write permission from its read-only folders;
#  3. runs the command (environment/command.sh) in the work folder, LOCUSTS_TREE set to the replica;
#  4. compares the replica with a clean one (the snapshots taken when the tree was sealed)
#     and the inputs it was given: what was created, modified or deleted goes to changes.nul;
#     a change to the read-only part fails the task. The writable parts are snapshotted every
#     time; the read-only part (most of the tree) only when a quick look finds something of
#     it changed: a file written since the sealing or changed in any way since the task began
#     (inode change time: a write, a chmod, a link), a folder whose entries changed;
#  5. puts the created and modified files of the writable parts into changes/ (collected at
#     gather), resets the replica, checks it, and puts it back into the pool. A replica whose
#     read-only part changed is not reused: it stays in the task's folder, for inspection.
# changes.nul holds records of four NUL-terminated fields, TAG TYPE PATH EXTRA (read by
# replica_gather.py). Values never enter code: paths are data for find, cp, mv, chmod and rm,
# always after `--` or below an absolute prefix. Few processes are started per task: a swarm
# runs many tasks, and each start costs.
set -u -o pipefail
env_dir=$LOCUSTS_SWARM_ROOT/environment
here=$PWD
replica=$here/replica
result=$here/changes.nul
started=$EPOCHREALTIME

# SECONDS[.FRACTION] (find's %T@, EPOCHREALTIME) as whole microseconds, in $us.
microseconds() {
    local whole=${1%%[.,]*} fraction=${1#*[.,]}
    [ "$fraction" = "$1" ] && fraction=
    fraction=${fraction}000000
    us=$((10#$whole * 1000000 + 10#${fraction:0:6}))
}

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

# Snapshot records of the entries below the replica (or of some of them): "TYPE SIZE MTIME
# MODE PATH", sorted bytewise (file names are bytes). Folders count by their path only: what
# they hold is listed entry by entry. The same records as replica_seal.sh's.
snapshot() {
    find -P "$replica" -mindepth 1 \( -type d -printf 'd 0 0 0 %P\0' \) -o -printf '%y %s %T@ %m %P\0' \
        | LC_ALL=C sort -z -S 8M
}

mapfile -d '' -t writable < "$env_dir/writable_parts"
mapfile -d '' -t input_templates < "$env_dir/input_templates"
mapfile -d '' -t output_templates < "$env_dir/output_templates"
mapfile -d '' -t readonly_dirs < "$env_dir/readonly_dirs"
{ IFS= read -r -d '' workdir && IFS= read -r -d '' inputs_dir; } < "$env_dir/places"

in_writable() {  # PATH: a writable part, or inside one
    local w
    for w in "${writable[@]}"; do
        [[ $w == . || $1 == "$w" || $1 == "$w"/* ]] && return 0
    done
    return 1
}

# Is PATH (or a folder above it) a key of the associative array named NAME?
under_any() {  # PATH NAME
    local -n keys=$2
    local p=$1
    while :; do
        [ -n "${keys[$p]+x}" ] && return 0
        [[ $p == */* ]] || return 1
        p=${p%/*}
    done
}

# Runs COMMAND... with the elements of the array named NAME as its last arguments: at once
# when they are few (one process), through xargs otherwise (no argument list too long).
on_all() {  # NAME COMMAND...
    local -n items=$1
    shift
    ((${#items[@]})) || return 0
    if ((${#items[@]} <= 1000)); then
        "$@" "${items[@]}"
    else
        printf '%s\0' "${items[@]}" | xargs -0 -r "$@"
    fi
}

# Read-only folders: write permission removed while the command runs, restored after.
readonly_paths=("${readonly_dirs[@]/#/$replica/}")
protect() { on_all readonly_paths chmod a-w --; }
unprotect() {
    local list dirs
    for list in "$env_dir"/readonly_dirs.*; do
        [ -f "$list" ] || continue
        mapfile -d '' -t dirs < "$list"
        dirs=("${dirs[@]/#/$replica/}")
        on_all dirs chmod "${list##*.}" -- 2> /dev/null
    done
}
# Stopped (the task timed out, or its manager was stopped): leave a replica that can be removed.
trap 'unprotect; exit 143' TERM INT

take_from_pool() {
    local entry
    for entry in "$env_dir"/pool/*; do
        [ -d "$entry" ] || continue
        mv -T -- "$entry" "$replica" 2> /dev/null && return 0  # another task may take it first
    done
    return 1
}

fresh_replica() {
    remove_tree "$replica"
    # Folder times too: a folder of the read-only part newer than the task counts as changed.
    cp -dRl --preserve=mode,timestamps -- "$env_dir/shared" "$replica" \
        && cp -dR --preserve=mode,timestamps --reflink=auto -- "$env_dir/writable/." "$replica/"
}

# The writable parts of the replica, snapshotted like the sealed copy's (writable.reference):
# paths are "./<path in the tree>".
writable_starts=("${writable[@]/#/./}")
[ "${writable[0]-}" = . ] && writable_starts=(.)
writable_snapshot() {
    (cd -- "$replica" && exec find -P "${writable_starts[@]}" \( -type d -printf 'd 0 0 0 %p\0' \) -o -printf '%y %s %T@ %m %p\0') \
        | LC_ALL=C sort -z -S 1M
}

# Is anything of the read-only part changed? Files written since the sealing (mtime newer than
# `reference`) or changed in any way since the command began (ctime: also a chmod or a new link,
# which a replica made meanwhile gives every shared file: a false alarm costs the full
# comparison, nothing else), folders with entries added, removed or renamed since it began.
glob_escape() { local s=${1//\\/\\\\}; s=${s//\*/\\*}; s=${s//\?/\\?}; escaped=${s//\[/\\[}; }
prune=(-false)
for part in "${writable[@]}"; do
    glob_escape "$replica/$part"
    prune+=(-o -path "$escaped")
done
readonly_changed() {  # SINCE
    [ "${writable[0]-}" = . ] && return 1  # no read-only part
    [ -n "$(find -P "$replica" \( "${prune[@]}" \) -prune -o \( -type d -newermt "@$1" -print -quit \) \
        -o \( ! -type d \( -newer "$env_dir/reference" -o -newerct "@$1" \) -print -quit \))" ]
}

# --- 0. what an earlier attempt of this task left ----------------------------------------
remove_tree "$replica"
remove_tree "$here/changes"
{ [ -L "$result" ] || [ -e "$result" ] && [ ! -f "$result" ]; } && rm -f -- "$result"
: > "$result"

# --- 1. a clean replica ------------------------------------------------------------------
if ! take_from_pool; then
    if ! err=$(fresh_replica 2>&1); then
        record error - - "cannot make the replica: $err"
        record exit - - ""
        remove_tree "$replica"
        exit 1
    fi
    # Linking changed the inode change time of every shared file: let the clock move past it,
    # so that only what happens from the command on counts as this task's (see `since`).
    sleep 0.02
fi

# --- 2. inputs, protection -----------------------------------------------------------------
# Inputs are copies (never links: the task may change or move them). What they are now
# (input_state) is part of the state the task starts from, with the folders made for them.
declare -A input_state=()
if ((${#input_templates[@]})); then
    placed=()
    for template in "${input_templates[@]}"; do
        name=${template//"<id>"/"$LOCUSTS_ID"}
        target=$inputs_dir/$name
        [ "$inputs_dir" = . ] && target=$name
        # The folders made for it are new entries too.
        rest=$target prefix=
        while [[ $rest == */* ]]; do
            prefix=${prefix:+$prefix/}${rest%%/*}
            rest=${rest#*/}
            [ -e "$replica/$prefix" ] || { input_state[$prefix]="d 0 0 0"; placed+=("$prefix"); }
        done
        if ! err=$({ [[ $target != */* ]] || mkdir -p -- "$replica/${target%/*}"; } \
            && cp -p --reflink=auto -- "$here/$name" "$replica/$target" 2>&1); then
            record error - "$target" "cannot place input $name in the replica: $err"
            record exit - - ""
            remove_tree "$replica"
            exit 1
        fi
        placed+=("$target")
    done
    while IFS= read -r -d '' rec; do
        path=${rec#* * * * }
        input_state[${path#"$replica/"}]=${rec% "$path"}
    done < <(find -P "${placed[@]/#/$replica/}" -maxdepth 0 \( -type d -printf 'd 0 0 0 %p\0' \) -o -printf '%y %s %T@ %m %p\0')
fi
protect

# --- 3. the command --------------------------------------------------------------------------
export LOCUSTS_TREE=$replica
ready=$EPOCHREALTIME
# What changes from now on is the command's: `since` is now less 10 ms, as file times come from
# a coarse clock (a tick behind at most: 4 ms at HZ=250, 10 ms at HZ=100).
microseconds "$ready"
since_us=$((us - 10000))
printf -v since '%d.%06d' "$((since_us / 1000000))" "$((since_us % 1000000))"
(cd -- "$replica/$workdir" && exec bash "$env_dir/command.sh")
rc=$?
ran=$EPOCHREALTIME

# --- 4. what changed -------------------------------------------------------------------------
# The task could write into its own folder too: what its files are now is not ours (a link
# there would be written through), so they are made anew.
{ [ -L "$result" ] || [ ! -f "$result" ]; } && rm -f -- "$result"
remove_tree "$here/changes"
: > "$result"
full=0
readonly_changed "$since" && full=1
declare -A kind=() type=() seen_input=()
while IFS= read -r -d '' rec; do
    if [[ $rec == $'\t'* ]]; then  # now, not in a clean replica
        rec=${rec#$'\t'}
        raw=${rec#* * * * }
        path=${raw#./}
        [ "$path" = . ] && continue
        state=${input_state[$path]-}
        if [ -n "$state" ]; then
            seen_input[$path]=1
            [ "$state" = "${rec% "$raw"}" ] && continue  # an input as it was placed
            kind[$path]=modified
        elif [ "${kind[$path]-}" = deleted ]; then
            kind[$path]=modified
        else
            kind[$path]=created
        fi
        type[$path]=${rec%% *}
    else  # in a clean replica, not now (or not like this)
        path=${rec#* * * * }
        path=${path#./}
        [ "$path" = . ] && continue
        if [ "${kind[$path]-}" = created ]; then
            kind[$path]=modified
        elif [ -z "${kind[$path]-}" ]; then
            kind[$path]=deleted
            type[$path]=${rec%% *}
        fi
    fi
done < <(
    if ((full)); then
        LC_ALL=C comm -z -3 -- "$env_dir/reference" <(snapshot)
    else
        LC_ALL=C comm -z -3 -- "$env_dir/writable.reference" <(writable_snapshot)
    fi
)
unprotect
for path in "${!input_state[@]}"; do
    [ -n "${seen_input[$path]-}" ] || { kind[$path]=deleted; type[$path]=${input_state[$path]%% *}; }
done

declare -A collect=() remove=() restore=()
broken=0
for path in "${!kind[@]}"; do
    k=${kind[$path]} t=${type[$path]}
    if ! in_writable "$path"; then
        # A shared file changed in place before this task started (its inode unchanged since):
        # another task changed it.
        if [ "$k" = modified ] && [ "$t" = f ] && [ -z "$(find -P "$replica/$path" -maxdepth 0 -newerct "@$since" -print)" ]; then
            record before "$t" "$path" "$k"
            broken=1
            continue
        fi
        record readonly "$t" "$path" "$k"
        broken=1
        continue
    fi
    case $k in
        created) remove[$path]=1 ;;
        modified) remove[$path]=1 restore[$path]=1 ;;
        deleted) [ -z "${input_state[$path]-}" ] && restore[$path]=1 ;;
    esac
    [ "$t" = d ] && continue  # folders count by what they hold
    extra=
    [ "$t" = l ] && extra=$(readlink -- "$replica/$path")
    record "$k" "$t" "$path" "$extra"
    [ "$t" = f ] && [ "$k" != deleted ] && collect[$path]=1
done
# The inputs still there go with the reset.
for path in "${!input_state[@]}"; do
    [ "${kind[$path]-}" = deleted ] || remove[$path]=1
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
# Created and modified files go to changes/<path>: linked there in one go (the reset removes
# them from the replica next, so they are changes/'s alone; both are the task's own files).
if ((${#collect[@]})); then
    collected=("${!collect[@]}")
    if ! err=$(cd -- "$replica" && mkdir -- "$here/changes" && on_all collected cp -dl --parents -t "$here/changes" -- 2>&1); then
        record error - - "cannot keep the changed files out of the replica: $err"
        failed=1
    fi
fi
record exit - - "$rc"

if ((broken)); then
    record times - - "$started $ready $ran $EPOCHREALTIME"
    # The command may have failed on its own, too: its exit code says so.
    ((rc)) && exit "$rc"
    exit 1
fi

# Back to a clean replica: what the task (or staging) added goes, what it changed or deleted
# comes back from the sealed copy's writable parts; checked before it goes back to the pool.
removed=() restored=()
for path in "${!remove[@]}"; do
    [[ $path == */* ]] && under_any "${path%/*}" remove && continue
    removed+=("$replica/$path")
done
for path in "${!restore[@]}"; do
    [[ $path == */* ]] && under_any "${path%/*}" restore && continue
    [ -e "$env_dir/writable/$path" ] || [ -L "$env_dir/writable/$path" ] || continue
    restored+=("$path")
done
on_all removed rm -rf -- \
    && (cd -- "$env_dir/writable" && on_all restored cp -dR --preserve=mode,timestamps --reflink=auto --parents -t "$replica" --) \
    && cmp -s -- "$env_dir/writable.reference" <(writable_snapshot) \
    && mv -T -- "$replica" "$env_dir/pool/r.$HOSTNAME.$$.${EPOCHREALTIME/[.,]/}" 2> /dev/null \
    || remove_tree "$replica"

# When it began, when its replica was ready, when the command ended, when all was done.
record times - - "$started $ready $ran $EPOCHREALTIME"
((rc)) && exit "$rc"
((failed)) && exit 1
exit 0
