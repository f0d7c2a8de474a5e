# Collect the changed files of Custom Environment tasks into output_dir on the swarm's host:
# WORK_DIR/FOLDER/changes/PATH → OUTPUT_DIR/NAME/PATH, moved with `mv -n` (never over a file
# already there) or `mv -f` with overwrite. No symbolic link is followed: every component of
# both paths is checked first, and a path through a link is refused.
# usage: bash -s -- WORK_DIR OUTPUT_DIR OVERWRITE(0|1)   records on stdin, NUL-separated:
#   INDEX FOLDER NAME COUNT PATH... for each task (FOLDER relative to WORK_DIR)
# prints NUL-separated triples: "missing" INDEX PATH (neither in changes/ nor in output_dir),
# "refused" INDEX PATH (through a link, or not a regular file), "clash" INDEX NAME/PATH (left in
# place: output_dir held one), "stuck" INDEX NAME/PATH (mv failed: what it said is on stderr).
set -u
work=$1 out=$2 overwrite=$3
[ -d "$work" ] || { echo "no swarm root here: $work not found on $HOSTNAME" >&2; exit 66; }
mkdir -p -- "$out" || exit 1

# Is an existing component of REL below BASE a symbolic link?
link_in_path() {  # BASE REL
    local p=$1 rest=$2
    while :; do
        p=$p/${rest%%/*}
        [ -L "$p" ] && return 0
        [ -e "$p" ] || return 1
        [[ $rest == */* ]] || return 1
        rest=${rest#*/}
    done
}
# Make the folders of REL below BASE; false when a link or a file is in the way.
make_parents() {  # BASE REL
    local p=$1 rest=$2
    while [[ $rest == */* ]]; do
        p=$p/${rest%%/*}
        rest=${rest#*/}
        [ -L "$p" ] && return 1
        [ -e "$p" ] || mkdir -- "$p" || return 1
        [ -d "$p" ] || return 1
    done
}

flag=-n
((overwrite)) && flag=-f
while IFS= read -r -d '' index && IFS= read -r -d '' folder && IFS= read -r -d '' name && IFS= read -r -d '' count; do
    for ((i = 0; i < count; i++)); do
        IFS= read -r -d '' path
        src=$work/$folder/changes/$path
        dst=$out/$name/$path
        if link_in_path "$work" "$folder/changes/$path"; then
            printf 'refused\0%s\0%s\0' "$index" "$path"
            continue
        fi
        if [ ! -e "$src" ]; then
            # Collected by an interrupted gather, or gone.
            link_in_path "$out" "$name/$path" || [ ! -f "$dst" ] && printf 'missing\0%s\0%s\0' "$index" "$path"
            continue
        fi
        if [ ! -f "$src" ]; then
            printf 'refused\0%s\0%s\0' "$index" "$path"
            continue
        fi
        if ! make_parents "$out" "$name/$path" || [ -L "$dst" ] || { [ -e "$dst" ] && ((!overwrite)); }; then
            printf 'clash\0%s\0%s\0' "$index" "$name/$path"
            continue
        fi
        if ! mv "$flag" -T -- "$src" "$dst" || [ -e "$src" ]; then
            printf 'stuck\0%s\0%s\0' "$index" "$name/$path"
        fi
    done
done
exit 0
