"""What the window asks the worker to use when the model runs on a server: `RemoteTarget`.

It travels on `LoadModel.remote` (app/messages.py), so it is small, frozen and imports nothing
heavy. The API key is not in it: the worker's factory reads the key from the keyring itself, on
the worker thread (a keyring call can block on the desktop's secret service).

A remote model is named by a pseudo path, `remote:<server id>:<model id>`, wherever the window
keeps a model's path (ModelInfo.path, the "last model" setting). Model ids may hold "/" and ":"
(e.g. "openai/gpt-oss-120b", "gpt-oss:20b"); server ids hold neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

REMOTE_PREFIX = "remote:"


@dataclass(frozen=True, slots=True)
class RemoteTarget:
    """One model on one server the user added."""

    server_id: str
    base_url: str                     # the OpenAI-compatible API root, e.g. "http://gpu-box:8000/v1"
    model: str                        # the server's model id, e.g. "openai/gpt-oss-120b"
    trusted_cert_pem: str | None = None   # the self-signed certificate the user chose to trust, if any
    max_context: int = 0              # what the server said about the model's context (0: not told)

    @property
    def host(self) -> str:
        """The server's host[:port] as the user sees it in the "on <host>" badge."""
        return host_label(self.base_url)

    @property
    def pseudo_path(self) -> Path:
        return remote_model_path(self.server_id, self.model)


def host_label(base_url: str) -> str:
    """"gpu-box:8000" for "http://gpu-box:8000/v1" (the port only when the URL names one)."""
    parts = urlsplit(base_url)
    host = parts.hostname or base_url
    if ":" in host:                   # an IPv6 literal
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


def remote_model_path(server_id: str, model: str) -> Path:
    assert ":" not in server_id and "/" not in server_id, server_id
    return Path(f"{REMOTE_PREFIX}{server_id}:{model}")


def parse_remote_model_path(path: Path | str) -> tuple[str, str] | None:
    """(server id, model id) of a pseudo path made by `remote_model_path`; None for a real folder."""
    text = str(path)
    if not text.startswith(REMOTE_PREFIX):
        return None
    server_id, sep, model = text[len(REMOTE_PREFIX):].partition(":")
    if not sep or not server_id or not model:
        return None
    return server_id, model
