"""The error ``lakeforge deploy`` raises."""

from __future__ import annotations

from lakeforge.errors import LakeforgeError


class DeployError(LakeforgeError):
    """A declared resource that cannot be deployed, or a plan applied to the wrong target."""
