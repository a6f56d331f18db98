"""The spec language as pydantic models: the sections of `spec`, the two document kinds, and the
merged agent that merging validates before it resolves it (specs.resolved).

The section models serve both sides: a document fills only the keys it writes (pydantic records
them in `model_fields_set`, which merging relies on), and a `MergedAgent` holds complete ones
whose defaults are the documented ones. Every model forbids unknown keys. Only loading a spec
that is not in the resolved cache imports this module (and pydantic).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    model_validator,
)

from specs import values
from specs.errors import SourceRef
from specs.resolved import DEFAULT_BASE_IMAGE, ResolvedWorkspace, WorkspaceMode

ProjectName = Annotated[str, AfterValidator(values.project_name)]
AgentName = Annotated[str, AfterValidator(values.agent_name)]
Text = Annotated[str, BeforeValidator(values.text)]
EnvName = Annotated[str, BeforeValidator(values.env_name)]
LabelKey = Annotated[str, BeforeValidator(values.label_key)]
Domain = Annotated[str, BeforeValidator(values.domain)]
Capability = Annotated[str, BeforeValidator(values.capability)]
Package = Annotated[str, BeforeValidator(values.package)]
Image = Annotated[str, AfterValidator(values.image)]
Mode = Annotated[
    WorkspaceMode,
    BeforeValidator(values.choice("workspace mode", [m.value for m in WorkspaceMode])),
]
Harness = Annotated[
    Literal["claude", "none"], BeforeValidator(values.choice("harness", ["claude", "none"]))
]
ConfigStrategy = Annotated[
    Literal["copy", "fresh"],
    BeforeValidator(values.choice("config strategy", ["copy", "fresh"])),
]
Command = Annotated[
    tuple[Text, ...],
    BeforeValidator(values.command_shape),
    AfterValidator(values.command_program),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkspaceSpec(_Model):
    """`spec.workspace` as written: `path` is still relative to the file it is written in."""

    path: Annotated[str, AfterValidator(values.workspace_path)] = "."
    mode: Mode = WorkspaceMode.BIND


class BuildSpec(_Model):
    """`spec.build`: what goes into the project's image."""

    base_image: Image = DEFAULT_BASE_IMAGE
    packages: tuple[Package, ...] = ()
    harness: Harness = "claude"


class ClaudeCodeConfig(_Model):
    """`spec.agent.claude_code.config`: what a new config volume starts with."""

    strategy: ConfigStrategy = "copy"  # copy: the host's settings, agents, skills, ...; fresh: none


KeyEnvName = Annotated[str, BeforeValidator(values.host_env_name)]
KeyFilePath = Annotated[str, BeforeValidator(values.key_file_path)]


class ApiKeySource(_Model):
    """`spec.agent.claude_code.api_key`: where the control plane reads the harness's API key on
    the host. Only the source is written here; the key itself never enters the agent."""

    from_env: KeyEnvName | None = None  # a variable of the control plane's environment
    from_file: KeyFilePath | None = None  # a file on the host, absolute or under ~/

    @model_validator(mode="after")
    def _exactly_one(self) -> ApiKeySource:
        if (self.from_env is None) == (self.from_file is None):
            values.fail(
                "api_key needs exactly one source",
                "write {from_env: NAME} or {from_file: /path/to/key}",
            )
        return self

    def describe(self) -> str:
        """The source as a user reads it, never the key: `env ANTHROPIC_API_KEY`, `file ~/k`."""
        return f"env {self.from_env}" if self.from_env is not None else f"file {self.from_file}"


class ClaudeCodeSpec(_Model):
    """`spec.agent.claude_code`: how Claude Code's config volume is seeded when it is created,
    and where the control plane finds the API key it adds to the agent's API requests."""

    config: ClaudeCodeConfig = Field(default_factory=ClaudeCodeConfig)
    use_host_auth: StrictBool = False  # copy the host's Claude Code credentials in
    api_key: ApiKeySource | None = None  # read on the host by the control plane's API relay


class AgentRuntime(_Model):
    """`spec.agent`: the agent's environment and the scripts clawkerd runs for it."""

    env: dict[EnvName, Text] = Field(default_factory=dict)
    post_init: str = ""  # once per agent, on its first start
    pre_run: str = ""  # on every start, before the command
    enable_shared_dir: StrictBool = False
    claude_code: ClaudeCodeSpec = Field(default_factory=ClaudeCodeSpec)


class FirewallSpec(_Model):
    """`spec.security.firewall`: domains added to the harness's built-in allowlist."""

    add_domains: Annotated[tuple[Domain, ...], AfterValidator(values.sorted_unique)] = ()


class GitCredentials(_Model):
    """`spec.security.git_credentials`: which host credentials the agent may use (never hold)."""

    forward_https: StrictBool = True
    forward_ssh: StrictBool = True
    forward_gpg: StrictBool = True
    copy_git_config: StrictBool = True


class SecuritySpec(_Model):
    """`spec.security`: the firewall allowlist, extra capabilities and git credentials."""

    firewall: FirewallSpec = Field(default_factory=FirewallSpec)
    cap_add: Annotated[tuple[Capability, ...], AfterValidator(values.sorted_unique)] = ()
    git_credentials: GitCredentials = Field(default_factory=GitCredentials)


class ProjectSpec(_Model):
    """`spec` of a Project: defaults for all of the project's agents."""

    workspace: WorkspaceSpec = Field(default_factory=WorkspaceSpec)
    build: BuildSpec = Field(default_factory=BuildSpec)
    agent: AgentRuntime = Field(default_factory=AgentRuntime)
    security: SecuritySpec = Field(default_factory=SecuritySpec)


class AgentSpec(ProjectSpec):
    """`spec` of an Agent: overrides of its project's spec, plus the command to run."""

    command: Command = ("claude",)


class ProjectMetadata(_Model):
    name: ProjectName


class AgentMetadata(_Model):
    name: AgentName
    project: ProjectName | None = None  # may be left out when exactly one project is declared
    labels: dict[LabelKey, Text] = Field(default_factory=dict)


class _Envelope(_Model):
    # Checked before model validation, with messages of their own; declared so they are known keys.
    api_version: Any = Field(default=None, alias="apiVersion")
    kind: Any = None


class ProjectDocument(_Envelope):
    """A `kind: Project` document."""

    metadata: ProjectMetadata
    spec: ProjectSpec = Field(default_factory=ProjectSpec)


class AgentDocument(_Envelope):
    """A `kind: Agent` document."""

    metadata: AgentMetadata
    spec: AgentSpec = Field(default_factory=AgentSpec)


DOCUMENT_MODELS: dict[str, type[ProjectDocument] | type[AgentDocument]] = {
    "Project": ProjectDocument,
    "Agent": AgentDocument,
}


class MergedAgent(_Model):
    """An Agent document merged over its Project's, validated again as a whole (a union of two
    allowlists is sorted and deduplicated once more); merging hands it on as a
    specs.resolved.DesiredAgent."""

    project: str
    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    source: SourceRef  # where the Agent document begins
    command: Command = ("claude",)
    workspace: ResolvedWorkspace
    build: BuildSpec = Field(default_factory=BuildSpec)
    agent: AgentRuntime = Field(default_factory=AgentRuntime)
    security: SecuritySpec = Field(default_factory=SecuritySpec)
