"""Durable progress of the steps whose effect Docker's own state does not show.

A config seed and a snapshot copy fill a volume; Docker cannot tell a filled volume from an
empty one. So each records its completion *inside* the config volume, as a marker file written
last (after the content), and a volume created by this version of clawker carries the label
`dev.clawker.progress=marker` meaning "complete only when its marker is there". `observe()`
reads the markers of agents whose containers never started, and the planner plans exactly the
fills that are still missing: a pass killed anywhere is resumed, a finished fill never repeated.
Bootstrap material needs no marker: a container that never started (Docker's `created` state)
gets fresh material again before its first start.
"""

from __future__ import annotations

import io
import tarfile
import time
from typing import Final

from reconciler import naming

__all__ = [
    "MARKER_DIR",
    "PROGRESS_LABEL",
    "PROGRESS_MARKER",
    "STEP_MARKERS",
    "marker_archive",
    "marker_member",
]

PROGRESS_LABEL: Final = "dev.clawker.progress"
PROGRESS_MARKER: Final = "marker"
MARKER_DIR: Final = ".clawker-progress"  # in the config volume (~/.claude/.clawker-progress)
# volume role -> the marker its fill writes last
STEP_MARKERS: Final = {"config": "config-seeded", "workspace": "workspace-copied"}


def marker_member(
    tar: tarfile.TarFile, role: str, user: naming.AgentUser = naming.DEFAULT_AGENT_USER
) -> None:
    """Append `role`'s marker to a tar unpacked at the config volume's mount point: last, so
    it exists only once everything before it was written. Owned by the agent user, like the
    rest of the volume."""
    _add(tar, MARKER_DIR, b"", user, directory=True)
    _add(tar, f"{MARKER_DIR}/{STEP_MARKERS[role]}", b"done\n", user)


def marker_archive(role: str, user: naming.AgentUser = naming.DEFAULT_AGENT_USER) -> bytes:
    """A tar holding only `role`'s marker (for fills whose content goes elsewhere)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        marker_member(tar, role, user)
    return out.getvalue()


def _add(
    tar: tarfile.TarFile,
    name: str,
    data: bytes,
    user: naming.AgentUser,
    *,
    directory: bool = False,
) -> None:
    info = tarfile.TarInfo(name)
    info.uid, info.gid = user.uid, user.gid
    info.mtime = int(time.time())  # not 1970: `ls -l ~/.claude` shows when the fill finished
    if directory:
        info.type, info.mode = tarfile.DIRTYPE, 0o700
        tar.addfile(info)
        return
    info.size, info.mode = len(data), 0o600
    tar.addfile(info, io.BytesIO(data))
