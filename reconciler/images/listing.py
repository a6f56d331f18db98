"""The images clawker made, as rows for `clawker image ls`."""

from __future__ import annotations

from dataclasses import dataclass

from reconciler import naming
from reconciler.docker.engine import DockerPort
from reconciler.images.inputs import IMAGE_INPUTS_LABEL

__all__ = ["ImageSummary", "list_clawker_images"]


@dataclass(frozen=True)
class ImageSummary:
    ref: str  # the first repository:tag, or "<none>" for an image a rebuild left untagged
    refs: tuple[str, ...]
    id: str
    project: str  # "" for base images
    purpose: str
    inputs: str  # the input hash ("" for base images)
    created: int  # seconds since the epoch
    size: int  # bytes


def list_clawker_images(port: DockerPort) -> list[ImageSummary]:
    """Every managed image (project and base images), sorted by reference."""
    rows = [
        ImageSummary(
            ref=image.refs[0] if image.refs else "<none>",
            refs=image.refs,
            id=image.id,
            project=image.labels.get(naming.PROJECT, ""),
            purpose=image.labels.get(naming.PURPOSE, ""),
            inputs=image.labels.get(IMAGE_INPUTS_LABEL, ""),
            created=image.created,
            size=image.size,
        )
        for image in port.list_images()
    ]
    return sorted(rows, key=lambda r: (r.ref == "<none>", r.ref, -r.created))
