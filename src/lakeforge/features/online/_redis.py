"""The production online store: one Redis hash per key, the timestamp guard in Lua.

Rows live at ``lakeforge:<namespace>:<table>:<encoded key>`` with one hash field per
feature (JSON) plus ``__ts`` (event time, µs) and ``__wt`` (write time, µs). Table specs
live in the hash ``lakeforge:<namespace>:__tables__``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel

from lakeforge.features.online._base import OnlineStore
from lakeforge.features.online._codec import Record, Stored, TableSpec, check_name

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

    def _row(self, table: str, key: str) -> str:
        return f"{self._prefix}{table}:{key}"

    def tables(self) -> list[str]:
        return sorted(name.decode() for name in self._client.hkeys(self._meta))

    def close(self) -> None:
        self._client.close()

    def _get_spec(self, table: str) -> TableSpec | None:
        text = self._client.hget(self._meta, table)
        return None if text is None else TableSpec.from_json(table, text)

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
        self._client.hdel(self._meta, table)
        batch: list[bytes] = []
        for name in self._client.scan_iter(match=f"{self._prefix}{table}:*", count=1000):
            batch.append(name)
            if len(batch) >= 1000:
                self._client.unlink(*batch)
                batch.clear()
        if batch:
            self._client.unlink(*batch)
