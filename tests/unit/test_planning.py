"""The pure planner, as golden text: no Docker anywhere in this file."""

from __future__ import annotations

import textwrap
from pathlib import Path

from cli.render import render_plan
from cli.style import Style
from reconciler.docker.engine import ContainerInfo
from reconciler.images import ImageInputs, image_inputs
from reconciler.loop.desired import desired_container, desired_volumes
from reconciler.loop.observe import ObservedImage, ObservedState, group_containers
from reconciler.loop.plan import plan, plan_delete
from specs import DesiredAgent, load_specs

IMAGE = "clawker-myapp:default"
IMAGE_ID = "sha256:" + "a" * 64


def images_of(desired: tuple[DesiredAgent, ...]) -> dict[str, ImageInputs]:
    return {a.project: image_inputs(a) for a in desired}


def built(desired: tuple[DesiredAgent, ...], image_id: str = IMAGE_ID) -> dict[str, ObservedImage]:
    """The project image as a previous build left it (its input labels match)."""
    return {i.ref: ObservedImage(image_id, i.labels()) for i in images_of(desired).values()}


def agents(
    tmp_path: Path,
    env: str = "hello",
    names: tuple[str, ...] = ("dev", "test"),
    mode: str = "bind",
    packages: str = "[]",
) -> tuple[DesiredAgent, ...]:
    (tmp_path / "ws").mkdir(exist_ok=True)
    docs = [
        textwrap.dedent(f"""\
        apiVersion: clawker.dev/v1alpha1
        kind: Project
        metadata: {{name: myapp}}
        spec:
          workspace: {{path: ./ws, mode: {mode}}}
          agent: {{env: {{GREETING: {env}}}}}
          build: {{packages: {packages}}}
        """)
    ]
    docs += [
        textwrap.dedent(f"""\
        apiVersion: clawker.dev/v1alpha1
        kind: Agent
        metadata: {{name: {n}, project: myapp}}
        spec: {{command: [sleep, infinity]}}
        """)
        for n in names
    ]
    spec = tmp_path / "agents.yaml"
    spec.write_text("---\n".join(docs))
    return load_specs([str(spec)]).agents


def observed_from(
    running: tuple[DesiredAgent, ...],
    *,
    state: str = "running",
    network: bool = True,
    image_id: str = IMAGE_ID,
) -> ObservedState:
    containers = []
    volumes: dict[str, dict[str, str]] = {}
    for i, a in enumerate(running):
        spec = desired_container(a, image=IMAGE, apply_set=a.project)
        containers.append(ContainerInfo(f"{i:064x}", spec.name, dict(spec.labels), state, image_id))
        volumes.update({v.name: v.labels for v in desired_volumes(a)})
    return ObservedState(
        agents=group_containers(containers),
        volumes=volumes,
        networks=frozenset({"clawker-net"} if network else set()),
        images=built(running),
    )


def test_create_from_nothing(tmp_path: Path) -> None:
    desired = agents(tmp_path)
    p = plan(desired, ObservedState(), images=images_of(desired))
    assert str(p) == textwrap.dedent("""\
        [] -> #1 network:clawker-net, CreateNetwork, not found
        [] -> #2 image:clawker-myapp:default, BuildImage, not found
        [] -> #3 volume:clawker.myapp.dev-config, CreateVolume, not found
        [] -> #4 volume:clawker.myapp.dev-history, CreateVolume, not found
        [#1 #2 #3 #4] -> #5 container:clawker.myapp.dev, CreateContainer, not found
        [#5] -> #6 container:clawker.myapp.dev, SeedConfig, new config volume (seed: copy)
        [#6] -> #7 container:clawker.myapp.dev, CopyBootstrap, new container identity
        [#7] -> #8 container:clawker.myapp.dev, StartContainer, created
        [] -> #9 volume:clawker.myapp.test-config, CreateVolume, not found
        [] -> #10 volume:clawker.myapp.test-history, CreateVolume, not found
        [#1 #2 #9 #10] -> #11 container:clawker.myapp.test, CreateContainer, not found
        [#11] -> #12 container:clawker.myapp.test, SeedConfig, new config volume (seed: copy)
        [#12] -> #13 container:clawker.myapp.test, CopyBootstrap, new container identity
        [#13] -> #14 container:clawker.myapp.test, StartContainer, created""")
    assert p.counts() == (2, 0, 0)
    assert render_plan(p, Style.plain()) == textwrap.dedent("""\
        clawker will perform the following actions:

          # network clawker-net will be created (not found)
          + network "clawker-net"

          # image clawker-myapp:default will be built (not found)
          + build image clawker-myapp:default (from buildpack-deps:bookworm-scm)

          # agent myapp/dev will be created (not found)
          + agent "myapp/dev"
              + volume clawker.myapp.dev-config
              + volume clawker.myapp.dev-history
              + container clawker.myapp.dev

          # agent myapp/test will be created (not found)
          + agent "myapp/test"
              + volume clawker.myapp.test-config
              + volume clawker.myapp.test-history
              + container clawker.myapp.test

        Plan: 2 to add, 0 to change, 0 to destroy. 1 image to build.""")


def test_an_unchanged_world_plans_nothing(tmp_path: Path) -> None:
    desired = agents(tmp_path)
    p = plan(desired, observed_from(desired), images=images_of(desired))
    assert str(p) == ""
    assert p.empty
    assert [c.kind.value for c in p.changes] == ["noop", "noop"]
    assert render_plan(p, Style.plain()) == ("No changes. Docker matches the specs.")


