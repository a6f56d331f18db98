"""Copy the host's `~/.gitconfig` into the agent without its credentials (stdlib only).

The control plane runs this file inside the agent container, once per container, as the agent
user: `python -I -c <this file> SOURCE TARGET`, where SOURCE is the host's ~/.gitconfig mounted
read-only. git itself parses SOURCE (`git config --file SOURCE --null --list`), so every syntax
git accepts is understood; the entries are filtered and written to TARGET in one rename.

Left out: every `credential.*` key (helpers, usernames, per-URL sections: credentials come from
the host's proxy instead), `http.*.extraheader` (often a bearer token), and `include.*` /
`includeIf.*` (they name files on the host, which are not there). When anything fails, nothing
is written and the reason is printed: the agent still starts, with git's defaults.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

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


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: gitconfig_filter SOURCE TARGET", file=sys.stderr)
        return 2
    source, target = argv[1], argv[2]
    if not os.path.isfile(source):
        print(f"no host gitconfig at {source}: nothing to copy")
        return 0
    try:
        listing = subprocess.run(
            ["git", "config", "--file", source, "--null", "--list"],
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout
        text = render_config(filter_entries(parse_listing(listing)))
        directory = os.path.dirname(target) or "."
        fd, temporary = tempfile.mkstemp(prefix=".gitconfig.", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.chmod(temporary, 0o644)
            os.replace(temporary, target)
        except BaseException:
            os.unlink(temporary)
            raise
    except subprocess.CalledProcessError as exc:
        reason = exc.stderr.decode(errors="replace").strip() or f"exit {exc.returncode}"
        print(f"host gitconfig not copied: git cannot read it: {reason}")
        return 0
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        print(f"host gitconfig not copied: {exc}")
        return 0
    print(f"copied the host gitconfig to {target} without credential sections")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
