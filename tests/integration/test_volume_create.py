"""Volume creation cannot race (issue 18), on the real engine: create with the labels in one
call, and decide "already exists" on what Docker hands back."""

from __future__ import annotations

import threading

import pytest

from reconciler import naming
from reconciler.docker.engine import DockerEngine, DockerError
from reconciler.settings import settings_from_env
from tests.cleanup import TEST_LABEL
from tests.integration.conftest import Scope

pytestmark = pytest.mark.docker


def _labels(scope: Scope) -> dict[str, str]:
    return {naming.PROJECT: scope.project, naming.AGENT: "dev", naming.PURPOSE: "history"}


def test_passes_creating_one_volume_at_once_all_get_the_same_labelled_volume(
    scope: Scope,
) -> None:
    engine = DockerEngine(scope=settings_from_env(scope.env))
    name = naming.volume_name(scope.project, "dev", "history")
    errors: list[Exception] = []
    barrier = threading.Barrier(4)

    def create() -> None:
        barrier.wait()
        try:
            engine.create_volume(name, _labels(scope))
        except DockerError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert scope.volumes() == {name}
    labels = scope.api.inspect_volume(name)["Labels"]
    assert labels[naming.MANAGED] == "true" and labels[naming.PURPOSE] == "history"
    assert [v.name for v in engine.list_volumes()] == [name]


def test_a_volume_of_that_name_that_clawker_did_not_make_is_refused_and_kept(
    scope: Scope,
) -> None:
    engine = DockerEngine(scope=settings_from_env(scope.env))
    name = naming.volume_name(scope.project, "dev", "history")
    # What Docker auto-creates when a container mounts a missing volume: no clawker labels
    # (only the test's own, so that the teardown removes it).
    scope.api.create_volume(name, labels={TEST_LABEL: scope.run_id})
    with pytest.raises(DockerError, match="clawker did not make it") as refused:
        engine.create_volume(name, _labels(scope))
    assert f"docker volume inspect {name}" in str(refused.value)
    assert scope.api.inspect_volume(name)["Labels"] == {TEST_LABEL: scope.run_id}
