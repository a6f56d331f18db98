"""Validating and merging spec texts: the part of loading that needs pydantic.

`load_specs` (specs.loading) reads the inputs and asks the resolved cache (specs.setcache)
first; only a set of texts it has not resolved before comes here.
"""

from __future__ import annotations

from collections.abc import Sequence

from specs.documents import SpecText, read_documents
from specs.errors import SourceRef, SpecError, SpecErrors
from specs.merging import desired_agent, project_defaults
from specs.resolved import DesiredAgent
from specs.setcache import Resolution
from specs.validation import AgentDeclaration, ProjectDeclaration, validate_document

__all__ = ["resolve"]


def resolve(
    texts: Sequence[SpecText],
    protected: Sequence[str],
    cache_dir: str | None,
    errors: list[SpecError],
) -> Resolution:
    """The agents and project defaults the texts declare; every problem goes to `errors`."""
    projects: list[ProjectDeclaration] = []
    agents: list[AgentDeclaration] = []
    unparsed = False  # a file that is not YAML may declare what other documents refer to
    for text in texts:
        try:
            documents = read_documents(text, cache_dir)
        except SpecErrors as failure:
            errors.extend(failure.errors)
            unparsed = True
            continue
        if not documents:
            errors.append(_empty_file(text.name))
        for document in documents:
            declaration, problems = validate_document(document)
            errors.extend(problems)
            if isinstance(declaration, ProjectDeclaration):
                projects.append(declaration)
            elif isinstance(declaration, AgentDeclaration):
                agents.append(declaration)

    declared = _declared_projects(projects, errors)
    members = _agents_by_key(agents, declared, errors, check_references=not unparsed)
    desired: list[DesiredAgent] = []
    for (project_name, _), agent in sorted(members.items()):
        project = declared[project_name]
        if project.model is None or agent.model is None:
            continue  # its errors are already reported
        resolved = desired_agent(project, agent, project_name, protected)
        if isinstance(resolved, SpecError):
            errors.append(resolved)
        else:
            desired.append(resolved)

    defaults: dict[str, DesiredAgent] = {}
    for project_name, project in declared.items():
        if project.model is not None:
            template = project_defaults(project, project_name, protected)
            if isinstance(template, SpecError):
                errors.append(template)
            else:
                defaults[project_name] = template

    return Resolution(
        agents=tuple(desired),
        projects=tuple(sorted(declared)),
        defaults=defaults,
    )


def _empty_file(name: str) -> SpecError:
    return SpecError(
        SourceRef(name, 1, 1),
        "",
        "no documents in file",
        "add a Project or Agent document, or leave the file out of the inputs",
    )


def _declared_projects(
    projects: list[ProjectDeclaration], errors: list[SpecError]
) -> dict[str, ProjectDeclaration]:
    declared: dict[str, ProjectDeclaration] = {}
    for project in projects:
        if project.name is None:
            continue
        first = declared.get(project.name)
        if first is None:
            declared[project.name] = project
            continue
        errors.append(
            SpecError(
                project.document.locate(("metadata", "name")),
                "metadata.name",
                f"project '{project.name}' is declared twice;"
                f" first at {first.document.locate(('metadata', 'name'))}",
                "keep one Project document per project",
            )
        )
    return declared


def _agents_by_key(
    agents: list[AgentDeclaration],
    declared: dict[str, ProjectDeclaration],
    errors: list[SpecError],
    *,
    check_references: bool,
) -> dict[tuple[str, str], AgentDeclaration]:
    """The agents whose project is known, keyed by (project, name); errors for the others."""
    members: dict[tuple[str, str], AgentDeclaration] = {}
    for agent in agents:
        if agent.name is None:
            continue
        project = _project_of(agent, declared, errors, check_references=check_references)
        if project is None:
            continue
        first = members.get((project, agent.name))
        if first is None:
            members[(project, agent.name)] = agent
            continue
        errors.append(
            SpecError(
                agent.document.locate(("metadata", "name")),
                "metadata.name",
                f"agent '{project}/{agent.name}' is declared twice; first at {first.source}",
                "rename one of them or remove the duplicate",
            )
        )
    return members


def _project_of(
    agent: AgentDeclaration,
    declared: dict[str, ProjectDeclaration],
    errors: list[SpecError],
    *,
    check_references: bool,
) -> str | None:
    if agent.project_written:
        if agent.project is None or agent.project in declared:
            return agent.project  # None: an invalid name, already reported
        if check_references:
            errors.append(
                SpecError(
                    agent.document.locate(("metadata", "project")),
                    "metadata.project",
                    f"project '{agent.project}' is not declared",
                    f"add a document with kind: Project and metadata.name: {agent.project}",
                )
            )
        return None
    if len(declared) == 1:
        return next(iter(declared))
    if not check_references:
        return None
    where = agent.document.locate(("metadata",), key=True)
    if declared:
        errors.append(
            SpecError(
                where,
                "metadata.project",
                f"agent '{agent.name}' does not say which project it belongs to;"
                f" several are declared ({', '.join(sorted(declared))})",
                "add project: <name> under metadata",
            )
        )
    else:
        errors.append(
            SpecError(
                where,
                "metadata.project",
                f"agent '{agent.name}' has no project: no document of kind Project is declared",
                "add a document with kind: Project and metadata.name: <project>",
            )
        )
    return None
