"""Who the agent user is: the owner of the workspace root (docs/workspace.md).

A bind-mounted checkout stays writable, and what the agent makes belongs to the person, only
when the agent runs with the checkout owner's uid and gid; Docker does not translate ids on bind
mounts. The ids are an input of the project image (the user is created at build time), so all
agents of a project must agree on them, in both workspace modes alike: switching a mode later
changes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reconciler.naming import AGENT_GID, AGENT_UID, AgentUser
from specs import DesiredAgent

__all__ = [
    "Owner",
    "ProjectUser",
    "UserConflictError",
    "project_user",
    "user_for",
    "workspace_owner",
]

Owner = tuple[int, int]  # (uid, gid) of a workspace root


class UserConflictError(Exception):
    """Agents of one project have workspaces of different owners, but share one image."""


@dataclass(frozen=True)
class ProjectUser:
    """A project's agent user and, when it could not be the owner's, why (a warning)."""

    user: AgentUser
    warning: str = ""


def workspace_owner(path: str) -> Owner | None:
    """The (uid, gid) owning `path`; None when it cannot be read."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_uid, info.st_gid


def user_for(owner: Owner | None) -> AgentUser:
    """The agent user for a workspace owned by `owner`: the same ids, except that 0 (root) is
    never given to the agent; there, and when the owner is unknown, 1001 stands in."""
    if owner is None:
        return AgentUser()
    uid, gid = owner
    if uid == 0:
        return AgentUser(AGENT_UID, AGENT_GID)
    return AgentUser(uid, gid if gid != 0 else AGENT_GID)


def project_user(
    project: str,
    agents: Sequence[DesiredAgent],
    owner_of: Callable[[str], Owner | None] = workspace_owner,
) -> ProjectUser:
    """The agent user of `project`'s image, from its agents' workspace owners.

    Raises UserConflictError when two agents' workspaces give different users: a project has
    one image, so they cannot both be right.
    """
    found: list[tuple[DesiredAgent, Owner | None, AgentUser]] = []
    for agent in agents:
        owner = owner_of(agent.workspace.path)
        found.append((agent, owner, user_for(owner)))
    first, first_owner, user = found[0]
    for other, other_owner, other_user in found[1:]:
        if other_user != user:
            raise UserConflictError(
                f"agents {first.name} ({first.workspace.path}, owned by "
                f"{_ids(first_owner)}) and {other.name} ({other.workspace.path}, owned by "
                f"{_ids(other_owner)}) of project {project} have workspaces of different owners, "
                "but a project has one image and one agent user: chown one workspace to match "
                "the other, or put the agents in different projects"
            )
    rooted = sorted(
        {a.workspace.path for a, owner, _ in found if owner is not None and owner[0] == 0}
    )
    warning = ""
    if rooted:
        warning = (
            f"project {project}: workspace {', '.join(rooted)} is owned by root, and the agent "
            f"user is never root: it runs as uid {user.uid} gid {user.gid}, so in bind mode it "
            "cannot write what root owns; `chown -R YOU: WORKSPACE` to give the agent your "
            "uid, or use `workspace: {mode: snapshot}`"
        )
    return ProjectUser(user, warning)


def _ids(owner: Owner | None) -> str:
    return "an unknown owner" if owner is None else f"uid {owner[0]} gid {owner[1]}"
