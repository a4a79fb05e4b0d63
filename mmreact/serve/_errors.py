"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}`` and its status codes.

The ``openai`` SDK picks its exception class by status (400 ``BadRequestError``, 401
``AuthenticationError``, 404 ``NotFoundError``, 413 ``APIStatusError``, 429 ``RateLimitError``,
5xx ``InternalServerError``) and puts the ``error`` object on ``exc.body``; extra data for
mmreact clients (a partial trace) travels inside it under ``mmreact``.
"""

from __future__ import annotations

from typing import Any

#: status -> OpenAI error ``type``
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    502: "api_error",
    503: "service_unavailable",
    504: "timeout",
}


class APIError(Exception):
    """A request the server answers with an error status and OpenAI's error body.

    ``message`` is one sentence for the client; it never contains request data such as base64.
    """

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 retry_after: float | None = None, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.retry_after = retry_after
        self.extra = extra

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": ERROR_TYPES.get(self.status, "api_error"),
                                 "param": self.param, "code": self.code}
        if self.extra:
            error["mmreact"] = self.extra
        return {"error": error}

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, round(self.retry_after)))}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)
