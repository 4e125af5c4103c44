"""The admin's sign-in form, with a limit on failed attempts.

RATE_LIMIT_ADMIN_LOGIN failed sign-ins are allowed per client address and
per user name in each window; over either, the form answers 429 (JSON, with
Retry-After) without checking the password, until the window ends. The
address is DRF's `get_ident` (DJANGO_NUM_PROXIES), the counters are
core.ratelimit's. docs/SECURITY.md says why this and not django-axes.
"""

import math
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponseBase
from django.views.decorators.cache import never_cache

from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from chatapi.views import error_response
from core import ratelimit


@never_cache
def admin_login(
    request: HttpRequest, extra_context: dict[str, Any] | None = None
) -> HttpResponseBase:
    """`admin.site.login`, refusing a sign-in over the failure limit.

    A POST that does not sign in (the form comes back) counts as a
    failure, for the address and for the user name it tried.
    """
    rate = settings.RATE_LIMIT_ADMIN_LOGIN
    if request.method != "POST" or rate == "off":
        return admin.site.login(request, extra_context)

    address = ratelimit.client_key(BaseThrottle().get_ident(Request(request)))
    username = ratelimit.client_key(str(request.POST.get("username", "")))
    windows = [
        ratelimit.current_window(f"admin-login:address:{address}", rate),
        ratelimit.current_window(f"admin-login:username:{username}", rate),
    ]
    over = [
        window for window in windows if ratelimit.window_count(window) >= window.limit
    ]
    if over:
        wait = max(window.wait for window in over)
        refused = error_response(
            "Too many failed sign-ins; try again later.", "throttled", 429
        )
        refused["Retry-After"] = str(math.ceil(wait))
        return refused

    response = admin.site.login(request, extra_context)
    if response.status_code == 200:  # the form again: not signed in
        for window in windows:
            ratelimit.window_hit(window)
    return response
