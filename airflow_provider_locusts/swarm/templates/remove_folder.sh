# Remove a swarm root (or a local copy of one) at once, as far as anyone looking for it can
# tell: it is renamed, in one rename(2), to a hidden sibling .<NAME>.removing-<10 letters or
# digits>, and the files in it are deleted by a detached process (its own session, no
# terminal, stdin and stdout closed, at low CPU and I/O priority) that this script does not
# wait for. That process then finishes, in the same parent folder, the removals an earlier
# one did not (a host rebooted mid-removal): only folders named exactly so that still hold
# the marker written here (and, for a swarm root, its ledger), never anything else.
#
# usage: bash -s -- FOLDER KIND
#   KIND root: a swarm root; refused unless it holds exec/ledger.json and exec/tasks.jsonl
#   KIND copy: a local copy of one (SSH copy mode's scratch folder)
# prints "@removing HIDDEN" (its name, in the same parent folder) once renamed, "@removed"
# when it had to be removed in place (it is a mount point, say), "@absent" when there was
# nothing to remove (copy only), then "@leftovers N": earlier removals found unfinished in
# the parent folder (finished in the background too).
set -u
export LC_ALL=C
MARKER=.locusts_removing

folder=$1 kind=$2
while [[ $folder == */ && $folder != / ]]; do folder=${folder%/}; done
[[ $folder == /* ]] || folder=./$folder  # never read as an option
parent=${folder%/*} name=${folder##*/}
[ -n "$parent" ] || parent=/

case $kind in
root)
    if [ -L "$folder" ] || [ ! -d "$folder" ] || [ ! -f "$folder/exec/ledger.json" ] || [ ! -f "$folder/exec/tasks.jsonl" ]; then
        echo "refusing to remove $folder: not a swarm root" >&2
        exit 1
    fi
    ;;
copy)
    if [ ! -e "$folder" ] && [ ! -L "$folder" ]; then
        echo "@absent"
        exit 0
    fi
    if [ -L "$folder" ] || [ ! -d "$folder" ]; then
        echo "refusing to remove $folder: not a folder" >&2
        exit 1
    fi
    ;;
*)
    echo "unknown kind of folder to remove: $kind" >&2
    exit 2
    ;;
esac

# --- what the detached process runs ---------------------------------------------------------
# Delete one renamed folder, holding a lock on it (flock, where it works) so that two
# removers never work on the same folder. Everything but exec/ and the marker first, then
# exec/ but its ledger; only once nothing else is left, the ledger, the marker and the
# folder: an interrupted or failed removal leaves a folder the next one recognises. Read-only
# folders (a Custom Environment's sealed tree) are made writable, and the removal tried
# again, only if the first pass left something. What could not be deleted is appended to
# the marker, for whoever finds the folder.
remove_renamed() {
    local d=$1 pass errors=
    exec 9< "$d" || return 1
    if command -v flock > /dev/null 2>&1; then
        flock -n -E 75 9
        # 75: another remover is on it; any other failure: no locks here, go on without.
        [ $? = 75 ] && { exec 9<&-; return 0; }
    fi
    for pass in 1 2; do
        if [ "$pass" = 2 ]; then
            find -P "$d" -type d ! -perm -u=w -exec chmod u+w -- {} + 2> /dev/null
        fi
        errors=$(
            {
                # work/ holds a folder per batch: two rm at once (metadata servers answer in parallel).
                if [ -d "$d/work" ] && [ ! -L "$d/work" ]; then
                    find -P "$d/work" -mindepth 1 -maxdepth 1 -print0 | xargs -0 -r -n 1 -P 2 rm -rf --
                fi
                find -P "$d" -mindepth 1 -maxdepth 1 ! -name exec ! -name "$MARKER" -exec rm -rf -- {} +
                if [ -d "$d/exec" ] && [ ! -L "$d/exec" ]; then
                    find -P "$d/exec" -mindepth 1 -maxdepth 1 ! -name ledger.json -exec rm -rf -- {} +
                else
                    rm -f -- "$d/exec"
                fi
            } 2>&1 > /dev/null
        )
        if [ -z "$(cd -- "$d" && find -P . -mindepth 1 ! -path "./$MARKER" ! -path ./exec ! -path ./exec/ledger.json -print -quit)" ]; then
            rm -f -- "$d/exec/ledger.json"
            rmdir -- "$d/exec" 2> /dev/null
            rm -f -- "$d/$MARKER"
            rmdir -- "$d"
            exec 9<&-
            return 0
        fi
    done
    printf 'unfinished %s: %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" "$(printf '%s' "$errors" | head -n 5 | tr '\n' ' ')" >> "$d/$MARKER"
    exec 9<&-
    return 1
}

