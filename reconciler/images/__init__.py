"""Agent images (DESIGN §9): one image per project, `clawker-<project>:default`.

The Dockerfile is rendered from the project's `build` spec; Python wheels and the Claude Code
binary are fetched on the host, so the build needs the network only for apt. The image carries
the hash of its inputs (and one per input group) as labels, so an unchanged project is not
rebuilt and a changed one says which group changed.
"""

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
