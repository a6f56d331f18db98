"""Loading valid spec files: merging, defaults, workspace resolution and the input forms."""

from __future__ import annotations

import io
import os
import textwrap
from pathlib import Path

import pytest

import specs
from specs import (
    API_VERSION,
    AgentRuntime,
    BuildSpec,
    GitCredentials,
    SourceRef,
    SpecError,
    SpecErrors,
    WorkspaceMode,
    load_specs,
)

DESIGN_EXAMPLE = (Path(__file__).parent / "fixtures" / "specs" / "design-example.yaml").read_text()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def project(name: str = "myapp", spec: str = "{}") -> str:
    return f"apiVersion: {API_VERSION}\nkind: Project\nmetadata: {{name: {name}}}\nspec: {spec}\n"


def agent(name: str, spec: str = "{}", metadata: str = "") -> str:
    return (
        f"apiVersion: {API_VERSION}\nkind: Agent\n"
        f"metadata: {{name: {name}{metadata}}}\nspec: {spec}\n"
    )


def test_public_api_is_exactly_what_all_names() -> None:
    assert sorted(specs.__all__) == sorted(
        [
            "load_specs",
            "SpecSet",
            "SpecError",
            "SpecErrors",
            "SourceRef",
            "DesiredAgent",
            "WorkspaceMode",
            "ResolvedWorkspace",
            "BuildSpec",
            "AgentRuntime",
            "SecuritySpec",
            "FirewallSpec",
            "GitCredentials",
            "spec_hash",
            "recreate_view",
            "HASH_VERSION",
            "API_VERSION",
        ]
    )
    assert API_VERSION == "clawker.dev/v1alpha1"


def test_the_design_example_loads(tmp_path: Path) -> None:
    spec_file = write(tmp_path / "agents.yaml", DESIGN_EXAMPLE)

    loaded = load_specs([str(spec_file)])

    assert loaded.projects == ("myapp",)
    assert loaded.files == (str(spec_file),)
    (dev,) = loaded.agents
    assert (dev.project, dev.name, dev.key) == ("myapp", "dev", "myapp/dev")
    assert dev.container_name == "clawker.myapp.dev"
    assert dev.labels == {"team": "infra"}
    assert dev.source == SourceRef(str(spec_file), 14, 1)
    assert dev.command == ("claude",)
    assert dev.workspace.path == os.path.realpath(tmp_path)
    assert dev.workspace.mode is WorkspaceMode.SNAPSHOT
    assert dev.build == BuildSpec(packages=("ripgrep",))
    assert dev.agent == AgentRuntime(env={"EDITOR": "vim"}, post_init="npm ci")
    assert dev.security.firewall.add_domains == (".example.com", "github.com")
    assert dev.security.cap_add == ()
    assert dev.security.git_credentials == GitCredentials()
    assert loaded.warnings == ()  # a snapshot workspace cannot reach the spec file


def test_an_agent_without_spec_gets_the_documented_defaults(tmp_path: Path) -> None:
    spec_file = write(
        tmp_path / "a.yaml", project() + "---\n" + agent("dev").replace("spec: {}", "")
    )

    (dev,) = load_specs([str(spec_file)]).agents

    assert dev.command == ("claude",)
    assert dev.labels == {}
    assert dev.workspace.mode is WorkspaceMode.BIND
    assert dev.build.base_image == "buildpack-deps:bookworm-scm"
    assert dev.build.packages == ()
    assert dev.build.harness == "claude"
    assert dev.agent == AgentRuntime(env={}, post_init="", pre_run="", enable_shared_dir=False)
    assert dev.security.firewall.add_domains == ()
    assert dev.security.cap_add == ()
    assert dev.security.git_credentials == GitCredentials(
        forward_https=True, forward_ssh=True, forward_gpg=True, copy_git_config=True
    )


def test_maps_deep_merge_lists_replace_and_domains_unite(tmp_path: Path) -> None:
    project_spec = """
      build: {base_image: "debian:bookworm", packages: [ripgrep, jq]}
      agent: {env: {A: "1", B: "2"}, post_init: make, pre_run: "echo hi"}
      security:
        firewall: {add_domains: [github.com, pypi.org]}
        cap_add: [SYS_NICE]
        git_credentials: {forward_gpg: false}
    """
    agent_spec = """
      build: {packages: [fd-find]}
      agent: {env: {B: "3", C: "4"}, pre_run: ""}
      security:
        firewall: {add_domains: [.example.com, github.com]}
        git_credentials: {forward_ssh: false}
    """
    spec_file = write(
        tmp_path / "a.yaml",
        project(spec="\n" + textwrap.indent(textwrap.dedent(project_spec), "  "))
        + "---\n"
        + agent("dev", spec="\n" + textwrap.indent(textwrap.dedent(agent_spec), "  ")),
    )

    (dev,) = load_specs([str(spec_file)]).agents

    assert dev.build == BuildSpec(base_image="debian:bookworm", packages=("fd-find",))
    assert dev.agent.env == {"A": "1", "B": "3", "C": "4"}
    assert (dev.agent.post_init, dev.agent.pre_run) == ("make", "")
    assert dev.security.firewall.add_domains == (".example.com", "github.com", "pypi.org")
    assert dev.security.cap_add == ("SYS_NICE",)
    assert dev.security.git_credentials == GitCredentials(forward_ssh=False, forward_gpg=False)


