"""The resolved cache: a set of spec texts resolved before is not validated again.

A no-op `clawker diff` of 100 agents spent a third of its time importing pydantic and building
the document models, to validate texts it had validated the run before. An entry is keyed by
everything resolution reads besides the file system: each input's name, path and text, the
protected paths, `~` and the account database (specs.workspace_policy), and the code that
resolves (this package, pydantic, the public suffix list). The file system's part, what each
workspace path is and where a key file really lies, is recorded in the entry and asked again
when it is read: an entry whose workspaces changed is not used. Only a load without errors is
kept, so an error is always found and reported afresh.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from specs.documents import SpecText
from specs.resolved import DesiredAgent, from_plain, to_plain
from specs.store import MarshalStore, file_identity, package_origin
from specs.workspace_policy import Looked, WorkspaceFacts, look_at, policy_inputs

__all__ = ["Resolution", "SetCache"]


@dataclass(frozen=True)
class Resolution:
    """What a set of texts resolves to (the SpecSet without what reading the inputs adds)."""

    agents: tuple[DesiredAgent, ...]
    projects: tuple[str, ...]
    defaults: Mapping[str, DesiredAgent] = field(default_factory=dict)


class SetCache:
    """The entry for one set of texts, in the spec cache's directory."""

    FORMAT = b"clawker-specset-1"

    def __init__(self, directory: str, texts: Sequence[SpecText], protected: Sequence[str]) -> None:
        digest = hashlib.sha256(self.FORMAT)
        for part in (*_code_identity(), policy_inputs(), *protected):
            digest.update(b"\0" + part.encode("utf-8", "surrogatepass"))
        for text in texts:
            for part in (text.name, text.path or "", text.base_dir, text.text):
                digest.update(b"\1" + part.encode("utf-8", "surrogatepass"))
        self.store = MarshalStore(directory, "set-" + digest.hexdigest())

    def read(self) -> Resolution | None:
        """The resolution kept for these texts, if the file system still looks as it did."""
        entry = self.store.read()
        if not isinstance(entry, dict):
            return None
        try:
            for path, *facts in entry["workspaces"]:
                if look_at(path) != WorkspaceFacts(*facts):
                    return None
            for path, real in entry["real_paths"]:
                if os.path.realpath(path) != real:
                    return None
            return Resolution(
                agents=tuple(from_plain(DesiredAgent, agent) for agent in entry["agents"]),
                projects=tuple(entry["projects"]),
                defaults={
                    name: from_plain(DesiredAgent, agent)
                    for name, agent in entry["defaults"].items()
                },
            )
        except (KeyError, TypeError, ValueError):  # an entry of another shape: resolve again
            return None

    def write(self, resolution: Resolution, looked: Looked) -> None:
        entry: dict[str, Any] = {
            "agents": tuple(to_plain(agent) for agent in resolution.agents),
            "projects": resolution.projects,
            "defaults": {name: to_plain(agent) for name, agent in resolution.defaults.items()},
            "workspaces": tuple(
                (path, *facts) for (path, _), (facts, _) in sorted(looked.workspaces.items())
            ),
            "real_paths": tuple(sorted(looked.real_paths.items())),
        }
        self.store.write(entry)


@functools.cache
def _code_identity() -> tuple[str, ...]:
    """The files whose change could resolve the same texts differently."""
    here = os.path.dirname(os.path.abspath(__file__))
    ours = sorted(name for name in os.listdir(here) if name.endswith(".py"))
    theirs = [package_origin(p) for p in ("pydantic", "pydantic_core", "publicsuffixlist")]
    return tuple(file_identity(p) for p in (*(os.path.join(here, n) for n in ours), *theirs))
