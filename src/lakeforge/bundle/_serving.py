"""Which specs ``lakeforge serve`` runs on a target (model and LLM endpoints, vector
indexes): the deployed snapshot's on a production-mode target (what is deployed is what
runs), the working copy's on a development-mode one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lakeforge.bundle._errors import DeployError
from lakeforge.bundle._snapshot import Deployment, current
from lakeforge.project import EndpointSpec, LLMEndpointSpec, VectorIndexSpec

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace


@dataclass(frozen=True)
class ServedSpecs:
    """What a target serves, by name (model and LLM endpoints, vector indexes), and the
    deployment it comes from."""

    endpoints: dict[str, EndpointSpec | LLMEndpointSpec | VectorIndexSpec]
    deployment: Deployment | None  # None: the working copy (a development-mode target)

    @property
    def source(self) -> str:
        """Where the specs come from, for messages."""
        if self.deployment is None:
            return "the working copy's lakeforge.yaml"
        return f"deployment {self.deployment.id} ({self.deployment.label})"


def served_endpoints(ws: Workspace) -> ServedSpecs:
    """The endpoints and vector indexes ``ws``'s target serves.

    A production-mode target serves only what ``lakeforge deploy`` recorded, after checking
    the snapshot is unchanged; with no deployment it refuses. A development-mode target
    serves the working copy's declarations, so edits show without a deploy.
    """
    if ws.target.development:
        config = ws.project.config
        return ServedSpecs(
            {**config.endpoints, **config.llm_endpoints, **config.vector_indexes}, None
        )
    deployment = current(ws)
    if deployment is None:
        raise DeployError(
            f"target {ws.target.name} runs in production mode and has no deployment: it "
            "serves only deployed endpoints and vector indexes",
            hint=f"deploy first: `lakeforge deploy -t {ws.target.name}` (or serve one "
            "registered model with --model NAME@ALIAS)",
        )
    deployment.verify()
    try:
        served = {**deployment.endpoints(), **deployment.vector_indexes()}
    except OSError as exc:
        raise DeployError(
            f"deployment {deployment.id} ({deployment.label}): cannot read its snapshot "
            f"{deployment.path}: {exc}",
            hint=f"deploy again: `lakeforge deploy -t {ws.target.name}`",
        ) from None
    return ServedSpecs(served, deployment)