def test_an_agent_that_overrides_nothing_inherits_its_project(tmp_path: Path) -> None:
    spec_file = write(
        tmp_path / "a.yaml",
        project(spec="{build: {packages: [jq]}, agent: {env: {A: x}}}")
        + "---\n"
        + agent("dev", spec="{command: [bash, -l]}"),
    )

    (dev,) = load_specs([str(spec_file)]).agents

    assert dev.command == ("bash", "-l")
    assert dev.build.packages == ("jq",)
    assert dev.agent.env == {"A": "x"}


def test_values_are_normalised(tmp_path: Path) -> None:
    spec = """{
      agent: {env: {PORT: 8080, RATIO: 1.5, NAME: x}},
      security: {cap_add: [cap_sys_nice, KILL, SYS_NICE],
                 firewall: {add_domains: [GitHub.COM, github.com, "docs.python.org."]}},
      command: [sleep, 10]}"""
    spec_file = write(tmp_path / "a.yaml", project() + "---\n" + agent("dev", spec=spec))

    (dev,) = load_specs([str(spec_file)]).agents

    assert dev.agent.env == {"PORT": "8080", "RATIO": "1.5", "NAME": "x"}
    assert dev.security.cap_add == ("KILL", "SYS_NICE")
    assert dev.security.firewall.add_domains == ("docs.python.org", "github.com")
    assert dev.command == ("sleep", "10")


def test_relative_workspace_paths_resolve_against_the_file_that_wrote_them(
    tmp_path: Path,
) -> None:
    (tmp_path / "code" / "app").mkdir(parents=True)
    (tmp_path / "agents" / "sub").mkdir(parents=True)
    project_file = write(
        tmp_path / "projects" / "p.yaml", project(spec="{workspace: {path: ../code/app}}")
    )
    agents_file = write(
        tmp_path / "agents" / "a.yaml",
        agent("inherits", metadata=", project: myapp")
        + "---\n"
        + agent("own", spec="{workspace: {path: sub}}", metadata=", project: myapp"),
    )

    loaded = load_specs([str(project_file), str(agents_file)])

    paths = {a.name: a.workspace.path for a in loaded.agents}
    assert paths == {
        "inherits": str(tmp_path.resolve() / "code" / "app"),
        "own": str(tmp_path.resolve() / "agents" / "sub"),
    }


def test_the_default_workspace_is_the_project_files_directory(tmp_path: Path) -> None:
    project_file = write(tmp_path / "proj" / "p.yaml", project())
    agent_file = write(tmp_path / "elsewhere" / "a.yaml", agent("dev"))

    (dev,) = load_specs([str(project_file), str(agent_file)]).agents

    assert dev.workspace.path == str((tmp_path / "proj").resolve())


def test_workspace_paths_are_made_absolute_and_symlink_free(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    spec_file = write(tmp_path / "a.yaml", project(spec="{workspace: {path: link}}"))
    write(tmp_path / "b.yaml", agent("dev"))

    (dev,) = load_specs([str(spec_file), str(tmp_path / "b.yaml")]).agents

    assert dev.workspace.path == str((tmp_path / "real").resolve())


def test_stdin_is_read_for_dash_and_resolves_paths_against_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path)
    stdin = io.StringIO(project(spec="{workspace: {path: work}}") + "---\n" + agent("dev"))

    loaded = load_specs(["-"], stdin=stdin)

    (dev,) = loaded.agents
    assert dev.workspace.path == str((tmp_path / "work").resolve())
    assert dev.source.file == "<stdin>"
    assert loaded.files == ()


def test_stdin_errors_are_reported_as_stdin() -> None:
    with pytest.raises(SpecErrors) as raised:
        load_specs(["-"], stdin=io.StringIO("kind: Project\n"))

    assert str(raised.value.errors[0]).startswith("<stdin>:1:1: apiVersion: missing apiVersion")


def test_a_directory_means_its_yaml_files_sorted_by_name(tmp_path: Path) -> None:
    write(tmp_path / "specs" / "b.yaml", agent("dev"))
    write(tmp_path / "specs" / "a.yml", project())
    write(tmp_path / "specs" / "c.txt", "not: a spec")
    write(tmp_path / "specs" / ".d.yaml", "editor: leftover")
    write(tmp_path / "specs" / "nested" / "e.yaml", "not: read")

    loaded = load_specs([str(tmp_path / "specs")])

    assert loaded.files == (
        str(tmp_path / "specs" / "a.yml"),
        str(tmp_path / "specs" / "b.yaml"),
    )
    assert [a.key for a in loaded.agents] == ["myapp/dev"]


