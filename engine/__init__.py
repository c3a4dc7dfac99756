"""Lantern's gpt-oss engine: Qt-free, and torch-free to import.

The data types and errors are imported eagerly; `Engine` and `Session` (which need torch) are
imported on first access, so `from engine import Message` costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.errors import ConfigError, ContextFull, DeviceError, EngineError, ModelFilesError, OutOfMemory
from engine.types import (
    ChatEvent,
    DecodeProgress,
    Delta,
    Finished,
    GenerationParams,
    Message,
    ModelInfo,
    PrefillProgress,
    ReasoningEffort,
    Usage,
)

if TYPE_CHECKING:  # pragma: no cover
    from engine.api import Engine, Session

__all__ = [
    "ChatEvent", "ConfigError", "ContextFull", "DecodeProgress", "Delta", "DeviceError", "Engine", "EngineError",
    "Finished", "PrefillProgress",
    "GenerationParams", "Message", "ModelFilesError", "ModelInfo", "OutOfMemory", "ReasoningEffort", "Session",
    "Usage",
]


def __getattr__(name: str) -> Any:
    if name in ("Engine", "Session"):
        from engine import api

        return getattr(api, name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
