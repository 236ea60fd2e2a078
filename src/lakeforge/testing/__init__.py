"""Public conformance suites for Lakeforge's backends (needs ``pytest``).

A backend passes the same checks Lakeforge's own backends pass, in the shape of
scikit-learn's ``check_estimator`` / ``parametrize_with_checks``: ``check_*`` runs every
check, ``*_checks()`` yields ``(name, check)`` pairs, ``parametrize_*_checks()`` makes
one pytest test per check. Checks a backend cannot pass are not skipped by name: an
online store declares what it supports with :class:`OnlineStoreCapabilities`.

An online store, given a factory that opens a new store on one backend and namespace::

    from lakeforge.features.online import open_online_store
    from lakeforge.testing import OnlineStoreCheck, parametrize_online_store_checks

    @parametrize_online_store_checks()
    def test_my_store(check: OnlineStoreCheck) -> None:
        check(lambda: open_online_store("mystore://localhost/0", namespace="test"))

A state store (a database SQLAlchemy speaks), given the URL of an empty database::

    from lakeforge.testing import check_state_store

    def test_my_database(empty_database_url: str) -> None:
        check_state_store(empty_database_url)

A jobs executor, given a factory that makes it::

    from lakeforge.jobs.executors import open_executor
    from lakeforge.testing import check_executor

    def test_my_executor(target) -> None:
        check_executor(lambda: open_executor("mine", target))

Importing ``lakeforge`` never imports this package (nor pytest).
"""

from lakeforge.testing.executor import (
    ExecutorCheck,
    ExecutorFactory,
    check_executor,
    executor_checks,
    parametrize_executor_checks,
)
from lakeforge.testing.online_store import (
    OnlineStoreCapabilities,
    OnlineStoreCheck,
    StoreFactory,
    check_online_store,
    online_store_checks,
    parametrize_online_store_checks,
)
from lakeforge.testing.state_store import (
    StateStoreCheck,
    check_state_store,
    parametrize_state_store_checks,
    state_store_checks,
)

__all__ = [
    "ExecutorCheck",
    "ExecutorFactory",
    "OnlineStoreCapabilities",
    "OnlineStoreCheck",
    "StateStoreCheck",
    "StoreFactory",
    "check_executor",
    "check_online_store",
    "check_state_store",
    "executor_checks",
    "online_store_checks",
    "parametrize_executor_checks",
    "parametrize_online_store_checks",
    "parametrize_state_store_checks",
    "state_store_checks",
]
