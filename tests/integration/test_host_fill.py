"""`put_archive` into a new local volume is written on the host, and only when that is the
same as Docker's archive API (reconciler.docker.host_fill), on the real engine: Docker logs an
`extract-to-dir` event for each archive it unpacks, so the events tell the two paths apart."""

from __future__ import annotations

import io
import tarfile
import time

import pytest

from reconciler import naming
from reconciler.docker.engine import ContainerSpec, DockerEngine, MountSpec
from reconciler.settings import settings_from_env
from tests.integration.conftest import Scope

pytestmark = pytest.mark.docker

MOUNT = "/seeded"  # not in the image: Docker's copy-up leaves the new volume root-owned


def _archive(uid: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        directory = tarfile.TarInfo("sub")
        directory.type, directory.mode, directory.uid, directory.gid = (
            tarfile.DIRTYPE,
            0o755,
            uid,
            uid,
        )
        tar.addfile(directory)
        info = tarfile.TarInfo("sub/file")
        info.size, info.mode, info.uid, info.gid = 5, 0o640, uid, uid
        tar.addfile(info, io.BytesIO(b"hello"))
    return buf.getvalue()


def _extractions(scope: Scope, container: str) -> int:
    """How many archives Docker has unpacked into `container` (made by this test)."""
    events = scope.api.events(
        since=int(time.time()) - 120,
        until=int(time.time()) + 1,
        decode=True,
        filters={"container": container, "event": "extract-to-dir"},
    )
    return sum(1 for _ in events)


def _in_container(scope: Scope, container: str) -> tuple[bytes, int, int]:
    stream, _stat = scope.api.get_archive(container, f"{MOUNT}/sub/file")
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.getmembers()[0]
        body = tar.extractfile(member)
        assert body is not None
        return body.read(), member.uid, member.mode & 0o7777


def _container(scope: Scope, engine: DockerEngine, name: str) -> str:
    volume = naming.volume_name(scope.project, name, "config")
    engine.create_volume(volume, {naming.PROJECT: scope.project, naming.AGENT: name})
    spec = ContainerSpec(
        naming.container_name(scope.project, name),
        naming.BASE_IMAGE_DEFAULT,
        ("sleep", "30"),
        {naming.PROJECT: scope.project, naming.AGENT: name},
        mounts=(MountSpec("volume", MOUNT, volume),),
        tty=False,
    )
    return engine.create_container(spec)


def test_a_new_volume_is_filled_on_the_host_and_the_container_sees_it(scope: Scope) -> None:
    engine = DockerEngine(scope=settings_from_env(scope.env))
    cid = _container(scope, engine, "host")
    engine.put_archive(cid, MOUNT, _archive(0))  # root's files in a root-owned volume
    assert _extractions(scope, cid) == 0
    assert _in_container(scope, cid) == (b"hello", 0, 0o640)


def test_what_the_host_cannot_do_the_same_goes_through_dockers_archive_api(
    scope: Scope,
) -> None:
    engine = DockerEngine(scope=settings_from_env(scope.env))
    cid = _container(scope, engine, "api")
    # 1001's files in a volume root owns: not the proof of a copy-up, so Docker unpacks them
    engine.put_archive(cid, MOUNT, _archive(1001))
    assert _extractions(scope, cid) == 1
    assert _in_container(scope, cid) == (b"hello", 1001, 0o640)
    # a started container's process could be writing there: Docker again
    scope.api.start(cid)
    engine.put_archive(cid, MOUNT, io.BytesIO(_archive(0)))
    assert _extractions(scope, cid) == 2
    assert _in_container(scope, cid) == (b"hello", 0, 0o640)
