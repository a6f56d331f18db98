"""One labelled scope per benchmark invocation, and removal of exactly what it made.

Every object a benchmark makes carries `dev.clawker.test=bench-<id>`: clawker's own through
CLAWKER_SCOPE_LABELS (stamped and required, so the CLI under test sees only this run's
objects), the baselines' because they stamp it themselves. clawker runs with a state directory
of its own, so the control plane `apply` starts is this scope's and is stopped at the end.
Cleanup removes that label's objects and nothing else.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from bpf.loader import detach_egress
from tests.cleanup import TEST_LABEL, remove_cgroup_parent, remove_test_objects

__all__ = ["IMAGE", "REPO", "BenchError", "BenchScope", "clawker_argv", "scoped_environ"]

# The baselines run this image and clawker builds its project image FROM it (`make setup`).
IMAGE = "clawker-base:bookworm"
REPO = Path(__file__).resolve().parents[1]


class BenchError(Exception):
    """A benchmark could not measure what it claims to (a command failed, objects are missing)."""


@dataclass(frozen=True)
class BenchScope:
    run_id: str  # bench-<hex>: the value of dev.clawker.test on every object made

    @classmethod
    def new(cls) -> BenchScope:
        return cls(f"bench-{uuid.uuid4().hex[:8]}")

    @property
    def network(self) -> str:
        """The network of this scope (clawker's CLAWKER_NETWORK; the baselines use it too)."""
        return f"clawker-{self.run_id}"

    @property
    def label_selector(self) -> str:
        return f"{TEST_LABEL}={self.run_id}"

    def labels(self, kind: str) -> dict[str, str]:
        """What the port would stamp on an object of `kind`: baselines carry the same labels."""
        return {"dev.clawker.managed": "true", "dev.clawker.object": kind, TEST_LABEL: self.run_id}

    @property
    def cgroup_parent(self) -> str:
        """This scope's parent cgroup: its control plane's programs attach here, nowhere else."""
        return f"/clawker-{self.run_id}"

    @property
    def pin_dir(self) -> Path:
        """This scope's BPF pins (a user's own clawker pins under /sys/fs/bpf/clawker)."""
        return Path(f"/sys/fs/bpf/clawker-{self.run_id}")

    @property
    def state_dir(self) -> Path:
        """clawker's CLAWKER_STATE_DIR: this scope's control plane, PKI and registry."""
        return Path(tempfile.gettempdir()) / f"clawker-{self.run_id}-state"

    def clawker_env(self) -> dict[str, str]:
        """The environment clawker runs in: scoped labels, own network and state, no colour."""
        env = dict(os.environ)
        env.update(
            CLAWKER_SCOPE_LABELS=self.label_selector,
            CLAWKER_NETWORK=self.network,
            CLAWKER_STATE_DIR=str(self.state_dir),
            CLAWKER_CGROUP_PARENT=self.cgroup_parent,
            CLAWKER_BPF_PIN_DIR=str(self.pin_dir),
            NO_COLOR="1",
        )
        return env

    def remove_runtime_objects(self) -> list[str]:
        """Between runs: this scope's containers, volumes and network. Images stay (a cold
        apply starts without agents, not without the project's image)."""
        api = docker.APIClient(version="auto")
        selector = {"label": [self.label_selector]}
        removed: list[str] = []
        for c in api.containers(all=True, filters=selector):
            with suppress(docker.errors.NotFound):  # gone already: fine
                api.remove_container(c["Id"], force=True)
                removed.append(f"container {c['Names'][0].lstrip('/')}")
        for v in api.volumes(filters=selector).get("Volumes") or []:
            with suppress(docker.errors.NotFound):  # gone already: fine
                api.remove_volume(v["Name"], force=True)
                removed.append(f"volume {v['Name']}")
        for n in api.networks(filters=selector):
            with suppress(docker.errors.NotFound):  # gone already: fine
                api.remove_network(n["Id"])
                removed.append(f"network {n['Name']}")
        survivors = [o for o in self.objects() if not o.startswith("image ")]
        if survivors:
            raise BenchError(f"cleanup left {', '.join(survivors)} behind")
        return removed

    def remove_everything(self) -> list[str]:
        """At the end: stop this scope's control plane, remove every object with its label
        (images too), its pins, its parent cgroup and its state directory; fail if any object
        survives."""
        self.stop_controlplane()
        removed = remove_test_objects(self.run_id)
        removed += [f"pin {name}" for name in detach_egress(self.pin_dir)]
        remove_cgroup_parent(self.cgroup_parent)
        survivors = self.objects()
        if survivors:
            raise BenchError(f"cleanup left {', '.join(survivors)} behind")
        shutil.rmtree(self.state_dir, ignore_errors=True)
        return removed

    def stop_controlplane(self) -> None:
        """`clawker controlplane down` in this scope: it stops only the CP its pid file names."""
        if (self.state_dir / "controlplane.pid").exists():
            subprocess.run(
                clawker_argv("controlplane", "down"),
                env=self.clawker_env(),
                capture_output=True,
                timeout=60,
                check=False,
            )

    def objects(self) -> list[str]:
        """`kind name` of every object carrying this scope's label."""
        api = docker.APIClient(version="auto")
        selector = {"label": [self.label_selector]}
        found = [
            f"container {c['Names'][0].lstrip('/')}"
            for c in api.containers(all=True, filters=selector)
        ]
        found += [f"volume {v['Name']}" for v in api.volumes(filters=selector).get("Volumes") or []]
        found += [f"network {n['Name']}" for n in api.networks(filters=selector)]
        found += [f"image {i['Id'][7:19]}" for i in api.images(filters=selector)]
        return found

    def running_containers(self, api: docker.APIClient) -> int:
        return len(api.containers(filters={"label": [self.label_selector], "status": "running"}))


@contextmanager
def scoped_environ(env: Mapping[str, str]) -> Iterator[None]:
    """Run in-process clawker code (which reads CLAWKER_* at call time) inside `env`."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def clawker_argv(*args: str) -> list[str]:
    """The real CLI as a user runs it: the console script next to this interpreter."""
    script = Path(sys.executable).with_name("clawker")
    if not script.exists():
        raise BenchError(f"{script} is missing; run `make setup`")
    return [str(script), *args]
