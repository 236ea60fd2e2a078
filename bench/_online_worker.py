"""The read loop every side of ``features_online.py`` runs, so that the sides' reads interleave.

A side sets its store up, then calls :func:`serve`: it prints ``READY <json>`` and answers
commands read from stdin, one a line: ``<mode> A B`` runs reads ``A..B-1`` of ``mode``
(``single`` or ``batch``), each timed alone, and prints ``TIMES <json seconds>``; ``quit``
(or the end of stdin) returns. The parent alternates short blocks between the sides, so a
load spike on a shared machine falls on both alike rather than on whichever ran then.
Standard library only: Feast's venv runs it too (``bench/feast_side.py``).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any


def serve(ready: dict[str, Any], reads: dict[str, Callable[[int], object]]) -> None:
    """Announce ``ready`` and run timed blocks of ``reads[mode](i)`` until told to quit."""
    print("READY " + json.dumps(ready), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            return
        read = reads[words[0]]
        times = []
        for i in range(int(words[1]), int(words[2])):
            start = time.perf_counter()
            read(i)
            times.append(time.perf_counter() - start)
        print("TIMES " + json.dumps(times), flush=True)


def done(peak_mib: float) -> None:
    """The side's last line, after its cleanup."""
    print("DONE " + json.dumps({"peak_mib": peak_mib}), flush=True)
