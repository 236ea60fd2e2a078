"""A read's Redis commands packed by hand and sent as one ``MULTI``/``EXEC`` round trip.

redis-py's pipeline builds, packs and parses each queued command through several Python
layers (about 4 µs per command, most of a 100-key read here). A read sends the same
``HMGET`` shape for every key, so its bytes are a prefix and a suffix around each key;
packing them directly and reading the replies on a pooled connection keeps redis-py's
connection handling (pool, reconnects, the hiredis parser) and drops the per-command cost.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from lakeforge.features.online._codec import OnlineStoreError


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def _command(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(_bulk(a) for a in args)


_MULTI = _command(b"MULTI")
_EXEC = _command(b"EXEC")


@functools.lru_cache(maxsize=256)
def _frame(
    meta: str, table: str, fields: tuple[str, ...], encoding: tuple[str, str]
) -> tuple[bytes, bytes, bytes]:
    """What every read of ``fields`` of ``table`` sends around its row names."""
    start = _MULTI + _command(b"HGET", meta.encode(*encoding), table.encode(*encoding))
    head = b"*%d\r\n$5\r\nHMGET\r\n" % (len(fields) + 2)
    return start, head, b"".join(_bulk(f.encode(*encoding)) for f in fields)


def pack_read(
    meta: str, table: str, rows: Sequence[str], fields: tuple[str, ...], encoding: tuple[str, str]
) -> bytes:
    """``MULTI``, ``HGET meta table``, ``HMGET row *fields`` per row, ``EXEC``: one buffer.

    Names are encoded with ``encoding`` (encoding, errors), as the client encodes them.
    """
    start, head, tail = _frame(meta, table, fields, encoding)
    return b"".join([start, *[head + _bulk(row.encode(*encoding)) + tail for row in rows], _EXEC])


def exchange(client: Any, payload: bytes, commands: int) -> list[Any]:
    """Send ``payload`` (``commands`` queued between ``MULTI`` and ``EXEC``); the results.

    One round trip on one connection of ``client``'s pool; replies are raw bytes whatever
    the client's ``decode_responses``. On any failure the connection is closed rather than
    returned with unread replies.
    """
    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        connection.send_packed_command([payload])
        for _ in range(commands + 1):  # +OK for MULTI, then +QUEUED per command
            connection.read_response(disable_decoding=True)
        results = connection.read_response(disable_decoding=True)
    except BaseException:
        connection.disconnect()
        raise
    finally:
        pool.release(connection)
    if not isinstance(results, list) or len(results) != commands:
        raise OnlineStoreError(f"unexpected Redis reply to a read's EXEC: {results!r:.200}")
    for result in results:
        if isinstance(result, Exception):
            raise OnlineStoreError(f"Redis refused a read: {result}") from result
    return results
