"""The commands a swarm's host runs for the Airflow side, each as (script, arguments) plus a
parser of what it prints: one definition used by the blocking callers (operator, api-server)
and the asynchronous one (trigger), whatever carries the command (a local subprocess, SSH).

No value ever enters a script: paths and names travel as arguments or on stdin.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from airflow_provider_locusts.swarm.errors import SwarmExecutionError
from airflow_provider_locusts.swarm.layout import SwarmLayout
from airflow_provider_locusts.swarm.render import host_script
from airflow_provider_locusts.swarm.shell import EXIT_NO_SWARM_ROOT, CommandResult

# Runs the swarm's own poll.sh (staged in exec/) with the offsets as arguments; a root that
# is not there (or not visible from where the poll runs) exits EXIT_NO_SWARM_ROOT.
POLL_COMMAND = (
    'script=$1; shift; if [ ! -r "$script" ]; then '
    'echo "no swarm root here: ${script%/exec/poll.sh} not found on host $HOSTNAME" >&2; '
    f"exit {EXIT_NO_SWARM_ROOT}; fi; "
    'exec bash "$script" "$@"'
)


# Prints the files named (relative to the root) framed as "@file NAME SIZE\n<bytes>", or
# "@missing NAME\n" (every file is missing before the root is made); files are read whole,
# so only small ones (ledger, settings) belong here.
READ_FILES_SCRIPT = (
    'root=$1; shift; for name; do f="$root/$name"; if [ -f "$f" ]; then '
    'printf "@file %s %s\\n" "$name" "$(stat -c %s -- "$f")"; cat -- "$f"; '
    'else printf "@missing %s\\n" "$name"; fi; done'
)

# The last bytes of one of a task's logs. The folder comes from the task table, never from
# a request, and is checked against the shape staging gives folders.
LOG_TAIL_SCRIPT = (
    f'root=$1 folder=$2 name=$3 n=$4; [ -d "$root/work" ] || {{ echo "no swarm root here: $root not found on host $HOSTNAME" >&2; exit {EXIT_NO_SWARM_ROOT}; }}; '
    'f="$root/work/$folder/$name"; [ -f "$f" ] || exit 0; '
    'printf "@size %s\\n" "$(stat -c %s -- "$f")"; tail -c "$n" -- "$f"'
)

# Removes task folders wholesale (NUL-separated on stdin, relative to work/) before they
# are staged again.
CLEAR_FOLDERS_SCRIPT = 'cd -- "$1" 2>/dev/null || exit 0; xargs -0 -r rm -rf --'

# Removes the empty logs of task folders (NUL-separated on stdin, relative to work/): what a
# manager does itself, in batches, unless it was killed first.
DROP_EMPTY_LOGS_SCRIPT = (
    'cd -- "$1" 2>/dev/null || exit 0; while IFS= read -r -d "" d; do for f in "$d/stdout.txt" "$d/stderr.txt"; do '
    '[ -f "$f" ] && [ ! -s "$f" ] && printf "%s\\0" "$f"; done; done | xargs -0 -r rm -f --'
)

# One line of the task table: the row of task INDEX is line INDEX + 1 (staging writes the
# table in index order). Read with sed, which stops at that line; bounded in bytes.
TASK_ROW_SCRIPT = (
    f'root=$1 line=$2; table="$root/exec/tasks.jsonl"; [ -f "$table" ] || {{ echo "no swarm root here: $root not found on host $HOSTNAME" >&2; exit {EXIT_NO_SWARM_ROOT}; }}; '
    'sed -n "${line}{p;q}" -- "$table" | head -c 1048576'
)

# A file of the root (results.jsonl) unless it is still the version the caller holds: its
# fingerprint (size, mtime, inode; files are replaced, never rewritten in place) is taken
# of the opened file, so the bytes that follow are that version. Prints "@missing",
# "@same FP", "@toolarge FP" (over MAX bytes), or "@file FP gzip|plain" and the bytes.
READ_CHANGED_SCRIPT = (
    f'root=$1 name=$2 known=$3 max=$4 pack=$5; [ -d "$root/exec" ] || {{ echo "no swarm root here: $root not found on host $HOSTNAME" >&2; exit {EXIT_NO_SWARM_ROOT}; }}; '
    'exec 3< "$root/$name" 2>/dev/null || { echo @missing; exit 0; }; '
    'fp=$(stat -L -c "%s-%Y-%i" /dev/fd/3) || exit 1; '
    'if [ "$fp" = "$known" ]; then echo "@same $fp"; exit 0; fi; '
    'if [ "${fp%%-*}" -gt "$max" ]; then echo "@toolarge $fp"; exit 0; fi; '
    'if [ "$pack" = gzip ] && command -v gzip >/dev/null; then echo "@file $fp gzip"; exec gzip -1 -c <&3; fi; '
    'echo "@file $fp plain"; exec cat <&3'
)

LOG_NAMES = ("stdout.txt", "stderr.txt")
_FOLDER = re.compile(r"^batch_[0-9]+/task_[A-Za-z0-9._+-]+$")


def check_folder(folder: str) -> str:
    """A task folder as staging names them (batch_<k>/task_<safe id>): nothing else reaches a path."""
    if not _FOLDER.match(folder):
        raise SwarmExecutionError(f"unexpected task folder {folder!r} in the task table")
    return folder


def poll_command(layout: SwarmLayout, offsets: dict[str, int | None]) -> tuple[str, list[str]]:
    args = [layout.poll_script]
    for name, offset in offsets.items():
        args += [name, "-" if offset is None else str(offset)]
    return POLL_COMMAND, args


def _with_scheduler_functions(name: str) -> str:
    """A host script that sources the root's exec/scheduler.sh, after SLURM's functions: the
    scheduler of roots staged before each root recorded its own."""
    return host_script("scheduler_slurm.sh") + "\n" + host_script(name)


@dataclass(frozen=True)
class PollRequest:
    """One swarm's part of a waiting poll: its poll.sh and (manager, offset) pairs."""

    poll_script: str
    pairs: tuple[str, ...]  # manager, offset, manager, offset, ...

    @classmethod
    def of(cls, layout: SwarmLayout, offsets: dict[str, int | None]) -> PollRequest:
        _, args = poll_command(layout, offsets)
        return cls(args[0], tuple(args[1:]))


