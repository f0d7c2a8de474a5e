"""Trees for the Custom Environment's tests: made on disk, and fingerprinted to prove a swarm
left the user's tree exactly as it was (names, types, modes, times, bytes, link targets)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

# Names a tree may hold that a shell would mangle if a name ever reached shell code.
HOSTILE_NAMES = [
    "with space.txt",
    "it's \"quoted\".txt",
    "$(touch PWNED).txt",
    "`touch PWNED2`.txt",
    "new\nline.txt",
    "-leading-dash.txt",
    "--rf",
    "back\\slash*?[x].txt",
    "tab\there.txt",
]


def fingerprint(root: Path) -> dict[str, tuple]:
    """Every entry below `root`: (type, mode, mtime_ns, sha256 of the bytes or the link's target)."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            st = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("l", 0, st.st_mtime_ns, os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("d", stat.S_IMODE(st.st_mode), st.st_mtime_ns, "")
            else:
                found[rel] = ("f", stat.S_IMODE(st.st_mode), st.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    return found


def make_tree(root: Path, files: dict[str, bytes | str], folders: tuple[str, ...] = (), links: dict[str, str] | None = None) -> Path:
    """Folders, files (text or bytes) and links below `root`."""
    root.mkdir(parents=True, exist_ok=True)
    for folder in folders:
        (root / folder).mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    for rel, target in (links or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, root / rel)
    return root


def read_manifest(path: str | Path) -> dict[str, dict]:
    """The manifest's entries by task id."""
    return {entry["id"]: entry for entry in map(json.loads, Path(path).read_text().splitlines())}


def files_below(root: Path) -> dict[str, bytes]:
    """Regular files below `root` (relative path → bytes); fails on any link or special file."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            st = path.lstat()
            assert not stat.S_ISLNK(st.st_mode), f"a link was collected: {path} -> {os.readlink(path)}"
            if stat.S_ISREG(st.st_mode):
                found[str(path.relative_to(root))] = path.read_bytes()
            else:
                assert stat.S_ISDIR(st.st_mode), f"a special file was collected: {path}"
    return found


def change_lists(entry: dict) -> dict:
    """A manifest entry's `changes` without the phase timings (checked here: each a duration)."""
    changes = dict(entry["changes"])
    seconds = changes.pop("seconds")
    assert set(seconds) == {"replica", "command", "after"} and all(0 <= v < 600 for v in seconds.values()), seconds
    return changes
