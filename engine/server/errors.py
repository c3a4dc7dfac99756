"""Errors in OpenAI's shape: HTTP status + {"error": {"message", "type", "param", "code"}}."""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    """A request the server refuses; `status` and `body()` are what the client gets."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def invalid(message: str, param: str | None = None, code: str | None = "invalid_value") -> APIError:
    return APIError(400, message, param=param, code=code)


def unsupported(what: str, param: str | None) -> APIError:
    return APIError(400, f"{what} is not supported by this server.", param=param, code="unsupported_value")


def context_length_exceeded(limit: int, used: int, param: str = "messages") -> APIError:
    return APIError(400, f"This model's maximum context length is {limit} tokens. However, your messages resulted in "
                         f"{used} tokens. Please reduce the length of the messages.",
                    param=param, code="context_length_exceeded")


def model_not_found(model: str) -> APIError:
    return APIError(404, f"The model `{model}` does not exist or you do not have access to it.", param="model",
                    code="model_not_found")


def queue_full(waiting: int) -> APIError:
    return APIError(429, f"The server is busy: {waiting} requests are already waiting for the model. Retry shortly.",
                    type="rate_limit_error", code="queue_full")


def no_model() -> APIError:
    return APIError(503, "No model is loaded. Load a model in Lantern, then retry.", type="server_error",
                    code="model_not_loaded")
