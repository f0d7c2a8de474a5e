"""The per-task table of an ended swarm, from its results (exec/results.jsonl), paged from memory.

A manifest is parsed once into compact columns (arrays of numbers, interned reasons, hosts
and managers; one string per id) and kept in a small cache keyed by swarm, checked against
the file's fingerprint (size, mtime, inode) on the host; at most MAX_MANIFESTS are kept,
least recently used dropped first, each at most MAX_MANIFEST_BYTES on disk. A page (filter
on failed, search by id, sort by duration) is then a walk over these columns: milliseconds
at 100,000 tasks. The three plots are drawn once per manifest, on first request.

Airflow-free: the caller hands in how to read the file (see swarm_reader.py).
"""

from __future__ import annotations

import json
import math
import threading
import time
import weakref
from array import array
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping
from operator import attrgetter
from typing import Any

from airflow_provider_locusts.swarm.host_commands import ChangedFile
from airflow_provider_locusts.www.plots import all_plots

try:  # a dependency of airflow-core: decodes the lines ten times faster than json
    import msgspec
except ImportError:  # pragma: no cover
    msgspec = None

MAX_MANIFESTS = 2
MAX_MANIFEST_BYTES = 200 * 1024 * 1024
RECHECK_SECONDS = 2.0  # a manifest checked this recently is not checked again
PER_PAGE_MAX = 200
SORTS = ("index", "duration", "-duration")
NO_CODE = -1
NO_EXIT = -(2**31)
NAN = float("nan")
CHANGE_KINDS = ("created", "modified", "deleted")
CHANGES_SHOWN = 200  # paths of each kind kept per task for the view (the manifest keeps them all)


class ManifestTooLarge(ValueError):
    pass


if msgspec is not None:

    class _Line(msgspec.Struct, gc=False):
        """The fields of a manifest line the view reads (others are skipped by the decoder)."""

        index: int
        id: str
        state: str
        reason: str | None = None
        exit_code: int | None = None
        attempts: int = 0
        duration: float | None = None
        host: str | None = None
        started_at: float | None = None
        ended_at: float | None = None
        manager: str | None = None
        changes: dict[str, Any] | None = None  # a Custom Environment's changes in the task's replica

    _decode_line = msgspec.json.Decoder(_Line).decode
    _decode_lines = msgspec.json.Decoder(list[_Line]).decode
    _DECODE_ERRORS: tuple[type[BaseException], ...] = (msgspec.DecodeError,)
else:  # pragma: no cover
    _decode_line = _decode_lines = None
    _DECODE_ERRORS = ()


class _Entry:
    """A manifest line read with json, for lines the fast decoder refuses (odd types)."""

    __slots__ = ("attempts", "changes", "duration", "ended_at", "exit_code", "host", "id", "index", "manager", "reason", "started_at", "state")

    def __init__(self, data: dict):
        self.index = _int(data.get("index"), 0)
        self.id = _text(data.get("id")) or ""
        self.state = _text(data.get("state")) or ""
        self.reason = _text(data.get("reason"))
        self.exit_code = _int(data.get("exit_code"), None)
        self.attempts = _int(data.get("attempts"), 0)
        self.duration = _float(data.get("duration"))
        self.host = _text(data.get("host"))
        self.started_at = _float(data.get("started_at"))
        self.ended_at = _float(data.get("ended_at"))
        self.manager = _text(data.get("manager"))
        self.changes = data.get("changes")


