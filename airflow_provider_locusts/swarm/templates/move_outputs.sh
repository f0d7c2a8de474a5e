# Collect the compulsory outputs of succeeded tasks into output_dir, on the swarm's host:
# moved with `mv -n` (never replacing a file already there), or `mv -f` with overwrite.
# usage: bash -s -- WORK_DIR OUTPUT_DIR OVERWRITE(0|1)   records on stdin, NUL-separated:
#   INDEX FOLDER COUNT (OUTPUT TARGET)... for each task: FOLDER relative to WORK_DIR, OUTPUT
#   relative to FOLDER, TARGET relative to OUTPUT_DIR (OUTPUT itself, or under a shard folder)
# prints, NUL-separated: "missing" INDEX OUTPUT for an output found neither in the task
# folder nor at its target (that task's outputs are not moved); "clash" TARGET for an
# output left in its folder because output_dir already held one; "stuck" TARGET for one
# that could not be moved (what mv said is on stderr).
set -u
# Names are read as bytes: in a UTF-8 locale, a byte that is not UTF-8 would swallow the NUL after it.
export LC_ALL=C
work=$1 out=$2 overwrite=$3
[ -d "$work" ] || { echo "no swarm root here: $work not found on $HOSTNAME" >&2; exit 66; }
mkdir -p -- "$out" || exit 1
lists=$(mktemp -d "${TMPDIR:-/tmp}/locusts_collect.XXXXXX") || exit 1
trap 'rm -rf -- "$lists"' EXIT

declare -A list_of_dir=()  # target folder -> file listing the sources moved into it
moved=()                    # source and target of every output moved, to check afterwards
while IFS= read -r -d '' index && IFS= read -r -d '' folder && IFS= read -r -d '' count; do
    outputs=() targets=()
    for ((i = 0; i < count; i++)); do
        IFS= read -r -d '' name
        IFS= read -r -d '' target
        outputs+=("$name")
        targets+=("$target")
    done
    complete=1
    for i in "${!outputs[@]}"; do
        if [ ! -e "$work/$folder/${outputs[i]}" ] && [ ! -e "$out/${targets[i]}" ]; then
            printf 'missing\0%s\0%s\0' "$index" "${outputs[i]}"
            complete=0
        fi
    done
    ((complete)) || continue
    for i in "${!outputs[@]}"; do
        source="$work/$folder/${outputs[i]}" target=${targets[i]}
        [ -e "$source" ] || continue  # collected by an earlier, interrupted gather
        # `mv -t DIR` keeps the source's name: the target is the output's path under DIR.
        target_dir=$out
        [[ $target == */* ]] && target_dir="$out/${target%/*}"
        list=${list_of_dir[$target_dir]:-}
        if [ -z "$list" ]; then
            list="$lists/${#list_of_dir[@]}"
            list_of_dir[$target_dir]=$list
            mkdir -p -- "$target_dir" || exit 1
        fi
        printf '%s\0' "$source" >> "$list"
        moved+=("$source" "$target")
    done
done

flag=-n
((overwrite)) && flag=-f
for target_dir in "${!list_of_dir[@]}"; do
    # mv -n's exit status for a skipped file differs between coreutils releases:
    # what was moved is judged from the files below instead.
    xargs -0 -r mv "$flag" -t "$target_dir" -- < "${list_of_dir[$target_dir]}"
done
for ((i = 0; i < ${#moved[@]}; i += 2)); do
    [ -e "${moved[i]}" ] || continue
    if [ -e "$out/${moved[i + 1]}" ]; then
        printf 'clash\0%s\0' "${moved[i + 1]}"
    else
        printf 'stuck\0%s\0' "${moved[i + 1]}"
    fi
done
exit 0
