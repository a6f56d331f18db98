"""Building a project image: resolve the base, fetch wheels and harness on the host, lay out the
build context in a temporary directory, and build it through the Docker port.

No network is used inside the build except by apt, for `build.packages` (and for run-time
packages a non-clawker base lacks).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from reconciler import naming
from reconciler.docker.engine import DockerError, ImageInfo, ImagePort
from reconciler.images import dockerfile
from reconciler.images.base import base_image_is_current
from reconciler.images.cache import DEFAULTS, cache_root
from reconciler.images.harness import HarnessError, fetch_harness
from reconciler.images.inputs import (
    ImageError,
    ImageInputs,
    build_reason,
    clawkerd_sources,
    refreshed,
    support_files,
)
from reconciler.images.wheelhouse import WheelhouseError, fetch_wheelhouse
from reconciler.settings import Settings
from specs import BuildSpec

__all__ = [
    "DEFAULT_BASE_IMAGE",
    "BuildResult",
    "build_project_image",
    "ensure_project_image",
    "is_progress_line",
    "observed_image_labels",
    "resolve_base_image",
]

# The spec's default base. No registry may answer here, so when it is not present locally,
# clawker builds from clawker-base:bookworm (same Debian release) instead.
DEFAULT_BASE_IMAGE: Final = BuildSpec().base_image

_STEP = re.compile(r"^Step \d+/\d+ : ")


def _ignore(_line: str) -> None:
    return None


@dataclass(frozen=True)
class BuildResult:
    ref: str
    image_id: str
    reason: str | None  # why it was built; None when it was up to date and left alone

    @property
    def built(self) -> bool:
        return self.reason is not None


def is_progress_line(line: str) -> bool:
    """Lines worth showing while a build runs: the builder's `Step n/m` (but not the LABEL
    steps it appends for the labels clawker stamps) and clawker's own."""
    step = _STEP.match(line)
    if step:
        return not line[step.end() :].startswith("LABEL ")
    return line.startswith("clawker: ")


def observed_image_labels(images: Sequence[ImageInfo], ref: str) -> Mapping[str, str] | None:
    """The labels of the managed image tagged `ref` among `images`, or None when there is none."""
    for image in images:
        if ref in image.refs:
            return image.labels
    return None


def resolve_base_image(port: ImagePort, declared: str, *, allow_pull: bool = False) -> str:
    """The image to build FROM for `build.base_image: declared`.

    Present locally: itself. Else, with `allow_pull` (Settings.allow_pull, CLAWKER_ALLOW_PULL=1):
    itself (the builder pulls it).
    Else the default base falls back to clawker-base:bookworm; any other base is an error
    naming it, since nothing is pulled behind the user's back.
    """
    if port.image_id(declared):
        return declared
    if allow_pull:
        return declared
    fallback = naming.BASE_IMAGE_DEFAULT
    if declared == DEFAULT_BASE_IMAGE:
        if port.image_id(fallback):
            return fallback
        raise ImageError(
            f"neither {declared} nor {fallback} is present locally: run `clawker image base` "
            f"to build {fallback} from this host's apt sources, or set CLAWKER_ALLOW_PULL=1 "
            f"to pull {declared}"
        )
    raise ImageError(
        f"base image {declared} (build.base_image) is not present locally and clawker pulls "
        f"only with CLAWKER_ALLOW_PULL=1: `docker pull {declared}` (or `docker load` it), set "
        f"CLAWKER_ALLOW_PULL=1, or remove build.base_image to use the default"
    )


def _link_or_copy(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, dest)  # the context lives next to the cache: no 400 MB copy
    except OSError:
        shutil.copy2(source, dest)


