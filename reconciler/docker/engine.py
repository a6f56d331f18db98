"""The one typed port through which clawker talks to Docker.

Every create stamps `dev.clawker.managed=true` (plus any scope labels) and every list filters
by them, so code above this port can neither see nor change an object clawker did not make.
docker-py has no inline types; this module is the only place its dict-shaped answers are read.
"""

from __future__ import annotations

import io
import json
import socket
import struct
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol

import docker
import docker.errors
from docker.types import Mount
from docker.utils import kwargs_from_env

from reconciler import naming
from reconciler.docker.host_fill import fill_directory
from reconciler.errors import ClawkerError
from reconciler.settings import Settings

if TYPE_CHECKING:  # loaded on first use (__getattr__ below): diff needs none of them
    from reconciler.docker.records import (
        ContainerEvent,
        ContainerMounts,
        ExecRequest,
        RuntimeInfo,
        TerminalConfig,
    )

__all__ = [
    "ContainerEvent",
    "ContainerInfo",
    "ContainerMounts",
    "ContainerSpec",
    "DockerEngine",
    "DockerError",
    "DockerPort",
    "ExecRequest",
    "ImageInfo",
    "MountSpec",
    "NetworkInfo",
    "NotManagedError",
    "RuntimeInfo",
    "SessionPort",
    "TerminalConfig",
    "VolumeInfo",
]


