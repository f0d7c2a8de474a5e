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

_HANDLE = re.compile(r"<id>|<shared>([A-Za-z_][A-Za-z0-9_]*)?|<arg(\d+)>")

ID_VAR = "LOCUSTS_ID"


class SwarmSpecError(ValueError):
    """A swarm description that cannot run; the message says what to fix."""


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

    @classmethod
    def parse(cls, command: str, shared_names: set[str]) -> CommandTemplate:
        out: list[str] = []
        used_shared: set[str] = set()
        max_arg: int | None = None
        uses_id = False
        state = "plain"  # plain | single | double
        i = 0
        while i < len(command):
            ch = command[i]
            if ch == "<":
                m = _HANDLE.match(command, i)
                if m:
                    token = m.group(0)
                    if state == "single":
                        raise SwarmSpecError(
                            f"command has {token} inside single quotes, where the shell expands nothing: "
                            "move it outside the quotes or use double quotes."
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
                    out.append("${%s}" % var if state == "double" else '"${%s}"' % var)
                    i = m.end()
                    continue
            out.append(ch)
            if state == "plain":
                if ch == "\\" and i + 1 < len(command):
                    out.append(command[i + 1])
                    i += 1
                elif ch == "'":
                    state = "single"
                elif ch == '"':
                    state = "double"
            elif state == "single":
                if ch == "'":
                    state = "plain"
            elif state == "double":
                if ch == "\\" and i + 1 < len(command):
                    out.append(command[i + 1])
                    i += 1
                elif ch == '"':
                    state = "plain"
            i += 1
        if state != "plain":
            raise SwarmSpecError(f"command has an unclosed {state} quote: close it so the shell can parse the command.")
        return cls(
            source=command,
            script="".join(out),
            shared_names=frozenset(used_shared),
            max_arg_index=max_arg,
            uses_id=uses_id,
        )
