"""Where the control plane keeps its state. Settings.state_dir (`CLAWKER_STATE_DIR`) moves all
of it (tests do)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from reconciler.settings import Settings

__all__ = ["StatePaths", "protected_paths", "state_paths"]


@dataclass(frozen=True)
class StatePaths:
    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def registry(self) -> Path:
        return self.root / "registry.sqlite"

    @property
    def socket(self) -> Path:
        return self.root / "controlplane.sock"

    @property
    def pid_file(self) -> Path:
        return self.root / "controlplane.pid"

    @property
    def apply_lock(self) -> Path:
        return self.root / "apply.lock"

    @property
    def log(self) -> Path:
        return self.root / "controlplane.log"

    @property
    def containers(self) -> Path:
        """One directory per agent container: its bootstrap material (host_dirs.py)."""
        return self.root / "containers"

    @property
    def forget_pending(self) -> Path:
        """Agents deleted while the CP was not running: one key per line, for its next start."""
        return self.root / "forget.pending"

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)


def state_paths(settings: Settings) -> StatePaths:
    return StatePaths(settings.state_dir)


def protected_paths(paths: StatePaths, docker_socket: str | None) -> tuple[str, ...]:
    """Paths no agent workspace may be, be inside of or contain (specs.workspace_policy):
    clawker's state directory (its CA, registry and socket) and the Docker socket in use."""
    found = [str(paths.root), str(paths.socket)]
    return (*found, docker_socket) if docker_socket else tuple(found)