class DockerError(ClawkerError):
    """A Docker API call failed; `status` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotManagedError(DockerError):
    """Refused: the object exists but clawker did not make it."""


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    labels: Mapping[str, str]
    state: str  # created | running | paused | restarting | removing | exited | dead
    image_id: str
    volumes: tuple[str, ...] = ()  # names of the volumes it mounts
    status: str = ""  # Docker's human status ("Up 3 minutes", "Exited (0) 2 hours ago")
    created: int = 0  # seconds since the epoch


@dataclass(frozen=True)
class VolumeInfo:
    name: str
    labels: Mapping[str, str]


@dataclass(frozen=True)
class NetworkInfo:
    id: str
    name: str
    labels: Mapping[str, str]


@dataclass(frozen=True)
class ImageInfo:
    id: str
    refs: tuple[str, ...]  # repository:tag names; empty for a dangling image
    labels: Mapping[str, str]
    created: int  # seconds since the epoch
    size: int  # bytes


@dataclass(frozen=True)
class MountSpec:
    kind: Literal["bind", "volume", "tmpfs"]
    target: str
    source: str = ""
    read_only: bool = False


@dataclass(frozen=True)
class ContainerSpec:
    """Everything one `create_container` call needs; plain data so plans can print it."""

    name: str
    image: str
    command: tuple[str, ...]
    labels: Mapping[str, str]
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str = ""
    mounts: tuple[MountSpec, ...] = ()
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = ()
    sysctls: Mapping[str, str] = field(default_factory=dict)
    cgroup_parent: str = ""
    network: str = ""
    hostname: str = ""
    tty: bool = True
    stdin_open: bool = True
    auto_remove: bool = False  # Docker removes the container when it exits (`run --rm`)


class ListingPort(Protocol):
    """Listing what clawker made (observe): always filtered by the managed and scope labels."""

    def list_containers(self) -> list[ContainerInfo]: ...
    def list_volumes(self) -> list[VolumeInfo]: ...
    def list_networks(self) -> list[NetworkInfo]: ...
    def list_images(self) -> list[ImageInfo]: ...
    def image_id(self, ref: str) -> str | None: ...
    # progress markers inside volumes (reconciler.host.progress)
    def archive_names(self, container_id: str, path: str) -> frozenset[str] | None: ...
    def probe_volume(self, volume: str, path: str, image: str) -> frozenset[str] | None: ...


class ImagePort(Protocol):
    """Building and importing images (images/)."""

    def image_id(self, ref: str) -> str | None: ...
    def list_images(self) -> list[ImageInfo]: ...
    def import_image(
        self, tar_path: str, ref: str, labels: Mapping[str, str], cmd: Sequence[str]
    ) -> str: ...
    def build_image(
        self,
        context_dir: str,
        ref: str,
        labels: Mapping[str, str],
        on_line: Callable[[str], None],
        *,
        build_args: Mapping[str, str] | None = None,
        no_cache: bool = False,
    ) -> str: ...


class ObjectPort(Protocol):
    """One method per step the executor runs (create, start, stop, remove, rename, copy in)."""

    def create_network(self, name: str, labels: Mapping[str, str]) -> str: ...
    def create_volume(self, name: str, labels: Mapping[str, str]) -> None: ...
    def remove_volume(self, name: str) -> None: ...
    def create_container(self, spec: ContainerSpec) -> str: ...
    def start_container(self, container_id: str) -> None: ...
    def stop_container(self, container_id: str, timeout: int = 10) -> None: ...
    def remove_container(self, container_id: str) -> None: ...
    def rename_container(self, container_id: str, new_name: str) -> None: ...
    def put_archive(self, container_id: str, path: str, data: bytes | IO[bytes]) -> None: ...
    def container_id(self, name: str) -> str: ...


class RuntimePort(Protocol):
    """Watching and reaching running containers (the control plane, readiness, watch mode)."""

    def inspect_state(self, container_id: str) -> Mapping[str, Any]: ...
    def container_mounts(self, name: str) -> ContainerMounts: ...
    def logs_tail(self, container_id: str, lines: int = 20) -> str: ...
    def inspect_runtime(self, container_id: str, network: str) -> RuntimeInfo | None: ...
    def running_agent_containers(self, project: str, agent: str) -> dict[str, str]: ...
    def container_events(self) -> Iterator[ContainerEvent]: ...
    def exec_socket(
        self, container_id: str, argv: Sequence[str], *, user: str = ""
    ) -> socket.socket: ...
    def exec_output(
        self, container_id: str, argv: Sequence[str], *, user: str = ""
    ) -> tuple[int, str]: ...


class SessionPort(Protocol):
    """A person at an agent (`run`, `attach`, `exec`, `logs`, `cp`): stdio, waits, archives."""

    def terminal_config(self, container_id: str) -> TerminalConfig: ...
    def attach_socket(self, container_id: str, *, stdin: bool) -> socket.socket: ...
    def wait_container(self, container_id: str, condition: str = "not-running") -> int: ...
    def begin_wait(self, container_id: str, condition: str) -> Callable[[], int]: ...
    def resize_tty(self, container_id: str, height: int, width: int) -> None: ...
    def restart_container(self, container_id: str, timeout: int = 10) -> None: ...
    def open_exec(self, container_id: str, request: ExecRequest) -> tuple[str, socket.socket]: ...
    def resize_exec(self, exec_id: str, height: int, width: int) -> None: ...
    def exec_exit_code(self, exec_id: str) -> int: ...
    def logs_stream(
        self, container_id: str, *, follow: bool, since: str | None, tail: int | None
    ) -> Iterator[tuple[int, bytes]]: ...
    def get_archive(self, container_id: str, path: str) -> Iterator[bytes]: ...
    def path_stat(self, container_id: str, path: str) -> Mapping[str, Any] | None: ...


class DockerPort(ListingPort, ImagePort, ObjectPort, RuntimePort, SessionPort, Protocol):
    """Everything the reconciler needs from Docker, one method per API call. Callers that need
    less take one of the narrow ports above, so a test double implements only those methods."""


ObjectKind = Literal["container", "volume", "network", "image"]


def _wrap(exc: docker.errors.APIError, what: str) -> DockerError:
    explanation = exc.explanation or str(exc)
    if isinstance(explanation, bytes):
        explanation = explanation.decode(errors="replace")
    return DockerError(f"{what}: {explanation}", exc.status_code)


def engine_socket() -> str | None:
    """The unix socket of the engine DOCKER_HOST names (docker's default when unset), or None
    for an engine reached over TCP: a path no agent workspace may hold."""
    base_url = str(kwargs_from_env().get("base_url") or "unix:///var/run/docker.sock")
    for prefix in ("unix://", "http+unix://"):
        if base_url.startswith(prefix):
            return base_url.removeprefix(prefix)
    return None


class DockerEngine:
    """`DockerPort` over a real engine (docker-py's low-level API: one HTTP call per method)."""

    def __init__(self, client: docker.APIClient | None = None, *, scope: Settings) -> None:
        # The scope (Settings.scope_labels): stamped on every create, required on every list.
        self._required = {naming.MANAGED: "true", naming.SCOPE: scope.scope_id, **scope.labels}
        try:
            # DOCKER_HOST (and DOCKER_TLS_VERIFY, DOCKER_CERT_PATH) pick the engine, as for docker.
            self._api = client or docker.APIClient(version="auto", **kwargs_from_env())
        except docker.errors.DockerException as exc:
            raise DockerError(
                f"cannot reach the Docker engine ({exc}); start dockerd or run `make setup`"
            ) from exc

    def _managed_labels(
        self, extra: Mapping[str, str], kind: ObjectKind = "container"
    ) -> dict[str, str]:
        """The labels every object we create carries: managed, scope, and what kind of object.

        Docker copies an image's labels into every container made from it, so `managed=true`
        alone cannot tell our containers from a user's `docker run` of our image; the kind can.
        """
        return {**extra, **self._required_labels(kind)}

    def _required_labels(self, kind: ObjectKind) -> dict[str, str]:
        return {**self._required, naming.OBJECT: kind}

    def _label_filters(self, kind: ObjectKind = "container") -> list[str]:
        return [f"{k}={v}" for k, v in self._required_labels(kind).items()]

    def _is_managed(self, labels: Mapping[str, str] | None, kind: ObjectKind = "container") -> bool:
        have = labels or {}
        return all(have.get(k) == v for k, v in self._required_labels(kind).items())

    # -- listing (always filtered by the managed label) -------------------------------------
    def list_containers(self) -> list[ContainerInfo]:
        raw: list[dict[str, Any]] = self._api.containers(
            all=True, filters={"label": self._label_filters()}
        )
        return [
            ContainerInfo(
                id=c["Id"],
                name=(c.get("Names") or ["/"])[0].lstrip("/"),
                labels=c.get("Labels") or {},
                state=c.get("State", ""),
                image_id=c.get("ImageID", ""),
                volumes=tuple(
                    str(m["Name"])
                    for m in c.get("Mounts") or []
                    if m.get("Type") == "volume" and m.get("Name")
                ),
                status=str(c.get("Status", "")),
                created=int(c.get("Created") or 0),
            )
            for c in raw
        ]

    def list_volumes(self) -> list[VolumeInfo]:
        raw = self._api.volumes(filters={"label": self._label_filters("volume")})
        return [
            VolumeInfo(name=v["Name"], labels=v.get("Labels") or {})
            for v in (raw.get("Volumes") or [])
        ]

    def list_networks(self) -> list[NetworkInfo]:
        raw: list[dict[str, Any]] = self._api.networks(
            filters={"label": self._label_filters("network")}
        )
        return [NetworkInfo(id=n["Id"], name=n["Name"], labels=n.get("Labels") or {}) for n in raw]

    def image_id(self, ref: str) -> str | None:
        try:
            inspect: Any = self._api.inspect_image  # untyped in types-docker
            info: dict[str, Any] = inspect(ref)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            raise _wrap(exc, f"inspect image {ref}") from exc
        return str(info["Id"])

    # -- creating (always stamped) -----------------------------------------------------------
    def create_network(self, name: str, labels: Mapping[str, str]) -> str:
        try:
            result: dict[str, Any] = self._api.create_network(
                name,
                driver="bridge",
                labels=self._managed_labels(labels, "network"),
                check_duplicate=True,
            )
        except docker.errors.APIError as exc:
            raise _wrap(exc, f"create network {name}") from exc
        return str(result["Id"])

    def create_volume(self, name: str, labels: Mapping[str, str]) -> None:
        """Create the volume with its labels in one call: no check-then-create race.

        Docker answers a create of an existing name with that volume, so "already exists" is
        decided on what comes back: a volume with exactly our labels is the one this plan
        wanted (another pass made it first); anything else is not ours and is refused."""
        wanted = self._managed_labels(labels, "volume")
        try:
            made: dict[str, Any] = self._api.create_volume(name, driver="local", labels=wanted)
        except docker.errors.APIError as exc:
            raise _wrap(exc, f"create volume {name}") from exc
        have = made.get("Labels") or {}
        if any(have.get(k) != v for k, v in wanted.items()):
            raise DockerError(
                f"create volume {name}: a volume with that name exists but clawker did not make "
                "it (its labels differ; Docker makes an unlabelled one when a container mounts "
                f"a missing volume). Look inside (`docker volume inspect {name}`), then remove "
                "or rename it, and apply again",
                409,
            )

    def create_container(self, spec: ContainerSpec) -> str:
        mounts = [_to_mount(m) for m in spec.mounts]
        host_config = self._api.create_host_config(
            mounts=mounts,
            cap_add=list(spec.cap_add) or None,
            cap_drop=list(spec.cap_drop) or None,
            security_opt=list(spec.security_opt) or None,
            sysctls=dict(spec.sysctls) or None,
            cgroup_parent=spec.cgroup_parent or None,
            network_mode=spec.network or None,
            auto_remove=spec.auto_remove,
        )
        try:
            result: dict[str, Any] = self._api.create_container(
                image=spec.image,
                command=list(spec.command),
                name=spec.name,
                hostname=spec.hostname or None,
                environment=dict(spec.env),
                labels=self._managed_labels(spec.labels),
                working_dir=spec.working_dir or None,
                host_config=host_config,
                tty=spec.tty,
                # docker-py also sets StdinOnce with stdin_open: the end of an attached
                # client's stdin (`echo hi | clawker run -i ... -- cat`) is the CMD's EOF.
                stdin_open=spec.stdin_open,
            )
        except docker.errors.APIError as exc:
            raise _wrap(exc, f"create container {spec.name}") from exc
        return str(result["Id"])

    # -- acting on what we made ------------------------------------------------------------------
    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except docker.errors.APIError as exc:
            raise _wrap(exc, what) from exc

    def _require_managed_container(self, container_id: str) -> None:
        info = self._call(
            f"inspect container {container_id[:12]}", self._api.inspect_container, container_id
        )
        if not self._is_managed(info.get("Config", {}).get("Labels")):
            raise NotManagedError(f"container {container_id[:12]} is not managed by clawker")

    def container_id(self, name: str) -> str:
        """The full id of the managed container `name` (identities are bound to ids)."""
        info = self._call(f"inspect container {name[:12]}", self._api.inspect_container, name)
        if not self._is_managed(info.get("Config", {}).get("Labels")):
            raise NotManagedError(f"container {name} is not managed by clawker")
        return str(info["Id"])

    def container_mounts(self, name: str) -> ContainerMounts:
        """The managed container `name` as its mounts show it (a bind's source is its host
        path, a volume's its name)."""
        from reconciler.docker.records import ContainerMounts  # noqa: PLC0415

        info = self._call(f"inspect container {name[:12]}", self._api.inspect_container, name)
        labels = info.get("Config", {}).get("Labels") or {}
        if not self._is_managed(labels):
            raise NotManagedError(f"container {name} is not managed by clawker")
        mounts = tuple(
            MountSpec(
                m.get("Type", ""),
                m.get("Destination", ""),
                (m.get("Name") if m.get("Type") == "volume" else m.get("Source")) or "",
                read_only=not m.get("RW", True),
            )
            for m in info.get("Mounts") or []
        )
        state = info.get("State", {}).get("Status", "")
        return ContainerMounts(str(info["Id"]), dict(labels), str(state), mounts)

    def start_container(self, container_id: str) -> None:
        self._call(f"start container {container_id[:12]}", self._api.start, container_id)

    def stop_container(self, container_id: str, timeout: int = 10) -> None:
        self._call(
            f"stop container {container_id[:12]}", self._api.stop, container_id, timeout=timeout
        )

    def remove_container(self, container_id: str) -> None:
        self._require_managed_container(container_id)
        self._call(
            f"remove container {container_id[:12]}",
            self._api.remove_container,
            container_id,
            force=True,
        )

    def rename_container(self, container_id: str, new_name: str) -> None:
        self._call(
            f"rename container {container_id[:12]}", self._api.rename, container_id, new_name
        )

    def remove_volume(self, name: str) -> None:
        info = self._call(f"inspect volume {name}", self._api.inspect_volume, name)
        if not self._is_managed(info.get("Labels"), "volume"):
            raise NotManagedError(f"volume {name} is not managed by clawker")
        self._call(f"remove volume {name}", self._api.remove_volume, name)

    def put_archive(self, container_id: str, path: str, data: bytes | IO[bytes]) -> None:
        """Unpack the tar `data` at `path` in a container. Into a new local volume of a
        container not started yet, the files are written on the host when that is the same
        (reconciler.docker.host_fill); everything else goes through Docker's archive API."""
        stream = io.BytesIO(data) if isinstance(data, bytes) else data
        start = stream.tell()
        if self._fill_on_host(container_id, path, stream):
            return
        stream.seek(start)
        ok = self._call(
            f"copy into container {container_id[:12]}",
            self._api.put_archive,
            container_id,
            path,
            stream,
        )
        if not ok:
            raise DockerError(f"copy into container {container_id[:12]}:{path} was refused")

    def _fill_on_host(self, container_id: str, path: str, stream: IO[bytes]) -> bool:
        info = self._call(
            f"inspect container {container_id[:12]}", self._api.inspect_container, container_id
        )
        if not self._is_managed(info.get("Config", {}).get("Labels")):
            raise NotManagedError(f"container {container_id[:12]} is not managed by clawker")
        if info.get("State", {}).get("Status") != "created":
            return False  # its process could be writing there too
        target = path.rstrip("/") or "/"
        volume = next(
            (
                m
                for m in info.get("Mounts") or []
                if m.get("Type") == "volume" and m.get("Destination") == target
            ),
            None,
        )
        if volume is None or volume.get("Driver") != "local" or not volume.get("Source"):
            return False
        start = stream.tell()
        try:
            return fill_directory(Path(volume["Source"]), stream)
        except (OSError, tarfile.TarError):
            stream.seek(start)  # the archive API writes every member again
            return False

    def archive_names(self, container_id: str, path: str) -> frozenset[str] | None:
        """The names of the entries of directory `path` in a container (a stopped or never
        started one too: Docker mounts its volumes for the copy); None when it is absent."""
        try:
            stream, _stat = self._api.get_archive(container_id, path)
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as exc:
            raise _wrap(exc, f"copy from container {container_id[:12]}:{path}") from exc
        with tempfile.TemporaryFile() as buffer:
            for chunk in stream:
                buffer.write(chunk)
            buffer.seek(0)
            with tarfile.open(fileobj=buffer, mode="r") as tar:
                return frozenset(
                    name.split("/", 1)[1]
                    for name in tar.getnames()
                    if "/" in name and name.split("/", 1)[1]
                )

    def probe_volume(self, volume: str, path: str, image: str) -> frozenset[str] | None:
        """`archive_names` of `path` inside a volume no container mounts: through a container
        that is created (never started) for the look and removed again — unless the engine is
        local and the volume's directory readable here (root with the local driver: the case
        clawker is built for), which is read directly, so that `diff` makes no container."""
        seen = self._local_volume_names(volume, path)
        if seen is not False:
            return seen
        name = naming.probe_name(volume)
        try:
            self.remove_container(name)  # left by a pass killed during its look
        except DockerError as exc:
            if exc.status != 404:
                raise
        labels = {naming.PURPOSE: "probe", naming.VOLUME_ROLE: volume}
        mount = MountSpec("volume", "/probe", volume, read_only=True)
        spec = ContainerSpec(name, image, ("true",), labels, mounts=(mount,), tty=False)
        probe = self.create_container(spec)
        try:
            return self.archive_names(probe, f"/probe/{path}")
        finally:
            self._call(f"remove container {name}", self._api.remove_container, probe, force=True)

    def _local_volume_names(self, volume: str, path: str) -> frozenset[str] | Literal[False] | None:
        """The entries directly in `path` of a local-driver volume, read on this host's
        filesystem (None when it is absent); False when that cannot be done here (another
        driver, a remote engine, no permission)."""
        info = self._call(f"inspect volume {volume}", self._api.inspect_volume, volume)
        mountpoint = info.get("Mountpoint") or ""
        if info.get("Driver") != "local" or not mountpoint:
            return False
        root = Path(mountpoint)
        try:
            if not root.is_dir():
                return False  # not this host's filesystem
            base = root / path
            if not base.is_dir():
                return None
            return frozenset(entry.name for entry in base.iterdir())  # links never followed
        except PermissionError:
            return False

    def inspect_state(self, container_id: str) -> Mapping[str, Any]:
        info = self._call(
            f"inspect container {container_id[:12]}", self._api.inspect_container, container_id
        )
        state: Mapping[str, Any] = info.get("State", {})
        return state

    def inspect_runtime(self, container_id: str, network: str) -> RuntimeInfo | None:
        from reconciler.docker.records import RuntimeInfo  # noqa: PLC0415

        try:
            info: dict[str, Any] = self._api.inspect_container(container_id)
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as exc:
            raise _wrap(exc, f"inspect container {container_id[:12]}") from exc
        labels = info.get("Config", {}).get("Labels") or {}
        if not self._is_managed(labels):
            return None
        state = info.get("State", {})
        nets = info.get("NetworkSettings", {}).get("Networks") or {}
        return RuntimeInfo(
            id=info["Id"],
            name=str(info.get("Name", "")).lstrip("/"),
            labels=labels,
            running=bool(state.get("Running")),
            started_at=str(state.get("StartedAt", "")),
            ip=str((nets.get(network) or {}).get("IPAddress", "")),
            exit_code=int(state.get("ExitCode", 0)),
            pid=int(state.get("Pid") or 0),
            gateway=str((nets.get(network) or {}).get("Gateway", "")),
        )

    def running_agent_containers(self, project: str, agent: str) -> dict[str, str]:
        """The agent's running (or paused, or restarting) containers: id -> name. One list,
        filtered by Docker on the managed, project and agent labels."""
        filters = [*self._label_filters(), f"{naming.PROJECT}={project}", f"{naming.AGENT}={agent}"]
        raw: list[dict[str, Any]] = self._call(
            f"list the containers of {project}/{agent}",
            self._api.containers,
            all=True,
            filters={"label": filters, "status": ["running", "paused", "restarting"]},
        )
        return {str(c["Id"]): (c.get("Names") or ["/"])[0].lstrip("/") for c in raw}

    def container_events(self) -> Iterator[ContainerEvent]:
        """Container events of managed containers until the stream ends (daemon restart).

        Subscribes before it returns (a daemon that is down raises here), so a caller that
        re-lists right after this call misses no event in between.
        """
        filters = {"type": ["container"], "label": self._label_filters()}
        try:
            stream = self._api.events(decode=True, filters=filters)
        except (docker.errors.APIError, OSError) as exc:
            raise DockerError(f"cannot subscribe to docker events: {exc}") from exc
        return self._decode_events(stream)

    @staticmethod
    def _decode_events(stream: Iterable[Mapping[str, Any]]) -> Iterator[ContainerEvent]:
        from reconciler.docker.records import ContainerEvent  # noqa: PLC0415

        try:
            for event in stream:
                actor = event.get("Actor", {})
                yield ContainerEvent(
                    id=str(actor.get("ID", event.get("id", ""))),
                    action=str(event.get("Action", event.get("status", ""))).split(":")[0],
                    labels=actor.get("Attributes") or {},
                    time_nano=int(event.get("timeNano") or 0),
                )
        except (docker.errors.APIError, OSError) as exc:
            raise DockerError(f"docker event stream broke: {exc}") from exc

    def logs_tail(self, container_id: str, lines: int = 20) -> str:
        raw = self._call(
            f"logs of container {container_id[:12]}", self._api.logs, container_id, tail=lines
        )
        return bytes(raw).decode(errors="replace")

    def import_image(
        self, tar_path: str, ref: str, labels: Mapping[str, str], cmd: Sequence[str]
    ) -> str:
        repository, _, tag = ref.partition(":")
        changes = [f"CMD {json.dumps(list(cmd))}"]
        changes += [
            f"LABEL {json.dumps(k)}={json.dumps(v)}"
            for k, v in self._managed_labels(labels, "image").items()
        ]
        self._call(
            f"import image {ref}",
            self._api.import_image_from_file,
            tar_path,
            repository=repository,
            tag=tag or "latest",
            changes=changes,
        )
        image = self.image_id(ref)
        if image is None:
            raise DockerError(f"import image {ref}: the image is missing after import")
        return image

    def build_image(
        self,
        context_dir: str,
        ref: str,
        labels: Mapping[str, str],
        on_line: Callable[[str], None],
        *,
        build_args: Mapping[str, str] | None = None,
        no_cache: bool = False,
    ) -> str:
        """Build `context_dir`/Dockerfile as `ref`, streaming the builder's output lines."""
        try:
            chunks = self._api.build(
                path=context_dir,
                tag=ref,
                labels=self._managed_labels(labels, "image"),
                buildargs=dict(build_args or {}),
                nocache=no_cache,
                pull=False,
                decode=True,
                rm=True,
                forcerm=True,
            )
            error, tail = _follow_build(chunks, on_line)
        except docker.errors.APIError as exc:
            raise _wrap(exc, f"build image {ref}") from exc
        if error:
            last = "\n".join(tail)
            raise DockerError(f"build image {ref}: {error}" + (f"\n{last}" if last else ""))
        image = self.image_id(ref)
        if image is None:
            raise DockerError(f"build image {ref}: the image is missing after the build")
        return image

    def exec_socket(
        self, container_id: str, argv: Sequence[str], *, user: str = ""
    ) -> socket.socket:
        """Run `argv` in a managed, running container with stdin attached; the returned socket
        carries stdin raw and stdout/stderr in Docker's multiplexed frames, and ends when the
        process does (or the container stops)."""
        self._require_managed_container(container_id)
        created = self._call(
            f"exec in container {container_id[:12]}",
            self._api.exec_create,
            container_id,
            list(argv),
            stdin=True,
            tty=False,
            user=user,
        )
        raw = self._call(
            f"exec in container {container_id[:12]}",
            self._api.exec_start,
            created["Id"],
            socket=True,
        )
        sock: socket.socket = getattr(raw, "_sock", raw)
        sock.settimeout(None)  # the stream is long-lived: idle is normal, not a failure
        return sock

    def exec_output(
        self, container_id: str, argv: Sequence[str], *, user: str = ""
    ) -> tuple[int, str]:
        """Run `argv` in a managed, running container to its end: (exit code, stdout+stderr)."""
        self._require_managed_container(container_id)
        what = f"exec in container {container_id[:12]}"
        created = self._call(what, self._api.exec_create, container_id, list(argv), user=user)
        output = self._call(what, self._api.exec_start, created["Id"])
        code = self._call(what, self._api.exec_inspect, created["Id"]).get("ExitCode")
        return int(code if code is not None else -1), bytes(output).decode(errors="replace")

    def list_images(self) -> list[ImageInfo]:
        raw: list[dict[str, Any]] = self._call(
            "list images", self._api.images, filters={"label": self._label_filters("image")}
        )
        return [
            ImageInfo(
                id=i["Id"],
                refs=tuple(t for t in (i.get("RepoTags") or []) if t != "<none>:<none>"),
                labels=i.get("Labels") or {},
                created=int(i.get("Created") or 0),
                size=int(i.get("Size") or 0),
            )
            for i in raw
        ]

    # -- a person at an agent: attach, exec, logs, copy ----------------------------------------
    def terminal_config(self, container_id: str) -> TerminalConfig:
        from reconciler.docker.records import TerminalConfig  # noqa: PLC0415

        info = self._call(
            f"inspect container {container_id[:12]}", self._api.inspect_container, container_id
        )
        config, host = info.get("Config", {}), info.get("HostConfig", {})
        return TerminalConfig(
            tty=bool(config.get("Tty")),
            stdin_open=bool(config.get("OpenStdin")),
            running=bool(info.get("State", {}).get("Running")),
            auto_remove=bool(host.get("AutoRemove")),
        )

    def attach_socket(self, container_id: str, *, stdin: bool) -> socket.socket:
        """Attach to the container's stdio (before its start, nothing it writes is lost).

        The daemon ends the stream on Docker's detach keys, ctrl-p ctrl-q, leaving the
        container running. A TTY container's stream is raw; any other is multiplexed frames.
        """
        self._require_managed_container(container_id)
        params = {
            "stdin": int(stdin),
            "stdout": 1,
            "stderr": 1,
            "stream": 1,
            "detachKeys": "ctrl-p,ctrl-q",
        }
        raw = self._call(
            f"attach to container {container_id[:12]}",
            self._api.attach_socket,
            container_id,
            params=params,
        )
        sock: socket.socket = getattr(raw, "_sock", raw)
        sock.settimeout(None)
        return sock

    def wait_container(self, container_id: str, condition: str = "not-running") -> int:
        """Block until the container meets `condition` (not-running | next-exit | removed);
        its exit code. Asked before a start with `next-exit`, it cannot miss a fast exit."""
        result = self._call(
            f"wait for container {container_id[:12]}",
            self._api.wait,
            container_id,
            timeout=None,
            condition=condition,
        )
        return int(result.get("StatusCode", 0))

    def begin_wait(self, container_id: str, condition: str) -> Callable[[], int]:
        """Register a wait for `condition` (next-exit | removed | not-running) and return what
        blocks for the exit code. The daemon answers the request's headers once the wait is
        registered, so a start made after this call cannot exit unseen (as `docker run`)."""
        api: Any = self._api  # docker-py's wait() blocks for the body: the headers come first
        try:
            response = api._post(
                api._url("/containers/{0}/wait", container_id),
                params={"condition": condition},
                timeout=None,
                stream=True,
            )
            api._raise_for_status(response)
        except docker.errors.APIError as exc:
            raise _wrap(exc, f"wait for container {container_id[:12]}") from exc

        def exit_code() -> int:
            body = json.loads(response.content or b"{}")
            return int(body.get("StatusCode", 0))

        return exit_code

    def resize_tty(self, container_id: str, height: int, width: int) -> None:
        self._call(
            f"resize container {container_id[:12]}",
            self._api.resize,
            container_id,
            height=height,
            width=width,
        )

    def restart_container(self, container_id: str, timeout: int = 10) -> None:
        self._call(
            f"restart container {container_id[:12]}",
            self._api.restart,
            container_id,
            timeout=timeout,
        )

    def open_exec(self, container_id: str, request: ExecRequest) -> tuple[str, socket.socket]:
        """Start `request` in a managed, running container; (exec id, its stdio socket)."""
        self._require_managed_container(container_id)
        created = self._call(
            f"exec in container {container_id[:12]}",
            self._api.exec_create,
            container_id,
            list(request.argv),
            stdin=request.stdin,
            tty=request.tty,
            user=request.user,
            workdir=request.workdir or None,
            environment=dict(request.env) or None,
        )
        raw = self._call(
            f"exec in container {container_id[:12]}",
            self._api.exec_start,
            created["Id"],
            socket=True,
            tty=request.tty,
        )
        sock: socket.socket = getattr(raw, "_sock", raw)
        sock.settimeout(None)
        return str(created["Id"]), sock

    def resize_exec(self, exec_id: str, height: int, width: int) -> None:
        self._call("resize exec", self._api.exec_resize, exec_id, height=height, width=width)

    def exec_exit_code(self, exec_id: str) -> int:
        """The exec's exit code, once Docker has recorded it (its stream ends a little before)."""
        import time  # noqa: PLC0415

        for _ in range(50):
            info = self._call("inspect exec", self._api.exec_inspect, exec_id)
            if not info.get("Running") and info.get("ExitCode") is not None:
                return int(info["ExitCode"])
            time.sleep(0.05)
        raise DockerError(f"exec {exec_id[:12]}: no exit code after its output ended")

    def logs_stream(
        self, container_id: str, *, follow: bool, since: str | None, tail: int | None
    ) -> Iterator[tuple[int, bytes]]:
        """(stream, bytes) chunks of the container's output: 1 stdout, 2 stderr (a TTY
        container's output is all stdout)."""
        tty = self.terminal_config(container_id).tty
        params: dict[str, Any] = {
            "stdout": 1,
            "stderr": 1,
            "follow": int(follow),
            "tail": "all" if tail is None else str(tail),
        }
        if since:
            params["since"] = _since(since)
        api: Any = self._api  # docker-py's logs() cannot tell stdout from stderr; its parts can
        try:
            response = api._get(
                api._url("/containers/{0}/logs", container_id), params=params, stream=True
            )
            api._raise_for_status(response)
        except docker.errors.APIError as exc:
            raise _wrap(exc, f"logs of container {container_id[:12]}") from exc
        if tty:  # one raw stream: pass it on as it arrives
            for chunk in response.iter_content(chunk_size=None):
                yield 1, bytes(chunk)
            return
        # Frames (8-byte header: stream, size), read from the de-chunked body.
        body = response.raw
        while len(header := _read_exactly(body, 8)) == 8:
            stream, size = struct.unpack(">BxxxL", header)
            data = _read_exactly(body, size)
            if data:
                yield stream, data
            if len(data) < size:
                return

    def get_archive(self, container_id: str, path: str) -> Iterator[bytes]:
        """A tar stream of `path` in the container (a file or a directory)."""
        self._require_managed_container(container_id)
        stream, _stat = self._call(
            f"copy from container {container_id[:12]}:{path}",
            self._api.get_archive,
            container_id,
            path,
        )
        return iter(stream)

    def path_stat(self, container_id: str, path: str) -> Mapping[str, Any] | None:
        """Docker's stat of `path` in the container (name, size, mode, ...); None if missing."""
        self._require_managed_container(container_id)
        try:
            stream, stat = self._api.get_archive(container_id, path)
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as exc:
            raise _wrap(exc, f"stat {container_id[:12]}:{path}") from exc
        close = getattr(stream, "close", None)
        if callable(close):
            close()
        result: Mapping[str, Any] = stat
        return result


def _follow_build(
    chunks: Iterable[Mapping[str, Any]], on_line: Callable[[str], None], keep: int = 20
) -> tuple[str, list[str]]:
    """Feed the builder's stream to `on_line` line by line; return (error text, last lines)."""
    tail: list[str] = []
    pending = ""
    error = ""

    def emit(line: str) -> None:
        tail.append(line)
        del tail[:-keep]
        on_line(line)

    for chunk in chunks:
        if "error" in chunk:
            error = str(chunk.get("error") or "").strip() or "the build failed"
            break
        text = chunk.get("stream")
        if text is None and "status" in chunk:  # pulling the base image
            text = f"{chunk['status']} {chunk.get('progress', '')}".rstrip() + "\n"
        if not text:
            continue
        pending += str(text)
        *lines, pending = pending.split("\n")
        for line in lines:
            if line.strip():
                emit(line.rstrip())
    if pending.strip():
        emit(pending.rstrip())
    return error, tail


def _read_exactly(body: Any, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = body.read(size - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def _since(value: str) -> int | str:
    """`--since`: seconds since the epoch, or a duration before now (`10m`, `2h`, `30s`)."""
    import time  # noqa: PLC0415

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if value[-1:] in units and value[:-1].replace(".", "", 1).isdigit():
        return int(time.time() - float(value[:-1]) * units[value[-1]])
    if value.isdigit():
        return int(value)
    raise DockerError(f"--since {value}: give seconds since the epoch or a duration like 10m")


def _to_mount(m: MountSpec) -> Mount:
    if m.kind == "tmpfs":
        return Mount(target=m.target, source=None, type="tmpfs", read_only=m.read_only)
    return Mount(target=m.target, source=m.source, type=m.kind, read_only=m.read_only)


_RECORDS = frozenset(
    {"ContainerEvent", "ContainerMounts", "ExecRequest", "RuntimeInfo", "TerminalConfig"}
)


def __getattr__(name: str) -> Any:
    """The records of reconciler.docker.records, named here too, loaded on first use."""
    if name not in _RECORDS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from reconciler.docker import records  # noqa: PLC0415

    value = getattr(records, name)
    globals()[name] = value
    return value
