"""The one door to the network: the offline switch and lazy access to huggingface_hub.

huggingface_hub reads `HF_HUB_OFFLINE` (and `HF_ENDPOINT`) when it is imported, so the switch sets
the environment before any import and, if the library is already loaded, its constants too.
Telemetry and implicit update checks of the library are turned off in every case; the only
connections Lantern opens are catalog metadata and downloads the user started.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

_lock = threading.Lock()
_offline = False

# Never let the hub library phone home on its own.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def set_offline(offline: bool) -> None:
    """Turn the app-wide offline mode on or off (also for huggingface_hub)."""
    global _offline
    with _lock:
        _offline = bool(offline)
        if offline:
            os.environ["HF_HUB_OFFLINE"] = "1"
        else:
            os.environ.pop("HF_HUB_OFFLINE", None)
        constants = sys.modules.get("huggingface_hub.constants")
        if constants is not None:
            constants.HF_HUB_OFFLINE = bool(offline)


def is_offline() -> bool:
    return _offline


def hub() -> Any:
    """Import and return `huggingface_hub` (only called for metadata the user asked for)."""
    from app.models.errors import OfflineError

    if _offline:
        raise OfflineError("Lantern is in offline mode: turn it off in Settings to download models.")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import huggingface_hub
    import huggingface_hub.constants as hub_constants

    hub_constants.HF_HUB_OFFLINE = False
    return huggingface_hub


def default_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
