"""Committing to Delta tables that other writers commit to at the same time.

Every commit Lakeforge makes carries its write id (``lakeforge.write_id`` in the commit
info), so the version and metrics a write reports are those of its own commit (the
snapshot delta-rs leaves after committing, or the log entry with that id), never the
latest version, which may be another writer's. A commit that loses
a race (``CommitFailedError``: a concurrent commit conflicts with it) is rerun on the
new snapshot, a bounded number of times; delta-rs rebases plain appends by itself, and
this does the same for merges, deletes and creating writes. A write that carries an
application transaction (``app_id``, ``version``) is refused unless its version is
higher than the table's: with delta-rs's conflict check on concurrent commits of the
same ``app_id``, two runs can never both commit one version of a transaction.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from deltalake import CommitProperties, DeltaTable
from deltalake.exceptions import CommitFailedError

from lakeforge.errors import LakeforgeError

WRITE_ID_KEY = "lakeforge.write_id"
MAX_ATTEMPTS = 40
T = TypeVar("T")


class TransactionConflictError(LakeforgeError):
    """A write whose application transaction version the table already has."""


def with_write_id(properties: CommitProperties | None, write_id: str) -> CommitProperties:
    """``properties`` (or none) with the write id added to the commit's metadata."""
    if properties is None:
        return CommitProperties(custom_metadata={WRITE_ID_KEY: write_id})
    return CommitProperties(
        custom_metadata={**(properties.custom_metadata or {}), WRITE_ID_KEY: write_id},
        max_commit_retries=properties.max_commit_retries,
        app_transactions=properties.app_transactions,
    )


def check_transactions(dt: DeltaTable, properties: CommitProperties, what: str) -> None:
    """Refuse a commit whose application transaction the snapshot ``dt`` already holds."""
    for txn in properties.app_transactions or []:
        done = dt.transaction_version(txn.app_id)
        if done is not None and done >= txn.version:
            raise TransactionConflictError(
                f"{what} refused: application transaction {txn.app_id!r} is already at "
                f"version {done} in the table and this write carries version {txn.version}; "
                "each commit of an application must carry a higher version (another run "
                "has probably committed this one already)"
            )


def retry_conflicts(attempt: Callable[[int], T], *, what: str, replayable: bool = True) -> T:
    """Run ``attempt(n)`` (n = 1, 2, ...) until it commits without a conflict.

    ``attempt`` must start from a fresh snapshot when ``n > 1``. A conflict on a write
    that cannot be replayed (a consumed stream) fails at once.
    """
    for number in range(1, MAX_ATTEMPTS + 1):
        try:
            return attempt(number)
        except CommitFailedError as exc:
            if not replayable or number == MAX_ATTEMPTS:
                why = (
                    "its data was a stream, which cannot be replayed; pass a table to retry"
                    if not replayable
                    else f"other writers committed first {number} times"
                )
                raise LakeforgeError(
                    f"{what} failed; the table is unchanged by it: a concurrent commit "
                    f"conflicted and {why}: {exc}"
                ) from None
            time.sleep(random.uniform(0, min(0.5, 0.005 * 2**number)))
    raise AssertionError("unreachable")  # pragma: no cover


def own_commit(dt: DeltaTable, write_id: str, *, since: int) -> tuple[int, dict[str, Any]]:
    """The version and metrics of the commit carrying ``write_id``, at or after ``since``.

    ``dt`` is a snapshot at or after that commit. delta-rs's ``history`` reads the log
    from its latest commit but numbers the entries down from the snapshot's version, so
    the numbers are right only while no commit has landed after the snapshot: when more
    entries come back than asked for, reload and read again.
    """
    for _ in range(MAX_ATTEMPTS):
        limit = dt.version() - since + 1
        commits = dt.history(limit)
        if len(commits) == limit:
            for commit in commits:
                if commit.get(WRITE_ID_KEY) == write_id:
                    return int(commit["version"]), dict(commit.get("operationMetrics", {}))
            break
        dt.update_incremental()
    raise LakeforgeError(
        f"the commit of write {write_id} was not found in the log of {dt.table_uri} at or "
        f"after version {since}; it was committed, but its version is unknown"
    )
