"""The Ray executor: each attempt runs on a Ray worker, supervised there as it is locally.

The worker runs the same process supervision as the local executor (own process group,
timeout), polls the attempt's (picklable) cancel check itself, and sends the output back.
Ray is imported on first use; install it with ``pip install 'lakeforge[ray]'``. The
cluster is the target's ``ray_address``, or a local one this process starts.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from typing import Any

from lakeforge.errors import LakeforgeError
from lakeforge.jobs._process import AttemptSpec, Outcome, run_attempt
from lakeforge.jobs.executors._base import Attempt, Executor

_lock = threading.Lock()
_remote: Any = None


class RayExecutor(Executor):
    """Runs attempts on the target's Ray cluster (``targets.<t>.ray_address``)."""

    name = "ray"

    def run(self, attempt: Attempt) -> Outcome:
        ray = _connect(self.target.ray_address)
        outcome, output = ray.get(_remote.remote(attempt.spec, attempt.cancelled))
        with attempt.log.open("a") as out:
            out.write(output)
        return outcome


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


def _attempt_on_worker(spec: AttemptSpec, cancelled: Callable[[], bool]) -> tuple[Outcome, str]:
    """Runs inside the Ray worker: the attempt's outcome and output."""
    with tempfile.TemporaryFile(mode="w+") as out:  # the child needs a real descriptor
        outcome = run_attempt(spec, out, cancelled)
        out.seek(0)
        return outcome, out.read()


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
