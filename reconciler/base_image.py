"""`clawker image base`: a Debian base image built from the host's own apt sources.

No registry is needed: mmdebstrap fetches packages through the apt sources configured on this
host (read at run time), and the resulting root filesystem is `docker import`ed.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from reconciler import naming
from reconciler.docker_port import DockerError, DockerPort

__all__ = ["BaseImageError", "build_base_image", "host_apt_sources"]

BASE_PACKAGES = ("ca-certificates",)


class BaseImageError(Exception):
    pass


def _one_line_entries(text: str) -> Iterable[tuple[str, str, list[str], list[str]]]:
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        m = re.match(r"^deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s*(.*)$", line)
        if m:
            opts = (m.group(1) or "").strip()
            yield opts, m.group(2), [m.group(3)], m.group(4).split()


def _deb822_entries(text: str) -> Iterable[tuple[str, str, list[str], list[str]]]:
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or "uris" not in fields:
            continue
        signed = fields.get("signed-by", "")
        opts = f"[signed-by={signed}]" if signed.startswith("/") else ""
        for uri in fields["uris"].split():
            yield opts, uri, fields.get("suites", "").split(), fields.get("components", "").split()


def host_apt_sources(suite: str, root: Path = Path("/etc/apt")) -> list[str]:
    """One-line `deb` entries of this host for `suite` and its -updates/-security suites."""
    wanted = {suite, f"{suite}-updates", f"{suite}-security"}
    files = [root / "sources.list", *sorted((root / "sources.list.d").glob("*"))]
    lines: list[str] = []
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        entries = _deb822_entries(text) if path.suffix == ".sources" else _one_line_entries(text)
        for opts, uri, suites, components in entries:
            for s in suites:
                if s in wanted:
                    line = " ".join(filter(None, ["deb", opts, uri, s, *components]))
                    if line not in lines:
                        lines.append(line)
    return lines


def build_base_image(
    port: DockerPort,
    *,
    suite: str = "bookworm",
    ref: str | None = None,
    packages: Iterable[str] = BASE_PACKAGES,
) -> str:
    """Build `clawker-base:<suite>` and return its image id."""
    ref = ref or f"clawker-base:{suite}"
    sources = host_apt_sources(suite)
    if not sources:
        raise BaseImageError(
            f"no apt source for '{suite}' is configured on this host (/etc/apt/sources.list*); "
            f"add one, or build on a {suite} host"
        )
    with tempfile.TemporaryDirectory(prefix="clawker-base-") as tmp:
        tar_path = Path(tmp) / "rootfs.tar"
        cmd = [
            "mmdebstrap",
            "--variant=minbase",
            "--format=tar",
            "--quiet",
            f"--include={','.join(packages)}",
            suite,
            str(tar_path),
            "-",
        ]
        try:
            proc = subprocess.run(
                cmd, input="\n".join(sources) + "\n", text=True, capture_output=True, check=False
            )
        except FileNotFoundError as exc:
            raise BaseImageError(
                "mmdebstrap is not installed; `apt-get install mmdebstrap`"
            ) from exc
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            raise BaseImageError(f"mmdebstrap failed (exit {proc.returncode}):\n{tail}")
        try:
            return port.import_image(
                str(tar_path),
                ref,
                labels={naming.PURPOSE: "base", "dev.clawker.base-suite": suite},
                cmd=("bash",),
            )
        except DockerError as exc:
            raise BaseImageError(str(exc)) from exc
