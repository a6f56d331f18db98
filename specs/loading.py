"""`load_specs`: from the `-f` inputs to the set of desired agents, or every error at once.

Files are read and validated one document at a time, then checked against each other (projects
named by agents exist, nothing is declared twice), then merged. Nothing here touches Docker or
the network; the only I/O is reading the inputs and looking at workspace directories.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from specs.documents import SpecText, read_documents
from specs.errors import SourceRef, SpecError, SpecErrors
from specs.merging import desired_agent, project_defaults, workspace_facts_once
from specs.models import DesiredAgent, WorkspaceMode
from specs.validation import AgentDeclaration, ProjectDeclaration, validate_document

STDIN_NAME = "<stdin>"
_SPEC_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class SpecSet:
    """Everything the inputs declare, valid and resolved."""

    agents: tuple[DesiredAgent, ...]  # sorted by (project, name)
    projects: tuple[str, ...]  # the declared project names, sorted
    files: tuple[str, ...]  # absolute paths of the spec files read, in reading order
    warnings: tuple[str, ...]
    # Per project: the Project's spec alone as an agent named `default`; what `clawker run`
    # starts from for an agent the project does not declare.
    defaults: Mapping[str, DesiredAgent] = field(default_factory=dict)


def load_specs(
    inputs: Sequence[str],
    *,
    stdin: TextIO | None = None,
    protected: Sequence[str] = (),
    cache_dir: str | None = None,
) -> SpecSet:
    """Load, validate and merge the spec files named by `inputs`.

    Each input is a file, a directory (its *.yaml and *.yml files, sorted by name, not recursive)
    or "-" for `stdin` (default: sys.stdin). Every input is validated before anything is returned;
    all problems are raised together as `SpecErrors`. No agents at all is not an error.
    `protected`: paths no workspace may be, be inside of or contain, besides the built-in ones
    (clawker's state directory and sockets: see specs.workspace_policy). `cache_dir`: where
    parsed texts are kept (specs.documents); validation and merging always run.
    """
    with workspace_facts_once():
        return _load_specs(inputs, stdin, protected, cache_dir)


def _load_specs(
    inputs: Sequence[str],
    stdin: TextIO | None,
    protected: Sequence[str],
    cache_dir: str | None,
) -> SpecSet:
    errors: list[SpecError] = []
    warnings: list[str] = []
    texts = _read_inputs(inputs, stdin, errors, warnings)

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

    if errors:
        raise SpecErrors(_in_reading_order(errors, [text.name for text in texts]))
    files = tuple(text.path for text in texts if text.path is not None)
    warnings.extend(_self_editing_warnings(files, desired))
    return SpecSet(
        agents=tuple(desired),
        projects=tuple(sorted(declared)),
        files=files,
        warnings=tuple(warnings),
        defaults=defaults,
    )


def _read_inputs(
    inputs: Sequence[str], stdin: TextIO | None, errors: list[SpecError], warnings: list[str]
) -> list[SpecText]:
    texts: list[SpecText] = []
    seen: set[str] = set()  # an input named twice (a file and its directory) is read once

    def add(name: str) -> None:
        key = os.path.realpath(name)
        if key in seen:
            return
        seen.add(key)
        text = _read_file(name, errors)
        if text is not None:
            texts.append(text)

    for item in inputs:
        if item == "-":
            if item not in seen:
                seen.add(item)
                stream = stdin if stdin is not None else sys.stdin
                text = _read_stdin(stream, errors)
                if text is not None:
                    texts.append(SpecText(STDIN_NAME, None, os.getcwd(), text))
        elif os.path.isdir(item):
            names = sorted(
                name
                for name in os.listdir(item)
                # Like the shell's *.yaml: hidden files (often editor leftovers) are not included.
                if name.endswith(_SPEC_SUFFIXES)
                and not name.startswith(".")
                and os.path.isfile(os.path.join(item, name))
            )
            if not names:
                warnings.append(f"{item}: directory holds no *.yaml or *.yml files")
            for name in names:
                add(os.path.join(item, name))
        elif os.path.exists(item):
            add(item)
        else:
            errors.append(
                SpecError(None, "", f"{item}: no such file or directory", "check the -f path")
            )
    return texts


MAX_SPEC_BYTES = 4 * 1024 * 1024  # a spec is a few KiB; this bounds memory and parse time
_TOO_BIG_HINT = "a spec file is a few KiB: split it, or check that -f names the right file"


def _too_big(name: str) -> SpecError:
    return SpecError(
        None, "", f"{name}: larger than {MAX_SPEC_BYTES // (1024 * 1024)} MiB", _TOO_BIG_HINT
    )


def _read_stdin(stream: TextIO | None, errors: list[SpecError]) -> str | None:
    """Standard input, at most MAX_SPEC_BYTES of it (characters, for a text stream)."""
    if stream is None or stream.closed:
        errors.append(
            SpecError(None, "", "-f -: standard input is closed", "pipe a spec in, or pass -f FILE")
        )
        return None
    try:
        content = stream.read(MAX_SPEC_BYTES + 1)
    except UnicodeDecodeError:
        errors.append(SpecError(None, "", f"{STDIN_NAME}: not UTF-8 text", "send UTF-8 text"))
        return None
    except OSError as error:
        errors.append(SpecError(None, "", f"{STDIN_NAME}: cannot read: {error.strerror}", ""))
        return None
    if len(content) > MAX_SPEC_BYTES:
        errors.append(_too_big(STDIN_NAME))
        return None
    return content.removeprefix("\ufeff")


def _read_file(name: str, errors: list[SpecError]) -> SpecText | None:
    path = os.path.abspath(name)
    try:
        # Only regular files: a device (/dev/zero, /dev/urandom) never ends and a FIFO blocks
        # the open itself, so neither is opened.
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            errors.append(
                SpecError(
                    None,
                    "",
                    f"{name}: not a regular file (a device, FIFO or socket)",
                    "name a spec file, or pass -f - to read standard input",
                )
            )
            return None
        if info.st_size > MAX_SPEC_BYTES:
            errors.append(_too_big(name))
            return None
        with open(path, "rb") as stream:
            raw = stream.read(MAX_SPEC_BYTES + 1)
        if len(raw) > MAX_SPEC_BYTES:  # it grew since the stat
            errors.append(_too_big(name))
            return None
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        errors.append(SpecError(None, "", f"{name}: not UTF-8 text", "save the spec file as UTF-8"))
        return None
    except OSError as error:
        errors.append(
            SpecError(
                None, "", f"{name}: cannot read: {error.strerror}", "check the file's permissions"
            )
        )
        return None
    return SpecText(name, path, os.path.dirname(path), content)


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


def _self_editing_warnings(files: tuple[str, ...], agents: list[DesiredAgent]) -> list[str]:
    """A spec file inside a bind-mounted workspace can be edited by the agent it configures, which
    could widen its own allowlist; in watch mode that edit would be applied."""
    warnings = []
    for file in files:
        real = os.path.realpath(file)
        writers = [
            agent.key
            for agent in agents
            if agent.workspace.mode is WorkspaceMode.BIND and _inside(real, agent.workspace.path)
        ]
        if writers:
            warnings.append(
                f"{file} lies inside the bind-mounted workspace of {', '.join(writers)}:"
                " the agent could edit its own spec (e.g. widen its firewall allowlist) and"
                " watch mode would apply it; keep spec files outside the workspace or use"
                " workspace mode snapshot"
            )
    return warnings


def _inside(path: str, directory: str) -> bool:
    return os.path.commonpath([path, directory]) == directory


def _in_reading_order(errors: list[SpecError], names: list[str]) -> list[SpecError]:
    """Errors sorted by file (in the order the files were read), then line and column; errors
    without a position (unreadable inputs) first. Repeats, e.g. one project's missing workspace
    reported for each of its agents, are shown once."""
    order = {name: index for index, name in enumerate(names)}

    def position(error: SpecError) -> tuple[int, int, int]:
        if error.source is None:
            return (-1, 0, 0)
        source = error.source
        return (order.get(source.file, len(order)), source.line, source.column)

    unique = list(dict.fromkeys(errors))
    return sorted(unique, key=position)
