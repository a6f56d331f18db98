"""Who a process runs as: users and groups read from /etc/passwd and /etc/group.

The files are parsed directly (not through NSS) because inside an agent image they are the only
source, and a parser over a path is testable. The privilege drop itself is the kernel's, between
fork and exec (`subprocess.Popen(user=, group=, extra_groups=)`): clawkerd never changes its own
credentials.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ETC_GROUP",
    "ETC_PASSWD",
    "ProcessCredentials",
    "UnknownUserError",
    "UserIdentity",
    "credentials_for",
    "lookup_uid",
    "resolve_user",
    "supplementary_groups",
    "user_environment",
    "working_directory_for",
]

ETC_PASSWD = Path("/etc/passwd")
ETC_GROUP = Path("/etc/group")


class UnknownUserError(LookupError):
    """The user is not in /etc/passwd."""


@dataclass(frozen=True)
class UserIdentity:
    """One /etc/passwd entry plus the groups /etc/group lists it as a member of."""

    name: str
    uid: int
    gid: int
    home: str
    shell: str
    member_of: tuple[int, ...]


@dataclass(frozen=True)
class ProcessCredentials:
    """Popen's user=/group=/extra_groups=; None leaves clawkerd's own value."""

    user: int | None
    group: int | None
    extra_groups: tuple[int, ...] | None


def resolve_user(
    name_or_uid: str, passwd: Path = ETC_PASSWD, group: Path = ETC_GROUP
) -> UserIdentity:
    """Find a user by name (or by numeric uid); raise UnknownUserError naming the file."""
    for entry in _passwd_entries(passwd):
        if name_or_uid in (entry.name, str(entry.uid)):
            return _with_groups(entry, group)
    raise UnknownUserError(f"user {name_or_uid!r} not found in {passwd}")


def lookup_uid(uid: int, passwd: Path = ETC_PASSWD, group: Path = ETC_GROUP) -> UserIdentity | None:
    """The user with this uid, or None (a step may run as a uid with no passwd entry)."""
    for entry in _passwd_entries(passwd):
        if entry.uid == uid:
            return _with_groups(entry, group)
    return None


def supplementary_groups(user: UserIdentity | None, gid: int) -> tuple[int, ...]:
    """What initgroups(3) would set: the primary gid, then every group listing the user."""
    others = () if user is None else tuple(g for g in user.member_of if g != gid)
    return (gid, *others)


def credentials_for(uid: int, gid: int, groups: tuple[int, ...]) -> ProcessCredentials:
    """What to pass to Popen to run as uid/gid with `groups` as supplementary groups.

    When clawkerd already is that uid/gid there is nothing to drop (and a non-root clawkerd,
    as in development, could not call setgroups anyway).
    """
    if os.geteuid() == uid and os.getegid() == gid:
        return ProcessCredentials(user=None, group=None, extra_groups=None)
    return ProcessCredentials(user=uid, group=gid, extra_groups=groups)


def user_environment(
    base: Mapping[str, str], user: UserIdentity | None, uid: int | None = None
) -> dict[str, str]:
    """`base` with HOME, USER and LOGNAME describing the user a process runs as."""
    env = dict(base)
    if user is None:
        # No passwd entry: do not let root's HOME or USER leak into a process of another uid.
        env["HOME"] = "/"
        for key in ("USER", "LOGNAME"):
            env.pop(key, None)
        if uid is not None:
            env["USER"] = str(uid)
        return env
    env["HOME"] = user.home or "/"
    env["USER"] = user.name
    env["LOGNAME"] = user.name
    return env


def working_directory_for(user: UserIdentity | None, preferred: str | None = None) -> str:
    """`preferred` if given, else the user's home if it exists, else /."""
    if preferred:
        return preferred
    if user is not None and user.home and os.path.isdir(user.home):
        return user.home
    return "/"


def _passwd_entries(path: Path) -> Iterator[UserIdentity]:
    for fields in _colon_records(path, min_fields=7):
        try:
            uid, gid = int(fields[2]), int(fields[3])
        except ValueError:
            continue
        yield UserIdentity(
            name=fields[0], uid=uid, gid=gid, home=fields[5], shell=fields[6], member_of=()
        )


def _with_groups(user: UserIdentity, group_path: Path) -> UserIdentity:
    member_of: list[int] = []
    for fields in _colon_records(group_path, min_fields=4):
        try:
            gid = int(fields[2])
        except ValueError:
            continue
        if user.name in fields[3].split(",") and gid not in member_of:
            member_of.append(gid)
    return dataclasses.replace(user, member_of=tuple(member_of))


def _colon_records(path: Path, min_fields: int) -> Iterator[list[str]]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    for raw in text.splitlines():
        line = raw.strip()
        # Skip comments and NIS compat entries (+/-), which only NSS understands.
        if not line or line.startswith(("#", "+", "-")):
            continue
        fields = line.split(":")
        if len(fields) >= min_fields:
            yield fields
