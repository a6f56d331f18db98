"""clawkerd's Python dependencies as wheels fetched on the host, so the image build needs no
network for them (`pip install --no-index --find-links` inside the build).

The set is pinned in full, transitive dependencies included, and targets the Python of Debian
bookworm (3.11) on this host's architecture. A wheelhouse is cached under
`<cache>/wheelhouse/<key>/` with a manifest of file names and sha256s; the key changes whenever
the pins or the target do, so a stale wheelhouse is never reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reconciler.errors import ClawkerError
from reconciler.images.cache import exclusive, sha256_file

__all__ = [
    "INSTALLER",
    "PYTHON_VERSION",
    "REQUIREMENTS",
    "Wheelhouse",
    "WheelhouseError",
    "cached_wheelhouse",
    "fetch_wheelhouse",
    "wheels_identity",
]

# Debian bookworm's python3; the image build checks that the base really has it.
PYTHON_VERSION = "3.11"

# What `python -m clawkerd` imports (grpcio, protobuf) plus cryptography, which agent images
# promise too; then their own dependencies, pinned so a wheelhouse is the same on every host.
# protobuf/grpcio must be at least the versions scripts/gen_proto.py generated proto/gen with.
REQUIREMENTS = (
    "grpcio==1.85.3",
    "protobuf==7.36.2",
    "cryptography==50.0.2",
    "cffi==2.1.1",
    "pycparser==3.12",
    "typing_extensions==4.16.0",
)

# pip runs from its own wheel inside the build and is not installed into the image.
INSTALLER = "pip==26.3"


class WheelhouseError(ClawkerError):
    """The wheels could not be fetched; the message says what pip answered."""


@dataclass(frozen=True)
class Wheelhouse:
    directory: Path
    files: tuple[tuple[str, str], ...]  # (wheel file name, sha256), sorted by name

    def identity(self) -> str:
        return "\n".join(f"{name} {digest}" for name, digest in self.files)


def _arch() -> str:
    machine = os.uname().machine.lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def _platforms() -> tuple[str, ...]:
    arch = _arch()
    # bookworm has glibc 2.36: any manylinux wheel up to 2.34 runs there.
    return (
        f"manylinux2014_{arch}",
        f"manylinux_2_17_{arch}",
        f"manylinux_2_28_{arch}",
        f"manylinux_2_34_{arch}",
    )


def _target() -> str:
    return "\n".join([f"python {PYTHON_VERSION}", *_platforms(), *REQUIREMENTS, INSTALLER])


def _directory(cache: Path) -> Path:
    key = hashlib.sha256(_target().encode()).hexdigest()[:16]
    return cache / "wheelhouse" / key


def cached_wheelhouse(cache: Path) -> Wheelhouse | None:
    """The wheelhouse for today's pins if it was fetched before; cheap (reads one manifest)."""
    directory = _directory(cache)
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
        files = tuple(sorted((str(f["name"]), str(f["sha256"])) for f in manifest["files"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not files or not all((directory / name).is_file() for name, _ in files):
        return None
    return Wheelhouse(directory, files)


def wheels_identity(cache: Path) -> str:
    """What the image-input hash records for the wheels: file names and hashes once fetched,
    the pins and target until then (the first build fetches and stamps the former)."""
    cached = cached_wheelhouse(cache)
    return cached.identity() if cached else "unfetched\n" + _target()


def fetch_wheelhouse(
    cache: Path, on_line: Callable[[str], None] = lambda _line: None
) -> Wheelhouse:
    """The cached wheelhouse, or fetch it with `pip download` (PyPI through pip, on the host)."""
    directory = _directory(cache)
    with exclusive(directory.parent / f"{directory.name}.lock"):
        cached = cached_wheelhouse(cache)
        if cached:
            return cached
        on_line(f"clawker: fetching clawkerd's wheels for Python {PYTHON_VERSION} (pip download)")
        directory.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".fetch-", dir=directory.parent) as tmp:
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--disable-pip-version-check",
                "--no-input",
                "--only-binary=:all:",
                "--python-version",
                PYTHON_VERSION,
                "--implementation",
                "cp",
                *("--abi", f"cp{PYTHON_VERSION.replace('.', '')}", "--abi", "abi3"),
                *("--abi", "none"),
                *(arg for p in _platforms() for arg in ("--platform", p)),
                "--dest",
                tmp,
                *REQUIREMENTS,
                INSTALLER,
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                tail = "\n".join(proc.stderr.strip().splitlines()[-10:])
                raise WheelhouseError(
                    f"pip download of clawkerd's wheels failed (exit {proc.returncode}):\n{tail}"
                )
            wheels = sorted(Path(tmp).glob("*.whl"))
            files = tuple((w.name, sha256_file(w)) for w in wheels)
            manifest = {
                "target": _target().splitlines(),
                "files": [{"name": n, "sha256": d} for n, d in files],
            }
            (Path(tmp) / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            if directory.exists():
                shutil.rmtree(directory)
            Path(tmp).rename(directory)
            Path(tmp).mkdir()  # TemporaryDirectory removes it on exit
        on_line(f"clawker: {len(files)} wheels cached in {directory}")
        return Wheelhouse(directory, files)