def _int(value, default):
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _float(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _text(value) -> str | None:
    """As text that encodes to UTF-8 (an id from non-UTF-8 file names holds lone surrogates)."""
    if value is None:
        return None
    text = str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:  # bytes of a non-UTF-8 name, kept as surrogates: each shows as one "\ufffd"
            text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def _lines(data: bytes) -> list:
    """The manifest's lines decoded: all at once when every line is well-formed (the usual
    case), else line by line, reading odd lines with json and skipping what is not a record."""
    if _decode_lines is not None:
        try:  # one call for the whole file, read as one JSON array
            return _decode_lines(b"[" + data.strip().replace(b"\n", b",") + b"]")
        except _DECODE_ERRORS:
            pass
    lines = data.splitlines()
    decoded = []
    for line in lines:
        if not line.strip():
            continue
        try:
            if _decode_line is None:
                raise ValueError
            decoded.append(_decode_line(line))
        except (ValueError, *_DECODE_ERRORS):
            try:
                parsed = json.loads(line)
            except ValueError:
                continue  # not a manifest line: skipped
            if isinstance(parsed, dict):
                decoded.append(_Entry(parsed))
    return decoded


class _Interned:
    """Distinct values of a column, each stored once; rows hold their code (NO_CODE: None)."""

    def __init__(self, first: tuple[str, ...] = ()):
        self._codes: dict[str, int] = {value: code for code, value in enumerate(first)}

    def column(self, values: list) -> array:
        codes = self._codes
        for value in dict.fromkeys(values):  # the distinct values, in order
            if value is not None and value not in codes:
                codes[value] = len(codes)
        lookup = {**codes, None: NO_CODE}
        return array("l", map(lookup.__getitem__, values))

    @property
    def values(self) -> list[str]:
        return list(self._codes)

    def value(self, code: int) -> str | None:
        return None if code == NO_CODE else self._list[code]

    def freeze(self) -> None:
        self._list = list(self._codes)


def _floats(values) -> array:
    """A column of numbers, NaN for a missing one."""
    return array("d", [NAN if v is None else v for v in values])


def _ints(values: list[int], out_of_range: int) -> array:
    """A column of integers; a value too big for it (no real exit code or attempt count is)
    becomes `out_of_range`."""
    try:
        return array("l", values)
    except OverflowError:
        return array("l", [v if NO_EXIT < v < 2**31 else out_of_range for v in values])


class ManifestTable:
    """One manifest as columns; `page()` answers the view's table requests."""

    def __init__(self, data: bytes, fingerprint: str | None = None):
        self.fingerprint = fingerprint
        self.size = len(data)
        lines = _lines(data)
        # One pass per column (C-level map where no value needs replacing), far quicker than row by row.
        self.index = array("q", map(attrgetter("index"), lines))
        self.ids: list[str] = list(map(attrgetter("id"), lines))
        self.states = _Interned(("succeeded", "failed"))  # codes 0 and 1
        states = self.states.column(list(map(attrgetter("state"), lines)))
        self.state = bytearray(states.tolist()) if len(self.states._codes) < 256 else bytearray(min(c, 255) for c in states)
        self.reasons = _Interned()
        self.reason = self.reasons.column(list(map(attrgetter("reason"), lines)))
        self.exit_code = _ints([NO_EXIT if code is None else code for code in map(attrgetter("exit_code"), lines)], NO_EXIT)
        self.attempts = _ints(list(map(attrgetter("attempts"), lines)), 0)
        self.duration = _floats(map(attrgetter("duration"), lines))
        self.hosts = _Interned()
        self.host = self.hosts.column(list(map(attrgetter("host"), lines)))
        self.started = _floats(map(attrgetter("started_at"), lines))
        self.ended = _floats(map(attrgetter("ended_at"), lines))
        self.managers = _Interned()
        self.manager = self.managers.column(list(map(attrgetter("manager"), lines)))
        # Custom Environment swarms only: each task's changes, briefly (most swarms have none).
        self.changes: dict[int, dict] = {
            p: _brief_changes(c) for p, c in enumerate(map(attrgetter("changes"), lines)) if isinstance(c, Mapping)
        }
        for interned in (self.states, self.reasons, self.hosts, self.managers):
            interned.freeze()
        del lines
        self.failed_positions = array("l", [p for p, s in enumerate(self.state) if s == 1])
        self._lock = threading.Lock()
        self._folded_ids: list[str] | None = None
        self._by_duration: tuple[array, array] | None = None
        self._plots: dict[str, str] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    # --- counts and rows -------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        counts = Counter(self.state)
        result = {"succeeded": counts.get(0, 0), "failed": counts.get(1, 0)}
        for code, n in counts.items():
            if code > 1:
                result[self.states.value(code)] = n
        return result

    def row(self, position: int) -> dict:
        exit_code = self.exit_code[position]
        row = {
            "index": self.index[position],
            "id": self.ids[position],
            "state": self.states.value(self.state[position]),
            "reason": self.reasons.value(self.reason[position]),
            "exit_code": None if exit_code == NO_EXIT else exit_code,
            "attempts": self.attempts[position],
            "duration": _number(self.duration[position]),
            "host": self.hosts.value(self.host[position]),
            "manager": self.managers.value(self.manager[position]),
            "started_at": _number(self.started[position]),
            "ended_at": _number(self.ended[position]),
        }
        if self.changes:
            changes = self.changes.get(position)
            row["changes"] = {kind: changes[kind]["count"] for kind in changes} if changes else None
        return row

    def changes_of(self, index: int) -> dict | None:
        """The task's changes (each kind: its first CHANGES_SHOWN paths and their count), None
        when the swarm records none for it."""
        if not self.changes:
            return None
        try:
            position = self.index.index(index)
        except ValueError:
            return None
        return self.changes.get(position)

    def records(self) -> Iterator[dict]:
        """The rows as plot records (plots.py)."""
        state = self.states.value
        for p in range(len(self.ids)):
            yield {
                "id": self.ids[p],
                "state": state(self.state[p]),
                "duration": _number(self.duration[p]),
                "started_at": _number(self.started[p]),
                "ended_at": _number(self.ended[p]),
                "manager": self.managers.value(self.manager[p]),
            }

    # --- pages ---------------------------------------------------------------------------
    def page(self, page: int = 1, per_page: int = 50, failed_only: bool = False, query: str = "", sort: str = "index") -> dict:
        """One page of rows: failed ones only, ids holding `query` (case-insensitive), in index
        order or by duration (tasks without a duration last either way)."""
        if sort not in SORTS:
            raise ValueError(f"sort must be one of {', '.join(SORTS)}")
        per_page = max(1, min(per_page, PER_PAGE_MAX))
        n = len(self.ids)
        selected = self.failed_positions if failed_only else None
        if query:
            folded = query.casefold()
            ids = self._folded()
            selected = array("l", (p for p in (range(n) if selected is None else selected) if folded in ids[p]))
        if sort == "index":
            ordered = range(n) if selected is None else selected
        else:
            order = self._duration_order(descending=sort == "-duration")
            if selected is None:
                ordered = order
            else:
                wanted = bytearray(n)
                for p in selected:
                    wanted[p] = 1
                ordered = [p for p in order if wanted[p]]
        total = len(ordered)
        pages = max(1, math.ceil(total / per_page))
        page = max(1, min(page, pages))
        start = (page - 1) * per_page
        return {
            "rows": [self.row(p) for p in ordered[start : start + per_page]],
            "total_rows": total,
            "page": page,
            "pages": pages,
            "per_page": per_page,
            "has_changes": bool(self.changes),
        }

    def _folded(self) -> list[str]:
        with self._lock:
            if self._folded_ids is None:
                self._folded_ids = [i.casefold() for i in self.ids]
            return self._folded_ids

    def _duration_order(self, descending: bool = False) -> array:
        """Positions by duration, those without one last either way (each order made once)."""
        with self._lock:
            if self._by_duration is None:
                d = self.duration
                timed = sorted((p for p in range(len(d)) if d[p] == d[p]), key=d.__getitem__)  # NaN != NaN
                untimed = [p for p in range(len(d)) if d[p] != d[p]]
                self._by_duration = (array("l", timed + untimed), array("l", timed[::-1] + untimed))
            return self._by_duration[1 if descending else 0]

    # --- plots ---------------------------------------------------------------------------
    def plots(self) -> dict[str, str]:
        """{"timeline", "completion", "durations"} as SVG, drawn once."""
        with self._lock:
            if self._plots is None:
                self._plots = all_plots(list(self.records()))
            return self._plots


def _brief_changes(changes: Mapping) -> dict:
    """{kind: {"paths": [first CHANGES_SHOWN, as text], "count": n}} for the kinds present:
    created, modified, deleted, then the read-only part's changes and what was not collected."""
    brief = {}
    for kind in (*CHANGE_KINDS, "read_only_changed", "not_collected"):
        value = changes.get(kind)
        if isinstance(value, Mapping):  # path -> what changed / why not collected
            items = [f"{_text(path)} ({_text(why)})" for path, why in sorted(value.items())]
        elif isinstance(value, list):
            items = [_text(path) or "" for path in value]
        else:
            continue
        if items or kind in CHANGE_KINDS:
            brief[kind] = {"paths": items[:CHANGES_SHOWN], "count": len(items)}
    return brief


def _number(value: float) -> float | None:
    """None for a missing (NaN) or unbounded value: JSON has neither."""
    return value if math.isfinite(value) else None


class _KeyLock:
    """A lock per key, alive while some thread uses it (weakly referenced by the cache)."""

    def __init__(self):
        self.lock = threading.Lock()


class _Cached:
    def __init__(self, table: ManifestTable, checked: float):
        self.table = table
        self.checked = checked


class ManifestCache:
    """At most `max_manifests` parsed manifests, each checked against the file's fingerprint
    before use (at most once per `recheck_seconds`)."""

    def __init__(self, max_manifests: int = MAX_MANIFESTS, recheck_seconds: float = RECHECK_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.max_manifests = max_manifests
        self.recheck_seconds = recheck_seconds
        self.clock = clock
        self._entries: OrderedDict[Hashable, _Cached] = OrderedDict()
        self._key_locks: weakref.WeakValueDictionary[Hashable, _KeyLock] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()
        self.parses = 0  # manifests parsed so far (for tests and figures)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, read: Callable[[str | None], ChangedFile]) -> ManifestTable | None:
        """The manifest of `key`, read with `read(known fingerprint)` when it may have changed;
        None when the swarm has none. Raises ManifestTooLarge over MAX_MANIFEST_BYTES."""
        with self._lock:
            key_lock = self._key_locks.get(key)
            if key_lock is None:
                key_lock = self._key_locks[key] = _KeyLock()
        with key_lock.lock:
            with self._lock:
                cached = self._entries.get(key)
                if cached is not None:
                    self._entries.move_to_end(key)
            if cached is not None and self.clock() - cached.checked < self.recheck_seconds:
                return cached.table
            answer = read(cached.table.fingerprint if cached else None)
            if answer.status == "same":
                if cached is None:
                    raise ValueError("the host says the results are unchanged, but none are held here")
                cached.checked = self.clock()
                return cached.table
            if answer.status == "missing":
                self._drop(key)
                return None
            if answer.status == "toolarge":
                self._drop(key)
                size = answer.fingerprint.split("-", 1)[0] if answer.fingerprint else "?"
                raise ManifestTooLarge(f"the swarm's results are {size} bytes, more than the {MAX_MANIFEST_BYTES:,} this view reads")
            table = ManifestTable(answer.data, answer.fingerprint)
            self.parses += 1
            with self._lock:
                self._entries[key] = _Cached(table, self.clock())
                self._entries.move_to_end(key)
                while len(self._entries) > self.max_manifests:
                    self._entries.popitem(last=False)
            return table

    def _drop(self, key: Hashable) -> None:
        with self._lock:
            self._entries.pop(key, None)