@dataclass(frozen=True)
class WaitedPoll:
    """What a waiting poll brought back for one swarm: its poll.sh's result, how long the host
    waited, and whether this swarm was worth reporting (its round may be over)."""

    result: CommandResult
    waited: float
    worth_reporting: bool


def poll_wait_command(requests: list[PollRequest], wait: float) -> tuple[str, list[str]]:
    """One command polling every swarm of `requests`, after waiting on the host up to `wait`
    seconds for one of them to be worth reporting (see templates/poll_wait.sh)."""
    args = [str(max(0, int(wait * 1000)))]
    for request in requests:
        args += [request.poll_script, str(len(request.pairs) // 2), *request.pairs]
    return host_script("poll_wait.sh"), args


def parse_poll_wait(result: CommandResult, count: int) -> list[WaitedPoll]:
    """Split a waiting poll's output into one WaitedPoll per request, in order."""
    result.check("polling the swarm")
    data = result.stdout
    end = data.index(b"\n")
    header = data[:end].split()
    if header[:1] != [b"@waited"]:
        raise ValueError(f"unexpected first line of a poll: {data[:end]!r}")
    waited = int(header[1]) / 1000
    pos = end + 1
    polls = []
    for _ in range(count):
        end = data.index(b"\n", pos)
        fields = data[pos:end].split()
        if fields[:1] != [b"@result"]:
            raise ValueError(f"unexpected line in a poll: {data[pos:end]!r}")
        rc, n_out, n_err, worth = (int(f) for f in fields[1:5])
        pos = end + 1
        out, err = data[pos : pos + n_out], data[pos + n_out : pos + n_out + n_err]
        pos += n_out + n_err
        polls.append(WaitedPoll(CommandResult(rc, out, err), waited, bool(worth)))
    return polls


def cancel_command(layout: SwarmLayout, managers: list[str]) -> tuple[str, list[str]]:
    return _with_scheduler_functions("cancel.sh"), [layout.exec_dir, *managers]


@dataclass(frozen=True)
class CancelReport:
    """What cancel.sh did to each manager."""

    outcomes: dict[str, str]  # manager → finished | stopped | job-cancelled | not-running | not-started
    problems: str  # what the host said about managers it could not stop

    @property
    def stopped(self) -> list[str]:
        return [m for m, o in self.outcomes.items() if o in ("stopped", "job-cancelled")]

    def line(self) -> str:
        parts = [f"{m}: {o}" for m, o in self.outcomes.items()]
        return "; ".join(parts) or "no manager"


def parse_cancel_output(returncode: int, stdout: bytes, stderr: bytes, root: str) -> CancelReport:
    """The report of a successful cancel; an error naming what could not be stopped otherwise."""
    outcomes = {}
    for line in stdout.decode(errors="replace").splitlines():
        manager, _, outcome = line.partition(" ")
        if outcome:
            outcomes[manager] = outcome
    problems = stderr.decode(errors="replace").strip()
    if returncode == EXIT_NO_SWARM_ROOT:
        raise SwarmExecutionError(f"cancelling the swarm failed: {problems}; nothing was stopped")
    if returncode != 0:
        done = "; ".join(f"{m}: {o}" for m, o in outcomes.items())
        raise SwarmExecutionError(
            f"cancelling the swarm in {root} failed for some managers: {problems or f'exit code {returncode}'}"
            + (f" (the others: {done})" if done else "")
        )
    return CancelReport(outcomes, problems)


def read_files_command(root: str, names: list[str]) -> tuple[str, list[str]]:
    return READ_FILES_SCRIPT, [root, *names]


def parse_read_files(data: bytes) -> dict[str, bytes | None]:
    files: dict[str, bytes | None] = {}
    pos = 0
    while pos < len(data):
        end = data.index(b"\n", pos)
        header = data[pos:end].decode(errors="replace").split(" ")
        pos = end + 1
        if header[0] == "@file":
            size = int(header[2])
            files[header[1]] = data[pos : pos + size]
            pos += size
        elif header[0] == "@missing":
            files[header[1]] = None
        else:
            raise ValueError(f"unexpected line in a file listing: {header!r}")
    return files


def log_tail_command(layout: SwarmLayout, folder: str, name: str, max_bytes: int) -> tuple[str, list[str]]:
    if name not in LOG_NAMES:
        raise ValueError(f"unknown log {name!r}: one of {', '.join(LOG_NAMES)}")
    return LOG_TAIL_SCRIPT, [layout.root, check_folder(folder), name, str(int(max_bytes))]


@dataclass(frozen=True)
class LogTail:
    size: int | None  # None: the log does not exist (empty logs may not be kept)
    data: bytes

    @property
    def truncated(self) -> bool:
        return self.size is not None and self.size > len(self.data)


def parse_log_tail(data: bytes) -> LogTail:
    if not data.startswith(b"@size "):
        return LogTail(None, b"")
    end = data.index(b"\n")
    return LogTail(int(data[6:end]), data[end + 1 :])


def diagnose_command(layout: SwarmLayout, managers: list[str], lines: int = 15) -> tuple[str, list[str]]:
    return _with_scheduler_functions("diagnose.sh"), [layout.exec_dir, str(lines), *managers]


@dataclass(frozen=True)
class ManagerDiagnosis:
    """What became of a lost manager."""

    name: str
    started: bool  # it wrote its pid: the manager script ran
    ran_tasks: bool  # it recorded at least one task event
    job_id: str | None
    job_state: str | None
    reason: str | None
    exit_code: str | None
    output: str  # the last lines of its output file

    def line(self) -> str:
        if self.job_id:
            facts = [f"job {self.job_id} {self.job_state or 'state unknown'}"]
            facts += [f"{k}={v}" for k, v in (("Reason", self.reason), ("ExitCode", self.exit_code)) if v and v != "None"]
            what = facts[0] + (f" ({', '.join(facts[1:])})" if facts[1:] else "")
        else:
            what = "started directly" if self.started else "never started"
        output = " | ".join(line.strip() for line in self.output.splitlines() if line.strip())
        return f"{self.name}: {what}" + (f"; its output ends with: {output}" if output else "; no output")


def parse_diagnosis(data: bytes) -> list[ManagerDiagnosis]:
    found = []
    pos = 0
    while pos < len(data):
        end = data.index(b"\n", pos)
        header = data[pos:end].decode(errors="replace").split(" ")
        pos = end + 1
        if header[0] != "@manager":
            raise ValueError(f"unexpected line in a diagnosis: {header!r}")
        name, started, ran, job, state, reason, code = header[1:8]
        end = data.index(b"\n", pos)
        size = int(data[pos:end].split(b" ")[1])
        pos = end + 1
        output = data[pos : pos + size].decode(errors="replace")
        pos += size
        none = lambda v: None if v == "-" else v  # noqa: E731
        found.append(ManagerDiagnosis(name, started == "1", ran == "1", none(job), none(state), none(reason), none(code), output))
    return found


def task_row_command(layout: SwarmLayout, index: int) -> tuple[str, list[str]]:
    """The command printing the task table's row of task `index` (an integer, never text from
    elsewhere)."""
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"a task index is an integer >= 0, not {index!r}")
    return TASK_ROW_SCRIPT, [layout.root, str(index + 1)]


def parse_task_row(data: bytes, index: int):
    """The TaskRow of task `index` from what task_row_command printed; None when the table has
    no such task. Its folder is checked (check_folder) before anything uses it."""
    from airflow_provider_locusts.swarm.table import parse_task_table

    text = data.decode("utf-8", errors="surrogateescape").strip()
    if not text:
        return None
    (row,) = parse_task_table([text])
    if row.index != index:
        raise SwarmExecutionError(f"line {index + 1} of the task table holds task {row.index}, not {index}")
    check_folder(row.folder)
    return row


def read_changed_command(root: str, name: str, known: str | None, max_bytes: int, gzip: bool) -> tuple[str, list[str]]:
    """The command reading `name` (relative to the root) unless its fingerprint is `known`."""
    if name not in ("exec/results.jsonl",):
        raise ValueError(f"not a file the view reads: {name!r}")
    return READ_CHANGED_SCRIPT, [root, name, known or "-", str(int(max_bytes)), "gzip" if gzip else "plain"]


@dataclass(frozen=True)
class ChangedFile:
    status: str  # missing | same | toolarge | file
    fingerprint: str | None = None
    data: bytes = b""


def parse_read_changed(data: bytes) -> ChangedFile:
    end = data.find(b"\n")
    header = data[: end if end >= 0 else len(data)].decode(errors="replace").split()
    kind = header[0] if header else ""
    if kind == "@missing":
        return ChangedFile("missing")
    if kind in ("@same", "@toolarge") and len(header) == 2:
        return ChangedFile(kind[1:], header[1])
    if kind == "@file" and len(header) == 3:
        body = data[end + 1 :]
        if header[2] == "gzip":
            import gzip

            body = gzip.decompress(body)
        return ChangedFile("file", header[1], body)
    raise ValueError(f"unexpected answer when reading a file of the swarm root: {header!r}")


# Hidden name a folder being removed in the background has, next to where it was (see
# templates/remove_folder.sh): .<name>.removing-<10 letters or digits>.
REMOVING_PATTERN = re.compile(r"^\.(?P<name>.+)\.removing-[A-Za-z0-9]{10}$")


def remove_folder_command(folder: str, kind: str) -> tuple[str, list[str]]:
    """The command removing a swarm root (kind "root": refused unless it holds the files every
    swarm root has) or a local copy of one ("copy"): renamed at once to a hidden sibling, its
    files deleted by a detached process the command does not wait for."""
    if kind not in ("root", "copy"):
        raise ValueError(f"unknown kind of folder to remove: {kind!r}")
    return host_script("remove_folder.sh"), [folder, kind]


@dataclass(frozen=True)
class Removal:
    """What remove_folder.sh did: renamed the folder to `hidden` (its files going in the
    background), or removed it in place (hidden None, in_place), or found nothing there."""

    folder: str
    hidden: str | None
    in_place: bool = False
    absent: bool = False
    leftovers: int = 0  # earlier removals found unfinished next to it (finished in the background too)

    def line(self) -> str:
        if self.absent:
            return f"{self.folder} was already gone"
        what = (
            f"{self.folder} removed in place"
            if self.in_place
            else f"{self.folder} renamed to {posixpath.basename(self.hidden or '')}, its files deleted in the background"
        )
        if self.leftovers:
            what += f"; {self.leftovers} unfinished earlier removal(s) next to it finished too"
        return what


def parse_removal(folder: str, data: bytes) -> Removal:
    hidden, in_place, absent, leftovers = None, False, False, 0
    for line in data.decode("utf-8", "surrogateescape").splitlines():
        word, _, rest = line.partition(" ")
        if word == "@removing":  # its new name, in the same folder
            bare = folder.rstrip("/")
            hidden = posixpath.join(posixpath.dirname(bare) or "/" if "/" in bare else ".", rest)
        elif word == "@removed":
            in_place = True
        elif word == "@absent":
            absent = True
        elif word == "@leftovers":
            leftovers = int(rest)
        else:
            raise ValueError(f"unexpected line when removing {folder}: {line!r}")
    if hidden is None and not in_place and not absent:
        raise ValueError(f"removing {folder} said nothing of what it did")
    return Removal(folder, hidden, in_place, absent, leftovers)
