"""The harness an agent image carries: the real Claude Code CLI, fetched on the host.

`@anthropic-ai/claude-code` on npm is a thin wrapper whose optional dependency
`@anthropic-ai/claude-code-linux-<arch>` carries the native binary. clawker fetches only that
package with `npm pack` (the npm registry through npm itself), extracts `package/claude` into
`<cache>/harness/<version>/` with a manifest holding its sha256, and the build copies it to
/usr/local/bin/claude. No network is used inside the build for it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reconciler.errors import ClawkerError
from reconciler.images.cache import DEFAULTS, exclusive, sha256_file
from reconciler.settings import Settings

__all__ = [
    "HARNESS_VERSION",
    "Harness",
    "HarnessError",
    "cached_harness",
    "fetch_harness",
    "harness_identity",
    "harness_package",
    "harness_version",
]

# The one pin of the Claude Code version images carry; CLAWKER_HARNESS_VERSION overrides it.
HARNESS_VERSION = "2.1.332"

_VERSION = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?$")


class HarnessError(ClawkerError):
    """The harness could not be fetched or unpacked; the message says what to do."""


@dataclass(frozen=True)
class Harness:
    version: str
    binary: Path
    sha256: str


def harness_version(settings: Settings = DEFAULTS) -> str:
    """The Claude Code version to install: Settings.harness_version (CLAWKER_HARNESS_VERSION),
    else HARNESS_VERSION."""
    version = settings.harness_version or HARNESS_VERSION
    if not _VERSION.match(version):
        raise HarnessError(
            f"CLAWKER_HARNESS_VERSION={version!r} is not a version such as {HARNESS_VERSION}"
        )
    return version


def harness_package() -> str:
    """The npm package with the native binary for this host's architecture."""
    machine = os.uname().machine.lower()
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
    if arch is None:
        raise HarnessError(f"Claude Code has no Linux build for this architecture ({machine})")
    return f"@anthropic-ai/claude-code-linux-{arch}"


def _directory(version: str, cache: Path) -> Path:
    return cache / "harness" / version


def cached_harness(version: str, cache: Path) -> Harness | None:
    """The harness binary fetched before, if any; cheap (reads a manifest, hashes nothing)."""
    directory = _directory(version, cache)
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
        digest = str(manifest["sha256"])
        same_package = manifest["package"] == harness_package()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    binary = directory / "claude"
    if not same_package or not binary.is_file():
        return None
    return Harness(version, binary, digest)


def harness_identity(harness: str, version: str, cache: Path) -> str:
    """What the image-input hash records for the harness: nothing for `none`; for `claude`
    the version and, once fetched, the binary's sha256 (the first build stamps that)."""
    if harness == "none":
        return "none"
    cached = cached_harness(version, cache)
    return f"claude {version} " + (f"sha256:{cached.sha256}" if cached else "unfetched")


def fetch_harness(
    version: str, cache: Path, on_line: Callable[[str], None] = lambda _line: None
) -> Harness:
    """The cached harness, or fetch it with `npm pack` on the host and unpack the binary."""
    directory = _directory(version, cache)
    package = harness_package()
    with exclusive(directory.parent / f"{version}.lock"):
        cached = cached_harness(version, cache)
        if cached:
            return cached
        on_line(f"clawker: fetching Claude Code {version} ({package}, npm pack)")
        directory.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".fetch-", dir=directory.parent) as tmp:
            work = Path(tmp)
            try:
                proc = subprocess.run(
                    ["npm", "pack", f"{package}@{version}", "--json", "--silent"],
                    cwd=work,
                    capture_output=True,
                    text=True,
                    check=False,
                )
            except FileNotFoundError as exc:
                raise HarnessError(
                    "npm is not installed; install Node.js/npm, or use `build.harness: none`"
                ) from exc
            if proc.returncode != 0:
                tail = "\n".join(proc.stderr.strip().splitlines()[-10:])
                raise HarnessError(
                    f"npm pack {package}@{version} failed (exit {proc.returncode}):\n{tail}"
                )
            tarballs = sorted(work.glob("*.tgz"))
            if len(tarballs) != 1:
                raise HarnessError(f"npm pack {package}@{version} left no single tarball")
            out = work / "unpacked"
            out.mkdir()
            _extract_binary(tarballs[0], out / "claude")
            tarballs[0].unlink()
            digest = sha256_file(out / "claude")
            manifest = {"package": package, "version": version, "sha256": digest}
            (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            if directory.exists():
                shutil.rmtree(directory)
            out.rename(directory)
        on_line(f"clawker: Claude Code {version} cached in {directory}")
        return Harness(version, directory / "claude", digest)


def _extract_binary(tarball: Path, dest: Path) -> None:
    """Copy `package/claude` out of the npm tarball (only that member: no path is trusted)."""
    with tarfile.open(tarball, "r:gz") as tar:
        try:
            member = tar.getmember("package/claude")
        except KeyError as exc:
            raise HarnessError(f"{tarball.name} has no package/claude binary") from exc
        source = tar.extractfile(member) if member.isfile() else None
        if source is None:
            raise HarnessError(f"{tarball.name}: package/claude is not a regular file")
        with source, dest.open("wb") as sink:
            shutil.copyfileobj(source, sink, 1 << 20)
    dest.chmod(0o755)
