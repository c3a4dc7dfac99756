"""What can go wrong with a server, in words a user can act on. All are `EngineError`s, so the
worker reports them as user errors (WorkerFailed kind "user"), never as bugs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.errors import EngineError

if TYPE_CHECKING:  # pragma: no cover
    from engine.types import ErrorKind


class RemoteError(EngineError):
    """Base class: `str(error)` is the message to show; `server_message` is the server's own text."""

    def __init__(self, message: str, *, server_message: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.server_message = server_message
        self.status = status


class OfflineBlocked(RemoteError):
    """Offline mode is on and the server is not on this computer."""


class Unreachable(RemoteError):
    """No connection (refused, unknown host, timed out, dropped)."""


class CertificateNotTrusted(RemoteError):
    """TLS verification failed: the certificate is self-signed, expired or for another name."""


class AuthFailed(RemoteError):
    """401/403: the API key is missing or wrong."""


class ModelNotFound(RemoteError):
    """The server does not serve the model asked for (or the base URL is wrong)."""


class ContextTooLong(RemoteError):
    """The conversation does not fit in the model's context on the server."""


class ServerFailed(RemoteError):
    """Any other answer that is not a reply (5xx, 429, malformed output)."""


class InvalidServerAddress(RemoteError):
    """The base URL the user typed is not an http(s) address."""


def error_kind_of(error: RemoteError) -> "ErrorKind":
    """The engine's ErrorKind of a server failure: all are the user's to act on, never a bug."""
    return "context_full" if isinstance(error, ContextTooLong) else "user"
