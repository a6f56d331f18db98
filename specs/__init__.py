"""The spec language of clawker: loading, validating and merging Project and Agent documents.

`load_specs` turns `-f` inputs into a `SpecSet` of `DesiredAgent`s, or raises `SpecErrors`
holding every located problem; `spec_hash` says when an agent's container must be recreated.
The resolved types (specs.resolved) are plain dataclasses, and importing this package does not
import pydantic: only a load the resolved cache cannot answer validates, with specs.models.
This package imports nothing else of clawker's.
"""

from specs.canonical import HASH_VERSION, recreate_view, spec_hash
from specs.errors import SourceRef, SpecError, SpecErrors
from specs.loading import SpecSet, load_specs
from specs.resolved import (
    API_VERSION,
    AgentRuntime,
    BuildSpec,
    DesiredAgent,
    FirewallSpec,
    GitCredentials,
    ResolvedWorkspace,
    SecuritySpec,
    WorkspaceMode,
)

__all__ = [
    "API_VERSION",
    "HASH_VERSION",
    "AgentRuntime",
    "BuildSpec",
    "DesiredAgent",
    "FirewallSpec",
    "GitCredentials",
    "ResolvedWorkspace",
    "SecuritySpec",
    "SourceRef",
    "SpecError",
    "SpecErrors",
    "SpecSet",
    "WorkspaceMode",
    "load_specs",
    "recreate_view",
    "spec_hash",
]
