"""Rate limits of the API's views: per user (RATE_LIMIT_CHAT for sending
messages, RATE_LIMIT_READ for reads) and per client address (for views
that need no account, such as the schema). A view names its scope in
`throttle_scope`; the rate is the setting `RATE_LIMIT_<SCOPE>`.

The counting is core.ratelimit's: one counter per window, incremented
atomically by the cache, so every worker agrees.
"""

from typing import TYPE_CHECKING

from django.conf import settings

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from core import ratelimit

if TYPE_CHECKING:
    # Not at run time: DRF imports this module while importing its views.
    from rest_framework.views import APIView


class UserRateThrottle(SimpleRateThrottle):
    cache_format = "throttle:%(scope)s:%(ident)s"

    def __init__(self) -> None:
        # The scope, so the rate, is the view's: known in allow_request.
        self.window: ratelimit.Window | None = None

    def timer(self) -> float:
        return ratelimit.timer()

    def get_rate(self) -> str | None:
        rate: str = getattr(settings, f"RATE_LIMIT_{(self.scope or '').upper()}")
        return None if rate == "off" else rate

    def get_cache_key(self, request: Request, view: "APIView") -> str | None:
        user_id = getattr(request.user, "id", None)
        if not user_id:
            return None
        # Hashed: a Better Auth id is any text, a cache key is not.
        ident = ratelimit.client_key(str(user_id))
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def allow_request(self, request: Request, view: "APIView") -> bool:
        scope = getattr(view, "throttle_scope", None)
        if not scope:
            return True
        self.scope = scope
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        self.window = ratelimit.current_window(key, self.rate, now=self.timer())
        count = ratelimit.window_hit(self.window)
        return count <= self.window.limit

    def wait(self) -> float:
        return self.window.wait if self.window is not None else 1.0


class AddressRateThrottle(UserRateThrottle):
    """Per client address, as DRF's `get_ident` gives it: REMOTE_ADDR, or
    the X-Forwarded-For entry of the outermost trusted proxy when
    DJANGO_NUM_PROXIES is set (REST_FRAMEWORK["NUM_PROXIES"])."""

    cache_format = "throttle:%(scope)s:address:%(ident)s"

    def get_cache_key(self, request: Request, view: "APIView") -> str | None:
        ident = ratelimit.client_key(self.get_ident(request))
        return self.cache_format % {"scope": self.scope, "ident": ident}
