"""Failed authentications per client address (RATE_LIMIT_AUTH_FAILURES).

Each credential that fails costs a database lookup (a session token) or a
signature check (a JWT), and DRF's throttles never see such a request: they
run after authentication. So the authentication classes wrap their checks
in `failures_limited`: once an address has failed RATE_LIMIT_AUTH_FAILURES
times in the window, its requests with credentials get 429 with
Retry-After, without the lookup, until the window ends. A request that
authenticates pays one cache read (no database statement) and counts
nothing.

The address is DRF's `get_ident` (REMOTE_ADDR, or the X-Forwarded-For entry
of the outermost trusted proxy with DJANGO_NUM_PROXIES); the counters are
core.ratelimit's, in the default cache.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings

from rest_framework.exceptions import AuthenticationFailed, Throttled
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from core import ratelimit


class AuthenticationThrottled(Throttled):
    default_detail = "Too many failed authentications from this address."


@contextmanager
def failures_limited(request: Request) -> Iterator[None]:
    """Refuse (429) when the client's address is over its failures; count
    the failure when the wrapped check raises AuthenticationFailed."""
    rate = settings.RATE_LIMIT_AUTH_FAILURES
    if rate == "off":
        yield
        return
    address = ratelimit.client_key(BaseThrottle().get_ident(request))
    window = ratelimit.current_window(f"auth-failures:{address}", rate)
    if ratelimit.window_count(window) >= window.limit:
        raise AuthenticationThrottled(wait=window.wait)
    try:
        yield
    except AuthenticationFailed:
        ratelimit.window_hit(window)
        raise
