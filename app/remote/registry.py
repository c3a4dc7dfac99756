"""The servers the user added: `<config dir>/servers.json` (addresses, trusted certificates, the
models last listed). API keys are not in it: they live in the OS keyring (app/remote/keys.py).

Empty until the user adds a server: Lantern never looks for servers on its own.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from app.jsonfile import read_json, write_json_atomic
from app.remote.client import ServerModel
from app.remote.errors import InvalidServerAddress
from app.remote.keys import KeyStore, default_keys
from app.remote.policy import is_loopback_url
from app.remote.target import RemoteTarget, host_label, parse_remote_model_path

log = logging.getLogger(__name__)

FILE_NAME = "servers.json"
FORMAT_VERSION = 1


def normalize_base_url(text: str) -> str:
    """What the user typed -> the API root: a scheme (http:// when none is given), no trailing slash,
    and /v1 when no path is given ("gpu-box:8000" -> "http://gpu-box:8000/v1")."""
    text = text.strip()
    if not text:
        raise InvalidServerAddress("Enter the server's address, e.g. http://gpu-box:8000/v1.")
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidServerAddress(f"“{text}” is not an http:// or https:// address.")
    try:
        host, _port = parts.hostname, parts.port     # .port raises ValueError for a bad port
    except ValueError as exc:
        raise InvalidServerAddress(f"“{text}” has an invalid port.") from exc
    if not host:
        raise InvalidServerAddress(f"“{text}” names no host.")
    if parts.username or parts.password:
        raise InvalidServerAddress("Put the API key in the key field, not in the address.")
    path = parts.path.rstrip("/") or "/v1"
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, "", ""))


@dataclass(frozen=True)
class Server:
    """One server the user added."""

    id: str
    base_url: str
    name: str = ""                                  # the user's label; the host when empty
    trusted_cert_pem: str | None = None             # a self-signed certificate the user chose to trust
    has_key: bool = False                           # a key is stored for it (in the keyring, not here)
    models: tuple[ServerModel, ...] = field(default=())   # as listed by the last Test connection

    @property
    def host(self) -> str:
        return host_label(self.base_url)

    @property
    def label(self) -> str:
        return self.name or self.host

    @property
    def on_this_computer(self) -> bool:
        return is_loopback_url(self.base_url)

    @property
    def encrypted(self) -> bool:
        return self.base_url.startswith("https://")

    def target(self, model: str) -> RemoteTarget:
        context = next((m.max_context for m in self.models if m.id == model), 0)
        return RemoteTarget(self.id, self.base_url, model, self.trusted_cert_pem, context)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "base_url": self.base_url, "name": self.name,
                "trusted_cert_pem": self.trusted_cert_pem, "has_key": self.has_key,
                "models": [{"id": m.id, "max_context": m.max_context} for m in self.models]}

    @staticmethod
    def from_json(data: Any) -> "Server | None":
        if not isinstance(data, dict):
            return None
        try:
            server_id, base_url = str(data["id"]), normalize_base_url(str(data["base_url"]))
        except (KeyError, InvalidServerAddress):
            return None
        if not server_id.isalnum():
            return None
        models = tuple(ServerModel(str(m["id"]), int(m.get("max_context") or 0))
                       for m in data.get("models") or () if isinstance(m, dict) and m.get("id"))
        pem = data.get("trusted_cert_pem")
        return Server(server_id, base_url, str(data.get("name") or ""), pem if isinstance(pem, str) else None,
                      bool(data.get("has_key")), models)


class ServerRegistry:
    """The list of servers, saved at every change. Thread-safe."""

    def __init__(self, path: Path, keys: KeyStore | None = None) -> None:
        self.path = path
        self.keys = keys or default_keys()
        self._lock = threading.Lock()
        self._servers: list[Server] = self._load()

    def _load(self) -> list[Server]:
        data = read_json(self.path)
        if not isinstance(data, dict):
            return []
        servers = [s for s in (Server.from_json(d) for d in data.get("servers") or ()) if s is not None]
        return servers

    def _save(self) -> None:
        write_json_atomic(self.path, {"version": FORMAT_VERSION,
                                      "servers": [s.to_json() for s in self._servers]}, indent=2)

    def servers(self) -> list[Server]:
        with self._lock:
            return list(self._servers)

    def get(self, server_id: str) -> Server | None:
        with self._lock:
            return next((s for s in self._servers if s.id == server_id), None)

    def add(self, base_url: str, *, api_key: str | None = None, name: str = "",
            trusted_cert_pem: str | None = None, models: Iterable[ServerModel] = ()) -> tuple[Server, bool]:
        """Add a server; returns it and whether its key (if any) went into the OS keyring."""
        server = Server(secrets.token_hex(4), normalize_base_url(base_url), name.strip(), trusted_cert_pem,
                        False, tuple(models))
        with self._lock:
            self._servers.append(server)
            self._save()
        kept = True
        if api_key:
            server, kept = self.set_key(server.id, api_key)
        log.info("server added: %s", server.host)
        return server, kept

    def update(self, server_id: str, **changes: Any) -> Server:
        """Change fields of a server (base_url is normalized); KeyError if it is not there."""
        if "base_url" in changes:
            changes["base_url"] = normalize_base_url(changes["base_url"])
        if "models" in changes:
            changes["models"] = tuple(changes["models"])
        with self._lock:
            index = next(i for i, s in enumerate(self._servers) if s.id == server_id)
            self._servers[index] = dataclasses.replace(self._servers[index], **changes)
            self._save()
            return self._servers[index]

    def set_key(self, server_id: str, api_key: str | None) -> tuple[Server, bool]:
        """Store (or, with None/"", forget) the server's key; True if it is in the OS keyring."""
        if api_key:
            kept = self.keys.set(server_id, api_key)
            return self.update(server_id, has_key=True), kept
        self.keys.delete(server_id)
        return self.update(server_id, has_key=False), True

    def key(self, server_id: str) -> str | None:
        return self.keys.get(server_id)

    def remove(self, server_id: str) -> None:
        with self._lock:
            self._servers = [s for s in self._servers if s.id != server_id]
            self._save()
        self.keys.delete(server_id)


def default_registry_path() -> Path:
    from app.paths import config_dir

    return config_dir() / FILE_NAME


_registries: dict[Path, ServerRegistry] = {}
_registries_lock = threading.Lock()


def default_registry() -> ServerRegistry:
    """The registry of the user's config folder (one per folder and process; the window and the Models
    dialog share it)."""
    path = default_registry_path()
    with _registries_lock:
        if path not in _registries:
            _registries[path] = ServerRegistry(path)
        return _registries[path]


def target_for(path: Path | str, registry: ServerRegistry | None = None) -> RemoteTarget | None:
    """The RemoteTarget a remote model's pseudo path names, if its server is still registered."""
    parsed = parse_remote_model_path(path)
    if parsed is None:
        return None
    server = (registry or default_registry()).get(parsed[0])
    return server.target(parsed[1]) if server is not None else None
