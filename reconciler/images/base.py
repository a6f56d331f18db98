"""`clawker image base`: a Debian base image built from the host's own apt sources.

No registry is needed: mmdebstrap fetches packages through the apt sources configured on this
host (read at run time), and the resulting root filesystem is `docker import`ed.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from reconciler import naming
from reconciler.docker.engine import DockerError, DockerPort
from reconciler.errors import ClawkerError

__all__ = [
    "BASE_PACKAGES",
    "BASE_PACKAGES_LABEL",
    "BaseImageError",
    "base_image_is_current",
    "build_base_image",
    "host_apt_sources",
]

# What every agent image needs at run time, so that building one needs no network for it
# (the agent image's Dockerfile installs from the mirrors only what a base lacks). Lean on
# purpose: each line says why it is here; anything else belongs in a project's build.packages.
BASE_PACKAGES = (
    "ca-certificates",  # TLS for git, curl and the harness
    "python3",  # runs clawkerd (its venv is made with --without-pip: no python3-venv/pip)
    "sudo",  # the agent user installs packages with passwordless sudo
    "git",  # agents work in repositories; git-credential-clawker plugs into it
    "openssh-client",  # git over ssh with the forwarded ssh agent
    "gpg",  # signed commits with the forwarded gpg agent (not the whole gnupg suite)
    "gpg-agent",  # gpg starts or reaches an agent even when it signs through a forwarded one
    "procps",  # ps/kill/top: the agent inspects the processes it started
    "less",  # the pager git and the harness call
    "curl",  # what post_init scripts fetch with, and how an agent checks if a host is allowed
)

# The base records what it was built with, so a stale one (older BASE_PACKAGES) can be told.
BASE_PACKAGES_LABEL = "dev.clawker.base-packages"


class BaseImageError(ClawkerError):
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
    packages = tuple(packages)
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
                labels={
                    naming.PURPOSE: "base",
                    "dev.clawker.base-suite": suite,
                    BASE_PACKAGES_LABEL: ",".join(sorted(set(packages))),
                },
                cmd=("bash",),
            )
        except DockerError as exc:
            raise BaseImageError(str(exc)) from exc


def base_image_is_current(labels: Mapping[str, str] | None) -> bool:
    """True when a base image (by its labels) was built with at least today's BASE_PACKAGES."""
    have = set((labels or {}).get(BASE_PACKAGES_LABEL, "").split(","))
    return set(BASE_PACKAGES) <= have