def test_a_file_named_twice_is_read_once(tmp_path: Path) -> None:
    spec_file = write(tmp_path / "specs" / "a.yaml", project() + "---\n" + agent("dev"))

    loaded = load_specs([str(tmp_path / "specs"), str(spec_file)])

    assert loaded.files == (str(spec_file),)
    assert len(loaded.agents) == 1


def test_an_empty_directory_is_a_warning_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()

    loaded = load_specs([str(tmp_path / "empty")])

    assert loaded.agents == ()
    assert loaded.warnings == (f"{tmp_path / 'empty'}: directory holds no *.yaml or *.yml files",)


def test_the_only_project_is_the_default_for_agents_that_name_none(tmp_path: Path) -> None:
    write(tmp_path / "p.yaml", project("web"))
    write(tmp_path / "q.yaml", agent("dev") + "---\n" + agent("ci"))

    loaded = load_specs([str(tmp_path / "p.yaml"), str(tmp_path / "q.yaml")])

    assert [a.key for a in loaded.agents] == ["web/ci", "web/dev"]


def test_agents_are_sorted_by_project_then_name(tmp_path: Path) -> None:
    text = "\n---\n".join(
        [
            project("zeta"),
            project("alpha"),
            agent("b", metadata=", project: zeta"),
            agent("b", metadata=", project: alpha"),
            agent("a", metadata=", project: zeta"),
        ]
    )
    write(tmp_path / "a.yaml", text)

    loaded = load_specs([str(tmp_path / "a.yaml")])

    assert loaded.projects == ("alpha", "zeta")
    assert [a.key for a in loaded.agents] == ["alpha/b", "zeta/a", "zeta/b"]


def test_no_agents_is_not_an_error(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", project())

    loaded = load_specs([str(tmp_path / "a.yaml")])

    assert (loaded.agents, loaded.projects) == ((), ("myapp",))


def test_no_inputs_load_nothing() -> None:
    loaded = load_specs([])

    assert (loaded.agents, loaded.projects, loaded.files, loaded.warnings) == ((), (), (), ())


def test_empty_documents_between_separators_are_skipped(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "---\n" + project() + "---\n---\n# nothing\n---\n" + agent("dev"))

    assert len(load_specs([str(tmp_path / "a.yaml")]).agents) == 1


def test_a_spec_file_inside_a_bind_workspace_is_a_warning(tmp_path: Path) -> None:
    spec_file = write(
        tmp_path / "a.yaml",
        project()
        + "---\n"
        + agent("dev")
        + "---\n"
        + agent("snap", spec="{workspace: {mode: snapshot}}"),
    )

    loaded = load_specs([str(spec_file)])

    (warning,) = loaded.warnings
    assert warning.startswith(f"{spec_file} lies inside the bind-mounted workspace of myapp/dev:")
    assert "myapp/snap" not in warning


def test_a_spec_file_outside_every_workspace_gives_no_warning(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    spec_file = write(
        tmp_path / "specs" / "a.yaml",
        project(spec="{workspace: {path: ../code}}") + "---\n" + agent("dev"),
    )

    assert load_specs([str(spec_file)]).warnings == ()


def test_spec_errors_render_location_key_path_message_and_hint() -> None:
    located = SpecError(
        SourceRef("agents.yaml", 12, 5),
        "spec.workspace.mdoe",
        "unknown key 'mdoe'",
        "did you mean 'mode'?",
    )
    bare = SpecError(None, "", "x.yaml: no such file or directory")

    assert str(located) == (
        "agents.yaml:12:5: spec.workspace.mdoe: unknown key 'mdoe' (did you mean 'mode'?)"
    )
    assert str(bare) == "x.yaml: no such file or directory"
    assert str(SpecErrors([located, bare])) == f"{located}\n{bare}"


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("\ufeff" + project() + "---\n" + agent("dev"))

    assert len(load_specs([str(tmp_path / "a.yaml")]).agents) == 1


def test_yaml_anchors_and_merge_keys_work_inside_a_document(tmp_path: Path) -> None:
    spec = """
      agent:
        env:
          <<: &common {A: x, B: x}
          B: y
      build: {packages: &tools [jq]}
    """
    text = project(spec=textwrap.indent(textwrap.dedent(spec), "  "))
    (tmp_path / "a.yaml").write_text(text + "---\n" + agent("dev"))

    (dev,) = load_specs([str(tmp_path / "a.yaml")]).agents

    assert dev.agent.env == {"A": "x", "B": "y"}
    assert dev.build.packages == ("jq",)
