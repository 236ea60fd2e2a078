"""Who is acting: ``$LAKEFORGE_USER``, else the operating-system user."""

from __future__ import annotations

import getpass
import os

USER_ENV = "LAKEFORGE_USER"


def current_user() -> str:
    """The identity recorded on audited actions (alias moves, approvals, job runs)."""
    user = os.environ.get(USER_ENV)
    if user:
        return user
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, e.g. in some containers
        return "unknown"
