"""A third executor in one module: local attempts, one at a time (for a machine with one GPU).

Installed with an entry point in the ``lakeforge.executors`` group, ``executor: serial``
becomes valid in ``lakeforge.yaml``. Run as a script, it passes Lakeforge's public
executor conformance suite.
"""

import threading

from lakeforge.jobs.executors import Attempt, LocalExecutor, Outcome

_one = threading.Lock()


class SerialExecutor(LocalExecutor):
    """Local attempts, one at a time in this process."""

    name = "serial"

    def run(self, attempt: Attempt) -> Outcome:
        with _one:
            return super().run(attempt)


if __name__ == "__main__":
    from pathlib import Path
    from tempfile import mkdtemp

    import lakeforge
    from lakeforge.testing import check_executor, executor_checks

    project = lakeforge.init_project("serial_example", Path(mkdtemp(prefix="lakeforge-serial-")))
    target = lakeforge.connect("dev", project_dir=project).target
    check_executor(lambda: SerialExecutor(target))
    passed = len(list(executor_checks(SerialExecutor.capabilities)))
    print(f"serial passed all {passed} executor checks")
