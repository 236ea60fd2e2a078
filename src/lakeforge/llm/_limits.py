"""Rate limits: token buckets in requests and tokens per minute, per endpoint and per user.

The buckets must hold across the serving workers of a machine, so they live in a
shared store, updated atomically:

- ``FileBuckets`` (default): a memory-mapped file in the serving spool folder, a fixed
  table of slots locked with ``flock`` for each update (tens of microseconds, no
  server; a per-request SQL transaction on the state store would cost milliseconds).
- ``RedisBuckets`` (``rate_limits.store: redis://...``): the same buckets in Redis, one
  Lua script per update with Redis's clock, for limits shared across machines.
- ``MemoryBuckets``: one process (a gateway used as a library, without a spool folder).

A request takes 1 from the request buckets and its estimated input tokens from the token
buckets; when it ends, the token buckets are charged the difference to its actual usage
(so a bucket may go below zero, and later requests wait until it refills).
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lakeforge.project import RateLimitSpec


@dataclass(frozen=True)
class Bucket:
    """One bucket of one request: it holds ``capacity`` and refills at ``rate`` per second."""

    key: str
    capacity: float
    rate: float
    need: float
    cost: float
    label: str


class BucketStore(Protocol):
    async def take(self, buckets: Sequence[Bucket]) -> tuple[float, int] | None:
        """Take every bucket's cost if each holds its need; else (wait in s, which bucket)."""

    async def debit(self, buckets: Sequence[Bucket]) -> None:
        """Charge each bucket its cost (negative: give back), whatever it holds."""

    async def aclose(self) -> None: ...


def _refill(level: float, stamp: float, bucket: Bucket, now: float) -> float:
    return min(bucket.capacity, level + max(0.0, now - stamp) * bucket.rate)


def _decide(levels: list[float], buckets: Sequence[Bucket]) -> tuple[float, int] | None:
    waits = [
        ((b.need - level) / b.rate, i)
        for i, (b, level) in enumerate(zip(buckets, levels, strict=True))
        if level < b.need
    ]
    return max(waits) if waits else None


class MemoryBuckets:
    """Buckets of one process."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._state: dict[str, tuple[float, float]] = {}

    def _levels(self, buckets: Sequence[Bucket], now: float) -> list[float]:
        return [
            _refill(*self._state.get(b.key, (b.capacity, now)), bucket=b, now=now) for b in buckets
        ]

    async def take(self, buckets: Sequence[Bucket]) -> tuple[float, int] | None:
        now = self._clock()
        levels = self._levels(buckets, now)
        refused = _decide(levels, buckets)
        if refused is None:
            for b, level in zip(buckets, levels, strict=True):
                self._state[b.key] = (level - b.cost, now)
        return refused

    async def debit(self, buckets: Sequence[Bucket]) -> None:
        now = self._clock()
        for b, level in zip(buckets, self._levels(buckets, now), strict=True):
            self._state[b.key] = (min(b.capacity, level - b.cost), now)

    async def aclose(self) -> None:
        return None


_MAGIC = b"LFRLIM01"
_HEADER = struct.Struct("<8sI4x")
_SLOT = struct.Struct("<Qdd")  # key hash (0: empty), level, stamp
_PROBE = 32


class FileBuckets:
    """Buckets in a memory-mapped file shared by the processes that open it.

    ``slots`` bounds the number of buckets (per-user ones included): when the slots a
    key may use are all taken, the one updated longest ago is reused, so a user idle
    for long may start again with a full bucket.
    """

    def __init__(
        self, path: Path, *, slots: int = 8192, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        size = _HEADER.size + slots * _SLOT.size
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            if os.fstat(self._fd).st_size < size:
                os.ftruncate(self._fd, size)
                os.pwrite(self._fd, _HEADER.pack(_MAGIC, slots), 0)
            magic, found = _HEADER.unpack(os.pread(self._fd, _HEADER.size, 0))
            if magic != _MAGIC:
                raise ValueError(f"{path} is not a Lakeforge rate-limit file")
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._slots = found
        self._map = mmap.mmap(self._fd, _HEADER.size + found * _SLOT.size)

    def _slot(self, key: str, bucket: Bucket, now: float) -> tuple[int, float]:
        """The offset of ``key``'s slot and its level, claiming a slot when it has none."""
        digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
        wanted = int.from_bytes(digest, "little") or 1
        start = wanted % self._slots
        free: int | None = None
        oldest: tuple[float, int] | None = None
        for step in range(min(_PROBE, self._slots)):
            offset = _HEADER.size + ((start + step) % self._slots) * _SLOT.size
            held, level, stamp = _SLOT.unpack_from(self._map, offset)
            if held == wanted:
                return offset, _refill(level, stamp, bucket, now)
            if held == 0 and free is None:
                free = offset
            if oldest is None or stamp < oldest[0]:
                oldest = (stamp, offset)
        assert oldest is not None
        offset = free if free is not None else oldest[1]
        _SLOT.pack_into(self._map, offset, wanted, bucket.capacity, now)
        return offset, bucket.capacity

    def _update(self, buckets: Sequence[Bucket], check: bool) -> tuple[float, int] | None:
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                now = self._clock()
                found = [self._slot(b.key, b, now) for b in buckets]
                refused = _decide([level for _, level in found], buckets) if check else None
                if refused is None:
                    for b, (offset, level) in zip(buckets, found, strict=True):
                        key = struct.unpack_from("<Q", self._map, offset)[0]
                        new = level - b.cost if check else min(b.capacity, level - b.cost)
                        _SLOT.pack_into(self._map, offset, key, new, now)
                return refused
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    async def take(self, buckets: Sequence[Bucket]) -> tuple[float, int] | None:
        return self._update(buckets, check=True)

    async def debit(self, buckets: Sequence[Bucket]) -> None:
        self._update(buckets, check=False)

    async def aclose(self) -> None:
        with self._lock:
            if not self._map.closed:
                self._map.close()
                os.close(self._fd)