def _write(path: Path, content: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    path.chmod(mode)


def _prepare_context(
    inputs: ImageInputs, context: Path, on_line: Callable[[str], None], settings: Settings
) -> ImageInputs:
    """Fill `context` and return the inputs as they stand once wheels and harness are here."""
    cache = cache_root(settings)
    sources = clawkerd_sources()
    if "proto/gen/clawkerd_pb2_grpc.py" not in {rel for rel, _ in sources}:
        raise ImageError(
            "proto/gen is missing (the generated gRPC modules clawkerd serves): run "
            "`python scripts/gen_proto.py` (`make setup` does)"
        )
    try:
        wheelhouse = fetch_wheelhouse(cache, on_line)
        harness = (
            fetch_harness(inputs.harness_version, cache, on_line)
            if inputs.harness_version
            else None
        )
    except (WheelhouseError, HarnessError) as exc:
        raise ImageError(str(exc)) from exc
    for name, _digest in wheelhouse.files:
        _link_or_copy(wheelhouse.directory / name, context / dockerfile.CONTEXT_WHEELS / name)
    if harness:
        _link_or_copy(harness.binary, context / dockerfile.CONTEXT_HARNESS)
    for rel, path in sources:
        _link_or_copy(path, context / dockerfile.CONTEXT_SOURCES / rel)
    for name, (content, mode) in support_files().items():
        _write(context / dockerfile.CONTEXT_FILES / name, content, mode)
    current = refreshed(inputs, settings)
    if current.dockerfile != inputs.dockerfile:
        raise ImageError(f"{inputs.ref}: the Dockerfile changed while preparing the build")
    _write(context / "Dockerfile", current.dockerfile, 0o644)
    return current


def _warn_if_stale_base(port: ImagePort, base: str, on_line: Callable[[str], None]) -> None:
    if base != naming.BASE_IMAGE_DEFAULT:
        return
    labels = observed_image_labels(port.list_images(), base)
    if labels is not None and not base_image_is_current(labels):
        on_line(
            f"clawker: {base} predates today's base packages; the build installs the missing "
            "ones from the Debian mirrors (`clawker image base --force` refreshes the base)"
        )


def build_project_image(
    port: ImagePort,
    inputs: ImageInputs,
    on_line: Callable[[str], None] = _ignore,
    *,
    settings: Settings = DEFAULTS,
    no_cache: bool = False,
    base: str | None = None,
) -> str:
    """Build `inputs.ref` now (whether or not it is up to date) and return its image id.

    `base`: what to build FROM, when the plan already chose it (else resolved here)."""
    base = base or resolve_base_image(port, inputs.base_image, allow_pull=settings.allow_pull)
    if base != inputs.base_image:
        on_line(f"clawker: {inputs.base_image} is not present; building from {base}")
    _warn_if_stale_base(port, base, on_line)
    contexts = cache_root(settings) / "build-contexts"
    contexts.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ctx-", dir=contexts) as tmp:
        current = _prepare_context(inputs, Path(tmp), on_line, settings)
        labels = {**current.labels(), "dev.clawker.base-ref": base}
        for attempt in range(1, _BUILD_ATTEMPTS + 1):
            try:
                return port.build_image(
                    tmp,
                    inputs.ref,
                    labels,
                    on_line,
                    build_args={dockerfile.BASE_IMAGE_ARG: base},
                    no_cache=no_cache,
                )
            except DockerError as exc:
                if attempt == _BUILD_ATTEMPTS or not _lost_cache_layer(str(exc)):
                    raise ImageError(str(exc)) from exc
                on_line(
                    "clawker: an image this build reused from Docker's cache was removed while "
                    "it built (another `docker rmi` or prune); building again"
                )
    raise AssertionError("unreachable: the last attempt returns or raises")


# dockerd's words when a cached layer a build reuses disappears under it (an image removed by
# another process at the same moment): the build itself is fine and succeeds when run again.
_LOST_LAYER = ("failed to get digest", "unknown parent image id", "no such image")
_BUILD_ATTEMPTS = 3


def _lost_cache_layer(message: str) -> bool:
    lowered = message.lower()
    return any(words in lowered for words in _LOST_LAYER)


def ensure_project_image(
    port: ImagePort,
    inputs: ImageInputs,
    *,
    force: bool = False,
    on_line: Callable[[str], None] = _ignore,
    settings: Settings = DEFAULTS,
) -> BuildResult:
    """Build `inputs.ref` when it is missing or its inputs changed (always with `force`, then
    without Docker's layer cache); otherwise leave it and report it up to date."""
    reason = build_reason(inputs, observed_image_labels(port.list_images(), inputs.ref))
    if reason is None and not force:
        image_id = port.image_id(inputs.ref)
        if image_id is not None:
            return BuildResult(inputs.ref, image_id, None)
        reason = "not found"
    image_id = build_project_image(port, inputs, on_line, settings=settings, no_cache=force)
    return BuildResult(inputs.ref, image_id, reason or "forced")
