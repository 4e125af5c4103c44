"""Fixed-window counters in the default cache: the rate limits' arithmetic.

A rate such as `30/minute` allows that many events per key in each window
of the period. Each window is one counter that the cache increments
atomically (INCR in Redis), so every worker and thread agrees, unlike a
list of timestamps read then written back (DRF's SimpleRateThrottle). The
price of a fixed window: up to twice the rate across a window's boundary.

The counters are in the default cache: Redis when REDIS_URL is set, shared
by every worker; otherwise each process counts on its own. An unavailable
cache fails open: a limit not applied beats an API down.
"""

import hashlib
import logging
import time
from dataclasses import dataclass

from django.core.cache import cache

from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# Seconds in each period a rate may name (its first letter is enough, as
# DRF reads it).
PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

# The clock of the windows; tests move it instead of waiting.
timer = time.time


@dataclass(frozen=True, slots=True)
class Window:
    """The current window of a rate for one key."""

    key: str
    limit: int
    duration: int
    now: float

    @property
    def cache_key(self) -> str:
        return f"{self.key}:{int(self.now // self.duration)}"

    @property
    def wait(self) -> float:
        """Seconds until the next window (at least 1, for Retry-After)."""
        end = (int(self.now // self.duration) + 1) * self.duration
        return max(end - self.now, 1.0)


def parse_rate(rate: str) -> tuple[int, int]:
    """`(count, seconds)` of a rate such as `30/minute`."""
    count, period = rate.split("/")
    return int(count), PERIODS[period[0]]


def client_key(ident: str | None) -> str:
    """A cache-safe key part for any text (an address, a user name). No
    address (a WSGI server that sets no REMOTE_ADDR) is one key for all."""
    return hashlib.sha256((ident or "").encode()).hexdigest()[:32]


def current_window(key: str, rate: str, *, now: float | None = None) -> Window:
    limit, duration = parse_rate(rate)
    return Window(key, limit, duration, timer() if now is None else now)


def window_hit(window: Window) -> int:
    """Counts one event in the window; returns the count so far (0 when the
    cache is unavailable)."""
    try:
        cache.add(window.cache_key, 0, timeout=window.duration + 1)
        count: int = cache.incr(window.cache_key)
    except (RedisError, ValueError) as exc:
        # ValueError: the counter was evicted between add and incr.
        logger.warning("Rate limit not applied, cache unavailable: %r", exc)
        return 0
    return count


def window_count(window: Window) -> int:
    """The events counted in the window so far (0 when the cache is
    unavailable). Reads only."""
    try:
        count: int = cache.get(window.cache_key, 0)
    except RedisError as exc:
        logger.warning("Rate limit not applied, cache unavailable: %r", exc)
        return 0
    return count