def test_env_change_replaces_with_its_cause_and_masks_the_value(tmp_path: Path) -> None:
    before = agents(tmp_path, names=("dev",))
    after = agents(tmp_path, env="bonjour", names=("dev",))
    p = plan(after, observed_from(before), images=images_of(after))
    assert str(p) == textwrap.dedent("""\
        [] -> #1 container:clawker.myapp.dev--next, CreateContainer, agent.env changed
        [#1] -> #2 container:clawker.myapp.dev--next, CopyBootstrap, new container identity
        [#2] -> #3 container:000000000000, StopContainer, replaced: agent.env changed
        [#3] -> #4 container:000000000000, RemoveContainer, replaced: agent.env changed
        [#4] -> #5 container:clawker.myapp.dev--next, RenameContainer, replaces clawker.myapp.dev
        [#5] -> #6 container:clawker.myapp.dev, StartContainer, created""")
    rendered = render_plan(p, Style.plain())
    assert '-/+ agent "myapp/dev"' in rendered
    assert "~ agent.env.GREETING: (sensitive value) -> (sensitive value) # forces replacement" in (
        rendered
    )
    assert "bonjour" not in rendered
    shown = render_plan(p, Style.plain(), show_secrets=True)
    assert '"hello" -> "bonjour"' in shown
    assert p.counts() == (1, 0, 1)


def test_a_rebuilt_image_replaces(tmp_path: Path) -> None:
    desired = agents(tmp_path, names=("dev",))
    p = plan(
        desired, observed_from(desired, image_id="sha256:" + "b" * 64), images=images_of(desired)
    )
    assert p.changes[0].reasons == ("image changed",)


def test_another_hash_version_never_recreates(tmp_path: Path) -> None:
    desired = agents(tmp_path, names=("dev",))
    obs = observed_from(agents(tmp_path, env="old", names=("dev",)))
    c = obs.agents["myapp/dev"].container
    assert c is not None
    relabelled = ContainerInfo(
        c.id, c.name, {**c.labels, "dev.clawker.hash-version": "0"}, c.state, c.image_id
    )
    obs = ObservedState(
        agents=group_containers([relabelled]),
        volumes=obs.volumes,
        networks=obs.networks,
        images=obs.images,
    )
    assert plan(desired, obs, images=images_of(desired)).empty


def test_a_stopped_container_is_started_in_place(tmp_path: Path) -> None:
    desired = agents(tmp_path, names=("dev",))
    p = plan(desired, observed_from(desired, state="exited"), images=images_of(desired))
    assert str(p) == ("[] -> #1 container:clawker.myapp.dev, StartContainer, container is exited")
    assert p.counts() == (0, 1, 0)


def test_prune_removes_only_members_of_the_apply_set(tmp_path: Path) -> None:
    both = agents(tmp_path)
    only_dev = tuple(a for a in both if a.name == "dev")
    obs = observed_from(both)
    assert plan(only_dev, obs, images=images_of(only_dev)).empty
    p = plan(only_dev, obs, images=images_of(only_dev), apply_sets=["myapp"], prune=True)
    assert str(p) == (
        "[] -> #1 container:clawker.myapp.test, RemoveContainer, "
        "pruned: not declared in apply set myapp"
    )
    assert p.counts() == (0, 0, 1)
    assert plan(only_dev, obs, images=images_of(only_dev), apply_sets=["other"], prune=True).empty


def test_snapshot_mode_copies_the_workspace_only_into_a_new_volume(tmp_path: Path) -> None:
    desired = agents(tmp_path, names=("dev",), mode="snapshot")
    p = plan(
        desired,
        ObservedState(networks=frozenset({"clawker-net"}), images=built(desired)),
        images=images_of(desired),
    )
    ws = desired[0].workspace.path
    assert str(p).splitlines()[-4:] == [
        f"[#4] -> #5 container:clawker.myapp.dev, CopyWorkspace, new workspace volume: "
        f"snapshot of {ws}",
        "[#5] -> #6 container:clawker.myapp.dev, SeedConfig, new config volume (seed: copy)",
        "[#6] -> #7 container:clawker.myapp.dev, CopyBootstrap, new container identity",
        "[#7] -> #8 container:clawker.myapp.dev, StartContainer, created",
    ]
    # A recreate finds the volume and its copy in place: nothing is copied again.
    again = plan(desired, observed_from(desired, state="exited"), images=images_of(desired))
    assert "CopyWorkspace" not in str(again)


def test_delete_keeps_volumes_unless_asked(tmp_path: Path) -> None:
    desired = agents(tmp_path, names=("dev",))
    obs = observed_from(desired)
    assert str(plan_delete(["myapp/dev"], obs, volumes=False)) == (
        "[] -> #1 container:clawker.myapp.dev, RemoveContainer, delete requested"
    )
    with_volumes = str(plan_delete(["myapp/dev"], obs, volumes=True)).splitlines()
    assert with_volumes[1:] == [
        "[#1] -> #2 volume:clawker.myapp.dev-config, RemoveVolume, delete --volumes requested",
        "[#1] -> #3 volume:clawker.myapp.dev-history, RemoveVolume, delete --volumes requested",
    ]


def test_changed_image_inputs_build_once_and_replace_the_agents(tmp_path: Path) -> None:
    desired = agents(tmp_path, names=("dev",))
    obs = observed_from(desired)
    changed = agents(tmp_path, names=("dev",), packages="[jq]")
    p = plan(changed, obs, images=images_of(changed))
    assert str(p).splitlines()[0] == (
        "[] -> #1 image:clawker-myapp:default, BuildImage, inputs changed: packages"
    )
    assert p.changes[0].kind.value == "replace"
    assert "image rebuilt (inputs changed: packages)" in p.changes[0].reasons
