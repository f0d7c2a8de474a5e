# What the swarm's host offers a Custom Environment before anything is staged: the free space
# and inodes where the swarm root goes, and the state of an environment staged by an earlier
# try: absent, sealed (its read-only part intact, with the digest it was sealed with),
# changed (a task changed a file of its read-only part), partial (staging did not finish).
# usage: bash -s -- ROOT
# prints "@free BYTES INODES" and "@environment STATE [DIGEST]"
set -u -o pipefail
root=$1
target=$root
while [ ! -d "$target" ]; do
    parent=${target%/*}
    [ -n "$parent" ] && [ "$parent" != "$target" ] || parent=/
    target=$parent
done
read -r blocks block_size inodes < <(stat -f -c '%a %S %d' -- "$target") || exit 1
printf '@free %s %s\n' "$((blocks * block_size))" "$inodes"
env=$root/environment
if [ -f "$env/sealed" ]; then
    read -r digest < "$env/sealed"
    if (cd -- "$env/shared" && find -P . -mindepth 1 \( -type d -printf 'd 0 0 0 %P\0' \) -o -printf '%y %s %T@ %m %P\0') \
        | LC_ALL=C sort -z | cmp -s - "$env/shared.reference"; then
        printf '@environment sealed %s\n' "$digest"
    else
        printf '@environment changed\n'
    fi
elif [ -e "$env" ]; then
    printf '@environment partial\n'
else
    printf '@environment absent\n'
fi
