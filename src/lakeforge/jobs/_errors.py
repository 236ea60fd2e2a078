"""The error the jobs engine raises."""

from __future__ import annotations

from lakeforge.errors import LakeforgeError


class JobError(LakeforgeError):
    """An unknown job or run, a job a target cannot run, or a run that cannot be repaired
    or cancelled."""
