# Reset task folders to what staging put into them (their inputs), so a task run again
# after its manager was lost starts clean, without the inputs having to be staged again.
# usage: bash -s -- WORK_DIR   records on stdin, NUL-separated, one per task:
#   FOLDER COUNT STAGED...   (FOLDER relative to WORK_DIR, STAGED relative to FOLDER)
set -u
# Names are read as bytes: in a UTF-8 locale, a byte that is not UTF-8 would swallow the NUL after it.
export LC_ALL=C
work=$1
cd -- "$work" 2> /dev/null || {
    echo "no swarm root here: $work not found on $HOSTNAME" >&2
    exit 66
}
while IFS= read -r -d '' folder && IFS= read -r -d '' count; do
    declare -A keep=()
    for ((i = 0; i < count; i++)); do
        IFS= read -r -d '' name
        keep[$name]=1
        while [[ $name == */* ]]; do  # the folders on the way to a staged file stay too
            name=${name%/*}
            keep[$name]=1
        done
    done
    if [ -d "$folder" ]; then
        # Deepest first, so a folder's contents are judged before the folder itself.
        while IFS= read -r -d '' path; do
            path=${path#./}
            [ -n "${keep[$path]:-}" ] || rm -rf -- "$folder/$path"
        done < <(cd -- "$folder" && find . -mindepth 1 -depth -print0)
    else
        echo "task folder $folder is missing" >&2
    fi
    unset keep
done
exit 0
