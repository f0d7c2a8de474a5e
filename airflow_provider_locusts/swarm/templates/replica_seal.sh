# Seal the swarm's copy of its tree on the swarm's host, as the account that runs the tasks,
# once per try that staged it (environment/incoming/, staged by the Airflow side):
#   shared/     the read-only parts (and the folders that hold writable parts): its files lose
#               their write permission; replicas hard-link them
#   writable/   the writable parts: every replica gets copies of them
#   pool/       replicas ready for a task: the first one is made here
#   reference   the snapshot of a clean replica, against which each task checks its replica
#   shared.reference   the snapshot of shared/ alone (a later try checks it is intact)
#   readonly_dirs[.MODE]   the read-only folders of a replica (by mode, to restore them)
#   sealed      written last: the digest of the user's tree and settings
# usage: bash -s -- ENV_DIR DIGEST
set -u -o pipefail
env=$1 digest=$2
cd -- "$env" 2> /dev/null || {
    echo "no swarm environment here: $env not found on $HOSTNAME" >&2
    exit 66
}
[ -d incoming/shared ] && [ -d incoming/writable ] || {
    echo "nothing to seal in $env on $HOSTNAME: incoming/ is incomplete" >&2
    exit 1
}

remove_tree() {
    [ -e "$1" ] || [ -L "$1" ] || return 0
    [ -L "$1" ] || find -P "$1" -type d ! -perm -u=w -exec chmod u+w -- {} + 2> /dev/null
    rm -rf -- "$1"
}
# The same records as replica_task.sh's snapshot.
snapshot() {  # FOLDER OUTPUT
    (cd -- "$1" && find -P . -mindepth 1 \( -type d -printf 'd 0 0 0 %P\0' \) -o -printf '%y %s %T@ %m %P\0') \
        | LC_ALL=C sort -z > "$2"
}

rm -f -- sealed
for old in shared writable pool; do
    remove_tree "$old"
done
# Hard links need files of this account: the kernel refuses links to another account's
# read-only files (fs.protected_hardlinks). Staged by this account (copy mode, local mode):
# moved; staged by another one (a filesystem shared with the Airflow side): copied, and
# incoming/ is left to the account that staged it.
if [ -O incoming ] && [ -O incoming/shared ] && [ -O incoming/writable ]; then
    mv -T -- incoming/shared shared && mv -T -- incoming/writable writable || exit 1
    rmdir -- incoming 2> /dev/null
else
    cp -dR --preserve=mode,timestamps --reflink=auto -- incoming/shared shared \
        && cp -dR --preserve=mode,timestamps --reflink=auto -- incoming/writable writable || exit 1
fi
find -P shared -type f -exec chmod a-w -- {} + || exit 1

rm -f -- readonly_dirs readonly_dirs.*
: > readonly_dirs
mapfile -d '' -t parts < writable_parts || exit 1
# A whole writable tree has no read-only folder.
[ "${parts[0]-}" = . ] || while IFS= read -r -d '' rec; do
    mode=${rec%% *} path=${rec#* }
    [ -n "$path" ] || path=.
    printf '%s\0' "$path" >> readonly_dirs
    printf '%s\0' "$path" >> "readonly_dirs.$mode"
done < <(cd shared && find -P . -type d -printf '%m %P\0')

mkdir -p pool || exit 1
first=pool/r.sealed.$$
cp -dRl --preserve=mode,timestamps -- shared "$first" \
    && cp -dR --preserve=mode,timestamps --reflink=auto -- writable/. "$first/" || exit 1
snapshot "$first" reference || exit 1
snapshot shared shared.reference || exit 1
# The writable parts alone ("./<path>"), as each task snapshots its replica's.
starts=("${parts[@]/#/./}")
[ "${parts[0]-}" = . ] && starts=(.)
(cd -- "$first" && exec find -P "${starts[@]}" \( -type d -printf 'd 0 0 0 %p\0' \) -o -printf '%y %s %T@ %m %p\0') \
    | LC_ALL=C sort -z > writable.reference || exit 1
printf '%s\n' "$digest" > sealed
