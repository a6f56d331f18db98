"""What a project image is built from, hashed by group so a diff can say what changed.

Computing the inputs is cheap and offline (no npm, pip or Docker): wheels and harness are
identified by the manifests of the host cache when they were fetched before, and by their pins
until then; the build fetches them and stamps the labels from the fetched identities, so a build
and every later diff on the same host agree.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from reconciler import naming
from reconciler.errors import UsageError
from reconciler.images import agent_prompt, dockerfile
from reconciler.images.agent_user import UserConflictError, project_user
from reconciler.images.cache import DEFAULTS, cache_root
from reconciler.images.harness import harness_identity, harness_version
from reconciler.images.wheelhouse import wheels_identity
from reconciler.in_container import git_credential_clawker
from reconciler.settings import Settings
from specs import BuildSpec, DesiredAgent

__all__ = [
    "IMAGE_INPUTS_LABEL",
    "INPUT_GROUPS",
    "INPUT_LABEL_PREFIX",
    "PROJECT_IMAGE_TAG",
    "ImageError",
    "ImageInputs",
    "agent_image_ref",
    "build_reason",
    "clawkerd_sources",
    "credential_helper_script",
    "image_inputs",
    "project_image_inputs",
    "project_image_ref",
    "refreshed",
    "support_files",
]

PROJECT_IMAGE_TAG: Final = "default"
IMAGE_INPUTS_LABEL: Final = "dev.clawker.image-inputs"
INPUT_LABEL_PREFIX: Final = "dev.clawker.image-input."
HARNESS_VERSION_LABEL: Final = "dev.clawker.harness-version"
USER_LABEL: Final = "dev.clawker.image-user"  # `uid:gid` of the user claude, for the reason
PURPOSE_PROJECT_IMAGE: Final = "agent-image"

# The groups a change is reported by, in the order a reason names them. `dockerfile` is the
# Dockerfile's template and the files clawker writes into the image (launcher, credential helper,
# prompt): what changes with a clawker release, not with the spec. `user` is the agent user's
# uid:gid, the workspace owner's (agent_user.py).
INPUT_GROUPS: Final = (
    "base_image",
    "packages",
    "harness",
    "clawkerd",
    "wheels",
    "dockerfile",
    "user",
)

# Bumped when the way inputs are hashed changes (every image is rebuilt once then).
_SCHEME: Final = "clawker-image-inputs/1"

_CLAWKER_PACKAGES: Final = ("clawkerd", "proto")


class ImageError(UsageError):
    """An image cannot be built as declared; the message says what to do."""


@dataclass(frozen=True)
class ImageInputs:
    """Everything a project image is built from, and its hashes."""

    ref: str
    project: str
    base_image: str  # as declared; the base actually used is resolved at build time
    packages: tuple[str, ...]  # sorted, de-duplicated
    harness: str  # claude | none
    harness_version: str  # "" without a harness
    dockerfile: str
    groups: tuple[tuple[str, str], ...]  # (group, sha256) in INPUT_GROUPS order
    digest: str  # sha256 over every group: the `dev.clawker.image-inputs` label
    user: naming.AgentUser = naming.DEFAULT_AGENT_USER
    warnings: tuple[str, ...] = ()  # e.g. a root-owned workspace: the agent keeps uid 1001

    @property
    def short_digest(self) -> str:
        return self.digest[:12]

    def labels(self) -> dict[str, str]:
        """The labels a build stamps, from which `build_reason` later tells what changed."""
        labels = {
            naming.PROJECT: self.project,
            naming.PURPOSE: PURPOSE_PROJECT_IMAGE,
            IMAGE_INPUTS_LABEL: self.digest,
            HARNESS_VERSION_LABEL: self.harness_version,
            USER_LABEL: self.user.label(),
        }
        labels.update({f"{INPUT_LABEL_PREFIX}{group}": value for group, value in self.groups})
        return labels


def project_image_ref(project: str) -> str:
    """`clawker-<project>:default`: the one image every agent of a project runs."""
    return f"clawker-{project}:{PROJECT_IMAGE_TAG}"


def agent_image_ref(agent: DesiredAgent) -> str:
    """The image an agent's container runs: its project's image, whatever the harness."""
    return project_image_ref(agent.project)


def _sha(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def clawkerd_sources() -> list[tuple[str, Path]]:
    """(path relative to the image's source dir, file) of clawkerd and proto, generated modules
    included; found without importing them (the reconciler does not import clawkerd)."""
    found: list[tuple[str, Path]] = []
    for package in _CLAWKER_PACKAGES:
        spec = importlib.util.find_spec(package)
        locations = list(spec.submodule_search_locations or []) if spec else []
        if not locations:
            raise ImageError(f"the `{package}` package is not importable; reinstall clawker")
        root = Path(locations[0])
        for path in sorted(root.rglob("*.py")):
            if "__pycache__" not in path.parts:
                found.append((f"{package}/{path.relative_to(root).as_posix()}", path))
    return found


def credential_helper_script() -> str:
    """git-credential-clawker as installed: its module source run by clawker's venv Python."""
    source = Path(git_credential_clawker.__file__).read_text()
    return f"#!{dockerfile.VENV}/bin/python -I\n{source}"


def support_files() -> dict[str, tuple[str, int]]:
    """The files clawker writes into the image: context name → (content, mode)."""
    return {
        dockerfile.CLAWKERD_LAUNCHER: (dockerfile.clawkerd_launcher(), 0o755),
        "git-credential-clawker": (credential_helper_script(), 0o755),
        "CLAUDE.md": (agent_prompt.AGENT_PROMPT, 0o644),
    }


@functools.cache
def _template_identity() -> str:
    # The Dockerfile with every spec-dependent value held fixed, plus the files clawker adds.
    skeleton = dockerfile.render_dockerfile(
        base_image="BASE", packages=("packages",), harness="claude", user=naming.DEFAULT_AGENT_USER
    )
    files = "".join(
        f"{name}\n{content}\n{mode:o}\n"
        for name, (content, mode) in sorted(support_files().items())
    )
    return skeleton + files


def _sources_identity() -> str:
    sources = clawkerd_sources()
    stamps = tuple((rel, path.stat().st_mtime_ns, path.stat().st_size) for rel, path in sources)
    return _hashed_sources(stamps, tuple(path for _, path in sources))


@functools.lru_cache(maxsize=4)
def _hashed_sources(stamps: tuple[tuple[str, int, int], ...], paths: tuple[Path, ...]) -> str:
    # Keyed by path, mtime and size: a diff re-hashes only after the sources changed on disk.
    return "\n".join(
        f"{rel} {_sha(path.read_bytes())}" for (rel, _, _), path in zip(stamps, paths, strict=True)
    )


def _compute(
    project: str,
    build: BuildSpec,
    settings: Settings,
    user: naming.AgentUser,
    warnings: tuple[str, ...] = (),
) -> ImageInputs:
    packages = tuple(sorted(set(build.packages)))
    cache = cache_root(settings)
    version = harness_version(settings) if build.harness == "claude" else ""
    rendered = dockerfile.render_dockerfile(
        base_image=build.base_image, packages=packages, harness=build.harness, user=user
    )
    identities = {
        "base_image": build.base_image,
        "packages": "\n".join(packages),
        "harness": harness_identity(build.harness, version, cache),
        "clawkerd": _sources_identity(),
        "wheels": wheels_identity(cache),
        "dockerfile": _template_identity(),
        "user": user.label(),
    }
    groups = tuple((group, _sha(identities[group])) for group in INPUT_GROUPS)
    digest = _sha(
        "\n".join([_SCHEME, *(f"{g}={h}" for g, h in groups), f"rendered={_sha(rendered)}"])
    )
    return ImageInputs(
        ref=project_image_ref(project),
        project=project,
        base_image=build.base_image,
        packages=packages,
        harness=build.harness,
        harness_version=version,
        dockerfile=rendered,
        groups=groups,
        digest=digest,
        user=user,
        warnings=warnings,
    )


def image_inputs(
    agent: DesiredAgent, settings: Settings = DEFAULTS, user: naming.AgentUser | None = None
) -> ImageInputs:
    """The inputs of the image `agent` runs (its project's); cheap, offline, deterministic.
    The agent user is the owner of the agent's workspace unless `user` names one."""
    if user is not None:
        return _compute(agent.project, agent.build, settings, user)
    found = project_user(agent.project, [agent])
    return _compute(agent.project, agent.build, settings, found.user, _warned(found.warning))


def _warned(warning: str) -> tuple[str, ...]:
    return (warning,) if warning else ()


def refreshed(inputs: ImageInputs, settings: Settings = DEFAULTS) -> ImageInputs:
    """The same inputs recomputed, e.g. after the build fetched wheels or the harness."""
    build = BuildSpec(
        base_image=inputs.base_image, packages=inputs.packages, harness=inputs.harness
    )
    return _compute(inputs.project, build, settings, inputs.user, inputs.warnings)


def project_image_inputs(
    agents: Iterable[DesiredAgent], settings: Settings = DEFAULTS
) -> list[ImageInputs]:
    """One `ImageInputs` per project, in the order projects first appear.

    An image is per project, so every agent of a project must declare the same `build`, and
    their workspaces must have owners that give the same agent user.
    """
    by_project: dict[str, list[DesiredAgent]] = defaultdict(list)
    for agent in agents:
        by_project[agent.project].append(agent)
    result = []
    for project, members in by_project.items():
        first = members[0]
        for other in members[1:]:
            if other.build != first.build:
                raise ImageError(
                    f"agents {first.name} ({first.source}) and {other.name} ({other.source}) of "
                    f"project {project} declare different `build` sections, but a project has "
                    "one image: declare `build` once in the Project document, or make them equal"
                )
        try:
            found = project_user(project, members)
        except UserConflictError as exc:
            raise ImageError(str(exc)) from exc
        result.append(_compute(project, first.build, settings, found.user, _warned(found.warning)))
    return result


def build_reason(inputs: ImageInputs, observed_labels: Mapping[str, str] | None) -> str | None:
    """None when the image is up to date; else why it must be built: `not found`, or
    `inputs changed: packages, harness` naming each changed group."""
    if observed_labels is None:
        return "not found"
    if observed_labels.get(IMAGE_INPUTS_LABEL) == inputs.digest:
        return None
    changed = [g for g, h in inputs.groups if observed_labels.get(f"{INPUT_LABEL_PREFIX}{g}") != h]
    named = [_user_change(inputs.user, observed_labels) if g == "user" else g for g in changed]
    return "inputs changed: " + ", ".join(named) if named else "inputs changed"


def _user_change(user: naming.AgentUser, observed_labels: Mapping[str, str]) -> str:
    """`user uid 1001 → 1000` (and the gid when it changed too); an image without the label is
    from before the user followed the workspace owner, when it was always 1001:1001."""
    old = naming.AgentUser.from_label(observed_labels.get(USER_LABEL))
    parts = []
    if old.uid != user.uid:
        parts.append(f"uid {old.uid} → {user.uid}")
    if old.gid != user.gid:
        parts.append(f"gid {old.gid} → {user.gid}")
    return "user " + ", ".join(parts) if parts else "user"
