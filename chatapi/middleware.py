"""Request ids and the access log (one JSON line per request), and the
refusal of request charsets other than UTF-8."""

import logging
import re
import time
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.urls import ResolverMatch
from django.utils.functional import LazyObject

from better_auth.authentication import ApiUser
from chatapi.logging import REQUEST_ID_META, request_id_var
from chatapi.views import error_response

logger = logging.getLogger("chatapi.request")

REQUEST_ID_HEADER = "X-Request-ID"
# Printable ASCII without spaces: safe to echo in a header and to log.
_CLIENT_REQUEST_ID = re.compile(r"[!-~]{1,200}")
# re_path's named groups, written as path() writes them: `<user_id>`.
_NAMED_GROUP = re.compile(r"\(\?P<(\w+)>[^()]*\)")
# A path is the client's to choose; the log keeps a bounded part of it.
MAX_LOGGED_CHARS = 1000


class RequestLogMiddleware:
    """Give each request an id and log one line for it when it is answered.

    The id is the client's `X-Request-ID` when that is 1 to 200 printable
    ASCII characters without spaces, a new uuid4 hex otherwise; it is echoed
    in the response's `X-Request-ID` and carried by every record logged while
    the request runs (see chatapi.logging.JsonFormatter).

    The line, on the `chatapi.request` logger at INFO: request_id, method,
    route (the URL pattern, or the path when none matched), path (never the
    query string), status, duration_ms and user_id (the Better Auth user of
    an API request, else null). No header other than the request id and no
    cookie is read, and no database query is made. Placed first in
    MIDDLEWARE so the duration covers every other middleware.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        request_id = _request_id(request.META.get("HTTP_X_REQUEST_ID", ""))
        request.META[REQUEST_ID_META] = request_id
        token = request_id_var.set(request_id)
        status = 500  # unless a response comes back
        try:
            response = self.get_response(request)
            status = response.status_code
            response[REQUEST_ID_HEADER] = request_id
            return response
        finally:
            route = _route(request.resolver_match) or request.path
            logger.info(
                "%s %s %s",
                request.method,
                route[:MAX_LOGGED_CHARS],
                status,
                extra={
                    "request_id": request_id,
                    "method": (request.method or "")[:MAX_LOGGED_CHARS],
                    "route": route[:MAX_LOGGED_CHARS],
                    "path": request.path[:MAX_LOGGED_CHARS],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                    "user_id": _api_user_id(request),
                },
            )
            request_id_var.reset(token)


def _request_id(given: str) -> str:
    if _CLIENT_REQUEST_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


def _route(match: ResolverMatch | None) -> str | None:
    if match is None or not match.route:
        return None
    route = _NAMED_GROUP.sub(r"<\1>", match.route)
    return route.removeprefix("^").removesuffix("$").removesuffix("/?")


def _api_user_id(request: HttpRequest) -> str | None:
    """The Better Auth user's id, set on the request by DRF's authentication.

    DRF's `Request.user` setter also sets the user on the underlying
    HttpRequest. Anything else there (Django's lazy session user of the
    admin, or nothing) counts as no API user: reading a lazy user would cost
    a query.
    """
    user = getattr(request, "user", None)
    # LazyObject first: isinstance() on a lazy object would load it.
    if isinstance(user, LazyObject) or not isinstance(user, ApiUser):
        return None
    return user.id


# The charset parameter values meaning UTF-8, lowercased (ASCII is a subset).
UTF8_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})


class Utf8OnlyMiddleware:
    """Answer 415 to a request whose Content-Type declares a charset other
    than UTF-8 (or ASCII), on every path and method, before anything reads
    the body.

    Django decodes form fields and the query string, and DRF a JSON body,
    with whatever charset the request declares, and some of Python's codecs
    take quadratic time (punycode): one large body would hold a worker for
    many seconds, without signing in. A declared UTF-8 or ASCII is
    normalised to UTF-8 (which Django's urlencoded forms insist on). Placed
    before every middleware that may read the body, CSRF's included.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        # The parameters Django parsed from Content-Type, the same it reads
        # the charset from; a repeated parameter counts once, as there.
        params = getattr(request, "content_params", None) or {}
        if "charset" in params:
            if params["charset"].strip().lower() not in UTF8_CHARSETS:
                return unsupported_charset()
            request.encoding = "utf-8"
        return self.get_response(request)


def unsupported_charset() -> JsonResponse:
    return error_response(
        "Only UTF-8 request bodies are accepted: declare charset=utf-8 or none.",
        "unsupported_media_type",
        415,
    )
