"""Which Docker calls a pass makes before it plans (`prepare_apply`), against a recording port:
the four lists always (at once); a base image's inspect only for an image the plan builds."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cli.render import render_plan
from cli.style import Style
from reconciler.docker.engine import ContainerInfo, ImageInfo, NetworkInfo, VolumeInfo
from reconciler.images import ImageInputs, image_inputs
from reconciler.loop.converge import prepare_apply
from reconciler.loop.desired import desired_container, desired_volumes
from reconciler.loop.observe import ObservedImage, ObservedState
from reconciler.loop.plan import Action, images_to_build
from reconciler.settings import Settings
from specs import DesiredAgent, load_specs

BASE_ID = "sha256:" + "b" * 64
IMAGE_ID = "sha256:" + "a" * 64


class RecordingPort:
    """Docker as a previous apply left it: `running` agents' containers and volumes, the
    project image when `built`, and the base images in `bases`; every call is recorded."""

    def __init__(
        self,
        running: tuple[DesiredAgent, ...],
        images: dict[str, ImageInputs],
        *,
        built: bool = True,
        bases: frozenset[str] = frozenset({"clawker-base:bookworm"}),
    ) -> None:
        self.calls: list[str] = []
        self._bases = bases
        self._containers = []
        self._volumes = []
        for i, a in enumerate(running):
            spec = desired_container(a, image=images[a.project].ref, apply_set=a.project)
            labels = dict(spec.labels)
            self._containers.append(
                ContainerInfo(f"{i:064x}", spec.name, labels, "running", IMAGE_ID)
            )
            self._volumes += [VolumeInfo(v.name, v.labels) for v in desired_volumes(a)]
        self._images = [
            ImageInfo(IMAGE_ID, (i.ref,), i.labels(), 0, 0) for i in images.values() if built
        ]

    def list_containers(self) -> list[ContainerInfo]:
        self.calls.append("list containers")
        return self._containers

    def list_volumes(self) -> list[VolumeInfo]:
        self.calls.append("list volumes")
        return self._volumes

    def list_networks(self) -> list[NetworkInfo]:
        self.calls.append("list networks")
        return [NetworkInfo("n", "clawker-net", {})]

    def list_images(self) -> list[ImageInfo]:
        self.calls.append("list images")
        return self._images

    def image_id(self, ref: str) -> str | None:
        self.calls.append(f"inspect image {ref}")
        return BASE_ID if ref in self._bases else None

    def archive_names(self, container_id: str, path: str) -> frozenset[str] | None:
        raise AssertionError("no fill is unfinished here")

    def probe_volume(self, volume: str, path: str, image: str) -> frozenset[str] | None:
        raise AssertionError("no fill is unfinished here")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Its own cache (image inputs) and state directory (no control plane runs there).
    return Settings(cache_dir=tmp_path / "cache", state_dir=tmp_path / "state")


def fleet(tmp_path: Path, packages: str = "[]") -> tuple[DesiredAgent, ...]:
    (tmp_path / "ws").mkdir(exist_ok=True)
    spec = tmp_path / "agents.yaml"
    spec.write_text(
        textwrap.dedent(f"""\
        apiVersion: clawker.dev/v1alpha1
        kind: Project
        metadata: {{name: myapp}}
        spec:
          workspace: {{path: ./ws}}
          build: {{packages: {packages}}}
        ---
        apiVersion: clawker.dev/v1alpha1
        kind: Agent
        metadata: {{name: dev, project: myapp}}
        spec: {{command: [sleep, infinity]}}
        """)
    )
    return load_specs([str(spec)]).agents


LISTS = ["list containers", "list volumes", "list images", "list networks"]


def test_a_pass_with_its_image_up_to_date_inspects_no_base_image(
    tmp_path: Path, settings: Settings
) -> None:
    desired = fleet(tmp_path)
    images = {a.project: image_inputs(a, settings) for a in desired}
    port = RecordingPort(desired, images)
    specset = load_specs([str(tmp_path / "agents.yaml")])
    prepared = prepare_apply(port, specset, settings=settings)  # type: ignore[arg-type]
    assert sorted(port.calls) == sorted(LISTS)  # made at once: in no fixed order
    assert not any(s.action is Action.BUILD_IMAGE for s in prepared.plan.steps)


@pytest.mark.parametrize("built", [False, True], ids=["image missing", "inputs changed"])
def test_an_image_to_build_still_shows_the_base_it_is_built_from(
    tmp_path: Path, settings: Settings, built: bool
) -> None:
    """The declared base is absent, so the build falls back to clawker-base:bookworm: the
    plan says so, as it did when every pass inspected the bases."""
    old = {a.project: image_inputs(a, settings) for a in fleet(tmp_path, "[git]")}
    desired = fleet(tmp_path)  # packages changed since that image was built
    port = RecordingPort(desired, old, built=built)
    specset = load_specs([str(tmp_path / "agents.yaml")])
    prepared = prepare_apply(port, specset, settings=settings)  # type: ignore[arg-type]
    assert sorted(port.calls[:4]) == sorted(LISTS)  # the lists first, then the bases
    assert port.calls[4:] == [
        "inspect image buildpack-deps:bookworm-scm",
        "inspect image clawker-base:bookworm",
    ]
    (build,) = [s for s in prepared.plan.steps if s.action is Action.BUILD_IMAGE]
    assert build.base_image == "clawker-base:bookworm"
    assert build.cause == ("inputs changed: packages" if built else "not found")
    assert "(from clawker-base:bookworm)" in render_plan(prepared.plan, Style.plain())


def test_an_unusable_base_is_still_an_error_before_anything_is_touched(
    tmp_path: Path, settings: Settings
) -> None:
    from reconciler.loop.plan import PlanError  # noqa: PLC0415

    desired = fleet(tmp_path)
    images = {a.project: image_inputs(a, settings) for a in desired}
    port = RecordingPort(desired, images, built=False, bases=frozenset())
    specset = load_specs([str(tmp_path / "agents.yaml")])
    with pytest.raises(PlanError, match="clawker image base"):
        prepare_apply(port, specset, settings=settings)  # type: ignore[arg-type]


def test_only_images_whose_labels_do_not_match_are_to_build(
    tmp_path: Path, settings: Settings
) -> None:
    desired = fleet(tmp_path)
    inputs = image_inputs(desired[0], settings)
    images = {"myapp": inputs}
    up_to_date = ObservedState(images={inputs.ref: ObservedImage(IMAGE_ID, inputs.labels())})
    stale = ObservedState(images={inputs.ref: ObservedImage(IMAGE_ID, {})})
    assert images_to_build(desired, images, up_to_date) == []
    assert images_to_build(desired, images, stale) == [inputs]
    assert images_to_build(desired, images, ObservedState()) == [inputs]
    assert images_to_build([], images, ObservedState()) == []  # no agent of it is planned
