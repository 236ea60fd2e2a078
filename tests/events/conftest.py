"""Webhook receivers on 127.0.0.1: one that records requests, one that answers too slowly."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from lakeforge.events import verify_signature

SECRET = "whsec_test"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("no_proxy", "127.0.0.1")


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    @property
    def signed(self) -> bool:
        return verify_signature(
            SECRET,
            self.headers["X-Lakeforge-Timestamp"],
            self.body,
            self.headers.get("X-Lakeforge-Signature"),
        )


class Receiver:
    """A webhook endpoint on 127.0.0.1 that records requests; answers ``statuses`` in turn.

    With a ``timeline``, each request appends ``"<name>:<delivery id>"`` to it.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        delay_s: float = 0.0,
        timeline: list[str] | None = None,
        name: str = "receiver",
    ) -> None:
        self.requests: list[Received] = []
        self.statuses: list[int] = []
        self.delay_s = delay_s
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append(Received(dict(self.headers.items()), body))
                if timeline is not None:
                    timeline.append(f"{name}:{self.headers['X-Lakeforge-Delivery']}")
                time.sleep(outer.delay_s)
                status = outer.statuses.pop(0) if outer.statuses else 200
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # the sender died mid-request
                    pass

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def ids(self) -> list[int]:
        return [int(r.headers["X-Lakeforge-Delivery"]) for r in self.requests]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def start(port: int = 0, **options: Any) -> Receiver:
        started.append(Receiver(port, **options))
        return started[-1]

    yield start
    for receiver in started:
        receiver.stop()


ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Padding: trickled-one-byte-a-second\r\n\r\n"


class Trickler:
    """An endpoint on 127.0.0.1 that reads each request, then answers 200 one byte a second.

    The answer takes ``len(ANSWER)`` seconds, unless the sender hangs up first, or
    ``release()`` returns true (checked every 50 ms): then the connection is closed
    without an answer. Each request appends ``"slow:start"`` and, once its connection
    ends, ``"slow:end"`` to ``timeline``. Stops by itself within a second of ``stop()``.
    """

    def __init__(self, timeline: list[str], release: Callable[[], bool] | None = None) -> None:
        self.timeline = timeline
        self.release = release or (lambda: False)
        self.durations: list[float] = []
        self._stop = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}/hook"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=self._answer, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _answer(self, conn: socket.socket) -> None:
        started = time.monotonic()
        with conn:
            conn.settimeout(5)
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(65536)
            head, body = request.split(b"\r\n\r\n", 1)
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(body) < length:
                body += conn.recv(65536)
            self.timeline.append("slow:start")
            with contextlib.suppress(OSError):  # the sender hung up mid-byte
                self._trickle(conn)
        self.durations.append(time.monotonic() - started)
        self.timeline.append("slow:end")

    def _trickle(self, conn: socket.socket) -> None:
        next_byte = time.monotonic()
        sent = 0
        while sent < len(ANSWER) and not self._stop.is_set() and not self.release():
            readable, _, _ = select.select([conn], [], [], 0.05)
            if readable and not conn.recv(1):
                return  # the sender hung up
            if time.monotonic() >= next_byte:
                conn.sendall(ANSWER[sent : sent + 1])
                sent += 1
                next_byte += 1.0

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._sock.close()


@pytest.fixture
def tricklers() -> Iterator[Callable[..., Trickler]]:
    started: list[Trickler] = []

    def start(timeline: list[str], release: Callable[[], bool] | None = None) -> Trickler:
        started.append(Trickler(timeline, release))
        return started[-1]

    yield start
    for trickler in started:
        trickler.stop()
