"""Application errors: raised by services, rendered by the API's handler."""

from typing import ClassVar


class ApplicationError(Exception):
    """An expected failure with an HTTP status and a machine-readable code.

    Services raise these and know nothing about responses; the exception
    handler renders them as `{"detail": ..., "code": ...}`.
    """

    status_code: ClassVar[int] = 400
    code: ClassVar[str] = "error"
    default_detail: ClassVar[str] = "The request could not be completed."

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.default_detail
        super().__init__(self.detail)


class NotFoundError(ApplicationError):
    status_code = 404
    code = "not_found"
    default_detail = "Not found."


class InvalidInputError(ApplicationError):
    """Input that passed parsing but names something unusable."""

    code = "invalid"
    default_detail = "Invalid input."

    def __init__(self, detail: str | None = None, *, field: str) -> None:
        super().__init__(detail)
        self.errors = {field: [self.detail]}
