"""Remove Docker objects made by the test suite, and only those (they carry dev.clawker.test).

`python -m tests.cleanup [RUN_ID]`: without a run id, every test object goes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import docker
import docker.errors

TEST_LABEL = "dev.clawker.test"


def remove_cgroup_parent(parent: str) -> None:
    """rmdir a run's parent cgroup in every hierarchy Docker created it in (empty by now)."""
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        path = hierarchy / parent.strip("/")
        if not path.is_dir():
            continue
        for child in path.iterdir():
            if child.is_dir():
                child.rmdir()
        path.rmdir()


def remove_test_objects(run_id: str | None = None) -> list[str]:
    """Force-remove containers, volumes, images, then networks labelled by the test run."""
    api = docker.APIClient(version="auto")
    selector = f"{TEST_LABEL}={run_id}" if run_id else TEST_LABEL
    filters = {"label": ["dev.clawker.managed=true", selector]}
    removed: list[str] = []
    for c in api.containers(all=True, filters={"label": [selector]}):
        try:
            api.remove_container(c["Id"], force=True)
            removed.append(f"container {c['Names'][0]}")
        except docker.errors.NotFound:
            pass
    for v in api.volumes(filters={"label": [selector]}).get("Volumes") or []:
        try:
            api.remove_volume(v["Name"], force=True)
            removed.append(f"volume {v['Name']}")
        except docker.errors.NotFound:
            pass
    for image in api.images(filters={"label": [selector]}):
        try:
            api.remove_image(image["Id"], force=True)
            removed.append(f"image {','.join(image.get('RepoTags') or []) or image['Id'][:19]}")
        except docker.errors.NotFound:
            pass
    for n in api.networks(filters=filters):
        try:
            api.remove_network(n["Id"])
            removed.append(f"network {n['Name']}")
        except docker.errors.NotFound:
            pass
    return removed


if __name__ == "__main__":
    for line in remove_test_objects(sys.argv[1] if len(sys.argv) > 1 else None):
        print(f"removed {line}")