# An earlier removal's folder in PARENT that can be finished: named .<NAME>.removing-<10
# letters or digits>, a folder (not a link), holding our marker naming NAME; when the marker
# says it was a swarm root, its ledger too, unless nothing else is left in it. (A removal
# stopped between its very last two steps leaves an empty folder of that name: left alone.)
unfinished() {
    local d=$1 base rest n suffix first second
    base=${d##*/} rest=${base#.}
    n=${rest%.removing-*} suffix=${rest##*.removing-}
    [[ -n $n && $suffix =~ ^[A-Za-z0-9]{10}$ && $base == ".$n.removing-$suffix" ]] || return 1
    [ -d "$d" ] && [ ! -L "$d" ] || return 1
    [ -f "$d/$MARKER" ] && [ ! -L "$d/$MARKER" ] || return 1
    { IFS= read -r first && IFS= read -r second; } < "$d/$MARKER" || return 1
    [ "$first" = "locusts: removing $n" ] || return 1
    case $second in
    copy) return 0 ;;
    root)
        [ -f "$d/exec/ledger.json" ] && [ ! -L "$d/exec/ledger.json" ] && return 0
        # Past the ledger: nothing but the marker (and an empty exec/) is left.
        [ -z "$(cd -- "$d" && find -P . -mindepth 1 ! -path "./$MARKER" ! -path ./exec -print -quit 2> /dev/null)" ]
        return
        ;;
    esac
    return 1
}

remove_all() {
    local parent=$1 mine=$2 d
    [ -z "$mine" ] || remove_renamed "$mine"
    shopt -s nullglob dotglob
    for d in "$parent"/.*.removing-*; do
        [ "$d" = "$mine" ] && continue
        unfinished "$d" && remove_renamed "$d"
    done
}

count_unfinished() {
    local parent=$1 mine=$2 d n=0
    shopt -s nullglob dotglob
    for d in "$parent"/.*.removing-*; do
        [ "$d" = "$mine" ] && continue
        unfinished "$d" && n=$((n + 1))
    done
    echo "$n"
}

# --- rename at once, then remove in the background ------------------------------------------
# The marker is made new (noclobber, after removing whatever had its name): never written through a link.
rm -f -- "$folder/$MARKER"
if ! (set -C && printf 'locusts: removing %s\n%s\n' "$name" "$kind" > "$folder/$MARKER"); then
    echo "cannot write into $folder to remove it" >&2
    exit 1
fi
hidden=
# rename(2) within one filesystem only: mv would copy a mount point's files instead.
if [ "$(stat -c %d -- "$folder")" = "$(stat -c %d -- "$parent")" ]; then
    # mktemp makes a new empty folder of a unique name; renaming onto it replaces it atomically.
    if placeholder=$(mktemp -d -- "$parent/.$name.removing-XXXXXXXXXX" 2> /dev/null); then
        if mv -T -- "$folder" "$placeholder" 2> /dev/null; then
            hidden=$placeholder
        else
            rmdir -- "$placeholder" 2> /dev/null
        fi
    fi
fi
if [ -z "$hidden" ]; then
    # No rename possible here: removed in place, as before, while the caller waits.
    rm -f -- "$folder/$MARKER"
    rm -rf -- "$folder" || exit 1
    echo "@removed"
else
    echo "@removing ${hidden##*/}"
fi
leftovers=$(count_unfinished "$parent" "$hidden")
echo "@leftovers $leftovers"
[ -n "$hidden" ] || [ "$leftovers" != 0 ] || exit 0

low=()
command -v nice > /dev/null 2>&1 && low+=(nice -n 19)
command -v ionice > /dev/null 2>&1 && low+=(ionice -c 2 -n 7 -t)
detach=()
command -v setsid > /dev/null 2>&1 && detach=(setsid)
program="MARKER=$MARKER; $(declare -f remove_renamed unfinished remove_all); remove_all \"\$1\" \"\$2\""
# Its own session (never signalled with the caller's process group), nothing of the
# caller's open: neither `bash -s` nor an SSH channel waits for it.
( trap '' HUP; exec "${detach[@]}" "${low[@]}" bash -c "$program" locusts-remove "$parent" "$hidden" ) < /dev/null > /dev/null 2>&1 &
exit 0
