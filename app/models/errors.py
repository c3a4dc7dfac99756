"""Errors of the model manager that a user can act on. `str(error)` is the message to show."""

from __future__ import annotations


class ModelManagerError(Exception):
    """Base class; the message says what happened and what to do."""


class OfflineError(ModelManagerError):
    """The offline setting is on: Lantern opens no connection."""


class NotFoundError(ModelManagerError):
    """The repository or file does not exist on the hub."""


class AccessNeededError(ModelManagerError):
    """The hub answered 401/403: the repository needs a login or accepted terms."""


class DiskFullError(ModelManagerError):
    """Not enough free space, before starting or midway (ENOSPC)."""

    def __init__(self, message: str, *, needed_bytes: int | None = None, free_bytes: int | None = None) -> None:
        super().__init__(message)
        self.needed_bytes = needed_bytes
        self.free_bytes = free_bytes


class NotWritableError(ModelManagerError):
    """The models folder (or a target folder) cannot be written."""


class NetworkError(ModelManagerError):
    """The connection failed or dropped; trying again later may help."""


class HubUnreachableError(NetworkError):
    """No connection to the hub at all (refused, no route, name lookup failed, timed out)."""


class FileChangedError(NetworkError):
    """The hub now serves another version of a file than the download started with: plan again."""

    def __init__(self, message: str, *, name: str = "") -> None:
        super().__init__(message)
        self.name = name              # the file (its partial copy is not to be added to)


class VerifyError(ModelManagerError):
    """A file's size or hash does not match the hub's metadata."""


class InvalidModelError(ModelManagerError):
    """A folder does not hold a usable gpt-oss checkpoint."""
