"""Copy the host's `~/.gitconfig` into the agent without its credentials (stdlib only).

The control plane runs this file inside the agent container, once per container, as the agent
user: `python -I -S -c <this file> SOURCE TARGET`, where SOURCE is the host's ~/.gitconfig
mounted read-only. git itself parses SOURCE (`git config --file SOURCE --null --list`), so every
syntax git accepts is understood; the entries are filtered and written to TARGET in one rename.

It is on a new container's path to Ready, so it imports nothing the interpreter has not loaded
already but `select` and `time` (both built in): git is spawned with `os.posix_spawnp`, not
`subprocess`, and the new file is made with `os.open`, not `tempfile`. Those two imports were
two thirds of the step's 60 ms in an agent container; without `site` (`-S`) it starts in 10.

Left out: every `credential.*` key (helpers, usernames, per-URL sections: credentials come from
the host's proxy instead), `http.*.extraheader` (often a bearer token), and `include.*` /
`includeIf.*` (they name files on the host, which are not there). When anything fails, nothing
is written and the reason is printed: the agent still starts, with git's defaults.
"""

from __future__ import annotations

import os
import select
import sys
import time

__all__ = ["filter_entries", "keep_entry", "main", "parse_listing", "render_config"]

Entry = tuple[str, str | None]  # (section[.subsection].name, value; None for a bare boolean)


def parse_listing(data: bytes) -> list[Entry]:
    """Entries of `git config --null --list`: `key\\nvalue\\0`, or `key\\0` for a bare key."""
    entries: list[Entry] = []
    for record in data.decode("utf-8").split("\0"):
        if not record:
            continue
        key, sep, value = record.partition("\n")
        entries.append((key, value if sep else None))
    return entries


def _split_key(key: str) -> tuple[str, str | None, str]:
    section, _, rest = key.partition(".")
    subsection, dot, name = rest.rpartition(".")
    return section, (subsection if dot else None), name


def keep_entry(key: str) -> bool:
    """Whether an entry may be copied into the agent (see the module doc)."""
    section, _, name = _split_key(key)
    section = section.lower()
    if section in ("credential", "include", "includeif"):
        return False
    return not (section == "http" and name.lower() == "extraheader")


def filter_entries(entries: list[Entry]) -> list[Entry]:
    return [(key, value) for key, value in entries if keep_entry(key)]


def _quote(text: str) -> str:
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\t", "\\t")
        .replace("\b", "\\b")
    )
    return f'"{escaped}"'


def render_config(entries: list[Entry]) -> str:
    """Entries as a config file, grouped by section in the order they first appear."""
    sections: dict[tuple[str, str | None], list[tuple[str, str | None]]] = {}
    for key, value in entries:
        section, subsection, name = _split_key(key)
        if not section or not name:
            raise ValueError(f"malformed config key {key!r}")
        sections.setdefault((section, subsection), []).append((name, value))
    lines: list[str] = []
    for (section, subsection), items in sections.items():
        if subsection is None:
            lines.append(f"[{section}]")
        else:
            sub = subsection.replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'[{section} "{sub}"]')
        for name, value in items:
            lines.append(f"\t{name}" if value is None else f"\t{name} = {_quote(value)}")
    return "\n".join(lines) + ("\n" if lines else "")


class _GitError(Exception):
    """git could not read the host file; the message is what it said."""


GIT_TIMEOUT = 30  # seconds: git reading one local file never takes this long


def _git_listing(source: str) -> bytes:
    """`git config --file SOURCE --null --list`'s output (os only: see the module doc)."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        actions = [
            (os.POSIX_SPAWN_DUP2, out_w, 1),
            (os.POSIX_SPAWN_DUP2, err_w, 2),
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        ]
        argv = ["git", "config", "--file", source, "--null", "--list"]
        pid = os.posix_spawnp("git", argv, os.environ, file_actions=actions)
    finally:
        os.close(out_w)
        os.close(err_w)
    try:
        out, err = _read_both(out_r, err_r, time.monotonic() + GIT_TIMEOUT)
    except BaseException:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(out_r)
        os.close(err_r)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if code != 0:
        raise _GitError(err.decode(errors="replace").strip() or f"exit {code}")
    return out


def _read_both(out_fd: int, err_fd: int, deadline: float) -> tuple[bytes, bytes]:
    """Both pipes to their end (git writes stderr rarely and little, stdout up to its size)."""
    chunks: dict[int, list[bytes]] = {out_fd: [], err_fd: []}
    open_fds = [out_fd, err_fd]
    while open_fds:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"git did not answer within {GIT_TIMEOUT}s")
        readable, _, _ = select.select(open_fds, [], [], left)
        for fd in readable:
            data = os.read(fd, 65536)
            if data:
                chunks[fd].append(data)
            else:
                open_fds.remove(fd)
    return b"".join(chunks[out_fd]), b"".join(chunks[err_fd])


def _write_atomically(target: str, text: str) -> None:
    """TARGET holds `text` (mode 0644) or is left as it was: a new file, then one rename."""
    directory = os.path.dirname(target) or "."
    temporary = os.path.join(directory, f".gitconfig.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temporary, 0o644)  # whatever the umask
        os.replace(temporary, target)
    except BaseException:
        os.unlink(temporary)
        raise


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: gitconfig_filter SOURCE TARGET", file=sys.stderr)
        return 2
    source, target = argv[1], argv[2]
    if not os.path.isfile(source):
        print(f"no host gitconfig at {source}: nothing to copy")
        return 0
    try:
        text = render_config(filter_entries(parse_listing(_git_listing(source))))
        _write_atomically(target, text)
    except _GitError as exc:
        print(f"host gitconfig not copied: git cannot read it: {exc}")
        return 0
    except (OSError, ValueError) as exc:  # TimeoutError is an OSError
        print(f"host gitconfig not copied: {exc}")
        return 0
    print(f"copied the host gitconfig to {target} without credential sections")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
