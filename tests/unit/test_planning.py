"""The pure planner, as golden text: no Docker anywhere in this file."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path

from cli.render import render_plan
from cli.style import Style
from reconciler.controlplane.api.messages import AgentRuntimeState
from reconciler.controlplane.runtime_spec import Effect, desired_runtime
from reconciler.docker.engine import ContainerInfo
from reconciler.firewall.allowlist import effective_allowlist
from reconciler.host.host_state import HostContext
from reconciler.images import ImageInputs, image_inputs
from reconciler.loop.converge import pending_at_next_start
from reconciler.loop.desired import desired_container, desired_volumes
from reconciler.loop.observe import ObservedImage, ObservedState, group_containers
from reconciler.loop.plan import Action, ChangeKind, RuntimeObservation, plan, plan_delete
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
    steps: str = "",
    domains: str = "[]",
) -> tuple[DesiredAgent, ...]:
    (tmp_path / "ws").mkdir(exist_ok=True)
    docs = [
        textwrap.dedent(f"""\
        apiVersion: clawker.dev/v1alpha1
        kind: Project
        metadata: {{name: myapp}}
        spec:
          workspace: {{path: ./ws, mode: {mode}}}
          agent: {{env: {{GREETING: {env}}}{steps}}}
          build: {{packages: {packages}}}
          security: {{firewall: {{add_domains: {domains}}}}}
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
        [#2] -> #3 volume:clawker.myapp.dev-config, CreateVolume, not found
        [#2] -> #4 volume:clawker.myapp.dev-history, CreateVolume, not found
        [#1 #2 #3 #4] -> #5 container:clawker.myapp.dev, CreateContainer, not found
        [#5] -> #6 container:clawker.myapp.dev, SeedConfig, new config volume (seed: copy)
        [#6] -> #7 container:clawker.myapp.dev, CopyBootstrap, new container identity
        [#7] -> #8 container:clawker.myapp.dev, StartContainer, created
        [#2] -> #9 volume:clawker.myapp.test-config, CreateVolume, not found
        [#2] -> #10 volume:clawker.myapp.test-history, CreateVolume, not found
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
        [] -> #1 container:clawker.myapp.dev.next, CreateContainer, agent.env changed
        [#1] -> #2 container:clawker.myapp.dev.next, CopyBootstrap, new container identity
        [#2] -> #3 container:000000000000, RenameContainer, gives its name to clawker.myapp.dev.next
        [#3] -> #4 container:clawker.myapp.dev.next, RenameContainer, replaces clawker.myapp.dev
        [#4] -> #5 container:clawker.myapp.dev, StartContainer, created
        [#4] -> #6 container:000000000000, StopContainer, replaced: agent.env changed
        [#6] -> #7 container:000000000000, RemoveContainer, replaced: agent.env changed""")
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


def test_a_container_that_never_started_gets_its_preparation_again(tmp_path: Path) -> None:
    """A pass killed after `create container` resumes: the unfinished seed (its marker is
    missing) and fresh bootstrap material, then the first start."""
    desired = agents(tmp_path, names=("dev",))
    observed = observed_from(desired, state="created")
    observed = ObservedState(
        agents=observed.agents,
        volumes=observed.volumes,
        networks=observed.networks,
        images=observed.images,
        unfinished={"myapp/dev": frozenset({"config"})},
    )
    p = plan(desired, observed, images=images_of(desired))
    assert str(p) == textwrap.dedent("""\
        [] -> #1 container:clawker.myapp.dev, SeedConfig, unfinished config volume (seed: copy)
        [#1] -> #2 container:clawker.myapp.dev, CopyBootstrap, new container identity
        [#2] -> #3 container:clawker.myapp.dev, StartContainer, never started: prepared again""")


def test_kept_volumes_are_filled_only_when_their_marker_is_missing(tmp_path: Path) -> None:
    """Volumes without a container: a finished fill is never repeated, an unfinished one is."""
    desired = agents(tmp_path, names=("dev",), mode="snapshot")
    kept = observed_from(desired)
    kept = ObservedState(volumes=kept.volumes, networks=kept.networks, images=kept.images)
    finished = plan(desired, kept, images=images_of(desired))
    assert [s.action.value for s in finished.steps] == [
        "CreateContainer",
        "CopyBootstrap",
        "StartContainer",
    ]
    resumed = plan(
        desired,
        ObservedState(
            volumes=kept.volumes,
            networks=kept.networks,
            images=kept.images,
            unfinished={"myapp/dev": frozenset({"config", "workspace"})},
        ),
        images=images_of(desired),
    )
    assert [str(s).split(", ", 1)[1] for s in resumed.steps[1:3]] == [
        f"CopyWorkspace, unfinished workspace volume: snapshot of {tmp_path / 'ws'}",
        "SeedConfig, unfinished config volume (seed: copy)",
    ]


def test_a_replacement_name_is_outside_every_agent_name(tmp_path: Path) -> None:
    """`x.next` cannot be an agent's container name: agent names hold no dot."""
    before = agents(tmp_path, names=("x", "x--next"))
    after = agents(tmp_path, env="changed", names=("x", "x--next"))
    p = plan(after, observed_from(before), images=images_of(after))
    created = {s.target for s in p.steps if s.action.value == "CreateContainer"}
    assert created == {"clawker.myapp.x.next", "clawker.myapp.x--next.next"}


# -- the control plane's part: runtime specs and allowlists, each change with when it applies ----

NO_HOST = HostContext(uid=-1, gid=-1, home="", share_dir="")


def cp_holding(
    agents_: tuple[DesiredAgent, ...], *, post_init_done: bool = False, allowlist: bool = True
) -> RuntimeObservation:
    """The control plane as an apply of `agents_` left it."""
    return RuntimeObservation(
        {
            a.key: AgentRuntimeState(
                a.key,
                desired_runtime(a, NO_HOST),
                effective_allowlist(a) if allowlist else None,
                post_init_done,
            )
            for a in agents_
        }
    )


def test_an_unchanged_control_plane_plans_nothing(tmp_path: Path) -> None:
    desired = agents(tmp_path, names=("dev",), steps=", pre_run: echo hi")
    p = plan(
        desired, observed_from(desired), images=images_of(desired), runtime=cp_holding(desired)
    )
    assert p.empty and p.changes[0].kind is ChangeKind.NOOP


def test_a_changed_pre_run_is_an_update_that_takes_effect_at_next_start(tmp_path: Path) -> None:
    before = agents(tmp_path, names=("dev",))
    after = agents(tmp_path, names=("dev",), steps=", pre_run: echo hi")
    p = plan(after, observed_from(before), images=images_of(after), runtime=cp_holding(before))
    assert str(p) == (
        "[] -> #1 runtime:myapp/dev, UpdateRuntime, pre_run changed: takes effect at next start"
    )
    assert p.steps[0].runtime == desired_runtime(after[0], NO_HOST)
    assert render_plan(p, Style.plain()) == textwrap.dedent("""\
        clawker will perform the following actions:

          # agent myapp/dev will be updated (pre_run changed: takes effect at next start)
          ~ agent "myapp/dev"
              ~ update (takes effect at next start)
                  ~ pre_run: "" -> "echo hi"

        Plan: 0 to add, 1 to change, 0 to destroy.""")
    assert p.counts() == (0, 1, 0)


def test_a_changed_allowlist_is_an_update_in_place_live(tmp_path: Path) -> None:
    before = agents(tmp_path, names=("dev",))
    after = agents(tmp_path, names=("dev",), domains="[example.com]")
    p = plan(after, observed_from(before), images=images_of(after), runtime=cp_holding(before))
    assert str(p) == (
        "[] -> #1 firewall:myapp/dev, UpdateFirewall, firewall allowlist changed: live"
    )
    assert p.steps[0].allowlist == effective_allowlist(after[0])
    assert render_plan(p, Style.plain()) == textwrap.dedent("""\
        clawker will perform the following actions:

          # agent myapp/dev will be updated in-place (firewall allowlist changed: live)
          ~ agent "myapp/dev"
              ~ update in place (live)
                  ~ firewall allowlist: + example.com

        Plan: 0 to add, 1 to change, 0 to destroy.""")


def test_a_post_init_that_already_ran_is_not_re_run(tmp_path: Path) -> None:
    before = agents(tmp_path, names=("dev",), steps=", post_init: npm ci")
    after = agents(tmp_path, names=("dev",), steps=", post_init: make deps")
    held = cp_holding(before, post_init_done=True)
    p = plan(after, observed_from(before), images=images_of(after), runtime=held)
    assert str(p) == (
        "[] -> #1 runtime:myapp/dev, UpdateRuntime, post_init changed: already ran — not re-run"
    )
    assert render_plan(p, Style.plain()).splitlines()[2:6] == [
        "  # agent myapp/dev will be updated (post_init changed: already ran — not re-run)",
        '  ~ agent "myapp/dev"',
        "      ~ update (post_init: already ran — not re-run)",
        '          ~ post_init: "npm ci" -> "make deps"',
    ]


def test_a_post_init_not_yet_run_runs_once_at_next_start(tmp_path: Path) -> None:
    before = agents(tmp_path, names=("dev",))
    after = agents(tmp_path, names=("dev",), steps=", post_init: npm ci")
    p = plan(after, observed_from(before), images=images_of(after), runtime=cp_holding(before))
    assert str(p) == (
        "[] -> #1 runtime:myapp/dev, UpdateRuntime, post_init changed: runs once at next start"
    )
    assert "      ~ update (post_init: not yet run — runs once at next start)" in render_plan(
        p, Style.plain()
    )


def test_a_replace_carries_the_runtime_change_to_the_new_containers_start(
    tmp_path: Path,
) -> None:
    before = agents(tmp_path, names=("dev",))
    after = agents(tmp_path, env="bonjour", names=("dev",), steps=", pre_run: echo hi")
    p = plan(after, observed_from(before), images=images_of(after), runtime=cp_holding(before))
    assert str(p) == textwrap.dedent("""\
        [] -> #1 runtime:myapp/dev, UpdateRuntime, pre_run changed: takes effect at next start
        [] -> #2 container:clawker.myapp.dev.next, CreateContainer, agent.env changed
        [#2] -> #3 container:clawker.myapp.dev.next, CopyBootstrap, new container identity
        [#3] -> #4 container:000000000000, RenameContainer, gives its name to clawker.myapp.dev.next
        [#4] -> #5 container:clawker.myapp.dev.next, RenameContainer, replaces clawker.myapp.dev
        [#1 #5] -> #6 container:clawker.myapp.dev, StartContainer, created
        [#5] -> #7 container:000000000000, StopContainer, replaced: agent.env changed
        [#7] -> #8 container:000000000000, RemoveContainer, replaced: agent.env changed""")
    (change,) = p.changes
    assert change.kind is ChangeKind.REPLACE
    assert [(f.path, f.effect) for f in change.fields] == [
        ("agent.env.GREETING", Effect.REPLACE),
        ("pre_run", Effect.NEXT_START),
    ]


def test_a_new_agents_first_start_waits_for_its_runtime_and_allowlist(tmp_path: Path) -> None:
    desired = agents(tmp_path, names=("dev",), steps=", pre_run: echo hi")
    p = plan(
        desired,
        ObservedState(networks=frozenset({"clawker-net"}), images=built(desired)),
        images=images_of(desired),
        runtime=RuntimeObservation({}),
    )
    assert str(p) == textwrap.dedent("""\
        [] -> #1 runtime:myapp/dev, UpdateRuntime, \
runtime not held by the control plane: takes effect at next start
        [] -> #2 firewall:myapp/dev, UpdateFirewall, firewall allowlist changed: live
        [] -> #3 volume:clawker.myapp.dev-config, CreateVolume, not found
        [] -> #4 volume:clawker.myapp.dev-history, CreateVolume, not found
        [#3 #4] -> #5 container:clawker.myapp.dev, CreateContainer, not found
        [#5] -> #6 container:clawker.myapp.dev, SeedConfig, new config volume (seed: copy)
        [#6] -> #7 container:clawker.myapp.dev, CopyBootstrap, new container identity
        [#1 #2 #7] -> #8 container:clawker.myapp.dev, StartContainer, created""")
    assert p.steps[0].fresh_config
    assert "      + control plane runtime" in render_plan(p, Style.plain())


def test_with_the_control_plane_down_its_part_is_unknown_and_planned(tmp_path: Path) -> None:
    desired = agents(tmp_path, names=("dev",))
    p = plan(
        desired,
        observed_from(desired),
        images=images_of(desired),
        runtime=RuntimeObservation(None, "control plane not running"),
    )
    assert str(p) == textwrap.dedent("""\
        [] -> #1 runtime:myapp/dev, UpdateRuntime, runtime unknown: control plane not running
        [] -> #2 firewall:myapp/dev, UpdateFirewall, \
firewall allowlist unknown: control plane not running""")
    text = render_plan(p, Style.plain())
    assert "          ~ runtime: unknown: control plane not running" in text
    assert "          ~ firewall allowlist: unknown: control plane not running" in text


def test_restart_if_needed_restarts_only_for_changes_that_wait_for_a_start(
    tmp_path: Path,
) -> None:
    before = agents(tmp_path, names=("dev",))
    after = agents(tmp_path, names=("dev",), steps=", pre_run: echo hi", domains="[a.example]")
    obs, held = observed_from(before), cp_holding(before)
    p = plan(after, obs, images=images_of(after), runtime=held, restart_if_needed=True)
    assert str(p).splitlines()[2:] == [
        "[#1 #2] -> #3 container:clawker.myapp.dev, StopContainer, "
        "restart requested, for changes that wait for a start: pre_run",
        "[#3] -> #4 container:clawker.myapp.dev, StartContainer, "
        "restart requested, for changes that wait for a start: pre_run",
    ]
    assert "      ~ container clawker.myapp.dev (restart)" in render_plan(p, Style.plain())
    live_only = agents(tmp_path, names=("dev",), domains="[a.example]")
    q = plan(live_only, obs, images=images_of(live_only), runtime=held, restart_if_needed=True)
    assert [s.action for s in q.steps] == [Action.UPDATE_FIREWALL]


def test_a_new_config_volume_forgets_that_post_init_ran(tmp_path: Path) -> None:
    desired = agents(tmp_path, names=("dev",), steps=", post_init: npm ci")
    obs = observed_from(desired, state="exited")
    obs = ObservedState(
        agents=obs.agents,
        volumes={k: v for k, v in obs.volumes.items() if not k.endswith("-config")},
        networks=obs.networks,
        images=obs.images,
    )
    p = plan(
        desired, obs, images=images_of(desired), runtime=cp_holding(desired, post_init_done=True)
    )
    (runtime_step,) = [s for s in p.steps if s.action is Action.UPDATE_RUNTIME]
    assert runtime_step.cause == "new config volume: post_init not run on it"
    assert runtime_step.fresh_config


def test_pending_at_next_start_is_what_the_running_start_was_not_driven_with(
    tmp_path: Path,
) -> None:
    before = agents(tmp_path, names=("dev",), steps=", post_init: a")
    after = agents(tmp_path, names=("dev",), steps=", post_init: b, pre_run: echo hi")
    used = desired_runtime(before[0], NO_HOST)
    now = AgentRuntimeState("myapp/dev", desired_runtime(after[0], NO_HOST), (), True)
    assert pending_at_next_start(used, now) == ("pre_run",)
    assert pending_at_next_start(used, replace(now, post_init_done=False)) == (
        "post_init",
        "pre_run",
    )
    assert pending_at_next_start(None, now) == ()


def test_leftovers_of_an_interrupted_swap_go_first_and_a_running_one_is_stopped_not_killed(
    tmp_path: Path,
) -> None:
    """A swap cut short between its renames leaves `.old` (maybe still running) and `.next`;
    no container has the agent's name. The next pass removes both before it creates."""
    desired = agents(tmp_path, names=("dev",))
    spec = desired_container(desired[0], image=IMAGE, apply_set="myapp")
    old = ContainerInfo("a" * 64, "clawker.myapp.dev.old", dict(spec.labels), "running", IMAGE_ID)
    new = ContainerInfo("b" * 64, "clawker.myapp.dev.next", dict(spec.labels), "created", IMAGE_ID)
    observed = replace(observed_from(desired), agents=group_containers([old, new]))
    p = plan(desired, observed, images=images_of(desired))
    by_target = {(s.action, s.target): s for s in p.steps}
    stop = by_target[(Action.STOP_CONTAINER, "clawker.myapp.dev.old")]
    assert by_target[(Action.REMOVE_CONTAINER, "clawker.myapp.dev.old")].depends_on == (stop.id,)
    assert (Action.STOP_CONTAINER, "clawker.myapp.dev.next") not in by_target  # never started
    create = by_target[(Action.CREATE_CONTAINER, "clawker.myapp.dev")]
    removals = {s.id for s in p.steps if s.action is Action.REMOVE_CONTAINER}
    assert removals <= set(create.depends_on)
