# Remove folders of a swarm's Custom Environment: its environment/ folder, or the replicas
# tasks left in their folders (a task stopped with its manager, one whose read-only part
# changed), even when their folders are read-only; a symbolic link is removed, never followed.
# usage: bash -s -- BASE   paths relative to BASE on stdin, NUL-separated
set -u
base=$1
cd -- "$base" 2> /dev/null || exit 0
status=0
while IFS= read -r -d '' path; do
    [[ $path == /* ]] || path=./$path  # never read as an option
    [ -e "$path" ] || [ -L "$path" ] || continue
    [ -L "$path" ] || find -P "$path" -type d ! -perm -u=w -exec chmod u+w -- {} + 2> /dev/null
    rm -rf -- "$path" || status=1
done
exit "$status"
