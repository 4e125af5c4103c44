"""The app's WSGI handler: Django's, with a request that any Content-Type
header leaves standing (chatapi.wsgi serves it)."""

from django.core.handlers import wsgi


class WSGIRequest(wsgi.WSGIRequest):
    def _set_content_type_params(self, meta: dict[str, str]) -> None:
        try:
            # Private to Django, absent from its stubs; the test of this
            # class (chatapi/tests/test_charsets.py) fails if it goes.
            super()._set_content_type_params(meta)  # type: ignore[misc]
        except ValueError:
            # Django refuses an RFC 2231 parameter in a charset Python does
            # not know (`charset*=nope''x`) while it builds the request,
            # before any middleware: the client would get a bare 500. Such
            # a header declares no charset anyone supports, so it is read as
            # that, and Utf8OnlyMiddleware answers 415.
            self.content_type, self.content_params = "", {"charset": ""}


class WSGIHandler(wsgi.WSGIHandler):
    request_class = WSGIRequest
