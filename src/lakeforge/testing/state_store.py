"""The conformance suite of the state store: every state operation the platform relies on.

Shaped like scikit-learn's ``check_estimator``: :func:`check_state_store` runs every
check on one database, :func:`state_store_checks` yields ``(name, check)`` pairs and
:func:`parametrize_state_store_checks` turns them into a ``pytest.mark.parametrize``. A
check takes the SQLAlchemy URL of the database and works through Lakeforge's own code
(:class:`~lakeforge.state.StateStore`, :class:`~lakeforge.state.Lease`, the outbox, the
scheduler's firing records, the state tables), each on rows it names itself, so the
checks run in any order on one database. Only ``check_concurrent_migration`` needs the
database empty: :func:`check_state_store` runs it first; parametrized, give every check
its own empty database. Racing checks use threads, or processes for migrations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from lakeforge.testing._state_coordination import (
    check_approval_decided_once,
    check_fire_key_fires_once,
    check_firing_and_cursor_commit_together,
    check_ingest_checkpoint,
    check_ingest_racing_claims_one_wins,
    check_lease_acquire_renew_release,
    check_lease_expires_and_is_taken_over,
    check_lease_racing_owners_one_wins,
)
from lakeforge.testing._state_outbox import (
    check_outbox_consumer_lease,
    check_outbox_cursor_backs_off_and_redelivers,
    check_outbox_emit_and_list,
    check_outbox_emit_commits_with_the_caller,
    check_outbox_racing_consumers_handle_each_event_once,
)
from lakeforge.testing._state_schema import (
    check_concurrent_migration,
    check_migrations_are_idempotent,
    check_timestamps_round_trip_as_utc,
    check_upsert,
)

__all__ = [
    "StateStoreCheck",
    "check_state_store",
    "parametrize_state_store_checks",
    "state_store_checks",
]

#: One conformance check, given the database URL: raises when the store fails it.
StateStoreCheck = Callable[[str], None]

# -- the suite ------------------------------------------------------------------------------

_CHECKS: tuple[StateStoreCheck, ...] = (
    check_concurrent_migration,  # first: it needs the database empty
    check_migrations_are_idempotent,
    check_lease_acquire_renew_release,
    check_lease_expires_and_is_taken_over,
    check_lease_racing_owners_one_wins,
    check_fire_key_fires_once,
    check_firing_and_cursor_commit_together,
    check_outbox_emit_and_list,
    check_outbox_emit_commits_with_the_caller,
    check_outbox_cursor_backs_off_and_redelivers,
    check_outbox_consumer_lease,
    check_outbox_racing_consumers_handle_each_event_once,
    check_approval_decided_once,
    check_ingest_checkpoint,
    check_ingest_racing_claims_one_wins,
    check_upsert,
    check_timestamps_round_trip_as_utc,
)


def state_store_checks() -> Iterator[tuple[str, StateStoreCheck]]:
    """``(name, check)`` for every check; each takes the URL of the database."""
    for check in _CHECKS:
        yield check.__name__, check


def parametrize_state_store_checks() -> pytest.MarkDecorator:
    """``pytest.mark.parametrize("check", ...)`` over :func:`state_store_checks`, by name.

    The decorated test takes ``check`` and calls it with the URL of an empty database.
    """
    pairs = list(state_store_checks())
    return pytest.mark.parametrize("check", [c for _, c in pairs], ids=[n for n, _ in pairs])


def check_state_store(url: str) -> None:
    """Run every check on the empty database at ``url``; the first failure raises.

    The exception carries a note naming the check that failed.
    """
    for name, check in state_store_checks():
        try:
            check(url)
        except BaseException as exc:
            where = sa.make_url(url).render_as_string(hide_password=True)
            exc.add_note(f"state store conformance check {name} failed on {where}")
            raise
