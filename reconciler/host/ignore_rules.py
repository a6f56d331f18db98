"""`.clawkerignore`: gitignore syntax, so users write the patterns they already know."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["IgnoreRules"]

IGNORE_FILE = ".clawkerignore"


@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool


def _glob_to_regex(body: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if body.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif body.startswith("/**", i) and i + 3 == len(body):
            out.append("/.*")
            i += 3
        elif body.startswith("**", i):
            out.append(".*")
            i += 2
        elif ch == "*":
            out.append("[^/]*")
            i += 1
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "[":
            end = body.find("]", i + 1)
            if end == -1:
                out.append(re.escape(ch))
                i += 1
            else:
                cls = body[i + 1 : end]
                if cls.startswith("!"):
                    cls = "^" + cls[1:]
                out.append(f"[{cls}]")
                i = end + 1
        elif ch == "\\" and i + 1 < len(body):
            out.append(re.escape(body[i + 1]))
            i += 2
        else:
            out.append(re.escape(ch))
            i += 1
    return "".join(out)


class IgnoreRules:
    """Ordered gitignore rules; the last rule that matches a path decides."""

    def __init__(self, lines: list[str]) -> None:
        self._rules: list[_Rule] = []
        for raw in lines:
            line = raw.rstrip("\n").rstrip(" ")
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            if negate or line.startswith(("\\!", "\\#")):
                line = line[1:]
            dir_only = line.endswith("/")
            line = line.rstrip("/")
            if not line:
                continue
            anchored = "/" in line
            body = _glob_to_regex(line.lstrip("/"))
            prefix = "^" if anchored else "^(?:.*/)?"
            self._rules.append(_Rule(re.compile(prefix + body + "$"), negate, dir_only))

    @classmethod
    def for_directory(cls, root: Path) -> IgnoreRules:
        path = root / IGNORE_FILE
        return cls(path.read_text().splitlines() if path.is_file() else [])

    @property
    def empty(self) -> bool:
        """No rules: nothing is ignored."""
        return not self._rules

    def ignored(self, relpath: str, *, is_dir: bool) -> bool:
        """Whether `relpath` (posix, relative to the workspace root) is excluded."""
        verdict = False
        for rule in self._rules:
            if rule.dir_only and not is_dir:
                continue
            if rule.regex.match(relpath):
                verdict = not rule.negate
        return verdict
