"""Agent images (DESIGN §9): one image per project, `clawker-<project>:default`.

The Dockerfile is rendered from the project's `build` spec; Python wheels and the Claude Code
binary are fetched on the host, so the build needs the network only for apt. The image carries
the hash of its inputs (and one per input group) as labels, so an unchanged project is not
rebuilt and a changed one says which group changed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The names below load with the module that defines them, on first use: planning needs only
# `inputs` (a no-op diff never loads the builder, the base image's debootstrap or the listing).
if TYPE_CHECKING:
    from reconciler.images.building import (
        DEFAULT_BASE_IMAGE,
        BuildResult,
        build_project_image,
        ensure_project_image,
        is_progress_line,
        observed_image_labels,
        resolve_base_image,
    )
    from reconciler.images.dockerfile import render_dockerfile
    from reconciler.images.harness import HARNESS_VERSION, harness_version
    from reconciler.images.inputs import (
        IMAGE_INPUTS_LABEL,
        INPUT_GROUPS,
        INPUT_LABEL_PREFIX,
        ImageError,
        ImageInputs,
        agent_image_ref,
        build_reason,
        image_inputs,
        project_image_inputs,
        project_image_ref,
    )
    from reconciler.images.listing import ImageSummary, list_clawker_images
    from reconciler.images.wheelhouse import REQUIREMENTS

__all__ = [
    "DEFAULT_BASE_IMAGE",
    "HARNESS_VERSION",
    "IMAGE_INPUTS_LABEL",
    "INPUT_GROUPS",
    "INPUT_LABEL_PREFIX",
    "REQUIREMENTS",
    "BuildResult",
    "ImageError",
    "ImageInputs",
    "ImageSummary",
    "agent_image_ref",
    "build_project_image",
    "build_reason",
    "ensure_project_image",
    "harness_version",
    "image_inputs",
    "is_progress_line",
    "list_clawker_images",
    "observed_image_labels",
    "project_image_inputs",
    "project_image_ref",
    "render_dockerfile",
    "resolve_base_image",
]

_WHERE: dict[str, str] = {
    "BuildResult": "reconciler.images.building",
    "DEFAULT_BASE_IMAGE": "reconciler.images.building",
    "HARNESS_VERSION": "reconciler.images.harness",
    "IMAGE_INPUTS_LABEL": "reconciler.images.inputs",
    "INPUT_GROUPS": "reconciler.images.inputs",
    "INPUT_LABEL_PREFIX": "reconciler.images.inputs",
    "ImageError": "reconciler.images.inputs",
    "ImageInputs": "reconciler.images.inputs",
    "ImageSummary": "reconciler.images.listing",
    "REQUIREMENTS": "reconciler.images.wheelhouse",
    "agent_image_ref": "reconciler.images.inputs",
    "build_project_image": "reconciler.images.building",
    "build_reason": "reconciler.images.inputs",
    "ensure_project_image": "reconciler.images.building",
    "harness_version": "reconciler.images.harness",
    "image_inputs": "reconciler.images.inputs",
    "is_progress_line": "reconciler.images.building",
    "list_clawker_images": "reconciler.images.listing",
    "observed_image_labels": "reconciler.images.building",
    "project_image_inputs": "reconciler.images.inputs",
    "project_image_ref": "reconciler.images.inputs",
    "render_dockerfile": "reconciler.images.dockerfile",
    "resolve_base_image": "reconciler.images.building",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later look-ups are plain attributes
    return value
