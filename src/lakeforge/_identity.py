"""Who is acting: ``$LAKEFORGE_USER``, else the operating-system user.

``$LAKEFORGE_USER`` is a claim anyone can make until access control lands, so audited
rows also record :func:`os_user`, the account that really ran the command.
"""

from __future__ import annotations

import getpass
import os

USER_ENV = "LAKEFORGE_USER"


def os_user() -> str:
    """The operating-system account running this process."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, e.g. in some containers
        return "unknown"


def current_user() -> str:
    """The identity recorded on audited actions (alias moves, approvals, job runs)."""
    return os.environ.get(USER_ENV) or os_user()
