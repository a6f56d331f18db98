"""Where containers run, whoever made them: the one place clawker looks at containers it did
not make.

The veth wall (docs/firewall.md, "The veth wall") must reach every container placed under
clawker's cgroup parent, including one clawker never made, so this port is not filtered by
clawker's labels. It only reads: a container's cgroup parent and its network sandbox, and the
network `connect` events that announce a container's network before its process runs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
from docker.utils import kwargs_from_env

from reconciler.docker.engine import DockerError

__all__ = ["NetworkEvent", "PlacementWatch", "Sandbox", "default_bridge_name", "under_parent"]


@dataclass(frozen=True)
class NetworkEvent:
    action: str  # create | connect
    network_id: str
    network: str
    container_id: str  # connect only


def default_bridge_name(network_id: str) -> str:
    """The Linux bridge Docker makes for a bridge network without a bridge.name option."""
    return f"br-{network_id[:12]}"


@dataclass(frozen=True)
class Sandbox:
    container_id: str
    name: str
    cgroup_parent: str
    network_mode: str
    netns: str  # Docker's SandboxKey (a bind-mounted netns file); "" when it has none
    pid: int  # 0 before the process runs


def under_parent(cgroup_parent: str, parent: str) -> bool:
    """Whether a container given `cgroup_parent` runs under `parent` ("/clawker": "/clawker",
    "/clawker/x", and "clawker" as Docker also accepts it)."""
    mine = "/" + parent.strip("/")
    theirs = "/" + cgroup_parent.strip("/")
    return bool(cgroup_parent.strip("/")) and (theirs == mine or theirs.startswith(mine + "/"))


class PlacementWatch:
    def __init__(self, client: docker.APIClient | None = None) -> None:
        try:
            self._api = client or docker.APIClient(version="auto", **kwargs_from_env())
        except docker.errors.DockerException as exc:
            raise DockerError(f"cannot reach the Docker engine ({exc})") from exc
        self._lock = threading.Lock()  # one request at a time on the shared client

    def sandbox(self, container_id: str) -> Sandbox | None:
        """The container's placement (None: it is gone)."""
        try:
            with self._lock:
                info: dict[str, Any] = self._api.inspect_container(container_id)
        except docker.errors.NotFound:
            return None
        except (docker.errors.APIError, OSError) as exc:
            raise DockerError(f"inspect container {container_id[:12]}: {exc}") from exc
        host = info.get("HostConfig") or {}
        return Sandbox(
            container_id=str(info.get("Id", container_id)),
            name=str(info.get("Name", "")).lstrip("/"),
            cgroup_parent=str(host.get("CgroupParent") or ""),
            network_mode=str(host.get("NetworkMode") or ""),
            netns=str((info.get("NetworkSettings") or {}).get("SandboxKey") or ""),
            pid=int((info.get("State") or {}).get("Pid") or 0),
        )

    def _bridges(self) -> dict[str, str]:
        """Linux bridge name -> Docker network name, for every bridge network."""
        try:
            with self._lock:
                networks: list[dict[str, Any]] = self._api.networks(filters={"driver": "bridge"})
        except (docker.errors.APIError, OSError) as exc:
            raise DockerError(f"list networks: {exc}") from exc
        found = {}
        for network in networks:
            options = network.get("Options") or {}
            name = options.get("com.docker.network.bridge.name") or default_bridge_name(
                network["Id"]
            )
            found[str(name)] = str(network.get("Name", ""))
        return found

    def network_of_bridge(self, bridge: str) -> str | None:
        """The name of the Docker network whose Linux bridge is `bridge` (None: no network)."""
        return self._bridges().get(bridge)

    def bridge_of(self, network: str) -> str | None:
        """The Linux bridge of the Docker network `network` (None: no such bridge network)."""
        return next((b for b, n in self._bridges().items() if n == network), None)

    def running(self) -> list[str]:
        """The ids of every running container (all of them: see the module's docstring)."""
        try:
            with self._lock:
                return [str(c["Id"]) for c in self._api.containers()]
        except (docker.errors.APIError, OSError) as exc:
            raise DockerError(f"list containers: {exc}") from exc

    def network_events(self) -> Iterator[NetworkEvent]:
        """Network `create` and `connect` events, until the stream ends, on a client of their
        own (the stream holds its connection). Subscribed before it returns, so a listing made
        right after misses nothing."""
        filters = {"type": ["network"], "event": ["connect", "create"]}
        try:
            api = docker.APIClient(version="auto", **kwargs_from_env())
            stream = api.events(decode=True, filters=filters)
        except (docker.errors.DockerException, OSError) as exc:
            raise DockerError(f"cannot subscribe to docker events: {exc}") from exc
        return self._events(api, stream)

    @staticmethod
    def _events(api: docker.APIClient, stream: Iterator[dict[str, Any]]) -> Iterator[NetworkEvent]:
        try:
            for event in stream:
                actor = event.get("Actor") or {}
                attributes = actor.get("Attributes") or {}
                yield NetworkEvent(
                    action=str(event.get("Action", "")),
                    network_id=str(actor.get("ID", "")),
                    network=str(attributes.get("name", "")),
                    container_id=str(attributes.get("container", "")),
                )
        except (docker.errors.APIError, OSError) as exc:
            raise DockerError(f"docker event stream broke: {exc}") from exc
        finally:
            api.close()

    def close(self) -> None:
        self._api.close()
