"""The production online store: one Redis hash per key, the timestamp guard in Lua.

Rows live at ``lakeforge:<namespace>:<table>:<encoded key>`` with one hash field per
feature (JSON) plus ``__ts`` (event time, µs) and ``__wt`` (write time, µs). Table specs
live in the hash ``lakeforge:<namespace>:__tables__``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel

from lakeforge.errors import LakeforgeError
from lakeforge.features.online._base import OnlineStore, ReadRequest
from lakeforge.features.online._codec import (
    OnlineStoreError,
    Record,
    Stored,
    TableSpec,
    check_name,
)

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


# KEYS[1]: the tables hash, then the row hashes. ARGV: table, the SHA-1 of the spec text
# the caller holds, then the feature fields. One round trip: if the stored spec is still
# that text, the rows as one JSON text (null, or [written, ts, values...] per key).
_READ_LUA = """
local spec = redis.call('HGET', KEYS[1], ARGV[1])
if not spec or redis.sha1hex(spec) ~= ARGV[2] then
  return {0, ''}
end
local fields = {'__wt', '__ts'}
for i = 3, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
local out = {}
for i = 2, #KEYS do
  local v = redis.call('HMGET', KEYS[i], unpack(fields))
  if not v[1] then
    out[#out + 1] = 'null'
  else
    if not v[2] or v[2] == '' then
      v[2] = 'null'
    end
    for j = 3, #fields do
      if not v[j] then
        v[j] = 'null'
      end
    end
    out[#out + 1] = '[' .. table.concat(v, ',', 1, #fields) .. ']'
  end
end
return {1, '[' .. table.concat(out, ',') .. ']'}
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
        self._read_script: Any = self._client.register_script(_READ_LUA)
        # the stored spec text each cached spec came from, and its SHA-1
        self._texts: dict[str, tuple[bytes, str]] = {}

    def _row(self, table: str, key: str) -> str:
        return f"{self._prefix}{table}:{key}"

    def tables(self) -> list[str]:
        return sorted(name.decode() for name in self._client.hkeys(self._meta))

    def close(self) -> None:
        self._client.close()

    def _get_spec(self, table: str) -> TableSpec | None:
        text = self._client.hget(self._meta, table)
        if text is None:
            self._texts.pop(table, None)
            return None
        self._texts[table] = (text, hashlib.sha1(text).hexdigest())
        return self._parse_spec(table, text)

    def _read(
        self, table: str, request: ReadRequest
    ) -> tuple[TableSpec, list[str], list[Stored | None]]:
        """One round trip when the spec is cached: the script checks it is still current."""
        for _ in range(3):
            cached = self._texts.get(table)
            if cached is None:
                spec = self._require_spec(table)
                cached = self._texts[table]
            else:
                spec = self._parse_spec(table, cached[0])
            try:
                keys, names = request(spec)
            except LakeforgeError:
                if self._get_spec(table) == spec:  # the request is wrong, not the cache
                    raise
                continue
            rows = [self._row(table, key) for key in keys]
            current, found = self._read_script(
                keys=[self._meta, *rows], args=[table, cached[1], *names]
            )
            if current == 1:
                return spec, names, _decode_rows(found, names)
            self._texts.pop(table, None)  # recreated or dropped meanwhile: read the spec again
        raise OnlineStoreError(f"online table {table!r} kept changing while being read")

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
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(self._row(spec.name, key), [_WT, _TS, *features])
        found: list[Stored | None] = []
        for written, ts, *values in pipe.execute():
            if written is None:
                found.append(None)
                continue
            found.append(
                Stored(
                    ts=int(ts) if ts else None,
                    written=int(written),
                    values={
                        n: None if v is None else json.loads(v)
                        for n, v in zip(features, values, strict=True)
                    },
                )
            )
        return found

    def _delete(self, spec: TableSpec, keys: Sequence[str]) -> int:
        return int(self._client.delete(*(self._row(spec.name, key) for key in keys)))

    def _drop(self, table: str) -> None:
        self._texts.pop(table, None)
        self._client.hdel(self._meta, table)
        batch: list[bytes] = []
        for name in self._client.scan_iter(match=f"{self._prefix}{table}:*", count=1000):
            batch.append(name)
            if len(batch) >= 1000:
                self._client.unlink(*batch)
                batch.clear()
        if batch:
            self._client.unlink(*batch)


def _decode_rows(text: bytes, features: Sequence[str]) -> list[Stored | None]:
    """The rows of the read script's JSON reply."""
    return [
        None
        if row is None
        else Stored(ts=row[1], written=row[0], values=dict(zip(features, row[2:], strict=True)))
        for row in json.loads(text)
    ]
