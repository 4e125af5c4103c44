"""Per-user rate limits: RATE_LIMIT_CHAT for sending messages,
RATE_LIMIT_READ for reads. A view names its scope in `throttle_scope`.

DRF's SimpleRateThrottle keeps a list of timestamps per client and writes
it back (read, then write): workers serving the same user at once each
read the old list, so the limit leaks under exactly the parallel load it
is there for. Here each window is one counter that the cache increments
atomically (INCR in Redis), so every worker and thread agrees. The price
of a fixed window: a client can send up to twice the rate across a
window's boundary.
"""

import hashlib
import logging
from typing import TYPE_CHECKING

from django.conf import settings

from redis.exceptions import RedisError
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

if TYPE_CHECKING:
    # Not at run time: DRF imports this module while importing its views.
    from rest_framework.views import APIView

logger = logging.getLogger(__name__)


class UserRateThrottle(SimpleRateThrottle):
    cache_format = "throttle:%(scope)s:%(ident)s"

    def __init__(self) -> None:
        # The scope, so the rate, is the view's: known in allow_request.
        self.window_end = 0.0
        self.now = 0.0

    def get_rate(self) -> str | None:
        rate: str = getattr(settings, f"RATE_LIMIT_{(self.scope or '').upper()}")
        return None if rate == "off" else rate

    def get_cache_key(self, request: Request, view: "APIView") -> str | None:
        user_id = getattr(request.user, "id", None)
        if not user_id:
            return None
        # Hashed: a Better Auth id is any text, a cache key is not.
        ident = hashlib.sha256(str(user_id).encode()).hexdigest()[:32]
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def allow_request(self, request: Request, view: "APIView") -> bool:
        scope = getattr(view, "throttle_scope", None)
        if not scope:
            return True
        self.scope = scope
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        limit, duration = self.parse_rate(self.rate)
        key = self.get_cache_key(request, view)
        if key is None or limit is None or duration is None:
            return True

        self.now = self.timer()
        window = int(self.now // duration)
        self.window_end = (window + 1) * duration
        key = f"{key}:{window}"
        try:
            self.cache.add(key, 0, timeout=duration + 1)
            count = self.cache.incr(key)
        except (RedisError, ValueError) as exc:
            # Fail open: an unavailable cache must not take the API down.
            logger.warning("Rate limit not applied, cache unavailable: %r", exc)
            return True
        return count <= limit

    def wait(self) -> float:
        return max(self.window_end - self.now, 1.0)
