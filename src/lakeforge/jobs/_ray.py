"""The Ray executor: a task attempt runs on a Ray worker, supervised there as it is locally.

The worker runs the same process supervision as the local executor (own process group,
timeout), checks the run's cancel flag in the state store, and sends the output back.
Install with ``pip install 'lakeforge[ray]'``.
"""

from __future__ import annotations

import tempfile
import threading
import time
from typing import TYPE_CHECKING, Any

from lakeforge.errors import LakeforgeError
from lakeforge.jobs._process import AttemptSpec, Outcome, run_attempt

if TYPE_CHECKING:
    from lakeforge.project import Target

_lock = threading.Lock()
_remote: Any = None
CANCEL_POLL_S = 0.5


def _connect(address: str | None) -> Any:
    try:
        import ray
    except ModuleNotFoundError:
        raise LakeforgeError(
            "jobs with executor: ray need Ray", hint="pip install 'lakeforge[ray]'"
        ) from None
    global _remote
    with _lock:
        if not ray.is_initialized():
            _init_in_keeper_thread(ray, address)
        if _remote is None:
            _remote = ray.remote(num_cpus=1, max_retries=0)(_attempt_on_worker)
    return ray


def _init_in_keeper_thread(ray: Any, address: str | None) -> None:
    """``ray.init`` from a thread that lives as long as the process.

    A local cluster's processes die with the *thread* that started them (Linux
    PR_SET_PDEATHSIG), and runs call this from short-lived worker threads.
    """
    ready = threading.Event()
    failure: list[BaseException] = []

    def keep() -> None:
        try:
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                ignore_reinit_error=True,
            )
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            failure.append(exc)
        finally:
            ready.set()
        if not failure:
            threading.Event().wait()  # keep this thread (and so the cluster) alive

    threading.Thread(target=keep, name="lakeforge-ray", daemon=True).start()
    ready.wait()
    if failure:
        raise LakeforgeError(f"cannot start or reach Ray ({address or 'local'}): {failure[0]}")


def _attempt_on_worker(spec: AttemptSpec, state_url: str, run_id: int) -> tuple[Outcome, str]:
    """Runs inside the Ray worker."""
    import sqlalchemy as sa

    from lakeforge.state import job_runs

    engine = sa.create_engine(state_url)
    last = [0.0, False]

    def cancelled() -> bool:
        if time.monotonic() - last[0] >= CANCEL_POLL_S:
            with engine.connect() as conn:
                last[1] = bool(
                    conn.execute(
                        sa.select(job_runs.c.cancel_requested).where(job_runs.c.id == run_id)
                    ).scalar()
                )
            last[0] = time.monotonic()
        return bool(last[1])

    try:
        with tempfile.TemporaryFile(mode="w+") as out:  # the child needs a real descriptor
            outcome = run_attempt(spec, out, cancelled)
            out.seek(0)
            return outcome, out.read()
    finally:
        engine.dispose()


def run_on_ray(spec: AttemptSpec, target: Target, run_id: int) -> tuple[Outcome, str]:
    """Run one attempt on the target's Ray cluster; its outcome and output."""
    ray = _connect(target.ray_address)
    outcome, output = ray.get(_remote.remote(spec, target.state_store_url, run_id))
    return outcome, output


def shutdown() -> None:
    """Disconnect from Ray (and stop the local cluster this process started)."""
    global _remote
    try:
        import ray
    except ModuleNotFoundError:
        return
    with _lock:
        if ray.is_initialized():
            ray.shutdown()
        _remote = None