_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local check = ARGV[1] == 'take'
local levels = {}
local worst, which = -1, -1
for i, key in ipairs(KEYS) do
  local cap, rate, need = tonumber(ARGV[i*4-2]), tonumber(ARGV[i*4-1]), tonumber(ARGV[i*4])
  local held = redis.call('HMGET', key, 'level', 'stamp')
  local level, stamp = tonumber(held[1]) or cap, tonumber(held[2]) or now
  level = math.min(cap, level + math.max(0, now - stamp) * rate)
  levels[i] = level
  if check and level < need then
    local wait = (need - level) / rate
    if wait > worst then worst, which = wait, i - 1 end
  end
end
if which >= 0 then return {tostring(worst), which} end
for i, key in ipairs(KEYS) do
  local cap, rate, cost = tonumber(ARGV[i*4-2]), tonumber(ARGV[i*4-1]), tonumber(ARGV[i*4+1])
  local level = levels[i] - cost
  if not check then level = math.min(cap, level) end
  redis.call('HSET', key, 'level', level, 'stamp', now)
  redis.call('EXPIRE', key, math.ceil(cap / rate) * 2 + 60)
end
return {'', -1}
"""


class RedisBuckets:
    """Buckets in Redis, updated by one Lua script (atomic, on Redis's clock)."""

    def __init__(self, url: str, *, prefix: str = "lakeforge:ratelimit:") -> None:
        import redis.asyncio

        self._redis: Any = redis.asyncio.Redis.from_url(url)
        self._script: Any = self._redis.register_script(_LUA)
        self._prefix = prefix

    async def _run(self, mode: str, buckets: Sequence[Bucket]) -> tuple[float, int] | None:
        args: list[Any] = [mode]
        for b in buckets:
            args += [b.capacity, b.rate, b.need, b.cost]
        wait, which = await self._script(keys=[self._prefix + b.key for b in buckets], args=args)
        return None if int(which) < 0 else (float(wait), int(which))

    async def take(self, buckets: Sequence[Bucket]) -> tuple[float, int] | None:
        return await self._run("take", buckets)

    async def debit(self, buckets: Sequence[Bucket]) -> None:
        await self._run("debit", buckets)

    async def aclose(self) -> None:
        await self._redis.aclose()


def open_store(spec: RateLimitSpec, endpoint: str, folder: Path | None) -> BucketStore:
    """Redis when the spec names one, else a file in ``folder``, else this process's memory."""
    if spec.store is not None:
        return RedisBuckets(spec.store)
    if folder is not None:
        return FileBuckets(folder / f"{endpoint}.ratelimits")
    return MemoryBuckets()


class RateLimiter:
    """An endpoint's limits over a bucket store."""

    def __init__(self, endpoint: str, spec: RateLimitSpec, store: BucketStore) -> None:
        self.endpoint = endpoint
        self.spec = spec
        self.store = store

    def _buckets(self, user: str | None, tokens: int, *, requests: bool) -> list[Bucket]:
        spec, users = self.spec, self.spec.per_user
        who = user or "-"
        found: list[Bucket] = []

        def add(key: str, per_minute: int | None, cost: float, label: str) -> None:
            if per_minute is not None:
                need = min(max(cost, 1.0), per_minute)
                found.append(Bucket(key, per_minute, per_minute / 60.0, need, cost, label))

        if requests:
            add(f"{self.endpoint}:rpm", spec.requests_per_minute, 1.0, "requests_per_minute")
            if users is not None:
                label = "per_user.requests_per_minute"
                add(f"{self.endpoint}:u:{who}:rpm", users.requests_per_minute, 1.0, label)
        add(f"{self.endpoint}:tpm", spec.tokens_per_minute, tokens, "tokens_per_minute")
        if users is not None:
            label = "per_user.tokens_per_minute"
            add(f"{self.endpoint}:u:{who}:tpm", users.tokens_per_minute, tokens, label)
        return found

    async def admit(self, user: str | None, tokens_in: int) -> tuple[float, str] | None:
        """Admit a request (taking its share) or say (seconds to wait, the limit hit)."""
        buckets = self._buckets(user, tokens_in, requests=True)
        if not buckets:
            return None
        refused = await self.store.take(buckets)
        if refused is None:
            return None
        wait, which = refused
        return max(wait, 0.001), buckets[which].label

    async def settle(self, user: str | None, estimated: int, actual: int) -> None:
        """Charge the token buckets the difference between actual and estimated usage."""
        if actual != estimated:
            buckets = self._buckets(user, actual - estimated, requests=False)
            if buckets:
                await self.store.debit(buckets)
