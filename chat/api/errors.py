"""Errors in the shape OpenAI's clients read (`{"error": {"message", "type", "param", "code"}}`), each with a
message that says what to change, and the status code that makes the official client raise the right class
(401 AuthenticationError, 403 PermissionDeniedError, 404 NotFoundError, 400 BadRequestError, 429
RateLimitError, 503 InternalServerError)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import JsonResponse
from django.utils import timezone

from chat.errors import ChatError, TooManyInFlight
from inference.quotas import (
    ContextLengthExceeded,
    MessageTooLong,
    ModelNotAllowed,
    ModelNotServed,
    QuotaExceeded,
    quota_resets_at,
)

TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
         404: "not_found_error", 429: "rate_limit_error", 503: "service_unavailable"}  # fmt: skip


class ApiError(Exception):
    """A request the API refuses: *status*, a message that says what to change, and the parameter at fault."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_at: datetime | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.retry_at = retry_at

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": TYPES.get(self.status, "server_error"),
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JsonResponse:
        response = JsonResponse(self.body(), status=self.status)
        if self.retry_at is not None:
            seconds = max(1, int((self.retry_at - timezone.now()).total_seconds()))
            response["Retry-After"] = str(seconds)
        return response


def invalid(param: str, message: str) -> ApiError:
    """Return the 400 for a parameter the request got wrong, naming it."""
    return ApiError(400, message, param=param, code="invalid_value")


def unsupported(param: str, why: str = "") -> ApiError:
    """Return the 400 for a parameter this server does not support (it would change the answer)."""
    return ApiError(
        400,
        f"The parameter {param!r} is not supported by this server{': ' + why if why else ''}. Leave it out.",
        param=param,
        code="unsupported_parameter",
    )


def from_chat_error(error: ChatError, *, model: str) -> ApiError:
    """Return the API's answer to what the chat services refused."""
    if isinstance(error, ModelNotServed):
        return ApiError(404, str(error), param="model", code="model_not_found")
    if isinstance(error, ModelNotAllowed):
        return ApiError(403, str(error), param="model", code="model_not_allowed")
    if isinstance(error, ContextLengthExceeded | MessageTooLong):
        return ApiError(400, str(error), param="messages", code="context_length_exceeded")
    if isinstance(error, QuotaExceeded):
        return ApiError(429, str(error), code="insufficient_quota", retry_at=quota_resets_at())
    if isinstance(error, TooManyInFlight):
        return ApiError(429, str(error), code="too_many_in_flight", retry_at=timezone.now())
    return ApiError(400, str(error))
