"""Merging an Agent's spec over its Project's, and resolving the result into a `DesiredAgent`.

Only what a document wrote takes part (pydantic's `model_fields_set`), so an agent that does not
mention a key inherits it from its project, and one that does overrides it. Mappings merge key by
key, lists replace, except `security.firewall.add_domains`: an agent can add domains to its
project's allowlist but not silently drop them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from specs.documents import Document
from specs.errors import SpecError
from specs.models import MergedAgent, WorkspaceSpec
from specs.resolved import DesiredAgent, ResolvedWorkspace, WorkspaceMode, from_plain
from specs.validation import AgentDeclaration, ProjectDeclaration
from specs.workspace_policy import real_path, workspace_facts

_UNION_PATHS = frozenset({("security", "firewall", "add_domains")})
# Mappings that an agent replaces whole: one api_key source, never a mix of two.
_REPLACED_PATHS = frozenset({("agent", "claude_code", "api_key")})


def merge_specs(project: dict[str, Any], agent: dict[str, Any]) -> dict[str, Any]:
    """Overlay the keys an agent wrote on the keys its project wrote."""
    return _overlay(project, agent, ())


def _overlay(base: dict[str, Any], over: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        here = (*path, key)
        if here in _UNION_PATHS:
            merged[key] = (*merged.get(key, ()), *value)
        elif here in _REPLACED_PATHS:
            merged[key] = value
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _overlay(merged[key], value, here)
        else:
            merged[key] = value
    return merged


def desired_agent(
    project: ProjectDeclaration,
    agent: AgentDeclaration,
    project_name: str,
    protected: Sequence[str] = (),
) -> DesiredAgent | SpecError:
    """The agent as it should run, or the error that stops it (its workspace does not exist)."""
    assert project.model is not None and agent.model is not None  # callers pass valid documents
    project_spec, agent_spec = project.model.spec, agent.model.spec
    merged = merge_specs(
        project_spec.model_dump(exclude_unset=True), agent_spec.model_dump(exclude_unset=True)
    )
    merged.pop("workspace", None)
    workspace = _resolve_workspace(
        [(project.document, project_spec.workspace), (agent.document, agent_spec.workspace)],
        project.document,
        protected,
    )
    if isinstance(workspace, SpecError):
        return workspace
    key_error = _api_key_conflict(merged, workspace, [project.document, agent.document])
    if key_error is not None:
        return key_error
    return _resolved(
        {
            **merged,
            "project": project_name,
            "name": agent.model.metadata.name,
            "labels": agent.model.metadata.labels,
            "source": agent.source,
            "workspace": workspace,
        }
    )


def project_defaults(
    project: ProjectDeclaration, project_name: str, protected: Sequence[str] = ()
) -> DesiredAgent | SpecError:
    """What an agent the project does not declare gets: the Project's spec alone, as the agent
    `default` (`clawker run` renames it and applies its flags on top)."""
    assert project.model is not None  # callers pass valid documents
    spec = project.model.spec
    merged = spec.model_dump(exclude_unset=True)
    merged.pop("workspace", None)
    workspace = _resolve_workspace(
        [(project.document, spec.workspace)], project.document, protected
    )
    if isinstance(workspace, SpecError):
        return workspace
    if key_error := _api_key_conflict(merged, workspace, [project.document]):
        return key_error
    return _resolved(
        {
            **merged,
            "project": project_name,
            "name": "default",
            "source": project.document.locate(("kind",), key=True),
            "workspace": workspace,
        }
    )


def _resolved(merged: dict[str, Any]) -> DesiredAgent:
    """Validated as a whole once more (a union of allowlists is sorted again), then as plain
    dataclasses: what the rest of clawker, and the resolved cache, hold."""
    return from_plain(DesiredAgent, MergedAgent.model_validate(merged).model_dump())


# What the API relay sets in the agent; a spec that also sets them would undo the relay.
RELAY_ENV = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL")


def _api_key_conflict(
    merged: dict[str, Any], workspace: ResolvedWorkspace, documents: list[Document]
) -> SpecError | None:
    """With `agent.claude_code.api_key`, the key must stay out of the agent: not in its env,
    and not in a file under its workspace (which the agent can read)."""
    agent = merged.get("agent") or {}
    source = (agent.get("claude_code") or {}).get("api_key")
    if not source:
        return None
    key_path = ("spec", "agent", "claude_code", "api_key")
    where = next((d for d in reversed(documents) if d.has(key_path)), documents[-1])
    for name in RELAY_ENV:
        if name in (agent.get("env") or {}):
            env_doc = next(
                (d for d in reversed(documents) if d.has(("spec", "agent", "env", name))), where
            )
            return SpecError(
                env_doc.locate(("spec", "agent", "env", name), key=True),
                f"spec.agent.env.{name}",
                f"{name} is set by clawker's API relay when agent.claude_code.api_key is set",
                "remove it from agent.env: the agent gets a placeholder, the host adds the key",
            )
    if (agent.get("claude_code") or {}).get("use_host_auth"):
        auth_doc = next(
            (
                d
                for d in reversed(documents)
                if d.has(("spec", "agent", "claude_code", "use_host_auth"))
            ),
            where,
        )
        return SpecError(
            auth_doc.locate(("spec", "agent", "claude_code", "use_host_auth")),
            "spec.agent.claude_code.use_host_auth",
            "use_host_auth copies the host's Claude Code login into the agent, which "
            "agent.claude_code.api_key exists to keep out",
            "choose one: remove use_host_auth (the key stays on the host), or remove api_key",
        )
    raw = source.get("from_file")
    if raw and not raw.startswith("~/"):
        path = real_path(raw)
        if path == workspace.path or path.startswith(workspace.path.rstrip("/") + "/"):
            return SpecError(
                where.locate((*key_path, "from_file")),
                "spec.agent.claude_code.api_key.from_file",
                f"key file {raw} lies inside the workspace {workspace.path}, which the agent reads",
                "keep the key outside every workspace, e.g. in ~/.config/anthropic/key",
            )
    return None


def _resolve_workspace(
    layers: list[tuple[Document, WorkspaceSpec]], project: Document, protected: Sequence[str]
) -> ResolvedWorkspace | SpecError:
    """Later layers override earlier ones. A relative path resolves against the directory of the
    file it is written in; the default '.' against the Project's file, where the project lives."""
    mode = WorkspaceMode.BIND
    mode_document: Document | None = None
    written: tuple[str, Document] | None = None
    for document, workspace in layers:
        if "mode" in workspace.model_fields_set:
            mode, mode_document = workspace.mode, document
        if "path" in workspace.model_fields_set:
            written = (workspace.path, document)
    if written is None:
        raw, base_dir, where = ".", project.base_dir, project.locate(("kind",), key=True)
    else:
        raw, document = written
        base_dir, where = document.base_dir, document.locate(("spec", "workspace", "path"))
    path = os.path.abspath(os.path.join(base_dir, os.path.expanduser(raw)))
    facts, refusal = workspace_facts(path, tuple(protected))
    if not facts.exists:
        return SpecError(
            where,
            "spec.workspace.path",
            f"workspace path {path} does not exist",
            "create the directory or correct the path",
        )
    if not facts.is_dir:
        return SpecError(
            where,
            "spec.workspace.path",
            f"workspace path {path} is not a directory",
            "name a directory",
        )
    if refusal is not None:
        return SpecError(where, "spec.workspace.path", refusal.message, refusal.hint)
    if mode is WorkspaceMode.SNAPSHOT and mode_document is not None and facts.worktree:
        return SpecError(
            mode_document.locate(("spec", "workspace", "mode")),
            "spec.workspace.mode",
            f"workspace {path} is a git worktree (its .git is a file); snapshot mode cannot"
            " copy it: its history lives in the main repository's .git directory",
            "use mode: bind, which mounts the main repository's .git too, or point"
            " workspace.path at the main repository",
        )
    return ResolvedWorkspace(path=facts.real, mode=mode)
