"""The command template: handles `<id>`, `<shared>NAME`, `<argK>` become shell variable references.

The values (ids, argument values, paths) never enter the command text: each task's
script assigns them to variables with single-quoted literals and the command only
references the variables. Shell code cannot be injected through a value, whatever
characters it holds.

A reference is written to fit its quoting context: `"${LOCUSTS_ID}"` outside quotes
(no word splitting, no globbing) and `${LOCUSTS_ID}` inside double quotes. Inside single
quotes nothing can be expanded, so a handle there is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from airflow_provider_locusts.swarm.errors import SwarmSpecError

_HANDLE = re.compile(r"<id>|<shared>([A-Za-z_][A-Za-z0-9_]*)?|<arg(\d+)>")
# What a command sees differently in a forked subshell of its manager than in a bash of its
# own: `$$` (the manager's pid, shared by its tasks) and `$PPID`.
_OWN_SHELL_NEEDED = re.compile(r"\$\$|\$\{\$\}|PPID")

ID_VAR = "LOCUSTS_ID"


def shared_var(name: str) -> str:
    return f"LOCUSTS_SHARED_{name}"


def arg_var(k: int) -> str:
    return f"LOCUSTS_ARG_{k}"


@dataclass(frozen=True)
class CommandTemplate:
    """A user command, parsed once; `script` is the shell text every task runs."""

    source: str
    script: str
    shared_names: frozenset[str]
    max_arg_index: int | None
    uses_id: bool

    @property
    def needs_own_shell(self) -> str | None:
        """Why each attempt must run in a bash of its own, or None when a subshell of the
        manager does the same (cheaper: no new bash per task)."""
        # The script, not the source: what the subshell would run (a Custom Environment's
        # tasks run the user's command in a bash of their own anyway).
        if _OWN_SHELL_NEEDED.search(self.script):
            return "the command reads $$ or $PPID, which must be the task's own"
        return None

    @classmethod
    def parse(cls, command: str, shared_names: set[str]) -> CommandTemplate:
        scanner = _QuoteScanner(command)
        out: list[str] = []
        used_shared: set[str] = set()
        max_arg: int | None = None
        uses_id = False
        while not scanner.at_end():
            m = _HANDLE.match(command, scanner.pos) if command[scanner.pos] == "<" else None
            if m is None:
                out.append(scanner.advance())
                continue
            token = m.group(0)
            context = scanner.context()
            if context == "single":
                raise SwarmSpecError(
                    f"command has {token} inside single quotes (or a quoted here-document), where the shell "
                    "expands nothing: move it outside the quotes or use double quotes."
                )
            if token == "<id>":
                var = ID_VAR
                uses_id = True
            elif token.startswith("<shared>"):
                name = m.group(1)
                if not name:
                    raise SwarmSpecError("command has <shared> without a name after it: write <shared>NAME with NAME a key of shared_inputs.")
                if name not in shared_names:
                    known = ", ".join(sorted(shared_names)) or "none"
                    raise SwarmSpecError(f"command uses <shared>{name} but shared_inputs has no {name!r} (known: {known}).")
                used_shared.add(name)
                var = shared_var(name)
            else:
                k = int(m.group(2))
                max_arg = k if max_arg is None else max(max_arg, k)
                var = arg_var(k)
            # Inside double quotes (or a here-document body) the quotes would be literal.
            out.append("${%s}" % var if context == "double" else '"${%s}"' % var)
            scanner.pos = m.end()
        scanner.check_closed()
        return cls(
            source=command,
            script="".join(out),
            shared_names=frozenset(used_shared),
            max_arg_index=max_arg,
            uses_id=uses_id,
        )


class _QuoteScanner:
    """Tracks bash's quoting context through a command, one character at a time.

    Contexts nest: plain text, 'single', "double", $( command substitution ) and
    `backticks` (both plain inside, even within double quotes), # comments, and
    here-document bodies (like double quotes, or like single quotes when the
    delimiter is quoted).
    """

    def __init__(self, text: str):
        self.text = text
        self.pos = 0
        self.stack: list[list] = [["plain", 0]]  # [kind, open parentheses] per frame
        self.pending_heredocs: list[tuple[str, bool, bool]] = []  # (delimiter, quoted, strip tabs)

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def context(self) -> str:
        kind = self.stack[-1][0]
        if kind in ("single", "heredoc-quoted"):
            return "single"
        if kind in ("double", "heredoc"):
            return "double"
        return "plain"

    def _push(self, kind: str) -> None:
        self.stack.append([kind, 0])

    def advance(self) -> str:
        """Consume what starts at pos (one character, or a pair that changes context); return it."""
        text, i = self.text, self.pos
        ch = text[i]
        two = text[i : i + 2]
        frame = self.stack[-1]
        kind = frame[0]
        if kind == "single":
            if ch == "'":
                self.stack.pop()
            return self._take(1)
        if kind == "comment":
            if ch == "\n":
                self.stack.pop()
                return self._newline()
            return self._take(1)
        if kind in ("heredoc", "heredoc-quoted"):
            return self._heredoc_line()
        if ch == "\\":
            return self._take(2)
        if kind == "double":
            if ch == '"':
                self.stack.pop()
            elif two == "$(":
                self._push("subst")
                return self._take(2)
            elif ch == "`":
                self._push("backtick")
            return self._take(1)
        # plain, subst or backtick: shell code
        if kind == "backtick" and ch == "`":
            self.stack.pop()
        elif ch == "'":
            self._push("single")
        elif ch == '"':
            self._push("double")
        elif two == "$(":
            self._push("subst")
            return self._take(2)
        elif ch == "`":
            self._push("backtick")
        elif ch == "(" and kind == "subst":
            frame[1] += 1
        elif ch == ")" and kind == "subst":
            if frame[1] == 0:
                self.stack.pop()
            else:
                frame[1] -= 1
        elif ch == "#" and (i == 0 or text[i - 1] in " \t\n;&|("):
            self._push("comment")
        elif two == "<<" and text[i : i + 3] != "<<<":
            return self._heredoc_operator()
        elif ch == "\n":
            return self._newline()
        return self._take(1)

    def _take(self, n: int) -> str:
        piece = self.text[self.pos : self.pos + n]
        self.pos += n
        return piece

    def _newline(self) -> str:
        piece = self._take(1)
        # Here-document bodies start on the line after their operator, in order.
        for delimiter, quoted, strip in reversed(self.pending_heredocs):
            self.stack.append(["heredoc-quoted" if quoted else "heredoc", (delimiter, strip)])
        self.pending_heredocs.clear()
        return piece

    def _heredoc_operator(self) -> str:
        m = re.compile(r"<<(-?)[ \t]*(?:'([^']*)'|\"([^\"]*)\"|\\?([^\s;&|<>()]+))").match(self.text, self.pos)
        if not m:
            return self._take(2)
        strip, single, double, bare = m.groups()
        delimiter = single if single is not None else double if double is not None else bare
        quoted = single is not None or double is not None or self.text[m.start() + 2 + len(strip) :].lstrip(" \t").startswith("\\")
        self.pending_heredocs.append((delimiter, quoted, bool(strip)))
        return self._take(m.end() - self.pos)

    def _heredoc_line(self) -> str:
        """At the start of a body line: the delimiter line ends the body; otherwise consume one character."""
        delimiter, strip = self.stack[-1][1]
        at_line_start = self.pos == 0 or self.text[self.pos - 1] == "\n"
        if at_line_start:
            end = self.text.find("\n", self.pos)
            line = self.text[self.pos : end if end >= 0 else len(self.text)]
            if (line.lstrip("\t") if strip else line) == delimiter:
                self.stack.pop()
                return self._take(len(line))
        if self.text[self.pos] == "\\" and self.stack[-1][0] == "heredoc":
            return self._take(2)
        return self._take(1)

    def check_closed(self) -> None:
        kind = self.stack[-1][0]
        if kind in ("single", "double", "subst", "backtick"):
            names = {"single": "single quote", "double": "double quote", "subst": "$( substitution", "backtick": "backtick"}
            raise SwarmSpecError(f"command has an unclosed {names[kind]}: close it so the shell can parse the command.")
