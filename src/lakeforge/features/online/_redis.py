"""The production online store: one Redis hash per key, the timestamp guard in Lua.

Rows live at ``lakeforge:<namespace>:<table>:<encoded key>`` with one hash field per
feature (JSON) plus ``__ts`` (event time, µs) and ``__wt`` (write time, µs). Table specs
live in the hash ``lakeforge:<namespace>:__tables__``.

Writes run one Lua script per call: Redis runs a script atomically, so a row is replaced
(``DEL`` + ``HSET``) with no command of another client in between. Reads are plain
commands: ``HGET`` of the spec and one ``HMGET`` per key, sent as one ``MULTI``/``EXEC``
pipeline (one round trip, one atomic snapshot; packed in ``_redis_wire``). An ``HMGET``
therefore sees a row wholly before or wholly after a write, never half of it, and the
rows always belong to the spec read with them; the spec check (against the text the
reader cached) and the TTL run in the client.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel

from lakeforge.features.online._base import OnlineStore, ReadRequest
from lakeforge.features.online._codec import (
    Record,
    Stored,
    TableSpec,
    check_name,
)
from lakeforge.features.online._redis_wire import exchange, pack_read

_TS = "__ts"
_WT = "__wt"

# KEYS: the row hashes. ARGV: write time, then per key: ts ('' = none), n, n field/value pairs.
# A row is replaced only when neither side has a ts or the new ts is at least the stored one.
_UPSERT_LUA = """
local wt = ARGV[1]
local a = 2
local changed = 0
for _, key in ipairs(KEYS) do
  local ts = ARGV[a]
  local n = tonumber(ARGV[a + 1])
  a = a + 2
  local cur = redis.call('HGET', key, '__ts')
  if ts == '' or not cur or cur == '' or tonumber(ts) >= tonumber(cur) then
    local args = {'__ts', ts, '__wt', wt}
    for j = 0, 2 * n - 1 do
      args[#args + 1] = ARGV[a + j]
    end
    redis.call('DEL', key)
    redis.call('HSET', key, unpack(args))
    changed = changed + 1
  end
  a = a + 2 * n
end
return changed
"""


class RedisOnlineStoreConfig(BaseModel):
    """Config of the Redis online store (``redis://host:port/db``)."""

    type: Literal["redis"] = "redis"
    url: str
    namespace: str


class RedisOnlineStore(OnlineStore):
    """Online store in Redis; each write is one atomic Lua call, each read one round trip."""

    def __init__(self, config: RedisOnlineStoreConfig) -> None:
        import redis  # lazily: an optional extra

        self.config = config
        self.namespace = check_name("namespace", config.namespace)
        self._prefix = f"lakeforge:{self.namespace}:"
        self._meta = f"{self._prefix}__tables__"
        self._client: Any = redis.Redis.from_url(config.url)
        self._upsert_script: Any = self._client.register_script(_UPSERT_LUA)
        encoder = self._client.get_encoder()  # how redis-py turns str keys into bytes
        self._encoding: tuple[str, str] = (encoder.encoding, encoder.encoding_errors)

    def _row(self, table: str, key: str) -> str:
        return f"{self._prefix}{table}:{key}"

    def tables(self) -> list[str]:
        return sorted(name.decode() for name in self._client.hkeys(self._meta))

    def close(self) -> None:
        self._client.close()

    def _get_spec(self, table: str) -> TableSpec | None:
        text = self._client.hget(self._meta, table)
        return None if text is None else self._parse_spec(table, text)

    def _read(
        self, table: str, request: ReadRequest
    ) -> tuple[TableSpec, list[str], list[Stored | None]]:
        return self._read_checked(table, request, self._fetch_checked)

    def _fetch_checked(
        self, text: str | bytes | None, spec: TableSpec, keys: list[str], features: list[str]
    ) -> list[Stored | None] | None:
        """The rows of ``keys``, or None when the stored spec is not ``text`` (or is gone).

        ``text`` None: no spec check.
        """
        prefix = f"{self._prefix}{spec.name}:"
        rows = [prefix + key for key in keys]
        fields = (_WT, _TS, *features)
        payload = pack_read(self._meta, spec.name, rows, fields, self._encoding)
        current, *replies = exchange(self._client, payload, len(keys) + 1)
        if isinstance(text, str):  # a client with decode_responses gave the cached text
            text = text.encode(*self._encoding)
        if text is not None and current != text:
            return None
        return _decode_rows(replies, features)

    def _put_spec(self, spec: TableSpec) -> TableSpec:
        self._client.hsetnx(self._meta, spec.name, spec.to_json())
        stored = self._get_spec(spec.name)
        return spec if stored is None else stored

    def _upsert(self, spec: TableSpec, records: Sequence[Record], written: int) -> int:
        keys = [self._row(spec.name, r.key) for r in records]
        args: list[str | int] = [written]
        for r in records:
            args += ["" if r.ts is None else r.ts, len(r.values)]
            for name, value in r.values.items():
                args += [name, json.dumps(value)]
        return int(self._upsert_script(keys=keys, args=args))

    def _fetch(
        self, spec: TableSpec, keys: Sequence[str], features: Sequence[str]
    ) -> list[Stored | None]:
        found = self._fetch_checked(None, spec, list(keys), list(features))
        assert found is not None  # not checked, so never None
        return found

    def _delete(self, spec: TableSpec, keys: Sequence[str]) -> int:
        return int(self._client.delete(*(self._row(spec.name, key) for key in keys)))

    def _drop(self, table: str) -> None:
        self._client.hdel(self._meta, table)
        batch: list[bytes] = []
        for name in self._client.scan_iter(match=f"{self._prefix}{table}:*", count=1000):
            batch.append(name)
            if len(batch) >= 1000:
                self._client.unlink(*batch)
                batch.clear()
        if batch:
            self._client.unlink(*batch)


def _decode_rows(rows: list[list[bytes | None]], features: Sequence[str]) -> list[Stored | None]:
    """The ``HMGET [__wt, __ts, *features]`` replies of rows, their JSON values parsed at once."""
    texts = [
        b"null" if row[0] is None else b"[" + b",".join([v or b"null" for v in row]) + b"]"
        for row in rows
    ]
    return [
        None
        if row is None
        else Stored(ts=row[1], written=row[0], values=dict(zip(features, row[2:], strict=True)))
        for row in json.loads(b"[" + b",".join(texts) + b"]")
    ]
