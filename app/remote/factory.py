"""The worker's way to a remote model: called by app/worker.py's engine factory, on the worker thread,
when a LoadModel names a server (`LoadModel.remote`) instead of a folder."""

from __future__ import annotations

from typing import Any, Callable

from app.remote.engine import RemoteEngine
from app.remote.keys import KeyStore, default_keys
from app.remote.target import RemoteTarget


def open_remote_engine(target: RemoteTarget, progress: Callable[[str, float], Any] | None = None,
                       keys: KeyStore | None = None) -> RemoteEngine:
    """Read the server's key from the keyring and connect (raises RemoteError, a user error)."""
    api_key = (keys or default_keys()).get(target.server_id)
    return RemoteEngine.connect(target, api_key, progress)
