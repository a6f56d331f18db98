"""Where a workspace's git repository lives: its own `.git` directory, or, for a worktree (or a
submodule checkout), a `.git` *file* pointing into another repository's git directory.

A worktree's history, refs and objects live in the main repository's `.git` (the "common"
directory), so an agent that sees only the worktree cannot run `git log`: that directory must
be mounted too, at its own absolute path, because the `.git` file names it by that path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["GitLayout", "GitLayoutError", "git_layout", "parse_gitdir_file"]


class GitLayoutError(ValueError):
    """The workspace's `.git` file does not lead to a git directory."""


@dataclass(frozen=True)
class GitLayout:
    """Absolute, symlink-free paths of a workspace's repository."""

    git_dir: str  # <workspace>/.git, or the worktree's own gitdir (.git/worktrees/<name>)
    common_dir: str  # objects, refs, config and hooks: equal to git_dir for a plain repository
    linked: bool = False  # the workspace's .git is a file: a worktree or a submodule checkout
    has_hooks: bool = True  # <common_dir>/hooks exists


def parse_gitdir_file(text: str, base: str) -> str:
    """The directory a `.git` file names (`gitdir: PATH`), resolved against `base`."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "gitdir" and value.strip():
            return os.path.normpath(os.path.join(base, value.strip()))
    raise GitLayoutError("the .git file has no 'gitdir: PATH' line")


def git_layout(workspace: str) -> GitLayout | None:
    """The repository of `workspace`, or None when it is not the top of a git checkout."""
    dot_git = os.path.join(workspace, ".git")
    if os.path.isdir(dot_git):
        real = os.path.realpath(dot_git)
        return GitLayout(real, real, has_hooks=os.path.isdir(os.path.join(real, "hooks")))
    if not os.path.isfile(dot_git):
        return None
    try:
        with open(dot_git, encoding="utf-8") as handle:
            git_dir = parse_gitdir_file(handle.read(4096), workspace)
    except (OSError, UnicodeDecodeError) as exc:
        raise GitLayoutError(f"cannot read {dot_git}: {exc}") from exc
    if not os.path.isdir(git_dir):
        raise GitLayoutError(f"{dot_git} points at {git_dir}, which is not a directory")
    common = git_dir
    commondir_file = os.path.join(git_dir, "commondir")
    if os.path.isfile(commondir_file):
        with open(commondir_file, encoding="utf-8") as handle:
            named = handle.read().strip()
        if named:
            common = os.path.normpath(os.path.join(git_dir, named))
    common = os.path.realpath(common)
    return GitLayout(
        os.path.realpath(git_dir),
        common,
        linked=True,
        has_hooks=os.path.isdir(os.path.join(common, "hooks")),
    )
