#!/usr/bin/env bash
# Turns a fresh mount + UTS namespace into a separate "host" of the test deployment, then
# runs a command in it. Run by tests/deployment/hosts.py as
#   unshare --mount --uts --fork --propagation private -- bash enter_host.sh \
#       NAME DISK HOSTS_FILE HIDE_DIR [--share PATH]... -- COMMAND...
# where
#   NAME        the host name (`hostname`, socket.gethostname(), the task instance's hostname)
#   DISK        a folder that becomes this host's local disk, seen inside at /tmp/locusts-host
#               (kept across restarts of the host, like a real disk; /tmp itself is not)
#   HOSTS_FILE  an /etc/hosts that resolves NAME (so getfqdn() answers at once)
#   HIDE_DIR    the folder holding every host's disk: an empty tmpfs covers it inside, so a
#               host cannot reach another host's disk through the harness's path
#   --share P   a path under /tmp that stays shared with the main host (the test cluster's
#               state folder with the SSH key: deployed on every host in real life)
# Mounts made here live and die with the namespace: nothing to unmount afterwards.
set -euo pipefail

name=$1 disk=$2 hosts_file=$3 hide_dir=$4
shift 4
shares=()
while [[ $# -gt 0 && $1 != "--" ]]; do
    [[ $1 == "--share" && $# -ge 2 ]] || { echo "enter_host.sh: expected --share PATH or --, got $1" >&2; exit 2; }
    shares+=("$2")
    shift 2
done
[[ ${1:-} == "--" ]] || { echo "enter_host.sh: missing -- COMMAND" >&2; exit 2; }
shift
[[ $# -gt 0 ]] || { echo "enter_host.sh: missing COMMAND" >&2; exit 2; }

hostname "$name"

# Shared paths under /tmp would vanish under the private /tmp: bind each to a staging
# mount point on the host's disk first, then back into place once /tmp is private.
stage=$disk/.shared-mounts
mkdir -p "$stage"
for i in "${!shares[@]}"; do
    mkdir -p "$stage/$i"
    mount --bind "${shares[$i]}" "$stage/$i"
done

mount -t tmpfs -o mode=1777,size=2g "locusts-tmp-$name" /tmp
mkdir /tmp/locusts-host
mount --bind "$disk" /tmp/locusts-host

for i in "${!shares[@]}"; do
    mkdir -p "${shares[$i]}"
    mount --move "$stage/$i" "${shares[$i]}"
done

mount --bind "$hosts_file" /etc/hosts
mount -t tmpfs -o mode=0755,size=1m "locusts-hidden-$name" "$hide_dir"

cd /tmp/locusts-host
exec "$@"
