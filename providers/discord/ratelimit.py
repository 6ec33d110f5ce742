"""Discord REST rate limits: per-route buckets learned from response headers, plus the global limit.

Discord keys a bucket by the route and its *major parameter* (channel, guild or webhook id) and
names buckets with an opaque hash (``X-RateLimit-Bucket``) that several routes may share. We
wait before a request when the bucket says ``Remaining: 0``, and after a 429 for its
``retry_after``. A wait longer than ``max_wait`` is not slept through here: it is raised as
:class:`~gateway.errors.RateLimited` so the outbox (or the supervisor) waits instead.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import anyio

from gateway.errors import RateLimited

_MAJOR = re.compile(r"^/(channels|guilds|webhooks)/(\d+)")
_SNOWFLAKE = re.compile(r"/\d+")


@dataclass(frozen=True)
class Route:
    """``method`` + path, reduced to what Discord rate-limits by."""

    method: str
    path: str

    @property
    def template(self) -> str:
        """The path with ids replaced, keeping the major parameter's kind: ``/channels/{id}/messages``."""
        return _SNOWFLAKE.sub("/{id}", self.path.split("?", 1)[0])

    @property
    def major(self) -> str:
        match = _MAJOR.match(self.path)
        return match.group(2) if match else ""

    @property
    def key(self) -> str:
        return f"{self.method} {self.template}:{self.major}"

    def __str__(self) -> str:
        return f"{self.method} {self.template}"


class Bucket:
    """One rate-limit bucket: how many requests are left and when it refills."""

    def __init__(self) -> None:
        self.limit: int | None = None
        self.remaining: int | None = None
        self.reset_at: float | None = None  # time.monotonic()

    def delay(self, now: float) -> float:
        """Seconds to wait before the next request may go."""
        if self.reset_at is not None and now >= self.reset_at:
            self.remaining, self.reset_at = self.limit, None
        if self.remaining is not None and self.remaining <= 0 and self.reset_at is not None:
            return self.reset_at - now
        return 0.0

    def take(self) -> None:
        # Optimistic: concurrent senders on one route must not all spend the last request.
        if self.remaining is not None and self.remaining > 0:
            self.remaining -= 1

    def update(self, headers: Mapping[str, str], now: float) -> None:
        limit = _number(headers.get("X-RateLimit-Limit"))
        remaining = _number(headers.get("X-RateLimit-Remaining"))
        reset_after = _number(headers.get("X-RateLimit-Reset-After"))
        if limit is not None:
            self.limit = int(limit)
        if remaining is not None:
            self.remaining = int(remaining)
        if reset_after is not None:
            self.reset_at = now + reset_after

    def block(self, seconds: float, now: float) -> None:
        self.remaining = 0
        self.reset_at = max(self.reset_at or 0.0, now + seconds)


class RateLimiter:
    """All buckets of one bot token, plus the global limit."""

    def __init__(self, *, max_wait: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_wait = max_wait
        self._clock = clock
        self._route_bucket: dict[str, str] = {}  # route key -> "hash:major"
        self._buckets: dict[str, Bucket] = {}
        self._global_until = 0.0

    def bucket(self, route: Route) -> Bucket:
        name = self._route_bucket.get(route.key, route.key)
        return self._buckets.setdefault(name, Bucket())

    async def acquire(self, route: Route) -> None:
        """Wait until ``route`` may be requested, or raise RateLimited when that is too long."""
        while True:
            now = self._clock()
            bucket = self.bucket(route)
            delay = max(self._global_until - now, bucket.delay(now))
            if delay <= 0:
                bucket.take()
                return
            if delay > self.max_wait:
                raise RateLimited(delay, f"Discord rate limit on {route}: retry after {delay:.2f}s")
            await anyio.sleep(delay)

    def update(self, route: Route, headers: Mapping[str, str]) -> None:
        """Learn from a response's ``X-RateLimit-*`` headers."""
        now = self._clock()
        bucket_hash = headers.get("X-RateLimit-Bucket")
        if bucket_hash:
            name = f"{bucket_hash}:{route.major}"
            old = self._route_bucket.get(route.key, route.key)
            if old != name:
                self._route_bucket[route.key] = name
                previous = self._buckets.pop(old, None)
                self._buckets.setdefault(name, previous or Bucket())
        self.bucket(route).update(headers, now)

    def rate_limited(self, route: Route, retry_after: float, *, is_global: bool) -> None:
        """Record a 429 so the next attempt (on this route, or on all when global) waits."""
        now = self._clock()
        if is_global:
            self._global_until = max(self._global_until, now + retry_after)
        else:
            self.bucket(route).block(retry_after, now)


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
