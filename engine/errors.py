"""Errors a user can cause and act on. Torch-free.

Anything else escaping the engine is a bug; the app reports it with its traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from engine.types import ErrorKind


class EngineError(Exception):
    """Base class: `str(error)` is a message fit to show a user."""


class ModelFilesError(EngineError):
    """A model folder or file is missing, truncated, corrupt or not a gpt-oss checkpoint."""

    def __init__(self, message: str, *, path: Path | str | None = None, tensor: str | None = None) -> None:
        parts = [message]
        if tensor is not None:
            parts.append(f"tensor: {tensor}")
        if path is not None:
            parts.append(f"file: {path}")
        super().__init__(" (".join([parts[0], "; ".join(parts[1:]) + ")"]) if len(parts) > 1 else message)
        self.path = Path(path) if path is not None else None
        self.tensor = tensor


class ConfigError(ModelFilesError):
    """config.json is missing, unreadable, not gpt-oss, or holds impossible values."""


class DeviceError(EngineError):
    """The requested device is unavailable or unsupported."""


class OutOfMemory(EngineError):
    """The model or its KV cache does not fit in memory."""

    def __init__(self, message: str, *, needed_bytes: int | None = None, available_bytes: int | None = None) -> None:
        super().__init__(message)
        self.needed_bytes = needed_bytes
        self.available_bytes = available_bytes


class ContextFull(EngineError):
    """The conversation (plus room for the reply) does not fit in the context window."""

    def __init__(self, used_tokens: int, limit_tokens: int) -> None:
        super().__init__(
            f"The conversation needs {used_tokens:,} tokens but the context holds {limit_tokens:,}. "
            "Start a new chat, delete earlier messages, or raise the context length in Settings."
        )
        self.used_tokens = used_tokens
        self.limit_tokens = limit_tokens


def error_kind(error: BaseException) -> "ErrorKind":
    """Which `engine.types.ErrorKind` an exception is: the user's to act on, or a bug."""
    if isinstance(error, ContextFull):
        return "context_full"
    if isinstance(error, (OutOfMemory, MemoryError)) or type(error).__name__ == "OutOfMemoryError":
        return "out_of_memory"         # (the last: torch's, without importing torch here)
    if isinstance(error, ModelFilesError):
        return "model_files"
    if isinstance(error, DeviceError):
        return "device"
    if isinstance(error, EngineError):
        return "user"
    return "bug"
