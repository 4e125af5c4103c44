"""Permissions the API applies on top of authentication."""

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from django.conf import settings

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from better_auth.authentication import Credential

if TYPE_CHECKING:
    # Not at run time: DRF imports this module while importing its views.
    from rest_framework.views import APIView


class TrustedOriginForCookies(BasePermission):
    """A cookie-authenticated request that changes state must come from a
    trusted origin: one of FRONTEND_ORIGINS, or the API's own.

    A browser sends the session cookie on its own, also on a request that
    another site's page makes; every browser of today names that page's
    origin in `Origin` (or, failing that, in `Referer`). A request that
    names neither did not come from a web page, so no one is forging it
    on behalf of a signed-in user. Bearer credentials are never sent on
    their own and are not affected.
    """

    message = "Requests authenticated by cookie must come from a trusted origin."
    code = "untrusted_origin"

    def has_permission(self, request: Request, view: "APIView") -> bool:
        if request.method in SAFE_METHODS:
            return True
        credential = request.auth
        if not isinstance(credential, Credential) or not credential.via_cookie:
            return True
        origin = request.headers.get("Origin")
        if origin is None:
            referer = request.headers.get("Referer")
            if referer is None:
                return True
            origin = _origin_of(referer)
        own_origin = f"{request.scheme}://{request.get_host()}"
        return origin in settings.FRONTEND_ORIGINS or origin == own_origin


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
