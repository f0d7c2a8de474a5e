# Collect the compulsory outputs of succeeded tasks into output_dir, on the swarm's host:
# moved with `mv -n` (never replacing a file already there), or `mv -f` with overwrite.
# usage: bash -s -- WORK_DIR OUTPUT_DIR OVERWRITE(0|1)   records on stdin, NUL-separated:
#   INDEX FOLDER COUNT OUTPUT... for each task (FOLDER relative to WORK_DIR)
# prints, NUL-separated: "missing" INDEX OUTPUT for an output found neither in the task
# folder nor in output_dir (that task's outputs are not moved); "clash" OUTPUT for an
# output left in its folder because output_dir already held one; "stuck" OUTPUT for one
# that could not be moved (what mv said is on stderr).
set -u
work=$1 out=$2 overwrite=$3
[ -d "$work" ] || { echo "no swarm root here: $work not found on $HOSTNAME" >&2; exit 66; }
mkdir -p -- "$out" || exit 1
lists=$(mktemp -d "${TMPDIR:-/tmp}/locusts_collect.XXXXXX") || exit 1
trap 'rm -rf -- "$lists"' EXIT

declare -A list_of_dir=()  # target folder -> file listing the sources moved into it
moved=()                    # "folder/output" of every output moved, to check afterwards
while IFS= read -r -d '' index && IFS= read -r -d '' folder && IFS= read -r -d '' count; do
    outputs=()
    for ((i = 0; i < count; i++)); do
        IFS= read -r -d '' name
        outputs+=("$name")
    done
    complete=1
    for name in "${outputs[@]}"; do
        if [ ! -e "$work/$folder/$name" ] && [ ! -e "$out/$name" ]; then
            printf 'missing\0%s\0%s\0' "$index" "$name"
            complete=0
        fi
    done
    ((complete)) || continue
    for name in "${outputs[@]}"; do
        [ -e "$work/$folder/$name" ] || continue  # collected by an earlier, interrupted gather
        target_dir=$out
        [[ $name == */* ]] && target_dir="$out/${name%/*}"
        list=${list_of_dir[$target_dir]:-}
        if [ -z "$list" ]; then
            list="$lists/${#list_of_dir[@]}"
            list_of_dir[$target_dir]=$list
            mkdir -p -- "$target_dir" || exit 1
        fi
        printf '%s\0' "$work/$folder/$name" >> "$list"
        moved+=("$folder/$name")
    done
done

flag=-n
((overwrite)) && flag=-f
for target_dir in "${!list_of_dir[@]}"; do
    # mv -n's exit status for a skipped file differs between coreutils releases:
    # what was moved is judged from the files below instead.
    xargs -0 -r mv "$flag" -t "$target_dir" -- < "${list_of_dir[$target_dir]}"
done
for entry in "${moved[@]}"; do
    [ -e "$work/$entry" ] || continue
    name=${entry#*/*/}  # strip "batch_<k>/task_<id>/"
    if [ -e "$out/$name" ]; then
        printf 'clash\0%s\0' "$name"
    else
        printf 'stuck\0%s\0' "$name"
    fi
done
exit 0
